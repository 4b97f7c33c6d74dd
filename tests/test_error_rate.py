"""A run's sequencing error rate, told from its partial barcodes' stops (``error_rate.py``), and
the ``dna<500~`` maps that read it (``calibration.RATE_FEATURE``)."""

import random

import numpy as np
import pytest
from fixtures.specimens import specimens, stretch

from clibd_cli.classification.calibration import RATE_FEATURE, Calibration
from clibd_cli.classification.error_rate import DEFAULT_RATE, fit_stop_model, run_rate, stop_chance, windows
from clibd_cli.classification.read_errors import PARTIAL_RATES, partial_read_pseudo_queries
from clibd_cli.embedding.translation import frame_breaks
from clibd_cli.io.sequences import unambiguous_bases, with_errors
from models.errors import ClibdError

BARCODES = [r.barcode for r in specimens(n_species=60, per_species=5, unnamed=0)]


def _reads(rate: float, length: int, seed: str) -> tuple[list[int], np.ndarray]:
    """Stretches of ``length`` bases of the real barcodes with errors at ``rate``: their bases and stops."""
    reads = [with_errors(stretch(b, length, f"{seed}{i}"), rate, random.Random(f"{seed}{i}"))
             for i, b in enumerate(BARCODES)]
    return [unambiguous_bases(r) for r in reads], frame_breaks(reads)


@pytest.fixture(scope="module")
def stop_model() -> dict:
    """Fitted on the barcodes' partial pseudo-queries copied at ``PARTIAL_RATES`` in turn, as an index fits it."""
    rows, copies, rates = partial_read_pseudo_queries(
        (range(len(BARCODES) * 4), [stretch(b, 100 + 30 * i % 399, f"fit{i}") for i, b in enumerate(BARCODES * 4)]), 0)
    assert sorted(set(rates)) == list(PARTIAL_RATES) and len(rows) == len(copies) == len(rates)
    return fit_stop_model(rates, [unambiguous_bases(c) for c in copies], frame_breaks(copies))


def test_each_partial_copy_keeps_the_rate_it_was_copied_at_when_others_grow_whole():
    """The copies are made at ``PARTIAL_RATES`` in turn, the first at the first; those that grow to
    500 bases are left out, and the rates of those after them stay their own."""
    stretches = [stretch(b, 495 + i % 5, f"long{i}") for i, b in enumerate(BARCODES)]
    rows, copies, rates = partial_read_pseudo_queries((range(len(stretches)), stretches), 0)
    assert 0 < len(rows) < len(stretches) - 5  # some grew whole
    assert rates == [PARTIAL_RATES[row % len(PARTIAL_RATES)] for row in rows]


def test_the_stop_model_knows_more_errors_and_longer_reads_meet_more_stops(stop_model):
    assert stop_model["rates"] == [min(PARTIAL_RATES), max(PARTIAL_RATES)]
    chance = [stop_chance(stop_model, rate, [150, 300, 450]) for rate in (0.005, 0.01, 0.03)]
    assert all(np.all(np.diff(c) > 0) for c in chance)  # longer: likelier
    assert np.all(np.diff(np.array(chance), axis=0) > 0)  # more errors: likelier
    bases, breaks = _reads(0.01, 300, "check")  # against what reads of 300 bases with 1 % errors meet
    assert abs(stop_chance(stop_model, 0.01, bases).mean() - (breaks > 0).mean()) < 0.12


@pytest.mark.parametrize("rate", [0.007, 0.015, 0.035])
def test_a_runs_error_rate_is_told_from_its_stops(stop_model, rate):
    bases, breaks = _reads(rate, 250, f"run{rate}")
    told = run_rate(stop_model, bases, breaks)
    assert rate / 1.6 < told < rate * 1.6, told


@pytest.mark.parametrize("rate", [0.01, 0.03])
def test_whole_reads_tell_their_rate_by_their_windows(stop_model, rate):
    """A whole read meets a stop at nearly any rate; its 200-base windows, each read on its own, do not."""
    assert windows(["A" * 650, "C" * 199, "G" * 400]) == ["A" * 200] * 3 + ["G" * 200] * 2  # a whole last one kept
    reads = [with_errors(b, rate, random.Random(f"whole{i}")) for i, b in enumerate(BARCODES)]
    assert (frame_breaks(reads) > 0).mean() > 0.9
    assert rate / 1.6 < run_rate(stop_model, [], [], reads) < rate * 1.6


def test_a_clean_run_or_none_is_told_within_the_fitted_rates(stop_model):
    bases, breaks = _reads(0.0, 250, "clean")
    assert not breaks.any() and run_rate(stop_model, bases, breaks) == min(PARTIAL_RATES)
    assert run_rate(stop_model, [], []) == DEFAULT_RATE
    bases, breaks = _reads(0.15, 250, "awful")  # beyond the fitted rates: their highest
    assert run_rate(stop_model, bases, breaks) == pytest.approx(max(PARTIAL_RATES))


