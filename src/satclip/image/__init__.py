"""Image encoders, looked up by name: ``satclip.image.create(name, **params)``.

>>> enc = satclip.image.create("moco_resnet18", embed_dim=256)      # random weights, frozen backbone
>>> enc(torch.zeros(2, 13, 256, 256)).shape
torch.Size([2, 256])

Every encoder is an :class:`ImageEncoder`: ``encode_features(images) -> (B, feature_dim)`` (the
backbone), ``head`` (the trainable final ``feature_dim → embed_dim`` layer), ``forward = head ∘
encode_features``, ``frozen_backbone`` and ``config`` (what the native format stores). Pure torch:
the timm-compatible ``moco_resnet18``, ``moco_resnet50`` and ``moco_vit16`` load the released SatCLIP
weights without timm; their SSL4EO-S12 MoCo backbones come from ``weights=`` (see
:mod:`satclip.image.weights`). ``clip_resnet`` and ``clip_vit`` are the original's from-scratch
encoders; ``mosaiks`` is a download-free random-features backbone.
"""

from __future__ import annotations

from . import clip_resnet, clip_vit, mosaiks, resnet, vit  # noqa: F401  (register the builders)
from .base import ImageEncoder
from .hparams import config_from_hparams, hparams_from_config, normalize_config
from .preprocess import center_crop, sentinel2_to_13_bands
from .registry import IMAGE_ENCODERS

__all__ = [
    "IMAGE_ENCODERS", "ImageEncoder", "center_crop", "config_from_hparams", "create", "from_config",
    "hparams_from_config", "names", "sentinel2_to_13_bands",
]  # fmt: skip


def create(name: str, **params) -> ImageEncoder:
    """Build the image encoder ``name`` (e.g. ``embed_dim``, ``in_chans``, ``weights``)."""
    return IMAGE_ENCODERS.create(name, **params)


def from_config(config: dict, **overrides) -> ImageEncoder:
    """Rebuild an encoder from its ``config`` (``{"name": …, **params}``), e.g. a native model's
    ``image_encoder`` section; ``overrides`` (such as ``weights=``) replace or add parameters."""
    params = {**normalize_config(config), **overrides}
    return create(params.pop("name"), **params)


def names() -> list[str]:
    return IMAGE_ENCODERS.names()
