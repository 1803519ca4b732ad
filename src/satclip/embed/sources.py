"""Point files read in chunks: CSV, Parquet, NPY, GeoJSON and GeoPackage, looked up by format name.

Every source exposes its rows as Arrow tables with named columns plus the names of the longitude and
latitude columns, and yields them in fixed-size chunks aligned to row 0, so chunk ``k`` always holds rows
``[k·C, (k+1)·C)`` whatever the reader's own batching. CSV, Parquet and NPY stream with bounded memory;
GeoJSON and GeoPackage are read whole (they are not formats for millions of points).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .. import safe_output
from ..errors import BadInputError
from ..optional import gdal_warnings_as_debug, require
from ..registry import Registry
from .columns import GEOMETRY_WORDS, detect_lonlat_columns, named_like
from .inputs import geo_lonlat, is_wgs84, log_geometry_wins, warn_of_half_floats

log = logging.getLogger(__name__)
SOURCES: Registry = Registry("input format")
#: file suffix → format name
SUFFIXES = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy",
    ".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg",
}  # fmt: skip
_READ_BATCH = 65536
#: delimiters a CSV file is sniffed for (its first lines)
CSV_DELIMITERS = ",;\t|"
_SNIFF_BYTES = 1 << 16
_FINGERPRINT_BLOCKS, _FINGERPRINT_BLOCK_BYTES = 16, 1 << 16


def _pa():
    pa = require("pyarrow", "embed", "reading point files")
    # pandas now, if it is there: pyarrow imports it on first use from code that swallows exceptions, and a Ctrl-C
    # landing in that import was lost (the run finished, exit 0)
    with contextlib.suppress(ImportError):
        import pandas  # noqa: F401
    return pa


def file_fingerprint(path: Path) -> dict:
    """Size, modification time and a hash of 16 evenly spaced 64 KiB blocks (first and last included):
    cheap for any size, and changes when the content does in practice."""
    stat = path.stat()
    size = stat.st_size
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for i in range(_FINGERPRINT_BLOCKS):
            fh.seek(max(0, (size - _FINGERPRINT_BLOCK_BYTES) * i // (_FINGERPRINT_BLOCKS - 1)))
            digest.update(fh.read(_FINGERPRINT_BLOCK_BYTES))
    return {"size": size, "mtime_ns": stat.st_mtime_ns, "sample_sha256": digest.hexdigest()}


def _text(path: Path):
    """``path`` opened as UTF-8 text (undecodable bytes replaced), decompressed if it is a ``.gz`` file."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8", errors="replace")
    return open(path, newline="", encoding="utf-8", errors="replace")


def sniff_delimiter(path: Path, default: str = ",") -> str:
    """The delimiter of a delimited text file, one of :data:`CSV_DELIMITERS`: :class:`csv.Sniffer` on its
    first lines (at most 64 KiB, 50 lines); ``default`` for a one-column or undecidable sample."""
    with _text(path) as fh:
        sample = fh.read(_SNIFF_BYTES)
    lines = sample.splitlines()
    if len(sample) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    try:
        return csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return default


def coordinates(table, lon_col: str, lat_col: str, source: Source | None = None, first_row: int = 0) -> np.ndarray:
    """``(n, 2)`` float64 (lon, lat) of an Arrow table, rows ``first_row, …`` of ``source`` (its path and rows named
    in errors); nulls become NaN."""
    pa = _pa()
    path = None if source is None else source.path
    out = np.empty((table.num_rows, 2), dtype=np.float64)
    for j, name in enumerate((lon_col, lat_col)):
        column = table.column(name)
        if pa.types.is_boolean(column.type):  # Arrow casts true/false to 1.0/0.0: embedded as degrees
            raise ValueError(f"{_of(path)}coordinate column {name!r} holds true/false values, not degrees")
        try:
            cast = column.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            comma = " (decimal commas? write 52.5, not 52,5)" if "," in str(err) else ""
            row = _first_unparsed(column) if isinstance(err, pa.ArrowInvalid) else None
            if row is None:
                reason = str(err)
            else:  # (text that is no number: named by its row, as an invalid number is)
                value = clipped(column[row].as_py())
                row += first_row
                numbering = source.numbering(row) if source is not None else "rows counted from 0"
                reason = (f"row {row} holds {value} ({numbering}): fix or remove that row, or store the column as "
                          "numbers (decimal degrees, 13.4)")  # fmt: skip
            raise ValueError(
                f"{_of(path)}coordinate column {name!r} ({column.type}) is not numeric{comma}: {reason}"
            ) from err
        out[:, j] = cast.to_numpy(zero_copy_only=False)  # nulls → NaN for float columns
    return out


def _first_unparsed(column) -> int | None:
    """The first row of the Arrow ``column`` that does not cast to float64, or None: a halving search, which casts
    about twice the column, only once casting it whole failed."""
    pa = _pa()
    low, high = 0, len(column)  # rows before low cast; [low, high) holds one that does not
    while high - low > 1:
        middle = (low + high) // 2
        try:
            column.slice(low, middle - low).cast(pa.float64())
        except pa.ArrowInvalid:
            high = middle
        else:
            low = middle
    try:
        column.slice(low, 1).cast(pa.float64())
    except pa.ArrowInvalid:
        return low
    return None


def clipped(value, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a whole recorded dictionary made a line of ~900)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _coordinate(value, path: Path, feature: int) -> float:
    """One GeoJSON coordinate as a float: a JSON number; null is a missing value (NaN: an invalid point, as a
    feature without coordinates is); anything else (text, true/false, a list) is refused naming the feature."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInputError(f"{path}: feature {feature}: coordinate {json.dumps(value)[:40]} is not a number; "
                            "GeoJSON coordinates are numbers in degrees, [lon, lat]")  # fmt: skip
    return float(value)


def _of(path: Path | None) -> str:
    return f"{path}: " if path is not None else ""


#: the formats' names, as the fix for a file of another one says them, and the suffix it would have
_FORMAT_NAMES = {"csv": ("CSV", ".csv"), "parquet": ("Parquet", ".parquet"), "npy": ("NumPy", ".npy"),
                 "geojson": ("GeoJSON", ".geojson"), "gpkg": ("GeoPackage", ".gpkg")}  # fmt: skip


def _looks_like(path: Path) -> str | None:
    """The format the first bytes of ``path`` look like ("empty" for an empty file), or None (unknown, or not
    readable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return "empty"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"SQLite format 3\x00"):
        return "gpkg"
    if text[:1] in (b"{", b"["):
        return "geojson"
    try:
        decoded = head.decode("utf-8", errors="strict" if len(head) < 4096 else "ignore")
    except UnicodeDecodeError:
        return None
    if decoded.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in decoded):
        return "csv" if any(c in decoded for c in ",\t") else None
    return None


