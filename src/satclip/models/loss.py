"""The CLIP objective of :class:`satclip.SatCLIP`, distributed: every rank's pairs are negatives for every
other rank's.

With N processes holding B pairs each, :class:`ContrastiveLoss` all-gathers the normalised features
*with gradients* and each rank scores its own B rows against all N·B columns (the "local loss" of
open_clip). The mean of the per-rank losses is the loss of one N·B-way problem, and after data-parallel
gradient averaging (DDP divides the summed gradients by N) the gradients are exactly those of that
problem. The original SatCLIP did not gather (each GPU contrasted its own batch only).

In one process the (B, B) logit matrix is never materialised: :class:`_BlockedSymmetricCE` computes the loss,
its gradients and the accuracies a block of :data:`BLOCK_ROWS` rows at a time (column log-sum-exps
accumulated online), so every pass over the matrix stays in cache. At B = 8,192 the dense version wrote and
re-read seven 268 MB matrices per step, which made the loss ~90 % of a cached-feature training step on a
2-core CPU.
"""

from __future__ import annotations

import math
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
            loss, i2l, l2i = _BlockedSymmetricCE.apply(image, location, scale, BLOCK_ROWS)
            return ContrastiveOutput(loss, i2l, l2i)
        logits_per_image = scale * image @ gather_with_grad(location).T
        logits_per_location = scale * location @ gather_with_grad(image).T
        batch = image.shape[0]
        labels = torch.arange(batch, device=image.device) + rank * batch
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_location, labels)) / 2
        with torch.no_grad():
            i2l = (logits_per_image.argmax(dim=1) == labels).float().mean()
            l2i = (logits_per_location.argmax(dim=1) == labels).float().mean()
        return ContrastiveOutput(loss, i2l, l2i)


#: rows of the (B, B) logit matrix the single-process loss computes at a time: 256 × 8,192 float32 is 8 MB
BLOCK_ROWS = 256


class _BlockedSymmetricCE(torch.autograd.Function):
    """``(loss, i2l accuracy, l2i accuracy)`` of the logits ``scale · image @ location.T`` for normalised
    ``image``, ``location`` (B, D) and a scalar ``scale``: the mean of the row-wise and the column-wise cross-
    entropy with the diagonal as targets, computed ``block`` rows at a time. The backward pass recomputes each
    block (one more product than autograd's) instead of keeping the matrix: the gradient of the logits is
    ``(softmax over the row + softmax over the column − 2 on the diagonal) / 2B``.
    """

    @staticmethod
    def forward(ctx, image, location, scale, block: int):
        batch = image.shape[0]
        rows = torch.arange(batch, device=image.device)
        row_lse = image.new_empty(batch)
        col_max = image.new_full((batch,), -math.inf)  # the running maximum of each column, and its row
        col_arg = torch.zeros(batch, dtype=torch.int64, device=image.device)
        col_sum = image.new_zeros(batch)
        row_hits = torch.zeros((), dtype=torch.int64, device=image.device)
        for start in range(0, batch, block):
            stop = min(start + block, batch)
            logits = torch.mm(image[start:stop], location.T).mul_(scale)
            row_lse[start:stop] = torch.logsumexp(logits, dim=1)
            row_hits += (logits.argmax(dim=1) == rows[start:stop]).sum()
            block_max, block_arg = logits.max(dim=0)
            better = block_max > col_max  # strict: the first row wins ties, as argmax over the whole column
            col_arg = torch.where(better, block_arg + start, col_arg)
            new_max = torch.where(better, block_max, col_max)
            col_sum = col_sum * torch.exp(col_max - new_max) + logits.sub_(new_max).exp_().sum(dim=0)
            col_max = new_max
        col_lse = col_max + torch.log(col_sum)
        diagonal = scale * (image * location).sum(dim=1)
        loss = ((row_lse - diagonal).mean() + (col_lse - diagonal).mean()) / 2
        ctx.save_for_backward(image, location, scale, row_lse, col_lse)
        ctx.block = block
        i2l, l2i = (row_hits / batch).float(), (col_arg == rows).float().mean()
        ctx.mark_non_differentiable(i2l, l2i)
        return loss, i2l, l2i

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_i2l, _grad_l2i):
        image, location, scale, row_lse, col_lse = ctx.saved_tensors
        batch = image.shape[0]
        weight = grad_loss / (2 * batch)
        grad_image = torch.empty_like(image)
        grad_location = torch.zeros_like(location)
        grad_scale = scale.new_zeros(())
        for start in range(0, batch, ctx.block):
            stop = min(start + ctx.block, batch)
            logits = torch.mm(image[start:stop], location.T).mul_(scale)
            grad = torch.exp(logits - row_lse[start:stop, None]).add_(torch.exp(logits - col_lse))
            grad[:, start:stop].diagonal().sub_(2)
            grad.mul_(weight)
            grad_scale += (grad * logits).sum()
            torch.mm(grad, location, out=grad_image[start:stop])
            grad_location.addmm_(grad.T, image[start:stop])
        return grad_image.mul_(scale), grad_location.mul_(scale), grad_scale / scale, None
