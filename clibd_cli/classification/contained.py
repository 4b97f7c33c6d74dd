"""Partial barcodes held whole by a reference record: their neighbours by the 5-mers they share.

By a learned model's vectors a short stretch of a known species often lies nearer other species'
barcodes than its own: the bundled model's 50 nearest vectors held the species of 93.3 % of BOLD
``test``'s 150-base stretches, and its best label was right for 89.6 % of them, where the
records sharing the most of a stretch's 5-mers (a vote among the ties) were of its species for
99.15 % (benchmarks/README.md, *Partial barcodes held whole by a record are searched by their
5-mers*). So a partial barcode every one of whose 5-mers some reference record holds
(``clibd_cli/reference/holdings.py``) is *contained* (:func:`held_whole`), and its neighbours are
the ``k`` records holding the most of its 5-mers, those holding as many ordered by vector
similarity (:func:`contained_neighbours`; the counts: :class:`KmerCounter`); a partial barcode no
record holds whole (a new species' as a rule, or a read with errors) keeps its nearest vectors,
by which the genus of new species is named more often. Either way the neighbours come best first
by vector similarity, as the decision reads them (``decision.py``), and the species rank reads
their containment (``calibration.rank_similarities``). A calibration with ``contained_search``
was fitted on pseudo-queries and held-out queries searched so (``pseudo_queries.py``,
``fitting.py``), and ``clibd classify`` searches its queries so (``classifier.py``), for
references of up to ``MAX_RECORDS`` records.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clibd_cli.reference.holdings import unpacked

MAX_RECORDS = 1 << 17  # larger references search by vectors alone (the counter would keep over 256 MB)
_GROUP = 256  # 5-mers a matrix product counts at once: a count of 256 or fewer is exact in bfloat16
_RECORDS_PER_PRODUCT = 8192


def kmer_bits(profiles: np.ndarray) -> np.ndarray:
    """``[Q, 4**5]`` float32 0/1: the 5-mers each query holds, from square-root 5-mer profiles
    ``[Q, 4**5]`` (``embedding/kmer.py``) or packed holdings ``[Q, 4**5 / 8]`` of records read as
    queries."""
    profiles = np.asarray(profiles)
    bits = unpacked(profiles) if profiles.dtype == np.uint8 else profiles > 0
    return bits.astype(np.float32)


class KmerCounter:
    """How many of each query's 5-mers each record of ``holdings`` ``[N, 128]`` holds, for blocks of
    queries: bfloat16 matrix products (in PyTorch, which a learned model's index has loaded; two
    to three times as fast as float32 ones here) over groups of ``_GROUP`` 5-mers, each count so
    exact, summed in float32, ``_RECORDS_PER_PRODUCT`` records at a time (the products' buffers
    stay small). The records are unpacked once (2 KB each: 107 MB for the bundled reference's
    52,192; ``MAX_RECORDS``)."""

    def __init__(self, holdings: np.ndarray):
        import torch

        held = torch.from_numpy(unpacked(np.asarray(holdings)))
        self._groups = [held[:, at: at + _GROUP].to(torch.bfloat16).contiguous()
                        for at in range(0, held.shape[1], _GROUP)]

    def __call__(self, bits: np.ndarray) -> np.ndarray:
        """``[Q, N]`` float32 counts of the queries' 5-mers ``bits`` (:func:`kmer_bits`)."""
        import torch

        queries = torch.from_numpy(np.ascontiguousarray(bits)).to(torch.bfloat16)
        queries = [queries[:, at: at + _GROUP].contiguous() for at in range(0, bits.shape[1], _GROUP)]
        n = len(self._groups[0])
        out = np.empty((len(bits), n), dtype=np.float32)
        for start in range(0, n, _RECORDS_PER_PRODUCT):
            total = out[:, start: start + _RECORDS_PER_PRODUCT]
            total[:] = 0.0
            for mine, theirs in zip(queries, self._groups):
                total += (mine @ theirs[start: start + _RECORDS_PER_PRODUCT].T).float().numpy()
        return out


def held_whole(bits: np.ndarray, shared: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
    """``[Q]`` bool: whether a record not ``excluded`` ``[Q, N]`` holds every 5-mer of each query's
    ``bits`` (:func:`kmer_bits`), by ``shared`` ``[Q, N]`` (:class:`KmerCounter`)."""
    left, need = True if excluded is None else ~excluded, bits.sum(axis=1)
    return (shared.max(axis=1, initial=-1.0, where=left) >= need - 0.5) & (need > 0)  # no 5-mer: nothing held


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
                      records: np.ndarray | None = None, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The neighbours ``rows``, ``sims`` ``[Q, width]`` of ``queries`` (vectors ``[Q, D]``, 5-mer
    ``profiles``) with those of the queries a record holds whole found by their 5-mers instead
    (:func:`contained_neighbours`, the decision's ``k`` first), ``block`` queries at a time. The
    counter's records are ``reference``'s vectors at ``column`` (all, in order, if None), and the
    record rows ``records`` (all, in order, if None)."""
    rows, sims = rows.copy(), sims.copy()
    for at in range(0, len(rows), block):
        bits = kmer_bits(profiles[at: at + block])
        shared = counter(bits)
        whole = at + np.flatnonzero(held_whole(bits, shared))
        scores = queries[whole] @ reference.T
        mine = (lambda q, c: scores[q, c]) if column is None else (lambda q, c: scores[q, column[c]])
        rows[whole], sims[whole] = contained_neighbours(shared[whole - at], mine, rows.shape[1], k, records=records)
    return rows, sims


def _kth_largest(counts: np.ndarray, k: int) -> int:
    """The ``k``-th largest of whole-number ``counts`` (-1 for a record left out), at least 0; by a
    histogram (a partition of each row took ten times as long)."""
    histogram = np.bincount(counts.astype(np.intp) + 1)
    held_at_least = np.cumsum(histogram[::-1])[::-1]  # records holding at least each count - 1
    return max(int((held_at_least >= k).sum()) - 2, 0)
