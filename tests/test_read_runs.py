"""A run of raw reads with sequencing errors: every partial barcode reads the partial reads'
confidences (``dna<500~``), not only those whose best frame meets a stop (``query_kinds.read_run``)."""

import random

import numpy as np
import pytest
from fixtures.specimens import run, specimens, stretch, tsv, write_fasta

from clibd_cli.classification.batch_prior import SCENARIOS, fit_scenario_model
from clibd_cli.classification.calibration import Calibration
from clibd_cli.classification.classifier import Classifier
from clibd_cli.classification.queries import Query
from clibd_cli.classification.query_kinds import READ_KIND, SHORT_KIND, SHORT_READ_KIND, query_kind, read_run
from clibd_cli.classification.read_errors import PARTIAL_RATES
from clibd_cli.classification.read_runs import reads_shares
from clibd_cli.embedding.translation import frame_breaks
from clibd_cli.io.sequences import with_errors


def test_a_run_is_of_reads_when_enough_of_its_partial_barcodes_meet_a_stop():
    assert not read_run([0] * 1000) and not read_run([])
    assert read_run([1] * 10 + [0] * 190) and not read_run([1] * 10 + [0] * 191)  # 5 % of them
    assert not read_run([2] * 9) and read_run([3] * 10)  # and 10 or more
    kinds = ["dna", SHORT_KIND, SHORT_READ_KIND, "dna~"]
    assert query_kind("dna", 300, kinds, breaks=0, reads=True) == SHORT_READ_KIND
    assert query_kind("dna", 300, kinds, breaks=0) == SHORT_KIND
    assert query_kind("dna", 650, kinds, breaks=0, reads=True) == "dna"  # whole barcodes: by their own stops
    assert [query_kind("dna", n, kinds, breaks=0, reads=True) for n in (499, 500)] == [SHORT_READ_KIND, "dna"]
    assert query_kind("dna", 300, ["dna", SHORT_KIND], breaks=2, reads=True) == SHORT_KIND  # no dna<500~


@pytest.fixture(scope="module")
def read_index(tmp_path_factory):
    """A k-mer index calibrated for partial reads (``--calibrate-on``; whole reads' copies with errors
    at 1 and 2 %, partial ones' at 0.5 to 5 %), and 200-base stretches of known species' held-out
    records with 2 % errors, and clean."""
    root = tmp_path_factory.mktemp("read-runs")
    records = specimens(n_species=30, per_species=6, unnamed=0)
    species = sorted({r.lineage["species"] for r in records})
    new = set(species[::5])
    held_out = [r for i, r in enumerate(records) if r.lineage["species"] in new or i % 3 == 0]
    references = [r for r in records if r not in held_out]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("clibd_cli.classification.query_kinds.FEW_READS", 10)
        built = run("-q", "index", "-m", "kmer", write_fasta(root / "ref.fa", references), "-o", root / "index",
                    "--calibrate-on", write_fasta(root / "held.fa", held_out))
    assert built.exit_code == 0, built.stderr
    assert SHORT_READ_KIND in Classifier(root / "index").query_kinds
    known = [r for r in held_out if r.lineage["species"] not in new]
    clean = [stretch(r.barcode, 200, r.id) for r in known]
    reads = [with_errors(c, 0.02, random.Random(r.id)) for c, r in zip(clean, known)]
    return root, known, clean, reads


def test_a_run_of_partial_reads_sends_them_all_to_the_partial_reads_calibration(read_index):
    root, known, clean, reads = read_index
    breaks = frame_breaks(reads)
    assert 10 <= (breaks > 0).sum() < len(reads)  # most reads meet no stop
    classifier = Classifier(root / "index")
    classifier.stream([Query(r.id, barcode=b) for r, b in zip(known, reads)], 512).__next__()
    assert classifier.read_run and set(classifier.estimates) == {SHORT_READ_KIND}
    told = Classifier(root / "index", reads=False)
    next(told.stream([Query(r.id, barcode=b) for r, b in zip(known, reads)], 512))
    assert not told.read_run and set(told.estimates) == {SHORT_KIND, SHORT_READ_KIND}  # only those with a stop
    next(classifier.stream([Query(r.id, barcode=b) for r, b in zip(known, clean)], 512))
    assert not classifier.read_run and set(classifier.estimates) == {SHORT_KIND}  # a new run: clean stretches


