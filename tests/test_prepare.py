"""`clibd prepare` end to end on small real samples: BIOSCAN-5M, BIOSCAN-1M, FASTA; bad inputs."""

import gzip
import io
import os
from pathlib import Path
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from clibd_cli.data.splits import CLIBD_1M_SPLITS
from clibd_cli.data.store import open_dataset
from clibd_cli.main import cli
from fixtures.samples import (PHOTOS_5M, RANKS, bioscan1m_sample, bioscan5m_sample, bold_table, fasta_sample,
                              write_csv)


def prepare(*args):
    return CliRunner().invoke(cli, ["prepare", *map(str, args)])


@pytest.fixture(scope="module")
def sample5m(tmp_path_factory):
    return bioscan5m_sample(tmp_path_factory.mktemp("bioscan5m"))


@pytest.fixture(scope="module")
def sample1m(tmp_path_factory):
    return bioscan1m_sample(tmp_path_factory.mktemp("bioscan1m"))


@pytest.fixture(scope="module")
def sample_fasta(tmp_path_factory):
    return fasta_sample(tmp_path_factory.mktemp("fasta"))


def test_bioscan5m_with_real_photos(sample5m, tmp_path):
    out = tmp_path / "5m.h5"
    result = prepare("--format", "bioscan-5m", sample5m["csv"], "--images", sample5m["images"],
                     "--image-package", "original_full", "--workers", 3, "-o", out)
    assert result.exit_code == 0, result.output
    rows = sample5m["rows"]
    with open_dataset(out) as dataset:
        sizes = {name: len(dataset.split(name)) for name in dataset.splits}
        assert sizes == Counter(r["split"] for r in rows)
        photos = {}
        for name in dataset.splits:
            split = dataset.split(name)
            expected = [r for r in rows if r["split"] == name]
            assert split.ids() == [r["processid"] for r in expected]
            assert split.column("barcode") == [r["dna_barcode"] for r in expected]
            for rank in RANKS + ("dna_bin",):
                assert split.column(rank) == [r[rank] or None for r in expected]
            photos.update((pid, split.image_bytes(i)) for i, pid in enumerate(split.ids()))
        for pid in sample5m["with_photo"]:  # stored byte for byte, not re-encoded
            assert photos[pid] == (PHOTOS_5M / f"{pid}.1024px.jpg").read_bytes()
        assert photos[sample5m["missing"]] is None and photos[sample5m["corrupt"]] is None
        assert sum(p is not None for p in photos.values()) == len(sample5m["with_photo"])
        attrs = dataset.attrs
        assert attrs["input_format"] == "bioscan-5m" and attrs["split_protocol"] == "bioscan-5m split column"
        assert attrs["missing_images"] == len(rows) - 11 and attrs["unreadable_images"] == 1
        assert attrs["source"] == str(sample5m["csv"].resolve()) and attrs["command"].startswith("clibd ")
        summary = attrs["summary"]["splits"]
    assert f"{sample5m['corrupt']}.jpg: unreadable image" in result.stderr
    assert "photos not found (records kept without photo)" in result.stderr
    table = dict((line.split()[0], line.split()[1:]) for line in result.stdout.splitlines()[1:])
    for name, counts in summary.items():
        assert table[name] == [f"{counts[c]:,}" for c in ("records", "species", "genera", "with_image")]


def test_bioscan5m_resize_and_auto_format(sample5m, tmp_path):
    out = tmp_path / "small.h5"
    result = prepare(sample5m["csv"], "--images", sample5m["images"] / "original_full", "--resize", 128,
                     "-o", out)
    assert result.exit_code == 0, result.output
    with open_dataset(out) as dataset:
        train = dataset.split("train")
        photo = next(train.image_bytes(i) for i in range(len(train)) if train.image_sizes[i])
        image = Image.open(io.BytesIO(photo))
        assert image.format == "JPEG" and min(image.size) == 128
        assert dataset.attrs["resize"] == 128


