"""What every image encoder provides (the CLIP model and the training loop rely on it)."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch import nn

from ..errors import BadInputError
from .preprocess import B10_INDEX, S2_BANDS_13, scale_advice, value_level

log = logging.getLogger(__name__)


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
        """Raise a clear error for input of the wrong rank or band count (:func:`check_bands`) or size (fixed-size
        encoders: another size; others: smaller than :attr:`min_size`)."""
        check_bands(images, self.in_chans, self.config["name"])
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


def check_bands(images: torch.Tensor, in_chans: int, name: str, *, one: bool = False) -> None:
    """Raise :class:`BadInputError` unless ``images`` are ``(B, in_chans, H, W)`` (with ``one``, also one ``(in_chans,
    H, W)`` image, as ``locate`` takes), saying what would fit: a batch axis for one image, the bands first for
    channels-last arrays, B10 inserted into 12 Sentinel-2 bands. ``name`` names the model."""
    shape, wanted = tuple(images.shape), "(B, C, H, W)" + (" or (C, H, W)" if one else "")
    if images.ndim in (3, 4) and images.shape[-3] != in_chans and images.shape[-1] == in_chans:
        raise BadInputError(f"images of shape {shape} look channels-last (…, H, W, {in_chans}); {name} takes "
                            f"{in_chans}-band images as {wanted}: move the bands first, e.g. "
                            "np.moveaxis(array, -1, -3) (images.movedim(-1, -3) for a tensor)")  # fmt: skip
    if images.ndim == 3 and not one and images.shape[0] == in_chans:
        raise BadInputError(f"images of shape {shape} are one image; {name} takes {wanted}: add a batch axis, "
                            "images[None]")  # fmt: skip
    bands = images.shape[0] if one and images.ndim == 3 else images.shape[1] if images.ndim == 4 else None
    if bands is None:
        raise BadInputError(f"images must have shape {wanted}, got {shape}")
    if in_chans == len(S2_BANDS_13) and bands == len(S2_BANDS_13) - 1:  # (no word of the fix)
        raise BadInputError(
            f"{name} takes 13-band images, got 12 bands (shape {shape}): insert B10, all zero, at index {B10_INDEX} "
            "as the models were trained (satclip.image.preprocess.sentinel2_reflectance(digital_numbers) does it and "
            f"scales; for reflectance, e.g. np.insert(array, {B10_INDEX}, 0, axis=-3))"
        )
    if bands != in_chans:
        raise BadInputError(f"{name} takes {in_chans}-band images, got {bands} bands (shape {shape})")


def warn_misscaled(images: torch.Tensor, in_chans: int) -> None:
    """Log one warning where any of ``(B, in_chans, H, W)`` images looks scaled other than the model takes them
    (:func:`satclip.image.preprocess.scale_advice`: Sentinel-2 digital numbers or reflectance divided twice for 13
    bands, 0-255 colour for 3); integers are refused outright (:func:`float_images`), floats only judged by their
    values, so warned of. Each image is judged on ~4,096 of its values, evenly strided (cheap on a training batch)."""
    if not len(images):
        return
    flat = images.detach().reshape(len(images), -1)
    samples = flat[:, :: max(1, flat.shape[1] // 4096)].float().cpu().numpy()  # (one transfer a batch)
    for row, sample in enumerate(samples):
        advice = scale_advice(value_level(sample), in_chans)
        if advice is not None:
            which = f"image {row}" if len(images) == 1 else f"image {row} of {len(images)}"
            log.warning("%s: its values %s", which, advice)
            return


def float_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``images`` (a tensor or numpy array; a read-only array is copied, as torch warns of those) as a tensor.

    Raises:
        BadInputError: integer pixels, which the models would embed unscaled (digital numbers, 0-255 colour); a
            path ("new(): invalid data type 'str'"): the message names the function that reads image files.
    """
    if isinstance(images, (str, os.PathLike)):
        raise BadInputError(f"images are pixel values, got the path {os.fspath(images)!r}: read it with "
                            "satclip.models.locate.load_image(model, path)")  # fmt: skip
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
    raise BadInputError(
        f"{label} has {what}; embedding it needs finite pixel values (a no-data patch or a bad read?): crop the patch "
        "to its valid pixels (gdal_translate -srcwin for a GeoTIFF)"
    )
