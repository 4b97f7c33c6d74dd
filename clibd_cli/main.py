"""The ``clibd`` command group: global options, lazy subcommands, errors → exit codes.

Only click and the standard library are imported here, so ``clibd --help`` stays instant;
each subcommand (``clibd_cli/commands/``) imports its heavy dependencies inside the command body.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass

import click

from clibd_cli import __version__
from clibd_cli.defaults import STOP_SIGNALS
from models.errors import ClibdError, ModelNotFound

# name -> "module:function"; a command appears here only once it exists.
COMMANDS: dict[str, str] = {
    "classify": "clibd_cli.commands.classify:classify",
    "embed": "clibd_cli.commands.embed:embed",
    "evaluate": "clibd_cli.commands.evaluate:evaluate",
    "import": "clibd_cli.commands.import_:import_checkpoint",
    "index": "clibd_cli.commands.index:index",
    "prepare": "clibd_cli.commands.prepare:prepare",
    "train": "clibd_cli.commands.train:train",
}

log = logging.getLogger("clibd")


@dataclass
class Settings:
    """Options shared by every subcommand (``clibd [OPTIONS] COMMAND``)."""

    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    seed: int = 0
    verbosity: int = 0
    command_line: str = "clibd"  # as typed, recorded next to every output

    def progress(self) -> bool:
        """Progress bars go to stderr, and only when it is a terminal and not ``--quiet``."""
        return self.verbosity >= 0 and sys.stderr.isatty()

    def torch_device(self) -> str:
        """Resolve ``--device`` to a torch device string; ``auto`` prefers CUDA when present."""
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ClibdError("--device cuda was requested but no CUDA GPU is visible to PyTorch")
        return self.device

    def apply_torch(self) -> None:
        """Apply ``--threads`` and ``--seed`` to torch and numpy (call from commands that use torch;
        OpenMP's wait policy is set before, in :func:`cli`)."""
        import numpy as np
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)


class ClibdGroup(click.Group):
    """A group that imports subcommands on demand and turns failures into one-line errors."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:  # commands added with cli.add_command (plugins, tests)
            return super().get_command(ctx, name)
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        command_line = shlex.join(["clibd", *map(str, args)])
        try:  # clibd's own options: `clibd --threads -1 classify`
            ctx = super().make_context(info_name, _global_flags_first(list(args), self), parent=parent, **extra)
        except click.UsageError as exc:
            raise _said_as_clibd(exc) from None
        ctx.meta["clibd.command_line"] = command_line
        return ctx

    def invoke(self, ctx: click.Context):
        main_thread = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, _terminated) for sig in STOP_SIGNALS} if main_thread else {}
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:  # `clibd classify --threads 1`: clibd's own option after the command
            raise _said_as_clibd(_misplaced_global(exc, ctx) or exc) from None
        except click.UsageError as exc:
            raise _said_as_clibd(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except Terminated as stop:  # kill, timeout, Slurm: 143 (128 + SIGTERM), unwound as Ctrl-C is
            _say(f"clibd: {STOP_SIGNALS[stop.signum]} (nothing half-written is left)")
            raise click.exceptions.Exit(128 + stop.signum) from None
        except KeyboardInterrupt:  # Ctrl-C: 130 (128 + SIGINT), as shells report it, not a data error's 1
            _say("clibd: interrupted (nothing half-written is left)")
            raise click.exceptions.Exit(130) from None
        except ClibdError as exc:
            code = getattr(exc, "exit_code", 2 if isinstance(exc, ModelNotFound) else 1)  # a mistyped model: 2
            raise _Failure(str(exc), exit_code=code) from exc
        except Exception as exc:  # noqa: BLE001 - the last line of defence before the user
            raise _Failure(_describe(exc), verbose=_verbosity(ctx) > 0) from exc
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except BrokenPipeError:
            # `clibd classify ... | head`: the reader left; exit quietly (Python docs, SIGPIPE note).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)


def _global_flags_first(args: list[str], group: click.Group) -> list[str]:
    """``clibd classify -v …`` read as ``clibd -v classify …``: the flags of clibd itself that take
    no value (``-v``, ``-vv``, ``-q``; not the eager ``--version``) are taken wherever they stand
    before a ``--`` (no subcommand has options of those names)."""
    flags = {name for option in group.params if isinstance(option, click.Option)
             and (option.is_flag or option.count) and not option.is_eager for name in option.opts}

    def ours(arg) -> bool:  # a flag, or short ones run together (-vv, -vq); callers may pass non-strings
        short = isinstance(arg, str) and arg[:1] == "-" and arg[1:2] not in ("-", "")
        return arg in flags or (short and all(f"-{c}" in flags for c in arg[1:]))

    end = args.index("--") if "--" in args else len(args)
    return [a for a in args[:end] if ours(a)] + [a for a in args[:end] if not ours(a)] + list(args[end:])


def _misplaced_global(exc: click.NoSuchOption, ctx: click.Context) -> click.UsageError | None:
    """The usage error for an option of clibd itself that takes a value (``--threads``, ``--seed``,
    ``--device``, ``--precision``) given after the command, which has no option of that name: where
    it goes, with the value given (None for any other unknown option)."""
    name = exc.option_name
    if exc.ctx is None or not any(isinstance(o, click.Option) and name in o.opts and not o.is_flag
                                  for o in ctx.command.params):
        return None
    args = shlex.split(ctx.meta.get("clibd.command_line", ""))
    at = max((i for i, arg in enumerate(args) if arg == name or arg.startswith(f"{name}=")), default=None)
    value = None if at is None else args[at].partition("=")[2] or next(iter(args[at + 1:at + 2]), None)
    given = f"{name} {'VALUE' if value is None else shlex.quote(value)}"
    command = exc.ctx.command_path.partition(" ")[2]
    return click.UsageError(f"{name} is an option of clibd itself, not of {command}: give it before the "
                            f"command, as in `clibd {given} {command} ...`", ctx=exc.ctx)


def _said_as_clibd(exc: click.UsageError) -> click.UsageError:
    """``exc`` shown as click shows a usage error (the usage line, the hint to --help) but ending in
    ``clibd: error: …``, as every other failure does, instead of click's ``Error: …``; exit status 2
    as before. A command group called without a command (its help, NoArgsIsHelpError) is kept."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc

    def show(file=None) -> None:
        ctx = exc.ctx
        if ctx is not None:
            hint = "" if ctx.command.get_help_option(ctx) is None else \
                f"Try '{ctx.command_path} {max(ctx.command.get_help_option_names(ctx), key=len)}' for help.\n"
            _say(f"{ctx.get_usage()}\n{hint}")
        _say_error(exc.format_message())

    exc.show = show
    return exc


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP), raised where the program is so that every atomic output and lock is
    cleaned up on the way out, as for Ctrl-C (``models/files.atomic_path``)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = int(signum)


