"""Synthetic data for the training tests: locations on land-like latitudes and features that depend on
them smoothly (so a contrastive model can learn the pairing), plus a tiny image source."""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from satclip import image
from satclip.train.cache import write_cache
from satclip.train.sources import PairSource

#: a small location encoder, so CPU tests stay fast
SMALL_LOCATION = {
    "encoding": {"name": "sphericalharmonics", "legendre_polys": 10, "harmonics_calculation": "analytic-stable"},
    "network": {"name": "siren", "dim_hidden": 64, "num_layers": 2},
}


def run_in_subprocess_env() -> dict:
    """The environment of a training run in a subprocess that is compared bit for bit with one in this process: this
    process's import path, and its number of torch threads (MKL's AVX2 kernels round otherwise with another: a
    killed-and-resumed run differed from the uninterrupted one where an earlier test had left 1 thread here)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": str(torch.get_num_threads())}


def sphere_points(n: int, seed: int) -> np.ndarray:
    """``(n, 2)`` (lon, lat) degrees, area-uniform with lat > −60°."""
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-60)), 1, n)))
    return np.stack([rng.uniform(-180, 180, n), lat], axis=1)


def location_features(lonlat: np.ndarray, dim: int, views: int, seed: int, noise: float = 0.1) -> np.ndarray:
    """``(N, views, dim)`` float16: a fixed random smooth function of the 3-D unit vector, plus view noise."""
    rng = np.random.default_rng(seed)
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    base = np.maximum(np.sin(2 * xyz @ rng.normal(size=(3, dim))), 0)
    return (base[:, None, :] + noise * rng.normal(size=(len(lonlat), views, dim))).astype(np.float16)


def synthetic_cache(path, n: int = 2000, num_filters: int = 16, views: int = 8, seed: int = 0):
    """A feature cache of ``n`` synthetic images for a (never fitted) ``mosaiks`` encoder of
    ``2 · num_filters`` features — only its config and (zero) buffers are used by training and export. Its
    ``views`` default is ``data.cache_views``'s: a config that does not set it trains from the cache."""
    encoder = image.create("mosaiks", in_chans=3, num_filters=num_filters, kernel_size=3)
    lonlat = sphere_points(n, seed)
    features = location_features(lonlat, 2 * num_filters, views, seed + 1)
    return write_cache(path, features, lonlat, encoder, fingerprint=f"synthetic-{n}-{seed}")


class TinyImages(torch.utils.data.Dataset):
    """``n`` random 3 × 8 × 8 images with points; counts reads (to check one read per cached image)."""

    def __init__(self, n: int = 10, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, 8, 8, generator=generator)
        self.points = torch.from_numpy(sphere_points(n, seed))
        self.reads = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        self.reads += 1
        return {"image": self.images[index].clone(), "point": self.points[index].clone()}


def flip_view(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A training view: random horizontal flip plus small noise (both from ``generator``)."""
    if torch.rand((), generator=generator) < 0.5:
        image = image.flip(-1)
    return image + 0.01 * torch.randn(image.shape, generator=generator)


def tiny_source(n: int = 10, seed: int = 0, tag: str = "v1") -> PairSource:
    dataset = TinyImages(n, seed)
    return PairSource(
        dataset=dataset, fingerprint=f"tiny-{n}-{seed}", train_view=flip_view,
        transform_config={"train": f"flip+noise {tag}", "eval": "identity"},
    )  # fmt: skip


def tiny_encoder(seed: int = 0):
    """A fitted ``mosaiks`` encoder on 3-band images (8 filters → 16 features)."""
    encoder = image.create("mosaiks", in_chans=3, num_filters=8, kernel_size=3, embed_dim=16)
    return encoder.fit(TinyImages(10, seed).images, seed=seed)


def cached_run(tmp_path, root, dataset: str, in_chans: int, batch_size: int) -> dict:
    """The config (a dict of sections) of a tiny run on the image dataset at ``root`` through a feature cache of a
    4-filter MOSAIKS backbone (cache ``tmp_path/cache``, run ``tmp_path/run``, one epoch)."""
    return {
        "model": {"embed_dim": 8, "image_encoder": {"name": "mosaiks", "in_chans": in_chans, "num_filters": 4},
                  "location_encoder": SMALL_LOCATION},
        "data": {"source": "cache", "cache": str(tmp_path / "cache"), "dataset": dataset, "root": str(root),
                 "batch_size": batch_size, "cache_views": 2, "val_fraction": 0.2},
        "trainer": {"max_epochs": 1, "output_dir": str(tmp_path / "run"), "enable_progress_bar": False},
    }  # fmt: skip


def bluemarble_run(tmp_path) -> dict:
    """:func:`cached_run` on a 40-patch Blue Marble corpus built in ``tmp_path``."""
    from satclip.data.bluemarble import BlueMarbleParams, build_bluemarble

    root = build_bluemarble(tmp_path / "corpus", BlueMarbleParams(n=40, patch_size=8, seed=0))
    return cached_run(tmp_path, root, "bluemarble", in_chans=3, batch_size=8)
