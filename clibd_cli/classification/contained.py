"""Partial barcodes held whole by a reference record: their neighbours by the 5-mers they share.

By a learned model's vectors a short stretch of a known species often lies nearer other species'
barcodes than its own: the bundled model's 50 nearest vectors held the species of 93.3 % of BOLD
``test``'s 150-base stretches, and its best label was right for 89.6 % of them, where the
records sharing the most of a stretch's 5-mers (a vote among the ties) were of its species for
99.15 % (benchmarks/README.md, *Partial barcodes held whole by a record are searched by their
5-mers*). So a partial barcode every one of whose 5-mers some reference record holds (a learned
model's index keeps them, ``clibd_cli/reference/holdings.py``; a model-free index's vectors are
5-mer profiles, ``embedding/kmer.py``) is *contained* (:func:`held_whole`), and its neighbours are
the ``k`` records holding the most of its 5-mers, those holding as many ordered by vector
similarity (:func:`contained_neighbours`; the counts: :class:`KmerCounter`); a partial barcode no
record holds whole (a new species' as a rule, or a read with errors) keeps its nearest vectors,
by which the genus of new species is named more often. Either way the neighbours come best first
by vector similarity, as the decision reads them (``decision.py``), and the species rank reads
their containment (``calibration.rank_similarities``). A calibration with ``contained_search``
was fitted on pseudo-queries and held-out queries searched so (``pseudo_queries.py``,
``fitting.py``), and ``clibd classify`` searches its queries so (``classifier.py``), for
references of up to ``MAX_RECORDS`` records. A model-free index gains as much: by its vectors'
cosine the best label of ``--model kmer-aa`` was right for 92.8 % of ``test``'s 150-base
stretches, by this search for 98.7 % (benchmarks/README.md, *Model-free indexes search partial
barcodes held whole by their 5-mers*).

A sequencing error breaks up to five of a read's 5-mers, so few partial reads with errors are held
whole by any record: a calibration for them (``dna<500~``) may let a record miss up to
``contained_slack`` of a read's 5-mers and still hold it (``READ_SLACK``, set by
``query_kinds.partial_calibration``; :func:`held_whole`); 0, every other calibration's and those
written before it, holds them whole.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import NamedTuple

import numpy as np

from clibd_cli.reference.holdings import unpacked

MAX_RECORDS = 1 << 17  # larger references search by vectors alone (the counter would keep over 256 MB)
_GROUP = 256  # 5-mers a matrix product counts at once: a count of 256 or fewer is exact in bfloat16
_RECORDS_PER_PRODUCT = 8192
_ROWS_CONVERTED = 2048  # rows made float32 at once for a numpy product (1 KB each kept as bytes)
_HISTOGRAM_ROWS = 32  # queries whose count histograms are made at once
READ_SLACK = 7  # 5-mers of a partial read with errors a record may miss and hold it: about one error's
# (benchmarks/classify_bold.py --fragment 150 --errors 0.01 on the bundled pack refitted so,
# benchmarks/add_partial_reads.py)


def kmer_bits(profiles: np.ndarray) -> np.ndarray:
    """``[Q, 4**5]`` float32 0/1: the 5-mers each query holds, from square-root 5-mer profiles
    ``[Q, 4**5]`` (``embedding/kmer.py``; a model-free index's vectors' part) or packed holdings
    ``[Q, 4**5 / 8]`` of records read as queries."""
    profiles = np.asarray(profiles)
    bits = unpacked(profiles) if profiles.dtype == np.uint8 else profiles > 0
    return bits.astype(np.float32)


class RowMembers(NamedTuple):
    """The records at the rows of a :class:`KmerCounter` that shares them: how many each row has
    (``size`` ``[rows]``), the records row by row, in order within one (``members`` ``[N]``), and
    where each row's begin in ``members`` (``first`` ``[rows]``)."""

    size: np.ndarray
    members: np.ndarray
    first: np.ndarray


