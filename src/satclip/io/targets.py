"""Writing a model for a reader (``native``, ``original``, ``torchgeo``, ``rshf``) and saying which readers
reproduce it, to what tolerance.

Tolerances are the largest embedding difference relative to the largest embedding value (float64, over
points on the whole sphere), as measured by tests/test_peer_exports.py; docs/export.md has the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInputError
from ..paths import expand_user
from ..safe_output import check_not_input
from . import TARGETS, basis, native, original, peers
from .onnx import A_FORMAT, SUFFIX_FORMATS
from .parts import ModelParts, check_metadata, pack

#: the target an output's suffix names
SUFFIX_TARGETS = {".ckpt": "original", ".pt": "torchgeo", ".pth": "torchgeo"}


def target_of(output: str | Path, otherwise: str = "native") -> str:
    """The target an output's name asks for: ``original`` for ``.ckpt``, ``torchgeo`` for ``.pt``/``.pth``, else
    ``otherwise`` (``save(path)``'s native directory; convert's depends on its source)."""
    return SUFFIX_TARGETS.get(Path(output).suffix.lower(), otherwise)
#: suffixes of files, which a directory target's output may not carry (``out.json`` was a directory)
FILE_SUFFIXES = (".safetensors", ".json", ".yaml", ".yml", ".zip", ".tar", ".gz", ".bin", ".pkl", ".pickle", ".h5",
                 ".npy", ".npz", ".txt")  # fmt: skip

#: the original's polynomials evaluated its way on both sides (float64): only summation order differs
SAME = 1e-12
#: two exact bases (different algorithms) after rescaling the first layer's columns
EXACT_BASES = 1e-9
#: the original's ``"analytic"`` polynomials against the exact basis, legendre_polys ≤ 20 (< 1e-8 per feature)
ANALYTIC_LOW_DEGREE = 1e-6
#: |latitude| up to which an L = 40 model reproduces to 1e-6 under the other basis (analytic vs exact)
HIGH_DEGREE_SAFE_LAT = 30.0
#: where the original code's loaders live: not in this package, whose name is the same
ORIGINAL_REPOSITORY = "the original repository (github.com/microsoft/satclip), not this package"
#: torchgeo's latitude clamp, said so that the tolerance is not read as holding at the poles
TORCHGEO_CLAMP = (f"for |lat| ≤ {peers.TORCHGEO_LAT_CLAMP}° only: it embeds latitudes beyond as "
                  f"±{peers.TORCHGEO_LAT_CLAMP}°, at the poles up to 3e-2 off for the shipped bluemarble "
                  "models")  # fmt: skip
#: its basis coefficients take torch's default dtype when built: .double() later leaves them rounded to float32
#: (embeddings off by ~2e-7)
TORCHGEO_DTYPE = "in float64: build it under torch.set_default_dtype(torch.float64), not with .double() afterwards"


def _torchgeo_note(note: str) -> str:
    """A torchgeo reader's note: its latitude clamp and dtype, then ``note`` (from :func:`across`)."""
    return "; ".join(x for x in (TORCHGEO_CLAMP, TORCHGEO_DTYPE, note) if x)


@dataclass(frozen=True)
class Reader:
    """A reader of a written model: ``name``, ``call`` (how to load the file), ``tolerance`` (largest
    relative embedding difference from satclip's model; 0 bitwise equal; ``None`` not reproduced) and a
    ``note`` (the region it holds in, or what differs)."""

    name: str
    call: str
    tolerance: float | None
    note: str = ""

    def how(self) -> str:
        """How it reproduces the model, with the note: "does NOT reproduce the model; at L = 40 …"."""
        if self.tolerance is None:
            how = "does NOT reproduce the model"
        elif self.tolerance == 0:
            how = "reproduces it exactly"
        else:
            how = f"reproduces it to {self.tolerance:.0e} relative (float64)"
        return how + ("; " + self.note if self.note else "")

    def describe(self) -> str:
        return f"{self.name}: {self.how()} — {self.call}"


