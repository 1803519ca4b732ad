"""Precision as a user choice: ``"float32" | "bf16" | "float64" | "auto"``.

* ``"float64"`` — weights and arithmetic in float64: for exact comparisons with the original (slow).
* ``"float32"`` — float32 weights and network; the spherical harmonics in float32 (float64 near the
  poles), so the basis is within 2e-5 of float64 (docs/conventions.md).
* ``"bf16"`` — the network's matrix products in bfloat16 with float32 accumulation, as under
  ``torch.autocast`` (the basis computed as for float32 and rounded once to bfloat16). Embeddings agree with
  float32 to a cosine of ≥ 0.9999 on the calibration's probe points; over 100,000 points uniform on the
  sphere the shipped models' lowest cosine is 0.99992 (L = 10) and 0.99988 (L = 40: two points below 0.9999,
  both south of 88°S; every point below 0.99995 lies south of 77°S, where the models saw no data). Fast only
  where the hardware multiplies bfloat16 natively: CPUs with AMX-BF16 or AVX512-BF16 (recent Xeons, AMD Zen 4)
  and CUDA GPUs from Ampere on; elsewhere it is emulated and slower than float32.
* ``"auto"`` (the default of :func:`satclip.load`) — bf16 where :func:`bf16_support` finds native bf16
  matrix multiplication *and* a one-time calibration on a fixed probe set (:func:`probe_points`) measures
  bf16 at least :data:`MIN_SPEEDUP` times as fast as float32 for this model and within a cosine of
  :data:`MIN_COSINE` of it; float32 otherwise. The timing runs once per machine, architecture (the config and
  the weights' shapes, not their values: two checkpoints of one run run equally fast, and on a busy machine
  were timed either side of the bound and loaded in different precisions), device, thread count and torch
  version (0.2 s at L = 10, 1.5 s at L = 40 on one core) and is kept in ``$SATCLIP_CACHE/precision/``
  (:func:`calibration_file`); the cosine, which depends on the weights, is computed for each model and the
  choice kept beside the timing. Later runs make the same choice, so the same command gives the same
  embeddings and output bytes, whatever else the machine is doing then (delete the files to measure again);
  processes starting at once (shards of one job) wait for the first one's timing and take it. What it chose
  and why is logged at INFO and kept as ``encoder.precision_choice``.

``$SATCLIP_PRECISION`` sets the default for :func:`satclip.load` and the CLI (e.g. ``float32`` to make
results independent of the machine). Evaluations and ``satclip map`` default to float32 (:func:`evaluation_precision`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass

import torch

from ..errors import BadInputError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "float32", "bf16", "float64")
#: environment variable with the default precision
ENV = "SATCLIP_PRECISION"
#: "auto" picks bf16 only if every probe point's embedding has at least this cosine to float32's
MIN_COSINE = 0.9999
#: … and only if bf16 measured at least this much faster (so that timing noise on a busy machine cannot
#: pick emulated bf16: where it is native, it is 2-4x)
MIN_SPEEDUP = 1.2
#: the calibration's way of measuring, in its files' names: a calibration measured another way (before the
#: timings were interleaved, :func:`_speedup`; before the median of :data:`MEASUREMENTS`; per model rather than
#: per architecture, with the cosine in it) is made again
CALIBRATION_METHOD = 4
#: the full calibration's speedup is the median of this many measurements (:func:`_speedup`): on a 2-core AVX512-BF16
#: CPU under a load of 4-5, single measurements of a model bf16 runs 1.9x as fast as float32 ranged 0.8-2.2x, and
#: "auto" kept whichever side of MIN_SPEEDUP the first one fell on
MEASUREMENTS = 3
#: points of the first, quick comparison of the calibration (bf16 at most half as fast there: no full one)
PRESCREEN = 256
_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bf16"}
_ALIASES = {"fp32": "float32", "fp64": "float64", "bfloat16": "bf16", "32": "float32", "64": "float64"}


#: the torch dtypes that name a precision (``dtype=``), as the errors list them
DTYPES = ", ".join(map(str, _DTYPE_NAMES))


def check(precision: str | torch.dtype, argument: str = "precision") -> str:
    """The canonical name of ``precision`` (a name from :data:`PRECISIONS`, an alias such as
    ``"bfloat16"``, or a torch dtype), given as the parameter ``argument`` (``"precision"`` or ``"dtype"``:
    the error names it).

    Raises:
        BadInputError: naming the parameter, the value and the valid ones.
    """
    if isinstance(precision, torch.dtype):
        if precision in _DTYPE_NAMES:
            return _DTYPE_NAMES[precision]
    elif isinstance(precision, str):
        name = _ALIASES.get(precision.lower(), precision.lower())
        if name in PRECISIONS:
            return name
    elif isinstance(precision, int) and not isinstance(precision, bool) and str(precision) in _ALIASES:
        return _ALIASES[str(precision)]  # (32 and 64, as "32" and "64" are)
    if argument == "dtype":
        raise BadInputError(
            f"dtype={precision!r} is not one of {DTYPES} (or precision= one of {', '.join(PRECISIONS)})"
        )
    raise BadInputError(f"{argument}={precision!r} is not one of {', '.join(PRECISIONS)}")


def default() -> str:
    """The default precision: ``$SATCLIP_PRECISION`` if set, else ``"auto"``."""
    value = os.environ.get(ENV)
    if not value:
        return "auto"
    try:
        return check(value)
    except BadInputError as err:
        raise BadInputError(f"${ENV}: {err}") from None


#: the precision evaluations embed in where ``$SATCLIP_PRECISION`` names none (``satclip evaluate``,
#: :func:`satclip.eval.evaluate`, the demo's evaluation): "auto" times bf16 against float32 once per cache, and a busy
#: machine or a fresh cache chose otherwise, moving scores between runs (MSE 0.050882 in float32, 0.051062 in bf16);
#: and ``satclip map``'s, where bf16's rounding (~4e-3) washed out the differences between neighbouring cells
EVAL_PRECISION = "float32"


def evaluation_precision() -> str:
    """:data:`EVAL_PRECISION`, or the precision ``$SATCLIP_PRECISION`` asks for (``--precision`` sets it)."""
    return default() if os.environ.get(ENV) else EVAL_PRECISION


def requested(precision: str | torch.dtype | None, dtype: torch.dtype | None = None) -> str:
    """The precision a call asks for: ``precision`` if given, else the one ``dtype`` implies (float32,
    float64, bfloat16), else :func:`default`. ``"auto"`` with a ``dtype`` is that dtype's, as when ``"auto"`` is
    the default (``--precision auto``, the default written out, turned ``--dtype float32`` into bf16).

    Raises:
        BadInputError: ``precision`` and ``dtype`` contradict each other, or either is unknown.
    """
    by_dtype = check(dtype, "dtype") if dtype is not None else None
    if precision is None:
        return by_dtype or default()
    name = check(precision)
    if name == "auto" and by_dtype is not None:
        return by_dtype
    if by_dtype is not None and by_dtype != name and not (name == "bf16" and by_dtype == "float32"):
        raise BadInputError(
            f"dtype {by_dtype} (dtype=, --dtype) contradicts precision {name} (precision=, --precision); pass one of "
            f"them (precision: one of {', '.join(PRECISIONS)})"
        )
    return name


@contextlib.contextmanager
def default_as(precision: str | None):
    """Within the block :func:`default` is ``precision`` (None: unchanged), for this process and the worker
    processes it starts (through ``$SATCLIP_PRECISION``). The CLI's ``--precision`` for commands that load
    many models."""
    if precision is None:
        yield
        return
    from ..machine import environment_variable

    with environment_variable(ENV, check(precision)):
        yield


def weights_dtype(precision: str) -> torch.dtype:
    """The dtype the weights are kept in: float64 for ``"float64"``, else float32 (bf16 runs from float32
    masters, like autocast)."""
    return torch.float64 if check(precision) == "float64" else torch.float32


def compute_dtype(precision: str) -> torch.dtype:
    return {"float32": torch.float32, "bf16": torch.bfloat16, "float64": torch.float64}[check(precision)]


def cpu_capabilities() -> dict:
    """torch's cpuinfo flags for this CPU (``{"avx512_bf16": True, "amx_bf16": False, ...}``)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return dict(get())
    flags = {}  # torch < 2.8: the individual probes
    for name, probe in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_tile", "_is_amx_tile_supported")):
        fn = getattr(torch.cpu, probe, None)
        flags[name] = bool(fn()) if fn else False
    flags["amx_bf16"] = flags.pop("amx_tile")  # AMX-BF16 ships with AMX-TILE on every CPU that has it
    return flags


