"""``clibd embed``: barcodes, photos or dataset records in, an embeddings HDF5 out."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clibd_cli.commands import options
from models.config import TOWERS as MODALITIES
from models.errors import counted


@click.command("embed", short_help="Barcodes, photos or dataset records -> an embeddings HDF5.")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, allow_dash=True))
@click.option("-m", "--model", "model_dir", required=True, metavar="MODEL",
              help="Model directory, a shipped model's name (clibd-fast-bold), `kmer` / `kmer-aa`, or a "
                   "preset name such as clibd-tiny for untrained weights.")
@click.option("-o", "--output", required=True, type=options.OutputPath(path_type=Path),
              help="Embeddings HDF5 to write (appears only when complete; a second clibd writing it waits).")
@click.option("--split", "splits", multiple=True,
              help="For a dataset HDF5 input: splits to embed (repeatable)  [default: all]")
@click.option("--modality", type=click.Choice(MODALITIES), default=None,
              help="For a dataset HDF5 input: what to embed  [default: dna]")
@options.batch_size(256)
@options.nproc_per_node()
@click.pass_obj
def embed(settings, inputs: tuple[str, ...], model_dir: str, output: Path, splits: tuple[str, ...],
          modality: str | None, batch_size: int, nproc_per_node: int) -> None:
    """Embed FASTA/FASTQ barcodes (`-` = stdin), photo files or folders, or a dataset HDF5.

    \b
    The output HDF5 holds `ids` (record id or photo path), `modality` (dna, image, or text for
    a dataset's label strings), `vectors` (float32, L2-normalised, one row per usable record)
    and, as attributes, the model fingerprint and path, clibd version and command line.
    Unusable records (bad barcode, unreadable photo, a record labelled at no rank for text) are
    reported on stderr and left out.

    \b
    Examples:
      clibd embed -m run/best barcodes.fasta photos/ -o emb.h5
      clibd embed -m run/best bold.h5 --split test --modality dna -o test_dna.h5
      clibd embed --nproc-per-node 4 -m run/best bioscan5m.h5 --modality image -o photos.h5
    """
    if str(output) == "-":
        raise click.UsageError("-o: the embeddings are an HDF5 file; give a path, not '-'")
    import logging

    from clibd_cli.embedding.embedder import Embedder, load_model_for, model_available
    from clibd_cli.embedding.embeddings_file import embed_to_file, input_modality
    from clibd_cli import distributed
    from clibd_cli.io.images import IMAGE_SUFFIXES, holds_photos
    from clibd_cli.io.outputs import output_path
    from clibd_cli.io.streams import is_hdf5

    ignored = [name for name, given in (("--split", splits), ("--modality", modality)) if given]
    if ignored and not any(is_hdf5(source) for source in inputs):
        raise click.UsageError(f"{', '.join(ignored)} chooses what to embed of a dataset HDF5, and no input is one "
                               "(barcodes and photos are embedded as what they are)")
    for folder in (source for source in inputs if source != "-" and Path(source).is_dir()):
        if not holds_photos(folder):
            raise click.UsageError(f"{folder}: is a folder, which embed reads as photos ("
                                   f"{', '.join(sorted(IMAGE_SUFFIXES))}), and it holds none; give barcode "
                                   f"files by name ({Path(folder) / '*.fasta'}), not their folder")
    output = output_path(output, inputs=inputs, reads=(model_dir,))
    if nproc_per_node > 1 and "-" in inputs:
        raise click.BadParameter("standard input can be read by one process only; give a file",
                                 param_hint="--nproc-per-node")
    if nproc_per_node > 1 and distributed.detect().size == 1:
        sys.exit(distributed.launch(nproc_per_node, distributed.relaunch_args(settings.command_line)))
    needed = sorted({input_modality(source, modality or "dna") for source in inputs})
    settings.apply_torch()
    with distributed.joined(settings.torch_device()) as (world, device):
        model = load_model_for(model_dir, needed)
        embedder = Embedder(model, device, batch_size, settings.precision)
        count = embed_to_file(embedder, inputs, splits or ("all",), modality or "dna", output, model_dir,
                              settings.command_line, world, settings.progress())
    if world.is_main:
        log = logging.getLogger("clibd")
        if not model_available(model_dir):  # clibd-fast for clibd-fast-bold: random weights' vectors
            log.warning("%s is an architecture (a preset or config JSON), not a trained model: the vectors "
                        "written are of untrained (random) weights; a trained model is a run's best/ or a "
                        "shipped one (clibd-fast-bold)", model_dir)
        log.info("%s written to %s", counted(count, "embedding"), output)