@dataclass(frozen=True)
class Written:
    """A written model file or directory and the readers that reproduce it (``os.PathLike``)."""

    path: Path
    target: str
    readers: tuple[Reader, ...]

    def __fspath__(self) -> str:
        return str(self.path)

    def report(self) -> str:
        lines = [f"wrote {self.path} ({self.target})"]
        lines += [f"  {reader.describe()}" for reader in self.readers]
        return "\n".join(lines)


def _basis_of(parts: ModelParts) -> tuple[int, str] | None:
    encoding = parts.location_config["encoding"]
    if encoding["name"] != "sphericalharmonics":
        return None
    return int(encoding.get("legendre_polys", 10)), encoding.get("harmonics_calculation", basis.EXACT)


def across(legendre: int, model: str, reader: str) -> tuple[float | None, str]:
    """Tolerance and note of a reader computing basis ``reader`` (``"analytic"``: the original's float64
    polynomials; else an exact basis) for a model on satclip's basis ``model``."""
    if reader == "analytic" and basis.computes_original(model):  # the same polynomials, the same way
        return SAME, ""
    if basis.is_exact(model) and basis.is_exact(reader):  # exact bases, computed by different algorithms
        return EXACT_BASES, ""
    if legendre <= basis.ANALYTIC_EXACT_BELOW:  # the polynomials are within 1e-8 of exact at these degrees
        return ANALYTIC_LOW_DEGREE, ""
    if model == reader == "analytic":  # the same polynomials, evaluated otherwise (docs/conventions.md)
        return None, (
            f"it evaluates the original's 'analytic' polynomials in float64 as the original does, satclip evaluates "
            f"them more exactly: at L = {legendre} the two differ near the poles, within 1e-6 only for |lat| ≤ "
            f"{HIGH_DEGREE_SAFE_LAT:g}°; it reproduces satclip.load(…, harmonics_calculation='analytic-original') "
            "exactly"
        )
    return None, (
        f"at L = {legendre} the original's float64 'analytic' polynomials differ from the exact basis near the "
        f"poles: within 1e-6 only for |lat| ≤ {HIGH_DEGREE_SAFE_LAT:g}°"
    )


def _original_readers(parts: ModelParts, path: Path, full: bool) -> list[Reader]:
    label = original.original_basis(parts.location_config)
    found = _basis_of(parts)
    if found is None:
        tolerance = ANALYTIC_LOW_DEGREE
        note = "its encoding matches the original's to 1e-10 per feature (tests/test_encodings.py); not measured here"
    else:
        legendre, own = found
        tolerance, note = across(legendre, own, label)
    readers = [
        Reader("satclip", f"satclip.load({str(path)!r})", 0.0),
        Reader("rangegeo", f"rangegeo.load_satclip_location_encoder({str(path)!r})", tolerance, note),
        Reader(
            "original (location only)",
            f"get_satclip_loc_encoder({str(path)!r}, device) of satclip/load_lightweight.py in {ORIGINAL_REPOSITORY}",
            tolerance, note,
        ),  # fmt: skip
    ]
    if full:
        call = f"get_satclip({str(path)!r}) of satclip/load.py in {ORIGINAL_REPOSITORY}"
        readers.append(Reader("original (full model)", call, tolerance, note))
    if found is not None and parts.location_config["network"]["name"] == "siren":
        readers.append(_torchgeo_ckpt_reader(parts, path, label))
    return readers


