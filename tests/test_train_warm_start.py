"""``model.init_from``: a run starts from a trained model, a lower spherical-harmonics degree included, as
exactly the same function; what cannot start it is refused with the reason."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import satclip
from satclip.train import fit, from_dict
from satclip.train.build import build_model

from .test_train_fit import cached_config
from .train_helpers import SMALL_LOCATION, sphere_points, synthetic_cache


def _location(legendre_polys: int, calculation: str = "analytic-stable", dim_hidden: int = 64) -> dict:
    return {
        "encoding": {**SMALL_LOCATION["encoding"], "legendre_polys": legendre_polys,
                     "harmonics_calculation": calculation},
        "network": {**SMALL_LOCATION["network"], "dim_hidden": dim_hidden},
    }  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small L = 10 model trained on the closed-form basis (3 epochs), exported, and its cache."""
    root = tmp_path_factory.mktemp("warm")
    cache = synthetic_cache(root / "cache", n=2000)
    config = cached_config(root / "cache", root / "run", model={"location_encoder": _location(10, "closed-form")},
                           trainer={"max_epochs": 3})  # fmt: skip
    return fit(from_dict(config)), cache, root


def _run(root, source, legendre_polys: int, *, run: str = "run-warm", dim_hidden: int = 64):
    """A 2-epoch run on ``root``'s cache of degree ``legendre_polys``, started from ``source`` (None: random)."""
    model = {"location_encoder": _location(legendre_polys, dim_hidden=dim_hidden),
             "init_from": None if source is None else str(source)}  # fmt: skip
    return from_dict(cached_config(root / "cache", root / run, model=model, trainer={"max_epochs": 2}))


def test_a_higher_degree_run_starts_as_the_trained_model(trained):
    result, cache, root = trained
    source = result.exports["last"].native
    model, _ = build_model(_run(root, source, 20), cache)
    reference = satclip.load(source, precision="float32")
    points = np.concatenate([sphere_points(500, 3), [[0.0, 90.0], [180.0, -90.0], [-180.0, 0.0]]])
    with torch.no_grad():
        started = model.eval().location.encode(points)
    # same function on another basis (closed-form → analytic-stable, a rescaling) and degree (10 → 20)
    np.testing.assert_allclose(started.numpy(), reference.encode(points).numpy(), atol=2e-5)
    assert model.location.nnet.layers[0].weight[:, 100:].abs().max() == 0  # the new degrees start at zero
    trained_model = satclip.load_model(source)
    torch.testing.assert_close(model.visual.head.weight, trained_model.visual.head.weight)
    torch.testing.assert_close(model.logit_scale, trained_model.logit_scale)


def test_a_warm_started_run_begins_where_the_trained_model_ended(trained):
    result, _, root = trained
    ended = result.history[-1]["val_loss"]
    warm = fit(_run(root, result.exports["last"].native, 20))
    cold = fit(_run(root, None, 20, run="run-cold"))
    # after one more epoch a warm start is near (or below) where its source ended, far below a random start
    assert warm.history[0]["val_loss"] < ended + 0.1 < cold.history[0]["val_loss"], (warm.history, ended, cold.history)


def test_a_model_of_higher_degree_or_another_network_is_refused(trained):
    result, cache, root = trained
    source = result.exports["last"].native
    with pytest.raises(ValueError, match="legendre_polys=10, more than this run's 5"):
        build_model(_run(root, source, 5), cache)
    with pytest.raises(ValueError, match="does not have this run's location encoder: network"):
        build_model(_run(root, source, 20, dim_hidden=32), cache)
    with pytest.raises(FileNotFoundError, match="model.init_from: no such model file or directory"):
        build_model(_run(root, root / "no-such-model", 20), cache)


def test_another_image_encoder_keeps_its_own_head(trained, tmp_path):
    result, _, _ = trained
    other = synthetic_cache(tmp_path / "cache", n=200, num_filters=8)  # other features: the head cannot apply
    fresh, _ = build_model(_run(tmp_path, None, 10), other)
    model, _ = build_model(_run(tmp_path, result.exports["last"].native, 10), other)
    torch.testing.assert_close(model.visual.head.weight, fresh.visual.head.weight)
    assert not torch.equal(model.location.nnet.layers[0].weight, fresh.location.nnet.layers[0].weight)


