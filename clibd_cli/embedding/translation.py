"""Barcodes read as proteins: COI translated in the invertebrate mitochondrial code.

COI-5P is protein coding. Its amino acids change far more slowly than its third codon positions,
so a profile of the translation keeps the signal of orders and families that nucleotide k-mers
lose to saturation (``benchmarks/genus_headroom.py``). Each barcode is read in the frame with the
fewest stop codons (the first such frame on a tie); gap characters are dropped first, and a
codon with any letter other than ACGT is unknown. A read with sequencing errors is read through
its frame shifts instead (:func:`_read_through`, ``peptide_profile(reads=True)``).
:func:`frame_stops` counts the stops a barcode
cannot avoid, frame shifts allowed (the off-target guard's reading of "not a protein");
:func:`frame_breaks` those of its best single frame (a read with an insertion or deletion meets some).
Barcodes are read a block at a time, concatenated: each base's codon in one numpy pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from clibd_cli.embedding.unit import unit_rows
from models.tokenizers import base_codes

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
STOP = len(AMINO_ACIDS)  # code of a stop codon
UNKNOWN = STOP + 1  # code of a codon with an ambiguous base
GAPS = str.maketrans("", "", "-.~ \t\r\n")

# NCBI translation table 5, the invertebrate mitochondrial code: like the standard code except
# TGA = W, ATA = M, AGA = AGG = S. Codon index = 16 * first + 4 * second + third, bases ACGT = 0..3.
_TABLE_5 = "KNKNTTTTSSSSMIMIQHQHPPPPRRRRLLLLEDEDAAAAGGGGVVVV*Y*YSSSSWCWCLFLF"
CODONS = np.array([AMINO_ACIDS.index(a) if a != "*" else STOP for a in _TABLE_5], dtype=np.uint8)


@dataclass
class _Codons:
    """The codons of a block of barcodes, concatenated: at each base of each barcode (but the
    concatenation's last two) the amino-acid code of the codon starting there."""

    lengths: np.ndarray  # [B] bases of each barcode, gaps dropped
    starts: np.ndarray  # [B] where each begins in the concatenation
    owner: np.ndarray  # [P] the barcode each codon starts in
    at: np.ndarray  # [P] where in it
    codes: np.ndarray  # [P] uint8: 0..19, STOP, UNKNOWN
    whole: np.ndarray  # [P] bool: the codon lies inside its barcode

    @property
    def stops(self) -> np.ndarray:
        return self.whole & (self.codes == STOP)

    def frame_counts(self, where: np.ndarray) -> np.ndarray:
        """``[B, 3]``: per barcode and frame, how many codons ``where`` marks."""
        return np.bincount(self.owner[where] * 3 + self.at[where] % 3, minlength=3 * len(self.lengths)).reshape(-1, 3)

    def best_frame(self) -> np.ndarray:
        """Which codons each barcode reads in its frame with the fewest stops (the first such frame)."""
        frames = self.frame_counts(self.stops).argmin(axis=1)
        return self.whole & (self.at % 3 == frames[self.owner])


def _codons(barcodes: Sequence[str]) -> _Codons:
    cleaned = [b.translate(GAPS) for b in barcodes]
    lengths = np.array([len(b) for b in cleaned], dtype=np.int64)
    bases = base_codes("".join(cleaned), rna=True)
    starts = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(len(cleaned)), lengths)[: max(len(bases) - 2, 0)]
    at = np.arange(len(owner)) - starts[owner]
    first, second, third = bases[: len(owner)], bases[1 : len(owner) + 1], bases[2 : len(owner) + 2]
    known = (first < 4) & (second < 4) & (third < 4)
    index = (first.astype(np.int64) * 16 + second * 4 + third) % 64
    codes = np.where(known, CODONS[index], UNKNOWN).astype(np.uint8)
    return _Codons(lengths, starts, owner, at, codes, at <= lengths[owner] - 3)


def codon_blocks(barcodes: Sequence[str], block: int = 4096) -> Iterator[tuple[int, _Codons]]:
    """``(first, codons)``: the barcodes' codons in all three frames, ``block`` barcodes at a time
    (``first``: the index of a block's first barcode), so memory stays bounded."""
    for first in range(0, len(barcodes), block):
        yield first, _codons(barcodes[first : first + block])


def frame_breaks(barcodes: Sequence[str]) -> np.ndarray:
    """``[N]`` the stop codons of each barcode's frame with the fewest: none for 99.9 % of COI
    barcodes on their own strand, some for 94 % of reads with 1 % sequencing errors (an insertion
    or deletion shifts the rest of the read's frame; benchmarks/README.md, *Reads with sequencing
    errors*). ``query_kinds.READ_KIND`` queries are barcodes with some."""
    out = np.zeros(len(barcodes), dtype=np.int64)
    for first, codons in codon_blocks(barcodes):
        counts = codons.frame_counts(codons.stops).min(axis=1)
        out[first : first + len(counts)] = counts
    return out


def frame_stops(barcodes: Sequence[str]) -> np.ndarray:
    """``[N]`` the fewest stop codons met reading each barcode codon by codon through its three
    forward frames, a change of frame (an insertion or deletion, as a sequencing error makes)
    counting as one stop. A COI barcode on its own strand reads with none; the same bases
    shuffled meet several (``clibd_cli/reference/sketch.py`` uses it against off-target queries)."""
    out = np.zeros(len(barcodes), dtype=np.int64)
    for first, codons in codon_blocks(barcodes):
        stops = codons.stops
        fewest = codons.frame_counts(stops).min(axis=1)
        for row in np.flatnonzero(fewest > 1):  # a path that changes frame can only do better by two or more
            start = codons.starts[row]
            fewest[row] = _fewest_with_shifts(stops[start : start + codons.lengths[row]].tolist())
        out[first : first + len(fewest)] = fewest
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


