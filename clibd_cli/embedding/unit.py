"""Rows scaled to unit length: every embedding clibd searches is compared by cosine, as a dot product."""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` (float, 2-D) with each row divided by its L2 norm, in place; returns ``x``. A zero row
    (a barcode without a valid k-mer, a specimen without a photo) stays zero."""
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x
