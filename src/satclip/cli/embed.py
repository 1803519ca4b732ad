"""``satclip embed INPUT -o OUTPUT --model M``: embed a point file, chunked, resumable, shardable."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from .. import interrupts, safe_output
from ..errors import BadInputError
from . import precision_option
from .args import (
    add_cluster_options,
    add_harmonics_option,
    add_overwrite_option,
    add_trust_option,
    check_cluster_options,
    device,
    existing_file_or_dataset,
    file_output,
    positive_int,
    shard,
)

DTYPES = ("float32", "float64")

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed the points of a CSV/Parquet/GeoJSON/GeoPackage/NPY file into Parquet, NPY or Zarr",
        description=(
            "Reads a CSV, Parquet or NPY INPUT in chunks (bounded memory for any number of points; GeoJSON and "
            "GeoPackage are read whole) and writes OUTPUT atomically. "
            "Coordinates are a point geometry (GeoParquet, GeoJSON, GeoPackage; over columns named lon/lat too), "
            "else the columns named lon/longitude/lng and lat/latitude (any case), or the columns given with "
            "--lon-col/--lat-col (over a geometry too); values are degrees. A killed run "
            "resumes where it stopped when rerun with the same arguments (state in OUTPUT.partial/). "
            "A GeoJSON or GeoPackage input's geometry and CRS are not written (a GeoParquet input's are): the Parquet "
            "output holds its attributes, feature ids (id, a GeoPackage's fid) and lon/lat, to join back on. "
            "Points outside the model's recorded training footprint (land north of 60°S for the bluemarble models) "
            "are embedded all the same, and counted in a note after the run; so are coordinates that look like "
            "radians (every point within ±3.14° of longitude and ±1.57° of latitude). "
            "Exit code 2: invalid input (bad or missing coordinates, ambiguous columns)."
        ),
    )
    parser.add_argument(
        "input", type=existing_file_or_dataset,
        help="points file: .csv/.tsv, .parquet (also GeoParquet), .geojson, .gpkg or .npy (N×2); or a directory "
        "of Parquet part files (a dataset, read in the order of the files' names, as pandas.read_parquet reads it). "
        "A CSV's blank lines are no rows: skipped, not written and not counted in the row numbers of messages",
    )  # fmt: skip
    parser.add_argument("-o", "--output", type=file_output(".parquet", ".pq", ".npy"), required=True,
                        help="output .parquet, .npy or .zarr")
    parser.add_argument(
        "--model", required=True,
        help="model name, .ckpt file, native model directory or hub id; or a retrieval spec, as satclip evaluate "
        "--encoders takes it: MODEL+range+ (geographic) or MODEL+range (semantic), options in parentheses, e.g. "
        "'bluemarble-l10+range+(beta=0.5,database=DB)' (database: auto, the default, or a directory of `satclip "
        "retrieval build`; exclude_radius_km defaults to 0, as in satclip.load); a Parquet or Zarr output records "
        "the spec in full as model_spec; docs/retrieval.md",
    )  # fmt: skip
    parser.add_argument("--lon-col", help="longitude column (required for names like x or long)")
    parser.add_argument("--lat-col", help="latitude column")
    parser.add_argument("--input-format", choices=["csv", "parquet", "npy", "geojson", "gpkg"], help="override suffix")
    parser.add_argument("--format", choices=["parquet", "npy", "zarr"],
                        help="output format (default: from the suffix; one that says another is refused)")
    parser.add_argument(
        "--layout", choices=["list", "columns"], default="list",
        help="Parquet: one list column (default) or one column per dimension (emb_000 …)",
    )  # fmt: skip
    parser.add_argument("--column", help="--layout list: name of the list column (default: embedding)")
    precision_option.add_arguments(parser, DTYPES)
    add_harmonics_option(parser)
    parser.add_argument("--device", type=device, default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="points per forward pass (default 4096 on CPU; 65536 on GPUs or for --harmonics analytic-original)",
    )
    parser.add_argument(
        "--chunk-rows", type=positive_int,
        help="rows per chunk, the unit of resumption (default 65536); with --engine dask rows per partition, one "
        "task and one output part (default: at most 262144, about 4 partitions per cluster thread, of about 32768 "
        "rows or more, their number a multiple of the threads, so smaller where that balances the workers; a rerun "
        "keeps those it started with)",
    )  # fmt: skip
    parser.add_argument(
        "--shard", type=shard, default="0/1", metavar="I/N",
        help="process the I-th of N parts of the input (0-based; contiguous runs of whole chunks) into OUTPUT "
        "with .shard-I-of-N before its suffix, I zero-padded so that the names sort in order (emb.parquet -> "
        "emb.shard-0-of-4.parquet, emb.shard-03-of-12.parquet); every shard needs the same model, precision, "
        "--chunk-rows, input and N: a shard made otherwise than a sibling there (finished, or unfinished) is refused "
        "(a Parquet or Zarr output records its rows: satclip.input_rows), as are shards of another N or the whole "
        "OUTPUT beside them; "
        "a shard left without a chunk (more shards than chunks) writes an output of no rows",
    )  # fmt: skip
    parser.add_argument(
        "--skip-invalid", action="store_true",
        help="write nulls (NaN) for invalid points: missing, NaN or out-of-range coordinates (text in a "
        "coordinate column is refused all the same: fix or remove its row)",
    )  # fmt: skip
    add_overwrite_option(parser)
    parser.add_argument("--restart", action="store_true", help="discard an unfinished run instead of resuming it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_trust_option(parser)
    parser.add_argument(
        "--centroids", action="store_true",
        help="GeoParquet/GeoJSON/GeoPackage: embed non-point geometries at their centroids",
    )
    parser.add_argument("--layer", metavar="NAME", help="GeoPackage: the layer to embed (needed where it has several)")
    parser.add_argument(
        "--engine", choices=["local", "dask"], default="local",
        help="local: this process (default); dask: Parquet in and out on a Dask cluster, one task per partition "
        "(OUTPUT: a .parquet file, or a dataset directory when it has no suffix)",
    )  # fmt: skip
    add_cluster_options(parser)
    parser.set_defaults(func=run)


class _TqdmProgress:
    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def start(self, total: int, done: int) -> None:
        if self.enabled:
            from ..terminal import progress_bar

            self.bar = progress_bar(total=total, initial=done, unit="pt", unit_scale=True, desc="embedding",
                                    smoothing=0.1)

    def update(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _dask_source(args: argparse.Namespace, source):
    """``source`` as the Dask engine reads it (a plain Parquet file too), or a one-line error (before a cluster
    starts: an input of no points was refused once it had)."""
    from ..embed.parquet import ParquetDatasetSource
    from ..embed.sources import no_points

    if not isinstance(source, ParquetDatasetSource):
        if source.format != "parquet":
            raise BadInputError(
                f"--engine dask reads Parquet files and datasets, not {source.format}: convert {args.input} to "
                "Parquet or use the local engine"
            )
        source = ParquetDatasetSource(source.path, source.lon_col, source.lat_col, centroids=args.centroids)
    if source.num_rows == 0:
        raise no_points(source)
    return source


def _run_dask(args: argparse.Namespace, source, encoder, progress, client):
    from ..embed.distributed import embed_dataset

    return embed_dataset(
        source, args.output, encoder, client=client, out_format=args.format,
        layout=args.layout, column=args.column, chunk_rows=args.chunk_rows,
        batch_size=args.batch_size, skip_invalid=args.skip_invalid, overwrite=args.overwrite, restart=args.restart,
        progress=progress,
    )  # fmt: skip


def _published_by_a_stopped_run(output: Path, source) -> bool:
    """Whether ``output`` exists as the output of a run of this input stopped after publishing it
    (:func:`satclip.embed.job.stopped_after_publishing`)."""
    if not (output.exists() or output.is_symlink()):
        return False
    from ..embed.job import stopped_after_publishing, work_dir

    return stopped_after_publishing(work_dir(output), output, input=source.fingerprint())


def _check_output(args: argparse.Namespace, source) -> Path:
    """Refuse now what the job would refuse at its start anyway: an output another run is writing, an existing
    output without --overwrite, a directory of the user's files, a satclip directory of another kind (a training
    run), an output split otherwise beside it. Returns the output the job writes (a shard's own name)."""
    if args.engine == "dask":
        from ..embed.sinks import dask_output_kind

        output = Path(args.output)
        directory = dask_output_kind(output, args.format) == "dataset"  # (--format npy: refused before a cluster)
    else:
        from ..embed.shards import check_no_unpadded, shard_path
        from ..embed.sinks import format_of

        check_no_unpadded(Path(args.output), args.shard)
        output = shard_path(Path(args.output), args.shard)
        directory = format_of(output, args.format) == "zarr"
    safe_output.check_not_inside(output, source.path, "the input dataset")
    if not _published_by_a_stopped_run(output, source):  # (the run the job then completes)
        writes = safe_output.PARQUET_DATASET if args.engine == "dask" else safe_output.ZARR_EMBEDDINGS
        safe_output.check_output(output, overwrite=args.overwrite, inputs=[args.input], directory=directory,
                                 kind="output", writes=writes if directory else None)  # fmt: skip
    # after the checks of its name ('/' was "has an empty name"): a second run on it was refused once the cluster
    # had started (7 s); the model named as the output is said as such first
    from ..embed.shards import check_no_other_split
    from ..io.resolve import local_model_files

    safe_output.check_not_input(output, local_model_files(precision_option.model_source(args.model)))
    safe_output.check_new_output(output)
    check_no_other_split(Path(args.output), args.shard)  # (--engine dask: the whole output, beside shards)
    interrupts.final_output(output)
    return output


def run(args: argparse.Namespace) -> int:
    check_cluster_options(args)
    if args.column is not None and args.layout == "columns":
        raise BadInputError(f"--column {args.column} names the list column of --layout list; --layout columns writes "
                            "one column per dimension (emb_000 …): drop --column")  # fmt: skip
    if args.column is None:
        args.column = "embedding"
    if args.engine == "dask" and args.shard != (0, 1):
        raise BadInputError("--shard splits work by hand; --engine dask splits it into partitions itself: drop --shard")
    from ..embed.columns import warn_of_swapped_names
    from ..embed.sources import open_source  # (without torch: a bad input is reported before any start-up)

    warn_of_swapped_names(args.lon_col, args.lat_col)

    source = open_source(args.input, args.input_format, args.lon_col, args.lat_col, centroids=args.centroids,
                         layer=args.layer)  # fmt: skip
    if args.centroids and source.geometry_columns is None:  # (accepted, and nothing done; a GeoPackage table too)
        raise BadInputError(f"--centroids embeds the centroids of geometries, and {args.input} ({source.format}) "
                            "holds points as lon/lat: drop --centroids")  # fmt: skip
    encoder = None
    with contextlib.ExitStack() as stack:
        if args.engine == "dask":  # the cluster starts (its workers import torch) while this process does
            from ..embed.cluster import starting_client
            from ..embed.job import MANIFEST, work_dir
            from ..io.resolve import resolve

            source = _dask_source(args, source)
            output = _check_output(args, source)  # (before a cluster is started for nothing)
            resolve(precision_option.model_source(args.model))  # (a misspelt model was named once the cluster
            # had started: 4-5 s)
            # one run per output, from here on (the job's own lock of it runs under this one): a second embed of
            # OUT was refused only once it had loaded its model, when the first took the lock
            stack.enter_context(safe_output.exclusive(output, reentrant=True))
            if not args.restart and (work_dir(output) / MANIFEST).is_file():  # (refused once a cluster had started)
                from ..embed.distributed import check_unfinished_run  # (imports distributed: only where needed)

                # (its model compared too: before the cluster starts, not beside it)
                encoder = precision_option.load_encoder(args)
                check_unfinished_run(source, output, encoder, out_format=args.format, layout=args.layout,
                                     column=args.column, chunk_rows=args.chunk_rows,
                                     batch_size=args.batch_size)  # fmt: skip
            client = stack.enter_context(starting_client(args.scheduler, args.workers))
        else:
            output = _check_output(args, source)  # (before the model is loaded for nothing)
            stack.enter_context(safe_output.exclusive(output, reentrant=True))  # (as above)
        from ..embed.job import DEFAULT_CHUNK_ROWS, embed_file
        progress = stack.enter_context(contextlib.closing(_TqdmProgress(enabled=not args.no_progress)))
        if encoder is None:
            encoder = precision_option.load_encoder(args)
        if args.engine == "dask":
            result = _run_dask(args, source, encoder, progress, client())
        else:
            result = embed_file(
                source, args.output, encoder, out_format=args.format, layout=args.layout, column=args.column,
                chunk_rows=args.chunk_rows or DEFAULT_CHUNK_ROWS, batch_size=args.batch_size,
                skip_invalid=args.skip_invalid, shard=args.shard, overwrite=args.overwrite, restart=args.restart,
                progress=progress,
            )  # fmt: skip
    rate = result.embedded_rows / max(result.seconds, 1e-9)
    skipped = f", {result.invalid} invalid written as null" if result.invalid else ""
    unit = "partition" if args.engine == "dask" else "chunk"  # (what the run's log said it resumed after)
    resumed = f", resumed after {result.resumed_chunks} {unit}(s)" if result.resumed_chunks else ""
    timing = f"{result.seconds:.1f} s"
    if result.seconds >= 1.0:  # (over less than a second the fixed costs set it: 50 points said "309 points/s")
        timing += f" ({rate:.0f} point{'s' * (round(rate) != 1)}/s, reading and writing included)"
    if result.resumed_chunks and not result.embedded_rows:  # (it said "0 points/s")
        timing = f"{result.seconds:.1f} s (every {unit} was embedded before: the output was written from them)"
    precision = precision_option.describe(encoder)
    points = f"{result.rows} point{'s' * (result.rows != 1)}"
    print(f"wrote {result.output}: {points}{skipped}{resumed} in {timing}, precision {precision}")
    # (stdout holds the result, the line above, for scripts to read; notes on the points go to stderr, as every
    # other advisory of the run does)
    if result.outside_footprint:
        from ..embed.footprint import outside_note

        log.warning("%s", outside_note(result.outside_footprint, result.rows - result.invalid, args.model,
                                       result.footprint))
    from ..encoding.points import RADIANS_NOTE, looks_like_radians

    if looks_like_radians(result.rows - result.invalid, result.outside_radians_box):
        log.warning("note: %s: if they are, convert them to degrees (× 180/π) and embed again", RADIANS_NOTE)
    return 0
