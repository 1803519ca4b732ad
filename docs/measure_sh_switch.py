"""Measure how far "analytic" and "analytic-stable" embeddings are apart for the fixture checkpoints.

python docs/measure_sh_switch.py [FIXTURES_DIR]   (default ../shared/fixtures/satclip-reference)
"""

import sys
from pathlib import Path

import numpy as np
import torch

import satclip

root = Path(
    sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/fixtures/satclip-reference"
)
exp = np.load(root / "expected.npz")
ll = torch.from_numpy(exp["lonlat"])
lat = np.abs(exp["lonlat"][:, 1])
for L in (10, 40):
    path = root / f"satclip-resnet18-l{L}.ckpt"
    a = satclip.load(path, dtype=torch.float64).encode(ll).numpy()
    s = satclip.load(path, dtype=torch.float64, harmonics_calculation="analytic-stable").encode(ll).numpy()
    d = np.abs(a - s).max(1)
    cos = (a * s).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(s, axis=1)
    print(
        f"L={L}: max {d.max():.2g}; |lat|>=60: {d[lat >= 60].max():.2g}; "
        f"30-60: {d[(lat >= 30) & (lat < 60)].max():.2g}; "
        f"<30: {d[lat < 30].max():.2g}; min cosine {cos.min():.6f}; median |embedding| {np.median(np.abs(a)):.2f}"
    )
