"""Typed training configuration: frozen dataclasses that map 1:1 onto the training YAML.

::

    model:    {image_encoder: {name: moco_resnet18, ...}, embed_dim: 256, location_encoder: {...}, ...}
    data:     {source: cache, cache: runs/cache-rn18, batch_size: 8192, val_fraction: 0.1, ...}
    optim:    {lr: 1.0e-4, weight_decay: 0.01, ...}
    trainer:  {max_epochs: 500, seed: 0, precision: 32-true, output_dir: runs/satclip, ...}

:func:`load_config` reads a YAML file and applies dotted overrides (``{"optim.lr": "3e-4"}``; values are
parsed as YAML scalars). Unknown keys and values of the wrong type raise an error that names the key and
lists the valid ones. Defaults are the paper's (AdamW, lr 1e-4, weight decay 0.01, 500 epochs, 10 %
validation split, seed 0); the location encoder defaults to exact ``analytic-stable`` spherical harmonics
(L = 10) and a SIREN in float32.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputError, UnknownNameError, yaml_problem
from ..models import LOGIT_SCALE_INIT
from ..paths import expand_user


def default_image_encoder() -> dict:
    """The released models' backbone family: a ResNet18 pretrained with MoCo on Sentinel-2."""
    return {"name": "moco_resnet18"}


def default_location_encoder() -> dict:
    """SH L = 10 (exact recurrence, the original's analytic convention) → SIREN 100→512→512→256."""
    return {
        "encoding": {"name": "sphericalharmonics", "legendre_polys": 10, "harmonics_calculation": "analytic-stable"},
        "network": {"name": "siren", "dim_hidden": 512, "num_layers": 2},
    }


def _with_default_parts(location_encoder: dict) -> dict:
    """``location_encoder`` with a missing ``encoding`` or ``network`` taken from the default, and one given
    without a ``name`` merged over the default's (a YAML ``network: {dim_hidden: 64}`` failed the run with
    "needs a 'name'" while ``--model.location_encoder.network.dim_hidden 64`` and ``--print-config`` took it)."""
    defaults, merged = default_location_encoder(), dict(location_encoder)
    for part, default in defaults.items():
        given = merged.get(part)
        if given is None:
            merged[part] = default
        elif isinstance(given, dict) and "name" not in given:
            merged[part] = {**default, **given}
    return merged


@dataclass(frozen=True)
class ModelConfig:
    """What is trained.

    ``image_encoder`` is ``{"name": …, **params}`` for ``satclip.image.create``; with ``data.source: cache``
    it may be left empty (``{}``) and is then taken from the cache manifest (it must match when given).
    ``location_encoder`` is a :meth:`satclip.LocationEncoder.from_config` dict whose network's
    ``num_classes`` is set from ``embed_dim``. ``init_from``: a trained model (anything ``satclip.load``
    takes) whose weights start the run instead of a random initialisation: its location network (a
    spherical-harmonics model of a lower degree too: the new degrees start at zero), ``logit_scale`` and,
    when it computes the same image features, its image head (:mod:`satclip.train.warm_start`).
    ``train_degrees_from``: train only the first layer's columns of the spherical-harmonic degrees from this
    one up (the finer degrees added to an ``init_from`` model of this degree); every other weight — the rest of
    the location network, the image head, ``logit_scale`` — stays as it starts (None: all train).
    """

    image_encoder: dict = field(default_factory=default_image_encoder)
    embed_dim: int = 256
    location_encoder: dict = field(default_factory=default_location_encoder)
    logit_scale_init: float = LOGIT_SCALE_INIT
    location_dtype: str = "float32"  # "float32" | "float64": parameters of the location encoder
    init_from: str | None = None
    train_degrees_from: int | None = None

    def __post_init__(self):
        if isinstance(self.location_encoder, dict):  # a part given in part is filled in, as dotted overrides are
            object.__setattr__(self, "location_encoder", _with_default_parts(self.location_encoder))
        # names, parameters and sizes now: --print-config accepted what the run refused, and a typo was blamed on
        # the export format, a float or boolean legendre_polys trained a model that could not be loaded (the
        # defaults need no check, nor the torch import it takes: `satclip --help` builds them)
        if _exactly(self.location_encoder) != _exactly(default_location_encoder()):  # (10.0 == 10, True == 1)
            from ..models.location_encoder import check_parts

            check_parts(self.location_encoder, source="model")
        if self.image_encoder and self.image_encoder != default_image_encoder():  # ({}: the feature cache's)
            from ..image import check_spec

            check_spec(self.image_encoder)
        if self.train_degrees_from is not None:
            encoding = self.location_encoder.get("encoding") or {}
            degree = encoding.get("legendre_polys") if encoding.get("name") == "sphericalharmonics" else None
            _check("model.train_degrees_from", self.train_degrees_from,
                   isinstance(self.train_degrees_from, int) and not isinstance(self.train_degrees_from, bool)
                   and isinstance(degree, int) and 1 <= self.train_degrees_from < degree,
                   f"a degree from 1 to {degree - 1 if isinstance(degree, int) else 'legendre_polys - 1'} "
                   "(legendre_polys - 1) of a spherical-harmonics encoding")  # fmt: skip
        _check("model.embed_dim", self.embed_dim, self.embed_dim >= 1, "1 or more")
        _check("model.logit_scale_init", self.logit_scale_init, abs(self.logit_scale_init) <= MAX_LOGIT_SCALE_INIT,
               f"in [-{MAX_LOGIT_SCALE_INIT}, {MAX_LOGIT_SCALE_INIT}] (the log of the inverse temperature: the logits "
               f"are exp(logit_scale) × cosines, and exp({MAX_LOGIT_SCALE_INIT + 1}) overflows float32; default "
               f"log(1/0.07) = {LOGIT_SCALE_INIT:.4f})")  # fmt: skip
        network = self.location_encoder.get("network")
        for size, low in (("dim_hidden", 1), ("num_layers", 0)):  # the sizes networks with hidden layers have
            value = network.get(size) if isinstance(network, dict) else None  # (an mlp of 0 layers: one hidden)
            if value is not None:
                key = f"model.location_encoder.network.{size}"
                _check(key, value, isinstance(value, int) and not isinstance(value, bool) and value >= low,
                       f"an integer, {low} or more")  # fmt: skip


