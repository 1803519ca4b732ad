"""Parquet datasets (a file or a directory of part files), plain or GeoParquet, as one point source.

A dataset directory holds ``*.parquet`` / ``*.pq`` part files, found recursively (names starting with
``.`` or ``_`` are skipped, as pyarrow and Spark do) and read in the order of their relative paths as text
(``part.10`` before ``part.2``), the order ``pandas.read_parquet`` and ``pyarrow.dataset`` read them in, as one
table: row ``i`` of the dataset is row ``i`` of that concatenation, and of ``pd.read_parquet(directory)`` (Dask's
``read_parquet`` reads Dask's ``part.0`` … ``part.10`` in natural order). All
parts must have the same columns and types. Hive-style ``key=value`` directories are refused (their keys are
not columns of the files).

GeoParquet (``geo`` metadata): unless ``lon_col``/``lat_col`` are given, the primary geometry column
(WKB or GeoArrow ``point`` encoding) is read with geopandas (the ``geo`` extra), reprojected to EPSG:4326
when its CRS is another, and appended as ``lon``/``lat`` columns (``geometry_lon``/``geometry_lat`` when
those names are taken); the geometry column itself is kept. Non-point geometries are refused, or
reduced to centroids with ``centroids=True`` (see :func:`satclip.embed.inputs.geo_lonlat`).

A source holds paths and row counts, never open files, so it pickles small (it is sent to Dask workers).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..optional import require
from .columns import detect_lonlat_columns
from .inputs import crs_name, geo_lonlat, is_wgs84, log_geometry_wins
from .sources import (
    _READ_BATCH,
    Source,
    file_fingerprint,
    geometry_column_names,
    naming_the_file,
)

log = logging.getLogger(__name__)

PART_SUFFIXES = (".parquet", ".pq")
_TAIL_BYTES = 1 << 16


def part_files(path: Path) -> list[Path]:
    """The part files of a dataset directory in reading order (``[path]`` for a file).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a directory without part files, or with Hive-style ``key=value`` directories.
    """
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        return [path]
    found, others = [], []
    for file in path.rglob("*"):
        relative = file.relative_to(path)
        if any(part.startswith((".", "_")) for part in relative.parts) or not file.is_file():
            continue
        (found if file.suffix.lower() in PART_SUFFIXES else others).append(relative)
    if not found:
        raise ValueError(f"{path} is a directory without Parquet part files (*.parquet, *.pq)")
    hive = sorted({p for f in found for p in f.parts[:-1] if "=" in p})
    if hive:
        raise ValueError(
            f"{path} is Hive-partitioned ({hive[0]}/…): its partition keys are not columns of the files; "
            "write the dataset without partition_cols, or embed each partition directory separately"
        )
    if others:  # (a CSV beside the parts was left out without a word)
        names = [f.as_posix() for f in sorted(others, key=Path.as_posix)]
        log.info("%s: %d file(s) that are no Parquet part files (*.parquet, *.pq) are not read: %s%s", path,
                 len(names), ", ".join(names[:3]), ", …" if len(names) > 3 else "")  # fmt: skip
    return [path / f for f in sorted(found, key=Path.as_posix)]


def is_geoparquet(path: Path) -> bool:
    """True for a Parquet file (or the first part of a dataset) with GeoParquet ``geo`` metadata."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(part_files(path)[0]).metadata or {}
    return b"geo" in metadata


def _geo_crs(meta: dict):
    """The CRS of a GeoParquet column: a missing ``crs`` means OGC:CRS84, ``null`` means unknown (None)."""
    if "crs" not in meta:
        return "OGC:CRS84"
    crs = meta["crs"]
    if crs is None:
        return None
    pyproj = require("pyproj", "geo", "reading the CRS of GeoParquet geometries")
    return pyproj.CRS.from_json_dict(crs) if isinstance(crs, dict) else pyproj.CRS.from_user_input(crs)


