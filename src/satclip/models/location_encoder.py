"""``LocationEncoder``: positional encoding followed by a network."""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .. import encoding as _encoding
from .. import networks as _nn
from ..encoding.points import as_lonlat, check_in_range, check_pairs, warn_if_radians
from ..errors import BadInputError, check_flags, warn_caller
from ..networks.registry import WEIGHTS_FIX

CPU_BATCH, LARGE_BATCH = 4096, 65536
#: encoding parameters that set its output width (which is at least their value)
ENCODING_SIZE_PARAMS = ("legendre_polys", "frequency_num")


def _implied(key: str, width: int) -> str:
    """``"; the weights imply legendre_polys: 10"`` where the first layer's ``width`` features are the L² that
    spherical harmonics of L Legendre polynomials give (a square), else nothing (the weights imply no L)."""
    degree = math.isqrt(width)
    return f"; the weights imply {key}: {degree}" if key == "legendre_polys" and degree * degree == width else ""


def _part(config: Mapping, key: str, registry, source: str) -> tuple[str, dict]:
    part = config.get(key) if isinstance(config, Mapping) else None
    if not isinstance(part, Mapping) or not isinstance(part.get("name"), str):
        raise BadInputError(f"{source}: location_encoder.{key} must be an object with a 'name', got {part!r}")
    params = {k: v for k, v in part.items() if k != "name"}
    name = part["name"]
    if name not in registry:
        raise BadInputError(f"{source}: unknown {registry.kind} {name!r}; known: {', '.join(registry.names())}")
    unknown = sorted(set(params) - registry.accepted(name))
    if unknown:
        raise BadInputError(
            f"{source}: {registry.kind} {name!r} got unexpected parameter(s) {unknown}; it accepts "
            f"{sorted(registry.accepted(name))}"
        )
    return name, params


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_parts(config: Mapping, source: str = "the model") -> None:
    """Refuse a :class:`LocationEncoder` config whose encoding or network is not ``{"name": …, **params}`` of a
    known name and its parameters, or whose encoding width (:data:`ENCODING_SIZE_PARAMS`) is no integer ≥ 1
    (``legendre_polys: true`` trained at L = 1, and 10.0 was written so: either model could not be loaded),
    before anything is built or trained."""
    name, params = _part(config, "encoding", _encoding.ENCODINGS, source)
    _part(config, "network", _nn.NETWORKS, source)
    for key in ENCODING_SIZE_PARAMS:
        if key in params and not (_is_int(params[key]) and params[key] >= 1):
            raise BadInputError(f"{source}: location_encoder.encoding.{key}={params[key]!r} must be an integer, 1 or "
                                "more")  # fmt: skip
    if name == "sphericalharmonics" and "harmonics_calculation" in params:
        from ..encoding.spherical_harmonics import CALCULATIONS

        if params["harmonics_calculation"] not in CALCULATIONS:
            raise BadInputError(f"{source}: location_encoder.encoding.harmonics_calculation="
                                f"{params['harmonics_calculation']!r} is not one of {list(CALCULATIONS)}")  # fmt: skip


