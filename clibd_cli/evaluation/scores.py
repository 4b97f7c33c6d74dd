"""The numbers of the report, from the :class:`~.retrieval.Outcome` of each method.

Paper metrics (README "Evaluating a model", :mod:`clibd_cli.evaluation.metrics`): for k in 1, 3, 5 and
each rank, micro (mean over queries) and macro (mean over the true classes of the per-class
accuracy) top-k accuracy of seen and unseen queries, and the harmonic mean of seen and unseen.

Open-set metrics, per query part and rank, from each method's calls:

* ``best_accuracy``: the best label is right (whatever its confidence);
* ``assigned_rate``: share of queries with a label asserted (confidence ≥ the cutoff) — for
  unseen species in scenario ``left-out`` the species rate should be near 0;
* ``assigned_accuracy``: share of asserted labels that are right (precision);
* ``known_correct``: among queries whose true label is among the keys' labels, the share
  asserted and right (for unseen species: genus/family recall where a right answer exists);
* ``ece``: expected calibration error of the confidence (methods that have one).
"""

from __future__ import annotations

import numpy as np

from clibd_cli.evaluation import metrics
from clibd_cli.evaluation.retrieval import Outcome
from models.config import RANKS

KS = (1, 3, 5)


def retrieval_scores(outcomes: dict[str, Outcome]) -> dict:
    """``{"seen"|"unseen"|"hm": {rank: {"top1": {"micro": x, "macro": y}, ...}}}`` plus counts."""
    out: dict = {"queries": {p: len(o) for p, o in outcomes.items()},
                 "missing": {p: o.missing for p, o in outcomes.items()}}
    for part, outcome in outcomes.items():
        ks = [k for k in KS if k <= outcome.depth]
        table = metrics.accuracy_table(outcome.neighbours, outcome.truth, ks) if len(outcome) else {}
        out[part] = {rank: {f"top{k}": dict(table[rank][k]) if k in ks and table
                            else {"micro": None, "macro": None} for k in KS} for rank in RANKS}
    if "seen" in outcomes and "unseen" in outcomes:
        out["hm"] = {rank: {f"top{k}": {kind: _hm(out["seen"][rank][f"top{k}"][kind],
                                                  out["unseen"][rank][f"top{k}"][kind])
                                        for kind in ("micro", "macro")} for k in KS} for rank in RANKS}
    return out


def open_set_scores(outcomes: dict[str, Outcome], key_labels: dict[str, np.ndarray],
                    bins: int = 10) -> dict:
    """Per part and rank the open-set metrics; per rank the reliability of seen+unseen pooled."""
    out: dict = {}
    pooled: dict[str, list] = {rank: [] for rank in RANKS}
    for part, outcome in outcomes.items():
        calls, out[part] = outcome.calls, {}
        for rank in RANKS:
            truth, best = outcome.truth[rank], calls.labels[rank]
            asserted = calls.asserted[rank]
            scored = truth != None  # noqa: E711 - object arrays
            right = (best == truth) & scored
            reference = set(filter(None, key_labels[rank].tolist()))
            known = np.array([t in reference for t in truth], dtype=bool)
            row = {
                "best_accuracy": _mean(right[scored]),
                "assigned_rate": _mean(asserted),
                "assigned_accuracy": _mean(right[asserted & scored]),
                "known_fraction": _mean(known[scored]),
                "known_correct": metrics.known_label_accuracy(np.where(asserted, best, None), truth,
                                                              reference),
                "ece": None,
            }
            if calls.confidence is not None and scored.any():
                confidence = calls.confidence[rank][scored]
                row["ece"] = metrics.reliability(confidence, right[scored], bins).ece
                pooled[rank].append((confidence, right[scored]))
            out[part][rank] = row
    if any(pooled.values()):
        out["reliability"] = {}
        for rank, chunks in pooled.items():
            if chunks:
                found = metrics.reliability(np.concatenate([c for c, _ in chunks]),
                                            np.concatenate([r for _, r in chunks]), bins)
                out["reliability"][rank] = {"edges": found.edges.tolist(), "count": found.counts.tolist(),
                                            "confidence": found.confidence.tolist(),
                                            "accuracy": found.accuracy.tolist(), "ece": found.ece}
    return out


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _hm(seen: float | None, unseen: float | None) -> float | None:
    if seen is None or unseen is None or np.isnan(seen) or np.isnan(unseen):
        return None
    return metrics.harmonic_mean(seen, unseen)
