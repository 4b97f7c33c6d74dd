"""What a run's first barcodes tell of it: whether it is of raw reads with sequencing errors
(``query_kinds.read_run``) and, where the reads' maps read it, their errors per base
(``error_rate.run_rate``); both kept in the run's :class:`~clibd_cli.classification.batch_prior.Run`
and said on stderr; and the share of its whole reads from new species (:func:`reads_shares`).
:class:`~clibd_cli.classification.classifier.Classifier` asks on a run's first call."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from clibd_cli.classification.batch_prior import Run, ScenarioModel, estimate_tied_shares
from clibd_cli.classification.calibration import Calibration
from clibd_cli.classification.error_rate import run_rate
from clibd_cli.classification.query_kinds import READ_KIND, SHORT_READ_KIND, read_run
from models.errors import counted

log = logging.getLogger("clibd")
TIED_SCENARIOS = ("unseen_species", "unseen_genus")  # a run of whole reads' EM weighs them together (reads_shares)


def tells_reads(reads: bool | None, kinds: Sequence[str]) -> bool:
    """Whether a run's first records tell whether it is of reads (``--reads auto``, an index with
    ``dna<500~``)."""
    return reads is None and SHORT_READ_KIND in kinds


def rate_model(calibrations: dict[str, Calibration], kinds: Sequence[str]) -> dict | None:
    """The stop model that tells a run's error rate, where the ``dna<500~`` or ``dna~`` maps read it."""
    readers = [kind for kind in (SHORT_READ_KIND, READ_KIND) if kind in kinds]
    return next((calibrations[k].stop_model for k in readers if calibrations[k].by_rate), None)


def reads_shares(calibration: Calibration, stacked: np.ndarray, prior_unseen: float) -> np.ndarray:
    """Scenario shares of a run's whole reads with errors (``dna~``) by EM on their ``stacked`` features
    (``batch_prior.estimate_tied_shares``), new species and new genera estimated together, split between them
    as the calibration assumes (``Calibration.shares``: of new species' and genera's queries,
    ``unseen_genus_fraction`` of new genera); seen species and new families apart, as ever. Fitted on
    copies of the reference's records, the scenario model tells a read of a new genus from one of a new
    species too weakly for EM to weigh them: on BOLD's reads with 1 % errors (``classify_bold.py --model
    kmer-aa --errors 0.01``) it took 8 % of the queries for new genera (3 % so) and named the genus of
    17 % of new species' reads (53 % so; 48 and 54 % at ``clibd --seed`` 1 and 2, 65 and 61 % so). A
    batch of new genera still reads as new, as new families. A calibration fitted on held-out reads
    (seen and unseen) is estimated as every other is."""
    model = ScenarioModel.from_json(calibration.scenario_model)
    tied = [i for i, name in enumerate(calibration.scenarios) if name in TIED_SCENARIOS]
    return estimate_tied_shares(model.posterior(stacked), np.asarray(model.training_shares),
                                calibration.shares(prior_unseen), tied)


def tell_rate(run: Run, model: dict | None, bases: list[int], breaks: list[int], whole: list[str],
              reads: bool) -> None:
    """The run's errors per base from its first barcodes' stops (``error_rate.run_rate``), said for reads."""
    run.read_rate = None if model is None else run_rate(model, bases, breaks, whole)
    if model is not None and (reads or run.read_run):
        told = " and ".join(counted(n, what) for n, what in ((len(bases), "partial barcode"), (len(whole), "whole one"))
                            if n) or "no barcode"
        log.info("the run's reads taken to have %.1f %% errors per base (told from the stops of the first %s; "
                 "fitted %g-%g %%)", 100 * run.read_rate, told, *(100 * r for r in model["rates"]))


def tell_reads(run: Run, fitted: bool, partial: list[int], whole: list[int]) -> None:
    """Whether the run is of reads with errors, from the stops the best frames of its first
    partial barcodes, or of its first whole ones, meet (``partial``, ``whole``; either may tell,
    ``query_kinds.read_run``), said on stderr if so; an index whose ``dna<500~`` was fitted on
    copies meeting a stop only (``fitted`` false; before session 25: too sure of new species for
    reads meeting none) keeps sending only those there, and says so."""
    told = read_run(partial) or read_run(whole)
    run.read_run = reads = bool(told and fitted)
    said = " and ".join(f"{sum(n > 0 for n in breaks):,} of the first {counted(len(breaks), what)}"
                        for breaks, what in ((partial, "partial barcode"), (whole, "whole barcode")) if breaks)
    said += " read with a frame break (a stop in their best frame)"
    if reads:
        log.info("%s: the run is taken for raw reads with sequencing errors, and every partial barcode reads "
                 "the %s confidences (--reads no: only those with a stop)", said, SHORT_READ_KIND)
    elif told:
        log.warning("%s, as raw reads with sequencing errors do, but this index's %s confidences were fitted on "
                    "reads meeting a stop only: the others read the clean stretches' (rebuild the index with "
                    "clibd index --calibrate-on to classify runs of reads; --reads yes to send them all there "
                    "anyway)", said, SHORT_READ_KIND)
