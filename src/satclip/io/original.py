"""The original SatCLIP Lightning checkpoint (``.ckpt``): reading it without Lightning, and writing it.

A released checkpoint holds ``hyper_parameters`` (the ``SatCLIPLightningModule`` arguments plus a few
extra keys) and a ``state_dict`` with ``model.visual.*`` (image encoder), ``model.logit_scale`` and the
location network twice, as ``model.location.nnet.*`` and ``model.nnet.*`` (one module registered under
two names). See docs/conventions.md.

Files satclip writes carry, beside that layout, a top-level ``"satclip"`` entry: the model's native config
and, where the file's weights were rewritten for the original's basis (see :mod:`satclip.io.basis`), the
exact tensors. :func:`parts_from_checkpoint` prefers it, so a round trip through the original layout is
exact; the original's loaders read only ``hyper_parameters`` and ``state_dict`` and ignore it.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import BadInputError
from ..safe_output import atomic_file, listed, write_serialised
from . import basis, native
from .checks import check_weights
from .parts import ModelParts
from .safe_pickle import load_checkpoint

log = logging.getLogger(__name__)

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
#: the arguments of the original ``SatCLIPLightningModule.__init__`` (which ``get_satclip`` passes
#: ``hyper_parameters`` to, after popping :data:`RELEASED_EXTRA_HPARAMS`): nothing else may be written
ORIGINAL_INIT_ARGS = (
    "embed_dim", "image_resolution", "vision_layers", "vision_width", "vision_patch_size", "in_channels",
    "le_type", "pe_type", "frequency_num", "max_radius", "min_radius", "legendre_polys", "harmonics_calculation",
    "sh_embedding_dims", "learning_rate", "weight_decay", "num_hidden_layers", "capacity",
)  # fmt: skip
#: bases (``harmonics_calculation``) the original code knows
ORIGINAL_BASES = ("analytic", "closed-form")
#: networks (``pe_type``) the original's ``get_neural_network`` knows, and the parameters it takes from
#: the hyper-parameters (everything else about them is fixed in its code)
ORIGINAL_NETWORK_PARAMS = {
    "linear": ("num_classes",),
    "mlp": ("num_classes", "dim_hidden", "num_layers"),
    "siren": ("num_classes", "dim_hidden", "num_layers"),
    "fcnet": ("num_classes", "dim_hidden"),
}
#: top-level key of satclip's own description of the model
SATCLIP_KEY = "satclip"


@dataclass
class OriginalCheckpoint:
    hparams: dict
    state_dict: dict[str, torch.Tensor]
    extra: dict = field(default_factory=dict)  # epoch, global_step, … as found

    def location_config(self) -> dict:
        return location_config_from_hparams(self.hparams)

    def location_state_dict(self, source: str | Path = "the checkpoint") -> dict[str, torch.Tensor]:
        """The ``LocationEncoder`` state dict (``nnet.*``), checked against the duplicate copy (``source`` names
        the file in messages)."""
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
                f"{source} has no location encoder weights (no 'model.location.nnet.*' or 'model.nnet.*' keys): "
                "it is no SatCLIP checkpoint, or not a complete one; give the SatCLIP .ckpt (or download it again)"
            )
        for key, value in alias.items():
            if key in loc and not torch.equal(loc[key], value):
                raise BadInputError(
                    f"{source} is inconsistent: model.{key} differs from model.location.{key}, which a SatCLIP "
                    "checkpoint stores twice with the same values: the file was damaged or edited; download or "
                    "copy it again"
                )
        return loc

    def visual_state_dict(self) -> dict[str, torch.Tensor]:
        return {k[len(VISUAL_PREFIX) :]: v for k, v in self.state_dict.items() if k.startswith(VISUAL_PREFIX)}

    @property
    def logit_scale(self) -> torch.Tensor | None:
        return self.state_dict.get(LOGIT_SCALE_KEY)


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
    network = {"name": hparams["pe_type"], "num_classes": _whole(hparams, "embed_dim")}
    if hparams["pe_type"] != "linear":
        network["dim_hidden"] = _whole(hparams, "capacity", 256)
    if hparams["pe_type"] in ("siren", "mlp"):
        network["num_layers"] = _whole(hparams, "num_hidden_layers", 2)
    return {"encoding": encoding, "network": network}


def _whole(hparams: dict, key: str, default: int | None = None) -> int:
    value = hparams.get(key, default)
    try:
        whole = int(value)
    except (TypeError, ValueError):
        whole = None
    if whole is None or isinstance(value, bool) or whole != value:
        raise BadInputError(f"hyper_parameters[{key!r}] is {value!r}, not a whole number")
    return whole


def hparams_from_location_config(config: dict, base: dict | None = None) -> dict:
    """Original hyper-parameters for a ``LocationEncoder`` config (the inverse of the above), on top of the
    released ones and ``base`` (keys the original does not take are dropped from ``base``).

    The values are copied as they are (a satclip-only ``harmonics_calculation`` stays); use
    :func:`checkpoint_for_original` for a file the original code reads.

    Raises:
        BadInputError: the config has a parameter the original's hyper-parameters cannot express.
    """
    from ..encoding import ENCODINGS

    hparams = {**RELEASED_HPARAMS, **{k: v for k, v in (base or {}).items() if k in ORIGINAL_INIT_ARGS}}
    # satclip's defaults written out: the released values in RELEASED_HPARAMS (min_radius 1, …) are not them
    encoding = ENCODINGS.with_defaults(config["encoding"])
    network = dict(config["network"])
    hparams["le_type"] = encoding.pop("name")
    unknown = sorted(set(encoding) - set(_ENCODING_PARAMS))
    hparams.update(encoding)
    hparams["pe_type"] = network.pop("name")
    hparams["embed_dim"] = network.pop("num_classes")
    if "dim_hidden" in network:
        hparams["capacity"] = network.pop("dim_hidden")
    if "num_layers" in network:
        hparams["num_hidden_layers"] = network.pop("num_layers")
    unknown += sorted(f"network.{k}" for k in network)
    if unknown:
        raise BadInputError(
            f"the location encoder's {unknown} cannot be written as original SatCLIP hyper-parameters (it takes "
            f"{', '.join(ORIGINAL_INIT_ARGS)})"
        )
    return hparams


def read_original(path: str | Path, *, trust_checkpoint: bool = False) -> OriginalCheckpoint:
    """Read an original SatCLIP ``.ckpt`` (see :func:`~satclip.io.safe_pickle.load_checkpoint`)."""
    return checked_checkpoint(load_checkpoint(path, trust_checkpoint=trust_checkpoint), path)


def checked_checkpoint(ckpt: object, path: str | Path) -> OriginalCheckpoint:
    """An unpickled ``.ckpt`` checked for the Lightning layout and for finite weights."""
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        found = f"keys {listed(sorted(repr(key) for key in ckpt))}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise BadInputError(f"{path} is not a Lightning checkpoint with 'state_dict' and 'hyper_parameters' (it holds "
                            f"{found}): give a released SatCLIP .ckpt (or one satclip train wrote), a native model "
                            "directory or a model name such as bluemarble-l10")  # fmt: skip
    if isinstance(ckpt["hyper_parameters"], argparse.Namespace):  # (older Lightning's: a trusted file may hold one)
        ckpt = {**ckpt, "hyper_parameters": vars(ckpt["hyper_parameters"])}
    for key in ("state_dict", "hyper_parameters"):
        if not isinstance(ckpt[key], dict):
            raise BadInputError(f"{path}: {key!r} must be a dict, got {type(ckpt[key]).__name__}")
    check_weights(ckpt["state_dict"], path)
    extra = {k: v for k, v in ckpt.items() if k not in ("state_dict", "hyper_parameters")}
    return OriginalCheckpoint(dict(ckpt["hyper_parameters"]), dict(ckpt["state_dict"]), extra)


def _satclip_entry(ckpt: OriginalCheckpoint, location: dict[str, torch.Tensor], path) -> dict | None:
    """The file's ``"satclip"`` entry when it describes these weights (else ``None``, logged)."""
    entry = ckpt.extra.get(SATCLIP_KEY)
    if not isinstance(entry, dict) or entry.get("format") != native.FORMAT:
        return None
    config = entry.get("location_encoder")
    exact = entry.get("location_tensors") or {}
    if not isinstance(config, dict) or not isinstance(exact, dict):
        log.warning("%s: ignoring a malformed %r entry; reading hyper_parameters", path, SATCLIP_KEY)
        return None
    if exact:  # the file holds these tensors rewritten for another basis: they must still match
        written = basis.columns_to(
            exact, int(config["encoding"].get("legendre_polys", 0)),
            config["encoding"].get("harmonics_calculation", basis.EXACT), str(entry.get("written_basis")),
        )  # fmt: skip
        if any(key not in location or not torch.equal(written[key], location[key]) for key in exact):
            log.warning(
                "%s: its weights were changed after satclip wrote them; reading hyper_parameters, not satclip's "
                "entry", path,
            )  # fmt: skip
            return None
    return entry