def unreadable_fix(path: Path, fmt: str) -> str:
    """What to do about ``path``, which the reader of ``fmt`` could not read: its first bytes say another format
    (rename it, or pass --input-format; or drop an --input-format that its name contradicts), or that it is empty;
    else it is damaged or cut short."""
    fmt = fmt.lower()
    looks = _looks_like(path)
    if looks == "empty":
        if fmt == "csv":
            return "it is empty: write the points, a header row with lon,lat and one row per point"
        return "it is empty: write the points to it again"
    if looks is None or looks == fmt:
        return "damaged or cut short? write it again"
    name, suffix = _FORMAT_NAMES[looks]
    named = SUFFIXES.get(path.suffix.lower())
    if named == looks:  # (its name says what it is: --input-format said another)
        return f"it looks like {name}, as its name says: drop --input-format {fmt}, or pass --input-format {looks}"
    if named is None:  # (a name that says no format: the format was given)
        return f"it looks like {name}: pass --input-format {looks}"
    return f"it looks like {name}: rename it to {suffix} or pass --input-format {looks}"


@contextlib.contextmanager
def naming_the_file(path: Path, fmt: str) -> Iterator[None]:
    """Turn a reader's ValueError (JSON, Arrow, NumPy: their messages do not say which file) or Arrow's
    OSError of damaged data (no errno: not the file system's) into a :class:`BadInputError` naming ``path``
    as not a readable ``fmt`` file, with what to do (:func:`unreadable_fix`). satclip's own refusals of what it
    read (a :class:`BadInputError`: points that are not points) are named ``path: message``, the file being
    readable; messages that already start with ``path`` pass unchanged."""
    try:
        yield
    except (ValueError, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None or str(err).startswith(str(path)):
            raise
        if isinstance(err, BadInputError):  # satclip's own refusal of what it read
            raise BadInputError(f"{path}: {err}") from err
        reason = str(err).rstrip(". ")
        raise BadInputError(f"{path}: not a readable {fmt} file: {reason}; {unreadable_fix(path, fmt)}") from err


def _read_naming(batches: Iterator, path: Path, fmt: str) -> Iterator:
    """``batches``, a reader's error while reading one (damaged data midway through a file) naming ``path``."""
    while True:
        with naming_the_file(path, fmt):
            batch = next(batches, None)
        if batch is None:
            return
        yield batch


class Source:
    """A table of points in a file. Subclasses implement :meth:`_open` (set ``columns``, maybe
    ``num_rows``) and :meth:`_batches`."""

    format = ""
    columns: list[str] = []
    #: number of rows if known without reading the data, else None (counted by a scan)
    num_rows: int | None = None
    #: what a row whose lon and lat are both NaN stands for in this input, where its coordinates come from a
    #: geometry (invalid rows were "(lon=nan, lat=nan)" without a word of the geometry)
    nan_means: str = ""
    #: for point-geometry formats: the columns holding the geometry's lon/lat (used unless named)
    geometry_columns: tuple[str, str] | None = None

    def __init__(
        self, path: Path, lon_col: str | None = None, lat_col: str | None = None, *, centroids: bool = False
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"input {self.path} does not exist")
        self.centroids = centroids  # geo formats: embed the centroids of non-point geometries
        with naming_the_file(self.path, self.format):
            self._open()
        if lon_col is None and lat_col is None and self.geometry_columns is not None:
            self.lon_col, self.lat_col = self.geometry_columns
            log_geometry_wins(self.path, self.columns, self.geometry_columns)
        else:
            self.lon_col, self.lat_col = detect_lonlat_columns(self.columns, lon_col, lat_col, self.wkb_columns())

    def _open(self) -> None:
        raise NotImplementedError

    def _batches(self, start: int, columns: list[str] | None) -> tuple[int, Iterator]:
        """``(first_row, record batches from first_row ≤ start on)``."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        return {"format": self.format, **file_fingerprint(self.path)}

    def stored_type(self, column: str):
        """The Arrow type the file stores ``column`` as, where the format says it without reading data; else None."""
        return None

    def wkb_columns(self) -> list[str]:
        """The columns named like a geometry (:data:`~satclip.embed.columns.GEOMETRY_WORDS`) that the file stores as
        bytes: WKB, where no GeoParquet metadata says so."""
        pa = _pa()
        return [name for name in self.columns if named_like(name, GEOMETRY_WORDS)
                and (stored := self.stored_type(name)) is not None
                and (pa.types.is_binary(stored) or pa.types.is_large_binary(stored))]  # fmt: skip

    def warn_of_half_floats(self) -> None:
        """Warn where the file stores the coordinates as float16: they are read as float64 without a word."""
        pa = _pa()
        half = [name for name in dict.fromkeys((self.lon_col, self.lat_col))
                if (stored := self.stored_type(name)) is not None and pa.types.is_float16(stored)]  # fmt: skip
        if half:  # (an NPY array has no columns: "its coordinate column(s) 'lon', 'lat'" was said of one)
            named = f"its coordinate column(s) {', '.join(map(repr, half))}"
            what = "its coordinates" if self.format == "npy" else named
            warn_of_half_floats(what, self.path)

    #: how messages count rows
    row_numbers = "rows counted from 0"

    def place(self, row: int) -> str:
        """Where row ``row`` (counted from 0 over the whole input) is, for messages, where a row number alone does
        not say it (a dataset's part file: ``"row 5 of part-2.parquet"``), else ``""``."""
        return ""

    def numbering(self, row: int) -> str:
        """How the rows a message names are counted, and where ``row`` is (:meth:`place`) if that says more."""
        place = self.place(row)
        return self.row_numbers + (f"; row {row} is {place}" if place else "")

    def chunks(self, start_chunk: int, stop_row: int, chunk_rows: int, columns: list[str] | None = None):
        """Yield ``(chunk_index, table)`` for chunks ``start_chunk, …`` up to row ``stop_row`` (exclusive;
        the last chunk may be short). ``columns`` restricts what is read."""
        pa = _pa()
        start = start_chunk * chunk_rows
        if start >= stop_row:
            return
        first, batches = self._batches(start, columns)
        batches = _read_naming(iter(batches), self.path, self.format)
        buffer, row, index = None, first, start_chunk
        for batch in batches:
            lo, hi = row, row + batch.num_rows
            row = hi
            if hi <= start:
                continue
            piece = pa.Table.from_batches([batch.slice(max(start - lo, 0), min(stop_row, hi) - max(start, lo))])
            buffer = piece if buffer is None else pa.concat_tables([buffer, piece])
            while buffer.num_rows >= chunk_rows:
                yield index, buffer.slice(0, chunk_rows)
                buffer, index = buffer.slice(chunk_rows), index + 1
            if hi >= stop_row:
                break
        if buffer is not None and buffer.num_rows:
            yield index, buffer


@SOURCES.register("parquet")
class ParquetSource(Source):
    format = "parquet"

    def _open(self):
        import pyarrow.parquet as pq

        self._file = pq.ParquetFile(self.path)
        self.columns = list(self._file.schema_arrow.names)
        self.num_rows = self._file.metadata.num_rows

    def stored_type(self, column):
        return self._file.schema_arrow.field(column).type

    def _batches(self, start, columns):
        meta, first, group = self._file.metadata, 0, 0
        while group < meta.num_row_groups and first + meta.row_group(group).num_rows <= start:
            first += meta.row_group(group).num_rows
            group += 1
        groups = list(range(group, meta.num_row_groups))
        return first, self._file.iter_batches(batch_size=_READ_BATCH, row_groups=groups, columns=columns)


@SOURCES.register("csv")
class CsvSource(Source):
    """Delimited text with a header row: the delimiter (``,`` ``;`` tab ``|``) is sniffed from the first
    lines (a ``.tsv`` whose header has a tab: tab; undecided: tab for ``.tsv``, else comma). Column types are
    inferred from the first block (16 MiB) and, in a larger file, widened where a later value does not fit
    (integers → float64 → text; anything else → text), so a column keeps one type for the whole file. A column
    of numbers written with leading zeros (``01234``), as a phone number's digits after a ``+`` (``+4930123``), or
    of integers too large for int64, anywhere in the file, stays text (inferred, it would not write back as it was
    written), and so does a column of timestamps with an offset from UTC (``+02:00``: read as UTC, the offset lost);
    the log names each. The coordinate columns are always read as float64 (empty, ``nan`` → NaN). Header names must
    be unique and the text UTF-8. Blank lines are no rows: they are skipped, not written, and not counted in the row
    numbers messages give."""

    format = "csv"
    row_numbers = "rows counted from 0, the first after the header line, blank lines not counted"
    BLOCK_SIZE = 1 << 24
    #: the names the reader gives the columns, where the header leaves some unnamed (:meth:`_drop_unnamed_columns`)
    _read_names: list[str] | None = None

    def _open(self):
        pa = _pa()
        tsv = self.path.suffix.lower() == ".tsv"
        with open(self.path, "rb") as fh:
            magic = fh.read(4)
        if magic == b"PAR1":
            raise ValueError(f"{self.path} is a Parquet file, not delimited text: name it .parquet or pass "
                             "--input-format parquet")  # fmt: skip
        if magic[:2] == b"\x1f\x8b" and self.path.suffix.lower() != ".gz":  # (Arrow decompresses by the suffix)
            raise ValueError(f"{self.path} is gzip-compressed: name it {self.path.name}.gz, or decompress it")
        if magic[:2] in (b"\xff\xfe", b"\xfe\xff"):  # (Excel's "Unicode text": read as UTF-8, a raw codec error)
            raise ValueError(f"{self.path} is UTF-16 text (a spreadsheet's 'Unicode text'): save it as UTF-8 (CSV "
                             "UTF-8)")  # fmt: skip
        with _text(self.path) as fh:
            header = fh.readline()
        hint = re.fullmatch(r"\ufeff?sep=(.)", header.rstrip("\r\n"))
        if hint:  # (Excel's delimiter line before the header: its names were "sep=" and "")
            raise ValueError(f"{self.path}: the first line {hint.group(0).lstrip(chr(0xfeff))!r} is a spreadsheet's "
                             "delimiter hint, not the header: delete that line")  # fmt: skip
        self.delimiter = "\t" if tsv and "\t" in header else sniff_delimiter(self.path, "\t" if tsv else ",")
        self._schema = schema = self._reader(None, {}).schema  # (the types inferred from the first block)
        self.columns = list(schema.names)
        if any(not name.strip() for name in self.columns):
            self._drop_unnamed_columns()
            self._schema = schema = self._reader(None, {}).schema
        repeated = sorted({name for name in self.columns if self.columns.count(name) > 1})
        if repeated:
            raise ValueError(f"the header names column(s) {repeated} more than once; give every column its own name")
        binary = [field.name for field in schema if pa.types.is_binary(field.type)]
        if binary:
            raise ValueError(
                f"column(s) {binary[:5]} hold text that is not UTF-8 (e.g. Latin-1 or Windows-1252): save the file "
                "as UTF-8"
            )
        self._text_columns = self._lossy_columns(schema)

    def _drop_unnamed_columns(self) -> None:
        """Leave out the columns the header gives no name (a spreadsheet's empty columns: ``lon,lat,,``, refused as
        naming '' more than once) where they hold no value in any row (a note in the log); one that holds a value
        is refused. The reader then names them itself (:attr:`_read_names`) and reads the named ones alone."""
        import pyarrow.compute as pc

        pa = _pa()
        header = self.columns
        unnamed = [i for i, name in enumerate(header) if not name.strip()]
        self._read_names = [f"\0unnamed {i}" if i in unnamed else name for i, name in enumerate(header)]
        placeholders = [self._read_names[i] for i in unnamed]
        start = 0
        for batch in self._reader(placeholders, dict.fromkeys(placeholders, pa.string())):
            for i, column in zip(unnamed, batch.columns, strict=True):
                row = pc.index(pc.not_equal(pc.utf8_trim_whitespace(column), ""), True).as_py()
                if row >= 0:
                    raise ValueError(
                        f"{self.path}: column {i + 1} of the header line has no name and holds "
                        f"{column[row].as_py()!r} in row {start + row} ({self.row_numbers}): name it in the header line"
                    )
            start += batch.num_rows
        self.columns = [name for i, name in enumerate(header) if i not in unnamed]
        log.info("%s: left out %d column(s) without a name or any value (columns %s of the header line)", self.path,
                 len(unnamed), ", ".join(str(i + 1) for i in unnamed))  # fmt: skip

    def _lossy_columns(self, schema, whole_file: bool = False, known: Iterable[str] = ()) -> dict:
        """``{column: string}`` for the columns of numbers or of timestamps that inferred types would change
        (:func:`_reads_otherwise`, :func:`_loses_offset`); in the first block, or with ``whole_file`` in every block
        (a ``02134`` further on reads as int64 without an error), but the ``known`` ones. Each is named in the log,
        with the value that decided it (a column of numbers read as text was not said)."""
        import pyarrow.csv as pa_csv

        pa = _pa()
        coordinates = (getattr(self, "lon_col", None), getattr(self, "lat_col", None))  # (known after _open)
        skipped = {*coordinates, *known}  # (the coordinates are read as float64 whatever they hold)
        checks = {field.name: check for field in schema
                  if field.name not in skipped and (check := _text_check(field.type)) is not None}  # fmt: skip
        names = list(checks)
        if not names:
            return {}
        reader = pa_csv.open_csv(
            self.path, read_options=pa_csv.ReadOptions(block_size=self.BLOCK_SIZE),
            parse_options=pa_csv.ParseOptions(delimiter=self.delimiter),
            convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                  include_columns=names),
        )  # fmt: skip
        import pyarrow.compute as pc

        lossy = {}
        for batch in reader if whole_file else [reader.read_next_batch()]:
            for name in names:
                if name in lossy:
                    continue
                column = batch.column(name)  # (the few values that may change, found in C; then exactly)
                pattern, changes, _ = checks[name]
                suspects = pc.filter(column, pc.match_substring_regex(column, pattern)).to_pylist()
                changed = next((value for value in suspects if changes(value.strip())), None)
                if changed is not None:
                    lossy[name] = pa.string()
                    log.info("%s: column %r is kept as text: read as %s, %r would not be written back as it is",
                             self.path, name, checks[name][2], changed.strip())  # fmt: skip
        return lossy

    def _whole_file_types(self) -> dict:
        """``{column: type}`` for the pass-through columns whose type inferred from the first block does not
        hold further on, found by reading the rest of the file with those types (once per source; nothing to
        read when the first block is the whole file). A column is widened one step per failing value and the
        reading starts again, so the types are those the whole file fits."""
        if getattr(self, "_settled_types", None) is not None:
            return self._settled_types
        pa = _pa()
        settled = dict(self._text_columns)
        # (a gzip file of a few MiB may hold far more than the first block)
        if self.path.stat().st_size > self.BLOCK_SIZE or self.path.suffix.lower() == ".gz":
            settled.update(self._lossy_columns(self._schema, whole_file=True, known=settled))
            fixed = (self.lon_col, self.lat_col, *settled)
            typed = [f.name for f in self._schema if f.name not in fixed and not pa.types.is_string(f.type)]
            types = {name: self._schema.field(name).type for name in typed}
            while typed:
                try:
                    for _ in self._reader(typed, {**types, **settled}):
                        pass
                    break
                except pa.ArrowInvalid as err:
                    name, value = self._failed_conversion(err)
                    if name not in typed:  # (another fault: the reading proper reports it)
                        break
                    settled[name] = _wider_type(settled.get(name, types[name]), value)
                    log.info("%s: column %r holds %r after the first %d MiB: read as %s", self.path, name, value,
                             self.BLOCK_SIZE >> 20, settled[name])  # fmt: skip
                    if pa.types.is_string(settled[name]):
                        typed.remove(name)
        self._settled_types = settled
        return settled

    def _failed_conversion(self, err) -> tuple[str | None, str | None]:
        """``(column, value)`` named by pyarrow's conversion error (it names the row too when it reads on one
        thread), else ``(None, None)``."""
        failed = re.search(r"column #(\d+): (?:Row #\d+: )?CSV conversion error to [^:]+: invalid value '(.*)'",
                           str(err))  # (types such as timestamp[s] or date32[day] too)
        names = self._read_names or self.columns  # (pyarrow numbers the file's columns, unnamed ones too)
        if failed is None or int(failed[1]) >= len(names):
            return None, None
        return names[int(failed[1])], failed[2]

    def _row_holding(self, column: str, value: str) -> int | None:
        """The first row (counted from 0, as invalid points' rows are) whose ``column`` reads as the text
        ``value``, if any: the file is read again, that column as text (only when a conversion failed)."""
        import pyarrow.compute as pc

        pa = _pa()
        start = 0
        for batch in self._reader([column], {column: pa.string()}):
            hit = pc.index(batch.column(0), value).as_py()  # (-1: not in this batch)
            if hit >= 0:
                return start + hit
            start += batch.num_rows
        return None

    def _reader(self, columns, types):
        import pyarrow.csv as pa_csv

        try:
            names = {"column_names": self._read_names, "skip_rows": 1} if self._read_names else {}
            return pa_csv.open_csv(
                self.path,
                read_options=pa_csv.ReadOptions(block_size=self.BLOCK_SIZE, **names),
                parse_options=pa_csv.ParseOptions(delimiter=self.delimiter),
                convert_options=pa_csv.ConvertOptions(column_types=types, include_columns=columns or self.columns),
            )
        except _pa().ArrowInvalid as err:  # (a row in the first block)
            if (field_count := self._field_count_error(err)) is not None:
                raise field_count from err
            raise

    def _field_count_error(self, err) -> ValueError | None:
        """For pyarrow's "CSV parse error: Expected 3 columns, got 4: 5,6,c,d" (which says neither where nor what
        to do; read on one thread, as where its thread pool holds one, it starts "Row #302: "), the error naming the
        line of the file that holds that row; None for other errors."""
        found = re.match(r"CSV parse error: (?:Row #\d+: )?Expected (\d+) columns, got (\d+): (.*)", str(err),
                         re.DOTALL)  # fmt: skip
        if found is None:
            return None
        expected, got, text = int(found[1]), int(found[2]), found[3]
        line = None
        with _text(self.path) as fh:  # (only when reading failed: the file is read again up to that line)
            for number, content in enumerate(fh, start=1):
                if content.rstrip("\r\n") == text:
                    line = number
                    break
        where = f"line {line}" if line is not None else "a line"
        fix = "quote a field that holds the delimiter" if got > expected else "give it every field (empty ones too)"
        return ValueError(
            f"{self.path}: {where} has {got} fields where the header has {expected} ({text[:80]!r}, delimiter "
            f"{self.delimiter!r}): fix that line, e.g. {fix}"
        )

    def _batches(self, start, columns):
        pa = _pa()
        types = {**self._whole_file_types(), self.lon_col: pa.float64(), self.lat_col: pa.float64()}

        def batches():
            try:
                yield from self._reader(columns, types)
            except pa.ArrowInvalid as err:
                if (field_count := self._field_count_error(err)) is not None:
                    raise field_count from err
                if re.search(r"invalid value '[-+]?\d*,\d+'", str(err)):
                    raise ValueError(
                        f"{self.path}: {err} (delimiter {self.delimiter!r}): decimal commas are not read as "
                        "numbers; write decimal points (13.4) in the coordinate columns"
                    ) from err
                column, value = self._failed_conversion(err)
                if column in (self.lon_col, self.lat_col):  # (another column inferred as numbers is not named so)
                    row = self._row_holding(column, value)
                    raise ValueError(
                        f"{self.path}: the coordinate column {column!r} holds {value!r}"
                        f"{'' if row is None else f' in row {row} ({self.row_numbers})'}, not a number: coordinates "
                        "are decimal degrees (13.4); fix or remove that row (--skip-invalid writes nulls for "
                        "missing or out-of-range coordinates, not for text)"
                    ) from err
                raise ValueError(
                    f"{self.path}: {err}. Column types are inferred from the first rows; a column that changes "
                    "type later cannot be streamed: convert the file to Parquet"
                ) from err

        return 0, batches()


#: CSV texts that may change read as int64 or float64 (:func:`_reads_otherwise` decides)
_MAY_READ_OTHERWISE = r"^\s*([-+]?(0\d+|\d{19,})|\+\d{7,})\s*$"
#: CSV timestamps that end in an offset from UTC (:func:`_loses_offset` decides)
_UTC_OFFSET = r"[-+]\d\d:?\d\d\s*$"


def _text_check(inferred):
    """``(pattern, check, what it is read as)``: for values of a CSV column of the ``inferred`` type that may not
    write back as they were written, a regular expression that finds them (in C) and the exact check; None for types
    that keep them."""
    pa = _pa()
    if pa.types.is_integer(inferred) or pa.types.is_floating(inferred):
        return _MAY_READ_OTHERWISE, _reads_otherwise, "a number"
    if pa.types.is_timestamp(inferred) and inferred.tz is not None:
        return _UTC_OFFSET, _loses_offset, "a UTC timestamp"
    return None


def _reads_otherwise(value: str) -> bool:
    """Whether a CSV number would not write back as it was written, read as int64 or float64: :func:`_loses_digits`,
    or an integer of 7 digits or more with a leading + (``+4930123``: a phone number). Signed changes (``+3``,
    ``+1.5``), a rounded ``-0`` and exponents (``1e5``, ``2e-3``) are numbers software writes, and stay numbers."""
    return _loses_digits(value) or bool(re.fullmatch(r"\+\d{7,}", value))


def _loses_offset(value: str) -> bool:
    """Whether a CSV timestamp has an offset from UTC that reading it as a UTC timestamp drops (``+02:00``)."""
    return not re.search(r"[-+]00:?00$", value)


def _loses_digits(value: str) -> bool:
    """Whether a CSV number would change read as int64 or float64: leading zeros (``007``) or an integer beyond
    int64."""
    return bool(re.fullmatch(r"[-+]?0\d+", value)) or (
        bool(re.fullmatch(r"[-+]?\d{19,}", value)) and not -(2**63) <= int(value) < 2**63
    )


def _wider_type(current, value: str):
    """The type one step wider than ``current`` that a CSV ``value`` it failed on may fit: a column of no
    values yet → int64 or float64 by the value; int64 → float64 for a decimal value; else text (an integer
    beyond int64 too: as float64 it would lose digits)."""
    pa = _pa()
    number = re.fullmatch(r"\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|inf|nan)\s*", value, re.IGNORECASE)
    if re.fullmatch(r"\s*[-+]?\d+\s*", value) and _loses_digits(value.strip()):
        return pa.string()
    if pa.types.is_null(current) and re.fullmatch(r"\s*[-+]?[1-9]\d{0,17}\s*|\s*0\s*", value):
        return pa.int64()
    if (pa.types.is_null(current) or pa.types.is_integer(current)) and number:
        return pa.float64()
    return pa.string()


@SOURCES.register("npy")
class NpySource(Source):
    """A ``.npy`` array of shape ``(N, 2)`` in (lon, lat) order, memory-mapped; columns ``lon``, ``lat``."""

    format = "npy"
    columns = ["lon", "lat"]

    def _open(self):
        expected = "expected an (N, 2) float array of (lon, lat) saved with numpy.save, or give a CSV/Parquet file"
        try:
            self._array = safe_output.load_array(self.path, mmap_mode="r")
        except safe_output.NoArrayError as err:
            raise ValueError(f"{self.path}: {err}; {expected}") from err
        except ValueError as err:
            raise ValueError(f"{self.path} is damaged or cut short ({err}): save the array again") from err
        if self._array.dtype.kind not in "fiu":
            raise ValueError(f"{self.path} holds {self._array.dtype} values, not numbers; expected an (N, 2) float "
                             "array of (lon, lat)")  # fmt: skip
        if self._array.ndim != 2 or self._array.shape[1] != 2:
            shape = self._array.shape
            turned = " (transposed? save points.T)" if len(shape) == 2 and shape[0] == 2 else ""  # (as the API says)
            raise ValueError(f"{self.path}: expected an (N, 2) array of (lon, lat), got shape {shape}{turned}")
        self.num_rows = int(self._array.shape[0])

    def stored_type(self, column):
        return _pa().from_numpy_dtype(self._array.dtype)

    def _batches(self, start, columns):
        pa = _pa()

        def batches():
            for lo in range(start, self.num_rows, _READ_BATCH):
                block = np.asarray(self._array[lo : lo + _READ_BATCH], dtype=np.float64)
                yield pa.RecordBatch.from_arrays([pa.array(block[:, 0]), pa.array(block[:, 1])], names=self.columns)

        return start, batches()


def geometry_column_names(names) -> tuple[str, str]:
    """The names the geometry's lon/lat are added under: ``lon``/``lat``, else the first free pair of
    ``geometry_lon``/``geometry_lat``, ``geometry_lon_2``/``geometry_lat_2``, …"""
    taken = set(names)
    pairs = [("lon", "lat"), ("geometry_lon", "geometry_lat")]
    pairs += [(f"geometry_lon_{i}", f"geometry_lat_{i}") for i in range(2, len(taken) + 3)]
    return next(pair for pair in pairs if not taken & set(pair))  # more pairs than names: one is free


class InMemorySource(Source):
    """Points read whole into an Arrow table (the geo formats). :meth:`_read` returns the attribute
    table and the ``(N, 2)`` lon/lat of the point geometries; those become two more columns, ``lon`` and
    ``lat`` (:func:`geometry_column_names`: others when the attributes already use those names). Without
    geometries (lon/lat None), the table's own coordinate columns are found or named as a CSV's."""

    #: the column of the features' ids that the format keeps beside their attributes (a GeoPackage's FIDs), if any
    id_column: str | None = None

    def _read(self) -> tuple[object, np.ndarray | None]:
        raise NotImplementedError

    def _open(self):
        pa = _pa()
        with gdal_warnings_as_debug():  # (pyogrio's RuntimeWarnings printed four lines with source lines)
            attributes, lonlat = self._read()
        names = list(attributes.schema.names)
        if lonlat is None:  # a table without geometries (a GeoPackage attribute table): its columns, as a CSV's
            self._table, self.columns, self.num_rows = attributes, names, attributes.num_rows
            self.nan_means = ""  # (its NaN rows are missing values, not geometries)
            return
        lon_name, lat_name = geometry_column_names(names)
        coordinates = {lon_name: pa.array(lonlat[:, 0]), lat_name: pa.array(lonlat[:, 1])}
        if not names:  # (geometries alone: a table of no columns has no rows to append the coordinates to)
            self._table = pa.table(coordinates)
        else:
            self._table = attributes.append_column(lon_name, coordinates[lon_name]).append_column(
                lat_name, coordinates[lat_name]
            )
        self.columns = names + [lon_name, lat_name]
        self.num_rows = self._table.num_rows
        self.geometry_columns = (lon_name, lat_name)

    def _batches(self, start, columns):
        table = self._table.select(columns) if columns else self._table
        return start, iter(table.slice(start).to_batches(max_chunksize=_READ_BATCH))


#: the types of a GeoJSON geometry object (RFC 7946, 3.1)
_GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                   "GeometryCollection")  # fmt: skip


