"""What trains: full fine-tuning, frozen backbones (``--freeze``) or LoRA adapters (``--lora R``).

LoRA follows CLIBD's earlier runs (README "Training: `clibd train`", ``--lora``): rank-R adapters on the
attention query and value projections of every layer of every encoder, no alpha scaling, A
Kaiming-uniform and B zero at the start, backbones frozen while the projection heads and the
logit scale train. Checkpoints hold *merged* weights (W + B·A), so ``best/`` and ``last/`` are
ordinary model directories; ``last/train_state.pt`` keeps the adapters and the unmerged
query/value weights so that ``--resume`` continues exactly.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from models.errors import counted

# What a tower's backbone is called: timm's (image), a BERT's (dna, text), a kmer-bag tower's k-mer table.
BACKBONES = ("backbone", "bert", "kmers")


def backbone(model: nn.Module, tower: str) -> nn.Module:
    """What ``--freeze TOWER`` stops: the tower's timm or BERT backbone, or the k-mer table of a
    kmer-bag DNA tower (what follows it, the projection or the kmer-bag's MLP, still trains)."""
    encoder = getattr(model, f"{tower}_encoder")
    return next(getattr(encoder, name) for name in BACKBONES if hasattr(encoder, name))


def freeze_backbones(model: nn.Module, towers: tuple[str, ...]) -> None:
    """Stop gradients into the named towers' backbones (their projections still train)."""
    for tower in towers:
        backbone(model, tower).requires_grad_(False)


class LoRA(nn.Module):
    """``base(x)`` plus low-rank updates ``B·A·x`` on chosen output slices of a frozen Linear.

    ``slices`` are (start, stop) ranges of the output features: the whole output for a BERT
    query or value projection, the q and v thirds of a timm ViT's fused qkv projection.
    """

    def __init__(self, base: nn.Linear, rank: int, slices: list[tuple[int, int]]):
        super().__init__()
        self.base, self.slices = base.requires_grad_(False), slices
        self.lora_a = nn.ParameterList()
        self.lora_b = nn.ParameterList()
        for start, stop in slices:
            a = torch.empty(rank, base.in_features)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.lora_a.append(nn.Parameter(a))
            self.lora_b.append(nn.Parameter(torch.zeros(stop - start, rank)))

    def delta(self) -> torch.Tensor:
        """The weight update B·A laid out like the base weight."""
        full = torch.zeros_like(self.base.weight)
        for (start, stop), a, b in zip(self.slices, self.lora_a, self.lora_b):
            full[start:stop] = b @ a
        return full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        linear = nn.functional.linear
        updates = [linear(linear(x, a), b) for a, b in zip(self.lora_a, self.lora_b)]
        if len(self.slices) == 1 and self.slices[0] == (0, self.base.out_features):
            return out + updates[0]
        pieces, at = [], 0
        for (start, stop), update in zip(self.slices, updates):
            pieces += [torch.zeros_like(out[..., at:start]), update]
            at = stop
        pieces.append(torch.zeros_like(out[..., at:]))
        return out + torch.cat(pieces, dim=-1)


def add_lora(model: nn.Module, rank: int) -> None:
    """Freeze every backbone and put rank-``rank`` adapters on its attention query and value."""
    freeze_backbones(model, model.modalities)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            if child_name in ("query", "value"):  # transformers BertSelfAttention
                setattr(module, child_name, LoRA(child, rank, [(0, child.out_features)]))
            elif child_name == "qkv":  # timm Attention: fused [q; k; v]
                third = child.out_features // 3
                setattr(module, child_name, LoRA(child, rank, [(0, third), (2 * third, 3 * third)]))


def merged(model: nn.Module) -> nn.Module:
    """The model itself if it has no adapters, else a copy with every LoRA folded into its Linear."""
    if not any(isinstance(m, LoRA) for m in model.modules()):
        return model
    plain = copy.deepcopy(model)
    for module in list(plain.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRA):
                with torch.no_grad():
                    child.base.weight += child.delta()
                setattr(module, child_name, child.base)
    return plain


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters and the unmerged base weights they sit on (for exact resume)."""
    return {name: tensor for name, tensor in model.state_dict().items()
            if ".lora_" in name or any(f"{n}.base." in name for n in _lora_names(model))}


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put back what :func:`adapter_state` saved (after :func:`add_lora` on the merged model)."""
    missing = set(adapter_state(model)) - set(state)
    if missing:
        raise ValueError(f"adapter state lacks {counted(len(missing), 'tensor')}, e.g. {sorted(missing)[0]}")
    model.load_state_dict(state, strict=False)


def _lora_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, LoRA)]
