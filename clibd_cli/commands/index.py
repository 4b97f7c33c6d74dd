"""``clibd index``: embed labelled reference records into a versioned HNSW index directory."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clibd_cli.commands import options
from clibd_cli.defaults import CALIBRATION, HNSW
from models.config import TOWERS as MODALITIES

TAXONOMY_READS = ("index reads the taxonomy table once per reference input, again for --calibrate-on and in "
                  "each process, so with more than one of them it is a file")


class _IndexGroup(click.Group):
    """``clibd index [build] ARGS`` builds; ``clibd index info [DIR]`` describes."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands:  # `clibd index --help` shows every build option
            args = ["build", *args]
        return super().parse_args(ctx, args)


@click.group("index", cls=_IndexGroup, context_settings={"help_option_names": ["-h", "--help"]},
             short_help="Labelled references -> a reference index; `index info` shows one.")
def index() -> None:
    """Build a reference index (`clibd index [build] …`; `clibd index --help` lists every option)
    or describe one (`clibd index info DIR`; without DIR, the bundled default reference)."""


@index.command("build", short_help="Embed labelled references into an index directory (the default).")
@click.argument("references", nargs=-1, required=True,
                type=click.Path(exists=True, allow_dash=True, path_type=Path),
                callback=options.no_stdin("each process of an index run reads the references, so they are files"))
@click.option("-m", "--model", "model_dir", metavar="MODEL",
              help="Trained model directory (from clibd train or clibd import), a shipped model's name "
                   "(clibd-fast-bold), or `kmer` for the "
                   "model-free k-mer profile embedding (barcodes only; no training needed), or "
                   "`kmer-aa` for that plus the amino acids of the translation (COI and other "
                   "protein-coding mitochondrial barcodes of invertebrates). Required, but with --append: "
                   "the model the index was built with by default.")
@click.option("-o", "--output", required=True, type=options.OutputPath(path_type=Path),
              help="Index directory to write: new, empty, or an earlier index (replaced atomically); "
                   "any other folder or file is refused. A second clibd writing the same index waits.")
@click.option("--modality", type=click.Choice(MODALITIES), default="dna", show_default=True,
              help="What the reference vectors embed: barcodes, photos, or taxonomy label strings.")
@click.option("--taxonomy", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              callback=options.no_stdin(TAXONOMY_READS, pipes=True),  # a pipe read twice: refused in build
              help="TSV with an id column and rank columns (order, family, genus, species), or QIIME 2's "
                   "taxonomy TSV (Feature ID, Taxon; headerless ID<TAB>lineage lines too); labels the "
                   "--calibrate-on queries too. Where a FASTA header has a lineage too, the table's "
                   "wins (a warning counts the records whose two lineages disagree).")
@click.option("--split", "splits", multiple=True,
              help="Dataset HDF5 splits to index (repeatable; e.g. train, key_unseen)  [default: all]")
@click.option("--images", multiple=True, type=click.Path(exists=True),
              help="With --modality dna: photos of reference specimens (files or folders, ID.jpg named "
                   "after the record id; repeatable). Calibrates the index for photo and photo+barcode "
                   "queries too.")
@click.option("--append", is_flag=True, help="Add the records to the existing index at --output.")
@click.option("--M", "hnsw_m", type=click.IntRange(2, 100), default=HNSW.M, show_default=True,
              help="HNSW graph degree (memory ≈ M×8–10 bytes per record).")
@click.option("--ef-construction", type=click.IntRange(min=10), default=HNSW.ef_construction,
              show_default=True,
              help="HNSW build-time search width (higher: better graph, slower build).")
@click.option("--ef", type=click.IntRange(min=1), default=HNSW.ef, show_default=True,
              help="Default query-time search width stored in the manifest (classify --ef overrides it).")
@click.option("-k", "--neighbours", type=click.IntRange(min=1), default=None,
              help="Nearest references that decide each query (the confidence calibration is fitted for "
                   f"this number).  [default: {CALIBRATION.neighbours}; with --append, the index's]")
@click.option("--prior-unseen", type=options.FiniteRange(0, 1), default=None,
              help="Fix the share of queries whose species is absent from the reference that clibd classify's "
                   "confidences assume (classify --prior-unseen overrides it).  [default: estimated per run "
                   "from the queries themselves; with --append, the index's]")
