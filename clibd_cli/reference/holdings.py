"""The 5-mers each reference barcode holds: partial barcodes' species by k-mer containment for a learned model.

By a learned model's vectors, as by cosine of k-mer profiles, a 313-base stretch of a known
species lies about as far from its species' whole barcodes as a new species' stretch from its
congeners'; but the stretch is contained in its own species' barcodes whole. A model-free index
reads that containment from its vectors (``--model kmer``: they are the k-mer profiles); an
index of a learned DNA model keeps, beside its vectors, which of the ``4**K`` 5-mers each record's
barcode holds (on the reference's strand), one bit each (``HOLDINGS_FILE``: uint8
``[N, 4**K / 8]``, ``np.packbits`` order; 128 bytes a record), and its partial barcodes read their
species from it (``Calibration.containment_source`` "holdings", ``calibration.rank_similarities``).
``clibd index`` writes it (``clibd_cli/indexing/build.py``); an index built before has none, and
reads partial barcodes by its vectors alone until it is rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clibd_cli.embedding.kmer import kmer_profile
from models.errors import ClibdError

K = 5
HOLDINGS_FILE = "holdings.npy"
WIDTH = 4 ** K // 8  # bytes a record
_BLOCK = 4096


def kmer_holdings(barcodes: Sequence[str]) -> np.ndarray:
    """``[N, WIDTH]`` uint8: which 5-mers each barcode holds, packed."""
    out = np.zeros((len(barcodes), WIDTH), dtype=np.uint8)
    for start in range(0, len(barcodes), _BLOCK):
        out[start: start + _BLOCK] = np.packbits(kmer_profile(list(barcodes[start: start + _BLOCK]), K) > 0, axis=1)
    return out


def unpacked(holdings: np.ndarray) -> np.ndarray:
    """``[..., 4**K]`` uint8 0/1 of packed ``holdings`` ``[..., WIDTH]``."""
    return np.unpackbits(holdings, axis=-1)


def save_holdings(holdings: np.ndarray | None, folder: Path) -> list[str]:
    """Write ``holdings`` (if any) into ``folder`` (an index or pack being written); the file names."""
    if holdings is None:
        return []
    np.save(folder / HOLDINGS_FILE, np.ascontiguousarray(holdings), allow_pickle=False)
    return [HOLDINGS_FILE]


def load_holdings(path: Path, records: int, remedy: str) -> np.ndarray:
    """The holdings at ``path`` (memory-mapped), or a ClibdError ending in ``remedy`` unless they are
    ``[records, WIDTH]`` uint8 as :func:`kmer_holdings` writes them."""
    try:
        holdings = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ClibdError(f"{path}: not a numpy array file clibd wrote ({exc}); {remedy}") from None
    return checked_holdings(holdings, records, path, remedy)


def checked_holdings(holdings: np.ndarray, records: int, where: Path, remedy: str) -> np.ndarray:
    """``holdings``, or a ClibdError naming ``where`` and ending in ``remedy`` unless they are
    ``[records, WIDTH]`` uint8 as :func:`kmer_holdings` writes them."""
    if holdings.shape != (records, WIDTH) or holdings.dtype != np.uint8:
        raise ClibdError(f"{where}: expected the 5-mers of each of the {records:,} records ([{records}, {WIDTH}] uint8), "
                         f"found {holdings.dtype} {list(holdings.shape)}; {remedy}")
    return holdings
