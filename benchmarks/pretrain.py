"""Pretraining epoch time: from a feature cache vs the original-style path that re-runs the backbone.

    python benchmarks/pretrain.py [--images 64] [--batch-size 32] [--views 8] [--cache-images 20000]
                                  [--device cpu|cuda] [--precision 32|bf16] [--threads N]

Both paths train the same model — the frozen ``moco_resnet18`` backbone (random weights: they do not
change the cost) on 256 × 256 × 13 inputs, its trainable head (512 → 256) and the default location
encoder (exact SH L = 10, SIREN 512 → 512 → 256, float32) — with the same loss, optimizer and step
code (a plain PyTorch loop: the Lightning loop adds a few ms per step to both).

1. **original-style**: every step reads the patches (GeoTIFF decode), draws flips and blur, runs the
   backbone, then head + location encoder forward/backward and an AdamW step;
2. **cache build**: the backbone once per image and view (``--views``), stored float16;
3. **cached, same images and batch size**: steps read features from the memory-mapped cache;
4. **cached at scale**: a ``--cache-images`` × views × 512 float16 cache and batches of 8,192 (one
   softmax), as ``satclip train`` runs it; seconds per epoch scale linearly with the images.

Images are the 20 real patches of ``s2-examples`` in the fixtures (``$SATCLIP_FIXTURES``, else
``../shared/fixtures``) cycled to ``--images`` (random uint16 images when the fixtures are absent).
Projections for 500 epochs on S2-100K (100,000 images) scale the measured seconds per image linearly; the
cached projection includes building the cache.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _args import non_negative_int, positive_int, torch_device
from hardware import FIXTURES, print_hardware

from satclip.image.cached import CachedFeatures
from satclip.models.clip import SatCLIP
from satclip.models.loss import ContrastiveLoss
from satclip.train.build import build_image_encoder, build_location_encoder
from satclip.train.cache import build_cache, write_cache
from satclip.train.config import ModelConfig, OptimConfig
from satclip.train.data import CachedPairs, EpochBatchSampler, ImagePairs
from satclip.train.optim import adamw
from satclip.train.sources import PairSource

S2_EXAMPLES = FIXTURES / "s2-examples"
S2_100K, EPOCHS = 100_000, 500


class Cycled(torch.utils.data.Dataset):
    """``n`` samples cycling a smaller dataset (so the original-style path reads real files)."""

    def __init__(self, dataset, n: int):
        self.dataset, self.n = dataset, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]


class RandomPatches(torch.utils.data.Dataset):
    def __init__(self, n: int):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 10_000, (min(n, 20), 12, 256, 256), generator=generator).float()
        self.points = torch.rand(min(n, 20), 2, generator=generator, dtype=torch.float64) * 100 - 50

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return {"image": self.images[index], "point": self.points[index]}


def make_source(n: int) -> tuple[PairSource, str]:
    from satclip.data import s2_transform

    try:
        import rasterio  # noqa: F401

        readable = (S2_EXAMPLES / "index.csv").exists()
    except ImportError:
        readable = False
    if readable:
        from satclip.data import S2100K

        base, what = S2100K(S2_EXAMPLES, mode="both", transform=None), "20 real S2 patches (GeoTIFF reads)"
    else:
        base, what = RandomPatches(n), "random 12-band images in memory (no fixtures or rasterio: no file reads)"
    train, evaluate = s2_transform(True, jitter=0.0), s2_transform(False)
    source = PairSource(Cycled(base, n), fingerprint=f"bench-{n}", train_view=train.image, eval_view=evaluate.image,
                        transform_config={"train": repr(train), "eval": repr(evaluate)})  # fmt: skip
    return source, what


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_epoch(pair, loader, optimizer, device, amp: bool, max_steps: int | None = None) -> tuple[float, int]:
    """Seconds for one pass over ``loader`` (or ``max_steps`` steps) and the number of pairs seen."""
    loss_fn = ContrastiveLoss()
    pairs = 0
    sync(device)
    began = time.perf_counter()
    for step, batch in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        inputs = (batch["features"] if "features" in batch else batch["image"]).to(device, non_blocking=True)
        lonlat = batch["lonlat"].to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            image = pair.encode_image(inputs)
        out = loss_fn(image, pair.encode_location(lonlat), pair.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        pairs += len(inputs)
    sync(device)
    return time.perf_counter() - began, pairs


def loader_for(dataset, n: int, batch_size: int, epoch: int = 0, workers: int = 0):
    sampler = EpochBatchSampler(np.arange(n), batch_size, shuffle=True, seed=0)
    sampler.set_epoch(epoch)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=workers)


def synthetic_features(m: int, views: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` area-uniform points and float16 ``(m, views, dim)`` features: a fixed smooth random function of
    the point plus per-view noise."""
    rng = np.random.default_rng(0)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, m)))
    lonlat = np.column_stack([rng.uniform(-180, 180, m), lat])
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1).astype(np.float32)
    base = np.maximum(np.sin(3 * xyz @ rng.normal(size=(3, dim)).astype(np.float32)), 0)
    features = np.empty((m, views, dim), dtype=np.float16)
    for v in range(views):
        features[:, v] = base + 0.1 * rng.standard_normal((m, dim), dtype=np.float32)
    return lonlat, features


