"""``satclip locate IMAGE --model M``: the most likely locations of a satellite image."""

from __future__ import annotations

import argparse

from .args import add_harmonics_option, add_trust_option, device, existing_file, file_output, positive_int

#: what --output writes, by the file's suffix
OUTPUT_SUFFIXES = (".csv", ".json")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "locate",
        help="rank candidate locations on the globe for a satellite image",
        description=(
            "Embed IMAGE with a full SatCLIP model and print the K most similar of N candidate points (a "
            "Fibonacci grid over the globe). The released models (satclip-resnet18-l10 …) take Sentinel-2 L1C "
            "GeoTIFFs with 12 or 13 bands at 10 m/px, as in S2-100K (a 13-band file's B10 is set to 0, as the "
            "models saw it: S2-100K has none); the shipped bluemarble-l10/-l40 take RGB "
            "images (PNG, JPEG or a 3-band GeoTIFF) of 32×32 px at 7.5 km/px (larger ones are centre-cropped). "
            "The score is the cosine similarity of the image's and the location's embeddings (-1 to 1). A "
            "candidate outside the model's training footprint (land north of 60°S for the bluemarble models; land "
            "assumed for a model that records none) is marked, or left out with --within-footprint. When the true "
            "location is known (a GeoTIFF's centre, or --truth), its rank among the candidates is printed too. "
            "--output also writes the ranked rows to a CSV or JSON file. "
            "GeoTIFFs need rasterio (pip install 'satclip[data]'), pictures Pillow."
        ),
    )
    parser.add_argument(
        "image", type=existing_file,
        help="Sentinel-2 GeoTIFF (12 or 13 bands) or RGB PNG/JPEG/GeoTIFF, depending on the model",
    )  # fmt: skip
    parser.add_argument("--model", required=True, help="a .ckpt, a native model directory or a model name")
    parser.add_argument("--k", type=positive_int, default=5, help="number of results (default 5)")
    parser.add_argument(
        "--grid-size", type=positive_int, default=10_000, help="candidate points (default 10000, at most 10000000)"
    )
    parser.add_argument("--grid", default="fibonacci", help="candidate grid name (default fibonacci)")
    parser.add_argument(
        "--truth", type=float, nargs=2, metavar=("LON", "LAT"),
        help="where the image really is (degrees): print its rank among the candidates (default: a GeoTIFF's centre)",
    )  # fmt: skip
    parser.add_argument(
        "--within-footprint", action="store_true",
        help="rank only the grid points inside the model's training footprint (where it saw images)",
    )  # fmt: skip
    parser.add_argument(
        "-o", "--output", type=file_output(), metavar="FILE",
        help="also write the ranked rows to FILE, CSV or JSON by its suffix (.csv, .json): rank, lon, lat, score, "
        "inside_footprint, and km_to_truth and truth_rank when the true location is known",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    add_harmonics_option(parser)
    parser.add_argument("--device", type=device, default="cpu", help="torch device (default cpu)")
    add_trust_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from .. import interrupts, safe_output
    from ..encoding.points import great_circle_km, invalid_rows, valid_range_advice
    from ..errors import BadInputError
    from ..image.preprocess import geotiff_center_lonlat, is_picture
    from ..io.load import load_model
    from ..io.resolve import local_model_files
    from ..models.locate import GRIDS, check_grid_size, load_image, locate
    from ..models.provenance import training_footprint

    try:  # before loading the model and image
        GRIDS.get(args.grid)
    except KeyError as err:
        raise BadInputError(f"--grid: {err.args[0]}") from None
    check_grid_size(args.grid_size)
    if args.truth is not None:  # before loading the model
        given = np.asarray([args.truth], dtype=np.float64)
        bad = invalid_rows(given)
        if bad.any():
            raise BadInputError(f"--truth {args.truth[0]:g} {args.truth[1]:g} is not a location. "
                                f"{valid_range_advice(given, bad)}")  # fmt: skip
    inputs = [args.image, *local_model_files(args.model)]
    if args.output is not None:  # before loading the model: a name of another format, an existing file, a read-only
        # folder (each failed only after the work, the last after the table was printed)
        if args.output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise BadInputError(f"--output {args.output}: name a .csv or .json file (the suffix says which is "
                                "written)")  # fmt: skip
        safe_output.check_new_output(args.output)  # (a file in a corpus blocked the corpus's --overwrite)
        safe_output.check_output(args.output, overwrite=args.overwrite, inputs=inputs)
        safe_output.check_writable(args.output)
    model = load_model(args.model, device=args.device, harmonics_calculation=args.harmonics,
                       trust_checkpoint=args.trust_checkpoint, needed_for="satclip locate")  # fmt: skip
    image = load_image(model, args.image, name=Path(str(args.model)).name)
    truth = tuple(args.truth) if args.truth else None
    if truth is None and not is_picture(args.image):
        truth = geotiff_center_lonlat(args.image)
        if truth is not None:
            print(f"image centre (from the GeoTIFF): lon {truth[0]:.4f}, lat {truth[1]:.4f}")
    result = locate(model, image, k=args.k, grid=args.grid, grid_size=args.grid_size, truth=truth,
                    within_footprint=args.within_footprint)  # fmt: skip
    inside = ~result.outside[0]
    rows = [{"rank": rank, "lon": lon, "lat": lat, "score": score, "inside_footprint": bool(inside[rank - 1])}
            for rank, (lon, lat, score) in enumerate(result.rows(0), start=1)]  # fmt: skip
    higher = round(float(result.above_truth[0]) * result.candidates) if result.above_truth is not None else None
    if truth is not None:
        for row in rows:
            row["km_to_truth"] = float(great_circle_km((row["lon"], row["lat"]), truth))
            row["truth_rank"] = higher + 1  # (the rank the true location would take among the candidates)
    width = max(4, len(str(len(rows))))  # (rank 10000 stood a column off the others; --k 10**19 made it 20 wide)
    header = f"{'rank':>{width}}  {'lon':>9}  {'lat':>8}  {'score':>7}"
    if truth is not None:
        header += f"  {'km to truth' if args.truth else 'km to centre':>12}"
    print(header)
    for row in rows:
        line = f"{row['rank']:>{width}}  {row['lon']:>9.4f}  {row['lat']:>8.4f}  {row['score']:>7.4f}"
        if truth is not None:
            line += f"  {row['km_to_truth']:>12.0f}"
        print(line + ("" if row["inside_footprint"] else "  *"))
    if result.outside[0].any():  # (open ocean ranked first, as if the model knew it)
        print(f"* outside the model's training footprint ({result.footprint}), where it saw no images: "
              "--within-footprint ranks only the candidates inside it")
    if higher is not None:  # the true location is not a candidate: its rank among them
        print(f"true location (lon {truth[0]:.4f}, lat {truth[1]:.4f}): {higher:,} of the {result.candidates:,} "
              f"candidates score higher ({_percent(higher, result.candidates)}): it would rank {higher + 1:,}")
        if args.within_footprint and not training_footprint(model).contains(np.asarray([truth]))[0]:
            print(f"note: the true location is outside the model's training footprint ({result.footprint}), where it "
                  "saw no images: it is ranked against the candidates inside it (without --within-footprint, all)")
    if args.output is not None:
        interrupts.final_output(args.output)
        _write_rows(args, rows, result, truth, inputs, model)
        print(f"wrote {args.output}")
    return 0


def _write_rows(args: argparse.Namespace, rows: list[dict], result, truth, inputs: list, model) -> None:
    """The ranked rows to ``args.output``, atomically: CSV (one line per row), or JSON (the rows with the image,
    model, candidates, footprint and true location they were ranked with; the model as every output records it,
    :func:`~satclip.models.location_encoder.model_record` of its location encoder)."""
    import csv
    import io
    import json
    from pathlib import Path

    from .. import safe_output
    from ..models.location_encoder import model_record

    if args.output.suffix.lower() == ".json":
        truth_at = None if truth is None else {"lon": truth[0], "lat": truth[1], "rank": rows[0]["truth_rank"],
                                               "from": "--truth" if args.truth else "GeoTIFF centre"}  # fmt: skip
        document = {"image": str(Path(args.image).absolute()),
                    "model": model_record(model.location, source=args.model), "candidates": result.candidates,
                    "footprint": result.footprint, "truth": truth_at, "rows": rows}  # fmt: skip
        text = json.dumps(document, indent=1) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    with safe_output.atomic_file(args.output, overwrite=args.overwrite, inputs=inputs) as tmp:
        safe_output.write_data(tmp, text.encode())


def _percent(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage with two significant digits below 1 % ("0.025 %"; 1 of 10,000 was
    "0.0 %", as if none)."""
    share = 100 * part / whole
    if share == 0 or share >= 1:
        return f"{share:.1f} %"
    return f"{share:.2g} %" if share >= 0.01 else f"{share:.1e} %"
