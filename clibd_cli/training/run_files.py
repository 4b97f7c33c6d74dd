"""The run directory's records besides its checkpoints (``state.py``): ``metrics.jsonl`` (one JSON
line per logged step and validation, flushed as written) and ``args.json`` (the resolved options,
command line, training records' fingerprint and versions, with each resumption appended), which a
resume takes its options from and is checked against."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from clibd_cli.io.outputs import UsageError
from clibd_cli.training.state import last_checkpoint
from models.errors import counted
from models.files import atomic_open

log = logging.getLogger("clibd")


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


# Options that change what a run computes (which parameters train, on which records, with which
# schedule, loss and seed, which checkpoint is best/): a resume must give the run's own (check_resume).
# --epochs, --max-steps, --batch-size x processes and --grad-accum are checked by the steps they plan
# (loop._train); --val-limit, --val-every, --workers, --log-every, --threads and --device may differ.
FIXED_ON_RESUME = ("model", "modalities", "train_splits", "lr", "warmup", "weight_decay", "positives",
                   "dna_dna", "label_ranks", "dna_crop", "precision", "freeze", "lora", "best_metric", "seed")
# Options a resume does not take from the run when left out: this command's or this machine's.
NOT_FROM_THE_RUN = ("out", "resume", "device", "threads", "progress")


def read_args(run: Path) -> dict | None:
    """RUN/args.json (see :func:`write_args`), or None where it is missing or unreadable."""
    try:
        record = json.loads((run / "args.json").read_text())
        return record if isinstance(record.get("args"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def checkpoint_for(run: Path, resume: bool) -> Path | None:
    """With ``resume``, RUN/last (``state.last_checkpoint``), which --resume continues, exit 2 where there is
    none; without, None, exit 2 where RUN holds a previous run (a new one would train over its last/)."""
    last = last_checkpoint(run)
    if resume and last is None:
        raise UsageError(f"{run}: nothing to resume (no last/ checkpoint); drop --resume to start")
    if not resume and last is not None:
        raise UsageError(f"{run}: holds a previous run; add --resume to continue it or pick another --out")
    return last


def resume_defaults(run: Path, given: dict, processes: int) -> dict:
    """The run's value (``loop.TrainConfig`` names, lists as tuples) of every option not in ``given``
    (name -> value) on the resuming command line, for ``processes`` processes: a --batch-size that keeps
    the run's global batch where it divides; --modalities given in another order than the run's, the
    run's order (the same towers: the run resumed exactly); none if args.json cannot be read."""
    record = read_args(run)
    if record is None:
        return {}
    args = record["args"]
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in args.items()
              if name not in given and name not in NOT_FROM_THE_RUN}
    theirs, ours = args.get("modalities"), given.get("modalities")
    if theirs and ours and sorted(theirs) == sorted(ours):
        values["modalities"] = tuple(theirs)
    if "batch_size" in values and (batch := values["batch_size"] * record.get("world_size", 1)) % processes == 0:
        values["batch_size"] = batch // processes
    return values


def check_resume(run: Path, options: dict, dataset: dict) -> None:
    """Refuse (exit 2) a resume whose ``options`` (``loop.TrainConfig``) set one of
    :data:`FIXED_ON_RESUME` otherwise than the run's args.json, or whose --data holds other training
    records than the run's, or other barcodes or labels of them (``dataset``: ``datasets.dataset_fingerprint``;
    a moved file is the same).
    What args.json does not record (an older run) is not checked, as -v says."""
    record = read_args(run)
    if record is None:
        log.debug("%s/args.json is missing or unreadable: not checking the options against the run's", run)
        return
    first, changed = record["args"], []
    for name in FIXED_ON_RESUME:
        if name not in first:
            log.debug("%s/args.json does not record --%s (an older run): not checking it", run, _flag(name))
        elif not _same(name, first[name], json.loads(json.dumps(options[name]))):
            changed.append(f"--{_flag(name)} {_shown(options[name])} (the run's: {_shown(first[name])})")
    if changed:
        raise UsageError(f"{run}: the options disagree with the run's: {', '.join(changed)}; give the run's "
                         "values or leave these options out (--resume takes the run's)")
    if record.get("dataset") is None:
        log.debug("%s/args.json does not record the run's training records (an older run): not checking --data",
                  run)
    else:
        _check_data(run, options, record, dataset)