def check_config(config: Mapping, shapes: Mapping[str, tuple[int, ...]], source: str = "the model") -> None:
    """Refuse a :class:`LocationEncoder` config that does not fit its weights, before anything is built.

    Args:
        config: ``{"encoding": {"name": …}, "network": {"name": …}}`` as in ``config.json``.
        shapes: state-dict key (``nnet.…``) → shape of the weights, as read from a safetensors header or a
            checkpoint without building a module.
        source: names the file in messages.

    Every size the config sets (the network's depth and widths, the encoding's output width) is compared
    with the weights, so a config that asks for a network far larger than its file fails here at once
    instead of allocating that network first.

    Raises:
        BadInputError: naming the config key, its value and what the weights hold.
    """
    enc_name, enc_params = _part(config, "encoding", _encoding.ENCODINGS, source)
    net_name, net_params = _part(config, "network", _nn.NETWORKS, source)
    defaults = {
        k: p.default
        for k, p in inspect.signature(_nn.NETWORKS.get(net_name)).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    sizes = _nn.sizes_from_shapes(net_name, shapes, prefix="nnet.")
    for key, (found, evidence) in sizes.items():
        if key == "input_dim":
            continue
        value = net_params.get(key, defaults.get(key))
        if not _is_int(value) or value != found:
            given = f"{value!r}" if key in net_params else f"not set (default {value!r})"
            raise BadInputError(
                f"{source}: location_encoder.network.{key} is {given} in the config, but the weights have "
                f"{found} ({evidence})"
            )
    width, evidence = sizes["input_dim"]
    for key in ENCODING_SIZE_PARAMS:
        value = enc_params.get(key)
        if key in enc_params and (not _is_int(value) or not 1 <= value <= width):
            raise BadInputError(
                f"{source}: location_encoder.encoding.{key} is {value!r} in the config, but the network's first "
                f"layer takes {width} features ({evidence}), so it must be an integer from 1 to {width}"
                f"{_implied(key, width)}"
            )
    try:  # its size parameters are bounded by the weights now: building it is cheap
        posenc = _encoding.create(enc_name, **enc_params)
    except (TypeError, ValueError) as err:
        raise BadInputError(f"{source}: location_encoder.encoding is invalid: {err}") from err
    if posenc.embedding_dim != width:
        raise BadInputError(
            f"{source}: location_encoder.encoding {dict(config['encoding'])} gives {posenc.embedding_dim} "
            f"features, but the weights' first layer takes {width} ({evidence})"
            f"{''.join(_implied(key, width) for key in ENCODING_SIZE_PARAMS if key in enc_params)}"
        )
    with torch.device("meta"):  # every tensor the network holds, by name and shape (no memory: sizes are bounded)
        needed = {f"nnet.{k}": tuple(v.shape) for k, v in _nn.create(net_name, input_dim=width, **net_params)
                  .state_dict().items()}  # fmt: skip
    given = {k: tuple(v) for k, v in shapes.items() if k.startswith("nnet.")}
    missing, extra = sorted(set(needed) - set(given)), sorted(set(given) - set(needed))
    wrong = [f"{k} {given[k]} (expected {needed[k]})" for k in sorted(set(needed) & set(given))
             if given[k] != needed[k]]  # fmt: skip
    for said, names in (("lack {}", missing), ("hold {}, which the network has not", extra), ("have {}", wrong)):
        if names:
            listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise BadInputError(f"{source}: the weights {said.format(listed)}; {WEIGHTS_FIX}")


class LocationEncoder(nn.Module):
    """Maps ``(N, 2)`` (lon, lat) degrees to ``(N, embed_dim)`` embeddings.

    ``posenc`` and ``nnet`` are the attribute names of the original SatCLIP, so state dicts line up
    (``nnet.layers.0.weight`` …). ``config`` records how the encoder was built; it is what the native
    format stores in ``config.json``.
    """

    def __init__(self, posenc: nn.Module, nnet: nn.Module, config: dict | None = None):
        super().__init__()
        self.posenc = posenc
        self.nnet = nnet
        self.config = dict(config or {})

    @classmethod
    def from_config(cls, config: dict, *, initialise: bool = True) -> LocationEncoder:
        """Build from ``{"encoding": {"name": …, **params}, "network": {"name": …, **params}}``.

        ``initialise=False`` leaves the network's weights undrawn (built on torch's meta device, then given
        uninitialised memory on the default device), for weights loaded next: torch's random state (CPU and
        CUDA) is left as it was, and no time goes into a random initialisation."""
        enc_cfg = dict(config["encoding"])
        net_cfg = dict(config["network"])
        posenc = _encoding.create(enc_cfg.pop("name"), **enc_cfg)
        if initialise:
            nnet = _nn.create(net_cfg.pop("name"), input_dim=posenc.embedding_dim, **net_cfg)
        else:
            with torch.device("meta"):
                nnet = _nn.create(net_cfg.pop("name"), input_dim=posenc.embedding_dim, **net_cfg)
            nnet = nnet.to_empty(device=torch.get_default_device())
        return cls(posenc, nnet, config)

    @classmethod
    def from_weights(cls, config: dict, state_dict: Mapping[str, torch.Tensor], source: str = "the model"):
        """Build from ``config`` and load ``state_dict`` (strictly), after :func:`check_config` has
        compared the config with the weights' shapes.

        The weights are not drawn at random first: loading leaves torch's random state as it was.

        Raises:
            BadInputError: the config does not fit the weights (nothing is built then).
        """
        check_config(config, {k: tuple(v.shape) for k, v in state_dict.items()}, source)
        encoder = cls.from_config(config, initialise=False)
        try:
            encoder.load_state_dict(dict(state_dict))
        except RuntimeError as err:
            raise BadInputError(f"{source}: the location weights do not match the config: {err}") from err
        return encoder

    def save(self, path, metadata: dict | None = None, *, target: str | None = None, overwrite: bool = False):
        """Write this location encoder (its weights as they are now: fine-tuned ones too) for ``target``
        (``"native"``: ``config.json`` + ``model.safetensors``; ``"original"``, ``"torchgeo"``, ``"rshf"``: see
        :func:`satclip.io.convert.convert`; None: the one ``path``'s suffix names, ``.ckpt`` original, ``.pt``
        torchgeo, else native) atomically; it loads back with :func:`satclip.load`
        and gives the same embeddings. ``torch.save(encoder.state_dict())`` does not: the file holds no config,
        and is read as a torchgeo one on the exact basis (0.047 off a released L = 40 model near the poles). A
        retrieval encoder is refused: save its ``location_encoder()`` (its database is built from a cache: ``satclip
        retrieval build``).

        An existing ``path`` is replaced only with ``overwrite=True``: a file, or a directory satclip wrote (one
        holding other files never is; see :mod:`satclip.safe_output`), and never the file or directory this
        encoder was loaded from. Returns the :class:`~satclip.io.targets.Written` file."""
        from ..io.parts import ModelParts
        from ..io.resolve import encoder_files
        from ..io.targets import target_of, write

        if not isinstance(path, (str, os.PathLike)):  # (None: pathlib's "expected str, bytes or os.PathLike object")
            raise BadInputError(f"path must be where to write the model, a str or os.PathLike, got {path!r}")
        config = {key: copy.deepcopy(self.config[key]) for key in ("encoding", "network")}
        state = {k: v.detach().cpu() for k, v in LocationEncoder.state_dict(self).items()}
        parts = ModelParts(config, state, metadata=dict(metadata or {}))
        return write(parts, path, target or target_of(path), overwrite=overwrite, inputs=encoder_files(self))

    def extra_repr(self) -> str:  # (what it embeds into, in what precision, from where: the repr said none of it)
        source = getattr(self, "provenance", {}).get("source")
        try:
            precision = repr(self.precision)
        except BadInputError:  # (16-bit weights: named, not computed with)
            precision = f"None ({str(self.dtype).removeprefix('torch.')} weights)"
        return f"embedding_dim={self.embedding_dim}, precision={precision}" + (
            f", source={os.path.basename(str(source).rstrip('/')) or source!r}" if source else "")  # fmt: skip

    @property
    def precision(self) -> str:
        """The precision :meth:`encode` runs in by default: the one :func:`satclip.load` chose (or was given) while
        the weights are still in its dtype, else the weights' dtype's (after ``.double()`` the name said
        "float32" while ``encode`` gave float64)."""
        from . import precision as _precision

        return _precision.for_encoder(self)

    @precision.setter
    def precision(self, value: str | torch.dtype) -> None:
        """Switch precision as ``satclip.load(..., precision=value)`` would load it: the weights converted to the
        dtype it runs in, ``"auto"`` calibrated, a name it does not know refused (it was stored as given: a
        different one came back, ``"fast"`` failed every later call).

        Not while another thread embeds with this encoder: the switch converts its weights in place, under that call
        (which fails, "mat1 and mat2 must have the same dtype", or mixes precisions). Switch before sharing the
        encoder, or give each call its own: ``encode(points, precision=…)`` and ``satclip.embed(…, precision=…)``
        leave the encoder as it is and are safe from several threads at once."""
        from . import precision as _precision

        _precision.configure(self, value)

    @property
    def embedding_dim(self) -> int:
        return self.location_dim

    @property
    def location_dim(self) -> int:
        """The width of the location network's output (of :attr:`embedding_dim`, less what a subclass adds)."""
        return int(self.config["network"]["num_classes"])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def feature_dtype(self) -> torch.dtype:
        """The dtype coordinates are given to the positional encoding in by :meth:`encode`: float64 for
        float64 models and for encodings that only work in float64 (``"analytic-original"`` harmonics), else the
        network's dtype."""
        if self.dtype == torch.float64 or getattr(self.posenc, "needs_float64", False):
            return torch.float64
        return self.dtype

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` without silent loss of precision.

        ``from_config`` builds the module in torch's default float32, and a plain ``load_state_dict``
        copies a float64 checkpoint (the released models' location weights are float64) into those
        float32 parameters, rounding every weight; a later ``.to(torch.float64)`` cannot undo that
        (embeddings then differ from the original by ~5e-8 relative). So when ``state_dict`` holds
        floating-point tensors wider than this module's dtype, the module is first converted to that
        dtype. Convert afterwards with ``.to(dtype=…)`` for the precision you want to run in.
        """
        widest = max(
            (v.dtype for v in state_dict.values() if torch.is_tensor(v) and v.is_floating_point()),
            key=lambda d: torch.finfo(d).bits,
            default=None,
        )
        if widest is not None and torch.finfo(widest).bits > torch.finfo(self.dtype).bits:
            self.to(dtype=widest)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        """Embed ``(N, 2)`` (lon, lat) degrees, the path for gradients (:meth:`encode` is inference). Features are
        computed in the input's dtype and cast to the network's, which runs in its weights' dtype: not in the
        encoder's ``precision`` (bf16, where "auto" chose it, differs from float32 by bf16's rounding, up to
        ~0.04–0.06 at an entry). Another shape is refused, and in eval mode points out of range, as :meth:`encode`
        refuses them (training checks its data instead)."""
        if not isinstance(lonlat, torch.Tensor):  # ("'numpy.ndarray' object has no attribute 'is_floating_point'")
            raise BadInputError(
                f"{type(self).__name__}(lonlat) takes a torch tensor (N, 2) of lon, lat degrees (the path for "
                f"gradients), not a {type(lonlat).__name__}: pass torch.as_tensor(points), or use .encode(points), "
                "which takes arrays and lists"
            )
        check_pairs(lonlat)  # ((N, 3) embedded its first two columns silently; (2,) failed deep in the encoding)
        if not self.training:  # (lat 95 embedded garbage silently; a training step's points are checked by its data)
            check_in_range(lonlat.detach())
        return self.nnet(self.posenc(lonlat).to(self.dtype))

    @property
    def default_batch_size(self) -> int:
        """Points per forward pass when none is given. 4096 on the CPU: the SIREN's 4096 × 512
        activations stay in cache, ≈1.2–1.5× faster than 65536 (benchmarks/embed.py). 65536 on other
        devices, and for the sympy-expression ``"analytic-original"`` basis, which pays a per-call cost for
        each of its L² expressions."""
        on_cpu = next(self.parameters()).device.type == "cpu"
        return CPU_BATCH if on_cpu and not getattr(self.posenc, "needs_float64", False) else LARGE_BATCH

    def batch_size(self, batch_size: int | None) -> int:
        """``batch_size`` checked (:func:`check_batch_size`), or :attr:`default_batch_size` for None."""
        check_batch_size(batch_size)
        return batch_size or self.default_batch_size

    @torch.no_grad()
    def encode(
        self, points, batch_size: int | None = None, precision: str | None = None, *, warn_radians: bool = True
    ) -> torch.Tensor:
        """Validate and embed points (array-like ``(N, 2)`` of lon, lat degrees), at most ``batch_size`` at a
        time, in ``precision`` (``"float32" | "bf16" | "float64" | "auto"``; default: what
        :func:`satclip.load` chose, else the weights' dtype). See :mod:`satclip.models.precision` and
        :func:`satclip.models.fused.encode_points` (the basis fused with the first layer). Points that all lie
        within ±π of longitude and ±π/2 of latitude, as radians do, are embedded with a warning, unless
        ``warn_radians=False`` (an area off West Africa is meant; satclip.embed and ``satclip embed`` say it once).

        Returns an ``(N, embedding_dim)`` tensor on the model's device: float64 for ``"float64"``, else
        float32. Embeddings are those of the trained function (eval mode: no dropout) even while the module
        is in training mode, which is left as it is. No gradients: for gradients with respect to the points
        or the weights, call the module itself (``encoder(lonlat)``, a float tensor of valid (lon, lat)).
        """
        from . import fused
        from . import precision as _precision

        check_batch_size(batch_size)
        check_flags(warn_radians=warn_radians)  # ("no" is true: it warned)
        if isinstance(points, torch.Tensor) and points.requires_grad:  # (the result had none, without a word)
            warn_caller("encode and satclip.embed compute no gradients (their result does not require grad): call "
                        "the encoder itself, encoder(lonlat), for gradients with respect to the points or the weights")
        lonlat = as_lonlat(points, dtype=torch.float64, device=weights_device(self))
        if warn_radians:
            warn_if_radians(lonlat)
        return fused.encode_points(in_eval_mode(self), lonlat, _precision.for_encoder(self, precision), batch_size)


def in_eval_mode(module: nn.Module) -> nn.Module:
    """``module`` itself in eval mode, or, where any part of it is in training mode, a view of it in eval mode:
    the same parameters, buffers and attributes in modules of their own, so that the caller's modes are never
    switched (a fine-tuning loop that embeds points in between keeps its dropout, also while other threads
    embed with the same module)."""
    if not any(m.training for m in module.modules()):
        return module

    def view(part: nn.Module) -> nn.Module:
        clone = copy.copy(part)
        clone.__dict__["_modules"] = {name: None if child is None else view(child)
                                      for name, child in part._modules.items()}  # fmt: skip
        clone.__dict__["_parameters"] = dict(part._parameters)
        clone.__dict__["_buffers"] = dict(part._buffers)
        clone.training = False
        return clone

    return view(module)


def weights_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s weights; :class:`BadInputError` for ``"meta"``, where there are none to compute
    with (it failed as "Tensor.item() cannot be called on meta tensors" deep in the point checks)."""
    device = next(module.parameters()).device
    if device.type == "meta":
        raise BadInputError(
            "the encoder's weights are on the 'meta' device, which holds no values: load the model again, or give "
            "it weights with .to_empty(device='cpu') and load_state_dict(...)"
        )
    return device


def check_batch_size(batch_size) -> None:
    """Raise :class:`BadInputError` unless ``batch_size`` is None (the model's default) or an integer ≥ 1."""
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise BadInputError(
            f"batch_size must be a whole number of points >= 1, or None for the model's default; got {batch_size!r}"
        )


def model_identity(encoder) -> dict:
    """What determines the embeddings: the config, the dtype, the precision it runs in (resolved: never
    "auto"), a sha256 of the weights and, for an encoder with retrieval, its options and database
    (``retrieval``, from the encoder's ``retrieval_identity()``)."""
    from . import precision as _precision

    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    dtype = str(encoder.dtype).removeprefix("torch.")
    precision = _precision.for_encoder(encoder)
    identity = {"config": encoder.config, "dtype": dtype, "precision": precision, "sha256": digest.hexdigest()}
    retrieval = getattr(encoder, "retrieval_identity", None)
    if retrieval is not None:
        identity["retrieval"] = retrieval()
    return identity


def model_record(encoder, source=None, identity: dict | None = None) -> dict:
    """How an output records the model that made it, the same in every output that records one: ``source`` (the
    name or path it was loaded from, ``source`` where given, else the encoder's provenance: a name or hub id as it
    is, a local path made absolute (:func:`absolute_if_local`), since every run's export is called ``export/last``),
    ``sha256`` (of the weights, :func:`model_identity`'s: the one embed, map and export outputs record, which
    matches them up) and the ``precision`` it computes in. ``identity``: the encoder's :func:`model_identity`,
    where already computed."""
    identity = identity if identity is not None else model_identity(encoder)
    if source is None:
        source = (getattr(encoder, "provenance", None) or {}).get("source")
    return {"source": absolute_if_local(source), "sha256": identity["sha256"], "precision": identity["precision"]}


def absolute_if_local(source) -> str | None:
    """A model's name as given (``bluemarble-l10``, ``hf://…``; a shipped model's directory by its name), or its
    local path made absolute."""
    from ..pretrained import shipped_model_name

    if source is None:
        return None
    text = str(shipped_model_name(source))
    return str(Path(text).absolute()) if Path(text).exists() else text


def model_token(identity: dict) -> str:
    """A short hash of a :func:`model_identity`: equal for encoders that give the same embeddings, different
    when anything that changes them differs (weights, basis, dtype, precision, retrieval). Names the encoder
    in Dask graphs, where two encoders under one name would be merged into one."""
    import json

    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
