"""How many queries of a batch are of species (or genera) absent from the reference.

The confidence calibration (``calibration.py``) keeps one feature -> probability map per
*scenario* (the query's species is in the reference; only its genus is; not even its genus)
and a :class:`ScenarioModel` giving ``P(scenario | features)`` at the scenario shares of its
training pseudo-queries. For a batch with other shares the posteriors are adjusted by Bayes'
rule, and the shares themselves are estimated from the batch's own queries by EM
(Saerens, Latinne & Decaestecker 2002, "Adjusting the outputs of a classifier to new a priori
probabilities: a simple procedure", Neural Computation 14:21-41), with a weak Dirichlet prior
(``PRIOR_STRENGTH`` pseudo-queries at the 0.5 default) so that a handful of queries cannot
swing the estimate to 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clibd_cli.classification.probability_map import apply_map, fit_map

SCENARIOS = ("seen", "unseen_species", "unseen_genus", "unseen_family")  # as fitted on the reference itself
HELD_OUT_SCENARIOS = ("seen", "unseen")  # as fitted on labelled held-out queries
PRIOR_STRENGTH = 20.0  # pseudo-queries of the Dirichlet prior of the EM estimate
SCENARIO_RIDGE = 1.0  # keeps the scenario posteriors off 0 and 1 where pseudo-queries separate perfectly
ESTIMATION_QUERIES = 10_000  # queries at the start of a run the estimate is made on


@dataclass
class Run:
    """What one run of a classifier (``Classifier.stream``) learns from its first call's queries:
    each kind's estimated scenario shares, whether it is of reads and their errors per base."""

    read_run: bool = False  # its partial barcodes are reads with errors (read_runs.tell_reads)
    read_rate: float | None = None  # their errors per base, where dna<500~ or dna~ reads it
    first_call: bool = True  # whether the next call's queries estimate the shares and tell reads
    estimates: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)  # kind -> (shares, queries)


@dataclass
class ScenarioModel:
    """``P(scenario | features)`` as a chain of binary maps: split ``j`` is the probability that
    the scenario is after ``j`` given it is not before ``j`` (JSON-serialisable)."""

    splits: list[dict]  # probability_map maps
    training_shares: list[float]  # the scenario shares the posteriors are for

    def posterior(self, x: np.ndarray) -> np.ndarray:
        """``[Q, S]`` scenario posteriors at the training shares."""
        out = np.zeros((len(x), len(self.splits) + 1))
        rest = np.ones(len(x))
        for j, fit in enumerate(self.splits):
            later = np.clip(apply_map(fit, x), 0.0, 1.0)
            out[:, j] = rest * (1 - later)
            rest = rest * later
        out[:, -1] = rest
        return out

    def to_json(self) -> dict:
        return {"splits": self.splits, "training_shares": self.training_shares}

    @classmethod
    def from_json(cls, data: dict) -> ScenarioModel:
        return cls(data["splits"], data["training_shares"])


def fit_scenario_model(x: np.ndarray, scenario: np.ndarray, n_scenarios: int) -> ScenarioModel:
    """Fit the chain on features ``x`` of pseudo-queries of known ``scenario`` (0..S-1), each
    scenario weighing the same (training shares 1/S)."""
    count = np.bincount(scenario, minlength=n_scenarios).astype(float)
    splits = []
    for j in range(n_scenarios - 1):
        use = scenario >= j
        # split j sees scenario j against the later ones, which together weigh S - 1 - j shares
        w = 1.0 / np.maximum(count[scenario[use]], 1.0)
        fit = fit_map(x[use], (scenario[use] > j).astype(float), w, l2=SCENARIO_RIDGE)
        fit.pop("loss")
        splits.append(fit)
    return ScenarioModel(splits, [1.0 / n_scenarios] * n_scenarios)


def adjust(posterior: np.ndarray, training: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Posteriors at ``training`` shares re-expressed at ``target`` shares (Bayes' rule). A query
    whose posterior lies wholly on scenarios the target rules out (a near-identical match when
    every query is said to be of a new species) gets the target shares: its features cannot
    tell the remaining scenarios apart."""
    target = np.asarray(target, dtype=np.float64)
    p = posterior * (target / np.maximum(training, 1e-12))
    total = p.sum(axis=1, keepdims=True)
    return np.where(total > 1e-300, p / np.maximum(total, 1e-300), target / max(target.sum(), 1e-300))


def estimate_shares(posterior: np.ndarray, training: np.ndarray, default: np.ndarray,
                    iterations: int = 1000, tol: float = 1e-7) -> np.ndarray:
    """Scenario shares of a batch by EM on its ``[Q, S]`` posteriors (at ``training`` shares),
    shrunk towards ``default`` by ``PRIOR_STRENGTH`` pseudo-queries."""
    training, default = np.asarray(training, float), np.asarray(default, float)
    shares = default.copy()
    for _ in range(iterations):
        new = (adjust(posterior, training, shares).sum(axis=0) + PRIOR_STRENGTH * default)
        new /= len(posterior) + PRIOR_STRENGTH
        if np.abs(new - shares).max() < tol:
            return new
        shares = new
    return shares


def estimate_tied_shares(posterior: np.ndarray, training: np.ndarray, default: np.ndarray,
                         tied: list[int]) -> np.ndarray:
    """As :func:`estimate_shares`, but the scenarios at positions ``tied`` estimated as one share,
    split among them as ``default`` splits it (``read_runs.reads_shares``: where the scenario model
    tells them apart too weakly for EM to weigh them)."""
    groups = [[i] for i in range(len(default)) if i not in tied] + ([list(tied)] if tied else [])
    within = [default[group] / default[group].sum() for group in groups]
    likely = posterior / training  # in proportion to P(features | scenario)
    pooled = np.column_stack([likely[:, group] @ split for group, split in zip(groups, within)])
    pooled /= np.maximum(pooled.sum(axis=1, keepdims=True), 1e-300)
    found = estimate_shares(pooled, np.full(len(groups), 1.0 / len(groups)),
                            np.array([default[group].sum() for group in groups]))
    shares = np.zeros(len(default))
    for group, split, share in zip(groups, within, found):
        shares[group] = share * split
    return shares
