"""``satclip data …``: dataset commands (``verify``, ``download``, ``bluemarble``; more can be added).

To add a subcommand, list it in :data:`SUBCOMMANDS`: either a function ``add_NAME(subparsers)`` here, or
the name of a module of this package (e.g. ``".data_bluemarble"``) defining ``add_subparser(subparsers)``.
Either creates its parser and sets ``func``. Heavy imports belong inside the ``run`` functions.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import Callable

from ..errors import BadInputError
from ..machine import MAX_WORKERS_RULE
from .args import name_without_spaces, non_negative_int, positive_int, user_path, worker_count


def _tqdm_progress(description: str):
    """A ``progress(iterable, total)`` wrapper drawing a tqdm bar on stderr (plain iteration without tqdm)."""
    if importlib.util.find_spec("tqdm") is None:  # (an extra's)
        return None
    from ..terminal import progress_bar

    return lambda iterable, total: progress_bar(iterable, total=total, desc=description, unit="file", leave=False)


def _dtype(text: str) -> str | None:
    """--dtype: a numeric NumPy dtype's name, or ``None`` for 'any' (no check)."""
    if text == "any":
        return None
    from ..data.verify import dtype_name

    try:
        return dtype_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}, or 'any'") from None


def add_verify(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check every image of an S2-100K root and print a table of problems",
        description=(
            "Reads ROOT/index.csv (columns fn,lon,lat or lat,lon,url,fn) and checks ROOT/images/: missing "
            "files, files under --min-size bytes (no-data), unreadable or truncated GeoTIFFs, wrong band "
            "count, height × width or dtype, invalid coordinates, an image georeferenced more than 5 km from its "
            "row's (lon, lat), a file listed by two rows; lines of the index "
            "that are no row (too few "
            "fields, no file name) are reported by line number. Exit status 1 when anything is wrong; files in "
            "images/ that the index does not list are named (and written by --list) but fail nothing."
        ),
    )
    parser.add_argument("root", type=user_path, help="dataset root holding index.csv and images/")
    parser.add_argument("--full", action="store_true", help="also decode every pixel (slower)")
    parser.add_argument("--bands", type=positive_int, default=12, help="expected band count (default 12)")
    parser.add_argument("--size", type=positive_int, default=256, help="expected height and width in px (default 256)")
    parser.add_argument("--dtype", type=_dtype, default="uint16",
                        help="expected NumPy dtype (uint16, int16, float32, …); 'any': no check (default uint16)")
    parser.add_argument("--min-size", type=non_negative_int, default=10_000, help="smaller = no-data (default 10000)")
    parser.add_argument("--workers", type=worker_count, default=1,
                        help=f"threads reading headers (default 1; at most {MAX_WORKERS_RULE})")
    parser.add_argument("--show", type=non_negative_int, default=3, help="bad file names shown per problem (default 3)")
    parser.add_argument("--list", type=user_path, metavar="CSV",
                        help="write every problem, and the files in images/ the index does not list, to CSV")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --list file")
    parser.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from .. import safe_output
    from ..data.verify import CheckSpec, verify_s2100k

    if args.list:  # before the work; never the index or an image it verifies
        inputs = [args.root / "images", args.root / "index.csv"]  # (the list may go beside them in the root)
        safe_output.check_output(args.list, overwrite=args.overwrite, inputs=inputs)
    spec = CheckSpec(
        bands=args.bands,
        height=args.size,
        width=args.size,
        dtype=args.dtype,
        min_size=args.min_size,
        full=args.full,
    )
    report = verify_s2100k(args.root, spec, workers=args.workers, write_cache=True, progress=_tqdm_progress("verify"))
    print(report.table(shown=args.show))
    if args.list:
        import csv

        with safe_output.atomic_file(args.list, overwrite=args.overwrite) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["fn", "problem", "detail"])
            writer.writerows(report.listing())
        print(f"wrote {args.list}")
    return 0 if report.all_ok else 1