def _terminated(signum, frame) -> None:
    raise Terminated(signum)


class _Failure(click.ClickException):
    """Printed as ``clibd: error: …`` with exit code 1 (usage errors keep click's exit code 2)."""

    exit_code = 1

    def __init__(self, message: str, verbose: bool = False, exit_code: int = 1):
        super().__init__(message)
        self.verbose, self.exit_code = verbose, exit_code

    def show(self, file=None) -> None:
        if self.verbose and self.__cause__ is not None:
            import traceback

            traceback.print_exception(self.__cause__, file=sys.stderr)
        _say_error(self.message)


def _say_error(message: str) -> None:
    """``clibd: error: …`` on one line: a library's message (HDF5's read failures, click's list of
    choices) may span lines."""
    _say("clibd: error: " + " ".join(part.strip() for part in message.splitlines()))


def _say(line: str) -> None:
    """One line on stderr, if it can still be written: after a hang-up the terminal is gone (EIO), and a
    reader of stderr may have left (EPIPE); the exit status says what happened either way."""
    with contextlib.suppress(OSError):
        click.echo(line, err=True)


def _describe(exc: Exception) -> str:
    """One line for an exception that is not a ClibdError."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller --batch-size"
    return f"internal error ({type(exc).__name__}: {exc}); rerun with -v for the traceback"


def _verbosity(ctx: click.Context) -> int:
    settings = ctx.find_object(Settings)
    return settings.verbosity if settings else 0


@click.group(cls=ClibdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="clibd")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where models run; auto uses a CUDA GPU when one is visible.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Arithmetic for embedding (not training): auto = bf16 on a GPU and on CPUs with native "
                   "bf16 (AVX512-BF16/AMX; about 2x faster, vectors within 1e-5 cosine), else fp32.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="CPU threads for PyTorch, for index's graph (the same graph only on one) and calibration, "
                   "and for the programs evaluate runs (vsearch, blastn, mmseqs)  [default: PyTorch's choice, "
                   "usually all cores; one for index's graph and calibration; all cores for the programs]")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed for every random choice.")
@click.option("-v", "--verbose", count=True, help="More log output (repeatable); tracebacks on internal errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, device: str, precision: str, threads: int | None, seed: int, verbose: int,
        quiet: bool) -> None:
    """Classify insects from DNA barcodes and specimen photos with CLIBD embeddings.

    \b
    Typical use:
      clibd classify barcodes.fasta > predictions.tsv     # the bundled COI-5P reference
      clibd index --model kmer ref.fasta -o coi_ref/      # your own reference (SINTAX headers)
      zcat run42.fasta.gz | clibd classify --index coi_ref/ - > run42.tsv

    A model of your own: prepare a dataset, train on it, index references with it, classify;
    evaluate scores it. Results go to stdout, logs and progress to stderr; options of clibd
    itself (below) come before the command. Run `clibd COMMAND --help` for details.
    """
    # Torch's OpenMP threads wait for work asleep unless OMP_WAIT_POLICY says otherwise: spinning, a thread
    # whose partner another job has taken off the CPU burns the rest of its turn (embedding BOLD train on
    # two threads with other jobs beside it took 23 s, 4-5 times the CPU of one thread; benchmarks/README.md);
    # the same vectors either way. Read once, when torch loads OpenMP: classify loads its model before it
    # applies --threads, so it is set here, before any command imports torch. Not for train, whose threads
    # work nearly without pause: asleep, they trained 20-30 % fewer samples a second (benchmarks/README.md).
    if ctx.invoked_subcommand != "train":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    verbosity = -1 if quiet else verbose
    ctx.obj = Settings(device=device, precision=precision, threads=threads, seed=seed, verbosity=verbosity,
                       command_line=ctx.meta.get("clibd.command_line", "clibd"))
    level = logging.ERROR if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("clibd: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
