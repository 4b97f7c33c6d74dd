"""Multi-modal contrastive loss: symmetric InfoNCE averaged over the modality pairs present.

With torch.distributed initialised, features are all-gathered with gradient and every rank
computes the loss of the global batch (OpenCLIP's ``gather_with_grad=True, local_loss=False``).
The loss value is then identical on every rank and equal to the single-process loss on the same
global batch; averaging gradients across ranks (what DDP does) gives the single-process gradients.
"""

from __future__ import annotations

import itertools

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def gather_features(features: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """All-gather features (with gradient) and presence masks (without) across ranks.

    Every rank must pass the same modalities and the same local batch size. Returns the features
    and a complete bool mask per modality (all True where ``present`` gave none), in rank order.
    Without an initialised process group of more than one rank the inputs come back as they are.
    """
    if not features:
        raise ValueError("no features given")
    names = sorted(features)
    batch = next(iter(features.values())).shape[0]
    device = next(iter(features.values())).device
    masks = {name: torch.ones(batch, dtype=torch.bool, device=device) for name in names}
    for name, mask in (present or {}).items():
        if name in masks:
            if mask.shape != (batch,):
                raise ValueError(f"present[{name!r}] has shape {tuple(mask.shape)}, expected ({batch},)")
            masks[name] = mask.to(device=device, dtype=torch.bool)
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return dict(features), masks
    gathered = {name: _AllGather.apply(features[name]) for name in names}
    packed = torch.stack([masks[name] for name in names], dim=1).to(torch.uint8)  # one collective for all
    parts = [torch.empty_like(packed) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, packed)
    packed = torch.cat(parts, dim=0).bool()
    return gathered, {name: packed[:, column] for column, name in enumerate(names)}


class _AllGather(torch.autograd.Function):
    """Concatenate a tensor from every rank; the backward pass sums the gradients of all ranks."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss depends on every rank's features
        size = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * size:(dist.get_rank() + 1) * size]


class ContrastiveLoss(nn.Module):
    """Mean over the unordered modality pairs (a, b) of (CE(s·a·bᵀ) + CE(s·b·aᵀ)) / 2.

    Without ``labels``, row i of a is the positive of row i of b (standard InfoNCE, the paper's
    training; same-species rows are negatives). With ``labels`` (int64 [B], equal = same taxon,
    e.g. from :func:`label_ids`), every pair with equal labels is a positive. Pairs with text
    compare the records with the distinct label strings of the batch, each counted once (see
    :func:`_label_classes_loss`); other pairs use the multi-hot targets of the published code,
    ``labels[:, None] == labels[None, :]``, normalised to sum to 1. ``dna_dna`` > 0 adds that weight times a supervised contrastive term among the DNA
    embeddings (positives: the other rows with the same label; needs ``labels``).
    Features named ``text@RANK`` (text embeddings of the label strings cut at RANK, e.g. order),
    with their ids in ``rank_labels[name]``, add one term each: every other non-text modality
    against the batch's distinct cut strings, as the records with full labels; the loss is then
    the mean of the pairs' loss and these terms ((species + order + genus) / 3 for two ranks).
    Features must be L2-normalised; ``logit_scale`` is the multiplier s (already exponentiated).
    A pair only uses the samples that have both modalities; pairs with fewer than 2 such samples
    are skipped, and a ValueError is raised when no pair is left.
    """

    def __init__(self, dna_dna: float = 0.0):
        super().__init__()
        self.dna_dna = dna_dna

    def forward(self, features: dict[str, torch.Tensor], logit_scale: torch.Tensor,
                present: dict[str, torch.Tensor] | None = None,
                labels: torch.Tensor | None = None,
                rank_labels: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        if self.dna_dna and labels is None:
            raise ValueError("the DNA-DNA term needs labels")
        features, masks = gather_features(features, present)
        device = next(iter(features.values())).device
        if labels is not None:
            labels = _gather_labels(labels.to(device))
        prefixes = sorted(name for name in features if "@" in name)
        if set(prefixes) != set(rank_labels or ()):
            raise ValueError(f"features {prefixes} need ids in rank_labels, got {sorted(rank_labels or ())}")
        losses = []
        for first, second in itertools.combinations(sorted(set(features) - set(prefixes)), 2):
            both = masks[first] & masks[second]
            if int(both.sum()) < 2:
                continue
            a, b = features[first][both], features[second][both]
            if labels is not None and second == "text":
                losses.append(_label_classes_loss(a, b, labels[both], logit_scale))
                continue
            logits = logit_scale * a @ b.T
            if labels is None:
                targets = torch.arange(logits.shape[0], device=logits.device)
            else:
                same = labels[both][:, None] == labels[both][None, :]
                targets = same.float() / same.sum(dim=1, keepdim=True)  # symmetric: also the columns'
            losses.append((F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2)
        if not losses:
            raise ValueError(f"no modality pair with at least 2 samples among {', '.join(sorted(features))}")
        loss = torch.stack(losses).mean()
        if prefixes:
            loss = (loss + sum(self._prefix_term(features, masks, name, _gather_labels(rank_labels[name].to(device)),
                                                 logit_scale) for name in prefixes)) / (1 + len(prefixes))
        if self.dna_dna and "dna" in features:
            loss = loss + self.dna_dna * _supervised_contrastive(features["dna"][masks["dna"]],
                                                                 labels[masks["dna"]], logit_scale)
        return loss

    @staticmethod
    def _prefix_term(features: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], name: str,
                     ids: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        """Mean over the non-text modalities of their label-classes loss against ``features[name]``."""
        terms = []
        for modality in sorted(m for m in features if "@" not in m and m != "text"):
            both = masks[modality] & masks[name]
            if int(both.sum()) >= 2:
                terms.append(_label_classes_loss(features[modality][both], features[name][both], ids[both],
                                                 logit_scale))
        return torch.stack(terms).mean() if terms else features[name].sum() * 0.0


def _label_classes_loss(a: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                        logit_scale: torch.Tensor) -> torch.Tensor:
    """InfoNCE between records and the distinct label strings of the batch, each counted once.

    a -> text: CE of each record over the U distinct labels (its own is the target);
    text -> a: CE of each distinct label over the records, its records sharing the target mass.
    """
    classes, inverse = torch.unique(labels, return_inverse=True)
    rows = torch.arange(len(labels), device=labels.device)
    first = torch.full((len(classes),), len(labels), device=labels.device).scatter_reduce(
        0, inverse, rows, reduce="amin")  # one text row per label (the rows differ by dropout only)
    logits = logit_scale * a @ text[first].T
    members = (inverse[None, :] == torch.arange(len(classes), device=labels.device)[:, None]).to(logits.dtype)
    return (F.cross_entropy(logits, inverse) + F.cross_entropy(logits.T, members / members.sum(1, keepdim=True))) / 2


def label_ids(text_input_ids: torch.Tensor, index: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
    """One int64 id per record, equal for equal label token rows (a hash, the same on every rank);
    a record without a label gets ``-(index + 1)``, its own id."""
    powers = torch.full((text_input_ids.shape[1],), 1_000_003, dtype=torch.int64).cumprod(0)
    hashed = (text_input_ids.to(torch.int64) * powers).sum(dim=1).abs()  # wraps around in int64
    return torch.where(has_text.to(hashed.device), hashed, -(index.to(torch.int64) + 1))


def _supervised_contrastive(dna: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Khosla et al.'s SupCon over one modality: mean log-probability of each row's positives."""
    eye = torch.eye(len(dna), dtype=torch.bool, device=dna.device)
    positives = (labels[:, None] == labels[None, :]) & ~eye
    anchors = positives.any(dim=1)
    if not anchors.any():
        return dna.sum() * 0.0
    log_prob = F.log_softmax((logit_scale * dna @ dna.T).masked_fill(eye, -1e4), dim=1)
    per_anchor = (log_prob * positives).sum(dim=1)[anchors] / positives.sum(dim=1)[anchors]
    return -per_anchor.mean()


def _gather_labels(labels: torch.Tensor) -> torch.Tensor:
    """All-gather label ids across ranks (no gradient); the input as it is without a process group."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return labels
    parts = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, labels.contiguous())
    return torch.cat(parts, dim=0)
