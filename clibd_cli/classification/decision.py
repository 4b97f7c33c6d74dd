"""Nearest reference neighbours -> per-rank taxonomic labels with calibrated confidences.

Decision. Ranks are decided top-down (coarse to fine), each only from the neighbours labelled
at that rank: every label among the first ``k`` neighbours gets a similarity-weighted vote
(weights ``exp((sim - best) / tau_vote)``), and the winner is the label with the most votes
among those whose parent is the label picked at the rank above (among all labels if no
neighbour offers such a label, or if the rank above was left unknown). A rank is left unknown
(code -1) when a neighbour labelled only at finer ranks is closer than every record of the
winner: the reference does not say what that relative is at this rank.

Confidence: see ``clibd_cli/classification/calibration.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clibd_cli.classification.barcode_gap import GAP_FEATURES, RankGaps, gap_features
from clibd_cli.classification.calibration import Calibration, query_columns
from clibd_cli.classification.taxonomy import RankedPrediction, ReferenceTaxonomy
from clibd_cli.defaults import CALIBRATION

_CHUNK = 2048  # queries per vectorised chunk
_EPS = 1e-4  # distance floor for the log scale (sims of duplicates are ~1)


@dataclass
class Decisions:
    """Winning label codes and their features per rank for a batch of queries."""

    codes: dict[str, np.ndarray]  # rank -> [Q] code, -1 where no neighbour is labelled
    features: dict[str, np.ndarray]  # rank -> [Q, len(calibration.feature_names)]

    def __len__(self) -> int:
        return len(next(iter(self.codes.values())))

    def stacked(self) -> np.ndarray:
        """``[Q, ranks x features]``: what the scenario model looks at."""
        return np.concatenate(list(self.features.values()), axis=1)


def predict(
    rows: np.ndarray, sims: np.ndarray, reference: ReferenceTaxonomy, calibration: Calibration,
    min_confidence: float = CALIBRATION.min_confidence, shares: np.ndarray | None = None,
    decisions: Decisions | None = None,
) -> list[RankedPrediction]:
    """Per-rank predictions for queries with neighbours ``rows``/``sims`` ``[Q, K]`` (whose
    :func:`label` ``decisions`` may be given) at scenario ``shares`` (None: the calibration's own,
    ``calibration.shares()``)."""
    decisions = label(rows, sims, reference, calibration) if decisions is None else decisions
    codes, conf = decisions.codes, confidences(decisions, reference, calibration, shares)
    out, first = [], reference.ranks[0]
    for q in range(len(rows)):
        labels = {r: (reference.names[r][codes[r][q]] if codes[r][q] >= 0 else None)
                  for r in reference.ranks}
        confidence = {r: float(conf[r][q]) for r in reference.ranks}
        above = reference.lineage_above(labels[first])
        sure = {r: confidence[first] if name else 0.0 for r, name in above.items()}  # as the order; unnamed: 0
        out.append(RankedPrediction(
            {**above, **labels}, {**sure, **confidence},
            reference.ids[rows[q, 0]], float(sims[q, 0]), min_confidence,
        ))
    return out


def decide(
    rows: np.ndarray, sims: np.ndarray, reference: ReferenceTaxonomy, calibration: Calibration,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`label` and :func:`confidences` without the predictions around them:
    ``({rank: code [Q]}, {rank: confidence [Q]})`` at the calibration's own scenario shares
    (``calibration.shares()``), for the benchmarks that score many queries at once."""
    decisions = label(rows, sims, reference, calibration)
    return decisions.codes, confidences(decisions, reference, calibration)


