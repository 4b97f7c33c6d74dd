"""Barcodes read as proteins: COI translated in the invertebrate mitochondrial code.

COI-5P is protein coding. Its amino acids change far more slowly than its third codon positions,
so a profile of the translation keeps the signal of orders and families that nucleotide k-mers
lose to saturation (``benchmarks/genus_headroom.py``). Each barcode is read in the frame with the
fewest stop codons (the first such frame on a tie); gap characters are dropped first, and a
codon with any letter other than ACGT is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
STOP = len(AMINO_ACIDS)  # code of a stop codon
UNKNOWN = STOP + 1  # code of a codon with an ambiguous base
GAPS = str.maketrans("", "", "-.~ \t\r\n")

# NCBI translation table 5, the invertebrate mitochondrial code: like the standard code except
# TGA = W, ATA = M, AGA = AGG = S. Codon index = 16 * first + 4 * second + third, bases ACGT = 0..3.
_TABLE_5 = "KNKNTTTTSSSSMIMIQHQHPPPPRRRRLLLLEDEDAAAAGGGGVVVV*Y*YSSSSWCWCLFLF"
CODONS = np.array([AMINO_ACIDS.index(a) if a != "*" else STOP for a in _TABLE_5], dtype=np.uint8)

_BASES = np.full(256, 255, dtype=np.uint8)
for _i, _base in enumerate(b"ACGT"):
    _BASES[_base] = _BASES[_base + 32] = _i
_BASES[ord("U")] = _BASES[ord("u")] = 3  # RNA reads as DNA


def translate(barcodes: Sequence[str]) -> list[np.ndarray]:
    """Each barcode's amino-acid codes (0..19 as in :data:`AMINO_ACIDS`, :data:`STOP`,
    :data:`UNKNOWN`) in its frame with the fewest stop codons."""
    out = []
    for barcode in barcodes:
        bases = _BASES[np.frombuffer(barcode.translate(GAPS).encode("ascii", errors="replace"), dtype=np.uint8)]
        best = None
        for frame in range(3):
            triplets = bases[frame: frame + 3 * ((len(bases) - frame) // 3)].reshape(-1, 3).astype(np.int64)
            known = (triplets < 4).all(axis=1)
            codes = np.where(known, CODONS[(triplets @ np.array([16, 4, 1])) % 64], UNKNOWN).astype(np.uint8)
            stops = int((codes == STOP).sum())
            if best is None or stops < best[0]:
                best = (stops, codes)
        out.append(best[1] if best else np.zeros(0, dtype=np.uint8))
    return out


def peptide_profile(barcodes: Sequence[str], k: int = 2) -> np.ndarray:
    """``[N, 20**k]`` square-root scaled, L2-normalised counts of the overlapping amino-acid
    k-mers of each barcode's translation (k-mers with a stop or an unknown codon skipped; a
    barcode without one embeds as the zero vector)."""
    out = np.zeros((len(barcodes), 20**k), dtype=np.float32)
    for row, codes in enumerate(translate(barcodes)):
        windows = len(codes) - k + 1
        if windows <= 0:
            continue
        index = np.zeros(windows, dtype=np.int64)
        valid = np.ones(windows, dtype=bool)
        for offset in range(k):
            window = codes[offset: offset + windows]
            valid &= window < STOP
            index = index * 20 + np.minimum(window, 19)
        out[row] = np.bincount(index[valid], minlength=20**k)
    np.sqrt(out, out=out)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
