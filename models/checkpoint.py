"""Model directories: config.json + model.safetensors + tokenizer files, written atomically.

Layout written by :func:`save_model`::

    config.json          resolved model config + format_version, clibd_version, weights_sha256, extra
    model.safetensors    every tensor of the model's state_dict (no pickle anywhere)
    dna_tokenizer.json   the k-mer tokenizer (if the model has a DNA tower)
    text_vocab.txt       the WordPiece vocab (if it has a text tower); config.json points to it
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from models.config import FORMAT_VERSION, ModelError, read_json, vocab_path

if TYPE_CHECKING:
    from models.clibd import CLIBD

__all__ = ["ModelError", "save_model", "load_weights", "check_state_dict", "file_sha256"]

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
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_model_files(model, staging, extra, dtype)
        if target.exists():
            retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
        _fsync_directory(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load_weights(model: torch.nn.Module, path: Path, expected_sha256: str | None = None,
                 skip_prefixes: tuple[str, ...] = ()) -> None:
    """Load a safetensors file into ``model`` bit-exactly (dtypes kept); ModelError on any mismatch.

    Tensors whose names start with one of ``skip_prefixes`` (dropped towers) are ignored.
    """
    if not path.is_file():
        raise ModelError(f"{path}: weights file is missing")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise ModelError(f"{path}: checksum mismatch; the weights file is corrupt or was replaced")
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise ModelError(f"{path}: corrupt or truncated weights file ({exc})") from exc
    state = {name: tensor for name, tensor in state.items() if not name.startswith(skip_prefixes)}
    check_state_dict(model.state_dict(), state, f"{path}: weights do not match the model config")
    model.load_state_dict(state, strict=True, assign=True)


def check_state_dict(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                     what: str) -> None:
    """ModelError naming a few missing, unexpected and wrongly shaped tensors, if there are any."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    problems = [f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                if keys]
    if problems:
        raise ModelError(f"{what}: {'; '.join(problems)}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def clibd_version() -> str:
    try:
        return metadata.version("clibd")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_model_files(model: CLIBD, directory: Path, extra: dict[str, Any] | None,
                       dtype: torch.dtype | None) -> None:
    config = json.loads(json.dumps(model.config))
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    if dtype is not None:
        tensors = {name: t.to(dtype) if t.is_floating_point() else t for name, t in tensors.items()}
    save_file(tensors, str(directory / WEIGHTS), metadata={"format": "pt"})
    if config["dna"]:
        tokenizer = json.dumps(model.dna_tokenizer.to_dict(), indent=2)
        _write_text(directory / "dna_tokenizer.json", tokenizer + "\n")
    if config["text"]:
        shutil.copyfile(vocab_path(config["text"]), directory / TEXT_VOCAB)
        config["text"]["vocab"] = TEXT_VOCAB
    saved = {"format_version": FORMAT_VERSION, "clibd_version": clibd_version(), **config,
             "weights_sha256": file_sha256(directory / WEIGHTS), "extra": extra or {}}
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


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
