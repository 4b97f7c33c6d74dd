"""Model configs: presets, defaults, overrides and validation (architecture is data, as in open_clip).

A config has ``embed_dim`` and one block per tower (``image``, ``dna``, ``text``); a missing or
null block means the model has no such tower. :func:`resolve_config` fills every default, turns
relative paths into absolute ones and checks types, so the result fully describes the model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from models.errors import ModelError, ModelNotFound

PRESET_DIR = Path(__file__).parent / "configs"
VOCAB_DIR = Path(__file__).parent / "vocab"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"  # trained model directories shipped in the package
TOWERS = ("image", "dna", "text")  # the modalities, one encoder each
RANKS = ("order", "family", "genus", "species")  # the taxonomic ranks clibd labels, coarse to fine
# Rank values that name nothing, as :func:`is_missing_label` compares them (lower case, spaces as
# underscores): BIOSCAN's not_classified, BOLD's None and NA (R's NA), the placeholders of reference
# lineages and taxonomy tables. Every reader of labelled records uses this one set.
MISSING_LABELS = frozenset({"", "not_classified", "none", "na", "unidentified", "unclassified", "unknown"})
FORMAT_VERSION = 1
# Keys save_model adds to config.json next to the model config; they are not architecture.
SAVED_KEYS = ("format_version", "clibd_version", "weights_sha256", "extra")

def is_missing_label(value: str | None) -> bool:
    """Whether a rank value names nothing: None, empty, or one of :data:`MISSING_LABELS` in any case
    (``"NA"``, ``"Not classified"``, ``" unknown "``)."""
    return value is None or value.strip().lower().replace(" ", "_") in MISSING_LABELS


_BERT_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "num_layers": 12,
    "num_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": None,  # null: just enough for max_len
    "dropout": 0.1,
    "bert_kwargs": {},  # further transformers.BertConfig arguments (hidden_act, layer_norm_eps, ...)
    "pretrained": None,  # local Hugging Face BERT directory
    # Compatibility with the upstream CLIBD checkpoints (see COMPAT_DEFAULTS).
    "pooling": "masked-mean",  # masked-mean | mean-all-positions | mlm-softmax-mean
    "attend_padding": False,  # True: BERT ignores the attention mask and attends to padding too
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "image": {
        "backbone": None,  # any timm model name
        "image_size": 224,
        "backbone_kwargs": {},
        "mean": None,  # null: no normalisation, pixels in [0, 1] (the paper's choice)
        "std": None,
        "pretrained": None,  # local timm checkpoint file, or "hub" to download timm's weights
        "resize_float": False,  # True: pixels to float in [0, 1] before resizing (upstream CLIBD)
    },
    "dna": {"tower": "bert", "k": 5, "max_len": 660, "prepend_token": None,
            "kmer_vocab": "barcodebert-2023",
            "kmer_mask": "overlap",  # attended k-mers: overlap | within the barcode (see KMER_MASKS)
            **_BERT_DEFAULTS},
    "text": {"vocab": "wordpiece-uncased", "max_len": 20, **_BERT_DEFAULTS, "hidden_size": 512,
             "num_layers": 4, "num_heads": 8, "intermediate_size": 2048,
             "missing_rank": None},  # label-string word for a missing rank; null leaves the rank out
}
# The "kmer-bag" DNA tower (models/kmer_bag.py): a bag of overlapping k-mers for each k in ks.
KMER_BAG_DEFAULTS: dict[str, Any] = {"tower": "kmer-bag", "ks": [7], "max_len": 1600, "bag_dim": 256,
                                     "hidden_size": 512, "dropout": 0.1, "pretrained": None}
DNA_TOWERS = ("bert", "kmer-bag")
# Fields added for upstream compatibility: left out of fingerprints at these values, so models
# saved before the fields existed keep their fingerprints.
COMPAT_DEFAULTS: dict[str, Any] = {"pooling": "masked-mean", "attend_padding": False,
                                   "kmer_vocab": "barcodebert-2023", "kmer_mask": "overlap",
                                   "missing_rank": None, "resize_float": False, "tower": "bert"}
POOLINGS = ("masked-mean", "mean-all-positions", "mlm-softmax-mean")
# k-mer vocabulary layouts: the special tokens in front of the 4^k k-mers (BarcodeBERT 2023 / v2).
KMER_SPECIALS: dict[str, tuple[str, ...]] = {"barcodebert-2023": ("<MASK>", "<CLS>", "<UNK>"),
                                             "barcodebert-v2": ("<MASK>", "<UNK>")}
# Which k-mers the attention mask keeps: those that overlap the barcode (a last k-mer half in the
# N-padding included), or only those within it (BarcodeBERT's KmerTokenizer, datasets.py:32).
KMER_MASKS = ("overlap", "within")
_RESERVED_BACKBONE_KWARGS = {"img_size", "num_classes", "pretrained"}
_RESERVED_BERT_KWARGS = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                         "intermediate_size", "max_position_embeddings", "hidden_dropout_prob",
                         "attention_probs_dropout_prob", "pad_token_id"}
# block key -> key in a Hugging Face BERT config.json, taken from a pretrained checkpoint
_HF_SIZES = {"hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
             "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
             "max_position_embeddings": "max_position_embeddings"}
_HF_KWARGS = ("hidden_act", "layer_norm_eps", "type_vocab_size")
MAX_K = 8


def list_models() -> list[str]:
    """Names of the bundled presets (untrained architectures)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def list_pretrained() -> list[str]:
    """Names of the trained models shipped in the package (model directories)."""
    return sorted(p.parent.name for p in PRETRAINED_DIR.glob("*/config.json"))