@SOURCES.register("geojson")
class GeoJsonSource(InMemorySource):
    """A GeoJSON FeatureCollection of Points (RFC 7946: always lon/lat on WGS 84), or a single Feature or Point
    geometry (a table of one row); feature properties become columns (a property whose values have different JSON
    types across features: a column of their JSON text), features' ``id`` a column ``id`` (``feature_id`` if a
    property is called so). Features without geometry get NaN coordinates (invalid points). A UTF-8 byte-order mark
    is skipped."""

    format = "geojson"
    nan_means = "features without a point (a null or empty geometry, or fewer than two coordinates)"

    def _read(self):
        pa = _pa()
        data = json.loads(self.path.read_text(encoding="utf-8-sig"))
        # (RFC 7946 GeoJSON text may be one Feature or one geometry: a table of one row, read as a collection of it)
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        if kind in _GEOMETRY_TYPES:
            geometry = {k: v for k, v in data.items() if k != "crs"}
            data = {"type": "Feature", "geometry": geometry, "crs": data.get("crs")}
        if isinstance(data, dict) and data.get("type") == "Feature":
            data = {"type": "FeatureCollection", "features": [{k: v for k, v in data.items() if k != "crs"}],
                    "crs": data.get("crs")}  # fmt: skip
        if not isinstance(data, dict) or data.get("type") != "FeatureCollection":  # (what to do was not said)
            fix = "write it as a FeatureCollection of Point features, or as a CSV with lon and lat columns"
            if isinstance(data, list):
                fix = (f"a list of records is no GeoJSON: write it as a CSV with lon and lat columns (pandas.read_json("
                       f"{str(self.path)!r}).to_csv(...)) or as a FeatureCollection of Point features")  # fmt: skip
            raise ValueError(f"{self.path}: expected GeoJSON (a FeatureCollection, a Feature or a geometry), got "
                             f"{kind!r}; {fix}")  # fmt: skip
        crs = data.get("crs")
        if not self._lonlat_crs(crs):  # a GeoJSON 2008 file in another CRS: reprojected, as a GeoPackage is
            declared = self._declared_crs(crs)
            refused = ValueError(f"{self.path}: crs {json.dumps(crs)[:80]} is not one satclip reads as lon/lat on WGS "
                                 "84 or reprojects; reproject the file to EPSG:4326 (RFC 7946 GeoJSON has no crs "
                                 "member) first")  # fmt: skip
            if declared is None:
                raise refused
            log.info("%s: its crs member names %s: read with geopandas and reprojected to EPSG:4326", self.path,
                     declared)  # fmt: skip
            return _read_with_geopandas(self, crs=declared, refused=refused)
        features = data.get("features") or []
        if not isinstance(features, list):
            raise ValueError(f"{self.path}: 'features' is a {type(features).__name__}, not a list of Feature objects")
        lonlat = np.full((len(features), 2), np.nan)
        for i, feature in enumerate(features):
            geometry = feature.get("geometry") if isinstance(feature, dict) else None
            if not isinstance(feature, dict) or not isinstance(geometry or {}, dict):
                what = "feature" if not isinstance(feature, dict) else "its geometry"
                shown = feature if not isinstance(feature, dict) else geometry
                raise ValueError(f"{self.path}: feature {i}: {what} is {json.dumps(shown)[:60]}, not a GeoJSON object")
            geometry = geometry or {}
            if not isinstance(feature.get("properties") or {}, dict):
                raise ValueError(f"{self.path}: feature {i}: 'properties' is not an object of named values")
            if geometry and geometry.get("type") != "Point":
                if self.centroids:  # centroids computed as for the other geo formats
                    return _read_with_geopandas(self)
                raise ValueError(
                    f"{self.path}: feature {i} is a {geometry.get('type')}; only Point geometries can be embedded "
                    "(--centroids embeds the centroids of other geometries)"
                )
            coords = geometry.get("coordinates") or []
            if not isinstance(coords, list):
                raise ValueError(f"{self.path}: feature {i}: coordinates {json.dumps(coords)[:60]} are not a "
                                 "[lon, lat] list")  # fmt: skip
            if len(coords) >= 2:
                lonlat[i] = [_coordinate(value, self.path, i) for value in coords[:2]]
        properties = [f.get("properties") or {} for f in features]
        columns = {}
        if any("id" in f for f in features):
            columns["feature_id" if any("id" in p for p in properties) else "id"] = [f.get("id") for f in features]
        for key in dict.fromkeys(k for p in properties for k in p):  # union, in order of appearance
            columns[key] = [p.get(key) for p in properties]
        attributes = pa.table({"_": pa.nulls(len(features))}).drop_columns(["_"])  # N rows, no columns
        for key, values in columns.items():
            attributes = attributes.append_column(key, _json_column(values))
        return attributes, lonlat

    @staticmethod
    def _declared_crs(crs) -> str | None:
        """The CRS a ``crs`` member of the GeoJSON 2008 forms names (``{"type": "name", …}``, ``{"type": "EPSG",
        …}``), for pyproj; None for one GDAL does not read either (a linked CRS, a bare string: read as lon/lat)."""
        properties = crs.get("properties") if isinstance(crs, dict) else None
        if not isinstance(properties, dict):
            return None
        if crs.get("type") == "EPSG" and isinstance(properties.get("code"), (int, str)):
            return f"EPSG:{properties['code']}"
        name = properties.get("name") if crs.get("type") == "name" else None
        return name if isinstance(name, str) else None

    @staticmethod
    def _lonlat_crs(crs) -> bool:
        """Whether a GeoJSON file with the ``crs`` member (GeoJSON 2008) is lon/lat on WGS 84: RFC 7946 GeoJSON
        has none and is; a member must say so by name (a file in another CRS was refused, while a GeoPackage or
        GeoParquet file in it was reprojected)."""
        if crs is None:
            return True
        properties = crs.get("properties") if isinstance(crs, dict) else None
        properties = properties if isinstance(properties, dict) else {}
        kind = crs.get("type") if isinstance(crs, dict) else None
        if kind == "EPSG" and properties.get("code") in (4326, "4326"):
            return True
        name = properties.get("name") if kind == "name" else None  # (a linked crs: nothing satclip can check)
        return isinstance(name, str) and (is_wgs84(name) or name.upper().endswith(("CRS84", "EPSG::4326")))


