"""Embedding on Dask: lazy Dask DataFrames (:func:`embed_frame`) and resumable Parquet jobs on a cluster
(:func:`embed_dataset`, ``satclip embed --engine dask``).

:func:`embed_dataset` splits the input (a Parquet file or dataset directory, see :mod:`satclip.embed.parquet`)
into partitions of ``C`` rows (partition ``k`` = rows ``[k·C, (k+1)·C)``) and runs one task per partition. By
default ``C`` is chosen for the cluster (:func:`partition_rows`: partitions of at most
:data:`DEFAULT_PARTITION_ROWS` rows, several per thread of the cluster and about as many as a multiple of its threads,
so that every worker ends at about the same time and a worker lost early loses a part of its share) and recorded
in the work directory: a rerun resumes with the recorded size on a cluster of any size. The model, the input's
description and the options reach every worker once, in a worker plugin (also on workers that join or restart
later); tasks carry only a partition number. A task reads its
rows, validates them (invalid rows are reported with their row number in the whole input, and nothing is
written for that partition), embeds them and writes a part under a name of its own (Parquet for a dataset
output, Arrow IPC for one Parquet file); the client, which alone holds the lock on the output, moves each
finished part to its final name and records it in ``manifest.json`` in the work directory ``OUTPUT.partial/``
and, for one Parquet file, appends their rows to it in order, a row group as soon as the partitions it takes rows
from are done (:class:`_Assembly`). A rerun continues with the partitions not recorded; its output equals that of an
uninterrupted run, and its columns and values those of the local engine (partitions are whole batches, so every
point is embedded in the same batch; one output file has row groups of 65,536 rows, as the local engine's at its
default chunk rows, a dataset's parts their own).

Paths must be the same for the client and every worker (a shared file system), and workers need satclip
installed. Invalid rows written as nulls by an earlier ``--skip-invalid`` run are reported again by a run
without it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import safe_output
from ..digests import file_crc32
from ..encoding.points import InvalidPointsError, describe_invalid, invalid_rows, outside_radians_box, range_hints
from ..errors import BadInputError, ResumeError
from ..io.resolve import encoder_files
from ..models import precision
from ..models.location_encoder import model_identity, model_token
from ..models.provenance import recorded_footprint
from ..optional import require
from ..safe_output import naming
from . import parquet_append, sinks
from .api import embed_lonlat
from .cluster import ClusterError, dask_client
from .columns import ColumnError
from .footprint import outside_count
from .inputs import (
    GeometryError,
    crs_name,
    embedding_frame,
    geo_lonlat,
    is_geo,
    is_wgs84,
    table_lonlat,
    warn_of_shared_columns,
)
from .job import (
    MANIFEST,
    EmbedResult,
    Progress,
    _NoProgress,
    complete_stopped,
    damaged_manifest,
    discarded_if_nothing_done,
    file_advice,
    output_attrs,
    publish_work,
    recorded,
    resume_manifest,
    resume_precision,
    stopped_after_publishing,
    work_dir,
    work_manifest,
)
from .sources import coordinates, no_points

try:  # the plugin's base class; embed_dataset requires distributed before a plugin is made
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - without the dask extra
    WorkerPlugin = object

log = logging.getLogger(__name__)

#: at most this many rows per partition of ``satclip embed --engine dask`` by default (see
#: :func:`partition_rows`)
DEFAULT_PARTITION_ROWS = 1 << 18
#: partitions per worker thread by default, where the input has enough rows: a worker killed or slow early loses
#: or holds up a quarter of its share, not all of it (2 partitions of 150,000 rows on 2 workers lost everything)
PARTITIONS_PER_THREAD = 4
#: at least this many rows per partition by default (where the input has them), so that a small input is not
#: shattered into tasks of milliseconds
MIN_PARTITION_ROWS = 1 << 15
#: rows per Parquet row group in the parts and in one Parquet file out (the local engine's chunk)
ROW_GROUP_ROWS = 1 << 16
#: kinds of hint about the invalid rows of other partitions than the first that an error says at most
OTHER_HINTS = 3
#: how often a partition is resubmitted after its task was cancelled (a cluster restart)
RESUBMITS = 3


def partition_rows(num_rows: int, threads: int, batch_size: int) -> int:
    """Rows per partition for ``num_rows`` rows on a cluster of ``threads`` worker threads: partitions of at most
    :data:`DEFAULT_PARTITION_ROWS` rows, :data:`PARTITIONS_PER_THREAD` per thread where each then has at least
    :data:`MIN_PARTITION_ROWS` rows (else as many as have), their number a multiple of ``threads``, of equal size
    rounded up to whole batches (the last one shorter; the rounding may leave one fewer: 1M rows on 16 threads are 31
    partitions). With 300,000 rows on 2 workers: 8 partitions of 40,960 rows (there were 2 of 151,552, and a worker
    killed early lost its whole share); with 2M rows: 8 of 253,952."""
    threads = max(1, threads)
    several = min(PARTITIONS_PER_THREAD * threads, max(1, num_rows // MIN_PARTITION_ROWS))
    parts = max(-(-num_rows // DEFAULT_PARTITION_ROWS), several)
    parts = -(-parts // threads) * threads
    rows = -(-num_rows // parts)
    return max(batch_size, -(-rows // batch_size) * batch_size)


def _cluster_threads(client) -> int:
    """Worker threads of the cluster behind ``client`` now (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def _dtype(encoder) -> np.dtype:
    return np.dtype(str(encoder.dtype).removeprefix("torch."))


# --------------------------------------------------------------------------------------- Dask DataFrames
def _frame_partition(part, encoder, batch_size, lon_col, lat_col, skip_invalid, centroids, partition_info=None):
    """Embeddings of one partition (a pandas DataFrame or GeoDataFrame) as a DataFrame on its index. Errors
    name the partition and the rows by their index labels, as :func:`satclip.embed` names a pandas frame's."""
    number = (partition_info or {}).get("number", "?")
    encoder = model_of(encoder)
    if is_geo(part) and lon_col is None and lat_col is None:
        try:
            lonlat = geo_lonlat(part, centroids=centroids, note=False, index_labels=True, refuse_lost=not skip_invalid)
        except InvalidPointsError as err:  # (outside the valid area of their CRS, as satclip.embed names them)
            raise InvalidPointsError(f"partition {number}: {err}", err.bad_rows) from None
        except GeometryError as err:
            raise GeometryError(f"partition {number}: {err}") from None
    else:
        try:
            lonlat = table_lonlat(part, lon_col, lat_col)
        except ColumnError:  # (the frame's columns: the same in every partition)
            raise
        except ValueError as err:  # (a value in this partition: text in a column of Python objects)
            raise ValueError(f"partition {number}: {err}") from None
    try:
        values = embed_lonlat(encoder, lonlat, batch_size=batch_size, skip_invalid=skip_invalid, index=part.index)
    except InvalidPointsError as err:  # (bad_rows: positions within the partition)
        raise InvalidPointsError(
            f"partition {number}: {err} Pass skip_invalid=True for NaN rows instead.", err.bad_rows
        ) from None
    return embedding_frame(values.cpu().numpy(), part.index)


def embed_frame(
    frame,
    encoder,
    *,
    batch_size: int | None = None,
    lon_col: str | None = None,
    lat_col: str | None = None,
    skip_invalid: bool = False,
    centroids: bool = False,
):
    """Embeddings of a Dask DataFrame (coordinate columns detected or named) or a dask-geopandas
    GeoDataFrame of points, as a lazy Dask DataFrame with the same partitions and index and columns
    ``emb_000`` … in the encoder's dtype.

    The encoder enters the graph once, as one key every partition's task depends on (:func:`model_in_graph`; with a
    distributed scheduler it is sent with each compute, and each worker fetches it once). Invalid points, and
    geometries that are not points, raise when computed, naming the partition and the rows' index labels; invalid
    points are NaN rows with ``skip_invalid``.
    """
    from .api import check_options

    require("dask", "dask", "embedding a Dask DataFrame")
    pd = require("pandas", "dask", "embedding a Dask DataFrame")
    check_options(batch_size, skip_invalid=skip_invalid, centroids=centroids)
    if not is_geo(frame._meta) and not hasattr(frame._meta, "columns"):  # (a Series failed on .columns)
        raise BadInputError(
            f"points is a Dask {type(frame._meta).__name__} ({frame._meta.name!r}), not a table of coordinates: pass "
            "the Dask DataFrame with its lon and lat columns (e.g. frame[['lon', 'lat']])"
        )
    if not is_geo(frame._meta) or lon_col is not None or lat_col is not None:
        table_lonlat(frame._meta, lon_col, lat_col)  # the columns are known now: missing or ambiguous ones raise here
    crs = getattr(frame, "crs", None)
    if crs is not None and not is_wgs84(crs) and lon_col is None and lat_col is None:
        log.info("reprojecting the geometries from %s to EPSG:4326 (in each partition)", crs_name(crs))
    warn_of_shared_columns(frame._meta.columns, encoder.embedding_dim)
    dtype = _dtype(encoder)
    names = sinks.embedding_column_names(encoder.embedding_dim)
    meta = pd.DataFrame({name: np.empty(0, dtype) for name in names}, index=frame._meta.index)
    model = model_in_graph(encoder)
    return frame.map_partitions(
        _frame_partition, model, batch_size, lon_col, lat_col, skip_invalid, centroids, meta=meta,
        enforce_metadata=False,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ Parquet jobs
def _satclip_version() -> str:
    from .. import __version__

    return __version__


@dataclass
class _Partitions:
    """What a worker needs to embed any partition of one job; sent once per worker in a :class:`_Shipment`."""

    encoder: object
    source: object  # a ParquetDatasetSource
    workdir: str
    chunk_rows: int
    batch_size: int
    layout: str
    column: str
    skip_invalid: bool
    #: "parquet" (the parts are the output dataset) or "arrow" (IPC parts, assembled into one Parquet file)
    part_format: str = "parquet"
    #: whether the Parquet parts' embeddings are dictionary-encoded (:func:`satclip.embed.sinks.dictionary_encoded`)
    dictionary: bool = False
    #: the job's attributes, written into every part's schema metadata (:func:`satclip.embed.job.output_attrs`)
    attrs: dict = field(default_factory=dict)
    #: the model's training footprint, whose outside points each partition counts (None: it records none)
    footprint: object = None

    def run(self, index: int, token: str) -> dict:
        """Embed partition ``index`` into ``pending/part-INDEX-TOKEN.FORMAT``; a dict for the client."""
        source, rows = self.source, self.chunk_rows
        start, stop = index * rows, min((index + 1) * rows, source.num_rows)
        with _shared_path(source.path, "read"):  # (the client read it: a worker that cannot sees another file system)
            table = next((chunk for _, chunk in source.chunks(index, stop, rows)), None)
        if table is None or table.num_rows != stop - start:
            raise RuntimeError(f"{source.path} has fewer rows than when the job started: did it change?")
        lonlat = coordinates(table, source.lon_col, source.lat_col, source, start)
        bad = invalid_rows(lonlat)
        result = {"index": index, "rows": table.num_rows, "invalid": int(bad.sum())}
        if bad.any() and not self.skip_invalid:
            rows_bad = np.flatnonzero(bad)
            error = describe_invalid(lonlat, bad, start, **file_advice(source))
            lon, lat = lonlat[rows_bad[0]]  # (another partition's first row is named with its values and hints)
            return {**result, "error": error, "bad_rows": (rows_bad + start).tolist(),
                    "first": f"(lon={float(lon)!r}, lat={float(lat)!r})",
                    "hints": range_hints(lonlat, bad, **file_advice(source))}  # fmt: skip
        if bad.any():  # (what the rows skipped look like: said once for the job by the client, _run)
            result["hints"] = range_hints(lonlat, bad, **file_advice(source))
        result["outside"] = outside_count(self.footprint, lonlat)
        result["outside_radians_box"] = outside_radians_box(lonlat)
        pending = Path(self.workdir) / "pending" / f"part-{index:06d}-{token}.{self.part_format}"
        if not _seen_dir(pending.parent):  # (removed by a run stopped with nothing done, or not on this worker's disks)
            return {**result, "unseen": str(pending.parent), "worker": _worker_address()}
        # never made here: a task still running after its job stopped (Ctrl-C cancels no running task) made the
        # work directory that job had discarded again, unmarked, and the same command was then refused over it
        with safe_output.atomic_file(pending, overwrite=True, parents=False) as tmp:  # (overwrite: a task rerun)
            embedding = sinks.output_columns(self.layout, self.column, self.encoder.embedding_dim)
            with _PartWriter(tmp, self.part_format, embedding, self.dictionary) as writer:
                for offset, piece in self._pieces(table):
                    valid = ~bad[offset : offset + piece.num_rows]
                    embeddings = embed_lonlat(
                        self.encoder, lonlat[offset : offset + piece.num_rows], batch_size=self.batch_size,
                        skip_invalid=True,
                    )  # fmt: skip
                    piece = sinks.with_embedding(
                        piece, embeddings.cpu().numpy(), valid, _dtype(self.encoder), self.layout, self.column
                    )  # fmt: skip
                    writer.write(sinks.with_attrs(piece, self.attrs))
        return {**result, "pending": str(pending), "stored": file_crc32(pending), "worker": _worker_address()}

    def _pieces(self, table) -> Iterator[tuple[int, object]]:
        """``(offset, rows)`` slices of the partition: at most :data:`ROW_GROUP_ROWS` rows, or one batch where
        ``batch_size`` is larger (a worker holds one slice's embeddings at a time, not the partition's), and whole
        batches, so that the batches, and so the embeddings, are those of the partition embedded at once, and of the
        local engine's chunks."""
        step = max(self.batch_size, ROW_GROUP_ROWS // self.batch_size * self.batch_size)
        for offset in range(0, table.num_rows, step):
            yield offset, table.slice(offset, step)


def _seen_dir(path: Path) -> bool:
    """Whether the directory ``path`` is there, asked again after listing its parents where it looked absent: on NFS
    a lookup cached before another machine made it can say it is absent for a while, which listing refreshes."""
    if path.is_dir():
        return True
    for directory in (path.parent.parent, path.parent):
        with contextlib.suppress(OSError):
            os.listdir(directory)
    return path.is_dir()


def _worker_address() -> str:
    """``the Dask worker at tcp://…`` running this task, or ``a Dask worker`` outside one."""
    try:
        from distributed import get_worker

        return f"the Dask worker at {get_worker().address}"
    except (ImportError, ValueError):
        return "a Dask worker"


#: what a worker that does not see the command's files (another machine, another mount namespace) is told
SHARED_PATHS = "the command and every worker need the input and output paths on one shared file system, mounted at " \
    "the same place"


@contextlib.contextmanager
def _shared_path(path, action: str) -> Iterator[None]:
    """Name a worker that cannot find ``path``, which the client found: ``[Errno 2] Failed to open local file`` on a
    worker was reported as bad input (exit 2)."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError) as err:
        raise ClusterError(
            f"{_worker_address()} cannot {action} {path} ({err}), which this command can: {SHARED_PATHS}"
        ) from None


class _PartWriter:
    """Writes a part one row group (Parquet) or record batch (Arrow IPC) per :meth:`write`; ``embedding`` and
    ``dictionary`` as :func:`satclip.embed.sinks.parquet_writer`."""

    def __init__(self, path: Path, part_format: str, embedding: list[str], dictionary: bool):
        self.path, self.part_format, self.embedding, self.dictionary = str(path), part_format, embedding, dictionary
        self.writer, self.sink = None, None

    def write(self, table) -> None:
        with naming(self.path):
            self._write(table)

    def _write(self, table) -> None:
        if self.writer is None:
            if self.part_format == "parquet":
                self.writer = sinks.parquet_writer(self.path, table.schema, self.embedding, self.dictionary)
            else:  # read back memory-mapped when assembling: no decoding pass on the client
                pa = require("pyarrow", "embed", "writing Parquet")
                self.sink = pa.OSFile(self.path, "wb")
                self.writer = pa.ipc.new_file(self.sink, table.schema)
        if self.part_format == "parquet":
            self.writer.write_table(table, row_group_size=table.num_rows)
        else:
            self.writer.write_table(table, max_chunksize=table.num_rows)

    def __enter__(self) -> _PartWriter:
        return self

    def __exit__(self, *exc) -> None:
        with naming(self.path):
            if self.writer is not None:
                self.writer.close()
            if self.sink is not None:
                self.sink.close()


#: worker process → what the plugins of satclip's jobs and models carried (or why this worker refused one), by
#: plugin name
_SHIPPED: dict[str, object] = {}


class _Shipment(WorkerPlugin):
    """Carries one object (a job's :class:`_Partitions`, a model) to every worker, also to workers that join or
    restart later: pickled once, on the client, when registered (:func:`_register`), where a task that carried it
    was pickled with every task, and a graph key holding it was fetched from the one worker holding it."""

    def __init__(self, name: str, payload):
        self.name, self.payload = name, payload
        #: the client's satclip version, which every worker must run (:meth:`setup`)
        self.version = _satclip_version()

    def setup(self, worker) -> None:
        """Refuse a worker of another satclip version than the client's (whose version the output records): its
        partitions came out otherwise, mixed into the output without a word."""
        version = _satclip_version()
        if version != self.version:  # (a worker joining later refuses each task: _shipped)
            _SHIPPED[self.name] = ClusterError(
                f"the Dask worker at {worker.address} runs satclip {version}, and this command satclip "
                f"{self.version}: install the same satclip version (satclip[dask]=={self.version}) on every worker"
            )
            raise _SHIPPED[self.name]
        _SHIPPED[self.name] = self.payload

    def teardown(self, worker) -> None:
        _SHIPPED.pop(self.name, None)


def _shipped(name: str):
    """What the :class:`_Shipment` ``name`` carried to this worker."""
    payload = _SHIPPED.get(name)
    if payload is None:
        raise RuntimeError(f"this worker has no satclip job or model {name!r}: its plugin was not set up")
    if isinstance(payload, ClusterError):
        raise payload
    return payload


def _run_partition(name: str, index: int, token: str) -> dict:
    return _shipped(name).run(index, token)


class ShippedModel:
    """A model in the graph of a command that ships it in a worker plugin (:func:`model_shipped`): pickled, it is its
    name, looked up when a task first asks for :attr:`encoder` on a worker (or in the command's process, where a
    local cluster's scheduler unpickles the graph)."""

    def __init__(self, name: str, encoder=None):
        self.name, self._encoder = name, encoder

    @property
    def encoder(self):
        if self._encoder is None:
            local = _SHIPPING_HERE.get(self.name)
            self._encoder = local if local is not None else _shipped(self.name)
        return self._encoder

    def __reduce__(self):
        return ShippedModel, (self.name,)

    def __dask_tokenize__(self) -> str:
        return self.name


#: model token → plugin name, of the models :func:`model_shipped` ships in the current context
_SHIPPING: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("satclip_shipping", default=())
#: plugin name → model, of :func:`model_shipped`'s models, for the command's own process
_SHIPPING_HERE: dict[str, object] = {}


def model_in_graph(encoder):
    """What the tasks of a Dask graph that embed with ``encoder`` take as the model: within :func:`model_shipped`
    (a command's own cluster or scheduler), a :class:`ShippedModel`, its name; else one graph key holding the model,
    which runs on any scheduler (a Python user's frame or field: a graph tied to one client's plugin failed on
    another client or scheduler, and the plugin outlived the frame on every worker). :func:`model_of` gives the
    model in a task either way."""
    dask = require("dask", "dask", "embedding on Dask")
    token = model_token(model_identity(encoder))
    name = dict(_SHIPPING.get()).get(token)
    if name is not None:
        return ShippedModel(name, encoder)
    return dask.delayed(encoder, name=f"satclip-model-{token}", traverse=False)


@contextlib.contextmanager
def model_shipped(client, encoder) -> Iterator[None]:
    """Within: graphs made here (:func:`model_in_graph`) carry ``encoder`` by name, and it reaches each of
    ``client``'s workers once, in a worker plugin of this command's own (a graph holding the model, 157 MB for a
    retrieval model, was sent with the compute, with distributed's "Sending large graph" warning, and workers
    fetched it from the one worker holding its key); after, the plugin is removed."""
    token = model_token(model_identity(encoder))
    name = f"satclip-model-{token}-{secrets.token_hex(4)}"  # (this command's: never a plugin of the user's)
    _SHIPPING_HERE[name] = encoder
    reset = _SHIPPING.set((*_SHIPPING.get(), (token, name)))
    try:  # (registering within: a plugin the workers refused stayed on the scheduler, the model with it)
        _register(client, _Shipment(name, encoder), name)
        yield
    finally:
        _SHIPPING.reset(reset)
        _SHIPPING_HERE.pop(name, None)
        with contextlib.suppress(Exception):  # the cluster may be gone already
            client.unregister_worker_plugin(name)


def model_of(model):
    """The model a task of :func:`model_in_graph`'s graph was given."""
    return model.encoder if isinstance(model, ShippedModel) else model


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _invalid_error(source, failed: list[dict], written: list[tuple[int, int]]) -> InvalidPointsError:
    parts = []
    if failed:
        first = min(failed, key=lambda r: r["index"])
        geometry = getattr(source, "nan_means", "") if "(lon=nan, lat=nan)" in first["error"] else ""
        parts.append(
            f"{source.path}: {sum(r['invalid'] for r in failed)} invalid row(s) in {len(failed)} partition(s), "
            f"nothing written for those; partition {first['index']}: {first['error']}"
            + (f" {_sentence(source.numbering(int(first['bad_rows'][0])))}." if len(first["bad_rows"]) else "")
            + (f" Its (lon=nan, lat=nan) rows are {geometry}." if geometry else "")
        )
        others = [r for r in sorted(failed, key=lambda r: r["index"]) if r is not first and len(r["bad_rows"])]
        if others:  # (only the first partition's were named: the others' came to light one rerun at a time)
            parts[-1] = parts[-1].rstrip(".")
            shown = "; ".join(_first_row(source, r) for r in others[:3])
            parts.append(f"the first invalid row of each other partition: {shown}"
                         + (f" (and {len(others) - 3} more partitions)" if len(others) > 3 else ""))  # fmt: skip
            # what the other partitions' rows look like, each kind of hint once (a [0, 360] longitude in partition 2
            # alone went unsaid), whatever its numbers (each partition's "as large as 5,000,000" was said again), and
            # at most OTHER_HINTS of them, so that the line stays bounded
            said_first = {_hint_kind(sentence) for sentence in _sentences(first["error"])}
            hints: dict[str, str] = {}
            for r in others:
                for sentence in _sentences(r.get("hints", "")):
                    if _hint_kind(sentence) not in said_first:
                        hints.setdefault(_hint_kind(sentence), sentence)
            if hints:
                said = " ".join(list(hints.values())[:OTHER_HINTS])
                parts[-1] = f"{parts[-1]}. In the other partitions: {said}".rstrip(".")
    if written:
        listed = ", ".join(f"partition {k} ({n} null row(s))" for k, n in written[:5])
        parts.append(f"written with nulls for invalid rows by an earlier --skip-invalid run: {listed}")
    bad = np.array(min(failed, key=lambda r: r["index"])["bad_rows"] if failed else [], dtype=np.int64)
    return InvalidPointsError(
        "; ".join(parts).rstrip(".") + ". Pass --skip-invalid to write nulls for them (finished partitions are kept), "
        "or fix the input and rerun with --restart",
        bad,
    )


def _sentences(text: str) -> list[str]:
    """The sentences of ``text`` (hints: each a sentence of its own, after a space)."""
    return [part for part in re.split(r"(?<=\.)\s+(?=[A-Z])", text.strip()) if part]


def _hint_kind(sentence: str) -> str:
    """A hint's sentence without its numbers: each partition's "as large as 5,000,000 look projected" is one kind."""
    return re.sub(r"[-\d][\d,.]*", "#", sentence)


def _first_row(source, failed: dict) -> str:
    """``partition 3: row 24587 (row 4587 of part.1.parquet): (lon=400.0, lat=10.0)`` of a failed partition's
    record."""
    row = int(failed["bad_rows"][0])
    place = source.place(row)
    return f"partition {failed['index']}: row {row}" + (f" ({place})" if place else "") + f": {failed['first']}"


def _part_name(index: int, kind: str) -> str:
    return f"part-{index:06d}.{'parquet' if kind == 'dataset' else 'arrow'}"


#: the manifest's ``assembled``, where a satclip before 2026-12-07 recorded its assembly (:class:`_Assembly`)
_ASSEMBLED_BY_ROWS = "in row groups, by a newer satclip: resume with it"


class _Assembly:
    """One Parquet file out: the rows of the finished partitions' Arrow parts are appended to
    ``OUTPUT.partial/output.parquet`` by the client in row groups of :data:`ROW_GROUP_ROWS` rows (the last
    shorter), the local engine's at its default chunk rows, each as soon as every partition it takes rows from is done
    (:class:`~satclip.embed.parquet_append.RowGroupFile`), the progress recorded in the manifest (``assembly``: the
    input ``rows`` appended, the ``parts`` wholly appended, the ``row_groups``): little is left to do after the last
    partition, and a rerun continues where the assembly stopped. A row group is read from the parts memory-mapped,
    without a copy. (Each partition's record batches were its row groups: partitions of 40,960 rows made row groups
    of 40,960, not 65,536.)

    The state is recorded as ``assembly``; ``assembled``, where a satclip before 2026-12-07 recorded its state of
    whole partitions appended, holds :data:`_ASSEMBLED_BY_ROWS`, which such a satclip refuses as a damaged manifest
    (it reads no manifest version: it appended whole partitions after the row group ending mid-partition, rows
    twice). Its own state, of whole partitions, is taken over."""

    def __init__(self, workdir: Path, parts: Path, manifest: dict, manifest_path: Path, job: _Partitions):
        embedding = sinks.output_columns(job.layout, job.column, job.encoder.embedding_dim)

        def writer_for(file, schema):
            return sinks.parquet_writer(file, schema, embedding, job.dictionary)

        self.file = parquet_append.RowGroupFile(workdir / "output.parquet", workdir, writer_for)
        self.parts, self.manifest, self.manifest_path = parts, manifest, manifest_path
        self.chunk_rows, self.num_rows = job.chunk_rows, job.source.num_rows
        if isinstance(manifest.get("assembled"), dict):  # (a run of a satclip before 2026-12-07, whole partitions)
            manifest.setdefault("assembly", manifest["assembled"])
        manifest["assembled"] = _ASSEMBLED_BY_ROWS
        self.state = manifest.setdefault("assembly", {"parts": 0, "row_groups": 0, "crc32": [], "rows": 0})
        # (a run of a satclip before 2026-12-07 appended whole partitions: it continues after the last one)
        self.state.setdefault("rows", min(self.state["parts"] * self.chunk_rows, self.num_rows))

    def _stored(self, group: int) -> list[int] | None:
        """``[size, CRC-32]`` of row group ``group`` of the output file as it is now."""
        return file_crc32(self.file.path, self.file.end(group - 1) if group else 0, self.file.end(group))

    def check(self) -> None:
        """Start the assembly again from the first part (the parts are kept until the output is published) if a
        row group appended so far changed since (cut short, bytes flipped); assemblies of a satclip before
        2026-12-04 record no CRC-32s and are continued unchecked."""
        for group, written in enumerate(self.state.get("crc32", [])):
            problem = sinks.changed_since_written(written, self._stored(group))
            if problem:
                log.warning("%s: its row group %d %s; assembling it again from the first part", self.file.path,
                            group, problem)  # fmt: skip
                self.state.update(parts=0, row_groups=0, crc32=[], rows=0)
                safe_output.write_json(self.manifest_path, self.manifest)
                return

    def advance(self) -> None:
        """Append the row groups whose partitions are all done."""
        pa = require("pyarrow", "embed", "writing Parquet")
        rows = self.chunk_rows
        while self.state["rows"] < self.num_rows:
            start, group = self.state["rows"], self.state["row_groups"]
            stop = min(start + ROW_GROUP_ROWS, self.num_rows)
            indices = range(start // rows, (stop - 1) // rows + 1)
            files = [self.parts / _part_name(index, "file") for index in indices]
            if not all(str(k) in self.manifest["done"] and f.is_file() for k, f in zip(indices, files, strict=True)):
                return
            with contextlib.ExitStack() as maps:  # (the slices point into the maps until the row group is written)
                pieces = []
                for index, file in zip(indices, files, strict=True):
                    part = pa.ipc.open_file(maps.enter_context(pa.memory_map(str(file)))).read_all()
                    first = max(start, index * rows) - index * rows
                    pieces.append(part.slice(first, min(stop, (index + 1) * rows) - index * rows - first))
                self.file.append(group, pa.concat_tables(pieces))
            if "crc32" in self.state:
                self.state["crc32"][group:] = [self._stored(group)]
            done = stop // rows if stop < self.num_rows else -(-self.num_rows // rows)
            self.state.update(rows=stop, parts=done, row_groups=group + 1)
            safe_output.write_json(self.manifest_path, self.manifest)

    def finish(self, num_parts: int) -> Path:
        self.advance()
        if self.state["parts"] != num_parts:
            done = self.manifest["done"]
            missing = [k for k in range(self.state["parts"], num_parts)
                       if str(k) not in done or not (self.parts / _part_name(k, "file")).is_file()]  # fmt: skip
            listed = ", ".join(map(str, missing[:5])) + (f" … ({len(missing)} in all)" if len(missing) > 5 else "")
            raise ResumeError(f"{self.parts}: the part of partition(s) {listed} is missing; rerun the same command: "
                              "it embeds only those, and keeps the partitions done")  # fmt: skip
        return self.file.finish(self.state["row_groups"])


def embed_dataset(
    source,
    output: str | Path,
    encoder,
    *,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    out_format: str | None = None,
    layout: str = "list",
    column: str = "embedding",
    chunk_rows: int | None = None,
    batch_size: int | None = None,
    skip_invalid: bool = False,
    overwrite: bool = False,
    restart: bool = False,
    progress: Progress | None = None,
) -> EmbedResult:
    """Embed a Parquet file or dataset (a path or a :class:`~satclip.embed.parquet.ParquetDatasetSource`)
    on a Dask cluster into ``output``: one Parquet file (``.parquet``) or a dataset directory of part files
    ``part-000000.parquet`` … (no suffix), both written atomically, resumably (see the module docstring).

    The cluster: ``client`` (a ``distributed.Client``), else the scheduler at ``scheduler``, else a
    ``LocalCluster`` of ``workers`` processes (default: one per core), started and closed here.
    ``chunk_rows``: rows per partition (default: those an unfinished run recorded, else
    :func:`partition_rows` for the cluster's threads).

    Raises:
        InvalidPointsError: partitions with invalid rows and not ``skip_invalid`` (after every other
            partition is done and recorded; the message names rows by their number in the whole input).
        ResumeMismatchError, OutputExistsError, LockedError: as :func:`satclip.embed.embed_file`.
        SchedulerError: ``scheduler`` cannot be reached.
    """
    from .parquet import ParquetDatasetSource

    began = time.perf_counter()
    progress = progress or _NoProgress()
    if not isinstance(source, ParquetDatasetSource):
        source = ParquetDatasetSource(source)
    if layout not in sinks.LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {list(sinks.LAYOUTS)}")
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    if source.num_rows == 0:
        raise no_points(source)
    source.warn_of_half_floats()
    given = Path(output)  # (the result names it as given, as the local engine's does)
    output = given.absolute()  # (workers write its parts: a remote one's directory is not this one's)
    kind = sinks.dask_output_kind(output, out_format)
    workdir = work_dir(output)
    for path in (output, workdir):
        safe_output.check_not_inside(path, source.path, "the input dataset")
    inputs = [source.path, *encoder_files(encoder)]
    same = {"input": source.fingerprint(), "model": model_identity(encoder)}

    def check_output() -> None:  # (publish's kind: another kind, a training run, is refused now, not at the end)
        if not stopped_after_publishing(workdir, output, **same):  # (the partitions, and so the options, come later)
            safe_output.check_output(output, overwrite=overwrite, inputs=inputs, directory=kind == "dataset",
                                     kind="output")  # fmt: skip

    check_output()
    footprint = recorded_footprint(encoder)
    described = footprint.describe() if footprint is not None else ""
    dim = encoder.embedding_dim
    batch_size = encoder.batch_size(batch_size)
    sinks.ParquetSink.check_columns(source.columns, dim, {"layout": layout, "column": column})
    manifest_path, parts, pending = workdir / MANIFEST, workdir / "parts", workdir / "pending"

    with safe_output.exclusive(output), contextlib.ExitStack() as stack:
        check_output()  # (again: a run that held the lock meanwhile may have written it)

        def connected():
            nonlocal client
            if client is None:
                client = stack.enter_context(dask_client(scheduler, workers))
            return client

        if chunk_rows is None:  # an unfinished run's partitions, else partitions for this cluster
            previous = None if restart else recorded(workdir, "options", "chunk_rows")
            if isinstance(previous, int) and previous > 0:
                chunk_rows = previous
            else:  # (a foreign work directory is refused before any cluster starts)
                safe_output.check_output(workdir, overwrite=True, directory=True)
                chunk_rows = partition_rows(source.num_rows, _cluster_threads(connected()), batch_size)
        options = _options(source, kind, layout, column, chunk_rows, batch_size)
        identity = json.loads(
            json.dumps({"input": source.fingerprint(), "model": model_identity(encoder), "options": options})
        )
        identity = resume_precision(encoder, workdir, restart, _as_started(workdir, identity, restart))
        num_parts = -(-source.num_rows // chunk_rows)
        # (one with other options that embedded nothing, refused by its partitions, for a polygon without
        # --centroids say, is discarded: it asked for --restart when rerun with the option its message named)
        manifest = resume_manifest(workdir, identity, restart, source.path)
        if manifest is not None:
            _check_manifest(manifest_path, manifest, num_parts, chunk_rows, source.num_rows)
        if manifest is not None and complete_stopped(workdir, manifest, output, overwrite=overwrite, inputs=inputs):
            invalid = sum(manifest["done"].values())
            seconds = time.perf_counter() - began
            return EmbedResult(given, source.num_rows, invalid, num_parts, num_parts, seconds, 0,
                               precision.for_encoder(encoder), _counted(manifest, "outside_footprint", num_parts),
                               described, _counted(manifest, "outside_radians_box", num_parts))  # fmt: skip
        if manifest is None:
            if safe_output.is_owned(workdir):
                safe_output.remove_owned(workdir)  # our leftovers without a manifest: nothing to resume
            safe_output.make_owned_dir(workdir, kind="embed-work")
            safe_output.make_owned_dir(parts, kind="output")
            manifest = {
                "satclip_embed_manifest": 1, "engine": "dask", "input_path": os.path.abspath(source.path),
                "identity": identity, "num_input_rows": source.num_rows, "partitions": num_parts, "done": {},
                "parts_crc32": {}, "outside_footprint": {}, "outside_radians_box": {},
            }  # fmt: skip
            safe_output.write_json(manifest_path, manifest)
        if safe_output.is_owned(pending):
            safe_output.remove_owned(pending)  # parts of tasks whose run stopped before recording them
        safe_output.make_owned_dir(pending, kind="embed-work")
        safe_output.make_owned_dir(parts, kind="output")  # (again, if removed since: its partitions are redone)
        job = _Partitions(
            encoder, source, str(workdir), chunk_rows, batch_size, layout, column, skip_invalid,
            "parquet" if kind == "dataset" else "arrow", sinks.dictionary_encoded(precision.for_encoder(encoder)),
            output_attrs(identity, source, encoder, (0, source.num_rows), source.num_rows), footprint=footprint,
        )  # fmt: skip
        assembly = _Assembly(workdir, parts, manifest, manifest_path, job) if kind == "file" else None
        if assembly is not None:
            assembly.check()
        _redo_changed_parts(manifest, manifest_path, parts, kind, assembly.state["parts"] if assembly else 0)
        done = {int(k): n for k, n in manifest["done"].items() if (parts / _part_name(int(k), kind)).is_file()}

        def rows_of(index: int) -> int:
            return min((index + 1) * chunk_rows, source.num_rows) - index * chunk_rows

        resumed = len(done)
        if resumed:
            log.info("resuming %s: %d of %d partitions already done", output, resumed, num_parts)
        done_rows = sum(rows_of(k) for k in done)
        progress.start(source.num_rows, done_rows)
        todo = [k for k in range(num_parts) if k not in done]
        failed: list[dict] = []
        if todo:
            with discarded_if_nothing_done(workdir, manifest):  # (a cluster that refused the job: nothing to resume)
                failed = _run(connected(), job, todo, manifest, manifest_path, parts, kind, progress, assembly)
        written = [] if skip_invalid else sorted((int(k), n) for k, n in manifest["done"].items() if n)
        if failed or written:
            raise _invalid_error(source, failed, written)
        safe_output.remove_owned(pending)
        finished = parts if assembly is None else assembly.finish(num_parts)  # a dataset: the parts are the output
        publish_work(workdir, manifest, finished, output, overwrite=overwrite, inputs=inputs)
    seconds = time.perf_counter() - began
    invalid = sum(manifest["done"].values())
    return EmbedResult(given, source.num_rows, invalid, num_parts, resumed, seconds, source.num_rows - done_rows,
                       precision.for_encoder(encoder), _counted(manifest, "outside_footprint", num_parts), described,
                       _counted(manifest, "outside_radians_box", num_parts))  # fmt: skip


def _options(source, kind: str, layout: str, column: str, chunk_rows, batch_size) -> dict:
    """The options a job records in its identity (``kind``: :func:`satclip.embed.sinks.dask_output_kind`)."""
    return {
        "engine": "dask", "layout": layout, "column": column, "lon_col": source.lon_col, "lat_col": source.lat_col,
        "chunk_rows": chunk_rows, "batch_size": batch_size, "centroids": source.centroids, "output": kind,
    }  # fmt: skip


def check_unfinished_run(
    source, output: str | Path, encoder, *, out_format: str | None = None, layout: str = "list",
    column: str = "embedding", chunk_rows: int | None = None, batch_size: int | None = None,
) -> None:
    """Refuse the unfinished run in ``OUTPUT.partial/`` before a cluster starts, where what it records of its input,
    model, engine and options already differs from what :func:`embed_dataset` of ``source`` with ``encoder`` and
    these arguments would record (it refused it once a cluster had started). For ``chunk_rows`` None the partitions
    are taken as recorded: :func:`embed_dataset` compares them. Call it holding the output's lock (a run of other
    arguments that did nothing is discarded, as :func:`satclip.embed.job.resume_manifest` discards it).

    Raises:
        ResumeMismatchError, ResumeError, OutputExistsError: as :func:`satclip.embed.job.resume_manifest`.
    """
    output = Path(output).absolute()
    workdir = work_dir(output)
    recorded_identity = work_manifest(workdir).get("identity")
    options = recorded_identity.get("options") if isinstance(recorded_identity, dict) else None
    if not isinstance(options, dict):  # no run there, or a record that embed_dataset reports
        return
    kind = sinks.dask_output_kind(output, out_format)
    chunk_rows, batch_size = chunk_rows or options.get("chunk_rows"), encoder.batch_size(batch_size)
    identity = {"input": source.fingerprint(), "model": model_identity(encoder),
                "options": _options(source, kind, layout, column, chunk_rows, batch_size)}  # fmt: skip
    identity = resume_precision(encoder, workdir, False, _as_started(workdir, json.loads(json.dumps(identity)), False))
    resume_manifest(workdir, identity, False, source.path)


def _as_started(workdir: Path, identity: dict, restart: bool) -> dict:
    """``identity``, its input's format as an unfinished run in ``workdir`` of a satclip before 2026-12-07 recorded
    one Parquet file (``"parquet-dataset"``, now ``"parquet"`` as the local engine records it): that run resumes
    (its parts record its identity), where the new name alone called its input changed."""
    before = recorded(workdir, "input", "format") if not restart else None
    if before == "parquet-dataset" and identity["input"].get("format") == "parquet":
        return {**identity, "input": {**identity["input"], "format": before}}
    return identity


def _counted(manifest: dict, key: str, num_parts: int) -> int | None:
    """The sum of the points every partition counted in the manifest's ``key`` (``outside_footprint``,
    ``outside_radians_box``); None where one did not (a model without a footprint, a worker without the land mask,
    a run started by an older satclip)."""
    counts = manifest.get(key)
    if not isinstance(counts, dict) or len(counts) != num_parts:
        return None
    return sum(counts.values())


def _redo_changed_parts(manifest: dict, manifest_path: Path, parts: Path, kind: str, assembled: int) -> None:
    """Remove from ``manifest`` (and from ``parts``) the parts done that changed since they were written, with a
    warning, so that they are embedded again; those already assembled into the output file (below
    ``assembled``) are not read again, and runs of a satclip before 2026-12-04 record no CRC-32s."""
    records = manifest.get("parts_crc32", {})
    changed = False
    for key in sorted(set(manifest["done"]) & set(records), key=int):
        part = parts / _part_name(int(key), kind)
        if int(key) < assembled or not part.is_file():
            continue
        problem = sinks.changed_since_written(records[key], file_crc32(part))
        if problem:
            log.warning("%s %s; embedding partition %s again", part, problem, key)
            safe_output.remove_owned_files(parts, [part.name])  # (parts/ is satclip's: make_owned_dir)
            del manifest["done"][key], records[key]
            changed = True
    if changed:
        safe_output.write_json(manifest_path, manifest)


def _check_manifest(path: Path, manifest: dict, num_parts: int, chunk_rows: int, num_rows: int) -> None:
    """Raise :class:`~satclip.errors.ResumeError` unless the manifest ``path`` of an unfinished run of this job
    holds what :func:`embed_dataset` reads from it: ``done`` maps partition numbers to their invalid rows (an edited
    or damaged one failed with "'list' object has no attribute 'items'")."""
    done = manifest.get("done")

    def invalid_rows(key, value) -> bool:
        if not (isinstance(key, str) and key.isdigit() and int(key) < num_parts and type(value) is int):
            return False
        return 0 <= value <= min((int(key) + 1) * chunk_rows, num_rows) - int(key) * chunk_rows

    if manifest.get("partitions") != num_parts:
        raise damaged_manifest(path, f"partitions {manifest.get('partitions')!r:.60} is not this job's {num_parts}")
    if not isinstance(done, dict) or not all(invalid_rows(k, v) for k, v in done.items()):
        raise damaged_manifest(
            path, f"done {done!r:.60} does not map partitions 0 to {num_parts - 1} to their invalid rows"
        )
    records = manifest.get("parts_crc32", {})
    if not isinstance(records, dict) or not all(k in done and _crc_record(v) for k, v in records.items()):
        raise damaged_manifest(path, f"parts_crc32 {records!r:.60} does not map partitions done to [size, CRC-32]")
    for key in ("outside_footprint", "outside_radians_box"):
        counts = manifest.get(key, {})
        if not isinstance(counts, dict) or not all(k.isdigit() and int(k) < num_parts and type(v) is int and v >= 0
                                                   for k, v in counts.items()):  # fmt: skip
            raise damaged_manifest(path, f"{key} {counts!r:.60} does not map partitions to numbers of points")
    assembled = manifest.get("assembly", manifest.get("assembled", {}))  # (_Assembly)
    if not isinstance(assembled, dict) or not all(_crc_record(v) for v in assembled.get("crc32", [])) \
            or not (type(rows := assembled.get("rows", 0)) is int and 0 <= rows <= num_rows):  # fmt: skip
        raise damaged_manifest(path, f"assembled {assembled!r:.60} is not the assembly's state")


def _crc_record(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(type(x) is int and x >= 0 for x in value)


def _register(client, plugin: _Shipment, name: str) -> None:
    """Send the job to the workers, or say which of them cannot take it: a worker without satclip (unpickling the
    plugin) failed with "unexpected error (Exception): ModuleNotFoundError … please report it"."""
    try:
        client.register_plugin(plugin, name=name)
    except Exception as err:  # (a worker's error unpickling it reaches here as Exception("ModuleNotFoundError(…)"))
        if not isinstance(err, ImportError) and not str(err).startswith(("ModuleNotFoundError(", "ImportError(")):
            raise
        raise ClusterError(
            f"the Dask workers {_without_satclip(client)} cannot import satclip ({err}): install "
            f"satclip[dask]=={plugin.version} (this command's version) on every worker"
        ) from None


def _without_satclip(client) -> str:
    """``at ADDRESS, …``: the workers where satclip is not found; else the scheduler's address."""
    import importlib.util

    try:
        found = client.run(importlib.util.find_spec, "satclip", on_error="return")
    except Exception:  # (a cluster that fails this too: named by its scheduler)
        found = {}
    missing = [address for address, spec in found.items() if spec is None]
    return f"at {', '.join(missing)}" if missing else f"of the scheduler at {client.scheduler.address}"


def _run(
    client, job: _Partitions, todo: list[int], manifest: dict, manifest_path: Path, parts: Path, kind: str, progress,
    assembly: _Assembly | None,
):  # fmt: skip
    """Run the partitions ``todo`` on ``client``; record each finished one (and append it to ``assembly``'s
    file as far as the partitions done allow); return the failed ones' results."""
    distributed = require("distributed", "dask", "embedding with --engine dask")
    token = secrets.token_hex(4)
    name = f"satclip-embed-{token}"
    submitted: dict = {}  # future key → (partition, attempt)
    futures: list = []
    failed: list[dict] = []
    hints: dict[int, str] = {}  # partition → what its invalid rows skipped look like (range_hints)
    try:
        _register(client, _Shipment(name, job), name)  # (refused: unregistered, or workers joining later refuse too)
        futures = client.map(_run_partition, [name] * len(todo), todo, [token] * len(todo), pure=False)
        submitted = {future.key: (index, 0) for future, index in zip(futures, todo, strict=True)}
        queue = distributed.as_completed(futures)
        for future in queue:
            index, attempt = submitted[future.key]
            try:
                result = future.result()
            except distributed.KilledWorker as err:  # (it was "unexpected error (KilledWorker) … please report it")
                raise ClusterError(
                    f"partition {index} ended every Dask worker that ran it (out of memory, or killed from outside?): "
                    "give the workers more memory (`dask worker --memory-limit`, or fewer --workers on this machine), "
                    "then rerun the same command: it resumes with the partitions done (smaller partitions, "
                    "--chunk-rows, need --restart)"
                ) from err
            except CancelledError as err:
                if attempt >= RESUBMITS:
                    raise ClusterError(
                        f"partition {index} was cancelled {attempt + 1} times (cluster restarts?); rerun to resume"
                    ) from err
                log.warning("partition %d was cancelled (a cluster restart?); submitting it again", index)
                retry = client.submit(_run_partition, name, index, token, pure=False)
                submitted[retry.key] = (index, attempt + 1)
                futures.append(retry)
                queue.add(retry)
                continue
            if "unseen" in result:
                raise ClusterError(f"{result['worker']} cannot find {result['unseen']}, which this command made: "
                                   f"{SHARED_PATHS}")  # fmt: skip
            if "error" in result:
                failed.append(result)
                continue
            if not Path(result["pending"]).is_file():  # ("No such file or directory: …/pending/part-….arrow")
                raise ClusterError(f"{result['worker']} wrote partition {index} to {result['pending']}, which this "
                                   f"command cannot find: {SHARED_PATHS}")  # fmt: skip
            safe_output.publish(result["pending"], parts / _part_name(index, kind), overwrite=True)
            if result.get("hints"):
                hints[index] = result["hints"]
            manifest["done"][str(index)] = result["invalid"]
            for key, count in (("outside_footprint", result.get("outside")),
                               ("outside_radians_box", result.get("outside_radians_box"))):  # fmt: skip
                if count is not None and isinstance(manifest.get(key), dict):  # (not in a run of an older satclip)
                    manifest[key][str(index)] = count
            if "parts_crc32" in manifest:
                manifest["parts_crc32"][str(index)] = result["stored"]
            safe_output.write_json(manifest_path, manifest)
            progress.update(result["rows"])
            if assembly is not None:
                assembly.advance()
    finally:
        client.cancel([future for future in futures if not future.done()])
        with contextlib.suppress(Exception):  # the cluster may be gone already
            client.unregister_worker_plugin(name)
    if hints:  # (once, not per partition: the first partition's, as the local engine says its first chunk's)
        log.warning("%s: %d invalid row(s) written as null (--skip-invalid):%s", job.source.path,
                    sum(manifest["done"].values()), hints[min(hints)])  # fmt: skip
    return failed