# How much likelier each amino acid (0..19, STOP, UNKNOWN) is read in COI's own frame than in its two
# other frames: log ratio of their frequencies in 5,000 BOLD barcodes (benchmarks/frame_usage.py).
# Alanine, glycine and valine are common in frame; stops, cysteine and lysine out of it.
IN_FRAME_LOG_ODDS = np.array([
    2.83, -6.61, 0.50, -1.39, -0.50, 1.96, 0.61, 0.41, -2.35, -0.06,  # A C D E F G H I K L
    0.77, -0.26, 0.95, -1.32, 0.74, -0.30, 0.55, 1.46, -0.36, -1.70,  # M N P Q R S T V W Y
    -8.85, 0.0], dtype=np.float32)  # stop, unknown
FRAME_SHIFT_COST = 4.0  # log odds a change of frame costs (benchmarks/README.md, *Reads with sequencing errors*)


def _read_through(codons: _Codons, shift_cost: float = FRAME_SHIFT_COST) -> np.ndarray:
    """Which codons each barcode of a block reads as a read with sequencing errors: where its best
    frame meets a stop, the path through the three frames, one codon per three bases, whose
    amino acids look most like COI read in its own frame (``IN_FRAME_LOG_ODDS``, a change of frame
    costing ``shift_cost``): an insertion's or deletion's frame shift read through within a
    few codons of where it is, instead of the rest of the read translated in a wrong frame."""
    chosen = codons.best_frame()
    rows = np.flatnonzero(codons.frame_counts(codons.stops).min(axis=1) > 0)
    if not len(rows):
        return chosen
    rows = rows[np.argsort(-codons.lengths[rows], kind="stable")]  # longest first: a slot's reads are a prefix
    lengths, starts = codons.lengths[rows], codons.starts[rows]
    live = np.searchsorted(-(lengths // 3), -np.arange(lengths[0] // 3), side="left")  # reads with a codon there
    codes = np.append(np.where(codons.whole, codons.codes, UNKNOWN), np.full(2, UNKNOWN, np.uint8))  # at each base
    frames, score, back = np.arange(3), np.zeros((len(rows), 3)), []
    for slot, n in enumerate(live):  # Viterbi, each read up to its own last codon: staying in a frame wins ties
        now = score[:n]
        came = np.where(now >= now.max(axis=1, keepdims=True) - shift_cost, frames, now.argmax(axis=1)[:, None])
        score[:n] = (np.take_along_axis(now, came, axis=1) - shift_cost * (came != frames)
                     + IN_FRAME_LOG_ODDS[codes[starts[:n, None] + 3 * slot + frames]])
        back.append(came.astype(np.int8))
    chosen[np.isin(codons.owner, rows)] = False
    frame = score.argmax(axis=1)
    for slot in range(len(live) - 1, -1, -1):
        n, path = live[slot], 3 * slot + frame[: live[slot]]
        inside = path <= lengths[:n] - 3
        chosen[(starts[:n] + path)[inside]] = True
        frame[:n] = back[slot][np.arange(n), frame[:n]]
    return chosen


def peptide_profile(barcodes: Sequence[str], k: int = 2, reads: bool = False,
                    shift_cost: float = FRAME_SHIFT_COST, columns: int = 0) -> np.ndarray:
    """``[N, 20**k]`` (``[N, columns]`` with ``columns``) square-root scaled, L2-normalised counts of
    the overlapping amino-acid k-mers of each barcode's translation (in its frame with the fewest
    stops, the first such frame; with ``reads``, frame shifts read through as :func:`_read_through`
    reads them; k-mers with a stop or an unknown codon skipped; a barcode without one embeds as the
    zero vector). With ``columns``, each k-mer is counted in one of that many columns instead, by a
    fixed multiplicative hash (:func:`hashed_column`): a shorter profile whose cosines stay close to
    the whole one's."""
    width = columns or 20**k
    out = np.zeros((len(barcodes), width), dtype=np.float32)
    for first, codons in codon_blocks(barcodes, min(4096, max(16, (1 << 22) // width))):  # counts of a block: 32 MB
        chosen = _read_through(codons, shift_cost) if reads else codons.best_frame()
        codes, owner = codons.codes[chosen], codons.owner[chosen]
        windows = len(codes) - k + 1
        if windows <= 0:
            continue
        kmer = np.zeros(windows, dtype=np.int64)
        valid = owner[:windows] == owner[k - 1:]  # the k codons of one barcode
        for offset in range(k):
            window = codes[offset: offset + windows]
            valid &= window < STOP
            kmer = kmer * 20 + np.minimum(window, 19)
        index = owner[:windows] * width + (hashed_column(kmer, columns) if columns else kmer)
        block = len(codons.lengths)
        out[first : first + block] = np.bincount(index[valid], minlength=block * width).reshape(block, width)
    return unit_rows(np.sqrt(out, out=out))


def hashed_column(kmer: np.ndarray, columns: int) -> np.ndarray:
    """The column of ``columns`` each k-mer code is counted in: Knuth's multiplicative hash, fixed
    so that every clibd computes the same profile."""
    return (kmer * 2654435761 % (1 << 32)) % columns
