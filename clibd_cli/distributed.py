"""Process-group setup for `clibd train`, `embed` and `index`: one process, torchrun, or srun.

A process knows it is one of many from its environment: torchrun sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; Slurm's srun sets ``SLURM_PROCID``, ``SLURM_NTASKS`` and
``SLURM_LOCALID``. GPUs talk over NCCL, CPUs over gloo. Only rank 0 writes files and logs.

``clibd train|embed|index --nproc-per-node N`` hands ``-m clibd_cli ARGS``
(``clibd_cli/__main__.py``, the ``clibd`` command line) to torchrun, which this module starts
(``python -m clibd_cli.distributed``: :func:`launch`). torch is imported inside the
functions that need it: the k-mer mode of ``clibd index`` runs without it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from clibd_cli.defaults import STOP_SIGNALS
from models.errors import ClibdError, counted

if TYPE_CHECKING:
    import torch

log = logging.getLogger("clibd")
WAIT_FOR_OTHERS = timedelta(hours=12)
PR_SET_PDEATHSIG = 1  # prctl option: the signal this process gets when its parent dies (linux/prctl.h)


@dataclass(frozen=True)
class World:
    """Where this process stands among the training processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    launched: bool = False  # started by torchrun: a process group even of one (NCCL checked on one GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.size > 1 or self.launched


