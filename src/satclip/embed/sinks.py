"""Where embeddings go: Parquet, NPY or Zarr, written chunk by chunk into a work directory and turned
into the final output in one atomic step.

A sink writes chunk ``k`` so that a crash leaves either the whole chunk or something the manifest does
not list (and that is therefore rewritten on resume). :meth:`Sink.finalize` assembles the output inside
the work directory; the job then publishes it with :func:`satclip.safe_output.publish` (one rename), so
a complete-looking output is a complete one.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from .. import safe_output
from ..digests import file_crc32
from ..errors import BadInputError, ResumeError
from ..optional import require
from ..registry import Registry
from ..safe_output import naming
from . import parquet_append

SINKS: Registry = Registry("output format")
#: file suffix → format name
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".npy": "npy", ".zarr": "zarr"}
LAYOUTS = ("list", "columns")
COLUMN_PREFIX = "emb_"

log = logging.getLogger(__name__)


def embedding_column_names(dim: int) -> list[str]:
    """``emb_000`` … (at least three digits) for the ``columns`` layout."""
    width = max(3, len(str(dim - 1)))
    return [f"{COLUMN_PREFIX}{j:0{width}d}" for j in range(dim)]


def output_columns(layout: str, column: str, dim: int) -> list[str]:
    """The columns an output in ``layout`` adds to the input's: ``[column]`` (``"list"``) or ``emb_000`` …"""
    return [column] if layout == "list" else embedding_column_names(dim)


def dictionary_encoded(precision: str) -> bool:
    """Whether Parquet embedding columns computed in ``precision`` are dictionary-encoded: bf16 values (float32
    with 8 significant bits, at most 65,536 distinct) then take 436 bytes per 256-d point instead of 743 and
    are written faster (3.4 against 4.5 µs); float32 values are all distinct, and a dictionary makes them
    slower to write and larger (1.5× with one column per dimension). Measured: benchmarks/RESULTS.md."""
    return precision == "bf16"


def parquet_writer(path, schema, embedding: list[str], dictionary: bool = False):
    """A ``pyarrow.parquet.ParquetWriter`` (to a path or a file object) of ``schema`` whose columns
    ``embedding`` hold embeddings: those are written without min/max statistics (meaningless per dimension,
    and a sixth of the writing time) and dictionary-encoded only if ``dictionary`` (see
    :func:`dictionary_encoded`); the other columns get pyarrow's defaults. Every data page carries its CRC-32
    (Parquet's page checksum), so a reader that checks them (``pyarrow.parquet.read_table(…,
    page_checksum_verification=True)``) refuses a changed byte in a finished output instead of using it."""
    import pyarrow.parquet as pq

    ours = set(embedding)
    others = [name for name in schema.names if name not in ours]
    where = str(path) if isinstance(path, str | Path) else path
    return pq.ParquetWriter(
        where, schema, use_dictionary=dictionary or others, write_statistics=others, write_page_checksum=True
    )


def with_embedding(
    table, embeddings: np.ndarray, valid: np.ndarray, dtype, layout: str = "list", column: str = "embedding"
):
    """The Arrow ``table`` with ``embeddings`` ``(n, dim)`` appended as one ``fixed_size_list<dtype>[dim]``
    column named ``column`` (``layout="list"``) or one column per dimension (``"columns"``: ``emb_000`` …);
    rows where ``valid`` is False are null."""
    import pyarrow as pa

    dim = embeddings.shape[1]
    mask = pa.array(~valid) if not valid.all() else None
    if layout == "list":
        values = pa.array(np.ascontiguousarray(embeddings, dtype=dtype).reshape(-1))
        return table.append_column(column, pa.FixedSizeListArray.from_arrays(values, dim, mask=mask))
    invalid = None if mask is None else ~np.asarray(valid, dtype=bool)  # pa.array wants a NumPy mask here
    for j, name in enumerate(embedding_column_names(dim)):
        table = table.append_column(name, pa.array(embeddings[:, j].astype(dtype), mask=invalid))
    return table


def with_attrs(table, attrs: dict):
    """The Arrow ``table`` with the job's attributes (model, precision: ``{key: JSON-able value}``) added to its
    schema metadata, each value as JSON."""
    encoded = {k.encode(): json.dumps(v).encode() for k, v in attrs.items()}
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **encoded}) if encoded else table


