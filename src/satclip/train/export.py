"""Exporting a trained pair: a native model directory and an original-layout ``.ckpt``.

Both load with :func:`satclip.load`. The native directory holds ``location.*``, the complete image
encoder as ``visual.*`` (for a cached run: the cache's backbone plus the trained head) and
``logit_scale``; its ``metadata`` records the training config, epoch, step and metrics. The ``.ckpt``
has the released layout (duplicated location keys, original hyper-parameters); image encoders the
original cannot describe (e.g. ``mosaiks``) are left out of it, with their name in ``vision_layers``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io.native import write_native
from ..io.original import hparams_from_location_config, write_original
from .build import full_image_encoder, location_config
from .cache import FeatureCache
from .config import TrainConfig
from .pair import ContrastivePair

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    native: Path
    original: Path


def lightning_state_to_pair(state: dict[str, torch.Tensor], prefix: str = "pair.") -> dict[str, torch.Tensor]:
    """The :class:`ContrastivePair` state dict inside a Lightning checkpoint's ``state_dict``."""
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise KeyError(f"checkpoint state_dict has no '{prefix}*' keys; is it a satclip training checkpoint?")
    return out


def export_pair(
    pair: ContrastivePair,
    image_config: dict,
    config: TrainConfig,
    directory: str | Path,
    name: str,
    *,
    cache: FeatureCache | None = None,
    epoch: int = 0,
    global_step: int = 0,
    metrics: dict | None = None,
) -> Exported:
    """Write ``directory/name/`` (native) and ``directory/name.ckpt`` (original layout), atomically,
    replacing earlier exports of that name (a directory only if satclip wrote it)."""
    directory = Path(directory)
    encoder = full_image_encoder(pair, image_config, cache)
    location_state = {k: v.detach().cpu() for k, v in pair.location.state_dict().items()}
    visual_state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    logit_scale = pair.logit_scale.detach().cpu().clone()
    loc_config = location_config(config.model)
    metadata = {
        "trained_with": "satclip.train",
        "epoch": int(epoch),
        "global_step": int(global_step),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "train_config": config.to_dict(),
    }
    if cache is not None:
        metadata["feature_cache"] = {"path": str(cache.path), "key": cache.key}
    tensors = {f"location.{k}": v for k, v in location_state.items()}
    tensors.update({f"visual.{k}": v for k, v in visual_state.items()})
    tensors["logit_scale"] = logit_scale
    native = write_native(
        directory / name,
        {"location_encoder": loc_config, "image_encoder": dict(image_config), "metadata": metadata},
        tensors,
        overwrite=True,
    )
    base = {
        "embed_dim": config.model.embed_dim,
        "learning_rate": config.optim.lr,
        "weight_decay": config.optim.weight_decay,
    }
    visual = visual_state
    try:
        from ..image import hparams_from_config

        base.update(hparams_from_config(image_config))
    except (ValueError, KeyError) as err:  # an encoder the original cannot describe (e.g. mosaiks)
        log.info("%s: the .ckpt holds the location encoder only (%s)", name, err)
        base["vision_layers"] = image_config.get("name")
        visual = None
    hparams = hparams_from_location_config(loc_config, base)
    original = write_original(
        directory / f"{name}.ckpt", hparams, location_state, visual_state=visual, logit_scale=logit_scale,
        epoch=epoch, global_step=global_step, overwrite=True,
    )  # fmt: skip
    return Exported(native, original)
