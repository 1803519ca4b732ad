"""Conversion between the original ``.ckpt`` layout and the native format."""

from __future__ import annotations

import json
from pathlib import Path

from .io import native, original
from .load import resolve


def convert(
    source: str | Path, output: str | Path, *, location_only: bool = False, trust_checkpoint: bool = False
) -> Path:
    """Original ``.ckpt`` → native directory, or native directory → original ``.ckpt``.

    The image encoder (``visual.*``) and ``logit_scale`` travel along unless ``location_only``.
    """
    resolved = resolve(source)
    output = Path(output)
    if resolved.kind == "original":
        ckpt = original.read_original(resolved.path, trust_checkpoint=trust_checkpoint)
        tensors = {f"location.{k}": v for k, v in ckpt.location_state_dict().items()}
        image_encoder = None
        if not location_only:
            visual = ckpt.visual_state_dict()
            tensors.update({f"visual.{k}": v for k, v in visual.items()})
            if original.LOGIT_SCALE_KEY in ckpt.state_dict:
                tensors["logit_scale"] = ckpt.state_dict[original.LOGIT_SCALE_KEY]
            if visual:
                image_encoder = image_config_from_hparams(ckpt.hparams)
        config = {
            "location_encoder": ckpt.location_config(),
            "image_encoder": image_encoder,
            "metadata": {"converted_from": str(resolved.path), "hyper_parameters": _json_ready(ckpt.hparams)},
        }
        return native.write_native(output, config, tensors)

    config, tensors = native.read_native(resolved.path)
    location = {k[len("location.") :]: v for k, v in tensors.items() if k.startswith("location.")}
    visual = None if location_only else {k[len("visual.") :]: v for k, v in tensors.items() if k.startswith("visual.")}
    base = dict(config.get("metadata", {}).get("hyper_parameters", {}))
    for key in original.RELEASED_EXTRA_HPARAMS:
        base.pop(key, None)
    hparams = original.hparams_from_location_config(config["location_encoder"], base)
    if config.get("image_encoder") and not location_only:
        hparams.update(hparams_from_image_config(config["image_encoder"]))
    logit_scale = None if location_only else tensors.get("logit_scale")
    return original.write_original(output, hparams, location, visual_state=visual or None, logit_scale=logit_scale)


def image_config_from_hparams(hparams: dict) -> dict:
    """The native ``image_encoder`` config (``{"name": …, **params}``) of original hyper-parameters."""
    from .image import config_from_hparams

    return config_from_hparams(hparams)


def hparams_from_image_config(config: dict) -> dict:
    """Original ``vision_*`` hyper-parameters of a native ``image_encoder`` config (the inverse)."""
    from .image import hparams_from_config

    return hparams_from_config(config)


def _json_ready(value):
    """Tuples become lists, keys strings, anything else not JSON its repr."""
    return json.loads(json.dumps(value, default=repr))
