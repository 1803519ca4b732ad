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

import numbers
import warnings

import torch

from ..errors import BadInputError
from ..registry import check_parameters
from . import clip_resnet, clip_vit, mosaiks, resnet, vit  # noqa: F401  (register the builders)
from .base import ImageEncoder
from .hparams import config_from_hparams, hparams_from_config, normalize_config
from .preprocess import center_crop, sentinel2_to_13_bands
from .registry import IMAGE_ENCODERS

#: the whole-number sizes the encoders take, each at most this (``layers``: per stage; a model is built once
#: on torch's meta device to weigh it, and that takes a moment per layer)
SIZE_LIMITS = {
    "embed_dim": 2**20, "in_chans": 2**20, "num_filters": 2**20, "kernel_size": 2**20, "stride": 2**20,
    "width": 2**20, "image_resolution": 2**20, "patch_size": 2**20, "layers": 1024,
}  # fmt: skip
#: the most memory an image encoder's parameters and buffers may take
MAX_MODEL_BYTES = 4 * 2**30

__all__ = [
    "IMAGE_ENCODERS", "MAX_MODEL_BYTES", "SIZE_LIMITS", "ImageEncoder", "center_crop", "config_from_hparams",
    "check_spec", "create", "from_config", "hparams_from_config", "names", "sentinel2_to_13_bands",
]  # fmt: skip


def create(name: str, **params) -> ImageEncoder:
    """Build the image encoder ``name`` (e.g. ``embed_dim``, ``in_chans``, ``weights``).

    Raises:
        KeyError: an unknown name (the message lists the known ones).
        UnknownParameterError: a parameter the encoder does not take (the message lists those it does; a
            BadInputError and a TypeError).
        BadInputError: a size (:data:`SIZE_LIMITS`) that is not a whole number from 1 to its limit, or sizes
            that make a model over :data:`MAX_MODEL_BYTES`; refused before anything is built.
    """
    check_parameters(IMAGE_ENCODERS.kind, name, IMAGE_ENCODERS.accepted(name), params)
    _check_sizes(name, params)
    return IMAGE_ENCODERS.create(name, **params)


def check_spec(spec: dict, key: str = "model.image_encoder") -> None:
    """Raise :class:`ValueError` (naming ``key``) unless ``spec`` (``{"name": …, **params}``) names an image
    encoder, with parameters it takes, of sizes it allows: what :func:`create` checks, without building it."""
    name, params = spec.get("name"), {k: v for k, v in spec.items() if k != "name"}
    if name not in IMAGE_ENCODERS.names():
        raise ValueError(f"{key}.name={name!r} must be one of {', '.join(names())}")
    try:
        check_parameters(IMAGE_ENCODERS.kind, name, IMAGE_ENCODERS.accepted(name), params)
    except TypeError as err:
        raise ValueError(f"{key}: {err}") from None
    _check_sizes(name, params)


def _check_sizes(name: str, params: dict) -> None:
    """Refuse sizes torch would take as given: 0 built an empty model, a negative or fractional value failed
    deep in torch, and a huge one tried to allocate terabytes."""
    for key, value in params.items():
        if key not in SIZE_LIMITS:
            continue
        limit = SIZE_LIMITS[key]
        stages = key == "layers" and name == "clip_resnet"  # (blocks per stage: checked there as 4 numbers)
        if stages and not isinstance(value, (list, tuple)):
            raise BadInputError(
                f"image encoder {name!r}: layers={value!r} must give the blocks of its 4 stages, e.g. (3, 4, 6, 3)"
            )
        for entry in value if stages else [value]:
            if not isinstance(entry, numbers.Integral) or isinstance(entry, bool) or not 1 <= entry <= limit:
                what = f"hold whole numbers from 1 to {limit}, not {entry!r}" if stages else (
                    f"be a whole number from 1 to {limit}")  # fmt: skip
                raise BadInputError(f"image encoder {name!r}: {key}={value!r} must {what}")
    size = _model_bytes(name, params)
    if size is not None and size > MAX_MODEL_BYTES:
        given = ", ".join(f"{k}={v!r}" for k, v in params.items() if k in SIZE_LIMITS) or "its defaults"
        raise BadInputError(
            f"image encoder {name!r} with {given} would take {size / 2**30:,.1f} GiB for its weights, over the "
            f"{MAX_MODEL_BYTES / 2**30:g} GiB an image encoder may: give smaller sizes"
        )


def _model_bytes(name: str, params: dict) -> int | None:
    """The bytes of the parameters and buffers ``name`` builds with ``params``, weighed on torch's meta device
    (no memory, no weights loaded, the random state untouched); None where it cannot be built there (the real
    build then says why)."""
    trial = {**params, "weights": None} if "weights" in params else params
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = IMAGE_ENCODERS.get(name)(**trial)
    except Exception:  # noqa: BLE001  (only a weighing: the build below raises what is wrong)
        return None
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def from_config(config: dict, **overrides) -> ImageEncoder:
    """Rebuild an encoder from its ``config`` (``{"name": …, **params}``), e.g. a native model's
    ``image_encoder`` section; ``overrides`` (such as ``weights=``) replace or add parameters."""
    params = {**normalize_config(config), **overrides}
    return create(params.pop("name"), **params)


def names() -> list[str]:
    return IMAGE_ENCODERS.names()
