"""satclip.load sources, safe unpickling, hub fallback and format conversion."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.io import hub, native, original
from satclip.io.safe_pickle import UntrustedCheckpointError

from .conftest import REFERENCE, require

CKPT_L10 = REFERENCE / "satclip-resnet18-l10.ckpt"


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(1)
    return np.stack([rng.uniform(-180, 180, 300), rng.uniform(-90, 90, 300)], 1)


def test_import_is_light():
    code = (
        "import sys, satclip; satclip.load; "
        "heavy = [m for m in ('lightning', 'pytorch_lightning', 'timm', 'torchgeo', 'rasterio', 'huggingface_hub', "
        "'sympy', 'pandas', 'matplotlib') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_original_needs_no_heavy_modules():
    require(CKPT_L10)
    code = (
        f"import sys, satclip; satclip.load({str(CKPT_L10)!r}); "
        "heavy = [m for m in ('lightning', 'pytorch_lightning', 'timm', 'torchgeo', 'rasterio', 'huggingface_hub') "
        "if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loaded_encoder_is_in_eval_mode_and_deterministic(points):
    encoder = satclip.load(require(CKPT_L10))
    assert not encoder.training
    assert encoder.dtype == torch.float32
    assert torch.equal(encoder.encode(points), encoder.encode(points))
    assert encoder.encode(points).shape == (300, 256)


class _Payload:
    """Pickles to a call that would create a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _malicious_checkpoint(tmp_path, legacy: bool):
    marker = tmp_path / "payload-ran"
    path = tmp_path / ("legacy.ckpt" if legacy else "evil.ckpt")
    ckpt = torch.load(require(CKPT_L10), weights_only=True)
    ckpt["callbacks"] = {"evil": _Payload(marker)}
    if legacy:
        with open(path, "wb") as fh:
            pickle.dump(ckpt, fh)
    else:
        torch.save(ckpt, path)
    return path, marker


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_without_running(tmp_path, legacy):
    path, marker = _malicious_checkpoint(tmp_path, legacy)
    with pytest.raises(UntrustedCheckpointError, match="trust_checkpoint=True") as info:
        satclip.load(path)
    if not legacy:
        assert "mkdir" in str(info.value)  # names the offending global
    assert not marker.exists()


def test_trust_checkpoint_opt_in_unpickles(tmp_path):
    path, marker = _malicious_checkpoint(tmp_path, legacy=False)
    satclip.load(path, trust_checkpoint=True)
    assert marker.exists()  # the opt-in really does run the file's code: that is why it is opt-in


def test_native_round_trip(tmp_path, points):
    out = tmp_path / "model"
    assert main(["convert", str(require(CKPT_L10)), str(out)]) == 0
    assert native.is_native(out)
    config, tensors = native.read_native(out)
    assert config["location_encoder"]["encoding"] == {
        "name": "sphericalharmonics",
        "legendre_polys": 10,
        "harmonics_calculation": "analytic",
    }
    assert any(k.startswith("visual.") for k in tensors) and "logit_scale" in tensors
    a = satclip.load(CKPT_L10, dtype=torch.float64).encode(points)
    b = satclip.load(out, dtype=torch.float64).encode(points)
    assert torch.equal(a, b)


def test_native_to_original_matches_released_layout(tmp_path):
    out = tmp_path / "model"
    back = tmp_path / "back.ckpt"
    assert main(["convert", str(require(CKPT_L10)), str(out)]) == 0
    assert main(["convert", str(out), str(back)]) == 0
    ours = torch.load(back, weights_only=True)
    theirs = torch.load(CKPT_L10, weights_only=True)
    assert ours["hyper_parameters"] == theirs["hyper_parameters"]
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key, value in theirs["state_dict"].items():
        assert torch.equal(ours["state_dict"][key], value), key
    # the original loader pops these three keys and then builds the model from the rest
    hparams = dict(ours["hyper_parameters"])
    for key in original.RELEASED_EXTRA_HPARAMS:
        hparams.pop(key)
    assert set(hparams) == set(original.RELEASED_HPARAMS)


def test_location_only_conversion(tmp_path, points):
    out = tmp_path / "loc"
    assert main(["convert", "--location-only", str(require(CKPT_L10)), str(out)]) == 0
    _, tensors = native.read_native(out)
    assert all(k.startswith("location.") for k in tensors)
    assert torch.equal(satclip.load(out).encode(points), satclip.load(CKPT_L10).encode(points))


def test_harmonics_override(points):
    exact = satclip.load(require(CKPT_L10), dtype=torch.float64, harmonics_calculation="analytic-stable")
    assert exact.posenc.harmonics_calculation == "analytic-stable"
    released = satclip.load(CKPT_L10, dtype=torch.float64)
    # at L = 10 the two bases agree to ~1e-12 (docs/conventions.md)
    assert torch.allclose(exact.encode(points), released.encode(points), atol=1e-9, rtol=0)


def test_registry_name_downloads_through_hub(monkeypatch, points):
    calls = []

    def fake_download(repo_id, filename):
        calls.append((repo_id, filename))
        return require(CKPT_L10)

    monkeypatch.setattr(hub, "_download", fake_download)
    encoder = satclip.load("satclip-resnet18-l10")
    assert calls == [("microsoft/SatCLIP-ResNet18-L10", "satclip-resnet18-l10.ckpt")]
    assert torch.equal(encoder.encode(points), satclip.load(CKPT_L10).encode(points))
    satclip.load("microsoft/SatCLIP-ResNet18-L10")
    assert calls[-1] == ("microsoft/SatCLIP-ResNet18-L10", "satclip-resnet18-l10.ckpt")


def test_offline_hub_error_says_what_to_fetch(monkeypatch):
    def offline(repo_id, filename):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(hub, "_download", offline)
    with pytest.raises(hub.DownloadError) as info:
        satclip.load("satclip-vit16-l40")
    message = str(info.value)
    assert "https://huggingface.co/microsoft/SatCLIP-ViT16-L40/resolve/main/satclip-vit16-l40.ckpt" in message
    assert "satclip.load('/path/to/satclip-vit16-l40.ckpt')" in message


def test_unknown_source_lists_known_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="satclip-resnet18-l10"):
        satclip.load("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a satclip model"):
        satclip.load(tmp_path / "empty")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        satclip.load(path)


def test_invalid_points_are_named():
    encoder = satclip.load(require(CKPT_L10))
    with pytest.raises(ValueError, match=r"row 1: \(lon=10.0, lat=95.0\).*swapped"):
        encoder.encode([[0.0, 0.0], [10.0, 95.0]])
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        encoder.encode([[0.0, 0.0, 1.0]])
