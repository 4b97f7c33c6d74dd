"""Centroids of a reference's barcode profiles, and the floors held-out barcodes set on them.

Both sketches of an index are built this way: the k-mer sketch (5-mer profiles,
:mod:`clibd_cli.reference.sketch`) and the translation sketch (amino-acid pair profiles,
:mod:`clibd_cli.reference.protein_sketch`). The centroids are fitted by spherical k-means; a floor
is the similarity to the nearest centroid that all but a small share of the reference's own
barcodes reach with their own centroid left out, as a barcode of a cluster the reference lacks (a
new genus) would find it; stretches cut from those barcodes give the floors of partial barcodes,
by length.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clibd_cli.embedding.translation import frame_breaks
from clibd_cli.embedding.unit import unit_rows
from clibd_cli.io.sequences import random_stretch, with_errors

PARTIAL_LENGTHS = (150, 200, 300, 400, 500)  # bases: stretches the partial-barcode floors are fitted on
WHOLE_FROM = 600  # bases from which a barcode meets the whole-barcode floor
PARTIAL_SAMPLE = 5000  # barcodes cut per length
CENTROIDS = 256
PER_CENTROID = 50  # a small reference gets fewer centroids: each must stand for many barcodes
ROUNDS = 10  # of k-means
FLOOR_QUANTILE = 0.001  # share of the reference's own barcodes allowed below a floor
_BLOCK = 4096


@dataclass
class Clusters:
    """Unit ``profiles [N, D]`` of a sample of barcodes, their ``centres [C, D]``, the ``sums``
    the centres normalise and each profile's centre (``members [N]``)."""

    profiles: np.ndarray
    centres: np.ndarray
    sums: np.ndarray
    members: np.ndarray


def fit_clusters(profiles: np.ndarray, rng: np.random.Generator) -> Clusters:
    """Unit centroids of the unit rows ``profiles``, one per ``PER_CENTROID`` of them, at most
    ``CENTROIDS`` (cosine k-means, ``ROUNDS`` rounds; an emptied centroid keeps its place)."""
    count = max(1, min(CENTROIDS, len(profiles) // PER_CENTROID))
    centres = profiles[rng.choice(len(profiles), count, replace=False)].copy()
    sums = np.zeros_like(centres)
    for _ in range(ROUNDS):
        nearest = np.concatenate([(profiles[s : s + _BLOCK] @ centres.T).argmax(axis=1)
                                  for s in range(0, len(profiles), _BLOCK)])
        order = np.argsort(nearest, kind="stable")
        counts = np.bincount(nearest, minlength=count)
        filled = counts > 0
        sums[:] = 0.0
        sums[filled] = np.add.reduceat(profiles[order], (np.cumsum(counts) - counts)[filled])
        centres[filled] = unit_rows(sums[filled])  # a copy: sums stay sums
    return Clusters(profiles, np.ascontiguousarray(centres, dtype=np.float32), sums, nearest)


def held_out_similarity(clusters: Clusters, x: np.ndarray | None = None,
                        at: np.ndarray | None = None) -> np.ndarray:
    """Each row of ``x`` (default: the clusters' own profiles) to its nearest centroid other than
    its barcode's own (``at``: which profile of the clusters each row was cut from); with one
    centroid, that centroid without the barcode's profile."""
    x = clusters.profiles if x is None else x
    at = np.arange(len(x)) if at is None else at
    out = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), _BLOCK):
        rows, whose = x[s : s + _BLOCK], at[s : s + _BLOCK]
        own = clusters.members[whose]
        sims = rows @ clusters.centres.T
        if len(clusters.centres) > 1:
            sims[np.arange(len(rows)), own] = -1.0
        else:
            rest = clusters.sums[own] - clusters.profiles[whose]
            norms = np.linalg.norm(rest, axis=1)
            sims[:, 0] = np.where(norms > 1e-6, (rows * rest).sum(axis=1) / np.maximum(norms, 1e-6), -1.0)
        out[s : s + len(rows)] = sims.max(axis=1)
    return out


def length_floors(clusters: Clusters, barcodes: Sequence[str], profile: Callable[[list[str]], np.ndarray],
                  rng: np.random.Generator, quantiles: list[float], whole: list[float],
                  errors: float = 0.0) -> list[list[float]]:
    """Per quantile, per ``PARTIAL_LENGTHS``: the floor of stretches of that many bases cut from
    (up to ``PARTIAL_SAMPLE``) of the clusters' ``barcodes`` (one strand, the profiles' order),
    profiled by ``profile``, each against the centroids but its barcode's own; never above a longer
    stretch's floor or the whole-barcode floor (``whole``, one per quantile). With ``errors``, the
    stretches are read with sequencing errors at that rate per base (:func:`with_errors`) and only
    those that meet a stop codon in every frame count (:func:`frame_breaks`; none at a length: no
    floor there, 0)."""
    floors = []
    for length in PARTIAL_LENGTHS:
        at = rng.permutation(len(barcodes))[:PARTIAL_SAMPLE]
        cut = [random_stretch(barcodes[i], rng, length, length) for i in at]
        if errors:
            draws = random.Random(int(rng.integers(1 << 32)))
            cut = [with_errors(c, errors, draws) for c in cut]
            stopped = frame_breaks(cut) > 0
            cut, at = [c for c, s in zip(cut, stopped) if s], at[stopped]
        sims = held_out_similarity(clusters, profile(cut), at)
        floors.append(np.quantile(sims, quantiles).tolist() if len(sims) else None)
    none = 0.0 if errors else None  # the floor of a length where no stretch counts (None: a longer one's)
    return [_under_longer([None if f is None else f[q] for f in floors], top, none)
            for q, top in enumerate(whole)]


def _under_longer(floors: list[float | None], top: float, none: float | None) -> list[float]:
    """``floors`` (shortest first) each lowered to the longer ones' and ``top``; one that is None (no
    stretch counted) is ``none``, or the longer ones' floor if None, and lowers no shorter one."""
    out: list[float] = []
    for floor in floors[::-1]:
        top = top if floor is None else min(top, floor)
        out.append(none if floor is None and none is not None else top)
    return out[::-1]


def below(value: float, floor: float) -> str:
    """``value < floor`` for a note, with as many decimals (two at least) as tell them apart."""
    digits = 2
    while digits < 6 and f"{value:.{digits}f}" == f"{floor:.{digits}f}":
        digits += 1
    return f"{value:.{digits}f} < {floor:.{digits}f}"


def rounded(floors: float | list[float] | None) -> float | list[float] | None:
    """Floors as a manifest keeps them: six decimals."""
    if isinstance(floors, list):
        return [round(float(f), 6) for f in floors]
    return None if floors is None else round(float(floors), 6)


def by_length(bases: Sequence[int], short: list[float] | None, whole: float) -> np.ndarray:
    """The floor of barcodes of so many ``bases``: between the ``short`` floors (of
    ``PARTIAL_LENGTHS``; None: ``whole`` throughout) and the ``whole``-barcode floor."""
    if not short:
        return np.full(len(bases), whole)
    return np.interp(np.asarray(bases, dtype=np.float64), [*PARTIAL_LENGTHS, WHOLE_FROM], [*short, whole])
