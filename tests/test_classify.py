"""``clibd classify``: the TSV contract column by column, every input route, every bad input.

The indexes come from conftest.py (random-weight clibd-tiny, real barcodes and photos as
twins; see fixtures/specimens.py for why the behavioural checks do not depend on the weights).
"""

import gzip
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures.specimens import PHOTOS, Specimen, copy_photos, error_line, run, specimens, tsv, write_fasta

RANKS = ("order", "family", "genus", "species")
CONTRACT = ["query_id", "modality", "status", "order", "family", "genus", "species", "order_conf",
            "family_conf", "genus_conf", "species_conf", "lineage", "nearest_id", "nearest_sim", "strand",
            "prior_unseen"]  # appended last: the share of new species the confidences assume
LETTERS = {"o": "order", "f": "family", "g": "genus", "s": "species"}
LINEAGE = re.compile(r"^([ofgs]):([^,()\s]+)\((\d\.\d\d)\)$")
CLIBD = str(Path(sys.executable).with_name("clibd"))


def originals(refs) -> list[Specimen]:
    """The reference specimens without their ``-b`` twins."""
    return refs.records[::2]


def queries(path: Path, records: list[Specimen]) -> Path:
    """A plain FASTA (ids ``q<ID>``, with a description) of these barcodes."""
    return write_fasta(path, records, sintax=False, prefix="q")


def mutated(record: Specimen, every: int, suffix: str) -> Specimen:
    """The barcode with every ``every``-th base changed: a near but not identical query."""
    swap = str.maketrans("ACGT", "CATG")
    bases = [b.translate(swap) if i % every == 0 else b for i, b in enumerate(record.barcode)]
    return Specimen(record.id + suffix, "".join(bases), record.lineage)


def rows_of(result) -> list[dict[str, str]]:
    assert result.exit_code == 0, result.stderr
    return tsv(result.stdout)


def test_tsv_contract_column_by_column(barcode_refs, tmp_path):
    refs = originals(barcode_refs)
    result = run("classify", "-i", barcode_refs.index, queries(tmp_path / "q.fasta", refs))
    assert result.stdout.splitlines()[0].split("\t") == CONTRACT
    rows = rows_of(result)
    assert [row["query_id"] for row in rows] == [f"q{r.id}" for r in refs]  # one row per record, in order
    for row, ref in zip(rows, refs):
        assert len(row) == len(CONTRACT) and None not in row.values()
        assert row["modality"] == "dna" and row["status"] == "assigned"
        # a query identical to a reference: its twin (or itself) at similarity 1, its lineage
        assert row["nearest_id"] in (ref.id, f"{ref.id}-b") and row["nearest_sim"] == "1.0000"
        lineage = {}
        for entry in row["lineage"].split(","):
            letter, label, conf = LINEAGE.match(entry).groups()
            lineage[LETTERS[letter]] = (label, float(conf))
        assert list(lineage) == list(RANKS)  # every rank some neighbour is labelled at, coarse to fine
        for rank in RANKS:
            conf = row[f"{rank}_conf"]
            assert re.fullmatch(r"[01]\.\d{4}", conf) and 0 <= float(conf) <= 1
            best = lineage[rank][0].replace("_", " ")
            assert best == (ref.lineage[rank] or best)
            assert abs(lineage[rank][1] - float(conf)) <= 0.0051
            if ref.lineage[rank]:
                assert row[rank] == ref.lineage[rank] and float(conf) >= 0.8
            else:  # an unnamed reference: decided by its neighbours named at that rank, if confident
                assert (row[rank] == best) == (float(conf) >= 0.8)
        assert [float(row[f"{r}_conf"]) for r in RANKS] == sorted((float(row[f"{r}_conf"]) for r in RANKS),
                                                                   reverse=True)  # capped by the rank above


