"""Defaults that the command-line options and the library share: one definition each.

The ranks and the modalities are the model core's (``models/config.py``: ``RANKS``, ``TOWERS``);
this module holds the reference index's HNSW parameters and the confidence calibration's
settings, read by the options of ``clibd index``, ``clibd classify`` and ``clibd evaluate`` and by
the library that builds, calibrates and searches an index (``clibd_cli/reference/hnsw_index.py``,
``clibd_cli/indexing/build.py``, ``clibd_cli/classification/``, ``clibd_cli/evaluation/``), the
signals that stop a run (``clibd_cli/main.py``, ``clibd_cli/training/loop.py``) and the keys per
species of ``clibd train --val-limit`` (``clibd_cli/training/validation.py``). Standard library
only: the option definitions load with ``clibd --help``.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

# The signals that end a run as Ctrl-C (SIGINT) does, with what clibd says: SIGHUP is a closed terminal
# or SSH session. The command line unwinds on them; training stops after its step and saves last/.
STOP_SIGNALS = {signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}

# `clibd train --val-limit` keeps up to this many keys of each sampled query's species (validation.sample).
VAL_KEYS_PER_SPECIES = 20


@dataclass(frozen=True)
class HnswDefaults:
    """HNSW graph parameters of a reference index (hnswlib; stored in its manifest)."""

    M: int = 32  # graph degree (memory ≈ M×8–10 bytes per record)
    ef_construction: int = 200  # build-time search width
    ef: int = 128  # query-time search width


@dataclass(frozen=True)
class CalibrationDefaults:
    """How the confidence calibration is fitted (``clibd_cli/classification/fitting.py``) and the
    confidence a reported label must reach (``clibd_cli/classification/decision.py``)."""

    neighbours: int = 50  # k: nearest references that decide each query
    prior_unseen: float = 0.5  # assumed share of queries whose species is absent from the reference
    unseen_genus_fraction: float = 0.1  # share of those whose genus is absent too
    pseudo_queries: int = 3000  # reference records drawn per scenario
    taus: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)  # vote temperatures tried
    min_confidence: float = 0.8  # the cutoff a rank's label must reach to be reported


HNSW = HnswDefaults()
CALIBRATION = CalibrationDefaults()
