"""Checkpoints of a training run: model directories plus the state needed to resume exactly.

``RUN/last/`` is a model directory (``models/checkpoint.py``) with ``train_state.pt`` next to the weights:
optimiser and scheduler state, step, epoch, position in the epoch, every rank's random
number generator states and the losses since the last metrics line (``run_files.Meter``). It holds tensors and plain Python values only, is written with
``torch.save`` and read with ``torch.load(weights_only=True)``, so loading it runs no code.
Both directories are replaced atomically: written next to the target, then renamed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from models.errors import ClibdError
from models.files import atomic_path

STATE_FILE = "train_state.pt"


def save_checkpoint(model, directory: Path, extra: dict, state: dict | None = None) -> None:
    """Write ``model`` (and ``state``, if given) to ``directory``, replacing it atomically."""
    from models.checkpoint import write_model

    with atomic_path(directory, directory=True) as staging:
        write_model(model, staging, extra=extra)
        if state is not None:
            with open(staging / STATE_FILE, "wb") as handle:  # a file object: a full disk is its OSError
                torch.save(state, handle)  # (given a path, torch.save says only 'unexpected pos')
                handle.flush()
                os.fsync(handle.fileno())


def last_checkpoint(run: Path) -> Path | None:
    """``RUN/last``, or the previous copy left by a crash in the middle of replacing it."""
    for candidate in (run / "last", *sorted(run.glob(".last.old*/last"))):
        if (candidate / STATE_FILE).is_file():
            return candidate
    return None


def load_state(directory: Path) -> dict:
    """The training state saved with a checkpoint (tensors and plain values only)."""
    path = Path(directory) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ClibdError(f"{path}: no training state to resume from") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise ClibdError(f"{path}: unreadable training state ({exc})") from exc


def rng_state() -> dict:
    """This process's torch, CUDA, numpy and Python random states as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": _listify(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _listify(value):
    return [_listify(v) for v in value] if isinstance(value, tuple) else value