def test_min_confidence_hides_labels_never_confidences(barcode_refs, tmp_path):
    refs = originals(barcode_refs)[:12]
    near = [mutated(r, every, f"-m{every}") for r in refs[:6] for every in (9, 4)]
    fasta = queries(tmp_path / "q.fasta", refs + near)
    runs = {cutoff: rows_of(run("classify", "-i", barcode_refs.index, "--min-confidence", cutoff, fasta))
            for cutoff in (0.3, 0.8, 0.99)}
    confs = {cutoff: [[row[f"{r}_conf"] for r in RANKS] + [row["lineage"], row["nearest_id"]] for row in rows]
             for cutoff, rows in runs.items()}
    assert confs[0.3] == confs[0.8] == confs[0.99]
    seen_levels = set()
    for cutoff, rows in runs.items():
        for row in rows:
            for rank in RANKS:
                conf = float(row[f"{rank}_conf"])
                seen_levels.add(conf >= cutoff)
                assert (row[rank] != "") == (conf >= cutoff) or abs(conf - cutoff) < 1e-4, (row, rank)
            status = "assigned" if any(row[r] for r in RANKS) else "unassigned"
            assert row["status"] == status
    assert seen_levels == {True, False}
    assert run("classify", "-i", barcode_refs.index, "--min-confidence", "0", fasta).exit_code == 2


def test_all_unassigned_is_still_success(tiny_model, tmp_path):
    # every reference its own order: the calibration learns that no neighbour's label is ever right
    records = [Specimen(r.id, r.barcode, {rank: f"{rank[0].upper()}{i}" for rank in RANKS})
               for i, r in enumerate(specimens(n_species=4, per_species=2, unnamed=0))]
    index = tmp_path / "index"
    assert run("-q", "index", "-m", tiny_model, write_fasta(tmp_path / "r.fa", records), "-o", index,
               ).exit_code == 0
    rows = rows_of(run("classify", "-i", index, queries(tmp_path / "q.fa", records)))
    assert len(rows) == len(records)
    for row in rows:
        assert row["status"] == "unassigned"
        assert all(row[r] == "" for r in RANKS) and all(row[f"{r}_conf"] == "0.0000" for r in RANKS)
        assert row["lineage"].count("(0.00)") == 4 and row["nearest_id"]


def test_bad_records_are_invalid_rows_with_reasons(barcode_refs, tmp_path):
    good = originals(barcode_refs)[0].barcode
    fasta = tmp_path / "q.fa"
    fasta.write_text(
        f">ok1\n{good}\n"
        ">protein\nMKVLAAGIVGLLLSQEWTRHPAGIVCALLFLAEIPNPQ\n"
        ">short\nACGTACGTTTGACCA\n"
        f">nonly\n{'N' * 658}\n"
        ">empty\n"
        f">dup\n{good.lower()}\n"
        f">dup\n{good}\n"
        f">gappy\n{good[:300]}{'-' * 20}{good[300:]}\n")
    result = run("classify", "-i", barcode_refs.index, fasta)
    rows = rows_of(result)
    assert [r["query_id"] for r in rows] == ["ok1", "protein", "short", "nonly", "empty", "dup", "dup",
                                             "gappy"]
    invalid = {"protein": (3, "protein?"), "short": (5, "too short"), "nonly": (7, "too short: 0"),
               "empty": (9, "empty sequence")}
    for row in rows:
        if row["query_id"] in invalid:
            assert row["status"] == "invalid" and row["modality"] == "dna"
            assert all(row[c] == "" for c in CONTRACT[3:])
            line, reason = invalid[row["query_id"]]
            where = f"{re.escape(str(fasta))}:{line}: {row['query_id']}"
            assert re.search(rf"^clibd: {where}: invalid: .*{reason}", result.stderr, re.M)
        else:
            assert row["status"] == "assigned" and all(row[f"{r}_conf"] for r in RANKS)
    assert rows[5] == rows[6]  # repeated ids are classified independently; case does not matter
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    assert run("-q", "classify", "-i", barcode_refs.index, fasta).stderr == ""


