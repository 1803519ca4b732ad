"""``SatCLIP``: an image encoder and a location encoder trained contrastively (CLIP-style).

State-dict keys are those of the native format: ``visual.*`` (the image encoder), ``location.*`` (the
:class:`~satclip.LocationEncoder`) and ``logit_scale`` — the original's ``model.*`` keys without the
prefix and without its duplicate ``model.nnet.*`` copy of the location network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import image as _image
from ..encoding.points import as_lonlat
from ..image.base import float_images, refuse_non_finite, warn_misscaled
from ..io.parts import ModelParts
from . import LOGIT_SCALE_INIT
from .location_encoder import LocationEncoder, weights_device

__all__ = ["LOGIT_SCALE_INIT", "SatCLIP"]


class SatCLIP(nn.Module):
    """Image encoder ``visual`` + location encoder ``location`` + learned temperature ``logit_scale``.

    ``forward(images, lonlat)`` returns ``(logits_per_image, logits_per_location)``: ``exp(logit_scale)``
    times the cosine similarities of the L2-normalised embeddings, ``(B_images, B_locations)`` and its
    transpose, in the image encoder's dtype (as the original, which casts location features to it).

    This is also the model ``satclip train`` trains (with :class:`~satclip.image.cached.CachedFeatures` as
    ``visual`` on cached backbone features), with :class:`satclip.models.loss.ContrastiveLoss` as objective.
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

    def train(self, mode: bool = True) -> SatCLIP:
        """As ``nn.Module.train``, but a frozen image backbone stays in eval mode (batch-norm running
        statistics fixed, as cached features are computed); only its head trains. The original left frozen
        backbones in training mode, so their batch norms used batch statistics."""
        super().train(mode)
        if mode and getattr(self.visual, "frozen_backbone", False):
            self.visual.eval()
            self.visual.head.train()
        return self

    def encode_image(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``(B, C, H, W)`` images (floats: a tensor or numpy array) → ``(B, embed_dim)`` unnormalised embeddings
        in the encoder's dtype.

        Floats that look scaled other than the encoder takes them (Sentinel-2 digital numbers, reflectance divided
        twice, 0-255 colour: :func:`satclip.image.base.warn_misscaled`) are embedded with one warning logged.

        Raises:
            BadInputError: integer pixels (scale them first: reflectance = digital numbers / 10,000, colour / 255),
                a NaN or infinite value; images of another shape or band count (the message says what would fit: a
                batch axis, the bands first, B10 inserted) or smaller than the encoder's ``min_size`` (its
                ``check_input``).
        """
        images = float_images(images)
        if images.ndim != 2:  # (a feature cache's encoder takes (B, feature_dim) features)
            self.visual.check_input(images)
            warn_misscaled(images, self.visual.in_chans)
        refuse_non_finite(images)
        return self.visual(images.to(self.visual.dtype))

    def encode_location(self, lonlat: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``(N, 2)`` (lon, lat) degrees (a tensor, the path for gradients; or a numpy array or list) → ``(N,
        embed_dim)`` unnormalised embeddings in the location network's dtype. Checked as ``model.location(lonlat)``
        checks it (the shape; in eval mode the range), an array or list as ``model.location.encode`` checks it
        (which also embeds in batches, without gradients).

        One rule in training and inference: coordinates are promoted to float64 (as the original's
        ``coords.double()``; never rounded to a narrower dtype), the features are cast to the network's dtype,
        and autocast is off, because a SIREN's first layer multiplies its pre-activation by w0 = 30: under
        bfloat16 autocast the default encoder's embeddings move by up to 0.024 (median |embedding| 0.56),
        against 5e-7 relative for float32 vs float64."""
        if not isinstance(lonlat, torch.Tensor):  # (a numpy array was "'str' object has no attribute 'type'")
            lonlat = as_lonlat(lonlat, dtype=torch.float64, device=weights_device(self.location))
        with torch.autocast(device_type=lonlat.device.type, enabled=False):
            return self.location(lonlat.to(torch.float64))

    def forward(self, images: torch.Tensor, lonlat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_features = self.encode_image(images)
        location_features = self.encode_location(lonlat).to(image_features.dtype)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        location_features = location_features / location_features.norm(dim=1, keepdim=True)
        logits_per_image = (
            self.logit_scale.exp().to(image_features.dtype) * image_features @ location_features.T
        )
        return logits_per_image, logits_per_image.T

    def to_parts(self, metadata: dict | None = None) -> ModelParts:
        """This model as :class:`~satclip.io.parts.ModelParts` (tensors detached, on the CPU)."""

        def cpu(state: dict) -> dict:
            return {k: v.detach().cpu() for k, v in state.items()}

        return ModelParts(
            dict(self.location.config), cpu(self.location.state_dict()), dict(self.visual.config),
            cpu(self.visual.state_dict()), self.logit_scale.detach().cpu().clone(), dict(metadata or {}),
        )  # fmt: skip

    def save(
        self, path: str | Path, metadata: dict | None = None, *, target: str | None = None, overwrite: bool = False,
        location_only: bool = False,
    ):  # fmt: skip
        """Write the model for ``target`` (``"native"``: ``config.json`` + ``model.safetensors``; or
        ``"original"``, ``"torchgeo"``, ``"rshf"``, see :func:`satclip.io.convert.convert`; None: the one ``path``'s
        suffix names, ``.ckpt`` original, ``.pt`` torchgeo, else native) atomically;
        ``location_only``: without the image encoder (``"torchgeo"`` and ``"rshf"`` hold the location encoder
        alone in any case).

        An existing ``path`` is replaced only with ``overwrite=True``: a file, or a directory satclip wrote (one
        holding other files never is; see :mod:`satclip.safe_output`), and never the file or directory this
        model was loaded from. Returns the :class:`~satclip.io.targets.Written` file."""
        from ..io.resolve import encoder_files
        from ..io.targets import target_of, write

        target = target or target_of(path)
        parts = self.to_parts(metadata)
        whole = target in ("native", "original") and not location_only
        parts = parts if whole else parts.location_only()
        return write(parts, path, target, overwrite=overwrite, inputs=encoder_files(self))
