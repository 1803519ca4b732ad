"""Spherical-harmonics basis and location-encoder throughput, with baselines measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/encoding.py --threads 1 [--repeats 3] [--quick] [--only-precision]

First (issue 14), per L = 10 and 40, what a user gets, in points/s per core and as ratios measured in the
same run (rows interleaved, best of ``--repeats`` rounds): the default for a released "analytic" checkpoint
(satclip.load's precision "auto" and the exact-value "analytic" basis) against today's default (the
original's sympy expressions in float64, float32 network, batches of 65,536, as satclip 0.1 ran them), the
old and the fused float32 paths, and bf16; plus the CPU capability torch reports and what "auto" chose.

Rows: our "analytic-stable" recurrence (float64/float32), our "analytic-original" path (the original's sympy
expressions evaluated as the original does: a faithful stand-in for the original's cost), scipy evaluating
each (l, m) separately, and sphericart-torch (if installed): its own compute, and mapped to SatCLIP's
convention. Then float32 accuracy, and the released location-encoder architecture (SH → SIREN 512 → 512 →
256) with a float32 GEMM peak for GFLOP/s, its ratios against the float64 "analytic-original" encoder measured in
the same run (the stand-in for the original's cost).
The original code's own seconds, measured once on another machine (the 2-core AMD EPYC development machine, 1
thread, by 2026-11-27: SH L=40, 1e5 points: 9.6 s; encoder L=40: 15.9 s per 1e5 points; L=10: 3.8 s;
research/REFERENCE.md), are printed beside the stand-in's for context, never divided by this run's times.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _args import positive_int
from hardware import FIXTURES, has_amx_bf16, print_hardware

import satclip
from satclip import LocationEncoder
from satclip.encoding import create, hugepages, scaled_recurrence
from satclip.models import precision

#: seconds of the original code, measured on another machine (:data:`ELSEWHERE`), not in this run: context only
ELSEWHERE = "the 2-core AMD EPYC development machine, 1 thread, by 2026-11-27; another machine, not this run"
ORIGINAL_SECONDS = {("sh", 40, 100_000): 9.6, ("encoder", 40, 100_000): 15.9, ("encoder", 10, 100_000): 3.8}


def timeit(fn, *args, repeats: int, warmup_seconds: float = 0.5) -> float:
    """Median wall time of ``fn(*args)`` after warm-up calls (at least one, and for ``warmup_seconds``):
    tables, caches, and the first touches of memory that a VM's host has not backed yet."""
    start = time.perf_counter()
    fn(*args)
    while time.perf_counter() - start < warmup_seconds:
        fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_points(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return torch.as_tensor(np.stack([rng.uniform(-180, 180, n), lat], 1))


def scipy_harmonics(lonlat: np.ndarray, L: int) -> np.ndarray:
    """Per-(l, m) scipy evaluation in SatCLIP's analytic convention."""
    from scipy.special import sph_harm_y

    colat = np.radians(90 - lonlat[:, 1])
    lon = np.radians(lonlat[:, 0])
    out = np.empty((len(lonlat), L * L))
    for l in range(L):
        for m in range(-l, l + 1):
            y = sph_harm_y(l, abs(m), colat, lon)  # complex, with Condon–Shortley phase
            cs = (-1.0) ** abs(m)
            if m == 0:
                value = np.pi * y.real
            elif m > 0:
                value = np.sqrt(2) * cs * y.real
            else:
                value = np.sqrt(2) * cs * y.imag
            out[:, l * l + l + m] = (-1.0) ** l * value
    return out


def unit_vectors(lonlat: torch.Tensor) -> torch.Tensor:
    lat, lon = torch.deg2rad(lonlat[:, 1]), torch.deg2rad(lonlat[:, 0])
    return torch.stack([torch.cos(lat) * torch.cos(lon), torch.cos(lat) * torch.sin(lon), torch.sin(lat)], 1)


def sphericart_harmonics(L: int, dtype: torch.dtype):
    """sphericart-torch: ``(raw, mapped)`` — its own ``compute`` on unit vectors, and the same with the fixed
    per-(l, m) factor (π on m = 0)·(−1)^l that maps it to SatCLIP's analytic convention."""
    import sphericart.torch as sct

    calc = sct.SphericalHarmonics(L - 1)
    lm = [(l, m) for l in range(L) for m in range(-l, l + 1)]
    factor = torch.tensor([(np.pi if m == 0 else 1.0) * (-1.0) ** l for l, m in lm], dtype=dtype)

    def mapped(lonlat: torch.Tensor) -> torch.Tensor:
        return calc.compute(unit_vectors(lonlat).to(dtype)) * factor

    return calc.compute, mapped


@contextlib.contextmanager
def small_pages():
    """Output buffers without the transparent-huge-page advice (what a plain ``torch.empty`` gets)."""
    saved = hugepages.MIN_BYTES
    hugepages.MIN_BYTES = float("inf")
    try:
        yield
    finally:
        hugepages.MIN_BYTES = saved


def gemm_peak(threads: int) -> float:
    a = torch.randn(4096, 4096)
    b = torch.randn(4096, 4096)
    seconds = timeit(torch.matmul, a, b, repeats=3)
    return 2 * 4096**3 / seconds / 1e9


def released_encoder(L: int, calc: str) -> LocationEncoder:
    torch.manual_seed(0)
    return LocationEncoder.from_config(
        {
            "encoding": {"name": "sphericalharmonics", "legendre_polys": L, "harmonics_calculation": calc},
            "network": {"name": "siren", "num_classes": 256, "dim_hidden": 512, "num_layers": 2},
        }
    ).eval()


def encoder_flops(L: int) -> int:
    return 2 * (L * L * 512 + 512 * 512 + 512 * 256)


REFERENCE = FIXTURES / "satclip-reference"


def released_weights(L: int, reference: Path) -> LocationEncoder:
    """The fixture checkpoint of degree L (released format and architecture) if present, else the released
    architecture with random weights and the checkpoints' "analytic" basis."""
    ckpt = reference / f"satclip-resnet18-l{L}.ckpt"
    if ckpt.exists():
        return satclip.load(ckpt, precision="float32")
    encoder = released_encoder(L, "analytic")
    precision.configure(encoder, "float32")
    return encoder


def with_basis(encoder: LocationEncoder, calculation: str) -> LocationEncoder:
    config = {**encoder.config, "encoding": {**encoder.config["encoding"], "harmonics_calculation": calculation}}
    other = LocationEncoder.from_config(config)
    other.load_state_dict(encoder.state_dict())
    return other.float().eval()


def old_encode(encoder: LocationEncoder, points: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``LocationEncoder.encode`` before issue 14: the module's forward in batches, coordinates in the
    dtype the basis needs (float64 for the sympy expressions, else the network's float32)."""
    lonlat = points.to(encoder.feature_dtype)
    with torch.no_grad():
        return torch.cat([encoder(chunk) for chunk in lonlat.split(batch_size)])


def round_robin(rows: dict, repeats: int) -> dict:
    """Best wall time of each ``(fn, n)`` row over ``repeats`` interleaved rounds (after one warm-up), so
    that a busy machine slows every row alike."""
    for fn, _ in rows.values():
        fn()
    best = {name: float("inf") for name in rows}
    for _ in range(repeats):
        for name, (fn, _) in rows.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@contextlib.contextmanager
def own_cache():
    """``$SATCLIP_CACHE`` pointed at an empty temporary directory, and this process's calibrations forgotten, so that
    precision "auto" is measured afresh: the user's cache (its saved calibrations of every model) is neither read
    nor touched."""
    saved = os.environ.get("SATCLIP_CACHE")
    with tempfile.TemporaryDirectory(prefix="satclip-bench-cache-") as tmp:
        os.environ["SATCLIP_CACHE"] = tmp
        try:
            precision.clear_calibrations()  # (this process's, and the empty temporary cache's)
            yield
        finally:
            if saved is None:
                del os.environ["SATCLIP_CACHE"]
            else:
                os.environ["SATCLIP_CACHE"] = saved


#: points per block of the scaled float32 basis (basis_rows times whole blocks only)
BASIS_BLOCK = 2048


def basis_rows(args) -> None:
    """Issue 14 item 3: the fused encoder's float32 basis (scaled recurrence, float64 within 10° of the
    poles) against the float64 recurrence rounded to float32, L = 40: speed and accuracy."""
    n = args.points
    pts = random_points(n, seed=4)
    lat = torch.deg2rad(pts[:, 1])
    x, s, phi = -torch.sin(lat), torch.where(pts[:, 1].abs() == 90, 0.0, torch.cos(lat)), torch.deg2rad(pts[:, 0] + 180)
    plan = scaled_recurrence.plan(40, np.pi, False)
    polar = pts[:, 1].abs() > scaled_recurrence.POLAR_LATITUDE
    module = create("sphericalharmonics", legendre_polys=40)
    block = torch.empty(1600, BASIS_BLOCK)
    views = scaled_recurrence.block_views(block, 40)

    whole = n // BASIS_BLOCK * BASIS_BLOCK  # points in whole blocks, the ones timed

    def scaled():
        for i in range(0, whole, BASIS_BLOCK):
            j = slice(i, i + BASIS_BLOCK)
            scaled_recurrence.scaled_harmonics(x[j], s[j], phi[j], plan, block, views)

    seconds = round_robin({"f64": (lambda: module(pts.float()), n), "f32": (scaled, n)}, args.repeats)
    exact = module(pts)
    error = (scaled_recurrence.harmonics(x, s, phi, plan, torch.float32, polar=polar).double() - exact).abs().max()
    print(f"  SH basis L=40: float64 recurrence -> float32 {n / seconds['f64']:,.0f} points/s; scaled float32 "
          f"recurrence in {BASIS_BLOCK}-point blocks {whole / seconds['f32']:,.0f} points/s "
          f"({seconds['f64'] / seconds['f32'] * whole / n:.1f}x); its max abs error with the "
          f"polar points in float64, on {n:,} uniform points: {error:.1e} (target <= 1e-4)")  # fmt: skip


def precision_section(args) -> dict:
    """Issue 14's rows; returns {L: {row: points/s}}."""
    from satclip.models import fused

    supported, evidence = precision.bf16_support("cpu")
    print(f"\n== what users get (issue 14), per core: torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{precision.describe_cpu()}, bf16 matmul {'yes' if supported else 'no'} ({evidence}) ==")  # fmt: skip
    rates = {L: encoder_rows(L, args, fused) for L in (10, 40)}
    r = rates[40]
    if has_amx_bf16():
        print(f"acceptance on an AMX-BF16 CPU, L=40: bf16 >= 4x float32 exact: {r[3] / r[2]:.2f}x (fused float32), "
              f"{r[3] / r[1]:.2f}x (today's); released-L=40 default >= 20x today's: {r[4] / r[0]:.1f}x")  # fmt: skip
    else:
        print("acceptance (bf16 >= 4x float32, default >= 20x today's) is stated for AMX-BF16 CPUs: not judged on "
              f"this one ({precision.describe_cpu()})")  # fmt: skip
    basis_rows(args)
    return rates


ROWS = ("today's default: analytic expressions f64, f32 net", "today's float32 exact (analytic-stable)",
        "float32 exact, fused", "bf16, fused", "default for an 'analytic' checkpoint")  # fmt: skip


def encoder_rows(L: int, args, fused) -> list[float]:
    """points/s of the :data:`ROWS` at degree L, measured interleaved."""
    names = ROWS
    base = released_weights(L, Path(args.reference))
    original, stable, default = (with_basis(base, c) for c in ("analytic-original", "analytic-stable", "analytic"))
    with own_cache():
        start = time.perf_counter()
        precision.configure(default, "auto")
        calibration = time.perf_counter() - start
    choice = default.precision_choice
    where = Path(args.reference) / f"satclip-resnet18-l{L}.ckpt"
    print(f"L={L}: weights {where.name if where.exists() else 'random, released architecture'}; auto -> "
          f"{choice.precision} ({choice.reason}; calibration {calibration:.1f} s, measured afresh)")  # fmt: skip
    n, n_slow = args.points, (args.points // 5 if L == 40 else args.points)
    pts, slow = random_points(n, seed=2), random_points(n_slow, seed=3)
    rows = {
        names[0]: (lambda: old_encode(original, slow, 65536), n_slow),
        names[1]: (lambda: old_encode(stable, pts, 4096), n),
        names[2]: (lambda: fused.encode_points(stable, pts, "float32"), n),
        names[3]: (lambda: fused.encode_points(stable, pts, "bf16"), n),
        names[4]: (lambda: default.encode(pts), n),
    }
    seconds = round_robin(rows, args.repeats)
    r = [count / seconds[name] for name, (_, count) in rows.items()]
    for name, rate in zip(names, r, strict=True):
        label = f"{name} ({choice.precision})" if name == names[4] else name
        print(f"  {label:60s} L={L:<3d} {rate:11,.0f} points/s")
    print(f"  default / today's default {r[4] / r[0]:.1f}x; bf16 / float32 fused {r[3] / r[2]:.2f}x; "
          f"bf16 / today's float32 {r[3] / r[1]:.2f}x; float32 fused / today's {r[2] / r[1]:.2f}x")  # fmt: skip
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--quick", action="store_true", help="N up to 1e5 only, fewer baselines")
    parser.add_argument("--only-precision", action="store_true", help="only the issue-14 rows")
    parser.add_argument("--points", type=int, default=50_000, help="points per issue-14 row (L=40 today: 1/5)")
    parser.add_argument("--reference", default=str(REFERENCE), help="folder with satclip-resnet18-l{10,40}.ckpt")
    args = parser.parse_args()
    if args.points < BASIS_BLOCK:
        parser.error(f"--points must be at least {BASIS_BLOCK:,} (the basis is timed in blocks of that many); "
                     f"got {args.points:,}")  # fmt: skip
    torch.set_num_threads(args.threads)
    print_hardware("")
    print(f"load average {os.getloadavg()[0]:.1f}")
    precision_section(args)
    if args.only_precision:
        return

    rows = []

    def report(what, L, dtype, n, seconds, baseline=None):
        ratio = f"{baseline / seconds:8.1f}x" if baseline else ""
        rows.append((what, L, dtype, n, seconds))
        print(f"{what:34s} L={L:<3d} {dtype:8s} N={n:<8d} {seconds:8.3f} s {n / seconds:12,.0f} pts/s {ratio}")

    print("\n== spherical-harmonics basis (ratios: vs our faithful 'analytic-original' path in the same run) ==")
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    for L in (10, 40):
        for n in sizes:
            pts = random_points(n)
            if L == 40 and n > 100_000:
                # 1e6 × 1600 float64 is 12.8 GB: only float32 (6.4 GB) at this size
                t32 = timeit(create("sphericalharmonics", legendre_polys=L), pts.float(), repeats=args.repeats)
                report("analytic-stable", L, "float32", n, t32)
                continue
            base = None
            if n <= 100_000:
                analytic = create("sphericalharmonics", legendre_polys=L, harmonics_calculation="analytic-original")
                base = timeit(analytic, pts, repeats=1 if L == 40 else args.repeats)
                report("analytic-original (its expressions)", L, "float64", n, base)
            stable = create("sphericalharmonics", legendre_polys=L)
            ours = timeit(stable, pts, repeats=args.repeats)
            report("analytic-stable", L, "float64", n, ours, base)
            report("analytic-stable", L, "float32", n, timeit(stable, pts.float(), repeats=args.repeats), base)
            if L == 40 and n == 100_000:
                print(f"    (context: the original code took {ORIGINAL_SECONDS[('sh', L, n)]} s on {ELSEWHERE}; its "
                      f"stand-in above took {base:.3f} s here)")  # fmt: skip
                with small_pages():
                    t = timeit(stable, pts, repeats=args.repeats)
                report("analytic-stable, 4 KiB pages", L, "float64", n, t, base)
            if n <= 100_000:
                try:
                    raw, mapped = sphericart_harmonics(L, torch.float64)
                except ImportError:
                    raw = mapped = None
                if raw is not None:
                    t_raw = timeit(raw, unit_vectors(pts).contiguous(), repeats=args.repeats)
                    report("sphericart f64, own convention", L, "float64", n, t_raw, base)
                    diff = (mapped(pts[:2000]) - stable(pts[:2000])).abs().max().item()
                    t = timeit(mapped, pts, repeats=args.repeats)
                    report(f"sphericart f64 mapped (|Δ|={diff:.0e})", L, "float64", n, t, base)
                    print(f"    analytic-stable: {t_raw / ours:.2f}x sphericart's own compute, {t / ours:.2f}x mapped")
                if not args.quick and n == 10_000:
                    t = timeit(scipy_harmonics, pts.numpy(), L, repeats=1)
                    report("scipy per-(l, m)", L, "float64", n, t, base)

    print("\n== float32 accuracy of the basis at L=40 (vs float64 at the same inputs) ==")
    stable = create("sphericalharmonics", legendre_polys=40)
    uniform = random_points(100_000, seed=1).float()
    polar = uniform.clone()
    polar[:, 1] = torch.sign(polar[:, 1]) * (90 - (polar[:, 1].abs() % 1))  # all within 1° of a pole
    for name, pts in (("uniform", uniform), ("|lat| > 89°", polar)):
        got = stable(pts)
        err = (got.double() - stable(pts.double())).abs().max().item()
        finite = bool(torch.isfinite(got).all())
        print(f"analytic-stable float32, 1e5 {name}: max abs error {err:.2e}, finite: {finite}")
    pts = uniform
    try:
        sc32 = sphericart_harmonics(40, torch.float32)[1](pts)
        print(f"sphericart float32: finite: {bool(torch.isfinite(sc32).all())}")
    except ImportError:
        pass

    print("\n== released location-encoder architecture, 1e5 points (ratios: vs the float64 'analytic-original' "
          "encoder, the stand-in for the original, in the same run) ==")
    peak = gemm_peak(args.threads)
    print(f"float32 GEMM peak (4096³): {peak:.1f} GFLOP/s")
    n = 100_000
    pts = random_points(n)
    for L in (10, 40):
        with torch.no_grad():
            enc64 = released_encoder(L, "analytic-original").double()
            original = timeit(enc64.encode, pts, repeats=1)
            report("encoder analytic-original (as orig.)", L, "float64", n, original)
            print(f"    (context: the original code took {ORIGINAL_SECONDS[('encoder', L, n)]} s on {ELSEWHERE})")
            enc32 = released_encoder(L, "analytic-stable")
            t = timeit(enc32.encode, pts, repeats=args.repeats)
            report("encoder analytic-stable, fused", L, "float32", n, t, original)
            gflops = encoder_flops(L) * n / t / 1e9
            print(f"    network GFLOP/s {gflops:.1f} = {100 * gflops / peak:.0f}% of the GEMM peak")
            enc32a = released_encoder(L, "analytic-original")
            t = timeit(old_encode, enc32a, pts, 65536, repeats=1)
            report("encoder analytic-original, f32 net", L, "float32", n, t, original)


if __name__ == "__main__":
    main()
