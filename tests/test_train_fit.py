"""Training from a feature cache: the loss falls, exports load with satclip.load, a killed and resumed
run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import satclip
from satclip.cli import main as cli_main
from satclip.errors import ResumeError
from satclip.io.native import read_native
from satclip.train import dump_config, fit, from_dict, load_config

from .conftest import one_error_line
from .train_helpers import SMALL_LOCATION, synthetic_cache, train_in_subprocess


def cached_config(cache_dir, output_dir, **sections) -> dict:
    config = {
        "model": {"embed_dim": 32, "image_encoder": {}, "location_encoder": SMALL_LOCATION},
        "data": {"source": "cache", "cache": str(cache_dir), "batch_size": 512},
        "optim": {"lr": 1e-3},
        "trainer": {"max_epochs": 5, "output_dir": str(output_dir), "enable_progress_bar": False},
    }
    for section, values in sections.items():
        config[section] = {**config[section], **values}
    return config


def test_cached_training_learns_and_exports(tmp_path):
    synthetic_cache(tmp_path / "cache", n=2000)
    result = fit(from_dict(cached_config(tmp_path / "cache", tmp_path / "run")))

    history = result.history
    assert [row["epoch"] for row in history] == [0, 1, 2, 3, 4]
    train, val = [r["train_loss"] for r in history], [r["val_loss"] for r in history]
    assert all(b < a for a, b in zip(val, val[1:], strict=False)), val
    assert val[-1] < val[0] - 1 and train[-1] < train[0] - 1
    # below chance (log of the batch size: 200 validation pairs, 512 training pairs)
    assert val[-1] < np.log(200) - 1.5 and train[-1] < np.log(512)
    assert history[-1]["val_acc_i2l"] > 10 / 200  # 10 × chance within the validation batch
    assert result.checkpoints["best"].name == "best.ckpt" and result.checkpoints["last"].name == "last.ckpt"

    # exports: native and original load with satclip.load and give the trained location encoder
    points = np.array([[13.4, 52.5], [-58.4, -34.6], [151.2, -33.9], [0.0, 89.0]])
    ckpt = torch.load(result.checkpoints["last"], weights_only=True)
    trained = result.model.location
    trained.load_state_dict({k[len("model.location.") :]: v for k, v in ckpt["state_dict"].items()
                             if k.startswith("model.location.")})  # fmt: skip
    expected = trained.eval().encode(points)
    for source in (result.exports["last"].native, result.exports["last"].original):
        np.testing.assert_allclose(satclip.load(source).encode(points).numpy(), expected.numpy(), atol=1e-6)
    config, tensors = read_native(result.exports["best"].native)
    assert config["image_encoder"]["name"] == "mosaiks" and config["image_encoder"]["embed_dim"] == 32
    assert config["location_encoder"]["network"]["num_classes"] == 32
    assert tensors["visual.head.weight"].shape == (32, 32) and "visual.filters" in tensors
    assert config["metadata"]["metrics"]["val_loss"] == pytest.approx(min(val), rel=1e-6)
    assert tensors["logit_scale"].shape == ()


def test_epochs_without_validation_record_no_validation_metrics(tmp_path):
    """With trainer.check_val_every_n_epoch = 2 the history gave the epochs without validation the previous
    epoch's val_loss (as if measured), and the best checkpoint warned at every one that val_loss was missing."""
    import warnings

    synthetic_cache(tmp_path / "cache", n=2000)
    every_other = {"max_epochs": 4, "check_val_every_n_epoch": 2}
    config = cached_config(tmp_path / "cache", tmp_path / "run", trainer=every_other)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(from_dict(config))
    assert not [w for w in caught if "could not find the monitored key" in str(w.message)]
    assert [("val_loss" in row, "train_loss" in row) for row in result.history] == [(False, True), (True, True)] * 2
    best = min((row["val_loss"], row["epoch"]) for row in result.history if "val_loss" in row)
    config_best, _ = read_native(result.exports["best"].native)
    assert config_best["metadata"]["metrics"]["val_loss"] == pytest.approx(best[0], rel=1e-6)


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path):
    synthetic_cache(tmp_path / "cache", n=200)
    base = cached_config(tmp_path / "cache", tmp_path / "straight", data={"batch_size": 64},
                         trainer={"max_epochs": 3})  # fmt: skip
    straight = train_in_subprocess(base, tmp_path / "straight-run")

    base["trainer"]["output_dir"] = str(tmp_path / "killed")
    train_in_subprocess(base, tmp_path / "killed-run", kill=("epoch", 2))
    partial = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert partial["epoch"] == 1  # epochs 0 and 1 finished before the kill

    with pytest.raises(FileExistsError, match="--resume"):
        fit(load_config(tmp_path / "killed-run" / "config.yaml"))
    session = train_in_subprocess(base, tmp_path / "resumed-run", resume=True)  # satclip train --resume
    assert [epoch for epoch, _ in session["batches"]] == [2] * 3  # the last epoch only (3 batches of 64)

    resumed = torch.load(session["checkpoints"]["last"], weights_only=True)
    reference = torch.load(straight["checkpoints"]["last"], weights_only=True)
    assert resumed["epoch"] == reference["epoch"] == 2
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for key, value in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    lines = (tmp_path / "killed" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]  # 0, 1 killed session; 2 resumed

    changed = from_dict({**base, "optim": {"lr": 0.5}})
    with pytest.raises(ResumeError, match=r"optim\.lr"):
        fit(changed, resume=True)
    synthetic_cache(tmp_path / "cache", n=200, seed=5)  # other images under the same path
    with pytest.raises(ResumeError, match="another feature cache"):
        fit(from_dict(base), resume=True)