def test_clibd_classify_says_a_run_is_of_reads_and_cutting_it_changes_nothing(read_index, tmp_path):
    root, known, _, reads = read_index
    fasta = tmp_path / "reads.fa"
    fasta.write_text("".join(f">{r.id}\n{b}\n" for r, b in zip(known, reads)))
    auto = run("classify", "--index", root / "index", fasta)
    assert auto.exit_code == 0, auto.stderr
    assert "the run is taken for raw reads with sequencing errors" in auto.stderr
    assert f"EM on the first {len(reads)} {SHORT_READ_KIND} queries" in auto.stderr
    assert run("classify", "--index", root / "index", "--batch-size", "7", fasta).stdout == auto.stdout
    assert run("classify", "--index", root / "index", "--reads", "yes", fasta).stdout == auto.stdout
    for told in ([], ["--reads", "yes"]):  # told on the first records, not the first batch (the rate too)
        fixed = [run("classify", "--index", root / "index", "--prior-unseen", "0.3", *told, *cut, fasta).stdout
                 for cut in ([], ["--batch-size", "7"])]
        assert fixed[0] == fixed[1], told
    plain = run("classify", "--index", root / "index", "--reads", "no", fasta)
    assert "taken for raw reads" not in plain.stderr and f"{SHORT_KIND} queries: partial barcodes" in plain.stderr
    rows = {name: tsv(result.stdout) for name, result in (("auto", auto), ("no", plain))}
    named = {name: sum(row["species"] == r.lineage["species"] for row, r in zip(found, known))
             for name, found in rows.items()}
    assert named["auto"] > named["no"], named


def test_reads_yes_needs_an_index_calibrated_for_partial_reads(tmp_path):
    records = specimens(n_species=6, per_species=3, unnamed=0)
    index = tmp_path / "index"
    assert run("-q", "index", "-m", "kmer", write_fasta(tmp_path / "ref.fa", records), "-o", index).exit_code == 0
    refused = run("classify", "--index", index, "--reads", "yes", write_fasta(tmp_path / "q.fa", records[:2]))
    assert refused.exit_code == 1 and "--reads yes needs the index's confidences for partial reads" in refused.stderr
    assert run("classify", "--index", index, "--reads", "no", tmp_path / "q.fa").exit_code == 0


def test_a_run_is_told_once_on_its_first_records_and_every_later_block_keeps_it(read_index, monkeypatch):
    """Stretches after the first records read as the run was told (``read_runs.tell_reads`` on the first
    call only), whatever block they come in; a clean run stays clean after reads come."""
    root, known, clean, reads = read_index
    monkeypatch.setattr("clibd_cli.classification.batch_prior.ESTIMATION_QUERIES", len(reads))
    def queries(*runs: list[str]) -> list[Query]:
        return [Query(f"{r.id}-{n}", barcode=b) for n, barcodes in enumerate(runs) for r, b in zip(known, barcodes)]

    classifier = Classifier(root / "index")
    results = [r for block in classifier.stream(queries(reads, clean), 7) for r in block]
    assert classifier.read_run and set(classifier.estimates) == {SHORT_READ_KIND}
    assert len({r.prior_unseen for r in results}) == 1  # the clean stretches read dna<500~ too
    assert classifier.read_rate > min(PARTIAL_RATES)  # told by the reads, not by the clean blocks after
    list(classifier.stream(queries(clean, reads), 7))
    assert not classifier.read_run and set(classifier.estimates) == {SHORT_KIND, SHORT_READ_KIND}
    assert classifier.read_rate == min(PARTIAL_RATES)  # told by the clean stretches, not by the reads after


def test_junk_is_not_counted_and_reads_yes_sends_clean_stretches_to_the_reads_calibration(read_index, tmp_path):
    """Off-target barcodes meet stops as reads do (random bases: most in every frame) but do not
    make a clean run one of reads; ``--reads yes`` sends every partial barcode to ``dna<500~``."""
    root, known, clean, _ = read_index
    rng = random.Random(7)
    junk = ["".join(rng.choice("ACGT") for _ in range(200)) for _ in range(40)]
    assert (frame_breaks(junk) > 0).sum() >= 20
    fasta = tmp_path / "clean.fa"
    fasta.write_text("".join(f">{r.id}\n{b}\n" for r, b in zip(known, clean))
                     + "".join(f">junk{i}\n{b}\n" for i, b in enumerate(junk)))
    auto = run("classify", "--index", root / "index", fasta)
    assert auto.exit_code == 0 and "taken for raw reads" not in auto.stderr, auto.stderr
    assert f"EM on the first {len(clean)} {SHORT_KIND} queries" in auto.stderr
    told = run("classify", "--index", root / "index", "--reads", "yes", fasta)
    assert told.exit_code == 0 and f"EM on the first {len(clean)} {SHORT_READ_KIND} queries" in told.stderr
    assert f"taken to have {100 * min(PARTIAL_RATES):.1f} % errors per base (told from the stops of the first " \
        f"{len(clean)} partial barcodes;" in told.stderr  # nor in the error rate told