def parts_from_checkpoint(ckpt: OriginalCheckpoint, path: str | Path, *, location_only: bool = False) -> ModelParts:
    """The model in an original checkpoint; satclip's own ``"satclip"`` entry, where present and
    consistent with the weights, is preferred over ``hyper_parameters``."""
    location = ckpt.location_state_dict(path)
    entry = _satclip_entry(ckpt, location, path)
    if entry is not None:
        location = {**location, **entry.get("location_tensors", {})}
        config = entry["location_encoder"]
        metadata = dict(entry.get("metadata") or {})
    else:
        _refuse_training_state(ckpt.hparams, Path(path))
        config = _naming(path, ckpt.location_config)
        metadata = {"hyper_parameters": _json_ready(ckpt.hparams)}
    # the metadata travels with the loaded model (its training footprint and image input: see models.provenance)
    provenance = {"source": str(path), "format": "original", "hyper_parameters": ckpt.hparams, "metadata": metadata}
    parts = ModelParts(config, location, metadata=metadata, provenance=provenance)
    if location_only:
        return parts
    visual = ckpt.visual_state_dict()
    if visual:
        from ..image import config_from_hparams

        image_config = (entry or {}).get("image_encoder") or _naming(path, config_from_hparams, ckpt.hparams)
        parts.image_config, parts.visual_state = image_config, visual
    parts.logit_scale = ckpt.logit_scale
    return parts


