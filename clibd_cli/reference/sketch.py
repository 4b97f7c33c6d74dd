"""The reference's k-mer sketch: which strand a barcode is on, and whether it is like the reference at all.

A sketch is a few hundred centroids of the 5-mer profiles (:mod:`clibd_cli.embedding.kmer`) of
the reference's barcodes, all turned to one strand, and a ``floor``: the similarity to the
nearest centroid that all but 0.1 % of the reference's own barcodes reach with their own centroid
left out, as a barcode of a genus the reference lacks would find it (measured against each
barcode's own centroid, a reference of whole barcodes turned away 1.6 % of the real new species
of its orders: ``tests/test_orientation.py``). It is independent of
the model the index embeds with, so it works the same for ``--model kmer`` and trained models.

- Orientation (as ``vsearch --strand both`` or BLAST's two strands): a barcode is scored on both
  strands against the centroids and read on the better one. ``clibd index`` turns
  reverse-complemented references around before embedding them; ``clibd classify`` does the
  same to queries and reports the strand.
- Off-target guard: a query below the floor on both strands (random DNA, another gene, another
  phylum) is unlike every part of the reference; unless its embedding nearly matches a reference
  record's (cosine ≥ ``NEAR_IDENTICAL``: one of the reference's own odd barcodes), its
  neighbours say nothing, and it is left unassigned at every rank. A stretch of a barcode has
  fewer k-mers, so it lies farther from every centroid (at the whole-barcode floor, 26 % of
  200-base stretches of BOLD test barcodes would be turned away: ``benchmarks/sketch_floors.py``);
  the floor of a partial barcode is taken, by length, from stretches of ``PARTIAL_LENGTHS``
  bases cut from the reference's own barcodes (``short_floors``), interpolated between them.
- Barcodes that read as no protein: shuffled COI keeps the reference's base composition, and
  with it a k-mer similarity a new genus could have. It cannot be read as a protein, though: it
  meets ``STOPS`` or more stop codons in every reading frame, a frame shift counting as one
  (:func:`clibd_cli.embedding.translation.frame_stops`), where COI barcodes — sequencing errors'
  frame shifts included — meet almost none. Such a barcode is held to a higher floor,
  ``stop_floor``: the similarity all but ``STOP_FLOOR_QUANTILE`` (1 %) of the reference's own
  barcodes reach, held out as above (and ``short_stop_floors`` for stretches). Fitted only for a
  reference whose own barcodes read as protein (a reference of rRNA would not).
- Partial barcodes that meet a stop codon in every frame (:func:`frame_breaks`), as a stretch of
  another marker does and a read with sequencing errors may, are held to the translation
  sketch's floor for such reads (:mod:`clibd_cli.reference.protein_sketch`).
- Barcodes no more like the reference than their own bases shuffled: both floors rest on the
  reference's own spread, so a small or narrow reference (a few orders) sets them low, and a
  shuffled barcode that meets few stops, or a long one (many k-mers lift its similarity), may
  pass them. A whole barcode (``WHOLE_FROM`` bases or more) whose similarity is under what its
  base composition alone would give it with endless k-mers (:meth:`Sketch.composition_limit`;
  a shuffle never reaches it) is compared with ``SHUFFLES`` shuffles of its own bases, seeded by
  the barcode: unless it beats their mean by ``COMPOSITION_MARGIN``, its k-mers say nothing its
  composition does not, and it is off target. None of the 89,012 BOLD barcodes that the floors
  let through beats its shuffles by less than 0.06 (with the bundled sketch and one of 32 barcodes
  per order; one by under 0.07 with the latter), one read with 5 % sequencing errors in 2,000 with
  such small references; shuffled barcodes beat theirs by under 0.05 in 99 %, and other markers
  often by little (plastid *matK*, mitochondrial rRNA): ``benchmarks/README.md``, *The off-target
  guard of a small reference*.

Stored in the index directory as ``sketch.npy`` (float32 ``[C, 4**5]``), with ``k``, ``floor``,
``short_floors``, ``stop_floor``, ``short_stop_floors`` and the number of references turned
around in the manifest's ``sketch`` entry (``clibd_cli/reference/hnsw_index.py``); an index
built by an earlier clibd has no ``stop_floor``, and no such rule until it is rebuilt (the
shuffle rule needs nothing stored: every index has it).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clibd_cli.embedding.kmer import composition_profile, kmer_profile, reverse_complement_columns
from clibd_cli.embedding.translation import frame_breaks, frame_stops
from clibd_cli.io.sequences import reverse_complement, unambiguous_bases
from clibd_cli.reference.centroids import (FLOOR_QUANTILE, PARTIAL_LENGTHS, WHOLE_FROM, below, by_length,
                                          fit_clusters, held_out_similarity, length_floors, rounded)
from clibd_cli.reference.protein_sketch import (PROTEIN_COLUMNS, PROTEIN_FILE, ProteinSketch, fit_protein_sketch,
                                               stopped_note, unlike_protein_note)
from models.errors import ClibdError, counted

K = 5
FIT_SAMPLE = 20_000  # barcodes the centroids are fitted on (all are oriented)
STOP_FLOOR_QUANTILE = 0.01  # as FLOOR_QUANTILE, for a barcode that reads as no protein
STOPS = 3  # stop codons (a frame shift counting as one) from which a barcode reads as no protein
NEAR_IDENTICAL = 0.99  # a query this close to a reference record is on target whatever its k-mers
SHUFFLES = 2  # shuffles of a whole barcode its similarity is compared with
COMPOSITION_MARGIN = 0.06  # by how much a whole barcode must beat its shuffles' mean similarity
_BLOCK = 4096


@dataclass
class Sketch:
    """Centroids ``[C, 4**k]`` of forward-strand reference profiles and the off-target ``floor``."""

    centroids: np.ndarray
    floor: float
    k: int = K
    short_floors: list[float] | None = None  # floor of stretches of PARTIAL_LENGTHS bases; None: floor
    stop_floor: float | None = None  # floor of a barcode that reads as no protein; None: no such rule
    short_stop_floors: list[float] | None = None
    protein: ProteinSketch | None = None  # the translation sketch; None: no such rule

    @classmethod
    def from_manifest(cls, centroids: np.ndarray, entry: dict, protein: ProteinSketch | None = None) -> Sketch:
        """The sketch of an index or pack: its ``sketch.npy`` and manifest ``sketch`` entry (and the
        translation sketch, if it has one)."""
        return cls(centroids.astype(np.float32), entry["floor"], entry["k"], entry.get("short_floors"),
                   entry.get("stop_floor"), entry.get("short_stop_floors"), protein)

    def look(self, barcodes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(reverse [N] bool, similarity [N] float32)``: whether each barcode reads better
        reverse-complemented, and its similarity to the nearest centroid on that strand."""
        reverse = np.zeros(len(barcodes), dtype=bool)
        similarity = np.zeros(len(barcodes), dtype=np.float32)
        for start in range(0, len(barcodes), _BLOCK):
            profiles = kmer_profile(list(barcodes[start : start + _BLOCK]), self.k)
            forward = (profiles @ self.centroids.T).max(axis=1)
            backward = (profiles[:, reverse_complement_columns(self.k)] @ self.centroids.T).max(axis=1)
            reverse[start : start + len(profiles)] = backward > forward
            similarity[start : start + len(profiles)] = np.maximum(forward, backward)
        return reverse, similarity

    def floors(self, bases: Sequence[int]) -> np.ndarray:
        """The floor a barcode of so many unambiguous ``bases`` is held to: between the
        partial-barcode floors and the whole-barcode one."""
        return by_length(bases, self.short_floors, self.floor)

    def stop_floors(self, bases: Sequence[int]) -> np.ndarray:
        """The floor a barcode that reads as no protein is held to, by length as :meth:`floors`."""
        return by_length(bases, self.short_stop_floors, self.stop_floor)

    def off_target(self, similarity: np.ndarray, barcodes: Sequence[str]) -> np.ndarray:
        """Whether each barcode (on the reference's strand) is off target, given its similarity
        from :meth:`look` (:meth:`judge`)."""
        return np.array([why is not None for why in self.judge(similarity, barcodes)], dtype=bool)

    def judge(self, similarity: np.ndarray, barcodes: Sequence[str],
              bases: Sequence[int] | None = None) -> list[str | None]:
        """Why each barcode (on the reference's strand; ``bases``: its unambiguous bases) is off
        target, None if it is not: below the floor of its length, below the floor of barcodes
        that read as no protein and so reading, or (a whole barcode) no more like the reference
        than its own bases shuffled; with a translation sketch, a barcode whose protein is unlike
        the reference's is held to the floor of those that read as no protein, and a partial
        barcode that meets a stop codon in every frame to its protein floor for reads
        (:attr:`ProteinSketch.read_floors`)."""
        bases = [unambiguous_bases(b) for b in barcodes] if bases is None else bases
        floors = self.floors(bases)
        why: list[str | None] = [off_target_note(s, f) if s < f else None for s, f in zip(similarity, floors)]
        if self.stop_floor is not None:
            stop_floors = self.stop_floors(bases)
            doubtful = np.flatnonzero((similarity >= floors) & (similarity < stop_floors))
            for i, stops in zip(doubtful, frame_stops([barcodes[i] for i in doubtful])):
                if stops >= STOPS:
                    why[i] = no_protein_note(stops, similarity[i], stop_floors[i])
            if self.protein is not None:
                reading = [i for i in doubtful if why[i] is None]
                protein = self.protein.similarity([barcodes[i] for i in reading])
                for i, p, floor in zip(reading, protein, self.protein.floors([bases[i] for i in reading])):
                    if p < floor:
                        why[i] = unlike_protein_note(p, floor, similarity[i], stop_floors[i])
        if self.protein is not None and self.protein.read_floors is not None:
            partial = [i for i, w in enumerate(why) if w is None and bases[i] < WHOLE_FROM]
            stopped = [(i, s) for i, s in zip(partial, frame_breaks([barcodes[i] for i in partial])) if s > 0]
            protein = self.protein.similarity([barcodes[i] for i, _ in stopped])
            read_floors = self.protein.read_floor([bases[i] for i, _ in stopped])
            for (i, stops), p, floor in zip(stopped, protein, read_floors):
                if p < floor:
                    why[i] = stopped_note(int(stops), p, floor)
        whole = [i for i, w in enumerate(why) if w is None and bases[i] >= WHOLE_FROM]
        limits = self.composition_limit([barcodes[i] for i in whole])
        doubtful = [i for i, limit in zip(whole, limits) if similarity[i] < limit]
        for i, shuffled in zip(doubtful, self.shuffled_similarity([barcodes[i] for i in doubtful])):
            if similarity[i] - shuffled < COMPOSITION_MARGIN:
                why[i] = composition_note(similarity[i], shuffled)
        return why

    def composition_limit(self, barcodes: Sequence[str]) -> np.ndarray:
        """``[N]``: the similarity to the nearest centroid of the profile each barcode's base
        composition (on the strand it is given) would have with endless k-mers, each k-mer's share
        the product of its bases' shares: a shuffle's lies under it, its k-mers being sparser."""
        return (composition_profile(barcodes, self.k) @ self.centroids.T).max(axis=1)

    def shuffled_similarity(self, barcodes: Sequence[str]) -> np.ndarray:
        """``[N]``: the mean similarity (:meth:`look`) of ``SHUFFLES`` shuffles of each barcode's
        bases, seeded by the barcode itself (the same answer in any batch, any order)."""
        if not barcodes:
            return np.zeros(0, dtype=np.float32)
        shuffles = [_shuffled(b, copy) for copy in range(SHUFFLES) for b in barcodes]
        return self.look(shuffles)[1].reshape(SHUFFLES, len(barcodes)).mean(axis=0)

    def describe(self) -> str:
        """One line for ``clibd index info``: the sketch's size and whole-barcode floors."""
        parts = [f"k-mer sketch of {counted(len(self.centroids), 'centroid')} ({self.k}-mers), floor {self.floor:.3f}"]
        if self.stop_floor is not None:
            parts.append(f"{self.stop_floor:.3f} for barcodes that read as no protein")
        if self.protein is not None:
            parts.append(f"translation sketch of {counted(len(self.protein.centroids), 'centroid')}, "
                         f"floor {self.protein.floor:.3f}")
            if self.protein.read_floors is not None:
                parts.append(f"partial barcodes that meet a stop in every frame held to "
                             f"{self.protein.read_floors[0]:.3f}-{self.protein.read_floors[-1]:.3f} by length")
        else:
            parts.append("no translation sketch")
        return "; ".join(parts)

    def to_manifest(self, turned: int) -> dict:
        entry = {"file": SKETCH_FILE, "k": self.k, "floor": rounded(self.floor),
                 "short_floors": rounded(self.short_floors), "turned": turned}
        if self.stop_floor is not None:
            entry.update(stop_floor=rounded(self.stop_floor), short_stop_floors=rounded(self.short_stop_floors))
        if self.protein is not None:
            entry["protein"] = self.protein.to_manifest()
        return entry


