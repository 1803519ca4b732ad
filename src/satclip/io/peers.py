"""Files other SatCLIP readers load: torchgeo ≥ 0.10 and rshf (the original code and rangegeo read the
original ``.ckpt``, :mod:`satclip.io.original`).

* ``torchgeo`` — ``torchgeo.models.satclip.SatCLIP(legendre_polys, capacity, embed_dim,
  num_hidden_layers)`` computes the exact basis (satclip's ``"analytic-stable"``) with latitudes clamped
  to ±:data:`TORCHGEO_LAT_CLAMP`; its ``load_state_dict(strict=True)`` takes ``nnet.*`` keys. We write
  that state dict with ``torch.save`` (``torch.load(path, weights_only=True)`` reads it).
* ``rshf`` — ``rshf.satclip.SatClip.from_pretrained(directory, strict=True)`` builds a fixed
  architecture (L = 40 ``"analytic"`` harmonics, SIREN 1600 → 512 → 512 → 256) and reads
  ``model.safetensors`` with ``location.nnet.*`` keys. A model with fewer degrees is written with its
  first layer's missing input columns set to zero, which computes the same function. The directory's
  ``config.json`` is satclip's native config (rshf ignores it), so satclip reads the directory back. A directory
  rshf's own ``save_pretrained`` wrote (no ``config.json``) is read as that fixed architecture, its shapes checked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from ..errors import BadInputError
from ..safe_output import atomic_file, write_serialised
from . import basis, native
from .checks import check_weights
from .parts import ModelParts, pack, unpack

log = logging.getLogger(__name__)

TORCHGEO_LAT_CLAMP = 89.95
#: rshf's fixed architecture
RSHF_LEGENDRE_POLYS = 40
RSHF_NETWORK = {"name": "siren", "num_classes": 256, "dim_hidden": 512, "num_layers": 2}
#: the tensors of rshf's SatClip (its model.safetensors), name → shape: SIREN 1600 → 512 → 512 → 256
RSHF_SHAPES = {
    "location.nnet.layers.0.weight": (512, RSHF_LEGENDRE_POLYS**2), "location.nnet.layers.0.bias": (512,),
    "location.nnet.layers.1.weight": (512, 512), "location.nnet.layers.1.bias": (512,),
    "location.nnet.last_layer.weight": (256, 512), "location.nnet.last_layer.bias": (256,),
}  # fmt: skip
#: key of native configs whose first layer was zero-padded to rshf's width: {"input_columns": n}
PADDING_KEY = "rshf_padding"


def check_target(config: dict, target: str) -> tuple[int, str]:
    """``(legendre_polys, harmonics_calculation)`` of a LocationEncoder ``config`` that ``target``
    (``"torchgeo"`` or ``"rshf"``) can read; else an error saying why and what would work."""
    encoding, network = config["encoding"], config["network"]
    if encoding["name"] != "sphericalharmonics" or network["name"] != "siren":
        raise BadInputError(
            f"{target} reads spherical-harmonics SIREN location encoders only; this model is "
            f"{encoding['name']!r} + {network['name']!r} (write it for the original code: --target original)"
        )
    legendre = int(encoding.get("legendre_polys", 10))
    if target == "rshf":
        network = {"dim_hidden": 256, "num_layers": 2, **network}
        if network != RSHF_NETWORK or legendre > RSHF_LEGENDRE_POLYS:
            raise BadInputError(
                f"rshf's SatClip is fixed at L ≤ {RSHF_LEGENDRE_POLYS} (fewer degrees are zero-padded) and the "
                f"network {RSHF_NETWORK}; this model has L = {legendre} and {config['network']} (write it for "
                "torchgeo or the original code instead: --target torchgeo|original)"
            )
    return legendre, encoding.get("harmonics_calculation", basis.EXACT)


def torchgeo_state_dict(parts: ModelParts) -> dict[str, torch.Tensor]:
    """The state dict torchgeo's ``SatCLIP`` loads strictly, in the exact basis it computes."""
    legendre, own = check_target(parts.location_config, "torchgeo")
    return basis.columns_to(parts.location_state, legendre, own, basis.EXACT)


