"""``satclip convert IN OUT``: original ``.ckpt`` ⇄ native model directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an original SatCLIP .ckpt to a native model directory, or back",
        description=(
            "IN is an original .ckpt (or model name) → OUT is written as a native directory "
            "(config.json + model.safetensors). IN a native directory → OUT a .ckpt in the released layout."
        ),
    )
    parser.add_argument("source", help="a .ckpt file, a native model directory or a model name")
    parser.add_argument("output", type=Path, help="output directory (native) or .ckpt file")
    parser.add_argument("--location-only", action="store_true", help="drop the image encoder")
    parser.add_argument("--trust-checkpoint", action="store_true", help="allow unpickling arbitrary objects")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..convert import convert

    out = convert(
        args.source, args.output, location_only=args.location_only, trust_checkpoint=args.trust_checkpoint
    )
    print(f"wrote {out}")
    return 0
