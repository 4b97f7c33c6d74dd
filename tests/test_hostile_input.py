"""Hostile and off-target input (issue #17): RNA, aligned FASTA, over-long records, short FASTQ
qualities."""

import gzip
import io
import re

import pytest

from clibd_cli.io.sequences import MAX_LENGTH, barcode_problem, read_sequences
from fixtures.specimens import error_line, run, specimens, tsv, write_fasta
from models.errors import ClibdError


@pytest.fixture(scope="module")
def kmer_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    records = specimens(n_species=6, per_species=3, unnamed=0)
    index = root / "index"
    assert run("-q", "index", "-m", "kmer", "-k", "3", write_fasta(root / "ref.fa", records), "-o", index).exit_code == 0
    return index, records


def _rows(index, fasta_text, tmp_path, name="q.fa"):
    path = tmp_path / name
    path.write_text(fasta_text)
    result = run("classify", "--index", index, path)
    assert result.exit_code == 0, result.stderr
    return tsv(result.stdout)


def _same_call(a, b):
    keys = [k for k in a if k != "query_id"]
    return [a[k] for k in keys] == [b[k] for k in keys]


def test_rna_and_aligned_barcodes_are_classified_like_plain_dna(kmer_index, tmp_path):
    index, records = kmer_index
    query = records[0]
    plain = f">plain\n{query.barcode}\n"
    rna = f">rna\n{query.barcode.replace('T', 'U').lower()}\n"
    middle = len(query.barcode) // 2
    aligned = f">aligned\n{'-' * 40}{query.barcode[:middle]}...--..{query.barcode[middle:]}{'-' * 40}\n"
    rows = _rows(index, plain + rna + aligned, tmp_path)
    assert [r["status"] for r in rows] == ["assigned"] * 3
    assert _same_call(rows[0], rows[1]) and _same_call(rows[0], rows[2])


def test_gaps_only_is_invalid(kmer_index, tmp_path):
    index, _ = kmer_index
    rows = _rows(index, ">gaps\n" + "-" * 300 + "\n", tmp_path)
    assert rows[0]["status"] == "invalid"


def test_an_over_long_record_is_invalid_and_read_in_bounded_memory(kmer_index, tmp_path):
    index, records = kmer_index
    huge = "ACGT" * 500_000  # one 2 Mb line, more than the 64 k piece the reader takes at once
    text = f">huge\n{huge}\n>next\n{records[0].barcode}\n"
    parsed = list(read_sequences(_write(tmp_path, text)))
    assert [r.id for r in parsed] == ["huge", "next"]
    assert len(parsed[0].seq) == MAX_LENGTH + 1 and parsed[1].seq == records[0].barcode
    assert "too long: over 5,000 characters" in barcode_problem(parsed[0].seq)
    path = tmp_path / "huge.fa.gz"
    path.write_bytes(gzip.compress(text.encode()))
    result = run("classify", "--index", index, path)
    assert result.exit_code == 0
    assert [r["status"] for r in tsv(result.stdout)] == ["invalid", "assigned"]
    assert "too long" in result.stderr


def _write(tmp_path, text):
    path = tmp_path / "records.fa"
    path.write_text(text)
    return path


def test_fastq_with_a_short_quality_line_names_the_lengths(tmp_path):
    seq = "ACGT" * 30
    path = _write(tmp_path, f"@r1\n{seq}\n+\n{'I' * 100}\n@r2\n{seq}\n+\n{'I' * 120}\n")
    with pytest.raises(ClibdError, match=r"records.fa:4: FASTQ quality shorter than the sequence \(100 < 120"):
        list(read_sequences(path))
    long_line = _write(tmp_path, f"@r1\n{'A' * 70000}\n+\n{'I' * 70000}\n@r2\n{seq}\n+\n{'I' * 120}\n")
    assert [len(r.seq) for r in read_sequences(long_line)] == [MAX_LENGTH + 1, 120]
    assert [len(r.seq) for r in read_sequences(long_line, max_length=None)] == [70000, 120]


