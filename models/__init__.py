"""clibd's model core: CLIBD towers, tokenizers, contrastive loss and model directories.

    from models import create_model, load_model, save_model
    model = create_model("clibd-small")

Attributes are imported on first use, so ``import models`` (and ``models.tokenizers``) stays
light; torch, timm and transformers load when a model is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.checkpoint import save_model
    from models.clibd import CLIBD
    from models.config import list_models, list_pretrained
    from models.errors import ModelError
    from models.factory import create_model, load_model, load_towers

_EXPORTS = {
    "create_model": "models.factory",
    "load_model": "models.factory",
    "load_towers": "models.factory",
    "save_model": "models.checkpoint",
    "list_models": "models.config",
    "list_pretrained": "models.config",
    "ModelError": "models.errors",
    "CLIBD": "models.clibd",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
