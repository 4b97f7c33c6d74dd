"""The dataset HDF5: our writer and reader, the CLIBD-distributed layout, split aliases."""

import os
import pickle

import h5py
import numpy as np
import pytest

from clibd_cli.data.splits import BIOSCAN_5M_SPLITS, CLIBD_1M_SPLITS
from clibd_cli.data.store import Record, open_dataset
from clibd_cli.data.store_writer import DatasetWriter
from clibd_cli.io.images import load_image
from fixtures.samples import CLIBD_5M_GROUPS, RANKS, bold_sample, clibd_hdf5
from models.errors import ClibdError


def write(path, splits, images=True, **kwargs):
    with DatasetWriter(path, {"source": "test"}, images=images, **kwargs) as writer:
        for split in splits:
            writer.add(split, Record(f"{split}-1", barcode="ACGT", order="Diptera", species="Aedes aegypti",
                                     genus="Aedes", image=b"\xff\xd8jpeg"))
            writer.add(split, {"processid": f"{split}-2", "barcode": "AC"})


def test_round_trip_across_chunks_with_labels_and_images(tmp_path):
    rows = bold_sample(modulus=400)
    photos = {i: os.urandom(i % 7) for i in range(len(rows))}  # includes empty = no image
    path = tmp_path / "d.h5"
    with DatasetWriter(path, {"seed": 3}, images=True, chunk_rows=17, buffer_bytes=50,
                       storage_chunk=8) as writer:
        for i, row in enumerate(rows):
            labels = [row[r] or None for r in RANKS + ("dna_bin",)]
            writer.add(row["split"], Record(row["processid"], row["sampleid"], row["dna_barcode"], *labels,
                                            photos[i]))
    with open_dataset(path) as dataset:
        assert dataset.splits == [s for s in BIOSCAN_5M_SPLITS if any(r["split"] == s for r in rows)]
        assert dataset.attrs["seed"] == 3 and dataset.attrs["format"] == "clibd-dataset"
        for name in dataset.splits:
            expected = [(i, r) for i, r in enumerate(rows) if r["split"] == name]
            split = dataset.split(name)
            assert len(split) == len(expected)
            assert split.column("barcode") == [r["dna_barcode"] for _, r in expected]
            assert split.ids() == [r["processid"] for _, r in expected]
            for rank in RANKS:
                assert split.column(rank) == [r[rank] or None for _, r in expected]
            assert split.ranks(0) == {rank: expected[0][1][rank] or None for rank in RANKS}
            stored = [split.image_bytes(k) for k in range(len(split))]
            assert stored == [photos[i] or None for i, _ in expected]
            assert split.image_sizes.tolist() == [len(photos[i]) for i, _ in expected]
    with h5py.File(path) as h5:  # on disk: UTF-8 strings, missing labels as not_classified
        assert h5["train/dna_bin"].asstr()[:].tolist() == [r["dna_bin"] or "not_classified" for r in rows
                                                           if r["split"] == "train"]


def test_summary_in_attrs(tmp_path):
    write(tmp_path / "d.h5", ["train", "pretrain"])
    with open_dataset(tmp_path / "d.h5") as dataset:
        summary = dataset.attrs["summary"]
        assert summary["splits"]["train"] == {"records": 2, "species": 1, "genera": 1, "with_image": 1}
        assert summary["total"]["records"] == 4
        assert list(summary["splits"]) == ["pretrain", "train"]
        assert h5py.File(tmp_path / "d.h5")["train"].attrs["records"] == 2


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "d.h5") as writer:
            writer.add("train", Record("a"))
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_no_images_written_when_not_asked(tmp_path):
    write(tmp_path / "d.h5", ["train"], images=False)
    with open_dataset(tmp_path / "d.h5") as dataset:
        split = dataset.split("train")
        assert not split.has_images and split.image_bytes(0) is None
        assert "image" not in h5py.File(tmp_path / "d.h5")["train"]


@pytest.mark.parametrize("name, groups", [
    ("all_keys", ["train", "key_unseen"]),
    ("no_split_and_seen_train", ["pretrain", "train"]),
    ("pretrain+train", ["pretrain", "train"]),
    ("seen_keys", ["train"]),
    ("unseen_keys", ["key_unseen"]),
    ("test_unseen_keys", ["key_unseen"]),
    ("val_seen", ["val"]),
    ("seen", ["train", "val", "test"]),
    ("all", list(BIOSCAN_5M_SPLITS[:7])),
])
def test_aliases_on_5m_layout(tmp_path, name, groups):
    write(tmp_path / "d.h5", BIOSCAN_5M_SPLITS[:7])
    with open_dataset(tmp_path / "d.h5") as dataset:
        assert list(dataset.split(name).groups) == groups
        assert len(dataset.split(name)) == 2 * len(groups)


