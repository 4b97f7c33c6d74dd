"""Simulated sequencing errors (`clibd_cli/classification/read_errors.py`) and
`clibd index --calibrate-errors`: confidences fitted on held-out reads with errors too."""

import json
import random

import numpy as np

from fixtures.specimens import run, specimens, tsv, write_fasta

from clibd_cli.classification.read_errors import held_out_reads
from clibd_cli.io.sequences import with_errors


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


def test_a_lower_case_barcode_gets_the_errors_of_its_upper_case_twin():
    """An index of lower-case (soft-masked) reference barcodes is calibrated for reads as the same
    barcodes in upper case (the copies of lower-case bases drew other substitutions: another dna~
    calibration)."""
    rng = random.Random(2)
    barcode = "".join(rng.choice("ACGT") for _ in range(700))
    assert with_errors(barcode.lower(), 0.02, random.Random(5)) == with_errors(barcode, 0.02, random.Random(5))


def test_a_draw_is_read_to_the_last_bit_as_before_with_errors_moved():
    """The same reads for the same seed as before ``with_errors`` moved to io/sequences: a draw ``u``
    is an error where ``u * 3 / rate`` is under 3 (an insertion from 1, a deletion from 2), that
    product rounded as it was (``u * (3 / rate)`` rounds the other way for these draws)."""

    class Drawn(random.Random):
        def __init__(self, draw: float) -> None:
            super().__init__(0)
            self.draw = draw

        def random(self) -> float:
            return self.draw

    drawn = ((0.8444218515250481, 0.8444218515250481), (0.5046868558173903, 0.33645790387826013),
             (0.9081128851953352, 0.6054085901302234))  # deleted, deleted, followed by an insertion
    assert [len(with_errors("C", rate, Drawn(draw))) for rate, draw in drawn] == [0, 0, 2]


def test_held_out_reads_are_copies_that_read_with_a_frame_break():
    from clibd_cli.reference.sources import References

    records = specimens(n_species=8, per_species=2, unnamed=0)
    found = References("dna")
    for r in records:
        found.add(r.id, r.lineage, r.barcode)
    reads, rates = held_out_reads(found, (0.03,))
    assert len(records) // 2 < len(reads) <= len(records) and rates == [0.03] * len(reads)
    assert found.items == [r.barcode for r in records]  # the originals untouched
    for i, record_id in enumerate(reads.ids):
        original = found.ids.index(record_id)
        assert reads.items[i] != found.items[original]
        assert all(reads.labels[rank][i] == found.labels[rank][original] for rank in found.labels)
    assert held_out_reads(found, (0.03,))[0].items == reads.items  # the same errors on every run
    mixed, rates = held_out_reads(found, (0.03, 0.0))  # every second copy without errors: never a read
    assert set(mixed.ids) <= set(found.ids[::2]) and set(rates) == {0.03} and mixed.items == [
        item for record_id, item in zip(reads.ids, reads.items) if record_id in mixed.ids]


