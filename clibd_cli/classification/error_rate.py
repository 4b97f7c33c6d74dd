"""A run's sequencing error rate, told from the stops its partial barcodes' best frames meet.

An insertion or deletion shifts the rest of a read's frame, which then meets a stop codon sooner
or later: the more errors per base and the longer the read, the likelier (of BOLD's held-out
stretches of 100-199 bases, 18 % meet one at 0.5 % errors, 31 % at 1 %, 54 % at 3 %; of 400-499
bases, 69, 87 and 99 %). A read farther from its species' records the more errors it has, the
``dna<500~`` maps fitted at one rate were over-confident for reads with fewer errors and
under-confident for reads with more (benchmarks/README.md, *A run's error rate*), so they read the
run's rate too (``calibration.RATE_FEATURE``), fitted on copies at ``read_errors.PARTIAL_RATES``.
The stop model, fitted on those same copies, is a logistic map of (log rate, log bases, their
product) to the chance of a stop (``probability_map.fit_logistic``); a run's rate is the one under
which its first partial barcodes' stops are likeliest, within the rates fitted (:func:`run_rate`).
A whole read meets a stop at nearly any rate (93 % at 1 %, 99 % at 3 %), so whole barcodes tell it
by their ``WINDOW``-base stretches, each read on its own (:func:`windows`), and the ``dna~`` maps,
fitted on whole copies at several rates (``read_errors.read_pseudo_queries``), read it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clibd_cli.classification.probability_map import apply_map, check_map, fit_logistic
from clibd_cli.embedding.translation import frame_breaks
from clibd_cli.io.sequences import unambiguous_bases

DEFAULT_RATE = 0.01  # for a run whose first records hold no barcode to tell it
WINDOW = 200  # bases of the stretches a whole barcode is read in, each for its own stops
_GRID = 97  # rates tried between the fitted ones, evenly on a log scale
_RIDGE = 1e-2


def _design(log_rate: np.ndarray, bases: np.ndarray) -> np.ndarray:
    log_bases = np.log(np.maximum(np.asarray(bases, dtype=np.float64), 1.0))
    log_rate, log_bases = np.broadcast_arrays(log_rate, log_bases)
    return np.stack([log_rate, log_bases, log_rate * log_bases], axis=-1)


def fit_stop_model(rates: Sequence[float], bases: Sequence[int], breaks: Sequence[int]) -> dict:
    """The stop model (JSON-able) of copies with errors at ``rates`` per base, of ``bases``
    unambiguous bases each, whose best frames met ``breaks`` stops; ``"rates"``: the range fitted."""
    rates = np.asarray(rates, dtype=np.float64)
    if len(rates) == 0 or rates.min() <= 0 or rates.min() == rates.max():
        raise ValueError("a stop model needs copies at two error rates or more, all above 0")
    stopped = (np.asarray(breaks) > 0).astype(np.float64)
    fit = fit_logistic(_design(np.log(rates), np.asarray(bases)), stopped, np.ones(len(rates)), _RIDGE)
    return {key: fit[key] for key in ("mean", "scale", "coef", "intercept")} | {
        "iso_x": [], "iso_y": [], "rates": [float(rates.min()), float(rates.max())]}


def windows(barcodes: Sequence[str]) -> list[str]:
    """The consecutive ``WINDOW``-base stretches of ``barcodes`` (a shorter rest dropped)."""
    return [b[at: at + WINDOW] for b in barcodes for at in range(0, len(b) - WINDOW + 1, WINDOW)]


def stops_told(barcodes: Sequence[str]) -> tuple[list[int], np.ndarray]:
    """The evidence whole ``barcodes`` give of their error rate: the unambiguous bases of their
    :func:`windows` and the stops each one's best frame meets."""
    cut = windows(barcodes)
    return [unambiguous_bases(w) for w in cut], frame_breaks(cut)


def fit_on_windows(reads: Sequence[str], rates: Sequence[float]) -> dict | None:
    """The stop model of whole ``reads`` copied with errors at ``rates`` each, from their windows;
    None unless the windows are of two rates or more (a reference of mini-barcodes has none)."""
    told = np.repeat(np.asarray(rates, dtype=np.float64), [len(r) // WINDOW for r in reads])  # windows each
    if len(set(told.tolist())) < 2:
        return None
    bases, breaks = stops_told(reads)
    return fit_stop_model(told, bases, breaks)


def check_stop_model(model: dict) -> None:
    """ValueError (KeyError, TypeError) unless ``model`` is a stop model as :func:`fit_stop_model`
    writes it: a map of its three features and the range of rates fitted."""
    check_map(model, 3)  # _design's: log rate, log bases, their product
    low, high = (float(rate) for rate in model["rates"])
    if not 0 < low < high:
        raise ValueError("the stop model's rates are not a range of error rates above 0")


def stop_chance(model: dict, rate: float | np.ndarray, bases: Sequence[int] | np.ndarray) -> np.ndarray:
    """The chance that a read of ``bases`` unambiguous bases, with ``rate`` errors per base, meets a
    stop in its best frame (``[N]``, or as ``rate`` and ``bases`` broadcast)."""
    return apply_map(model, _design(np.log(rate), np.asarray(bases)))


def run_rate(model: dict, bases: Sequence[int], breaks: Sequence[int], whole: Sequence[str] = ()) -> float:
    """The error rate per base under which partial barcodes of ``bases`` unambiguous bases meeting
    ``breaks`` stops, and the windows of the ``whole`` barcodes (:func:`stops_told`), are likeliest,
    among the rates ``model`` was fitted on and between (``DEFAULT_RATE`` within them where there are
    none: nothing tells it)."""
    if len(whole):
        more = stops_told(whole)
        bases, breaks = [*bases, *more[0]], [*breaks, *more[1]]
    low, high = model["rates"]
    if len(bases) == 0:
        return float(np.clip(DEFAULT_RATE, low, high))
    grid = np.geomspace(low, high, _GRID)
    stopped = np.asarray(breaks) > 0
    chance = np.clip(stop_chance(model, grid[:, None], np.asarray(bases)[None, :]), 1e-9, 1 - 1e-9)
    likelihood = np.where(stopped[None, :], np.log(chance), np.log1p(-chance)).sum(axis=1)
    return float(grid[int(np.argmax(likelihood))])