def _torchgeo_ckpt_reader(parts: ModelParts, path: Path, label: str) -> Reader:
    """torchgeo's own ``.ckpt`` loading (``torchgeo.models.satclip.satclip(weights)``): the file's
    ``model.location.nnet.*`` weights, its hyper-parameters ignored, on the exact basis torchgeo computes."""
    legendre, own = _basis_of(parts)
    args = ", ".join(f"{k}={v}" for k, v in peers.torchgeo_arguments(parts).items())
    call = (f"torchgeo.models.satclip.SatCLIP({args}) given the file's model.location.nnet.* weights (as "
            "torchgeo reads a released .ckpt)")  # fmt: skip
    name = "torchgeo (its .ckpt loading)"
    if label == "closed-form":  # the first layer is rescaled for the original's closed-form basis
        return Reader(name, call, None, (
            f"its weights are for the original's 'closed-form' basis (L = {legendre} > {basis.ANALYTIC_EXACT_BELOW}), "
            f"which torchgeo does not compute: it loads them without error and embeds another function; for torchgeo "
            f"write {path.with_suffix('.pt').name} with --target torchgeo (target='torchgeo' in Python)"
        ))  # fmt: skip
    tolerance, note = across(legendre, own, basis.EXACT)
    return Reader(name, call, tolerance, _torchgeo_note(note))


def _torchgeo_readers(parts: ModelParts, path: Path) -> list[Reader]:
    legendre, own = _basis_of(parts)
    tolerance, note = across(legendre, own, basis.EXACT)
    back = 0.0 if own == basis.EXACT else tolerance
    args = ", ".join(f"{k}={v}" for k, v in peers.torchgeo_arguments(parts).items())
    return [
        Reader("satclip", f"satclip.load({str(path)!r})", back, note if back is None else ""),
        Reader(
            "torchgeo ≥ 0.10",
            f"torchgeo.models.satclip.SatCLIP({args}).load_state_dict(torch.load({str(path)!r}, weights_only=True))",
            tolerance, _torchgeo_note(note),
        ),  # fmt: skip
    ]


def _rshf_readers(parts: ModelParts, path: Path) -> list[Reader]:
    legendre, own = _basis_of(parts)
    tolerance, note = across(legendre, own, "analytic")
    back = EXACT_BASES if own == "closed-form" else 0.0  # closed-form weights were rescaled
    return [
        Reader("satclip", f"satclip.load({str(path)!r})", back),
        Reader(
            "rshf", f"rshf.satclip.SatClip.from_pretrained({str(path)!r}, strict=True).double()", tolerance, note,
        ),  # fmt: skip
    ]


def write(
    parts: ModelParts,
    output: str | Path,
    target: str,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    epoch: int = 0,
    global_step: int = 0,
) -> Written:
    """Write ``parts`` for ``target`` (one of :data:`TARGETS`) to ``output``, atomically.

    ``native`` and ``rshf`` write a directory, ``original`` a ``.ckpt`` and ``torchgeo`` a ``torch.save``
    state dict. The image encoder travels along in ``native`` and ``original`` when ``parts`` hold one.

    Raises:
        BadInputError: an unknown target, an ``output`` named for another kind of file
            (:func:`check_output_name`), metadata JSON cannot store (:func:`check_metadata`), or a model the
            target's reader cannot express (the message says what would work).
        OutputExistsError: ``output`` exists and may not be replaced.
    """
    output, inputs = expand_user(output), list(inputs)  # ("~/m" as satclip.load reads it: ./~/m was written)
    check_write(output, target, inputs)
    check_metadata(parts.metadata)
    if target == "native":
        native.write_native(output, parts.native_config(), pack(parts), overwrite=overwrite, inputs=inputs)
        return Written(output, target, (Reader("satclip", f"satclip.load({str(output)!r})", 0.0),))
    if target == "original":
        ckpt = original.checkpoint_for_original(parts, epoch=epoch, global_step=global_step)
        original.save_checkpoint(output, ckpt, overwrite=overwrite, inputs=inputs)
        return Written(output, target, tuple(_original_readers(parts, output, parts.has_image_encoder)))
    if target == "torchgeo":
        peers.write_torchgeo(output, parts, overwrite=overwrite, inputs=inputs)
        return Written(output, target, tuple(_torchgeo_readers(parts, output)))
    peers.write_rshf(output, parts, overwrite=overwrite, inputs=inputs)  # (target == "rshf")
    return Written(output, target, tuple(_rshf_readers(parts, output)))


