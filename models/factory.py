"""create_model / load_model: presets, config files and saved model directories -> CLIBD."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import WEIGHTS
from models.clibd import CLIBD, AbsentTowers
from models.config import PRETRAINED_DIR, TOWERS, list_pretrained, load_config_source, resolve_config
from models.errors import ModelError, ModelNotFound
from models.files import read_whole
from models.weights import load_weights


def create_model(name_or_path: str | Path, **overrides: Any) -> CLIBD:
    """Build a model from a preset name, a config JSON file or a saved model directory.

    Overrides: ``embed_dim=int``, ``modalities=("dna", "text")`` (keep only these towers), and
    per-tower dicts merged into the config block, e.g. ``dna={"num_layers": 2}``. Presets and config
    files start from their ``pretrained`` weights (or random init); a model directory loads its
    saved weights (with overrides that keep the tensor shapes, e.g. dropping towers). The model is
    returned in eval mode.
    """
    return _whole(name_or_path, lambda source: _build(load_config_source(source), overrides)[0])


def load_towers(name_or_path: str | Path, towers: Sequence[str]) -> CLIBD:
    """A saved model with only ``towers`` built (a DNA-only use does not import or build BERT; the
    other towers' tensors are kept for the fingerprint) whose :meth:`~models.clibd.CLIBD.fingerprint`
    is still the whole model's, so indexes and embeddings made with the whole model accept it. It
    cannot be saved. Presets and config files are built whole."""
    return _whole(name_or_path, lambda source: _load_towers(source, towers))


def _load_towers(name_or_path: str | Path, towers: Sequence[str]) -> CLIBD:
    source = raw, base_dir, model_dir = load_config_source(name_or_path)
    have = [tower for tower in TOWERS if raw.get(tower)]
    keep = [tower for tower in have if tower in towers]
    if model_dir is None or not keep or keep == have:
        return _build(source, {})[0]
    model, left_out = _build(source, {"modalities": keep})
    model.absent = AbsentTowers(resolve_config(raw, base_dir, use_pretrained=False), left_out)
    return model


def _whole(name_or_path: str | Path, build: Callable[[str | Path], CLIBD]) -> CLIBD:
    """``build(name_or_path)``; a model directory replaced meanwhile (a training run saving its
    ``best/``) is read again, so config.json and the weights come from one version."""
    path = Path(name_or_path)
    return read_whole(path, build) if path.is_dir() else build(name_or_path)


def _build(source: tuple, overrides: dict[str, Any]) -> tuple[CLIBD, dict[str, torch.Tensor]]:
    """The model of a loaded config ``source`` (``load_config_source``) and the saved tensors of
    the towers the overrides dropped (none for presets)."""
    raw, base_dir, model_dir = source
    config = resolve_config(raw, base_dir, overrides, use_pretrained=model_dir is None)
    model = CLIBD(config, load_pretrained=model_dir is None)
    left_out = {}
    if model_dir is not None:
        dropped = tuple(f"{tower}_encoder." for tower in TOWERS if not config[tower])
        left_out = load_weights(model, model_dir / WEIGHTS, raw.get("weights_sha256"), skip_prefixes=dropped)
        model.extra = raw.get("extra") or {}
        if model_dir.resolve().parent == PRETRAINED_DIR.resolve():
            model.float()  # shipped in fp16 to stay small, used in fp32 like the commands use it
    return model.eval(), left_out


def load_model(directory: str | Path) -> CLIBD:
    """Load a model directory written by ``save_model``, bit-exactly (eval mode), or a model shipped
    with clibd (by name, ``list_pretrained()``, or path), whose fp16 weights are upcast to fp32."""
    path = Path(directory)
    if not path.exists() and str(directory) in list_pretrained():
        return create_model(str(directory))
    if not path.exists():
        raise ModelNotFound(f"{path}: model directory not found")
    if not path.is_dir():
        raise ModelError(f"{path}: not a directory (expected a clibd model directory)")
    return create_model(path)
