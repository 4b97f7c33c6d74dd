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


def frame_stops(barcodes: Sequence[str], block: int = 4096) -> np.ndarray:
    """``[N]`` the fewest stop codons met reading each barcode codon by codon through its three
    forward frames, a change of frame (an insertion or deletion, as a sequencing error makes)
    counting as one stop. A COI barcode on its own strand reads with none; the same bases
    shuffled meet several (``clibd_cli/reference/sketch.py`` uses it against off-target queries)."""
    out = np.zeros(len(barcodes), dtype=np.int64)
    for first in range(0, len(barcodes), block):
        cleaned = [b.translate(GAPS) for b in barcodes[first : first + block]]
        lengths = np.array([len(b) for b in cleaned], dtype=np.int64)
        bases = _BASES[np.frombuffer("".join(cleaned).encode("ascii", errors="replace"), dtype=np.uint8)]
        if len(bases) < 3:
            continue
        starts = np.cumsum(lengths) - lengths
        owner = np.repeat(np.arange(len(cleaned)), lengths)[:-2]  # the barcode each codon starts in
        at = np.arange(len(owner)) - starts[owner]
        stops = ((bases[:-2] < 4) & (bases[1:-1] < 4) & (bases[2:] < 4) & (at <= lengths[owner] - 3)
                 & (CODONS[(bases[:-2].astype(np.int64) * 16 + bases[1:-1] * 4 + bases[2:]) % 64] == STOP))
        per_frame = np.bincount(owner[stops] * 3 + at[stops] % 3, minlength=3 * len(cleaned)).reshape(-1, 3)
        fewest = per_frame.min(axis=1)
        for row in np.flatnonzero(fewest > 1):  # a path that changes frame can only do better by two or more
            fewest[row] = _fewest_with_shifts(stops[starts[row] : starts[row] + lengths[row]].tolist())
        out[first : first + len(cleaned)] = fewest
    return out


def _fewest_with_shifts(stops: list[bool]) -> int:
    """The fewest stops on a path through the three frames, a shift costing one (``stops[i]``:
    whether the codon starting at base ``i`` is a stop)."""
    stops = stops + [False] * (-len(stops) % 3)
    first = second = third = 0  # the fewest stops of a path in each frame so far
    for at in range(0, len(stops), 3):
        first, second, third = first + stops[at], second + stops[at + 1], third + stops[at + 2]
        shift = min(first, second, third) + 1
        first, second, third = min(first, shift), min(second, shift), min(third, shift)
    return min(first, second, third)


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
