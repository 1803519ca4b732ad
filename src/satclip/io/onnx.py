"""Export a location encoder to ONNX or TorchScript: one file that maps ``(N, 2)`` float64 (lon, lat)
degrees to ``(N, D)`` embeddings and needs neither satclip nor (for ONNX) torch to run.

Spherical harmonics are exported as the stable recurrence (:mod:`satclip.encoding.legendre`) written
with plain tensor ops, evaluated in float64 inside the graph; the network runs in the encoder's dtype.
Models whose ``harmonics_calculation`` is ``"analytic"`` (the released checkpoints) are exported with
the same convention computed by the recurrence (``"analytic-stable"``): identical to ≤ 1e-12 at L = 10;
at L = 40 the original's float64 rounding near the poles is not reproduced (see docs/export.md).
Other positional encodings are traced as they are.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import safe_output
from ..encoding.spherical_harmonics import _RECURRENCE_CONVENTIONS, SphericalHarmonics
from ..errors import BadInputError, ExportError
from ..optional import require
from . import basis
from .resolve import encoder_files

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
#: output suffixes that name an export format
SUFFIX_FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript"}
#: suffixes of models ``satclip convert`` writes (checkpoints, native weights), never of an export
MODEL_SUFFIXES = (".ckpt", ".safetensors")
#: each export format as messages name it
A_FORMAT = {"onnx": "an ONNX", "torchscript": "a TorchScript"}
OPSET = 17


class ExportableSphericalHarmonics(nn.Module):
    """``(N, 2)`` (lon, lat) degrees → ``(N, L²)`` real spherical harmonics in float64, by the stable
    recurrence of :func:`satclip.encoding.legendre.real_spherical_harmonics` unrolled over degrees with
    out-of-place ops only (traceable, ONNX-exportable). Column ``l² + l + m`` holds (l, m)."""

    def __init__(self, degree: int, m0_scale: float, condon_shortley: bool):
        super().__init__()
        self.degree = degree
        m = torch.arange(degree, dtype=torch.float64)
        sign = (-1.0) ** m if condon_shortley else torch.ones_like(m)
        self.register_buffer("orders", m[None, :], persistent=False)
        cos_scale = torch.cat([torch.tensor([m0_scale], dtype=torch.float64), math.sqrt(2) * sign[1:]])
        self.register_buffer("cos_scale", cos_scale[None, :], persistent=False)
        self.register_buffer("sin_scale", (math.sqrt(2) * sign)[None, :], persistent=False)
        for l in range(degree):
            mm = torch.arange(max(l - 1, 0), dtype=torch.float64)
            a = torch.sqrt((4.0 * l * l - 1) / (l * l - mm * mm)) if l >= 2 else mm
            b = torch.sqrt(((l - 1.0) ** 2 - mm * mm) / (4.0 * (l - 1) ** 2 - 1)) if l >= 2 else mm
            self.register_buffer(f"a{l}", a[None, :], persistent=False)
            self.register_buffer(f"b{l}", b[None, :], persistent=False)
            self.register_buffer(f"reverse{l}", torch.arange(l, 0, -1), persistent=False)

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        lonlat = lonlat.to(torch.float64)
        lat_deg = lonlat[:, 1:2]
        lat = lat_deg * (math.pi / 180)
        x = -torch.sin(lat)  # cos θ with θ = lat + 90°
        s = torch.where(torch.abs(lat_deg) == 90, torch.zeros_like(lat), torch.cos(lat))  # sin θ, exactly 0 at poles
        phi = (lonlat[:, 0:1] + 180) * (math.pi / 180)
        angle = phi * self.orders  # (N, L)
        cos_part = torch.cos(angle) * self.cos_scale
        cos_part = torch.cat([torch.ones_like(phi) * self.cos_scale[:, :1], cos_part[:, 1:]], dim=1)
        sin_part = torch.sin(angle) * self.sin_scale  # column k: sin(kφ) (k ≥ 1 used)
        prev2 = prev = torch.ones_like(x) * (1.0 / math.sqrt(4 * math.pi))  # P̄_0^0, (N, 1)
        blocks = [prev * cos_part[:, :1]]
        for l in range(1, self.degree):
            pieces = []
            if l >= 2:
                a, b = getattr(self, f"a{l}"), getattr(self, f"b{l}")
                pieces.append(a * (x * prev[:, : l - 1] - b * prev2[:, : l - 1]))
            pieces.append(math.sqrt(2 * l + 1) * x * prev[:, l - 1 : l])
            pieces.append(math.sqrt((2 * l + 1) / (2 * l)) * s * prev[:, l - 1 : l])
            cur = torch.cat(pieces, dim=1)  # P̄_l^m, m = 0 … l
            reverse = getattr(self, f"reverse{l}")  # l … 1
            negative = torch.index_select(cur, 1, reverse) * torch.index_select(sin_part, 1, reverse)
            blocks.append(torch.cat([negative, cur * cos_part[:, : l + 1]], dim=1))
            prev2, prev = prev, cur
        return torch.cat(blocks, dim=1)


class ExportableEncoder(nn.Module):
    """``posenc`` (float64 features) followed by the network in its own dtype."""

    def __init__(self, posenc: nn.Module, nnet: nn.Module, dtype: torch.dtype, harmonics_calculation: str | None):
        super().__init__()
        self.posenc, self.nnet, self.dtype = posenc, nnet, dtype
        #: the spherical-harmonics basis the graph computes (None: another encoding)
        self.harmonics_calculation = harmonics_calculation

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        return self.nnet(self.posenc(lonlat.to(torch.float64)).to(self.dtype))


class CheckedInput(nn.Module):
    """A traced ``encoder`` (:class:`ExportableEncoder`) that refuses an input of another shape than ``(N, 2)``,
    scripted around it: the trace records no Python check (an ``(N, 3)`` input gave ``(N, D)`` embeddings)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        if lonlat.dim() != 2 or lonlat.size(1) != 2:
            raise ValueError("lonlat must be (N, 2): (longitude, latitude) in degrees, float64; got shape "
                             + str(lonlat.shape))  # fmt: skip
        return self.encoder(lonlat)