class KmerCounter:
    """How many of each query's 5-mers each record holds, for blocks of queries, from the records'
    5-mers ``held`` ``[rows, 4**5]`` 0/1 (one row a record, or with ``of_record`` ``[N]`` one a
    distinct vector, each record at its row). With ``bfloat16`` (a learned model's index, which
    has PyTorch loaded): bfloat16 matrix products over groups of ``_GROUP`` 5-mers, each count so
    exact, summed in float32 (two to three times as fast as float32 ones here), 2 KB a row; else
    float32 products in numpy (a model-free index never imports PyTorch), 1 KB a row kept. A block of
    rows at a time (the products' buffers stay small)."""

    def __init__(self, held: np.ndarray, of_record: np.ndarray | None = None, bfloat16: bool = True):
        held = np.asarray(held)
        held = held.view(np.uint8) if held.dtype == bool else held  # no copy of a mask
        self._of_record, self._held, self._groups = of_record, np.ascontiguousarray(held, dtype=np.uint8), None
        if bfloat16:
            import torch

            rows = torch.from_numpy(self._held)
            self._groups = [rows[:, at: at + _GROUP].to(torch.bfloat16).contiguous()
                            for at in range(0, rows.shape[1], _GROUP)]
            self._held = None

    @classmethod
    def of_holdings(cls, holdings: np.ndarray) -> KmerCounter:
        """The counter of the records whose 5-mers an index holds (``[N, 4**5 / 8]`` packed,
        ``reference/holdings.py``: a learned model's), in bfloat16; records holding the same 5-mers
        share a row (BOLD ``train``: 22,081 rows for 52,192 records), the same counts."""
        packed = np.ascontiguousarray(holdings, dtype=np.uint8)
        _, first, of_record = np.unique(packed.view(np.dtype((np.void, packed.shape[1]))).ravel(),
                                        return_index=True, return_inverse=True)
        return cls(unpacked(packed[first]), of_record.ravel())

    @property
    def of_record(self) -> np.ndarray | None:
        """``[N]``: the row of each record (None: one row a record, in order)."""
        return self._of_record

    @cached_property
    def members(self) -> RowMembers | None:
        """The records of each row (None: one row a record, in order), sorted out once for every
        block of queries (an argsort over all the records)."""
        if self._of_record is None:
            return None
        size = np.bincount(self._of_record, minlength=self._rows)
        first = np.concatenate([[0], np.cumsum(size)])[:-1]
        return RowMembers(size, np.argsort(self._of_record, kind="stable"), first)

    @property
    def _rows(self) -> int:
        return len(self._held) if self._groups is None else len(self._groups[0])

    def __call__(self, bits: np.ndarray) -> np.ndarray:
        """``[Q, N]`` float32 counts of the queries' 5-mers ``bits`` (:func:`kmer_bits`)."""
        out = self.distinct(bits)
        return out if self._of_record is None else out[:, self._of_record]

    def distinct(self, bits: np.ndarray) -> np.ndarray:
        """``[Q, rows]`` float32 counts of the queries' 5-mers ``bits`` in each row (each record's
        count is its row's, :attr:`of_record`). The float32 products read only the 5-mers some query
        holds: whole-number sums, exact in any order."""
        n = self._rows
        out = np.empty((len(bits), n), dtype=np.float32)
        if self._groups is None:
            held = np.flatnonzero(np.asarray(bits).any(axis=0))
            mine = np.ascontiguousarray(bits[:, held], dtype=np.float32)
            for start in range(0, n, _ROWS_CONVERTED):  # converted a block at a time: no float copy kept
                block = self._held[start: start + _ROWS_CONVERTED].take(held, axis=1)
                out[:, start: start + len(block)] = mine @ block.astype(np.float32).T
        else:
            import torch

            queries = torch.from_numpy(np.ascontiguousarray(bits)).to(torch.bfloat16)
            queries = [queries[:, at: at + _GROUP].contiguous() for at in range(0, bits.shape[1], _GROUP)]
            for start in range(0, n, _RECORDS_PER_PRODUCT):
                total = out[:, start: start + _RECORDS_PER_PRODUCT]
                total[:] = 0.0
                for mine, theirs in zip(queries, self._groups):
                    total += (mine @ theirs[start: start + _RECORDS_PER_PRODUCT].T).float().numpy()
        return out


