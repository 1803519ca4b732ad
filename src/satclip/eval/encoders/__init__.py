"""Location encoders under test, by name: ``(N, 2)`` (lon, lat) degrees → ``(N, D)`` float32 features.

A spec is a name with optional parameters in parentheses, e.g. ``sh-l10``, ``wrap``,
``theory(min_radius=1,max_radius=360,frequency_num=16)``, ``untrained-satclip(legendre_polys=40,seed=1)``,
``geoclip``, ``satclip-resnet18-l10`` or a path. It is resolved in this order:

1. the names in :data:`ENCODERS` (``geoclip``, ``untrained-satclip``, and the :data:`ALIASES` ``sh-l10``,
   ``sh-l40``, ``untrained-satclip-l10``, ``untrained-satclip-l40``);
2. any positional encoding registered in :mod:`satclip.encoding` (raw features, no network); the multi-scale
   ones (``theory``, ``grid``, ``spherec`` …) at :data:`RELEASED_SCALES` unless the spec sets them;
3. ``MODEL+range`` / ``MODEL+range+(beta=…)``: MODEL with retrieval (:mod:`.retrieval`);
4. anything :func:`satclip.load` accepts (a model directory, a ``.ckpt``, a known model name, a hub id).
"""

from __future__ import annotations

import ast
import inspect
import logging
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ... import encoding as _encoding
from ...encoding.multiscale import SPHERE_VARIANTS
from ...errors import BadInputError, UnknownNameError
from ...paths import user_path
from ...registry import Registry, check_parameters, did_you_mean, empty_item
from ..cache import digest

log = logging.getLogger(__name__)

#: the released SatCLIP location-network hyper-parameters (capacity 512, 2 SIREN layers, 256-d output)
SATCLIP_NETWORK = {"name": "siren", "num_classes": 256, "dim_hidden": 512, "num_layers": 2}

#: fixed points whose embeddings fingerprint an encoder (so a changed implementation misses the cache)
_FINGERPRINT_POINTS = np.array(
    [[-180.0, -60.0], [-122.4, 37.8], [-47.9, -15.8], [0.0, 0.0], [2.35, 48.85], [13.4, 52.5],
     [37.6, 55.8], [77.2, 28.6], [116.4, 39.9], [151.2, -33.9], [179.9, 71.0], [-70.0, -55.0]]
)  # fmt: skip


