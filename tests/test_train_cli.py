"""``satclip cache build`` / ``satclip train`` through the real CLI on the 20 real Sentinel-2 patches, with
the fixture checkpoint's architecture (moco_resnet18, random backbone; SH L = 10, SIREN 512 → 256)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.data import s2_transform
from satclip.io.native import read_native
from satclip.io.original import read_original
from satclip.models.clip import SatCLIP
from satclip.train.sources import create_source

from .conftest import REFERENCE, S2_EXAMPLES, one_error_line, require

POINTS = np.array([[13.4, 52.5], [-58.4, -34.6], [151.2, -33.9]])


def _fixture_architecture(tmp_path, *extra) -> list[str]:
    return [
        "--data.root", str(require(S2_EXAMPLES)), "--data.dataset", "s2100k",
        "--model.image_encoder.name", "moco_resnet18", "--model.embed_dim", "256",
        "--model.location_encoder.network.dim_hidden", "512", "--trainer.enable_progress_bar", "false",
        "--trainer.output_dir", str(tmp_path / "run"), *extra,
    ]  # fmt: skip


def _check_export(directory, trained_shapes_like: dict) -> None:
    native, ckpt = directory, directory.with_suffix(".ckpt")
    expected = satclip.load(native).encode(POINTS)
    np.testing.assert_allclose(satclip.load(ckpt).encode(POINTS).numpy(), expected.numpy(), atol=1e-6)
    config, tensors = read_native(native)
    assert config["image_encoder"]["name"] == "moco_resnet18"
    visual = {k[len("visual."):]: tuple(v.shape) for k, v in tensors.items() if k.startswith("visual.")}
    assert visual == trained_shapes_like  # the released layout, key for key
    model = SatCLIP.from_config(config)
    model.load_state_dict(tensors)  # strict: the exported keys are exactly satclip.models.clip.SatCLIP's
    assert torch.equal(model.logit_scale.detach(), tensors["logit_scale"])
    original = read_original(ckpt)
    assert original.hparams["vision_layers"] == "moco_resnet18" and original.hparams["legendre_polys"] == 10
    assert original.hparams["capacity"] == 512 and original.hparams["embed_dim"] == 256


@pytest.fixture(scope="module")
def fixture_visual_shapes():
    ckpt = read_original(require(REFERENCE / "satclip-resnet18-l10.ckpt"))
    return {k: tuple(v.shape) for k, v in ckpt.visual_state_dict().items()}


def test_cache_build_verify_and_train_from_cache(tmp_path, capsys, fixture_visual_shapes):
    cache = tmp_path / "cache"
    args = _fixture_architecture(tmp_path, "--data.cache", str(cache), "--data.cache_views", "1",
                                 "--data.batch_size", "8", "--trainer.max_epochs", "1")  # fmt: skip
    assert main(["cache", "build", *args]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["shape"] == [20, 1, 512] and manifest["complete"]
    assert main(["cache", "verify", str(cache)]) == 0
    capsys.readouterr()
    assert main(["cache", "verify", *args, "--json"]) == 0  # matches the config: not stale
    assert json.loads(capsys.readouterr().out) == {
        "path": str(cache), "ok": True, "shape": [20, 1, 512], "problems": [], "notes": [], "recomputed": 0,
        "max_abs_diff": None,
    }  # fmt: skip
    # a config with another backbone is reported stale
    assert main(["cache", "verify", *args, "--trainer.seed", "1"]) == 1
    assert "stale" in capsys.readouterr().out

    assert main(["train", *args]) == 0
    out = capsys.readouterr().out
    assert "best:" in out and "last:" in out
    assert f"feature cache: {cache}" in out.splitlines()  # (a cache built from data.root was named at debug only)
    for name in ("best", "last"):
        _check_export(tmp_path / "run" / "export" / name, fixture_visual_shapes)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["val_loss"])
    # the exported backbone is the cache's: its features equal the cached ones
    config, tensors = read_native(tmp_path / "run" / "export" / "last")
    encoder = satclip.image.from_config(config["image_encoder"])
    encoder.load_state_dict({k[len("visual."):]: v for k, v in tensors.items() if k.startswith("visual.")})
    image, _ = create_source("s2100k", str(S2_EXAMPLES)).raw(0)
    with torch.no_grad():
        fresh = encoder.eval().encode_features(s2_transform(False).image(image)[None]).numpy()
    cached = np.load(cache / "features.npy")[0, 0].astype(np.float32)
    np.testing.assert_allclose(fresh[0], cached, rtol=2e-3, atol=2e-3)  # float16 storage


def test_train_from_images_fast_dev_run(tmp_path, fixture_visual_shapes, capsys, caplog):
    """The result line said "epoch 1 of 3" (the config's max_epochs) where the log had said "epoch 1 of 1" (the one
    epoch fast_dev_run runs)."""
    args = _fixture_architecture(tmp_path, "--data.source", "images", "--data.batch_size", "4",
                                 "--trainer.fast_dev_run", "1", "--trainer.max_epochs", "3")  # fmt: skip
    with caplog.at_level("INFO"):
        assert main(["train", *args]) == 0
    assert "epoch 1 of 1: " in caplog.text
    assert capsys.readouterr().out.startswith("epoch 1 of 1: ")
    _check_export(tmp_path / "run" / "export" / "last", fixture_visual_shapes)


def test_cache_build_fits_a_data_fitted_backbone(tmp_path, capsys):
    """``mosaiks`` is fitted from the data (seeded) before caching; a second build finds the cache current."""
    args = [
        "--data.root", str(require(S2_EXAMPLES)), "--data.cache", str(tmp_path / "cache"), "--data.cache_views", "2",
        "--model.image_encoder.name", "mosaiks", "--set", "model.image_encoder.in_chans=13",
        "--set", "model.image_encoder.num_filters=4",
    ]  # fmt: skip
    assert main(["cache", "build", *args]) == 0
    from safetensors.torch import load_file

    backbone = load_file(tmp_path / "cache" / "backbone.safetensors")
    assert bool(backbone["fitted"]) and backbone["filters"].abs().sum() > 0
    features = np.load(tmp_path / "cache" / "features.npy")
    assert features.shape == (20, 2, 8) and np.abs(features).sum() > 0
    stamp = (tmp_path / "cache" / "features.npy").stat().st_mtime_ns
    assert main(["cache", "build", *args]) == 0  # same seed → same fit → same key: reused
    assert (tmp_path / "cache" / "features.npy").stat().st_mtime_ns == stamp
    # verify fits the backbone as build did: current, and fresh features equal the cached ones
    capsys.readouterr()
    assert main(["cache", "verify", *args, "--recompute", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["recomputed"] == 3 and report["max_abs_diff"] < 1e-2, report


def test_cache_verify_of_a_missing_directory_is_bad_input(tmp_path, capsys):
    """A path that does not exist was reported as a failed cache ('FAILED, shape ()', exit 1)."""
    assert main(["cache", "verify", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no such feature cache" in err and "nope" in err


def test_a_cache_inside_the_image_folder_of_data_root_is_refused(tmp_path, capsys):
    """`--data.cache ROOT/images/cache` wrote the cache into the dataset's image folder."""
    root = tmp_path / "s2"
    shutil.copytree(require(S2_EXAMPLES), root)
    images = root / "images"
    before = sorted(p.name for p in images.iterdir())
    args = ["--data.root", str(root), "--data.cache", str(images / "cache"), "--model.image_encoder.name", "mosaiks",
            "--set", "model.image_encoder.in_chans=13", "--set", "model.image_encoder.num_filters=4"]  # fmt: skip
    assert main(["cache", "build", *args]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"the output {images / 'cache'} is inside the image folder of data.root {images}" in line
    assert sorted(p.name for p in images.iterdir()) == before