def records_counter(holdings: np.ndarray | None, vectors: np.ndarray, part: list[int],
                    of_record: np.ndarray | None = None) -> KmerCounter:
    """The :class:`KmerCounter` of a reference's records: of the 5-mers its index holds (a learned
    model's, ``holdings`` ``[N, 4**5 / 8]`` packed, ``reference/holdings.py``), or where it holds
    none (a model-free index) of the k-mer profile ``part`` of ``vectors`` (of each record, or of
    each distinct vector with ``of_record``)."""
    if holdings is not None:
        return KmerCounter.of_holdings(holdings)
    return KmerCounter(np.asarray(vectors)[:, part[0]:part[1]] > 0, of_record, bfloat16=False)


def held_whole(bits: np.ndarray, shared: np.ndarray, excluded: np.ndarray | None = None,
               slack: int = 0) -> np.ndarray:
    """``[Q]`` bool: whether a record not ``excluded`` ``[Q, N]`` holds every 5-mer of each query's
    ``bits`` (:func:`kmer_bits`) but ``slack`` at most, by ``shared`` ``[Q, N]`` (:class:`KmerCounter`)."""
    need = bits.sum(axis=1)
    holding = shared >= (need - 0.5 - slack)[:, None]  # [Q, N]: the record holds the query's 5-mers
    if excluded is not None:
        holding &= ~excluded
    return holding.any(axis=1) & (need > slack)  # no more 5-mers than the slack: nothing held


def contained_neighbours(shared: np.ndarray, similarity: Callable[[np.ndarray, np.ndarray], np.ndarray],
                         width: int, k: int | None = None, excluded: np.ndarray | None = None,
                         records: np.ndarray | None = None,
                         members: RowMembers | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, sims)`` ``[Q, width]``: the records holding the most of each query's 5-mers (by
    ``shared`` ``[Q, N]``, those ``excluded`` left out; or by ``shared`` ``[Q, rows]`` of the
    counter's rows, ``members`` the records at each, :meth:`KmerCounter.distinct`), ties
    to the higher vector similarity, best first by vector similarity (``similarity(q, c)``: of
    queries ``q`` to the records of columns ``c``, pairwise); the columns are the records at
    ``records`` (all, in order, if None). Where ``width`` is more than the ``k`` neighbours the
    decision reads (``clibd classify --report`` more), the next records by 5-mers follow those
    ``k``, each group best first; where fewer records are left than ``width``, the rest are not
    found (similarity -inf)."""
    held = shared if excluded is None else np.where(excluded, -1.0, shared)
    k = width if k is None else min(k, width)
    q, c, counts = _candidates(held, width, members)  # candidates hold as many as the width-th or more
    near_sims = similarity(q, c).astype(np.float32)
    order = np.lexsort((-near_sims, -counts, q))  # per query: most shared, then nearest vectors
    q, c, near_sims = q[order], c[order], near_sims[order]
    place = np.arange(len(q)) - np.searchsorted(q, q)  # within its query
    keep = place < width
    q, c, near_sims, later = q[keep], c[keep], near_sims[keep], place[keep] >= k
    order = np.lexsort((-near_sims, later, q))  # the decision's k, then the others, each nearest first
    q, c, near_sims = q[order], c[order], near_sims[order]
    place = np.arange(len(q)) - np.searchsorted(q, q)
    rows = np.zeros((len(held), width), dtype=np.int64)
    sims = np.full((len(held), width), -np.inf, dtype=np.float32)
    rows[q, place] = c if records is None else records[c]
    sims[q, place] = near_sims
    return rows, sims


def search_held_whole(counter: KmerCounter, profiles: np.ndarray, queries: np.ndarray, reference: np.ndarray,
                      rows: np.ndarray, sims: np.ndarray, k: int | None = None, column: np.ndarray | None = None,
                      records: np.ndarray | None = None, block: int = 256,
                      slack: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbours ``rows``, ``sims`` ``[Q, width]`` of ``queries`` with those of the queries a
    record holds whole (but ``slack`` 5-mers) found by their 5-mers instead
    (:func:`held_whole_neighbours`), and which those were ``[Q]``."""
    found_rows, found_sims, found = held_whole_neighbours(counter, profiles, queries, reference, rows.shape[1], k,
                                                          column, records, block, slack)
    rows, sims = rows.copy(), sims.copy()
    rows[found], sims[found] = found_rows[found], found_sims[found]
    return rows, sims, found