def label(
    rows: np.ndarray, sims: np.ndarray, reference: ReferenceTaxonomy, calibration: Calibration,
    bases: np.ndarray | None = None, rank_sims: dict[str, np.ndarray] | None = None, rate: float | None = None,
) -> Decisions:
    """The winning label at each rank, top-down, and its features (with the queries' unambiguous
    ``bases``, needed by a calibration ``by_length``, and their run's error ``rate`` per base, by one
    ``by_rate``; with ``rank_sims``, the neighbours' similarities at the ranks the calibration reads
    from a part of the vectors, ``calibration.rank_similarities``)."""
    if set(calibration.rank_parts) - set(rank_sims or {}):
        raise ValueError("this calibration reads some ranks from a part of the vectors: give rank_sims")
    if calibration.by_length and (bases is None or len(bases) != len(rows)):
        raise ValueError("this calibration reads the length of each query: give bases")
    if calibration.by_rate and rate is None:
        raise ValueError("this calibration reads the run's error rate: give rate")
    codes: dict[str, list] = {r: [] for r in reference.ranks}
    features: dict[str, list] = {r: [] for r in reference.ranks}
    gaps = calibration.rank_gaps()
    for start in range(0, len(rows), _CHUNK):
        chunk = slice(start, start + _CHUNK)
        view = Neighbours(rows[chunk, : calibration.k], sims[chunk, : calibration.k],
                          {r: x[chunk, : calibration.k] for r, x in (rank_sims or {}).items()})
        above_code = None
        for rank in reference.ranks:
            fit = calibration.ranks[rank]
            votes = view.at_rank(reference, rank, above_code)
            pick = votes.pick(fit["tau_vote"])
            above_code = votes.winner(pick)
            codes[rank].append(above_code)
            features[rank].append(votes.features(pick, fit["tau_share"], gaps.get(rank), gapped=bool(gaps)))
    width = len(calibration.feature_names) - calibration.by_length - calibration.by_rate
    stacked = {r: np.concatenate(v) if v else np.zeros((0, width)) for r, v in features.items()}
    own = query_columns(bases if calibration.by_length else None,
                        np.full(len(rows), rate) if calibration.by_rate else None)
    if own is not None:
        stacked = {r: np.hstack([x, own]) for r, x in stacked.items()}
    return Decisions({r: np.concatenate(v) if v else np.zeros(0, np.int64) for r, v in codes.items()}, stacked)