SKETCH_FILE = "sketch.npy"


def _shuffled(barcode: str, copy: int) -> str:
    letters = barcode.encode("ascii", "replace")
    rng = np.random.default_rng(zlib.crc32(letters) + (copy << 32))
    return rng.permutation(np.frombuffer(letters, dtype=np.uint8)).tobytes().decode("ascii")


def fit_sketch(barcodes: Sequence[str], *, seed: int = 0) -> tuple[Sketch, np.ndarray]:
    """The sketch of a reference and which of its barcodes are reverse-complemented (``[N]`` bool).

    The strand is first decided against the mean profile (the reference's majority strand),
    then the centroids (``centroids.fit_clusters``) are fitted on up to ``FIT_SAMPLE`` barcodes so
    turned, and every barcode is oriented again against them. The floors are taken over held-out similarities: each barcode's
    to the nearest centroid other than its own (:func:`held_out_similarity`); the floor of barcodes
    that read as no protein, and the translation sketch, only if at most ``STOP_FLOOR_QUANTILE`` of
    the sample's own read so.
    """
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.permutation(len(barcodes))[:FIT_SAMPLE])
    sample = [barcodes[i] for i in picked]
    forward = kmer_profile(sample, K)
    backward = forward[:, reverse_complement_columns(K)]
    mean = forward.sum(axis=0)
    profiles = np.where((backward @ mean > forward @ mean)[:, None], backward, forward)
    del forward, backward
    clusters = fit_clusters(profiles, rng)
    sketch = Sketch(clusters.centres, 0.0)
    reverse, similarity = sketch.look(barcodes)
    similarity[picked] = held_out_similarity(clusters)
    oriented = [reverse_complement(b) if r else b for b, r in zip(sample, reverse[picked])]
    quantiles = [FLOOR_QUANTILE]
    if len(sample) and np.mean(frame_stops(oriented) >= STOPS) <= STOP_FLOOR_QUANTILE:
        quantiles.append(STOP_FLOOR_QUANTILE)
    floors = np.quantile(similarity, quantiles).tolist() if len(similarity) else [0.0] * len(quantiles)
    short = length_floors(clusters, oriented, lambda cut: kmer_profile(cut, K), rng, quantiles, floors)
    sketch.floor, sketch.short_floors = floors[0], short[0]
    if len(quantiles) > 1:
        sketch.stop_floor, sketch.short_stop_floors = floors[1], short[1]
        sketch.protein = fit_protein_sketch(oriented, rng)
    return sketch, reverse