def read_json(path: Path) -> Any:
    """Parse a JSON file; ModelError with a one-line reason when that fails."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read ({exc})") from exc


def load_config_source(name_or_path: str | Path) -> tuple[dict, Path, Path | None]:
    """Find a config: returns (raw config, directory for relative paths, model directory or None).

    An existing file or directory wins over a preset of the same name.
    """
    path = Path(name_or_path)
    if not path.exists() and str(name_or_path) in list_pretrained():
        path = PRETRAINED_DIR / str(name_or_path)
    if not path.exists() and str(name_or_path) in list_models():
        raw = read_json(PRESET_DIR / f"{name_or_path}.json")
        return {"preset": str(name_or_path), **raw}, PRESET_DIR, None
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a clibd model directory (no config.json)")
        raw = read_json(path / "config.json")
        if not isinstance(raw, dict) or "format_version" not in raw:
            raise ModelError(f"{path / 'config.json'}: not a saved clibd model (no format_version)")
        if not isinstance(raw["format_version"], int) or raw["format_version"] > FORMAT_VERSION:
            raise ModelError(f"{path}: model format {raw['format_version']!r} is newer than this clibd "
                             f"supports ({FORMAT_VERSION}); upgrade clibd")
        return raw, path.resolve(), path
    if path.is_file():
        return read_json(path), path.resolve().parent, None
    raise ModelNotFound(f"unknown model {str(name_or_path)!r}: not a trained model "
                     f"({', '.join(list_pretrained()) or 'none shipped'}), a preset "
                     f"({', '.join(list_models())}), a config file or a model directory")


def resolve_config(raw: Any, base_dir: Path, overrides: dict[str, Any] | None = None,
                   use_pretrained: bool = True) -> dict[str, Any]:
    """Apply overrides and defaults to a raw config and validate it.

    Overrides: ``embed_dim``; ``modalities`` (towers to keep); ``image``/``dna``/``text`` as a dict
    whose keys replace those of the block (or None to drop the tower). With ``use_pretrained``
    the sizes of a BERT tower with a ``pretrained`` directory are read from that checkpoint.
    """
    if not isinstance(raw, dict):
        raise ModelError("a model config must be a JSON object")
    cfg = {key: copy.deepcopy(value) for key, value in raw.items() if key not in SAVED_KEYS}
    unknown = set(cfg) - {"preset", "embed_dim", *TOWERS}
    if unknown:
        raise ModelError(f"unknown config key(s): {', '.join(sorted(unknown))}")
    overrides = dict(overrides or {})
    modalities = overrides.pop("modalities", None)
    for key, value in overrides.items():
        if key == "embed_dim":
            cfg[key] = value
        elif key in TOWERS:
            if value is not None and not isinstance(value, dict):
                raise ModelError(f"override {key}= must be a dict or None, got {value!r}")
            cfg[key] = None if value is None else {**(cfg.get(key) or {}), **copy.deepcopy(value)}
        else:
            raise ModelError(f"unknown override {key!r} (expected embed_dim, modalities, image, dna or text)")
    if modalities is not None:
        modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
        for name in modalities:
            if name not in TOWERS:
                raise ModelError(f"unknown modality {name!r} (expected one of {', '.join(TOWERS)})")
            if cfg.get(name) is None:  # clibd train --model RUN/best (dna, text) --modalities image,dna,text
                present = ", ".join(tower for tower in TOWERS if cfg.get(tower) is not None) or "none"
                raise ModelError(f"cannot keep the {name} tower: this model has none (its towers: "
                                 f"{present}); leave {name} out of the modalities, or start from a preset "
                                 "that has it")
        cfg.update({name: None for name in TOWERS if name not in modalities})
    embed_dim = cfg.get("embed_dim")
    if not isinstance(embed_dim, int) or isinstance(embed_dim, bool) or embed_dim < 1:
        raise ModelError(f"embed_dim must be a positive integer, got {embed_dim!r}")
    resolved = {"preset": cfg.get("preset"), "embed_dim": embed_dim}
    for tower in TOWERS:
        block = cfg.get(tower)
        if block is not None and not isinstance(block, dict):
            raise ModelError(f"{tower}: expected an object or null, got {block!r}")
        resolved[tower] = None if block is None else _resolve_block(tower, block, base_dir, use_pretrained)
    if all(resolved[tower] is None for tower in TOWERS):
        raise ModelError("a model needs at least one of the image, dna and text towers")
    return resolved


def architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that defines the model's behaviour (for fingerprints).

    Leaves out the preset name and pretrained paths (provenance) and replaces the text vocab path
    by the sha256 of its content, so a model keeps its fingerprint when saved and loaded elsewhere.
    """
    arch = {key: copy.deepcopy(config[key]) for key in ("embed_dim", *TOWERS)}
    for tower in TOWERS:
        if arch[tower]:
            arch[tower].pop("pretrained")
            for key, default in COMPAT_DEFAULTS.items():
                if arch[tower].get(key, default) == default:
                    arch[tower].pop(key, None)
    if arch["text"]:
        arch["text"]["vocab"] = "sha256:" + hashlib.sha256(vocab_path(arch["text"]).read_bytes()).hexdigest()
    return arch


