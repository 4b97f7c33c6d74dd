"""Feature -> probability maps: a weighted logistic regression refined by isotonic regression.

Used per rank and per scenario by the confidence calibration (``calibration.py``, fitted in ``fitting.py``) and for
the scenario posteriors that estimate a batch's share of new species (``batch_prior.py``).
A map is a JSON-able dict ``{"mean", "scale", "coef", "intercept", "iso_x", "iso_y"}``.
"""

from __future__ import annotations

import numpy as np


def fit_map(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> dict:
    """The logistic map of ``x`` to ``P(y = 1)`` (weights ``w``, ridge ``l2`` on standardised
    features), refined by isotonic regression, with its weighted log-loss under ``"loss"``
    (before the isotonic step)."""
    return refined(fit_logistic(x, y, w, l2), y, w)


def refined(fit: dict, y: np.ndarray, w: np.ndarray) -> dict:
    """The map of a :func:`fit_logistic` ``fit`` (of labels ``y``, weights ``w``) refined by isotonic
    regression of its scores, as :func:`fit_map` returns it."""
    fit = dict(fit)
    iso_x, iso_y = _isotonic(fit.pop("score"), y, w)
    return {**fit, "iso_x": iso_x.tolist(), "iso_y": iso_y.tolist()}


def apply_map(fit: dict, x: np.ndarray) -> np.ndarray:
    """``P(y = 1 | x)`` under a map from :func:`fit_map`."""
    z = (x - np.asarray(fit["mean"])) / np.asarray(fit["scale"])
    score = sigmoid(z @ np.asarray(fit["coef"]) + fit["intercept"])
    return np.interp(score, fit["iso_x"], fit["iso_y"]) if fit["iso_x"] else score


def check_map(fit: dict, width: int) -> None:
    """ValueError (KeyError, TypeError) unless ``fit`` is a map of ``width`` features as
    :func:`fit_map` writes it."""
    features = [np.asarray(fit[key], dtype=np.float64) for key in ("mean", "scale", "coef")]
    iso = [np.asarray(fit[key], dtype=np.float64) for key in ("iso_x", "iso_y")]
    float(fit["intercept"])
    if {f.shape for f in features} != {(width,)} or iso[0].shape != iso[1].shape:
        raise ValueError("parameter arrays of the wrong length")


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> dict:
    """Standardise features and fit the logistic map; also returns its scores and log-loss."""
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    scale = np.maximum(x.std(axis=0), 1e-6) if len(x) else np.ones(x.shape[1])
    z = (x - mean) / scale
    coef, intercept = _logistic(z, y, w / max(w.mean(), 1e-300) if len(w) else w, l2)
    score = np.clip(sigmoid(z @ coef + intercept), 1e-9, 1 - 1e-9)
    loss = float(-(w * (y * np.log(score) + (1 - y) * np.log(1 - score))).sum())
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(),
            "intercept": intercept, "score": score, "loss": loss}


def _logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weighted L2-regularised logistic regression by Newton's method (IRLS); the intercept is
    kept finite (within +-30) when every label is the same."""
    a = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(a.shape[1])
    ridge = l2 * np.diag([1.0] * x.shape[1] + [0.0])
    for _ in range(50):
        p = sigmoid(a @ beta)
        grad = a.T @ (w * (y - p)) - ridge @ beta
        hess = (a * (w * p * (1 - p))[:, None]).T @ a + ridge + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta += step
        beta[-1] = np.clip(beta[-1], -30, 30)
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


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, ``z`` clipped so that ``exp`` never overflows."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