def orient_references(barcodes: list[str], sketch: Sketch | None = None, *, seed: int = 0) -> tuple[Sketch, list[int]]:
    """Turn reverse-complemented reference barcodes around, in place; returns the sketch (``sketch``
    when appending to an index, else fitted on ``barcodes``) and the positions turned."""
    if sketch is None:
        sketch, reverse = fit_sketch(barcodes, seed=seed)
    else:
        reverse, _ = sketch.look(barcodes)
    turned = np.flatnonzero(reverse).tolist()
    for i in turned:
        barcodes[i] = reverse_complement(barcodes[i])
    return sketch, turned


def no_protein(sketch: Sketch, barcodes: Sequence[str]) -> list[int]:
    """Positions of the (oriented) reference barcodes that read as no protein, ``STOPS`` stop
    codons or more in every frame: pseudogenes (NUMTs), frame-shifting errors or another marker,
    which ``clibd index`` names; none for a reference that does not read as protein at all."""
    if sketch.stop_floor is None:
        return []
    return np.flatnonzero(frame_stops(barcodes) >= STOPS).tolist()


def orient_queries(sketch: Sketch | None, queries: Sequence, bases: Sequence[int]) -> list[tuple[int, str]]:
    """Read each query's barcode on the reference's strand (``query.strand`` "+" or "-"); returns
    ``(position, why)`` of the off-target queries (:meth:`Sketch.judge`; ``bases``: unambiguous,
    one count per query). Without a sketch (an index built before sketches, or of photos)
    barcodes are read as given and ``strand`` stays None."""
    if sketch is None or not queries:
        return []
    reverse, similarity = sketch.look([q.barcode for q in queries])
    for query, turn in zip(queries, reverse):
        query.strand = "-" if turn else "+"
        if turn:
            query.barcode = reverse_complement(query.barcode)
    why = sketch.judge(similarity, [q.barcode for q in queries], bases)
    return [(i, note) for i, note in enumerate(why) if note is not None]


