"""MOSAIKS features for 1,000 RGB patches of 32×32: time of ``satclip.image.create("mosaiks")``.

Target: under a second on a 2-core CPU (the offline default image backbone for CPU-only users).
Baseline, measured in the same run: the straightforward implementation (the whole batch at once, one
convolution per sign), which computes the same features. Wall-clock and process-CPU seconds are both
printed: on a machine shared with other jobs wall-clock time includes waiting for a core, and OpenMP's
thread barriers make multi-threaded runs much slower when the cores are oversubscribed.

    python benchmarks/mosaiks.py                  # 1 thread and torch's default
    python benchmarks/mosaiks.py --threads 1

The target is judged only at the size it is stated for (--n 1000). Results: benchmarks/RESULTS.md, "MOSAIKS
image features".
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _args import positive_int
from hardware import print_hardware

import satclip.image

#: the size the target (under a second of wall time) is stated for: patches of 32×32×3
TARGET_PATCHES = 1000


def best_of(fn, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds of ``repeats`` calls (CPU time shows the cost on a
    machine shared with other jobs, where wall-clock time includes waiting for a core)."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def baseline(encoder, images: torch.Tensor) -> torch.Tensor:
    """Whole batch, two convolutions (one per sign of the response)."""
    bias = encoder.config["bias"]
    pos = F.relu(F.conv2d(images, encoder.filters, -encoder.offsets) - bias).mean(dim=(2, 3))
    neg = F.relu(F.conv2d(images, -encoder.filters, encoder.offsets) - bias).mean(dim=(2, 3))
    return torch.cat([pos, neg], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=1000, help="patches (default 1000)")
    parser.add_argument("--size", type=positive_int, default=32, help="patch size in pixels (default 32)")
    parser.add_argument("--num-filters", type=positive_int, default=None, help="K (default: the encoder's default)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        nargs="+",
        default=None,
        help="torch thread counts (default: 1 and torch's own)",
    )
    parser.add_argument("--repeats", type=positive_int, default=5)
    args = parser.parse_args()
    threads = args.threads or sorted({1, torch.get_num_threads()})
    print_hardware()
    target = TARGET_PATCHES == args.n and args.size == 32
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.n, 3, args.size, args.size, generator=generator)
    params = {"in_chans": 3} | ({"num_filters": args.num_filters} if args.num_filters else {})
    encoder = satclip.image.create("mosaiks", **params).fit(images[:200], seed=0)
    print(
        f"mosaiks K={encoder.config['num_filters']} ({encoder.feature_dim} features), {args.n} patches "
        f"{args.size}x{args.size}x3, best of {args.repeats} (baseline: best of 2)"
    )
    with torch.no_grad():
        torch.testing.assert_close(
            encoder.encode_features(images), baseline(encoder, images), rtol=1e-4, atol=1e-5
        )
        for count in threads:
            torch.set_num_threads(count)
            wall, cpu = best_of(lambda: encoder.encode_features(images), args.repeats)
            base_wall, base_cpu = best_of(lambda: baseline(encoder, images), 2)
            print(
                f"  {count} thread(s): satclip {wall:.3f} s wall, {cpu:.3f} s CPU "
                f"({args.n / wall:,.0f} patches/s)"
                f" | baseline {base_wall:.3f} s wall, {base_cpu:.3f} s CPU (x{base_wall / wall:.1f})"
                + (f" | target < 1 s wall: {'met' if wall < 1.0 else 'NOT met'}" if target else
                   f" | target (< 1 s wall for {TARGET_PATCHES:,} patches of 32 px) not judged at this size")
            )


if __name__ == "__main__":
    main()