def confidences(
    decisions: Decisions, reference: ReferenceTaxonomy, calibration: Calibration,
    shares: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per rank, the confidence of the winning label at scenario ``shares``, capped by the rank
    above (``calibration.py``'s module docstring)."""
    posterior = calibration.posterior(decisions.stacked(), calibration.shares() if shares is None else shares)
    conf = {}
    above_code = above_conf = None
    ceiling = np.ones(len(decisions))  # confidence of the nearest labelled rank above
    for rank in reference.ranks:
        code = decisions.codes[rank]
        p = calibration.probability(rank, decisions.features[rank], posterior)
        p = np.minimum(np.where(code >= 0, p, 0.0), ceiling)
        if above_code is not None:  # a label outside the parent picked above: 1 - p(parent)
            parent = reference.parents[rank][code]
            clash = (parent >= 0) & (above_code >= 0) & (parent != above_code)
            p = np.where(clash, np.minimum(p, 1.0 - above_conf), p)
        conf[rank] = p
        above_code, above_conf = code, p
        ceiling = np.where(code >= 0, p, ceiling)
    return conf


class Neighbours:
    """The first k neighbours of a batch of queries, as the per-rank decisions see them (with
    their similarities at some ranks, ``by_rank``, measured otherwise)."""

    def __init__(self, rows: np.ndarray, sims: np.ndarray, by_rank: dict[str, np.ndarray] | None = None):
        self.rows, self.sims = rows, sims.astype(np.float64)
        self.by_rank = by_rank or {}
        self.found = np.isfinite(self.sims)  # pseudo-queries may find fewer than k records
        # any label not among the neighbours lies at most this similar
        self.kth_sim = np.where(self.found, self.sims, np.inf).min(axis=1, initial=np.inf)

    def at_rank(
        self, reference: ReferenceTaxonomy, rank: str, above: np.ndarray | None
    ) -> Votes:
        """The neighbours' labels at ``rank``; candidates restricted to children of ``above``."""
        if rank in self.by_rank:
            return Neighbours(self.rows, np.where(self.found, self.by_rank[rank], -np.inf)).at_rank(
                reference, rank, above)
        label = reference.codes[rank][self.rows]  # [Q, K]
        valid = (label >= 0) & self.found
        finer = reference.ranks[reference.ranks.index(rank) + 1:]
        below = np.zeros_like(valid)
        for other in finer:
            below |= reference.codes[other][self.rows] >= 0
        silent = below & ~valid & self.found  # labelled below this rank but not at it
        allowed = valid
        if above is not None:
            under = valid & (reference.parents[rank][label] == above[:, None])
            under &= above[:, None] >= 0
            allowed = np.where(under.any(axis=1)[:, None], under, valid)
        same = (label[:, :, None] == label[:, None, :]) & valid[:, None, :]  # [Q, i, j]
        return Votes(self, label, valid, allowed, same, silent)


@dataclass
class Votes:
    """Neighbour labels at one rank: similarity-weighted votes, the winner and its features."""

    neighbours: Neighbours
    label: np.ndarray  # [Q, K] codes
    valid: np.ndarray  # labelled at this rank
    allowed: np.ndarray  # may win (under the label picked at the rank above, if possible)
    same: np.ndarray  # [Q, i, j]: neighbours i and j carry the same label
    silent: np.ndarray  # [Q, K]: labelled at a finer rank but not at this one
    tallies: dict = field(default_factory=dict, repr=False, compare=False)  # tau -> votes(tau): a cache

    def votes(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """Per neighbour, the summed weight of its label, and the total weight (kept per ``tau``:
        the calibration's fit asks for each twice, to pick and to read the features)."""
        if tau not in self.tallies:
            sims, has = self.neighbours.sims, self.valid.any(axis=1)
            best = np.where(self.valid, sims, -np.inf).max(axis=1, initial=-np.inf)
            gap = np.where(self.valid, sims - np.where(has, best, 0.0)[:, None], -np.inf)  # <= 0
            weight = np.exp(gap / tau)
            self.tallies[tau] = np.einsum("qij,qj->qi", self.same, weight), weight.sum(axis=1)
        return self.tallies[tau]

    def pick(self, tau: float) -> np.ndarray:
        """Column of the winning neighbour: most votes among the allowed labels."""
        return np.argmax(np.where(self.allowed, self.votes(tau)[0], -1.0), axis=1)

    def winner(self, pick: np.ndarray) -> np.ndarray:
        """Winning label codes, -1 where no neighbour is labelled at this rank, or where a neighbour
        closer than every record of the winner is labelled below this rank but not at it (a genus
        whose reference records have no family: the rank is unknown, not the nearest labelled one's)."""
        sims, picked = self.neighbours.sims, (np.arange(len(pick)), pick)
        s_in = np.where(self.same[picked], sims, -np.inf).max(axis=1, initial=-np.inf)
        s_silent = np.where(self.silent, sims, -np.inf).max(axis=1, initial=-np.inf)
        known = self.valid.any(axis=1) & ~(s_silent > s_in)
        return np.where(known, self.label[picked], -1)

    def features(self, pick: np.ndarray, tau: float, gaps: RankGaps | None = None,
                 excluded: np.ndarray | None = None, gapped: bool = False) -> np.ndarray:
        """[Q, 3] log distance of the winner, margin over other labels, vote share; with the
        rank's barcode ``gaps``, [Q, 5] (``barcode_gap.gap_features``, ``excluded`` passed on), and
        with ``gapped`` but no gaps at this rank (other ranks read theirs), [Q, 5] with 0 for them."""
        sims, picked = self.neighbours.sims, (np.arange(len(pick)), pick)
        mine = self.same[picked]  # [Q, K]: neighbours carrying the winning label
        s_in = np.where(mine, sims, -np.inf).max(axis=1, initial=-np.inf)
        s_out = np.where(self.valid & ~mine, sims, -np.inf).max(axis=1, initial=-np.inf)
        s_out = np.where(np.isfinite(s_out), s_out, self.neighbours.kth_sim)
        votes, total = self.votes(tau)
        share = votes[picked] / np.maximum(total, 1e-300)
        x = np.stack([np.log(np.maximum(1.0 - s_in, _EPS)), s_in - s_out, share], axis=1)
        if gaps is not None:
            x = np.hstack([x, gap_features(gaps, self.winner(pick), s_in, excluded)])
        elif gapped:
            x = np.hstack([x, np.zeros((len(x), len(GAP_FEATURES)))])
        return np.where(self.valid.any(axis=1)[:, None], x, 0.0)
