"""Exporting a trained model: a native model directory and a file for ``trainer.export_target``.

Both load with :func:`satclip.load`. The native directory holds ``location.*``, the complete image
encoder as ``visual.*`` (for a cached run: the cache's backbone plus the trained head) and
``logit_scale``; its ``metadata`` records the training config (its paths by their last component only), epoch,
step, metrics, the precision it trained in and, for a Blue Marble corpus, the training footprint and image
input. The target file is written by :func:`satclip.io.targets.write`: for ``original`` a ``.ckpt`` in the
released layout (image encoders the original cannot describe, e.g. ``mosaiks``, are left out: a location-only
file), for ``torchgeo`` a ``.pt`` state dict, for ``rshf`` a ``-rshf`` directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BadInputError
from ..io.parts import ModelParts
from ..io.targets import Written, write
from ..models.clip import SatCLIP
from ..models.provenance import recorded_inputs
from .build import full_image_encoder, location_config
from .cache import FeatureCache
from .config import RUN_PATHS, TrainConfig
from .module import model_state

log = logging.getLogger(__name__)

#: where each target is written beside the native directory ``<name>/``
TARGET_NAMES = {"original": "{name}.ckpt", "torchgeo": "{name}.pt", "rshf": "{name}-rshf"}


@dataclass(frozen=True)
class Exported:
    """``native``: the native directory; ``target``: the file written for ``trainer.export_target`` and the
    readers that reproduce it."""

    native: Path
    target: Written

    @property
    def original(self) -> Path | None:
        """The original-layout ``.ckpt`` (``None`` when the target was another reader's)."""
        return self.target.path if self.target.target == "original" else None


def lightning_state_to_model(state: dict[str, torch.Tensor], *, cached: bool) -> dict[str, torch.Tensor]:
    """The :class:`~satclip.SatCLIP` state dict inside a training checkpoint's ``state_dict``."""
    prefix = "model."
    state = model_state(state, cached=cached)
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise KeyError(f"checkpoint state_dict has no '{prefix}*' keys; is it a satclip training checkpoint?")
    return out


def trained_parts(
    model: SatCLIP, image_config: dict, config: TrainConfig, *, cache: FeatureCache | None = None, metadata: dict
) -> ModelParts:
    """The trained model as it is served: the complete image encoder (the cache's backbone in front of the
    trained head for a cached run)."""
    encoder = full_image_encoder(model, image_config, cache)
    parts = model.to_parts(metadata)
    parts.location_config = location_config(config.model)
    parts.image_config = dict(image_config)
    parts.visual_state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    return parts


#: the exports a run writes (:func:`export_model`), by name
EXPORT_NAMES = ("best", "last")


def check_exports(directory: str | Path, target: str) -> None:
    """Raise before training unless the exports of a run (``directory/{best,last}`` and their ``target`` files)
    may be written: a user's file put in an earlier export was refused only after the training had run, the
    checkpoints ahead of the exports."""
    from .. import safe_output
    from ..io import native
    from ..io.targets import is_directory_target

    directory = Path(directory)
    for name in EXPORT_NAMES:
        safe_output.check_output(directory / name, overwrite=True, directory=True, kind="output")
        native.refuse_other_outputs(directory / name)
        output = directory / TARGET_NAMES[target].format(name=name)
        safe_output.check_output(output, overwrite=True, directory=is_directory_target(target), kind="output")


def other_targets(directory: str | Path, target: str) -> dict[str, list[Path]]:
    """The exports in ``directory`` written for another ``trainer.export_target`` than ``target``, by target: an
    earlier run's, which a run exporting for ``target`` does not write again (they hold the model of then)."""
    directory = Path(directory)
    found = {other: [directory / pattern.format(name=name) for name in EXPORT_NAMES]
             for other, pattern in TARGET_NAMES.items() if other != target}  # fmt: skip
    return {other: [p for p in paths if p.exists()] for other, paths in found.items() if any(p.exists() for p in paths)}


def shareable(train_config: dict) -> dict:
    """``train_config`` (a :meth:`TrainConfig.to_dict`) with each of its :data:`RUN_PATHS` cut to its last
    component: a model is shared, the layout of the machine that trained it (``/home/<user>/…``) is not."""
    out = {section: dict(values) if isinstance(values, dict) else values for section, values in train_config.items()}
    for key in RUN_PATHS:
        section, name = key.split(".")
        if out.get(section, {}).get(name):
            out[section][name] = Path(out[section][name]).name
    return out


def export_model(
    model: SatCLIP,
    image_config: dict,
    config: TrainConfig,
    directory: str | Path,
    name: str,
    *,
    cache: FeatureCache | None = None,
    epoch: int = 0,
    global_step: int = 0,
    metrics: dict | None = None,
    trained_precision: str | None = None,
) -> Exported:
    """Write ``directory/name/`` (native) and the ``trainer.export_target`` file beside it, atomically,
    replacing earlier exports of that name (a directory only if satclip wrote it). ``trained_precision``:
    Lightning's precision the run trained in, recorded (``trainer.precision: auto`` says what it chose)."""
    directory = Path(directory)
    train_config = config.to_dict()
    metadata = {
        "trained_with": "satclip.train",
        "epoch": int(epoch),
        "global_step": int(global_step),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        **recorded_inputs(train_config),
        "train_config": shareable(train_config),
        # Lightning's precision the run trained in: what trainer.precision "auto" resolved to on its machine
        **({"trained_precision": trained_precision} if trained_precision else {}),
    }
    if cache is not None:
        metadata["feature_cache"] = {"name": Path(cache.path).name, "key": cache.key}
    parts = trained_parts(model, image_config, config, cache=cache, metadata=metadata)
    native = write(parts, directory / name, "native", overwrite=True)
    target = config.trainer.export_target
    output = directory / TARGET_NAMES[target].format(name=name)
    if target != "original":
        parts = parts.location_only()
    try:
        written = write(parts, output, target, overwrite=True, epoch=epoch, global_step=global_step)
    except BadInputError:  # an image encoder the original cannot describe (e.g. mosaiks)
        log.info("%s: %s holds the location encoder only (the original's format has no %s image encoder); the "
                 "whole model is the native directory %s", name, output.name, image_config.get("name", "such an"),
                 native.path)  # fmt: skip
        written = write(parts.location_only(), output, target, overwrite=True, epoch=epoch, global_step=global_step)
    return Exported(native.path, written)
