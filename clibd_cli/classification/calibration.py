"""Confidence calibration: the fitted feature -> probability maps, stored per query kind.

Confidence. For the winning label three features are computed: the distance ``1 - sim`` of the
nearest neighbour carrying it (log scale), its margin over the nearest neighbour carrying a
different label at that rank (or over the k-th neighbour if there is none: any other label lies
at least that far), and its vote share (temperature ``tau_share``). Vote shares alone would be
overconfident: ten neighbours of one species at 0.85 similarity vote 100% for it although the
query is most likely of a species missing from the reference. So the features are mapped to the
probability that the label is right by a per-rank logistic regression refined by isotonic
regression, fitted on the reference itself (``fit_calibration``): reference records serve
as pseudo-queries searched (a) as *seen* queries, excluding only the record itself, (b) as
*unseen-species* queries, excluding every record of their species (the species answer is then
wrong by definition), and (c) as *unseen-genus* queries, excluding their whole genus. The
scenarios are mixed with weights ``1 - prior_unseen``, ``prior_unseen * (1 -
unseen_genus_fraction)`` and ``prior_unseen * unseen_genus_fraction``, where ``prior_unseen``
is the assumed share of queries whose species is absent from the reference. Both temperatures
are fitted per rank too. Where labelled held-out queries are at hand (e.g. a dataset's ``val``
and ``val_unseen`` splits), the maps can be refitted on them (``fit_calibration_held_out``).
Finally a rank's confidence is capped by the rank above (a species
cannot be more certain than its genus; a label outside the parent picked above by ``1 -`` that
parent's confidence), so the labels passing a cutoff form an unbroken lineage from the top.

The maps are fitted in ``clibd_cli/classification/fitting.py``; this module owns their JSON form
(``calibration.json`` of an index, ``pack.json`` of a pack: ``{query kind: calibration}``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ClibdError

FEATURES = ("log_distance", "margin", "vote_share")


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
        score = sigmoid(z @ np.asarray(p["coef"]) + p["intercept"])
        return np.interp(score, p["iso_x"], p["iso_y"]) if p["iso_x"] else score


def calibrations(stored: dict | None) -> dict[str, Calibration]:
    """The typed calibrations by query kind (``dna``, ``image``, ``image+dna``) of an index or pack."""
    return {kind: Calibration.from_json(data) for kind, data in (stored or {}).items()}


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