def test_files_gzip_fastq_and_batches_keep_input_order(barcode_refs, tmp_path):
    refs = originals(barcode_refs)[:9]
    a = tmp_path / "a.fasta.gz"  # gzip, multi-line FASTA; the name does not matter, the bytes do
    a.write_bytes(gzip.compress(queries(tmp_path / "a.tmp", refs[:4]).read_bytes()))
    fastq = tmp_path / "b.fq"
    fastq.write_text("".join(f"@r{r.id} run 7\n{r.barcode}\n+\n{'I' * len(r.barcode)}\n"
                             + ("@bad\nACGT\n+\nIIII\n" if i == 1 else "") for i, r in enumerate(refs[4:])))
    expected = [f"q{r.id}" for r in refs[:4]] + [f"r{refs[4].id}", f"r{refs[5].id}", "bad"] + \
               [f"r{r.id}" for r in refs[6:]]
    small = rows_of(run("classify", "-i", barcode_refs.index, "--batch-size", 2, a, fastq))
    whole = rows_of(run("classify", "-i", barcode_refs.index, a, fastq))
    assert [r["query_id"] for r in small] == expected
    assert small == whole  # batching changes nothing
    assert [r["status"] for r in small].count("invalid") == 1 and small[6]["status"] == "invalid"


def test_stdin_plain_and_gzip(barcode_refs, tmp_path):
    fasta = queries(tmp_path / "q.fa", originals(barcode_refs)[:5])
    from_file = run("classify", "-i", barcode_refs.index, fasta).stdout
    packed = gzip.compress(fasta.read_bytes())
    assert run("classify", "-i", barcode_refs.index, "-", input=packed).stdout == from_file
    implicit = run("classify", "-i", barcode_refs.index, input=fasta.read_text())  # no input: stdin
    assert implicit.stdout == from_file


def test_usage_errors_exit_2(barcode_refs, monkeypatch, tmp_path):
    fasta = queries(tmp_path / "q.fa", originals(barcode_refs)[:1])
    monkeypatch.setattr("clibd_cli.commands.classify._stdin_is_terminal", lambda: True)
    result = run("classify", "-i", barcode_refs.index)
    assert result.exit_code == 2 and "give FASTA/FASTQ files" in result.stderr
    for args in (["--format", "xml"], ["--top-k", "0"], ["--min-confidence", "1.5"], [tmp_path / "nope.fa"]):
        assert run("classify", "-i", barcode_refs.index, fasta, *args).exit_code == 2, args


def test_malformed_input_is_one_error_line_with_its_line_number(barcode_refs, tmp_path):
    index = barcode_refs.index
    text = tmp_path / "notes.txt"
    text.write_text("\nsample sheet for plate 7\n>x\nACGT\n")
    result = run("classify", "-i", index, text)
    assert result.exit_code == 1 and result.stdout == ""  # nothing written before the first record parses
    assert error_line(result) == (f"clibd: error: {text}:2: expected a FASTA header ('>') or a FASTQ record "
                                  "('@'), found 'sample sheet for plate 7'")
    fastq = tmp_path / "cut.fq"
    fastq.write_text("@r1\nACGTACGT\n+\nIIIIIIII\n@r2\nACGTACGT\n+\nIII\n")
    assert f"{fastq}:8: FASTQ quality" in error_line(run("classify", "-i", index, fastq))
    broken = tmp_path / "cut.fa.gz"
    broken.write_bytes(gzip.compress(b">r1\n" + b"ACGT" * 5000)[:30])
    assert "unreadable compressed file" in error_line(run("classify", "-i", index, broken))
    assert "is a JPEG photo, not text" in error_line(run("classify", "-i", index, PHOTOS[0]))


def test_empty_input_is_a_header_and_a_warning(barcode_refs, tmp_path):
    for content in (b"", b"\n \n", gzip.compress(b"")):
        empty = tmp_path / "empty.fa"
        empty.write_bytes(content)
        result = run("classify", "-i", barcode_refs.index, empty)
        assert result.exit_code == 0
        assert result.stdout == "\t".join(CONTRACT) + "\n"
        assert "no records to classify" in result.stderr


def _bomb(path: Path) -> Path:
    """A tiny PNG whose header claims 10000 x 10000 pixels."""
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    struct.pack_into(">II", data, 16, 10000, 10000)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


