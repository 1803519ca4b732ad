"""Loading a model from any source: :func:`load` gives the location encoder, :func:`load_model` the whole
SatCLIP model (image encoder, location encoder, ``logit_scale``). Both are thin callers of :func:`.read.read_parts`."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import BadInputError
from ..machine import check_device
from ..models import precision as _precision
from ..models.clip import SatCLIP
from ..models.location_encoder import LocationEncoder
from .basis import rebased
from .parts import pack
from .read import read_parts, require_image_encoder

log = logging.getLogger(__name__)


def load(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    harmonics_calculation: str | None = None,
    trust_checkpoint: bool = False,
    precision: str | None = None,
) -> LocationEncoder:
    """Load a location encoder in eval mode.

    Args:
        source: an original SatCLIP ``.ckpt`` file; a native model directory (``config.json`` +
            ``model.safetensors``); a known name (``satclip-resnet18-l10`` … ``satclip-vit16-l40``, or a
            model shipped with satclip such as ``bluemarble-l10``); or a Hugging Face id
            (``microsoft/SatCLIP-ViT16-L40``) of a released model; or ``hf://owner/name`` for any other
            Hugging Face repository (holding ``config.json`` + ``model.safetensors`` or one ``.ckpt``).
            Names, ids and ``hf://`` sources are downloaded with ``huggingface_hub``; anything that looks
            like a path (has a ``/``, starts with ``.`` or ``~``, ends in ``.ckpt`` …) is only looked for on
            disk, and a missing one is a FileNotFoundError naming it, never a hub request.
        device: where the model runs.
        precision: ``"float32" | "bf16" | "float64" | "auto"`` (default ``$SATCLIP_PRECISION``, else
            ``"auto"``: bf16 where the hardware multiplies it natively and a one-time calibration measures
            it faster and within a cosine of 0.9999 of float32, else float32; see :mod:`satclip.models.precision`).
            The choice is kept as ``encoder.precision`` / ``encoder.precision_choice`` and used by
            ``encoder.encode``.
        dtype: the older way to ask for a precision (``torch.float32`` / ``torch.float64``); it must agree
            with ``precision`` when both are given.
        harmonics_calculation: override what the model records. The released checkpoints record
            ``"analytic"``, computed as the exact value of the original's printed polynomials (fast, within
            the original's own evaluation noise of its embeddings); ``"analytic-original"`` evaluates them
            as the original does (bit-closest, slow); ``"analytic-stable"`` uses the true harmonics instead
            (identical at L = 10; at L = 40 it moves embeddings near the poles); ``"closed-form"`` computes the
            original's other basis, with the first layer rescaled to give the same embeddings. See
            docs/conventions.md.
        trust_checkpoint: allow unpickling arbitrary objects from a ``.ckpt`` (runs code: only for files
            you trust). Not needed for the released checkpoints.
    """
    check_device(device)
    parts = read_parts(source, location_only=True, trust_checkpoint=trust_checkpoint,
                       basis_given=harmonics_calculation is not None)  # fmt: skip
    source_name = parts.provenance["source"]
    config, state = rebased(parts.location_config, parts.location_state, harmonics_calculation, source)
    encoder = LocationEncoder.from_weights(config, state, source_name)
    encoder.provenance = parts.provenance
    return _precision.configure(encoder.to(device=device).eval(), precision, dtype)


#: what load_model(dtype=) takes, as its error lists it
MODEL_DTYPES = "torch.float32, torch.float64, torch.bfloat16, torch.float16 or a name: float32, float64, bf16 " \
    "(bfloat16), float16"
#: 16-bit names load_model takes beyond the precisions' (float16: for the image encoder alone, as torch.float16)
_MODEL_DTYPE_NAMES = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def model_dtype(dtype) -> torch.dtype:
    """:func:`load_model`'s ``dtype``: a floating-point torch dtype, or a name as :func:`load` takes it
    (``"float32"``, ``"bf16"``, ``"float64"``).

    Raises:
        BadInputError: anything else (None, ``"auto"``, torch.int64 …), naming ``dtype=`` and the accepted ones.
    """
    if isinstance(dtype, torch.dtype):
        if dtype.is_floating_point:
            return dtype
    elif isinstance(dtype, str):
        if dtype.strip().lower() in _MODEL_DTYPE_NAMES:  # (torch.float16 was taken and 'float16' refused)
            return _MODEL_DTYPE_NAMES[dtype.strip().lower()]
        try:
            name = _precision.check(dtype, "dtype")
        except BadInputError:
            name = "auto"  # (refused below, listing what load_model takes)
        if name != "auto":
            return _precision.compute_dtype(name)
    raise BadInputError(f"load_model(dtype={dtype!r}): give the model's dtype: {MODEL_DTYPES}")


def load_model(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    harmonics_calculation: str | None = None,
    trust_checkpoint: bool = False,
    needed_for: str = "satclip.load_model",
) -> SatCLIP:
    """Load a full SatCLIP model (image encoder, location encoder, ``logit_scale``) in eval mode.

    Args:
        source: as :func:`satclip.load`: an original ``.ckpt`` (any of the six released
            configurations, or the original's from-scratch CLIP encoders), a native model directory
            with an ``image_encoder``, a known name, a released model's hub id or ``hf://owner/name``.
            Backbone weights come from the file; nothing else is downloaded. The location encoder's
            config is checked against the weights before anything is built.
        device, dtype: where and in which precision the model runs (a floating-point torch dtype or a name:
            ``"float32"``, ``"float64"``, ``"bf16"``; float32: as the original's image side; its location network
            ran in float64, which moves logits by ~2e-6). A 16-bit dtype (bf16, float16) is the image encoder's
            alone: the location encoder and ``logit_scale`` stay float32 (a SIREN in bf16 is off by up to 0.024),
            so location embeddings are those :func:`satclip.load` computes. The released ``"analytic"`` harmonics
            are evaluated in float64 whatever ``dtype``.
        harmonics_calculation: override the basis the model records, as :func:`satclip.load`. At L = 40 the
            default ``"analytic"`` (the exact value of the original's printed polynomials) moves logits by up to
            ~2e-4 from the original's near the poles; ``"analytic-original"`` is its own evaluation (slow).
        trust_checkpoint: allow unpickling arbitrary objects from a ``.ckpt`` (only for trusted files).
        needed_for: what the whole model is loaded for, named in the error when ``source`` holds only a
            location encoder (``"satclip locate"`` …).
    """
    check_device(device)
    dtype = model_dtype(dtype)
    parts = require_image_encoder(read_parts(source, trust_checkpoint=trust_checkpoint,
                                             basis_given=harmonics_calculation is not None), needed_for)  # fmt: skip
    source_name = parts.provenance["source"]
    parts.location_config, parts.location_state = rebased(parts.location_config, parts.location_state,
                                                          harmonics_calculation, source)  # fmt: skip
    # cast before loading, so float64 weights (the location network) reach a float64 model unrounded; 16 bits
    # only for the image encoder (a bf16 location network failed in model.location.encode and locate)
    with torch.random.fork_rng(devices=[]):  # (built on the CPU: its random initial weights, replaced below, left
        model = SatCLIP.from_config(parts.native_config())  # the caller's random stream advanced)
    model.to(device=device, dtype=torch.float32 if dtype.itemsize < 4 else dtype).visual.to(dtype=dtype)
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
