"""Nearest reference neighbours -> per-rank taxonomic labels with calibrated confidences.

Decision. Ranks are decided top-down (coarse to fine), each only from the neighbours labelled
at that rank: every label among the first ``k`` neighbours gets a similarity-weighted vote
(weights ``exp((sim - best) / tau_vote)``), and the winner is the label with the most votes
among those whose parent is the label picked at the rank above (among all labels if no
neighbour offers such a label). The lineage is therefore consistent by construction.

Confidence. For the winning label three features are computed: the distance ``1 - sim`` of the
nearest neighbour carrying it (log scale), its margin over the nearest neighbour carrying a
different label at that rank (or over the k-th neighbour if there is none: any other label lies
at least that far), and its vote share (temperature ``tau_share``). Vote shares alone would be
overconfident: ten neighbours of one species at 0.85 similarity vote 100% for it although the
query is most likely of a species missing from the reference. So the features are mapped to the
probability that the label is right by a per-rank logistic regression refined by isotonic
regression, fitted on the reference itself (:func:`fit_calibration`): reference records serve
as pseudo-queries searched (a) as *seen* queries, excluding only the record itself, (b) as
*unseen-species* queries, excluding every record of their species (the species answer is then
wrong by definition), and (c) as *unseen-genus* queries, excluding their whole genus. The
scenarios are mixed with weights ``1 - prior_unseen``, ``prior_unseen * (1 -
unseen_genus_fraction)`` and ``prior_unseen * unseen_genus_fraction``, where ``prior_unseen``
is the assumed share of queries whose species is absent from the reference. Both temperatures
are fitted per rank too. Where labelled held-out queries are at hand (e.g. a dataset's ``val``
and ``val_unseen`` splits), the maps can be refitted on them (:func:`fit_calibration_held_out`).
Finally a rank's confidence is capped by the rank above (a species
cannot be more certain than its genus; a label outside the parent picked above by ``1 -`` that
parent's confidence), so the labels passing a cutoff form an unbroken lineage from the top.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from clibd_cli.errors import ClibdError

RANK_LETTERS = {"kingdom": "k", "phylum": "p", "class": "c", "order": "o", "family": "f",
                "genus": "g", "species": "s"}
FEATURES = ("log_distance", "margin", "vote_share")
_CHUNK = 2048  # queries per vectorised chunk
_EPS = 1e-4  # distance floor for the log scale (sims of duplicates are ~1)


@dataclass
class ReferenceTaxonomy:
    """Reference labels as integer codes per rank (-1 = not labelled), with label parents."""

    ids: list[str]
    names: dict[str, list[str]]  # rank -> label per code
    codes: dict[str, np.ndarray]  # rank -> [N] int64 code per record
    parents: dict[str, np.ndarray]  # rank -> parent code per label code, then -1 (so code -1 -> -1)

    @property
    def ranks(self) -> list[str]:
        return list(self.codes)

    @classmethod
    def from_labels(
        cls, ids: Sequence[str], labels: Mapping[str, Sequence[str | None]]
    ) -> ReferenceTaxonomy:
        """Encode ``{rank: [label or None per record]}`` (ranks ordered coarse to fine)."""
        names, codes, parents = {}, {}, {}
        above = None
        for rank, values in labels.items():
            vocab = sorted({v for v in values if v is not None})
            lookup = {v: i for i, v in enumerate(vocab)}
            code = np.array([-1 if v is None else lookup[v] for v in values], dtype=np.int64)
            names[rank], codes[rank] = vocab, code
            parents[rank] = _majority_parent(code, above, len(vocab))
            above = code
        return cls(list(ids), names, codes, parents)


@dataclass
class RankedPrediction:
    """One query: best label and confidence per rank, and its nearest reference record."""

    labels: dict[str, str | None]  # best label per rank; None when no neighbour is labelled
    confidence: dict[str, float]
    nearest_id: str
    nearest_sim: float
    min_confidence: float

    @property
    def assigned(self) -> dict[str, str | None]:
        """Labels whose confidence reaches the cutoff; the others None."""
        return {r: (v if self.confidence[r] >= self.min_confidence else None)
                for r, v in self.labels.items()}

    @property
    def status(self) -> str:
        return "assigned" if any(self.assigned.values()) else "unassigned"

    def lineage(self) -> str:
        """SINTAX-style ``o:Diptera(1.00),...,s:Aedes_albopictus(0.41)`` over labelled ranks."""
        return ",".join(
            f"{RANK_LETTERS.get(r, r)}:{v.replace(' ', '_')}({self.confidence[r]:.2f})"
            for r, v in self.labels.items() if v is not None
        )


@dataclass
class Calibration:
    """Fitted feature -> probability maps per rank (JSON-serialisable)."""

    k: int  # neighbours the features look at
    prior_unseen: float
    unseen_genus_fraction: float
    ranks: dict[str, dict]  # rank -> {"tau_vote", "tau_share", "mean", "scale", "coef",
    #                                   "intercept", "iso_x", "iso_y"}
    fitted_on: dict  # provenance: pseudo-query counts and seed, or held-out query counts

    @property
    def held_out(self) -> bool:
        """Whether the maps were fitted on held-out queries (else on the reference's pseudo-queries)."""
        return "held_out_queries" in self.fitted_on

    def to_json(self) -> dict:
        return {"format": "clibd-calibration/1", "features": list(FEATURES), **self.__dict__}

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        if data.get("format") != "clibd-calibration/1" or data.get("features") != list(FEATURES):
            raise ClibdError("unsupported calibration format; rebuild the index with clibd index")
        return cls(**{k: v for k, v in data.items() if k not in ("format", "features")})

    def probability(self, rank: str, features: np.ndarray) -> np.ndarray:
        """Calibrated probability that the winning label at ``rank`` is right."""
        p = self.ranks[rank]
        z = (features - np.asarray(p["mean"])) / np.asarray(p["scale"])
        score = _sigmoid(z @ np.asarray(p["coef"]) + p["intercept"])
        return np.interp(score, p["iso_x"], p["iso_y"]) if p["iso_x"] else score


def predict(
    rows: np.ndarray, sims: np.ndarray, reference: ReferenceTaxonomy, calibration: Calibration,
    min_confidence: float = 0.8,
) -> list[RankedPrediction]:
    """Per-rank predictions for queries with neighbours ``rows``/``sims`` ``[Q, K]``."""
    codes, conf = decide(rows, sims, reference, calibration)
    out = []
    for q in range(len(rows)):
        labels = {r: (reference.names[r][codes[r][q]] if codes[r][q] >= 0 else None)
                  for r in reference.ranks}
        out.append(RankedPrediction(
            labels, {r: float(conf[r][q]) for r in reference.ranks},
            reference.ids[rows[q, 0]], float(sims[q, 0]), min_confidence,
        ))
    return out


def decide(
    rows: np.ndarray, sims: np.ndarray, reference: ReferenceTaxonomy, calibration: Calibration
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Vectorised core of :func:`predict`: ``({rank: code [Q]}, {rank: confidence [Q]})``."""
    codes: dict[str, list] = {r: [] for r in reference.ranks}
    conf: dict[str, list] = {r: [] for r in reference.ranks}
    for start in range(0, len(rows), _CHUNK):
        chunk = slice(start, start + _CHUNK)
        view = _Neighbours(rows[chunk, : calibration.k], sims[chunk, : calibration.k])
        above_code = above_conf = None
        ceiling = np.ones(len(view.rows))  # confidence of the nearest labelled rank above
        for rank in reference.ranks:
            fit = calibration.ranks[rank]
            votes = view.at_rank(reference, rank, above_code)
            pick = votes.pick(fit["tau_vote"])
            code = votes.winner(pick)
            features = votes.features(pick, fit["tau_share"])
            p = np.minimum(np.where(code >= 0, calibration.probability(rank, features), 0.0), ceiling)
            if above_code is not None:  # a label outside the parent picked above: 1 - p(parent)
                parent = reference.parents[rank][code]
                clash = (parent >= 0) & (above_code >= 0) & (parent != above_code)
                p = np.where(clash, np.minimum(p, 1.0 - above_conf), p)
            codes[rank].append(code)
            conf[rank].append(p)
            above_code, above_conf = code, p
            ceiling = np.where(code >= 0, p, ceiling)
    return ({r: np.concatenate(v) if v else np.zeros(0, np.int64) for r, v in codes.items()},
            {r: np.concatenate(v) if v else np.zeros(0) for r, v in conf.items()})


class _Neighbours:
    """The first k neighbours of a batch of queries, as the per-rank decisions see them."""

    def __init__(self, rows: np.ndarray, sims: np.ndarray):
        self.rows, self.sims = rows, sims.astype(np.float64)
        self.found = np.isfinite(self.sims)  # pseudo-queries may find fewer than k records
        # any label not among the neighbours lies at most this similar
        self.kth_sim = np.where(self.found, self.sims, np.inf).min(axis=1, initial=np.inf)

    def at_rank(
        self, reference: ReferenceTaxonomy, rank: str, above: np.ndarray | None
    ) -> _Votes:
        """The neighbours' labels at ``rank``; candidates restricted to children of ``above``."""
        label = reference.codes[rank][self.rows]  # [Q, K]
        valid = (label >= 0) & self.found
        allowed = valid
        if above is not None:
            under = valid & (reference.parents[rank][label] == above[:, None])
            under &= above[:, None] >= 0
            allowed = np.where(under.any(axis=1)[:, None], under, valid)
        same = (label[:, :, None] == label[:, None, :]) & valid[:, None, :]  # [Q, i, j]
        return _Votes(self, label, valid, allowed, same)


@dataclass
class _Votes:
    """Neighbour labels at one rank: similarity-weighted votes, the winner and its features."""

    neighbours: _Neighbours
    label: np.ndarray  # [Q, K] codes
    valid: np.ndarray  # labelled at this rank
    allowed: np.ndarray  # may win (under the label picked at the rank above, if possible)
    same: np.ndarray  # [Q, i, j]: neighbours i and j carry the same label

    def votes(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """Per neighbour, the summed weight of its label, and the total weight."""
        sims, has = self.neighbours.sims, self.valid.any(axis=1)
        best = np.where(self.valid, sims, -np.inf).max(axis=1, initial=-np.inf)
        gap = np.where(self.valid, sims - np.where(has, best, 0.0)[:, None], -np.inf)  # <= 0
        weight = np.exp(gap / tau)
        return np.einsum("qij,qj->qi", self.same, weight), weight.sum(axis=1)

    def pick(self, tau: float) -> np.ndarray:
        """Column of the winning neighbour: most votes among the allowed labels."""
        return np.argmax(np.where(self.allowed, self.votes(tau)[0], -1.0), axis=1)

    def winner(self, pick: np.ndarray) -> np.ndarray:
        """Winning label codes, -1 where no neighbour is labelled at this rank."""
        return np.where(self.valid.any(axis=1), self.label[np.arange(len(pick)), pick], -1)

    def features(self, pick: np.ndarray, tau: float) -> np.ndarray:
        """[Q, 3] log distance of the winner, margin over other labels, vote share."""
        sims, picked = self.neighbours.sims, (np.arange(len(pick)), pick)
        mine = self.same[picked]  # [Q, K]: neighbours carrying the winning label
        s_in = np.where(mine, sims, -np.inf).max(axis=1, initial=-np.inf)
        s_out = np.where(self.valid & ~mine, sims, -np.inf).max(axis=1, initial=-np.inf)
        s_out = np.where(np.isfinite(s_out), s_out, self.neighbours.kth_sim)
        votes, total = self.votes(tau)
        share = votes[picked] / np.maximum(total, 1e-300)
        x = np.stack([np.log(np.maximum(1.0 - s_in, _EPS)), s_in - s_out, share], axis=1)
        return np.where(self.valid.any(axis=1)[:, None], x, 0.0)


def fit_calibration(
    index, *, query_vectors: np.ndarray | None = None, k: int = 50, n_queries: int = 3000,
    prior_unseen: float = 0.5, unseen_genus_fraction: float = 0.1, seed: int = 0,
    taus: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
) -> Calibration:
    """Fit the confidence calibration on a :class:`~clibd_cli.refindex.ReferenceIndex` itself.

    ``n_queries`` records drawn uniformly (``seed``) are searched exactly as seen queries, and
    ``n_queries`` drawn uniformly over species (each species is an equally good proxy for a
    new one, whatever its sampling effort) as unseen-species and unseen-genus queries.
    ``prior_unseen`` is the assumed share of queries whose species is absent from the
    reference and ``unseen_genus_fraction`` the share of those whose genus is absent too.
    Vote temperatures are picked from ``taus`` (see :func:`_fit_ranks`). For queries of
    another modality, ``query_vectors[i]`` is record ``i`` seen that way (e.g. the photo of
    the specimen whose barcode is record ``i``); all-zero rows (no photo) are not sampled.
    """
    reference = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    vectors = index.vectors()
    source = vectors if query_vectors is None else np.asarray(query_vectors, dtype=np.float32)
    if source.shape != vectors.shape:
        raise ClibdError(f"query vectors {list(source.shape)} do not match the reference "
                         f"{list(vectors.shape)}")
    usable = np.flatnonzero(np.abs(source).sum(axis=1) > 0)
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(vectors) - 1))
    ranks = reference.ranks[::-1]  # finest first
    seen = rng.choice(usable, min(n_queries, len(usable)), replace=False)
    finest = reference.codes[ranks[0]]
    labelled = usable[finest[usable] >= 0]
    unseen = labelled
    if len(labelled) > n_queries:
        rarity = 1.0 / np.bincount(finest[labelled])[finest[labelled]]
        unseen = rng.choice(labelled, n_queries, replace=False, p=rarity / rarity.sum())
    unseen_plans = [(ranks[i], ranks[i + 1] if i + 1 < len(ranks) else None)
                    for i in range(min(2, len(ranks)))]
    found = (_pseudo_queries(source, vectors, seen, reference, k, [(None, None)])
             + _pseudo_queries(source, vectors, unseen, reference, k, unseen_plans))
    shares = [1 - prior_unseen, prior_unseen * (1 - unseen_genus_fraction),
              prior_unseen * unseen_genus_fraction]
    scenarios = [({r: reference.codes[r][queries] for r in reference.ranks}, rows, sims, share)
                 for (queries, rows, sims), share in zip(found, shares) if share > 0 and len(queries)]
    return Calibration(
        k, prior_unseen, unseen_genus_fraction, _fit_ranks(scenarios, reference, k, taus),
        {"pseudo_queries": [len(s[1]) for s in scenarios], "seed": seed,
         "references": len(vectors)},
    )


ABSENT = np.iinfo(np.int64).max  # truth code of a label the reference lacks: never a winner


def fit_calibration_held_out(
    index, query_vectors: np.ndarray, query_labels: Mapping[str, Sequence[str | None]],
    decisions: Calibration, *, prior_unseen: float | None = None,
    taus: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
) -> Calibration:
    """Refit the confidences of ``decisions`` on labelled held-out queries searched in ``index``.

    The decision rule (neighbour count, vote temperatures) stays that of ``decisions``, fitted
    on the reference's many pseudo-queries; only the feature -> probability maps are fitted on
    the real queries. Only queries labelled at the finest rank are used: one whose label there
    is not in the reference is *unseen* (its answer at that rank is wrong by definition), the
    others *seen*; both kinds are needed. ``prior_unseen`` reweights the two groups to that
    share of unseen queries, ``None`` keeps the held-out set's own mix. Search is exact.
    """
    from clibd_cli.refindex import exact_search

    reference = ReferenceTaxonomy.from_labels(index.ids, index.labels)
    vectors = index.vectors()
    queries = np.asarray(query_vectors, dtype=np.float32).reshape(-1, vectors.shape[1])
    truth = {}
    for rank in reference.ranks:
        lookup = {name: code for code, name in enumerate(reference.names[rank])}
        truth[rank] = np.array([-1 if v is None else lookup.get(v, ABSENT) for v in query_labels[rank]],
                               dtype=np.int64)
    finest = reference.ranks[-1]
    labelled = truth[finest] != -1
    unseen = truth[finest][labelled] == ABSENT
    if unseen.all() or not unseen.any():
        raise ClibdError(
            f"the held-out queries must include both {finest} in the reference and {finest} absent from it "
            f"to calibrate (usable queries labelled at {finest}: {int((~unseen).sum())} in the reference, "
            f"{int(unseen.sum())} absent; check that their names are spelled as the reference's)")
    truth = {rank: t[labelled] for rank, t in truth.items()}
    k = decisions.k
    rows, sims = exact_search(vectors, queries[labelled], k)
    mix = float(unseen.mean())
    prior = mix if prior_unseen is None else prior_unseen
    scenarios = [({r: t[group] for r, t in truth.items()}, rows[group], sims[group], share)
                 for group, share in ((~unseen, 1 - prior), (unseen, prior)) if share > 0]
    above = reference.ranks[-2] if len(reference.ranks) > 1 else None
    new_above = float((truth[above][unseen] == ABSENT).mean()) if above else 0.0
    vote_taus = {rank: fit["tau_vote"] for rank, fit in decisions.ranks.items()}
    return Calibration(
        k, prior, new_above, _fit_ranks(scenarios, reference, k, taus, vote_taus),
        {"held_out_queries": [int((~unseen).sum()), int(unseen.sum())], "held_out_unseen_share": mix,
         "references": len(vectors)},
    )


def _pseudo_queries(
    source: np.ndarray, vectors: np.ndarray, sample: np.ndarray, reference: ReferenceTaxonomy,
    k: int, plans: list[tuple[str | None, str | None]],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Exact neighbours ``(queries, rows, sims)`` of sampled records, one triple per plan.

    Record ``q`` queries as ``source[q]`` against the reference ``vectors``.

    A plan ``(rank, above)`` excludes every record sharing the query's label at ``rank``
    (unseen species / unseen genus), and the records of its ``above`` taxon not labelled at
    ``rank`` (BIOSCAN's pretrain records lack species: they may be of the query's species).
    The query is kept only if labelled at ``rank`` and its ``above`` taxon still has records
    left (a species of a monotypic genus simulates an unseen genus, not an unseen species).
    ``(None, None)`` excludes only the record itself (seen).
    """
    from clibd_cli.refindex import top_k

    sample = np.sort(sample)
    empty = (np.zeros(0, np.int64), np.zeros((0, k), np.int64), np.zeros((0, k), np.float32))
    found: list[list] = [[empty] for _ in plans]
    for start in range(0, len(sample), 256):
        queries = sample[start : start + 256]
        scores = source[queries] @ vectors.T
        for (rank, above), out in zip(plans, found):
            if rank is None:
                excluded, keep = np.arange(len(vectors))[None, :] == queries[:, None], queries >= 0
            else:
                code = reference.codes[rank]
                excluded = code[None, :] == code[queries][:, None]
                keep = code[queries] >= 0
                if above is not None:
                    up = reference.codes[above]
                    kin = up[None, :] == up[queries][:, None]
                    excluded |= kin & (code < 0)[None, :]  # unlabelled kin may be the same taxon
                    keep &= (kin & ~excluded).any(axis=1) & (up[queries] >= 0)
            rows, sims = top_k(np.where(excluded, -np.inf, scores), k)
            out.append((queries[keep], rows[keep], sims[keep]))
    return [tuple(np.concatenate(parts) for parts in zip(*out)) for out in found]


def _fit_ranks(
    scenarios: list, reference: ReferenceTaxonomy, k: int, taus: Sequence[float],
    vote_taus: Mapping[str, float] | None = None,
) -> dict[str, dict]:
    """Per rank, top-down: the vote temperature that makes the most correct winners (unless
    given in ``vote_taus``), the vote-share temperature whose logistic map has the least
    log-loss, and that map refined by isotonic regression. A scenario is ``(truth codes by
    rank, rows, sims, share)``."""
    views = [_Neighbours(rows[:, :k], sims[:, :k]) for _, rows, sims, _ in scenarios]
    above: list[np.ndarray | None] = [None] * len(scenarios)
    fitted = {}
    for rank in reference.ranks:
        votes = [view.at_rank(reference, rank, up) for view, up in zip(views, above)]
        truth = [codes[rank] for codes, *_ in scenarios]
        weight = [np.where((t >= 0) & v.valid.any(axis=1), share / max(len(t), 1), 0.0)
                  for t, v, (*_, share) in zip(truth, votes, scenarios)]
        best = None
        for tau in taus if vote_taus is None else [vote_taus[rank]]:  # ascending: ties go to the sharper vote
            picks = [v.pick(tau) for v in votes]
            hits = sum(float((w * (v.winner(p) == t)).sum())
                       for v, p, t, w in zip(votes, picks, truth, weight))
            if best is None or hits > best[0] + 1e-12:
                best = (hits, tau, picks)
        _, tau_vote, picks = best
        winners = [v.winner(p) for v, p in zip(votes, picks)]
        y = np.concatenate([wn == t for wn, t in zip(winners, truth)]).astype(float)
        w = np.concatenate(weight)
        use = w > 0
        best = None
        for tau in taus:
            x = np.concatenate([v.features(p, tau) for v, p in zip(votes, picks)])[use]
            fit = _fit_logistic(x, y[use], w[use])
            if best is None or fit["loss"] < best[1]["loss"]:
                best = (tau, fit)
        tau_share, fit = best
        iso_x, iso_y = _isotonic(fit.pop("score"), y[use], w[use])
        fit.pop("loss")
        fitted[rank] = {"tau_vote": tau_vote, "tau_share": tau_share, **fit,
                        "iso_x": iso_x.tolist(), "iso_y": iso_y.tolist()}
        above = winners
    return fitted


def _fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict:
    """Standardise features and fit the logistic map; also returns its scores and log-loss."""
    mean = x.mean(axis=0) if len(x) else np.zeros(len(FEATURES))
    scale = np.maximum(x.std(axis=0), 1e-6) if len(x) else np.ones(len(FEATURES))
    z = (x - mean) / scale
    coef, intercept = _logistic(z, y, w / max(w.mean(), 1e-300) if len(w) else w)
    score = np.clip(_sigmoid(z @ coef + intercept), 1e-9, 1 - 1e-9)
    loss = float(-(w * (y * np.log(score) + (1 - y) * np.log(1 - score))).sum())
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(),
            "intercept": intercept, "score": score, "loss": loss}


def _logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-2
) -> tuple[np.ndarray, float]:
    """Weighted L2-regularised logistic regression by Newton's method (IRLS)."""
    a = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(a.shape[1])
    ridge = l2 * np.diag([1.0] * x.shape[1] + [0.0])
    for _ in range(50):
        p = _sigmoid(a @ beta)
        grad = a.T @ (w * (y - p)) - ridge @ beta
        hess = (a * (w * p * (1 - p))[:, None]).T @ a + ridge + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def _isotonic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted isotonic (non-decreasing) regression by pool-adjacent-violators.

    Returns the blocks' mean x and fitted y, for ``np.interp``; without data, a map to 0 (no
    evidence, never confident).
    """
    if len(x) == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 0.0])
    order = np.argsort(x, kind="stable")
    blocks: list[list[float]] = []  # [sum w*y, sum w, sum w*x]
    for xi, yi, wi in zip(x[order], y[order], w[order]):
        blocks.append([wi * yi, wi, wi * xi])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] >= blocks[-1][0] * blocks[-2][1]:
            wy, ww, wx = blocks.pop()
            blocks[-1] = [blocks[-1][0] + wy, blocks[-1][1] + ww, blocks[-1][2] + wx]
    sums = np.array(blocks).reshape(-1, 3)
    return sums[:, 2] / sums[:, 1], sums[:, 0] / sums[:, 1]


def _majority_parent(child: np.ndarray, parent: np.ndarray | None, n_labels: int) -> np.ndarray:
    """For each child label code, the parent code most records with it carry (-1 if none).

    One extra trailing -1 lets a missing code (-1) be looked up directly.
    """
    out = np.full(n_labels + 1, -1, dtype=np.int64)
    if parent is None:
        return out
    both = (child >= 0) & (parent >= 0)
    pairs, counts = np.unique(np.stack([child[both], parent[both]], axis=1), axis=0,
                              return_counts=True)
    order = np.lexsort((-counts, pairs[:, 0]))  # by child, most frequent parent first
    pairs = pairs[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    out[pairs[first, 0]] = pairs[first, 1]
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