# PIL warns before clibd's own guard refuses the image; see the report on clibd_cli/io/images.py
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_photo_folder_with_odd_and_broken_files(photo_refs, tmp_path):
    folder = tmp_path / "plate"
    refs = originals(photo_refs)
    copy_photos(folder, ["a_copy", "b_copy"], first=0)
    copy_photos(folder / "nested", ["c_copy"], first=2)
    photo = Image.open(PHOTOS[3]).reduce(8)
    photo.convert("L").save(folder / "gray.png")
    photo.convert("RGBA").save(folder / "rgba.png")
    photo.convert("P").save(folder / "palette.png")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((np.asarray(photo.convert("L"), dtype=np.uint16) * 257)).save(folder / "deep16.png")
    for name in ("web.webp", "flat.bmp", "palette.gif"):  # were passed over: "convert them to JPEG or PNG"
        photo.save(folder / name)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "half.jpg").write_bytes(PHOTOS[4].read_bytes()[:5000])
    (folder / "fake.jpg").write_text("not a photo\n")
    _bomb(folder / "bomb.png")
    (folder / "notes.txt").write_text("ignored: not a photo name\n")
    result = run("classify", "-i", photo_refs.index, "--images", folder)
    rows = rows_of(result)
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".txt")
    assert [r["query_id"] for r in rows] == [str(p) for p in found]
    by_name = {Path(r["query_id"]).name: r for r in rows}
    for name, reason in (("zero.jpg", "empty image file"), ("half.jpg", "unreadable image"),
                         ("fake.jpg", "not an image"), ("bomb.png", "decompression bomb")):
        row = by_name.pop(name)
        assert row["status"] == "invalid" and row["modality"] == "image"
        assert all(row[c] == "" for c in CONTRACT[3:])
        where = re.escape(str(folder / name))
        assert re.search(rf"^clibd: {where}: invalid: .*{reason}", result.stderr, re.M)
    for row in by_name.values():
        assert row["modality"] == "image" and row["status"] != "invalid"
        assert all(re.fullmatch(r"[01]\.\d{4}", row[f"{r}_conf"]) for r in RANKS)
    for name, ref in (("a_copy.jpg", refs[0]), ("b_copy.jpg", refs[1]), ("c_copy.jpg", refs[2])):
        # the same photo as a reference is embedded as it was for the index. (Its lineage is not
        # checked: a random tiny ViT maps all these plate photos within 1e-4 of each other.)
        row = by_name[name]
        assert row["nearest_id"] in (ref.id, f"{ref.id}-b") and row["nearest_sim"] == "1.0000"


def test_a_photo_given_twice_is_counted_as_a_repeated_id(photo_refs, tmp_path):
    """``--images plate/ --images plate/a.jpg`` gave two rows of one query_id with no word, where two
    barcodes of one id (and ``clibd embed`` of the same photos) are warned about."""
    a, b = copy_photos(tmp_path / "plate", ["a", "b"])
    result = run("classify", "-i", photo_refs.index, "--images", tmp_path / "plate", "--images", a)
    assert [r["query_id"] for r in rows_of(result)] == [str(a), str(b), str(a)]
    assert result.stderr.count("an earlier record too") == 1
    assert f"{a}: '{a}' is the id of an earlier record too (records repeating an earlier id: 1)" \
        in result.stderr
    once = run("classify", "-i", photo_refs.index, "--images", tmp_path / "plate")
    assert once.exit_code == 0 and "an earlier record" not in once.stderr


def test_indexes_refuse_queries_they_are_not_calibrated_for(barcode_refs, photo_refs, tmp_path):
    fasta = queries(tmp_path / "q.fa", originals(barcode_refs)[:2])
    result = run("classify", "-i", barcode_refs.index, fasta, "--images", photo_refs.photos)
    assert "cannot classify image queries (calibrated for: dna, dna<500)" in error_line(result)
    assert result.stdout == ""
    result = run("classify", "-i", photo_refs.index, fasta)
    assert "cannot classify dna queries (calibrated for: image)" in error_line(result)
    # a photo given without --images to a photo index was refused as a dna query the index cannot take
    photo = sorted(photo_refs.photos.glob("*.jpg"))[0]
    result = run("classify", "-i", photo_refs.index, photo)
    assert error_line(result) == (f"clibd: error: {photo}: is a JPEG photo, not text (clibd classify takes "
                                  "photos with --images)")
    result = run("classify", "-i", photo_refs.index, photo_refs.photos)  # was click's "is a directory."
    assert result.exit_code == 2 and error_line(result) == (
        f"clibd: error: {photo_refs.photos}: is a directory, expected a file (photos and their folders go "
        "with --images)")


