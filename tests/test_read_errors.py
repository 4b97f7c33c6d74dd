"""Simulated sequencing errors (`clibd_cli/classification/read_errors.py`) and
`clibd index --calibrate-errors`: confidences fitted on held-out reads with errors too."""

import json
import random

from fixtures.specimens import run, specimens, tsv, write_fasta

from clibd_cli.classification.read_errors import add_reads, with_errors


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def test_errors_are_seeded_and_at_the_rate_asked():
    rng = random.Random(1)
    barcode = "".join(rng.choice("ACGT") for _ in range(3000))
    assert with_errors(barcode, 0.0, random.Random(0)) == barcode
    noisy = with_errors(barcode, 0.03, random.Random(7))
    assert noisy == with_errors(barcode, 0.03, random.Random(7)) != barcode
    assert set(noisy) <= set("ACGT")
    assert 0.02 * len(barcode) < _edit_distance(barcode, noisy) < 0.04 * len(barcode)  # ~90 errors expected
    assert len(noisy) != len(barcode)  # insertions and deletions, not substitutions alone


def test_held_out_reads_are_copies_that_read_with_a_frame_break():
    from clibd_cli.reference.sources import References

    def held_out() -> References:
        found = References("dna")
        for r in records:
            found.add(r.id, r.lineage, r.barcode)
        return found

    records = specimens(n_species=8, per_species=2, unnamed=0)
    found = held_out()
    added = add_reads(found, 0.03)
    assert len(records) // 2 < added <= len(records) == len(found) - added
    assert found.items[:len(records)] == [r.barcode for r in records]  # the originals kept as they were
    for i in range(len(records), len(found)):
        original = found.ids.index(found.ids[i].removesuffix("~read"))
        assert found.ids[i].endswith("~read") and found.items[i] != found.items[original]
        assert all(values[i] == values[original] for values in found.labels.values())
    again = held_out()
    add_reads(again, 0.03)
    assert again.items == found.items  # the same errors on every run


def test_frame_breaks_tell_reads_with_indels_from_clean_barcodes():
    from clibd_cli.classification.query_kinds import read_queries
    from clibd_cli.embedding.translation import frame_breaks

    barcodes = [r.barcode for r in specimens(n_species=8, per_species=2, unnamed=0)]
    assert frame_breaks(barcodes).tolist() == [0] * len(barcodes)  # COI on its own strand: no stop
    shifted = [b[:300] + "A" + b[300:] for b in barcodes]  # one insertion: the rest in another frame
    assert (frame_breaks(shifted) > 0).mean() >= 0.75
    assert read_queries(shifted).tolist() == (frame_breaks(shifted) > 0).tolist()
    assert not read_queries([b[:450] for b in shifted]).any()  # partial barcodes are dna<500 queries


def test_reads_with_errors_get_their_own_calibration(tmp_path, monkeypatch):
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
    records = [r for r in specimens(n_species=30, per_species=6, unnamed=0)]
    species = sorted({r.lineage["species"] for r in records})
    new = set(species[::5])  # absent from the reference: all their records are held out
    held_out, kept = [], {}
    for r in records:
        if r.lineage["species"] in new or kept.get(r.lineage["species"], 0) < 2:
            held_out.append(r)
            kept[r.lineage["species"]] = kept.get(r.lineage["species"], 0) + 1
    references = [r for r in records if r not in held_out]
    ref_fa, held_fa = write_fasta(tmp_path / "ref.fa", references), write_fasta(tmp_path / "held.fa", held_out)
    clean, aware = tmp_path / "clean", tmp_path / "aware"
    assert run("-q", "index", "-m", "kmer", ref_fa, "-o", clean, "--calibrate-on", held_fa).exit_code == 0
    built = run("index", "-m", "kmer", ref_fa, "-o", aware, "--calibrate-on", held_fa, "--calibrate-errors", "0.03")
    assert built.exit_code == 0, built.stderr
    assert "reads with a frame break (dna~) calibrated on" in built.stderr
    calibrations = [json.loads((path / "calibration.json").read_text()) for path in (clean, aware)]
    assert "dna~" not in calibrations[0]
    assert calibrations[1]["dna"] == calibrations[0]["dna"]  # clean barcodes: fitted on the same queries
    reads = calibrations[1]["dna~"]["fitted_on"]["held_out_queries"]
    assert len(held_out) // 2 < sum(reads) <= len(held_out)
    assert calibrations[1]["dna~"]["ranks"]["species"]["maps"] != calibrations[1]["dna"]["ranks"]["species"]["maps"]
    assert "dna, dna<500, dna~" in run("index", "info", aware).stdout

    # known species' reads with errors (not the held-out ones' errors): named far more often
    known = [r for r in held_out if r.lineage["species"] not in new]
    noisy = [type(r)(f"{r.id}-read", with_errors(r.barcode, 0.03, random.Random(r.id)), r.lineage) for r in known]
    reads_fa = write_fasta(tmp_path / "reads.fa", noisy, sintax=False)
    named = {}
    for path in (clean, aware):
        result = run("classify", "--index", path, reads_fa)
        assert result.exit_code == 0, result.stderr
        named[path] = sum(row["species"] == r.lineage["species"] for row, r in zip(tsv(result.stdout), noisy))
        assert ("dna~ queries" in result.stderr) == (path == aware)
    assert named[aware] > named[clean] + len(noisy) // 4, named
    clean_run = run("classify", "--index", aware, write_fasta(tmp_path / "q.fa", known, sintax=False))
    assert "dna~" not in clean_run.stderr  # clean barcodes read the clean calibration


def test_calibrate_errors_is_refused_where_it_cannot_work(tmp_path, monkeypatch):
    records = [r for r in specimens(n_species=8, per_species=5) if r.lineage["species"]]
    new = {records[0].lineage["species"]}
    held_out = [r for r in records if r.lineage["species"] in new] + [
        r for r in records[::5] if r.lineage["species"] not in new]
    references = [r for r in records if r not in held_out]
    ref_fa, held_fa = write_fasta(tmp_path / "ref.fa", references), write_fasta(tmp_path / "held.fa", held_out)
    alone = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--calibrate-errors", "0.01")
    assert alone.exit_code == 2 and "--calibrate-errors goes with --calibrate-on" in alone.stderr
    too_many = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--calibrate-on", held_fa,
                   "--calibrate-errors", "0.5")
    assert too_many.exit_code == 2 and "--calibrate-errors" in too_many.stderr
    few = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "few", "--calibrate-on", held_fa,
              "--calibrate-errors", "0.03")
    assert few.exit_code == 0 and "fewer than the 200 needed to calibrate for reads with errors" in few.stderr
    assert "dna~" not in json.loads((tmp_path / "few" / "calibration.json").read_text())
    # a reference whose barcodes do not read as protein (rRNA, ITS): nothing tells a read from a clean one
    monkeypatch.setattr("clibd_cli.reference.sketch.STOP_FLOOR_QUANTILE", -1.0)
    refused = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--calibrate-on", held_fa,
                  "--calibrate-errors", "0.03")
    assert refused.exit_code == 1 and "do not read as protein" in refused.stderr
    assert not (tmp_path / "x").exists()  # nothing half-written
