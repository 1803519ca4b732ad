"""Known models: ``satclip.list_pretrained()`` and released checkpoints fetched at a pinned revision and
checked against their sha256 (on a faked hub transport)."""

from __future__ import annotations

import hashlib

import pytest

import satclip
from satclip import pretrained
from satclip.io import hub


def test_list_pretrained_names_released_then_shipped_models():
    names = satclip.list_pretrained()
    assert names[:6] == sorted(pretrained.RELEASED) and set(names[6:]) == set(pretrained.bundled_models())
    assert "satclip-vit16-l40" in names and "bluemarble-l10" in names


def test_released_models_carry_their_pin():
    vit = pretrained.RELEASED["satclip-vit16-l40"]
    assert vit.revision == "0ef2acc0b91d3c8cfdf4a0cc03207095989287ab"  # torchgeo 0.10.1's SatCLIP_Weights
    assert f"/resolve/{vit.revision}/" in vit.url
    unpinned = pretrained.RELEASED["satclip-resnet18-l10"]
    assert unpinned.revision is None and "/resolve/main/" in unpinned.url


@pytest.fixture
def served(monkeypatch, tmp_path):
    """``huggingface_hub.hf_hub_download`` serving one local file from its cache (HF_HUB_OFFLINE is set by
    conftest), recording the arguments."""
    hf = pytest.importorskip("huggingface_hub")
    path = tmp_path / "satclip-vit16-l40.ckpt"
    path.write_bytes(b"not really a checkpoint")
    calls = []

    def download(repo_id, filename, **kwargs):
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        return str(path)

    monkeypatch.setattr(hf, "hf_hub_download", download)
    return path, calls


def test_fetch_asks_for_the_pinned_revision_and_checks_the_sha256(served):
    path, calls = served
    model = pretrained.HubModel(
        "microsoft/SatCLIP-ViT16-L40", path.name, "0ef2acc0", hashlib.sha256(path.read_bytes()).hexdigest()
    )
    assert pretrained.fetch(model) == path
    assert calls[-1]["revision"] == "0ef2acc0" and calls[-1]["local_files_only"] is True


def test_a_file_with_another_sha256_is_refused(served):
    path, _ = served
    model = pretrained.HubModel("microsoft/SatCLIP-ViT16-L40", path.name, "0ef2acc0", "0" * 64)
    with pytest.raises(hub.DownloadError, match="sha256 .* expected 0000"):
        pretrained.fetch(model)


def test_a_verified_file_is_not_hashed_again_until_it_changes(served, monkeypatch):
    """Every load of a released model hashed its whole file (0.15 s per 200 MiB)."""
    path, _ = served
    model = pretrained.HubModel(
        "microsoft/SatCLIP-ViT16-L40", path.name, "0ef2acc0", hashlib.sha256(path.read_bytes()).hexdigest()
    )
    real, hashed = hub.file_digest, []
    monkeypatch.setattr(hub, "file_digest", lambda *a: hashed.append(1) or real(*a))
    for _ in range(3):
        assert pretrained.fetch(model) == path
    assert len(hashed) == 1
    path.write_bytes(b"changed since")  # (its size and time differ: checked again, and refused)
    with pytest.raises(hub.DownloadError, match="expected"):
        pretrained.fetch(model)
