"""Loading pickled (``torch.save``) checkpoints without running code from them."""

from __future__ import annotations

import pickle
import pickletools
import re
import warnings
import zipfile
import zlib
from pathlib import Path

import torch

from ..errors import BadInputError, SatclipError, is_flag
from ..paths import special_kind


class UntrustedCheckpointError(SatclipError, pickle.UnpicklingError):
    """A checkpoint needs Python objects outside the allowlist to be unpickled (a runtime refusal, exit 1);
    the message names them and says how to proceed if the file is trusted."""


class AttributeDict(dict):
    """Stand-in for Lightning's ``AttributeDict`` (a dict with attribute access) in old checkpoints."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(key) from err


# Globals Lightning checkpoints reference besides tensors and builtin containers. Each is data-only.
_ALLOWED = [
    (AttributeDict, "lightning.fabric.utilities.data.AttributeDict"),
    (AttributeDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (AttributeDict, "lightning.pytorch.utilities.parsing.AttributeDict"),
]


#: how a file torch writes starts: a zip archive (torch.save's format since 1.6) or a pickle (the older one)
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = b"\x80"
#: bytes read to tell a torch file's start (its magic number's pickle is 16 bytes, 26 with protocol 4's frame)
_PICKLE_HEAD = 32
#: how an ONNX model starts (protobuf ModelProto: field 1, ir_version, a small varint; then another field)
_ONNX_HEAD = re.compile(rb"\x08[\x01-\x7f][\x12\x1a\x22\x2a\x32\x3a\x42]")
#: what satclip loads, as messages about a file it does not load say it
_LOADS = ("satclip loads .ckpt checkpoints, torchgeo .pt state dicts (torch.save) and model directories "
          "(config.json + model.safetensors: native, or rshf's as satclip writes them)")  # fmt: skip
#: what to do with a file that is no checkpoint
_GIVE = f"{_LOADS}; give the right file"
#: what to say about an export handed back to satclip
_EXPORT = (
    "{path} is {kind} export, which satclip does not load: " + _LOADS + "; exports are for other runtimes "
    "({runtime}). Give satclip the model it was exported from"
)


#: what a refused model checkpoint's message says to do when the file is trusted
IF_TRUSTED = (
    "pass trust_checkpoint=True (CLI: --trust-checkpoint), or convert it once with `satclip convert FILE DIR "
    "--trust-checkpoint` and use the native directory, which needs no trust, from then on."
)


def check_trust(trust_checkpoint) -> bool:
    """``trust_checkpoint`` as a bool: True or False (a numpy bool too); anything else — ``"no"``, 0, None — is
    refused, not tested for truthiness (``"no"`` would unpickle the file fully).

    Raises:
        BadInputError: naming the value.
    """
    if is_flag(trust_checkpoint):
        return bool(trust_checkpoint)
    raise BadInputError(
        f"trust_checkpoint={trust_checkpoint!r} must be True or False (True unpickles a .ckpt fully, which runs any "
        "code it holds: only for files you trust)"
    )


def load_checkpoint(path: str | Path, *, trust_checkpoint: bool = False, if_trusted: str = IF_TRUSTED) -> dict:
    """``torch.load`` a checkpoint onto the CPU.

    By default only tensors, containers, primitive values and the allowlisted globals above are
    unpickled (``weights_only=True``). A file that needs anything else is refused with an
    :class:`UntrustedCheckpointError` naming the globals and saying, for a trusted file, ``if_trusted``;
    ``trust_checkpoint=True`` unpickles it fully, which runs whatever code the file contains: only do that
    for files you trust. A file torch cannot read (empty, truncated, corrupt, not written by ``torch.save``)
    is a :class:`BadInputError` saying so, as is a ``trust_checkpoint`` that is no bool (:func:`check_trust`).
    """
    trust_checkpoint = check_trust(trust_checkpoint)
    path = Path(path)
    if (kind := special_kind(path)) is not None:  # (reading a FIFO would wait for a writer)
        raise BadInputError(f"{path} is {kind}, not a checkpoint: give a .ckpt file or a native model directory")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    _check_intact(path)  # (torch reads a zip archive without checking its CRC-32s: a changed byte would be used)
    try:
        if trust_checkpoint:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_ALLOWED), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)  # (refused or read: said so)
            return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ImportError):
        raise  # the file system or a missing module, not the file's content: the CLI reports these as they are
    except pickle.UnpicklingError as err:
        if trust_checkpoint or torch_file_kind(path) not in ("zip", "pickle"):
            raise _unreadable(path, err) from err
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - not a zip checkpoint: read the pickle's opcodes instead
            unsafe = _pickle_globals(path)
        allowed = {name for _, name in _ALLOWED}
        names = [g for g in unsafe if g not in allowed]
        needs = (f"it needs the Python global(s) {', '.join(names)}, which could run arbitrary code" if names else
                 f"torch's safe loader cannot read it ({_torch_reason(err)}), and reading it fully could run "
                 "arbitrary code")  # fmt: skip
        raise UntrustedCheckpointError(
            f"refusing to unpickle {path}: {needs}. If you trust the file's origin, {if_trusted}"
        ) from err
    except Exception as err:  # noqa: BLE001 - unpickling garbage fails with any error type (KeyError, EOFError …)
        raise _unreadable(path, err) from err


def zip_problem(path: str | Path) -> str | None:
    """Why the zip archive at ``path`` (a checkpoint ``torch.save`` wrote) is damaged, or None: a record failing its
    CRC-32 check (a disk or copy error changed a byte), or an archive that cannot be read at all (truncated).

    Every record is read once (about as long as ``torch.load`` takes to read the file: tens of ms for a 55 MB
    checkpoint).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, zlib.error) as err:
        detail = "no archive directory at its end" if str(err) == "File is not a zip file" else str(err)
        return f"it is truncated or corrupt ({path.stat().st_size} bytes; zip: {detail})"
    return f"its record {bad!r} fails its CRC-32 check (a disk or copy error changed it)" if bad else None