#: CF attributes of latitude and longitude coordinates (satclip map's Zarr, lazy fields, embed's Zarr)
LAT_ATTRS = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"}
LON_ATTRS = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"}


def netcdf_attrs(attrs: dict) -> dict:
    """``attrs`` in the types a netCDF attribute holds (text, numbers and lists of them), for a Zarr store that
    ``xr.open_zarr(…).to_netcdf(…)`` writes: a dict as JSON text (read it with ``json.loads``), a bool as 0 or 1
    (either stopped xarray's ``to_netcdf``: "Invalid value for attr")."""
    return {key: json.dumps(value) if isinstance(value, dict) else int(value) if isinstance(value, bool) else value
            for key, value in attrs.items()}  # fmt: skip


def with_rows_of_input(table, first: int, count: int):
    """The Arrow ``table``, a part of an input written as a file of ``count`` rows starting at input row
    ``first`` (a ``--shard``), with the pandas metadata of the input's RangeIndex narrowed to those rows:
    left whole, it no longer matches the row count, and pandas silently gives the part a fresh 0 … n−1 index
    (a shard's rows would then join with other rows of the input)."""
    metadata = table.schema.metadata or {}
    if b"pandas" not in metadata:
        return table
    pandas = json.loads(metadata[b"pandas"])
    for index in pandas.get("index_columns", []):
        if isinstance(index, dict) and index.get("kind") == "range":
            step = index.get("step", 1)
            index["start"] = index["start"] + first * step
            index["stop"] = index["start"] + count * step
    return table.replace_schema_metadata({**metadata, b"pandas": json.dumps(pandas).encode()})


def unusable_work(path: str | Path, what: str, problem: str) -> ResumeError:
    """The error for ``path`` (``what``: "the embeddings", …) of an unfinished run that cannot be resumed from:
    ``problem`` says why ("is missing", "is damaged (…)")."""
    return ResumeError(
        f"{path}, {what} of an unfinished run, {problem}; pass --restart to discard that run and start again"
    )


def check_work_array(path: Path, shape: tuple[int, ...], dtype, what: str) -> None:
    """Raise :class:`~satclip.errors.ResumeError` unless ``path`` is the ``.npy`` file of a ``shape`` ``dtype``
    array that satclip created, all of its bytes there: NumPy's writable memory map silently extends a file cut
    short with zeros, which a resumed run would publish as embeddings. Reads the header only."""
    dtype = np.dtype(dtype)
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"a .npy format version {version} satclip does not write")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            stored, fortran, stored_dtype = read(file)
            size, offset = os.fstat(file.fileno()).st_size, file.tell()
    except FileNotFoundError:
        raise unusable_work(path, what, "is missing") from None
    except (OSError, ValueError) as err:  # a directory, no .npy header
        raise unusable_work(path, what, f"is damaged (not the .npy file satclip writes: {err})") from None
    if (tuple(stored), stored_dtype, fortran) == (tuple(shape), np.dtype("float32"), False) and dtype == np.float64:
        raise unusable_work(path, what, "holds float32 values: an older satclip started it, which kept a float64 "
                                        "map's values in float32, and it cannot be finished in float64")  # fmt: skip
    if tuple(stored) != tuple(shape) or stored_dtype != dtype or fortran:
        raise unusable_work(path, what, f"is damaged (it holds a {tuple(stored)} {stored_dtype} array, not the "
                                        f"job's {tuple(shape)} {dtype})")  # fmt: skip
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if size != expected:
        raise unusable_work(path, what, f"is damaged ({size:,} bytes, where its {tuple(shape)} {dtype} array "
                                        f"takes {expected:,})")  # fmt: skip


