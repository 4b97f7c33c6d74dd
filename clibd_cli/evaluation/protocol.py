"""Which records are keys and which are queries: the CLIBD protocol and the open-set variant.

CLIBD (the paper's evaluation; README "Evaluating a model") embeds the ``all_keys`` records as
keys and searches them with the seen and unseen queries of ``--on val`` or ``--on test``; training
validates on the same splits of ``--on val``. Split names resolve in both dataset layouts
(:mod:`clibd_cli.data.splits` aliases):

==================  =============================  ====================================
                    BIOSCAN-5M (``prepare``)        CLIBD-1M / FASTA (``prepare``)
==================  =============================  ====================================
keys, ``paper``     ``train`` + ``key_unseen``      ``seen_keys`` + ``*_unseen_keys``
keys, ``left-out``  ``train``                       ``seen_keys``
seen queries        ``val`` / ``test``              ``val_seen`` / ``test_seen``
unseen queries      ``val_unseen`` / ``test_unseen``
==================  =============================  ====================================

Scenario ``paper`` is the published one: the unseen species have key records too, so it
measures how well the embedding generalises to species it was not trained on. Scenario
``left-out`` drops the unseen species' keys: their queries have no right answer at species
level, which is what a classifier meets in the field; it is where the rate of asserted
species and the genus accuracy of those queries matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from clibd_cli.data.store import Dataset
from clibd_cli.io.sequences import barcode_problem
from models.config import RANKS
from models.errors import ClibdError

PARTS = ("seen", "unseen")


@dataclass(frozen=True)
class Scenario:
    """One key set searched by the seen and unseen queries (group names of the dataset)."""

    name: str  # "paper" or "left-out"
    keys: tuple[str, ...]
    queries: dict[str, tuple[str, ...]]  # part ("seen", "unseen") -> groups

    @property
    def title(self) -> str:
        if self.name == "paper":
            return "paper protocol: unseen species have keys (generalised zero-shot)"
        return "species left out: unseen species have no keys (open set)"


def scenarios(dataset: Dataset, on: str, wanted: tuple[str, ...] = ("paper", "left-out")
              ) -> tuple[list[Scenario], list[str]]:
    """The scenarios ``dataset`` supports for query splits ``on`` (val/test), and notes on
    what could not be set up."""
    seen = _groups(dataset, on)
    if seen is None:
        raise ClibdError(f"{dataset.path}: no {on} split of seen-species queries "
                         f"(the file has {', '.join(dataset.splits)})")
    queries = {"seen": seen}
    unseen = _groups(dataset, f"{on}_unseen")
    notes = []
    if unseen is None:
        notes.append(f"no {on}_unseen split: unseen-species numbers and harmonic means are left out")
    else:
        queries["unseen"] = unseen
    seen_keys, all_keys = _groups(dataset, "seen_keys"), _groups(dataset, "all_keys")
    if all_keys is None and seen_keys is not None:  # a small file may hold keys of val's unseen species only
        unseen_keys = [g for name in ("val_unseen_keys", "test_unseen_keys") for g in _groups(dataset, name) or ()]
        all_keys = tuple(dict.fromkeys(seen_keys + tuple(unseen_keys))) if unseen_keys else None
    if seen_keys is None and all_keys is None:
        raise ClibdError(f"{dataset.path}: no key splits (train/seen_keys, key_unseen/*_unseen_keys)")
    found = []
    has_unseen_keys = all_keys is not None and all_keys != seen_keys
    if "paper" in wanted:
        if "unseen" in queries and not has_unseen_keys:  # it would be left-out's twin
            notes.append("scenario paper skipped: the file has no keys of unseen species, so its unseen "
                         "queries' species are absent from the keys (scenario left-out)")
        else:
            found.append(Scenario("paper", all_keys or seen_keys, queries))
    if "left-out" in wanted:
        if seen_keys is None or "unseen" not in queries:
            notes.append("scenario left-out skipped: " + ("the file has no keys of seen species alone"
                         if seen_keys is None else f"no {on}_unseen queries"))
        else:
            found.append(Scenario("left-out", seen_keys, queries))
    if not found:
        other = "paper" if "left-out" in wanted else "left-out"
        raise ClibdError(f"{dataset.path}: nothing to evaluate: {'; '.join(notes)}; evaluate --scenario {other}")
    return found, notes


def _groups(dataset: Dataset, name: str) -> tuple[str, ...] | None:
    try:
        return tuple(dataset.resolve(name))
    except ClibdError:
        return None


class Records:
    """Labels, barcodes and photo flags of the records of some groups, in group order."""

    def __init__(self, dataset: Dataset, groups: tuple[str, ...]):
        self.dataset, self.groups = dataset, groups
        self.split = dataset.splits_union(groups)

    def __len__(self) -> int:
        return len(self.split)

    @cached_property
    def labels(self) -> dict[str, np.ndarray]:
        """rank -> object array of labels (None = not classified)."""
        return {rank: np.array(self.split.column(rank), dtype=object) for rank in RANKS}

    @cached_property
    def barcodes(self) -> list[str]:
        return self.split.column("barcode")

    @cached_property
    def ids(self) -> list[str]:
        return self.split.ids()

    def name(self, i: int) -> str:
        """How messages name record ``i``: ``FILE:GROUPS:ID``."""
        return f"{self.dataset.path}:{'+'.join(self.groups)}:{self.ids[i]}"

    @cached_property
    def has_barcode(self) -> np.ndarray:
        """Whether each record has a barcode that can be classified (as ``clibd classify``)."""
        return np.array([barcode_problem(b) is None for b in self.barcodes], dtype=bool)

    @cached_property
    def has_image(self) -> np.ndarray:
        return self.split.image_sizes > 0

    def has(self, modality: str) -> np.ndarray:
        """Records that can be embedded as ``modality`` (text: every record)."""
        if modality == "dna":
            return self.has_barcode
        if modality == "image":
            return self.has_image
        return np.ones(len(self), dtype=bool)

    def sample(self, limit: int, seed: int) -> np.ndarray:
        """Positions of at most ``limit`` records (all if ``limit`` is 0), sorted."""
        if not 0 < limit < len(self):
            return np.arange(len(self))
        return np.sort(np.random.default_rng(seed).choice(len(self), limit, replace=False))
