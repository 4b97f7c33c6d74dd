"""The CLIBD model: image, DNA and text towers aligned in one embedding space."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.config import TOWERS, architecture
from models.dna import build_dna_encoder, dna_tokenizer
from models.errors import ModelError
from models.text import build_text_encoder, text_tokenizer
from models.tokenizers import KmerTokenizer, OverlappingKmerTokenizer, TextTokenizer

MAX_LOGIT_SCALE = 100.0


class AbsentTowers(nn.Module):
    """The saved tensors of towers a model was loaded without, and its whole config: only for its
    fingerprint. Held as non-persistent buffers, so ``.float()``, ``.half()`` and ``.to()`` cast
    them as they would have cast the towers, and ``state_dict()`` leaves them out."""

    def __init__(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.config = config
        self.names = sorted(tensors)
        for i, name in enumerate(self.names):
            self.register_buffer(f"t{i}", tensors[name], persistent=False)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"t{i}") for i, name in enumerate(self.names)}


class CLIBD(nn.Module):
    """Any subset of the three towers plus a learnable logit scale (init ln(1/0.07)).

    Build it with :func:`models.create_model`; ``config`` must be a resolved config. The
    ``encode_*`` methods return L2-normalised embeddings of size ``embed_dim``.
    """

    def __init__(self, config: dict[str, Any], load_pretrained: bool = True):
        super().__init__()
        self.config = copy.deepcopy(config)
        self.extra: dict[str, Any] = {}  # the ``extra`` dict saved with the model, if any
        self.absent: AbsentTowers | None = None  # towers left unbuilt by models.factory.load_towers
        dim = config["embed_dim"]
        image, dna, text = config["image"], config["dna"], config["text"]
        self.image_encoder = None
        if image:
            from models.image import ImageEncoder  # timm loads only for models with an image tower

            self.image_encoder = ImageEncoder(image, dim, load_pretrained)
        self.dna_encoder = build_dna_encoder(dna, dim, load_pretrained) if dna else None
        self.text_encoder = build_text_encoder(text, dim, load_pretrained) if text else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self._dna_tokenizer = dna_tokenizer(dna) if dna else None
        self._text_tokenizer = text_tokenizer(text) if text else None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The towers this model has, in the order image, dna, text."""
        return tuple(tower for tower in TOWERS if self.config[tower])

    @property
    def saved_modalities(self) -> tuple[str, ...]:
        """The towers of the model as saved: :attr:`modalities` and those of :attr:`absent` (left
        unbuilt by ``models.factory.load_towers``)."""
        config = self.config if self.absent is None else self.absent.config
        return tuple(tower for tower in TOWERS if config[tower])

    @property
    def embed_dim(self) -> int:
        return self.config["embed_dim"]

    @property
    def dna_tokenizer(self) -> KmerTokenizer | OverlappingKmerTokenizer:
        return self._require("dna", self._dna_tokenizer)

    @property
    def text_tokenizer(self) -> TextTokenizer:
        return self._require("text", self._text_tokenizer)

    def tokenize_dna(self, barcodes: Sequence[str]) -> dict[str, torch.Tensor]:
        """Barcodes -> ``{"input_ids", "attention_mask"}`` LongTensors [B, L] (on the CPU)."""
        return self.dna_tokenizer(barcodes)

    def label_string(self, ranks: dict[str, str | None]) -> str:
        """The text tower's input for a lineage (``models.tokenizers.label_string``, this model's
        word for a missing rank)."""
        from models.tokenizers import label_string

        return label_string(ranks, self._require("text", self.config["text"])["missing_rank"])

    def tokenize_text(self, labels: Sequence[str]) -> dict[str, torch.Tensor]:
        """Label strings (see :meth:`label_string`) -> ``{"input_ids", "attention_mask"}``."""
        return self.text_tokenizer(labels)

    def image_transform(self, train: bool = False) -> Callable:
        """PIL RGB image -> float tensor [3, S, S] as this model's image tower expects it."""
        from models.image import image_transform

        return image_transform(self._require("image", self.config["image"]), train)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self._require("image", self.image_encoder)(pixels), dim=-1)

    def encode_dna(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self._require("dna", self.dna_encoder)(input_ids, attention_mask), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self._require("text", self.text_encoder)(input_ids, attention_mask), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Embed the modalities present in ``batch`` (keys ``image``, ``dna_input_ids`` +
        ``dna_attention_mask``, ``text_input_ids`` + ``text_attention_mask``); adds ``logit_scale``
        (exp of the parameter, clamped at 100)."""
        out = {}
        if "image" in batch:
            out["image"] = self.encode_image(batch["image"])
        if "dna_input_ids" in batch:
            out["dna"] = self.encode_dna(batch["dna_input_ids"], batch["dna_attention_mask"])
        if "text_input_ids" in batch:
            out["text"] = self.encode_text(batch["text_input_ids"], batch["text_attention_mask"])
        out["logit_scale"] = self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        return out

    def fingerprint(self) -> str:
        """sha256 over the canonical architecture JSON and every tensor (name, dtype, shape, bytes).

        The towers of :attr:`absent` count as built, so a model loaded with towers left out keeps
        the whole model's fingerprint."""
        config, tensors = self.config, dict(self.state_dict())
        if self.absent is not None:
            config = self.absent.config
            tensors.update(self.absent.tensors())
        digest = hashlib.sha256()
        digest.update(json.dumps(architecture(config), sort_keys=True, separators=(",", ":")).encode())
        for name, tensor in sorted(tensors.items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"\0{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
            digest.update(flat.view(torch.uint8).numpy())
        return digest.hexdigest()

    def _require(self, tower: str, part: Any) -> Any:
        if part is None:
            raise ModelError(f"this model has no {tower} tower (it has: {', '.join(self.modalities)})")
        return part