def _refuse_training_state(hparams: dict, path: Path) -> None:
    """Refuse a checkpoint ``satclip train`` saves to resume a run (its hyper-parameters are the run's config),
    given as a model: name the run's exports, or say it has none yet and how to get them."""
    config = hparams.get("config")
    if all(k in hparams for k in ("le_type", "pe_type", "embed_dim")) or not isinstance(config, dict) \
            or "model" not in config:  # fmt: skip
        return
    folder = path.resolve().parent
    run = folder.parent if folder.name == "checkpoints" else None
    unexported = native.run_without_exports(run) if run is not None else None
    raise BadInputError(
        f"{path}: this is a checkpoint satclip train saves to resume a run (RUN/checkpoints/), not a model: "
        + (unexported or "give the run's export instead, RUN/export/best or RUN/export/last (or the .ckpt beside them)")
    )


def _naming(path: str | Path, build, *args):
    """``build(*args)`` (a config from hyper-parameters); a value it cannot take is a :class:`BadInputError`
    that names the file."""
    try:
        return build(*args)
    except (BadInputError, KeyError, TypeError, ValueError) as err:
        text = str(err).strip("'\"") if isinstance(err, KeyError) else str(err)
        raise BadInputError(f"{path}: {text}" if str(path) not in text else text) from err


