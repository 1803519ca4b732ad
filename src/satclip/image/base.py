"""What every image encoder provides (the CLIP model and the training loop rely on it)."""

from __future__ import annotations

import torch
from torch import nn


class ImageEncoder(nn.Module):
    """An image backbone followed by a trainable head: ``forward(x) = head(encode_features(x))``.

    Subclasses implement :meth:`encode_features` (``(B, C, H, W)`` float images → ``(B, feature_dim)``
    pooled features, before the head) and expose ``head`` (the final layer, ``feature_dim → embed_dim``).
    ``frozen_backbone`` says whether everything but the head is frozen (``requires_grad`` False), as
    for the original ``moco_*`` backbones. ``config`` is the ``image_encoder`` section of a native model's
    ``config.json``: ``{"name": …, **params}``, enough to rebuild the module with
    :func:`satclip.image.create` (weights come from the state dict, never from a download).
    """

    config: dict
    head: nn.Module  # a submodule, or a property returning one (resnets: ``fc``)
    frozen_backbone: bool = False
    #: the one input size (H, W) the encoder accepts, or None for any size
    image_size: tuple[int, int] | None = None

    @property
    def feature_dim(self) -> int:
        return int(self.head.in_features)

    @property
    def embed_dim(self) -> int:
        return int(self.head.out_features)

    @property
    def in_chans(self) -> int:
        return int(self.config["in_chans"])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def encode_features(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W)`` → ``(B, embed_dim)`` in the encoder's dtype."""
        return self.head(self.encode_features(images))

    def freeze_backbone(self) -> None:
        """Freeze everything except the head (``requires_grad``), as the original does for ``moco_*``."""
        self.requires_grad_(False)
        self.head.requires_grad_(True)
        self.frozen_backbone = True

    def check_input(self, images: torch.Tensor) -> None:
        """Raise a clear error for input of the wrong rank, band count or (for fixed-size encoders) size."""
        if images.ndim != 4:
            raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
        if images.shape[1] != self.in_chans:
            raise ValueError(
                f"{self.config['name']} takes {self.in_chans}-band images, got {images.shape[1]} bands "
                f"(shape {tuple(images.shape)})"
            )
        if self.image_size is not None and tuple(images.shape[-2:]) != tuple(self.image_size):
            (h, w), (got_h, got_w) = self.image_size, images.shape[-2:]
            raise ValueError(
                f"{self.config['name']} takes {h}×{w} images only, got {got_h}×{got_w}: "
                f"centre-crop or resize to {h}×{w} first (e.g. satclip.image.center_crop(images, {h}))"
            )
