"""Blue Marble corpus build time, against scipy's map_coordinates doing the same bilinear sampling.

    python benchmarks/bench_bluemarble.py [--n 100000] [--patch-size 32]

Times each stage (decode + mask load, land sampling, patch cutting, the whole ``build_bluemarble`` into a
temporary directory) in wall and CPU seconds, then samples the first 2,000 patches' pixel grids with
``scipy.ndimage.map_coordinates(order=1, mode="grid-wrap")`` as the baseline: it prints the speed ratio and
the largest pixel difference (expected ≤ 1, from rounding).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from _args import needs, positive_int
from hardware import print_hardware

from satclip.data import bluemarble as bm
from satclip.data import land


def timed(label: str, func):
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:38s} wall {wall:7.2f} s   cpu {cpu:7.2f} s")
    return result, wall


def scipy_patches(points: np.ndarray, size: int, gsd: float) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    image = bm.bmng_image()
    height, width = image.shape[:2]
    lonlat = bm.patch_lonlat(points, size, gsd).reshape(-1, 2)
    u = (lonlat[:, 0] + 180.0) * (width / 360.0) - 0.5
    v = np.clip((90.0 - lonlat[:, 1]) * (height / 180.0) - 0.5, 0, height - 1)
    channels = [map_coordinates(image[..., c], [v, u], order=1, mode="grid-wrap", output=np.float32)
                for c in range(3)]
    return (np.stack(channels, axis=-1) + 0.5).astype(np.uint8).reshape(len(points), size, size, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=100_000)
    parser.add_argument("--patch-size", type=positive_int, default=32)
    args = parser.parse_args()
    needs(("scipy", "bench"))
    size, gsd = args.patch_size, 7.5
    print_hardware()

    timed("decode bmng.jpg + load land mask", lambda: (bm._packed_image(), land.land_mask()))
    points, _ = timed(f"sample {args.n} land points", lambda: land.sample_land_points(args.n, seed=0))
    _, ours = timed(f"cut {args.n} patches of {size} px", lambda: bm.build_patches(points, size, gsd))
    with tempfile.TemporaryDirectory() as tmp:
        params = bm.BlueMarbleParams(n=args.n, patch_size=size, gsd_km=gsd)
        timed("build_bluemarble (all, to disk)", lambda: bm.build_bluemarble(f"{tmp}/c", params))

    subset = points[:2000]
    fast, fast_s = timed(f"  {len(subset)} patches, satclip", lambda: bm.build_patches(subset, size, gsd))
    slow, slow_s = timed(f"  {len(subset)} patches, scipy map_coordinates", lambda: scipy_patches(subset, size, gsd))
    diff = np.abs(fast.astype(int) - slow).max()
    print(f"speed-up over scipy {slow_s / fast_s:.1f}x; max pixel difference {diff}")


if __name__ == "__main__":
    main()
