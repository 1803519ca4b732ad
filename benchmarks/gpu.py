"""GPU checks: the stable SH recurrence and the released-architecture encoder on CUDA.

    PYTHONPATH=src python benchmarks/gpu.py

Prints CUDA-vs-CPU agreement (float64 and float32) and throughput (points/s) for the SH basis (L = 10, 40)
and the released location-encoder architecture (float32 and bf16 autocast of the network), then the fused
encoder of issue 14 (float32, bf16, chunk sizes; ``fused.DEVICE_CHUNK`` is the default) and what
``precision="auto"`` picks on this GPU. Ratios are against baselines measured in the same run: the SH basis in
float32 against float64, and every encoder row against the plain float32 module (its ``forward`` on all the points).
The issue-14 targets quoted in :func:`fused_rows` are absolute (points/s on one H200): they are printed, not judged.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from hardware import print_hardware

from satclip import LocationEncoder
from satclip.encoding import create


def cuda_time(fn, *args, repeats: int = 5) -> float:
    fn(*args)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def points(n: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    lon = torch.rand(n, generator=g, dtype=torch.float64) * 360 - 180
    lat = torch.rad2deg(torch.asin(torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1))
    return torch.stack([lon, lat], 1).to(device)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    if not torch.cuda.is_available():
        cpu_only = "this torch is a CPU build" if torch.version.cuda is None else "torch finds no CUDA GPU"
        sys.exit(f"benchmarks/gpu.py measures a CUDA GPU and {cpu_only}: run it on a GPU machine with a CUDA torch "
                 "(./install.sh with SATCLIP_TORCH=skip keeps one you installed)")  # fmt: skip
    device = torch.device("cuda")
    print_hardware("")
    for L in (10, 40):
        sh = create("sphericalharmonics", legendre_polys=L)
        ref = sh(points(10_000, "cpu"))
        for dtype in (torch.float64, torch.float32):
            got = sh(points(10_000, device).to(dtype)).double().cpu()
            print(f"SH L={L} {str(dtype):14s} CUDA vs CPU float64: max abs diff {(got - ref).abs().max().item():.2e}")
        baseline = None
        for dtype in (torch.float64, torch.float32):
            n = 1_000_000
            pts = points(n, device).to(dtype)
            t = cuda_time(sh, pts)
            baseline = baseline or t
            print(f"SH L={L} {str(dtype):14s} N={n:,}: {t * 1e3:.1f} ms, {n / t:,.0f} points/s "
                  f"({baseline / t:.2f}x float64)")  # fmt: skip
    for L in (10, 40):
        torch.manual_seed(0)
        enc = LocationEncoder.from_config({
            "encoding": {"name": "sphericalharmonics", "legendre_polys": L},
            "network": {"name": "siren", "num_classes": 256, "dim_hidden": 512, "num_layers": 2},
        }).eval().to(device)  # fmt: skip
        n = 1_000_000
        pts = points(n, device).float()
        with torch.no_grad():
            plain = cuda_time(enc, pts)
            print(f"encoder L={L} float32 N={n:,}: {plain * 1e3:.1f} ms, {n / plain:,.0f} points/s (the baseline)")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                t = cuda_time(enc, pts)
                bf = enc(pts[:10_000]).float()
            exact = enc(pts[:10_000])
            cos = torch.nn.functional.cosine_similarity(bf, exact).min().item()
            print(
                f"encoder L={L} bf16 autocast N={n:,}: {t * 1e3:.1f} ms, {n / t:,.0f} points/s "
                f"({plain / t:.2f}x float32), min cosine to float32 {cos:.5f}"
            )
        fused_rows(enc, L, device, n / plain)


def fused_rows(enc, L: int, device, plain_rate: float) -> None:
    """Issue 14: the fused encoder (satclip.models.fused: scaled basis in chunks read by the first layer) in float32
    and bf16, and what precision="auto" picks here. Targets on one H200: L=40 bf16 >= 20M points/s, L=10
    >= 50M points/s, min cosine to float32 >= 0.9999. ``plain_rate``: points/s of the plain float32 module, the
    baseline of the ratios."""
    from satclip.models import fused, precision

    lonlat = points(4_000_000, device)
    probe = lonlat[:100_000]
    ref = fused.encode_points(enc, probe, "float32").double()
    for name in ("float32", "bf16"):
        for chunk in (65_536, 262_144, 1_048_576):
            t = cuda_time(lambda name=name, chunk=chunk: fused.encode_points(enc, lonlat, name, chunk))
            cos = torch.nn.functional.cosine_similarity(fused.encode_points(enc, probe, name, chunk).double(), ref)
            rate = len(lonlat) / t
            print(f"fused L={L} {name:8s} chunk {chunk:>9,}: {rate:,.0f} points/s ({rate / plain_rate:.2f}x plain "
                  f"float32), min cosine to float32 {cos.min().item():.6f}")  # fmt: skip
    choice = precision.resolve("auto", enc, device)
    print(f"fused L={L}: precision auto -> {choice.precision} ({choice.reason})")


if __name__ == "__main__":
    main()