def _json_ready(value):
    """Tuples become lists, keys strings, anything else not JSON its repr."""
    return json.loads(json.dumps(value, default=repr))


def original_basis(config: dict) -> str | None:
    """The ``harmonics_calculation`` a file for the original code states for a LocationEncoder config:
    the model's own where the original knows it; for ``"analytic-stable"``, ``"analytic"`` while the
    original's polynomials agree with it to < 1e-8 (``legendre_polys`` ≤ 20), else ``"closed-form"``
    (with the first layer rescaled, see :mod:`satclip.io.basis`). ``None`` for other encodings."""
    encoding = config["encoding"]
    if encoding["name"] != "sphericalharmonics":
        return None
    calculation = encoding.get("harmonics_calculation", basis.EXACT)
    if calculation == "closed-form" or not basis.is_exact(calculation):  # the original's own, or its polynomials
        return "closed-form" if calculation == "closed-form" else "analytic"
    return "analytic" if int(encoding.get("legendre_polys", 10)) <= basis.ANALYTIC_EXACT_BELOW else "closed-form"


def check_network(config: dict, location: dict[str, torch.Tensor] | None = None) -> None:
    """Raise :class:`BadInputError` unless the original code builds the network of location-encoder ``config``
    and computes with it what satclip does: a network it knows, and no ``mlp`` hidden layers that differ, since
    its ``MLP`` repeats one ``[Linear, ReLU]`` pair ``num_layers`` times by list multiplication (one shared
    layer, loaded with the last one's weights: the file would load without error and compute another function).
    ``location``: the weights, whose hidden layers may be equal (an original checkpoint's are); None (a model
    about to be trained, which trains them apart): any repeated layer is refused."""
    network = config["network"]
    if network["name"] not in ORIGINAL_NETWORK_PARAMS:
        raise BadInputError(
            f"network {network['name']!r} has no original SatCLIP equivalent (it knows "
            f"{', '.join(ORIGINAL_NETWORK_PARAMS)})"
        )
    layers = int(network.get("num_layers", 2)) if network["name"] == "mlp" else 0
    if layers < 2:
        return
    differ = location is None or any(
        not torch.equal(location[f"nnet.features.2.{name}"], location[f"nnet.features.{2 * (i + 1)}.{name}"])
        for name in ("weight", "bias") for i in range(1, layers)
    )  # fmt: skip
    if differ:
        which = "a trained model's would differ" if location is None else "and this model's differ"
        raise BadInputError(
            f"the original SatCLIP code builds an mlp's {layers} hidden layers as one shared layer, {which}: it "
            "would load without error and compute another function. Write it with --target native (satclip reads "
            "it), or use network.num_layers 1 for the original"
        )


