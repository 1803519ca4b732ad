"""Train the shipped models (`bluemarble-l10`, `bluemarble-l40`) by their recipes and export them.

    python scripts/train_shipped.py OUT_DIR [--recipes bluemarble-l10,bluemarble-l40] [--device cuda]

Each model lands in OUT_DIR/<name>/ (native format) with its training history; copy those directories to
src/satclip/pretrained/<name>/. The recipes are src/satclip/recipes/<name>.yaml (seed 0). A recipe that starts
from another shipped model (``model.init_from: bluemarble-l10``) starts from the one trained in the same call,
when there is one, rather than from the installed copy.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from satclip.recipes import recipe_path, train_recipe
from satclip.train.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--recipes", default="bluemarble-l10,bluemarble-l40")
    parser.add_argument("--device", default=None, help="device for the feature cache (default: cuda if available)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/shipped"))
    parser.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="config override, e.g. --set trainer.max_epochs 10")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    trained: dict[str, Path] = {}
    for name in args.recipes.split(","):
        start = time.perf_counter()
        overrides = dict(args.set)
        init_from = load_config(recipe_path(name)).model.init_from
        if init_from in trained:
            overrides.setdefault("model.init_from", str(trained[init_from]))
        result = train_recipe(name, args.workdir / name, device=args.device, overrides=overrides)
        target = trained[name] = args.out / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(result.exports["best"].native, target)
        (target / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
        print(f"{name}: {time.perf_counter() - start:.0f} s, {len(result.history)} epochs → {target}", flush=True)


if __name__ == "__main__":
    main()
