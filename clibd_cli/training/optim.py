"""The paper's optimiser and schedule, minus weight decay where it does harm.

CLIBD trains with AdamW (PyTorch defaults, weight decay 0.01 on *every* parameter) and a
one-cycle schedule (cosine, ``pct_start`` 0.3, stepped every optimiser step). Like OpenCLIP we
leave norms, biases and the logit scale out of weight decay (README "Training: `clibd train`").
"""

from __future__ import annotations

import torch


def no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Norm weights, biases and the logit scale: 0- and 1-D parameters, by name or shape."""
    return param.ndim < 2 or name.endswith(".bias") or "logit_scale" in name


def create_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, in two groups (with and without weight decay)."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (plain if no_decay(name, param) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.999), eps=1e-8)


def create_schedule(optimizer: torch.optim.Optimizer, lr: float, total_steps: int,
                    warmup: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """One-cycle: from lr/25 up to ``lr`` over the first ``warmup`` fraction, cosine down to lr/25e4."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(total_steps, 2), pct_start=warmup,
        anneal_strategy="cos", cycle_momentum=False, div_factor=25.0, final_div_factor=1e4,
    )
