"""Starting a run from a trained model (``model.init_from``): coarse to fine in the spherical-harmonics degree.

A SIREN's first layer is linear in the basis, and the columns of an L-degree basis are ordered by degree
(index l² + l + m), so a model trained on degrees below L₀ is exactly the same function on a basis of degree
L > L₀ when its first-layer columns are copied and those of the new degrees start at zero. Training then
adds the finer degrees to a field that already holds the coarse ones, instead of learning everything at once
from a random start (which at L = 40 fits the corpus's high-frequency detail before the large scales).

What is copied: the location network (every tensor; the first layer padded as above, rescaled when the two
exact bases differ by convention, :func:`satclip.io.basis.columns_to`), ``logit_scale``, and the image
side where it fits: into a cached run the head, when the model's backbone is the cache's (the same weights to
float rounding — a backbone fitted to the data, like MOSAIKS, differs in the last bits between CPUs — so the
head reads the same features); into a run on images the whole encoder, when its config is the run's.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..io.basis import FIRST_LAYER, columns_to
from ..io.parts import ModelParts
from ..io.read import read_parts
from ..models.clip import SatCLIP
from .cache import FeatureCache

log = logging.getLogger(__name__)


def warm_start(
    model: SatCLIP, source: str, location_config: dict, image_config: dict, cache: FeatureCache | None = None
) -> str | None:
    """Copy the weights of the trained model ``source`` (anything :func:`satclip.load` takes) into ``model``,
    a freshly built run whose location encoder is ``location_config`` and image encoder ``image_config``
    (``cache``: the feature cache of a cached run). Returns None if the image side was copied too, else why not.

    Raises:
        ValueError: ``source``'s location encoder cannot start this one (another encoding or network, a
            higher degree); the message names both.
    """
    try:
        parts = read_parts(source)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"model.init_from: {err}") from err
    name = parts.provenance.get("source", source)
    state = _location_state(parts.location_config, parts.location_state, location_config, name)
    target = model.location.state_dict()
    for key, tensor in state.items():
        if key not in target or target[key].shape != tensor.shape:
            raise ValueError(
                f"model.init_from={source}: its location weight {key} {tuple(tensor.shape)} does not fit this "
                f"run's {tuple(target[key].shape) if key in target else 'model (no such weight)'}"
            )
    model.location.load_state_dict(state, strict=True)
    if parts.logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.copy_(parts.logit_scale)
    not_copied = None
    if not parts.has_image_encoder:
        not_copied = "the model has none"
    elif not _copy_image(model.visual, parts, image_config, cache):
        not_copied = "the model's computes other features"
    image = f"kept from its initialisation ({not_copied})" if not_copied else "head copied" if cache else "copied"
    log.info(
        "model.init_from %s: location network (L = %s → %s) and logit scale copied; image side %s",
        name, parts.location_config["encoding"].get("legendre_polys"),
        location_config["encoding"].get("legendre_polys"), image,
    )  # fmt: skip
    return not_copied


def _location_state(config: dict, state: dict, target: dict, name: object) -> dict[str, torch.Tensor]:
    """``state`` (``nnet.*`` of a location encoder ``config``) as weights of location encoder ``target``."""
    encoding, goal = config["encoding"], target["encoding"]
    differences = []
    if _without(config["network"], "num_classes") != _without(target["network"], "num_classes"):
        differences.append(f"network {config['network']} vs {target['network']}")
    if encoding["name"] != goal["name"]:
        differences.append(f"encoding {encoding['name']} vs {goal['name']}")
    if differences:
        raise ValueError(f"model.init_from={name} does not have this run's location encoder: {'; '.join(differences)}")
    if encoding["name"] != "sphericalharmonics":
        if _without(encoding, "name") != _without(goal, "name"):
            raise ValueError(f"model.init_from={name}: encoding {encoding} differs from this run's {goal}")
        return dict(state)
    degree, goal_degree = int(encoding["legendre_polys"]), int(goal["legendre_polys"])
    if degree > goal_degree:
        raise ValueError(
            f"model.init_from={name} has legendre_polys={degree}, more than this run's {goal_degree}: a run can "
            "only start from a model of the same or a lower degree"
        )
    state = columns_to(state, degree, encoding["harmonics_calculation"], goal["harmonics_calculation"])
    weight = state[FIRST_LAYER]
    padded = weight.new_zeros(weight.shape[0], goal_degree**2)
    padded[:, : weight.shape[1]] = weight
    return {**state, FIRST_LAYER: padded}


def _without(config: dict, key: str) -> dict:
    return {k: v for k, v in config.items() if k != key}


def _copy_image(visual: nn.Module, parts: ModelParts, image_config: dict, cache: FeatureCache | None) -> bool:
    """The image weights of ``parts`` (a complete encoder's) into ``visual`` where they fit (see the module
    docstring); whether they did."""
    if cache is None:
        if parts.image_config != image_config:
            return False
        visual.load_state_dict(parts.visual_state, strict=True)
        return True
    prefix = f"{cache.head_prefix}."
    backbone = {k: v for k, v in parts.visual_state.items() if not k.startswith(prefix)}
    if not _same_weights(backbone, cache.backbone_state()):
        return False
    visual.head.load_state_dict({k[len(prefix) :]: v for k, v in parts.visual_state.items() if k.startswith(prefix)})
    return True


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """The same tensors by name and shape, with values equal to float32 rounding."""
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and torch.allclose(a[k].double(), b[k].double(), rtol=1e-5, atol=1e-7) for k in a
    )


def train_degrees_from(model: SatCLIP, degree: int) -> None:
    """Let only the first-layer columns of spherical-harmonic degrees ≥ ``degree`` of ``model``'s location
    network train (``model.train_degrees_from``): every other parameter is frozen here, and the first layer's
    columns of the lower degrees are kept by :func:`keep_lower_degrees` on the optimizer (its weight decay
    would shrink them)."""
    weight = model.location.get_parameter(FIRST_LAYER)
    if weight.shape[1] <= degree**2:
        raise ValueError(f"model.train_degrees_from={degree}: the first layer has only {weight.shape[1]} columns")
    for param in model.parameters():
        param.requires_grad_(param is weight)


def keep_lower_degrees(optimizer: torch.optim.Optimizer, model: SatCLIP, degree: int) -> None:
    """Restore the first-layer columns of degrees < ``degree`` after every step of ``optimizer``, as they were
    at its first step (the initial model's, or a resumed checkpoint's: the same)."""
    weight = model.location.get_parameter(FIRST_LAYER)
    kept: list[torch.Tensor] = []

    def remember(*_):
        if not kept:
            kept.append(weight.detach()[:, : degree**2].clone())

    def restore(*_):
        with torch.no_grad():
            weight[:, : degree**2] = kept[0]

    optimizer.register_step_pre_hook(remember)
    optimizer.register_step_post_hook(restore)