def lightning_fit(args, cache, run_dir: Path) -> list[dict]:
    """5. ``satclip.train.fit`` (the Lightning path) on the at-scale cache: seconds per epoch and losses."""
    import lightning.pytorch as pl

    from satclip.train import fit, from_dict

    class Timer(pl.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            sync(torch.device(args.device))
            self.began = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            sync(torch.device(args.device))
            self.times.append(time.perf_counter() - self.began)

    timer = Timer()
    accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
    config = from_dict({
        "model": {"image_encoder": {}},
        "data": {"source": "cache", "cache": str(cache.path), "batch_size": args.cache_batch},
        "trainer": {"max_epochs": args.fit_epochs, "output_dir": str(run_dir), "accelerator": accelerator,
                    "precision": args.fit_precision, "enable_progress_bar": False, "export": False},
    })  # fmt: skip
    result = fit(config, cache=cache, callbacks=[timer])
    return [{**row, "seconds": t} for row, t in zip(result.history, timer.times, strict=False)]


def fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=positive_int, default=64, help="images of the original-style epoch")
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="batch of the original-style path (and of 3.)"
    )
    parser.add_argument("--views", type=positive_int, default=8, help="cached views per image")
    parser.add_argument("--cache-images", type=positive_int, default=20_000, help="images of the at-scale cache (4.)")
    parser.add_argument("--cache-batch", type=positive_int, default=8192)
    parser.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("32", "bf16"), default="32", help="bf16: backbone under autocast")
    parser.add_argument(
        "--workers", type=non_negative_int, default=0, help="DataLoader workers of the original-style path"
    )
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads())
    parser.add_argument(
        "--fit-epochs", type=non_negative_int, default=0, help="5.: epochs of satclip.train.fit on the big cache"
    )
    parser.add_argument("--fit-precision", default="32-true", help="5.: trainer precision (e.g. bf16-mixed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, amp = torch.device(args.device), args.precision == "bf16"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 here
        torch.backends.cudnn.benchmark = True
    model = ModelConfig()
    backbone = build_image_encoder(model.image_encoder, embed_dim=model.embed_dim, seed=0)  # frozen ResNet18
    source, what = make_source(args.images)
    print(f"# pretraining benchmark on {device}, precision {args.precision}; data: {what}")
    print_hardware()
    tmp = Path(tempfile.mkdtemp(prefix="satclip-bench-"))
    try:
        # 1. original-style: backbone on every step
        torch.manual_seed(0)
        full = SatCLIP(backbone, build_location_encoder(model), model.logit_scale_init).to(device).train()
        optimizer = adamw(full, OptimConfig())
        images = ImagePairs(source, train=True, seed=0, jitter=0.01)
        run_epoch(full, loader_for(images, args.images, args.batch_size, 99, args.workers), optimizer, device, amp, 1)
        t_orig, n_orig = run_epoch(full, loader_for(images, args.images, args.batch_size, 0, args.workers),
                                   optimizer, device, amp)  # fmt: skip
        per_image_orig = t_orig / n_orig

        # 2. cache build for the same images
        began = time.perf_counter()
        cache = build_cache(tmp / "cache", backbone, source, views=args.views, dtype="float16",
                            batch_size=max(args.batch_size, args.views), num_workers=args.workers, device=device,
                            amp=amp)  # fmt: skip
        sync(device)
        t_build = time.perf_counter() - began
        per_view_build = t_build / (args.images * args.views)

        # 3. cached, same images and batch size
        torch.manual_seed(0)
        head = CachedFeatures(torch.nn.Linear(backbone.feature_dim, model.embed_dim), dict(backbone.config))
        cached = SatCLIP(head, build_location_encoder(model), model.logit_scale_init).to(device).train()
        optimizer = adamw(cached, OptimConfig())
        pairs = CachedPairs(cache, train=True, seed=0, jitter=0.01)
        run_epoch(cached, loader_for(pairs, args.images, args.batch_size, 99), optimizer, device, amp, 1)
        repeats = 5
        t_same = sum(run_epoch(cached, loader_for(pairs, args.images, args.batch_size, e), optimizer, device, amp)[0]
                     for e in range(repeats)) / repeats  # fmt: skip

        # 4. cached at scale (synthetic features that depend on the location, so 5. can learn)
        m = args.cache_images
        lonlat, features = synthetic_features(m, args.views, backbone.feature_dim)
        big = write_cache(tmp / "big", features, lonlat, backbone, fingerprint=f"bench-big-{m}")
        del features
        pairs = CachedPairs(big, train=True, seed=0, jitter=0.01)
        run_epoch(cached, loader_for(pairs, m, args.cache_batch, 99), optimizer, device, amp, 1)
        t_big = min(run_epoch(cached, loader_for(pairs, m, args.cache_batch, e), optimizer, device, amp)[0]
                    for e in range(2))  # fmt: skip
        fit_rows = lightning_fit(args, big, tmp / "run") if args.fit_epochs else []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ratio_same = t_orig / t_same
    epoch_orig_100k = per_image_orig * S2_100K
    epoch_cached_100k = t_big / m * S2_100K
    build_100k = per_view_build * S2_100K * args.views
    print("\n| path | images | batch | s / epoch | s / image |\n|---|---|---|---|---|")
    print(f"| original-style (backbone every step) | {args.images} | {args.batch_size} | {t_orig:.2f} | "
          f"{per_image_orig:.2e} |")  # fmt: skip
    print(f"| cached, same images and batch | {args.images} | {args.batch_size} | {t_same:.4f} | "
          f"{t_same / args.images:.2e} |")  # fmt: skip
    print(f"| cached at scale | {m:,} | {args.cache_batch:,} | {t_big:.2f} | {t_big / m:.2e} |")
    print(f"| cache build ({args.views} views) | {args.images} | – | {t_build:.2f} (once) | "
          f"{per_view_build:.2e} per view |")  # fmt: skip
    ratio_epoch = epoch_orig_100k / epoch_cached_100k
    print(
        f"\nper-epoch speed-up of the cache on S2-100K (both paths as they train: measured seconds per image "
        f"× 100,000): **{ratio_epoch:,.0f}×**; on the same {args.images} images at batch {args.batch_size}: "
        f"{ratio_same:,.0f}× (fixed per-step costs weigh more in small batches)"
    )
    print(f"projected, {EPOCHS} epochs on S2-100K ({S2_100K:,} images):")
    print(f"- original-style: {fmt_duration(EPOCHS * epoch_orig_100k)} ({fmt_duration(epoch_orig_100k)} per epoch)")
    print(
        f"- cached: {fmt_duration(build_100k + EPOCHS * epoch_cached_100k)} = cache build "
        f"{fmt_duration(build_100k)} + {EPOCHS} × {fmt_duration(epoch_cached_100k)}"
    )
    if fit_rows:
        print(
            f"\nsatclip.train.fit (Lightning) on the {m:,}-image cache, batch {args.cache_batch:,}, "
            f"precision {args.fit_precision} (training seconds per epoch, validation excluded):"
        )
        for row in fit_rows:
            print(
                f"- epoch {row['epoch']}: {row['seconds']:.2f} s, train_loss {row['train_loss']:.3f}, "
                f"val_loss {row['val_loss']:.3f}, val_acc_i2l {row['val_acc_i2l']:.3f}"
            )
    if ratio_epoch < 50:
        raise SystemExit(f"cached epochs are only {ratio_epoch:.1f}× faster (expected ≥ 50×)")


if __name__ == "__main__":
    main()
