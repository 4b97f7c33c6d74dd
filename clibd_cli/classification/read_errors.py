"""Simulated sequencing errors, so that confidences can be fitted for reads as well as clean barcodes.

A read with errors lies farther from its species' reference barcodes than a clean barcode does,
and maps fitted on clean barcodes read that distance as a new species (benchmarks/README.md,
*Reads with sequencing errors*). ``clibd index --calibrate-errors RATE[,RATE...]`` (0.5 to 5 % by
default, the copies at each in turn) copies up to ``MAX_READS`` reference records with such errors
(:func:`read_pseudo_queries`; the errors: :func:`clibd_cli.io.sequences.with_errors`) and, with
``--calibrate-on``, each held-out query (:func:`held_out_reads`); the copies that read with a frame
break calibrate the ``dna~`` queries (``query_kinds.py``), the clean records the other kinds
exactly as without them. The partial-barcode pseudo-queries are copied so too, for the
``dna<500~`` queries (:func:`partial_read_pseudo_queries`): every copy, with a frame break or
not, as a run of reads sends every partial barcode there (``query_kinds.read_run``), at each of
``PARTIAL_RATES`` in turn, as those maps read the run's error rate (``error_rate.py``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from clibd_cli.classification.error_rate import fit_on_windows
from clibd_cli.classification.query_kinds import (SHORT_BELOW, PartialQueries, partial_barcodes, read_queries,
                                                  short_queries)
from clibd_cli.embedding.embedder import Embedder
from clibd_cli.io.sequences import unambiguous_bases, with_errors
from clibd_cli.reference.sources import References
from models.errors import ClibdError

MAX_READS = 6000  # reference records copied with errors for the dna~ pseudo-queries
MAX_PARTIAL_READS = 1500  # of the dna<500 pseudo-queries, those copied for the dna<500~ ones (index build time)
PARTIAL_RATES = (0.005, 0.01, 0.02, 0.03, 0.05)  # of the dna<500~ copies, whose maps read the run's rate
DEFAULT_RATES = PARTIAL_RATES  # of the dna~ copies, in turn (1 and 2 % until session 26: benchmarks/README.md)


def read_rates(asked: tuple[float, ...] | None, sketch) -> tuple[float, ...]:
    """The error rates of the ``dna~`` pseudo-queries for a reference with ``sketch``
    (``reference/sketch.py``): ``asked``, or ``DEFAULT_RATES`` if None; none where the reference's
    barcodes do not read as protein (nothing tells a read from a clean barcode there), which
    refuses rates ``asked`` for."""
    protein = sketch is not None and sketch.stop_floor is not None
    if asked and sketch is None:
        raise ClibdError("--calibrate-errors: the index has no k-mer sketch (an earlier clibd built it); rebuild "
                         "it to calibrate it for reads with sequencing errors")
    if asked and not protein:
        raise ClibdError("--calibrate-errors: the reference's barcodes do not read as protein; reads with "
                         "errors are told apart by frame breaks in a protein-coding marker (COI)")
    return (DEFAULT_RATES if asked is None else asked) if protein else ()


def _copies(barcodes: Sequence[str], keys: Sequence[str],
            rates: Sequence[float]) -> tuple[list[str], list[float]]:
    """Each barcode with errors at the ``rates`` in turn (the first at ``rates[0]``, the second at
    ``rates[1]``, ...), seeded by its key, and the rate of each."""
    each = [rates[i % len(rates)] for i in range(len(barcodes))]
    return [with_errors(b, rate, random.Random(f"read errors {key}"))
            for b, key, rate in zip(barcodes, keys, each)], each


def held_out_reads(held_out: References, rates: Sequence[float]) -> tuple[References, list[float]]:
    """Copies of the ``held_out`` barcodes with errors at ``rates`` per base in turn (each seeded by its
    record id: the same errors on every run), labelled as their originals: those that read with a
    frame break (``query_kinds.read_queries``; the others would read the clean barcodes' calibration),
    and the rate of each."""
    copies, each = _copies(held_out.items, held_out.ids, rates)
    reads, kept = References(held_out.modality), []
    for i, is_read in enumerate(read_queries(copies)):
        if is_read:
            reads.add(held_out.ids[i], {rank: values[i] for rank, values in held_out.labels.items()}, copies[i])
            kept.append(each[i])
    return reads, kept


def partial_read_pseudo_queries(partial: tuple[Sequence[int], Sequence[str]],
                                seed: int) -> tuple[list[int], list[str], list[float]]:
    """The ``dna<500`` pseudo-queries ``partial`` (reference rows and their stretches,
    ``query_kinds.short_pseudo_queries``), each copied with errors at ``PARTIAL_RATES`` in turn: the
    rows, copies and rates of those that stay partial (the ``dna<500~`` pseudo-queries), whether they
    read with a frame break or not (a run of reads sends them all there; until session 25 only those
    with one: the others' known species then read as new, benchmarks/README.md)."""
    rows, stretches = partial
    copies, rates = _copies(stretches, [f"{seed} partial {row}" for row in rows], PARTIAL_RATES)
    kept = np.flatnonzero(np.array([unambiguous_bases(c) for c in copies], dtype=np.int64) < SHORT_BELOW)
    return [rows[i] for i in kept], [copies[i] for i in kept], [rates[i] for i in kept]


def partial_read_queries(embedder: Embedder, partial: tuple[Sequence[int], Sequence[str]],
                         held_out: tuple[Sequence[str], dict] | None, seed: int) -> tuple[PartialQueries, dict | None]:
    """The ``dna<500~`` pseudo-queries of (up to ``MAX_PARTIAL_READS`` of, seeded) ``partial``
    (:func:`partial_read_pseudo_queries`) embedded as reads, with the ``held_out`` queries' stretches
    (their barcodes cut as ``query_kinds.short_queries`` cuts them) copied so, and the labels by rank
    of those kept (those that stay partial), if given."""
    rows, stretches = partial
    if len(rows) > MAX_PARTIAL_READS:
        picked = np.sort(np.random.default_rng([seed, MAX_PARTIAL_READS]).choice(len(rows), MAX_PARTIAL_READS,
                                                                                 replace=False))
        rows, stretches = [rows[i] for i in picked], [stretches[i] for i in picked]
    *plan, rates = partial_read_pseudo_queries((rows, stretches), seed)
    short = short_queries(embedder, plan, None, seed, reads=True)
    short.rates = np.array(rates)
    if held_out is None:
        return short, None
    barcodes, labels = held_out
    kept, copies, rates = partial_read_pseudo_queries((range(len(barcodes)), partial_barcodes(barcodes, seed)), seed)
    short.held_out = (embedder.reads(copies), np.array([unambiguous_bases(c) for c in copies]))
    short.held_stretches, short.held_rates = copies, np.array(rates)
    return short, {rank: [values[i] for i in kept] for rank, values in labels.items()}


def read_pseudo_queries(barcodes: Sequence[str], rows: Sequence[int], rates: Sequence[float],
                        seed: int) -> tuple[list[int], list[str], list[float], dict | None]:
    """Up to ``MAX_READS`` of the reference ``rows`` (seeded), each ``barcodes`` copy with errors at
    ``rates`` in turn: the rows, copies and rates of those that read with a frame break (the ``dna~``
    pseudo-queries), and the stop model of every copy (``error_rate.fit_on_windows``; None at one rate)."""
    picked = np.arange(len(rows))
    if len(rows) > MAX_READS:
        picked = np.sort(np.random.default_rng([seed, MAX_READS]).choice(len(rows), MAX_READS, replace=False))
    copies, each = _copies([barcodes[i] for i in picked], [f"{seed} {rows[i]}" for i in picked], rates)
    kept = np.flatnonzero(read_queries(copies))
    return ([rows[picked[i]] for i in kept], [copies[i] for i in kept], [each[i] for i in kept],
            fit_on_windows(copies, each))
