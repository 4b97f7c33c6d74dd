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

Per batch (:func:`batch_scores`, methods with a confidence): the seen queries alone, the unseen
alone and a mix of both (``run.MIX_UNSEEN`` unseen), each classified as one run — clibd
estimates the share of new species per run — with per-rank ECE, the estimated and true share
of new species, and on the mix the operating curve across cutoffs: known species named right
against new species asserted, and new species' genus named right against named wrong.
"""

from __future__ import annotations

import numpy as np

from clibd_cli.evaluation import metrics
from clibd_cli.evaluation.retrieval import Outcome
from models.config import RANKS

KS = (1, 3, 5)
CURVE_CUTOFFS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


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


def open_set_scores(outcomes: dict[str, Outcome], key_labels: dict[str, np.ndarray]) -> dict:
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
                row["ece"] = metrics.reliability(confidence, right[scored]).ece
                pooled[rank].append((confidence, right[scored]))
            out[part][rank] = row
    if any(pooled.values()):
        out["reliability"] = {}
        for rank, chunks in pooled.items():
            if chunks:
                found = metrics.reliability(np.concatenate([c for c, _ in chunks]),
                                            np.concatenate([r for _, r in chunks]))
                out["reliability"][rank] = {"edges": found.edges.tolist(), "count": found.counts.tolist(),
                                            "confidence": found.confidence.tolist(),
                                            "accuracy": found.accuracy.tolist(), "ece": found.ece}
    return out


def batch_scores(outcomes: dict[str, Outcome], key_labels: dict[str, np.ndarray]) -> dict:
    """Per batch (``seen``, ``unseen``, ``mix``): per-rank ECE, the estimated share of new
    species (clibd) and the true one; the operating curve on ``mix``."""
    species = set(filter(None, key_labels["species"].tolist()))
    genera = set(filter(None, key_labels["genus"].tolist()))
    out: dict = {"ece": {}, "prior_unseen": {}, "new_share": {}}
    for part, outcome in outcomes.items():
        calls, truth = outcome.calls, outcome.truth
        out["ece"][part] = {rank: _ece(calls.confidence[rank], calls.labels[rank], truth[rank])
                            for rank in RANKS}
        out["prior_unseen"][part] = outcome.extra.get("prior_unseen")
        out["new_share"][part] = _mean(_which(truth["species"], lambda t: t is not None and t not in species))
    mix = outcomes["mix"]
    truth, calls = mix.truth, mix.calls
    known = _which(truth["species"], lambda t: t in species)
    new = _which(truth["species"], lambda t: t is not None and t not in species)
    new_genus_known = new & _which(truth["genus"], lambda t: t in genera)
    out["curve"] = []
    for cutoff in CURVE_CUTOFFS:
        named = {r: calls.confidence[r] >= cutoff for r in ("species", "genus")}
        genus_right = calls.labels["genus"] == truth["genus"]
        out["curve"].append({
            "cutoff": cutoff,
            "known_species_named": _mean((named["species"] & (calls.labels["species"] == truth["species"]))[known]),
            "new_species_asserted": _mean(named["species"][new]),
            "new_genus_right": _mean((named["genus"] & genus_right)[new_genus_known]),
            "new_genus_wrong": _mean((named["genus"] & ~genus_right)[new_genus_known]),
        })
    return out


def _ece(confidence: np.ndarray, labels: np.ndarray, truth: np.ndarray) -> float | None:
    """ECE over the queries labelled at this rank (None if there are none)."""
    scored = truth != None  # noqa: E711 - object arrays
    if not scored.any():
        return None
    return metrics.reliability(confidence[scored], (labels == truth)[scored]).ece


def _which(labels: np.ndarray, test) -> np.ndarray:
    """A boolean mask of the labels that pass ``test`` (boolean also when there are none)."""
    return np.array([test(label) for label in labels], dtype=bool)


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _hm(seen: float | None, unseen: float | None) -> float | None:
    if seen is None or unseen is None or np.isnan(seen) or np.isnan(unseen):
        return None
    return metrics.harmonic_mean(seen, unseen)
