"""The barcode gap of each reference label: how alike its own records are, how near the next label.

A known species with a variable barcode and a new species with a close congener can look alike
to the three neighbour features (``calibration.py``): the winner's nearest record is far in
both. What tells them apart is the label itself — how spread its own records are, and how far
its nearest other label lies (the "barcode gap" of DNA barcoding; PROTAX and dnabarcoder use
such local distances). Fitted from the reference's own nearest neighbours when the index is
built, per rank and label:

* ``within``: the median, over the label's records, of the similarity of each record to its
  nearest other record of the same label — of another species for a genus, of another genus
  for a family (records without such a record among their k nearest are left out; labels
  without any: the rank's median);
* ``nearest_other``: the similarity of the nearest record of another label to any of the
  label's records (at most the k-th neighbour's similarity when none is among the k nearest).

Two features of the winning label follow (:func:`gap_features`): the winner's nearest
similarity minus ``within`` (is the query as close as the label's own records are to each
other?) and minus ``nearest_other`` (is it closer than the next label?). Pseudo-queries that
stand in for new taxa leave their taxon out of the reference; so that the winner's
``nearest_other`` is not the left-out taxon, the fit keeps each label's ``OTHERS`` nearest
labels and skips those in the left-out taxon (:func:`gap_features` ``excluded``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clibd_cli.classification.taxonomy import ReferenceTaxonomy

GAP_FEATURES = ("spread", "gap")
NEIGHBOURS = 50  # nearest records of each reference record the gaps are measured on
OTHERS = 3  # nearest other labels kept per label while fitting (for left-out taxa)


@dataclass
class RankGaps:
    """One rank's gaps per label code; ``others``/``other_sims`` only while fitting."""

    within: np.ndarray  # [L]
    nearest_other: np.ndarray  # [L]
    others: np.ndarray | None = None  # [L, OTHERS] codes of the nearest other labels, -1 padded
    other_sims: np.ndarray | None = None  # [L, OTHERS]

    def to_json(self) -> dict:
        return {"within": np.round(self.within, 4).tolist(), "nearest_other": np.round(self.nearest_other, 4).tolist()}

    @classmethod
    def from_json(cls, data: dict) -> RankGaps:
        return cls(np.asarray(data["within"], dtype=np.float64), np.asarray(data["nearest_other"], dtype=np.float64))


def fit_gaps(reference: ReferenceTaxonomy, rows: np.ndarray, sims: np.ndarray,
             rank_sims: dict[str, np.ndarray] | None = None) -> dict[str, RankGaps]:
    """Gaps per rank from each reference record's nearest records ``rows``/``sims`` ``[N, k]``
    (the record itself among them or not; ``rank_sims``: other similarities of those records at
    some ranks, ``calibration.rank_similarities``)."""
    n = len(rows)
    rows = np.asarray(rows)
    found = np.isfinite(sims) & (rows >= 0) & (rows != np.arange(n)[:, None])
    out = {}
    ranks = reference.ranks
    for depth, rank in enumerate(ranks):
        sims_here = (rank_sims or {}).get(rank, sims)
        kth = np.where(found, sims_here, np.inf).min(axis=1, initial=np.inf)
        kth = np.where(np.isfinite(kth), kth, 0.0)
        code = reference.codes[rank]
        n_labels = len(reference.names[rank])
        own = code[:, None]
        label = np.where(found, code[np.maximum(rows, 0)], -1)
        same = found & (label == own) & (own >= 0)
        if depth + 1 < len(ranks):  # a genus's spread is between its species, not within them
            finer = reference.codes[ranks[depth + 1]]
            below = np.where(found, finer[np.maximum(rows, 0)], -1)
            same &= (below >= 0) & (finer[:, None] >= 0) & (below != finer[:, None])
        # nearest same-label record per record (NaN when none is among the k nearest)
        mine = np.where(same.any(axis=1), np.where(same, sims_here, -np.inf).max(axis=1), np.nan)
        within = np.full(n_labels, np.nan)
        has = code >= 0
        order = np.argsort(code[has], kind="stable")
        codes_sorted, mine_sorted = code[has][order], mine[has][order]
        starts = np.searchsorted(codes_sorted, np.arange(n_labels))
        ends = np.searchsorted(codes_sorted, np.arange(n_labels), side="right")
        for c in np.flatnonzero(ends > starts):
            spread = mine_sorted[starts[c]:ends[c]]
            if np.isfinite(spread).any():
                within[c] = np.nanmedian(spread)
        measured = np.isfinite(within)
        within[~measured] = np.median(within[measured]) if measured.any() else 1.0
        out[rank] = _others(code, label, sims_here, found, kth, n_labels, within)
    return out


def _others(code: np.ndarray, label: np.ndarray, sims: np.ndarray, found: np.ndarray, kth: np.ndarray,
            n_labels: int, within: np.ndarray) -> RankGaps:
    """Each label's nearest other labels, from (own label, other label, similarity) triples."""
    other = found & (label >= 0) & (label != code[:, None]) & (code[:, None] >= 0)
    q, j = np.nonzero(other)
    triples = np.stack([code[q], label[q, j]], axis=1)
    s = sims[q, j].astype(np.float64)
    order = np.lexsort((-s, triples[:, 1], triples[:, 0]))
    triples, s = triples[order], s[order]
    first = np.ones(len(s), bool)
    first[1:] = (triples[1:] != triples[:-1]).any(axis=1)  # best similarity per (own, other) pair
    triples, s = triples[first], s[first]
    order = np.lexsort((-s, triples[:, 0]))
    triples, s = triples[order], s[order]
    rank_in_own = np.arange(len(s)) - np.searchsorted(triples[:, 0], triples[:, 0])
    keep = rank_in_own < OTHERS
    others = np.full((n_labels, OTHERS), -1, dtype=np.int64)
    other_sims = np.full((n_labels, OTHERS), np.nan)
    others[triples[keep, 0], rank_in_own[keep]] = triples[keep, 1]
    other_sims[triples[keep, 0], rank_in_own[keep]] = s[keep]
    # a label whose records see no other label: the other labels lie at most the k-th neighbour away
    bound = np.zeros(n_labels)
    np.maximum.at(bound, code[code >= 0], kth[code >= 0])
    other_sims = np.where(others >= 0, other_sims, bound[:, None])
    return RankGaps(within, other_sims[:, 0].copy(), others, other_sims)


def gap_features(gaps: RankGaps, code: np.ndarray, nearest: np.ndarray,
                 excluded: np.ndarray | None = None) -> np.ndarray:
    """``[Q, 2]``: the winner's nearest similarity minus its label's ``within`` and
    ``nearest_other``; 0 where no label won. ``excluded[q, o]`` (fitting only): other label
    ``o`` of the winner ``code[q]`` (its ``others`` column) is left out for query ``q``."""
    c = np.maximum(code, 0)
    other = gaps.nearest_other[c]
    if excluded is not None:
        usable = ~excluded & (gaps.others[c] >= 0)
        first = np.argmax(usable, axis=1)
        other = np.where(usable.any(axis=1), gaps.other_sims[c, first], gaps.other_sims[c, -1])
    x = np.stack([nearest - gaps.within[c], nearest - other], axis=1)
    return np.where((code >= 0)[:, None], x, 0.0)
