"""What a run's first barcodes tell of it: whether it is of raw reads with sequencing errors
(``query_kinds.read_run``) and, where the reads' maps read it, their errors per base
(``error_rate.run_rate``); both kept in the run's :class:`~clibd_cli.classification.batch_prior.Run`
and said on stderr. :class:`~clibd_cli.classification.classifier.Classifier` asks on a run's first call."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from clibd_cli.classification.batch_prior import Run
from clibd_cli.classification.calibration import Calibration
from clibd_cli.classification.error_rate import run_rate
from clibd_cli.classification.query_kinds import READ_KIND, SHORT_READ_KIND, read_run
from models.errors import counted

log = logging.getLogger("clibd")


def tells_reads(reads: bool | None, kinds: Sequence[str]) -> bool:
    """Whether a run's first records tell whether it is of reads (``--reads auto``, an index with
    ``dna<500~``)."""
    return reads is None and SHORT_READ_KIND in kinds


def rate_model(calibrations: dict[str, Calibration], kinds: Sequence[str]) -> dict | None:
    """The stop model that tells a run's error rate, where the ``dna<500~`` or ``dna~`` maps read it."""
    readers = [kind for kind in (SHORT_READ_KIND, READ_KIND) if kind in kinds]
    return next((calibrations[k].stop_model for k in readers if calibrations[k].by_rate), None)


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
