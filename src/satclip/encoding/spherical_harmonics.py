"""The ``sphericalharmonics`` positional encoding (SatCLIP's location basis)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .analytic_expressions import analytic_harmonics
from .legendre import real_spherical_harmonics
from .registry import ENCODINGS

#: harmonics_calculation → (m0_scale, condon_shortley) of the stable recurrence
_RECURRENCE_CONVENTIONS = {
    "analytic-stable": (math.pi, False),
    "closed-form": (1.0, True),
}
CALCULATIONS = ("analytic", "analytic-stable", "closed-form")


class SphericalHarmonics(nn.Module):
    """Real spherical harmonics of degree l < ``legendre_polys`` at (lon, lat) points.

    The angles follow the original SatCLIP: ``phi = radians(lon + 180)`` and ``theta = radians(lat + 90)``
    (θ = 0 at the south pole). ``harmonics_calculation`` selects the convention and the algorithm:

    * ``"analytic"`` — what the six released models computed: no Condon–Shortley phase, m = 0 columns
      scaled by π, evaluated from the original's sympy-printed expressions in float64, including their
      rounding error near the poles at high degree. Exact reproduction, not fast.
    * ``"analytic-stable"`` — the same convention computed exactly by a stable recurrence (fast, any
      dtype and device). The default for new models.
    * ``"closed-form"`` — the original's other option: Condon–Shortley phase, no π on m = 0, computed
      by the same recurrence.

    ``forward`` maps ``(N, 2)`` degrees to ``(N, legendre_polys²)``. The output dtype is the input's
    floating dtype; ``"analytic"`` always evaluates in float64 and rounds once at the end.
    """

    def __init__(self, legendre_polys: int = 10, harmonics_calculation: str = "analytic-stable"):
        super().__init__()
        if harmonics_calculation not in CALCULATIONS:
            raise ValueError(
                f"harmonics_calculation={harmonics_calculation!r} is not one of {list(CALCULATIONS)}"
            )
        if int(legendre_polys) != legendre_polys or legendre_polys < 1:
            raise ValueError(f"legendre_polys must be a positive integer, got {legendre_polys!r}")
        self.legendre_polys = int(legendre_polys)
        self.harmonics_calculation = harmonics_calculation
        self.embedding_dim = self.legendre_polys**2
        #: the sympy expressions are useless in float32 (errors up to 2.5e7 at degree 39)
        self.needs_float64 = harmonics_calculation == "analytic"

    def extra_repr(self) -> str:
        return f"legendre_polys={self.legendre_polys}, harmonics_calculation={self.harmonics_calculation!r}"

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        dtype = lonlat.dtype if lonlat.is_floating_point() else torch.float64
        if self.harmonics_calculation == "analytic":
            return analytic_harmonics(lonlat, self.legendre_polys).to(dtype)
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


@ENCODINGS.register("sphericalharmonics")
def _build(legendre_polys: int = 10, harmonics_calculation: str = "analytic-stable") -> SphericalHarmonics:
    return SphericalHarmonics(legendre_polys, harmonics_calculation)
