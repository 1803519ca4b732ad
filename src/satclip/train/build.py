"""Building the trainable model from a :class:`~satclip.train.config.TrainConfig`, and its image encoder.

Random initialisations (a random backbone, the head, the location encoder) are drawn under
``torch.manual_seed(seed)`` inside a forked RNG, so a config builds the same model every time — which
also keeps a cache of a random backbone valid across ``satclip cache build`` and ``satclip train``.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from ..encoding import ENCODINGS
from ..image.cached import CachedFeatures
from ..models.clip import SatCLIP
from ..models.location_encoder import LocationEncoder
from ..networks import NETWORKS
from .cache import FeatureCache, ReplacedCacheError, state_sha256
from .config import ModelConfig, TrainConfig

log = logging.getLogger(__name__)

#: image-encoder parameters that do not change the backbone's features (may differ from the cache's)
HEAD_ONLY_PARAMS = ("embed_dim", "weights")


def location_config(model: ModelConfig) -> dict:
    """The location-encoder config with the network's ``num_classes`` set to ``embed_dim`` and every
    builder default written out."""
    config = copy.deepcopy(model.location_encoder)
    for part in ("encoding", "network"):
        if part not in config or "name" not in config[part]:
            raise ValueError(
                f"model.location_encoder.{part} needs a 'name' (e.g. {{'encoding': {{'name': "
                "'sphericalharmonics', ...}, 'network': {'name': 'siren', ...}}), got "
                f"{model.location_encoder!r}"
            )
    given = config["network"].get("num_classes")
    if given is not None and int(given) != model.embed_dim:
        raise ValueError(
            f"model.location_encoder.network.num_classes={given} differs from model.embed_dim={model.embed_dim}"
        )
    config["network"]["num_classes"] = int(model.embed_dim)
    config["encoding"] = ENCODINGS.with_defaults(config["encoding"])
    config["network"] = NETWORKS.with_defaults(config["network"])
    return config


def build_location_encoder(model: ModelConfig) -> LocationEncoder:
    dtype = {"float32": torch.float32, "float64": torch.float64}[model.location_dtype]
    return LocationEncoder.from_config(location_config(model)).to(dtype)


def build_image_encoder(config: dict, *, embed_dim: int, seed: int) -> nn.Module:
    """``satclip.image.create`` of ``config`` (``{"name": …, **params}``) with ``embed_dim``, seeded."""
    from .. import image

    params = dict(config)
    if "name" not in params:
        raise ValueError(f"model.image_encoder needs a 'name' (one of {', '.join(image.names())}), got {config!r}")
    name = params.pop("name")
    params["embed_dim"] = int(embed_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return image.create(name, **params)


def cached_image_config(model: ModelConfig, cache: FeatureCache) -> dict:
    """The image encoder of a cached run: the cache's, with this run's ``embed_dim``. A config that names
    an image encoder must agree with the cache on everything that changes the features."""
    cached = cache.image_encoder_config
    given = dict(model.image_encoder or {})
    conflicts = [
        f"{k}: config {given[k]!r} vs cache {cached.get(k)!r}"
        for k in given
        if k not in HEAD_ONLY_PARAMS and (k not in cached or cached[k] != given[k])
    ]
    if conflicts:
        raise ValueError(
            f"model.image_encoder does not match the feature cache {cache.path} ({'; '.join(conflicts)}): "
            "rebuild the cache with `satclip cache build --config CONFIG`, or drop model.image_encoder to use "
            "the cache's"
        )
    return {**cached, "embed_dim": int(model.embed_dim)}


def build_model(config: TrainConfig, cache: FeatureCache | None, *, warm: bool = True) -> tuple[SatCLIP, dict]:
    """``(model, image_encoder_config)`` for a run: a :class:`~satclip.SatCLIP` whose ``visual`` is, from
    ``cache``, a :class:`~satclip.image.cached.CachedFeatures` (identity backbone + the encoder's own head,
    initialised as the encoder's, the only image part that trains), otherwise the full encoder.
    ``warm``: start from ``model.init_from`` when the config names one (``False`` where a checkpoint's weights
    replace the initial ones anyway: a resumed run, an export), so those never need that model again.
    """
    seed = config.trainer.seed
    if cache is not None:
        image_config = cached_image_config(config.model, cache)
        params = {k: v for k, v in image_config.items() if k != "weights"}
        encoder = build_image_encoder(params, embed_dim=config.model.embed_dim, seed=seed)
        if encoder.head.in_features != cache.feature_dim:
            raise ValueError(
                f"{image_config['name']} has {encoder.head.in_features} features, the cache {cache.path} holds "
                f"{cache.feature_dim}"
            )
        visual: nn.Module = CachedFeatures(copy.deepcopy(encoder.head).requires_grad_(True), image_config)
    else:
        visual = build_image_encoder(config.model.image_encoder, embed_dim=config.model.embed_dim, seed=seed)
        image_config = dict(visual.config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        location = build_location_encoder(config.model)
    model = SatCLIP(visual, location, config.model.logit_scale_init)
    if warm and config.model.init_from:
        from .warm_start import warm_start

        not_copied = warm_start(model, config.model.init_from, location_config(config.model), image_config, cache)
        if not_copied and config.model.train_degrees_from:  # (the image side would stay at random weights)
            raise ValueError(
                f"model.train_degrees_from={config.model.train_degrees_from} trains the location network's first "
                f"layer alone, but the image side of model.init_from={config.model.init_from} cannot be copied "
                f"({not_copied}, e.g. MOSAIKS filters fitted with another trainer.seed): it would stay at its "
                "random initialisation, and the new degrees would be fitted to a random projection of the image "
                "features; use the image features the model was trained on, or drop model.train_degrees_from"
            )
    if config.model.train_degrees_from:
        from .warm_start import train_degrees_from

        train_degrees_from(model, config.model.train_degrees_from)
    return model, image_config


def full_image_encoder(model: SatCLIP, image_config: dict, cache: FeatureCache | None) -> nn.Module:
    """The complete image encoder of a trained model: from a cached run, the cache's backbone with the
    trained head (loaded strictly, so a mismatch between cache and architecture fails loudly).

    Raises:
        ReplacedCacheError: the cache's backbone is not the one of the key ``cache`` was opened with."""
    if cache is None:
        return model.visual
    params = {k: v for k, v in image_config.items() if k != "weights"}
    encoder = build_image_encoder(params, embed_dim=int(image_config["embed_dim"]), seed=0)
    state = cache.backbone_state()
    # (read again by path: a build that replaced the cache while the run trained paired its backbone with a head
    # trained on the features of the one before, and the export recorded the old key)
    if state_sha256(state) != cache.key["backbone_sha256"]:
        raise ReplacedCacheError(cache.path)
    prefix = cache.head_prefix
    state.update({f"{prefix}.{k}": v for k, v in model.visual.head.state_dict().items()})
    encoder.load_state_dict(state, strict=True)
    return encoder
