"""``satclip convert SOURCE OUTPUT``: original ``.ckpt`` ⇄ native model directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an original SatCLIP .ckpt to a native model directory, or back",
        description=(
            "SOURCE an original .ckpt (or a model name) → OUTPUT written as a native model directory "
            "(config.json + model.safetensors). SOURCE a native directory → OUTPUT a .ckpt in the released "
            "layout. An existing OUTPUT is replaced only with --overwrite."
        ),
    )
    parser.add_argument("source", metavar="SOURCE", help="a .ckpt file, a native model directory or a model name")
    parser.add_argument(
        "output", metavar="OUTPUT", type=Path,
        help="native model directory (from a .ckpt) or .ckpt file (from a directory)",
    )  # fmt: skip
    parser.add_argument("--location-only", action="store_true", help="drop the image encoder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    parser.add_argument("--trust-checkpoint", action="store_true", help="allow unpickling arbitrary objects")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..convert import convert

    out = convert(
        args.source, args.output, location_only=args.location_only, trust_checkpoint=args.trust_checkpoint,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(f"wrote {out}")
    return 0
