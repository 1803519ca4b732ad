"""How closely each reader reproduces a model ``satclip convert --target …`` wrote for it (the numbers in
docs/export.md).

    python benchmarks/peer_exports.py [--torchgeo-wheel PATH]

For every source (the two shipped models, exact basis; the two fixture checkpoints, the original's
``"analytic"`` basis) and every target, the export is loaded with the reader's own code (rangegeo's
``load_satclip_location_encoder``, rshf's ``SatClip.from_pretrained(dir, strict=True)``, torchgeo's
``models/satclip.py`` from its wheel, built under float64 default dtype) and compared with
``satclip.load(source, dtype=float64)`` on the 2,000 fixture points: largest difference / largest
embedding value, overall and for |lat| ≤ 30°, 30–60°, > 60° (torchgeo: inside its ±89.95° clamp). Needs
rangegeo, rshf, einops, pytest (install.sh dev) and the fixtures ($SATCLIP_FIXTURES, else ../shared/fixtures).
Downloads the pinned torchgeo wheel with pip unless given one (--torchgeo-wheel or $SATCLIP_TORCHGEO_WHEEL).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _args import needs  # noqa: E402
from hardware import FIXTURES as ALL_FIXTURES  # noqa: E402
from hardware import print_hardware  # noqa: E402

import satclip  # noqa: E402
from satclip.io.convert import convert  # noqa: E402
from satclip.io.peers import TORCHGEO_LAT_CLAMP, torchgeo_arguments  # noqa: E402
from satclip.io.read import read_parts  # noqa: E402

FIXTURES = ALL_FIXTURES / "satclip-reference"
BANDS = {"|lat| ≤ 30°": (0, 30), "30–60°": (30, 60), "> 60°": (60, 90.0001)}


def relative(peer: np.ndarray, ours: np.ndarray, rows) -> str:
    if not rows.any():
        return "–"
    return f"{np.abs(peer[rows] - ours[rows]).max() / np.abs(ours).max():.1e}"


def run(tmp: Path, points: np.ndarray, rangegeo, rshf, torchgeo) -> None:
    sources = {
        "bluemarble-l10": "bluemarble-l10", "bluemarble-l40": "bluemarble-l40",
        "satclip-resnet18-l10 (fixture)": FIXTURES / "satclip-resnet18-l10.ckpt",
        "satclip-resnet18-l40 (fixture)": FIXTURES / "satclip-resnet18-l40.ckpt",
    }  # fmt: skip
    lat = np.abs(points[:, 1])
    print("| source | basis | reader | reported | all points | " + " | ".join(BANDS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(BANDS))
    for name, source in sources.items():
        ours = satclip.load(source, dtype=torch.float64).encode(points).numpy()
        basis = read_parts(source, location_only=True).location_config["encoding"]["harmonics_calculation"]
        for target in ("original", "torchgeo", "rshf"):
            suffix = {"original": ".ckpt", "torchgeo": ".pt", "rshf": ""}[target]
            out = tmp / f"{name.split()[0]}-{target}{suffix}"
            written = convert(source, out, target=target, location_only=True, overwrite=True)
            inside = np.ones(len(points), bool)
            if target == "original":
                model, label = rangegeo.load_satclip_location_encoder(str(out)), "rangegeo"
            elif target == "torchgeo":
                default = torch.get_default_dtype()
                torch.set_default_dtype(torch.float64)
                try:
                    model = torchgeo.SatCLIP(**torchgeo_arguments(read_parts(source, location_only=True)))
                finally:
                    torch.set_default_dtype(default)
                model.load_state_dict(torch.load(out, weights_only=True), strict=True)
                label, inside = "torchgeo", lat <= TORCHGEO_LAT_CLAMP
            else:
                model, label = rshf.SatClip.from_pretrained(str(out), strict=True).double(), "rshf"
            with torch.no_grad():
                peer = model.eval()(torch.from_numpy(points)).numpy()
            (entry,) = [r for r in written.readers if r.name.startswith(label)]
            reported = "not reproduced" if entry.tolerance is None else f"{entry.tolerance:.0e}"
            cells = [relative(peer, ours, inside)]
            cells += [relative(peer, ours, inside & (lat >= lo) & (lat < hi)) for lo, hi in BANDS.values()]
            print(f"| {name} | {basis} | {label} ({target}) | {reported} | " + " | ".join(cells) + " |")
            exact = np.array_equal(satclip.load(written, dtype=torch.float64).encode(points).numpy(), ours)
            if not exact:
                print(f"|  |  | satclip.load of the {target} export | | not bit-identical |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torchgeo-wheel", help="a local torchgeo >= 0.10 wheel (default: pip download of the "
                        "pinned version, or $SATCLIP_TORCHGEO_WHEEL)")  # fmt: skip
    args = parser.parse_args()
    needs(("pytest", "dev"))  # tests/peers.py's loaders skip, naming what to install, where a reader is missing
    import pytest
    from tests import peers

    if args.torchgeo_wheel:
        if not Path(args.torchgeo_wheel).is_file():
            sys.exit(f"peer_exports: --torchgeo-wheel {args.torchgeo_wheel}: no such file (give a torchgeo >= 0.10 "
                     "wheel, or leave the option out to download the pinned one)")  # fmt: skip
        os.environ["SATCLIP_TORCHGEO_WHEEL"] = args.torchgeo_wheel
    reference = FIXTURES / "sh_reference.npz"
    if not reference.exists():
        sys.exit(f"peer_exports: {reference} not found: set SATCLIP_FIXTURES=PATH (README.md, 'Tests and benchmarks')")
    points = np.load(reference)["lonlat"]
    with tempfile.TemporaryDirectory(prefix="satclip-peers-") as tmp:
        try:
            rangegeo, rshf, torchgeo = peers.rangegeo(), peers.rshf_satclip(), peers.torchgeo_satclip(Path(tmp))
            print(f"# satclip exports read by their peers, float64, {len(points)} fixture points; torchgeo from "
                  f"{torchgeo.wheel}")  # fmt: skip
            print_hardware()
            run(Path(tmp), points, rangegeo, rshf, torchgeo)
        except pytest.skip.Exception as missing:  # tests/peers.py's reason names what to install
            sys.exit(f"peer_exports: {missing.msg}")


if __name__ == "__main__":
    main()