def held_whole_neighbours(counter: KmerCounter, profiles: np.ndarray, queries: np.ndarray, reference: np.ndarray,
                          width: int, k: int | None, column: np.ndarray | None, records: np.ndarray | None,
                          block: int, slack: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, sims, found)``: the neighbours ``[Q, width]`` of the queries a record holds whole
    but ``slack`` 5-mers (:func:`held_whole`; ``found`` ``[Q]``; the others' rows 0, similarities
    -inf, for their nearest vectors to fill), found by their 5-mers (:func:`contained_neighbours`,
    the decision's ``k`` first), of ``queries`` (vectors ``[Q, D]``, 5-mer ``profiles`` as
    :func:`kmer_bits` reads them), ``block`` queries at a time. The counter's records are
    ``reference``'s vectors at ``column`` (all, in order, if None), and the record rows ``records``
    (all, in order, if None)."""
    rows, found = np.zeros((len(queries), width), dtype=np.int64), np.zeros(len(queries), dtype=bool)
    sims = np.full((len(queries), width), -np.inf, dtype=np.float32)
    members = counter.members  # rows of no record (none as a rule) hold nothing
    orphans = None if members is None or members.size.all() else members.size == 0
    for at in range(0, len(queries), block):
        mine = kmer_bits(profiles[at: at + block])
        shared = counter.distinct(mine)  # counted by the counter's rows, not yet by record
        whole = at + np.flatnonzero(held_whole(mine, shared, orphans, slack))
        scores = queries[whole] @ reference.T
        near = (lambda q, c: scores[q, c]) if column is None else (lambda q, c: scores[q, column[c]])
        rows[whole], sims[whole] = contained_neighbours(shared[whole - at], near, width, k, records=records,
                                                        members=members)
        found[whole] = True
    return rows, sims, found


def _candidates(held: np.ndarray, width: int,
                rows: RowMembers | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q, c, counts)``: each query's records (columns ``c``, by query then record) holding as
    many of its 5-mers as its ``width``-th most holding record or more, and how many, from ``held``
    ``[Q, N]``, or ``[Q, rows]`` with the records at each row ``rows``."""
    if rows is None:
        kth = _kth_largest(held, width)
        q, c = np.nonzero(held >= kth[:, None])
        return q, c, held[q, c]
    size, members, first = rows
    kth = _kth_largest(held, width, size)
    q, row = np.nonzero(held >= kth[:, None])
    many = size[row]
    q, row = np.repeat(q, many), np.repeat(row, many)
    c = members[first[row] + np.arange(len(q)) - np.repeat(np.cumsum(many) - many, many)]
    order = np.lexsort((c, q))
    return q[order], c[order], held[q[order], row[order]]


def _kth_largest(counts: np.ndarray, k: int, size: np.ndarray | None = None) -> np.ndarray:
    """``[Q]``: the ``k``-th largest of each row of whole-number ``counts`` ``[Q, N]`` (-1 for a
    record left out; each column ``size`` ``[N]`` times, if given), at least 0; by histograms (a
    partition of each row took ten times as long), ``_HISTOGRAM_ROWS`` rows at once."""
    out = np.zeros(len(counts), dtype=np.float32)
    top = int(counts.max(initial=0)) + 2  # a histogram's length: counts -1 ... max
    for at in range(0, len(counts), _HISTOGRAM_ROWS):
        mine = counts[at: at + _HISTOGRAM_ROWS].astype(np.intp) + 1
        bins = (mine + top * np.arange(len(mine))[:, None]).ravel()
        weights = None if size is None else np.broadcast_to(size, mine.shape).ravel()
        histogram = np.bincount(bins, weights, minlength=top * len(mine)).reshape(len(mine), top)
        held_at_least = np.cumsum(histogram[:, ::-1], axis=1)[:, ::-1]  # records holding at least each count - 1
        kth = np.minimum((held_at_least >= k).sum(axis=1) - 2, mine.max(axis=1, initial=0) - 1)
        out[at: at + len(mine)] = np.maximum(kth, 0)
    return out
