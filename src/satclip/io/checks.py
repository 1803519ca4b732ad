"""Checks of weights read from a file, shared by every format."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import BadInputError

#: the part of a weight's name that marks an image encoder's: only those may hold integers or booleans
#: (batch-norm step counters, a MOSAIKS model's ``fitted`` flag); a location encoder's weights are all floats
_IMAGE_PART = "visual"


def check_weights(tensors: Mapping[str, object], source: object) -> None:
    """Raise :class:`BadInputError` naming the first entry of ``tensors`` that cannot be a weight: not a tensor,
    integer or boolean values in a location encoder (loading would cast them silently), or a NaN or infinity.
    ``source`` names the file in the message."""
    for name, value in tensors.items():
        if not torch.is_tensor(value):
            raise BadInputError(
                f"{source}: weight {name} is a {type(value).__name__}, not a tensor; the file is not a model "
                "checkpoint or was written wrongly: download or export the model again"
            )
        if not (value.is_floating_point() or value.is_complex()):
            if _IMAGE_PART in str(name).split("."):
                continue
            raise BadInputError(
                f"{source}: weight {name} (shape {tuple(value.shape)}) holds {str(value.dtype).removeprefix('torch.')} "
                "values, not floating point; the file is damaged or was written wrongly: download or export the "
                "model again"
            )
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = int(value.numel() - finite.sum())
            raise BadInputError(
                f"{source}: tensor {name} (shape {tuple(value.shape)}) holds {bad} NaN or infinite value(s) of "
                f"{value.numel()}; the weights are corrupt or diverged in training: download or export the model "
                "again"
            )