class Sink:
    """Receives chunks of ``(table, embeddings, valid)`` and assembles the output.

    After each chunk it writes, a sink records the size and CRC-32 of what it stored for the chunk
    (``KIND-chunk-K.json`` in the work directory). A resumed run first asks :meth:`changed_chunks`: the chunks
    whose stored bytes changed since they were written (flipped, cut short, deleted) are named in a warning and
    embedded again; a work directory that cannot be checked (its work file missing or of another shape, a
    chunk's record missing or damaged) is refused with a :class:`~satclip.errors.ResumeError` asking for
    ``--restart``. Nothing changed is ever published: :meth:`finalize` refuses while a changed chunk is not
    written again."""

    #: the name of the chunk records (``KIND-chunk-K.json``)
    KIND = ""
    #: what the work file (:meth:`_path`) is, for messages
    WHAT = "the output"
    #: what of the input the output holds besides the embeddings (None: every column)
    HOLDS: str | None = None

    def __init__(self, workdir: Path, num_rows: int, dim: int, dtype: np.dtype, chunk_rows: int, options: dict):
        self.workdir, self.num_rows, self.dim = workdir, num_rows, dim
        self.dtype, self.chunk_rows, self.options = np.dtype(dtype), chunk_rows, options
        self._changed: set[int] | None = None  # (None: not checked yet)

    def _path(self) -> Path:
        """The work file or store the chunks go to."""
        raise NotImplementedError

    def _record(self, index: int) -> Path:
        return self.workdir / f"{self.KIND}-chunk-{index:06d}.json"

    def _stored(self, index: int) -> dict[str, list[int] | None]:
        """``{name of a piece of chunk index: [size, CRC-32] of its stored bytes, or None where not stored}``."""
        raise NotImplementedError

    def _record_chunk(self, index: int) -> None:
        """Record what chunk ``index`` stored (after it is stored, before the manifest lists it)."""
        safe_output.write_json(self._record(index), self._stored(index))

    def changed_chunks(self) -> list[int]:
        """The chunks (this sink's numbers) the run recorded as written whose stored bytes changed since, each
        named in a warning: the job embeds them again. Raise :class:`~satclip.errors.ResumeError` if the work
        directory cannot be checked. Checked once per sink; reads each chunk written so far once."""
        if self._changed is None:
            from .job import work_manifest  # (job imports this module)

            manifest = work_manifest(self.workdir)
            done = self._done_chunks(manifest)
            self._check_files(done)
            required = manifest.get("chunk_records") == 1
            changed = [index for index in done if self._changed_chunk(index, required)]
            self._changed = set(self._to_write_again(done, changed))
        return sorted(self._changed)

    def _check_files(self, done: list[int]) -> None:
        """Check that the work file holds what the chunks ``done`` (this sink's numbers: 0 is its first) need."""

    def _changed_chunk(self, index: int, required: bool) -> bool:
        """Whether chunk ``index`` differs from its record (with a warning naming how); without a record, refuse
        it if ``required`` (the run recorded its chunks; runs of a satclip before 2026-12-04 did not, and theirs
        are resumed unchecked)."""
        record = self._record(index)
        try:
            written = json.loads(record.read_text())
        except FileNotFoundError:
            if not required:
                return False
            written = None
        except (OSError, UnicodeDecodeError, ValueError):
            written = None
        if not isinstance(written, dict):
            raise unusable_work(self._path(), self.WHAT, f"cannot be checked (the record of its chunk {index}, "
                                                         f"{record}, is missing or damaged)")  # fmt: skip
        for key, stored in self._stored(index).items():
            if key not in written:
                raise unusable_work(self._path(), self.WHAT, f"cannot be checked (its chunk {key} is not in the "
                                                             f"record {record})")  # fmt: skip
            problem = changed_since_written(written[key], stored)
            if problem == DAMAGED_RECORD:
                raise unusable_work(self._path(), self.WHAT, f"cannot be checked (the record of its chunk {key}, "
                                                             f"{record}, is damaged)")  # fmt: skip
            if problem:
                log.warning("%s, %s of an unfinished run: its chunk %s %s; embedding it again", self._path(),
                            self.WHAT, key, problem)  # fmt: skip
                return True
        return False

    def _to_write_again(self, done: list[int], changed: list[int]) -> list[int]:
        """The chunks to write again when the chunks ``changed`` of those ``done`` changed: these alone."""
        return changed

    def _done_chunks(self, manifest: dict) -> list[int]:
        """The chunks the job's ``manifest`` records as written, numbered as :meth:`write` is given them."""
        done, chunks = manifest.get("done"), manifest.get("chunks")
        if not isinstance(done, list) or not isinstance(chunks, list) or not chunks:
            return []
        return [k - chunks[0] for k in done if isinstance(k, int)]

    @staticmethod
    def check_columns(columns: list[str], dim: int, options: dict) -> None:
        """Raise, before any work, if this output cannot be written for this input: its own columns collide with
        input columns, or a module it is written with is not installed."""

    def create(self) -> None:
        """Prepare a new work directory (first run)."""

    def write(self, index: int, table, embeddings: np.ndarray, valid: np.ndarray) -> None:
        """Store chunk ``index`` (rows ``[index·C, …)`` of this output) and record it (a changed one is then
        written again); ``embeddings`` is ``(n, dim)`` with NaN rows where ``valid`` is False."""
        self.changed_chunks()
        self._store(index, table, embeddings, valid)
        self._record_chunk(index)
        self._changed.discard(index)

    def _store(self, index: int, table, embeddings: np.ndarray, valid: np.ndarray) -> None:
        """Store chunk ``index`` in the work file (:meth:`write`)."""
        raise NotImplementedError

    def finalize(self, num_chunks: int) -> Path:
        """Assemble the finished output inside the work directory and return its path; refused while a chunk
        that changed since it was written was not written again."""
        if changed := self.changed_chunks():
            raise unusable_work(self._path(), self.WHAT, f"is damaged (its chunk(s) {changed} changed since they "
                                                         "were written, and were not written again)")  # fmt: skip
        return self._assemble(num_chunks)

    def _assemble(self, num_chunks: int) -> Path:
        """Assemble the finished output of ``num_chunks`` chunks (:meth:`finalize`)."""
        raise NotImplementedError

    def finalize_empty(self, table) -> Path:
        """Assemble the output of an empty shard: no rows, and the columns that rows of the input ``table``
        (no rows) would have."""
        return self._assemble(0)