def location_side(encoder):
    """The location encoder to export: ``encoder``, or a whole SatCLIP model's; a source (a path, a name) is
    refused with what to pass instead.

    Raises:
        BadInputError: ``encoder`` is a path or name, not a loaded model.
    """
    if isinstance(encoder, (str, os.PathLike)):
        raise BadInputError(f"export takes a loaded location encoder, got the source {str(encoder)!r}: pass "
                            "satclip.load(source), or use `satclip export --model SOURCE`")  # fmt: skip
    if hasattr(encoder, "visual") and hasattr(encoder, "location"):  # a whole SatCLIP model: its location side
        location = copy.copy(encoder.location)  # (shares the weights; the user's model is left as it is)
        if hasattr(encoder, "provenance") and not hasattr(location, "provenance"):
            location.provenance = encoder.provenance  # (the metadata's "source" was empty)
        return location
    return encoder


def exportable(encoder) -> ExportableEncoder:
    """An export-friendly copy of ``encoder`` (a :class:`~satclip.LocationEncoder`, as :func:`location_side`
    gives it), CPU, eval mode.

    Raises:
        BadInputError: a retrieval-augmented encoder (its retrieved half is a search of a database, not a graph).
    """
    if hasattr(encoder, "database"):
        raise BadInputError(
            "a retrieval-augmented encoder cannot be exported: its retrieved half searches a database, which ONNX "
            "and TorchScript graphs do not hold; export the plain model (satclip.load without retrieval=) instead"
        )
    if getattr(encoder, "precision", None) == "bf16":  # (the file is written all the same: its float32 is closer)
        graph = str(next(encoder.nnet.parameters()).dtype).removeprefix("torch.")
        log.warning("the model computes in bf16 (precision='bf16'); the exported graph computes in %s, as the model "
                    "does with precision=%r: its embeddings differ from the model's bf16 ones by bf16's rounding",
                    graph, graph)  # fmt: skip
    posenc, calculation = encoder.posenc, None
    if isinstance(posenc, SphericalHarmonics):
        calculation = posenc.harmonics_calculation
        if calculation in STABLE_FOR:
            _say_basis(posenc.legendre_polys, calculation)
            calculation = basis.EXACT
        m0_scale, condon_shortley = _RECURRENCE_CONVENTIONS[calculation]
        posenc = ExportableSphericalHarmonics(posenc.legendre_polys, m0_scale, condon_shortley)
    else:
        posenc = copy.deepcopy(posenc).to(torch.float64)
    nnet = copy.deepcopy(encoder.nnet).cpu()
    return ExportableEncoder(posenc, nnet, next(nnet.parameters()).dtype, calculation).eval()


