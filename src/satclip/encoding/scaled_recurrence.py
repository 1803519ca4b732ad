"""Spherical harmonics up to a per-column constant, two vectorised passes per degree: the basis kernel of
the fused encoder (:mod:`satclip.models.fused`).

:mod:`.legendre` computes ``Y_l^m = a_lm · (x · Y_{l-1}^m − b_lm · Y_{l-2}^m)`` (x = cos θ). Dividing every
column by a constant ``κ_l^m`` (``κ_|m|^m`` the sectoral normalisation, ``κ_l^m = a_lm · κ_{l-1}^m``) turns
that into

    Ŷ_l^m = x · Ŷ_{l-1}^m − β_lm · Ŷ_{l-2}^m,    β_lm = ((l−1)² − m²) / (4(l−1)² − 1),

started from ``Ŷ_|m|^±|m| = s^|m| · cos(|m|φ)`` or ``· sin(|m|φ)`` (s = sin θ): the real and imaginary parts of
``(s·e^{iφ})^|m|``, one complex cumulative product for all orders. So a degree costs two passes over its
block (a product and a fused multiply-subtract) and no per-point normalisation; the constants ``κ`` are
applied once, to the first layer's weights (:mod:`satclip.models.fused`) or to the rows (:func:`harmonics`).
The values keep the recurrence's relative accuracy; they shrink like 2^−(l−|m|) (≥ 1e-12 at L = 40), far
from float32's underflow except for sin θ below ~0.1, i.e. within ~6° of a pole, where callers use
float64 (:data:`POLAR_LATITUDE`).

Work is done in whatever dtype the inputs have: float32 for speed (max abs error ≤ 1.3e-5 at L = 40 for
|lat| ≤ 80°, measured), float64 near the poles, where a float32 three-term recurrence loses ~l²·eps and
rounding cos θ to float32 costs as much again (up to 1.5e-4 at L = 40).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

#: points with |lat| above this (degrees) are computed in float64 when the output is float32 or narrower
POLAR_LATITUDE = 80.0
#: the ``seed_floor`` of :func:`scaled_harmonics_staged` for points near a pole: max κ at L = 40 is 3.9e11, so
#: a true harmonic moves by ≤ 4e-9 (below float32's rounding of 1); the values left are ≥ ~1e-32 (seed ×
#: 2^−(l−|m|)), far above float32's smallest normal number 1.2e-38
SEED_FLOOR = 1e-20
_Y00 = 1 / math.sqrt(4 * math.pi)


@dataclass(frozen=True)
class ScaledPlan:
    """Constants of the scaled recurrence for ``degree`` L (CPU, float64).

    Attributes:
        degree: L; L² columns, index l² + l + m.
        scale: ``(L²,)`` κ: the true harmonic is ``κ · Ŷ`` column by column.
        beta: per degree l ≥ 2, ``(2l − 3, 1)`` β_lm for m = −(l−2) … l−2.
        sectoral_rows: ``(2L − 1,)`` output rows of Ŷ_0^0, then Ŷ_k^−k and Ŷ_k^k for k = 1 … L−1.
    """

    degree: int
    scale: torch.Tensor
    beta: tuple[torch.Tensor, ...]
    sectoral_rows: torch.Tensor


@lru_cache(maxsize=16)
def plan(degree: int, m0_scale: float = 1.0, condon_shortley: bool = False) -> ScaledPlan:
    """The plan for ``degree`` in the convention of :func:`satclip.encoding.legendre.real_spherical_harmonics`
    (``m0_scale`` on m = 0 columns, optional Condon–Shortley phase)."""
    if degree < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    scale = torch.empty(degree * degree, dtype=torch.float64)
    sectoral_norm = _Y00  # P̄_m^m / s^m
    for order in range(degree):
        if order:
            sectoral_norm *= math.sqrt((2 * order + 1) / (2 * order))
        factor = m0_scale if order == 0 else math.sqrt(2) * ((-1) ** order if condon_shortley else 1)
        for m in {order, -order}:
            kappa = sectoral_norm * factor
            scale[order * order + order + m] = kappa
            for l in range(order + 1, degree):
                kappa *= math.sqrt((4 * l * l - 1) / (l * l - order * order))
                scale[l * l + l + m] = kappa
    beta = tuple(
        torch.tensor([((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1) for m in range(-(l - 2), l - 1)],
                     dtype=torch.float64)[:, None]
        if l >= 2 else torch.empty(0, 1, dtype=torch.float64)
        for l in range(degree)
    )  # fmt: skip
    rows = [0] + [r for k in range(1, degree) for r in (k * k, k * k + 2 * k)]
    return ScaledPlan(degree, scale, beta, torch.tensor(rows, dtype=torch.int64))


@lru_cache(maxsize=32)
def _on(plan_: ScaledPlan, device: torch.device, dtype: torch.dtype) -> tuple:
    return (
        tuple(b.to(device, dtype) for b in plan_.beta),
        plan_.sectoral_rows.to(device),
    )


def block_views(out: torch.Tensor, degree: int) -> list[tuple[torch.Tensor, ...]]:
    """Per degree l ≥ 1 the row ranges of ``out`` (``(L², c)``) the recurrence reads and writes: slicing
    costs as much as a small op, so a caller that fills the same buffer many times builds these once."""
    views = []
    for l in range(1, degree):
        cur = out[l * l : (l + 1) ** 2]
        prev = out[(l - 1) ** 2 : l * l]
        if l >= 2:
            views.append((cur[1 : 2 * l], prev, cur[2 : 2 * l - 1], out[(l - 2) ** 2 : (l - 1) ** 2]))
        else:
            views.append((cur[1 : 2 * l], prev, None, None))
    return views


def scaled_harmonics(
    x: torch.Tensor, s: torch.Tensor, phi: torch.Tensor, plan_: ScaledPlan, out: torch.Tensor,
    views: list | None = None,
) -> torch.Tensor:  # fmt: skip
    """Fill ``out`` ``(L², c)`` with Ŷ at ``c`` points, in ``out``'s dtype.

    Args:
        x, s: ``(c,)`` cos θ and sin θ ≥ 0, any floating dtype (computed in ``out.dtype``; pass float64
            values so that only the result is rounded).
        phi: ``(c,)`` azimuth in radians.
        plan_: from :func:`plan`.
        out: ``(L², c)`` tensor whose rows are contiguous.
        views: :func:`block_views` of ``out`` (built here if not given).

    Returns:
        ``out``; the true harmonics are ``plan_.scale[:, None] · out``.
    """
    degree = plan_.degree
    dtype, device = out.dtype, out.device
    beta, rows = _on(plan_, device, dtype)
    table = _sectoral(s, phi, degree, dtype)
    out.index_copy_(0, rows, table)
    xw = x.to(dtype)[None, :]
    for l, (inner, prev, middle, prev2) in enumerate(views or block_views(out, degree), start=1):
        torch.mul(prev, xw, out=inner)  # m = −(l−1) … l−1
        if middle is not None:  # m = −(l−2) … l−2
            middle.addcmul_(beta[l], prev2, value=-1)
    return out


def _sectoral(s: torch.Tensor, phi: torch.Tensor, degree: int, dtype: torch.dtype) -> torch.Tensor:
    """``(2L − 1, c)``: 1, then s^k·sin(kφ), s^k·cos(kφ) for k = 1 … L−1 — the complex powers (s·e^{iφ})^k,
    computed in float64 whatever ``dtype`` (2L values per point)."""
    device = s.device
    complex_dtype = torch.complex128 if device.type != "mps" else torch.complex64
    w = torch.polar(s.to(complex_dtype.to_real()), phi.to(complex_dtype.to_real()))
    powers = torch.view_as_real(torch.cumprod(w.expand(degree - 1, -1), 0))  # (L−1, c, 2): cos, sin parts
    table = torch.empty(2 * degree - 1, s.shape[0], dtype=dtype, device=device)
    table[0] = 1.0
    table[1::2] = powers[..., 1]  # m = −k: sin
    table[2::2] = powers[..., 0]  # m = +k: cos
    return table


def scaled_harmonics_staged(
    x: torch.Tensor, s: torch.Tensor, phi: torch.Tensor, plan_: ScaledPlan, out: torch.Tensor, ring: torch.Tensor,
    seed_floor: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """As :func:`scaled_harmonics`, with the recurrence in ``ring``'s dtype (``(3, 2L − 1, c')``, c' ≥ c: the
    three degree blocks in flight, small enough to stay in cache) and each finished block rounded into
    ``out`` (e.g. bfloat16 or float32) right away, while it is still in cache.

    ``seed_floor``: sectoral seeds ``s^|m|·cos|sin(|m|φ)`` smaller than this in magnitude are set to 0. Every
    Ŷ of order m is its seed times a factor of magnitude ≤ 1, so this changes a true harmonic by at most
    ``max(κ) · seed_floor`` (:data:`SEED_FLOOR`), and keeps the rounded values of points near a pole (float64
    ring, narrower ``out``) clear of float32's subnormal range, which slows products down many times over.
    """
    degree, c = plan_.degree, x.shape[0]
    dtype = ring.dtype
    beta, _ = _on(plan_, x.device, dtype)
    table = _sectoral(s, phi, degree, dtype)
    if seed_floor:
        table.masked_fill_(table.abs() < seed_floor, 0.0)
    xw = x.to(dtype)[None, :]
    out[0:1].copy_(table[0:1])
    prev2, prev = None, table[0:1]
    for l in range(1, degree):
        cur = ring[l % 3, : 2 * l + 1, :c]
        torch.mul(prev, xw, out=cur[1 : 2 * l])
        if l >= 2:
            cur[2 : 2 * l - 1].addcmul_(beta[l], prev2, value=-1)
        cur[:: 2 * l].copy_(table[2 * l - 1 : 2 * l + 1])  # rows m = −l and m = l
        out[l * l : (l + 1) ** 2].copy_(cur)
        prev2, prev = prev, cur
    return out


def harmonics(x: torch.Tensor, s: torch.Tensor, phi: torch.Tensor, plan_: ScaledPlan, dtype: torch.dtype,
              polar: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """The true harmonics ``(N, L²)`` (a transposed view of an ``(L², N)`` buffer) in ``dtype``, points
    flagged in ``polar`` (``(N,)`` bool) computed in float64. For tests and the module path; the fused
    encoder keeps Ŷ and folds κ into its weights."""
    n = x.shape[0]
    out = torch.empty(plan_.degree**2, n, dtype=dtype, device=x.device)
    scaled_harmonics(x, s, phi, plan_, out)
    if polar is not None and bool(polar.any()):
        idx = polar.nonzero().squeeze(1)
        exact = torch.empty(plan_.degree**2, idx.numel(), dtype=torch.float64, device=x.device)
        scaled_harmonics(x[idx].double(), s[idx].double(), phi[idx].double(), plan_, exact)
        exact.mul_(plan_.scale.to(x.device)[:, None])
        out.mul_(plan_.scale.to(x.device, dtype)[:, None])
        out.index_copy_(1, idx, exact.to(dtype))
        return out.T
    return out.mul_(plan_.scale.to(x.device, dtype)[:, None]).T
