"""The trained model is the served one: ``satclip.SatCLIP`` with a ``CachedFeatures`` image side for cached
runs, one dtype rule in ``encode_location``, earlier ``pair.*`` training checkpoints still readable."""

from __future__ import annotations

import numpy as np
import torch

from satclip.image.cached import CachedFeatures
from satclip.models.clip import SatCLIP
from satclip.train import from_dict
from satclip.train.build import build_model
from satclip.train.module import model_state

from .train_helpers import SMALL_LOCATION, sphere_points, synthetic_cache


def _config(tmp_path) -> dict:
    return from_dict({
        "model": {"embed_dim": 8, "image_encoder": {}, "location_encoder": SMALL_LOCATION},
        "data": {"source": "cache", "cache": str(tmp_path / "cache")},
        "trainer": {"output_dir": str(tmp_path / "run")},
    })  # fmt: skip


def test_a_cached_run_trains_satclip_with_the_head_as_visual_head(tmp_path):
    cache = synthetic_cache(tmp_path / "cache", n=50)
    model, image_config = build_model(_config(tmp_path), cache)
    assert isinstance(model, SatCLIP) and isinstance(model.visual, CachedFeatures)
    assert model.visual.config == image_config and image_config["name"] == "mosaiks"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("visual.")} == {"visual.head.weight", "visual.head.bias"}
    features = torch.randn(3, cache.feature_dim)
    torch.testing.assert_close(model.encode_image(features), model.visual.head(features))


def test_encode_location_has_one_dtype_rule(tmp_path):
    model, _ = build_model(_config(tmp_path), synthetic_cache(tmp_path / "cache", n=50))
    model.eval()
    lonlat = torch.from_numpy(sphere_points(16, 0))
    with torch.no_grad():
        reference = model.encode_location(lonlat)
        # float64 coordinates are never rounded to the network's float32 before the features are computed
        assert torch.equal(reference, model.location(lonlat.double()))
        assert not torch.equal(reference, model.location(lonlat.float()))
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast never reaches the location encoder
            autocast = model.encode_location(lonlat)
    assert reference.dtype == torch.float32 and torch.equal(autocast, reference)
    model.location.double()
    assert model.encode_location(lonlat).dtype == torch.float64


def test_checkpoints_of_the_earlier_pair_are_remapped():
    value = torch.ones(2)
    state = {"pair.image.weight": value, "pair.location.nnet.x": value, "pair.logit_scale": value}
    assert set(model_state(state, cached=True)) == {"model.visual.head.weight", "model.location.nnet.x",
                                                    "model.logit_scale"}  # fmt: skip
    assert set(model_state(state, cached=False)) == {"model.visual.weight", "model.location.nnet.x",
                                                     "model.logit_scale"}  # fmt: skip
    assert model_state({"model.logit_scale": value}, cached=True) == {"model.logit_scale": value}


def test_a_frozen_backbone_stays_in_eval_mode_while_training():
    import satclip.image
    from satclip.models.location_encoder import LocationEncoder

    visual = satclip.image.create("moco_resnet18", embed_dim=8)
    network = {**SMALL_LOCATION["network"], "num_classes": 8}
    location = LocationEncoder.from_config({**SMALL_LOCATION, "network": network})
    model = SatCLIP(visual, location).train()
    assert model.training and model.visual.head.training and model.location.training
    assert not any(m.training for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert np.isclose(model.logit_scale.item(), np.log(1 / 0.07))


def test_train_target_option_and_an_impossible_target_fails_before_training(tmp_path, capsys):
    import pytest

    from satclip.cli import main
    from satclip.errors import BadInputError
    from satclip.train import fit

    assert main(["train", "--print-config", "--target", "rshf"]) == 0
    assert "export_target: rshf" in capsys.readouterr().out
    config = _config(tmp_path).to_dict()
    config["trainer"]["export_target"] = "rshf"  # rshf's architecture is fixed: SIREN 512 → 256, not this one
    with pytest.raises(BadInputError, match="rshf's SatClip is fixed"):
        fit(from_dict(config))
    assert not (tmp_path / "run").exists()