#: the largest |model.logit_scale_init|: exp of more than ~88.7 overflows float32 (and bf16), so the logits would
#: start infinite and the first step diverge ("lower optim.lr" would be the wrong advice)
MAX_LOGIT_SCALE_INIT = 88

#: the largest data.coord_jitter (degrees): the one-sided U(0, jitter) is added to lon and lat, and latitudes end
#: at 90 (clamped there)
MAX_COORD_JITTER = 180

#: the fewest pairs a contrastive batch needs: each pair's negatives are the others (one pair alone: loss 0,
#: accuracy 1, nothing learned); a smaller last batch of an epoch is dropped (``satclip.train.data.EpochBatchSampler``)
MIN_BATCH_PAIRS = 2

#: the most views a feature cache holds per image (each costs a backbone pass and its share of the cache)
MAX_CACHE_VIEWS = 1024
#: the most views one backbone forward pass of a cache build takes (``satclip cache build --batch-size``): a chunk
#: of 1,024 images × the most views; a larger count was no batch at all (``--batch-size 10**20``: "Stop argument
#: for islice() must be None or an integer")
MAX_CACHE_BATCH_SIZE = 1024 * MAX_CACHE_VIEWS


@dataclass(frozen=True)
class DataConfig:
    """Where the (image, location) pairs come from.

    ``source: cache`` reads pre-computed backbone features (``cache``: a directory made by
    ``satclip cache build``): only the image head and the location encoder train, and a batch of
    ``batch_size`` pairs is one contrastive softmax even on a CPU. ``source: images`` runs the image encoder
    on every step (needed for trainable backbones); ``dataset`` names a dataset of ``satclip.data``.
    ``batch_size`` is per device: with N devices one softmax spans N·batch_size pairs.
    """

    source: str = "cache"  # "cache" | "images"
    cache: str | None = None
    root: str | None = None
    dataset: str = "s2100k"
    batch_size: int = 8192
    val_fraction: float = 0.1
    num_workers: int = 0
    coord_jitter: float = 0.01  # degrees; one-sided U(0, jitter) on lon and lat, as the original
    # km; symmetric: a uniform point of the ±coord_jitter_km square (east, north) around each location in its
    # local azimuthal-equidistant frame, i.e. anywhere on the image's footprint (half its width); 0 = off
    coord_jitter_km: float = 0.0
    drop_last: bool = False
    cache_views: int = 8  # views per image in a cache built from this config (view 0 = evaluation view)
    cache_dtype: str = "float16"  # storage dtype of cached features

    def __post_init__(self):
        for key in ("cache", "root"):  # ('~/data', quoted in YAML: one place, not ./~/data and $HOME/data)
            _check(f"data.{key}", getattr(self, key), getattr(self, key) != "", "a directory's path or null, not empty")
            if isinstance(getattr(self, key), str):
                object.__setattr__(self, key, str(expand_user(getattr(self, key))))
        _check("data.batch_size", self.batch_size, self.batch_size >= MIN_BATCH_PAIRS,
               f"{MIN_BATCH_PAIRS} or more (pairs per device and step: the contrastive loss contrasts each pair with "
               "the others of its batch, and one pair alone has none: a loss of 0 and an accuracy of 1)")  # fmt: skip
        _check("data.val_fraction", self.val_fraction, 0 <= self.val_fraction < 1, "in [0, 1) (0: no validation)")
        from ..machine import MAX_WORKERS_RULE, max_workers

        most = max_workers()
        _check("data.num_workers", self.num_workers, 0 <= self.num_workers <= most,
               f"0 (load in the main process) to {most} ({MAX_WORKERS_RULE})")  # fmt: skip
        _check("data.coord_jitter", self.coord_jitter, 0 <= self.coord_jitter <= MAX_COORD_JITTER,
               f"0 (off) to {MAX_COORD_JITTER} degrees (the span of latitudes: a one-sided jitter of more moves every "
               "point past the north pole)")  # fmt: skip
        km = self.coord_jitter_km
        _check("data.coord_jitter_km", km, math.isfinite(km) and km >= 0, "a finite number, 0 or more (0: off)")
        _check("data.cache_views", self.cache_views, 1 <= self.cache_views <= MAX_CACHE_VIEWS,
               f"1 to {MAX_CACHE_VIEWS} (view 0 is the evaluation view)")  # fmt: skip


