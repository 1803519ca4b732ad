"""Training config: YAML ⇄ frozen dataclasses, dotted overrides, paper defaults, clear errors."""

from __future__ import annotations

import dataclasses
import math

import pytest

from satclip.train.config import TrainConfig, dump_config, from_dict, load_config

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"


def test_paper_defaults():
    config = TrainConfig()
    assert (config.optim.lr, config.optim.weight_decay) == (1e-4, 0.01)
    assert config.trainer.max_epochs == 500 and config.trainer.seed == 0
    assert config.data.val_fraction == 0.1 and config.data.batch_size == 8192
    assert config.model.logit_scale_init == pytest.approx(math.log(1 / 0.07))
    encoding = config.model.location_encoder["encoding"]
    assert (encoding["name"], encoding["legendre_polys"], encoding["harmonics_calculation"]) == (
        "sphericalharmonics", 10, "analytic-stable",
    )  # fmt: skip
    assert config.model.location_encoder["network"]["name"] == "siren"
    assert config.model.location_dtype == "float32" and config.trainer.precision == "32-true"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optim.lr = 1.0


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 1.0e-3}\nmodel: {image_encoder: {name: moco_resnet50}}\n")
    config = load_config(path, {
        "optim.lr": "3e-4",  # YAML 1.1 reads this as a string; overrides read it as a number
        "trainer.max_epochs": "7",
        "model.location_encoder.encoding.legendre_polys": "40",
        "data.drop_last": "true",
        "trainer.precision": "bf16-mixed",
    })  # fmt: skip
    assert config.optim.lr == 3e-4 and config.trainer.max_epochs == 7 and config.data.drop_last is True
    assert config.model.image_encoder == {"name": "moco_resnet50"}
    # a nested override keeps the other defaults of that dict
    assert config.model.location_encoder["encoding"]["legendre_polys"] == 40
    assert config.model.location_encoder["network"]["dim_hidden"] == 512
    assert load_config(dump_config(config, tmp_path / "back.yaml")) == config
    assert config.replace(**{"optim.lr": 0.5}).optim.lr == 0.5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"optim": {"learning_rate": 1e-4}}, "learning_rate"),
        ({"optimizer": {}}, "optimizer"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"trainer": {"max_epochs": 2.5}}, "trainer.max_epochs"),
        ({"data": {"source": "tfrecords"}}, "tfrecords"),
        ({"optim": {"betas": [0.9]}}, "optim.betas"),
        ({"trainer": {"checkpoint_every_n_steps": -1}}, "trainer.checkpoint_every_n_steps"),
        ({"trainer": {"max_epochs": -1}}, "trainer.max_epochs=-1 must be a number of epochs"),  # (-1: endless)
        ({"trainer": {"max_epochs": 0}}, "trainer.max_epochs=0"),
    ],
)
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises((KeyError, TypeError, ValueError), match=message):
        from_dict(raw)


def test_bad_override_lists_valid_keys():
    with pytest.raises(KeyError, match="lr, weight_decay"):
        load_config(None, {"optim.lr_max": "1"})
    with pytest.raises(KeyError, match="SECTION.KEY"):
        load_config(None, {"lr": "1"})


@pytest.mark.parametrize("name", sorted(p.name for p in REPO_CONFIGS.glob("*.yaml")))
def test_example_configs_load(name):
    config = load_config(REPO_CONFIGS / name)
    assert config.model.image_encoder["name"]