def test_fused_specimens_and_their_fallbacks(specimen_refs, tmp_path):
    refs = originals(specimen_refs)
    a, b, c, d = refs[:4]
    fasta = tmp_path / "q.fa"
    fasta.write_text(f">{a.id}\n{a.barcode}\n>{b.id}\n{b.barcode}\n>{c.id}\nACGTTT\n>{d.id}\n{d.barcode}\n"
                     f">{a.id} again\n{a.barcode}\n")
    photos = tmp_path / "photos"
    copy_photos(photos, [a.id, c.id, "lonely"], first=5)
    (photos / f"{d.id}.1024px.jpg").write_bytes(b"")
    (photos / "trash.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = run("classify", "-i", specimen_refs.index, fasta, "--images", photos, "--top-k", 3,
                 "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["query_id"], r["modality"], r["status"] == "invalid") for r in records] == [
        (a.id, "image+dna", False), (b.id, "dna", False), (c.id, "image", False), (d.id, "dna", False),
        (a.id, "dna", False),  # a repeated id: the photo went to the first record
        (str(photos / "lonely.jpg"), "image", False), (str(photos / "trash.jpg"), "image", True)]
    assert "barcode not used (too short" in records[2]["note"]
    assert "photo not used (empty" in records[3]["note"]
    assert f"{fasta}:5: {c.id}: barcode not used" in result.stderr
    assert f"{photos / 'trash.jpg'}: invalid: " in result.stderr
    for record in records[:-1]:
        assert set(record["ranks"]) == set(RANKS) and len(record["neighbours"]) == 3
        assert all(0 <= record["ranks"][r]["confidence"] <= 1 for r in RANKS)
    assert records[-1]["problem"] and "ranks" not in records[-1]