def checkpoint_for_original(parts: ModelParts, *, epoch: int = 0, global_step: int = 0) -> dict:
    """A checkpoint dict in the released layout that the original code loads: only hyper-parameters its
    ``SatCLIPLightningModule.__init__`` takes (plus the three ``get_satclip`` pops), a basis it knows,
    ``vision_layers`` naming the image encoder in the file (``None`` when there is none), and satclip's
    exact description under :data:`SATCLIP_KEY`.

    Raises:
        BadInputError: the image encoder or a location-encoder setting has no original equivalent (the
            message says to write the location encoder alone).
    """
    config = parts.location_config
    location = dict(parts.location_state)
    check_network(config, location)
    exact: dict[str, torch.Tensor] = {}
    label = original_basis(config)
    if label is not None:
        own = config["encoding"].get("harmonics_calculation", basis.EXACT)
        if own != label:
            legendre = int(config["encoding"].get("legendre_polys", 10))
            rewritten = basis.columns_to(location, legendre, own, label)
            key = basis.first_layer(location)
            if not torch.equal(rewritten[key], location[key]):
                exact[key] = location[key]
            location = rewritten
        config = {**config, "encoding": {**config["encoding"], "harmonics_calculation": label}}
    base = dict(parts.metadata.get("hyper_parameters") or {})
    optim = (parts.metadata.get("train_config") or {}).get("optim") or {}
    base.update({k: optim[o] for k, o in (("learning_rate", "lr"), ("weight_decay", "weight_decay")) if o in optim})
    hparams = hparams_from_location_config(config, base)
    if parts.has_image_encoder:
        from ..image import hparams_from_config

        try:
            hparams.update(hparams_from_config(parts.image_config))
        except ValueError as err:
            raise BadInputError(
                f"{err}; write the location encoder alone with --location-only (location_only=True), or the "
                "whole model in satclip's own format with --target native"
            ) from err
    else:
        hparams["vision_layers"] = None  # no image encoder in the file
    from .. import __version__

    entry = {
        "format": native.FORMAT, "format_version": native.FORMAT_VERSION, **parts.native_config(),
        "location_tensors": exact, "written_basis": label, "satclip_version": __version__,
    }  # fmt: skip
    image = parts.has_image_encoder
    ckpt = _layout(
        hparams, location, visual_state=parts.visual_state if image else None,
        logit_scale=parts.logit_scale if image else None, epoch=epoch, global_step=global_step,
    )  # fmt: skip
    ckpt[SATCLIP_KEY] = _json_ready_entry(entry)
    return ckpt


def _json_ready_entry(entry: dict) -> dict:
    """``entry`` with its configs and metadata made plain (``torch.load(weights_only=True)`` reads them)."""
    tensors = {k: v.detach().clone() for k, v in entry["location_tensors"].items()}
    plain = _json_ready({k: v for k, v in entry.items() if k != "location_tensors"})
    return {**plain, "location_tensors": tensors}


def save_checkpoint(path: str | Path, ckpt: dict, *, overwrite: bool = False, inputs: Iterable = ()) -> Path:
    """``torch.save`` ``ckpt`` to ``path`` atomically (see :func:`satclip.safe_output.atomic_file`)."""
    path = Path(path)
    with atomic_file(path, overwrite=overwrite, inputs=inputs) as tmp:
        write_serialised(tmp, lambda buffer: torch.save(ckpt, buffer))
    return path


def _layout(
    hparams: dict,
    location_state: dict[str, torch.Tensor],
    *,
    visual_state: dict[str, torch.Tensor] | None = None,
    logit_scale: torch.Tensor | None = None,
    epoch: int = 0,
    global_step: int = 0,
) -> dict:
    """The released checkpoint layout (duplicated location keys, the extra hyper-parameters)."""
    state: dict[str, torch.Tensor] = {}
    if logit_scale is not None:
        state[LOGIT_SCALE_KEY] = torch.as_tensor(logit_scale).detach().clone()
    for key, value in (visual_state or {}).items():
        state[VISUAL_PREFIX + key] = value.detach().clone()
    for key, value in location_state.items():
        state[LOCATION_ALIAS_PREFIX + key] = value.detach().clone()
    for key in location_state:
        state[LOCATION_PREFIX + key] = state[LOCATION_ALIAS_PREFIX + key]  # shared, as in the original
    return {
        "epoch": epoch,
        "global_step": global_step,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": state,
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {**hparams, **{k: v for k, v in RELEASED_EXTRA_HPARAMS.items() if k not in hparams}},
    }


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
    """Write ``hparams`` and weights as they are in the released layout (no ``"satclip"`` entry, no basis
    rewriting: :func:`checkpoint_for_original` makes a file for the original code from a model).

    Written atomically; an existing file is replaced only with ``overwrite=True``, a directory never, and
    ``path`` may not be one of ``inputs``.

    Raises:
        OutputExistsError: ``path`` exists and may not be replaced.
    """
    ckpt = _layout(
        hparams, location_state, visual_state=visual_state, logit_scale=logit_scale, epoch=epoch,
        global_step=global_step,
    )  # fmt: skip
    return save_checkpoint(path, ckpt, overwrite=overwrite, inputs=inputs)
