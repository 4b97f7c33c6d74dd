"""Simulated sequencing errors, so that confidences can be fitted for reads as well as clean barcodes.

A read with errors lies farther from its species' reference barcodes than a clean barcode does,
and maps fitted on clean barcodes read that distance as a new species (benchmarks/README.md,
*Reads with sequencing errors*). ``clibd index --calibrate-errors RATE`` adds to the held-out
calibration queries a copy of each with such errors (:func:`add_reads`); the copies that read
with a frame break calibrate the ``dna~`` queries (``query_kinds.py``), the clean originals the
others, as without the option.
"""

from __future__ import annotations

import random

from clibd_cli.classification.query_kinds import read_queries
from clibd_cli.reference.sources import References

BASES = "ACGT"
READ_SUFFIX = "~read"  # the id of a held-out query's copy with errors: ID~read


def with_errors(barcode: str, rate: float, rng: random.Random) -> str:
    """``barcode`` with sequencing errors: each base substituted, followed by an inserted base,
    or deleted, with probability ``rate / 3`` each (as raw nanopore reads have them)."""
    if rate <= 0:
        return barcode
    out: list[str] = []
    for base in barcode:
        draw = rng.random() * 3 / rate
        if draw >= 3:
            out.append(base)
        elif draw < 1:
            out.append(rng.choice([b for b in BASES if b != base]))
        elif draw < 2:
            out += [base, rng.choice(BASES)]
    return "".join(out)


def add_reads(held_out: References, rate: float) -> int:
    """Add to ``held_out`` a copy of each barcode with errors at ``rate`` per base (seeded by its
    record id: the same errors on every run), labelled as the original, where the copy reads with
    a frame break (``query_kinds.read_queries``; the others would read the clean barcodes'
    calibration); the number added."""
    originals = range(len(held_out))
    copies = [with_errors(held_out.items[i], rate, random.Random(f"read errors {held_out.ids[i]}")) for i in originals]
    added = 0
    for i, is_read in zip(originals, read_queries(copies)):
        if is_read:
            held_out.add(held_out.ids[i] + READ_SUFFIX, {rank: values[i] for rank, values in held_out.labels.items()},
                         copies[i])
            added += 1
    return added
