"""Synthetic data for the training tests: locations on land-like latitudes and features that depend on
them smoothly (so a contrastive model can learn the pairing), plus a tiny image source."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from satclip import image
from satclip.train import dump_config, from_dict
from satclip.train.cache import write_cache
from satclip.train.sources import PairSource

from .conftest import run_in_subprocess_env

#: a small location encoder, so CPU tests stay fast
SMALL_LOCATION = {
    "encoding": {"name": "sphericalharmonics", "legendre_polys": 10, "harmonics_calculation": "analytic-stable"},
    "network": {"name": "siren", "dim_hidden": 64, "num_layers": 2},
}


TRAIN_RUN = textwrap.dedent(
    """
    import json, os, signal, sys
    import lightning.pytorch as pl
    import torch

    import satclip.train
    from satclip.cli import main

    args = json.loads(sys.argv[1])


    class Test(pl.Callback):
        weights, batches = [], []

        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == args["spike"]:
                with torch.no_grad():
                    module.model.logit_scale.add_(3.0)
            self.kill_at("epoch", trainer.current_epoch)

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.batches.append((trainer.current_epoch, batch_idx))
            self.kill_at("step", trainer.global_step)

        def on_save_checkpoint(self, trainer, module, checkpoint):  # (before the file is written)
            self.kill_at("save", trainer.global_step)

        def on_train_epoch_end(self, trainer, module):
            self.weights.append({k: v.detach().clone() for k, v in module.model.state_dict().items()})

        def kill_at(self, when, at):
            if args["kill"] == [when, at]:
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up: as a crash, an OOM kill or a pre-emption


    real_fit = satclip.train.fit  # the command's fit, with the callback


    def fit(config, **kwargs):
        result = real_fit(config, callbacks=[Test()], **kwargs)
        torch.save({"weights": Test.weights, "batches": Test.batches, "history": result.history,
                    "checkpoints": {name: str(path) for name, path in result.checkpoints.items()},
                    "exports": {name: str(exported.native) for name, exported in result.exports.items()}},
                   args["record"])
        return result


    satclip.train.fit = fit
    sys.exit(main(["train", "--config", args["config"]] + (["--resume"] if args["resume"] else [])))
    """
)


def train_in_subprocess(config: dict, files: Path, *, resume: bool = False, kill: tuple[str, int] | None = None,
                        spike: int | None = None) -> dict | None:  # fmt: skip
    """``satclip train --config files/config.yaml`` (``--resume``) of ``config`` in a fresh Python, as a user runs
    it: a run whose weights a test compares bit for bit with another's runs so, never in the test process, whose
    state (left by earlier tests: its thread count …) changes the last bits of MKL's arithmetic on some CPUs.

    ``kill``: SIGKILLed at the start of epoch ``at`` (``("epoch", at)``), before the batch after optimizer step
    ``at`` (``"step"``) or as it saves the checkpoint of step ``at`` (``"save"``); returns ``None``. ``spike``:
    ``logit_scale`` += 3 at the start of that epoch (a worse epoch by construction, the same in every run).
    Otherwise returns what the run did: ``weights`` (the model's state dict at each epoch end of this session),
    ``batches`` (``(epoch, batch_idx)`` of each training batch it ran), ``history``, ``checkpoints`` and
    ``exports`` (their native directories) as :func:`satclip.train.fit` returns them."""
    files.mkdir()
    dump_config(from_dict(config), files / "config.yaml")
    (files / "train.py").write_text(TRAIN_RUN)
    args = {"config": str(files / "config.yaml"), "resume": resume, "kill": kill, "spike": spike,
            "record": str(files / "record.pt")}  # fmt: skip
    done = subprocess.run([sys.executable, str(files / "train.py"), json.dumps(args)], env=run_in_subprocess_env(),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == (-9 if kill else 0), done.stderr[-3000:]
    if kill:
        return None
    record = torch.load(files / "record.pt", weights_only=True)
    for name in ("checkpoints", "exports"):
        record[name] = {key: Path(path) for key, path in record[name].items()}
    return record


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
