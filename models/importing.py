"""Published weights imported as a clibd model directory: the CLIBD authors' checkpoints
(``clibd-checkpoint``) and BarcodeBERT's (``barcodebert``), converted by :mod:`models.upstream`
and saved by :func:`models.checkpoint.save_model` with where they came from (``imported_from``:
format, source, preset, command line, the conversion's notes, and the source file's sha256).

The files are read with ``torch.load(weights_only=True)`` or safetensors, so nothing in them is
executed; a damaged or foreign file is named by what it is."""

from __future__ import annotations

import argparse
import logging
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import save_model
from models.config import read_json
from models.errors import ClibdError, ModelError
from models.files import sha256_file
from models.upstream import UPSTREAM_PRESET, Imported, import_barcodebert, import_clibd_checkpoint

# What a legacy (non-ZIP) torch.save file starts with after the pickle protocol: its magic number.
_TORCH_PICKLE = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[2:-1]


def import_model(source: Path, source_format: str, output: str | Path, *,
                 preset: str | Path = UPSTREAM_PRESET, upstream_yaml: Path | None = None,
                 command_line: str | None = None) -> Imported:
    """Convert the weights at ``source`` (``source_format``: ``clibd-checkpoint`` or
    ``barcodebert``; ``upstream_yaml`` cross-checks a clibd-checkpoint's towers) into
    ``preset``'s architecture and save the model at ``output``; returns it with the conversion's
    notes. A model clibd wrote, or a config.json of another model than BERT, is refused (ClibdError)."""
    state, hf_config = read_checkpoint(source)
    if "clibd_version" in hf_config:  # config.json of a model clibd wrote (train, import, the bundled one)
        raise ClibdError(f"{source}: already a clibd model (its config.json was written by clibd "
                         f"{hf_config['clibd_version']}); give it to --model as it is: import converts the CLIBD "
                         "authors' checkpoints and BarcodeBERT weights")
    if source_format == "clibd-checkpoint":
        towers, embed_dim = read_upstream_yaml(upstream_yaml) if upstream_yaml else (None, None)
        imported = import_clibd_checkpoint(state, preset, towers, embed_dim)
    else:
        if hf_config and hf_config.get("model_type", "bert") != "bert":
            raise ClibdError(f"{source}: config.json describes a {hf_config['model_type']!r} model, not BERT")
        imported = import_barcodebert(state, hf_config, preset)
    provenance = {"format": source_format, "source": str(source.resolve()), "preset": preset,
                  "command_line": command_line, "notes": imported.notes}
    if source.is_file():
        provenance["sha256"] = sha256_file(source)
    save_model(imported.model, output, extra={"imported_from": provenance})
    return imported


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of a checkpoint and any BERT config stored with it.

    ``path`` is a ``.pth``/``.pt``/``.bin`` file (read with ``weights_only=True``), a
    ``.safetensors`` file, or a Hugging Face directory (``model.safetensors`` or
    ``pytorch_model.bin`` plus ``config.json``). ``{"state_dict": ...}`` / ``{"model": ...}``
    wrappers and DDP ``module.`` prefixes are removed. ModelError if it is not a state dict.
    """
    hf_config: dict[str, Any] = {}
    if path.is_dir():
        if (path / "config.json").is_file():
            hf_config = read_json(path / "config.json")
        found = [path / name for name in ("model.safetensors", "pytorch_model.bin")
                 if (path / name).is_file()]
        if not found:
            raise ModelError(f"{path}: no model.safetensors or pytorch_model.bin in this directory")
        path = found[0]
    elif (path.parent / "config.json").is_file() and path.suffix in (".bin", ".safetensors"):
        hf_config = read_json(path.parent / "config.json")
    if not isinstance(hf_config, dict):
        raise ModelError(f"{path.parent / 'config.json'}: expected a JSON object "
                         f"(a Hugging Face config), got {type(hf_config).__name__}")
    obj = _load_safetensors(path) if path.suffix == ".safetensors" else _load_pickle(path)
    if isinstance(obj, dict) and isinstance(obj.get("bert_config"), dict):
        hf_config = {**obj["bert_config"], **hf_config}
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ModelError(f"{path}: not a state dict (expected a mapping of names to tensors, got "
                         f"{_what_it_holds(obj)}){_in_clibd_model(path)}")
    return {name.removeprefix("module."): tensor for name, tensor in obj.items()}, hf_config


def _what_it_holds(obj: Any) -> str:
    """A non-state-dict described by type, or a mapping by its first entry that is not a tensor."""
    if not isinstance(obj, dict) or not obj:
        return f"an empty {type(obj).__name__}" if isinstance(obj, dict) else type(obj).__name__
    name, value = next((k, v) for k, v in obj.items()
                       if not (isinstance(k, str) and isinstance(v, torch.Tensor)))
    return f"a {type(obj).__name__} whose {name!r} is {type(value).__name__}, not a tensor"


def _in_clibd_model(path: Path) -> str:
    """The hint for a file of a clibd model directory (``RUN/last/train_state.pt``): give its folder."""
    config = path.parent / "config.json"
    try:
        ours = config.is_file() and "clibd_version" in read_json(config)
    except (ClibdError, TypeError):
        ours = False
    return f"; {path.parent} is a clibd model: give that folder to --model as it is" if ours else ""


def read_upstream_yaml(path: Path) -> tuple[tuple[str, ...], int | None]:
    """Towers and output dimension from an upstream model yaml (``model_config`` or top level).

    Refuses the variants this importer does not reproduce (OpenCLIP/BioCLIP towers, the k=4
    BarcodeBERT whose MLM transform upstream leaves random).
    """
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        where = f"{path}:{exc.problem_mark.line + 1}" if exc.problem_mark else str(path)
        raise ModelError(f"{where}: not valid YAML ({exc.problem or exc.context})") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"{path}: cannot read the upstream yaml ({exc})") from exc
    cfg = raw.get("model_config", raw) if isinstance(raw, dict) else None
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: expected an upstream CLIBD model config (a mapping)")
    if cfg.get("using_open_clip") or cfg.get("for_bio_clip"):
        raise ModelError(f"{path}: OpenCLIP/BioCLIP variants are not supported")
    if cfg.get("pre_train_for_barcode_bert"):
        raise ModelError(f"{path}: the DNA tower uses the k=4 BarcodeBERT "
                         f"({cfg['pre_train_for_barcode_bert']}); only the 2023 5-mer model is supported")
    towers = tuple(tower for key, tower in (("image", "image"), ("dna", "dna"), ("language", "text"))
                   if isinstance(cfg.get(key), dict))
    if not towers:
        raise ModelError(f"{path}: no image/dna/language block; is this an upstream model config?")
    return towers, cfg.get("output_dim")


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise ModelError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from exc


def _load_pickle(path: Path) -> Any:
    """torch.load with weights_only=True (argparse.Namespace allowed: BarcodeBERT v2 stores one)."""
    try:
        # torch warns of a pickle protocol it did not write (a plain pickle, which is refused below)
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if "global" not in reason.lower():
            raise _unreadable(path, reason) from exc
        raise ModelError(f"{path}: refusing to load: the file holds Python objects other than tensors, "
                         f"which could run code (read with weights_only=True: {reason})") from exc
    except (RuntimeError, EOFError, ValueError, OSError, UnicodeDecodeError, KeyError, IndexError) as exc:
        # a text file that starts with 'h' or 'j' reads as a pickle opcode and fails with KeyError
        raise _unreadable(path, f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc


def _unreadable(path: Path, reason: str) -> ModelError:
    """The error for a file torch.load failed on (``reason``, logged whole at -v): one that starts as
    torch.save's do (a ZIP archive, the legacy pickle's magic number) is corrupt or truncated; any
    other is named by what it looks like (a FASTA file, text, another pickle)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    logging.getLogger("clibd").debug("%s: torch.load: %s", path, reason)
    if head.startswith(b"PK\x03\x04") or _TORCH_PICKLE in head[:32]:
        return ModelError(f"{path}: a PyTorch checkpoint that is corrupt or truncated "
                          f"(torch.load: {_sentence(reason)}; the whole reason at -v)")
    try:
        text = b"\x00" not in head and bool(head.decode("utf-8"))
    except UnicodeDecodeError as exc:
        text = exc.start >= len(head) - 3  # a character cut at the end of the 512 bytes
    looks = ("it is empty" if not head else "it starts like a FASTA file" if head.startswith(b">")
             else "it starts like a FASTQ file" if head.startswith(b"@") else "it is text" if text
             else "it is a Python pickle that torch.save did not write" if head.startswith(b"\x80")
             else "it starts as neither a ZIP archive nor a pickle, as torch.save writes")
    return ModelError(f"{path}: is not a PyTorch checkpoint ({looks})")


def _unpickler_reason(exc: pickle.UnpicklingError) -> str:
    """The specific line of torch's long weights_only error ("Unsupported global: ...", "Trying to
    load unsupported GLOBAL posix.system ..."), without its advice to retry with weights_only=False."""
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    for line in text.splitlines():
        line = " ".join(line.split(" Check the documentation")[0].split())
        if line and not line.startswith("Weights only load failed"):
            return line.split(". ")[0].rstrip(".")[:200]
    return type(exc).__name__


def _sentence(reason: str, limit: int = 160) -> str:
    """The first sentence of ``reason``, cut at a word (with an ellipsis) when longer than ``limit``."""
    sentence = reason.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + " …"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)[:200]