def _check_data(run: Path, options: dict, record: dict, dataset: dict) -> None:
    """Refuse (exit 2) a --data whose training records (``dataset``) are not those of the run's args.json
    ``record``: other ids, or the run's ids with other barcodes or labels (:func:`_same_records`)."""
    theirs, splits, where = record["dataset"], "+".join(options["train_splits"]), record["args"].get("data")
    if _same_records(theirs, dataset):
        if "content_sha256" not in theirs:  # said where it let the data through, not before a refusal
            log.debug("%s/args.json records the ids of the run's training records only (an older run): their ids "
                      "agree; not checking their barcodes and labels", run)
        return
    if (theirs["records"], theirs["ids_sha256"]) == (dataset["records"], dataset["ids_sha256"]):
        what = (f"its {splits} records have the run's ids but other barcodes or labels (sha256 "
                f"{dataset['content_sha256'][:12]}, the run's ({where}) {theirs['content_sha256'][:12]})")
    else:
        what = (f"its {splits} records are {counted(dataset['records'], 'record')} of ids sha256 "
                f"{dataset['ids_sha256'][:12]}, the run's ({where}) {counted(theirs['records'], 'record')} of "
                f"{theirs['ids_sha256'][:12]}")
    raise UsageError(f"{run}: --data {options['data']} is not the run's data: {what}; give the file the run trained "
                     "on (moved or copied is fine) or leave --data out")


def _same_records(theirs: dict, ours: dict) -> bool:
    """Whether the fingerprint of a --data's training records (``ours``: ``datasets.dataset_fingerprint``)
    agrees with the run's (``theirs``) on every field the run's holds (an older run's: number and ids only)."""
    return all(ours.get(key) == value for key, value in theirs.items())


def _same(name: str, theirs, ours) -> bool:
    """Whether two values of option ``name`` agree; a --model path also where it names the same file."""
    if theirs == ours:
        return True
    return name == "model" and os.path.exists(theirs) and os.path.exists(ours) and os.path.samefile(theirs, ours)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _shown(value) -> str:
    """An option's value as typed: ``a,b`` for lists, ``''`` for an empty one, ``5e-04`` as ``0.0005``."""
    if isinstance(value, (list, tuple)):
        return ",".join(value) or "''"
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_args(run: Path, args: dict, command: list[str], world_size: int, resumed_at: int | None,
               dataset: dict) -> None:
    """RUN/args.json: the resolved options ``args`` (``loop.TrainConfig``; --data and a --model path made
    absolute, so that a resume from another folder finds them), the ``command`` line (its words), the
    training records' ``dataset`` fingerprint (``datasets.dataset_fingerprint``), versions; resumptions
    are appended, and a resume's --data of the run's records is kept as the run's (the file moved)."""
    from clibd_cli import __version__

    paths = {name: os.path.abspath(args[name]) for name in ("data", "model") if os.path.exists(args[name])}
    args = {**args, **paths}
    run.mkdir(parents=True, exist_ok=True)
    path = run / "args.json"
    record = json.loads(path.read_text()) if resumed_at is not None and path.exists() else {
        "args": args, "command": command, "dataset": dataset,
        "world_size": world_size,
        "versions": {"clibd": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "resumed": []}
    if resumed_at is not None:
        record["resumed"].append({"step": resumed_at, "command": command, "world_size": world_size})
        if record.get("dataset") and _same_records(record["dataset"], dataset):  # moved:
            record["args"]["data"] = args["data"]  # the next resume finds them without --data
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