def sketch_files(manifest: dict) -> list[str]:
    """The files of the sketch an index's or pack's ``manifest`` describes (none: no sketch)."""
    entry = _entry(manifest)
    return [SKETCH_FILE, *([PROTEIN_FILE] if isinstance(entry.get("protein"), dict) else [])] if entry else []


def holds_sketch(manifest: dict, digests: dict) -> bool:
    """Whether an index or pack holds a sketch: its ``manifest`` has a sketch entry or the checksums
    of its files (``digests``) list ``SKETCH_FILE``. Either is enough: :func:`load_sketch` then reads
    it, or refuses a sketch file the manifest does not describe and an entry that is not clibd's."""
    return manifest.get("sketch") is not None or SKETCH_FILE in digests


def save_sketch(sketch: Sketch, folder: Path) -> list[str]:
    """Write the sketch's arrays into ``folder`` (an index or pack being written); their names."""
    np.save(folder / SKETCH_FILE, sketch.centroids, allow_pickle=False)
    if sketch.protein is None:
        return [SKETCH_FILE]
    np.save(folder / PROTEIN_FILE, sketch.protein.centroids, allow_pickle=False)
    return [SKETCH_FILE, PROTEIN_FILE]


def load_sketch(folder: Path, manifest: dict, remedy: str) -> Sketch:
    """The sketch stored in ``folder`` (an index or a pack) as its ``manifest`` describes it, or a
    ClibdError ending in ``remedy`` (what the user can do) if the files are not ones clibd wrote."""
    entry = _entry(manifest)
    centroids = _load_centroids(folder / SKETCH_FILE, remedy)
    if centroids.ndim != 2 or not _floors_read(entry, "short_floors", "short_stop_floors") \
            or type(entry.get("k")) is not int or centroids.shape[1] != 4 ** entry["k"]:
        raise ClibdError(f"{folder / SKETCH_FILE}: expected [C, 4**k] k-mer centroids and a manifest 'sketch' entry "
                         f"with k, floor and floors by length, found shape {list(centroids.shape)} and {entry}; {remedy}")
    protein = entry.get("protein")
    if protein is None:
        return Sketch.from_manifest(centroids, entry)
    peptides = _load_centroids(folder / PROTEIN_FILE, remedy)
    if not isinstance(protein, dict) or not _floors_read(protein, "short_floors", "read_floors") or peptides.ndim != 2 \
            or peptides.shape[1] != PROTEIN_COLUMNS:
        raise ClibdError(f"{folder / PROTEIN_FILE}: expected [C, {PROTEIN_COLUMNS}] protein centroids and a floor and "
                         f"floors by length in the manifest's 'sketch' 'protein' entry, found shape "
                         f"{list(peptides.shape)} and {protein}; {remedy}")
    return Sketch.from_manifest(centroids, entry, ProteinSketch.from_manifest(peptides, protein))