def geometry_lonlat(column, meta: dict, *, centroids: bool = False, first_row: int = 0) -> np.ndarray:
    """``(n, 2)`` float64 (lon, lat) in EPSG:4326 of a GeoParquet geometry column (an Arrow array) whose first
    row is row ``first_row`` of its file or dataset (refusals name rows by that count)."""
    import pyarrow as pa

    geopandas = require("geopandas", "geo", "reading GeoParquet geometries (or give --lon-col/--lat-col)")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, pa.ExtensionArray):
        column = column.storage
    encoding = str(meta.get("encoding", "WKB")).lower()
    crs = _geo_crs(meta)
    if encoding == "wkb":
        series = geopandas.GeoSeries.from_wkb(column.to_numpy(zero_copy_only=False), crs=crs)
    elif encoding == "point":
        x = column.field("x").to_numpy(zero_copy_only=False).astype(np.float64)
        y = column.field("y").to_numpy(zero_copy_only=False).astype(np.float64)
        if column.null_count:
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            x, y = np.where(valid, x, np.nan), np.where(valid, y, np.nan)
        series = geopandas.GeoSeries.from_xy(x, y, crs=crs)
    else:
        raise ValueError(f"GeoParquet geometry encoding {meta.get('encoding')!r} is not supported (WKB or point)")
    return geo_lonlat(series, centroids=centroids, note=False, first_row=first_row)


