"""Batches: the seeded split, per-epoch order from the seed alone, rank sharding, cached views, jitter,
and the weight-decay groups."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import satclip.image
from satclip.models.clip import SatCLIP
from satclip.models.location_encoder import LocationEncoder
from satclip.train.config import DataConfig, OptimConfig
from satclip.train.data import (
    BatchSpec,
    CachedPairs,
    EpochBatchSampler,
    ImagePairs,
    footprint_jitter,
    jitter_points,
    split_indices,
)  # fmt: skip
from satclip.train.optim import adamw

from .train_helpers import SMALL_LOCATION, synthetic_cache, tiny_source


def test_split_is_seeded_disjoint_and_ten_percent():
    train, val = split_indices(1000, 0.1, seed=0)
    assert len(val) == 100 and len(train) == 900
    assert np.union1d(train, val).tolist() == list(range(1000))
    again, val_again = split_indices(1000, 0.1, seed=0)
    assert np.array_equal(val, val_again)
    assert not np.array_equal(val, split_indices(1000, 0.1, seed=1)[1])
    assert len(split_indices(20, 0.1, 0)[1]) == 2


def test_epoch_order_depends_only_on_seed_and_epoch():
    def epoch_batches(epoch, sampler):
        sampler.set_epoch(epoch)
        return [spec.indices.tolist() for spec in sampler]

    a = EpochBatchSampler(np.arange(50), 8, shuffle=True, seed=3)
    b = EpochBatchSampler(np.arange(50), 8, shuffle=True, seed=3)
    epoch2 = epoch_batches(2, a)
    assert epoch_batches(0, b) != epoch2 and epoch_batches(2, b) == epoch2  # b visited epoch 0 first
    assert sorted(sum(epoch2, [])) == list(range(50)) and len(a) == 7



def test_a_last_batch_of_one_pair_is_dropped():
    """With data.drop_last false a last batch of one pair was trained and validated on: its loss is 0 (no
    negative), averaged into the epoch's train_loss and val_loss."""
    sampler = EpochBatchSampler(np.arange(9), 4, shuffle=True, seed=0)
    batches = [spec.indices.tolist() for spec in sampler]
    assert [len(b) for b in batches] == [4, 4] and len(sampler) == 2
    assert [len(s.indices) for s in EpochBatchSampler(np.arange(10), 4, shuffle=True, seed=0)] == [4, 4, 2]
    # over two ranks a last global batch of 2 is one pair each, contrasted together (the loss gathers them)
    ranks = [EpochBatchSampler(np.arange(10), 4, shuffle=True, seed=0, rank=r, world_size=2) for r in range(2)]
    assert [[len(s.indices) for s in r] for r in ranks] == [[4, 1], [4, 1]] and len(ranks[0]) == 2


def test_a_validation_split_of_one_sample_is_no_validation(tmp_path, caplog):
    """A split holding out one sample validated on a batch of one pair: a val_loss of 0 that chose best.ckpt."""
    from satclip.train.datamodule import PairDataModule

    cache = synthetic_cache(tmp_path / "cache", n=10)
    with caplog.at_level("WARNING", logger="satclip"):
        module = PairDataModule(DataConfig(batch_size=4, val_fraction=0.1), 0, cache=cache)
    assert len(module.val_indices) == 1 and not module.validates and module.val_dataloader() == []
    assert "data.val_fraction=0.1 holds out 1 sample(s) of 10, too few for a contrastive batch of 2" in caplog.text
    assert PairDataModule(DataConfig(batch_size=4, val_fraction=0.2), 0, cache=cache).validates