def _tamper(index, name, data: bytes):
    """Replace an index file and re-compute its checksum, as a careful attacker would."""
    import hashlib
    import json

    (index / name).write_bytes(data)
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["sha256"][name] = hashlib.sha256(data).hexdigest()
    (index / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture()
def spare_index(kmer_index, tmp_path):
    import shutil

    index = tmp_path / "spare"
    shutil.copytree(kmer_index[0], index)
    return index, kmer_index[1]


@pytest.mark.parametrize("case", ["calibration", "maps", "nodes", "dim", "escape", "sketch", "modality", "ef",
                                  "above"])
def test_tampered_index_files_are_named_not_internal_errors(spare_index, tmp_path, case):
    import json

    import numpy as np

    index, records = spare_index
    manifest = json.loads((index / "manifest.json").read_text())
    if case == "calibration":
        _tamper(index, "calibration.json", json.dumps({"dna": "not a calibration"}).encode())
    elif case == "maps":  # the right form, but one map's coefficients one short
        calibration = json.loads((index / "calibration.json").read_text())
        fit = next(iter(calibration["dna"]["ranks"].values()))
        fit["maps"][-1]["coef"].pop()
        _tamper(index, "calibration.json", json.dumps(calibration).encode())
    elif case == "nodes":
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((3, 2), dtype=np.float32))
        _tamper(index, "nodes.npy", buffer.getvalue())
    elif case == "dim":
        manifest["dim"] = 512
        (index / "manifest.json").write_text(json.dumps(manifest))
    elif case in ("modality", "ef", "above"):  # a hand-edited manifest
        manifest.update({"modality": "xyz"} if case == "modality" else {"above_order": {"Diptera": "Insecta"}}
                        if case == "above" else {"hnsw": {**manifest["hnsw"], "ef": "x"}})
        (index / "manifest.json").write_text(json.dumps(manifest))
    elif case == "sketch":  # read without the checksums: the file itself must be refused by name
        (index / "sketch.npy").write_bytes((index / "sketch.npy").read_bytes()[:100])
    else:
        (tmp_path / "secret").write_text("x")
        manifest["sha256"]["../secret"] = manifest["sha256"]["records.tsv"]
        (index / "manifest.json").write_text(json.dumps(manifest))
    result = run("classify", "--index", index, *(["--no-verify"] if case == "sketch" else []),
                 write_fasta(tmp_path / "q.fa", records[:1], sintax=False))
    line = error_line(result)
    assert result.exit_code == 1 and "internal error" not in line
    expected = {"calibration": "calibration.json: not a calibration clibd wrote",
                "maps": "calibration.json: not a calibration clibd wrote (ValueError: parameter arrays of the "
                        "wrong length)",
                "nodes": "nodes.npy: expected one graph node number",
                "dim": "manifest.json: dim 512 but index.bin holds 1024-dimensional vectors",
                "escape": "'../secret' is not a plain file name inside the index directory",
                "sketch": "sketch.npy: not a numpy array file clibd wrote",
                "modality": "found 128, 1024, 'xyz'", "ef": "found 'x', 1024, 'dna'",
                "above": "manifest.json: above_order is not as clibd writes it"}[case]
    assert expected in line and line.endswith("rebuild with clibd index")


def test_a_damaged_default_reference_says_to_delete_the_cache(spare_index, tmp_path, monkeypatch):
    import clibd_cli.indexing.bundled as bundled

    index, records = spare_index
    (index / "records.tsv").write_text("damaged\n")
    monkeypatch.setattr(bundled, "default_index", lambda progress=False: index)
    result = run("classify", write_fasta(tmp_path / "q.fa", records[:1], sintax=False))
    assert result.exit_code == 1
    assert f"this is the cached default reference: delete {index} and clibd unpacks it again" in error_line(result)


def test_append_names_a_repeated_id_where_it_is(kmer_index, tmp_path):
    """The refusal named the id but not the file and line of the record, as other input errors do."""
    import shutil

    from fixtures.specimens import Specimen

    index, records = tmp_path / "index", kmer_index[1]
    shutil.copytree(kmer_index[0], index)
    again = write_fasta(tmp_path / "again.fa", [Specimen("new-1", records[0].barcode, records[0].lineage),
                                                *records[:2]])
    line = [n for n, text in enumerate(again.read_text().splitlines(), 1) if text.startswith(">")][1]
    result = run("-q", "index", "-m", "kmer", "-k", "3", again, "-o", index, "--append")
    assert result.exit_code == 1
    assert error_line(result) == (f"clibd: error: {again}:{line}: id {records[0].id} is already in the index (and "
                                  f"1 other record: {records[1].id}); rename or drop them, or rebuild the index "
                                  "without --append")


