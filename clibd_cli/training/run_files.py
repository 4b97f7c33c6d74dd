"""The run directory's records besides its checkpoints (``state.py``): ``metrics.jsonl`` (one JSON
line per logged step and validation, flushed as written) and ``args.json`` (the resolved options,
command line and versions, with each resumption appended)."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from models.files import atomic_open


def append_metrics(path: Path, record: dict) -> None:
    """Append one JSON line and flush it to disk (metrics survive a crash); NaN and inf as null."""
    record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()


def keep_metrics(path: Path, up_to_step: int) -> None:
    """Drop metrics.jsonl lines past ``up_to_step`` (written after the checkpoint a run resumes from)
    and any line a killed run left half-written."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if _step(line) <= up_to_step]
        with atomic_open(path) as handle:
            handle.write("".join(line + "\n" for line in lines))


def _step(line: str) -> float:
    """The step of a metrics.jsonl line; infinity for a line that is not a whole record."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


# Options that decide which parameters train: last/'s optimiser state fits only the same ones.
FIXED_ON_RESUME = ("modalities", "freeze", "lora")


def changed_on_resume(run: Path, args: dict) -> list[str]:
    """The options of :data:`FIXED_ON_RESUME` that ``args`` (``loop.TrainConfig``) sets otherwise than
    the run's args.json, as the run's words (``--lora 0``); none if args.json cannot be read."""
    try:
        first = json.loads((run / "args.json").read_text())["args"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    words = []
    for name in FIXED_ON_RESUME:
        if name in first and json.loads(json.dumps(args[name])) != first[name]:
            value = ",".join(first[name]) if isinstance(first[name], list) else first[name]
            words.append(f"--{name} {value}" if value != "" else f"no --{name}")
    return words


def write_args(run: Path, args: dict, command: list[str], world_size: int, resumed_at: int | None) -> None:
    """RUN/args.json: the resolved options ``args`` (``loop.TrainConfig``), the ``command`` line (its words),
    versions; resumptions are appended."""
    from clibd_cli import __version__

    run.mkdir(parents=True, exist_ok=True)
    path = run / "args.json"
    record = json.loads(path.read_text()) if resumed_at is not None and path.exists() else {
        "args": args, "command": command,
        "world_size": world_size,
        "versions": {"clibd": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "resumed": []}
    if resumed_at is not None:
        record["resumed"].append({"step": resumed_at, "command": command, "world_size": world_size})
    with atomic_open(path) as handle:
        handle.write(json.dumps(record, indent=2) + "\n")


class Meter:
    """Mean loss, samples/s and the seconds spent waiting for batches since the last train line;
    saved with last/ (:meth:`state`), so that a resumed run's next line covers the whole interval."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.samples = 0
        self.waited = 0.0
        self.start = time.perf_counter()

    def timed(self, batches):
        """The batches of a loader, adding the time spent waiting for each to :attr:`waited`."""
        batches = iter(batches)
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            self.waited += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    def add(self, loss: float, samples: int) -> None:
        self.losses.append(loss)
        self.samples += samples

    def rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.start, 1e-9)

    def state(self) -> dict:
        """What :meth:`restore` needs, as plain values (``train_state.pt``)."""
        return {"losses": list(self.losses), "samples": self.samples, "waited": self.waited,
                "elapsed": time.perf_counter() - self.start}

    def restore(self, state: dict) -> None:
        self.losses, self.samples, self.waited = list(state["losses"]), state["samples"], state["waited"]
        self.start = time.perf_counter() - state["elapsed"]

    def flush(self) -> dict:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {"loss": float(np.mean(self.losses)), "samples_per_s": self.samples / elapsed,
               "data_s": self.waited, "data_share": self.waited / elapsed}
        self.__init__()
        return out
