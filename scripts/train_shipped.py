"""Train the shipped models (`bluemarble-l10`, `bluemarble-l40`) by their recipes and export them.

    python scripts/train_shipped.py OUT_DIR [--recipes bluemarble-l10,bluemarble-l40] [--device cuda]

Each model lands in OUT_DIR/<name>/ (native format) with its training history; copy those directories to
src/satclip/pretrained/<name>/. The recipes are src/satclip/recipes/<name>.yaml (seed 0). A recipe that starts
from another shipped model (``model.init_from: bluemarble-l10``) starts from the one trained in the same call,
when there is one, rather than from the installed copy. What the shipped model records about its corpus
(``metadata.training_footprint``, ``metadata.image_input``: the recipes share one corpus) is carried over
from the installed model of the same name.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from satclip.io import native
from satclip.pretrained import bundled_models
from satclip.recipes import recipe_path, train_recipe
from satclip.safe_output import MARKER
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
        # (no "best" when the run never validated: fewer epochs than trainer.check_val_every_n_epoch)
        chosen = result.exports.get("best") or result.exports["last"]
        shutil.copytree(chosen.native, target, ignore=shutil.ignore_patterns(MARKER))
        carry_corpus_description(name, target)
        (target / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
        print(f"{name}: {time.perf_counter() - start:.0f} s, {len(result.history)} epochs → {target}", flush=True)


def carry_corpus_description(name: str, target: Path) -> None:
    """The installed ``name``'s recorded training footprint and image input, written into ``target``'s config."""
    installed = bundled_models().get(name)
    if installed is None:
        return
    recorded = native.read_config(installed).get("metadata", {})
    config = native.read_config(target)
    for key in ("training_footprint", "image_input"):
        if key in recorded:
            config["metadata"][key] = recorded[key]
    native.write_config(target, config)


if __name__ == "__main__":
    main()
