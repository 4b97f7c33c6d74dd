"""Reference records whose label looks wrong: near-identical to another genus only.

BOLD and GenBank hold records filed under the wrong name: a *Culex* barcode filed as *Aedes
albopictus*, a host's barcode filed under its parasitoid. A query of that species finds such a
record and is named after it, confidently (``benchmarks/README.md``, *Batches of new species cut
from the reference*). :func:`suspect_labels` flags a record when the labelled records
near-identical to it (similarity ≥ ``sketch.NEAR_IDENTICAL``; those sharing its vector and those
among the ``NEIGHBOURS`` nearest of other vectors) number at least ``WITNESSES`` and all carry
another label at the rank checked (genus). ``clibd index`` warns about them; it does not drop
them (the record may be right and its look-alikes wrong).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from clibd_cli.reference.sketch import NEAR_IDENTICAL

NEIGHBOURS = 8  # nearest records of other nodes looked at per record (besides its identical twins)
WITNESSES = 2  # near-identical records of another label needed to flag one
RANK = "genus"  # the rank checked: sister species often share a barcode, genera seldom
SHOWN = 10  # suspects the warning names
_RESULTS_PER_SEARCH = 1 << 16  # nodes x neighbours searched at once
# The search breadth (HNSW ef) of the check: near-identical look-alikes are the first a search
# meets, so a narrow one finds them (on BOLD train 99.85 % of the pairs at similarity >= 0.99 that
# ef 512 finds, at two thirds of the default ef 128's time; benchmarks/README.md, *Scaling*).
SEARCH_EF = 32


@dataclass
class Suspect:
    """A record near-identical only to records of another label."""

    id: str
    label: str
    like: str  # the label most of its near-identical records carry
    similarity: float  # to the nearest of them

    def __str__(self) -> str:
        return f"{self.id} ({self.label}; like {self.like}, {self.similarity:.3f})"


def suspect_labels(index, rank: str = RANK) -> list[Suspect]:
    """The records of ``index`` (a :class:`~clibd_cli.reference.hnsw_index.ReferenceIndex`)
    whose label at ``rank`` disagrees with every labelled near-identical record: the records
    sharing its vector (its graph node) and those among the ``NEIGHBOURS`` nearest records of
    other nodes; at least ``WITNESSES`` of them, none of its own label. In record order; none if
    the index lacks ``rank``. Unlabelled look-alikes are not counted."""
    if rank not in index.ranks:
        return []
    labels = index.labels[rank]
    view, element = index.vector_view()
    members, starts = index.node_records()
    size = np.diff(starts)
    by_size = np.argsort(size, kind="stable")  # searched in groups of like size: k covers a node's records
    found, first = [], 0
    while first < len(by_size):
        step = max(1, _RESULTS_PER_SEARCH // (NEIGHBOURS + int(size[by_size[first]])))
        nodes = by_size[first: first + step]
        k = NEIGHBOURS + int(size[nodes].max())
        rows, sims = index.search(np.asarray(view[element[nodes]]), k, ef=SEARCH_EF)
        for node, near, sim in zip(nodes, rows, sims):
            own = members[starts[node]:starts[node + 1]]
            outside = [(int(r), float(s)) for r, s in zip(near, sim) if index.nodes[r] != node][:NEIGHBOURS]
            outside = [(r, s) for r, s in outside if s >= NEAR_IDENTICAL and labels[r]]
            look_alikes = Counter(labels[r] for r in own if labels[r])  # the node's labelled records, then
            look_alikes.update(labels[r] for r, _ in outside)  # the near-identical ones outside it
            twins = sum(look_alikes.values()) - len(outside)  # the node's labelled records
            for record in own:  # each record's witnesses: all of these but itself
                mine = labels[record]
                if not mine or look_alikes[mine] > 1 or sum(look_alikes.values()) - 1 < WITNESSES:
                    continue
                rest = look_alikes.copy()
                del rest[mine]
                nearest = 1.0 if twins > 1 else max(s for _, s in outside)
                found.append((int(record), Suspect(index.ids[record], mine, rest.most_common(1)[0][0], nearest)))
        first += len(nodes)
    return [suspect for _, suspect in sorted(found, key=lambda pair: pair[0])]


def suspects_warning(suspects: list[Suspect]) -> str:
    """What ``clibd index`` says of ``suspects`` (at ``RANK``; the first ``SHOWN`` of them named)."""
    listed = ", ".join(map(str, suspects[:SHOWN]))
    if len(suspects) > SHOWN:
        listed += f" and {len(suspects) - SHOWN} more"
    many = len(suspects) != 1
    return (f"{len(suspects)} reference record{'s are' if many else ' is'} near-identical (similarity "
            f"≥ {NEAR_IDENTICAL:g}) only to records of another {RANK}: "
            f"{'their labels' if many else 'its label'} may be wrong, and a query that finds "
            f"{'one' if many else 'it'} is named after it: {listed}")
