"""Exact nearest neighbours by inner product (cosine on L2-normalised vectors), in blocks."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BLOCK = 1024  # queries per block
PARTITIONED = 1 << 21  # costs partitioned at once (smallest_k): 16 MB of int64 columns


def exact_search(reference: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k inner products, in blocks of queries: ``(rows int64, sims float32)``."""
    k = min(k, len(reference))
    rows = np.empty((len(queries), k), dtype=np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), BLOCK):
        block = slice(start, start + BLOCK)
        rows[block], sims[block] = top_k(queries[block] @ reference.T, k)
    return rows, sims


def top_k(scores: np.ndarray, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``k`` largest scores per row, in descending order, and those scores
    (:func:`smallest_k` of the negated scores)."""
    rows, costs = smallest_k(lambda part: -scores[part], scores.shape, k, threads)
    return rows, -costs


def smallest_k(costs: Callable[[slice], np.ndarray], shape: tuple[int, int], k: int,
               threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``k`` smallest costs per row of a ``shape`` ``[rows, columns]`` of them, in
    ascending order (ties in the partition's order), and those costs. ``costs(part)`` makes the rows
    ``part`` (a slice) of them, about ``PARTITIONED`` costs at a time: a larger block is new memory
    the system must hand over page by page each time (256 rows of 52k references at once took twice
    as long as 32 at a time), and each row's answer is the same either way. The blocks are shared
    among ``threads`` threads (numpy lets go of the GIL while it partitions)."""
    rows, columns = shape
    step = max(1, PARTITIONED // max(columns, 1))
    parts = [slice(start, min(start + step, rows)) for start in range(0, max(rows, 1), step)]

    def smallest(part: slice) -> tuple[np.ndarray, np.ndarray]:
        block = costs(part)
        top = np.argpartition(block, k - 1, axis=1)[:, :k]
        top_costs = np.take_along_axis(block, top, axis=1)
        order = np.argsort(top_costs, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_costs, order, axis=1)

    if threads > 1 and len(parts) > 1:
        with ThreadPoolExecutor(min(threads, len(parts))) as pool:
            found = list(pool.map(smallest, parts))
    else:
        found = [smallest(part) for part in parts]
    return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