class ParquetDatasetSource(Source):
    """A Parquet file or dataset directory (see the module docstring); ``centroids`` for GeoParquet."""

    format = "parquet-dataset"

    def __init__(self, path, lon_col: str | None = None, lat_col: str | None = None, *, centroids: bool = False):
        self.path = Path(path).absolute()  # (the workers of a remote scheduler read it from their own directory)
        self.centroids = centroids
        with naming_the_file(self.path, "parquet"):
            self._open()
        if lon_col is None and lat_col is None and self.geometry_columns is not None:
            self.lon_col, self.lat_col = self.geometry_columns
            self._log_geometry()
            log_geometry_wins(self.path, self.columns, self.geometry_columns)
        else:
            chosen = detect_lonlat_columns(self.columns, lon_col, lat_col, self.wkb_columns())
            virtual = set(self.geometry_columns or ()) if self._geo is not None else set()
            if virtual and chosen == tuple(self.geometry_columns):  # the geometry's, named
                self.lon_col, self.lat_col = chosen
                self._log_geometry()
            elif virtual & set(chosen):
                raise BadInputError(
                    f"--lon-col/--lat-col {chosen[0]!r}/{chosen[1]!r}: {self.geometry_columns[0]!r} and "
                    f"{self.geometry_columns[1]!r} are the point geometry's lon and lat; name two columns of the file, "
                    "or neither to use the geometry"
                )
            else:  # coordinates come from columns: the geometry is just another column
                self.lon_col, self.lat_col = chosen
                self._geo = None
                self.columns = [c for c in self.columns if c not in virtual]

    def _open(self):
        import pyarrow.parquet as pq

        self.files = part_files(self.path)
        schema, self._group_rows, reordered = None, [], False
        for file in self.files:
            with naming_the_file(file, "Parquet"):  # (the part, not only the dataset)
                meta = pq.read_metadata(file)
            file_schema = meta.schema.to_arrow_schema()
            if schema is None:
                schema = file_schema
            elif not _same_columns(file_schema, schema):
                difference = _schema_difference(file_schema, schema)
                raise ValueError(
                    f"{file} has other columns or types than {self.files[0]} ({difference}); all part files of a "
                    "dataset must share one schema"
                )
            reordered = reordered or file_schema.names != schema.names
            self._group_rows.append([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        # parts whose columns come in another order (written from frames of another column order) are read in the
        # first part's: every chunk then has the same schema
        self._column_order = list(schema.names) if reordered else None
        self.file_rows = [sum(groups) for groups in self._group_rows]
        self.num_rows = sum(self.file_rows)
        self.columns = list(schema.names)
        self._schema = schema
        self._geo = None
        geo = json.loads((schema.metadata or {}).get(b"geo", b"null"))
        if geo:
            primary = geo.get("primary_column", "geometry")
            self._geo = (primary, geo.get("columns", {}).get(primary, {}))
            names = set(self.columns)
            self.geometry_columns = geometry_column_names(names)
            self.columns = self.columns + list(self.geometry_columns)

    @property
    def nan_means(self) -> str:
        return "null or empty geometries" if self._geo is not None else ""

    def _log_geometry(self) -> None:
        """Say once what reading the geometry does (it is read batch by batch, twice: it was said per batch)."""
        primary, meta = self._geo
        crs = _geo_crs(meta)
        if crs is None:
            log.warning("%s: geometry column %r has no CRS; assuming (lon, lat) degrees (EPSG:4326)", self.path,
                        primary)  # fmt: skip
        elif not is_wgs84(crs):
            log.info("%s: reprojecting geometry column %r from %s to EPSG:4326", self.path, primary, crs_name(crs))
        if self.centroids:
            log.info("%s: geometries of column %r that are not points are embedded as their centroids", self.path,
                     primary)  # fmt: skip

    def stored_type(self, column):
        return self._schema.field(column).type if column in self._schema.names else None  # (not the geometry's)

    def fingerprint(self) -> dict:
        if self.path.is_file():  # (one file: as the local engine reads it, so its outputs record the same input)
            return {"format": "parquet", **file_fingerprint(self.path)}
        digest = hashlib.sha256()
        for file in self.files:
            stat = file.stat()
            digest.update(f"{file.relative_to(self.path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
            with file.open("rb") as fh:  # the footer: schema, row groups and column statistics
                fh.seek(max(0, stat.st_size - _TAIL_BYTES))
                digest.update(fh.read())
        return {"format": self.format, "files": len(self.files), "rows": self.num_rows, "sha256": digest.hexdigest()}

    def place(self, row: int) -> str:
        first = 0
        for file, rows in zip(self.files, self.file_rows, strict=True):
            if row < first + rows:
                return "" if file == self.path else f"row {row - first} of {file.relative_to(self.path).as_posix()}"
            first += rows
        return ""

    def _batches(self, start, columns):
        import pyarrow.parquet as pq

        virtual = set(self.geometry_columns or ()) if self._geo is not None else set()
        read = self._column_order
        if columns is not None:
            read = [c for c in columns if c not in virtual]
            if virtual & set(columns) and self._geo[0] not in read:
                read.append(self._geo[0])
        first, index = 0, 0  # the first file with rows at or after start, and its first row group
        while index < len(self.files) and first + self.file_rows[index] <= start:
            first += self.file_rows[index]
            index += 1
        group = 0
        while index < len(self.files) and first + self._group_rows[index][group] <= start:
            first += self._group_rows[index][group]
            group += 1

        def batches():
            row = first
            for number in range(index, len(self.files)):
                groups = range(group if number == index else 0, len(self._group_rows[number]))
                with naming_the_file(self.files[number], "Parquet"):  # (a damaged part file is named)
                    reader = pq.ParquetFile(self.files[number])
                    for batch in reader.iter_batches(_READ_BATCH, row_groups=groups, columns=read):
                        yield self._with_lonlat(batch, columns, row) if virtual else batch
                        row += batch.num_rows

        return first, batches()

    def _with_lonlat(self, batch, columns, first_row: int):
        """``batch`` (rows ``first_row`` … of the input) with the geometry's lon/lat appended (and only
        ``columns``, if given); the schema keeps its metadata, so what is written from it stays GeoParquet."""
        import pyarrow as pa

        primary, meta = self._geo
        lonlat = geometry_lonlat(batch.column(primary), meta, centroids=self.centroids, first_row=first_row)
        arrays = dict(zip(batch.schema.names, batch.columns, strict=True))
        fields = {field.name: field for field in batch.schema}
        for name, values in zip(self.geometry_columns, lonlat.T, strict=True):
            arrays[name], fields[name] = pa.array(values), pa.field(name, pa.float64())
        names = columns if columns is not None else self.columns
        schema = pa.schema([fields[n] for n in names], metadata=batch.schema.metadata)
        return pa.RecordBatch.from_arrays([arrays[n] for n in names], schema=schema)


def _same_columns(schema, first) -> bool:
    """Whether the Arrow ``schema`` of a part file has the ``first`` one's columns (names, types, nullability), in
    any order; schema and field metadata aside."""
    if sorted(schema.names) != sorted(first.names) or len(set(schema.names)) != len(schema.names):
        return schema.remove_metadata().equals(first.remove_metadata())  # (repeated names: only in the same order)
    fields = {field.name: field.remove_metadata() for field in first}
    return all(field.remove_metadata().equals(fields[field.name]) for field in schema)


def _schema_difference(schema, first) -> str:
    """How the Arrow ``schema`` of a part file differs from the ``first`` one's: the columns of other types, those
    only in one of them (listing both sets of names showed two equal lists for an int32 column that is int64 in
    another part, as pandas writes an empty part's text column as double)."""
    types = dict(zip(schema.names, schema.types, strict=True))
    first_types = dict(zip(first.names, first.types, strict=True))
    differences = [f"{name}: {types[name]} vs {first_types[name]}" for name in schema.names
                   if name in first_types and types[name] != first_types[name]]  # fmt: skip
    differences += [f"{name} only in this part" for name in schema.names if name not in first_types]
    differences += [f"no {name}" for name in first.names if name not in types]
    if not differences:  # (nullability, field metadata)
        differences.append(f"{schema} vs {first}".replace("\n", "; "))
    return ", ".join(differences)
