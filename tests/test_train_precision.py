"""Training from the feature cache with the precision switch (issue 14): bf16 autocast on the image head
and the location network, losses equal to float32's to two decimals over the first epochs."""

from __future__ import annotations

import json
import logging
from importlib import resources

import pytest
import torch
from safetensors.torch import load_file

from satclip.models import precision as inference_precision
from satclip.train import fit, from_dict, load_config, precision

from .test_train_fit import cached_config
from .train_helpers import synthetic_cache


def test_switch_names_map_to_lightning(monkeypatch):
    assert precision.resolve("float32") == ("32-true", False)
    assert precision.resolve("float64") == ("64-true", False)
    assert precision.resolve("bf16") == ("bf16-mixed", True)
    assert precision.resolve("bf16-mixed") == ("bf16-mixed", False)  # Lightning's own: location in float32
    monkeypatch.setattr(inference_precision, "bf16_support", lambda device="cpu": (False, "faked"))
    assert precision.resolve("auto", "cpu") == ("32-true", False)
    monkeypatch.setattr(inference_precision, "bf16_support", lambda device="cpu": (True, "faked"))
    assert precision.resolve("auto", "cpu") == ("bf16-mixed", True)
    with pytest.raises(ValueError, match="trainer.precision"):
        from_dict({"trainer": {"precision": "half"}})


def test_float16_autocast_on_the_cpu_is_refused_before_the_run(tmp_path, monkeypatch, capsys):
    """`16-mixed` on a CPU run: Lightning trained in bf16-mixed, with a warning, while config.yaml and the exports
    said 16-mixed."""
    import yaml

    from satclip.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    synthetic_cache(tmp_path / "cache", n=50)
    path = tmp_path / "config.yaml"
    config = cached_config(tmp_path / "cache", tmp_path / "run", trainer={"precision": "16-mixed"})
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path)]) == 2
    assert "trainer.precision='16-mixed' (float16 autocast) is for CUDA GPUs" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert precision.resolve("16-mixed", "gpu") == ("16-mixed", False)  # on a GPU: Lightning's own