@click.option("--calibrate-on", "held_out", multiple=True, type=click.Path(exists=True, allow_dash=True),
              callback=options.no_stdin("index reads the held-out queries more than once, so they are files"),
              help="Labelled held-out queries (FASTA/FASTQ with SINTAX headers or --taxonomy ids, or a "
                   "dataset HDF5 with --calibrate-split; repeatable) to fit the confidences on, instead of "
                   "the reference's own records, reading each label's barcode gap too; their species absent "
                   "from the reference count as new.")
@click.option("--calibrate-split", "held_out_splits", multiple=True,
              help="Splits of a --calibrate-on HDF5 (repeatable; e.g. val, val_unseen).")
@click.option("--calibrate-errors", "read_errors", callback=options.rate_list(0, 0.2), metavar="RATE[,RATE...]",
              help="Calibrate for reads with sequencing errors (dna~ queries: a barcode with a frame break) "
                   "on copies of up to 6,000 reference records, and of each --calibrate-on barcode, with "
                   "simulated errors per base (substitutions, insertions, deletions; seeded), the copies at "
                   "each RATE in turn; with two RATEs or more the confidences read a run's error rate, told "
                   "from the stops its reads meet (with --calibrate-on, partial barcodes' stretches too, at "
                   "0.5, 1, 2, 3 and 5 % whatever RATE says: dna<500~ queries); 0: no such calibration. Needs "
                   "a protein-coding marker (COI).  [default: 0.005,0.01,0.02,0.03,0.05 (raw nanopore reads "
                   "have 1-5 %); 0 where the barcodes do not read as protein; with --append, the index's]")
