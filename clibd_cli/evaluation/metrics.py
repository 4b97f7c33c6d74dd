"""Accuracy and calibration metrics for retrieval-based taxonomic classification.

Closed-set metrics follow the CLIBD evaluation protocol (README "Evaluating a model"): a query
is correct@k at a rank when its true label is among the labels of its k nearest keys; micro
accuracy is the mean over queries, macro accuracy the mean over the true classes present in
the queries of the per-class accuracy; seen and unseen results combine as a harmonic mean.

One deliberate difference from upstream: a query without a true label at a rank (``None`` or
``""``, e.g. a record not classified to genus) is not scored at that rank, instead of making
``not_classified`` a class of its own, which would reward predicting "no label".

Open-set metrics score the thresholded predictions of :mod:`clibd_cli.classification.decision` for queries
whose species is absent from the reference, and reliability bins measure whether
confidences mean what they say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _labels(values: Sequence[str | None]) -> np.ndarray:
    """Labels as a string array, missing (``None``) as ``""``."""
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def topk_correct(
    neighbour_labels: Sequence[Sequence[str | None]], true_labels: Sequence[str | None], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Whether each query's true label is among its first ``k`` neighbour labels.

    ``neighbour_labels`` is ``[Q, K]`` (nearest first, ``K >= k``). Returns ``(correct,
    scored)`` boolean arrays of length Q; ``scored`` is False for queries without a true label.
    """
    truth = _labels(true_labels)
    scored = truth != ""
    correct = np.array([t != "" and t in _labels(row[:k]).tolist()
                        for t, row in zip(truth, neighbour_labels)], dtype=bool)
    return correct, scored


def micro_accuracy(correct: np.ndarray, scored: np.ndarray | None = None) -> float:
    """Mean of ``correct`` over the scored queries (NaN if none is scored)."""
    correct = np.asarray(correct, dtype=bool)
    scored = np.ones_like(correct) if scored is None else np.asarray(scored, dtype=bool)
    return float(correct[scored].mean()) if scored.any() else float("nan")


def macro_accuracy(
    correct: np.ndarray, true_labels: Sequence[str | None], scored: np.ndarray | None = None
) -> float:
    """Mean over the true classes present among the scored queries of per-class accuracy."""
    truth = _labels(true_labels)
    correct = np.asarray(correct, dtype=bool)
    keep = truth != "" if scored is None else np.asarray(scored, dtype=bool)
    if not keep.any():
        return float("nan")
    _, cls = np.unique(truth[keep].astype(str), return_inverse=True)
    per_class = np.bincount(cls, weights=correct[keep]) / np.bincount(cls)
    return float(per_class.mean())


def harmonic_mean(seen: float, unseen: float) -> float:
    """H = 2su/(s+u); 0 when both are 0."""
    return 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)


def accuracy_table(
    neighbour_labels: dict[str, Sequence[Sequence[str | None]]],
    true_labels: dict[str, Sequence[str | None]],
    ks: Sequence[int] = (1, 3, 5),
) -> dict[str, dict[int, dict[str, float]]]:
    """``{rank: {k: {"micro": .., "macro": ..}}}`` for every rank in ``true_labels``."""
    table: dict[str, dict[int, dict[str, float]]] = {}
    for rank, truth in true_labels.items():
        table[rank] = {}
        for k in ks:
            correct, scored = topk_correct(neighbour_labels[rank], truth, k)
            table[rank][k] = {
                "micro": micro_accuracy(correct, scored),
                "macro": macro_accuracy(correct, truth, scored),
            }
    return table


def known_label_accuracy(
    assigned: Sequence[str | None], true_labels: Sequence[str | None], reference: set[str]
) -> float:
    """Among queries whose true label occurs in the reference, the fraction assigned correctly.

    E.g. genus accuracy of unseen-species queries whose genus is in the reference: an
    unassigned (empty) genus counts as not correct.
    """
    pred, truth = _labels(assigned), _labels(true_labels)
    known = np.array([t in reference for t in truth], dtype=bool) & (truth != "")
    return float(np.mean(pred[known] == truth[known])) if known.any() else float("nan")


@dataclass
class Reliability:
    """Reliability diagram: per confidence bin, count, mean confidence and accuracy."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float

    def table(self) -> str:
        """A small text table, one line per non-empty bin."""
        lines = ["bin\tn\tmean_conf\taccuracy"]
        for i in np.flatnonzero(self.counts):
            lo, hi = self.edges[i], self.edges[i + 1]
            lines.append(
                f"{lo:.1f}-{hi:.1f}\t{self.counts[i]}\t{self.confidence[i]:.3f}\t{self.accuracy[i]:.3f}"
            )
        return "\n".join(lines)


def reliability(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10, weights: np.ndarray | None = None
) -> Reliability:
    """Equal-width reliability bins and expected calibration error.

    ECE = sum over bins of (bin weight / total weight) * |accuracy - mean confidence|.
    """
    conf = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    hit = np.asarray(correct, dtype=float)
    w = np.ones_like(conf) if weights is None else np.asarray(weights, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = np.bincount(which, weights=w, minlength=bins)
    safe = np.where(total > 0, total, 1.0)
    mean_conf = np.bincount(which, weights=w * conf, minlength=bins) / safe
    accuracy = np.bincount(which, weights=w * hit, minlength=bins) / safe
    ece = float(np.sum(total * np.abs(accuracy - mean_conf)) / max(total.sum(), 1e-12))
    counts = np.bincount(which, minlength=bins)
    return Reliability(edges, counts, mean_conf, accuracy, ece)