def test_float32_location_encoder_agrees_with_float64():
    """The default new-model location encoder (exact SH L = 10, SIREN 512) in float32 vs the same weights
    in float64, over the whole globe: the float32 training path is accurate (see docs/training.md)."""
    from satclip.train.build import build_location_encoder
    from satclip.train.config import ModelConfig

    torch.manual_seed(0)
    encoder = build_location_encoder(ModelConfig()).eval()
    points = torch.from_numpy(np.concatenate([
        np.stack(np.meshgrid(np.linspace(-180, 180, 73), np.linspace(-90, 90, 37)), -1).reshape(-1, 2),
        [[180.0, 90.0], [-180.0, -90.0], [0.0, 0.0]],
    ]))  # fmt: skip
    with torch.no_grad():
        single = encoder(points).double()
        double = encoder.double()(points)
    error = (single - double).abs().max().item()
    assert error < 5e-6 * double.abs().max().item(), error  # measured: 5e-7 (float32 rounding)


@pytest.mark.slow
def test_two_process_ddp_training_runs_and_exports(tmp_path):
    """Lightning DDP (2 CPU processes, gloo): the sampler shards each global batch, the loss gathers over
    both ranks, rank 0 writes the history and the exports."""
    synthetic_cache(tmp_path / "cache", n=400)
    config = cached_config(tmp_path / "cache", tmp_path / "run", data={"batch_size": 64}, trainer={
        "max_epochs": 2, "accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})  # fmt: skip
    result = fit(from_dict(config))
    assert [row["epoch"] for row in result.history] == [0, 1]
    assert result.history[0]["step"] == 3  # 360 training pairs: global batches of 128, 128, 104 (52 per rank)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    points = np.array([[13.4, 52.5]])
    assert satclip.load(result.exports["last"].native).encode(points).shape == (1, 32)


def _train_cli(tmp_path, config: dict, *extra: str) -> int:
    config_file = tmp_path / "train.yaml"
    dump_config(from_dict(config), config_file)
    return cli_main(["train", "--config", str(config_file), *extra])


def test_a_run_whose_loss_becomes_nan_stops_naming_the_epoch_and_exports_nothing(tmp_path, capsys):
    """A learning rate far too high made the loss NaN: the run finished (exit 0) and exported models that
    satclip.load refuses."""
    synthetic_cache(tmp_path / "cache", n=200)
    config = cached_config(tmp_path / "cache", tmp_path / "run", data={"batch_size": 64}, optim={"lr": 1000.0})
    assert _train_cli(tmp_path, config) == 1
    started, line = capsys.readouterr().err.strip().splitlines()  # (what the run trains on, then the error)
    assert started.startswith("training on 200 images of the feature cache ")
    line = one_error_line(line)
    assert "training diverged: the training loss is nan in epoch 0" in line and "lower optim.lr (now 1000)" in line
    assert not (tmp_path / "run" / "export").exists()


def test_a_prebuilt_cache_of_other_views_or_dtype_is_refused_naming_both(tmp_path, capsys):
    """With data.root unset the cache was opened as is: data.cache_views and data.cache_dtype were ignored and
    config.yaml recorded values the cache does not have."""
    synthetic_cache(tmp_path / "cache", n=200, views=4)
    config = cached_config(tmp_path / "cache", tmp_path / "run", trainer={"max_epochs": 1})
    assert _train_cli(tmp_path, config, "--data.cache_dtype", "float32") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "holds 4 views of float16 features, the config says data.cache_views=8, data.cache_dtype=float32" in line
    assert "--data.cache_views 4 --data.cache_dtype float16" in line
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert _train_cli(tmp_path, config, "--data.cache_views", "4") == 0
    assert load_config(tmp_path / "run" / "config.yaml").data.cache_views == 4


def test_a_cut_short_cache_backbone_is_refused_before_training(tmp_path, capsys):
    """A truncated backbone.safetensors: verify crashed ("unexpected error (SafetensorError)") and training
    ran every epoch, then crashed at the export."""
    synthetic_cache(tmp_path / "cache", n=200)
    backbone = tmp_path / "cache" / "backbone.safetensors"
    backbone.write_bytes(backbone.read_bytes()[:-8])
    assert cli_main(["cache", "verify", str(tmp_path / "cache")]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and f"{backbone} is damaged" in out
    assert _train_cli(tmp_path, cached_config(tmp_path / "cache", tmp_path / "run")) == 2
    assert f"{backbone} is damaged" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_fit_names_a_cache_or_source_of_the_wrong_kind(tmp_path):
    """fit(cache=<a dataset>) or source=<a plain Dataset> failed with an AttributeError inside, after claiming
    the run directory."""
    from satclip.train import fit, from_dict

    config = from_dict({"trainer": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(TypeError, match="cache must be a FeatureCache or its directory, got list"):
        fit(config, cache=[1, 2])
    with pytest.raises(TypeError, match="source must be a PairSource"):
        fit(config, source=[1, 2])
    assert not (tmp_path / "run").exists()


def test_the_python_api_is_told_the_python_form_of_the_fix(tmp_path):
    """fit()'s refusals advised `--resume` and `--trainer.max_epochs 2`, flags a Python caller has none of: each also
    says the Python form (``resume=True`` …), as the output-exists errors say ``overwrite=True``."""
    synthetic_cache(tmp_path / "cache", n=200)
    base = cached_config(tmp_path / "cache", tmp_path / "run", data={"batch_size": 64}, trainer={"max_epochs": 2})
    fit(from_dict(base))
    with pytest.raises(FileExistsError, match=re.escape("continue it with --resume (resume=True in Python)")):
        fit(from_dict(base))
    fewer = {**base, "trainer": {**base["trainer"], "max_epochs": 1}}
    with pytest.raises(ValueError, match=re.escape("--trainer.max_epochs 2 or more ({'trainer.max_epochs': 2} in")):
        fit(from_dict(fewer), resume=True)
    elsewhere = {**base, "trainer": {**base["trainer"], "output_dir": str(tmp_path / "new")}}
    with pytest.raises(FileNotFoundError, match=re.escape("(start without --resume (resume=False in Python))")):
        fit(from_dict(elsewhere), resume=True)


def test_a_cache_replaced_while_the_run_trains_is_not_exported_with_its_new_backbone(tmp_path):
    """`satclip cache build` with other settings (another seed) replaced the cache during training: the export read
    the new backbone.safetensors by path and paired it with the head trained on the old features, while its metadata
    recorded the old backbone_sha256; exit 0, no word. It is refused, naming the fix, and nothing is exported."""
    import lightning.pytorch as pl

    from satclip import image
    from satclip.errors import EXIT_RUNTIME, ResumeError
    from satclip.train.cache import write_cache

    from .train_helpers import TinyImages

    cache = synthetic_cache(tmp_path / "cache", n=200)
    other = image.create("mosaiks", in_chans=3, num_filters=16, kernel_size=3).fit(TinyImages(10, 1).images, seed=1)

    class Rebuild(pl.Callback):  # (the other build finishes as this run's last epoch ends)
        def on_train_end(self, trainer, module):
            write_cache(cache.path, np.asarray(cache.features), cache.lonlat, other, fingerprint="synthetic-200-0")

    config = from_dict(cached_config(cache.path, tmp_path / "run", trainer={"max_epochs": 1}))
    with pytest.raises(ResumeError, match=re.escape(
            f"{cache.path / 'backbone.safetensors'} is not the backbone whose features this run trained on")) as err:
        fit(config, callbacks=[Rebuild()])
    assert f"`satclip train --config {tmp_path / 'run' / 'config.yaml'} --resume` writes its exports" in str(err.value)
    assert err.value.exit_code == EXIT_RUNTIME
    assert not (tmp_path / "run" / "export" / "last").exists() and not (tmp_path / "run" / "export" / "best").exists()
