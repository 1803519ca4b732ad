"""Loading pickled (``torch.save``) checkpoints without running code from them."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..errors import BadInputError, SatclipError


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


def load_checkpoint(path: str | Path, *, trust_checkpoint: bool = False) -> dict:
    """``torch.load`` a checkpoint onto the CPU.

    By default only tensors, containers, primitive values and the allowlisted globals above are
    unpickled (``weights_only=True``). A file that needs anything else is refused with an
    :class:`UntrustedCheckpointError` naming the globals; ``trust_checkpoint=True`` unpickles it fully,
    which runs whatever code the file contains: only do that for files you trust. A file torch cannot
    read (empty, truncated, corrupt, not written by ``torch.save``) is a :class:`BadInputError` saying so.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        if trust_checkpoint:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_ALLOWED):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ImportError):
        raise  # the file system or a missing module, not the file's content: the CLI reports these as they are
    except pickle.UnpicklingError as err:
        if trust_checkpoint or _kind(path) != "torch":
            raise _unreadable(path, err) from err
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - not a zip checkpoint; fall back to torch's message
            unsafe = []
        allowed = {name for _, name in _ALLOWED}
        names = [g for g in unsafe if g not in allowed] or [str(err).splitlines()[0]]
        raise UntrustedCheckpointError(
            f"refusing to unpickle {path}: it needs the Python global(s) {', '.join(names)}, which could run "
            "arbitrary code. If you trust the file's origin, pass trust_checkpoint=True (CLI: "
            "--trust-checkpoint), or convert it once with `satclip convert FILE DIR --trust-checkpoint` and "
            "use the native directory, which needs no trust, from then on."
        ) from err
    except Exception as err:  # noqa: BLE001 - unpickling garbage fails with any error type (KeyError, EOFError …)
        raise _unreadable(path, err) from err


def _kind(path: Path) -> str:
    """``"empty"``, ``"torch"`` (the file starts as one of the formats ``torch.save`` writes: a zip archive,
    or a pickle in the older format) or ``"other"``."""
    with open(path, "rb") as fh:
        head = fh.read(len(_ZIP_MAGIC))
    if not head:
        return "empty"
    return "torch" if head.startswith((_ZIP_MAGIC, _PICKLE_PROTOCOL)) else "other"


def _unreadable(path: Path, err: Exception) -> BadInputError:
    """The error for a file torch cannot read, saying what it looks like: empty, a damaged torch file or
    not a torch file at all."""
    size = path.stat().st_size
    kind = _kind(path)
    if kind == "empty":
        reason = "the file is empty (0 bytes)"
    elif kind == "torch":
        text = str(err).strip()
        detail = text.splitlines()[0].split(". ")[0] if text else type(err).__name__
        reason = f"it is truncated or corrupt ({size} bytes; torch: {detail})"
    else:
        reason = f"it is not a torch checkpoint ({size} bytes that are neither a zip archive nor a pickle)"
    return BadInputError(
        f"{path} is not a readable checkpoint: {reason}; download or export it again, or give the right file"
    )