#: what :func:`changed_since_written` says of a record that is no record
DAMAGED_RECORD = "has a damaged record"


def changed_since_written(written, stored: list[int] | None) -> str | None:
    """How a piece of a chunk ``stored`` now (``[size, CRC-32]``, None: missing) differs from the record
    ``written`` of it (``[size, CRC-32]``, or a size alone in records of satclip 2026-12-03); None if it does not;
    :data:`DAMAGED_RECORD` if ``written`` is no such record."""
    if written is None:  # (a zarr chunk of missing values only is not stored)
        return None if stored is None else f"is {stored[0]:,} bytes, not the 0 written"
    if isinstance(written, int) and not isinstance(written, bool):
        written = [written, None]
    if not (isinstance(written, list) and len(written) == 2 and type(written[0]) is int):
        return DAMAGED_RECORD
    if stored is None:
        return "is missing"
    if stored[0] != written[0]:
        return f"is {stored[0]:,} bytes, not the {written[0]:,} written"
    if written[1] is not None and stored[1] != written[1]:
        return f"has changed since it was written (CRC-32 {stored[1]:08x}, not {written[1]:08x})"
    return None


@SINKS.register("parquet")
class ParquetSink(Sink):
    """The input's columns plus the embedding, as one ``list<float>`` column (``layout="list"``, named by
    ``column``) or one column per dimension (``layout="columns"``: ``emb_000`` …); nulls for invalid
    points. Each chunk is appended to the Parquet file in the work directory as one row group
    (:mod:`satclip.embed.parquet_append`), its footer kept beside it until the last chunk: the data is
    written once, and a resumed run continues after the last chunk recorded. Chunks come in order."""

    KIND = "parquet"

    @staticmethod
    def check_columns(columns, dim, options):
        clash = sorted(set(output_columns(options["layout"], options["column"], dim)) & set(columns))
        if clash:
            hint = "--column NAME" if options["layout"] == "list" else "--layout list"
            raise ValueError(f"the input already has column(s) {clash[:5]}; choose another name with {hint}")

    def _path(self) -> Path:
        return self.workdir / "output.parquet"

    def _file(self) -> parquet_append.RowGroupFile:
        return parquet_append.RowGroupFile(self._path(), self.workdir, self._writer)

    def _writer(self, file, schema):
        embedding = output_columns(self.options["layout"], self.options["column"], self.dim)
        return parquet_writer(file, schema, embedding, dictionary_encoded(self.options.get("precision", "float32")))

    def _check_files(self, done):
        path = self._path()
        if done and not path.is_file():
            raise unusable_work(path, "the output", "is missing" if not path.exists() else "is not a file")

    def _stored(self, index):
        """The row group's bytes, and its record: the footer the finished file gets (a changed statistic there
        was published, and readers filtering on it skipped rows)."""
        file = self._file()
        start = file.end(index - 1) if index else 0
        record = file.record(index)
        return {
            f"{self._path().name} row group {index}": file_crc32(self._path(), start, file.end(index)),
            record.name: file_crc32(record),
        }

    def _output_table(self, table, embeddings: np.ndarray, valid: np.ndarray):
        """The rows of the output for the input rows ``table``: with their embeddings, the rows of the input this
        output holds, and the job's attributes."""
        table = with_embedding(table, embeddings, valid, self.dtype, self.options["layout"], self.options["column"])
        table = with_rows_of_input(table, self.options.get("first_row", 0), self.num_rows)
        return with_attrs(table, self.options.get("attrs", {}))

    def _store(self, index, table, embeddings, valid):
        self._file().append(index, self._output_table(table, embeddings, valid))

    def _to_write_again(self, done, changed):
        """The first changed row group and every one after it: row group k is appended after row group k − 1.
        So is every row group after one not done (a manifest that lost a chunk: appending it cut them off)."""
        not_done = min(set(range(len(done) + 1)) - set(done))
        first = min([*changed, not_done])
        again = [index for index in done if index >= first]
        if len(again) > len(changed):
            log.warning("%s: writing its row groups %s again too (each is appended after the one before it)",
                        self._path(), [index for index in again if index not in changed])  # fmt: skip
        return again

    def _assemble(self, num_chunks):
        return self._file().finish(num_chunks)

    def finalize_empty(self, table):
        table = self._output_table(table, np.empty((0, self.dim), dtype=self.dtype), np.ones(0, dtype=bool))
        with naming(self._path()):
            with self._writer(str(self._path()), table.schema) as writer:
                writer.write_table(table)
        return self._path()