def test_ranks_share_each_global_batch():
    indices = np.arange(45)
    samplers = [EpochBatchSampler(indices, 4, shuffle=True, seed=0, rank=r, world_size=2) for r in range(2)]
    single = EpochBatchSampler(indices, 8, shuffle=True, seed=0)
    per_rank = [list(s) for s in samplers]
    assert len(per_rank[0]) == len(per_rank[1]) == len(samplers[0]) == 6
    for step, whole in enumerate(single):
        parts = [per_rank[r][step].indices for r in range(2)]
        assert len(parts[0]) == len(parts[1])
        both = np.concatenate(parts)
        if step < 5:
            assert sorted(both) == sorted(whole.indices)
        else:  # the last global batch of 5 becomes 2 + 2 (one sample dropped), never 3 + 2
            assert len(both) == 4 and set(both) < set(whole.indices)


def test_cached_batches_use_training_views_and_jitter(tmp_path):
    cache = synthetic_cache(tmp_path / "c", n=40, views=4)
    spec = BatchSpec(epoch=1, batch=0, rank=0, indices=np.arange(40))
    train = CachedPairs(cache, train=True, seed=0, jitter=0.01)[spec]
    val = CachedPairs(cache, train=False, seed=0, jitter=0.01)[spec]
    features = np.asarray(cache.features, dtype=np.float32)
    # every training row is one of views 1..3, never the evaluation view 0 (they are all distinct)
    matches = [[np.array_equal(train["features"][i].numpy(), features[i, v]) for v in range(4)] for i in range(40)]
    assert all(sum(row) == 1 and not row[0] for row in matches)
    assert len({row.index(True) for row in matches}) == 3
    np.testing.assert_array_equal(val["features"].numpy(), features[:, 0])
    np.testing.assert_array_equal(val["lonlat"].numpy(), cache.lonlat)
    shift = (train["lonlat"] - torch.from_numpy(cache.lonlat)).numpy()
    assert train["lonlat"].dtype == torch.float64
    assert (shift >= 0).all() and (shift <= 0.01).all() and shift.std() > 1e-3  # one-sided U(0, 0.01)
    again = CachedPairs(cache, train=True, seed=0, jitter=0.01)[spec]
    assert torch.equal(again["features"], train["features"]) and torch.equal(again["lonlat"], train["lonlat"])


def test_jitter_stays_in_range():
    points = torch.tensor([[179.999, 89.999], [-180.0, -90.0]], dtype=torch.float64)
    out = jitter_points(points, 0.01, torch.Generator().manual_seed(0))
    assert (out[:, 0].abs() <= 180).all() and (out[:, 1].abs() <= 90).all()


def _great_circle_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lon1, lat1, lon2, lat2 = (np.radians(v) for v in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(h))