def _named_reads(tmp_path, indexes, records, rate: float, kind: str = "dna~") -> dict:
    """Reads with errors of ``records`` classified by each index: how many name their species,
    and whether stderr reports ``kind`` queries."""
    noisy = [type(r)(f"{r.id}-read", with_errors(r.barcode, rate, random.Random(r.id)), r.lineage) for r in records]
    reads_fa = write_fasta(tmp_path / "reads.fa", noisy, sintax=False)
    named = {}
    for path in indexes:
        result = run("classify", "--index", path, reads_fa)
        assert result.exit_code == 0, result.stderr
        hits = sum(row["species"] == r.lineage["species"] for row, r in zip(tsv(result.stdout), noisy))
        named[path] = (hits, f"{kind} queries" in result.stderr)
    return named


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
    assert run("-q", "index", "-m", "kmer", ref_fa, "-o", clean, "--calibrate-on", held_fa,
               "--calibrate-errors", "0").exit_code == 0
    built = run("index", "-m", "kmer", ref_fa, "-o", aware, "--calibrate-on", held_fa, "--calibrate-errors", "0.03")
    assert built.exit_code == 0, built.stderr
    assert "reads with a frame break (dna~) calibrated on" in built.stderr
    calibrations = [json.loads((path / "calibration.json").read_text()) for path in (clean, aware)]
    assert "dna~" not in calibrations[0]
    assert calibrations[1]["dna"] == calibrations[0]["dna"]  # clean barcodes: fitted on the same queries
    reads = calibrations[1]["dna~"]["fitted_on"]["held_out_queries"]
    assert len(held_out) // 2 < sum(reads) <= len(held_out)
    assert calibrations[1]["dna~"]["ranks"]["species"]["maps"] != calibrations[1]["dna"]["ranks"]["species"]["maps"]
    assert "dna, dna<500, dna<500~, dna~" in run("index", "info", aware).stdout
    assert "dna<500~" not in calibrations[0] and calibrations[1]["dna<500~"]["fitted_on"]["held_out_queries"]
    assert "contained_slack" not in calibrations[1]["dna<500~"]  # held missing a few 5-mers: learned models' only
    assert "contained_slack" not in calibrations[1]["dna<500"] and calibrations[1]["dna<500"]["contained_search"]

    # known species' reads with errors (not the held-out ones' errors): named far more often
    known = [r for r in held_out if r.lineage["species"] not in new]
    named = _named_reads(tmp_path, (clean, aware), known, 0.03)
    assert [kind for _, kind in named.values()] == [False, True]  # reads read dna~ where it is
    assert named[aware][0] > named[clean][0] + len(known) // 4, named
    # partial reads (300 bases of the same barcodes, with errors) read dna<500~ where it is
    cut = [type(r)(r.id, r.barcode[100:400], r.lineage) for r in known]
    partial = _named_reads(tmp_path, (clean, aware), cut, 0.03, "dna<500~")
    assert [kind for _, kind in partial.values()] == [False, True]
    assert partial[aware][0] >= partial[clean][0] + 4, partial  # 7 of 34 against 1
    clean_run = run("classify", "--index", aware, write_fasta(tmp_path / "q.fa", known, sintax=False))
    assert "dna~" not in clean_run.stderr  # clean barcodes read the clean calibration


def test_reads_are_calibrated_on_the_references_own_copies_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
    records = [r for r in specimens(n_species=30, per_species=6, unnamed=0)]
    queries = records[::6]  # one record of each species: its reads are the queries, the rest the reference
    references = [r for r in records if r not in queries]
    ref_fa = write_fasta(tmp_path / "ref.fa", references)
    plain, default = tmp_path / "plain", tmp_path / "default"
    assert run("-q", "index", "-m", "kmer", ref_fa, "-o", plain, "--calibrate-errors", "0").exit_code == 0
    built = run("index", "-m", "kmer", ref_fa, "-o", default)
    assert built.exit_code == 0, built.stderr
    calibrations = [json.loads((path / "calibration.json").read_text()) for path in (plain, default)]
    assert "dna~" not in calibrations[0] and calibrations[1]["dna"] == calibrations[0]["dna"]
    assert "dna<500~" not in calibrations[1]  # partial reads: only with --calibrate-on (too sure without)
    assert len(references) // 2 < calibrations[1]["dna~"]["fitted_on"]["pseudo_queries"][0] <= len(references)
    for rate in (0.02, 0.04):  # the maps read the run's rate, told from its reads' windows
        named = _named_reads(tmp_path, (plain, default), queries, rate)
        assert named[default][0] >= named[plain][0] + 3, (rate, named)  # 8 against 5, 7 against 3


