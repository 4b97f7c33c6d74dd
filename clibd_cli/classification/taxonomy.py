"""The reference's taxonomy as the decision sees it, and one query's ranked prediction.

Labels are integer codes per rank (ranks coarse to fine, ``models/config.py`` ``RANKS``), each
label with the parent most of its records carry; a prediction prints as a SINTAX-style lineage.
Ranks above the first (domain to class, where the reference names them) are not decided: each
label of the first rank carries the lineage above it that most of its records name
(``above``, the index manifest's ``above_order``), and a prediction takes its best order's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from clibd_cli.io.lineages import ranks_named_above, sintax_lineage
from clibd_cli.io.predictions import CONFIDENCE_DIGITS


@dataclass
class ReferenceTaxonomy:
    """Reference labels as integer codes per rank (-1 = not labelled), with label parents."""

    ids: list[str]
    names: dict[str, list[str]]  # rank -> label per code
    codes: dict[str, np.ndarray]  # rank -> [N] int64 code per record
    parents: dict[str, np.ndarray]  # rank -> parent code per label code, then -1 (so code -1 -> -1)
    above: dict[str, dict[str, str]] = field(default_factory=dict)  # first-rank label -> {rank above: name}

    @property
    def ranks(self) -> list[str]:
        return list(self.codes)

    @cached_property
    def ranks_above(self) -> list[str]:
        """The ranks above the first that ``above`` names for some label (coarse to fine)."""
        return ranks_named_above(self.above)

    def lineage_above(self, label: str | None) -> dict[str, str | None]:
        """A first-rank label's names at :attr:`ranks_above` (None where not named, or for no label)."""
        lineage = self.above.get(label, {}) if label is not None else {}
        return {rank: lineage.get(rank) for rank in self.ranks_above}

    @classmethod
    def from_labels(
        cls, ids: Sequence[str], labels: Mapping[str, Sequence[str | None]],
        above: Mapping[str, Mapping[str, str]] | None = None,
    ) -> ReferenceTaxonomy:
        """Encode ``{rank: [label or None per record]}`` (ranks ordered coarse to fine); ``above``:
        the lineage above each first-rank label."""
        names, codes, parents = {}, {}, {}
        coarser = None
        for rank, values in labels.items():
            vocab = sorted({v for v in values if v is not None})
            lookup = {v: i for i, v in enumerate(vocab)}
            code = np.array([-1 if v is None else lookup[v] for v in values], dtype=np.int64)
            names[rank], codes[rank] = vocab, code
            parents[rank] = _majority_parent(code, coarser, len(vocab))
            coarser = code
        return cls(list(ids), names, codes, parents, {k: dict(v) for k, v in (above or {}).items()})

    def rows_within(self, taxa: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Records labelled with any of ``taxa`` at any rank, those above the first included (the
        records of the first-rank labels whose lineage names them; case and ``_``/space ignored),
        and the taxa no record carries."""
        def key(name: str) -> str:
            return name.replace("_", " ").strip().lower()

        wanted = {key(taxon): taxon for taxon in taxa}
        within, seen = np.zeros(len(self.ids), dtype=bool), set()
        first = self.ranks[0]
        for label, lineage in self.above.items():
            named = wanted.keys() & {key(name) for name in lineage.values()}
            if named and label in self.names[first]:
                seen |= named
                within |= self.codes[first] == self.names[first].index(label)
        for rank in self.ranks:
            codes = [code for code, name in enumerate(self.names[rank]) if key(name) in wanted]
            seen.update(key(self.names[rank][code]) for code in codes)
            within |= np.isin(self.codes[rank], codes)
        return np.flatnonzero(within), [taxon for k, taxon in wanted.items() if k not in seen]


@dataclass
class RankedPrediction:
    """One query: best label and confidence per rank, and its nearest reference record."""

    labels: dict[str, str | None]  # best label per rank (the ranks above order first); None: none labelled
    confidence: dict[str, float]
    nearest_id: str
    nearest_sim: float
    min_confidence: float

    @property
    def assigned(self) -> dict[str, str | None]:
        """Labels whose confidence reaches the cutoff, as the outputs write it (``CONFIDENCE_DIGITS``:
        0.79996, written 0.8000, reaches 0.8); the others None."""
        return {r: (v if round(self.confidence[r], CONFIDENCE_DIGITS) >= self.min_confidence else None)
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
