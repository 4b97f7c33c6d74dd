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

    Row i of a is the positive of row i of b (standard InfoNCE; same-species rows are negatives).
    Features must be L2-normalised; ``logit_scale`` is the multiplier s (already exponentiated).
    A pair only uses the samples that have both modalities; pairs with fewer than 2 such samples
    are skipped, and a ValueError is raised when no pair is left.
    """

    def forward(self, features: dict[str, torch.Tensor], logit_scale: torch.Tensor,
                present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        features, masks = gather_features(features, present)
        losses = []
        for first, second in itertools.combinations(sorted(features), 2):
            both = masks[first] & masks[second]
            if int(both.sum()) < 2:
                continue
            a, b = features[first][both], features[second][both]
            logits = logit_scale * a @ b.T
            targets = torch.arange(logits.shape[0], device=logits.device)
            losses.append((F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2)
        if not losses:
            raise ValueError(f"no modality pair with at least 2 samples among {', '.join(sorted(features))}")
        return torch.stack(losses).mean()