#: CPU features that give native bfloat16 matrix multiplication (x86: AMX-BF16, AVX512-BF16; Arm: BF16)
BF16_CPU_FEATURES = ("amx_bf16", "avx512_bf16", "sve_bf16", "bf16")


def bf16_support(device: str | torch.device = "cpu") -> tuple[bool, str]:
    """Whether ``device`` multiplies bfloat16 matrices natively, and the evidence.

    CPU: torch's cpuinfo flags (:func:`torch.cpu.get_capabilities`) for AMX-BF16, AVX512-BF16 or Arm BF16.
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is not used: it is true on any AVX-512 CPU, where
    oneDNN emulates bf16 more slowly than float32.) CUDA: ``torch.cuda.is_bf16_supported`` without
    emulation (compute capability ≥ 8.0). Other devices: no.
    """
    device = torch.device(device)
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported(including_emulation=False)
        name = torch.cuda.get_device_name(device)
        return supported, f"{name}: {'native' if supported else 'no native'} bf16"
    if device.type == "cpu":
        caps = cpu_capabilities()
        found = [f for f in BF16_CPU_FEATURES if caps.get(f)]
        if found:
            return True, "CPU with " + ", ".join(found)
        return False, f"CPU without {'/'.join(BF16_CPU_FEATURES[:2])}"
    return False, f"{device.type}: bf16 not used"