def test_calibrate_errors_is_refused_where_it_cannot_work(tmp_path, monkeypatch):
    records = [r for r in specimens(n_species=8, per_species=5) if r.lineage["species"]]
    new = {records[0].lineage["species"]}
    held_out = [r for r in records if r.lineage["species"] in new] + [
        r for r in records[::5] if r.lineage["species"] not in new]
    references = [r for r in records if r not in held_out]
    ref_fa, held_fa = write_fasta(tmp_path / "ref.fa", references), write_fasta(tmp_path / "held.fa", held_out)
    for bad in ("0.5", "0.01,abc", "-0.01"):
        refused = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--calibrate-errors", bad)
        assert refused.exit_code == 2 and "--calibrate-errors" in refused.stderr, bad
    text = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--modality", "text", "--calibrate-errors", "0.01")
    assert text.exit_code == 2 and "--calibrate-errors calibrates barcode indexes" in text.stderr
    too_many = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--calibrate-on", held_fa,
                   "--calibrate-errors", "0.5")
    assert too_many.exit_code == 2 and "--calibrate-errors" in too_many.stderr
    few = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "few", "--calibrate-on", held_fa,
              "--calibrate-errors", "0.03")
    assert few.exit_code == 0, few.stderr
    assert "fewer than the 200 needed: no dna~ calibration" in few.stderr  # a small reference
    assert "fewer than the 200 needed to refit the dna~ calibration" in few.stderr
    assert "dna~" not in json.loads((tmp_path / "few" / "calibration.json").read_text())
    # a reference whose barcodes do not read as protein (rRNA, ITS): nothing tells a read from a clean one
    monkeypatch.setattr("clibd_cli.reference.sketch.STOP_FLOOR_QUANTILE", -1.0)
    refused = run("index", "-m", "kmer", ref_fa, "-o", tmp_path / "x", "--calibrate-on", held_fa,
                  "--calibrate-errors", "0.03")
    assert refused.exit_code == 1 and "do not read as protein" in refused.stderr
    assert not (tmp_path / "x").exists()  # nothing half-written
    by_default = run("-q", "index", "-m", "kmer", ref_fa, "-o", tmp_path / "rrna", "--calibrate-on", held_fa)
    assert by_default.exit_code == 0, by_default.stderr  # the default rate asks for nothing there


def _held_out_split(records):
    """A fifth of the species held out whole, and one record of every other one: (references, held out)."""
    species = sorted({r.lineage["species"] for r in records})
    new = set(species[::5])
    held_out = [r for r in records if r.lineage["species"] in new] + [
        r for r in records[::6] if r.lineage["species"] not in new]
    return [r for r in records if r not in held_out], held_out


def test_an_append_keeps_the_reads_decision_rule_and_drops_it_for_rate_0(tmp_path, monkeypatch):
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
    references, held_out = _held_out_split(specimens(n_species=30, per_species=6, unnamed=0))
    ref_fa, held_fa = write_fasta(tmp_path / "ref.fa", references[:-12]), write_fasta(tmp_path / "held.fa", held_out)
    more, last = write_fasta(tmp_path / "more.fa", references[-12:-6]), write_fasta(tmp_path / "last.fa", references[-6:])
    aware = tmp_path / "aware"
    assert run("-q", "index", "-m", "kmer-aa", ref_fa, "-o", aware, "--calibrate-on", held_fa).exit_code == 0
    built = json.loads((aware / "calibration.json").read_text())["dna~"]
    assert built["rank_parts"] == {"species": [0, 4**5]}  # read as whole barcodes are: species by the 5-mers
    appended = run("index", "-m", "kmer-aa", more, "-o", aware, "--append", "--calibrate-on", held_fa)
    assert appended.exit_code == 0, appended.stderr
    refit = json.loads((aware / "calibration.json").read_text())["dna~"]
    assert "calibrated on" in appended.stderr and refit["fitted_on"]["references"] == len(references) - 6
    rule = [(fit["rank_parts"], fit["k"], {rank: r["tau_vote"] for rank, r in fit["ranks"].items()})
            for fit in (refit, built)]
    assert rule[0] == rule[1]  # the reads' own decision rule, not the clean barcodes'

    again = run("index", "-m", "kmer-aa", last, "-o", aware, "--append", "--calibrate-on", held_fa,
                "--calibrate-errors", "0")
    assert again.exit_code == 0, again.stderr
    assert "dna~" not in json.loads((aware / "calibration.json").read_text())  # 0: no such calibration
    assert "dna~ calibration dropped (--calibrate-errors 0)" in again.stderr
    assert "dna~ calibration is kept" not in again.stderr


