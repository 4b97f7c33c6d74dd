"""The reference's translation sketch: whether a barcode's protein is like the reference's.

Another protein-coding gene can share enough 5-mers with COI to pass the k-mer sketch's floor
(:mod:`clibd_cli.reference.sketch`), and it reads as a protein, so the stop-codon rule lets it
through: plant plastid *matK* did, and the bundled model named an insect order for it with high
confidence. Its protein is unlike any COI's, though. The translation sketch holds centroids
(:mod:`clibd_cli.reference.centroids`) of the amino-acid pair profiles of the reference's
barcodes (:func:`clibd_cli.embedding.translation.peptide_profile`, frame shifts read through as
reads with errors are read) and a floor by length: the similarity to the nearest centroid that all
but ``FLOOR_QUANTILE`` (0.1 %) of the reference's own barcodes (and stretches of them) reach with
their own centroid left out. A barcode under it is held to the k-mer sketch's higher floor for
barcodes that read as no protein (:meth:`Sketch.judge`); the measurements are in
``benchmarks/README.md``, *Other markers*.

A stretch of mitochondrial rRNA can share enough 5-mers with COI to pass every k-mer floor, and
the bundled model named an insect order for one in ten 150-base stretches of it. Each of its
three reading frames meets a stop codon, where one frame of a clean stretch of a COI barcode
meets none; a read with sequencing errors meets them too (an insertion or deletion shifts the
frame), but read through its shifts its protein stays COI's. So a partial barcode (under
``WHOLE_FROM`` bases) that meets a stop in every frame is held to ``read_floors``: by length, the
similarity that all but ``FLOOR_QUANTILE`` of the reference's own stretches read with
``READ_ERRORS`` errors per base, and meeting a stop in every frame, reach with their own centroid
left out.

Fitted with the k-mer sketch, only for a reference whose own barcodes read as protein; stored in
the index directory (and a pack) as ``protein_sketch.npy`` (float32 ``[C, 20**2]``), with its
``floor``, ``short_floors`` and ``read_floors`` in the manifest's ``sketch`` entry under ``protein``.
An index built by an earlier clibd has none (or no ``read_floors``), and no such rule until it is
rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clibd_cli.embedding.translation import peptide_profile
from clibd_cli.reference.centroids import (FLOOR_QUANTILE, below, by_length, fit_clusters, held_out_similarity,
                                          length_floors, rounded)

PROTEIN_FILE = "protein_sketch.npy"
READ_ERRORS = 0.03  # errors per base of the stretches the read floors are fitted on (benchmarks/README.md)
K = 2  # amino acids per k-mer of the profile
PROTEIN_COLUMNS = 20**K


def protein_profile(barcodes: Sequence[str]) -> np.ndarray:
    """``[N, 20**K]`` unit profiles of the barcodes' translations, frame shifts read through."""
    return peptide_profile(list(barcodes), K, reads=True)


@dataclass
class ProteinSketch:
    """Centroids ``[C, 20**K]`` of the reference's protein profiles and the floors under which a
    barcode's protein is unlike the reference's."""

    centroids: np.ndarray
    floor: float
    short_floors: list[float] | None = None  # of stretches of centroids.PARTIAL_LENGTHS bases
    read_floors: list[float] | None = None  # of such stretches that meet a stop in every frame; None: no such rule

    def similarity(self, barcodes: Sequence[str]) -> np.ndarray:
        """``[N]``: each barcode's (on the reference's strand) to the nearest centroid."""
        if not len(barcodes):
            return np.zeros(0, dtype=np.float32)
        return (protein_profile(barcodes) @ self.centroids.T).max(axis=1)

    def floors(self, bases: Sequence[int]) -> np.ndarray:
        """The floor of barcodes of so many unambiguous ``bases``."""
        return by_length(bases, self.short_floors, self.floor)

    def read_floor(self, bases: Sequence[int]) -> np.ndarray:
        """The floor of partial barcodes of so many unambiguous ``bases`` that meet a stop codon in
        every frame (where there are ``read_floors``)."""
        return by_length(bases, self.read_floors, self.read_floors[-1])

    def to_manifest(self) -> dict:
        entry = {"file": PROTEIN_FILE, "floor": rounded(self.floor), "short_floors": rounded(self.short_floors)}
        if self.read_floors is not None:
            entry["read_floors"] = rounded(self.read_floors)
        return entry

    @classmethod
    def from_manifest(cls, centroids: np.ndarray, entry: dict) -> ProteinSketch:
        return cls(centroids.astype(np.float32), entry["floor"], entry.get("short_floors"), entry.get("read_floors"))


def fit_protein_sketch(barcodes: Sequence[str], rng: np.random.Generator) -> ProteinSketch:
    """The translation sketch of reference ``barcodes`` (a sample, on the reference's strand)."""
    clusters = fit_clusters(protein_profile(barcodes), rng)
    similarity = held_out_similarity(clusters)
    floor = float(np.quantile(similarity, FLOOR_QUANTILE))
    short = length_floors(clusters, barcodes, protein_profile, rng, [FLOOR_QUANTILE], [floor])[0]
    reads = length_floors(clusters, barcodes, protein_profile, rng, [FLOOR_QUANTILE], [1.0], READ_ERRORS)[0]
    return ProteinSketch(clusters.centres, floor, short, reads)


def unlike_protein_note(protein: float, protein_floor: float, similarity: float, floor: float) -> str:
    """Why a barcode whose protein is unlike the reference's, held to the higher k-mer floor and
    under it, is off target (``clibd_cli/reference/sketch.py``, ``Sketch.judge``)."""
    return (f"translates to a protein unlike the reference's (similarity {below(protein, protein_floor)}, "
            f"their floor for its length) and far from the reference's barcodes (k-mer similarity "
            f"{below(similarity, floor)}, their floor for barcodes that read as no protein) with no "
            "near-identical reference: another protein-coding gene or not this group of organisms; "
            "unassigned at every rank")


def stopped_note(stops: int, protein: float, floor: float) -> str:
    """Why a partial barcode that meets a stop in every frame, its protein under the floor of reads,
    is off target (``clibd_cli/reference/sketch.py``, ``Sketch.judge``)."""
    return (f"a partial barcode whose every reading frame meets a stop codon ({stops} in the one with the fewest) "
            f"and whose protein, read through its frame shifts, is unlike the reference's "
            f"(similarity {below(protein, floor)}, the floor of reads of its length with sequencing errors) with "
            "no near-identical reference: another marker (such as an rRNA) or not this group of organisms; "
            "unassigned at every rank")
