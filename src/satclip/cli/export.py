"""``satclip export --format onnx|torchscript --model M -o FILE``: a standalone location encoder."""

from __future__ import annotations

import argparse

from .args import add_trust_option, file_output


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a location encoder to ONNX or TorchScript (runs without satclip)",
        description=(
            "The exported model maps lonlat (N, 2) float64 (longitude, latitude in degrees) to embeddings "
            "(N, D). Spherical harmonics are computed by the stable recurrence in float64 inside the graph "
            "(see docs/export.md for the L=40 'analytic' difference near the poles)."
        ),
    )
    parser.add_argument(
        "--format", choices=["onnx", "torchscript"], required=True,
        help="onnx (needs pip install 'satclip[export]') or torchscript (a .pt file for torch.jit.load)",
    )  # fmt: skip
    parser.add_argument("--model", required=True, help="model name, .ckpt file, native model directory or hub id")
    parser.add_argument("-o", "--output", type=file_output(), required=True, help="output file (.onnx or .pt)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="network precision")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    add_trust_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import interrupts, safe_output
    from ..embed.api import load_encoder
    from ..io.onnx import check_export_path, export
    from ..io.resolve import local_model_files

    # before loading the model: a local model is an input, never replaced by its export; a name of another format
    # is refused before an existing file is (--overwrite would not help)
    inputs = local_model_files(args.model)
    safe_output.check_not_input(args.output, inputs)
    check_export_path(args.output, args.format)
    safe_output.check_new_output(args.output)
    safe_output.check_output(args.output, overwrite=args.overwrite, inputs=inputs)
    interrupts.final_output(args.output)
    encoder = load_encoder(args.model, dtype=getattr(torch, args.dtype), trust_checkpoint=args.trust_checkpoint)
    export(encoder, args.output, args.format, overwrite=args.overwrite)
    print(f"wrote {args.output} ({args.format}, embedding dim {encoder.embedding_dim}, {args.dtype})")
    return 0