def _json_column(values: list):
    """An Arrow array of JSON values; values of different types (1 and "x", 1 and {"a": 1}) as their JSON text."""
    pa = _pa()
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # (OverflowError: an integer beyond 64 bits)
        return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values])


@SOURCES.register("gpkg")
class GeoPackageSource(InMemorySource):
    """A GeoPackage point layer, read with geopandas — an optional dependency — and reprojected to EPSG:4326:
    its only layer, or ``layer`` (a file of several layers is refused without one, naming them: the first was
    embedded, without a word but pyogrio's own warning)."""

    format = "gpkg"
    nan_means = "null or empty geometries"

    def __init__(self, path, lon_col=None, lat_col=None, *, centroids: bool = False, layer: str | None = None):
        self.layer = layer
        super().__init__(path, lon_col, lat_col, centroids=centroids)

    def fingerprint(self) -> dict:  # (another layer of the same file is another input: a run resumes only its own)
        return {**super().fingerprint(), **({"layer": self.layer} if self.layer is not None else {})}

    def _read(self):
        geopandas = require("geopandas", "geo", f"reading {self.path} (or write it to Parquet/CSV with lon/lat)")
        list_layers = getattr(geopandas, "list_layers", None)  # (geopandas 1.0 on)
        try:
            layers = [str(name) for name in list_layers(self.path)["name"]] if list_layers else []
        except _geo_read_errors():
            layers = []  # (the read below names what is wrong with the file)
        if self.layer is None and len(layers) > 1:
            raise BadInputError(f"{self.path} holds {len(layers)} layers ({', '.join(layers)}): choose one with "
                                "--layer NAME")  # fmt: skip
        if self.layer is not None and layers and self.layer not in layers:
            raise BadInputError(f"{self.path} has no layer {self.layer!r} (--layer); its layers are "
                                f"{', '.join(layers)}")  # fmt: skip
        self.id_column = _fid_name(self.path, {"layer": self.layer} if self.layer is not None else {})
        return _read_with_geopandas(self, layer=self.layer, fid=self.id_column)