@options.batch_size(256)
@options.nproc_per_node()
@click.pass_obj
def build(settings, references: tuple[Path, ...], model_dir: str | None, output: Path, modality: str,
          taxonomy: str | None, splits: tuple[str, ...], images: tuple[str, ...], append: bool, hnsw_m: int,
          ef_construction: int, ef: int, neighbours: int | None, prior_unseen: float | None,
          held_out: tuple[str, ...], held_out_splits: tuple[str, ...], read_errors: tuple[float, ...] | None, batch_size: int,
          nproc_per_node: int) -> None:
    """Embed labelled REFERENCES (FASTA/FASTQ with SINTAX, UNITE or RDP headers, a BOLD TSV, or
    plain FASTA with --taxonomy; photo folders with --taxonomy; or a dataset HDF5 with --split) and
    write an index directory. `build` is the default: `clibd index ARGS` runs it.

    Reference barcodes stored reverse-complemented are found (by their k-mer profile against
    the rest of the reference) and indexed turned around; the index keeps that k-mer sketch to
    orient queries and to leave unassigned those unlike any reference barcode. RNA (U) is read
    as DNA, alignment gaps are dropped, records over 5,000 characters are skipped.

    \b
    Examples:
      clibd index --model run/best coi_reference.fasta -o coi_ref/
      clibd index --model kmer-aa coi_reference.fasta -o coi_kmer/   # no training needed
      clibd index --model run/best barcodes.fasta --taxonomy taxonomy.tsv -o coi_ref/
      clibd index more.fasta --append -o coi_ref/                   # the index's own model
      clibd index --model run/best bold.h5 --split train --split key_unseen -o keys/
      clibd index info coi_ref/                                      # describe an index
      clibd index info                                               # the bundled default reference

    \b
    The embedding is saved in chunks in OUTPUT.shards/ (and OUTPUT.held-out.shards/) as it goes:
    after an interruption the same command carries on. With --nproc-per-node N (or under
    torchrun/srun) every process embeds its share; process 0 builds the graph and calibrates.
    """
    hnsw = (("hnsw_m", "--M"), ("ef_construction", "--ef-construction"), ("ef", "--ef"))
    built = [option for name, option in hnsw if append and options.given(name)]  # kept with the graph: would do nothing
    if built:
        raise click.UsageError(f"{', '.join(built)}: an index's HNSW settings are fixed when it is built; "
                               "--append keeps the index's (rebuild without --append to change them; "
                               "classify --ef searches wider)")
    if model_dir is None and not append:
        raise click.UsageError("Missing option '-m' / '--model' (the model to embed the references with)")
    if model_dir is None:
        from clibd_cli.reference.index_reading import built_with

        model_dir = built_with(output)
    if images and modality != "dna":
        raise click.UsageError("--images goes with --modality dna (photo references are the inputs "
                               "themselves with --modality image)")
    from clibd_cli.io.images import check_photo_inputs

    check_photo_inputs(images, "--images takes photos of the reference specimens", "reference barcodes are "
                       "REFERENCES, given without an option (clibd index -m MODEL BARCODES.fasta --images PHOTOS/ "
                       "-o DIR)")
    if held_out_splits and not held_out:
        raise click.UsageError("--calibrate-split goes with --calibrate-on")
    if read_errors and modality != "dna":
        raise click.UsageError("--calibrate-errors calibrates barcode indexes (--modality dna)")
    if held_out and modality == "text":
        raise click.UsageError("--calibrate-on calibrates barcode or photo indexes, not --modality text")
    from clibd_cli.embedding.embedder import model_available
    from clibd_cli.embedding.kmer import KMER_MODEL, MODEL_FREE, PEPTIDE_MODEL
    from clibd_cli.indexing.build import IndexPlan, RunContext, build_reference_index
    from clibd_cli import distributed
    from clibd_cli.io.outputs import output_path, writer_lock

    if taxonomy and (len(references) > 1 or held_out or nproc_per_node > 1 or distributed.detect().size > 1):
        options.refuse_pipe(taxonomy, TAXONOMY_READS, "'--taxonomy'")  # else read once: a pipe will do

    output = output_path(output, directory=True, marker="manifest.json",
                         inputs=(*references, *held_out, *images, *([taxonomy] if taxonomy else [])), reads=(model_dir,))
    if not model_available(model_dir):
        raise click.BadParameter(f"{model_dir}: not a model directory (train one with clibd train, "
                                 f"or use {KMER_MODEL} or {PEPTIDE_MODEL} for a model-free k-mer profile)", param_hint="--model")
    if nproc_per_node > 1 and model_dir in MODEL_FREE:
        raise click.BadParameter(f"the {model_dir} model runs in one process", param_hint="--nproc-per-node")
    if nproc_per_node > 1 and distributed.detect().size == 1:
        sys.exit(distributed.launch(nproc_per_node, distributed.relaunch_args(settings.command_line)))
    if distributed.detect().is_main:  # the process that writes the index; held until it is saved
        click.get_current_context().with_resource(writer_lock(output))
    if model_dir not in MODEL_FREE:
        settings.apply_torch()
    plan = IndexPlan([str(p) for p in references], model_dir, output, modality=modality, taxonomy=taxonomy,
                     splits=splits, images=images, append=append, hnsw_m=hnsw_m,
                     ef_construction=ef_construction, ef=ef, neighbours=neighbours, prior_unseen=prior_unseen,
                     held_out=held_out, held_out_splits=held_out_splits, read_errors=read_errors,
                     batch_size=batch_size)
    target = build_reference_index(plan, RunContext(
        device=settings.torch_device(), precision=settings.precision, seed=settings.seed,
        threads=settings.threads or 1, progress=settings.progress(), command=settings.command_line))
    if target is not None:
        from clibd_cli.reference.index_info import describe_index

        click.echo(describe_index(target))


@index.command("info", short_help="Describe an index directory, or the bundled reference.")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-verify", is_flag=True, help="Skip the sha256 checks of the index files.")
def info(directory: Path | None, no_verify: bool) -> None:
    """Describe an index directory (records, model, HNSW parameters, guards, checksums); without
    DIRECTORY (or given the bundled pack's folder), the bundled default reference that `clibd
    classify` searches without --index, unpacked into the cache on first use."""
    from clibd_cli.indexing.bundled import PACK, default_index
    from clibd_cli.indexing.pack import PACK_FILE
    from clibd_cli.reference.index_info import describe_index
    from clibd_cli.reference.index_reading import load_index
    from models.errors import ClibdError

    if directory is None or directory.resolve() == PACK.resolve():
        directory = default_index()
    elif (directory / PACK_FILE).is_file():
        raise ClibdError(f"{directory}: a packed reference ({PACK_FILE}), not an index directory; clibd "
                         "unpacks only its bundled one, which `clibd index info` without a directory "
                         "describes")
    click.echo(describe_index(load_index(directory, verify=not no_verify)))
