"""Record ids met more than once in a stream of any length, in about 8 bytes per distinct id.

Each id is kept as its 64-bit hash (Python's ``hash``, SipHash: two different ids share one with a
chance of about 1 in 370,000 among 10 million ids) in sorted runs; the ids of each batch are
looked up in the runs at once, so the first repeat is named with its place while the stream goes
on. Runs are merged as they grow, up to ``RUN`` hashes each, so merging never copies more than that.
Memory stays bounded: the records after the first ``LIMIT`` (128 MB of hashes at most) are not
checked (``stopped``).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("clibd")

BATCH = 8192  # ids looked up at once
RUN = 1 << 22  # hashes in a merged run at most (32 MB)
LIMIT = 1 << 24  # records checked at most (128 MB of hashes); later ones are not


class RepeatedIds:
    """Counts the records whose id an earlier record had; names the first of them."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.checked = 0  # records looked up so far
        self.stopped = False  # whether records came after the first ``limit``, unchecked
        self.runs: list[np.ndarray] = []  # sorted hashes of the distinct ids looked up so far
        self.pending: list[int] = []  # hashes of the ids not looked up yet
        self.places: list[tuple[str, str]] = []  # their (id, where)
        self.repeats = 0  # records whose id an earlier record had
        self.first: tuple[str, str] | None = None  # the first such record's (id, where)

    def add(self, record_id: str, where: str) -> None:
        """One more record, ``where`` it is (``FILE:LINE``)."""
        if self.checked + len(self.pending) >= self.limit:
            self.stopped = True
            return
        self.pending.append(hash(record_id))
        self.places.append((record_id, where))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Look up the pending ids (call once more at the end of the stream)."""
        if not self.pending:
            return
        batch = np.array(self.pending, dtype=np.int64)
        order = np.argsort(batch, kind="stable")
        repeated = np.zeros(len(batch), dtype=bool)
        repeated[order[1:][batch[order[1:]] == batch[order[:-1]]]] = True  # met earlier in this batch
        for run in self.runs:
            repeated |= run[np.searchsorted(run, batch).clip(max=len(run) - 1)] == batch
        if repeated.any():
            self.repeats += int(repeated.sum())
            self.first = self.first or self.places[int(np.argmax(repeated))]
        self.checked += len(batch)
        if not repeated.all():
            self.runs.append(np.unique(batch[~repeated]))
        while len(self.runs) > 1 and len(self.runs[-2]) <= 2 * len(self.runs[-1]) \
                and len(self.runs[-2]) + len(self.runs[-1]) <= RUN:
            merged = np.concatenate(self.runs[-2:])
            merged.sort()
            self.runs[-2:] = [merged]
        self.pending, self.places = [], []

    def report(self, kind: str, consequence: str) -> None:
        """Look up the last ids, then warn once about the ``kind``s (record, embedding) that repeat an
        id, naming the first, and say what that does (``consequence``); used by ``clibd classify``
        (``clibd_cli/classification/queries.py``) and ``clibd embed`` (``clibd_cli/embedding/embeddings_file.py``)."""
        self.flush()
        if self.repeats:
            record_id, where = self.first
            log.warning("%s: %r is the id of an earlier %s too (%ss repeating an earlier id: %d): %s", where,
                        record_id, kind, kind, self.repeats, consequence)
        if self.stopped:
            log.info("%s ids were checked for repeats in the first %d only", kind, self.checked)
