"""MOSAIKS random convolutional features: against a per-position reference, whitening, determinism,
any band count, save/load with the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from satclip import image
from satclip.image.mosaiks import sample_patches, zca_matrix


def _images(n=6, c=3, size=12, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # correlated bands, like real imagery, so whitening has something to do
    base = torch.rand(n, 1, size, size, generator=generator)
    return base + 0.3 * torch.rand(n, c, size, size, generator=generator)


def test_features_match_per_position_reference():
    images = _images()
    encoder = image.create("mosaiks", in_chans=3, num_filters=4, kernel_size=3, bias=0.5).fit(images, seed=1)
    with torch.no_grad():
        features = encoder.encode_features(images).double().numpy()
    filters = encoder.filters.double().numpy().reshape(4, -1)
    offsets = encoder.offsets.double().numpy()
    x = images.double().numpy()
    for b in range(len(x)):
        responses = np.array([
            [filters @ x[b, :, i : i + 3, j : j + 3].ravel() - offsets for j in range(10)] for i in range(10)
        ]).reshape(-1, 4)  # fmt: skip
        expected = np.concatenate(
            [np.maximum(responses - 0.5, 0).mean(0), np.maximum(-responses - 0.5, 0).mean(0)]
        )
        np.testing.assert_allclose(features[b], expected, rtol=1e-5, atol=1e-6)
    assert features.shape == (6, 8) and encoder.feature_dim == 8


def test_whitening_and_filters_come_from_data():
    images = _images(n=20, size=16)
    patches = sample_patches(images.double(), 5000, 3, torch.Generator().manual_seed(0)).flatten(1)
    transform, mean = zca_matrix(patches, eps=1e-6)
    white = (patches - mean) @ transform.T
    cov = white.T @ white / (len(white) - 1)
    torch.testing.assert_close(cov, torch.eye(27, dtype=torch.float64), atol=2e-3, rtol=0)
    torch.testing.assert_close(transform, transform.T)  # ZCA: symmetric

    # each filter responds to its own source patch: r(q_i) = ‖z(q_i)‖ > 0, the largest of all filters' r
    encoder = image.create("mosaiks", in_chans=3, num_filters=16, whiten=True).fit(images, seed=5)
    generator = torch.Generator().manual_seed(5)
    sample_patches(images.double(), 10_000, 3, generator)  # the whitening sample, drawn first
    sources = sample_patches(images.double(), 16, 3, generator).flatten(1)
    responses = sources @ encoder.filters.double().reshape(16, -1).T - encoder.offsets.double()
    assert bool((responses.diagonal() > 0).all())
    assert bool((responses.diagonal() >= responses.max(dim=1).values - 1e-4).all())


def test_deterministic_for_a_seed_and_any_band_count():
    images = _images(c=5)
    a = image.create("mosaiks", in_chans=5, num_filters=8).fit(images, seed=3)
    b = image.create("mosaiks", in_chans=5, num_filters=8).fit(images, seed=3)
    c = image.create("mosaiks", in_chans=5, num_filters=8).fit(images, seed=4)
    assert torch.equal(a.filters, b.filters) and torch.equal(a.offsets, b.offsets)
    assert not torch.equal(a.filters, c.filters)
    assert a.filters.shape == (8, 5, 3, 3)
    with torch.no_grad():
        out = a(images)
    assert out.shape == (6, 256) and torch.isfinite(out).all()


def test_unwhitened_and_strided_variants():
    images = _images(size=17)
    encoder = image.create("mosaiks", in_chans=3, num_filters=4, whiten=False, stride=2).fit(images, seed=0)
    with torch.no_grad():
        features = encoder.encode_features(images)
    assert features.shape == (6, 8) and bool((features >= 0).all()) and bool((features > 0).any())


def test_state_dict_round_trip_and_unfitted_error():
    images = _images()
    fitted = image.create("mosaiks", in_chans=3, num_filters=8, embed_dim=4).fit(images, seed=0)
    fresh = image.from_config(fitted.config)
    with pytest.raises(RuntimeError, match=r"not fitted: call \.fit"):
        fresh.encode_features(images)
    fresh.load_state_dict(fitted.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(images), fitted(images), rtol=0, atol=0)
    assert fitted.frozen_backbone and [n for n, p in fitted.named_parameters()] == [
        "head.weight",
        "head.bias",
    ]
    assert set(fitted.state_dict()) == {"filters", "offsets", "fitted", "head.weight", "head.bias"}


def test_chunked_and_differentiable_paths_agree(monkeypatch):
    from satclip.image import mosaiks as mosaiks_module

    images = _images(n=7, size=10)
    encoder = image.create("mosaiks", in_chans=3, num_filters=6, stride=2, bias=-0.2).fit(images, seed=2)
    monkeypatch.setattr(mosaiks_module, "CHUNK_ELEMENTS", 6 * 16 * 3)  # chunks of 3 images: 3 + 3 + 1
    with torch.no_grad():
        chunked = encoder.encode_features(images)
    graded = images.clone().requires_grad_(True)
    reference = encoder.encode_features(graded)
    torch.testing.assert_close(chunked, reference.detach(), rtol=1e-5, atol=1e-6)
    reference.sum().backward()
    assert graded.grad is not None and graded.grad.shape == images.shape