def test_repeated_query_ids_are_counted_in_one_warning_naming_the_first(kmer_index, tmp_path):
    """Two records with one id make two rows with one id (QIIME 2 refuses such a table): kept,
    and said once, with the first repeat's id and place and how many records repeat an id."""
    index, records = kmer_index
    a, b, c = records[:3]
    first = write_fasta(tmp_path / "q.fa", [a, b, a, c])
    second = write_fasta(tmp_path / "r.fa", [b, a])
    result = run("classify", "--index", index, first, second)
    assert result.exit_code == 0, result.stderr
    assert [row["query_id"] for row in tsv(result.stdout)] == [a.id, b.id, a.id, c.id, b.id, a.id]
    assert result.stderr.count("an earlier record too") == 1
    third = [n for n, line in enumerate(first.read_text().splitlines(), 1) if line.startswith(">")][2]
    assert (f"{first}:{third}: '{a.id}' is the id of an earlier record too (records repeating an earlier id: 3)"
            in result.stderr)
    assert "an earlier record" not in run("classify", "--index", index, second).stderr
    once = write_fasta(tmp_path / "once.fa", [a, b, a])  # a single repeat is said too
    assert "records repeating an earlier id: 1)" in run("classify", "--index", index, once).stderr


def test_repeated_ids_are_found_across_batches_and_merged_runs(monkeypatch):
    """The sorted runs of hashes (8 bytes a distinct id) find every repeat, near or far."""
    import random

    from clibd_cli.io import repeated_ids

    monkeypatch.setattr(repeated_ids, "BATCH", 7)
    monkeypatch.setattr(repeated_ids, "RUN", 40)
    rng = random.Random(3)
    ids = [f"q{rng.randrange(300)}" for _ in range(500)]
    found = repeated_ids.RepeatedIds()
    for line, record_id in enumerate(ids, 1):
        found.add(record_id, f"q.fa:{line}")
    found.flush()
    seen, repeats = set(), []
    for line, record_id in enumerate(ids, 1):
        if record_id in seen:
            repeats.append((record_id, f"q.fa:{line}"))
        seen.add(record_id)
    assert found.repeats == len(repeats) and found.first == repeats[0]
    assert sum(map(len, found.runs)) == len(seen) and max(map(len, found.runs)) <= 40 < len(seen)
    assert found.checked == len(ids) and not found.stopped
    capped = repeated_ids.RepeatedIds(limit=100)  # memory stays bounded: later records go unchecked
    for line, record_id in enumerate(ids, 1):
        capped.add(record_id, f"q.fa:{line}")
    capped.flush()
    assert capped.stopped and capped.checked == 100 and sum(map(len, capped.runs)) <= 100
    assert capped.repeats == sum(1 for record_id, where in repeats if int(where.split(":")[1]) <= 100)


def test_a_truncated_gzip_names_the_line(kmer_index, tmp_path):
    records = kmer_index[1]
    text = "".join(f">r{i}\n{r.barcode}\n" for i in range(20) for r in records)
    packed = gzip.compress(text.encode())
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ClibdError, match=r"cut.fa.gz:\d+: unreadable compressed file"):
        list(read_sequences(path))


def test_archives_and_utf16_are_named_as_what_they_are(tmp_path):
    """A zipped or tarred FASTA, or one Windows saved as 'Unicode', was 'not UTF-8 text (byte
    b'\\x86')' or a header of NUL bytes: each is named, with what to do."""
    import tarfile
    import zipfile

    fasta = tmp_path / "q.fa"
    fasta.write_text(">q\nACGT\n")
    with zipfile.ZipFile(tmp_path / "q.zip", "w") as archive:
        archive.write(fasta, "q.fa")
    with tarfile.open(tmp_path / "q.tar.gz", "w:gz") as archive:
        archive.add(fasta, "q.fa")
    (tmp_path / "u16.fa").write_text(">q\nACGT\n", encoding="utf-16")
    # classify photo.jpg (--images forgotten) or a dataset was 'not UTF-8 text ...; save it as UTF-8'
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    (tmp_path / "d.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    # `gzip -c q.fa.gz > q.gz`: was 'not UTF-8 text (byte b'\x8b')'
    (tmp_path / "twice.gz").write_bytes(gzip.compress(gzip.compress(b">q\nACGT\n")))
    for name, what in (("q.zip", "a ZIP archive; unzip it"), ("q.tar.gz", "a tar archive; extract it"),
                       ("twice.gz", "compressed twice: decompressed, it is gzip-compressed again"),
                       ("u16.fa", "UTF-16 text (Windows' 'Unicode'); save it as UTF-8"),
                       ("photo.jpg", "a JPEG photo, not text (clibd classify takes photos with --images)"),
                       ("d.h5", "an HDF5 file (a dataset or embeddings), not FASTA/FASTQ or table text")):
        with pytest.raises(ClibdError, match="^" + re.escape(f"{tmp_path / name}: is {what}")):
            list(read_sequences(tmp_path / name))
    assert [r.seq for r in read_sequences(fasta)] == ["ACGT"]


def test_a_code_running_pickle_is_refused_without_advice_to_unpickle_it(tmp_path):
    import os

    torch = pytest.importorskip("torch")
    from models.errors import ModelError
    from models.importing import _load_pickle

    class Shell:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Shell()}, path)
    with pytest.raises(ModelError) as caught:
        _load_pickle(path)
    message = str(caught.value)
    assert "refusing to load" in message and "GLOBAL posix.system" in message
    assert "weights_only` set to `False" not in message and "Re-running" not in message


