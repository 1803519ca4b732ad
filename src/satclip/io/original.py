"""The original SatCLIP Lightning checkpoint (``.ckpt``): reading it without Lightning, and writing it.

A released checkpoint holds ``hyper_parameters`` (the ``SatCLIPLightningModule`` arguments plus a few
extra keys) and a ``state_dict`` with ``model.visual.*`` (image encoder), ``model.logit_scale`` and the
location network twice, as ``model.location.nnet.*`` and ``model.nnet.*`` (one module registered under
two names). See docs/conventions.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import BadInputError
from ..safe_output import atomic_file
from .checks import check_finite
from .safe_pickle import load_checkpoint

LOCATION_PREFIX = "model.location."
LOCATION_ALIAS_PREFIX = "model."  # model.nnet.* duplicates model.location.nnet.*
VISUAL_PREFIX = "model.visual."
LOGIT_SCALE_KEY = "model.logit_scale"

#: hyper-parameters of the released models; written into exported checkpoints when not known
RELEASED_HPARAMS = {
    "embed_dim": 256, "image_resolution": 256, "vision_layers": "moco_resnet18", "vision_width": 768,
    "vision_patch_size": 32, "in_channels": 13, "le_type": "sphericalharmonics", "pe_type": "siren",
    "frequency_num": 16, "max_radius": 360, "min_radius": 1, "legendre_polys": 10,
    "harmonics_calculation": "analytic", "sh_embedding_dims": 32, "learning_rate": 1e-4,
    "weight_decay": 0.01, "num_hidden_layers": 2, "capacity": 512,
}  # fmt: skip
#: keys the released checkpoints carry and the original loader pops before building the model
RELEASED_EXTRA_HPARAMS = {"eval_downstream": False, "air_temp_data_path": None, "election_data_path": None}
_ENCODING_PARAMS = ("legendre_polys", "harmonics_calculation", "min_radius", "max_radius", "frequency_num")


@dataclass
class OriginalCheckpoint:
    hparams: dict
    state_dict: dict[str, torch.Tensor]
    extra: dict = field(default_factory=dict)  # epoch, global_step, … as found

    def location_config(self) -> dict:
        return location_config_from_hparams(self.hparams)

    def location_state_dict(self) -> dict[str, torch.Tensor]:
        """The ``LocationEncoder`` state dict (``nnet.*``), checked against the duplicate copy."""
        loc = {
            k[len(LOCATION_PREFIX) :]: v for k, v in self.state_dict.items() if k.startswith(LOCATION_PREFIX)
        }
        alias = {
            k[len(LOCATION_ALIAS_PREFIX) :]: v
            for k, v in self.state_dict.items()
            if k.startswith(LOCATION_ALIAS_PREFIX + "nnet.")
        }
        if not loc:
            loc = alias
        if not loc:
            raise BadInputError(
                "checkpoint has no location encoder weights (no 'model.location.nnet.*' or 'model.nnet.*' keys)"
            )
        for key, value in alias.items():
            if key in loc and not torch.equal(loc[key], value):
                raise BadInputError(f"checkpoint is inconsistent: model.{key} differs from model.location.{key}")
        return loc

    def visual_state_dict(self) -> dict[str, torch.Tensor]:
        return {k[len(VISUAL_PREFIX) :]: v for k, v in self.state_dict.items() if k.startswith(VISUAL_PREFIX)}


def location_config_from_hparams(hparams: dict) -> dict:
    """Our ``LocationEncoder`` config for the original hyper-parameters (``le_type`` names the
    positional encoding and ``pe_type`` the network, as in the original code)."""
    missing = [k for k in ("le_type", "pe_type", "embed_dim") if k not in hparams]
    if missing:
        raise BadInputError(f"checkpoint hyper_parameters lack {missing}; is this a SatCLIP checkpoint?")

    from ..encoding import ENCODINGS

    accepted = ENCODINGS.accepted(hparams["le_type"])
    encoding = {"name": hparams["le_type"]}
    encoding.update({k: hparams[k] for k in _ENCODING_PARAMS if k in accepted and k in hparams})
    network = {"name": hparams["pe_type"], "num_classes": int(hparams["embed_dim"])}
    if hparams["pe_type"] != "linear":
        network["dim_hidden"] = int(hparams.get("capacity", 256))
    if hparams["pe_type"] in ("siren", "mlp"):
        network["num_layers"] = int(hparams.get("num_hidden_layers", 2))
    return {"encoding": encoding, "network": network}


def hparams_from_location_config(config: dict, base: dict | None = None) -> dict:
    """Original hyper-parameters for a ``LocationEncoder`` config (the inverse of the above)."""
    hparams = {**RELEASED_HPARAMS, **(base or {})}
    encoding = dict(config["encoding"])
    network = dict(config["network"])
    hparams["le_type"] = encoding.pop("name")
    hparams.update(encoding)
    hparams["pe_type"] = network.pop("name")
    hparams["embed_dim"] = network.pop("num_classes")
    if "dim_hidden" in network:
        hparams["capacity"] = network.pop("dim_hidden")
    if "num_layers" in network:
        hparams["num_hidden_layers"] = network.pop("num_layers")
    return hparams


def read_original(path: str | Path, *, trust_checkpoint: bool = False) -> OriginalCheckpoint:
    """Read an original SatCLIP ``.ckpt`` (see :func:`~satclip.io.safe_pickle.load_checkpoint`)."""
    ckpt = load_checkpoint(path, trust_checkpoint=trust_checkpoint)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise BadInputError(f"{path} is not a Lightning checkpoint with 'state_dict' and 'hyper_parameters'")
    for key in ("state_dict", "hyper_parameters"):
        if not isinstance(ckpt[key], dict):
            raise BadInputError(f"{path}: {key!r} must be a dict, got {type(ckpt[key]).__name__}")
    check_finite(ckpt["state_dict"], path)
    extra = {k: v for k, v in ckpt.items() if k not in ("state_dict", "hyper_parameters")}
    return OriginalCheckpoint(dict(ckpt["hyper_parameters"]), dict(ckpt["state_dict"]), extra)


def write_original(
    path: str | Path,
    hparams: dict,
    location_state: dict[str, torch.Tensor],
    *,
    visual_state: dict[str, torch.Tensor] | None = None,
    logit_scale: torch.Tensor | None = None,
    epoch: int = 0,
    global_step: int = 0,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write a checkpoint in the released layout (duplicated location keys, extra hyper-parameters).

    The original loader rebuilds the whole model, so it accepts the file only when ``visual_state``
    (weights for ``hparams["vision_layers"]``) and ``logit_scale`` are included; ``satclip.load`` needs
    only the location weights. Written atomically; an existing file is replaced only with
    ``overwrite=True``, a directory never, and ``path`` may not be one of ``inputs``.

    Raises:
        OutputExistsError: ``path`` exists and may not be replaced.
    """
    state: dict[str, torch.Tensor] = {}
    if logit_scale is not None:
        state[LOGIT_SCALE_KEY] = torch.as_tensor(logit_scale).detach().clone()
    for key, value in (visual_state or {}).items():
        state[VISUAL_PREFIX + key] = value.detach().clone()
    for key, value in location_state.items():
        state[LOCATION_ALIAS_PREFIX + key] = value.detach().clone()
    for key in location_state:
        state[LOCATION_PREFIX + key] = state[LOCATION_ALIAS_PREFIX + key]  # shared, as in the original
    ckpt = {
        "epoch": epoch,
        "global_step": global_step,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": state,
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {
            **hparams,
            **{k: v for k, v in RELEASED_EXTRA_HPARAMS.items() if k not in hparams},
        },
    }
    path = Path(path)
    with atomic_file(path, overwrite=overwrite, inputs=inputs) as tmp:
        torch.save(ckpt, tmp)
    return path
