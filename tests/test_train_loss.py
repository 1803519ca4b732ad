"""The contrastive loss: against a plain re-implementation, and 2 gloo processes × B pairs against one
process on the 2B concatenated pairs (same loss, same gradients after DDP-style averaging)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from satclip.image.cached import CachedFeatures
from satclip.models import loss as loss_module
from satclip.models.clip import SatCLIP
from satclip.models.location_encoder import LocationEncoder
from satclip.models.loss import ContrastiveLoss

from .train_helpers import SMALL_LOCATION, sphere_points

B, FEATURES, EMBED = 6, 12, 16


def reference_loss(image: np.ndarray, location: np.ndarray, scale: float) -> float:
    """Symmetric CE written out row by row in float64 (the definition, not the implementation)."""
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    location = location / np.linalg.norm(location, axis=1, keepdims=True)
    logits = math.exp(scale) * image @ location.T
    total = 0.0
    for i in range(len(logits)):
        row, col = logits[i], logits[:, i]
        total += -(row[i] - np.log(np.exp(row).sum())) - (col[i] - np.log(np.exp(col).sum()))
    return total / (2 * len(logits))


def test_loss_and_accuracy_match_the_definition():
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(9, 5, generator=generator, dtype=torch.float64)
    location = image + 0.8 * torch.randn(9, 5, generator=generator, dtype=torch.float64)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    out = ContrastiveLoss()(image, location, scale)
    assert out.loss.item() == pytest.approx(reference_loss(image.numpy(), location.numpy(), scale.item()), rel=1e-12)
    cos = torch.nn.functional.normalize(image, dim=1) @ torch.nn.functional.normalize(location, dim=1).T
    expected_i2l = (cos.argmax(1) == torch.arange(9)).double().mean().item()
    expected_l2i = (cos.argmax(0) == torch.arange(9)).double().mean().item()
    assert out.image_to_location_acc.item() == pytest.approx(expected_i2l)
    assert out.location_to_image_acc.item() == pytest.approx(expected_l2i)
    assert 0 < expected_i2l < 1  # the check above is not trivially 0 or 1


def _dense(image, location, logit_scale):
    """The loss as autograd sees it written densely: the whole (B, B) matrix, two cross-entropies."""
    image, location = F.normalize(image, dim=1), F.normalize(location, dim=1)
    logits = logit_scale.exp() * image @ location.T
    labels = torch.arange(len(logits))
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return loss, (logits.argmax(1) == labels).float().mean(), (logits.argmax(0) == labels).float().mean()


@pytest.mark.parametrize("block", [1, 4, 11, 64])
def test_blocked_loss_equals_the_dense_loss_and_gradients(monkeypatch, block):
    """The single-process loss works on blocks of rows (the last one partial for 11 rows in blocks of 4): loss,
    accuracies and the gradients of both feature sets and of logit_scale equal the dense autograd version."""
    monkeypatch.setattr(loss_module, "BLOCK_ROWS", block)
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(11, 7, generator=generator, dtype=torch.float64)
    location = image + 0.9 * torch.randn(11, 7, generator=generator, dtype=torch.float64)
    results = []
    for compute in (lambda i, l, s: tuple(vars(ContrastiveLoss()(i, l, s)).values()), _dense):
        leaves = [image.clone().requires_grad_(), location.clone().requires_grad_(),
                  torch.tensor(2.9, dtype=torch.float64, requires_grad=True)]  # fmt: skip
        loss, i2l, l2i = compute(*leaves)
        loss.backward()
        results.append((loss.detach(), i2l, l2i, *(leaf.grad for leaf in leaves)))
    blocked, dense = results
    assert 0 < dense[1] < 1 and 0 < dense[2] < 1 and dense[1] != dense[2]  # accuracies are informative
    names = ("loss", "i2l", "l2i", "d image", "d location", "d logit_scale")
    for name, a, b in zip(names, blocked, dense, strict=True):
        assert a.dtype == b.dtype and torch.allclose(a, b, rtol=1e-12, atol=1e-14), f"{name}: {a} vs {b}"


def test_blocked_loss_passes_gradcheck(monkeypatch):
    monkeypatch.setattr(loss_module, "BLOCK_ROWS", 3)
    generator = torch.Generator().manual_seed(4)
    inputs = (torch.randn(8, 5, generator=generator, dtype=torch.float64, requires_grad=True),
              torch.randn(8, 5, generator=generator, dtype=torch.float64, requires_grad=True),
              torch.tensor(1.7, dtype=torch.float64, requires_grad=True))  # fmt: skip
    assert torch.autograd.gradcheck(lambda i, l, s: ContrastiveLoss()(i, l, s).loss, inputs)


def test_matched_pairs_beat_shuffled_pairs():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=generator)
    loss = ContrastiveLoss()
    scale = torch.tensor(math.log(1 / 0.07))
    assert loss(x, x, scale).loss < loss(x, x[torch.randperm(64, generator=generator)], scale).loss - 1


def _model() -> SatCLIP:
    torch.manual_seed(0)
    location = LocationEncoder.from_config(
        {"encoding": SMALL_LOCATION["encoding"], "network": {**SMALL_LOCATION["network"], "num_classes": EMBED}}
    )
    head = CachedFeatures(torch.nn.Linear(FEATURES, EMBED), {"name": "features"})
    pair = SatCLIP(head, location, math.log(1 / 0.07))
    # float64, so the comparison measures the gathering, not float32 summation order (in float32 the
    # first SIREN layer's gradients, up to 16 in size, differ by 5e-6 — 3e-7 relative — between the set-ups);
    # dropout off: the comparison is about the loss and its gathering
    return pair.double().eval()


def _data():
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(2 * B, FEATURES, generator=generator, dtype=torch.float64)
    lonlat = torch.from_numpy(sphere_points(2 * B, 3))
    return features, lonlat


def _loss_and_grads(pair: SatCLIP, features, lonlat):
    out = ContrastiveLoss()(pair.encode_image(features), pair.encode_location(lonlat), pair.logit_scale)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in pair.named_parameters()}
    return out, grads


def _worker(rank: int, world: int, init_file: str, results: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        pair = _model()
        features, lonlat = _data()
        part = slice(rank * B, (rank + 1) * B)
        out, grads = _loss_and_grads(pair, features[part], lonlat[part])
        loss = out.loss.detach().clone()
        acc = torch.stack([out.image_to_location_acc, out.location_to_image_acc])
        dist.all_reduce(loss)
        dist.all_reduce(acc)
        for grad in grads.values():  # what DDP does: average the gradients over ranks
            dist.all_reduce(grad)
            grad /= world
        if rank == 0:
            torch.save({"loss": loss / world, "acc": acc / world, "grads": grads}, results)
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    results = tmp_path / "rank0.pt"
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(results)), nprocs=2, start_method="spawn")
    distributed = torch.load(results, weights_only=True)

    pair = _model()
    features, lonlat = _data()
    single, grads = _loss_and_grads(pair, features, lonlat)

    assert distributed["loss"].item() == pytest.approx(single.loss.item(), abs=1e-6)
    accuracy = torch.stack([single.image_to_location_acc, single.location_to_image_acc])
    assert torch.allclose(distributed["acc"], accuracy, atol=1e-6)
    assert set(distributed["grads"]) == set(grads)
    for name, grad in grads.items():
        diff = (distributed["grads"][name] - grad).abs().max().item()
        assert diff <= 1e-6, f"{name}: gradients differ by {diff}"
        assert grad.abs().max() > 1e-4, f"{name}: gradient is ~0, the comparison would be vacuous"


def test_without_gathering_the_gradients_differ(tmp_path):
    """The equivalence above is not automatic: two independent B-pair problems give another loss."""
    pair = _model()
    features, lonlat = _data()
    whole = _loss_and_grads(pair, features, lonlat)[0].loss.item()
    halves = np.mean([
        _loss_and_grads(_model(), features[s], lonlat[s])[0].loss.item() for s in (slice(0, B), slice(B, 2 * B))
    ])  # fmt: skip
    assert abs(whole - halves) > 1e-3
