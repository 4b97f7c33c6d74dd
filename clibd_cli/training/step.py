"""One micro-batch of `clibd train` (``loop.py`` runs the steps): encode, contrastive loss, backward."""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

from clibd_cli.training.datasets import with_label_prefixes

log = logging.getLogger("clibd")


class StepOptions(Protocol):
    """What a micro-batch needs of the run's options (``loop.TrainConfig``)."""

    modalities: tuple[str, ...]
    label_ranks: tuple[str, ...]
    positives: str
    grad_accum: int


def forward_backward(net, batch: dict, loss_fn, autocast, device: str, cfg: StepOptions,
                     sync: bool) -> tuple[float, float]:
    """One micro-batch: encode, contrastive loss, backward (gradients all-reduced only if ``sync``)."""
    no_sync = getattr(net, "no_sync", None)
    with contextlib.nullcontext() if sync or no_sync is None else no_sync():
        inputs = with_label_prefixes(batch["inputs"], cfg.label_ranks)
        with autocast():
            out = net({k: v.to(device, non_blocking=True) for k, v in inputs.items()})
        features = {m: out[m].float() for m in cfg.modalities}
        if cfg.label_ranks:  # the text tower ran once over full labels, then each rank's cut labels
            chunks = features["text"].split(len(batch["index"]))
            features.update({"text": chunks[0], **{f"text@{r}": c for r, c in zip(cfg.label_ranks, chunks[1:])}})
        present = {m: p.to(device) for m, p in batch["present"].items()}
        labels, rank_labels = None, None
        if cfg.positives == "label":
            from models.losses import label_ids

            labels, *prefix_ids = (label_ids(batch["inputs"][f"{m}_input_ids"], batch["index"], batch["present"][m])
                                   for m in ["text", *(f"text@{r}" for r in cfg.label_ranks)])
            rank_labels = {f"text@{r}": ids for r, ids in zip(cfg.label_ranks, prefix_ids)}
        try:
            loss = loss_fn(features, out["logit_scale"].float(), present, labels, rank_labels)
        except ValueError:  # no pair of modalities with 2+ samples in this global batch
            log.warning("a batch without any pair of modalities to align was skipped")
            loss = sum(f.sum() for f in features.values()) * 0.0
        (loss / cfg.grad_accum).backward()
    return loss.item(), out["logit_scale"].item()