def test_training_only_new_degrees_on_other_image_features_is_refused(trained, tmp_path):
    """model.train_degrees_from freezes the image side: when the starting model's head cannot apply to this
    run's features (MOSAIKS filters fitted with another trainer.seed), the run fitted the new degrees to a random,
    frozen head (a random projection of the image features) and said so only in a log line."""
    result, _, _ = trained
    other = synthetic_cache(tmp_path / "cache", n=200, num_filters=8)  # other features: the head cannot apply
    config = _run(tmp_path, result.exports["last"].native, 20).replace(**{"model.train_degrees_from": 10})
    with pytest.raises(ValueError, match=r"model.train_degrees_from=10 trains the location network's first layer "
                                         r"alone, but the image side of model.init_from=.* cannot be copied \(the "
                                         r"model's computes other features, e.g. MOSAIKS filters fitted with another "
                                         r"trainer.seed\): it would stay at its random initialisation"):  # fmt: skip
        build_model(config, other)
    build_model(config.replace(**{"model.train_degrees_from": None}), other)  # all of it trains: allowed


def test_resuming_and_exporting_never_need_the_starting_model_again(trained, tmp_path):
    result, _, root = trained
    source = tmp_path / "source"
    shutil.copytree(result.exports["last"].native, source)
    config = _run(root, source, 20, run=str(tmp_path / "run"))
    first = fit(config)
    shutil.rmtree(source)  # the checkpoint holds everything a resume needs
    again = fit(config, resume=True)
    assert [row["epoch"] for row in again.history] == [row["epoch"] for row in first.history]
    points = sphere_points(20, 1)
    np.testing.assert_array_equal(satclip.load(again.exports["last"].native).encode(points).numpy(),
                                  satclip.load(first.exports["last"].native).encode(points).numpy())  # fmt: skip


def test_training_only_the_new_degrees_keeps_everything_else_and_resumes(trained, tmp_path):
    """model.train_degrees_from: only the first layer's columns of the new degrees train; the coarse field,
    the rest of the network, the image head and logit_scale stay the starting model's, through a resume."""
    result, cache, root = trained
    source = result.exports["last"].native
    config = _run(root, source, 20, run=str(tmp_path / "run"))
    config = config.replace(**{"model.train_degrees_from": 10})
    start, _ = build_model(config, cache)  # (the source's weights on this run's basis)
    first = fit(config.replace(**{"trainer.max_epochs": 1}))
    after_one = satclip.load_model(first.exports["last"].native)
    resumed = fit(config, resume=True)  # (epoch 2, from the first's checkpoint; its exports replace the first's)
    for ended in (after_one, satclip.load_model(resumed.exports["last"].native)):
        weight = ended.location.nnet.layers[0].weight
        first_layer = start.location.nnet.layers[0].weight[:, :100]  # (built in float64, trained in float32)
        np.testing.assert_array_equal(weight[:, :100].detach().float().numpy(),
                                      first_layer.detach().float().numpy())  # fmt: skip
        assert weight[:, 100:].abs().max() > 0  # the new degrees trained
        started = {**dict(start.named_parameters()), **{f"visual.{k}": v for k, v in start.visual.named_parameters()}}
        for name, param in ended.named_parameters():
            if name != "location.nnet.layers.0.weight" and name in started:
                torch.testing.assert_close(param.float(), started[name].float(), rtol=0, atol=0, msg=name)
        torch.testing.assert_close(ended.visual.head.weight.float(), start.visual.head.weight.float(), rtol=0, atol=0)
    assert not torch.equal(after_one.location.nnet.layers[0].weight, ended.location.nnet.layers[0].weight)
    with pytest.raises(ValueError, match=r"train_degrees_from=20 must be a degree from 1 to 19 \(legendre_polys - 1\)"):
        config.replace(**{"model.train_degrees_from": 20})