def describe_cpu() -> str:
    """``"AVX512 (amx_bf16, avx512_bf16)"``: torch's dispatch level and its bf16 matrix features."""
    caps = cpu_capabilities()
    found = [f for f in BF16_CPU_FEATURES if caps.get(f)]
    return f"{torch.backends.cpu.get_cpu_capability()} ({', '.join(found) if found else 'no bf16 matrix unit'})"


#: what ``"auto"`` can resolve to
AUTO_CHOICES = ("float32", "bf16")


@dataclass(frozen=True)
class Choice:
    """What a precision request resolved to: ``precision`` (never ``"auto"``), the ``requested`` name,
    ``reason`` in words, and for a calibrated ``"auto"`` the measured ``speedup`` of bf16 over float32 and
    the ``min_cosine`` between them on the probe points."""

    precision: str
    requested: str
    reason: str
    speedup: float | None = None
    min_cosine: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def probe_points(n: int = 2048) -> torch.Tensor:
    """The fixed calibration set ``(n + 12, 2)`` float64 (lon, lat): a Fibonacci lattice (uniform on the
    sphere) plus both poles, points 0.001° from them and the antimeridian."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    lat = torch.rad2deg(torch.asin(1 - 2 * i / n))
    lon = torch.remainder(i * 360 * (1 - 1 / ((1 + math.sqrt(5)) / 2)) + 180, 360) - 180
    special = torch.tensor(
        [[0, 90], [0, -90], [-180, 90], [180, -90], [45, 89.999], [-45, -89.999],
         [-180, 0], [180, 0], [-180, 45], [180, -45], [179.999, 60], [-179.999, -60]],
        dtype=torch.float64,
    )  # fmt: skip
    return torch.cat([torch.stack([lon, lat], 1), special])


def _fingerprint(module: torch.nn.Module, weights: bool = True) -> str:
    """A hash of the model's config and weights (``weights`` False: their names, shapes and dtypes only, what its
    speed depends on): the same for the same model however it was loaded (the config in canonical JSON: its repr
    followed the key order, and a model saved (config.json has sorted keys) and loaded again was calibrated anew,
    and could run in the other precision)."""
    digest = hashlib.blake2b(digest_size=16)
    config = getattr(module, "config", type(module).__name__)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        if weights:
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        else:
            digest.update(f"{tuple(tensor.shape)} {tensor.dtype}".encode())
    return digest.hexdigest()


#: the timing of each (device, threads, architecture) in this process (:func:`_calibrate`: its choice, no cosine)
_TIMED: dict[tuple, Choice] = {}
#: the choice for each (device, threads, model), the timing's with the model's cosine (:func:`_within_cosine`)
_CALIBRATED: dict[tuple, Choice] = {}
#: held while this process calibrates (threads of one process embedding at once calibrate once, not each)
_CALIBRATING = threading.Lock()


def _speedup(run, rounds: int = 5) -> float:
    """How many times faster ``run("bf16")`` is than ``run("float32")``: the best timing of each over ``rounds``
    rounds that run both in turn, after a warm-up call of each (plans, weight casts). Timed in turn, a burst of
    another job's work slows both alike or one round only; timed one after the other (the best of three of each)
    a second of it could fall on all of bf16's timings, and "auto" chose (and kept) float32 on a CPU where bf16
    is 3x faster."""
    best = {"float32": math.inf, "bf16": math.inf}
    for name in best:
        run(name)
    for _ in range(rounds):
        for name in best:
            start = time.perf_counter()
            run(name)
            best[name] = min(best[name], time.perf_counter() - start)
    return best["float32"] / best["bf16"]


def resolve(precision: str, encoder, device: str | torch.device | None = None) -> Choice:
    """Resolve ``precision`` for ``encoder`` (a :class:`~satclip.LocationEncoder`) on ``device`` (default:
    the encoder's). Anything but ``"auto"`` is returned as asked; ``"auto"`` is timed once per machine,
    architecture, device, thread count and torch version, the timing kept (:func:`calibration_file`), and the
    model's own cosine to float32 checked (:func:`_within_cosine`)."""
    requested = check(precision)
    if requested != "auto":
        return Choice(requested, requested, "requested")
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    supported, evidence = bf16_support(device)
    if not supported:
        choice = Choice("float32", "auto", f"{evidence}: bf16 would be emulated")
        log.info("precision auto -> float32 (%s)", choice.reason)
        return choice
    key = (str(device), torch.get_num_threads(), _fingerprint(encoder, weights=False))
    model = (*key, _fingerprint(encoder))
    with _CALIBRATING:
        if model not in _CALIBRATED:
            _CALIBRATED[model] = _choose(key, model, encoder, device, evidence)
        return _CALIBRATED[model]


def _choose(key: tuple, model: tuple, encoder, device: torch.device, evidence: str) -> Choice:
    """The choice for ``model`` (``key`` and the weights' fingerprint): kept from an earlier run, else the timing of
    ``key``'s architecture (:func:`_timing`) with this model's cosine (:func:`_within_cosine`), then kept (the cosine
    takes 0.3 s at L = 40 on a busy core: not paid on every load)."""
    file = calibration_file(device, model)
    kept = _read_calibration(file)
    if kept is not None:  # (said as a fresh choice is: it was a debug line, and Python's callers saw nothing)
        log.info("precision auto -> %s (%s; chosen before on this machine, %s: delete %s to measure again)",
                 kept.precision, kept.reason, file, file.parent)  # fmt: skip
        return kept
    timed, where = _timing(key, encoder, device, evidence)
    choice = _within_cosine(timed, encoder, device, evidence)
    cosine = "" if choice.min_cosine is None else f"; min cosine to float32 {choice.min_cosine:.6f}"
    log.info("precision auto -> %s (%s%s; %s)", choice.precision, choice.reason, cosine, where)
    _keep_calibration(file, choice, warn=False)  # (a cache that keeps no timing was said to)
    return choice


def _timing(key: tuple, encoder, device: torch.device, evidence: str) -> tuple[Choice, str]:
    """The timing of ``key``'s architecture (:func:`_calibrate`: a choice before the cosine) and where it came from,
    in words: this process, a kept file, or timed now (:func:`_calibrate_once`)."""
    if key in _TIMED:
        return _TIMED[key], "timed before in this process for the same architecture"
    file = calibration_file(device, key)
    timed = _read_calibration(file)
    if timed is None:
        timed, where = _calibrate_once(file, encoder, device, evidence)
    else:
        where = f"timed before on this machine for the same architecture, {file}"
    _TIMED[key] = timed
    return timed, where


def calibration_file(device: torch.device, key: tuple):
    """Where the calibration of ``key`` (device, threads, architecture fingerprint: the timing; and the weights'
    fingerprint: the choice) on this machine is kept: a file
    under ``$SATCLIP_CACHE/precision/`` named by a hash of the key, the machine (CPU or GPU model, the
    instruction set torch dispatches to) and the torch version."""
    import json
    import platform

    from ..paths import cache_dir

    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    identity = [*map(str, key), hardware, torch.backends.cpu.get_cpu_capability(), platform.machine(),
                torch.__version__, CALIBRATION_METHOD]  # fmt: skip
    name = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]
    return cache_dir("precision", f"{name}.json")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`; ``""`` when unknown)."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        import platform

        return platform.processor()


def _read_calibration(file) -> Choice | None:
    import json

    try:
        choice = Choice(**json.loads(file.read_text()))
    except (OSError, ValueError, TypeError):  # none yet, or unreadable: measure (again)
        return None
    return choice if choice.precision in AUTO_CHOICES and choice.requested == "auto" else None


def _calibrate_once(file, encoder, device: torch.device, evidence: str) -> tuple[Choice, str]:
    """Time bf16 (:func:`_calibrate`) and keep the choice in ``file``, holding its lock
    (:func:`safe_output.exclusive`): processes starting at once on a fresh cache (shards of one job) wait for the
    first one's timing and take its choice, rather than each measuring while the others load the machine (and
    choosing differently). In a cache that cannot be written (read-only, or a directory not satclip's) time
    without keeping it. Returns the choice and who timed it, in words."""
    from .. import safe_output
    from ..errors import SatclipError

    with contextlib.ExitStack() as locked:
        try:
            safe_output.make_owned_dir(file.parent, kind="precision-calibrations")
            locked.enter_context(safe_output.exclusive(file, wait=True, doing=f"calibrating precision ({file})"))
        except (OSError, SatclipError) as err:  # measure next time again
            _not_kept(file, err)
            return _calibrate(encoder, device, evidence), "timed now"
        choice = _read_calibration(file)  # made by the process waited for
        if choice is not None:
            return choice, f"timed by another process, {file}"
        choice = _calibrate(encoder, device, evidence)
        _keep_calibration(file, choice)
        return choice, "timed now"


def _keep_calibration(file, choice: Choice, warn: bool = True) -> None:
    from .. import safe_output
    from ..errors import SatclipError

    try:
        safe_output.make_owned_dir(file.parent, kind="precision-calibrations")
        safe_output.write_json(file, choice.as_dict())
    except (OSError, SatclipError) as err:  # a read-only cache, or a directory not ours: measure next time again
        if warn:
            _not_kept(file, err)
        else:
            log.debug("the precision choice is not kept in %s: %s", file, err)


def _not_kept(file, err: BaseException) -> None:
    """Say that the calibration in ``file`` could not be kept: "auto" measures again on every run then, and a busy
    machine can choose otherwise (it was a debug line, and embed's precision changed between runs unexplained)."""
    log.warning("could not keep the precision calibration in %s (%s): precision auto measures again on every run and "
                "may choose otherwise; set SATCLIP_CACHE to a directory you can write, or give the precision",
                file, err)  # fmt: skip


def _calibrate(encoder, device: torch.device, evidence: str) -> Choice:
    from .fused import encode_points
    from .location_encoder import in_eval_mode

    points = probe_points().to(device)

    evaluated = in_eval_mode(encoder)  # (the embeddings encode gives: no dropout, also for a module being trained)

    def run(precision, subset=None):
        out = encode_points(evaluated, points if subset is None else points[:subset], precision)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    # a quick look first: where bf16 is emulated (or slowed by the environment) it can be 100x slower, and
    # the full calibration would take a minute. (On so few points per-call costs dominate, so only a clear
    # loss counts: native bf16 measures ~1x here and 2-4x on the full probe set.)
    def quick_look() -> float:
        return _speedup(lambda p: run(p, PRESCREEN), rounds=1)

    quick = quick_look()
    if quick < 0.5:  # a second look: one timing on a busy machine can come out many times too slow
        quick = max(quick, quick_look())
    if quick < 0.5:
        return Choice("float32", "auto", f"{evidence}, but bf16 measured {quick:.2f}x float32 on {PRESCREEN} probe "
                      "points", quick)  # fmt: skip
    speedup = statistics.median(_speedup(run) for _ in range(MEASUREMENTS))
    if speedup < MIN_SPEEDUP:
        return Choice("float32", "auto", f"{evidence}, but bf16 measured {speedup:.2f}x float32", speedup)
    return Choice("bf16", "auto", f"{evidence}; bf16 measured {speedup:.1f}x float32", speedup)


def _within_cosine(timed: Choice, encoder, device: torch.device, evidence: str) -> Choice:
    """The timing's choice for this model: float32 where bf16 embeds a probe point at a cosine below
    :data:`MIN_COSINE` to float32 (which depends on the weights; the timing does not). ``evidence``: why bf16 is
    native here (:func:`bf16_support`), which a refusal's reason starts with."""
    if timed.precision != "bf16":
        return timed
    from .fused import encode_points
    from .location_encoder import in_eval_mode

    evaluated, points = in_eval_mode(encoder), probe_points().to(device)
    reference, fast = (encode_points(evaluated, points, name).double() for name in ("float32", "bf16"))
    cosine = torch.nn.functional.cosine_similarity(reference, fast, dim=1).min().item()
    if cosine < MIN_COSINE:
        reason = f"{evidence}, but bf16 cosine {cosine:.6f} < {MIN_COSINE}"
        return Choice("float32", "auto", reason, timed.speedup, cosine)
    return Choice("bf16", "auto", timed.reason, timed.speedup, cosine)


def configure(encoder, precision: str | torch.dtype | None = None, dtype: torch.dtype | None = None):
    """Put ``encoder``'s weights in the dtype ``precision`` (or ``dtype``) needs and record the resolved
    choice as ``encoder.precision`` (a name) and ``encoder.precision_choice`` (a :class:`Choice`), which
    :meth:`~satclip.LocationEncoder.encode` uses. ``"auto"`` is calibrated here (:func:`resolve`).
    Returns ``encoder``."""
    wanted = requested(precision, dtype)
    target = weights_dtype(wanted if wanted != "auto" else "float32")
    if next(encoder.parameters()).dtype == torch.float64 and target != torch.float64:
        encoder.weights_rounded = True  # float64 weights (the released location networks) kept in float32
    elif target == torch.float64 and getattr(encoder, "weights_rounded", False):
        _warn_rounded(encoder)
    encoder.to(dtype=target)
    record(encoder, resolve(wanted, encoder))
    return encoder


def record(encoder, choice: Choice) -> None:
    """Record ``choice`` as the precision ``encoder.encode`` runs in (its weights already in the dtype it needs)."""
    encoder.__dict__["recorded_precision"] = choice.precision
    encoder.precision_choice = choice


def for_encoder(encoder, precision: str | torch.dtype | None = None) -> str:
    """The resolved precision :meth:`~satclip.LocationEncoder.encode` runs in: ``precision`` if given
    (``"auto"`` calibrated), else the one :func:`configure` recorded while the weights are still in its
    dtype, else the weights' own dtype (float64 weights: ``"float64"``, else ``"float32"``).

    Raises:
        BadInputError: the weights are 16-bit (after ``.half()`` or ``.bfloat16()``): ``encode`` computed with them
            while the precision read "float32" (up to 1e-2 off).
    """
    weights = next(encoder.parameters()).dtype
    if weights not in (torch.float32, torch.float64):
        raise BadInputError(
            f"the location weights are {str(weights).removeprefix('torch.')} (after .half() or .bfloat16()), which "
            "satclip does not compute with: call .float() first; encoder.precision = 'bf16' runs bf16 products over "
            "float32 weights"
        )
    if precision is not None:
        resolved = resolve(precision, encoder).precision
        if resolved == "float64" and getattr(encoder, "weights_rounded", False):
            _warn_rounded(encoder)
        return resolved
    recorded = getattr(encoder, "recorded_precision", None)
    if recorded is not None and weights_dtype(recorded) == weights:
        return recorded
    return "float64" if weights == torch.float64 else "float32"


def _warn_rounded(encoder) -> None:
    """Say once per encoder that float64 asked of weights rounded to float32 at load is not the file's float64."""
    if getattr(encoder, "rounded_warning_given", False):
        return
    encoder.rounded_warning_given = True
    log.warning(
        "computing in float64 with weights rounded to float32 when the model was loaded (the file holds float64 "
        "weights): embeddings differ from the file's by ~1e-7; load it with precision='float64' for exact values"
    )


def clear_calibrations() -> None:
    """Forget the calibrations of this process and those kept in ``$SATCLIP_CACHE/precision/`` (tests;
    after changing hardware settings): the next ``"auto"`` measures again."""
    from .. import safe_output
    from ..paths import cache_dir

    _CALIBRATED.clear()
    _TIMED.clear()
    safe_output.remove_owned(cache_dir("precision"))
