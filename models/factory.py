"""create_model / load_model: presets, config files and saved model directories -> CLIBD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.checkpoint import WEIGHTS
from models.clibd import CLIBD
from models.config import TOWERS, load_config_source, resolve_config
from models.errors import ModelError
from models.weights import load_weights


def create_model(name_or_path: str | Path, **overrides: Any) -> CLIBD:
    """Build a model from a preset name, a config JSON file or a saved model directory.

    Overrides: ``embed_dim=int``, ``modalities=("dna", "text")`` (keep only these towers), and
    per-tower dicts merged into the config block, e.g. ``dna={"num_layers": 2}``. Presets and config
    files start from their ``pretrained`` weights (or random init); a model directory loads its
    saved weights (with overrides that keep the tensor shapes, e.g. dropping towers). The model is
    returned in eval mode.
    """
    raw, base_dir, model_dir = load_config_source(name_or_path)
    config = resolve_config(raw, base_dir, overrides, use_pretrained=model_dir is None)
    model = CLIBD(config, load_pretrained=model_dir is None)
    if model_dir is not None:
        dropped = tuple(f"{tower}_encoder." for tower in TOWERS if not config[tower])
        load_weights(model, model_dir / WEIGHTS, raw.get("weights_sha256"), skip_prefixes=dropped)
        model.extra = raw.get("extra") or {}
    return model.eval()


def load_model(directory: str | Path) -> CLIBD:
    """Load a model directory written by ``save_model``, bit-exactly (eval mode)."""
    path = Path(directory)
    if not path.exists():
        raise ModelError(f"{path}: model directory not found")
    if not path.is_dir():
        raise ModelError(f"{path}: not a directory (expected a clibd model directory)")
    return create_model(path)