def vocab_path(text_block: dict[str, Any]) -> Path:
    """The WordPiece vocab file of a resolved text block (bundled name or absolute path)."""
    vocab = text_block["vocab"]
    return VOCAB_DIR / f"{vocab}.txt" if _is_bundled(vocab) else Path(vocab)


def vocab_tokens(path: Path) -> list[str]:
    """The tokens of a WordPiece vocab file, one per line; the line number is the token id."""
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def n_kmer_vocab(block: dict[str, Any]) -> int:
    """Size of the k-mer vocabulary of a resolved DNA block: specials plus the 4^k k-mers."""
    return 4 ** block["k"] + len(KMER_SPECIALS[block["kmer_vocab"]])


def n_dna_tokens(block: dict[str, Any]) -> int:
    """Tokens per barcode: non-overlapping k-mers over max_len, plus the optional prepended token."""
    return -(-block["max_len"] // block["k"]) + (block["prepend_token"] is not None)


def _resolve_block(tower: str, block: dict, base_dir: Path, use_pretrained: bool) -> dict[str, Any]:
    defaults = DEFAULTS[tower]
    if tower == "dna" and block.get("tower", "bert") not in DNA_TOWERS:
        raise ModelError(f"dna.tower must be one of {', '.join(DNA_TOWERS)}, got {block['tower']!r}")
    if tower == "dna" and block.get("tower") == "kmer-bag":
        defaults = KMER_BAG_DEFAULTS
    unknown = set(block) - set(defaults)
    if unknown:
        raise ModelError(f"{tower}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(defaults)})")
    block = {**copy.deepcopy(defaults), **copy.deepcopy(block)}
    if block.get("tower") == "kmer-bag":
        _check_kmer_bag(block)
        return block
    for key in ("pretrained", "vocab"):
        if isinstance(block.get(key), os.PathLike):
            block[key] = os.fspath(block[key])
    pretrained = block["pretrained"]
    if pretrained is not None and pretrained != "hub":
        if not isinstance(pretrained, str):
            raise ModelError(f"{tower}.pretrained must be null, a path or 'hub', got {pretrained!r}")
        block["pretrained"] = str((base_dir / pretrained).resolve())
    if tower == "image":
        _check_image(block)
        return block
    if pretrained == "hub":
        raise ModelError(f"{tower}.pretrained: 'hub' is only supported for the image tower; "
                         "give a local Hugging Face BERT directory")
    for key in ("k", "max_len") if tower == "dna" else ("max_len",):
        _check_int(block, tower, key)
    if tower == "dna" and block["kmer_vocab"] not in KMER_SPECIALS:
        raise ModelError(f"dna.kmer_vocab must be one of {', '.join(KMER_SPECIALS)}, "
                         f"got {block['kmer_vocab']!r}")
    if tower == "dna" and block["kmer_mask"] not in KMER_MASKS:
        raise ModelError(f"dna.kmer_mask must be one of {', '.join(KMER_MASKS)}, got {block['kmer_mask']!r}")
    if tower == "text" and block["missing_rank"] is not None and (
            not isinstance(block["missing_rank"], str) or not block["missing_rank"].strip()):
        raise ModelError(f"text.missing_rank must be null or a word, got {block['missing_rank']!r}")
    if tower == "text" and isinstance(block["vocab"], str) and not _is_bundled(block["vocab"]):
        block["vocab"] = str((base_dir / block["vocab"]).resolve())
    if use_pretrained and block["pretrained"]:
        _take_pretrained_sizes(tower, block)
    if block["max_position_embeddings"] is None:
        block["max_position_embeddings"] = n_dna_tokens(block) if tower == "dna" else block["max_len"]
    _check_bert(tower, block)
    return block


def _take_pretrained_sizes(tower: str, block: dict[str, Any]) -> None:
    """Copy the sizes of a local Hugging Face BERT checkpoint into the block."""
    directory = Path(block["pretrained"])
    if not (directory / "config.json").is_file():
        raise ModelError(f"{tower}.pretrained: {directory} is not a Hugging Face model directory "
                         "(no config.json)")
    hf = read_json(directory / "config.json")
    if not isinstance(hf, dict) or hf.get("model_type") != "bert":
        raise ModelError(f"{directory}: expected a BERT checkpoint (model_type 'bert')")
    for key, hf_key in _HF_SIZES.items():
        block[key] = hf.get(hf_key, block[key])
    block["bert_kwargs"] = {**block["bert_kwargs"], **{key: hf[key] for key in _HF_KWARGS if key in hf}}
    if tower == "text" and (directory / "vocab.txt").is_file():
        block["vocab"] = str(directory / "vocab.txt")
    expected = n_kmer_vocab(block) if tower == "dna" else None
    if tower == "text":
        _check_vocab(block)
        expected = len(vocab_tokens(vocab_path(block)))
    if hf.get("vocab_size") != expected:
        raise ModelError(f"{directory}: checkpoint vocabulary has {hf.get('vocab_size')} tokens, "
                         f"the {tower} tokenizer has {expected}")


def _check_image(block: dict[str, Any]) -> None:
    if not isinstance(block["backbone"], str) or not block["backbone"]:
        raise ModelError("image.backbone must be a timm model name")
    _check_int(block, "image", "image_size")
    kwargs = block["backbone_kwargs"]
    if not isinstance(kwargs, dict) or _RESERVED_BACKBONE_KWARGS & set(kwargs):
        raise ModelError(f"image.backbone_kwargs must be an object without "
                         f"{', '.join(sorted(_RESERVED_BACKBONE_KWARGS))}, got {kwargs!r}")
    if not isinstance(block["resize_float"], bool):
        raise ModelError(f"image.resize_float must be true or false, got {block['resize_float']!r}")
    stats = (block["mean"], block["std"])
    if stats != (None, None) and not all(
            isinstance(s, list) and len(s) == 3 and all(isinstance(v, (int, float)) for v in s)
            for s in stats):
        raise ModelError("image.mean and image.std must both be null or both lists of 3 numbers")


def _check_bert(tower: str, block: dict[str, Any]) -> None:
    for key in ("max_len", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                "max_position_embeddings"):
        _check_int(block, tower, key)
    if block["hidden_size"] % block["num_heads"]:
        raise ModelError(f"{tower}.hidden_size ({block['hidden_size']}) must be a multiple of "
                         f"num_heads ({block['num_heads']})")
    if not isinstance(block["dropout"], (int, float)) or not 0 <= block["dropout"] < 1:
        raise ModelError(f"{tower}.dropout must be in [0, 1), got {block['dropout']!r}")
    if block["pooling"] not in POOLINGS:
        raise ModelError(f"{tower}.pooling must be one of {', '.join(POOLINGS)}, got {block['pooling']!r}")
    if not isinstance(block["attend_padding"], bool):
        raise ModelError(f"{tower}.attend_padding must be true or false, got {block['attend_padding']!r}")
    kwargs = block["bert_kwargs"]
    if not isinstance(kwargs, dict) or _RESERVED_BERT_KWARGS & set(kwargs):
        raise ModelError(f"{tower}.bert_kwargs must be an object without the sizes set elsewhere, "
                         f"got {kwargs!r}")
    if tower == "dna":
        _check_int(block, tower, "k")
        if block["k"] > MAX_K:
            raise ModelError(f"dna.k must be at most {MAX_K} (vocabulary 4^k), got {block['k']}")
        token = block["prepend_token"]
        if token is not None and (not isinstance(token, int) or not 0 <= token < n_kmer_vocab(block)):
            raise ModelError(f"dna.prepend_token must be null or a token id, got {token!r}")
        needed = n_dna_tokens(block)
    else:
        _check_vocab(block)
        needed = block["max_len"]
    if block["max_position_embeddings"] < needed:
        raise ModelError(f"{tower}.max_position_embeddings ({block['max_position_embeddings']}) is less "
                         f"than the {needed} tokens of max_len {block['max_len']}")


def _check_kmer_bag(block: dict[str, Any]) -> None:
    if block["pretrained"] is not None:
        raise ModelError("dna.pretrained is not supported by the kmer-bag tower (it trains from scratch)")
    ks = block["ks"]
    if not isinstance(ks, list) or not ks or len(set(map(str, ks))) != len(ks) or any(
            not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K for k in ks):
        raise ModelError(f"dna.ks must be a list of distinct k-mer sizes in 1..{MAX_K}, got {ks!r}")
    for key in ("max_len", "bag_dim", "hidden_size"):
        _check_int(block, "dna", key)
    if block["max_len"] < max(ks):
        raise ModelError(f"dna.max_len ({block['max_len']}) must be at least the largest k ({max(ks)})")
    if not isinstance(block["dropout"], (int, float)) or not 0 <= block["dropout"] < 1:
        raise ModelError(f"dna.dropout must be in [0, 1), got {block['dropout']!r}")


def _check_vocab(block: dict[str, Any]) -> None:
    if not isinstance(block["vocab"], str) or not vocab_path(block).is_file():
        bundled = ", ".join(sorted(p.stem for p in VOCAB_DIR.glob("*.txt")))
        raise ModelError(f"text.vocab: {block['vocab']!r} is neither a bundled vocab ({bundled}) "
                         "nor an existing file")


def _check_int(block: dict[str, Any], tower: str, key: str) -> None:
    value = block[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelError(f"{tower}.{key} must be a positive integer, got {value!r}")


def _is_bundled(vocab: str) -> bool:
    """A bare name like "wordpiece-uncased" names models/vocab/<name>.txt; anything else is a path."""
    return "/" not in vocab and "\\" not in vocab and not vocab.endswith(".txt")
