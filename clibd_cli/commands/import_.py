"""``clibd import``: the CLIBD authors' checkpoints and BarcodeBERT weights -> a clibd model directory."""

from __future__ import annotations

from pathlib import Path

import click

from clibd_cli.commands.options import OutputPath


@click.command("import", short_help="Published CLIBD / BarcodeBERT weights -> a clibd model directory.")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--from", "source_format", required=True,
              type=click.Choice(["clibd-checkpoint", "barcodebert"]),
              help="clibd-checkpoint: an upstream CLIBD best.pth/last.pth. barcodebert: BarcodeBERT "
                   "weights (2023 model_41.pth, a v2 .pt, or a Hugging Face directory/.bin/.safetensors).")
@click.option("-o", "--output", required=True, type=OutputPath(path_type=Path),
              help="Model directory to write: new, empty, or an earlier model (replaced atomically, when "
                   "complete); any other folder or file is refused.")
@click.option("--config", "upstream_yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="clibd-checkpoint only: the upstream model yaml, to cross-check the towers and "
                   "output_dim (both are otherwise inferred from the tensor names).")
@click.option("--preset", default="clibd-paper", show_default=True,
              help="Architecture to fill: the tower sizes of the upstream model, or (barcodebert) the "
                   "towers initialised fresh next to the imported DNA tower. A preset or config JSON.")
@click.pass_obj
def import_checkpoint(settings, source: Path, source_format: str, output: Path, upstream_yaml: Path | None,
                      preset: str) -> None:
    """Convert published CLIBD / BarcodeBERT weights into a clibd model directory.

    \b
    clibd-checkpoint: the image, DNA and text towers of the upstream model are rebuilt
    with compatibility settings (no image normalisation, <MASK>-id pseudo-CLS and the
    softmax-mean DNA pooling, text mean over all 20 positions) so their embeddings
    match the upstream code; LoRA adapters are folded into the weights.
    barcodebert: the DNA tower is initialised from BarcodeBERT (MLM/classifier head
    dropped); the other towers of --preset are initialised at random with --seed.
    Files are read with torch.load(weights_only=True): nothing in them is executed.

    \b
    Examples:
      clibd import --from clibd-checkpoint best.pth -o clibd-1m-idt
      clibd import --from clibd-checkpoint best.pth --config image_dna_text_seed_42.yaml -o clibd-idt
      clibd --seed 1 import --from barcodebert model_41.pth -o init-model
      clibd import --from barcodebert BarcodeBERT/ -o init-model-v2
    """
    import logging

    from clibd_cli.io.outputs import output_path, writer_lock
    from models.importing import import_model

    if upstream_yaml is not None and source_format != "clibd-checkpoint":
        raise click.UsageError("--config applies to --from clibd-checkpoint only")
    output = output_path(output, directory=True, marker="config.json",
                         inputs=(source, *([upstream_yaml] if upstream_yaml else [])))
    click.get_current_context().with_resource(writer_lock(output))  # a second import -o OUT waits
    settings.apply_torch()
    imported = import_model(source, source_format, output, preset=preset, upstream_yaml=upstream_yaml,
                            command_line=settings.command_line)
    log = logging.getLogger("clibd")
    for note in imported.notes:
        log.info("%s", note)
    log.info("model written to %s (fingerprint %s)", output, imported.model.fingerprint()[:12])
