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
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clibd_cli.reference.holdings import unpacked

MAX_RECORDS = 1 << 17  # larger references search by vectors alone (the counter would keep over 256 MB)
_GROUP = 256  # 5-mers a matrix product counts at once: a count of 256 or fewer is exact in bfloat16
_RECORDS_PER_PRODUCT = 8192
_ROWS_CONVERTED = 2048  # rows made float32 at once for a numpy product (1 KB each kept as bytes)


def kmer_bits(profiles: np.ndarray) -> np.ndarray:
    """``[Q, 4**5]`` float32 0/1: the 5-mers each query holds, from square-root 5-mer profiles
    ``[Q, 4**5]`` (``embedding/kmer.py``; a model-free index's vectors' part) or packed holdings
    ``[Q, 4**5 / 8]`` of records read as queries."""
    profiles = np.asarray(profiles)
    bits = unpacked(profiles) if profiles.dtype == np.uint8 else profiles > 0
    return bits.astype(np.float32)


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

    def __call__(self, bits: np.ndarray) -> np.ndarray:
        """``[Q, N]`` float32 counts of the queries' 5-mers ``bits`` (:func:`kmer_bits`)."""
        n = len(self._held) if self._groups is None else len(self._groups[0])
        out = np.empty((len(bits), n), dtype=np.float32)
        if self._groups is None:
            for start in range(0, n, _ROWS_CONVERTED):  # converted a block at a time: no float copy kept
                block = self._held[start: start + _ROWS_CONVERTED]
                out[:, start: start + len(block)] = bits @ block.astype(np.float32).T
        else:
            import torch

            queries = torch.from_numpy(np.ascontiguousarray(bits)).to(torch.bfloat16)
            queries = [queries[:, at: at + _GROUP].contiguous() for at in range(0, bits.shape[1], _GROUP)]
            for start in range(0, n, _RECORDS_PER_PRODUCT):
                total = out[:, start: start + _RECORDS_PER_PRODUCT]
                total[:] = 0.0
                for mine, theirs in zip(queries, self._groups):
                    total += (mine @ theirs[start: start + _RECORDS_PER_PRODUCT].T).float().numpy()
        return out if self._of_record is None else out[:, self._of_record]


def records_counter(holdings: np.ndarray | None, vectors: np.ndarray, part: list[int],
                    of_record: np.ndarray | None = None) -> KmerCounter:
    """The :class:`KmerCounter` of a reference's records: of the 5-mers its index holds (a learned
    model's, ``holdings`` ``[N, 4**5 / 8]`` packed, ``reference/holdings.py``), or where it holds
    none (a model-free index) of the k-mer profile ``part`` of ``vectors`` (of each record, or of
    each distinct vector with ``of_record``)."""
    if holdings is not None:
        return KmerCounter.of_holdings(holdings)
    return KmerCounter(np.asarray(vectors)[:, part[0]:part[1]] > 0, of_record, bfloat16=False)


def held_whole(bits: np.ndarray, shared: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
    """``[Q]`` bool: whether a record not ``excluded`` ``[Q, N]`` holds every 5-mer of each query's
    ``bits`` (:func:`kmer_bits`), by ``shared`` ``[Q, N]`` (:class:`KmerCounter`)."""
    need = bits.sum(axis=1)
    holding = shared >= (need - 0.5)[:, None]  # [Q, N]: the record holds every 5-mer of the query
    if excluded is not None:
        holding &= ~excluded
    return holding.any(axis=1) & (need > 0)  # no 5-mer: nothing held


def contained_neighbours(shared: np.ndarray, similarity: Callable[[np.ndarray, np.ndarray], np.ndarray],
                         width: int, k: int | None = None, excluded: np.ndarray | None = None,
                         records: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, sims)`` ``[Q, width]``: the records holding the most of each query's 5-mers (by
    ``shared`` ``[Q, N]``, those ``excluded`` left out), ties to the higher vector similarity, best
    first by vector similarity (``similarity(q, c)``: of queries ``q`` to the records of columns
    ``c``, pairwise); the columns are the records at ``records`` (all, in order, if None). Where
    ``width`` is more than the ``k`` neighbours the decision reads (``clibd classify --report``
    more), the next records by 5-mers follow those ``k``, each group best first; where fewer records
    are left than ``width``, the rest are not found (similarity -inf)."""
    held = shared if excluded is None else np.where(excluded, -1.0, shared)
    k = width if k is None else min(k, width)
    kth = np.array([_kth_largest(row, width) for row in held], dtype=np.float32)  # candidates hold as many or more
    q, c = np.nonzero(held >= kth[:, None])
    counts = held[q, c]
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
                      records: np.ndarray | None = None,
                      block: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbours ``rows``, ``sims`` ``[Q, width]`` of ``queries`` (vectors ``[Q, D]``, 5-mer
    ``profiles`` as :func:`kmer_bits` reads them) with those of the queries a record holds whole found by their
    5-mers instead (:func:`contained_neighbours`, the decision's ``k`` first), ``block`` queries at a
    time, and which those were ``[Q]``. The counter's records are ``reference``'s vectors at
    ``column`` (all, in order, if None), and the record rows ``records`` (all, in order, if None)."""
    rows, sims, found = rows.copy(), sims.copy(), np.zeros(len(rows), dtype=bool)
    for at in range(0, len(rows), block):
        mine = kmer_bits(profiles[at: at + block])
        shared = counter(mine)
        whole = at + np.flatnonzero(held_whole(mine, shared))
        scores = queries[whole] @ reference.T
        near = (lambda q, c: scores[q, c]) if column is None else (lambda q, c: scores[q, column[c]])
        rows[whole], sims[whole] = contained_neighbours(shared[whole - at], near, rows.shape[1], k, records=records)
        found[whole] = True
    return rows, sims, found


def _kth_largest(counts: np.ndarray, k: int) -> int:
    """The ``k``-th largest of whole-number ``counts`` (-1 for a record left out), at least 0; by a
    histogram (a partition of each row took ten times as long)."""
    histogram = np.bincount(counts.astype(np.intp) + 1)
    held_at_least = np.cumsum(histogram[::-1])[::-1]  # records holding at least each count - 1
    return max(int((held_at_least >= k).sum()) - 2, 0)
