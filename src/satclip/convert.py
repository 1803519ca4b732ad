"""Conversion between the original ``.ckpt`` layout and the native format."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import BadInputError
from .io import native, original
from .load import resolve
from .location_encoder import check_config
from .safe_output import check_output


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def convert(
    source: str | Path,
    output: str | Path,
    *,
    location_only: bool = False,
    trust_checkpoint: bool = False,
    overwrite: bool = False,
) -> Path:
    """Original ``.ckpt`` → native directory, or native directory → original ``.ckpt``.

    The image encoder (``visual.*``) and ``logit_scale`` travel along unless ``location_only``. The
    location encoder's config is checked against its weights, and weights with NaN or inf are refused.

    ``output`` is written atomically. If it exists it is replaced only with ``overwrite=True``, and then
    only a file (for a ``.ckpt``) or a directory satclip wrote (for a native model); a directory holding
    other files is never replaced. ``output`` may not be ``source`` or contain it.

    Raises:
        OutputExistsError: ``output`` exists and may not be replaced (checked before reading ``source``).
        BadInputError: ``output`` is the source, or the source is corrupt or inconsistent.
    """
    resolved = resolve(source)
    output = Path(output)
    to_native = resolved.kind == "original"
    inputs = [resolved.path]
    if not to_native:
        inputs += [resolved.path / native.CONFIG_FILE, resolved.path / native.WEIGHTS_FILE]
    check_output(output, overwrite=overwrite, inputs=inputs, directory=to_native)  # before the slow reading
    if output.is_dir() and _inside(resolved.path, output):  # replacing it would delete the input
        raise BadInputError(f"the output {output} contains the input {resolved.path}; choose another output path")
    if to_native:
        ckpt = original.read_original(resolved.path, trust_checkpoint=trust_checkpoint)
        location_state = ckpt.location_state_dict()
        check_config(ckpt.location_config(), {k: tuple(v.shape) for k, v in location_state.items()}, str(resolved.path))
        tensors = {f"location.{k}": v for k, v in location_state.items()}
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
        return native.write_native(output, config, tensors, overwrite=overwrite, inputs=inputs)

    config = native.read_config(resolved.path)
    prefix = "location."
    shapes = native.read_shapes(resolved.path)
    check_config(
        config["location_encoder"],
        {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)},
        str(resolved.path),
    )
    tensors = native.read_tensors(resolved.path)
    location = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    visual = None if location_only else {k[len("visual.") :]: v for k, v in tensors.items() if k.startswith("visual.")}
    base = dict((config.get("metadata") or {}).get("hyper_parameters", {}))
    for key in original.RELEASED_EXTRA_HPARAMS:
        base.pop(key, None)
    hparams = original.hparams_from_location_config(config["location_encoder"], base)
    if config.get("image_encoder") and not location_only:
        hparams.update(hparams_from_image_config(config["image_encoder"]))
    logit_scale = None if location_only else tensors.get("logit_scale")
    return original.write_original(
        output, hparams, location, visual_state=visual or None, logit_scale=logit_scale,
        overwrite=overwrite, inputs=inputs,
    )  # fmt: skip


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
