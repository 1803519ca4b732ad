"""``satclip.load_model``: the full SatCLIP model (image + location encoder) from any model source."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .errors import BadInputError
from .io.parts import pack
from .io.read import read_parts, require_image_encoder
from .model import SatCLIP

log = logging.getLogger(__name__)


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
    parts = require_image_encoder(read_parts(source, trust_checkpoint=trust_checkpoint))
    source_name = parts.provenance["source"]
    # cast before loading, so float64 weights (the location network) reach a float64 model unrounded
    model = SatCLIP.from_config(parts.native_config()).to(device=device, dtype=dtype)
    if parts.logit_scale is None:
        log.warning("%s has no logit_scale; using the initial value log(1/0.07)", source_name)
        parts.logit_scale = model.logit_scale.detach().clone()
    try:
        result = model.load_state_dict(pack(parts), strict=False)
    except RuntimeError as err:  # shapes that differ from what the config builds
        raise BadInputError(f"{source_name}: the weights do not match config: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise BadInputError(
            f"{source_name} does not match a {parts.image_config['name']} SatCLIP model: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    model.provenance = parts.provenance
    return model.eval()
