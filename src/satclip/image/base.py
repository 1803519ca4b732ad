"""What every image encoder provides (the CLIP model and the training loop rely on it)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import BadInputError
from .preprocess import B10_INDEX, S2_BANDS_13


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
    #: the smallest height and width (px) the encoder embeds an image of, or None for any size
    min_size: int | None = None

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
        """Raise a clear error for input of the wrong rank, band count or size (fixed-size encoders: another
        size; others: smaller than :attr:`min_size`)."""
        if images.ndim != 4:
            raise BadInputError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
        if images.shape[1] != self.in_chans:
            raise BadInputError(
                f"{self.config['name']} takes {self.in_chans}-band images, got {images.shape[1]} bands "
                f"(shape {tuple(images.shape)})"
            )
        if self.image_size is not None and tuple(images.shape[-2:]) != tuple(self.image_size):
            (h, w), (got_h, got_w) = self.image_size, images.shape[-2:]
            raise BadInputError(
                f"{self.config['name']} takes {h}×{w} images only, got {got_h}×{got_w}: "
                f"centre-crop or resize to {h}×{w} first (e.g. satclip.image.center_crop(images, {h}))"
            )
        if self.min_size is not None and min(images.shape[-2:]) < self.min_size:  # (1×1 px was embedded)
            raise BadInputError(
                f"{self.config['name']} takes images of at least {self.min_size}×{self.min_size} px, got "
                f"{images.shape[-2]}×{images.shape[-1]}: use larger images"
            )


def float_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``images`` (a tensor or numpy array; a read-only array is copied, as torch warns of those) as a tensor.

    Raises:
        BadInputError: integer pixels, which the models would embed unscaled (digital numbers, 0-255 colour).
    """
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()
    images = torch.as_tensor(images)
    if not images.is_floating_point():  # (uint8 pixels 0-255 were embedded as they are: rank 1 in Australia)
        raise BadInputError(
            f"images are {str(images.dtype).removeprefix('torch.')}, not floats as the models take them: scale them "
            "(Sentinel-2 L1C digital numbers / 10,000, 8-bit RGB / 255), as satclip.image.preprocess.load_sentinel2 "
            "and read_rgb read files"
        )
    return images


def refuse_non_finite(images: torch.Tensor, names: list[str] | None = None) -> None:
    """Raise :class:`BadInputError` naming the first of ``(B, …)`` ``images`` with a NaN or infinite value (by
    ``names[row]``, else "image ROW") and how many it has. A 13-band image whose B10 band is all zero — the band
    inserted into 12-band Sentinel-2 patches — is counted without it (an all-NaN patch had "786432 … of 851968")."""
    if bool(torch.isfinite(images.sum())):  # (a NaN or inf makes the sum one: 12× faster than isfinite on a batch)
        return
    finite = torch.isfinite(images)
    if bool(finite.all()):  # (the sum of finite values overflowed)
        return
    row = int((~finite).reshape(len(images), -1).any(dim=1).nonzero()[0])
    values = images[row]
    if values.ndim == 3 and values.shape[0] == len(S2_BANDS_13) and bool((values[B10_INDEX] == 0).all()):
        values = torch.cat([values[:B10_INDEX], values[B10_INDEX + 1 :]])
    bad, size = int((~torch.isfinite(values)).sum()), values.numel()
    what = "only NaN or infinite values" if bad == size else f"{bad:,} NaN or infinite values of {size:,}"
    label = names[row] if names is not None else f"image {row}"
    raise BadInputError(f"{label} has {what}; embedding it needs finite pixel values (a no-data patch or a bad read?)")
