"""``clibd classify``: barcodes and photos in, one TSV row of taxonomic predictions per record out."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from clibd_cli.commands import options
from models.errors import counted

FORMATS = ("tsv", "jsonl", "qiime2", "sintax", "blast6")  # the last three: io/pipeline_formats.py


def _prior(ctx, param, value: str) -> float | None:
    """``auto`` -> None (estimated per run), else a share in [0, 1]."""
    if value == "auto":
        return None
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise click.BadParameter(f"{value!r}: give auto or a share between 0 and 1")
    return share


@click.command("classify", short_help="Barcodes and photos -> TSV of order..species with confidences.")
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, allow_dash=True))  # folders: check_text
@click.option("-i", "--index", "index_dir", type=click.Path(exists=True, file_okay=False),
              help="Reference index directory (from clibd index)  [default: the bundled BOLD COI-5P "
                   "reference of the clibd-fast-bold model, barcodes only; unpacked once into "
                   "$CLIBD_CACHE_DIR, else $XDG_CACHE_HOME/clibd, else ~/.cache/clibd]")
@click.option("-m", "--model", "model_dir", metavar="MODEL",
              help="The model the index was built with, where it is now (a model directory, a shipped "
                   "model's name, `kmer` / `kmer-aa`); another model's index is refused. Without --index only "
                   "clibd-fast-bold, the bundled reference's.  [default: the one the index names]")
@click.option("--images", multiple=True, type=click.Path(exists=True),
              help="Photo file or folder (searched recursively for jpg/png/tif; repeatable). With an index "
                   "built with --images, a photo named like a barcode's id (ID.jpg) is classified with it "
                   "as one specimen.")
@click.option("-o", "--output", type=options.OutputPath(allow_dash=True), default="-",
              show_default=True, help="Where to write the predictions (a file, written whole or not at "
                                      "all; never an input, a device or a FIFO; - = stdout; a name ending "
                                      "in .gz, .bz2 or .xz is written compressed).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="tsv", show_default=True,
              help="tsv: the columns listed above, one row per record; jsonl: one JSON object per record with "
                   "the best label, its confidence and whether it is assigned at every rank; qiime2: QIIME 2's "
                   "taxonomy TSV; sintax: as vsearch --sintax --tabbedout; blast6: BLAST outfmt 6, one line per "
                   "nearest reference (--top-k, default 1), identity from the embedding's similarity.")
@options.min_confidence("Report a rank's label only if its confidence reaches this (confidence is "
                        "calibrated: "
                   "about that share of such calls are right).")
@click.option("--prior-unseen", callback=_prior, default="auto", show_default=True, metavar="auto|P",
              help="Share of the queries whose species is absent from the reference, which the confidences "
                   "assume: auto estimates it from the first queries of the run (EM; reported on stderr and "
                   "in the output's prior_unseen column), P (0-1) fixes it. An index built with "
                   "clibd index --prior-unseen P keeps P unless this is given.")
@click.option("--reads", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Whether the barcodes are raw reads with sequencing errors (nanopore, unpolished amplicons). "
                   "In a run of reads every partial barcode reads the index's confidences for partial reads "
                   "(dna<500~; clibd index --calibrate-on fits them), not only those whose best reading frame "
                   "meets a stop: most reads with errors meet none, and by the clean stretches' confidences a "
                   "known species' read looks like a new species'. auto takes the run for reads when 5 % of the "
                   "partial barcodes in its first 10,000 records, and 10 or more, meet a stop (clean ones: "
                   "0.01 %), or as many of its whole ones (clean ones: 0.12 %), and says so on stderr. The "
                   "partial reads' confidences read the run's errors per base too, told from the stops its "
                   "first partial barcodes meet (said on stderr: 'reads taken to have X % errors per base').")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="List the N nearest reference records per query: in TSV instead of the classification "
                   "(long format: N rows each, fewer if the reference is smaller, with the columns query_id "
                   "hit reference_id similarity order family genus species); in JSONL as a "
                   "'neighbours' array added to each record; in blast6, N lines each.")
@click.option("--taxa", default=None,
              help="Classify only among the reference records of these taxa, comma-separated names at any "
                   "rank (e.g. Diptera,Hymenoptera; Insecta where the reference names classes; exact search). "
                   "Confidences keep the whole reference's "
                   "calibration: read them as given that the specimen belongs to these taxa; a subtree of "
                   "fewer records than the index's -k lowers them.")
@click.option("--ef", type=click.IntRange(min=1), default=None,
              help="HNSW search width  [default: the index's]; higher is slower and more exact.")
@click.option("--summary", "summary_path", type=options.OutputPath(path_type=Path),
              help="Also write reads and features per taxon at each rank and sample to this TSV, with a "
                   "Krona text file per sample and an HTML page next to it. Reads: --counts, else ;size=N "
                   "header annotations (dereplication), else 1 per record; samples: --counts columns, else "
                   ";sample=NAME, else the input file names.")
@click.option("--counts", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              callback=options.no_stdin("standard input is for the queries, the feature table is a file", pipes=True),
              help="Feature table for --summary: features as rows (ids, or the sequences themselves), "
                   "samples as columns (vsearch --otutabout, a BIOM/QIIME 2 export, DADA2's t(seqtab)).")
@options.batch_size(512, "Records read, embedded and searched at a time: memory grows with it, not "
                        "with the input.")
@click.option("--no-verify", is_flag=True, help="Skip the sha256 checks of the index files.")
@click.pass_obj
def classify(settings, inputs: tuple[str, ...], index_dir: str, model_dir: str | None,
             images: tuple[str, ...], output: str, fmt: str, min_confidence: float,
             prior_unseen: float | None, reads: str, top_k: int | None, taxa: str | None, ef: int | None,
             summary_path: Path | None, counts: str | None, batch_size: int, no_verify: bool) -> None:
    """Classify barcodes (FASTA/FASTQ files, gzip/bzip2/xz ok, `-` = stdin; with no file and no
    --images, stdin is read) and/or photos.

    Without --index, insect COI-5P barcodes are classified against the bundled reference
    (52,192 public BOLD records of four insect orders) with the bundled clibd-fast-bold model.

    Barcodes are read on the reference's strand (reverse complements are turned around), RNA
    as DNA, with alignment gaps dropped. A barcode unlike every reference barcode (random
    sequence, another gene), far from them and reading as no protein (stop codons in every
    frame: shuffled, chimeric, a pseudogene), or, 600 bases or more, no more like them than its
    own bases shuffled (another marker, a low-complexity or shuffled sequence), is unassigned at
    every rank, with the reason on stderr. A barcode
    under 500 bases (a mini-barcode, a metabarcoding amplicon) reads the index's partial-barcode
    confidences (dna<500), and a whole one whose every reading frame meets a stop codon (a raw
    read with sequencing errors) the index's confidences for reads (dna~, fitted on reference
    barcodes copied with simulated errors: clibd index --calibrate-errors); a partial one that
    meets a stop, or every partial one of a run of reads (--reads), those for partial reads
    (dna<500~, with --calibrate-on; they read the run's error rate, told from its stops); each
    kind with its own share of new species.

    \b
    Writes one TSV row per input record, in input order (barcodes, then the photos not paired
    with a barcode), with the columns:
      query_id  modality (dna, image, image+dna)  status (assigned, unassigned, invalid)
      order family genus species       label where its confidence reaches --min-confidence
      order_conf ... species_conf      confidence of the best label, 0-1
      lineage                          o:Diptera(1.00),f:Culicidae(0.98),...
      nearest_id nearest_sim           the closest reference record, cosine similarity
      strand                           + or - (read reverse-complemented); empty for photos
      prior_unseen                     share of new species the confidences assume (--prior-unseen)
    Invalid records (empty, not DNA, under 100 bases, over 5,000 characters, unreadable
    photos) get status invalid and their reason on stderr (the first 20 such messages, then a
    count; -v gives them all). With --prior-unseen auto (or --reads auto, on an index with
    dna<500~) the first 10,000 records are read before any output is written (the share of new
    species is estimated, and whether they are reads told, on them), then the rest streams in
    --batch-size blocks.

    \b
    Exit status: 0 when every record got a row (unassigned and invalid rows included),
    1 on a data or runtime error (one line `clibd: error: ...`) and when the reader of the
    output stops (`| head`), 2 on a usage error, 130 when interrupted (Ctrl-C), 143 when
    terminated (SIGTERM), 129 when hung up (SIGHUP: a closed terminal or SSH session).

    \b
    Examples:
      clibd classify my_barcodes.fasta > my_barcodes.tsv          # bundled reference
      clibd classify --index coi_ref/ run42.fasta.gz > run42.tsv
      zcat run42.fasta.gz | clibd classify --index coi_ref/ - > run42.tsv
      clibd classify --index photo_ref/ --images plate_0193/ > plate_0193.tsv
      clibd classify --index specimens_ref/ plate_0193.fasta --images plate_0193/ > both.tsv
    """
    if not inputs and not images:
        if _stdin_is_terminal():
            raise click.UsageError("give FASTA/FASTQ files, '-' for stdin, or --images")
        inputs = ("-",)
    if taxa is not None and not [t for t in taxa.split(",") if t.strip()]:
        raise click.UsageError(f"--taxa {taxa!r}: give taxon names, comma-separated")
    if counts and not summary_path:
        raise click.UsageError("--counts goes with --summary")
    if inputs.count("-") > 1:
        raise click.UsageError("standard input ('-') given twice: it can be read once")
    if top_k and fmt in ("qiime2", "sintax"):
        raise click.UsageError(f"--top-k lists neighbours in tsv, jsonl or blast6; --format {fmt} has no place for them")
    if summary_path is not None and str(summary_path) == "-":
        raise click.UsageError("--summary writes several files (TSV, HTML, Krona text): give a path, not '-'")
    from clibd_cli.io.images import check_photo_inputs
    from clibd_cli.io.streams import check_text

    for source in inputs:  # a photo given as a barcode file is named so, not as a query the index cannot take
        check_text(source)
    check_photo_inputs(images, "--images takes photos", "barcode files are inputs, given without an option "
                       "(clibd classify BARCODES.fasta --images PHOTOS/)")  # and not one invalid row, exit 0
    import logging
    from itertools import chain

    from clibd_cli.classification.classifier import Classifier
    from clibd_cli.classification.queries import iter_queries
    from clibd_cli.io.outputs import output_path, packer_of, text_output
    from clibd_cli.reference.records import REBUILD
    from models.errors import ClibdError

    log = logging.getLogger("clibd")
    read = (*inputs, *images, *([counts] if counts else []))  # files this run reads: never an output
    bundled = index_dir is None
    if bundled:
        from clibd_cli.indexing.bundled import default_index_dir, default_reference
    folders = (default_index_dir() if bundled else index_dir, model_dir)  # read: never written into
    if output == "/dev/stdout":  # the name scripts use for standard output: stream there, as for -
        output = "-"
    if output != "-":
        output = str(output_path(output, inputs=read, reads=folders))
        packer_of(output)
    if summary_path:
        summary_path = output_path(summary_path, inputs=read, reads=folders)
        packer_of(summary_path)
        if output != "-" and Path(output).resolve() == summary_path.resolve():
            raise click.UsageError(f"{summary_path}: --summary and -o name the same file; give each its own")
        from clibd_cli.abundance.summary import refuse_clashes, summary_files

        keep = {output: "-o, the predictions", **{source: f"the input {source}" for source in read}}
        table, _, page = summary_files(summary_path)  # the Krona texts' names wait for the samples
        refuse_clashes([table, page], keep)
    if settings.device == "cuda":  # refused without a GPU, as for a model's index, on a k-mer index too
        settings.torch_device()
    if bundled:
        index_dir = str(default_reference(model_dir, photos=bool(images), progress=settings.progress()))
    summary = _summary(counts) if summary_path else None
    try:
        classifier = Classifier(index_dir, model_dir, device=settings.torch_device, batch_size=batch_size,
                                precision=settings.precision, ef=ef, verify=not no_verify,
                                taxa=[t.strip() for t in (taxa or "").split(",") if t.strip()],
                                prior_unseen=prior_unseen, reads={"auto": None, "yes": True, "no": False}[reads])
    except ClibdError as exc:
        if not bundled:
            raise
        raise ClibdError(str(exc).replace(REBUILD, f"this is the cached default reference: "
                                          f"delete {index_dir} and clibd unpacks it again on the next run")) from None
    if not classifier.model_free:
        settings.apply_torch()
    if inputs:
        classifier.require("dna")
    if images:
        classifier.require("image")
    fuse = bool(inputs) and "image+dna" in classifier.query_kinds
    queries = iter_queries(inputs, images, fuse=fuse)
    blocks = classifier.stream(queries, batch_size, min_confidence, report=top_k or int(fmt == "blast6"))
    reported: set[str] = set()  # query kinds whose estimated share of new species was reported
    with _progress(settings.progress(), log) as bar:
        # a file that is not FASTA fails here, before any output; the share of new species is estimated here
        first = next(blocks, None)
        if first is None:
            log.warning("no records to classify in %s", ", ".join([*inputs, *images]))
        notes = _Notes(log)
        with text_output(output) as handle:
            writer = _writer(handle, fmt, top_k)
            for results in chain([first] if first else [], blocks):
                _report_estimates(classifier, log, reported, old_index=results is first)
                notes.report(results)
                writer.write(results)
                if summary is not None:
                    summary.add(results)
                bar.update(len(results))
            if summary is not None:  # before -o is in place: a Krona text refused (exit 2) leaves it be
                log.info("summary: %s", ", ".join(map(str, summary.write(summary_path, keep))))
        notes.close()


@contextmanager
def _progress(enabled: bool, log):
    """Records classified so far, on stderr when it is a terminal (``Settings.progress``); the
    run's messages are printed above the bar."""
    from contextlib import nullcontext

    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with tqdm(disable=not enabled, unit=" records", desc="classified", file=sys.stderr, leave=False,
              mininterval=0.5) as bar, (logging_redirect_tqdm(loggers=[log]) if enabled else nullcontext()):
        yield bar


def _writer(handle, fmt: str, top_k: int | None):
    """The writer of ``--format``: another tool's layout (``clibd_cli/io/pipeline_formats.py``) or
    clibd's own (``clibd_cli/io/predictions.py``; with ``--top-k``, TSV lists the neighbours)."""
    from clibd_cli.io.pipeline_formats import PIPELINE_FORMATS, PipelineWriter
    from clibd_cli.io.predictions import PredictionWriter

    if fmt in PIPELINE_FORMATS:
        return PipelineWriter(handle, fmt)
    return PredictionWriter(handle, "neighbours" if top_k and fmt == "tsv" else fmt)


def _summary(counts: str | None):
    """The --summary collector, its --counts read before any classifying."""
    from clibd_cli.abundance.counts import read_counts
    from clibd_cli.abundance.summary import AbundanceSummary

    return AbundanceSummary(read_counts(counts) if counts else None)


def _stdin_is_terminal() -> bool:
    """Whether standard input is a terminal (or closed): nothing is piped in to classify."""
    return sys.stdin is None or sys.stdin.isatty()


def _report_estimates(classifier, log, reported: set[str], old_index: bool) -> None:
    """The estimated shares of new species (and genera) on stderr, each kind's once, when made
    (``Classifier.share_notes``); with ``old_index``, a warning for an index whose share is fixed."""
    for line in classifier.share_notes(reported):
        log.info("%s", line)
    for line in classifier.fixed_share_notes() if old_index else ():
        log.warning("%s", line)


class _Notes:
    """Why each invalid record is invalid, which part of a specimen was left out, and why a barcode
    was turned away, on stderr: the first ``LISTED`` named, the rest counted (listed with -v)."""

    LISTED = 20

    def __init__(self, log) -> None:
        self.log, self.listed, self.unlisted = log, 0, 0

    def report(self, results) -> None:
        for result in results:
            query = result.query
            text = f"invalid: {result.problem}" if result.problem else query.note
            if not text:
                continue
            where = query.id if query.where == query.id else f"{query.where}: {query.id}"
            if self.listed < self.LISTED:
                self.listed += 1
                self.log.warning("%s: %s", where, text)
            else:
                self.unlisted += 1
                self.log.debug("%s: %s", where, text)

    def close(self) -> None:
        if self.unlisted:
            self.log.warning("%s with a message like those above, not listed (each has its row in the "
                             "output; -v lists them)", counted(self.unlisted, "more record"))