def test_footprint_jitter_covers_the_square_around_each_point():
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-180, 180, 4000), rng.uniform(-60, 80, 4000)])
    points[:4] = [[179.9, 0.0], [-179.9, 10.0], [0.0, 89.5], [10.0, -89.5]]  # antimeridian, poles
    out = footprint_jitter(torch.from_numpy(points), 120.0, torch.Generator().manual_seed(0)).numpy()
    assert out.dtype == np.float64 and (np.abs(out[:, 0]) <= 180).all() and (np.abs(out[:, 1]) <= 90).all()
    distance = _great_circle_km(points, out)  # azimuthal equidistant: ground distance = planar radius
    assert distance.max() <= 120.0 * math.sqrt(2) + 1e-6 and distance.mean() > 70
    # symmetric: north/south and east/west offsets average out (away from the poles)
    mid = np.abs(points[:, 1]) < 60
    north_km = (out[mid, 1] - points[mid, 1]) * 111.2
    east_km = ((out[mid, 0] - points[mid, 0] + 180) % 360 - 180) * 111.2 * np.cos(np.radians(points[mid, 1]))
    assert abs(north_km.mean()) < 3 and abs(east_km.mean()) < 3
    # (flat-Earth east/north: exact to a few km at 120 km, meridians converge)
    assert 115 < np.abs(north_km).max() <= 125 and 115 < np.abs(east_km).max() <= 125
    again = footprint_jitter(torch.from_numpy(points), 120.0, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(out, again)
    same = torch.from_numpy(points)
    assert footprint_jitter(same, 0.0, torch.Generator()) is same


def test_footprint_jitter_is_an_extra_seeded_stream(tmp_path):
    cache = synthetic_cache(tmp_path / "c", n=40, views=4)
    spec = BatchSpec(epoch=2, batch=1, rank=0, indices=np.arange(40))
    plain = CachedPairs(cache, train=True, seed=0, jitter=0.01)[spec]
    both = CachedPairs(cache, train=True, seed=0, jitter=0.01, jitter_km=120.0)[spec]
    again = CachedPairs(cache, train=True, seed=0, jitter=0.01, jitter_km=120.0)[spec]
    val = CachedPairs(cache, train=False, seed=0, jitter=0.01, jitter_km=120.0)[spec]
    assert torch.equal(both["lonlat"], again["lonlat"]) and torch.equal(both["features"], plain["features"])
    np.testing.assert_array_equal(val["lonlat"].numpy(), cache.lonlat)  # validation: exact coordinates
    # the footprint offset comes first, then the same one-sided degree jitter as without it
    only_km = CachedPairs(cache, train=True, seed=0, jitter=0.0, jitter_km=120.0)[spec]
    degrees = (plain["lonlat"] - torch.from_numpy(cache.lonlat)).numpy()
    shift = (both["lonlat"] - only_km["lonlat"]).numpy()
    shift[:, 0] = (shift[:, 0] + 180) % 360 - 180
    np.testing.assert_allclose(shift, degrees, atol=1e-9)
    assert _great_circle_km(cache.lonlat, only_km["lonlat"].numpy()).max() <= 120.0 * math.sqrt(2) + 1e-6


def test_jitter_options_are_checked():
    assert DataConfig().coord_jitter_km == 0.0  # off by default: other recipes train as before
    with pytest.raises(ValueError, match="coord_jitter_km"):
        DataConfig(coord_jitter_km=-1.0)


def test_image_batches_are_reproducible():
    source = tiny_source(6)
    spec = BatchSpec(epoch=0, batch=0, rank=0, indices=np.arange(6))
    a = ImagePairs(source, train=True, seed=0)[spec]
    b = ImagePairs(tiny_source(6), train=True, seed=0)[spec]
    c = ImagePairs(source, train=True, seed=0)[BatchSpec(1, 0, 0, np.arange(6))]
    assert a["image"].shape == (6, 3, 8, 8) and torch.equal(a["image"], b["image"])
    assert not torch.equal(a["image"], c["image"])  # another epoch, other augmentations


def test_weight_decay_skips_biases_norms_and_logit_scale():
    location = LocationEncoder.from_config(
        {"encoding": SMALL_LOCATION["encoding"], "network": {**SMALL_LOCATION["network"], "num_classes": 8}}
    )
    image = satclip.image.create(
        "clip_vit", image_resolution=16, in_chans=3, embed_dim=8, width=64, layers=1, patch_size=8
    )
    model = SatCLIP(image, location, math.log(1 / 0.07))
    optimizer = adamw(model, OptimConfig())
    no_decay, decay = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == 0.01 and decay["lr"] == 1e-4
    decayed = {names[id(p)] for p in decay["params"]}
    assert {n for n in decayed if n.startswith("location.")} == {
        "location.nnet.layers.0.weight", "location.nnet.layers.1.weight", "location.nnet.last_layer.weight",
    }  # fmt: skip
    assert all(names[id(p)].startswith("visual.") or names[id(p)] == "logit_scale" or names[id(p)].endswith("bias")
               for p in no_decay["params"])  # fmt: skip
    assert "logit_scale" in {names[id(p)] for p in no_decay["params"]}
    assert "visual.ln_post.weight" in {names[id(p)] for p in no_decay["params"]}  # a norm's scale
    assert "visual.conv1.weight" in decayed and all(p.ndim >= 2 for p in decay["params"])
