"""The synthetic tri-modal dataset: real BOLD barcodes + generated images that follow the taxonomy."""

from __future__ import annotations

import random

import numpy as np
import pytest

from clibd_cli.data.store import open_dataset
from clibd_cli.data.synthetic import (SEEN_SPLITS, UNSEEN_SPLITS, appearance, specimen_image,
                                     write_synthetic_dataset)
from clibd_cli.io.images import load_image
from fixtures.samples import BOLD_CSV, bold_table


def test_appearance_follows_the_taxonomy():
    fly = appearance(0, "Diptera", "Culicidae", "Aedes", "Aedes albopictus")
    sister = appearance(0, "Diptera", "Culicidae", "Aedes", "Aedes aegypti")
    cousin = appearance(0, "Diptera", "Culicidae", "Culex", "Culex pipiens")
    moth = appearance(0, "Lepidoptera", "Tortricidae", "Acleris", "Acleris chalybeana")
    assert fly.plan == sister.plan == cousin.plan == "fly" and moth.plan == "moth"
    assert fly.body == sister.body == cousin.body != moth.body  # family -> colour
    genus_traits = ("pattern", "pattern_colour", "pattern_count", "pattern_size")
    assert all(getattr(fly, t) == getattr(sister, t) for t in genus_traits)  # genus -> pattern
    assert any(getattr(fly, t) != getattr(cousin, t) for t in genus_traits)
    assert fly.mark_at != sister.mark_at  # species -> detail
    assert appearance(1, "Diptera", "Culicidae", "Aedes", "Aedes albopictus") != fly  # seed -> another world


def test_specimen_images_are_deterministic_and_vary_by_specimen():
    look = appearance(0, "Coleoptera", "Carabidae", "Carabus", "Carabus nemoralis")
    a, b = (specimen_image(look, random.Random(7), 64) for _ in range(2))
    c = specimen_image(look, random.Random(8), 64)
    assert a == b != c
    image = load_image(a)
    assert image.size == (64, 64)
    pixels = np.asarray(image, dtype=float)
    assert pixels.std() > 10  # a specimen, not a blank frame


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.h5"
    summary = write_synthetic_dataset(path, n_species=15, images_per_species=5, image_size=48, seed=0,
                                      bold_csv=BOLD_CSV)
    return path, summary


def test_synthetic_dataset_pairs_real_barcodes_with_images(dataset):
    path, summary = dataset
    bold = {row["processid"]: row for row in bold_table()[1]}
    with open_dataset(path) as ds:
        assert set(ds.splits) <= {"pretrain", *SEEN_SPLITS, *UNSEEN_SPLITS}
        assert "synthetic" in ds.attrs["source"]
        everything = ds.split("all")
        ids = everything.column("processid")
        assert len(ids) == summary["total"]["records"] and summary["total"]["species"] == 15
        for i in range(0, len(ids), 7):
            row = bold[ids[i]]
            assert everything.column("barcode", i, i + 1)[0] == row["dna_barcode"]
            assert everything.ranks(i) == {r: row[r] or None for r in ("order", "family", "genus", "species")}
            data = everything.image_bytes(i)
            assert data is None and row["split"] == "pretrain" or load_image(data).size == (48, 48)
        pretrain = ds.split("pretrain")
        with_image = sum(pretrain.image_bytes(i) is not None for i in range(len(pretrain)))
        assert 0 < with_image < len(pretrain)  # some records lack a photo, as in BIOSCAN
        seen = {g for s in SEEN_SPLITS if s in ds.splits for g in ds.split(s).column("genus")}
        unseen = {g for s in UNSEEN_SPLITS if s in ds.splits for g in ds.split(s).column("genus")}
        assert unseen and unseen <= seen  # every unseen species has seen relatives in its genus


def test_a_cut_short_bold_csv_is_a_clear_error(tmp_path):
    """A truncated gzip download said 'internal error (EOFError: ...)' instead of naming the file."""
    import gzip

    from clibd_cli.data.synthetic import read_bold
    from models.errors import ClibdError

    whole = gzip.compress(b"processid,sampleid,order,family,genus,species,dna_barcode,split\n" * 200)
    (tmp_path / "cut.csv.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ClibdError, match=r"cut\.csv\.gz.*unreadable compressed file"):
        read_bold(tmp_path / "cut.csv.gz")
