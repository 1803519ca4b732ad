"""The trainable part of a SatCLIP model: an image side, a location encoder and the temperature.

``image`` maps the training input to ``(B, embed_dim)``: the full image encoder when training from
images, or only its head when training from cached backbone features (``image`` is then the
``nn.Linear(F, embed_dim)``). State-dict keys: ``image.*``, ``location.*``, ``logit_scale``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..location_encoder import LocationEncoder


class ContrastivePair(nn.Module):
    """``encode_image(x) → (B, D)``, ``encode_location(lonlat (B, 2) degrees) → (B, D)``, ``logit_scale``.

    The location encoder always runs with autocast disabled, in its own dtype (float32 by default):
    a SIREN's first layer multiplies its pre-activation by w0 = 30, and under bfloat16 autocast the
    default encoder's embeddings move by up to 0.024 (median 0.003; median |embedding| 0.56), against
    5e-7 relative for float32 vs float64. The spherical harmonics are evaluated from float64
    coordinates.
    """

    def __init__(self, image: nn.Module, location: LocationEncoder, logit_scale_init: float):
        super().__init__()
        self.image = image
        self.location = location
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.image(x)

    def encode_location(self, lonlat: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=lonlat.device.type, enabled=False):
            return self.location(lonlat.to(torch.float64))

    def train(self, mode: bool = True) -> ContrastivePair:
        """As ``nn.Module.train``, but a frozen image backbone stays in eval mode (batch-norm running
        statistics fixed, as the cached features were computed). The original left frozen backbones in
        training mode, so their batch norms used batch statistics."""
        super().train(mode)
        if mode and getattr(self.image, "frozen_backbone", False):
            self.image.eval()
            self.image.head.train()
        return self