def _floors_read(entry: dict, *shorts: str) -> bool:
    """Whether a manifest's sketch ``entry`` holds a float ``floor`` and each of its floors by
    length ``shorts`` is None or one float per ``PARTIAL_LENGTHS`` (``by_length`` needs as many)."""
    return isinstance(entry.get("floor"), float) and all(
        entry.get(name) is None or (isinstance(entry[name], list) and len(entry[name]) == len(PARTIAL_LENGTHS)
                                    and all(isinstance(f, float) for f in entry[name])) for name in shorts)


def _entry(manifest: dict) -> dict:
    entry = manifest.get("sketch")
    return entry if isinstance(entry, dict) else {}


def _load_centroids(path: Path, remedy: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ClibdError(f"{path}: not a numpy array file clibd wrote ({exc}); {remedy}") from None


def off_target_note(similarity: float, floor: float) -> str:
    """Why a barcode under the floor of its length is off target (:meth:`Sketch.judge`)."""
    return (f"unlike every reference barcode (k-mer similarity {below(similarity, floor)}, the "
            "reference's own floor for its length) and no near-identical reference: not this marker or not "
            "this group of organisms; unassigned at every rank")


def composition_note(similarity: float, shuffled: float) -> str:
    """Why a whole barcode no more like the reference than its own shuffles is off target
    (:meth:`Sketch.judge`)."""
    return (f"no more like the reference's barcodes than its own bases shuffled (k-mer similarity "
            f"{similarity:.2f}, shuffled {shuffled:.2f}) and no near-identical reference: random, "
            "low-complexity or not this marker; unassigned at every rank")


def no_protein_note(stops: int, similarity: float, floor: float) -> str:
    """Why a barcode that reads as no protein, under the floor of such barcodes, is off target
    (:meth:`Sketch.judge`)."""
    return (f"reads as no protein ({counted(stops, 'stop codon')} in every reading frame, a frame shift "
            "counting as one) "
            f"and far from the reference's barcodes (k-mer similarity {below(similarity, floor)}, their floor "
            "for such barcodes) with no near-identical reference: shuffled, chimeric, a pseudogene or not this "
            "marker; unassigned at every rank")