def torchgeo_arguments(parts: ModelParts) -> dict[str, int]:
    """What to pass to ``torchgeo.models.satclip.SatCLIP(...)`` for this model."""
    legendre, _ = check_target(parts.location_config, "torchgeo")
    network = parts.location_config["network"]
    return {
        "legendre_polys": legendre, "capacity": int(network.get("dim_hidden", 256)),
        "embed_dim": int(network["num_classes"]), "num_hidden_layers": int(network.get("num_layers", 2)),
    }  # fmt: skip


def write_torchgeo(path: str | Path, parts: ModelParts, *, overwrite: bool = False, inputs: Iterable = ()) -> Path:
    """``torch.save`` :func:`torchgeo_state_dict` to ``path`` atomically."""
    state = {k: v.detach().clone() for k, v in torchgeo_state_dict(parts).items()}
    path = Path(path)
    with atomic_file(path, overwrite=overwrite, inputs=inputs) as tmp:
        write_serialised(tmp, lambda buffer: torch.save(state, buffer))
    return path


def is_torchgeo_state_dict(obj: object) -> bool:
    """Whether an unpickled file is a bare location state dict (``nnet.*`` tensors only)."""
    return (
        isinstance(obj, dict) and bool(obj)
        and all(isinstance(k, str) and k.startswith("nnet.") and torch.is_tensor(v) for k, v in obj.items())
    )  # fmt: skip


def parts_from_torchgeo(state: dict[str, torch.Tensor], path: str | Path, basis_given: bool = False) -> ModelParts:
    """The model of a torchgeo state dict: the exact basis, sizes read from the weights. Where another model may
    hold such tensors, a warning says what it is read as and how to load it otherwise (``basis_given``: the
    caller computes a basis of its choice, so none about the basis)."""
    from ..networks import sizes_from_shapes

    check_weights(state, path)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    try:
        sizes = sizes_from_shapes("siren", shapes, prefix="nnet.")
    except BadInputError as err:
        raise BadInputError(f"{path} is not a torchgeo SatCLIP state dict: {err}") from err
    width = sizes["input_dim"][0]
    legendre = math.isqrt(width)
    if legendre * legendre != width:
        raise BadInputError(f"{path}: the first layer takes {width} features, not a square number (L²)")
    config = {
        "encoding": {"name": "sphericalharmonics", "legendre_polys": legendre, "harmonics_calculation": basis.EXACT},
        "network": {"name": "siren", **{k: sizes[k][0] for k in ("num_classes", "dim_hidden", "num_layers")}},
    }
    _say_what_it_is_read_as(path, legendre, basis_given)
    return ModelParts(config, dict(state), provenance={"source": str(path), "format": "torchgeo"})


def _say_what_it_is_read_as(path: str | Path, legendre: int, basis_given: bool) -> None:
    """Log what a bare state dict is taken for where that may be wrong: at L > 20 a state dict of the original
    code's or rangegeo's encoder (the original's float64 'analytic' polynomials, 4.7e-2 off the exact basis above
    60° at L = 40), unless the caller chose the basis (``basis_given``); and a width that another encoding gives
    at its defaults (a ``wrap`` SIREN's 4 inputs read as L = 2)."""
    from ..encoding import create, names

    read_as = (f"{path} holds no config (a bare nnet.* state dict): read as torchgeo's, spherical harmonics "
               f"L = {legendre} on the exact basis (harmonics_calculation='analytic-stable')")  # fmt: skip
    if legendre > basis.ANALYTIC_EXACT_BELOW and not basis_given:
        log.warning("%s; one saved from the original code or rangegeo (their 'analytic' polynomials differ from it "
                    "near the poles at L > %d) loads as it was with satclip.load(path, "
                    "harmonics_calculation='analytic-original') (--harmonics analytic-original on the command line)",
                    read_as, basis.ANALYTIC_EXACT_BELOW)  # fmt: skip
    width = legendre * legendre
    others = [name for name in names() if name != "sphericalharmonics" and create(name).embedding_dim == width]
    if others:
        log.warning("%s; %s also gives %d features at its defaults: a state dict of such a model loads with "
                    "satclip.LocationEncoder.from_weights(config, torch.load(path, weights_only=True)), config "
                    "naming its encoding and network", read_as, " and ".join(others), width)  # fmt: skip


