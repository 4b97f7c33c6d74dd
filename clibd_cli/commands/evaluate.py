"""``clibd evaluate``: the paper's retrieval metrics, open-set numbers and baselines, as a report."""

from __future__ import annotations

from pathlib import Path

import click

from clibd_cli.commands import options
from clibd_cli.commands.options import name_list
from clibd_cli.evaluation import BASELINES, PAIRS


@click.command("evaluate", short_help="Score a model and baselines (CLIBD protocol) -> a report folder.")
@click.option("-m", "--model", default=None, metavar="MODEL",
              help="Model directory (clibd train), a shipped model's name (clibd-fast-bold), kmer or kmer-aa "
                   "(the model-free k-mer profiles of clibd index build), or a preset for untrained weights. "
                   "Leave out (or 'none') for the baselines only.")
@click.option("-d", "--data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Dataset HDF5 (clibd prepare, or the CLIBD authors' BIOSCAN-1M/5M files).")
@click.option("--on", type=click.Choice(["val", "test"]), default="test", show_default=True,
              help="Query splits: val + val_unseen, or test + test_unseen.")
@click.option("--pairs", callback=name_list(PAIRS, auto=True), metavar="LIST",
              help=f"Query-key modality pairs, comma-separated, from {', '.join(PAIRS)}  "
                   "[default: every pair the model and data support]")
@click.option("--baselines", callback=name_list(BASELINES, auto=True, none=True), metavar="LIST",
              help=f"Comma-separated from {', '.join(BASELINES)}, or none  "
                   "[default: all whose programs are on PATH]")
@click.option("--scenario", "scenario", type=click.Choice(["both", "paper", "left-out"]), default="both",
              show_default=True, help="paper: unseen species have keys; left-out: they do not.")
@click.option("--search", type=click.Choice(["exact", "hnsw"]), default="exact", show_default=True,
              help="Nearest-neighbour search over the key embeddings.")
@options.min_confidence("Confidence at which a label counts as asserted (open-set numbers; sintax cutoff).")
@click.option("--kmer", type=click.IntRange(3, 8), default=5, show_default=True,
              help="k of the k-mer profile baseline.")
@click.option("--limit", type=click.IntRange(min=0), default=0, metavar="N",
              help="Evaluate at most N random queries per split (0: all); only they are embedded. For quick "
                   "looks only.")
@options.batch_size(256)
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Embedding cache folder  [default: REPORT_DIR/cache]")
@click.option("--no-cache", is_flag=True, help="Neither read nor write cached embeddings.")
@click.option("-o", "--output", required=True, type=options.OutputPath(path_type=Path),
              help="Report folder: metrics.json, metrics.tsv, PNG plots, report.html.")
@click.pass_obj
def evaluate(settings, model: str | None, data: Path, on: str, pairs, baselines, scenario: str, search: str,
             min_confidence: float, kmer: int, limit: int, batch_size: int, cache: Path | None,
             no_cache: bool, output: Path) -> None:
    """Score a model (and baselines) with the CLIBD protocol: keys and seen/unseen queries
    from a dataset HDF5, exact cosine nearest neighbours, top-1/3/5 micro and macro accuracy
    per rank, harmonic mean of seen and unseen, open-set and calibration numbers.

    \b
    Examples:
      clibd evaluate -m run/best -d bold.h5 -o report/
      clibd evaluate -d bold.h5 --on val --baselines kmer,vsearch-sintax -o baselines/
      clibd evaluate -m run/best -d bioscan5m.h5 --pairs dna-dna,image-image,image-dna -o paper/
    """
    import os

    if cache is not None and no_cache:
        raise click.UsageError("--cache names the embedding cache that --no-cache turns off; give one of them")
    if model in (None, "none") and pairs:  # the baselines alone ran, the pairs left out without a word
        raise click.UsageError("--pairs: the pairs are a model's (query and key embeddings); give --model too")
    if model in (None, "none") and baselines == ():
        raise click.UsageError("nothing to evaluate: give --model, --baselines, or both")
    _refuse_idle_options(model not in (None, "none"), baselines is None or "kmer" in baselines)
    from clibd_cli.evaluation.report import text_report
    from clibd_cli.evaluation.run import Plan, report_folder, run_evaluation, write_report
    from clibd_cli.io.outputs import writer_lock

    output = report_folder(output, data, model)
    click.get_current_context().with_resource(writer_lock(output))  # a second evaluate -o OUT waits
    settings.apply_torch()
    plan = Plan(
        data=data, on=on, model=None if model in (None, "none") else model, pairs=pairs, baselines=baselines,
        scenarios=("paper", "left-out") if scenario == "both" else (scenario,), search=search,
        min_confidence=min_confidence, kmer=kmer, limit=limit, batch_size=batch_size,
        cache=None if no_cache else (cache or output / "cache"), seed=settings.seed,
        threads=settings.threads or os.cpu_count() or 1, device=settings.torch_device(), precision=settings.precision,
        progress=settings.progress(), command=settings.command_line)
    result = run_evaluation(plan)
    page = write_report(output, result)
    click.echo(text_report(result.metrics))
    click.echo(f"report: {page}", err=True)


def _refuse_idle_options(model: bool, kmer: bool) -> None:
    """A usage error for --kmer, --search or --batch-size given where nothing they set runs (the
    kmer baseline; a model's pairs or that baseline; a model): they did nothing, and said nothing."""
    idle = [reason for name, used, reason in (
        ("kmer", kmer, "--kmer is the k of the kmer baseline, which --baselines leaves out"),
        ("search", model or kmer, "--search is the search of a model's pairs and the kmer baseline, and "
                                  "neither runs"),
        ("batch_size", model, "--batch-size is how many records a model embeds at a time, and no --model "
                              "is given")) if not used and options.given(name)]
    if idle:
        it = "them, or add what they are" if len(idle) > 1 else "it, or add what it is"
        raise click.UsageError(f"{'; '.join(idle)}: drop {it} for")
