"""AdamW with weight decay on weight matrices only, as the original SatCLIP."""

from __future__ import annotations

import torch
from torch import nn

from .config import OptimConfig


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups over the trainable parameters: tensors of rank ≥ 2 (weight matrices and
    convolution kernels) with ``weight_decay``; biases, norm scales/offsets and ``logit_scale`` (rank < 2)
    without. The original excluded the same set (it also matched names containing "bn"/"ln"/"bias",
    all of which are rank 1)."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or name.endswith("logit_scale") else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def adamw(module: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    groups = [g for g in parameter_groups(module, config.weight_decay) if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
