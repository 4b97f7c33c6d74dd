"""``clibd prepare``: BIOSCAN-5M/1M metadata, a BOLD TSV or FASTA (+ taxonomy, photos) -> one dataset HDF5."""

from __future__ import annotations

from pathlib import Path

import click

from clibd_cli.commands import options

FORMATS = ("auto", "bioscan-5m", "bioscan-1m", "bold", "fasta", "synthetic")
IMAGE_PACKAGES = ("cropped_256", "original_256", "cropped", "original_full")  # BIOSCAN's image packages


@click.command("prepare", short_help="BIOSCAN/BOLD/FASTA (+ photos) -> dataset HDF5 with CLIBD splits.")
@click.argument("input_path", metavar="INPUT",
                type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
                callback=options.no_stdin("prepare reads its input twice (to keep memory flat), so it is a file"))
@click.option("-o", "--output", required=True, type=options.OutputPath(path_type=Path),
              help="Dataset HDF5 to write (appears only when complete).")
@click.option("-f", "--format", "input_format", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Input format; auto looks at the first line.")
@click.option("--images", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Photos: for FASTA, folders of ID.jpg photos named after the record ids, or such files "
                   "(repeatable); for BIOSCAN, its image folder (once).")
@click.option("--image-package", type=click.Choice(IMAGE_PACKAGES), default="cropped_256", show_default=True,
              help="Which BIOSCAN image package to read under --images.")
@click.option("--taxonomy", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="FASTA only: TSV with an id column and rank columns (order, family, genus, species).")
@click.option("--partition", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of released CLIBD partition files ({split}.txt id lists) to use "
                   "instead of the protocol.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None,
              help="Seed of the seen/unseen split protocol (1M, BOLD, FASTA; with synthetic, of the records "
                   "drawn and their photos)  [default: the global --seed]")
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Threads reading photos.")
@click.option("--resize", type=click.IntRange(min=16), default=None, metavar="PIXELS",
              help="Scale photos down to PIXELS on the shorter side and re-encode as JPEG "
                   "(default: store JPEG, PNG and TIFF photos as their original bytes, others re-encoded "
                   "as JPEG).")
@click.option("--strict", is_flag=True,
              help="Fail on an empty or non-nucleotide barcode instead of skipping it.")
@click.pass_obj
def prepare(settings, input_path: Path, output: Path, input_format: str, images: tuple[Path, ...],
            image_package: str, taxonomy: Path | None, partition: Path | None, seed: int | None,
            workers: int, resize: int | None, strict: bool) -> None:
    """Turn BIOSCAN-5M/1M metadata, a BOLD TSV or FASTA into one dataset HDF5 with CLIBD splits.

    \b
    BIOSCAN-5M: the official split column; records without species are pretrain.
    BIOSCAN-1M, BOLD (public data TSV, COI-5P records) and FASTA: the CLIBD partition files
    (--partition), else the CLIBD protocol (seen/unseen species 80/20, records 70/10/10/10,
    queries/keys) with --seed. The per-split counts are printed on stdout.

    \b
    Examples:
      clibd prepare BIOSCAN_5M_Insect_Dataset_metadata.csv.gz --images bioscan5m/ -o bioscan5m.h5
      clibd prepare BIOSCAN_Insect_Dataset_metadata.tsv --partition CLIBD_partitioning/ -o bioscan1m.h5
      clibd prepare barcodes.fasta --taxonomy taxonomy.tsv --images plate_01/ --images plate_02/ -o mine.h5
      clibd prepare bold_public_data.tsv --seed 1 -o bold.h5
      clibd prepare --format synthetic examples/bold-sample.csv.gz -o synthetic.h5

    \b
    synthetic: 150 species of a BIOSCAN-5M layout CSV of BOLD records (their real barcodes,
    taxonomy and splits) with generated photos whose look follows the taxonomy (order: body plan, family: colour, genus:
    pattern, species: detail); for showing the image path learns, not for real accuracy.
    """
    from clibd_cli.data.bold import is_bold_table
    from clibd_cli.data.build import detect_format, prepare_dataset
    from clibd_cli.data.splits import read_partition
    from clibd_cli.io.outputs import output_path, writer_lock

    output = output_path(output, inputs=(input_path, *images, *(p for p in (taxonomy, partition) if p)))
    click.get_current_context().with_resource(writer_lock(output))  # a second prepare -o OUT waits

    photo_options = [name for name, param in (("--image-package", "image_package"), ("--resize", "resize"),
                                              ("--workers", "workers")) if options.given(param)]
    if input_format == "auto":  # a BOLD TSV first: it has BIOSCAN-1M's sampleid column
        input_format = "bold" if is_bold_table(input_path) else detect_format(input_path)
    if input_format == "synthetic":  # real BOLD barcodes + generated photos that follow the taxonomy
        from clibd_cli.data.synthetic import write_synthetic_dataset

        ignored = [name for name, value in (("--images", images), ("--taxonomy", taxonomy),
                                            ("--partition", partition), ("--resize", resize)) if value]
        ignored += [name for name in photo_options if name != "--resize"]
        if ignored:
            raise click.UsageError(f"{', '.join(ignored)}: not for --format synthetic (it draws its photos "
                                   "and keeps BOLD's splits)")

        click.echo(format_summary(write_synthetic_dataset(
            output, seed=settings.seed if seed is None else seed, bold_csv=input_path,
            command=settings.command_line)))
        return
    if photo_options and not images:  # they would do nothing
        raise click.UsageError(f"{', '.join(photo_options)}: for the photos of --images, and none are given")
    if taxonomy and input_format != "fasta":
        raise click.UsageError("--taxonomy is for --format fasta (BIOSCAN and BOLD files carry their taxonomy)")
    if images and input_format == "bold":
        raise click.UsageError("--images is not for --format bold (a BOLD TSV names no photo files)")
    if images and input_format != "fasta" and (len(images) > 1 or not images[0].is_dir()):
        raise click.UsageError(f"--images: {input_format}'s photos are one image folder (the package's, or the "
                               "folder above it); give --images once, a folder" + (
                                   f", not the file {images[0]}" if not images[0].is_dir() else ""))
    from clibd_cli.io.images import check_photo_inputs

    check_photo_inputs(images, "--images takes photos", "the barcodes are INPUT (clibd prepare BARCODES.fasta "
                       "--images PHOTOS/ -o OUT.h5)")
    if input_format == "bioscan-5m" and (partition or seed is not None):
        raise click.UsageError(f"{'--partition' if partition else '--seed'} is for bioscan-1m, bold and fasta; "
                               "BIOSCAN-5M has its own split column")
    source = _source(input_format, input_path, images, image_package, taxonomy)
    summary = prepare_dataset(
        source, output, partition=read_partition(partition) if partition else None,
        seed=settings.seed if seed is None else seed, strict=strict, images=bool(images),
        workers=workers, resize=resize, progress=settings.progress(),
        attrs={"source": str(input_path.resolve()), "command": settings.command_line,
               **({"images": _resolved(images), "image_package": image_package} if images else {}),
               **({"partition": str(partition.resolve())} if partition else {}),
               **({"resize": resize} if resize else {})})
    click.echo(format_summary(summary))


def _resolved(images: tuple[Path, ...]) -> str | list[str]:
    """The file's ``images`` attribute: the absolute path of the one --images, a list of several."""
    paths = [str(path.resolve()) for path in images]
    return paths[0] if len(paths) == 1 else paths


def _source(input_format: str, path: Path, images: tuple[Path, ...], image_package: str, taxonomy: Path | None):
    """The record source that ``--format`` names (``clibd_cli/data/``); BIOSCAN's with one --images."""
    if input_format == "bioscan-5m":
        from clibd_cli.data.bioscan import Bioscan5M

        return Bioscan5M(path, images[0] if images else None, image_package)
    if input_format == "bioscan-1m":
        from clibd_cli.data.bioscan import Bioscan1M

        return Bioscan1M(path, images[0] if images else None, image_package)
    if input_format == "bold":
        from clibd_cli.data.bold import BoldSource

        return BoldSource(path)
    from clibd_cli.data.fasta import FastaSource

    return FastaSource(path, taxonomy, images)


def format_summary(summary: dict) -> str:
    """The per-split table printed after writing (the same numbers are in the file's attrs)."""
    columns = ("records", "species", "genera", "with_image")
    rows = [(name, *(counts[c] for c in columns)) for name, counts in summary["splits"].items()]
    rows.append(("total", *(summary["total"][c] for c in columns)))
    width = max(len(row[0]) for row in rows)
    lines = [f"{'split':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
    lines += [f"{row[0]:<{width}}  " + "  ".join(f"{v:>10,}" for v in row[1:]) for row in rows]
    return "\n".join(lines)