def test_bf16_location_network_runs_under_autocast():
    from satclip.models.location_encoder import LocationEncoder

    from .train_helpers import SMALL_LOCATION

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.location = LocationEncoder.from_config({**SMALL_LOCATION, "network": {
                **SMALL_LOCATION["network"], "num_classes": 8}})  # fmt: skip

    model = Model().eval()
    seen = {}
    for name, module in (("posenc", model.location.posenc), ("sine", model.location.nnet.layers[0]),
                         ("last", model.location.nnet.last_layer)):  # fmt: skip
        module.register_forward_hook(lambda m, args, out, name=name: seen.update({name: (args[0].dtype, out.dtype)}))
    lonlat = torch.tensor([[13.4, 52.5], [0.0, -90.0]], dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = precision.encode_location(model, lonlat)
    # basis from float64 coordinates outside autocast; sine layers in bf16; the embedding in float32
    assert seen["posenc"] == (torch.float64, torch.float64)
    assert seen["sine"] == (torch.float32, torch.bfloat16)
    assert seen["last"] == (torch.float32, torch.float32) and out.dtype == torch.float32


def test_bf16_training_losses_equal_float32_to_two_decimals(tmp_path):
    """Three epochs on the synthetic cache (2,000 pairs, batch 512) with the shipped recipe's model
    (bluemarble-l10: SH L = 10 → SIREN 512 → 512 → 256) in float32 and in bf16: every epoch's train and
    validation loss agree to two decimals (|difference| < 0.005; measured ≤ 0.0011). A toy 64-wide SIREN
    has fewer hidden units to average the bf16 rounding over and differs by up to 0.008."""
    recipe = load_config(resources.files("satclip.recipes") / "bluemarble-l10.yaml")
    model = {"embed_dim": recipe.model.embed_dim, "image_encoder": {},
             "location_encoder": json.loads(json.dumps(recipe.model.location_encoder))}  # fmt: skip
    synthetic_cache(tmp_path / "cache", n=2000)
    histories = {}
    for name in ("float32", "bf16"):
        trainer = {"max_epochs": 3, "precision": name}
        histories[name] = fit(from_dict(cached_config(tmp_path / "cache", tmp_path / name, trainer=trainer,
                                                      model=model))).history  # fmt: skip
    for f32, bf16 in zip(histories["float32"], histories["bf16"], strict=True):
        for key in ("train_loss", "val_loss"):
            assert abs(f32[key] - bf16[key]) < 0.005, (f32["epoch"], key, f32[key], bf16[key])
    assert histories["bf16"][-1]["val_loss"] < histories["bf16"][0]["val_loss"] - 0.5  # it learns


@pytest.mark.parametrize(("native_bf16", "expected"), [(False, "32-true"), (True, "bf16-mixed")])
def test_the_exports_record_what_auto_trained_in(tmp_path, monkeypatch, caplog, native_bf16, expected):
    """`trainer.precision: auto` chose bf16 or float32 by the machine, and the exports said `auto` only; the run
    said nothing of its choice either (`satclip embed` says it): it is said, with the evidence."""
    monkeypatch.setattr(inference_precision, "bf16_support", lambda device="cpu": (native_bf16, "faked"))
    synthetic_cache(tmp_path / "cache", n=100)
    config = cached_config(tmp_path / "cache", tmp_path / "run", trainer={"precision": "auto", "max_epochs": 1})
    with caplog.at_level(logging.INFO, logger="satclip.train.fitting"):
        result = fit(from_dict(config))
    assert f"trainer.precision: {'bf16' if native_bf16 else 'float32'} (auto: faked)" in caplog.text
    for export in result.exports.values():
        metadata = json.loads((export.native / "config.json").read_text())["metadata"]
        assert metadata["trained_precision"] == expected and metadata["train_config"]["trainer"]["precision"] == "auto"


def test_a_resumed_auto_run_goes_on_in_the_precision_it_started_in(tmp_path, monkeypatch, caplog):
    """`trainer.precision: auto` resumed on a machine that resolves it otherwise changed precision mid-run
    without a word (the second epoch in float32 after a first in bf16), and the exports said float32."""
    synthetic_cache(tmp_path / "cache", n=100)
    config = cached_config(tmp_path / "cache", tmp_path / "run", trainer={"precision": "auto", "max_epochs": 1})
    monkeypatch.setattr(inference_precision, "bf16_support", lambda device="cpu": (True, "faked"))
    fit(from_dict(config))
    monkeypatch.setattr(inference_precision, "bf16_support", lambda device="cpu": (False, "faked"))
    config["trainer"]["max_epochs"] = 2
    with caplog.at_level(logging.INFO, logger="satclip.train.fitting"):
        result = fit(from_dict(config), resume=True)
    assert [row["epoch"] for row in result.history] == [0, 1]
    said = "resumes in bf16-mixed, the precision it started in (on this machine auto would choose 32-true)"
    assert said in caplog.text
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)
    assert last["hyper_parameters"]["trained_precision"] == "bf16-mixed"
    for export in result.exports.values():
        assert json.loads((export.native / "config.json").read_text())["metadata"]["trained_precision"] == "bf16-mixed"


@pytest.mark.parametrize("location_dtype", ["float32", "float64"])
def test_a_float64_run_says_its_exports_store_float32(tmp_path, caplog, location_dtype):
    """`trainer.precision: float64` trained in float64 and its exports rounded the weights to
    `model.location_dtype` float32, without a word; with `model.location_dtype: float64` they keep them."""
    synthetic_cache(tmp_path / "cache", n=100)
    config = cached_config(tmp_path / "cache", tmp_path / "run", trainer={"precision": "float64", "max_epochs": 1},
                           model={"location_dtype": location_dtype})  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="satclip.train.fitting"):
        result = fit(from_dict(config))
    warned = "add --model.location_dtype float64 to keep its float64 weights" in caplog.text
    assert warned == (location_dtype == "float32")
    weights = load_file(result.exports["last"].native / "model.safetensors")
    location = {v.dtype for k, v in weights.items() if k.startswith("location.") and v.is_floating_point()}
    assert location == {getattr(torch, location_dtype)}
