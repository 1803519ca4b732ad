"""``satclip map --model M --resolution DEG -o OUT``: the embedding field on a global (or bbox) grid."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import precision_option
from .args import (
    add_cluster_options,
    add_harmonics_option,
    add_overwrite_option,
    add_trust_option,
    check_cluster_options,
    device,
    file_output,
    positive_float,
    positive_int,
)

PRECISION_HELP = (
    "float32 | bf16 | float64 | auto, or fp32, bfloat16, fp64, 32, 64 for the same (default: $SATCLIP_PRECISION, else "
    "float32, as satclip evaluate: bf16's rounding, ~4e-3, is more than the field varies between the cells of a fine "
    "map; auto = bf16 where the CPU/GPU multiplies bf16 natively and a one-time calibration measures it faster and "
    "within cosine 0.9999 of float32). GeoTIFF and Zarr maps hold float64 values in float64, else float32"
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "map",
        help="embed a lon/lat grid: GeoTIFF, Zarr or a PCA→RGB picture with coastlines",
        description=(
            "Embeds the centre of every RESOLUTION-degree cell. OUT.tif: float32 GeoTIFF (float64 with --precision "
            "float64; EPSG:4326), one band "
            "per embedding dimension (or per principal component with --pca N). OUT.zarr: the same as an "
            "xarray-readable Zarr store. OUT.png: the first three area-weighted principal components as RGB "
            "with Natural Earth coastlines, the variance they explain written under the map. Only cells in the "
            "model's training footprint are computed (land north of 60°S for the shipped bluemarble models, land "
            "for models that record none): the others are NaN, or blank in the PNG (ocean white, land grey), "
            "because the model never saw them. --all computes every cell."
        ),
    )
    parser.add_argument(
        "--model", required=True,
        help="model name, .ckpt file, native model directory or hub id; or a retrieval spec, as satclip evaluate "
        "--encoders takes it: MODEL+range+ (geographic) or MODEL+range (semantic), options in parentheses, e.g. "
        "'bluemarble-l10+range+(beta=0.5,database=DB)' (database: auto, the default, or a directory of `satclip "
        "retrieval build`; exclude_radius_km defaults to 0, as in satclip.load); docs/retrieval.md",
    )  # fmt: skip
    parser.add_argument("--resolution", type=positive_float, required=True, help="cell size in degrees, e.g. 1 or 0.25")
    parser.add_argument("-o", "--output", type=file_output(".tif", ".tiff", ".png"), required=True,
                        help="output .tif, .zarr or .png")
    parser.add_argument("--format", choices=["geotiff", "zarr", "png"],
                        help="the map's format, for an OUT whose suffix does not say it (one that says another is "
                             "refused)")  # fmt: skip
    parser.add_argument(
        "--bbox", type=float, nargs=4, metavar=("WEST", "SOUTH", "EAST", "NORTH"),
        help="region (degrees); WEST > EAST crosses the antimeridian (170 -20 -170 0: the map's longitudes run 170 "
             "… 190); longitudes in 0 … 360 are kept so",
    )
    cells = parser.add_mutually_exclusive_group()
    cells.add_argument(
        "--all", action="store_true", dest="all_cells",
        help="compute every cell, also ocean and land outside the model's training footprint (the raw field)",
    )  # fmt: skip
    cells.add_argument(
        "--land-only", action="store_true",
        help="only land cells (GSHHG mask) inside the training footprint; others are NaN/white (the same as the "
             "default for a model trained on land only, as the shipped bluemarble models: their footprint is land)",
    )  # fmt: skip
    parser.add_argument(
        "--pca", type=positive_int, metavar="N",
        help="GeoTIFF/Zarr: N principal components, not all dims; the map keeps the PCA's pca_mean (D) and "
             "pca_components (N, D) (Zarr variables; GeoTIFF tags, JSON), to project other embeddings x onto the same "
             "components: (x - pca_mean) @ pca_components.T",
    )  # fmt: skip
    parser.add_argument("--no-coastlines", action="store_true", help="PNG without coastlines")
    precision_option.add_arguments(parser, help=PRECISION_HELP)
    add_harmonics_option(parser)
    parser.add_argument("--device", type=device, default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=positive_int, help="points per forward pass (default: as satclip embed)")
    add_overwrite_option(parser, "OUT")
    parser.add_argument(
        "--restart", action="store_true",
        help="discard an unfinished run into OUT (OUT.partial/) instead of resuming it (a killed map resumes at the "
        "first unfinished block of rows when rerun with the same model, precision, batch size, grid and cells; "
        "--engine dask refuses to start beside one, and starts a stopped Dask map again)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--force", action="store_true",
        help="write a map over the size limits (8 GiB of values; 26M cells for PNG; 52M cells embedded, where a PCA "
        "whose field is over 8 GiB embeds each cell twice; never over 10^12 cells)",
    )  # fmt: skip
    add_trust_option(parser)
    parser.add_argument(
        "--engine", choices=["local", "dask"], default="local",
        help="local: this process (default); dask: Zarr only, chunk by chunk on a Dask cluster (the same cells, "
        "values and attributes)",
    )  # fmt: skip
    add_cluster_options(parser)
    parser.set_defaults(func=run)


def _bundled(model: str) -> bool:
    """Whether ``--model`` names a model shipped in the package (loaded in a moment, with no download)."""
    from ..pretrained import bundled_models, known_name

    return known_name(precision_option.model_source(model)) in bundled_models()


def run(args: argparse.Namespace) -> int:
    from .. import interrupts, safe_output
    from ..embed.maps import check_map_output_early, check_size, make_grid, map_format, render_map
    from ..errors import BadInputError
    from ..io.resolve import local_model_files
    from ..models.precision import default_as
    from ..terminal import progress_bar
    grid = make_grid(args.resolution, tuple(args.bbox) if args.bbox else None)
    output_format = map_format(args.output, args.format)
    if args.no_coastlines and output_format != "png":  # (accepted, and nothing done)
        raise BadInputError(f"--no-coastlines applies to PNG maps; a {output_format} map has no coastlines drawn: "
                            "drop it")  # fmt: skip
    if args.pca not in (None, 3) and output_format == "png":
        raise BadInputError(f"--pca {args.pca}: a PNG map shows the first 3 principal components as red, green "
                            "and blue; drop --pca, or write a GeoTIFF (.tif) or Zarr (.zarr) map of N "
                            "components")  # fmt: skip
    if args.engine == "dask" and output_format != "zarr":
        raise BadInputError(f"--engine dask writes Zarr maps of every dimension; {args.output} is {output_format}: "
                            "use a .zarr OUT")  # fmt: skip
    if args.engine == "dask" and args.pca:
        raise BadInputError(f"--pca {args.pca}: --engine dask writes Zarr maps of every dimension: drop --pca")
    check_cluster_options(args)
    # before the model is loaded: the model itself named as the output is said first
    inputs = local_model_files(precision_option.model_source(args.model))
    safe_output.check_not_input(args.output, inputs)
    safe_output.check_new_output(args.output)
    check_map_output_early(args.output, output_format, overwrite=args.overwrite, inputs=inputs)
    if not inputs and not _bundled(args.model):  # a grid too large for any model, refused before it is downloaded
        check_size(grid, None, output_format, args.force, components=3 if output_format == "png" else args.pca,
                   pca=args.engine != "dask")  # fmt: skip
    # one run per output, from before the model is loaded: a second map of OUT was refused only once it had loaded
    # its model (the first took the lock then), or wrote OUT after the first if the two loaded alike
    interrupts.final_output(args.output)
    with safe_output.exclusive(args.output, reentrant=True):
        with default_as(_default_precision(args)):
            encoder = precision_option.load_encoder(args)
        if args.engine == "dask":
            from ..embed.xarray import write_map_zarr

            write_map_zarr(
                encoder, args.output, resolution=args.resolution, bbox=tuple(args.bbox) if args.bbox else None,
                land_only=args.land_only, blank_unseen=not args.all_cells, batch_size=args.batch_size,
                overwrite=args.overwrite, force=args.force, scheduler=args.scheduler, workers=args.workers,
                restart=args.restart,
            )  # fmt: skip
        else:
            with progress_bar(unit="row", desc="map", disable=True if args.no_progress else None) as bar:
                render_map(
                    encoder, args.output, resolution=args.resolution, bbox=tuple(args.bbox) if args.bbox else None,
                    land_only=args.land_only, blank_unseen=not args.all_cells, pca=args.pca, fmt=args.format,
                    batch_size=args.batch_size, draw_coastlines=not args.no_coastlines,
                    title=f"{getattr(encoder, 'spec', None) or Path(str(args.model)).name} — embedding PCA (RGB)",
                    progress=bar.update,
                    overwrite=args.overwrite, force=args.force, restart=args.restart,
                )  # fmt: skip
    print(f"wrote {args.output} ({grid.height} × {grid.width} cells at {args.resolution}°, "
          f"precision {precision_option.describe(encoder)})")  # fmt: skip
    return 0


def _default_precision(args: argparse.Namespace) -> str:
    """The precision a map computes in where --precision and --dtype name none: float32 unless $SATCLIP_PRECISION says
    otherwise, as for satclip evaluate ("auto" chose bf16, whose rounding, ~4e-3, washed out the variation between the
    neighbouring cells of a fine map); an unfinished run of this map (not --restart) resumes in the precision it
    started with (one an older satclip started under its default, "auto", was refused as another job's)."""
    from ..embed.job import recorded, work_dir
    from ..models.precision import ENV, PRECISIONS, evaluation_precision

    resuming = not args.restart and not os.environ.get(ENV)
    started = recorded(work_dir(Path(args.output)), "model", "precision") if resuming else None
    return started if started in PRECISIONS else evaluation_precision()
