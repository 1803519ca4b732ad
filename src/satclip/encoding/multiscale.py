"""Multi-scale sinusoidal encodings: ``theory``, ``grid`` and the Sphere2Vec family
(``spherec``, ``spherecplus``, ``spherem``, ``spheremplus``), as the original SatCLIP defines them.

All of them scale the coordinates **in degrees** (no conversion to radians) by ``frequency_num``
frequencies spaced geometrically between ``1 / min_radius`` and ``1 / max_radius``, and take sines and
cosines. With the released hyper-parameters (``min_radius=1, max_radius=360``) the finest scale turns a
degree into a radian. Layouts, duplicated columns and other quirks follow the original exactly, so that
networks trained on its features can be reused; they are noted on each class.

Everything is computed in float64 (the angles reach 1.8e7 rad with ``min_radius=1e-5``, where float32
would be meaningless) and rounded once to the input's floating dtype.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .points import check_pairs
from .registry import ENCODINGS

# The original's class defaults: ``Theory`` and ``GridAndSphere`` differ.
THEORY_DEFAULTS = {"min_radius": 1000.0, "max_radius": 10000.0, "frequency_num": 16}
GRID_DEFAULTS = {"min_radius": 1e-5, "max_radius": 0.01, "frequency_num": 16}


def geometric_frequencies(frequency_num: int, min_radius: float, max_radius: float) -> torch.Tensor:
    """``(frequency_num,)`` float64 frequencies ``1 / (min_radius · (max_radius / min_radius)^(i / (F−1)))``.

    Computed with numpy's ``exp`` in the order the original uses: with ``min_radius=1e-5`` the angles reach
    1.8e7 rad, where one ulp of a frequency moves a feature by ~1e-9, and torch's ``exp`` can differ from
    numpy's in the last bit.
    """
    step = math.log(float(max_radius) / float(min_radius)) / (frequency_num - 1)
    scales = min_radius * np.exp(np.arange(frequency_num, dtype=np.float64) * step)
    return torch.from_numpy(1.0 / scales)


class _MultiScale(nn.Module):
    """Shared parameters, validation and dtype handling; subclasses implement ``_features``."""

    def __init__(self, min_radius: float, max_radius: float, frequency_num: int, columns_per_frequency: int):
        super().__init__()
        for name, value in (("min_radius", min_radius), ("max_radius", max_radius)):
            if not _is_real(value) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if min_radius > max_radius:  # (the scales ran backwards, without a word; equal radii are one scale)
            raise ValueError(f"min_radius must be at most max_radius (the finest and the coarsest scale), got "
                             f"{min_radius!r} and {max_radius!r}")  # fmt: skip
        if not _is_real(frequency_num) or int(frequency_num) != frequency_num or frequency_num < 2:
            raise ValueError(
                f"frequency_num must be an integer >= 2 (it sets a geometric spacing), got {frequency_num!r}"
            )
        self.min_radius = float(min_radius)
        self.max_radius = float(max_radius)
        self.frequency_num = int(frequency_num)
        self.embedding_dim = columns_per_frequency * self.frequency_num
        #: ask ``LocationEncoder.encode`` for float64 coordinates: at frequency 1/min_radius a float32
        #: coordinate (error up to 1e-5°) moves the angle by 1e-5 / min_radius rad
        self.needs_float64 = True
        # a plain attribute, not a buffer: ``module.float()`` must not round the frequencies
        self.frequencies = geometric_frequencies(self.frequency_num, self.min_radius, self.max_radius)

    def extra_repr(self) -> str:
        radii = f"min_radius={self.min_radius:g}, max_radius={self.max_radius:g}"
        return f"{radii}, frequency_num={self.frequency_num}"

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        """``(N, 2)`` (lon, lat) degrees → ``(N, embedding_dim)`` in the input's floating dtype (float64 for
        integer input)."""
        check_pairs(lonlat)
        dtype = lonlat.dtype if lonlat.is_floating_point() else torch.float64
        coords = lonlat.to(torch.float64)
        out = self._features(coords, self.frequencies.to(coords.device))
        return out.reshape(-1, self.embedding_dim).to(dtype)  # -1: a traced export keeps N dynamic

    def _features(self, coords: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _sin_even_cos_odd(angles: torch.Tensor) -> torch.Tensor:
    """sin of the even, cos of the odd entries along the last axis."""
    out = torch.empty_like(angles)
    out[..., 0::2] = torch.sin(angles[..., 0::2])
    out[..., 1::2] = torch.cos(angles[..., 1::2])
    return out


class Theory(_MultiScale):
    """Space2Vec "theory" (Mai et al. 2020): projections of (lon, lat) degrees onto three unit vectors
    120° apart, each scaled by every frequency, with sines and cosines; ``(N, 6 · frequency_num)``.

    Layout (the original's): angles ``[a1, a1, a2, a2, a3, a3]`` per frequency, frequency-major; the
    ``6F`` values are then split into two halves of ``3F`` and, within each half, even positions take
    sin and odd positions cos. For even ``frequency_num`` this is sin/cos alternating throughout; for odd
    it flips in the second half. Defaults are the original class's (``min_radius=1000``,
    ``max_radius=10000``, ``frequency_num=16``); SatCLIP's configs pass 1 and 360.
    """

    def __init__(
        self,
        min_radius: float = THEORY_DEFAULTS["min_radius"],
        max_radius: float = THEORY_DEFAULTS["max_radius"],
        frequency_num: int = THEORY_DEFAULTS["frequency_num"],
    ):
        super().__init__(min_radius, max_radius, frequency_num, columns_per_frequency=6)

    def _features(self, coords: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        lon, lat = coords[:, 0], coords[:, 1]
        half_sqrt3 = math.sqrt(3) / 2
        # dot products with (1, 0), (-1/2, √3/2), (-1/2, -√3/2)
        a2 = lon * -0.5 + lat * half_sqrt3
        a3 = lon * -0.5 + lat * -half_sqrt3
        projections = torch.stack((lon, lon, a2, a2, a3, a3), dim=1)  # (N, 6)
        angles = projections[:, None, :] * freqs[:, None]  # (N, F, 6)
        return _sin_even_cos_odd(angles.reshape(-1, 2, 3 * angles.shape[1]))  # (N, 2, 3F), N dynamic when traced


class Grid(_MultiScale):
    """Space2Vec "grid" (Mai et al. 2020, eq. 3 of Sphere2Vec): sin and cos of each coordinate in degrees
    times each frequency; ``(N, 4 · frequency_num)`` laid out as ``[coordinate (lon, lat)][frequency][sin,
    cos]``. Defaults are the original class's (``min_radius=1e-5``, ``max_radius=0.01``,
    ``frequency_num=16``)."""

    def __init__(
        self,
        min_radius: float = GRID_DEFAULTS["min_radius"],
        max_radius: float = GRID_DEFAULTS["max_radius"],
        frequency_num: int = GRID_DEFAULTS["frequency_num"],
    ):
        super().__init__(min_radius, max_radius, frequency_num, columns_per_frequency=4)

    def _features(self, coords: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        angles = coords[:, :, None] * freqs  # (N, 2, F)
        return torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1)  # (N, 2, F, 2)


#: Sphere2Vec terms from (lon, lat) scaled by the frequencies, ``(N, F)`` each, and the raw (lon, lat)
#: degrees, ``(N, 1)`` each; returns the terms in output order.
SphereTerms = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], list[torch.Tensor]]


def _spherec(lon, lat, lon1, lat1):
    return [torch.sin(lat), torch.cos(lat) * torch.cos(lon), torch.cos(lat) * torch.sin(lon)]


def _spherecplus(lon, lat, lon1, lat1):
    plain = [torch.sin(lat), torch.cos(lat), torch.sin(lon), torch.cos(lon)]
    return plain + _spherec(lon, lat, lon1, lat1)[1:]


def _spherem(lon, lat, lon1, lat1):
    return [
        torch.sin(lat),
        torch.cos(lat) * torch.cos(lon1),
        torch.cos(lat1) * torch.cos(lon),
        torch.cos(lat) * torch.sin(lon1),
        torch.cos(lat1) * torch.sin(lon),
    ]


def _spheremplus(lon, lat, lon1, lat1):
    plain = [torch.sin(lat), torch.cos(lat), torch.sin(lon), torch.cos(lon)]
    return plain + _spherem(lon, lat, lon1, lat1)[1:]


#: name → (terms, number of terms)
SPHERE_VARIANTS: dict[str, tuple[SphereTerms, int]] = {
    "spherec": (_spherec, 3),
    "spherecplus": (_spherecplus, 6),
    "spherem": (_spherem, 5),
    "spheremplus": (_spheremplus, 8),
}


class Sphere(_MultiScale):
    """Sphere2Vec encodings (Mai et al. 2023) as the original SatCLIP computes them; ``variant`` is one of
    ``spherec`` (3 terms), ``spherecplus`` (6), ``spherem`` (5), ``spheremplus`` (8), output
    ``(N, 2 · terms · frequency_num)``:

    * ``spherec``: sin φ, cos φ cos λ, cos φ sin λ;
    * ``spherecplus``: sin φ, cos φ, sin λ, cos λ, then the ``spherec`` products;
    * ``spherem``: sin φ, cos φ cos λ₁, cos φ₁ cos λ, cos φ sin λ₁, cos φ₁ sin λ;
    * ``spheremplus``: sin φ, cos φ, sin λ, cos λ, then the ``spherem`` products,

    with λ, φ = lon, lat in degrees times a frequency and λ₁, φ₁ = lon, lat in degrees *used as radians*
    (the original's single-scale terms skip the conversion). Layout: frequency-major, terms in the order
    above, **each term twice in a row** (the original scales a sin/cos pair of slots but fills both with
    the same term). Defaults are the original class's (``min_radius=1e-5``, ``max_radius=0.01``,
    ``frequency_num=16``).
    """

    def __init__(
        self,
        variant: str,
        min_radius: float = GRID_DEFAULTS["min_radius"],
        max_radius: float = GRID_DEFAULTS["max_radius"],
        frequency_num: int = GRID_DEFAULTS["frequency_num"],
    ):
        if variant not in SPHERE_VARIANTS:
            raise ValueError(f"unknown Sphere2Vec variant {variant!r}; known: {', '.join(SPHERE_VARIANTS)}")
        terms, n_terms = SPHERE_VARIANTS[variant]
        super().__init__(min_radius, max_radius, frequency_num, columns_per_frequency=2 * n_terms)
        self.variant = variant
        self._terms = terms

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, {super().extra_repr()}"

    def _features(self, coords: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        lon1, lat1 = coords[:, 0:1], coords[:, 1:2]
        terms = self._terms(lon1 * freqs, lat1 * freqs, lon1, lat1)
        # (N, F, 2 · terms): each term twice, stacked rather than repeat_interleave'd (whose ONNX graph cannot
        # reshape a batch of 0 points)
        return torch.stack([term for term in terms for _ in range(2)], dim=-1)


@ENCODINGS.register("theory")
def _build_theory(
    min_radius: float = THEORY_DEFAULTS["min_radius"],
    max_radius: float = THEORY_DEFAULTS["max_radius"],
    frequency_num: int = THEORY_DEFAULTS["frequency_num"],
) -> Theory:
    return Theory(min_radius, max_radius, frequency_num)


@ENCODINGS.register("grid")
def _build_grid(
    min_radius: float = GRID_DEFAULTS["min_radius"],
    max_radius: float = GRID_DEFAULTS["max_radius"],
    frequency_num: int = GRID_DEFAULTS["frequency_num"],
) -> Grid:
    return Grid(min_radius, max_radius, frequency_num)


def _register_sphere(variant: str) -> None:
    @ENCODINGS.register(variant)
    def _build(
        min_radius: float = GRID_DEFAULTS["min_radius"],
        max_radius: float = GRID_DEFAULTS["max_radius"],
        frequency_num: int = GRID_DEFAULTS["frequency_num"],
    ) -> Sphere:
        return Sphere(variant, min_radius, max_radius, frequency_num)


for _variant in SPHERE_VARIANTS:
    _register_sphere(_variant)
