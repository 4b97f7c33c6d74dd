"""Option blocks and parsers that several commands share (click only: they load with ``--help``)."""

from __future__ import annotations

from collections.abc import Callable

import math
import os
import stat

import click

from clibd_cli.defaults import CALIBRATION


class FiniteRange(click.FloatRange):
    """``click.FloatRange`` that also refuses nan (which passes every comparison) and infinity."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


MIN_CONFIDENCE_RANGE = FiniteRange(0, 1, min_open=True)


class OutputPath(click.Path):
    """``click.Path`` of an output (``-o``, ``--summary``) that refuses an empty path (``-o "$UNSET"``):
    click reads ``''`` as ``Path('.')``, the current folder, which ``io.outputs.output_path`` then
    cannot tell from ``-o .`` (index, evaluate and import wrote into it)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("an empty path was given (an unset variable?); give its name", param, ctx)
        return super().convert(value, param, ctx)


def name_list(allowed: tuple[str, ...] | None = None, *, auto: bool = False, none: bool = False) -> Callable:
    """A click callback: ``a,b`` (or a repeated option) -> a tuple of distinct names from ``allowed``.

    With ``auto``, no value or ``auto`` gives None (the command's choice); with ``none``, ``none``
    gives an empty tuple.
    """

    def parse(ctx: click.Context, param: click.Parameter, value) -> tuple[str, ...] | None:
        if auto and value in (None, "auto"):
            return None
        if none and value == "none":
            return ()
        values = value if isinstance(value, tuple) else (value,)
        names = tuple(dict.fromkeys(n.strip() for v in values if v for n in v.split(",") if n.strip()))
        bad = [n for n in names if allowed and n not in allowed]
        if bad or (auto and not names):
            choices = ", ".join(allowed or ())
            raise click.BadParameter(f"{', '.join(bad) or repr(value)}: choose from {choices}")
        return names

    return parse


def rate_list(low: float, high: float) -> Callable:
    """A click callback: ``r`` or ``r1,r2,...`` -> a tuple of rates in [``low``, ``high``]; ``0``
    gives an empty tuple (none), no value None (the command's default)."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
        if value is None:
            return None
        rates = tuple(FiniteRange(low, high).convert(part.strip(), param, ctx) for part in value.split(","))
        return tuple(r for r in rates if r > 0)

    return parse


def no_stdin(why: str, pipes: bool = False) -> Callable:
    """A click callback for file arguments (``allow_dash=True``) that refuses ``-`` and says ``why``
    this command cannot read standard input, instead of click's "Path '-' does not exist"; and,
    unless ``pipes`` (a file read once), a pipe (a FIFO, ``<(zcat …)``), which a second reading
    would wait on for ever."""

    def check(ctx: click.Context, param: click.Parameter, value):
        for given in (value if isinstance(value, tuple) else (value,)):
            if str(given) == "-":
                raise click.BadParameter(f"'-': {why}; save standard input to a file and give its path")
            if given is not None and not pipes:
                refuse_pipe(given, why)
        return value

    return check


def refuse_pipe(path, why: str, param_hint: str | None = None) -> None:
    """A ``click.BadParameter`` saying ``why`` where ``path`` is a FIFO (``mkfifo``, bash's ``<(...)``),
    which can be read only once: a second reading would wait on it for ever."""
    try:
        fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return
    if fifo:
        raise click.BadParameter(f"'{path}': is a pipe (a FIFO or <(...)); {why}; save it to a file and give "
                                 "its path", param_hint=param_hint)


def given(name: str, ctx: click.Context | None = None) -> bool:
    """Whether the option ``name`` of ``ctx`` (the current command's if None) was given, not left at its default."""
    ctx = click.get_current_context() if ctx is None else ctx
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


def count(name: str, default: int, help: str, minimum: int = 0, **kwargs) -> Callable:
    """An option taking a whole number of at least ``minimum``."""
    return click.option(name, type=click.IntRange(min=minimum), default=default, help=help, **kwargs)


def batch_size(default: int, help: str | None = None) -> Callable:
    """``--batch-size``: records embedded at a time."""
    return count("--batch-size", default, help or "Records embedded at a time.", minimum=1, show_default=True)


def min_confidence(help: str) -> Callable:
    """``--min-confidence``: the calibrated confidence a rank's label must reach."""
    return click.option("--min-confidence", type=MIN_CONFIDENCE_RANGE, default=CALIBRATION.min_confidence,
                        show_default=True, help=help)


def nproc_per_node() -> Callable:
    """``--nproc-per-node``: processes to start with torchrun (one per GPU) for embedding."""
    return count("--nproc-per-node", 1, "Start this many processes with torchrun (one per GPU), each "
                 "embedding its share; on several nodes start them with torchrun or srun (README).",
                 minimum=1, show_default=True)