def test_a_model_reading_frame_shifts_through_embeds_every_partial_barcode_of_a_run_of_reads_as_a_read(
        read_index, monkeypatch):
    """As the index embedded every partial copy with errors (``read_errors.partial_read_queries``):
    those that meet no stop too."""
    from clibd_cli.embedding.embedder import Embedder

    root, known, _, reads = read_index
    embedded: list[str] = []
    as_reads = Embedder.reads

    def reads_seen(self, barcodes):
        embedded.extend(barcodes)
        return as_reads(self, barcodes)

    monkeypatch.setattr(Embedder, "reads_apart", property(lambda self: True))
    monkeypatch.setattr(Embedder, "reads", reads_seen)
    next(Classifier(root / "index").stream([Query(r.id, barcode=b) for r, b in zip(known, reads)], 512))
    assert sorted(embedded) == sorted(reads) and (frame_breaks(embedded) == 0).any()


def test_an_index_fitted_on_reads_meeting_a_stop_only_keeps_its_rule_and_says_so(read_index, caplog):
    """A ``dna<500~`` fitted before session 25 (on copies meeting a stop only: no ``read_run`` in
    calibration.json) is too sure of new species for reads meeting none: a run of reads is not
    sent there whole, with a warning to rebuild; this build marks its own."""
    import json

    from clibd_cli.classification.calibration import Calibration

    root, known, _, reads = read_index
    stored = json.loads((root / "index" / "calibration.json").read_text())[SHORT_READ_KIND]
    assert stored["read_run"] is True and Calibration.from_json(stored).read_run
    older = {key: value for key, value in stored.items() if key != "read_run"}
    assert not Calibration.from_json(older).read_run and "read_run" not in Calibration.from_json(older).to_json()
    classifier = Classifier(root / "index")
    classifier.calibrations[SHORT_READ_KIND] = Calibration.from_json(older)
    with caplog.at_level("INFO", logger="clibd"):
        next(classifier.stream([Query(r.id, barcode=b) for r, b in zip(known, reads)], 512))
    assert not classifier.read_run and set(classifier.estimates) == {SHORT_KIND, SHORT_READ_KIND}
    assert "fitted on reads meeting a stop only" in caplog.text and "taken for raw reads" not in caplog.text
    yes = Classifier(root / "index", reads=True)
    yes.calibrations[SHORT_READ_KIND] = Calibration.from_json(older)
    next(yes.stream([Query(r.id, barcode=b) for r, b in zip(known, reads)], 512))
    assert set(yes.estimates) == {SHORT_READ_KIND}  # --reads yes: as asked


def test_whole_reads_tell_a_run_of_reads_too(read_index):
    """A run of whole reads with a few partial ones (too few meeting a stop to tell it alone): the
    whole reads' stops tell it, and the partial ones read ``dna<500~``; clean whole barcodes do not."""
    root, known, clean, reads = read_index
    whole = [with_errors(r.barcode, 0.02, random.Random(f"whole {r.id}")) for r in known]
    few = [b for b in reads if frame_breaks([b])[0] == 0][:3] + [b for b in reads if frame_breaks([b])[0] > 0][:2]
    assert (frame_breaks(whole) > 0).sum() >= 10 and not read_run(frame_breaks(few))
    queries = [Query(f"w{i}", barcode=b) for i, b in enumerate(whole)] + [Query(f"p{i}", barcode=b)
                                                                         for i, b in enumerate(few)]
    classifier = Classifier(root / "index")
    next(classifier.stream(queries, 512))
    assert classifier.read_run and SHORT_KIND not in classifier.estimates and SHORT_READ_KIND in classifier.estimates
    rate = classifier.read_rate  # told by the partial reads and the whole ones' 200-base windows
    assert 0.01 <= rate <= 0.04  # 2 % errors
    clean_whole = [Query(f"c{i}", barcode=r.barcode) for i, r in enumerate(known)] + queries[len(whole):]
    next(classifier.stream(clean_whole, 512))
    assert classifier.read_rate < rate  # clean windows meet no stop
    assert not classifier.read_run and SHORT_KIND in classifier.estimates


