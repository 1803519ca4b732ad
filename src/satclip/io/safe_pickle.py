"""Loading pickled (``torch.save``) checkpoints without running code from them."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..errors import SatclipError


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


def load_checkpoint(path: str | Path, *, trust_checkpoint: bool = False) -> dict:
    """``torch.load`` a checkpoint onto the CPU.

    By default only tensors, containers, primitive values and the allowlisted globals above are
    unpickled (``weights_only=True``). A file that needs anything else is refused with an
    :class:`UntrustedCheckpointError` naming the globals; ``trust_checkpoint=True`` unpickles it fully,
    which runs whatever code the file contains: only do that for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if trust_checkpoint:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(_ALLOWED):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
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
