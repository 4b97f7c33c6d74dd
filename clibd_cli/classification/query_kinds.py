"""Confidence calibrations of a reference index, one per kind of query it can answer.

Every index is calibrated for queries of its own modality. A barcode index built with photos of
its reference specimens (``clibd index --images``) is also calibrated for photo queries
(``image``: a photo searched among the barcodes) and for specimens with both (``image+dna``:
the normalised sum of the two embeddings), with the photos as pseudo-queries standing in for
their records.

A barcode index is also calibrated for partial barcodes (``dna<500``: under ``SHORT_BELOW``
unambiguous bases, as mini-barcodes, metabarcoding amplicons and failed reads are): a stretch
of a barcode lies farther from its species' whole barcodes than a whole barcode does, the more
so the shorter it is, so the whole-barcode calibration would call most of them new species.
Random stretches of ``MIN_BASES`` to 499 bases of reference records (and of the held-out
queries, with ``--calibrate-on``) stand in for them, and the maps read each query's length too
(``calibration.py``).

A barcode index of a protein-coding marker is also calibrated for reads with sequencing errors
(``dna~``: a whole barcode whose every forward reading frame meets a stop codon, as an insertion
or deletion leaves a read; ``translation.frame_breaks``): a read lies farther from its species'
records than a clean barcode does, so the clean barcodes' calibration would call many of them new
species. Copies of reference records with simulated errors (``read_errors.py``) are its
pseudo-queries; with ``--calibrate-on``, the held-out queries' copies refit it, and the clean
held-out queries the other kinds as without them. Reads are read as whole barcodes are; a model
that translates barcodes (``--model kmer-aa``) reads a read's frame shifts through
(``Embedder.reads``), instead of translating the rest of the read in a wrong frame.

A partial barcode read with a frame break (``dna<500~``, a raw read of a mini-barcode or an
amplicon) lies farther still: on the clean stretches' calibration the bundled reference named the
species of 39 % of known species' 313-base stretches with 1 % errors, 0.2 % with 3 %, though its
best label was right for 99 % and 98 % (benchmarks/README.md, *Partial barcodes read with errors*).
The reference records' partial-barcode pseudo-queries copied with errors are its pseudo-queries,
every copy that stays partial, with a frame break or not (``read_errors.partial_read_queries``),
refitted on the held-out queries' stretches copied so: it is fitted only with ``--calibrate-on`` (on
pseudo-queries alone it gave a species to 13–18 % of new species' partial reads). ``clibd classify``
sends a partial barcode there when it meets a stop, and every partial barcode of a run of reads
(:func:`read_run`: most reads with errors meet none); an index built before session 25 fitted it on
the copies with a frame break only. Its maps read the run's error rate per base too, told from the
stops of its first partial barcodes (``error_rate.py``; copies at ``read_errors.PARTIAL_RATES``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from clibd_cli.classification.calibration import Calibration
from clibd_cli.classification.contained import MAX_RECORDS as CONTAINED_RECORDS, READ_SLACK
from clibd_cli.classification.error_rate import fit_stop_model
from clibd_cli.classification.fitting import fit_calibration, fit_calibration_held_out, reference_gaps
from clibd_cli.classification.taxonomy import ReferenceTaxonomy
from clibd_cli.defaults import CALIBRATION
from clibd_cli.embedding.embedder import Embedder, batched
from clibd_cli.embedding.kmer import kmer_profile
from clibd_cli.embedding.translation import frame_breaks
from clibd_cli.embedding.unit import unit_rows
from clibd_cli.io.images import (PhotoIds, find_images, load_image, load_photos, warn_photo_pairs,
                                 warn_unnamed_photos)
from clibd_cli.io.sequences import MIN_BASES, random_stretch, unambiguous_bases
from clibd_cli.reference.holdings import K as HOLDINGS_K
from models.errors import ClibdError, counted

log = logging.getLogger("clibd")
MAX_PHOTOS = 3000  # pseudo-queries per scenario in fit_calibration: more photos add nothing
FEW_PHOTOS = 50
SHORT_KIND = "dna<500"  # the kind of a barcode alone with fewer than SHORT_BELOW unambiguous bases
SHORT_BELOW = 500
MAX_SHORT = 6000  # reference records cut into partial-barcode pseudo-queries
FEW_SHORT = 500  # appended records below which the partial-barcode calibration is kept as it was
READ_KIND = "dna~"  # the kind of a whole barcode alone read with a frame break (a read with errors)
SHORT_READ_KIND = "dna<500~"  # the kind of a partial barcode alone read with a frame break, or in a run of reads
READ_RUN_SHARE = 0.05  # partial (or whole) barcodes meeting a stop from which a run is taken for reads (clean
READ_RUN_FEWEST = 10  # partial ones: 0.01 %; with 1 % errors at 150 bases, 31 %: read_run), at least so many
FEW_READS = 200  # held-out reads with a frame break (and clean queries) needed to calibrate READ_KIND
NO_NEW_TAXON = ("no genus of the reference has two species, no family two genera, no order two families: "
                "none can be left out to stand for a new one")


def query_kind(modality: str, bases: int | None, kinds: Sequence[str], breaks: int = 0, reads: bool = False) -> str:
    """The calibration a query reads among ``kinds``: ``dna<500`` for a partial barcode alone (of
    fewer than ``SHORT_BELOW`` unambiguous ``bases``, where the index has that calibration),
    ``dna<500~`` for one whose best frame meets ``breaks`` > 0 stops or that comes in a run of
    ``reads`` (:func:`read_run`: most reads with errors meet no stop) and ``dna~`` for a whole one
    that meets a stop (where the index has those calibrations), else the query's modality (``dna``,
    ``image``, ``image+dna``)."""
    if modality == "dna" and SHORT_READ_KIND in kinds and bases < SHORT_BELOW and (breaks > 0 or reads):
        return SHORT_READ_KIND
    if modality == "dna" and SHORT_KIND in kinds and bases < SHORT_BELOW:
        return SHORT_KIND
    if modality == "dna" and READ_KIND in kinds and breaks > 0:
        return READ_KIND
    return modality


def read_run(breaks: Sequence[int]) -> bool:
    """Whether a run whose partial (or whole) barcodes' best frames meet ``breaks`` stops each is of
    raw reads with sequencing errors: ``READ_RUN_SHARE`` of them, and ``READ_RUN_FEWEST`` or more, meet
    one. A read with errors meets a stop only where an insertion or deletion shifts the frame (31 %
    of BOLD's 150-base stretches with 1 % errors; 0.01 % of clean ones; of whole barcodes, 0.12 %
    of clean ones); the others read as clean stretches with the clean ones' confidences, by which a
    known species' read looks like a new species' (benchmarks/README.md, *A run of reads*)."""
    broken = int((np.asarray(breaks) > 0).sum())
    return broken >= READ_RUN_FEWEST and broken >= READ_RUN_SHARE * len(breaks)


def kind_towers(kind: str) -> list[str]:
    """The encoders queries of ``kind`` need."""
    return kind.split("<")[0].rstrip("~").split("+")


def read_queries(barcodes: Sequence[str]) -> np.ndarray:
    """``[N]`` bool: which ``barcodes`` would be ``READ_KIND`` queries (whole, with a frame break)."""
    return (frame_breaks(barcodes) > 0) & (np.array([unambiguous_bases(b) for b in barcodes]) >= SHORT_BELOW)


def partial_barcodes(barcodes: Sequence[str], seed: int) -> list[str]:
    """Each barcode cut to a seeded random stretch of ``MIN_BASES`` to ``SHORT_BELOW`` - 1 bases."""
    rng = np.random.default_rng([seed, SHORT_BELOW])
    return [random_stretch(b, rng, MIN_BASES, SHORT_BELOW - 1) for b in barcodes]


def short_pseudo_queries(barcodes: Sequence[str], rows: Sequence[int], seed: int) -> tuple[list[int], list[str]]:
    """Up to ``MAX_SHORT`` of the reference ``rows`` (seeded) and stretches cut from their ``barcodes``."""
    picked = np.arange(len(rows))
    if len(rows) > MAX_SHORT:
        picked = np.sort(np.random.default_rng(seed).choice(len(rows), MAX_SHORT, replace=False))
    return [rows[i] for i in picked], partial_barcodes([barcodes[i] for i in picked], seed)


@dataclass
class PartialQueries:
    """Partial-barcode queries for the ``dna<500`` calibration (:func:`short_queries`)."""

    rows: np.ndarray  # reference records cut
    vectors: np.ndarray  # their stretches embedded
    bases: np.ndarray  # the stretches' unambiguous bases
    held_out: tuple[np.ndarray, np.ndarray] | None  # stretches of the held-out queries: vectors, bases
    stretches: list[str] | None = None  # the stretches (containment read from holdings needs their 5-mers)
    held_stretches: list[str] | None = None
    rates: np.ndarray | None = None  # reads: the errors per base each stretch was copied with
    held_rates: np.ndarray | None = None

    def profiles(self, held_out: bool = False) -> np.ndarray:
        """The square-root 5-mer profiles of the stretches (or of the held-out queries')."""
        return kmer_profile(self.held_stretches if held_out else self.stretches, HOLDINGS_K)


def short_queries(embedder: Embedder, plan: tuple[list[int], list[str]], held_out: Sequence[str] | None,
                  seed: int, reads: bool = False) -> PartialQueries:
    """The reference rows and stretches of ``plan`` (:func:`short_pseudo_queries`) embedded (as reads
    with errors are, ``Embedder.reads``, if ``reads``), and stretches of the ``held_out`` queries'
    barcodes (if given)."""
    rows, stretches = plan
    held = cut = None
    if held_out is not None:
        cut = partial_barcodes(held_out, seed)
        held = (embedder.barcodes(cut), np.array([unambiguous_bases(b) for b in cut]))
    embed = embedder.reads if reads else embedder.barcodes
    return PartialQueries(np.asarray(rows, dtype=np.int64), embed(list(stretches)),
                          np.array([unambiguous_bases(b) for b in stretches]), held, list(stretches), cut)


def calibrate(index, embedder: Embedder | None, images: Sequence[str], first: int = 0, *,
              k: int = CALIBRATION.neighbours, prior_unseen: float | None = None, seed: int = 0,
              held_out: tuple[np.ndarray, dict] | None = None, held_reads: tuple | None = None,
              short: PartialQueries | None = None, pseudo_reads: tuple | None = None,
              short_reads: tuple[PartialQueries, dict | None] | None = None,
              rank_parts: dict[str, list[int]] | None = None,
              partial_part: list[int] | None = None, partial_containment: Sequence[str] = (),
              sisters: int = 0, species_weight: float = 1.0, gap_ranks: Sequence[str] = (),
              threads: int = 1) -> dict[str, dict]:
    """Calibrations (JSON-able) by query kind for ``index``; photos under ``images`` are matched
    to the records from row ``first`` on (the ones just added). Kinds that cannot be refitted
    (an append without photos) are kept from ``index.calibration``. With ``held_out`` (query
    vectors and their labels by rank), the confidences for queries of the index's own modality
    are refitted on those queries, reading the reference's barcode gaps too (``barcode_gap.py``;
    with pseudo-queries alone they made the confidences of real new species worse:
    benchmarks/README.md). ``prior_unseen`` fixes the share of new species the confidences
    assume (None: estimated per run by clibd classify). ``embedder`` is needed only with ``images``.
    ``pseudo_reads`` (reference rows, the vectors of their copies with errors, the rate of each and
    the stop model of them all, ``read_errors.read_pseudo_queries``: where there is one, the maps read
    the run's error rate) add the ``dna~`` calibration where there are ``FEW_READS``;
    ``held_reads`` (copies of the held-out queries with errors, as ``held_out``, and their rates:
    ``read_errors.held_out_reads``) refit it where there are ``FEW_READS``; ``short_reads`` (partial
    barcodes with errors that read with a frame break, and the labels of the held-out ones among
    them, ``read_errors.partial_read_queries``) add the ``dna<500~`` calibration likewise.
    ``rank_parts``: the ranks whole barcodes answer from a part of the vectors, ``partial_part``:
    the part partial barcodes answer every rank from, ``partial_containment``: the ranks partial
    barcodes answer by k-mer containment (over ``partial_part``, else the whole vector; by cosine
    a stretch of a known species lies nearly as far from its species' whole barcodes as a new
    species' stretch from its congeners', but it is contained in them whole), ``sisters`` and
    ``species_weight``: how many nearest species the whole barcodes' new-species pseudo-queries
    also leave out and how they are drawn (a model's ``calibration_hints``, e.g. ``--model
    kmer-aa``; ``fit_calibration``), ``gap_ranks``: the ranks whose maps for the index's own modality read
    the barcode gap without held-out queries (``fit_calibration``); ``threads``: CPU threads the pseudo-queries' search may use."""

    def fit(query_vectors=None, barcode_gaps: bool = False, rows=None, bases=None, parts=None,
            harder: int = 0, weight: float = 1.0, gapped: Sequence[str] = ()) -> dict:
        return fit_calibration(index, query_vectors=query_vectors, query_rows=rows, query_bases=bases, k=k,
                               prior_unseen=prior_unseen, seed=seed, barcode_gaps=barcode_gaps, gap_ranks=gapped,
                               rank_parts=parts, sisters=harder, species_weight=weight, threads=threads).to_json()

    modality = index.manifest["modality"]
    calibration = {modality: fit(barcode_gaps=held_out is not None, parts=rank_parts, harder=sisters,
                                 weight=species_weight, gapped=gap_ranks)}
    if held_out is None and not calibration[modality]["fitted_on"]["pseudo_queries"][0]:
        log.warning("no species of the reference has two records or more: nothing to fit confidences on, "
                    "so every query will be unassigned (add records, or give --calibrate-on)")
    elif held_out is None and Calibration.from_json(calibration[modality]).seen_only:
        log.warning("the confidences cannot tell a new species from a known one: %s", NO_NEW_TAXON)
    before = (index.calibration or {}).get(modality)
    if held_out is None and before and Calibration.from_json(before).held_out:
        log.warning("the index was calibrated on held-out queries; now on its own records (give "
                    "--calibrate-on again to keep the held-out calibration)")
    if short is not None:
        calibration[SHORT_KIND] = partial_calibration(index, short, held_out and held_out[1], k=k,
                                                      prior_unseen=prior_unseen, seed=seed, partial_part=partial_part,
                                                      partial_containment=partial_containment, threads=threads)
    if short_reads is not None and len(short_reads[0].rows) < FEW_READS:
        log.info("%s cut and copied with sequencing errors (staying partial), fewer than the %d "
                 "needed: no dna<500~ calibration", counted(len(short_reads[0].rows), "reference record"), FEW_READS)
    elif short_reads is not None:
        calibration[SHORT_READ_KIND] = partial_calibration(index, *short_reads, k=k, prior_unseen=prior_unseen,
                                                           seed=seed, partial_part=partial_part,
                                                           partial_containment=partial_containment, threads=threads,
                                                           reads=True)
    if pseudo_reads is not None and len(pseudo_reads[0]) < FEW_READS:
        log.info("%s copied as reads with a frame break, fewer than the %d needed: no dna~ calibration",
                 counted(len(pseudo_reads[0]), "reference record"), FEW_READS)
    elif pseudo_reads is not None:
        calibration[READ_KIND] = reads_calibration(index, pseudo_reads, k=k, prior_unseen=prior_unseen, seed=seed,
                                                   barcode_gaps=held_out is not None, rank_parts=rank_parts,
                                                   sisters=sisters, species_weight=species_weight, threads=threads)
    if held_out is not None:
        calibration[modality] = fit_calibration_held_out(index, held_out[0], held_out[1], Calibration.from_json(
            calibration[modality]), prior_unseen=prior_unseen).to_json()
    if held_reads is not None:
        refit_reads(calibration, index, held_reads, prior_unseen)
    photos = _photo_vectors(index, embedder, images, first, seed) if images else None
    if photos is not None:
        has_photo = np.abs(photos).sum(axis=1, keepdims=True) > 0
        fused = photos + np.where(has_photo, index.vectors(), 0.0)
        unit_rows(fused)
        calibration["image"] = fit(photos)
        calibration["image+dna"] = fit(fused.astype(np.float32))
    kept = {kind: _regapped(index, data) for kind, data in (index.calibration or {}).items() if kind not in calibration}
    for kind in kept:
        log.warning("the %s calibration is kept from before (%s)", kind, f"append {FEW_SHORT} records or more "
                    "at once to refit it" if kind in (SHORT_KIND, READ_KIND, SHORT_READ_KIND)
                    else "give --images to refit it")
    return {**calibration, **kept}


def partial_calibration(index, short: PartialQueries, held_out_labels: dict | None, *, k: int,
                        prior_unseen: float | None, seed: int, partial_part: list[int] | None = None,
                        partial_containment: Sequence[str] = (), threads: int = 1, reads: bool = False) -> dict:
    """The ``dna<500`` calibration (JSON-able) of ``index`` fitted on ``short``'s stretches of its
    records, then refitted on the held-out queries' stretches (``short.held_out``, labelled by
    ``held_out_labels``) if given, reading their barcode gaps. Partial barcodes answer every rank
    from ``partial_part`` (None: the whole vector) and the ranks in ``partial_containment`` by
    k-mer containment: of ``partial_part``'s k-mer profiles, or, where the index keeps its
    records' 5-mers (a learned model's, ``reference/holdings.py``), the finest rank from those; either
    way a stretch a record holds whole is searched by its 5-mers (``contained.py``; references of up
    to ``contained.MAX_RECORDS``). Partial reads with errors (``reads``) copied at several rates
    (``short.rates``) read the run's error rate too, told by the stop model fitted on them all
    (``error_rate.py``), and, in an index of a learned model (whose records' 5-mers are its holdings), are
    held by a record missing up to ``contained.READ_SLACK`` of their 5-mers (in a ``--model kmer-aa`` index
    that named fewer new species' genera: benchmarks/README.md, *Partial reads held by a record missing a
    few 5-mers*)."""
    source = "vectors"
    if index.holdings is not None:
        partial_containment, source = [index.ranks[-1]], "holdings"
    parts = {rank: partial_part for rank in index.ranks} if partial_part else {}
    parts.update({rank: parts.get(rank, [0, index.manifest["dim"]]) for rank in partial_containment})
    held = held_out_labels is not None and short.held_out is not None
    profiles = source == "holdings"
    stop_model, searched = None, bool(partial_containment) and len(index) <= CONTAINED_RECORDS
    if short.rates is not None:  # reads copied at several rates: the stops of every copy tell them apart
        copies = [(short.rates, short.bases, short.stretches)]
        copies += [(short.held_rates, short.held_out[1], short.held_stretches)] if held else []
        stop_model = fit_stop_model(np.concatenate([c[0] for c in copies]), np.concatenate([c[1] for c in copies]),
                                    frame_breaks([s for c in copies for s in c[2]]))
    fitted = fit_calibration(index, query_vectors=short.vectors, query_rows=short.rows, query_bases=short.bases,
                             k=k, prior_unseen=prior_unseen, seed=seed, barcode_gaps=held_out_labels is not None,
                             rank_parts=parts, containment=partial_containment, containment_source=source,
                             query_profiles=short.profiles() if profiles else None, threads=threads,
                             contained_search=searched, contained_slack=READ_SLACK if searched and reads and profiles else 0,
                             query_rates=short.rates, stop_model=stop_model)
    if held:
        fitted = fit_calibration_held_out(index, short.held_out[0], held_out_labels, fitted,
                                          prior_unseen=prior_unseen, query_bases=short.held_out[1],
                                          query_profiles=short.profiles(held_out=True) if profiles else None,
                                          query_rates=short.held_rates)
    fitted.read_run = reads  # short: every partial copy with errors (read_errors.partial_read_queries)
    return fitted.to_json()


def reads_calibration(index, pseudo_reads: tuple, **fitting) -> dict:
    """The ``dna~`` calibration (JSON-able) of ``index`` fitted on ``pseudo_reads`` (rows, vectors, rates
    and stop model of copies of its records with errors, ``read_errors.read_pseudo_queries``: with a stop
    model, the maps read the run's error rate); ``fitting``: ``fit_calibration``'s other arguments."""
    rows, vectors, rates, stop_model = pseudo_reads
    return fit_calibration(index, query_vectors=vectors, query_rows=rows, query_rates=stop_model and rates,
                           stop_model=stop_model, **fitting).to_json()


def refit_reads(calibration: dict[str, dict], index, held_reads: tuple[np.ndarray, dict, Sequence[float]],
               prior_unseen: float | None) -> None:
    """Refit (or fit) ``calibration[READ_KIND]`` on ``held_reads`` (vectors, labels by rank, rates: of copies
    with errors of held-out queries, ``read_errors.held_out_reads``) where there are ``FEW_READS``, with
    the decision rule of the reads' calibration (just fitted, or the index's before an append), else
    of the clean barcodes'."""
    vectors, labels, rates = held_reads
    if len(vectors) < FEW_READS:
        log.info("%s with a frame break, fewer than the %d needed to refit the dna~ calibration on them",
                 counted(len(vectors), "held-out read"), FEW_READS)
        return
    before = calibration.get(READ_KIND) or _regapped(index, (index.calibration or {}).get(READ_KIND))
    decisions = Calibration.from_json(before or calibration[index.manifest["modality"]])
    try:
        calibration[READ_KIND] = fit_calibration_held_out(index, vectors, labels, decisions, prior_unseen=prior_unseen,
                                                          query_rates=rates if decisions.by_rate else None).to_json()
    except ClibdError as exc:
        log.warning("reads with sequencing errors not calibrated on the held-out queries (%s): among the %s "
                    "held-out reads with a frame break, %s", "their calibration stays the reference's own reads'"
                    if READ_KIND in calibration else "no calibration for them", f"{len(vectors):,}",
                    str(exc).removeprefix("the held-out queries "))
        return
    log.info("reads with a frame break (dna~) calibrated on %s of the held-out queries",
             counted(len(vectors), "copy", "copies"))


def _regapped(index, data: dict | None) -> dict | None:
    """A calibration kept through an append, its barcode gaps (if it reads them) measured again on
    ``index``: they are stored by label, and the appended records may add labels or move them."""
    if not data or not data.get("gaps"):
        return data
    kept = Calibration.from_json(data)
    gaps = reference_gaps(index, ReferenceTaxonomy.from_labels(index.ids, index.labels), kept.rank_parts,
                          kept.containment, kept.containment_source)
    return {**data, "gaps": {rank: gap.to_json() for rank, gap in gaps.items()}}


def _photo_vectors(index, embedder: Embedder, images: Sequence[str], first: int,
                   seed: int) -> np.ndarray | None:
    """``[records, D]`` photo embeddings, zero for records without a (sampled, readable) photo."""
    paths = find_images(images)
    photos = PhotoIds(paths)
    rows = [i for i in range(first, len(index)) if photos.match(index.ids[i])]
    warn_photo_pairs(photos, (index.ids[i] for i in rows), "the others not used to calibrate")
    warn_unnamed_photos(paths, set(index.ids), "not used to calibrate, named after no reference record")
    if not rows:
        log.warning("no photo under %s is named after a reference record (ID.jpg); the index is not "
                    "calibrated for photos", ", ".join(images))
        return None
    if len(rows) > MAX_PHOTOS:
        rows = sorted(np.random.default_rng(seed).choice(rows, MAX_PHOTOS, replace=False).tolist())
    vectors = np.zeros((len(index), index.manifest["dim"]), dtype=np.float32)
    used = 0
    for chunk in batched(rows, embedder.batch_size):
        kept, pixels = load_photos(((row, partial(load_image, photos[index.ids[row]])) for row in chunk),
                                   embedder.pixels)
        if kept:
            vectors[kept] = embedder.images(pixels)
            used += len(kept)
    if used == 0:
        log.warning("none of the %s named after a reference record could be read; the index is not "
                    "calibrated for photos", counted(len(rows), "photo"))
        return None
    if used < FEW_PHOTOS:
        log.warning("only %s: the photo calibration is rough", counted(used, "reference photo"))
    log.info("calibrating for photo queries with %s", counted(used, "reference photo"))
    return vectors
