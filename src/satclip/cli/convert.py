"""``satclip convert SOURCE OUTPUT [--target native|original|torchgeo|rshf]``: write a model for a reader."""

from __future__ import annotations

import argparse

from ..io import TARGETS
from .args import add_overwrite_option, add_trust_option, user_path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="write a model for a reader: native directory, original .ckpt, torchgeo or rshf",
        description=(
            "Write SOURCE (a .ckpt, a native model directory or a model name) as OUTPUT for --target: native "
            "(a directory: config.json + model.safetensors), original (a .ckpt the original SatCLIP code and "
            "rangegeo load), torchgeo (a state dict for torchgeo.models.satclip.SatCLIP) or rshf (a directory "
            "for rshf's SatClip.from_pretrained). Default: original for an OUTPUT ending in .ckpt, torchgeo for "
            ".pt, else native for a .ckpt SOURCE and original for a native one. Prints which readers reproduce "
            "the model and to what tolerance (docs/export.md). An existing OUTPUT is replaced only with "
            "--overwrite, and never a directory satclip did not create or one holding files it did not write."
        ),
    )
    parser.add_argument("source", metavar="SOURCE", help="a .ckpt file, a native model directory or a model name")
    parser.add_argument(
        "output", metavar="OUTPUT", type=user_path, nargs="?",
        help="a directory (native, rshf) or a file (original: .ckpt, torchgeo: .pt); or give it as -o OUTPUT, as "
             "the other commands take theirs",
    )  # fmt: skip
    parser.add_argument("-o", "--output", dest="output_option", metavar="OUTPUT", type=user_path,
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument(
        "--target", choices=TARGETS, default=None,
        help="the reader to write for (default: from OUTPUT's suffix, .ckpt original, .pt torchgeo; else native "
        "for a .ckpt SOURCE, original for a native directory)",
    )  # fmt: skip
    parser.add_argument(
        "--location-only", action="store_true",
        help="write the location encoder alone (always so for torchgeo and rshf)",
    )  # fmt: skip
    add_overwrite_option(parser)
    add_trust_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import interrupts
    from ..errors import BadInputError
    from ..io.convert import convert

    if (args.output is None) == (args.output_option is None):
        given = "" if args.output is None else f": {args.output} and -o {args.output_option}"
        raise BadInputError(f"give one OUTPUT, after SOURCE or as -o OUTPUT{given}")
    interrupts.final_output(args.output or args.output_option)
    written = convert(
        args.source, args.output or args.output_option, target=args.target, location_only=args.location_only,
        trust_checkpoint=args.trust_checkpoint, overwrite=args.overwrite,
    )  # fmt: skip
    print(written.report())
    return 0