def test_bioscan1m_protocol_with_seed_and_photos(sample1m, tmp_path):
    args = [sample1m["tsv"], "--images", sample1m["images"], "--image-package", "cropped"]
    assert prepare(*args, "--seed", 7, "-o", tmp_path / "a.h5").exit_code == 0
    assert prepare(*args, "--seed", 7, "-o", tmp_path / "b.h5").exit_code == 0
    result = prepare(*args, "--seed", 8, "-o", tmp_path / "c.h5")
    assert result.exit_code == 0, result.output

    def layout(path):
        with open_dataset(path) as dataset:
            return {name: dataset.split(name).column("sampleid") for name in dataset.splits}

    global_seed = CliRunner().invoke(cli, ["--seed", 7, "prepare", *map(str, args), "-o", tmp_path / "d.h5"])
    assert global_seed.exit_code == 0, global_seed.output
    a = layout(tmp_path / "a.h5")
    assert a == layout(tmp_path / "b.h5") == layout(tmp_path / "d.h5") and a != layout(tmp_path / "c.h5")
    assert list(a) == list(CLIBD_1M_SPLITS)
    assert sorted(sum(a.values(), [])) == sorted(r["sampleid"] for r in sample1m["rows"])
    with open_dataset(tmp_path / "a.h5") as dataset:
        assert dataset.attrs["seed"] == 7 and "80%/20%" in dataset.attrs["split_protocol"]
        seen = set(dataset.split("train_seen").column("species"))
        unseen = set(dataset.split("unseen").column("species"))
        assert seen and unseen and not seen & unseen
        assert set(dataset.split("no_split").column("species")) == {None}
        assert dataset.attrs["summary"]["total"]["with_image"] == 5
        assert len(dataset.split("all_keys")) == sum(len(a[n]) for n in ("seen_keys", "val_unseen_keys",
                                                                          "test_unseen_keys"))


def test_bioscan1m_released_partition(sample1m, tmp_path):
    partition = tmp_path / "CLIBD_partitioning"
    partition.mkdir()
    ids = [r["sampleid"] for r in sample1m["rows"]]
    for k, name in enumerate(CLIBD_1M_SPLITS):
        (partition / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids[k::len(CLIBD_1M_SPLITS)]))
    result = prepare(sample1m["tsv"], "--partition", partition, "-o", tmp_path / "p.h5")
    assert result.exit_code == 0, result.output
    with open_dataset(tmp_path / "p.h5") as dataset:
        for k, name in enumerate(CLIBD_1M_SPLITS):
            assert dataset.split(name).column("sampleid") == ids[k::len(CLIBD_1M_SPLITS)]
        assert dataset.attrs["partition"] == str(partition.resolve())
    (partition / "no_split.txt").write_text("")
    result = prepare(sample1m["tsv"], "--partition", partition, "-o", tmp_path / "q.h5")
    assert result.exit_code == 1 and "sampleids in no partition file, e.g. " in result.output
    assert not (tmp_path / "q.h5").exists()


def test_fasta_with_taxonomy_and_photos(sample_fasta, tmp_path):
    result = prepare("--format", "fasta", sample_fasta["fasta"], "--taxonomy", sample_fasta["taxonomy"],
                     "--images", sample_fasta["images"], "-o", tmp_path / "f.h5")
    assert result.exit_code == 0, result.output
    rows = {r["processid"]: r for r in sample_fasta["rows"]}
    with open_dataset(tmp_path / "f.h5") as dataset:
        everything = dataset.split("all")
        ids = everything.ids()
        assert sorted(ids) == sorted(rows)
        for i, pid in enumerate(ids):  # half from SINTAX headers, half from the table
            assert everything.ranks(i) == {rank: rows[pid][rank] or None for rank in RANKS}
        assert everything.column("barcode") == [rows[pid]["dna_barcode"] for pid in ids]
        with_photo = {ids[i] for i in range(len(ids)) if everything.image_sizes[i]}
        assert with_photo == set(sample_fasta["with_photo"])
        assert dataset.attrs["input_format"] == "fasta"



