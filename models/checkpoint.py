"""Model directories: config.json + model.safetensors + tokenizer files, written atomically.

Layout written by :func:`save_model`::

    config.json          resolved model config + format_version, clibd_version, weights_sha256, extra
    model.safetensors    every tensor of the model's state_dict (no pickle anywhere)
    dna_tokenizer.json   the k-mer tokenizer (if the model has a DNA tower)
    text_vocab.txt       the WordPiece vocab (if it has a text tower); config.json points to it
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from models.config import FORMAT_VERSION, read_json, vocab_path
from models.errors import ModelError
from models.files import atomic_path, sha256_file, usual_permissions
from models.version import clibd_version

if TYPE_CHECKING:
    from models.clibd import CLIBD

WEIGHTS = "model.safetensors"
TEXT_VOCAB = "text_vocab.txt"


def save_model(model: CLIBD, directory: str | Path, extra: dict[str, Any] | None = None,
               dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` to ``directory`` atomically (temp sibling directory, then rename).

    An existing model directory is replaced; any other existing path is refused. ``extra`` is a
    JSON-able dict stored in config.json (``model.extra`` after loading). ``dtype`` (e.g.
    ``torch.float16``, half the size) stores the floating-point weights in that precision.
    """
    target = Path(directory)
    if target.exists() and not (target.is_dir() and (not any(target.iterdir()) or _is_saved_model(target))):
        raise ModelError(f"{target}: exists and is not a clibd model directory; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, directory=True) as staging:
        write_model(model, staging, extra, dtype)
    return target


def write_model(model: CLIBD, directory: Path, extra: dict[str, Any] | None = None,
                dtype: torch.dtype | None = None) -> None:
    """Write the files of a model directory (the layout above) into the empty folder ``directory``:
    :func:`save_model` fills a temporary folder with them; a training checkpoint adds its state
    (``clibd_cli/training/state.py``)."""
    if model.absent is not None:
        raise ModelError("this model was loaded with towers left out (models.load_towers); saving it would "
                         "drop them: load it whole (models.load_model) to save it")
    config = json.loads(json.dumps(model.config))
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    if dtype is not None:
        tensors = {name: t.to(dtype) if t.is_floating_point() else t for name, t in tensors.items()}
    save_file(tensors, str(directory / WEIGHTS), metadata={"format": "pt"})
    usual_permissions(directory / WEIGHTS)  # safetensors writes it private: colleagues read run folders too
    if config["dna"]:
        tokenizer = json.dumps(model.dna_tokenizer.to_dict(), indent=2)
        _write_text(directory / "dna_tokenizer.json", tokenizer + "\n")
    if config["text"]:
        shutil.copyfile(vocab_path(config["text"]), directory / TEXT_VOCAB)
        config["text"]["vocab"] = TEXT_VOCAB
    saved = {"format_version": FORMAT_VERSION, "clibd_version": clibd_version(), **config,
             "weights_sha256": sha256_file(directory / WEIGHTS), "extra": extra or {}}
    try:
        text = json.dumps(saved, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ModelError(f"save_model: extra must be JSON-serialisable ({exc})") from exc
    _write_text(directory / "config.json", text)
    for name in (WEIGHTS, TEXT_VOCAB):
        if (directory / name).exists():
            with open(directory / name, "rb") as handle:
                os.fsync(handle.fileno())


def _is_saved_model(directory: Path) -> bool:
    """Whether ``directory`` holds a model written by save_model (its config.json has format_version)."""
    try:
        config = read_json(directory / "config.json")
    except ModelError:
        return False
    return isinstance(config, dict) and "format_version" in config


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
