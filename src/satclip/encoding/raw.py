"""Single-scale encodings of the raw angles: ``direct``, ``wrap`` and ``cartesian3d``.

These are the original SatCLIP's baselines. They have no parameters and compute in the input's floating
dtype (integer input is promoted to float64), as the original does: they are accurate in float32.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .points import check_pairs
from .registry import ENCODINGS


def _radians(lonlat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 2)`` degrees → (lon, lat) in radians, each ``(N,)``, in the input's floating dtype."""
    check_pairs(lonlat)
    if not lonlat.is_floating_point():
        lonlat = lonlat.to(torch.float64)
    rad = lonlat * (math.pi / 180)  # torch.deg2rad's values, bit for bit; ONNX has no deg2rad
    return rad[:, 0], rad[:, 1]


class Direct(nn.Module):
    """The angles themselves, shifted: ``(N, 2)`` degrees → ``(N, 2)`` ``radians(x) − π``.

    The original's comment promises [−π, π]; what it computes is lon ∈ [−2π, 0] and lat ∈ [−3π/2, −π/2].
    Reproduced as is, because networks trained with ``direct`` saw these values.
    """

    embedding_dim = 2

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        lon, lat = _radians(lonlat)
        return torch.stack((lon, lat), dim=1) - torch.pi


class Wrap(nn.Module):
    """Each angle on its circle (Mac Aodha et al. 2019): ``(N, 2)`` degrees →
    ``(N, 4)`` = (cos lon, sin lon, cos lat, sin lat)."""

    embedding_dim = 4

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        lon, lat = _radians(lonlat)
        return torch.stack((torch.cos(lon), torch.sin(lon), torch.cos(lat), torch.sin(lat)), dim=1)


class Cartesian3D(nn.Module):
    """The point on the unit sphere: ``(N, 2)`` degrees → ``(N, 3)`` = (x, y, z) =
    (cos lon · cos lat, sin lon · cos lat, sin lat)."""

    embedding_dim = 3

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        lon, lat = _radians(lonlat)
        cos_lat = torch.cos(lat)
        return torch.stack((torch.cos(lon) * cos_lat, torch.sin(lon) * cos_lat, torch.sin(lat)), dim=1)


@ENCODINGS.register("direct")
def _build_direct() -> Direct:
    return Direct()


@ENCODINGS.register("wrap")
def _build_wrap() -> Wrap:
    return Wrap()


@ENCODINGS.register("cartesian3d")
def _build_cartesian3d() -> Cartesian3D:
    return Cartesian3D()
