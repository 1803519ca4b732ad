"""Real spherical harmonics for all (l, m) at once by a numerically stable recurrence.

The fully normalised associated Legendre functions
``P̄_l^m(x) = sqrt((2l+1)/(4π) · (l-m)!/(l+m)!) · P_l^m(x)`` (no Condon–Shortley phase) are computed
degree by degree, vectorised over all orders m and all points: the sectoral value
``P̄_l^l = sqrt((2l+1)/(2l)) · s · P̄_{l-1}^{l-1}``, ``P̄_l^{l-1} = sqrt(2l+1) · x · P̄_{l-1}^{l-1}`` and,
for m ≤ l-2, the standard three-term recurrence
``P̄_l^m = a_lm · (x · P̄_{l-1}^m − b_lm · P̄_{l-2}^m)``. Every quantity stays O(1), so float32 works,
L = 100 and beyond stay finite, and poles and antimeridian need no special case.

The work runs in chunks of points whose working set fits in cache, writing a ``(L², N)`` buffer whose
rows are contiguous; the result is its transpose, an ``(N, L²)`` view (``.contiguous()`` if you need
that layout; ``F.linear`` and ``@`` consume it directly). Column ``l² + l + m`` holds (l, m).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

_SQRT2 = math.sqrt(2.0)
CHUNK = 8192  # points per block: the three rows of L×CHUNK values in flight stay in cache


@lru_cache(maxsize=32)
def _coefficients(degree: int) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """Per degree l ≥ 2: (a_lm, b_lm) for m = 0 … l-2 as float64 column vectors."""
    coeffs: list[tuple[torch.Tensor, torch.Tensor] | None] = [None, None]
    for l in range(2, degree):
        m = torch.arange(l - 1, dtype=torch.float64)
        a = torch.sqrt((4.0 * l * l - 1) / (l * l - m * m))
        b = torch.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1) ** 2 - 1))
        coeffs.append((a[:, None], b[:, None]))
    return coeffs


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
        dtype: working and output dtype (defaults to ``cos_theta.dtype``). The azimuth terms are formed
            in float64 and rounded once.

    Returns:
        ``(N, degree²)``; column ``l² + l + m`` holds ``sqrt(2)·P̄_l^m(cos θ)·cos(mφ)`` for m > 0,
        ``sqrt(2)·P̄_l^|m|(cos θ)·sin(|m|φ)`` for m < 0 and ``P̄_l^0(cos θ)`` for m = 0, times the
        optional factors.
    """
    if degree < 1:
        raise ValueError(f"degree must be >= 1, got {degree}")
    dtype = dtype or cos_theta.dtype
    device = cos_theta.device
    n = cos_theta.shape[0]
    coeffs = [c and (c[0].to(device, dtype), c[1].to(device, dtype)) for c in _coefficients(degree)]
    m = torch.arange(degree, device=device, dtype=torch.float64)
    sectoral = torch.sqrt((2 * m + 1) / (2 * m).clamp(min=1)).to(dtype)[:, None]  # index l: P̄_l^l step
    subdiagonal = torch.sqrt(2 * m + 1).to(dtype)[:, None]  # index l: P̄_l^{l-1} = sqrt(2l+1)·x·P̄_{l-1}^{l-1}
    sign = ((-1.0) ** m if condon_shortley else torch.ones_like(m))[:, None]

    out_t = torch.empty(degree * degree, n, device=device, dtype=dtype)

    def fill(start: int, stop: int) -> None:
        # Azimuth factors (degree, chunk): cos for m = 0…L-1, sin stored for m = L-1…1 (descending, the
        # order of the m < 0 columns).
        angle = m[:, None] * phi[None, start:stop].to(torch.float64)
        cos_part = torch.cos(angle) * (_SQRT2 * sign)
        cos_part[0] = m0_scale
        sin_part = (torch.sin(angle) * (_SQRT2 * sign))[1:].flip(0)
        cos_part, sin_part = cos_part.to(dtype), sin_part.to(dtype)
        x = cos_theta[None, start:stop].to(dtype)
        s = sin_theta[None, start:stop].to(dtype)

        prev2 = None
        prev = torch.full_like(x, 1.0 / math.sqrt(4 * math.pi))  # P̄_0^0
        _mul_into(prev[0], cos_part[0], out_t[0, start:stop])
        for l in range(1, degree):
            cur = torch.empty(l + 1, stop - start, device=device, dtype=dtype)
            if l >= 2:
                a, b = coeffs[l]
                _mul_into(x, prev[: l - 1], cur[: l - 1])
                cur[: l - 1].addcmul_(b, prev2[: l - 1], value=-1).mul_(a)
            _mul_into(prev[l - 1 : l], x, cur[l - 1 : l]).mul_(subdiagonal[l])
            _mul_into(prev[l - 1 : l], s, cur[l : l + 1]).mul_(sectoral[l])
            base = l * l
            _mul_into(cur, cos_part[: l + 1], out_t[base + l : base + 2 * l + 1, start:stop])
            _mul_into(cur[1:].flip(0), sin_part[degree - 1 - l :], out_t[base : base + l, start:stop])
            prev2, prev = prev, cur

    # Chunks keep the CPU working set in cache; on a GPU they would only multiply kernel launches.
    chunk = CHUNK if device.type == "cpu" else max(n, 1)
    for start in range(0, n, chunk):
        fill(start, min(start + chunk, n))
    return out_t.T