def test_index_of_another_model_or_without_its_model_is_refused(barcode_refs, tmp_path):
    import torch

    from models import create_model, save_model

    fasta = queries(tmp_path / "q.fa", originals(barcode_refs)[:1])
    torch.manual_seed(1)
    other = save_model(create_model("clibd-tiny"), tmp_path / "other")
    message = error_line(run("classify", "-i", barcode_refs.index, "-m", other, fasta))
    assert "index was built with model" in message and "rebuild with clibd index" in message
    moved = tmp_path / "moved"
    shutil.copytree(barcode_refs.index, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["model"] = str(tmp_path / "gone")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    assert "is not available; give it with --model" in error_line(run("classify", "-i", moved, fasta))


def test_corrupted_index_is_refused(barcode_refs, tiny_model, tmp_path):
    fasta = queries(tmp_path / "q.fa", originals(barcode_refs)[:1])
    for name in ("records.tsv", "index.bin", "calibration.json", "nodes.npy"):
        broken = tmp_path / name
        shutil.copytree(barcode_refs.index, broken)
        data = (broken / name).read_bytes()
        (broken / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        message = error_line(run("classify", "-i", broken, fasta))
        assert message == f"clibd: error: {broken / name}: checksum mismatch (corrupted or modified); " \
                          "rebuild with clibd index"
    incomplete = tmp_path / "incomplete"
    shutil.copytree(barcode_refs.index, incomplete)
    (incomplete / "nodes.npy").unlink()
    message = error_line(run("classify", "-i", incomplete, fasta))
    assert message.endswith("nodes.npy: missing; rebuild with clibd index")
    assert "not a clibd index directory" in error_line(run("classify", "-i", tmp_path, fasta))
    model = error_line(run("classify", "-i", tiny_model, fasta))  # a model where the index goes
    assert "not a clibd index directory (no manifest.json); it holds a model: give it as --model" in model
    relabelled = tmp_path / "relabelled"
    shutil.copytree(barcode_refs.index, relabelled)
    records = relabelled / "records.tsv"
    text = records.read_text()
    records.write_text(text.replace("\tLepidoptera\t", "\tLEPIDOPTERA\t"))
    assert records.read_text() != text
    assert run("classify", "-i", relabelled, fasta).exit_code == 1
    assert run("classify", "-i", relabelled, "--no-verify", fasta).exit_code == 0


def test_k_and_top_k_larger_than_the_reference(tiny_model, tmp_path):
    two_species = specimens(n_species=2, per_species=1, unnamed=0)
    records = two_species + specimens(n_species=1, per_species=2, unnamed=0)[1:]
    index = tmp_path / "index"
    assert run("-q", "index", "-m", tiny_model, write_fasta(tmp_path / "r.fa", records), "-o", index,
               ).exit_code == 0
    fasta = queries(tmp_path / "q.fa", records)
    assert all(row["status"] != "invalid" for row in rows_of(run("classify", "-i", index, fasta)))
    rows = rows_of(run("classify", "-i", index, "--top-k", 50, fasta))
    assert [int(r["hit"]) for r in rows] == [1, 2, 3] * 3  # clamped to the 3 references


def test_top_k_long_format(barcode_refs, tmp_path):
    refs = originals(barcode_refs)[:4]
    fasta = queries(tmp_path / "q.fa", refs)
    with open(fasta, "a") as handle:
        handle.write(">tiny\nACGT\n")
    result = run("classify", "-i", barcode_refs.index, "--top-k", 5, fasta)
    header = ["query_id", "hit", "reference_id", "similarity", *RANKS]
    assert result.stdout.splitlines()[0].split("\t") == header
    rows = rows_of(result)
    assert len(rows) == 4 * 5 + 1
    lineage = {r.id: r.lineage for r in barcode_refs.records}
    for i, ref in enumerate(refs):
        hits = rows[5 * i:5 * i + 5]
        assert {h["query_id"] for h in hits} == {f"q{ref.id}"} and [h["hit"] for h in hits] == list("12345")
        sims = [float(h["similarity"]) for h in hits]
        assert sims == sorted(sims, reverse=True) and sims[0] == 1.0
        assert all(len(h["similarity"].split(".")[1]) == 4 for h in hits)  # four decimals, as nearest_sim
        assert {hits[0]["reference_id"], hits[1]["reference_id"]} == {ref.id, f"{ref.id}-b"}
        for hit in hits:
            assert [hit[r] for r in RANKS] == [lineage[hit["reference_id"]][r] or "" for r in RANKS]
    assert rows[-1] == {"query_id": "tiny", "hit": "0", "reference_id": "", "similarity": "",
                        **{r: "" for r in RANKS}}


def test_jsonl_matches_the_tsv(barcode_refs, tmp_path):
    fasta = queries(tmp_path / "q.fa", originals(barcode_refs)[:3])
    with open(fasta, "a") as handle:
        handle.write(">tiny\nACGT\n")
    table = rows_of(run("classify", "-i", barcode_refs.index, fasta))
    records = [json.loads(line) for line in run("classify", "-i", barcode_refs.index, "--format", "jsonl",
                                                fasta).stdout.splitlines()]
    assert [r["query_id"] for r in records] == [row["query_id"] for row in table]
    for record, row in zip(records, table):
        assert record["status"] == row["status"] and record["modality"] == row["modality"]
        if row["status"] == "invalid":
            assert record["problem"] == "too short: 4 unambiguous bases (at least 100 needed)"
            continue
        assert record["lineage"] == row["lineage"] and record["nearest_id"] == row["nearest_id"]
        for rank in RANKS:
            entry = record["ranks"][rank]
            assert f"{entry['confidence']:.4f}" == row[f"{rank}_conf"]
            assert (row[rank] or None) == (entry["label"] if entry["assigned"] else None)


def test_output_file_is_written_atomically(barcode_refs, tmp_path):
    good = queries(tmp_path / "good.fa", originals(barcode_refs)[:4])
    out = tmp_path / "out" / "predictions.tsv"
    out.parent.mkdir()
    result = run("classify", "-i", barcode_refs.index, good, "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_text() == run("classify", "-i", barcode_refs.index, good).stdout
    out.write_text("previous run\n")
    fastq = tmp_path / "cut.fq"
    fastq.write_text(f"@r1\n{originals(barcode_refs)[0].barcode}\n+\nII\n")
    # the FASTQ error comes after some batches were written
    result = run("classify", "-i", barcode_refs.index, "--batch-size", 1, good, fastq, "-o", out)
    assert result.exit_code == 1 and "FASTQ quality" in error_line(result)
    assert out.read_text() == "previous run\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.tsv"]
    # a missing folder is refused before any work (exit 2, tests/test_outputs.py)
    assert run("classify", "-i", barcode_refs.index, good, "-o", tmp_path / "no" / "such.tsv").exit_code == 2


def test_broken_pipe_into_head_is_quiet(barcode_refs, tmp_path):
    fasta = tmp_path / "many.fa"
    fasta.write_text(barcode_refs.fasta.read_text() * 12)  # ~670 queries: more than a pipe buffer of output
    command = f"{CLIBD} classify -i {barcode_refs.index} --batch-size 32 {fasta} | head -n 2; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert result.returncode == 1  # clibd's own status (DESIGN.md: 1, as for any writer whose reader left)
    assert result.stdout.splitlines()[0].split("\t") == CONTRACT and len(result.stdout.splitlines()) == 2
    assert "Traceback" not in result.stderr and "Broken" not in result.stderr and "error" not in result.stderr


def test_a_runs_photos_are_decoded_and_embedded_a_batch_at_a_time(photo_refs, monkeypatch):
    """A run's first block holds up to 10,000 queries (the share of new species is estimated on
    them): their photos' pixels at once would be GBs, so they are decoded and embedded
    ``batch_size`` at a time, with the same results as all at once."""
    from clibd_cli.classification.classifier import Classifier
    from clibd_cli.classification.queries import Query
    from clibd_cli.embedding.embedder import Embedder

    photos = sorted(photo_refs.photos.glob("*.jpg"))
    queries = [Query(p.stem, image=p) for p in photos] + [Query("fused", image=photos[0], barcode="ACGT" * 150),
                                                           Query("gone", image=photo_refs.photos / "gone.jpg")]
    sizes: list[int] = []
    embed = Embedder.images
    monkeypatch.setattr(Embedder, "images", lambda self, images: sizes.append(len(images)) or embed(self, images))
    small = Classifier(photo_refs.index, batch_size=3).classify(queries)
    assert max(sizes) <= 3 and sum(sizes) == len(photos)
    whole = Classifier(photo_refs.index, batch_size=64).classify(queries)
    assert max(sizes) == len(photos)  # one call for them all
    assert [r.prediction.labels for r in small[:-2]] == [r.prediction.labels for r in whole[:-2]]
    assert small[-1].problem and small[-1].prediction is None
    assert "no calibration for image+dna" in small[-2].problem  # and its photo never embedded (sizes above)


def test_openmp_waits_asleep_from_torchs_first_import(barcode_refs, tmp_path):
    """OMP_WAIT_POLICY is read once, when torch loads OpenMP: classify loads its model (and so torch)
    before it applies --threads, so the policy must be set before then, or it is set for nothing."""
    probe = (
        "import os, sys\n"
        "class Probe:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            print('policy at import:', os.environ.get('OMP_WAIT_POLICY'), file=sys.stderr)\n"
        "            sys.meta_path.remove(self)\n"
        "sys.meta_path.insert(0, Probe())\n"
        "from clibd_cli.main import cli\n"
        "cli(sys.argv[1:])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", probe, "classify", "-i", str(barcode_refs.index),
                             str(barcode_refs.fasta), "-o", str(tmp_path / "out.tsv")],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "policy at import: PASSIVE" in result.stderr, result.stderr
    # train's threads work nearly without pause, and trained fewer samples a second asleep: left as is
    at_exit = ("import atexit, os, sys\n"
               "atexit.register(lambda: print('policy:', os.environ.get('OMP_WAIT_POLICY'), file=sys.stderr))\n"
               "from clibd_cli.main import cli\n"
               "cli(sys.argv[1:])\n")
    for command, policy in (("train", "None"), ("embed", "PASSIVE")):
        told = subprocess.run([sys.executable, "-c", at_exit, command, "--help"], capture_output=True, text=True,
                              env=env)
        assert f"policy: {policy}" in told.stderr, (command, told.stderr)
