"""Import the CLIBD authors' checkpoints and BarcodeBERT weights into clibd models.

Upstream layouts (of the CLIBD authors' published code and checkpoints):

- CLIBD ``best.pth``: the ``state_dict`` of ``SimpleCLIP`` with ``image_encoder.base_image_encoder.*``
  (timm ViT; rank-4 LoRA q/v adapters in every block, even when fully fine-tuned),
  ``dna_encoder.base_dna_encoder.*`` (BarcodeBERT ``BertForMaskedLM`` whose MLM decoder is the
  new head), ``language_encoder.base_language_encoder.*`` + ``language_encoder.proj.*`` and
  ``logit_scale``. The LoRA adapters have no scaling (``W x + B A x``), so they are folded
  exactly into the base weights.
- BarcodeBERT 2023 (``model_41.pth``: ``BertForMaskedLM``, k=5) and v2 (``BertForTokenClassification``,
  a ``{"model", "bert_config", ...}`` dict or a Hugging Face directory): only the BERT weights are
  kept, as the DNA tower's initialisation.

The files are read by :mod:`models.importing`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.clibd import CLIBD
from models.config import KMER_SPECIALS, load_config_source
from models.errors import ModelError, counted
from models.factory import create_model
from models.weights import check_state_dict

UPSTREAM_PRESET = "clibd-paper"
# Config fields that make clibd's towers compute what the upstream towers compute, checked against
# the authors' code in tests/test_import_upstream.py. Upstream lines (bioscan-ml/clibd 7d73f80):
# image: ToTensor -> Resize(256) -> CenterCrop(224), no Normalize (bioscanclip/util/dataset.py:219-221);
# dna: [0 (<MASK>), *5-mers of the N-padded 660 nt] (model/dna_encoder.py:61), no attention mask
# (model/simple_clip.py:45), logits.softmax(-1).mean(1) over every position (dna_encoder.py:137);
# text: "order family genus species" with not_classified for missing ranks (dataset.py:153),
# 20 tokens (dataset.py:280), last_hidden_state.mean(1) over all 20 (model/language_encoder.py:89).
UPSTREAM_COMPAT: dict[str, dict[str, Any]] = {
    "image": {"mean": None, "std": None, "resize_float": True},
    "dna": {"k": 5, "max_len": 660, "kmer_vocab": "barcodebert-2023", "prepend_token": 0,
            "attend_padding": True, "pooling": "mlm-softmax-mean"},
    "text": {"max_len": 20, "pooling": "mean-all-positions", "missing_rank": "not_classified"},
}
# upstream tower prefix -> clibd tower
UPSTREAM_TOWERS = {"image_encoder.": "image", "dna_encoder.": "dna", "language_encoder.": "text"}
# Renames applied by upstream ``update_checkpoint_param_names`` for older checkpoints.
_LEGACY_NAMES = {"lora_vit": "base_image_encoder", "lora_barcode_bert": "base_dna_encoder",
                 "lora_bert": "base_language_encoder"}
# Upstream prefix -> clibd prefix, first match wins; None drops the tensor (unused upstream).
_CLIBD_RULES: list[tuple[str, str | None]] = [
    ("image_encoder.base_image_encoder.head.", "image_encoder.proj."),
    ("image_encoder.base_image_encoder.", "image_encoder.backbone."),
    ("dna_encoder.base_dna_encoder.bert.", "dna_encoder.bert."),
    ("dna_encoder.base_dna_encoder.cls.predictions.transform.", "dna_encoder.transform."),
    ("dna_encoder.base_dna_encoder.cls.predictions.decoder.", "dna_encoder.proj."),
    ("dna_encoder.base_dna_encoder.cls.predictions.bias", None),  # the old 1027-way MLM bias
    ("language_encoder.base_language_encoder.pooler.", None),  # BERT pooler, never used
    ("language_encoder.base_language_encoder.", "text_encoder.bert."),
    ("language_encoder.proj.", "text_encoder.proj."),
    ("logit_scale", "logit_scale"),
]
# Buffers older transformers versions saved with BERT embeddings; not weights.
_BUFFERS = re.compile(r"embeddings\.(position_ids|token_type_ids)$")
_VIT_LORA = re.compile(r"^(.*\.attn\.qkv)\.qkv\.weight$")
_BERT_LORA = re.compile(r"^(.*\.attention\.self\.(?:query|value))\.w\.weight$")


@dataclass
class Imported:
    """An imported model and what the conversion did (for the log and the model's ``extra``)."""

    model: CLIBD
    notes: list[str] = field(default_factory=list)


def import_clibd_checkpoint(state: dict[str, torch.Tensor], preset: str | Path = UPSTREAM_PRESET,
                            modalities: tuple[str, ...] | None = None,
                            embed_dim: int | None = None) -> Imported:
    """A CLIBD model whose towers reproduce an upstream CLIBD checkpoint's forward pass.

    ``preset`` gives the tower sizes (the published models are ``clibd-paper``); the compat fields
    of :data:`UPSTREAM_COMPAT` are set on top. The towers are those present in ``state`` (checked
    against ``modalities`` when given, e.g. from the upstream yaml). Strict: every tensor must be
    used and every weight of the model must be provided, with the right shape.
    """
    state = {_legacy_name(name): tensor for name, tensor in state.items()}
    found = tuple(tower for prefix, tower in UPSTREAM_TOWERS.items()
                  if any(name.startswith(prefix) for name in state))
    if not found:
        bert = any(name.endswith("embeddings.word_embeddings.weight") for name in state)
        raise ModelError(f"not a CLIBD checkpoint: no image_encoder./dna_encoder./language_encoder. "
                         f"tensors (found {_few(state)})"
                         + ("; it looks like BarcodeBERT weights: --from barcodebert" if bert else ""))
    if modalities is not None and set(modalities) != set(found):
        raise ModelError(f"the upstream config has towers {', '.join(modalities)} but the checkpoint "
                         f"has {', '.join(found)}")
    state, folded = _fold_lora(state)
    mapped, origin = {}, {}
    for name, tensor in state.items():
        target = _map_name(name)
        if target is not None:
            mapped[target], origin[target] = tensor, name
    _check_dna_vocabulary(mapped)
    if "dna" in found:
        _check_bert_dna(preset)
    overrides = {tower: UPSTREAM_COMPAT[tower] for tower in found}
    model = create_model(preset, modalities=found, **overrides,
                         **({"embed_dim": embed_dim} if embed_dim is not None else {}))
    check_state_dict(model.state_dict(), mapped, "checkpoint does not fit the upstream CLIBD layout",
                     lambda name: origin.get(name) or _upstream_name(name),
                     f"most tensors do not fit the sizes of {preset}: give the checkpoint's "
                     "architecture with --preset (a preset or a config JSON)")
    model.load_state_dict(mapped, strict=True)
    notes = [f"towers: {', '.join(found)}"]
    if folded:
        notes.append(f"folded {counted(folded, 'LoRA adapter')} into the base weights")
    return Imported(model.eval(), notes)


def import_barcodebert(state: dict[str, torch.Tensor], hf_config: dict[str, Any],
                       preset: str | Path = UPSTREAM_PRESET) -> Imported:
    """``preset`` with its DNA tower initialised from BarcodeBERT (2023 or v2) weights.

    The BERT sizes, k and the k-mer vocabulary layout come from the weights (heads from the stored
    BERT config, else the BertConfig default of 12, which the 2023 loader used). The MLM or
    classification head is left out; the DNA projection and the other towers are freshly
    initialised (seed them beforehand).
    """
    bare = any(name.startswith("embeddings.") for name in state)  # saved from a bare BertModel
    if bare:
        state = {f"bert.{name}": tensor for name, tensor in state.items()}
    dropped = sorted(n for n in state if n.startswith(("cls.", "classifier.", "bert.pooler.")))
    bert = {name.removeprefix("bert."): tensor for name, tensor in state.items()
            if name not in dropped and not _BUFFERS.search(name)}
    if "embeddings.word_embeddings.weight" not in bert:
        clibd = any(name.startswith(tuple(UPSTREAM_TOWERS)) for name in state)
        raise ModelError(f"not a BarcodeBERT checkpoint: no bert.embeddings.word_embeddings.weight "
                         f"(found {_few(state)})"
                         + ("; it looks like a CLIBD checkpoint: --from clibd-checkpoint" if clibd else ""))
    block = _barcodebert_block(bert, hf_config)
    _check_bert_dna(preset)
    model = create_model(preset, dna=block)
    check_state_dict(model.dna_encoder.bert.state_dict(), bert,
                     "checkpoint does not fit the BarcodeBERT layout",
                     lambda name: name if bare else f"bert.{name}")
    model.dna_encoder.bert.load_state_dict(bert, strict=True)
    notes = [f"DNA tower: k={block['k']} ({block['kmer_vocab']} vocabulary), {block['num_layers']} layers, "
             f"{block['num_heads']} heads, width {block['hidden_size']}"]
    if dropped:
        notes.append(f"left out the pretraining head ({counted(len(dropped), 'tensor')}, e.g. {dropped[0]})")
    return Imported(model.eval(), notes)


def _fold_lora(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """Replace LoRA-wrapped linears by plain ones with W + B @ A (scale 1, as upstream computes)."""
    state = dict(state)
    folded = 0
    for name in list(state):
        if match := _VIT_LORA.match(name):  # fused qkv: q gets the first, v the last `dim` rows
            base = match[1]
            original = state.pop(name)
            weight, dim = _matrix(original, name).double(), original.shape[1]
            weight[:dim] += _lora_delta(state, f"{base}.linear_a_q", f"{base}.linear_b_q", (dim, dim))
            weight[-dim:] += _lora_delta(state, f"{base}.linear_a_v", f"{base}.linear_b_v", (dim, dim))
            _put(state, base, weight.to(original.dtype), state.pop(f"{base}.qkv.bias", None))
            folded += 2
        elif match := _BERT_LORA.match(name):
            base = match[1]
            original = state.pop(name)
            weight = _matrix(original, name).double() + _lora_delta(state, f"{base}.w_a", f"{base}.w_b",
                                                                    tuple(original.shape))
            _put(state, base, weight.to(original.dtype), state.pop(f"{base}.w.bias", None))
            folded += 1
    return state, folded


def _lora_delta(state: dict[str, torch.Tensor], a_name: str, b_name: str,
                shape: tuple[int, ...]) -> torch.Tensor:
    """B @ A of one adapter; ModelError unless it is a ``shape`` matrix (that of the weight it adds to)."""
    try:
        a, b = state.pop(f"{a_name}.weight"), state.pop(f"{b_name}.weight")
    except KeyError as exc:
        raise ModelError(f"checkpoint has a LoRA-wrapped layer without its adapter {exc.args[0]}") from exc
    if a.dim() != 2 or b.dim() != 2 or (b.shape[0], a.shape[1]) != shape or b.shape[1] != a.shape[0]:
        raise ModelError(f"checkpoint's LoRA adapter {b_name} {tuple(b.shape)} x {a_name} {tuple(a.shape)} "
                         f"does not make the {shape} of the weight it adapts")
    return b.double() @ a.double()


def _matrix(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """``tensor`` if it is a matrix; ModelError naming it otherwise."""
    if tensor.dim() != 2:
        raise ModelError(f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, not a matrix")
    return tensor


def _put(state: dict[str, torch.Tensor], base: str, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    state[f"{base}.weight"] = weight
    if bias is not None:
        state[f"{base}.bias"] = bias


def _map_name(name: str) -> str | None:
    """The clibd name of an upstream tensor; None for tensors upstream never uses; unknown names kept."""
    if _BUFFERS.search(name):
        return None
    for prefix, target in _CLIBD_RULES:
        if name.startswith(prefix):
            return None if target is None else target + name[len(prefix):]
    return name  # reported as unexpected by the strict check


def _upstream_name(name: str) -> str:
    """The upstream key a clibd tensor name is converted from (:func:`_map_name` reversed)."""
    for prefix, target in _CLIBD_RULES:
        if target is not None and name.startswith(target):
            return prefix + name[len(target):]
    return name


def _check_dna_vocabulary(mapped: dict[str, torch.Tensor]) -> None:
    words = mapped.get("dna_encoder.bert.embeddings.word_embeddings.weight")
    expected = 4 ** 5 + len(KMER_SPECIALS["barcodebert-2023"])
    if words is not None and words.dim() == 2 and words.shape[0] != expected:  # others: the strict check
        raise ModelError(f"the checkpoint's DNA tower has {words.shape[0]} tokens; only the 2023 5-mer "
                         f"BarcodeBERT ({expected} tokens) is supported (not the k=4 BarcodeBERT variants)")


def _check_bert_dna(preset: str | Path) -> None:
    """ModelError unless ``preset``'s DNA tower (if any) is a BERT, which BarcodeBERT weights fit."""
    tower = (load_config_source(preset)[0].get("dna") or {}).get("tower", "bert")
    if tower != "bert":
        raise ModelError(f"{preset}: its DNA tower is a {tower}, which BarcodeBERT weights cannot initialise; "
                         f"choose a preset with a BERT DNA tower (e.g. {UPSTREAM_PRESET})")


def _barcodebert_block(bert: dict[str, torch.Tensor], hf_config: dict[str, Any]) -> dict[str, Any]:
    """DNA block overrides describing the BERT in ``bert`` (keys without the ``bert.`` prefix)."""
    name = "embeddings.word_embeddings.weight"
    vocab, hidden = _matrix(bert[name], name).shape
    layout = next(((name, k) for name, specials in KMER_SPECIALS.items() for k in range(1, 9)
                   if 4 ** k + len(specials) == vocab), None)
    if layout is None:
        raise ModelError(f"BarcodeBERT vocabulary of {vocab} tokens is not 4^k k-mers plus "
                         "<MASK>/<CLS>/<UNK> or <MASK>/<UNK> (N-aware vocabularies are not supported)")
    layers = {int(m[1]) for name in bert if (m := re.match(r"encoder\.layer\.(\d+)\.", name))}
    intermediate = bert.get("encoder.layer.0.intermediate.dense.weight")
    positions = bert.get("embeddings.position_embeddings.weight")
    if not layers or intermediate is None or positions is None:
        raise ModelError("BarcodeBERT checkpoint lacks encoder layers or position embeddings")
    _matrix(intermediate, "encoder.layer.0.intermediate.dense.weight")
    _matrix(positions, "embeddings.position_embeddings.weight")
    heads = hf_config.get("num_attention_heads", 12)
    if not isinstance(heads, int) or heads < 1 or hidden % heads:
        raise ModelError(f"BarcodeBERT config: {heads!r} attention heads do not divide width {hidden}")
    kwargs = {key: hf_config[key] for key in ("hidden_act", "layer_norm_eps") if key in hf_config}
    if "embeddings.token_type_embeddings.weight" in bert:
        kwargs["type_vocab_size"] = bert["embeddings.token_type_embeddings.weight"].shape[0]
    return {"k": layout[1], "kmer_vocab": layout[0], "kmer_mask": "within", "prepend_token": None,
            "hidden_size": hidden, "num_layers": max(layers) + 1, "num_heads": heads,
            "intermediate_size": intermediate.shape[0],
            "max_position_embeddings": positions.shape[0], "bert_kwargs": kwargs, "pretrained": None}


def _legacy_name(name: str) -> str:
    for old, new in _LEGACY_NAMES.items():
        name = name.replace(f".{old}.", f".{new}.")
    return name


def _few(names: dict[str, Any] | list[str], count: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:count]) + (f", ... ({len(names)} in all)" if len(names) > count else "")
