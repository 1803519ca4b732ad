"""The CLIP objective of :class:`satclip.SatCLIP`, distributed: every rank's pairs are negatives for every
other rank's.

With N processes holding B pairs each, :class:`ContrastiveLoss` all-gathers the normalised features
*with gradients* and each rank scores its own B rows against all N·B columns (the "local loss" of
open_clip). The mean of the per-rank losses is the loss of one N·B-way problem, and after data-parallel
gradient averaging (DDP divides the summed gradients by N) the gradients are exactly those of that
problem. The original SatCLIP did not gather (each GPU contrasted its own batch only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward sums the incoming gradients over ranks and keeps this rank's slice.

    Uses ``all_reduce`` only (no reduce-scatter), so it runs on gloo, NCCL and others alike.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        rank, world = _world()
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` on each of N ranks → ``(N·B, D)``, rank order, differentiable w.r.t. the local part.

    Every rank must pass the same B. Returns ``tensor`` itself when not distributed.
    """
    rank, world = _world()
    if world == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


@dataclass
class ContrastiveOutput:
    """Per-rank results. ``loss`` is this rank's share (their mean over ranks is the global loss);
    accuracies are the fraction of this rank's rows whose best match is their own pair."""

    loss: torch.Tensor
    logits_per_image: torch.Tensor  # (B, N·B)
    logits_per_location: torch.Tensor  # (B, N·B)
    labels: torch.Tensor  # (B,) column of each row's positive
    image_to_location_acc: torch.Tensor
    location_to_image_acc: torch.Tensor


class ContrastiveLoss(nn.Module):
    """Symmetric cross-entropy over ``exp(logit_scale) · cos`` logits, gathered over all ranks.

    ``forward(image_features (B, D), location_features (B, D), logit_scale ())``: features need not be
    normalised (they are L2-normalised here); ``logit_scale`` is the log temperature (trainable, never
    clamped, as in the original). Logits are computed in float32, or float64 for float64 input.
    """

    def forward(
        self, image_features: torch.Tensor, location_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> ContrastiveOutput:
        if image_features.shape != location_features.shape:
            raise ValueError(
                f"image features {tuple(image_features.shape)} and location features "
                f"{tuple(location_features.shape)} must have the same shape (B, D)"
            )
        dtype = torch.promote_types(torch.promote_types(image_features.dtype, location_features.dtype), torch.float32)
        image = F.normalize(image_features.to(dtype), dim=-1)
        location = F.normalize(location_features.to(dtype), dim=-1)
        rank, world = _world()
        scale = logit_scale.to(dtype).exp()
        if world == 1:
            logits_per_image = scale * image @ location.T
            logits_per_location = logits_per_image.T  # one (B, B) product instead of two
        else:
            logits_per_image = scale * image @ gather_with_grad(location).T
            logits_per_location = scale * location @ gather_with_grad(image).T
        batch = image.shape[0]
        labels = torch.arange(batch, device=image.device) + rank * batch
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_location, labels)) / 2
        with torch.no_grad():
            i2l = (logits_per_image.argmax(dim=1) == labels).float().mean()
            l2i = (logits_per_location.argmax(dim=1) == labels).float().mean()
        return ContrastiveOutput(loss, logits_per_image, logits_per_location, labels, i2l, l2i)