def test_calibrations_kept_through_an_append_read_the_new_labels_gaps(tmp_path, monkeypatch):
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
    records = specimens(n_species=30, per_species=6, unnamed=0)
    references, held_out = _held_out_split(records)
    late = set(sorted({r.lineage["species"] for r in references})[:3])  # sorted first: every label code moves
    index = tmp_path / "index"
    assert run("-q", "index", "-m", "kmer", write_fasta(tmp_path / "ref.fa", [
        r for r in references if r.lineage["species"] not in late]), "-o", index, "--calibrate-on",
        write_fasta(tmp_path / "held.fa", held_out)).exit_code == 0
    appended = run("index", "-m", "kmer", write_fasta(tmp_path / "late.fa", [
        r for r in references if r.lineage["species"] in late]), "-o", index, "--append")
    assert "the dna<500 calibration is kept" in appended.stderr and "the dna~ calibration is kept" in appended.stderr
    calibration = json.loads((index / "calibration.json").read_text())
    species = len({r.lineage["species"] for r in references})
    assert {len(calibration[kind]["gaps"]["species"]["within"]) for kind in ("dna<500", "dna~")} == {species}
    queries = [type(r)(f"{r.id}-read", with_errors(r.barcode, 0.02, random.Random(r.id)), r.lineage) for r in records]
    queries += [type(r)(f"{r.id}-part", r.barcode[100:400], r.lineage) for r in records]
    result = run("classify", "--index", index, "--reads", "no",  # else the whole reads make a run of reads
                 write_fasta(tmp_path / "q.fa", queries, sintax=False))
    assert result.exit_code == 0, result.stderr  # was an IndexError: gaps stored by the old label codes
    assert "dna<500 queries" in result.stderr and "dna~ queries" in result.stderr


def test_one_stop_in_the_best_frame_makes_a_read_and_partial_reads_stay_partial():
    from clibd_cli.classification.query_kinds import query_kind, read_queries
    from clibd_cli.embedding.translation import frame_breaks

    barcode = specimens(n_species=1, per_species=1, unnamed=0)[0].barcode
    frame = next(f for f in range(3) if frame_breaks([barcode[f:]])[0] == 0 and not
                 {barcode[i:i + 3] for i in range(f, len(barcode) - 2, 3)} & {"TAA", "TAG"})
    at = frame + 3 * 100  # one codon made a stop in the barcode's own frame: its best frame meets one
    one_stop = barcode[:at] + "TAA" + barcode[at + 3:]
    assert frame_breaks([one_stop]).tolist() == [1] and read_queries([one_stop]).tolist() == [True]
    kinds = ["dna", "dna<500", "dna~"]
    assert query_kind("dna", 650, kinds, breaks=1) == "dna~"
    assert query_kind("dna", 300, kinds, breaks=3) == "dna<500"  # a partial read: partial first
    assert query_kind("dna", 650, ["dna", "dna<500"], breaks=3) == "dna"  # an index without dna~
    assert query_kind("image+dna", 650, kinds, breaks=3) == "image+dna"
    # at exactly SHORT_BELOW bases a read is whole, to the calibration's pseudo-queries as to classify
    for bases in (499, 500):
        cut = one_stop[:bases]
        assert read_queries([cut]).tolist() == [query_kind("dna", bases, kinds, breaks=1) == "dna~"] == [bases == 500]


def test_copies_are_made_at_the_rate_asked_and_seeded(monkeypatch):
    from clibd_cli.classification.query_kinds import read_queries
    from clibd_cli.classification.read_errors import read_pseudo_queries
    from clibd_cli.reference.sources import References

    barcodes = [r.barcode for r in specimens(n_species=8, per_species=2, unnamed=0)]
    rows = range(100, 100 + len(barcodes))
    for rate in (0.01, 0.05):
        picked, copies, rates, stop_model = read_pseudo_queries(barcodes, rows, (rate,), seed=0)
        assert read_queries(copies).all() and len(picked) > len(barcodes) // 2
        assert rates == [rate] * len(picked) and stop_model is None  # one rate: nothing to tell apart
        errors = sum(_edit_distance(barcodes[row - 100], copy) for row, copy in zip(picked, copies))
        bases = sum(len(barcodes[row - 100]) for row in picked)
        assert rate / 2 < errors / bases < rate * 2, (rate, errors / bases)
    assert read_pseudo_queries(barcodes, rows, (0.02,), seed=0) == \
        read_pseudo_queries(barcodes, rows, (0.02,), seed=0)
    assert read_pseudo_queries(barcodes, rows, (0.02,), seed=0)[1] != \
        read_pseudo_queries(barcodes, rows, (0.02,), seed=1)[1]
    monkeypatch.setattr("clibd_cli.classification.read_errors.MAX_READS", 5)
    assert len({tuple(read_pseudo_queries(barcodes, rows, (0.2,), seed=s)[0]) for s in range(4)}) > 1  # seeded sample

    found = References("dna")
    for i, barcode in enumerate(barcodes):
        found.add(f"q{i}", {"species": f"s{i}"}, barcode)
    assert read_queries(held_out_reads(found, (0.01,))[0].items).all()  # only the copies that read as reads
    picked, copies, rates, stop_model = read_pseudo_queries(barcodes, rows, (0.005, 0.05), seed=0)
    assert set(rates) == {0.005, 0.05} and stop_model["rates"] == [0.005, 0.05]  # fitted on every copy's windows
    for row, copy, rate in zip(picked, copies, rates):  # each copy's own rate, whichever copies were kept
        assert with_errors(barcodes[row - 100], rate, random.Random(f"read errors 0 {row}")) == copy, row


