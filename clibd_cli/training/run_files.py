"""The run directory's records besides its checkpoints (``state.py``): ``metrics.jsonl`` (one JSON
line per logged step and validation, flushed as written) and ``args.json`` (the resolved options,
command line and versions, with each resumption appended)."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

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