@pytest.mark.parametrize("name, groups", [
    ("all_keys", ["seen_keys", "val_unseen_keys", "test_unseen_keys"]),
    ("pretrain", ["no_split"]),
    ("train", ["train_seen"]),
    ("key_unseen", ["test_unseen_keys"]),
    ("no_split_and_seen_train", ["no_split", "train_seen"]),
    ("val_unseen+val_unseen_keys", ["val_unseen", "val_unseen_keys"]),
])
def test_aliases_on_1m_layout(tmp_path, name, groups):
    write(tmp_path / "d.h5", CLIBD_1M_SPLITS)
    with open_dataset(tmp_path / "d.h5") as dataset:
        assert dataset.splits == list(CLIBD_1M_SPLITS)
        assert list(dataset.split(name).groups) == groups
        assert list(dataset.splits_union(name.split("+")).groups) == groups


def test_unknown_split_lists_what_there_is(tmp_path):
    write(tmp_path / "d.h5", ["train"])
    with open_dataset(tmp_path / "d.h5") as dataset:
        with pytest.raises(ClibdError, match="no split 'val'; this file has train"):
            dataset.split("val")


def test_clibd_distributed_layout(tmp_path):
    """Padded images, byte strings and metasplit groups read like our own files."""
    expected = clibd_hdf5(tmp_path / "BIOSCAN_5M.hdf5")
    with open_dataset(tmp_path / "BIOSCAN_5M.hdf5") as dataset:
        assert set(dataset.splits) == set(CLIBD_5M_GROUPS)
        for name, members in expected.items():
            split = dataset.split(name)
            assert split.ids() == [row["processid"] for row, _ in members]
            assert split.column("barcode") == [row["dna_barcode"] for row, _ in members]
            assert split.column("species") == [row["species"] or None for row, _ in members]
            assert split.column("dna_bin") == [None] * len(members)  # the 5M file has no dna_bin
            assert split.has_images
            assert [split.image_bytes(i) for i in range(len(split))] == [photo for _, photo in members]
        assert load_image(dataset.split("test_seen").image_bytes(0)).mode == "RGB"
        # 5M names map to the CLIBD groups; "all" leaves out the groups that repeat others
        assert dataset.split("train").groups == ("seen_keys",)
        assert dataset.split("key_unseen").groups == ("unseen_keys",)
        assert dataset.split("pretrain+train").groups == ("no_split_and_seen_train",)
        assert set(dataset.split("all").groups) == set(CLIBD_5M_GROUPS) - {"all_keys", "seen_keys"}
        with pytest.raises(ClibdError, match="no split 'pretrain'"):
            dataset.split("pretrain")


def test_split_views_pickle_and_reopen(tmp_path):
    write(tmp_path / "d.h5", ["train", "key_unseen"])
    with open_dataset(tmp_path / "d.h5") as dataset:
        view = pickle.loads(pickle.dumps(dataset.split("all_keys")))
        assert view.groups == ("train", "key_unseen") and view.image_bytes(2) == b"\xff\xd8jpeg"


def test_not_a_dataset(tmp_path):
    (tmp_path / "x.h5").write_text("plain text")
    with pytest.raises(ClibdError, match="not an HDF5 dataset file"):
        open_dataset(tmp_path / "x.h5")
    with h5py.File(tmp_path / "y.h5", "w") as h5:
        h5.create_group("embeddings").create_dataset("vectors", data=np.zeros((2, 3)))
    with pytest.raises(ClibdError, match="no split groups"):
        open_dataset(tmp_path / "y.h5")
    with pytest.raises(ClibdError, match="no such dataset file"):
        open_dataset(tmp_path / "z.h5")