def check_write(output: str | Path, target: str, inputs: list) -> None:
    """Raise unless ``target`` is known, ``output`` is none of ``inputs`` (said first: the model itself named as
    the output, its name fits or not) and its name fits ``target`` (:func:`check_output_name`). :func:`write` checks
    it; ``convert`` before reading its source too."""
    if target not in TARGETS:
        raise BadInputError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    check_not_input(output, inputs)
    check_output_name(output, target)


def fitting_name(output: Path, target: str) -> str:
    """``output``'s name as ``target`` writes it: without a file's suffix for a directory, else with the
    target's suffix."""
    if is_directory_target(target):
        return output.with_suffix("").name
    return output.with_suffix("").name + next(k for k, v in SUFFIX_TARGETS.items() if v == target)


def check_output_name(output: str | Path, target: str) -> None:
    """Raise unless ``output``'s name fits what ``target`` (one of :data:`TARGETS`) writes: a directory
    (``native``, ``rshf``) whose name has no file's suffix, or a file (``original``: ``.ckpt``, ``torchgeo``:
    ``.pt``/``.pth``, or no suffix). :func:`write` checks it; ``convert`` before reading its source too.

    Raises:
        BadInputError: an export's suffix (a Lightning pickle was written as ``x.onnx``); a suffix another target
            writes (a directory named ``c.ckpt``); a file's suffix on a directory (``out.json`` was a directory) or
            a file of another format (a pickle as ``out.safetensors``).
    """
    output, directory = Path(output), is_directory_target(target)
    suffix = output.suffix.lower()
    export_format = SUFFIX_FORMATS.get(suffix) if suffix not in SUFFIX_TARGETS else None
    if export_format is not None:
        raise BadInputError(f"{output}: its suffix {output.suffix} names {A_FORMAT[export_format]} export, which is "
                            f"not a model: export it with `satclip export --format {export_format} -o {output}`, "
                            "or name the output for a model (.ckpt, .pt, or a directory)")  # fmt: skip
    named = SUFFIX_TARGETS.get(suffix)
    if named not in (None, target):
        raise BadInputError(f"{output}: its suffix {output.suffix} means {named}, but the target is {target}: name it "
                            f"{fitting_name(output, target)}, or write {named} (drop --target; target={named!r} in "
                            "Python)")  # fmt: skip
    if directory and suffix in FILE_SUFFIXES:
        raise BadInputError(f"{output}: {target} is a directory of files, which a name ending in {output.suffix} "
                            f"would pass for a file: name it {fitting_name(output, target)}, or write a model file "
                            "(.ckpt, .pt)")  # fmt: skip
    if not directory and suffix and named is None:
        wanted = " or ".join(k for k, v in SUFFIX_TARGETS.items() if v == target)
        fitting = fitting_name(output, target)
        raise BadInputError(f"{output}: the {target} target writes a {wanted} file: name it {fitting}, or write a "
                            "directory (--target native; target='native' in Python)")  # fmt: skip


def check_target(location_config: dict, target: str) -> None:
    """Raise before any work when ``target`` cannot express a model with this location config (the image
    encoder is checked when written: a model whose image encoder the original does not know is written
    location-only by training, refused by ``convert`` unless ``location_only``)."""
    if target not in TARGETS:
        raise BadInputError(f"unknown export target {target!r}; known: {', '.join(TARGETS)}")
    if target in ("torchgeo", "rshf"):
        peers.check_target(location_config, target)
    elif target == "original":
        original.check_network(location_config)  # (no weights yet: training gives repeated layers their own)
        original.hparams_from_location_config(location_config)


def is_directory_target(target: str) -> bool:
    return target in ("native", "rshf")