def _local_copy(text: str):
    """``--from``: a local directory; a URL is refused as typed (made a path, ``file:///x`` read ``file:/x``)."""
    from ..data.sources import url_advice

    advice = url_advice(text)
    if advice:
        raise argparse.ArgumentTypeError(advice)
    return user_path(text)


def add_download(subparsers) -> None:
    from ..data.sources import HF_REPO

    parser = subparsers.add_parser(
        "download",
        help="download S2-100K (index.csv + images/) from the Hugging Face hub, resumably",
        description=(
            f"Fetches the dataset repository {HF_REPO} (index.csv and the image tar shards), checks each "
            "file against the checksum the hub publishes, and extracts the GeoTIFFs into ROOT/images/. "
            "Rerunning resumes after the last completed shard; a shard whose file changed since (another "
            "checksum, or a local copy's other size or time) is extracted again, and deleting ROOT/.download makes "
            "the next run extract every one again. A damaged archive (failing its checksum, or no readable tar) "
            "is skipped and the others extracted; the run then names every damaged one and exits 2 (a --from "
            "copy's: replace them) or 1 (downloads: deleted, fetched again by the rerun). Exit status 1 when images "
            "index.csv lists are in none of the archives (those extracted are kept). Offline, fetch the repository "
            "elsewhere and pass it with --from."
        ),
    )
    parser.add_argument("root", type=user_path, help="dataset root to create or complete")
    parser.add_argument("--repo", help=f"hub dataset repository (default {HF_REPO}); not with --from")
    parser.add_argument("--revision", type=name_without_spaces,
                        help="hub revision (branch, tag or commit; default main); with --from, the commit the local "
                        "copy was made from (enables known checksums)")  # fmt: skip
    parser.add_argument("--from", dest="source", type=_local_copy, metavar="DIR",
                        help="use a local copy of the repository instead of the hub")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep the tar shards fetched from the hub after extraction (a --from copy's are never "
                        "deleted)")  # fmt: skip
    parser.set_defaults(func=run_download)


def run_download(args: argparse.Namespace) -> int:
    from ..data.download import download_s2100k
    from ..data.sources import HF_REPO, HubSource, LocalSource

    if args.source and args.repo:  # (accepted and ignored, exit 0)
        raise BadInputError(f"--repo {args.repo} names a hub repository, and --from {args.source} reads a local copy "
                            "instead: drop --repo, or --from to download from the hub")  # fmt: skip
    if args.source and args.keep_archives:  # (accepted and ignored, exit 0)
        raise BadInputError(f"--keep-archives keeps the archives fetched from the hub, and those of --from "
                            f"{args.source} are read in place and never deleted: drop --keep-archives")  # fmt: skip
    if args.source:
        source = LocalSource(args.source, args.revision)
    else:
        source = HubSource(args.repo or HF_REPO, args.revision)
    summary = download_s2100k(args.root, source, keep_archives=args.keep_archives, progress=_tqdm_progress("shards"))
    done = "read from the local copy" if args.source else "fetched"  # (a local copy's were said to be fetched)
    print(
        f"{summary.root}: {len(summary.extracted)} file(s) {done}, {len(summary.skipped)} already done, "
        f"{summary.images} images extracted. Check them with: satclip data verify {summary.root}"
    )
    return 0


#: subcommand name → function adding its parser, or module (relative to this package) with add_subparser()
SUBCOMMANDS: dict[str, Callable | str] = {
    "verify": add_verify,
    "download": add_download,
    "bluemarble": ".data_bluemarble",
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help=f"datasets: {', '.join(SUBCOMMANDS)}",  # (it listed "verify, download, …" without bluemarble)
        description="Dataset commands; satclip data SUBCOMMAND --help describes each.",
    )
    # (required, as cache's and retrieval's: `satclip data` alone printed its help and exited 0)
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for add in SUBCOMMANDS.values():
        if isinstance(add, str):
            add = importlib.import_module(add, __package__).add_subparser
        add(commands)
