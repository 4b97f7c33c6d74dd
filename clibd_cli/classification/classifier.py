"""The library behind ``clibd classify``: a model and a reference index, specimens in, lineages out.

Query vectors are searched in the index and the neighbours turned into per-rank labels with the confidence
calibration stored in the index for that kind of query (``dna``, ``dna<500`` for partial barcodes, ``dna~`` for
reads with sequencing errors, ``dna<500~`` for partial ones, every partial barcode of a run told from its first
call's to be of reads, ``image`` or ``image+dna``; fitted by ``clibd index``, see ``query_kinds.py``); a fused
specimen (photo and barcode) is embedded as the normalised sum of its two embeddings; the reads' maps read the
run's error rate (``error_rate.py``; it, and whether a run is of reads, told from its first barcodes:
``read_runs.py``). The confidences assume a share of queries from species absent from the reference: fixed,
or estimated per kind of query from the first call's queries (``clibd_cli/classification/batch_prior.py``) and kept for the rest of the run; a kind first met in a later call
takes the share its estimate would have started from (the whole barcodes' estimate for partial barcodes and
reads), so that how a run is cut into calls (``--batch-size``) never changes an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np

from clibd_cli.classification import batch_prior
from clibd_cli.classification.batch_prior import Run
from clibd_cli.classification.calibration import (checked_calibrations, containment_part, part_only,
                                                  rank_similarities, search_part)
from clibd_cli.classification.contained import KmerCounter, records_counter, search_held_whole
from clibd_cli.classification.decision import label, predict
from clibd_cli.classification.queries import Query
from clibd_cli.classification.read_runs import rate_model, reads_shares, tell_rate, tell_reads, tells_reads
from clibd_cli.classification.query_kinds import (NO_NEW_TAXON, READ_KIND, SHORT_BELOW, SHORT_KIND, SHORT_READ_KIND,
                                                  kind_towers, query_kind, read_run)
from clibd_cli.classification.taxonomy import RankedPrediction, ReferenceTaxonomy
from clibd_cli.defaults import CALIBRATION
from clibd_cli.embedding.embedder import Embedder, batched, load_model_for, model_available
from clibd_cli.embedding.kmer import is_model_free, kmer_profile
from clibd_cli.embedding.translation import frame_breaks
from clibd_cli.embedding.unit import unit_rows
from clibd_cli.io.images import ImageError, load_image
from clibd_cli.io.sequences import unambiguous_bases
from clibd_cli.reference.holdings import K as HOLDINGS_K
from clibd_cli.reference.index_reading import load_index
from clibd_cli.reference.search import exact_search
from clibd_cli.reference.sketch import NEAR_IDENTICAL, orient_queries
from models.errors import ClibdError, ModelNotFound, counted

log = logging.getLogger("clibd")
CONTAINED_SCORES = 1 << 24  # query x record 5-mer counts held at once by the 5-mer search (64 MB)
RANK_QUERIES = 64  # queries whose neighbours' parts rank_similarities gathers at once: they stay in cache
PART_EF_FACTOR = 4  # searching with a part of the vectors: recall@10 against exact search was 0.955
# at ef 128 and 0.995 at 512 in a probe (BOLD 313-base stretches, --model kmer-aa; whole barcodes 0.998)


@dataclass
class Neighbour:
    """One nearest reference record of a query."""

    id: str
    similarity: float
    labels: dict[str, str | None]


@dataclass
class Result:
    """The answer for one query: a prediction, or the reason it could not be classified."""

    query: Query
    prediction: RankedPrediction | None = None
    prior_unseen: float | None = None  # share of queries from new species the confidences assume
    neighbours: list[Neighbour] | None = None  # best first, with ``report`` > 0
    problem: str | None = None

    @property
    def status(self) -> str:
        return "invalid" if self.prediction is None else self.prediction.status


class Classifier:
    """Classify barcodes, photos, or both, against one reference index; :meth:`stream` may be used
    by several threads at once (each stream keeps its own :class:`Run`)."""

    def __init__(self, index_dir: str | Path, model: str | Path | None = None, *,
                 device: str | Callable[[], str] = "cpu", batch_size: int = 256, precision: str = "auto",
                 ef: int | None = None, verify: bool = True, taxa: Sequence[str] = (),
                 prior_unseen: float | None = None, reads: bool | None = None):
        """``device`` may be a function resolving it, called only if the model is a neural network;
        ``taxa`` restricts the reference to the records labelled with one of them (exact search).
        ``prior_unseen``: the share of queries from species absent from the reference; None: the
        one fixed at index time, else estimated on the first call's queries. ``reads``: whether the
        barcodes are raw reads with sequencing errors, every partial one then reading the partial
        reads' confidences (``query_kinds.query_kind``); None: told from the first call's (``query_kinds.read_run``)."""
        self.index = load_index(index_dir, verify=verify)
        self.index_name = str(index_dir)  # as given (messages name it so)
        if model and not model_available(str(model)):
            raise ModelNotFound(f"{model}: not a model directory or a model name clibd knows (kmer, kmer-aa, "
                             "a model shipped with clibd)")
        model = model or self.index.manifest.get("model")
        if not model or not model_available(str(model)):
            raise ClibdError(f"{index_dir}: the model this index was built with ({model}) is not available; "
                             "give it with --model")
        kinds = self.index.calibration or {}  # only the towers its queries need: no BERT for barcodes
        towers = {self.index.manifest["modality"], *(m for kind in kinds for m in kind_towers(kind))}
        self.model = load_model_for(str(model), sorted(towers), self.index.manifest["model_fingerprint"])
        self.index.check_model(self.model.fingerprint(), str(model))
        if callable(device):
            device = "cpu" if self.model_free else device()
        self.embedder = Embedder(self.model, device, batch_size, precision)
        self.reference = _reference_taxonomy(self.index)
        self.calibrations = checked_calibrations(self.index)
        blind = [kind for kind, calibration in self.calibrations.items() if calibration.seen_only]
        if blind:
            log.warning("%s: the %s confidences assume every query's species is in the reference, whatever "
                        "--prior-unseen says (%s)", self.index.path, ", ".join(blind), NO_NEW_TAXON)
        self.ef = ef
        self.within, self._within_vectors = self._within(taxa) if taxa else (None, None)
        self.prior_unseen, self.reads = prior_unseen, reads
        self.new_run()  # self.run: that of classify() called directly, and the last stream's
        self._part_lengths: dict = {}  # norms of parts of the mapped reference vectors (vector_view order)
        self._counter: KmerCounter | None = None  # of the records' 5-mers (partial barcodes held whole)

    @property
    def model_free(self) -> bool:
        """Whether the index embeds with the k-mer profile (no neural network, no torch)."""
        return is_model_free(self.model)

    @property
    def query_kinds(self) -> list[str]:
        """Kinds of query this index can answer with calibrated confidences."""
        have = self.model.modalities
        return [kind for kind in self.calibrations if all(m in have for m in kind_towers(kind))]

    def require(self, kind: str) -> None:
        """Refuse up front a kind of query that the index and model cannot classify, and barcodes
        said to be reads (``reads``) where the index has no confidences for partial reads."""
        if kind not in self.query_kinds:
            have = ", ".join(self.query_kinds) or "none"
            how = ("--modality image from photos, or with --images from barcodes with photos"
                   if kind == "image" else "--modality dna from barcodes")
            raise ClibdError(f"{self.index.path}: this index cannot classify {kind} queries "
                             f"(calibrated for: {have}); build one with clibd index {how}")
        if kind == "dna" and self.reads and SHORT_READ_KIND not in self.query_kinds:
            raise ClibdError(f"{self.index_name}: --reads yes needs the index's confidences for partial reads "
                             f"({SHORT_READ_KIND}), which clibd index fits with --calibrate-on held-out records "
                             "(and --calibrate-errors, 0.5 to 5 % by default); without it give --reads no")

    def stream(self, queries: Iterable[Query], batch_size: int,
               min_confidence: float = CALIBRATION.min_confidence, report: int = 0) -> Iterator[list[Result]]:
        """Results block by block, in query order, memory bounded by the block: the first
        ``batch_prior.ESTIMATION_QUERIES`` together when the share of new species may be estimated
        (on them: :meth:`_shares`) or whether they are reads told (``read_runs.tell_reads``), then
        ``batch_size`` at a time."""
        run = self.new_run()
        queries = iter(queries)
        estimating = (self.prior_unseen is None or tells_reads(self.reads, self.query_kinds)
                      or rate_model(self.calibrations, self.query_kinds) is not None)
        first = list(islice(queries, batch_prior.ESTIMATION_QUERIES if estimating else batch_size))
        for block in chain([first] if first else [], batched(queries, batch_size)):
            yield self.classify(block, min_confidence, report, run)

    def new_run(self) -> Run:
        """Forget the shares of new species estimated so far, and whether the run is of reads: the
        next call's queries estimate them and tell it."""
        self.run = Run(read_run=bool(self.reads))
        return self.run

    estimates = property(lambda self: self.run.estimates, doc="The current run's estimates.")
    read_run = property(lambda self: self.run.read_run, doc="Whether the current run is of reads.")
    read_rate = property(lambda self: self.run.read_rate, doc="The current run's errors per base.")

    def classify(self, queries: Sequence[Query], min_confidence: float = CALIBRATION.min_confidence,
                 report: int = 0, run: Run | None = None) -> list[Result]:
        """Results in query order; ``report`` > 0 also lists that many nearest references (``run``:
        the stream's, else the classifier's own)."""
        run = self.run if run is None else run
        results = [Result(q, problem=q.problem) for q in queries]
        photos = self._photo_vectors(results)
        answered = self.query_kinds  # worked out once, not per query
        for result in results:
            if result.problem is None and result.query.modality not in answered:
                result.problem = f"this index has no calibration for {result.query.modality} queries"
        usable = [r.problem is None for r in results]
        dna_at = [i for i, r in enumerate(results) if usable[i] and r.query.barcode is not None]
        image_at = [i for i in photos if usable[i]]
        vectors = np.zeros((len(results), self.model.embed_dim), dtype=np.float32)
        bases = {i: unambiguous_bases(results[i].query.barcode) for i in dna_at}  # length: floor and kind
        off_target = orient_queries(self.index.sketch, [results[i].query for i in dna_at], list(bases.values()))
        breaks = {}  # stops in the best frame of a barcode: a read with errors (after orient_queries)
        read = [i for i in dna_at if (READ_KIND if bases[i] >= SHORT_BELOW else SHORT_READ_KIND) in answered]
        if read:
            breaks = dict(zip(read, frame_breaks([results[i].query.barcode for i in read]).tolist()))
        strays = {dna_at[j] for j, _ in off_target}
        if run.first_call:  # off-target junk meets stops too: not counted
            kept = {i: n for i, n in breaks.items() if i not in strays}
            partial, whole = ([i for i in kept if (bases[i] < SHORT_BELOW) == short] for short in (True, False))
            if tells_reads(self.reads, self.query_kinds):
                tell_reads(run, self.calibrations[SHORT_READ_KIND].read_run, [kept[i] for i in partial],
                           [kept[i] for i in whole])
            tell_rate(run, rate_model(self.calibrations, self.query_kinds), [bases[i] for i in partial],
                      [kept[i] for i in partial], [results[i].query.barcode for i in whole],
                      read_run(list(kept.values())))
        kinds = {i: query_kind(r.query.modality, bases.get(i), answered, breaks.get(i, 0), run.read_run)
                 for i, r in enumerate(results) if usable[i]}
        through = self.embedder.reads_apart  # a translation that reads a read's frame shifts through
        reads = [i for i in dna_at if through and kinds[i] in (READ_KIND, SHORT_READ_KIND)]
        plain = sorted(set(dna_at) - set(reads))
        for at, embed in ((plain, self.embedder.barcodes), (reads, self.embedder.reads)):
            if at:
                vectors[at] = embed([results[i].query.barcode for i in at])
        if image_at:
            vectors[image_at] += np.stack([photos[i] for i in image_at])
        unit_rows(vectors)
        present = set(kinds.values())
        for kind in [k for k in self.calibrations if k in present]:  # dna before dna<500
            at = [i for i, k in kinds.items() if k == kind]
            self._predict(kind, run, [results[i] for i in at], vectors[at], [bases.get(i) for i in at],
                          min_confidence, report, np.array([i not in strays for i in at], dtype=bool))
        for j, why in off_target:  # the neighbours of an off-target barcode say nothing
            query, prediction = results[dna_at[j]].query, results[dna_at[j]].prediction
            if query.image is None and prediction.nearest_sim < NEAR_IDENTICAL:
                prediction.confidence = dict.fromkeys(prediction.confidence, 0.0)
                query.note = why
        run.first_call = False
        return results

    def _photo_vectors(self, results: list[Result]) -> dict[int, np.ndarray]:
        """The embedding of each usable query's photo, decoded and embedded ``batch_size`` at a time (a
        run's first block holds up to 10,000 queries: their pixels at once would be GBs); an unreadable
        photo makes its query invalid, or leaves a fused specimen its barcode."""
        vectors = {}
        for chunk in batched([i for i, r in enumerate(results) if r.problem is None and r.query.image is not None],
                             self.embedder.batch_size):
            pixels = {}
            for i in chunk:
                query = results[i].query
                try:
                    pixels[i] = self.embedder.pixels(load_image(query.image))
                except ImageError as exc:
                    reason = str(exc).removeprefix(f"{query.image}: ")
                    if query.barcode is not None:
                        query.drop("image", reason)
                    else:
                        results[i].problem = reason
            at = [i for i in pixels if results[i].query.modality in self.query_kinds]
            vectors.update(zip(at, self.embedder.images([pixels[i] for i in at]) if at else []))
        return vectors

    def estimated(self, kind: str) -> bool:
        """Whether the share of new species for ``kind`` queries is estimated from the queries."""
        calibration = self.calibrations[kind]
        return (self.prior_unseen is None and calibration.prior_unseen is None and calibration.adaptive
                and not calibration.seen_only)

    def whole_estimate(self, kind: str, run: Run | None = None) -> tuple[np.ndarray, int] | None:
        """The run's whole-barcode estimate that ``kind``'s leans on (partial barcodes, reads), if made."""
        return (run or self.run).estimates.get("dna") if kind in (SHORT_KIND, READ_KIND, SHORT_READ_KIND) else None

    def share_notes(self, reported: set[str]) -> list[str]:
        """What the current run estimated of the share of new species (and genera), a line per kind
        not in ``reported`` (then added to it): a kind first met after the first call, or met there
        only off target, takes the share its estimate starts from."""
        lines = []
        for kind, (shares, n) in self.run.estimates.items():
            if kind in reported:
                continue
            reported.add(kind)
            genera = self.calibrations[kind].new_genus_share(shares)
            fixed = " (of known families: a fixed share of the new species)" if kind == READ_KIND else ""
            new_genus = f"; of new genera: {genera:.2f}{fixed}" if genera is not None else ""
            what = {SHORT_KIND: ": partial barcodes", READ_KIND: ": reads with sequencing errors",
                    SHORT_READ_KIND: ": partial barcodes read with sequencing errors"}.get(kind, "")
            source = f"EM on the first {counted(n, f'{kind} query', f'{kind} queries')}{what}"
            if not n:  # met only after the first records, or only off target: the share EM would start from
                start = "the whole barcodes' share" if self.whole_estimate(kind) is not None else "the default share"
                source = (f"{start}{what}, no {kind} query to estimate it on in the first "
                          f"{batch_prior.ESTIMATION_QUERIES:,} records")
            lines.append(f"estimated share of queries from species absent from the reference: {1 - shares[0]:.2f} "
                         f"({source}){new_genus}")
        return lines

    def fixed_share_notes(self) -> list[str]:
        """A line per kind whose confidences assume a share of new species fixed when the index was
        built (an index from before the share was estimated per run)."""
        return [f"the {kind} confidences of this index assume a share of new species fixed at "
                f"{calibration.prior_unseen} when it was built; rebuild it with clibd index to estimate or "
                "set the share per run" for kind, calibration in self.calibrations.items() if not calibration.adaptive]

    def _shares(self, kind: str, run: Run, decisions, counted: np.ndarray) -> np.ndarray:
        """Scenario shares for ``kind`` queries: fixed, or estimated once on those of the first call
        that are ``counted`` (off-target barcodes are not: junk in a batch must not make its real
        queries look new); partial barcodes' estimate leans on the run's whole barcodes' one, if
        made, instead of 0.5 (a run with a few partial records among many whole ones), and is that
        one for a kind first met after the first call; whole reads' estimate the share of new species alone."""
        calibration = self.calibrations[kind]
        if not self.estimated(kind):
            return calibration.shares(self.prior_unseen)
        if kind not in run.estimates:
            whole = self.whole_estimate(kind, run)
            prior = CALIBRATION.prior_unseen if whole is None else self.calibrations["dna"].unseen_share(whole[0])
            stacked = decisions.stacked()[counted & run.first_call]
            shares = (calibration.shares(prior) if not len(stacked) else reads_shares(calibration, stacked, prior)
                      if kind == READ_KIND else calibration.estimate_shares(stacked, prior))
            run.estimates[kind] = (shares, len(stacked))
        return run.estimates[kind][0]

    def _predict(self, kind: str, run: Run, results: list[Result], vectors: np.ndarray, bases: list[int | None],
                 min_confidence: float, report: int, counted: np.ndarray) -> None:
        calibration = self.calibrations[kind]
        k = max(calibration.k, report)
        part = search_part(calibration.rank_parts, self.reference.ranks)
        among = self.index if self.within is None else self.within  # searched among: width as the search's
        searched, width = part_only(vectors, part), max(1, min(k, len(among)))
        by_rank = held = profiles = None
        rows, sims = np.zeros((len(vectors), width), dtype=np.int64), np.zeros((len(vectors), width), np.float32)
        contained = np.zeros(len(vectors), dtype=bool)  # searched by their 5-mers (contained.py)
        if calibration.containment_source == "holdings":  # partial barcodes' 5-mers in the records' (oriented)
            profiles = kmer_profile([r.query.barcode for r in results], HOLDINGS_K)
        if calibration.contained_search:  # by 5-mer profiles, or by a model-free index's vectors' 5-mer part
            five_mers = containment_part(calibration.rank_parts, calibration.containment)
            mers = vectors[:, five_mers[0]:five_mers[1]] if profiles is None else profiles
            rows, sims, contained = self._contained(mers, searched, rows, sims, calibration.k, five_mers,
                                                    calibration.contained_slack)
        self._nearest(searched, rows, sims, ~contained, k, part)
        if profiles is not None:
            held = (profiles, self.index.holdings, rows)
        if calibration.rank_parts:
            view, element = self.index.vector_view()  # mapped: at 1M references a copy would be GBs
            by_rank = rank_similarities(calibration.rank_parts, vectors, view, element[self.index.nodes[rows]],
                                        lengths=self._part_lengths, containment=calibration.containment,
                                        holdings=held, chunk=RANK_QUERIES)
        if part is not None:  # searched with a part: its cosine is the similarity, best first (those searched
            sims = by_rank[self.reference.ranks[0]]  # by their 5-mers: the decision's k, then the others)
            later = contained[:, None] & (np.arange(rows.shape[1]) >= calibration.k)[None, :]
            order = np.lexsort((-sims, later), axis=1)
            rows, sims = np.take_along_axis(rows, order, axis=1), np.take_along_axis(sims, order, axis=1)
            by_rank = {rank: np.take_along_axis(x, order, axis=1) for rank, x in by_rank.items()}
        decisions = label(rows, sims, self.reference, calibration, bases if calibration.by_length else None, by_rank,
                          calibration.fitted_rate(run.read_rate))
        shares = self._shares(kind, run, decisions, counted)
        predictions = predict(rows, sims, self.reference, calibration, min_confidence, shares, decisions)
        for result, prediction, row, sim in zip(results, predictions, rows, sims):
            result.prediction, result.prior_unseen = prediction, calibration.unseen_share(shares)
            if report:
                result.neighbours = [Neighbour(self.index.ids[r], float(s), self._labels(r))
                                     for r, s in zip(row[:report], sim[:report])]

    def _nearest(self, searched: np.ndarray, rows: np.ndarray, sims: np.ndarray, wanted: np.ndarray, k: int,
                 part: list[int] | None) -> None:
        """``rows``, ``sims`` ``[Q, width]`` of the queries ``wanted`` ``[Q]`` set to their ``k`` nearest
        records by their vectors as ``searched``: by the index's graph, or among ``--taxa``'s records
        by exact search of every query (its products are those of its blocks of queries)."""
        if self.within is None and wanted.any():  # a part strays from the graph's geometry: a wider search
            ef = self.ef if part is None else PART_EF_FACTOR * (self.ef or self.index.manifest["hnsw"]["ef"])
            rows[wanted], sims[wanted] = self.index.search(searched[wanted], k, ef=ef)
        elif self.within is not None:
            found, near = exact_search(self._within_vectors, searched, k)
            rows[wanted], sims[wanted] = self.within[found[wanted]], near[wanted]

    def _contained(self, profiles: np.ndarray, searched: np.ndarray, rows: np.ndarray, sims: np.ndarray, k: int,
                   five_mers: list[int], slack: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The neighbours ``rows``, ``sims`` with those of the queries a record holds whole (but ``slack``
        5-mers) found by their 5-mer ``profiles`` instead, and which those were (``contained.py``; the
        records' 5-mers: the index's holdings or the part ``five_mers`` of its vectors; among ``--taxa``'s
        records, if given; the decision's ``k`` first; by the vectors as ``searched``), ``[block, records]`` at once."""
        records, holdings = self.within, self.index.holdings  # among --taxa's, or the distinct vectors'
        reference, nodes = ((self.index.node_vectors(), self.index.nodes) if records is None
                            else (self._within_vectors, None))
        if self._counter is None:  # the records' 5-mers unpacked once (KmerCounter), each record at its node
            self._counter = records_counter(holdings if holdings is None or records is None else holdings[records],
                                            reference, five_mers, nodes)
        step = int(np.clip(CONTAINED_SCORES // max(len(self.index.nodes) if records is None else len(records), 1),
                           1, 256))
        return search_held_whole(self._counter, profiles, searched, reference, rows, sims, k, column=nodes,
                                 records=records, block=step, slack=slack)

    def _within(self, taxa: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rows and vectors of the records under ``taxa`` (``--taxa``)."""
        rows, unknown = self.reference.rows_within(taxa)
        if unknown:
            kept = ", ".join(self.reference.ranks_above + self.reference.ranks)
            raise ClibdError(f"{self.index.path}: no reference record is labelled {', '.join(unknown)} "
                             f"at any rank (the index keeps {kept}; check the spelling: names as in the "
                             "reference, e.g. Diptera)")
        log.info("classifying among the %s of %s", counted(len(rows), "reference record"), ", ".join(taxa))
        return rows, self.index.vectors()[rows]

    def _labels(self, row: int) -> dict[str, str | None]:
        return {rank: values[row] for rank, values in self.index.labels.items()}


def _reference_taxonomy(index) -> ReferenceTaxonomy:
    """The index's taxonomy, with the lineage above each order its manifest keeps (a ClibdError
    naming manifest.json if that is not as clibd writes it)."""
    above = index.manifest.get("above_order") or {}
    if not (isinstance(above, dict) and all(isinstance(lineage, dict) and all(
            isinstance(name, str) for name in lineage.values()) for lineage in above.values())):
        raise ClibdError(f"{index.path}/manifest.json: above_order is not as clibd writes it (each order's "
                         "{rank: name}); rebuild with clibd index")
    return ReferenceTaxonomy.from_labels(index.ids, index.labels, above)