def _read_with_geopandas(
    source: InMemorySource, layer: str | None = None, *, crs: str | None = None, refused: Exception | None = None,
    fid: str | None = None,
) -> tuple[object, np.ndarray | None]:  # fmt: skip
    """``source``'s file (its ``layer``, where given) read with geopandas (an optional dependency): its attribute
    table and the lon/lat of its points (EPSG:4326; centroids of other geometries with ``source.centroids``).
    ``crs``: the CRS the file declares, which GDAL must have read (else ``refused`` is raised: it read a CRS it
    did not understand as lon/lat). ``fid``: the name of a first column to hold the features' ids (a GeoPackage's
    FIDs). A GeoPackage table without geometries gives None for lon/lat: its own columns hold them (found as a
    CSV's)."""
    pa = _pa()
    geopandas = require("geopandas", "geo", f"reading {source.path} (or write it to Parquet/CSV with lon/lat)")
    kind = {"gpkg": "GeoPackage", "geojson": "GeoJSON"}.get(source.format, source.format)
    try:
        frame = geopandas.read_file(source.path, **({"layer": layer} if layer is not None else {}),
                                    **({"fid_as_index": True} if fid else {}))  # fmt: skip
    except _geo_read_errors() as err:  # (GDAL's errors are RuntimeErrors: "unexpected error" without the file)
        fix = unreadable_fix(source.path, source.format)
        if fix.startswith("damaged"):
            fix += ", or give the points as Parquet or CSV with lon/lat"
        raise BadInputError(f"{source.path}: not a readable {kind} file ({_gdal_reason(err)}): {fix}") from err
    try:
        geometry = frame.geometry.name
    except AttributeError:  # (GDAL reads a CSV, say, as a table without geometries)
        geometry = None
        if source.format != "gpkg" or not _is_sqlite(source.path):
            raise BadInputError(f"{source.path} holds no geometries as a {kind}: if it is a table with lon/lat "
                                "columns, drop --input-format (or name its format: csv, parquet)") from None
    if crs is not None:
        import pyproj

        try:
            same = frame.crs is not None and pyproj.CRS.from_user_input(crs).equals(frame.crs)
        except pyproj.exceptions.CRSError:
            same = False
        if not same:
            raise refused or ValueError(f"{source.path}: GDAL read its CRS as {frame.crs}, not the {crs} it declares")
    table = frame.drop(columns=[geometry]) if geometry is not None else frame
    if fid:  # (dropped, while GeoJSON's ids are kept: the key that joins the embeddings back to the features)
        table.insert(0, fid, frame.index.to_numpy())
    attributes = pa.Table.from_pandas(table, preserve_index=False)
    return attributes, geo_lonlat(frame, centroids=source.centroids) if geometry is not None else None


