"""Embedding throughput (points/s) of ``satclip.embed`` for the released L = 10 and L = 40 architectures,
against the original's float64 path measured in the same run.

    python benchmarks/embed.py [--threads 1] [--points 100000] [--repeats 3]

One thread by default: on a shared CPU, torch's OpenMP threads spin at barriers while their partner is
descheduled, which makes multi-threaded timings of the many small ops in the harmonics erratic.

Baseline ("original"): float64 network on the ``"analytic-original"`` harmonics (the sympy expressions evaluated
as the original evaluates them — our stand-in for the original code's cost). Rows: that baseline, the
default for a released checkpoint (float32 network, ``"analytic"``: the exact value of those expressions from
the recurrence) and ``"analytic-stable"`` (float32). Uses the fixture checkpoints when present (weights do not
change the cost), else random weights with the released architecture (SIREN 512 → 512 → 256).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _args import positive_int
from hardware import FIXTURES, print_hardware

import satclip


def checkpoint(degree: int):
    return FIXTURES / "satclip-reference" / f"satclip-resnet18-l{degree}.ckpt"


def encoder_for(
    degree: int, dtype: torch.dtype, harmonics: str, precision: str | None = None
) -> satclip.LocationEncoder:
    """The fixture checkpoint of degree L (a random SIREN of the released shape without it); ``precision`` "auto"
    is what `satclip.load` gives a user by default (bf16 on a CPU that multiplies it fast)."""
    ckpt = checkpoint(degree)
    if ckpt.exists():
        encoder = satclip.load(ckpt, dtype=dtype, harmonics_calculation=harmonics)
    else:
        config = {
            "encoding": {"name": "sphericalharmonics", "legendre_polys": degree, "harmonics_calculation": harmonics},
            "network": {"name": "siren", "num_classes": 256, "dim_hidden": 512, "num_layers": 2},
        }
        encoder = satclip.LocationEncoder.from_config(config).to(dtype).eval()
    if precision is not None:
        encoder.precision = precision
    return encoder


def points_per_second(encoder, lonlat: np.ndarray, repeats: int) -> float:
    satclip.embed(lonlat[:1000], model=encoder)  # warm-up (expression tables, allocator)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        satclip.embed(lonlat, model=encoder)
        times.append(time.perf_counter() - began)
    return len(lonlat) / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument(
        "--points", type=positive_int, default=100_000, help="points per timed call (baseline: /5 at L=40)"
    )
    parser.add_argument("--repeats", type=positive_int, default=3, help="best of N")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    lat = np.rad2deg(np.arcsin(rng.uniform(-1, 1, args.points)))  # uniform on the sphere
    lonlat = np.column_stack([rng.uniform(-180, 180, args.points), lat])
    print(f"# satclip.embed throughput, best of {args.repeats}")
    print_hardware()
    for degree in (10, 40):
        ckpt = checkpoint(degree)
        print(f"# L={degree} weights: {ckpt if ckpt.exists() else f'random (released architecture; {ckpt} not found)'}")
    print("| L | path | points | points/s | × original |")
    print("|---|---|---|---|---|")
    for degree in (10, 40):
        rows = [
            ("original stand-in: float64, analytic-original", torch.float64, "analytic-original", None),
            ("released checkpoints' basis in float32: analytic", torch.float32, "analytic", None),
            ("default for released checkpoints: analytic, precision auto", torch.float32, "analytic", "auto"),
            ("float32, analytic-stable", torch.float32, "analytic-stable", None),
        ]
        baseline = None
        for label, dtype, harmonics, precision in rows:
            encoder = encoder_for(degree, dtype, harmonics, precision)
            if precision == "auto":
                label += f" → {encoder.precision}"
            n = args.points if (degree == 10 or dtype == torch.float32) else max(1000, args.points // 5)
            rate = points_per_second(encoder, lonlat[:n], args.repeats)
            baseline = baseline or rate
            print(f"| {degree} | {label} | {n:,} | {rate:,.0f} | {rate / baseline:.2f} |", flush=True)


if __name__ == "__main__":
    main()