def is_rshf_save(path: str | Path) -> bool:
    """Whether ``path`` is a directory rshf's ``SatClip().save_pretrained`` wrote: ``model.safetensors`` holding
    its fixed architecture's tensors (:data:`RSHF_SHAPES`, read from the header) and no ``config.json``; never one
    satclip wrote (its marker: a native model that lost its config, whose basis rshf's is not, is refused as such)."""
    from ..safe_output import MARKER

    path = Path(path)
    weights = path / native.WEIGHTS_FILE
    return (path.is_dir() and not (path / native.CONFIG_FILE).exists() and not (path / MARKER).exists()
            and weights.is_file() and native.in_rshf_layout(weights))  # fmt: skip


def parts_from_rshf(path: str | Path) -> ModelParts:
    """The model of a directory :func:`is_rshf_save` accepts: rshf's fixed architecture, on the original's
    'analytic' polynomials evaluated as rshf (and the original code) evaluate them, ``"analytic-original"``
    (the same embeddings as rshf's own forward, float64)."""
    file = Path(path) / native.WEIGHTS_FILE
    try:
        tensors = safetensors.torch.load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise BadInputError(f"{file} is not a readable safetensors file: {err}") from err
    check_weights(tensors, file)
    config = {
        "encoding": {"name": "sphericalharmonics", "legendre_polys": RSHF_LEGENDRE_POLYS,
                     "harmonics_calculation": "analytic-original"},
        "network": dict(RSHF_NETWORK),
    }  # fmt: skip
    state, _, _ = unpack(tensors)  # (rshf's keys are the native layout's location.*)
    return ModelParts(config, state, provenance={"source": str(path), "format": "rshf"})


def rshf_parts(parts: ModelParts) -> tuple[ModelParts, int]:
    """The location encoder in rshf's architecture: ``(parts to write, input columns of the model)``.

    Raises:
        BadInputError: the network is not rshf's, or the model has more than 40 degrees.
    """
    legendre, own = check_target(parts.location_config, "rshf")
    # rshf evaluates the original's analytic polynomials: the same function as the exact basis up to their
    # rounding error, so only closed-form weights need rescaling
    state = basis.columns_to(parts.location_state, legendre, own, "analytic")
    stored = basis.EXACT if own == "closed-form" else own
    weight = state[basis.FIRST_LAYER]
    padded = weight.new_zeros(weight.shape[0], RSHF_LEGENDRE_POLYS**2)
    padded[:, : weight.shape[1]] = weight
    state[basis.FIRST_LAYER] = padded
    config = basis.with_harmonics(parts.location_config, stored)
    out = ModelParts(config, state, metadata=dict(parts.metadata), provenance=dict(parts.provenance))
    return out, legendre**2


def write_rshf(path: str | Path, parts: ModelParts, *, overwrite: bool = False, inputs: Iterable = ()) -> Path:
    """A directory ``rshf.satclip.SatClip.from_pretrained(path, strict=True)`` loads (and satclip too)."""
    padded, columns = rshf_parts(parts)
    config = {**padded.location_only().native_config(), PADDING_KEY: {"input_columns": columns}}
    return native.write_native(path, config, pack(padded.location_only()), overwrite=overwrite, inputs=inputs)


def unpad(config: dict, location_state: dict[str, torch.Tensor], source: object) -> dict[str, torch.Tensor]:
    """The location state dict of a native directory written by :func:`write_rshf`, without the padding.

    Raises:
        BadInputError: the padded columns are not all zero (the file was changed).
    """
    padding = config.get(PADDING_KEY)
    if not padding:
        return location_state
    columns = int(padding["input_columns"])
    weight = location_state[basis.FIRST_LAYER]
    if bool(weight[:, columns:].any()):
        raise BadInputError(
            f"{source}: the first layer's columns from {columns} on must be zero (rshf padding), but are not"
        )
    return {**location_state, basis.FIRST_LAYER: weight[:, :columns].contiguous()}