@dataclass(frozen=True)
class OptimConfig:
    """AdamW; weight decay applies to matrices only (not biases, norms or ``logit_scale``)."""

    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self):
        _check("optim.lr", self.lr, math.isfinite(self.lr) and self.lr > 0, "a finite number above 0")
        _check("optim.weight_decay", self.weight_decay, math.isfinite(self.weight_decay) and self.weight_decay >= 0,
               "a finite number, 0 or more")  # fmt: skip
        _check("optim.betas", self.betas, all(0 <= beta < 1 for beta in self.betas), "two numbers in [0, 1)")
        _check("optim.eps", self.eps, math.isfinite(self.eps) and self.eps > 0, "a finite number above 0")


@dataclass(frozen=True)
class TrainerConfig:
    """How training runs. ``precision``: ``32-true`` (default) or ``bf16-mixed`` (the location encoder stays
    in float32), or the switch of :mod:`satclip.models.precision`: ``float32``, ``float64``, ``bf16`` (the location
    network under bf16 autocast too) or ``auto`` (bf16 where the device multiplies it natively;
    :mod:`satclip.train.precision`). ``checkpoint_every_n_steps``: also write ``checkpoints/last.ckpt`` after
    every N-th optimizer step (0: after every epoch only)."""

    max_epochs: int = 500
    seed: int = 0
    output_dir: str = "runs/satclip"
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    fast_dev_run: int = 0
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    enable_progress_bar: bool = True
    deterministic: bool = True
    export: bool = True  # write best/last as native model directories and files for export_target
    checkpoint_every_n_steps: int = 0
    export_target: str = "original"  # original (.ckpt) | torchgeo (.pt) | rshf (directory); see docs/export.md

    def __post_init__(self):
        # (it was "PosixPath('.') has an empty name")
        _check("trainer.output_dir", self.output_dir, str(self.output_dir).strip() != "",
               "a directory's path, not empty")  # fmt: skip
        if isinstance(self.output_dir, str):  # ('~/runs/x': Lightning expands it for some files, satclip for all)
            object.__setattr__(self, "output_dir", str(expand_user(self.output_dir)))
        # (Lightning reads max_epochs -1 as "without end")
        _check("trainer.max_epochs", self.max_epochs, self.max_epochs >= 1, "a number of epochs, 1 or more")
        _check("trainer.seed", self.seed, 0 <= self.seed < 2**32, f"in [0, {2**32 - 1}] (numpy's range)")
        _check("trainer.devices", self.devices, self.devices >= 1 or self.devices == -1,
               "1 or more devices per node, or -1 for all of them")  # fmt: skip
        _check("trainer.num_nodes", self.num_nodes, self.num_nodes >= 1, "1 or more")
        for key in ("accumulate_grad_batches", "log_every_n_steps", "check_val_every_n_epoch"):
            _check(f"trainer.{key}", getattr(self, key), getattr(self, key) >= 1, "1 or more")
        _check("trainer.fast_dev_run", self.fast_dev_run, self.fast_dev_run >= 0,
               "0 (off) or a number of batches to run once, 1 or more")  # fmt: skip
        for key, low in (("limit_train_batches", "above 0"), ("limit_val_batches", "0 (no validation) or more")):
            value = getattr(self, key)
            fraction = 0 < value <= 1 if key == "limit_train_batches" else 0 <= value <= 1
            _check(f"trainer.{key}", value, fraction or (value > 1 and float(value).is_integer()),
                   f"a fraction of the batches {low} up to 1.0, or a whole number of batches")  # fmt: skip
        _check("trainer.checkpoint_every_n_steps", self.checkpoint_every_n_steps, self.checkpoint_every_n_steps >= 0,
               "0 or more (0: only after every epoch)")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self):
        _check_harmonics_fit(self.model, self.data)

    def to_dict(self) -> dict:
        """A plain, YAML/JSON-ready dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with dotted overrides applied: ``cfg.replace(**{"optim.lr": 3e-4})``."""
        return from_dict(apply_overrides(self.to_dict(), overrides, parse=False))


