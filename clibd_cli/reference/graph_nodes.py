"""Graph nodes of a reference index: records whose vectors are equal (to 5 decimals) share one
node of the HNSW graph (``hnsw_index.py``; ``nodes.npy`` maps each record to its node), so a
reference full of identical barcodes searches as fast as one without."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

from clibd_cli.reference.search import BLOCK


def node_keys(vectors: np.ndarray) -> dict[bytes, int]:
    """Map each vector's grouping key to its row (the first row for duplicates)."""
    keys: dict[bytes, int] = {}
    for row, key in enumerate(_keys(vectors)):
        keys.setdefault(key, row)
    return keys


def assign_nodes(vectors: np.ndarray, known: dict[bytes, int]) -> tuple[np.ndarray, np.ndarray]:
    """Graph node of each vector: an existing node if ``known``, else a new one numbered after
    them. Returns ``(nodes [N], rows of the vectors that start new nodes)``; updates ``known``."""
    nodes = np.empty(len(vectors), dtype=np.int64)
    fresh = []
    for row, key in enumerate(_keys(vectors)):
        if key not in known:
            known[key] = len(known)
            fresh.append(row)
        nodes[row] = known[key]
    return nodes, np.array(fresh, dtype=np.int64)


def _keys(vectors: np.ndarray) -> Iterator[bytes]:
    """Grouping keys: vectors equal to 5 decimals are one node (batched inference jitters).

    A key is a 128-bit digest of the rounded vector, computed a block at a time: the vectors
    themselves as keys would hold another copy of the reference (4 GB for a million k-mer
    profiles) twice over.
    """
    for start in range(0, len(vectors), BLOCK * 16):
        rounded = np.round(vectors[start : start + BLOCK * 16], 5) + 0.0  # + 0.0: -0.0 -> 0.0
        for row in rounded:
            yield hashlib.blake2b(row.tobytes(), digest_size=16).digest()