def _is_sqlite(path: Path) -> bool:
    """Whether ``path`` is an SQLite database, as a GeoPackage is (not a CSV read as one with --input-format gpkg)."""
    with open(path, "rb") as file:
        return file.read(16) == b"SQLite format 3\x00"


def _fid_name(path: Path, options: dict) -> str:
    """The name of the layer's FID column (``fid`` where GDAL does not say; no attribute can share it)."""
    try:
        import pyogrio

        return pyogrio.read_info(path, **options).get("fid_column") or "fid"
    except (ImportError, *_geo_read_errors()):  # (a file GDAL cannot read is named by the read that follows)
        return "fid"


def _geo_read_errors() -> tuple[type[Exception], ...]:
    """The errors of geopandas' readers (pyogrio's, fiona's) for a file they cannot read: damaged, cut short,
    not the format its name says (their ValueErrors are named by :func:`naming_the_file`)."""
    errors: list[type[Exception]] = []
    with contextlib.suppress(ImportError):
        from pyogrio.errors import DataLayerError, DataSourceError

        errors += [DataSourceError, DataLayerError]
    with contextlib.suppress(ImportError):
        from fiona.errors import FionaError

        errors.append(FionaError)
    return tuple(errors)


def _gdal_reason(err: Exception) -> str:
    """GDAL's message in ``err`` without its repeats, the SQL it ran and its advice to name a driver (which
    satclip's command line has no place for)."""
    parts: list[str] = []
    for part in str(err).split("; "):
        part = re.sub(r"^sqlite3_\w+\(.*\) failed: ", "", part.strip()).rstrip(".")
        if part and not part.startswith("It might help") and part not in parts:
            parts.append(part)
    return "; ".join(parts)[:200] or type(err).__name__