def _check_intact(path: Path) -> None:
    """Refuse an export (ONNX, TorchScript) and a zip archive that fails its CRC-32 checks before torch reads it.

    Raises:
        BadInputError: naming the file, what it is and what to do.
    """
    kind = torch_file_kind(path)
    if kind == "onnx":
        raise BadInputError(_EXPORT.format(path=path, kind="an ONNX", runtime="onnxruntime"))
    if kind == "plain-pickle":  # (torch.load cannot read it, trusted or not: no trust advice, nothing unpickled)
        raise BadInputError(
            f"{path} is a Python pickle but not a torch checkpoint (torch.save's files start with torch's magic "
            f"number or are zip archives): {_GIVE}"
        )
    if kind != "zip":
        return  # (empty, the old pickle format or no torch file: torch's reading says which)
    try:
        with zipfile.ZipFile(path) as archive:
            torchscript = any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, EOFError, ValueError):
        torchscript = False  # (zip_problem says what is wrong with it)
    if torchscript:  # (torch.load would warn and hand it to torch.jit.load)
        raise BadInputError(_EXPORT.format(path=path, kind="a TorchScript", runtime="torch.jit.load"))
    problem = zip_problem(path)
    if problem:
        raise BadInputError(
            f"{path} is not a readable checkpoint: {problem}; download or copy it again, or give the right file"
        )
    with zipfile.ZipFile(path) as archive:  # (intact: zip_problem read it)
        names = archive.namelist()
    if not any(name.rsplit("/", 1)[-1] == "data.pkl" for name in names):  # (torch's own record: the pickle)
        raise BadInputError(
            f"{path} is a zip archive but not a torch checkpoint (no data.pkl among its {len(names)} entries, e.g. "
            f"{names[0] if names else 'none'}; a NumPy .npz is such an archive): {_GIVE}"
        )


def _pickle_globals(path: Path) -> list[str]:
    """The ``module.name`` globals the pickles of an old-format (not zip) torch file refer to, read from their
    opcodes without running anything (``GLOBAL`` names them; ``STACK_GLOBAL`` takes the last two strings)."""
    found: list[str] = []
    strings: list[str] = []
    with open(path, "rb") as fh:
        while fh.peek(1):  # (torch's old format is several pickles in a row, then raw tensor bytes)
            try:
                for opcode, arg, _ in pickletools.genops(fh):
                    if opcode.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str):
                        strings.append(arg)
            except Exception:  # noqa: BLE001 - bytes that are no pickle (the tensors): keep what was found
                break
    try:  # (what torch's safe loader reads anyway: tensors, storages, containers)
        from torch._weights_only_unpickler import _get_allowed_globals

        safe = set(_get_allowed_globals())
    except (ImportError, AttributeError):
        safe = set()
    return [name for name in dict.fromkeys(found) if name not in safe]


def _torch_reason(err: Exception) -> str:
    """The line of torch's weights-only refusal that says what failed."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if line.startswith(("Unsupported", "Trying to", "Can only"))]
    return (useful or lines or [type(err).__name__])[0]


def torch_file_kind(path: Path) -> str:
    """``"empty"``; ``"zip"`` or ``"pickle"`` (the file starts as one of the formats ``torch.save`` writes: a zip
    archive, or a pickle of torch's magic number, the older format's start); ``"plain-pickle"`` (a pickle of
    something else: no torch file); ``"onnx"`` (it ends in ``.onnx`` or starts as an ONNX model does); or
    ``"other"``."""
    with open(path, "rb") as fh:
        head = fh.read(_PICKLE_HEAD)
    if not head:
        return "empty"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_PICKLE_PROTOCOL):
        return "pickle" if _torch_magic(head) else "plain-pickle"
    return "onnx" if path.suffix.lower() == ".onnx" or _ONNX_HEAD.match(head) else "other"


def _torch_magic(head: bytes) -> bool:
    """Whether the pickle that starts ``head`` holds torch's magic number, read from its opcodes (nothing is
    unpickled), or ``head`` is too short to tell (a file cut short is a damaged torch file, not another one)."""
    try:
        for opcode, arg, _ in pickletools.genops(head):
            if opcode.name not in ("PROTO", "FRAME"):
                return opcode.name in ("LONG1", "LONG4", "LONG", "INT") and arg == torch.serialization.MAGIC_NUMBER
    except ValueError:  # (opcodes cut short at the end of head, or not a pickle's)
        return len(head) < _PICKLE_HEAD
    return False


def _unreadable(path: Path, err: Exception) -> BadInputError:
    """The error for a file torch cannot read, saying what it looks like: empty, a damaged torch file or
    not a torch file at all."""
    size = path.stat().st_size
    kind = torch_file_kind(path)
    if kind == "empty":
        reason = "the file is empty (0 bytes)"
    elif kind in ("zip", "pickle"):
        text = str(err).strip()
        detail = text.splitlines()[0].split(". ")[0] if text else type(err).__name__
        reason = f"it is truncated or corrupt ({size} bytes; torch: {detail})"
    else:
        reason = f"it is not a torch checkpoint ({size} bytes that are neither a zip archive nor a pickle)"
    return BadInputError(
        f"{path} is not a readable checkpoint: {reason}; download or export it again, or give the right file"
    )