def _check_harmonics_fit(model: ModelConfig, data: DataConfig) -> None:
    """Refuse a spherical-harmonics degree L whose L² basis functions cannot fit in this machine's memory: the
    first layer's weights (L² × dim_hidden float32) plus one batch of features (data.batch_size × L², computed
    in float64). A degree typed wrong (100000) failed at the first allocation ("unexpected error … tried to
    allocate 1280000000000 bytes")."""
    encoding = model.location_encoder.get("encoding") or {}
    degree = encoding.get("legendre_polys") if encoding.get("name") == "sphericalharmonics" else None
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 1:
        return  # (a wrong type or value is the encoding's own error, naming it)
    network = model.location_encoder.get("network") or {}
    hidden = network.get("dim_hidden", 512) if isinstance(network, dict) else 512
    hidden = hidden if isinstance(hidden, int) and not isinstance(hidden, bool) and hidden >= 1 else 1
    per_column = 4 * hidden + 8 * data.batch_size  # bytes per basis function
    from ..machine import physical_memory

    memory = physical_memory()
    if memory is None or degree**2 * per_column <= memory:
        return
    key = "model.location_encoder.encoding.legendre_polys"
    raise BadInputError(
        f"{key}={degree} is too large for this machine: its L² = {degree**2:,} basis functions need at least "
        f"{degree**2 * per_column / 1e9:,.0f} GB (the first layer, L² × dim_hidden {hidden} float32, and one batch "
        f"of features, data.batch_size {data.batch_size} × L² float64) and this machine has {memory / 1e9:,.0f} GB of "
        "memory (the released models use 10 and 40)"
    )


def _exactly(value: Any) -> str:
    """``value`` as JSON: equal for equal values of equal types (``10.0 == 10`` and ``True == 1`` in Python)."""
    return json.dumps(value, sort_keys=True, default=repr)


def _check(key: str, value: Any, ok: bool, allowed: str) -> None:
    """Raise :class:`BadInputError` (a ValueError) naming the dotted ``key``, its ``value`` and what is ``allowed``
    unless ``ok``."""
    if not ok:
        raise BadInputError(f"{key}={value!r} must be {allowed}")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "trainer": TrainerConfig}
_CHOICES = {
    ("data", "source"): ("cache", "images"),
    ("model", "location_dtype"): ("float32", "float64"),
    ("data", "cache_dtype"): ("float16", "float32"),
    ("trainer", "precision"): (
        "32-true", "32", "bf16-mixed", "16-mixed", "64-true", "float32", "bf16", "float64", "auto",
    ),  # fmt: skip
    ("trainer", "export_target"): ("original", "torchgeo", "rshf"),
    # Lightning's names for the devices satclip trains on (tpu/xla: untested, and Lightning's own error named
    # no key), and its strategies for them
    ("trainer", "accelerator"): ("auto", "cpu", "gpu", "cuda", "mps"),
    ("trainer", "strategy"): (
        "auto", "single_device", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true",
        "fsdp", "deepspeed",
    ),  # fmt: skip
}