def detect(environ: dict[str, str] | None = None) -> World:
    """Rank, local rank and world size from torchrun's or srun's environment variables."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return World(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]), launched=True)
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return World(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"]))
    return World()


def init(world: World, device: str, timeout: timedelta | None = None) -> str:
    """Join the process group (NCCL on GPU, gloo on CPU; collectives give up after ``timeout``,
    default torch's); return this process's device."""
    if device == "cuda":  # one GPU per process; srun --gpus-per-task shows each process just one
        import torch

        device = f"cuda:{world.local_rank % torch.cuda.device_count()}"
        torch.cuda.set_device(device)
    if not world.enabled:
        return device
    if "MASTER_ADDR" not in os.environ:
        if int(os.environ.get("SLURM_NNODES", "1")) > 1:
            raise ClibdError("multi-node srun: export MASTER_ADDR (e.g. the first host of "
                             "`scontrol show hostnames $SLURM_JOB_NODELIST`) and MASTER_PORT")
        os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ.setdefault("MASTER_PORT", "29500")
    import torch.distributed as dist

    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=timeout)
    return device


def shutdown(finished: bool = False) -> None:
    """Leave the process group if this process joined one; with ``finished`` (every rank got to
    the end), first wait for the others, so no gloo work is in flight when the group goes (a
    rank once aborted at exit, "terminate called without an active exception", after a run
    that had finished). Not after a failure: a rank that died would never reach the barrier."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if finished:
            try:
                dist.barrier()
            except Exception:  # noqa: BLE001 - a rank that failed left the group: nothing to wait for
                log.debug("a process left before the end; not waiting for it")
        dist.destroy_process_group()


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. "an interrupt arrived")."""
    if not world.enabled:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([int(flag)])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(obj, world: World) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (plain Python objects)."""
    if not world.enabled:
        return [obj]
    import torch.distributed as dist

    out: list = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def gather_rows(rows: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate every rank's ``[n_r, D]`` rows in rank order (n_r may differ by rank)."""
    if not world.enabled:
        return rows
    import torch
    import torch.distributed as dist

    sizes = gather_objects(rows.shape[0], world)
    padded = torch.zeros((max(sizes), *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[: rows.shape[0]] = rows
    out = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(out, padded)
    return torch.cat([part[:n] for part, n in zip(out, sizes)])


def launch(nproc_per_node: int, argv: list[str]) -> int:
    """Re-run this command line under torchrun with ``nproc_per_node`` processes; its exit code, or
    128 + the first stop signal (SIGINT, ``defaults.STOP_SIGNALS``) this process received.

    torchrun starts in a session of its own (:func:`_torchrun`), so the one way a stop signal reaches
    it is from here, and once: the first one received is passed on (torchrun passes it to the
    workers, which stop as for Ctrl-C and save), later ones are ignored while we wait for them.
    Sent to the whole process group (Ctrl-C, a closed terminal, ``kill -- -PGID``), each signal
    reached torchrun twice, directly and passed on: on the third it stopped waiting for its workers
    and clibd returned while they were still saving ``last/``."""
    torchrun = ["--standalone", f"--nproc-per-node={nproc_per_node}", "-m", "clibd_cli", *argv]
    log.info("launching %s: torchrun %s", counted(nproc_per_node, "process", "processes"), shlex.join(torchrun))
    workers = subprocess.Popen([sys.executable, "-m", "clibd_cli.distributed", str(os.getpid()), *torchrun],
                               start_new_session=True)
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        if len(received) == 1:
            workers.send_signal(signum)
        else:
            log.warning("%s: already stopping; waiting for the processes to finish", signal.Signals(signum).name)

    for stop in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(stop, forward)
    code = workers.wait()
    return 128 + received[0] if received else code  # as shells say; torchrun itself exits 1 on a signal


def _torchrun(argv: list[str]) -> None:
    """torchrun with ``argv[1:]``, for :func:`launch` (``argv[0]``: the clibd process that launched
    it). On Linux the kernel sends it SIGTERM if that clibd dies, even by SIGKILL
    (``PR_SET_PDEATHSIG``): it stops its workers as for a ``kill`` rather than run on unseen in its
    own session. Elsewhere it and its workers outlive a clibd killed by SIGKILL."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(argv[0]):  # clibd died before the kernel was asked to watch it
        sys.exit(128 + signal.SIGTERM)
    from torch.distributed.run import main

    main(argv[1:])


@dataclass(frozen=True)
class ParsedOption:
    """One option of a ``clibd`` command as parsed, for :func:`option_words`."""

    opts: tuple[str, ...]  # its spellings, e.g. ("-o", "--output")
    value: Any
    default: Any = None
    kind: str = "value"  # "value", "flag" (written when set) or "count" (written as many times as counted)


def option_words(options: Iterable[ParsedOption]) -> list[str]:
    """The words that give ``options`` again: each value that is not the default (a tuple joined by
    commas) after the option's long spelling, each set flag, each counted option as often as
    counted. ``clibd train`` records them (args.json) and runs them again under torchrun."""
    words: list[str] = []
    for option in options:
        if option.kind == "count":
            words += [option.opts[0]] * option.value
        elif option.kind == "flag":
            words += [option.opts[0]] if option.value else []
        else:
            text = ",".join(option.value) if isinstance(option.value, tuple) else option.value
            if option.value is not None and str(text) != str(option.default):
                words += [option.opts[-1] if option.opts[-1].startswith("--") else option.opts[0], str(text)]
    return words


def relaunch_args(command_line: str) -> list[str]:
    """The arguments of a ``clibd ...`` command line as typed, less ``--nproc-per-node``, for :func:`launch`."""
    words, out = shlex.split(command_line)[1:], []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--nproc-per-node":
            skip = True
        elif not word.startswith("--nproc-per-node="):
            out.append(word)
    return out


@contextmanager
def joined(device: str) -> Iterator[tuple[World, str]]:
    """This process's place among the processes torchrun or srun started (one: no process group)
    and its device, for the duration of an embedding. Ranks other than 0 log warnings only (e.g.
    the records they skip) and exit quietly on a ``ClibdError`` (every rank fails alike; rank 0
    says why). A process done with its share waits for the others for up to :data:`WAIT_FOR_OTHERS`
    (a resumed run can leave one process far more to do than another)."""
    world = detect()
    if not world.is_main:
        log.setLevel(max(log.level, logging.WARNING))
    device = init(world, device, timeout=WAIT_FOR_OTHERS)
    finished = False
    try:
        yield world, device
        finished = True
    except ClibdError:
        if not world.is_main:
            raise SystemExit(1) from None
        raise
    finally:
        shutdown(finished)  # after a clean block, wait for the others: no gloo work in flight at exit


if __name__ == "__main__":  # torchrun for launch()
    _torchrun(sys.argv[1:])
