"""Positional encodings of (lon, lat) points, looked up by name.

>>> enc = satclip.encoding.create("sphericalharmonics", legendre_polys=10)
>>> enc(torch.tensor([[13.4, 52.5]])).shape
torch.Size([1, 100])

Every encoding is an ``nn.Module`` with an ``embedding_dim`` attribute whose ``forward`` takes ``(N, 2)``
(lon, lat) in degrees. Parameter names follow the original SatCLIP hyper-parameters.
"""

from __future__ import annotations

from torch import nn

from ..machine import settle_vector_math
from . import (
    multiscale,  # noqa: F401  (registers "theory", "grid" and the "sphere*" family)
    raw,  # noqa: F401  (registers "direct", "wrap", "cartesian3d")
    spherical_harmonics,  # noqa: F401  (registers "sphericalharmonics")
)
from .registry import ENCODINGS

settle_vector_math()  # before the first multi-threaded sin/cos of any encoding or network

__all__ = ["create", "names", "ENCODINGS"]


def create(name: str, **params) -> nn.Module:
    """Build the encoding ``name`` with ``params`` (e.g. ``legendre_polys``, ``min_radius``)."""
    return ENCODINGS.create(name, **params)


def create_from_hparams(name: str, hparams: dict) -> nn.Module:
    """Build ``name`` from a hyper-parameter dict that may name parameters of other encodings too."""
    accepted = ENCODINGS.accepted(name)
    return create(name, **{k: v for k, v in hparams.items() if k in accepted})


def names() -> list[str]:
    return ENCODINGS.names()