def _index_of_the_rest(tmp_path, monkeypatch, model: str) -> tuple:
    """An index (``model``, default settings, dna~ from 10 copies) of the fixture's records (95, of
    24 species) but every sixth, and those 16 records (the queries; some species have none)."""
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
    records = specimens(n_species=30, per_species=6, unnamed=0)
    queries = records[::6]
    index = tmp_path / "index"
    assert run("-q", "index", "-m", model, write_fasta(tmp_path / "ref.fa", [
        r for r in records if r not in queries]), "-o", index).exit_code == 0
    return index, queries


def test_classify_reads_reads_on_their_own_strand_one_at_a_time(tmp_path, monkeypatch):
    from clibd_cli.classification.calibration import Calibration
    from clibd_cli.classification.read_runs import reads_shares
    from clibd_cli.io.sequences import reverse_complement

    index, queries = _index_of_the_rest(tmp_path, monkeypatch, "kmer")
    read = with_errors(queries[0].barcode, 0.02, random.Random(3))
    turned = type(queries[0])("turned", reverse_complement(queries[0].barcode), queries[0].lineage)
    for record, kind in ((type(turned)("read", reverse_complement(read), turned.lineage), "dna~"), (turned, "dna")):
        alone = run("classify", "--index", index, write_fasta(tmp_path / "one.fa", [record], sintax=False))
        assert alone.exit_code == 0 and tsv(alone.stdout)[0]["strand"] == "-", alone.stderr
        assert f"EM on the first 1 {kind} query" in alone.stderr  # turned before its frames are read

    priors = []  # a run's reads lean on its clean barcodes' estimate of new species, not on 0.5

    def spied(estimate):
        def spy(calibration, stacked, prior_unseen=0.5):
            shares = estimate(calibration, stacked, prior_unseen)
            priors.append((prior_unseen, 1 - shares[0]))
            return shares
        return spy

    monkeypatch.setattr(Calibration, "estimate_shares", spied(Calibration.estimate_shares))
    monkeypatch.setattr("clibd_cli.classification.classifier.reads_shares", spied(reads_shares))  # whole reads'
    reads = [type(r)(f"{r.id}-read", with_errors(r.barcode, 0.02, random.Random(r.id)), r.lineage) for r in queries]
    both = run("classify", "--index", index, write_fasta(tmp_path / "both.fa", queries + reads, sintax=False))
    assert both.exit_code == 0 and "dna~ queries" in both.stderr
    assert len(priors) == 2 and priors[1][0] == priors[0][1] != 0.5


def test_a_large_append_refits_the_reads_calibration(tmp_path, monkeypatch):
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_SHORT", 20)
    records = specimens(n_species=30, per_species=6, unnamed=0)
    index = tmp_path / "index"
    assert run("-q", "index", "-m", "kmer", write_fasta(tmp_path / "a.fa", records[:60]), "-o", index).exit_code == 0
    appended = run("index", "-m", "kmer", write_fasta(tmp_path / "b.fa", records[60:]), "-o", index, "--append")
    assert appended.exit_code == 0 and "calibration is kept" not in appended.stderr, appended.stderr
    assert "reads with simulated sequencing errors for the dna~ calibration" in appended.stderr
    reads = json.loads((index / "calibration.json").read_text())["dna~"]["fitted_on"]
    assert reads["references"] == len(records) and 0 < reads["pseudo_queries"][0] <= len(records) - 60