@dataclass
class Encoder:
    """A frozen location encoder under test.

    name: the spec it was built from (used in reports). module: ``(N, 2)`` float lon/lat degrees →
    ``(N, D)``. input_dtype: the dtype points are given to ``module`` in. description: provenance.
    """

    name: str
    module: nn.Module
    description: str
    input_dtype: torch.dtype = torch.float64
    batch_size: int = 16384

    @torch.no_grad()
    def embed(self, points: np.ndarray) -> np.ndarray:
        """``(N, 2)`` float64 (lon, lat) degrees → ``(N, D)`` float32 numpy features. A loaded
        :class:`~satclip.LocationEncoder` runs through its ``encode`` (in the precision it was loaded with)."""
        points = np.ascontiguousarray(points, dtype=np.float64)
        if hasattr(self.module, "precision_choice"):  # from satclip.load: a precision was chosen for it
            embeddings = self.module.encode(points, batch_size=self.batch_size, warn_radians=False)  # (a task's points)
            return embeddings.to(torch.float32).cpu().numpy()
        parts = []
        for start in range(0, len(points), self.batch_size):
            chunk = torch.from_numpy(points[start : start + self.batch_size]).to(self.input_dtype)
            parts.append(self.module(chunk).to(torch.float32).cpu().numpy())
        if not parts:
            return np.empty((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate(parts)

    @cached_property
    def embedding_dim(self) -> int:
        with torch.no_grad():
            probe = torch.from_numpy(_FINGERPRINT_POINTS[:1]).to(self.input_dtype)
            return int(self.module(probe).shape[1])

    @cached_property
    def precision(self) -> str:
        """The precision the features are computed in (``"float32"``, ``"bf16"``, ``"float64"``): a loaded
        model's (chosen at :func:`satclip.load`), else its weights' dtype's, else the points' (raw encodings)."""
        if hasattr(self.module, "precision_choice"):
            return self.module.precision
        weights = next(self.module.parameters(), None)
        dtype = self.input_dtype if weights is None else weights.dtype
        return "float64" if dtype == torch.float64 else "float32"

    @cached_property
    def model_sha256(self) -> str | None:
        """The sha256 of the satclip model under test as every output records it
        (:func:`~satclip.models.location_encoder.model_record`; of the location encoder under a retrieval one): of
        its tensors' names and bytes in the dtype it computes in (float64 ones under ``--precision float64``), not
        of its ``model.safetensors`` file. Which model a row scored, where the spec names a path; None for an
        encoder built here (raw, untrained)."""
        if not getattr(self.module, "provenance", None):
            return None
        from ...models.location_encoder import model_record

        plain = self.module.location_encoder() if hasattr(self.module, "location_encoder") else self.module
        return model_record(plain)["sha256"]

    @cached_property
    def identity(self) -> str:
        """Cache key: the spec plus a digest of the embeddings of fixed points (changes when weights or
        implementation change), of a loaded model's precision (float32 and float64 embeddings of a small model
        agree to the 5 decimals compared: a rerun with --precision float64 reused the float32 folds and
        embeddings, and reported them as float64's) and, with retrieval, of the database's entries and the
        options (a database that changed away from the fixed points kept the key, and evaluations reused stale
        embeddings)."""
        parts = [self.embed(_FINGERPRINT_POINTS).round(5)]
        if hasattr(self.module, "precision_choice") and self.precision != "float32":  # (float32, evaluation's
            parts.append(self.precision)  # default, keeps the keys of the folds an older satclip recorded)
        retrieval = getattr(self.module, "retrieval_identity", None)
        if retrieval is not None:
            parts.append(retrieval())
        return f"{self.name}|{digest(*parts)}"


ENCODERS: Registry = Registry("location encoder")

#: the released SatCLIP hyper-parameters of the multi-scale encodings (min_radius and max_radius in degrees, the
#: unit evaluation gives points in), which a bare ``theory``, ``grid`` or ``spherec`` … takes here. satclip.encoding
#: keeps the original classes' defaults (1e-5 to 0.01; theory's 1000 to 10000), at whose scales features of points
#: in degrees are noise: a bare ``spherec`` scored at chance
RELEASED_SCALES = {"min_radius": 1.0, "max_radius": 360.0, "frequency_num": 16}
#: the parameters of raw encodings that evaluation sets otherwise than satclip.encoding, where a spec leaves them out
RAW_DEFAULTS = {name: RELEASED_SCALES for name in ("theory", "grid", *SPHERE_VARIANTS)}


def _untrained_satclip(name: str, legendre_polys: int = 10, seed: int = 0) -> Encoder:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:  # (as every other seed of satclip)
        raise BadInputError(f"encoder {name!r}: seed={seed!r} must be a whole number, 0 or more")
    from ...models.location_encoder import LocationEncoder

    config = {
        "encoding": {"name": "sphericalharmonics", "legendre_polys": int(legendre_polys),
                     "harmonics_calculation": "analytic-stable"},
        "network": dict(SATCLIP_NETWORK),
    }  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = LocationEncoder.from_config(config).eval()
    return Encoder(
        name, model, f"randomly initialised SatCLIP location encoder (SH L={legendre_polys} + SIREN, seed {seed})",
        input_dtype=torch.float32,
    )  # fmt: skip


@ENCODERS.register("untrained-satclip")
def _build_untrained(name: str = "untrained-satclip", legendre_polys: int = 10, seed: int = 0) -> Encoder:
    return _untrained_satclip(name, legendre_polys, seed)


#: names that build another encoder with some of its parameters set: ``sh-l10`` is
#: ``sphericalharmonics(legendre_polys=10)``. Their builders build from here, and :func:`spec_key` reads it (an
#: alias and its expansion given together ran one encoder twice)
ALIASES: dict[str, tuple[str, dict]] = {
    "sh-l10": ("sphericalharmonics", {"legendre_polys": 10}),
    "sh-l40": ("sphericalharmonics", {"legendre_polys": 40}),
    "untrained-satclip-l10": ("untrained-satclip", {"legendre_polys": 10}),
    "untrained-satclip-l40": ("untrained-satclip", {"legendre_polys": 40}),
}


def _expand(alias: str, name: str, **params) -> Encoder:
    """The encoder ``alias`` stands for, with ``params`` (those the alias leaves open), named ``name``."""
    target, fixed = ALIASES[alias]
    if target in ENCODERS:
        return ENCODERS.get(target)(name=name, **fixed, **params)
    return _raw(name, target, **fixed, **params)


@ENCODERS.register("untrained-satclip-l10")
def _build_untrained_l10(name: str = "untrained-satclip-l10", seed: int = 0) -> Encoder:
    return _expand("untrained-satclip-l10", name, seed=seed)


@ENCODERS.register("untrained-satclip-l40")
def _build_untrained_l40(name: str = "untrained-satclip-l40", seed: int = 0) -> Encoder:
    return _expand("untrained-satclip-l40", name, seed=seed)


@ENCODERS.register("geoclip")
def _build_geoclip(name: str = "geoclip") -> Encoder:
    from .geoclip import load_geoclip

    return Encoder(name, load_geoclip(), "GeoCLIP location encoder (geoclip 1.3.0 weights)", torch.float32)


def _raw(name: str, encoding: str, **params) -> Encoder:
    params = {**RAW_DEFAULTS.get(encoding, {}), **params}
    module = _encoding.create(encoding, **params).eval()
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return Encoder(name, module, f"raw {encoding} features ({shown or 'defaults'})", torch.float64)


@ENCODERS.register("sh-l10")
def _build_sh10(name: str = "sh-l10") -> Encoder:
    return _expand("sh-l10", name)


@ENCODERS.register("sh-l40")
def _build_sh40(name: str = "sh-l40") -> Encoder:
    return _expand("sh-l40", name)


_SPEC = re.compile(r"^\s*(?P<name>[^()]+?)\s*(?:\((?P<params>.*)\))?\s*$")


def existing_path(text: str) -> bool:
    """Whether ``text`` names an existing file or directory: then it is one spec as it stands, its commas and
    parentheses part of its name (a model directory ``m10 (1)`` or ``v1,v2``)."""
    text = text.strip()
    if not text:
        return False
    try:
        return user_path(text).exists()
    except OSError:  # (a name too long for a path, …: no file)
        return False


def _path_hint(text: str) -> str:
    """What a spec that could not be read says where it looks like a path (with parentheses or commas)."""
    if "/" not in text and os.sep not in text and not text.strip().startswith(("~", ".")):
        return ""
    return (
        "; a model path with parentheses or commas in it is read as it stands only where it exists (and without "
        "parameters): check it, or rename it or link it under a plain name (ln -s 'm10 (1)' m10-1)"
    )


def _spec_end(text: str, start: int) -> int:
    """Where the spec starting at ``start`` ends: the first comma outside parentheses and quotes, or the end
    (``database='runs/a,b'`` is one parameter)."""
    depth, quote = 0, None
    for i in range(start, len(text)):
        char = text[i]
        if quote is not None:
            quote = None if char == quote else quote
            continue
        if char in "'\"":
            quote = char
        elif char == "," and depth == 0:
            return i
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise ValueError(f"unbalanced ')' in encoder list {text!r}{_path_hint(text)}")
    if quote is not None:
        raise ValueError(f"unclosed {quote} in encoder list {text!r}: close the quoted value{_path_hint(text)}")
    if depth:
        raise ValueError(f"unbalanced '(' in encoder list {text!r}: close each '(' with ')'{_path_hint(text)}")
    return len(text)


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of specs, keeping commas inside parentheses: ``"a,b(x=1,y=2)"`` →
    ``["a", "b(x=1,y=2)"]``. Where the text from a spec's start up to a later comma (or the end) names an
    existing file or directory, the longest such piece is one spec as it stands: ``"wrap,runs/v1,v2 (1)"`` →
    ``["wrap", "runs/v1,v2 (1)"]`` when that directory exists. An empty item before the last is refused
    (``"wrap,,direct"``, ValueError); a trailing comma is not (``"wrap,"``)."""
    specs, start = [], 0
    while start <= len(text):
        ends = [i for i in range(start, len(text)) if text[i] == ","] + [len(text)]
        end = next((e for e in reversed(ends) if existing_path(text[start:e])), None)
        if end is None:
            end = _spec_end(text, start)
        specs.append(text[start:end].strip())
        start = end + 1
    if problem := empty_item(specs, text):  # (dropped: "wrap,,direct" ran as "wrap,direct"; "wrap," is one spec)
        raise ValueError(problem)
    return [s for s in specs if s]


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"theory(min_radius=1,max_radius=360)"`` → ``("theory", {"min_radius": 1, "max_radius": 360})``. A
    parameter given twice is refused. A spec naming an existing file or directory is that name, without
    parameters, whatever parentheses or commas it holds."""
    if existing_path(spec):
        return spec.strip(), {}
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(f"cannot parse encoder spec {spec!r}; expected NAME or NAME(key=value,...){_path_hint(spec)}")
    params = {}
    for item in split_specs(match["params"] or ""):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fix = _path_hint(spec) or f": write {match['name']}(key=value,...)"  # (a path's hint says its fix)
            raise ValueError(f"encoder spec {spec!r}: parameter {item!r} is not key=value{fix}")
        key = key.strip()
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = value.strip()
        if key in params:  # the last one silently won
            raise BadInputError(
                f"encoder spec {spec!r}: parameter {key} is given twice ({key}={params[key]!r}, {key}={parsed!r}); "
                "give it once"
            )
        params[key] = parsed
    return match["name"], params


def _loaded_from(name: str) -> str | None:
    """The file or model directory a spec naming an existing path loads, resolved (links followed, ``./``,
    ``~`` and a trailing slash gone); a native model's ``config.json`` or ``model.safetensors`` is its
    directory. None for a registered name (it is built by name, whatever file shares it) or no existing path."""
    if name in ENCODERS or name in _encoding.names() or not existing_path(name):
        return None
    path = os.path.realpath(user_path(name.strip()))
    from ...io.resolve import resolve

    try:
        return os.path.realpath(resolve(path).path)
    except (OSError, ValueError):  # (not a model: create() says so; here it is the path)
        return path


def _model_key(name: str) -> str | None:
    """The model a model spec's ``name`` loads, where that is known without loading it: the resolved file or
    directory of a path, the shipped directory of a shipped model's name, the name of a released checkpoint
    for its hub id or ``hf://`` id. None for anything else (compared by its name)."""
    loaded = _loaded_from(name)
    if loaded is not None:
        return loaded
    from ... import pretrained
    from ...io.resolve import HUB_SCHEME

    bundled = pretrained.bundled_models()
    if name in bundled:
        return os.path.realpath(bundled[name])
    if name.startswith(HUB_SCHEME):
        release = pretrained.released_for_hub_id(name[len(HUB_SCHEME) :])
    else:
        release = pretrained.RELEASED.get(name) or pretrained.released_for_hub_id(name)
    return next((n for n, model in pretrained.RELEASED.items() if model == release), None)


def _value_key(value: object) -> tuple:
    """A parameter value as compared: a number by its value (``10``, ``10.0`` and ``1e1`` are one; a boolean
    is no number), anything else by its type and ``repr``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("number", "nan") if value != value else ("number", value)
    return (type(value).__name__, repr(value))


def _defaults(builder, reserved: tuple[str, ...] = ()) -> dict:
    """The parameters ``builder`` takes that have a default, and their defaults (``reserved`` left out)."""
    return {key: p.default for key, p in inspect.signature(builder).parameters.items()
            if key not in reserved and p.default is not inspect.Parameter.empty}  # fmt: skip


def _takes(spec: str, name: str, builder, params: dict, reserved: tuple[str, ...]) -> bool:
    """Whether ``builder`` takes ``params`` (:func:`create` refuses them otherwise, saying why)."""
    try:
        _check_params(spec, ENCODERS.kind, name, builder, params, reserved)
    except (TypeError, ValueError):
        return False
    return True


def _canonical(spec: str) -> tuple[str, dict, bool, str] | None:
    """What ``spec`` builds, as ``(name, parameters, is_model, shown)``: an alias expanded (``sh-l10`` is
    ``sphericalharmonics`` with ``legendre_polys=10``), every parameter's default written out, a model named
    by the model it loads (:func:`_model_key`; ``is_model``: it was found), a retrieval database path resolved
    and ``+range+`` at ``beta=0`` taken for ``+range`` (which has no beta, nor a distance scale); ``shown``: the
    name as a message gives it (a retrieval's model as the spec names it). None where the encoder does not take
    the spec's parameters (:func:`create` refuses them)."""
    name, params = parse_spec(spec)
    if name in ENCODERS or name in _encoding.names():
        registry, reserved = (ENCODERS, ("name",)) if name in ENCODERS else (_encoding.ENCODINGS, ())
        if not _takes(spec, name, registry.get(name), params, reserved):
            return None
        target, fixed = ALIASES.get(name, (name, {}))
        registry, reserved = (ENCODERS, ("name",)) if target in ENCODERS else (_encoding.ENCODINGS, ())
        defaults = {**_defaults(registry.get(target), reserved), **RAW_DEFAULTS.get(target, {})}
        return target, {**defaults, **fixed, **params}, False, target
    from .retrieval import SPEC as RETRIEVAL
    from .retrieval import _spec_parameters

    match = RETRIEVAL.match(name)
    if match is None:
        from ...io.load import load

        builder, reserved, base = load, ("source",), name
    else:
        builder, reserved, base = _spec_parameters, (), match["base"]
    if not _takes(spec, name, builder, params, reserved):
        return None
    model = _model_key(base)
    params = {**_defaults(builder, reserved), **params}
    if match is None:
        return model or name, params, model is not None, model or name
    database = params["database"]  # (a directory, relative to here, or "auto")
    if isinstance(database, str) and database != "auto" and os.path.exists(database):
        params["database"] = os.path.realpath(database)
    mode = match["mode"]
    semantic = _value_key(params["beta"]) == _value_key(0)  # (range+ at beta 0 embeds as range)
    if semantic or mode == "range" and "beta" not in parse_spec(spec)[1]:
        mode = "range"
        del params["beta"], params["distance_scale_km"]
    return f"{model or base}+{mode}", params, False, f"{base}+{mode}"


def spec_key(spec: str) -> tuple:
    """What ``spec`` builds, for telling two spellings of one encoder from two encoders: the name it builds
    (an alias's expansion; for a model, the model it loads; for ``MODEL+range``, MODEL's) and every parameter,
    defaults written out, numbers by value (see :func:`_canonical`); a spec :func:`create` refuses, as parsed."""
    canonical = _canonical(spec)
    name, params = parse_spec(spec) if canonical is None else canonical[:2]
    return (name, tuple(sorted((k, _value_key(v)) for k, v in params.items())), canonical is not None)


def check_distinct(specs) -> None:
    """Refuse one encoder given twice (it ran twice: a false tie in every table), however it is spelt:
    ``direct()`` and ``direct``; ``sh-l10`` and ``sphericalharmonics(legendre_polys=10)``; ``untrained-satclip``
    and ``untrained-satclip(seed=0)``; ``theory(min_radius=1000)`` and ``theory(min_radius=1e3)``; ``runs/m10``,
    ``./runs/m10/``, its absolute path and a link to it; ``M+range(database=db)`` and ``(database=./db)``."""
    seen: dict[tuple, str] = {}
    for spec in specs:
        key = spec_key(spec)
        if key in seen:
            first = seen[key]
            name, params, model, shown = _canonical(spec) or (*parse_spec(spec), False, parse_spec(spec)[0])
            if parse_spec(first) == parse_spec(spec):
                same = "the same encoder"
            elif model:
                same = f"the same model ({name})"
            else:
                values = ",".join(f"{k}={v!r}" for k, v in sorted(params.items()))
                same = f"the same encoder (both are {shown}({values}))" if values else f"the same encoder ({shown})"
            raise BadInputError(
                f"encoders {first!r} and {spec!r} are {same}; give it once (keep {first!r}, drop {spec!r})"
            )
        seen[key] = spec


def _expected_kind(value: object, default: object) -> str | None:
    """What ``value`` must be, judged by its parameter's numeric, boolean or text ``default``, when it is not
    that (``database=5`` of a retrieval spec was an "unexpected error (TypeError)" when the database opened)."""
    if isinstance(default, str):
        fits, kind = isinstance(value, str), "text in quotes"
    elif isinstance(default, bool):
        fits, kind = isinstance(value, bool), "True or False"
    elif isinstance(default, int):
        fits, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        fits, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        return None
    return None if fits else kind


#: the largest value of the spec parameters that size an encoder's arrays: each keeps its features at about
#: 10,000 columns or fewer (``legendre_polys`` L: L² columns; ``frequency_num`` F: 6F for ``theory`` up to 16F for
#: ``spheremplus``), already 800 MB of float64 for the default 10,000 points. ``frequency_num=10**20`` ended in
#: "Maximum allowed size exceeded", naming nothing.
MAX_SIZE_PARAMS = {"legendre_polys": 100, "frequency_num": 512}


def _check_params(spec: str, kind: str, name: str, builder, params: dict, reserved: tuple[str, ...] = (),
                  defaults: dict | None = None) -> None:  # fmt: skip
    """Refuse, before anything is built, a parameter of ``spec`` that ``builder`` does not take (the
    registries' check: it names the parameter, the encoder and the accepted ones), a value that does not
    fit its numeric or boolean default, or a size above :data:`MAX_SIZE_PARAMS`. ``reserved``: parameters of
    ``builder`` that a spec does not set; ``defaults``: those evaluation gives otherwise (:data:`RAW_DEFAULTS`)."""
    signature = inspect.signature(builder).parameters
    check_parameters(kind, name, [key for key in signature if key not in reserved], params)
    for key, value in params.items():
        default = (defaults or {}).get(key, signature[key].default)
        expected = _expected_kind(value, default)
        if expected:
            raise BadInputError(
                f"encoder {spec!r}: parameter {key}={value!r} must be {expected} (its default is {default!r})"
            )
        limit = MAX_SIZE_PARAMS.get(key)
        if limit is not None and isinstance(value, int | float) and value > limit:
            raise BadInputError(
                f"encoder {spec!r}: parameter {key}={value!r} is too large: it sizes the encoder's features, and "
                f"{limit} is the most evaluate takes (its default is {default!r})"
            )


#: what the built-in encoders are, in a sentence for a report's reader (:func:`about`)
ABOUT = {
    "direct": "(lon, lat) in radians as they are: a baseline with nothing learned",
    "wrap": "(cos lon, sin lon, cos lat, sin lat): a baseline with nothing learned",
    "cartesian3d": "the point on the unit sphere (x, y, z): a baseline with nothing learned",
    "sphericalharmonics": "spherical harmonics, SatCLIP's input basis, without its network: nothing learned",
    "theory": "Space2Vec's multi-scale sines (Mai et al. 2020): nothing learned",
    "grid": "Space2Vec's multi-scale sines on lon and lat (Mai et al. 2020): nothing learned",
    **{name: "Sphere2Vec's multi-scale sines on the sphere (Mai et al. 2023): nothing learned"
       for name in ("spherec", "spherecplus", "spherem", "spheremplus")},
    "untrained-satclip": "SatCLIP's network with random weights: what pretraining adds is the difference",
    "geoclip": "GeoCLIP's location encoder (Vivanco Cepeda et al. 2023), pretrained on geotagged photos",
}


def about(spec: str) -> str:
    """One sentence on what the encoder ``spec`` is, for the reader of a report (the tables name them only)."""
    if existing_path(spec):
        return "a model loaded from this path"
    name, params = parse_spec(spec)
    match = _retrieval_spec(name)
    if match is not None:
        mode = "by place and by embedding (RANGE+)" if match["mode"] == "range+" else "by embedding (RANGE)"
        return f"{about(match['base'])}, plus image features retrieved from its database {mode}"
    target, fixed = ALIASES.get(name, (name, {}))
    if target in ABOUT:
        degree = {**fixed, **params}.get("legendre_polys")
        if target == "sphericalharmonics" and isinstance(degree, int):
            return f"{ABOUT[target]} (L = {degree}: {degree * degree} features)"
        if target in RAW_DEFAULTS:
            return f"{ABOUT[target]} ({_scales(target, params)})"
        return ABOUT[target]
    from ...pretrained import RELEASED, bundled_models, released_for_hub_id

    if name in bundled_models():
        return "satclip's shipped model, pretrained on the Blue Marble corpus it builds (docs/results.md)"
    if name in RELEASED or released_for_hub_id(name) is not None:
        return "a released SatCLIP checkpoint (Klemmer et al. 2025), pretrained on S2-100K"
    return "a model from the Hugging Face hub" if name.startswith("hf://") else "a model (see its spec)"


def _scales(encoding: str, params: dict) -> str:
    """The scales a multi-scale ``encoding`` ran at, for :func:`about`: ``min_radius=1°, max_radius=360°,
    frequency_num=16: SatCLIP's released scales``, or where the spec sets others, ``…: set by the spec``."""
    used = {**RAW_DEFAULTS[encoding], **params}
    released = all(_value_key(used[key]) == _value_key(value) for key, value in RELEASED_SCALES.items())
    radii = ", ".join(f"{key}={used[key]:g}°" if isinstance(used[key], float) else f"{key}={used[key]}°"
                      for key in ("min_radius", "max_radius"))  # fmt: skip
    source = "SatCLIP's released scales" if released else "set by the spec"
    return f"{radii}, frequency_num={used['frequency_num']}: {source}"


def _retrieval_spec(name: str):
    from .retrieval import SPEC

    return SPEC.match(name)


def check_known(spec: str | os.PathLike) -> None:
    """Raise :class:`~satclip.errors.UnknownNameError` where ``spec`` names no encoder by its name alone: a plain
    name (no path, hub repository or retrieval spec) that is no encoding or baseline (:func:`names`) and no model
    (:func:`satclip.list_pretrained`). Nothing is loaded or downloaded (:func:`create` checks its spec so first)."""
    from ...pretrained import names as model_names

    name = parse_spec(os.fspath(spec))[0]
    if name in ENCODERS or name in _encoding.names() or name in model_names() or "+range" in name:
        return
    if "/" in name or os.sep in name or name.startswith((".", "~")) or Path(name).suffix or existing_path(name):
        return  # (a path or a hub repository: satclip.load says what is wrong with it)
    from .retrieval import retrieval_names

    hint = did_you_mean(name, names() + model_names() + retrieval_names())
    # (the names themselves, as an unknown task lists the tasks: the CLI's users were sent to Python functions)
    raise UnknownNameError(
        f"unknown encoder {spec!r}: {hint + ' ' if hint else ''}known: {', '.join(names())} (encodings and "
        f"baselines); {', '.join(model_names())} (models, each also as MODEL+range for retrieval); or a model's path, "
        "or hf://owner/name"
    )


def create(spec: str, *, trust_checkpoint: bool = False) -> Encoder:
    """Build the encoder a spec names (see the module docstring for the lookup order). A parameter the
    encoder does not take, or a value of the wrong type, is refused naming both before anything is built.
    ``trust_checkpoint``: a model's, as :func:`satclip.load` takes it, where the spec does not set its own."""
    name, params = parse_spec(spec)
    if name in ENCODERS:
        builder = ENCODERS.get(name)
        _check_params(spec, ENCODERS.kind, name, builder, params, reserved=("name",))
        return builder(name=spec, **params)
    if name in _encoding.names():
        _check_params(spec, _encoding.ENCODINGS.kind, name, _encoding.ENCODINGS.get(name), params,
                      defaults=RAW_DEFAULTS.get(name))  # fmt: skip
        try:
            return _raw(spec, name, **params)
        except BadInputError:
            raise
        except ValueError as err:  # a value out of range ("min_radius must be … got -1" named no encoder)
            raise BadInputError(f"encoder {spec!r}: {err}") from err
    from .retrieval import create_retrieval, is_retrieval_spec

    # MODEL+range, MODEL+range+(beta=…): retrieval-augmented (docs/retrieval.md); a directory so named is a model
    if is_retrieval_spec(name) and not (not params and existing_path(name)):
        return create_retrieval(spec, name, params, trust_checkpoint=trust_checkpoint)
    base, plus, rest = name.partition("+range")
    if plus and base and not existing_path(name):  # ("unknown encoder …", 700 characters, for beta=2 not in (…))
        options = rest.lstrip("+")
        example = f"{base}+range+({options})" if "=" in options else f"{base}+range+(beta=0.5)"
        raise BadInputError(f"encoder spec {spec!r}: a retrieval spec is MODEL+range or MODEL+range+, its parameters "
                            f"in parentheses, e.g. {example}")  # fmt: skip
    check_known(spec)
    _refuse_embeddings(spec, name)
    from ...io.load import load
    from ...io.resolve import resolve

    try:
        source = resolve(name)
    except FileNotFoundError as err:
        from ...pretrained import names as model_names

        known = ENCODERS.names() + _encoding.names()
        from .retrieval import retrieval_names

        hint = did_you_mean(name, known + model_names() + retrieval_names())
        raise ValueError(
            f"unknown encoder {spec!r}: {hint + ' ' if hint else ''}not one of {', '.join(known)}, and "
            f"satclip.load failed: {err}"
        ) from err
    _check_params(spec, ENCODERS.kind, name, load, params, reserved=("source",))
    model = load(source.path, **{"trust_checkpoint": trust_checkpoint, **params})
    return Encoder(spec, model, f"satclip.load({name!r})", model.feature_dtype)


def _refuse_embeddings(spec: str, name: str) -> None:
    """Refuse a file of embeddings (what ``satclip embed`` writes, or a table) as encoder ``spec``: it was tried
    as a checkpoint ("not a readable checkpoint: … download or export it again")."""
    from ...embed.sinks import SUFFIXES

    suffix = Path(name).suffix.lower()
    if existing_path(name) and suffix in (*SUFFIXES, ".csv", ".tsv"):
        raise BadInputError(
            f"encoder {spec!r} is a file of embeddings or a table ({suffix}), not an encoder: encoders are models (a "
            "checkpoint, a native model directory, a model name) and raw encodings, whose embeddings the evaluation "
            "computes at each task's points; precomputed embeddings cannot be evaluated"
        )


def names() -> list[str]:
    """Encoders available by name without a model file (raw encodings and baselines)."""
    return sorted(set(ENCODERS.names()) | set(_encoding.names()))


__all__ = [
    "ALIASES", "ENCODERS", "Encoder", "RELEASED_SCALES", "check_distinct", "check_known", "create", "existing_path",
    "names", "parse_spec", "spec_key",
    "split_specs",
]  # fmt: skip
