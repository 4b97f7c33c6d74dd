"""Reading hnswlib's saved index (``index.bin``) directly: its vector size, whether it is whole,
and a view of every stored vector in the file, mapped rather than read (at 1M references of
``--model kmer-aa`` a copy is 5.7 GB; ``hnswlib.Index.get_items`` copies one item at a time:
~2 s for 25k vectors of 1,424 dimensions, against a strided read of the file's level-0 block).

The file starts with hnswlib's header (``HierarchicalNSW::saveIndex``): offsetLevel0,
max_elements, cur_element_count, size_data_per_element, label_offset, offsetData (six size_t),
maxlevel (int), enterpoint_node (uint), maxM, maxM0, M (size_t), mult (double), ef_construction
(size_t); then ``cur_element_count`` elements of ``size_data_per_element`` bytes, each holding
its level-0 links, its vector (float32) at ``offsetData`` and its label (size_t) at
``label_offset``; then, per element, the byte size of its upper-level links (unsigned int) and
those links.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

HEADER = 96  # bytes before the level-0 block


def stored_dim(path: Path) -> int | None:
    """The vector dimension an hnswlib index file was saved with (its header's data size / 4)."""
    header = np.fromfile(path, dtype="<u8", count=6)
    return int(header[4] - header[5]) // 4 if len(header) == 6 else None


def stored_whole(path: Path) -> bool:
    """Whether an hnswlib index file holds every part its header announces, to its last byte:
    hnswlib does not check its writes, and a full disk leaves the file cut short."""
    with open(path, "rb") as handle:
        mapped = _map(handle)
    if len(mapped) < 48:
        return False
    count, size = (int(x) for x in mapped[16:32].view("<u8"))
    at = HEADER + count * size
    sizes = memoryview(mapped)
    for _ in range(count):  # a Python loop: 9 ms for the 52,192 of the bundled reference
        if at + 4 > len(mapped):
            return False
        at += 4 + int.from_bytes(sizes[at:at + 4], "little")
    return at == len(mapped)


def stored_view(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A read-only ``[count, dim]`` float32 view of the vectors in an hnswlib index file, in the
    file's order and mapped from it, and ``element`` ``[count]``: the row of each label
    (label ``i`` is ``view[element[i]]``); None if the file is not laid out as expected."""
    with open(path, "rb") as handle:  # header, labels and vectors all from this one open file
        mapped = _map(handle)
        if len(mapped) < 48:
            return None
        _, _, count, size, label_offset, data_offset = (int(x) for x in mapped[:48].view("<u8"))
        if label_offset - data_offset != 4 * dim or len(mapped) < HEADER + count * size or size % 4:
            return None
        if count == 0:
            return np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
        labels = _labels(handle.fileno(), count, size, label_offset)
    element = np.full(count, -1, dtype=np.int64)
    if labels.max() < count:
        element[labels] = np.arange(count)
    if (element < 0).any():  # labels are not 0..count-1, each once
        return None
    view = np.ndarray((count, dim), dtype="<f4", buffer=mapped, offset=HEADER + data_offset, strides=(size, 4))
    return view, element


_LABEL_BLOCK = 64 << 20  # bytes of elements read at a time for their labels


def _labels(fd: int, count: int, size: int, label_offset: int) -> np.ndarray:
    """Each element's label, read a block at a time rather than through the mapping: a label
    sits in every element, so reading them there would make the whole file resident (4 GB at 1M
    references of ``--model kmer``) for a classify that may never read a vector."""
    labels = np.empty(count, dtype="<u8")
    per = max(1, _LABEL_BLOCK // size)
    for start in range(0, count, per):
        n = min(per, count - start)
        block = np.frombuffer(os.pread(fd, n * size, HEADER + start * size), dtype=np.uint8).reshape(n, size)
        labels[start:start + n] = block[:, label_offset:label_offset + 8].copy().view("<u8").ravel()
    return labels


def _map(handle) -> np.ndarray:
    """The bytes of an open file, mapped read-only (an empty file: no bytes)."""
    if not os.fstat(handle.fileno()).st_size:
        return np.zeros(0, np.uint8)
    return np.memmap(handle, dtype=np.uint8, mode="r")
