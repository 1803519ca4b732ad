"""Real spherical harmonics for all (l, m) at once by a numerically stable recurrence.

With the fully normalised associated Legendre functions
``P̄_l^m(x) = sqrt((2l+1)/(4π) · (l-m)!/(l+m)!) · P_l^m(x)`` (no Condon–Shortley phase), every real
harmonic ``Y_l^m = P̄_l^|m|(cos θ) · t_m(φ)`` (``t_m`` = √2·cos(mφ), √2·sin(|m|φ) or 1) obeys, for a
fixed m, the same three-term recurrence in l as ``P̄_l^|m|`` itself:

``Y_l^m = a_lm · (x · Y_{l-1}^m − b_lm · Y_{l-2}^m)``,  |m| ≤ l − 1,

with ``a_lm = sqrt((4l²−1)/(l²−m²))`` and ``b_lm = sqrt(((l−1)²−m²)/(4(l−1)²−1))`` (``b = 0`` for
|m| = l − 1). So each degree's whole block of 2l + 1 columns comes from the two blocks before it in three
vectorised passes; only the two sectoral columns ``Y_l^±l`` are new, from ``P̄_m^m = P̄_0^0 ·
∏_{k≤m} sqrt((2k+1)/(2k)) · sin θ`` (a running product over the degrees) times the azimuth factors.
Every quantity stays O(1): poles and antimeridian need no special case and L = 100 and beyond stay finite.

The recurrence runs in float64 (float32 only on devices without float64) whatever the output dtype, and
rounds once: near the poles the three-term recurrence in float32 loses ~l²·eps (errors of 1e-4 at
L = 40), and rounding cos θ to float32 costs as much again. On the CPU the work runs in chunks of points
(:data:`CHUNK`) that keep each op long and the blocks in flight in L3, writing a ``(L², N)`` buffer whose
rows are contiguous; the result is its transpose, an ``(N, L²)`` view (``.contiguous()`` if you need that
layout; ``F.linear`` and ``@`` consume it directly). Column ``l² + l + m`` holds (l, m).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from . import hugepages

_SQRT2 = math.sqrt(2.0)
_Y00 = 1 / math.sqrt(4 * math.pi)  # P̄_0^0
#: points per block on the CPU. Fewer, longer ops beat keeping the three degree blocks in flight in L2:
#: on the 2-core EPYC dev box (32 MiB L3) L = 40 took 0.44 s per 1e5 points with 1,024, 0.26 s with
#: 2,048 and 0.21–0.24 s with 16,384; L = 10, 1e4 points 2.8, 1.9 and 1.3 ms.
CHUNK = 16384
#: points per block when blocks are staged in working precision (float32 output): the three reused
#: buffers, 3 × (2L − 1) × 4096 float64 values (7.8 MB at L = 40), fit in cache and are cheap to
#: allocate per call
STAGED_CHUNK = 4096


@lru_cache(maxsize=32)
def _recurrence_coefficients(degree: int) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The sectoral factors ``sqrt((2m+1)/(2m))`` (index 0 unused) as an ``(L, 1)`` column, and per
    degree l ≥ 1 the columns ``a_lm`` for m = −(l−1) … l−1 and ``b_lm`` for m = −(l−2) … l−2, float64."""
    m = torch.arange(degree, dtype=torch.float64)
    sectoral = torch.sqrt((2 * m + 1) / (2 * m).clamp(min=1))
    rows: list[tuple[torch.Tensor, torch.Tensor]] = [(torch.empty(0, 1, dtype=torch.float64),) * 2]
    for l in range(1, degree):
        order = torch.arange(-(l - 1), l, dtype=torch.float64).abs()
        a = torch.sqrt((4.0 * l * l - 1) / (l * l - order * order))
        inner = order[1:-1]
        b = torch.sqrt(((l - 1.0) ** 2 - inner * inner) / (4.0 * (l - 1) ** 2 - 1))
        rows.append((a[:, None], b[:, None]))
    return sectoral[:, None], rows


def _working_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _mul_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out[...] = a * b`` without a temporary; through a temporary when autograd must see it."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return out.copy_(a * b)
    return torch.mul(a, b, out=out)