def _say_basis(legendre: int, calculation: str) -> None:
    """Say that the export computes the harmonics ``calculation`` as the exact basis, with a warning where that
    does not reproduce the model, as ``satclip convert`` says it of its readers (how closely the file does is
    measured once it is written: :func:`say_agreement`)."""
    from .targets import Reader, across

    reader = Reader("the export", "", *across(legendre, calculation, basis.EXACT))
    said = f" and {reader.how()}" if reader.tolerance is None else ""
    log.log(logging.INFO if reader.tolerance is not None else logging.WARNING,
            "the export computes the %r harmonics as the stable recurrence %r (same convention; the file's metadata "
            "says so)%s (docs/export.md: Accuracy)", calculation, basis.EXACT, said)  # fmt: skip


#: the released models' float64 evaluations of the printed polynomials ("analytic", and the original's own
#: "analytic-original"), which a graph computes as the exact harmonics of the same convention
STABLE_FOR = ("analytic", "analytic-original")


def metadata(encoder, module: ExportableEncoder) -> dict:
    """What travels inside the exported file ``module`` of ``encoder``: the config (its basis the one the file
    computes; the model's own under ``source_harmonics_calculation`` where that differs), provenance and the
    input/output contract."""
    from ..models.location_encoder import model_identity

    identity = model_identity(encoder)
    config = copy.deepcopy(encoder.config)
    computed, extra = module.harmonics_calculation, {}
    encoding = config.get("encoding") if isinstance(config, dict) else None
    if computed is not None and isinstance(encoding, dict) and encoding.get("harmonics_calculation") != computed:
        extra["source_harmonics_calculation"] = encoding.get("harmonics_calculation")
        encoding["harmonics_calculation"] = computed
    from .. import __version__
    from ..pretrained import recorded_name

    source = str(getattr(encoder, "provenance", {}).get("source", ""))
    return {
        "satclip_export": 1, "satclip_version": __version__, "config": config, **extra,
        "model_sha256": identity["sha256"], **_source_weights(source), "dtype": identity["dtype"],
        "embedding_dim": encoder.embedding_dim,
        "input": "lonlat: (N, 2) float64, (longitude, latitude) in degrees", "output": "embedding: (N, D)",
        "source": recorded_name(source),  # (a shipped model by its name, a local one by its file name)
    }  # fmt: skip


def _source_weights(source: str) -> dict:
    """``{"weights_sha256": …}`` of a native model directory ``source``, as its ``config.json`` records it (the
    sha256 of its ``model.safetensors``: what ties the export to the model's files), else ``{}``."""
    from . import native

    if not source or not Path(source).is_dir():
        return {}
    try:
        recorded = native.read_config(source).get(native.SHA256_KEY)
    except (BadInputError, OSError, ValueError):
        return {}
    return {native.SHA256_KEY: recorded} if isinstance(recorded, str) else {}


#: the points an export is traced with
TRACE_POINTS = torch.tensor([[0.0, 0.0], [13.4, 52.5], [-70.0, -33.4]], dtype=torch.float64)
#: checked in batches of other sizes before an export is published (a traced graph can keep the tracing
#: batch's size); poles and antimeridian included
CHECK_POINTS = torch.tensor(
    [[151.2, -33.9], [-179.9, 0.0], [180.0, 89.9], [0.0, -90.0], [-58.4, -34.6]], dtype=torch.float64
)


