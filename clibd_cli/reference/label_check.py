"""Reference records whose label looks wrong: near-identical to another genus only.

BOLD and GenBank hold records filed under the wrong name: a *Culex* barcode filed as *Aedes
albopictus*, a host's barcode filed under its parasitoid. A query of that species finds such a
record and is named after it, confidently (``benchmarks/README.md``, *Batches of new species cut
from the reference*). :func:`suspect_labels` flags a record when at least ``WITNESSES`` of its
``NEIGHBOURS`` nearest records are near-identical to it (similarity ≥ ``sketch.NEAR_IDENTICAL``)
and every one of those carries another label at the rank checked (genus). ``clibd index`` warns
about them; it does not drop them (the record may be right and its look-alikes wrong).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from clibd_cli.reference.sketch import NEAR_IDENTICAL

NEIGHBOURS = 8  # nearest records looked at per record
WITNESSES = 2  # near-identical records of another label needed to flag one
_NODES_PER_SEARCH = 4096


@dataclass
class Suspect:
    """A record near-identical only to records of another label."""

    id: str
    label: str
    like: str  # the label most of its near-identical records carry
    similarity: float  # to the nearest of them

    def __str__(self) -> str:
        return f"{self.id} ({self.label}; like {self.like}, {self.similarity:.3f})"


def suspect_labels(index, rank: str = "genus") -> list[Suspect]:
    """The records of ``index`` (a :class:`~clibd_cli.reference.hnsw_index.ReferenceIndex`)
    whose label at ``rank`` disagrees with every near-identical record near them (at least
    ``WITNESSES``, none of their own label), in record order; none if the index lacks ``rank``."""
    if rank not in index.ranks:
        return []
    labels = index.labels[rank]
    view, element = index.vector_view()
    members = np.argsort(index.nodes, kind="stable")  # records grouped by node
    starts = np.searchsorted(index.nodes[members], np.arange(len(element) + 1))
    found = []
    for first in range(0, len(element), _NODES_PER_SEARCH):
        nodes = np.arange(first, min(first + _NODES_PER_SEARCH, len(element)))
        rows, sims = index.search(np.asarray(view[element[nodes]]), NEIGHBOURS + 1)
        for node, near, sim in zip(nodes, rows, sims):
            close = [(int(r), float(s)) for r, s in zip(near, sim) if s >= NEAR_IDENTICAL and labels[r]]
            for record in members[starts[node]:starts[node + 1]]:
                mine = labels[record]
                others = [(r, s) for r, s in close if r != record]
                if mine and len(others) >= WITNESSES and all(labels[r] != mine for r, _ in others):
                    like = Counter(labels[r] for r, _ in others).most_common(1)[0][0]
                    found.append((int(record), Suspect(index.ids[record], mine, like, others[0][1])))
    return [suspect for _, suspect in sorted(found, key=lambda pair: pair[0])]


def suspects_warning(suspects: list[Suspect], rank: str = "genus", shown: int = 10) -> str:
    """What ``clibd index`` says of ``suspects`` (first ``shown`` of them)."""
    listed = ", ".join(map(str, suspects[:shown]))
    if len(suspects) > shown:
        listed += f" and {len(suspects) - shown} more"
    many = len(suspects) != 1
    return (f"{len(suspects)} reference record{'s are' if many else ' is'} near-identical (similarity "
            f"≥ {NEAR_IDENTICAL:g}) only to records of another {rank}: {'their labels' if many else 'its label'} "
            f"may be wrong, and a query that finds {'one' if many else 'it'} is named after it: {listed}")
