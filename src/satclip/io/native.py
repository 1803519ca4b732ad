"""The native model format: a directory with ``config.json`` and ``model.safetensors``.

``config.json``::

    {"format": "satclip", "format_version": 1,
     "location_encoder": {"encoding": {"name": …, **params}, "network": {"name": …, **params}},
     "image_encoder": null | {"name": …, **params},
     "metadata": {…}}

``model.safetensors`` holds ``location.*`` (the :class:`~satclip.LocationEncoder` state dict) and, for
full SatCLIP models, ``visual.*`` and ``logit_scale``. Safetensors cannot run code, so native models need
no trust decision.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FORMAT = "satclip"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def is_native(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read_native(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return ``(config, tensors)`` of a native model directory."""
    path = Path(path)
    if not is_native(path):
        raise FileNotFoundError(
            f"{path} is not a satclip model directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    config = json.loads((path / CONFIG_FILE).read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{path / CONFIG_FILE} is not a satclip config (format={config.get('format')!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {config['format_version']}; this satclip reads up to {FORMAT_VERSION}: "
            "upgrade satclip"
        )
    return config, load_file(path / WEIGHTS_FILE)


def write_native(path: str | Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write a native model directory atomically (a finished directory appears, or nothing)."""
    path = Path(path)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is ordinary data
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