def test_a_byte_order_mark_is_read_past(kmer_index, tmp_path):
    """Windows editors and spreadsheet exports start UTF-8 files with a byte-order mark."""
    index, records = kmer_index
    text = f">q\n{records[0].barcode}\n"
    path = tmp_path / "bom.fa"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = run("classify", "--index", index, path)
    assert result.exit_code == 0, result.stderr
    assert _same_call(tsv(result.stdout)[0], _rows(index, text, tmp_path)[0])


def test_outputs_and_inputs_that_clash_are_usage_errors(kmer_index, tmp_path):
    index, records = kmer_index
    fasta = write_fasta(tmp_path / "q.fa", records[:2], sintax=False)
    same = run("classify", "--index", index, fasta, "-o", tmp_path / "x.tsv", "--summary", tmp_path / "x.tsv")
    assert same.exit_code == 2 and "--summary and -o name the same file" in same.stderr
    assert not (tmp_path / "x.tsv").exists()
    twice = run("classify", "--index", index, "-", "-", input=fasta.read_text())
    assert twice.exit_code == 2 and "standard input ('-') given twice" in twice.stderr
    nan = run("classify", "--index", index, "--min-confidence", "nan", fasta)
    assert nan.exit_code == 2 and "is not a finite number" in nan.stderr
    for empty in (",", ""):  # --taxa "$UNSET" too: not "no filter"
        no_taxa = run("classify", "--index", index, "--taxa", empty, fasta)
        assert no_taxa.exit_code == 2 and "give taxon names" in no_taxa.stderr
    for option, value in [("--seed", "-1"), ("--seed", str(2**64)), ("--threads", "100000")]:
        out_of_range = run(option, value, "classify", "--index", index, fasta)
        assert out_of_range.exit_code == 2 and "is not in the range" in out_of_range.stderr, out_of_range.stderr


def test_a_mistyped_model_is_named_as_the_users(kmer_index, tmp_path):
    index, records = kmer_index
    fasta = write_fasta(tmp_path / "q.fa", records[:1], sintax=False)
    typo = run("classify", "--index", index, "--model", "nosuchmodel", fasta)
    assert typo.exit_code == 2 and "nosuchmodel: not a model directory or a model name" in error_line(typo)


def test_a_reference_too_small_to_calibrate_says_so(tmp_path):
    one = write_fasta(tmp_path / "one.fa", specimens(n_species=1, per_species=1, unnamed=0))
    result = run("index", "-m", "kmer", one, "-o", tmp_path / "index")
    assert result.exit_code == 0, result.stderr
    assert "no species of the reference has two records or more" in result.stderr
    two = write_fasta(tmp_path / "two.fa", specimens(n_species=2, per_species=2, unnamed=0))
    assert "two records or more" not in run("index", "-m", "kmer", two, "-o", tmp_path / "index2").stderr


def test_a_reference_of_one_species_says_its_confidences_know_no_new_species(tmp_path):
    """No taxon to leave out: the calibration knows seen queries only. clibd index and classify say
    so, and classify neither reports an estimate nor a share of new species it cannot apply."""
    records = specimens(n_species=1, per_species=6, unnamed=0)
    built = run("index", "-m", "kmer", write_fasta(tmp_path / "ref.fa", records), "-o", tmp_path / "index")
    assert built.exit_code == 0 and "cannot tell a new species from a known one" in built.stderr, built.stderr
    queries = write_fasta(tmp_path / "q.fa", records[:2], sintax=False)
    for prior in ("auto", "1"):
        result = run("classify", "--index", tmp_path / "index", "--prior-unseen", prior, queries)
        assert result.exit_code == 0 and "whatever --prior-unseen says" in result.stderr, result.stderr
        assert "estimated share" not in result.stderr
        assert [row["prior_unseen"] for row in tsv(result.stdout)] == ["0.0000"] * 2


