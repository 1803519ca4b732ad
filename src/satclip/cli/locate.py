"""``satclip locate IMAGE.tif --model M``: the most likely locations of a Sentinel-2 image."""

from __future__ import annotations

import argparse
import math

from .args import device, existing_file, positive_int


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "locate",
        help="rank candidate locations on the globe for a Sentinel-2 image",
        description=(
            "Embed IMAGE (a 12- or 13-band Sentinel-2 L1C GeoTIFF, as in S2-100K) with a full SatCLIP "
            "model and print the K most similar of N candidate points (a Fibonacci grid over the globe). "
            "Needs rasterio (pip install 'satclip[data]')."
        ),
    )
    parser.add_argument("image", type=existing_file, help="GeoTIFF with 12 (B10 missing) or 13 Sentinel-2 bands")
    parser.add_argument("--model", required=True, help="a .ckpt, a native model directory or a model name")
    parser.add_argument("--k", type=positive_int, default=5, help="number of results (default 5)")
    parser.add_argument("--grid-size", type=positive_int, default=10_000, help="candidate points (default 10000)")
    parser.add_argument("--grid", default="fibonacci", help="candidate grid name (default fibonacci)")
    parser.add_argument("--device", type=device, default="cpu", help="torch device (default cpu)")
    parser.add_argument("--trust-checkpoint", action="store_true", help="allow unpickling arbitrary objects")
    parser.set_defaults(func=run)


def great_circle_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine distance in km on a sphere of radius 6371 km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


def run(args: argparse.Namespace) -> int:
    import torch

    from ..image.preprocess import center_crop, geotiff_center_lonlat, load_sentinel2
    from ..load_model import load_model
    from ..locate import locate

    model = load_model(args.model, device=args.device, trust_checkpoint=args.trust_checkpoint)
    image = torch.from_numpy(load_sentinel2(args.image))
    size = model.visual.image_size
    if size is not None and tuple(image.shape[-2:]) != tuple(size):
        print(f"centre-cropping {image.shape[-2]}×{image.shape[-1]} to {size[0]}×{size[1]} for this model")
        image = center_crop(image, size[0])
    result = locate(model, image, k=args.k, grid=args.grid, grid_size=args.grid_size)
    truth = geotiff_center_lonlat(args.image)
    header = f"{'rank':>4}  {'lon':>9}  {'lat':>8}  {'score':>7}"
    if truth is not None:
        print(f"image centre (from the GeoTIFF): lon {truth[0]:.4f}, lat {truth[1]:.4f}")
        header += f"  {'km to centre':>12}"
    print(header)
    for rank, (lon, lat, score) in enumerate(result.rows(0), start=1):
        line = f"{rank:>4}  {lon:>9.4f}  {lat:>8.4f}  {score:>7.4f}"
        if truth is not None:
            line += f"  {great_circle_km(lon, lat, *truth):>12.0f}"
        print(line)
    return 0
