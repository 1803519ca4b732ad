"""The ``sphericalharmonics`` positional encoding (SatCLIP's location basis)."""

from __future__ import annotations

import math

import torch
from torch import nn

from . import analytic_exact
from .analytic_expressions import analytic_harmonics
from .legendre import real_spherical_harmonics
from .registry import ENCODINGS

#: harmonics_calculation → (m0_scale, condon_shortley) of the stable recurrence
_RECURRENCE_CONVENTIONS = {
    "analytic": (math.pi, False),
    "analytic-stable": (math.pi, False),
    "closed-form": (1.0, True),
}
CALCULATIONS = ("analytic", "analytic-original", "analytic-stable", "closed-form")


def correction_threshold(dtype: torch.dtype) -> float:
    """Below this bound a printed-coefficient correction cannot move an O(1) output of ``dtype`` beyond
    its own rounding: half an ulp of 1 (float64: 1.1e-16; float32 and narrower, whose values are rounded
    from float32: 6e-8)."""
    return 2.0**-53 if dtype == torch.float64 else 2.0**-24


class SphericalHarmonics(nn.Module):
    """Real spherical harmonics of degree l < ``legendre_polys`` at (lon, lat) points.

    The angles follow the original SatCLIP: ``phi = radians(lon + 180)`` and ``theta = radians(lat + 90)``
    (θ = 0 at the south pole). ``harmonics_calculation`` selects the convention and the algorithm:

    * ``"analytic"`` — what the six released models computed: no Condon–Shortley phase, m = 0 columns
      scaled by π, and the original's sympy-printed polynomials, whose 15-digit coefficients put errors of
      up to 0.6 into the basis at high degree near the poles. Computed as the *exact* value of those
      printed polynomials (:mod:`.analytic_exact`: the recurrence plus a small correction per column),
      fast and in any dtype. The original's float64 evaluation of them differs from it by its own
      rounding noise (≤ 3e-2 at L = 40, near the poles; docs/conventions.md).
    * ``"analytic-original"`` — the same polynomials evaluated expression by expression in float64 in
      the original's order of operations: the bit-closest reproduction of the original's output, slow.
    * ``"analytic-stable"`` — the same convention computed exactly by a stable recurrence (fast, any
      dtype and device), without the printed coefficients' errors. The default for new models.
    * ``"closed-form"`` — the original's other option: Condon–Shortley phase, no π on m = 0, computed
      by the same recurrence.

    ``forward`` maps ``(N, 2)`` degrees to ``(N, legendre_polys²)``. The output dtype is the input's
    floating dtype; ``"analytic-original"`` always evaluates in float64 and rounds once at the end.
    """

    def __init__(self, legendre_polys: int = 10, harmonics_calculation: str = "analytic-stable"):
        super().__init__()
        if harmonics_calculation not in CALCULATIONS:
            raise ValueError(
                f"harmonics_calculation={harmonics_calculation!r} is not one of {list(CALCULATIONS)}"
            )
        if isinstance(legendre_polys, bool) or int(legendre_polys) != legendre_polys or legendre_polys < 1:
            raise ValueError(f"legendre_polys must be a positive integer, got {legendre_polys!r}")
        self.legendre_polys = int(legendre_polys)
        self.harmonics_calculation = harmonics_calculation
        self.embedding_dim = self.legendre_polys**2
        #: the sympy expressions are useless in float32 (errors up to 2.5e7 at degree 39)
        self.needs_float64 = harmonics_calculation == "analytic-original"

    def extra_repr(self) -> str:
        return f"legendre_polys={self.legendre_polys}, harmonics_calculation={self.harmonics_calculation!r}"

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        dtype = lonlat.dtype if lonlat.is_floating_point() else torch.float64
        if self.harmonics_calculation == "analytic-original":
            return analytic_harmonics(lonlat, self.legendre_polys).to(dtype)
        if self.harmonics_calculation == "analytic":
            return self._analytic(lonlat, dtype)
        m0_scale, condon_shortley = _RECURRENCE_CONVENTIONS[self.harmonics_calculation]
        lat = torch.deg2rad(lonlat[:, 1].to(torch.float64))
        # theta = lat + 90°: cos θ = -sin(lat), sin θ = cos(lat) (exactly 0 at the poles)
        cos_theta = -torch.sin(lat)
        sin_theta = torch.where(lonlat[:, 1].abs() == 90, 0.0, torch.cos(lat))
        phi = torch.deg2rad(lonlat[:, 0].to(torch.float64) + 180)
        return real_spherical_harmonics(
            cos_theta, sin_theta, phi, self.legendre_polys,
            m0_scale=m0_scale, condon_shortley=condon_shortley, dtype=dtype,
        )  # fmt: skip


    def _analytic(self, lonlat: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # the original's angles (cos θ, and sin θ as (1 − cos²θ)^0.5), so that near the poles the basis
        # sees the same float64 inputs as the printed polynomials did
        x, s, phi = analytic_exact.original_angles(lonlat)
        out = real_spherical_harmonics(x, s, phi, self.legendre_polys, m0_scale=math.pi, dtype=dtype)
        correction = analytic_exact.printed_correction(self.legendre_polys).select(correction_threshold(dtype))
        if out.requires_grad:
            out = out.clone()
        for column, value in correction.constants.items():  # l = 0: the printed constant itself
            out[:, column] = value
        if len(correction):
            values = correction.values(x, s, phi).to(dtype)
            # rows of the (L², N) buffer behind ``out`` are contiguous
            out.T.index_add_(0, correction.columns.to(out.device), values.T)
        return out


@ENCODINGS.register("sphericalharmonics")
def _build(legendre_polys: int = 10, harmonics_calculation: str = "analytic-stable") -> SphericalHarmonics:
    return SphericalHarmonics(legendre_polys, harmonics_calculation)