def test_outputs_that_cannot_be_streams_or_options_that_would_do_nothing_are_refused(kmer_index, tmp_path):
    index, records = kmer_index
    fasta = write_fasta(tmp_path / "q.fa", records[:2], sintax=False)
    for fmt in ("qiime2", "sintax"):
        result = run("classify", "--index", index, "--format", fmt, "--top-k", "3", fasta)
        assert result.exit_code == 2 and "--top-k lists neighbours in tsv, jsonl or blast6" in result.stderr
    summary = run("classify", "--index", index, "--summary", "-", fasta)
    assert summary.exit_code == 2 and "give a path, not '-'" in summary.stderr
    embedded = run("embed", "-m", "kmer", fasta, "-o", "-")
    assert embedded.exit_code == 2 and "give a path, not '-'" in embedded.stderr
    assert not (tmp_path / "-").exists()


def test_commands_that_read_files_say_why_standard_input_will_not_do(kmer_index, tmp_path):
    """`-` is standard input for classify and embed; prepare and index read files (README,
    *Conventions*): a usage error that says why, not click's "Path '-' does not exist"."""
    _, records = kmer_index
    text = write_fasta(tmp_path / "r.fa", records[:4]).read_text()
    first = tmp_path / "r.fa"
    for command, why in ((["prepare", "-"], "reads its input twice"),
                         (["index", "-m", "kmer", "-"], "each process of an index run reads the references"),
                         (["index", "-m", "kmer", first, "-"], "each process of an index run reads")):
        result = run(*command, "-o", tmp_path / "out", input=text)
        assert result.exit_code == 2 and why in result.stderr and "does not exist" not in result.stderr
        assert not (tmp_path / "out").exists()


def test_option_values_that_name_nothing_are_usage_errors(kmer_index, tmp_path):
    """--min-confidence 0 (every label asserted: the cutoff is above 0) and an empty --pairs
    list are refused before any work, with exit 2."""
    index, records = kmer_index
    fasta = write_fasta(tmp_path / "q.fa", records[:2], sintax=False)
    result = run("classify", "--min-confidence", "0", "--index", index, fasta)
    assert result.exit_code == 2 and "--min-confidence" in result.stderr and result.stdout == ""
    result = run("evaluate", "-d", fasta, "--pairs", ",", "-o", tmp_path / "report")
    assert result.exit_code == 2 and "choose from" in result.stderr
    assert not (tmp_path / "report").exists()


def test_an_interrupted_run_exits_130_not_as_a_data_error(kmer_index, tmp_path, monkeypatch):
    from clibd_cli.classification.classifier import Classifier

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Classifier, "classify", interrupted)
    index, records = kmer_index
    out = tmp_path / "out.tsv"
    result = run("classify", "--index", index, write_fasta(tmp_path / "q.fa", records[:2], sintax=False), "-o", out)
    assert result.exit_code == 130 and "clibd: interrupted" in result.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_splits_of_an_input_that_is_no_dataset_are_refused(tmp_path):
    """--split (and --calibrate-split) choose splits of a dataset HDF5: given with FASTA they were
    silently ignored."""
    fasta = write_fasta(tmp_path / "ref.fa", specimens(n_species=3, per_species=3, unnamed=0))
    split = run("index", "-m", "kmer", fasta, "--split", "train", "-o", tmp_path / "ix")
    assert split.exit_code == 2 and "splits train: splits are chosen in a dataset HDF5" in split.stderr
    held = run("index", "-m", "kmer", fasta, "--calibrate-on", fasta, "--calibrate-split", "val", "-o", tmp_path / "iy")
    assert held.exit_code == 2 and "--calibrate-on: splits val" in held.stderr


def test_many_invalid_records_are_listed_up_to_twenty_then_counted(kmer_index, tmp_path):
    index, _ = kmer_index
    queries = tmp_path / "q.fa"
    queries.write_text("".join(f">short{i}\nACGTACGTAC\n" for i in range(25)))
    result = run("classify", "--index", index, queries)
    assert result.exit_code == 0, result.stderr
    assert len(tsv(result.stdout)) == 25  # every record has its row
    listed = [line for line in result.stderr.splitlines() if ": invalid: " in line]
    assert len(listed) == 20 and "short19: invalid:" in listed[-1]
    assert "5 more records with a message like those above, not listed" in result.stderr
    verbose = run("-v", "classify", "--index", index, queries)
    assert sum(": invalid: " in line for line in verbose.stderr.splitlines()) == 25
