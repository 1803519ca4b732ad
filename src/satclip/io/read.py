"""Reading any model file into :class:`~satclip.io.parts.ModelParts` (native directory, original ``.ckpt``
with or without satclip's entry, torchgeo state dict, rshf directory, with or without satclip's config), checked
before anything is built."""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInputError
from ..models.location_encoder import check_config
from ..networks.registry import WeightsError
from . import basis, native, original, peers
from .hub import DownloadError
from .parts import LOCATION, ModelParts, location_keys, unpack
from .resolve import ResolvedSource, resolve
from .safe_pickle import load_checkpoint


def _native(path: Path, location_only: bool) -> ModelParts:
    config = native.read_config(path)
    shapes = native.read_shapes(path)
    location_shapes = {name: shapes[key] for key, name in location_keys(shapes).items()}
    padding = config.get(peers.PADDING_KEY)
    if padding and basis.FIRST_LAYER in location_shapes:
        rows, _ = location_shapes[basis.FIRST_LAYER]
        location_shapes[basis.FIRST_LAYER] = (rows, int(padding["input_columns"]))
    _check_config(config["location_encoder"], location_shapes, path, path / native.WEIGHTS_FILE)  # before reading
    keys = [k for k in shapes if k.startswith(LOCATION)] if location_only else None
    location, visual, logit_scale = unpack(native.read_tensors(path, keys))
    location = peers.unpad(config, location, path)
    parts = ModelParts(
        config["location_encoder"], location, metadata=dict(config.get("metadata") or {}),
        provenance={"source": str(path), "format": "native", "metadata": config.get("metadata", {})},
    )  # fmt: skip
    if not location_only:
        if visual and config.get("image_encoder"):
            parts.image_config, parts.visual_state = config["image_encoder"], visual
        parts.logit_scale = logit_scale
    return parts


def _file(path: Path, location_only: bool, trust_checkpoint: bool, release=None, basis_given=False) -> ModelParts:
    loaded = load_checkpoint(path, trust_checkpoint=trust_checkpoint)
    if release is not None:
        _check_release(loaded, path, release)
    if peers.is_torchgeo_state_dict(loaded):
        parts = peers.parts_from_torchgeo(loaded, path, basis_given)
    else:
        parts = original.parts_from_checkpoint(
            original.checked_checkpoint(loaded, path), path, location_only=location_only
        )
    _check_config(parts.location_config, {k: tuple(v.shape) for k, v in parts.location_state.items()}, path, path)
    return parts


def _check_config(config: dict, shapes: dict, source: Path, weights: Path) -> None:
    """:func:`~satclip.models.location_encoder.check_config`, naming ``weights`` (the file) when they lack a
    tensor their network needs."""
    try:
        check_config(config, shapes, str(source))
    except WeightsError as err:
        raise BadInputError(f"{weights}: {err}") from err


def _check_release(loaded: object, path: Path, release) -> None:
    """Refuse a file fetched (or found in the hub cache) under a release's name that is not that release."""
    hyper_parameters = loaded.get("hyper_parameters") if isinstance(loaded, dict) else None
    differences = release.differences(hyper_parameters)
    if differences:
        raise DownloadError(
            f"{path} is not the released {release.filename}: its hyper_parameters give {'; '.join(differences)}; "
            f"delete it (or its Hugging Face cache entry) and fetch it again ({release.url})"
        )


def read_parts(
    source: str | Path | ResolvedSource, *, location_only: bool = False, trust_checkpoint: bool = False,
    basis_given: bool = False,
) -> ModelParts:
    """The model of ``source`` (anything :func:`~satclip.io.resolve.resolve` takes, or its result).

    ``location_only`` skips the image encoder (for a native directory its tensors are not even read).
    The location config is checked against the weights' shapes (:func:`~satclip.models.location_encoder.check_config`)
    and weights with NaN or inf are refused. ``basis_given``: the caller computes the basis it chose
    (``harmonics_calculation=``), so a bare state dict's is not warned about.

    Raises:
        BadInputError: the file is inconsistent or not a model; FileNotFoundError: no such source.
    """
    resolved = source if isinstance(source, ResolvedSource) else resolve(source)
    if resolved.kind == "native":
        return _native(resolved.path, location_only)
    if resolved.kind == "rshf":
        return peers.parts_from_rshf(resolved.path)
    return _file(resolved.path, location_only, trust_checkpoint, resolved.release, basis_given)


def require_image_encoder(parts: ModelParts, needed_for: str = "satclip.load_model") -> ModelParts:
    """``parts`` if they hold an image encoder, else an error naming what needs it (``needed_for``) and what to
    give instead."""
    if not parts.has_image_encoder:
        raise BadInputError(
            f"{parts.provenance.get('source', 'the model')} holds only a location encoder (no image encoder "
            f"weights), and {needed_for} needs the image encoder too: give the full model, a native directory such "
            "as RUN/export/last or a .ckpt written without --location-only (a released model: its original .ckpt)"
        )
    return parts