@SINKS.register("npy")
class NpySink(Sink):
    """An ``(N, dim)`` array (NaN rows for invalid points), filled in place through a memory map."""

    KIND = "npy"
    WHAT = "the embeddings"
    HOLDS = "nothing"

    def _path(self) -> Path:
        return self.workdir / "embeddings.npy"

    def create(self):
        with naming(self._path()):
            array = np.lib.format.open_memmap(self._path(), mode="w+", dtype=self.dtype,
                                              shape=(self.num_rows, self.dim))  # fmt: skip
            del array
            safe_output.reserve(self._path())  # a full disk fails now, not with SIGBUS in the memory map

    def _check_files(self, done):
        check_work_array(self._path(), (self.num_rows, self.dim), self.dtype, self.WHAT)

    def _stored(self, index):
        start = index * self.chunk_rows
        stop = min(start + self.chunk_rows, self.num_rows)
        rows = np.load(self._path(), mmap_mode="r")[start:stop]  # (its header and size are checked)
        return {f"{self._path().name}[{start}:{stop}]": [rows.nbytes, zlib.crc32(rows)]}

    def _store(self, index, table, embeddings, valid):
        with naming(self._path()):
            array = np.lib.format.open_memmap(self._path(), mode="r+")
            start = index * self.chunk_rows
            array[start : start + len(embeddings)] = embeddings
            array.flush()
            del array

    def _assemble(self, num_chunks):
        return self._path()