def test_an_append_keeps_the_error_rates_the_index_was_built_with(tmp_path, monkeypatch):
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_SHORT", 5)  # a small append refits
    records = specimens(n_species=30, per_species=6, unnamed=0)
    cut = 2 * len(records) // 3
    first, more = write_fasta(tmp_path / "first.fa", records[:cut]), write_fasta(tmp_path / "more.fa", records[cut:])
    for asked, kinds in (("0", False), (None, True)):
        index = tmp_path / f"index-{asked}"
        option = [] if asked is None else ["--calibrate-errors", asked]
        assert run("-q", "index", "-m", "kmer", first, "-o", index, *option).exit_code == 0
        manifest = json.loads((index / "manifest.json").read_text())
        assert manifest["read_errors"] == ([] if asked == "0" else [0.005, 0.01, 0.02, 0.03, 0.05])
        appended = run("index", "-m", "kmer", more, "-o", index, "--append")  # no option: as built
        assert appended.exit_code == 0, appended.stderr
        assert ("dna~" in json.loads((index / "calibration.json").read_text())) == kinds
        assert json.loads((index / "manifest.json").read_text())["read_errors"] == manifest["read_errors"]


def test_kmer_aa_reads_reads_through_their_frame_shifts(tmp_path, monkeypatch):
    """``--model kmer-aa`` embeds reads (its dna~ pseudo-queries and queries) with their frame shifts
    read through (``Embedder.reads``) and answers them as it answers whole barcodes."""
    from clibd_cli.embedding.embedder import Embedder

    index, queries = _index_of_the_rest(tmp_path, monkeypatch, "kmer-aa")
    calibrations = json.loads((index / "calibration.json").read_text())
    assert calibrations["dna~"]["rank_parts"] == calibrations["dna"]["rank_parts"] == {"species": [0, 4**5]}
    reads = [type(r)(f"{r.id}-read", with_errors(r.barcode, 0.02, random.Random(r.id)), r.lineage) for r in queries]
    reads_fa = write_fasta(tmp_path / "reads.fa", reads, sintax=False)
    through = run("classify", "--index", index, reads_fa)
    monkeypatch.setattr(Embedder, "reads_apart", False)  # the reads translated as clean barcodes are
    plain = run("classify", "--index", index, reads_fa)
    assert through.exit_code == plain.exit_code == 0 and "dna~ queries" in through.stderr
    near = [[float(row["nearest_sim"]) for row in tsv(result.stdout)] for result in (through, plain)]
    assert sum(a > b for a, b in zip(*near)) > 0.8 * len(reads), near


def test_kmer_aa_index_embeds_its_reads_as_reads(tmp_path, monkeypatch):
    """``clibd index -m kmer-aa`` embeds every copy with errors that reads as a dna~ or dna<500~
    query, the reference's own and the held-out queries', as ``clibd classify`` embeds such queries
    (``Embedder.reads``), and nothing else so: its read calibrations fit the vectors they answer."""
    from clibd_cli.classification.query_kinds import SHORT_BELOW, read_queries
    from clibd_cli.embedding.embedder import Embedder
    from clibd_cli.embedding.translation import frame_breaks
    from clibd_cli.io.sequences import unambiguous_bases

    monkeypatch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
    records = specimens(n_species=20, per_species=4, unnamed=0)
    new = sorted({r.lineage["species"] for r in records})[::5]  # absent from the reference
    held = [r for i, r in enumerate(records) if i % 4 == 0 or r.lineage["species"] in new]
    embedded = {"barcodes": [], "reads": []}
    for method in embedded:
        def spy(self, barcodes, _plain=getattr(Embedder, method), _seen=embedded[method]):
            _seen.extend(barcodes)
            return _plain(self, barcodes)
        monkeypatch.setattr(Embedder, method, spy)
    built = run("index", "-m", "kmer-aa", write_fasta(tmp_path / "ref.fa", [r for r in records if r not in held]),
                "-o", tmp_path / "index", "--calibrate-on", write_fasta(tmp_path / "held.fa", held))
    assert built.exit_code == 0 and "dna~) calibrated on" in built.stderr, built.stderr
    own = {r.barcode for r in records}
    assert not read_queries([b for b in embedded["barcodes"] if b not in own]).any()
    reads = embedded["reads"]
    whole, broken = np.array([unambiguous_bases(r) >= SHORT_BELOW for r in reads]), frame_breaks(reads) > 0
    assert len(reads) > 40 and broken[whole].all() and 0 < whole.sum() < len(reads)  # whole reads and partial ones
    assert not broken[~whole].all()  # partial copies with a stop or without: a run of reads sends them all there