def real_spherical_harmonics(
    cos_theta: torch.Tensor,
    sin_theta: torch.Tensor,
    phi: torch.Tensor,
    degree: int,
    *,
    m0_scale: float = 1.0,
    condon_shortley: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Orthonormal real spherical harmonics of degree l < ``degree``.

    Args:
        cos_theta, sin_theta: ``(N,)`` cosine and (non-negative) sine of the polar angle. Passing both
            keeps full precision near the poles, where ``sqrt(1 - cos²)`` would lose it.
        phi: ``(N,)`` azimuth in radians.
        degree: number of degrees L; the result has L² columns.
        m0_scale: factor applied to every m = 0 column (π reproduces the original's "analytic" quirk).
        condon_shortley: multiply column (l, m) by (-1)^m.
        dtype: output dtype (defaults to ``cos_theta.dtype``). The recurrence itself runs in float64
            (float32 on MPS) from the inputs as given, and is rounded once into the output.

    Returns:
        ``(N, degree²)``; column ``l² + l + m`` holds ``sqrt(2)·P̄_l^m(cos θ)·cos(mφ)`` for m > 0,
        ``sqrt(2)·P̄_l^|m|(cos θ)·sin(|m|φ)`` for m < 0 and ``P̄_l^0(cos θ)`` for m = 0, times the
        optional factors.
    """
    if degree < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    dtype = dtype or cos_theta.dtype
    device = cos_theta.device
    work = _working_dtype(device)
    n = cos_theta.shape[0]
    sectoral, rows = _recurrence_coefficients(degree)
    sectoral = sectoral.to(device, work)
    rows = [(a.to(device, work), b.to(device, work)) for a, b in rows]
    orders = torch.arange(degree, device=device, dtype=work)[:, None]
    sign = (-1.0) ** orders if condon_shortley else torch.ones_like(orders)
    trig_scale = _SQRT2 * sign
    trig_scale[0] = m0_scale  # the m = 0 column carries P̄_l^0 · m0_scale; all other m the √2

    out_t = hugepages.empty(degree * degree, n, dtype=dtype, device=device)
    tracked = torch.is_grad_enabled() and any(t.requires_grad for t in (cos_theta, sin_theta, phi))
    # Degree blocks are computed in the output itself when it has the working dtype (and autograd need
    # not see them), else in working-precision blocks copied (rounded) into it: three reused buffers (a
    # block needs the two before it), or fresh ones for autograd, which must keep them all.
    in_place = dtype == work and not tracked
    chunk = (CHUNK if in_place else STAGED_CHUNK) if device.type == "cpu" else max(n, 1)  # GPU: one launch each
    ring = None if in_place or tracked else torch.empty(3, 2 * degree - 1, min(chunk, n), device=device, dtype=work)

    def fill(start: int, stop: int) -> None:
        x = cos_theta[None, start:stop].to(work)
        angle = orders * phi[None, start:stop].to(work)
        cos_part = torch.cos(angle) * trig_scale  # (L, chunk), row m
        sin_part = torch.sin(angle) * trig_scale
        factors = sectoral * sin_theta[None, start:stop].to(work)  # row m ≥ 1: P̄_m^m / P̄_{m-1}^{m-1}

        def block(l: int) -> torch.Tensor:
            if in_place:
                return out_t[l * l : (l + 1) ** 2, start:stop]
            if ring is not None:
                return ring[l % 3, : 2 * l + 1, : stop - start]
            return torch.empty(2 * l + 1, stop - start, device=device, dtype=work)

        prev2 = None
        p_mm = torch.full_like(x, _Y00)  # P̄_m^m, m = 0 here
        prev = _mul_into(p_mm, cos_part[:1], block(0))
        if not in_place:
            out_t[0:1, start:stop].copy_(prev)
        for l in range(1, degree):
            cur = block(l)
            a, b = rows[l]
            inner = _mul_into(prev, x, cur[1 : 2 * l])  # m = −(l−1) … l−1
            if l >= 2:
                cur[2 : 2 * l - 1].addcmul_(b, prev2, value=-1)
            inner.mul_(a)
            p_mm = p_mm * factors[l : l + 1]  # P̄_l^l
            _mul_into(p_mm, sin_part[l : l + 1], cur[:1])  # m = −l
            _mul_into(p_mm, cos_part[l : l + 1], cur[2 * l :])  # m = l
            if not in_place:
                out_t[l * l : (l + 1) ** 2, start:stop].copy_(cur)
            prev2, prev = prev, cur

    for start in range(0, n, chunk):
        fill(start, min(start + chunk, n))
    return out_t.T