@SINKS.register("zarr")
class ZarrSink(Sink):
    """A Zarr (v2 format) group: ``embedding`` ``(point, dim)`` (NaN rows for invalid points) and ``lon``,
    ``lat`` ``(point,)``, chunked like the job, with xarray's ``_ARRAY_DIMENSIONS`` and consolidated
    metadata. The chunk records (:class:`Sink`) let a resumed run find a chunk deleted, cut short or changed (zarr
    would read a deleted one as missing values, and fail on a damaged one only when the output is read); a chunk
    of nothing but missing values is not stored, and recorded so. The store's metadata, written once when the
    run begins, is checked against what the job writes and written again where it differs."""

    KIND = "zarr"
    ARRAYS = ("embedding", "lon", "lat")
    HOLDS = "lon and lat"

    @staticmethod
    def check_columns(columns, dim, options):
        _zarr()  # (before any work: a missing zarr was "No module named 'zarr'" once the first chunk was embedded)

    def _path(self) -> Path:
        return self.workdir / "store.zarr"

    def _stored(self, index):
        """``{store key: [size, CRC-32] of the stored chunk, or None where not stored}`` of chunk ``index`` of
        each array."""
        zarr = _zarr()

        group = zarr.open_group(str(self._path()), mode="r")  # (its arrays are checked)
        stored = {}
        for name in self.ARRAYS:
            array = group[name]
            key = f"{array.path}/{array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))}"
            stored[key] = file_crc32(self._path() / key)
        return stored

    def create(self):
        self._create(self._path())

    def _create(self, path: Path) -> None:
        """Create the job's empty group at ``path``."""
        zarr = _zarr()

        with naming(path):
            group = zarr.open_group(str(path), mode="w", zarr_format=2)
            chunk = max(1, min(self.chunk_rows, self.num_rows))
            group.create_array(
                "embedding", shape=(self.num_rows, self.dim), chunks=(chunk, self.dim), dtype=self.dtype,
                fill_value=np.nan, attributes={"_ARRAY_DIMENSIONS": ["point", "dim"], "coordinates": "lon lat"},
            )  # fmt: skip
            for name, cf in (("lon", LON_ATTRS), ("lat", LAT_ATTRS)):
                group.create_array(
                    name, shape=(self.num_rows,), chunks=(chunk,), dtype="float64", fill_value=np.nan,
                    attributes={"_ARRAY_DIMENSIONS": ["point"], **cf},
                )  # fmt: skip
            group.attrs.update(netcdf_attrs(self.options.get("attrs", {})))

    def _check_files(self, done):
        zarr = _zarr()

        store = self._path()
        if store.is_dir():
            self._restore_metadata()
        damaged = (KeyError, TypeError, ValueError, OSError, zarr.errors.BaseZarrError)
        try:
            group = zarr.open_group(str(store), mode="r")
        except damaged as err:
            raise unusable_work(store, "the output", "is missing" if not store.exists() else
                                f"is damaged (not a Zarr group: {err})") from None  # fmt: skip
        expected = {"embedding": (self.num_rows, self.dim), "lon": (self.num_rows,), "lat": (self.num_rows,)}
        for name, shape in expected.items():
            dtype = self.dtype if name == "embedding" else np.dtype("float64")
            try:
                array = group[name]
            except damaged:
                array = None
            if not isinstance(array, zarr.Array) or array.shape != shape or np.dtype(array.dtype) != dtype:
                raise unusable_work(store, "the output", f"is damaged (its array {name!r} is missing or not the "
                                                         f"job's {shape} {dtype})")  # fmt: skip

    def _restore_metadata(self) -> None:
        """Write again, with a warning, each metadata file of the store that differs from what :meth:`create`
        wrote (the chunks were encoded by it): an edited ``.zarray`` (another fill value, compressor, chunk shape)
        or ``.zattrs`` was published as it was, its chunks then read otherwise or not at all. The group's ``.zattrs``
        that differs only in how the run was asked for (:data:`_ASKED`) takes this run's without a warning: the
        options check accepted the resume, and the file was not edited. The store to compare
        with is a temporary of satclip's name (a ``tempfile`` folder that a kill left was taken for a user's file,
        and the work directory was never removed)."""
        with safe_output.scratch(self._path()) as expected:  # (one a run killed here left is swept first)
            self._create(expected)
            for file in sorted(expected.rglob(".z*")):
                name = file.relative_to(expected)
                written, wanted = _json_or_none(self._path() / name), json.loads(file.read_bytes())
                if written == wanted:
                    continue
                if name == Path(".zattrs") and written is not None and _same_run(written) == _same_run(wanted):
                    log.debug("%s: its attributes now describe this run (%s)", self._path(), name)
                else:
                    log.warning("%s, the output of an unfinished run: its metadata file %s %s; writing it again",
                                self._path(), name, "is missing or damaged" if written is None else
                                "has changed since it was written")  # fmt: skip
                safe_output.write_bytes(self._path() / name, file.read_bytes())

    def _store(self, index, table, embeddings, valid):
        zarr = _zarr()

        from .sources import coordinates

        start = index * self.chunk_rows
        stop = start + len(embeddings)
        lonlat = coordinates(table, self.options["lon_col"], self.options["lat_col"])
        with naming(self._path()):
            group = zarr.open_group(str(self._path()), mode="r+")
            group["embedding"][start:stop] = embeddings.astype(self.dtype)
            group["lon"][start:stop] = lonlat[:, 0]
            group["lat"][start:stop] = lonlat[:, 1]

    def _assemble(self, num_chunks):
        zarr = _zarr()

        with naming(self._path()):
            zarr.consolidate_metadata(str(self._path()))
        return self._path()


