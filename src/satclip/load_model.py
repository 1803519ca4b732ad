"""``satclip.load_model``: the full SatCLIP model (image + location encoder) from any model source."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import image
from .errors import BadInputError
from .io import native, original
from .load import resolve
from .location_encoder import check_config
from .model import SatCLIP

log = logging.getLogger(__name__)


def _native_parts(path: Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    config = native.read_config(path)
    if not config.get("image_encoder"):
        raise BadInputError(
            f"{path} holds only a location encoder (no image_encoder in config.json); load it with "
            "satclip.load(), or convert the full original checkpoint"
        )
    shapes = native.read_shapes(path)
    _check_location(config["location_encoder"], shapes, path)  # before any tensor is read or module built
    tensors = native.read_tensors(path)
    parts = {"image_encoder": config["image_encoder"], "location_encoder": config["location_encoder"]}
    provenance = {"source": str(path), "format": "native", "metadata": config.get("metadata", {})}
    return parts, tensors, provenance


def _original_parts(path: Path, trust_checkpoint: bool) -> tuple[dict, dict[str, torch.Tensor], dict]:
    ckpt = original.read_original(path, trust_checkpoint=trust_checkpoint)
    visual = ckpt.visual_state_dict()
    if not visual:
        raise BadInputError(
            f"{path} has no image encoder weights (no 'model.visual.*' keys); satclip.load() loads its "
            "location encoder"
        )
    parts = {
        "image_encoder": image.config_from_hparams(ckpt.hparams),
        "location_encoder": ckpt.location_config(),
    }
    tensors = {f"visual.{k}": v for k, v in visual.items()}
    tensors.update({f"location.{k}": v for k, v in ckpt.location_state_dict().items()})
    _check_location(parts["location_encoder"], {k: tuple(v.shape) for k, v in tensors.items()}, path)
    if original.LOGIT_SCALE_KEY in ckpt.state_dict:
        tensors["logit_scale"] = ckpt.state_dict[original.LOGIT_SCALE_KEY]
    provenance = {"source": str(path), "format": "original", "hyper_parameters": ckpt.hparams}
    return parts, tensors, provenance


def _check_location(config: dict, shapes: dict[str, tuple[int, ...]], path: Path) -> None:
    prefix = "location."
    check_config(config, {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)}, str(path))


def load_model(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trust_checkpoint: bool = False,
) -> SatCLIP:
    """Load a full SatCLIP model (image encoder, location encoder, ``logit_scale``) in eval mode.

    Args:
        source: as :func:`satclip.load`: an original ``.ckpt`` (any of the six released
            configurations, or the original's from-scratch CLIP encoders), a native model directory
            with an ``image_encoder``, a known name, a released model's hub id or ``hf://owner/name``.
            Backbone weights come from the file; nothing else is downloaded. The location encoder's
            config is checked against the weights before anything is built.
        device, dtype: where and in which precision the model runs (float32: as the original's image
            side; its location network ran in float64, which moves logits by ~1e-6). The released
            ``"analytic"`` harmonics are evaluated in float64 whatever ``dtype``.
        trust_checkpoint: allow unpickling arbitrary objects from a ``.ckpt`` (only for trusted files).
    """
    resolved = resolve(source)
    if resolved.kind == "native":
        parts, tensors, provenance = _native_parts(resolved.path)
    else:
        parts, tensors, provenance = _original_parts(resolved.path, trust_checkpoint)
    # cast before loading, so float64 weights (the location network) reach a float64 model unrounded
    model = SatCLIP.from_config(parts).to(device=device, dtype=dtype)
    if "logit_scale" not in tensors:
        log.warning("%s has no logit_scale; using the initial value log(1/0.07)", resolved.path)
        tensors["logit_scale"] = model.logit_scale.detach().clone()
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:  # shapes that differ from what the config builds
        raise BadInputError(f"{resolved.path}: the weights do not match config: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise BadInputError(
            f"{resolved.path} does not match a {parts['image_encoder']['name']} SatCLIP model: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    model.provenance = provenance
    return model.eval()