def test_a_run_of_reads_is_told_its_error_rate_which_its_confidences_read(read_index, tmp_path, monkeypatch):
    """The ``dna<500~`` maps read the run's error rate, told once from the stops of its first
    partial barcodes (``error_rate.py``) and said on stderr; another rate, other confidences."""
    root, known, clean, reads = read_index
    queries = [Query(r.id, barcode=b) for r, b in zip(known, reads)]
    classifier = Classifier(root / "index")
    told = next(classifier.stream(queries, 512))
    assert classifier.calibrations[SHORT_READ_KIND].by_rate and 0.005 <= classifier.read_rate <= 0.05
    next(classifier.stream([Query(r.id, barcode=b) for r, b in zip(known, clean)], 512))
    assert classifier.read_rate == 0.005  # a new run, clean: the lowest rate fitted
    monkeypatch.setattr("clibd_cli.classification.read_runs.run_rate", lambda model, bases, breaks, whole=(): 0.05)
    other = next(Classifier(root / "index").stream(queries, 512))
    assert any(a.prediction.confidence != b.prediction.confidence for a, b in zip(told, other))
    monkeypatch.undo()
    fasta = tmp_path / "reads.fa"
    fasta.write_text("".join(f">{r.id}\n{b}\n" for r, b in zip(known, reads)))
    said = run("classify", "--index", root / "index", fasta)
    assert said.exit_code == 0 and "reads taken to have" in said.stderr and "% errors per base" in said.stderr
    info = run("index", "info", root / "index").stdout
    assert "Reads' confidences (dna<500~, dna~): read a run's error rate, told from its stops (fitted 0.5-5 %)" in info


def test_whole_reads_maps_read_the_rate_within_those_they_were_fitted_on(read_index, monkeypatch):
    """An index built with ``--calibrate-errors 0.01,0.02`` (or before session 26, appended since) fits
    ``dna~`` at 1-2 % while ``dna<500~``'s stop model, which tells the run's rate, spans 0.5-5 %: a run of 5 %
    reads must not send the ``dna~`` maps a rate they never saw (they would extrapolate), but the nearest one."""
    import clibd_cli.classification.classifier as classifier_module

    root, known, clean, reads = read_index
    classifier = Classifier(root / "index")
    narrow = classifier.calibrations["dna~"]
    narrow.stop_model = {**narrow.stop_model, "rates": [0.01, 0.02]}
    told, label = [], classifier_module.label
    monkeypatch.setattr(classifier_module, "label", lambda *args: told.append((args[3], args[6])) or label(*args))
    whole = [with_errors(r.barcode, 0.05, random.Random(r.id)) for r in known]
    next(classifier.stream([Query(r.id, barcode=b) for r, b in zip(known, whole)], 512))
    assert classifier.read_rate > 0.03 and [rate for calibration, rate in told if calibration is narrow] == [0.02]


def test_whole_reads_estimate_new_species_and_genera_together_and_new_families_apart():
    """Where a scenario model tells a new genus from a new species too weakly, and the batch's new
    species lie between its two (copies of the reference's records with errors against real reads),
    EM takes many of them for new genera; ``read_runs.reads_shares`` estimates the two together and
    splits them as the calibration assumes, and still tells a batch of new families."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 1)) + np.repeat([0.0, 3.0, 3.5, 6.0], 1000)[:, None]
    model = fit_scenario_model(x, np.repeat(np.arange(4), 1000), 4)
    calibration = Calibration(5, None, 0.1, {}, {}, list(SCENARIOS), model.to_json())
    assumed = calibration.shares()[1:3] / calibration.shares()[1:3].sum()
    mixed = rng.normal(size=(1000, 1)) + np.repeat([0.0, 3.25], [700, 300])[:, None]
    shares = reads_shares(calibration, mixed, 0.5)
    assert shares.sum() == pytest.approx(1.0) and shares[0] == pytest.approx(0.7, abs=0.05) and shares[3] < 0.03
    assert shares[1:3] / shares[1:3].sum() == pytest.approx(assumed)
    assert calibration.estimate_shares(mixed)[2] > 1.5 * shares[2]  # EM: 6 % of the batch new genera, 3 % here
    families = reads_shares(calibration, rng.normal(size=(300, 1)) + 6.0, 0.5)
    assert families[3] > 0.8  # a batch of new families still reads as new families
    held_out = Calibration(5, None, 0.1, {}, {}, ["seen", "unseen"],
                           fit_scenario_model(x[:2000], np.repeat([0, 1], 1000), 2).to_json())
    assert reads_shares(held_out, mixed, 0.5) == pytest.approx(held_out.estimate_shares(mixed, 0.5))


def test_a_run_of_whole_reads_has_its_shares_estimated_as_reads(read_index, monkeypatch):
    """A run of whole reads (``dna~``) has its scenario shares estimated by ``read_runs.reads_shares``."""
    import clibd_cli.classification.classifier as classifier_module

    root, known, _, _ = read_index
    asked = []
    monkeypatch.setattr(classifier_module, "reads_shares",
                        lambda calibration, *args: asked.append(calibration) or reads_shares(calibration, *args))
    whole = [with_errors(r.barcode, 0.02, random.Random(f"whole {r.id}")) for r in known]
    classifier = Classifier(root / "index")
    next(classifier.stream([Query(r.id, barcode=b) for r, b in zip(known, whole)], 512))
    assert READ_KIND in classifier.estimates and asked == [classifier.calibrations[READ_KIND]]
