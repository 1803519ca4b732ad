"""Backbone weights for training (``model.image_encoder.weights``): a local file is read as checkpoints are
(nothing unpickled that could run code, one line naming a file that is not a state dict), a missing one is bad
input; a named one is downloaded through satclip's hub client (at once offline, sha256-checked)."""

from __future__ import annotations

import hashlib
import os
import re
import time
from types import SimpleNamespace

import pytest
import torch
import yaml

from satclip.cli import main

from .conftest import S2_EXAMPLES, one_error_line, require


def _cache_build(tmp_path, weights) -> int:
    config = {
        "model": {"image_encoder": {"name": "moco_resnet18", "weights": str(weights)}, "embed_dim": 8},
        "data": {"root": str(require(S2_EXAMPLES)), "cache": str(tmp_path / "cache")},
        "trainer": {"output_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return main(["cache", "build", "--config", str(path)])


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_weights_file_that_is_no_state_dict_is_one_line_naming_it(tmp_path, capfd):
    picture = tmp_path / "weights.pth"  # a PNG under a weights name
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    assert _cache_build(tmp_path, picture) == 2
    line = one_error_line(capfd.readouterr().err)
    assert line.startswith(f"satclip: error: {picture} is not a readable checkpoint: it is not a torch checkpoint")
    assert line.endswith("give the right file")
    assert not (tmp_path / "cache").exists()

    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.pth"
    torch.save({"conv1.weight": _RunsACommand(marker)}, hostile, _use_new_zipfile_serialization=False)
    assert _cache_build(tmp_path, hostile) == 1
    line = one_error_line(capfd.readouterr().err)
    assert line.startswith(f"satclip: error: refusing to unpickle {hostile}: it needs the Python global(s) ")
    assert "system" in line and "--trust-checkpoint" not in line and line.endswith("and give that file")
    assert not marker.exists()


def test_a_missing_weights_file_is_bad_input_naming_it(tmp_path, capfd):
    missing = tmp_path / "nosuch.pth"
    assert _cache_build(tmp_path, missing) == 2
    line = one_error_line(capfd.readouterr().err)
    assert f"no such file: {missing}" in line and "sentinel2_all_moco" in line


# ------------------------------------------------------------------ named weights: satclip's hub client
def _named(monkeypatch, tmp_path, data: bytes, prefix: str | None = None):
    """A BackboneWeights entry "test_moco" for resnet18 whose file name carries the sha256 prefix of ``data``."""
    from satclip.image import weights as backbone_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # (no copy torchgeo fetched elsewhere)
    prefix = prefix or hashlib.sha256(data).hexdigest()[:8]
    fake = backbone_weights.BackboneWeights(
        arch="resnet18", name="test_moco", repo_id="torchgeo/resnet18_test", filename=f"resnet18_test-{prefix}.pth",
        revision="a" * 40, torchgeo_enum="ResNet18_Weights.TEST",
    )  # fmt: skip
    monkeypatch.setitem(backbone_weights.BACKBONE_WEIGHTS, ("resnet18", "test_moco"), fake)
    return fake


@pytest.fixture
def online(monkeypatch):
    """As if the machine had network (conftest sets HF_HUB_OFFLINE=1); the transport is faked."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_named_weights_offline_say_at_once_what_to_fetch_and_where_to_put_it(tmp_path, monkeypatch, capfd):
    """hf_hub_download was called directly: ~25 s of retries and 11 lines of huggingface_hub's noise."""
    pytest.importorskip("huggingface_hub")
    from satclip.image import weights as backbone_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    rn18 = backbone_weights.BACKBONE_WEIGHTS["resnet18", "sentinel2_all_moco"]
    # no retries: they wait between attempts (a wall-clock bound fails on a busy machine; this cannot)
    monkeypatch.setattr(time, "sleep", lambda seconds: pytest.fail(f"waited {seconds} s to retry"))
    assert _cache_build(tmp_path, "sentinel2_all_moco") == 1
    line = one_error_line(capfd.readouterr().err)
    assert "resnet18_sentinel2_all_moco-59bfdff9.pth" in line and "HF_HUB_OFFLINE is set" in line
    assert f"fetch {rn18.url} on a machine with internet access and save it as {rn18.cache_path()}" in line
    assert "model.image_encoder.weights" in line and "satclip.load(" not in line


def test_named_weights_unreachable_hub_is_asked_once(tmp_path, monkeypatch, online):
    hf = pytest.importorskip("huggingface_hub")
    errors = pytest.importorskip("huggingface_hub.errors")
    from satclip import image
    from satclip.io.hub import DownloadError

    fake = _named(monkeypatch, tmp_path, b"x")
    calls = []

    def probe(url, **kwargs):
        calls.append(("metadata", url))
        raise ConnectionError("no route to host")

    def download(repo_id, filename, *, local_files_only=False, **kwargs):
        calls.append(("download", local_files_only))
        raise errors.LocalEntryNotFoundError("not in the cache")

    monkeypatch.setattr(hf, "get_hf_file_metadata", probe)
    monkeypatch.setattr(hf, "hf_hub_download", download)
    with pytest.raises(DownloadError, match=f"no route to host.*save it as {re.escape(str(fake.cache_path()))}"):
        image.create("moco_resnet18", weights="test_moco")
    assert [c[0] for c in calls] == ["metadata", "download"] and calls[-1] == ("download", True)  # no retries


def test_named_weights_are_checked_against_the_sha256_the_hub_publishes(tmp_path, monkeypatch, online):
    """The only check was the 8-hex sha256 prefix in the file name."""
    hf = pytest.importorskip("huggingface_hub")
    import torch

    from satclip import image
    from satclip.image.weights import BackboneWeightsError
    from satclip.io.hub import DownloadError

    state = {k: v for k, v in image.create("moco_resnet18").state_dict().items() if not k.startswith("fc.")}
    served = tmp_path / "served.pth"
    torch.save(state, served)
    data = served.read_bytes()
    _named(monkeypatch, tmp_path, data)
    published = {"etag": hashlib.sha256(data).hexdigest()}
    monkeypatch.setattr(hf, "get_hf_file_metadata", lambda url, **kw: SimpleNamespace(etag=f'"{published["etag"]}"'))
    monkeypatch.setattr(hf, "hf_hub_download", lambda repo_id, filename, **kw: str(served))
    encoder = image.create("moco_resnet18", weights="test_moco")
    assert torch.equal(encoder.conv1.weight, state["conv1.weight"])

    published["etag"] = "0" * 64  # the hub publishes another file's sha256: refused
    with pytest.raises(DownloadError, match=f"has sha256 {hashlib.sha256(data).hexdigest()}, expected 0000"):
        image.create("moco_resnet18", weights="test_moco")

    published["etag"] = hashlib.sha256(data).hexdigest()  # the hub's own hash agrees, torchgeo's pin does not
    _named(monkeypatch, tmp_path, data, prefix="00000000")
    with pytest.raises(BackboneWeightsError, match="expected one starting with 00000000"):
        image.create("moco_resnet18", weights="test_moco")