#: where :func:`say_agreement` compares an export with its model: a 10° grid's cell centres, and :data:`CHECK_POINTS`
AGREEMENT_POINTS = torch.cat([
    torch.cartesian_prod(torch.arange(-175.0, 180.0, 10.0), torch.arange(-85.0, 90.0, 10.0)).double(), CHECK_POINTS
])  # fmt: skip


def say_agreement(run, encoder, fmt: str) -> None:
    """Log how closely ``run`` (the exported file's forward, numpy in and out) reproduces ``encoder.encode`` in the
    precision of the weights exported, measured on :data:`AGREEMENT_POINTS` (`export` said "1e-06 relative
    (float64)" of a float32 file, a constant, and nothing at all for some models)."""
    precision = str(encoder.dtype).removeprefix("torch.")
    expected = encoder.encode(AGREEMENT_POINTS, precision=precision).double().cpu().numpy()
    difference = float(np.abs(np.asarray(run(AGREEMENT_POINTS.numpy()), dtype=np.float64) - expected).max())
    log.info("the %s file differs from the model's %s embeddings (encode) by at most %.1e absolute, %.1e of their "
             "largest entry, at %d points (a 10° grid, poles and antimeridian)", fmt, precision, difference,
             difference / max(float(np.abs(expected).max()), np.finfo(np.float64).tiny),
             len(AGREEMENT_POINTS))  # fmt: skip


def check_exported(run, module: nn.Module, fmt: str) -> None:
    """Raise :class:`ExportError` unless ``run`` (the exported file's forward, numpy in and out) gives what
    ``module`` does for batches of 0, 1 and 5 points."""
    for n in (0, 1, len(CHECK_POINTS)):
        points = CHECK_POINTS[:n]
        with torch.no_grad():
            expected = module(points).double().numpy()
        try:
            got = np.asarray(run(points.numpy()), dtype=np.float64)
        except Exception:  # e.g. a reshape to the tracing batch's size
            got = None
        if got is None or got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-5):
            raise ExportError(
                f"the {fmt} export of this model does not reproduce it for a batch of {n} point(s) (its encoding "
                f"{type(getattr(module, 'posenc', module)).__name__} does not trace to a graph of any batch size); "
                "nothing was written"
            )


def export_torchscript(encoder, path: str | Path, *, overwrite: bool = False) -> Path:
    """Trace to TorchScript; ``torch.jit.load(path)(lonlat_float64)`` runs it (extra file ``satclip.json``)."""
    path, encoder = Path(path), location_side(encoder)
    safe_output.check_output(path, overwrite=overwrite, inputs=encoder_files(encoder))
    module = exportable(encoder)
    with torch.no_grad():
        traced = torch.jit.script(CheckedInput(torch.jit.trace(module, TRACE_POINTS, check_trace=False)))
    with safe_output.atomic_file(path, overwrite=overwrite) as tmp:
        extra = {"satclip.json": json.dumps(metadata(encoder, module))}
        # (torch.jit.save to a file aborts on a full disk)
        safe_output.write_serialised(tmp, lambda buffer: torch.jit.save(traced, buffer, _extra_files=extra))
        loaded = torch.jit.load(str(tmp))
        with torch.no_grad():
            check_exported(lambda points: loaded(torch.from_numpy(points)).numpy(), module, "TorchScript")
            say_agreement(lambda points: loaded(torch.from_numpy(points)).numpy(), encoder, "TorchScript")
    return path


