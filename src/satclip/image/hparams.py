"""Image-encoder config ⇄ the original SatCLIP hyper-parameters (``vision_layers`` & co).

The original picks its image encoder from ``vision_layers``: ``"moco_resnet18"``, ``"moco_resnet50"``,
``"moco_vit16"`` (timm backbones with 13 input bands, whatever ``in_channels`` says), a tuple of four
block counts (CLIP modified ResNet of width ``vision_width``) or an int (CLIP ViT with ``vision_width``,
``vision_patch_size``); ``image_resolution``, ``in_channels`` and ``embed_dim`` complete them.
"""

from __future__ import annotations

MOCO_NAMES = ("moco_resnet18", "moco_resnet50", "moco_vit16")
#: bands the original's moco_* backbones always have (torchgeo weights meta ``in_chans``)
MOCO_IN_CHANS = 13
VISION_HPARAMS = ("vision_layers", "vision_width", "vision_patch_size", "image_resolution", "in_channels")


def config_from_hparams(hparams: dict) -> dict:
    """The ``image_encoder`` config (``{"name": …, **params}``) of original hyper-parameters."""
    missing = [k for k in ("vision_layers", "embed_dim") if k not in hparams]
    if missing:
        raise KeyError(f"hyper-parameters lack {missing}; cannot tell which image encoder to build")
    layers, embed_dim = hparams["vision_layers"], int(hparams["embed_dim"])
    if isinstance(layers, str):
        if layers not in MOCO_NAMES:
            raise ValueError(
                f"unknown vision_layers {layers!r}; the original knows {', '.join(MOCO_NAMES)}, a tuple of 4 "
                "block counts (CLIP ResNet) or an int (CLIP ViT)"
            )
        return {"name": layers, "embed_dim": embed_dim, "in_chans": MOCO_IN_CHANS, "frozen": True}
    common = {
        "image_resolution": int(hparams.get("image_resolution", 224)),
        "in_chans": int(hparams.get("in_channels", 3)),
        "embed_dim": embed_dim,
        "width": int(hparams.get("vision_width", 64)),
    }
    if isinstance(layers, (list, tuple)):
        return {"name": "clip_resnet", "layers": [int(n) for n in layers], **common}
    if isinstance(layers, int) and not isinstance(layers, bool):
        return {
            "name": "clip_vit",
            "layers": layers,
            "patch_size": int(hparams.get("vision_patch_size", 32)),
            **common,
        }
    raise ValueError(f"vision_layers must be a name, a tuple or an int, got {layers!r}")


def hparams_from_config(config: dict) -> dict:
    """Original hyper-parameters for an ``image_encoder`` config (the inverse of the above)."""
    config = normalize_config(config)
    name = config["name"]
    if name in MOCO_NAMES:
        if int(config.get("in_chans", MOCO_IN_CHANS)) != MOCO_IN_CHANS:
            raise ValueError(
                f"{name} with {config['in_chans']} bands has no original equivalent (the original always "
                f"builds it with {MOCO_IN_CHANS})"
            )
        if not config.get("frozen", True):
            raise ValueError(
                f"an unfrozen {name} has no original equivalent (the original freezes the backbone)"
            )
        return {"vision_layers": name, "in_channels": MOCO_IN_CHANS, "embed_dim": int(config["embed_dim"])}
    if name not in ("clip_resnet", "clip_vit"):
        raise ValueError(
            f"image encoder {name!r} cannot be written as an original SatCLIP checkpoint (it knows "
            f"{', '.join(MOCO_NAMES)}, clip_resnet, clip_vit)"
        )
    common = {
        "image_resolution": config["image_resolution"], "in_channels": config["in_chans"],
        "embed_dim": config["embed_dim"], "vision_width": config["width"],
    }  # fmt: skip
    if name == "clip_resnet":
        return {"vision_layers": tuple(config["layers"]), **common}
    return {"vision_layers": int(config["layers"]), "vision_patch_size": config["patch_size"], **common}


def normalize_config(config: dict) -> dict:
    """Accept the early native layout (a dict of original ``vision_*`` hyper-parameters) too."""
    if "name" in config:
        return dict(config)
    if "vision_layers" in config:
        return config_from_hparams(config)
    raise ValueError(f"image_encoder config has no 'name': {config}")