def test_a_stop_model_needs_copies_at_two_rates():
    with pytest.raises(ValueError, match="two error rates"):
        fit_stop_model([0.01] * 20, [200] * 20, [0, 1] * 10)


@pytest.fixture(scope="module")
def rate_calibration(stop_model) -> Calibration:
    """A one-rank calibration whose maps read the query's length and the run's error rate."""
    from clibd_cli.classification.probability_map import fit_map

    features = 3 + 1 + 1  # the neighbours', log_bases, log_error_rate
    x = np.random.default_rng(0).normal(size=(50, features))
    maps = [fit_map(x, (x[:, 0] > 0).astype(float), np.ones(50), 1.0)]
    return Calibration(5, None, 0.1, {"species": {"tau_vote": 1.0, "tau_share": 1.0, "maps": maps}},
                       {}, by_length=True, stop_model=stop_model)


def test_maps_that_read_the_rate_say_so_and_refuse_a_stop_model_gone(rate_calibration):
    from clibd_cli.classification.decision import label
    from clibd_cli.classification.taxonomy import ReferenceTaxonomy

    calibration = rate_calibration
    data = calibration.to_json()
    assert data["features"][-2:] == ["log_bases", RATE_FEATURE] and Calibration.from_json(data).by_rate
    calibration.check()
    with pytest.raises(ClibdError, match="unsupported calibration"):
        Calibration.from_json({k: v for k, v in data.items() if k != "stop_model"})
    with pytest.raises(ValueError, match="give rate"):
        label(np.zeros((1, 5), dtype=np.int64), np.ones((1, 5)), None, calibration, bases=np.array([200]))
    taxonomy = ReferenceTaxonomy.from_labels(list("abcde"), {"species": ["s1"] * 5})
    read = label(np.arange(5)[None, :], np.full((1, 5), 0.9), taxonomy, calibration, bases=np.array([200]), rate=0.02)
    assert read.features["species"][0, -2:] == pytest.approx(np.log([200, 0.02]))  # as feature_names: length, rate


def test_an_index_whose_stop_model_is_not_as_clibd_writes_it_is_refused_as_it_loads(rate_calibration, stop_model):
    """As a map not as clibd writes it is (``Calibration.check``), not at the run's first call with a
    KeyError."""
    from types import SimpleNamespace

    from clibd_cli.classification.calibration import checked_calibrations

    for broken in ({k: v for k, v in stop_model.items() if k != "rates"}, {**stop_model, "coef": [1.0]},
                   {**stop_model, "rates": [0.05, 0.005]}):
        index = SimpleNamespace(calibration={"dna<500~": {**rate_calibration.to_json(), "stop_model": broken}},
                                holdings=None, path="index")
        with pytest.raises(ClibdError, match="not a calibration clibd wrote"):
            checked_calibrations(index)


@pytest.mark.parametrize("rate", [0.005, 0.01, 0.03])
def test_the_whole_reads_stop_model_tells_a_runs_rate_from_every_copys_windows(rate):
    """``dna~``'s stop model is fitted on the windows of every copy, with a frame break or not: on those
    with one alone, windows would meet stops more often than a run's do, and tell its rate too low."""
    from clibd_cli.classification.read_errors import DEFAULT_RATES, read_pseudo_queries

    model = read_pseudo_queries(BARCODES, range(len(BARCODES)), DEFAULT_RATES, seed=0)[3]
    reads = [with_errors(b, rate, random.Random(f"run{i}")) for i, b in enumerate(BARCODES)]
    assert rate / 1.6 < run_rate(model, [], [], reads) < rate * 1.6


def test_whole_copies_without_windows_at_two_rates_give_no_stop_model():
    """A reference of mini-barcodes (under ``WINDOW`` bases: no window), or one whose copies reach a
    window at one rate only, fits ``dna~`` without a stop model, not a ValueError out of clibd index."""
    from clibd_cli.classification.error_rate import fit_on_windows
    from clibd_cli.classification.read_errors import DEFAULT_RATES, read_pseudo_queries

    mini = [stretch(b, 150, f"mini{i}") for i, b in enumerate(BARCODES)]
    assert read_pseudo_queries(mini, range(len(mini)), DEFAULT_RATES, seed=0)[3] is None
    assert fit_on_windows([BARCODES[0], *mini[1:5]], DEFAULT_RATES) is None  # windows at 0.5 % only
    assert fit_on_windows(BARCODES[:5], DEFAULT_RATES)["rates"] == [min(DEFAULT_RATES), max(DEFAULT_RATES)]
