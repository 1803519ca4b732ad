"""Checks of weights read from a file, shared by both formats."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import BadInputError


def check_finite(tensors: Mapping[str, object], source: object) -> None:
    """Raise :class:`BadInputError` naming the first floating-point tensor of ``tensors`` that holds a NaN
    or an infinity (non-tensor values are skipped). ``source`` names the file in the message."""
    for name, value in tensors.items():
        if not torch.is_tensor(value) or not (value.is_floating_point() or value.is_complex()):
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = int(value.numel() - finite.sum())
            raise BadInputError(
                f"{source}: tensor {name} (shape {tuple(value.shape)}) holds {bad} NaN or infinite value(s) of "
                f"{value.numel()}; the weights are corrupt or diverged in training: download or export the model "
                "again"
            )
