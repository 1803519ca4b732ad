"""The network registry, and for each network a reader of its sizes from a state dict's shapes.

``SIZES.get(name)(shapes, prefix)`` returns the builder parameters (``input_dim``, ``num_classes``,
``dim_hidden``, ``num_layers`` as the network has them) that produced tensors of those shapes, without
building anything, so that a config can be checked against a weights file before a module is allocated.
Each reader returns ``{param: (value, evidence)}``, the evidence naming the tensor(s) the value comes from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import BadInputError
from ..registry import Registry

NETWORKS = Registry("network")
SIZES = Registry("network")

Shapes = Mapping[str, tuple[int, ...]]

#: what to do about weights that lack a tensor their network needs, or hold one of the wrong rank
WEIGHTS_FIX = "the weights file is incomplete or of another model: export, convert or download the model again"


class WeightsError(BadInputError):
    """Weights lack a tensor their network needs, or hold one of the wrong rank. The message names the tensor
    and the fix, not the file: a reader that knows the file puts its name in front."""


def matrix(shapes: Shapes, key: str) -> tuple[int, int]:
    """The ``(out, in)`` shape of the 2-d weight ``key``, or a :class:`WeightsError` saying it is missing."""
    shape = shapes.get(key)
    if shape is None:
        near = sorted(shapes)[:8]
        more = " …" if len(shapes) > len(near) else ""
        raise WeightsError(f"the weights have no {key}, which this network needs (found {near}{more}); {WEIGHTS_FIX}")
    if len(shape) != 2:
        raise WeightsError(
            f"the weights' {key} has shape {tuple(shape)}; a linear layer's weight is 2-d; {WEIGHTS_FIX}"
        )
    return int(shape[0]), int(shape[1])


def numbered(shapes: Shapes, prefix: str, suffix: str = ".weight") -> list[int]:
    """Sorted indices ``i`` of the keys ``{prefix}{i}{suffix}``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    return sorted(int(m.group(1)) for key in shapes if (m := pattern.match(key)))