def from_dict(raw: Mapping[str, Any] | None) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts (missing keys take their defaults)."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise UnknownNameError(f"unknown config section(s) {unknown}; valid: {sorted(SECTIONS)}")
    sections = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, Mapping):
            raise BadInputError(f"config section {name!r} must be a mapping, got {type(values).__name__}: {values!r}")
        sections[name] = _build_section(name, cls, values)
    return TrainConfig(**sections)


def load_config(
    path: str | Path | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    data: bytes | None = None,
) -> TrainConfig:
    """Read a training YAML (or take its sections as a dict, as :func:`fit` does; or start from the defaults when
    ``path`` is None) and apply dotted ``overrides`` whose string values are parsed as YAML scalars (``"3e-4"`` →
    3e-4, ``"true"`` → True).

    ``data``: the YAML's bytes when they were already read from ``path`` (a pipe can be read only once);
    ``path`` then only names them in errors."""
    raw: dict = {}
    if isinstance(path, Mapping):  # (it was "expected str, bytes or os.PathLike object, not dict")
        raw = dict(path)
    elif path is not None:
        import yaml

        if data is None:
            if not Path(path).is_file():  # (Python's own "[Errno 2] No such file or directory: 'x.yaml'")
                error = IsADirectoryError if Path(path).is_dir() else FileNotFoundError
                what = "is a directory" if Path(path).is_dir() else "does not exist"
                raise error(f"training config {path} {what}: give the path of a YAML file")
            data = Path(path).read_bytes()
        try:
            text = data.decode()
        except UnicodeDecodeError as err:  # ("bad config: 'utf-8' codec can't decode byte 0x89 …" named no file)
            raise ValueError(
                f"{path} is not a YAML text file (byte {err.start} is not UTF-8 text): give the training config"
            ) from None
        try:
            raw = yaml.load(text, Loader=_loader()) or {}
        except yaml.YAMLError as err:  # ("invalid YAML: … (line 2, column 1)" named no file)
            if not yaml_problem(err):
                raise
            raise BadInputError(f"{path}: {yaml_problem(err)}") from None
        if not isinstance(raw, dict):
            raise TypeError(f"{path}: a training config is a mapping of sections, got {type(raw).__name__}")
    return from_dict(apply_overrides(raw, overrides or {}, parse=True))


def dump_config(config: TrainConfig, path: str | Path) -> Path:
    """Write ``config`` as YAML (the exact form :func:`load_config` reads back), atomically; an existing
    file is replaced."""
    from ..safe_output import write_text

    return write_text(path, config_yaml(config.to_dict()))


def config_yaml(data: Mapping[str, Any]) -> str:
    """A config's values as the YAML text :func:`load_config` reads back as they are (``--print-config``,
    ``config.yaml``)."""
    import yaml

    return yaml.dump(dict(data), Dumper=_dumper(), sort_keys=False)


#: keys whose values are paths: an override gives them as typed, not as YAML reads it (``null``: none)
PATH_KEYS = frozenset({"model.init_from", "data.cache", "data.root", "trainer.output_dir"})
#: the paths of a run's own data and directory, which a run records absolute (its config.yaml and checkpoints), so
#: that `satclip train --config RUN/config.yaml --resume` continues it from any working directory
#: (``model.init_from`` may be a model's name)
RUN_PATHS = ("data.cache", "data.root", "trainer.output_dir")


