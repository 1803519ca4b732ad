"""The peers' own loading code, for tests/test_peer_exports.py.

rangegeo and rshf are installed from PyPI (``--no-deps``, see install.sh) and imported unchanged.
torchgeo ≥ 0.10 needs Python ≥ 3.12 and cannot be installed here, so its ``torchgeo/models/satclip.py``
is read from its wheel (``pip download`` of a pinned version, checked by sha256, or ``$SATCLIP_TORCHGEO_WHEEL``)
and executed as a standalone module. Its only import that does not resolve is ``torchvision.models._api``
(``Weights``/``WeightsEnum``, used by its weights enum, not by the model): that one is stubbed while the file is
executed.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import ssl
import subprocess
import sys
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TORCHGEO_FILE = "torchgeo/models/satclip.py"


def rangegeo():
    return pytest.importorskip("rangegeo", reason="rangegeo cannot be imported: pip install --no-deps rangegeo einops")


def rshf_satclip():
    """``rshf.satclip`` (needs transformers and einops), with the TLS verification rshf turns off on import
    turned back on."""
    context = ssl._create_default_https_context
    try:
        return pytest.importorskip(
            "rshf.satclip", reason="rshf cannot be imported: pip install --no-deps rshf, plus einops and transformers"
        )
    finally:
        ssl._create_default_https_context = context


#: the torchgeo wheel read (pinned: a later release may change its SatCLIP module) and its sha256 on PyPI
TORCHGEO_VERSION = "0.10.1"
TORCHGEO_SHA256 = "b002fee686a34dcdec019adf28ce7cf912b39c26f92896ce549209490f9ac753"


def torchgeo_wheel(directory: Path) -> Path:
    """The torchgeo :data:`TORCHGEO_VERSION` wheel: ``$SATCLIP_TORCHGEO_WHEEL``, else downloaded with pip (skip if
    impossible, offline) and checked against :data:`TORCHGEO_SHA256` (a mismatch fails)."""
    given = os.environ.get("SATCLIP_TORCHGEO_WHEEL")
    if given:
        return Path(given)
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version",
        "3.12", "--dest", str(directory), f"torchgeo=={TORCHGEO_VERSION}",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"cannot download the torchgeo wheel ({err}); set SATCLIP_TORCHGEO_WHEEL=PATH")
    wheels = sorted(directory.glob("torchgeo-*.whl"))
    if not wheels:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot download the torchgeo wheel (pip: {tail}); set SATCLIP_TORCHGEO_WHEEL=PATH")
    digest = hashlib.sha256(wheels[-1].read_bytes()).hexdigest()
    assert digest == TORCHGEO_SHA256, f"{wheels[-1].name}: sha256 {digest}, not torchgeo {TORCHGEO_VERSION}'s"
    return wheels[-1]


@contextlib.contextmanager
def _weights_api_stub():
    """``torchvision.models._api`` with ``Weights``/``WeightsEnum`` while torchvision cannot be imported."""
    try:
        import torchvision.models._api  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or broken beside this torch
        pass
    else:
        yield
        return

    @dataclass
    class Weights:
        url: str
        transforms: object
        meta: dict = field(default_factory=dict)

    class WeightsEnum(enum.Enum):
        pass

    api = types.ModuleType("torchvision.models._api")
    api.Weights, api.WeightsEnum = Weights, WeightsEnum
    names = ("torchvision", "torchvision.models", "torchvision.models._api")
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(dict(zip(names, (types.ModuleType(names[0]), types.ModuleType(names[1]), api), strict=True)))
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def torchgeo_satclip(directory: Path) -> types.ModuleType:
    """torchgeo's ``models/satclip.py`` as a module (its ``SatCLIP`` is what ``torchgeo.models.satclip``
    builds)."""
    pytest.importorskip("einops", reason="torchgeo's satclip.py imports einops: pip install einops")
    wheel = torchgeo_wheel(directory)
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read(TORCHGEO_FILE).decode()
    module = types.ModuleType("torchgeo_models_satclip")
    module.__file__ = f"{wheel}/{TORCHGEO_FILE}"
    module.wheel = wheel.name
    with _weights_api_stub():
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the peer's own file
    return module


def torchgeo_from_ckpt(module: types.ModuleType, path: Path, **arguments):
    """What torchgeo's ``satclip(weights)`` does with a released ``.ckpt`` (its hyper-parameters ignored: the
    architecture comes from ``arguments``), on ``path``: ``SatCLIP(**arguments)`` built in float64, loaded strictly
    with the ``model.location.nnet.*`` tensors, in eval mode."""
    import torch

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # (its basis coefficients take the default dtype)
    try:
        model = module.SatCLIP(**arguments)
    finally:
        torch.set_default_dtype(default)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "model.location."  # torchgeo/models/satclip.py, satclip()
    state_dict = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix + "nnet.")}
    model.load_state_dict(state_dict, strict=True)
    return model.eval()