def test_the_taxonomy_table_is_never_the_output(sample_fasta, tmp_path):
    """``-o`` naming the --taxonomy input (a slip of the shell's completion) is refused before
    anything is written: that input would be replaced by the dataset."""
    table = tmp_path / "taxonomy.tsv"
    table.write_bytes(Path(sample_fasta["taxonomy"]).read_bytes())
    result = prepare("--format", "fasta", sample_fasta["fasta"], "--taxonomy", table, "-o", table)
    assert result.exit_code == 2 and "is the input" in result.output
    assert table.read_bytes() == Path(sample_fasta["taxonomy"]).read_bytes()


def test_a_taxonomy_table_that_names_no_record_is_refused(tmp_path):
    """Ids in the wrong column (or another file's table), and no header taxonomy: an error before
    anything is written, not a warning and a dataset without labels."""
    from fixtures.specimens import specimens, write_fasta

    plain = write_fasta(tmp_path / "plain.fa", specimens(n_species=2, per_species=2, unnamed=0), sintax=False)
    table = tmp_path / "other.tsv"
    table.write_text("id\tgenus\nnot-a-record\tAedes\n")
    result = prepare("--format", "fasta", plain, "--taxonomy", table, "-o", tmp_path / "f.h5")
    assert result.exit_code == 1 and "names no record of" in result.output and "FASTA ids" in result.output
    assert not (tmp_path / "f.h5").exists()

def test_the_file_has_the_layout_of_the_clibd_authors_files(sample_fasta, tmp_path):
    """DESIGN.md section 4, read with h5py alone (clibd's reader shares its field names with the
    writer, so only a raw read catches a renamed field): one group per split, one 1-D dataset per
    field under the names of the published CLIBD files, UTF-8 strings, a missing rank as
    not_classified, photos as variable-length bytes with their lengths in image_mask, and the
    source, split protocol, seed, clibd version and command line in the file's attributes."""
    import h5py

    from clibd_cli import __version__

    out = tmp_path / "f.h5"
    result = prepare("--format", "fasta", sample_fasta["fasta"], "--taxonomy", sample_fasta["taxonomy"],
                     "--images", sample_fasta["images"], "--seed", 5, "-o", out)
    assert result.exit_code == 0, result.output
    rows = {r["processid"]: r for r in sample_fasta["rows"]}
    photos = {p.name.split(".")[0]: p.read_bytes() for p in sample_fasta["images"].rglob("*.jpg")}
    fields = {"processid", "sampleid", "barcode", *RANKS, "dna_bin", "image", "image_mask"}
    stored = {}
    with h5py.File(out, "r") as h5:
        assert set(h5) <= set(CLIBD_1M_SPLITS) and all(isinstance(group, h5py.Group) for group in h5.values())
        for group in h5.values():
            assert set(group) == fields
            n = len(group["processid"])
            assert all(group[name].shape == (n,) for name in fields)
            for name in fields - {"image", "image_mask"}:
                assert h5py.check_string_dtype(group[name].dtype).encoding == "utf-8", name
            assert h5py.check_vlen_dtype(group["image"].dtype) == np.uint8
            columns = [group[name].asstr()[:] for name in ("processid", "barcode", *RANKS)]
            for (pid, barcode, *labels), photo, size in zip(zip(*columns), group["image"][:], group["image_mask"][:]):
                stored[pid] = (barcode, labels, photo.tobytes(), int(size))
        attrs = dict(h5.attrs)
    assert sorted(stored) == sorted(rows)
    for pid, (barcode, labels, photo, size) in stored.items():
        assert barcode == rows[pid]["dna_barcode"]
        assert labels == [rows[pid][rank] or "not_classified" for rank in RANKS]
        assert photo == photos.get(pid, b"") and size == len(photo)
    assert sum(1 for _, labels, _, _ in stored.values() if "not_classified" in labels) > 0
    assert attrs["source"] == str(sample_fasta["fasta"].resolve()) and attrs["seed"] == 5
    assert "protocol" in attrs["split_protocol"] and attrs["clibd_version"] == __version__
    assert attrs["command"].startswith("clibd prepare --format fasta")