def export_onnx(encoder, path: str | Path, opset: int = OPSET, *, overwrite: bool = False) -> Path:
    """Export to ONNX (input ``lonlat`` (N, 2) float64, output ``embedding``; dynamic N), with the
    metadata in the model's ``metadata_props`` (key ``satclip``)."""
    onnx = require("onnx", "export", "ONNX export")
    path, encoder = Path(path), location_side(encoder)
    safe_output.check_output(path, overwrite=overwrite, inputs=encoder_files(encoder))
    ort = require("onnxruntime", "export", "checking the ONNX export")
    module = exportable(encoder)
    # (a full disk or file-size limit raised by torch's and onnx's writers names no file: it names the output)
    with safe_output.atomic_file(path, overwrite=overwrite) as tmp, safe_output.naming(path):
        try:
            with torch.no_grad():
                torch.onnx.export(
                    module, (TRACE_POINTS,), str(tmp), dynamo=False, opset_version=opset, input_names=["lonlat"],
                    output_names=["embedding"], dynamic_axes={"lonlat": {0: "n"}, "embedding": {0: "n"}},
                )  # fmt: skip
        except torch.onnx.errors.OnnxExporterError as err:
            first = str(err).split(";")[0].splitlines()[0]
            raise ExportError(f"this model cannot be exported to ONNX: {first}; export it to TorchScript") from err
        model = onnx.load(str(tmp))
        onnx.helper.set_model_props(model, {"satclip": json.dumps(metadata(encoder, module))})
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        check_exported(lambda points: session.run(None, {"lonlat": points})[0], module, "ONNX")
        say_agreement(lambda points: session.run(None, {"lonlat": points})[0], encoder, "ONNX")
    return path


def check_export_path(path: str | Path, fmt: str) -> None:
    """Refuse an unknown ``fmt``, and a ``path`` whose suffix is not one of ``fmt``'s (:data:`SUFFIX_FORMATS`): an
    ONNX file named ``x.ckpt``, ``x.pt``, ``x.txt`` or ``x`` was written without a word.

    Raises:
        BadInputError: naming the value and the fix.
    """
    if fmt not in FORMATS:
        raise BadInputError(f"export format {fmt!r} is not one of {list(FORMATS)}")
    safe_output.check_named(path)  # (its message first: "-" or "." has no suffix either)
    path = Path(path)
    suffix = path.suffix.lower()
    named = SUFFIX_FORMATS.get(suffix)
    fitting = path.with_suffix("")  # (foo.onnx.bak: write foo.onnx, not foo.onnx.onnx)
    if SUFFIX_FORMATS.get(fitting.suffix.lower()) != fmt:
        fitting = path.with_suffix(".onnx" if fmt == "onnx" else ".pt")
    if named is not None and named != fmt:
        raise BadInputError(f"{path} names {A_FORMAT[named]} file but the format is {fmt}: write {fitting} or "
                            f"export as {named} (--format {named})")  # fmt: skip
    if suffix in MODEL_SUFFIXES:
        raise BadInputError(f"{path} names a model ({suffix}), but an export is {A_FORMAT[fmt]} file for other "
                            f"runtimes: write {fitting} (`satclip convert` writes models)")  # fmt: skip
    if named != fmt:  # (another suffix, or none)
        *others, last = [own for own, its in SUFFIX_FORMATS.items() if its == fmt]
        names = f"{', '.join(others)} or {last}" if others else last
        said = f"not {path.suffix}" if suffix else "and this name has none"
        raise BadInputError(f"{path}: {A_FORMAT[fmt]} export is named {names}, {said}: write {fitting}")


def export(encoder, path: str | Path, fmt: str, *, overwrite: bool = False) -> Path:
    """Export ``encoder`` to ``path`` as ``fmt`` (``"onnx"`` or ``"torchscript"``); an existing ``path``
    is replaced only with ``overwrite``. A suffix of another format is refused (:func:`check_export_path`)."""
    safe_output.check_not_input(path, encoder_files(encoder))  # (said first: the model itself named as the output)
    check_export_path(path, fmt)
    safe_output.check_new_output(path)  # (said by the CLI before the model is loaded; here for Python's callers)
    exporters = {"onnx": export_onnx, "torchscript": export_torchscript}
    return exporters[fmt](encoder, path, overwrite=overwrite)
