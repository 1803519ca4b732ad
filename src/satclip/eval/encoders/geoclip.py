"""GeoCLIP's location encoder (Vivanco Cepeda et al., NeurIPS 2023), re-implemented to load its weights.

The ``geoclip`` wheel ships the pretrained weights (``geoclip/model/weights/location_encoder_weights.pth``)
but importing the package pulls in transformers and torchvision. This module rebuilds the network and
reads that file with ``torch.load(weights_only=True)``.

Architecture: (lat, lon) → Equal Earth projection (Šavrič et al. 2018), scaled to about [−1, 1] → for each
of three scales σ ∈ {2⁰, 2⁴, 2⁸}: random Fourier features ``[cos 2πBv, sin 2πBv]`` with a fixed
``B`` (256 × 2) drawn from N(0, σ²), then Linear(512, 1024)–ReLU–Linear(1024, 1024)–ReLU–Linear(1024,
1024)–ReLU–Linear(1024, 512); the three 512-d outputs are summed.

GeoCLIP takes (lat, lon); :class:`GeoCLIPLocationEncoder` takes satclip's (lon, lat) and swaps internally.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import assets

SIGMAS = (1.0, 16.0, 256.0)
FEATURES_PER_SCALE = 256
HIDDEN = 1024
EMBEDDING_DIM = 512

# Equal Earth polynomial coefficients and GeoCLIP's scale factor (projected units / 180 ≈ [-1, 1])
_A1, _A2, _A3, _A4 = 1.340264, -0.081106, 0.000893, 0.003796
_SCALE = 66.50336
#: √3 rounded to float32, as GeoCLIP computes it (``torch.sqrt(torch.tensor(3.0))``): the weights were trained
#: with it, and at σ = 256 the rounding moves embeddings by ~3e-6
_SQRT3 = float(torch.tensor(3.0).sqrt())


def equal_earth(lonlat: torch.Tensor) -> torch.Tensor:
    """Equal Earth projection as GeoCLIP scales it: ``(N, 2)`` (lon, lat) degrees → ``(N, 2)`` (x, y),
    both within about ±1. Computed in the input's floating dtype."""
    lon, lat = torch.deg2rad(lonlat[:, 0]), torch.deg2rad(lonlat[:, 1])
    theta = torch.asin(_SQRT3 / 2 * torch.sin(lat))
    # the published polynomial, term by term (the order GeoCLIP evaluates it in, for float32 agreement)
    y = _A4 * theta**9 + _A3 * theta**7 + _A2 * theta**3 + _A1 * theta
    dy = 3 * (9 * _A4 * theta**8 + 7 * _A3 * theta**6 + 3 * _A2 * theta**2 + _A1)
    x = 2 * _SQRT3 * lon * torch.cos(theta) / dy
    return torch.stack((x, y), dim=1) * (_SCALE / 180)


class FourierBranch(nn.Module):
    """One scale: fixed Fourier projection ``rff`` (256 × 2) → 3 ReLU layers → 512-d head."""

    def __init__(self):
        super().__init__()
        self.register_buffer("rff", torch.zeros(FEATURES_PER_SCALE, 2))
        self.layers = nn.ModuleList(
            [nn.Linear(2 * FEATURES_PER_SCALE, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN)]
        )
        self.head = nn.Linear(HIDDEN, EMBEDDING_DIM)

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        phase = 2 * math.pi * xy @ self.rff.T
        x = torch.cat((torch.cos(phase), torch.sin(phase)), dim=-1)
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)


class GeoCLIPLocationEncoder(nn.Module):
    """GeoCLIP's location encoder: ``(N, 2)`` (lon, lat) degrees → ``(N, 512)``."""

    embedding_dim = EMBEDDING_DIM

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleList(FourierBranch() for _ in SIGMAS)

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        xy = equal_earth(lonlat.to(self.branches[0].rff.dtype))
        return sum(branch(xy) for branch in self.branches)


def convert_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename GeoCLIP's keys (``LocEnc{i}.capsule.{0,1,3,5}.*``, ``LocEnc{i}.head.0.*``) to ours."""
    layer_of = {"1": "0", "3": "1", "5": "2"}
    out = {}
    for key, value in original.items():
        parts = key.split(".")
        if not parts[0].startswith("LocEnc"):
            raise KeyError(f"unexpected key {key!r} in the GeoCLIP location-encoder weights")
        branch = f"branches.{parts[0][len('LocEnc') :]}"
        if parts[1:3] == ["capsule", "0"] and parts[3] == "b":
            out[f"{branch}.rff"] = value
        elif parts[1] == "capsule" and parts[2] in layer_of:
            out[f"{branch}.layers.{layer_of[parts[2]]}.{parts[3]}"] = value
        elif parts[1:3] == ["head", "0"]:
            out[f"{branch}.head.{parts[3]}"] = value
        else:
            raise KeyError(f"unexpected key {key!r} in the GeoCLIP location-encoder weights")
    return out


def load_geoclip(path=None) -> GeoCLIPLocationEncoder:
    """GeoCLIP's pretrained location encoder (eval mode, float32) from the installed wheel or ``path``."""
    path = assets.GEOCLIP_WEIGHTS.path() if path is None else path
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = GeoCLIPLocationEncoder()
    model.load_state_dict(convert_state_dict(state), strict=True)
    return model.eval()