def test_fasta_header_taxonomy_only_gzip_auto(sample_fasta, tmp_path):
    packed = tmp_path / "reads.fa.gz"
    packed.write_bytes(gzip.compress(sample_fasta["fasta"].read_bytes()))
    result = prepare(packed, "-o", tmp_path / "f.h5")
    assert result.exit_code == 0, result.output
    with open_dataset(tmp_path / "f.h5") as dataset:
        assert len(dataset.split("all")) == len(sample_fasta["rows"])
        assert not dataset.split("all").has_images


def bold_rows(n=40):
    header, rows = bold_table()
    return header, [dict(row) for row in rows[:: len(rows) // n][:n]]


def csv_with(tmp_path, change=None, drop=None, rename=None):
    header, rows = bold_rows()
    if change:
        change(rows)
    if drop:
        header = [c for c in header if c != drop]
        rows = [{k: v for k, v in row.items() if k != drop} for row in rows]
    if rename:
        header = [rename.get(c, c) for c in header]
        rows = [{rename.get(k, k): v for k, v in row.items()} for row in rows]
    return write_csv(tmp_path / "meta.csv.gz", header, rows)


def set_barcodes(rows):
    rows[3]["dna_barcode"] = "MKVLAAGIVGLLLAAQPAMA"
    rows[5]["dna_barcode"] = ""


def test_bad_barcodes_counted_and_skipped_or_strict(tmp_path):
    meta = csv_with(tmp_path, change=set_barcodes)
    result = prepare(meta, "-o", tmp_path / "x.h5")
    assert result.exit_code == 0, result.output
    assert ("2 records skipped for an empty or non-nucleotide barcode, e.g. line 5 (non-nucleotide "
            "barcode (characters 'ILPQ')); line 7 (empty barcode)") in result.stderr
    with open_dataset(tmp_path / "x.h5") as dataset:
        assert dataset.attrs["summary"]["total"]["records"] == 38 and dataset.attrs["skipped_barcodes"] == 2
    result = prepare(meta, "--strict", "-o", tmp_path / "y.h5")
    assert result.exit_code == 1
    assert result.output.startswith(f"clibd: error: {meta}:5: processid ")
    assert "non-nucleotide" in result.output



def test_barcodes_stored_as_every_command_reads_them(tmp_path):
    """RNA, lower case and alignment gaps are stored as the encoders read them (U as T, gaps
    dropped), so embed, evaluate and train see what index and classify see; gaps only is skipped."""
    header, rows = bold_rows()
    want = rows[2]["dna_barcode"].upper()
    rows[2]["dna_barcode"] = " " + "-".join(want[i:i + 60] for i in range(0, len(want), 60)).lower().replace("t", "u")
    rows[4]["dna_barcode"] = "---...---"
    meta = write_csv(tmp_path / "meta.csv.gz", header, rows)
    result = prepare(meta, "-o", tmp_path / "x.h5")
    assert result.exit_code == 0, result.output
    assert "line 6 (alignment gaps only)" in result.stderr
    with open_dataset(tmp_path / "x.h5") as dataset:
        every = dataset.splits_union(dataset.attrs["summary"]["splits"])
        stored = dict(zip(every.ids(), every.column("barcode")))
    assert stored[rows[2]["processid"]] == want and rows[4]["processid"] not in stored


def file_with(name, data: bytes):
    def make(directory):
        (directory / name).write_bytes(data)
        return directory / name
    return make


def duplicate(rows):
    rows[9]["processid"] = rows[2]["processid"]


def empty_split(rows):
    rows[4]["split"] = "holdout"


@pytest.mark.parametrize("make, options, code, message", [
    (lambda p: csv_with(p, rename={"dna_barcode": "barcode"}), [], 1,
     ":1: missing column 'dna_barcode' (found: processid, sampleid,"),
    (lambda p: csv_with(p, drop="split"), ["--format", "bioscan-5m"], 1, "missing column 'split'"),
    (lambda p: csv_with(p, change=duplicate), [], 1, ":11: duplicate processid "),
    (lambda p: csv_with(p, change=empty_split), [], 1, ":6: split 'holdout' is not one of pretrain, train"),
    (lambda p: write_csv(p / "m.csv.gz", bold_table()[0], []), [], 1, "m.csv.gz: no records"),
    (file_with("e.fasta", b"\n"), ["--format", "fasta"], 1, "e.fasta: no records"),
    (file_with("z.csv", b""), [], 1, "cannot tell the input format (it is empty)"),
    (file_with("z.csv", b""), ["--format", "bioscan-5m"], 1, "empty file"),
    (file_with("notes.txt", b"hello\n"), [], 1, "cannot tell the input format"),
    (lambda p: file_with("x.gz", csv_with(p).read_bytes()[:-40])(p), [], 1,
     "x.gz:41: unreadable compressed file"),
    (lambda p: csv_with(p), ["--format", "genbank"], 2, "'genbank' is not one of"),
    (lambda p: csv_with(p), ["--taxonomy", __file__], 2, "--taxonomy is for --format fasta"),
    (lambda p: csv_with(p), ["--images", os.path.dirname(__file__)], 1, "no 'cropped_256' image folder"),
])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, make, options, code, message):
    source = make(tmp_path)
    before = set(os.listdir(tmp_path))
    result = prepare(source, *options, "-o", tmp_path / "out.h5")
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert set(os.listdir(tmp_path)) == before  # no output, no temporary left behind


def test_duplicate_message_names_both_lines(tmp_path):
    header, rows = bold_rows()
    result = prepare(csv_with(tmp_path, change=duplicate), "-o", tmp_path / "d.h5")
    assert f"duplicate processid {rows[2]['processid']!r} (first on line 4); 1 repeated processids in all" \
        in result.output


def test_problems_are_counted_with_their_noun(caplog):
    """One skipped record is '1 record skipped', two are '2 records skipped' (not 'record(s)')."""
    from clibd_cli.data.build import Problems

    problems = Problems()
    problems.add("missing", "a.jpg")
    problems.add("barcode", "line 3")
    problems.add("barcode", "line 5")
    problems.report("missing", "photo", "not found")
    problems.report("barcode", "record", "skipped")
    assert "1 photo not found, e.g. a.jpg" in caplog.text
    assert "2 records skipped, e.g. line 3; line 5" in caplog.text
    for line in range(7, 13):
        problems.add("barcode", f"line {line}")
    problems.report("barcode", "record", "skipped")
    assert "8 records skipped, e.g. line 3; line 5; line 7; line 8; line 9\n" in caplog.text  # 5 examples


def test_a_fasta_that_names_no_species_is_said_to_be_unlabelled(tmp_path):
    """Barcodes without any taxonomy made a dataset of no_split records and said nothing."""
    from fixtures.specimens import specimens, write_fasta

    records = specimens(n_species=2, per_species=2, unnamed=0)
    plain = write_fasta(tmp_path / "plain.fa", records, sintax=False)
    result = prepare(plain, "-o", tmp_path / "p.h5")
    assert result.exit_code == 0, result.output
    assert (f"{plain}: no record names a species (SINTAX ;tax=, lineage headers or --taxonomy): "
            "all 4 records go to no_split") in result.output
    labelled = prepare(write_fasta(tmp_path / "named.fa", records), "-o", tmp_path / "n.h5")
    assert labelled.exit_code == 0 and "no record names a species" not in labelled.output
    one = prepare(write_fasta(tmp_path / "one.fa", records[:1], sintax=False), "-o", tmp_path / "o.h5")
    assert "its one record goes to no_split" in one.output  # not "all 1 record go"

