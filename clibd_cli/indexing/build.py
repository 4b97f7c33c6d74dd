"""Building a reference index directory from labelled records: what ``clibd index`` runs.

In order: read the references (``reference/sources.py``) and any held-out queries; find reference
barcodes stored reverse-complemented and fit the k-mer sketch (``reference/sketch.py``); embed the
records in resumable shards, every process its share (``embedding/shards.py``), process 0 cutting
the partial-barcode pseudo-queries while the barcodes are at hand; then, in process 0 only, build
the HNSW graph or append to the existing index (``reference/hnsw_index.py``; with a learned DNA
model, the 5-mers each record holds, ``reference/holdings.py``), fit the confidence
calibration (``classification/query_kinds.py``), warn about records whose label looks wrong
(``reference/label_check.py``), save, and drop the shards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from clibd_cli.defaults import CALIBRATION, HNSW
from clibd_cli.io.outputs import UsageError
from clibd_cli.reference.hnsw_index import ReferenceIndex
from models.errors import ClibdError, counted

log = logging.getLogger("clibd")


@dataclass
class IndexPlan:
    """What to index and how (``clibd index``'s options)."""

    references: list[str]  # FASTA/FASTQ, photo folders or dataset HDF5 files
    model_dir: str  # a model directory or a model-free name (embedding/kmer.py MODEL_FREE)
    output: Path  # the index directory
    modality: str = "dna"
    taxonomy: str | None = None
    splits: tuple[str, ...] = ()  # of a dataset HDF5 (all if empty)
    images: tuple[str, ...] = ()  # photos of the reference specimens (dna indexes)
    append: bool = False  # add to the index at ``output``
    hnsw_m: int = HNSW.M
    ef_construction: int = HNSW.ef_construction
    ef: int = HNSW.ef
    neighbours: int | None = None  # None: the index's on an append, else CALIBRATION.neighbours
    prior_unseen: float | None = None  # None: the index's on an append, else estimated per run
    held_out: tuple[str, ...] = ()  # labelled queries to calibrate on
    held_out_splits: tuple[str, ...] = ()
    read_errors: tuple[float, ...] | None = None  # errors per base of the dna~ pseudo-queries, in turn
    # (None: the default where the reference reads as protein; (): no dna~ calibration)
    batch_size: int = 256


@dataclass
class RunContext:
    """How to run it: the torch device, precision, seed, CPU threads, progress bars, and the
    command line recorded in the manifest."""

    device: str = "cpu"
    precision: str = "auto"
    seed: int = 0
    threads: int = 1
    progress: bool = False
    command: str = "clibd index"


def build_reference_index(plan: IndexPlan, run: RunContext) -> ReferenceIndex | None:
    """Build (or append to) the index at ``plan.output`` and save it; the saved index, or None
    in the processes other than 0 of a distributed run (they only embed their share)."""
    from clibd_cli.classification.query_kinds import (FEW_SHORT, READ_KIND, SHORT_READ_KIND, calibrate,
                                                      short_pseudo_queries, short_queries)
    from clibd_cli.classification.read_errors import (held_out_reads, partial_read_queries, read_pseudo_queries,
                                                      read_rates)
    from clibd_cli.embedding.embedder import Embedder, load_model_for, model_reference
    from clibd_cli.embedding.embeddings_file import nothing_usable
    from clibd_cli.embedding.kmer import is_model_free
    from clibd_cli.embedding.shards import discard, kept_on_failure, shards_folder
    from clibd_cli.reference.hnsw_index import build_index
    from clibd_cli.reference.holdings import kmer_holdings
    from clibd_cli.reference.index_reading import load_index
    from clibd_cli.reference.label_check import suspect_labels, suspects_warning
    from clibd_cli.reference.sketch import STOPS, no_protein, orient_references
    from clibd_cli.reference.sources import embed_references, read_held_out, read_references, refuse_indexed
    from clibd_cli import distributed

    output, modality = plan.output, plan.modality
    if plan.append and not (output / "manifest.json").is_file():
        raise ClibdError(f"{output}: not an index yet; build it without --append first")
    with distributed.joined(run.device) as (world, device):
        existing = load_index(output) if plan.append else None
        model = load_model_for(plan.model_dir, [modality, *(["image"] if plan.images else [])],
                               existing.manifest["model_fingerprint"] if existing else None)
        if existing is not None:
            existing.check_model(model.fingerprint(), plan.model_dir)
            if existing.manifest["modality"] != modality:
                raise UsageError(f"{output}: index holds {existing.manifest['modality']} vectors, not "
                                 f"{modality}; append with --modality {existing.manifest['modality']}")
        refs = read_references(plan.references, modality, taxonomy=plan.taxonomy, splits=plan.splits)
        if existing is not None:  # before embedding them: minutes to hours for a large reference
            refuse_indexed(refs, existing.ids, plan.references)
        found = read_held_out(plan.held_out, plan.held_out_splits, modality, plan.taxonomy,
                              refs.ids + (existing.ids if existing else []))
        sketch, turned = None, []
        if modality == "dna" and (existing is None or existing.sketch is not None):
            sketch, turned = orient_references(refs.items, existing.sketch if existing else None, seed=run.seed)
            if turned and world.is_main:
                log.warning("%s reverse-complemented; indexed turned around: %s%s",
                            counted(len(turned), "reference barcode"), ", ".join(refs.ids[i] for i in turned[:10]),
                            " …" if len(turned) > 10 else "")
            odd = no_protein(sketch, refs.items) if world.is_main else []
            if odd:
                log.warning("%s reading as no protein (%d or more stop codons in every reading frame: "
                            "pseudogenes, frame-shifting errors or another marker); kept: %s%s",
                            counted(len(odd), "reference barcode"), STOPS, ", ".join(refs.ids[i] for i in odd[:10]),
                            " …" if len(odd) > 10 else "")
            if sketch.protein is not None and existing is None and world.is_main and is_model_free(model) \
                    and not model.peptide_k:
                log.info("the reference barcodes read as protein: --model kmer-aa also reads their amino acids, "
                         "and names the genus of more new species of COI (README, --model kmer-aa)")
        if sketch is not None and found is not None:
            orient_references(found.items, sketch)
        asked = plan.read_errors  # an append keeps the rates the index was built with, unless given
        if asked is None and existing is not None and "read_errors" in existing.manifest:
            asked = tuple(existing.manifest["read_errors"])
        rates = read_rates(asked, sketch)
        embedder = Embedder(model, device, plan.batch_size, run.precision)
        log.info("embedding %s (%s)", counted(len(refs), "reference record"), modality)
        embedded = embed_references(embedder, refs, shards_folder(output), world, run.progress)
        first = len(existing) if existing is not None else 0
        partial = reads = holdings = None  # pseudo-queries and 5-mers: made while the barcodes are here
        barcodes = [refs.items[i] for i in embedded[1]] if modality == "dna" and world.is_main else []
        if barcodes and not is_model_free(model) and (existing is None or existing.holdings is not None):
            holdings = kmer_holdings(barcodes)
        if barcodes and (existing is None or len(embedded[1]) >= FEW_SHORT):
            rows = range(first, first + len(embedded[1]))
            partial = short_pseudo_queries(barcodes, rows, run.seed)
            if rates:
                reads = read_pseudo_queries(barcodes, rows, rates, run.seed)
        del barcodes
        refs.items.clear()  # embedded: a million barcodes are ~1 GB of strings
        queries = None
        if found is not None:
            log.info("embedding %s for the calibration", counted(len(found), "held-out query", "held-out queries"))
            queries = embed_references(embedder, found, shards_folder(output, "held-out"), world, run.progress)
    if not world.is_main:
        return None
    vectors, keep = embedded
    if refs.ids and not keep:  # every photo unreadable: no chunks kept for a rerun, which would read them again
        discard(shards_folder(output))
        discard(shards_folder(output, "held-out"))
        raise ClibdError(nothing_usable(plan.references))
    del embedded  # so that `del vectors` below frees them
    ids = [refs.ids[i] for i in keep]
    labels = {rank: [values[i] for i in keep] for rank, values in refs.labels.items()}
    if existing is not None:
        existing.append(vectors, ids, labels, command=run.command, holdings=holdings)
        target = existing
    else:
        target = build_index(vectors, ids, labels, model_fingerprint=model.fingerprint(), modality=modality,
                             M=plan.hnsw_m, ef_construction=plan.ef_construction, ef=plan.ef, seed=run.seed,
                             threads=run.threads, command=run.command)
        target.holdings = holdings
    del vectors  # the graph holds its own copy; a million k-mer profiles are 4 GB
    target.manifest["model"] = model_reference(plan.model_dir)
    above = {**refs.lineages_above_order(), **(existing.manifest.get("above_order", {}) if existing else {})}
    if above:  # the lineage above each order (domain to class), where the references name one
        target.manifest["above_order"] = dict(sorted(above.items()))
    if modality == "dna":
        target.manifest["read_errors"] = list(rates)  # the dna~ copies' error rates: none if empty
    if sketch is not None:
        target.sketch = sketch
        target.manifest["sketch"] = sketch.to_manifest(len(turned) + (existing.manifest["sketch"]["turned"]
                                                                        if existing else 0))
    short = held_reads = held_barcodes = None
    if queries is not None:
        vectors, keep = queries
        queries = (vectors, {rank: [values[i] for i in keep] for rank, values in found.labels.items()})
        held_barcodes = [found.items[i] for i in keep]
        if rates:
            copies, each = held_out_reads(found, rates)
            log.info("embedding %s of the held-out queries with simulated sequencing errors (%s per base) "
                     "that read with a frame break", counted(len(copies), "copy", "copies"),
                     " / ".join(map(str, rates)))
            held_reads = (embedder.reads(copies.items), copies.labels, each)
    if partial is not None:
        log.info("embedding %s for the dna<500 calibration", counted(len(partial[0]), "partial barcode"))
        short = short_queries(embedder, partial, held_barcodes, run.seed)
    if reads is not None:
        log.info("embedding %s with simulated sequencing errors for the dna~ calibration",
                 counted(len(reads[0]), "read"))
        reads = (reads[0], embedder.reads(reads[1]), *reads[2:])
    partial_reads = None  # dna<500~ only with held-out queries: on pseudo-queries alone it was too sure of new species
    if partial is not None and rates and queries is not None:
        log.info("embedding partial barcodes with simulated sequencing errors for the dna<500~ calibration")
        partial_reads = partial_read_queries(embedder, partial, (held_barcodes, queries[1]), run.seed)
    for kind in [kind for kind in (READ_KIND, SHORT_READ_KIND) if kind in (target.calibration or {}) and rates == ()]:
        del target.calibration[kind]
        log.warning("the index's %s calibration dropped (--calibrate-errors 0): reads with sequencing errors "
                    "will read the clean barcodes' confidences", kind)
    log.info("fitting the confidence calibration on the reference%s", "" if found is None else
             " and the held-out queries")
    k, prior_unseen = _calibration_settings(plan, existing)
    target.calibration = calibrate(target, embedder, plan.images, first, k=k,
                                   prior_unseen=prior_unseen, seed=run.seed, held_out=queries,
                                   held_reads=held_reads, short=short, pseudo_reads=reads,
                                   short_reads=partial_reads, threads=run.threads,
                                   **getattr(embedder.model, "calibration_hints", {}))
    suspects = suspect_labels(target)
    if suspects:
        log.warning(suspects_warning(suspects))
    with kept_on_failure(shards_folder(output)), kept_on_failure(shards_folder(output, "held-out")):
        target.save(output)  # a full disk: the chunks are kept for a rerun, and the message says so
    discard(shards_folder(output))
    discard(shards_folder(output, "held-out"))
    return target


def _calibration_settings(plan: IndexPlan, existing: ReferenceIndex | None) -> tuple[int, float | None]:
    """The neighbours and fixed share of new species to calibrate with: as given, else on an append
    those of the index's calibration for its own modality (an append refitted it with the build
    defaults, -k 50 and an estimated share, while its kept calibrations had the index's)."""
    before = (existing.calibration or {}).get(existing.manifest["modality"], {}) if existing is not None else {}
    k = plan.neighbours if plan.neighbours is not None else before.get("k", CALIBRATION.neighbours)
    return k, plan.prior_unseen if plan.prior_unseen is not None else before.get("prior_unseen")
