"""The reference's taxonomy as the decision sees it, and one query's ranked prediction.

Labels are integer codes per rank (ranks coarse to fine, ``models/config.py`` ``RANKS``), each
label with the parent most of its records carry; a prediction prints as a SINTAX-style lineage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from clibd_cli.io.lineages import sintax_lineage


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

    def rows_within(self, taxa: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Records labelled with any of ``taxa`` at any rank (case and ``_``/space ignored), and
        the taxa no record carries."""
        def key(name: str) -> str:
            return name.replace("_", " ").strip().lower()

        wanted = {key(taxon): taxon for taxon in taxa}
        within, seen = np.zeros(len(self.ids), dtype=bool), set()
        for rank in self.ranks:
            codes = [code for code, name in enumerate(self.names[rank]) if key(name) in wanted]
            seen.update(key(self.names[rank][code]) for code in codes)
            within |= np.isin(self.codes[rank], codes)
        return np.flatnonzero(within), [taxon for k, taxon in wanted.items() if k not in seen]


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
        return sintax_lineage(self.labels, self.confidence)


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
