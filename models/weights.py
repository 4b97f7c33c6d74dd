"""Loading and checking model weights: safetensors files and state dicts, bit-exact, no pickle."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.errors import ModelError
from models.files import sha256_file


def load_weights(model: torch.nn.Module, path: Path, expected_sha256: str | None = None,
                 skip_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Load a safetensors file into ``model`` bit-exactly (dtypes kept); ModelError on any mismatch.

    Tensors whose names start with one of ``skip_prefixes`` (dropped towers) are not loaded but
    returned.
    """
    if not path.is_file():
        raise ModelError(f"{path}: weights file is missing")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise ModelError(f"{path}: checksum mismatch; the weights file is corrupt or was replaced")
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise ModelError(f"{path}: corrupt or truncated weights file ({exc})") from exc
    skipped = {name: tensor for name, tensor in state.items() if name.startswith(skip_prefixes)}
    state = {name: tensor for name, tensor in state.items() if name not in skipped}
    check_state_dict(model.state_dict(), state, f"{path}: weights do not match the model config")
    model.load_state_dict(state, strict=True, assign=True)
    return skipped


def check_state_dict(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], what: str,
                     named: Callable[[str], str] = str, advice: str = "") -> None:
    """ModelError naming a few missing, unexpected, wrongly shaped (with both shapes) and non-finite
    (NaN, inf: a diverged run's) tensors, if there are any. ``named`` gives the name a key is shown
    by (the source file's, for converted weights); ``advice`` ends the message when most of
    ``expected`` is missing or wrongly shaped."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    broken = sorted(k for k in set(expected) & set(state) if state[k].is_floating_point()
                    and not state[k].is_meta and not torch.isfinite(state[k]).all())
    shown = {k: named(k) for k in (*missing, *unexpected, *broken)}
    shown.update({k: f"{named(k)} {tuple(state[k].shape)}, not {tuple(expected[k].shape)}" for k in wrong})
    problems = [f"{label} {len(keys)} ({', '.join(shown[k] for k in keys[:3])}"
                f"{', ...' if len(keys) > 3 else ''})"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong),
                                    ("NaN or infinite values in", broken)) if keys]
    if problems:
        most = bool(advice) and 2 * (len(missing) + len(wrong)) > len(expected)
        raise ModelError(f"{what}: {'; '.join(problems)}{f'; {advice}' if most else ''}")