#: the entries of a Zarr store's ``satclip`` attribute (:func:`~satclip.embed.job.output_attrs`) that say how the
#: run was asked for, not what it computes: the model's name or path, the input's path, the satclip version, and
#: beside the precision how it was asked (``requested``, ``reason``, …). A resume the options check accepts may say
#: them otherwise (``--precision bf16`` for a run that ``auto`` started in bf16), and the store then records the run
#: that finishes it without a word
_ASKED = ("model_source", "source", "version")


def _same_run(attrs):
    """A Zarr group's attributes ``attrs`` without what a resume may say otherwise (:data:`_ASKED`), to compare."""
    try:
        record = json.loads(attrs[safe_output.EMBEDDINGS_ATTR])  # (JSON text: netcdf_attrs)
    except (TypeError, KeyError, ValueError):
        return attrs
    if not isinstance(record, dict):
        return attrs
    record = {key: value for key, value in record.items() if key not in _ASKED}
    if isinstance(record.get("precision"), dict):
        record["precision"] = record["precision"].get("precision")
    return {**attrs, safe_output.EMBEDDINGS_ATTR: record}


def _zarr():
    """The zarr module, or :class:`~satclip.errors.MissingExtraError` naming the extra that installs it."""
    return require("zarr", "embed", "writing Zarr embeddings")


def _json_or_none(path: Path):
    """The JSON value the file ``path`` holds, or None (missing, unreadable, not JSON)."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _suffix_of(fmt: str) -> str:
    """The first suffix :data:`SUFFIXES` gives format ``fmt`` (``.parquet`` for ``"parquet"``)."""
    return next(suffix for suffix, name in SUFFIXES.items() if name == fmt)


def format_of(path: str | Path, fmt: str | None = None) -> str:
    """The output format for ``path`` (from ``fmt`` or the suffix; a ``fmt`` that contradicts a suffix of another
    format is refused: ``-o x.npy --format parquet`` wrote Parquet that np.load could not read)."""
    suffix = Path(path).suffix.lower()
    if fmt:
        SINKS.get(fmt)
        if SUFFIXES.get(suffix, fmt) != fmt:
            raise ValueError(f"{path}: its suffix {suffix} means {SUFFIXES[suffix]}, but --format says {fmt}: "
                             f"name it {Path(path).with_suffix(_suffix_of(fmt)).name}, or drop --format")  # fmt: skip
        return fmt
    if suffix not in SUFFIXES:
        raise ValueError(
            f"cannot tell the output format of {path} from its suffix {suffix!r}; use one of {sorted(SUFFIXES)} "
            f"or --format {{{','.join(SINKS.names())}}}"
        )
    return SUFFIXES[suffix]


def dask_output_kind(output: Path, out_format: str | None) -> str:
    """What ``--engine dask`` writes to ``output``: ``"file"`` (one Parquet file) or ``"dataset"`` (a directory of
    part files); another format is refused."""
    if out_format not in (None, "parquet", "parquet-dataset"):
        raise BadInputError(
            f"--engine dask writes Parquet (a .parquet file or a dataset directory), not {out_format!r}; "
            "use the local engine for NPY and Zarr"
        )
    if out_format == "parquet-dataset" or safe_output.is_owned(output):
        return "dataset"
    suffix = output.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "file"
    if suffix:
        raise BadInputError(
            f"--engine dask writes Parquet: {output} should end in .parquet (one file) or have no suffix "
            "(a dataset directory of part files)"
        )
    return "dataset"