def absolute_path(path: str | None) -> str | None:
    """``path`` (``~`` expanded) as an absolute path, as a relative one means it in the current directory."""
    import os

    from ..paths import user_path

    return None if path is None else os.path.abspath(user_path(path))


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its :data:`RUN_PATHS` absolute."""
    fields: dict[str, dict[str, str | None]] = {}
    for key in RUN_PATHS:
        section, name = key.split(".")
        fields.setdefault(section, {})[name] = absolute_path(getattr(getattr(config, section), name))
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **values)
                                          for section, values in fields.items()})  # fmt: skip


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any], *, parse: bool) -> dict:
    """Set dotted keys (``"model.location_encoder.encoding.legendre_polys"``) in a copy of ``raw``.

    The first component must be a section, the second a field of it; deeper components address keys of
    dict-valued fields (``image_encoder``, ``location_encoder``) and may create them.
    """
    if not isinstance(overrides, Mapping):  # (a list of "KEY=VALUE" failed as "'list' object has no attribute 'items'")
        raise BadInputError(f"overrides is a mapping of dotted keys to values, e.g. {{'trainer.max_epochs': 5}}, not a "
                            f"{type(overrides).__name__} ({overrides!r:.80})")  # fmt: skip
    out = copy.deepcopy(dict(raw))
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if len(parts) < 2 or parts[0] not in SECTIONS:
            raise UnknownNameError(
                f"override {dotted!r} must be SECTION.KEY with SECTION one of {sorted(SECTIONS)}, "
                "e.g. --optim.lr 3e-4 ({'optim.lr': 3e-4} in Python)"
            )
        names = [f.name for f in dataclasses.fields(SECTIONS[parts[0]])]
        if parts[1] not in names:
            raise UnknownNameError(f"unknown key {parts[1]!r} in override {dotted!r}; {parts[0]} has: "
                                   f"{', '.join(names)}")  # fmt: skip
        if parse and isinstance(value, str):  # (a path as typed: 007 was the directory 7, "run #3" run)
            value = (None if value == "null" else value) if dotted in PATH_KEYS else _parse_scalar(value)
        if out.get(parts[0]) is None:  # (absent, or an empty section in the YAML: `data:`)
            out[parts[0]] = {}
        node = out[parts[0]]
        if len(parts) > 2 and node.get(parts[1]) is None:
            default = getattr(SECTIONS[parts[0]](), parts[1])
            node[parts[1]] = copy.deepcopy(default) if default is not None else {}
        for depth, key in enumerate(parts[1:-1], start=1):
            if not isinstance(node, dict):
                raise TypeError(f"override {dotted!r}: {'.'.join(parts[:depth])} is not a mapping")
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        if not isinstance(node, dict):
            raise TypeError(f"override {dotted!r}: {'.'.join(parts[:-1])} is {node!r}, not a mapping of keys")
        node[parts[-1]] = value
    return out


@functools.cache
def _loader() -> type:
    """PyYAML's safe loader reading numbers in exponent notation without a decimal point (``lr: 3e-4``, a
    string to YAML 1.1: "optim.lr='3e-4' must be a number") as floats, as YAML 1.2 and the overrides do, and
    refusing a key given twice in one mapping (PyYAML keeps the last without a word: which did the user mean?)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        f"in the mapping at line {node.start_mark.line + 1}", node.start_mark,
                        f"{key!r} is given twice, at lines {seen[key] + 1} and {key_node.start_mark.line + 1}: keep "
                        "one", key_node.start_mark,
                    )  # fmt: skip
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT, list("-+0123456789"))
    return Loader


@functools.cache
def _dumper() -> type:
    """PyYAML's safe dumper quoting the text that :func:`_loader` reads as a number (a directory named 1e3 was
    written bare, and read back as 1000.0)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT, list("-+0123456789"))
    return Dumper


_EXPONENT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


def _parse_scalar(text: str) -> Any:
    """YAML scalar, except that numbers like ``3e-4`` (a string to YAML 1.1) are numbers."""
    import yaml

    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _build_section(section: str, cls: type, values: Mapping[str, Any]):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UnknownNameError(f"unknown key(s) {unknown} in config section {section!r}; valid: {', '.join(names)}")
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _coerce(f"{section}.{key}", value, hints[key])
        choices = _CHOICES.get((section, key))
        if choices is not None and kwargs[key] not in choices:
            raise BadInputError(f"{section}.{key}={kwargs[key]!r} is not one of {list(choices)}")
    return cls(**kwargs)


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping",
               type(None): "null"}  # fmt: skip


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the annotation ``hint`` (int → float is allowed; str → Path is not); a value of another
    type raises :class:`BadInputError` (a ValueError; it was a TypeError, which ``except ValueError`` missed)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option)
            except BadInputError:
                continue
        raise BadInputError(f"{key}={value!r} must be {' or '.join(_TYPE_WORDS.get(o, o.__name__) for o in options)}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadInputError(f"{key}={value!r} must be a number")
        return float(value)
    if hint is int:  # (a float never: 1e308 was taken as a 309-digit batch size while 2.5 was refused)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInputError(f"{key}={value!r} must be an integer (written without a decimal point or exponent)")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise BadInputError(f"{key}={value!r} must be true or false")
        return value
    if hint is str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # e.g. trainer.precision: 32
        if not isinstance(value, str):
            raise BadInputError(f"{key}={value!r} must be a string")
        return value
    if hint is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise BadInputError(f"{key}={value!r} must be a mapping")
        return copy.deepcopy(dict(value))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise BadInputError(f"{key}={value!r} must be a list of {len(args)} values")
        return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
