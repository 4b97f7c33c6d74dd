"""`clibd train`: contrastive training of the image, DNA and text encoders on a dataset HDF5."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import click

from clibd_cli.commands.options import FiniteRange, OutputPath, count, given, name_list
from clibd_cli.defaults import VAL_KEYS_PER_SPECIES
from models.config import RANKS
from models.config import TOWERS as MODALITIES


@click.command(context_settings={"show_default": True},
               short_help="Contrastive training of image/DNA/text encoders -> a run folder.")
@click.option("-m", "--model", "model", default="clibd-small", metavar="PRESET|CONFIG.json|MODEL_DIR",
              help="What to train: a preset (clibd-tiny, clibd-small, clibd-fast, clibd-paper), a config file "
                   "or a model directory to fine-tune.")
@click.option("-d", "--data", type=click.Path(exists=True, dir_okay=False),
              help="Dataset HDF5 written by `clibd prepare` (or a CLIBD-distributed one); needed, except "
                   "with --resume (the run's).")
@click.option("-o", "--out", required=True, type=OutputPath(),
              help="Run directory: best/ and last/ checkpoints, metrics.jsonl, args.json.")
@click.option("--modalities", default="image,dna,text", callback=name_list(MODALITIES),
              help="Modalities to align (paper: all three; the BOLD barcodes have no images: dna,text).")
@click.option("--train-splits", default="pretrain,train", callback=name_list(),
              help="Splits to train on (BIOSCAN-5M names; in a CLIBD BIOSCAN-1M file they read as "
                   "no_split,train_seen).")
@count("--epochs", 20, "Passes over the training splits.", minimum=1)
@count("--batch-size", 64, "Records per process per step (the paper: 500 on each of 4 GPUs).", minimum=2)
@count("--grad-accum", 1, "Micro-batches per optimiser step (each is its own contrastive batch).", minimum=1)
@click.option("--lr", type=FiniteRange(min=0, min_open=True), default=5e-4,
              help="Peak learning rate of the one-cycle schedule (the paper: 2e-4 at global batch 2000).")
@click.option("--warmup", type=FiniteRange(0, 1, min_open=True, max_open=True), default=0.3,
              help="Fraction of the steps spent rising to the peak learning rate.")
@click.option("--weight-decay", type=FiniteRange(min=0), default=0.01,
              help="AdamW weight decay (never applied to norms, biases, logit scale).")
@click.option("--positives", type=click.Choice(["sample", "label"]), default="sample",
              help="Contrastive positives: each record with itself only (the paper's InfoNCE) or every "
                   "record with the same label string in the global batch (multi-hot targets).")
@click.option("--dna-dna", type=FiniteRange(min=0), default=0.0,
              help="Weight of a supervised contrastive term among DNA embeddings (same label = "
                   "positive); needs --positives label and text in --modalities.")
@click.option("--label-ranks", default="", show_default="none", callback=name_list(RANKS[:-1]),
              help="With --positives label: also align each record with its label string cut at these "
                   "ranks (e.g. order,genus), as more terms averaged with the full-label one; helps "
                   "place barcodes of species missing from the reference at higher ranks.")
@click.option("--dna-crop", type=FiniteRange(0, 1), default=0.0,
              help="Share of training barcodes cut each epoch to a random stretch of themselves (200 bp "
                   "to whole), so partial barcodes (fragments, short amplicons) embed like whole ones; "
                   "the bundled model uses 0 (0.3 cost whole barcodes more than it gave partial ones: README).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
              help="auto = bf16 autocast on GPU, fp32 on CPU.")
@click.option("--freeze", default="", show_default="none", callback=name_list(MODALITIES),
              help="Encoders whose backbone stays fixed (their projection still trains), e.g. image.")
@count("--lora", 0, "LoRA rank on attention query/value of every encoder, backbones frozen (0 = full "
                   "fine-tuning, as the paper's final models; 4 = its earlier LoRA runs).")
@count("--val-every", 0, "Validate every N steps (0 = at the end of each epoch).")
@count("--val-limit", 0, "Validate on a seeded random subset of at most N queries per query set, against "
                         f"N keys plus up to {VAL_KEYS_PER_SPECIES} keys of each of their species (0 = all; "
                         "for quick checks on CPU).")
@click.option("--best-metric", default="auto",
              help="Validation metric that picks best/, e.g. dna-dna.species.macro.hm; auto = that "
                   "one if DNA is trained, else image-image.species.macro.hm (.seen instead of .hm "
                   "without a val_unseen split).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from last/ exactly (same data order, optimiser, schedule, RNG). "
                   "Options left out take the run's values (the global --seed too); given ones that change "
                   "what it computes must be the run's, else exit 2: --model, --data's training records (the "
                   "file may have moved), --train-splits, --modalities, --lr, --warmup, --weight-decay, "
                   "--positives, --dna-dna, --label-ranks, --dna-crop, --precision, --freeze, --lora, "
                   "--best-metric, --seed, and the steps planned by --epochs, --max-steps, --batch-size x "
                   "processes and --grad-accum. --val-every, --val-limit, --workers, --log-every may differ; "
                   "--nproc-per-node is not the run's but this command's (1 if left out: a --batch-size left "
                   "out then keeps the run's global batch where it divides).")
@count("--max-steps", 0, "Train for at most this many optimiser steps; the schedule is fitted to "
                         "them (0 = --epochs decides).")
@count("--workers", 2, "DataLoader worker processes per training process.")
@count("--log-every", 50, "Steps per train line in metrics.jsonl (and on stderr without a progress bar).",
       minimum=1)
@count("--nproc-per-node", 1, "Launch this many processes with torchrun (one per GPU); Ctrl-C, SIGTERM or "
                              "SIGHUP to clibd stops them all after the step, saving last/. For several "
                              "nodes run torchrun yourself (see README).", minimum=1)
@click.pass_context
def train(ctx: click.Context, **options) -> None:
    """Align encoders of specimen images, DNA barcodes and taxonomy labels (CLIBD training).

    \b
    Examples:
      clibd train --model clibd-small --data bold.h5 --modalities dna,text --out runs/bold
      clibd train --data synthetic.h5 --modalities image,dna --out runs/syn --epochs 5
      clibd train --nproc-per-node 4 --model clibd-paper --data bioscan5m.h5 --out runs/paper
      clibd train --out runs/bold --resume      # after an interruption: the run's own options

    Writes RUN/metrics.jsonl (train loss, samples/s, validation accuracy), RUN/best/ (model
    directory chosen by --best-metric) and RUN/last/ (model + state for --resume).
    Initialisation, data order and augmentation follow the global --seed.
    """
    from clibd_cli import distributed

    settings = ctx.obj
    processes = max(options["nproc_per_node"], distributed.detect().size)
    from_run = _the_runs_options(ctx, processes) if options["resume"] else set()
    options, data = ctx.params, ctx.params["data"]
    if data is None:
        raise click.MissingParameter(ctx=ctx, param=next(p for p in ctx.command.params if p.name == "data"))
    _check_combinations(options)
    from clibd_cli.io.outputs import output_path
    from clibd_cli.training.run_files import checkpoint_for

    output_path(options["out"], directory=True, marker="args.json", inputs=(data,))  # a run folder, or new / empty
    if not options["resume"]:  # with it, asked first (_the_runs_options)
        checkpoint_for(Path(options["out"]), resume=False)  # a run already there: before any work or word
    command = _command_line(ctx)
    if options["nproc_per_node"] > 1 and distributed.detect().size == 1:
        sys.exit(distributed.launch(options["nproc_per_node"], command[1:]))

    from clibd_cli.training.datasets import default_splits
    from clibd_cli.training.loop import TrainConfig, run_training

    if not given("train_splits", ctx) and "train_splits" not in from_run:
        options["train_splits"] = default_splits(data, options["train_splits"])
    cfg = TrainConfig(**{k: v for k, v in options.items() if k != "nproc_per_node"}, seed=settings.seed,
                      device=settings.torch_device(), threads=settings.threads, progress=settings.progress(),
                      command=command)
    run_training(cfg)


def _the_runs_options(ctx: click.Context, processes: int) -> set[str]:
    """With --resume, give every option left out of the command line (the global --seed too) the
    run's value from RUN/args.json (``training/run_files.resume_defaults``); the names it gave. Exit 2
    first where the run has nothing to resume (``run_files.checkpoint_for``), --data given or not."""
    from clibd_cli.training.run_files import checkpoint_for, resume_defaults

    root = ctx.find_root()
    checkpoint_for(Path(ctx.params["out"]), resume=True)
    chosen = {name: value for name, value in ctx.params.items() if given(name, ctx)}
    chosen.update({"seed": root.params["seed"]} if given("seed", root) else {})
    values = resume_defaults(Path(ctx.params["out"]), chosen, processes)
    if "seed" in values:
        root.params["seed"] = ctx.obj.seed = values.pop("seed")
    values = {name: value for name, value in values.items() if name in ctx.params}
    if "data" in values and not Path(values["data"]).is_file():
        started = "" if Path(values["data"]).is_absolute() else " (relative to where the run was started)"
        raise click.BadParameter(f"the run's {values['data']}{started} is not there; give --data the file's "
                                 "new place", param_hint="--data")
    ctx.params.update(values)
    return set(values)


def _check_combinations(options: dict) -> None:
    """Refuse options that contradict each other (click's usage errors, exit 2)."""
    from clibd_cli.training.validation import metric_names

    modalities, positives, best_metric = options["modalities"], options["positives"], options["best_metric"]
    if len(modalities) < 2:
        raise click.BadParameter("name at least two of image, dna, text to align", param_hint="--modalities")
    names = metric_names(modalities)
    if best_metric != "auto" and best_metric not in names:
        near = difflib.get_close_matches(best_metric, names, n=3)  # the nearest names, not any three
        hint = f"did you mean {', '.join(near)}?" if near else f"e.g. {', '.join(names[-3:])}"
        raise click.BadParameter(f"{best_metric!r} is not reported for {','.join(modalities)}; {hint}",
                                 param_hint="--best-metric")
    if positives == "label" and "text" not in modalities:
        raise click.BadParameter("labels come from the text modality: add text to --modalities",
                                 param_hint="--positives")
    if options["dna_dna"] and (positives != "label" or "dna" not in modalities):
        raise click.BadParameter("needs --positives label and dna in --modalities", param_hint="--dna-dna")
    if options["dna_crop"] and "dna" not in modalities:
        raise click.BadParameter("crops barcodes: add dna to --modalities", param_hint="--dna-crop")
    if set(options["freeze"]) - set(modalities):
        absent = ",".join(m for m in options["freeze"] if m not in modalities)
        raise click.BadParameter(f"{absent} is not in --modalities", param_hint="--freeze")
    if options["label_ranks"] and positives != "label":
        raise click.BadParameter("needs --positives label", param_hint="--label-ranks")


def _command_line(ctx: click.Context) -> list[str]:
    """``clibd [global options] train [options]`` with every non-default value, as parsed
    (``distributed.option_words``); recorded in args.json and re-run under torchrun (without
    --nproc-per-node)."""
    from clibd_cli.distributed import ParsedOption, option_words

    def parsed(context: click.Context) -> list[ParsedOption]:
        return [ParsedOption(tuple(param.opts), context.params.get(param.name), param.default,
                             "count" if param.count else "flag" if param.is_flag else "value")
                for param in context.command.params
                if isinstance(param, click.Option) and param.name != "nproc_per_node"]

    return ["clibd", *option_words(parsed(ctx.find_root())), ctx.info_name, *option_words(parsed(ctx))]
