"""Published weights imported as a clibd model directory: the CLIBD authors' checkpoints
(``clibd-checkpoint``) and BarcodeBERT's (``barcodebert``), converted by :mod:`models.upstream`
and saved by :func:`models.checkpoint.save_model` with where they came from (``imported_from``:
format, source, preset, command line, the conversion's notes, and the source file's sha256)."""

from __future__ import annotations

from pathlib import Path

from models.checkpoint import save_model
from models.errors import ClibdError
from models.files import sha256_file
from models.upstream import UPSTREAM_PRESET, Imported, import_barcodebert, import_clibd_checkpoint
from models.upstream_files import read_checkpoint, read_upstream_yaml


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
