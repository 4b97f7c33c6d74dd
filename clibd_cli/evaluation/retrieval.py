"""Nearest keys of each query, and the calls a classifier built on them would make.

Every method (a CLIBD query→key pair, the k-mer baseline, the external tools) answers a set of
queries with an :class:`Outcome`: the labels of each query's nearest keys (the paper's top-k
metrics), and optionally :class:`Calls` (best label, confidence and whether it is asserted,
per rank: the open-set metrics). For embedding methods the calls are what ``clibd classify``
would print with an index of the keys: :func:`clibd_cli.classification.fitting.fit_calibration` fitted on
the key vectors, then :func:`clibd_cli.classification.decision.label` and ``confidences`` on the
neighbours at the share of new species estimated on the queries (``_calibrated_calls``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clibd_cli.defaults import CALIBRATION
from clibd_cli.evaluation.protocol import Records
from models.config import RANKS

DEPTH = 5  # neighbours kept for top-k (k = 1, 3, 5)


@dataclass
class Calls:
    """Per rank: each query's best label (None: no answer), its confidence, and whether the
    method asserts it (confidence ≥ cutoff). ``confidence`` is None for methods without one."""

    labels: dict[str, np.ndarray]
    asserted: dict[str, np.ndarray]
    confidence: dict[str, np.ndarray] | None = None


@dataclass
class Outcome:
    """One method's answer for one query set against one key set."""

    truth: dict[str, np.ndarray]  # rank -> true label of each evaluated query (None: missing)
    neighbours: dict[str, np.ndarray]  # rank -> [Q, K] labels of the nearest keys, nearest first
    depth: int = DEPTH  # top-k is defined for k <= depth (sintax answers only one label)
    calls: Calls | None = None
    missing: int = 0  # queries the method could not take (no photo, unusable barcode)
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.truth.values())))


@dataclass
class Queries:
    """The queries of one part (seen/unseen): records and the positions evaluated."""

    records: Records
    positions: np.ndarray

    def labels(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        at = self.positions if rows is None else self.positions[rows]
        return {rank: self.records.labels[rank][at] for rank in RANKS}


@dataclass
class _KeySet:
    """Key records as :func:`~clibd_cli.classification.fitting.fit_calibration` reads a reference index."""

    ids: list[str]
    labels: dict[str, list]
    matrix: np.ndarray

    def node_vectors(self) -> np.ndarray:  # every key its own node
        return self.matrix

    @property
    def nodes(self) -> np.ndarray:
        return np.arange(len(self.matrix))


@dataclass
class PairMethod:
    """Queries of one modality embedded by ``source`` searched among keys of another."""

    name: str
    source: object  # a clibd_cli.evaluation.vectors source
    query: str
    key: str
    search: str = "exact"  # or "hnsw"
    min_confidence: float = CALIBRATION.min_confidence
    seed: int = 0
    threads: int = 1

    @property
    def makes_calls(self) -> bool:
        """Calibrated calls need keys that are specimens (text keys are label strings)."""
        return self.key != "text"

    @property
    def gives_confidence(self) -> bool:
        return self.makes_calls

    def run(self, embeddings, keys: Records, parts: dict[str, Queries]) -> dict[str, Outcome]:
        key_vectors = embeddings.get(self.source, keys.groups, self.key)
        usable = np.flatnonzero(np.abs(key_vectors).sum(axis=1) > 0)
        labels = {rank: keys.labels[rank][usable] for rank in RANKS}
        keyset = _KeySet([str(i) for i in usable], {r: v.tolist() for r, v in labels.items()},
                         np.ascontiguousarray(key_vectors[usable]))
        search = self._searcher(keyset)
        calibration = taxonomy = None
        if self.makes_calls and len(usable) > 1:
            from clibd_cli.classification.fitting import fit_calibration
            from clibd_cli.classification.taxonomy import ReferenceTaxonomy
            cross = None
            if self.query != self.key:  # the key specimens seen as queries (e.g. their photos)
                cross = embeddings.get(self.source, keys.groups, self.query)[usable]
            calibration = fit_calibration(keyset, query_vectors=cross, seed=self.seed)
            taxonomy = ReferenceTaxonomy.from_labels(keyset.ids, keyset.labels)
        out = {}
        for part, queries in parts.items():
            vectors = embeddings.get(self.source, queries.records.groups, self.query)[queries.positions]
            taken = np.flatnonzero(np.abs(vectors).sum(axis=1) > 0)
            k = max(DEPTH, calibration.k if calibration else 0)
            rows, sims = search(vectors[taken], k) if len(usable) else _no_hits(len(taken))
            outcome = Outcome(queries.labels(taken), {r: _pad(v[rows[:, :DEPTH]], DEPTH)
                                                      for r, v in labels.items()},
                              missing=len(queries.positions) - len(taken))
            if calibration is not None:
                outcome.calls, outcome.extra["prior_unseen"] = _calibrated_calls(
                    rows, sims, taxonomy, calibration, self.min_confidence)
            out[part] = outcome
        return out

    def _searcher(self, keyset: _KeySet):
        """``search(vectors, k) -> (rows, sims)`` over the key vectors, exact or HNSW."""
        from clibd_cli.reference.hnsw_index import build_index, exact_search

        if self.search == "exact":
            return lambda vectors, k: exact_search(keyset.matrix, vectors, k)
        index = build_index(keyset.matrix, keyset.ids, keyset.labels, model_fingerprint=self.name,
                            modality=self.key, seed=self.seed, threads=self.threads)
        return lambda vectors, k: index.search(vectors, k, threads=self.threads)


def _calibrated_calls(rows, sims, taxonomy, calibration, min_confidence: float) -> tuple[Calls, float]:
    """The calls ``clibd classify`` makes on this batch of queries (the share of new species
    estimated on the batch itself, ``--prior-unseen auto``), and that share."""
    from clibd_cli.classification.decision import confidences, label
    decisions = label(rows, sims, taxonomy, calibration)
    shares = calibration.estimate_shares(decisions.stacked())
    codes, confidence = decisions.codes, confidences(decisions, taxonomy, calibration, shares)
    labels = {}
    for rank in RANKS:
        names = np.array([*taxonomy.names[rank], None], dtype=object)
        labels[rank] = names[codes[rank]]  # code -1 picks the trailing None
    asserted = {r: (confidence[r] >= min_confidence) & (codes[r] >= 0) for r in RANKS}
    return Calls(labels, asserted, confidence), calibration.unseen_share(shares)


def _pad(labels: np.ndarray, depth: int) -> np.ndarray:
    """``[Q, K]`` labels widened to ``depth`` columns with None (fewer keys than depth)."""
    if labels.shape[1] >= depth:
        return labels
    out = np.full((len(labels), depth), None, dtype=object)
    out[:, :labels.shape[1]] = labels
    return out


def _no_hits(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