#: what an input of each format without points holds
_EMPTY = {"csv": "a header alone?", "npy": "an array of 0 points", "geojson": "no features", "gpkg": "no features"}


def no_points(source: Source) -> ValueError:
    """The error for an input without points, saying what it holds ("a header alone?" was said of every format)."""
    what = _EMPTY.get(source.format, "no rows")
    return ValueError(f"{source.path} has no points ({what}): give a file with points in it")


def format_of(path: str | Path, fmt: str | None = None) -> str:
    """The format name for ``path`` (from ``fmt`` or the suffix)."""
    if fmt:
        SOURCES.get(fmt)
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix == ".gz" and SUFFIXES.get(Path(path).with_suffix("").suffix.lower()) == "csv":  # (x.csv.gz)
        return "csv"
    if suffix not in SUFFIXES:
        raise ValueError(
            f"cannot tell the format of {path} from its suffix {suffix!r}; known suffixes: {sorted(SUFFIXES)} "
            f"(or name one of {SOURCES.names()})"
        )
    return SUFFIXES[suffix]


def open_source(
    path: str | Path,
    fmt: str | None = None,
    lon_col: str | None = None,
    lat_col: str | None = None,
    *,
    centroids: bool = False,
    layer: str | None = None,
):
    """Open a point file, or a directory of Parquet part files; ``fmt`` overrides the suffix. GeoParquet files
    and Parquet datasets are read by :class:`satclip.embed.parquet.ParquetDatasetSource`. ``centroids``:
    embed the centroids of non-point geometries (GeoParquet, GeoPackage) instead of refusing them. ``layer``:
    the layer of a GeoPackage of several."""
    path = Path(os.fspath(path))
    fmt = "parquet" if path.is_dir() and fmt is None else format_of(path, fmt)
    if layer is not None:
        if fmt != "gpkg":
            raise BadInputError(f"--layer {layer!r} names a layer of a GeoPackage; {path} is {fmt}: drop --layer")
        return GeoPackageSource(path, lon_col, lat_col, centroids=centroids, layer=layer)
    if fmt == "parquet":
        from .parquet import ParquetDatasetSource, is_geoparquet

        with naming_the_file(path, "parquet"):
            geoparquet = path.is_file() and is_geoparquet(path)
        if path.is_dir() or geoparquet:
            return ParquetDatasetSource(path, lon_col, lat_col, centroids=centroids)
    return SOURCES.get(fmt)(path, lon_col, lat_col, centroids=centroids)
