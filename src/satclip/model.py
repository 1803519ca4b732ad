"""``SatCLIP``: an image encoder and a location encoder trained contrastively (CLIP-style).

State-dict keys are those of the native format: ``visual.*`` (the image encoder), ``location.*`` (the
:class:`~satclip.LocationEncoder`) and ``logit_scale`` — the original's ``model.*`` keys without the
prefix and without its duplicate ``model.nnet.*`` copy of the location network.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from . import image as _image
from .io import native
from .location_encoder import LocationEncoder

#: initial ``logit_scale``: log(1 / temperature 0.07), as CLIP and the original SatCLIP
LOGIT_SCALE_INIT = math.log(1 / 0.07)


class SatCLIP(nn.Module):
    """Image encoder ``visual`` + location encoder ``location`` + learned temperature ``logit_scale``.

    ``forward(images, lonlat)`` returns ``(logits_per_image, logits_per_location)``: ``exp(logit_scale)``
    times the cosine similarities of the L2-normalised embeddings, ``(B_images, B_locations)`` and its
    transpose, in the image encoder's dtype (as the original, which casts location features to it).
    """

    def __init__(
        self, visual: _image.ImageEncoder, location: LocationEncoder, logit_scale: float = LOGIT_SCALE_INIT
    ):
        super().__init__()
        if visual.embed_dim != location.embedding_dim:
            raise ValueError(
                f"image encoder embeds into {visual.embed_dim} dimensions but the location encoder into "
                f"{location.embedding_dim}; both need the same embed_dim"
            )
        self.visual = visual
        self.location = location
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))

    @classmethod
    def from_config(cls, config: dict, *, backbone_weights=None) -> SatCLIP:
        """Build from ``{"image_encoder": {"name": …}, "location_encoder": {…}}`` (a native config.json).

        ``backbone_weights`` (e.g. ``"sentinel2_all_moco"`` or a file) is passed to the image encoder as
        ``weights=``; leave it ``None`` when a state dict will be loaded anyway.
        """
        if not config.get("image_encoder"):
            raise ValueError(
                "config has no image_encoder: this is a location-only model; load it with satclip.load()"
            )
        overrides = {} if backbone_weights is None else {"weights": backbone_weights}
        visual = _image.from_config(config["image_encoder"], **overrides)
        location = LocationEncoder.from_config(config["location_encoder"])
        return cls(visual, location)

    @property
    def config(self) -> dict:
        return {"image_encoder": dict(self.visual.config), "location_encoder": dict(self.location.config)}

    @property
    def embed_dim(self) -> int:
        return self.location.embedding_dim

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images → ``(B, embed_dim)`` unnormalised embeddings in the encoder's dtype."""
        return self.visual(images.to(self.visual.dtype))

    def encode_location(self, lonlat: torch.Tensor) -> torch.Tensor:
        """``(N, 2)`` (lon, lat) degrees → ``(N, embed_dim)`` unnormalised embeddings (no validation; use
        ``model.location.encode`` for checked, batched input). Coordinates are promoted to the dtype the
        positional encoding needs (float64 for the released ``analytic`` harmonics), as the original."""
        return self.location(lonlat.to(self.location.feature_dtype))

    def forward(self, images: torch.Tensor, lonlat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_features = self.encode_image(images)
        location_features = self.encode_location(lonlat).to(image_features.dtype)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        location_features = location_features / location_features.norm(dim=1, keepdim=True)
        logits_per_image = (
            self.logit_scale.exp().to(image_features.dtype) * image_features @ location_features.T
        )
        return logits_per_image, logits_per_image.T

    def save(self, path: str | Path, metadata: dict | None = None, *, overwrite: bool = False) -> Path:
        """Write the native format (``config.json`` + ``model.safetensors``) atomically.

        An existing ``path`` is replaced only with ``overwrite=True`` and only if satclip wrote it (see
        :func:`satclip.io.native.write_native`)."""
        config = {**self.config, "metadata": dict(metadata or {})}
        return native.write_native(path, config, self.state_dict(), overwrite=overwrite)