def test_a_clibd_record_without_a_photo_reads_as_none(tmp_path):
    """The CLIBD layout pads photos into a matrix: a record of length 0 in image_mask has no
    photo (None, as in our own files), not an empty one."""
    with h5py.File(tmp_path / "c.hdf5", "w") as h5:
        group = h5.create_group("val_seen")
        group.create_dataset("processid", data=np.array([b"a", b"b"]))
        group.create_dataset("barcode", data=np.array([b"ACGT", b"ACGT"]))
        group.create_dataset("image", data=np.array([[255, 216, 1], [0, 0, 0]], dtype=np.uint8))
        group.create_dataset("image_mask", data=np.array([3, 0]))
    with open_dataset(tmp_path / "c.hdf5") as dataset:
        split = dataset.split("val_seen")
        assert split.image_bytes(0) == b"\xff\xd8\x01" and split.image_bytes(1) is None


def test_a_group_whose_fields_differ_in_length_is_named(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        group = h5.create_group("train")
        group.create_dataset("processid", data=np.array([b"a", b"b", b"c"]))
        group.create_dataset("barcode", data=np.array([b"ACGT", b"ACGT"]))
    with open_dataset(tmp_path / "d.h5") as dataset, pytest.raises(
            ClibdError, match=r"group /train has fields of different lengths \(barcode=2, processid=3\)"):
        dataset.split("train")


def test_the_summary_counts_genera_apart_from_species(tmp_path):
    with DatasetWriter(tmp_path / "d.h5") as writer:
        for species in ("Aedes aegypti", "Aedes albopictus"):
            writer.add("train", Record(species, barcode="ACGT", genus="Aedes", species=species))
    with open_dataset(tmp_path / "d.h5") as dataset:
        assert dataset.attrs["summary"]["total"] == {"records": 2, "species": 2, "genera": 1, "with_image": 0}


def test_a_union_of_splits_holds_each_group_once(tmp_path):
    """``train+all_keys`` (all_keys holds train) and a split named twice: records are not repeated."""
    write(tmp_path / "d.h5", ["train", "key_unseen"])
    with open_dataset(tmp_path / "d.h5") as dataset:
        assert dataset.split("train+all_keys").groups == ("train", "key_unseen")
        assert len(dataset.splits_union(["train", "train"])) == 2


def test_the_content_digest_tells_other_barcodes_and_labels_of_the_same_ids_apart(tmp_path):
    """What ``train --resume`` compares besides the ids: one record's barcode or species changed is
    another digest, a copy the same; chunks and groups do not change it, nor do byte-string fields."""
    import shutil

    write(tmp_path / "d.h5", ["train", "key_unseen"])
    clibd_hdf5(tmp_path / "c.hdf5")
    digests = {}
    for field in ("", "barcode", "species"):
        path = shutil.copy(tmp_path / "d.h5", tmp_path / f"d-{field}.h5")
        if field:
            with h5py.File(path, "r+") as h5:
                h5["key_unseen"][field][1] = "GGGG" if field == "barcode" else "Culex pipiens"
        with open_dataset(path) as dataset:
            both = dataset.splits_union(["train", "key_unseen"])
            digests[field] = (both.ids_digest(), both.content_digest())
            assert both.content_digest(size=1) == digests[field][1]
    assert len({ids for ids, _ in digests.values()}) == 1 and len({data for _, data in digests.values()}) == 3
    with open_dataset(tmp_path / "c.hdf5") as dataset:  # the CLIBD layout: fixed-length byte strings
        test = dataset.split("test_seen")
        assert test.content_digest(size=1) == test.content_digest() != digests[""][1]


def test_the_content_digest_reads_the_clibd_layouts_byte_strings_as_stored(tmp_path):
    """A CLIBD-layout file (fixed-length byte strings): one species changed is another digest, and the
    same strings written as variable-length ones (as ``clibd prepare`` writes) the same digest."""
    import shutil

    clibd_hdf5(tmp_path / "c.hdf5")
    with open_dataset(tmp_path / "c.hdf5") as dataset:
        part = dataset.split("test_seen")
        group, before = part.groups[0], part.content_digest()
    for name, change in (("species", lambda d: d.__setitem__(0, b"Culex changed")), ("vlen", None)):
        path = shutil.copy(tmp_path / "c.hdf5", tmp_path / f"{name}.hdf5")
        with h5py.File(path, "r+") as h5:
            if change is not None:
                change(h5[group]["species"])
            else:
                for field in ("barcode", *RANKS):
                    values = h5[group][field][:].tolist()
                    del h5[group][field]
                    h5[group].create_dataset(field, data=values, dtype=h5py.string_dtype())
        with open_dataset(path) as dataset:
            assert (dataset.split("test_seen").content_digest() == before) is (change is None), name
