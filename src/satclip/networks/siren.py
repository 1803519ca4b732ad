"""SIREN (Sitzmann et al. 2020) as used by SatCLIP, state-dict compatible with the released models."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SirenLayer(nn.Module):
    """``activation(dropout(x Wᵀ + b))`` with sine activation ``sin(w0 · ·)`` by default.

    Initialisation as in the original: U(±1/d_in) for the first layer, U(±sqrt(c/d_in)/w0) otherwise, for
    weights and biases alike. ``dropout`` applies ``F.dropout`` (p = 0.5) in training mode only.
    """

    def __init__(
        self, dim_in: int, dim_out: int, *, w0: float = 1.0, c: float = 6.0, is_first: bool = False,
        bias: bool = True, sine: bool = True, dropout: bool = False,
    ):  # fmt: skip
        super().__init__()
        self.w0 = w0
        self.sine = sine
        self.dropout = dropout
        bound = 1 / dim_in if is_first else math.sqrt(c / dim_in) / w0
        self.weight = nn.Parameter(torch.empty(dim_out, dim_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(dim_out).uniform_(-bound, bound)) if bias else None

    def extra_repr(self) -> str:  # (it printed "SirenLayer()": no widths)
        dim_out, dim_in = self.weight.shape
        return (f"in_features={dim_in}, out_features={dim_out}, bias={self.bias is not None}, "
                f"{f'sine, w0={self.w0:g}' if self.sine else 'linear'}{', dropout=0.5' if self.dropout else ''}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.dropout:
            out = F.dropout(out, p=0.5, training=self.training)
        return torch.sin(self.w0 * out) if self.sine else out


class SirenNet(nn.Module):
    """``num_layers`` sine layers (w0 = ``w0_initial`` on the first) and a linear output layer.

    Keys: ``layers.{i}.weight|bias`` and ``last_layer.weight|bias`` as in the released checkpoints.
    """

    def __init__(
        self, dim_in: int, dim_hidden: int, dim_out: int, num_layers: int, *, w0: float = 1.0,
        w0_initial: float = 30.0, bias: bool = True, dropout: bool = True,
    ):  # fmt: skip
        super().__init__()
        self.layers = nn.ModuleList(
            SirenLayer(
                dim_in if i == 0 else dim_hidden,
                dim_hidden,
                w0=w0_initial if i == 0 else w0,
                is_first=i == 0,
                bias=bias,
                dropout=dropout,
            )  # fmt: skip
            for i in range(num_layers)
        )
        self.last_layer = SirenLayer(dim_hidden, dim_out, w0=w0, bias=bias, sine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.last_layer(x)


from .registry import NETWORKS, SIZES, BadInputError, matrix, numbered  # noqa: E402


@NETWORKS.register("siren")
def _build(input_dim: int, num_classes: int = 256, dim_hidden: int = 256, num_layers: int = 2) -> SirenNet:
    if num_layers == 0 and dim_hidden != input_dim:  # (its output layer reads dim_hidden features: the input)
        raise BadInputError(
            f"network 'siren' has num_layers=0, so its output layer reads the {input_dim} input features: "
            f"dim_hidden must be {input_dim}, not {dim_hidden} (or use 1 or more sine layers)"
        )
    return SirenNet(input_dim, dim_hidden, num_classes, num_layers)


@SIZES.register("siren")
def _sizes(shapes, prefix: str = "") -> dict:
    layers = numbered(shapes, f"{prefix}layers.")
    if layers != list(range(len(layers))):
        raise BadInputError(f"the weights' sine layers {prefix}layers.* are numbered {layers}, not 0, 1, …")
    last = f"{prefix}last_layer.weight"
    out, width = matrix(shapes, last)
    count = f"{len(layers)} sine layers ({prefix}layers.0 … {prefix}layers.{len(layers) - 1})" if layers else "none"
    sizes = {
        "num_layers": (len(layers), count),
        "num_classes": (out, f"{last} has shape ({out}, {width})"),
        "dim_hidden": (width, f"{last} has shape ({out}, {width})"),
    }
    first = f"{prefix}layers.0.weight" if layers else last
    rows, cols = matrix(shapes, first)
    sizes["input_dim"] = (cols, f"{first} has shape ({rows}, {cols})")
    return sizes
