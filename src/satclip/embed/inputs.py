"""Turn in-memory point collections into ``(N, 2)`` (lon, lat) degrees.

Accepted: numpy arrays and torch tensors of shape ``(N, 2)`` in (lon, lat) order; pandas DataFrames
(coordinate columns detected by name, see :mod:`satclip.embed.columns`); GeoDataFrames / GeoSeries of
points (recognised by duck typing — geopandas is not imported here), reprojected to EPSG:4326 when
their CRS is another one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BadInputError, warn_caller
from .columns import (
    GEOMETRY_WORDS,
    LAT_NAMES,
    LON_NAMES,
    ColumnError,
    detect_lonlat_columns,
    matching_columns,
    named_like,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_WGS84_NAMES = {"EPSG:4326", "OGC:CRS84", "CRS84", "WGS84", "WGS 84"}


class GeometryError(BadInputError):
    """Geometries that are not points, where points are needed (and centroids were not asked for)."""


def is_geo(obj) -> bool:
    """True for GeoDataFrame/GeoSeries-like objects (a ``geometry``, a ``crs`` and ``to_crs``)."""
    return all(hasattr(obj, name) for name in ("geometry", "crs", "to_crs"))


def is_dask_frame(obj) -> bool:
    """True for Dask DataFrames (and dask-geopandas GeoDataFrames), recognised without importing Dask."""
    return hasattr(obj, "map_partitions") and hasattr(obj, "npartitions") and hasattr(obj, "__dask_graph__")


def embedding_frame(values: np.ndarray, index):
    """``(N, D)`` embeddings as a pandas DataFrame on ``index``, columns ``emb_000`` …"""
    import pandas as pd

    from .sinks import embedding_column_names

    return pd.DataFrame(values, index=index, columns=embedding_column_names(values.shape[1]))


def warn_of_shared_columns(columns, dim: int) -> None:
    """Warn where the points' ``columns`` include the names of the embedding frame's (``emb_000`` …): joined
    to the points as docs/scale.md shows, the frame repeats them, and writing the result fails only at the end
    (``satclip embed`` refuses such an input)."""
    from .sinks import embedding_column_names

    shared = sorted(set(map(str, columns)) & set(embedding_column_names(dim)))
    if shared:
        log.warning(
            "the points already have column(s) %s%s, as the embedding frame does: joining the two repeats those "
            "names; rename or drop them first", shared[:3], f" and {len(shared) - 3} more" if len(shared) > 3 else ""
        )  # fmt: skip


def is_table(obj) -> bool:
    """True for DataFrame-like objects (named columns)."""
    return hasattr(obj, "columns") and hasattr(obj, "__getitem__") and not isinstance(obj, np.ndarray)


def is_wgs84(crs) -> bool:
    """Whether ``crs`` (a pyproj CRS, or its string form) is geographic lon/lat on WGS 84."""
    to_epsg = getattr(crs, "to_epsg", None)
    if to_epsg is not None and to_epsg() == 4326:
        return True
    text = crs.to_string() if hasattr(crs, "to_string") else str(crs)
    return text.strip().upper() in _WGS84_NAMES


def crs_name(crs) -> str:
    """A short name for a CRS: ``EPSG:3857`` where an authority code is known, else its name."""
    to_authority = getattr(crs, "to_authority", None)
    authority = to_authority() if to_authority is not None else None
    if authority:
        return ":".join(authority)
    if getattr(crs, "name", None) and crs.name != "unknown":  # (a proj string's CRS: "from unknown" said nothing)
        return crs.name
    return crs.to_string() if hasattr(crs, "to_string") else str(crs)


def log_geometry_wins(where, columns, geometry_columns=(), options: str = "--lon-col/--lat-col") -> None:
    """Say that the point geometry gives the coordinates where ``where`` (a file, a GeoDataFrame) has lon/lat
    columns too (they were left unused without a word), and that ``options`` use them instead."""
    named = matching_columns([c for c in columns if c not in geometry_columns], LON_NAMES + LAT_NAMES)
    if named:
        log.info("%s: the coordinates are its point geometry's; its column(s) %s are not used (%s use them instead)",
                 where, ", ".join(map(repr, named)), options)  # fmt: skip


def geo_lonlat(
    obj, *, centroids: bool = False, note: bool = True, index_labels: bool = False, first_row: int = 0,
    refuse_lost: bool = False,
) -> np.ndarray:
    """``(N, 2)`` float64 (lon, lat) of a GeoDataFrame or GeoSeries of points, in EPSG:4326.

    Other geometries are refused (naming the first rows, by their index labels with ``index_labels``, else by
    their positions plus ``first_row``: a file's rows), or with ``centroids`` replaced by their centroids,
    computed in the data's CRS when it is projected and on the sphere when it is lon/lat
    (:mod:`satclip.embed.centroids`).
    Missing and empty geometries give NaN (invalid points). Coordinates satclip reprojected that come back
    a few ulp beyond the antimeridian or a pole are put on it (:func:`onto_bounds`). ``note``: log the
    reprojection (INFO), the centroids and a missing CRS (a file read in batches says them once itself).
    ``refuse_lost``: raise :class:`~satclip.encoding.points.InvalidPointsError` for finite points that reprojecting
    made non-finite (outside the valid area of their CRS), naming them so; else they are left to be refused (or
    skipped) as invalid points.
    """
    geometry = obj.geometry
    kinds = np.asarray(geometry.geom_type, dtype=object)
    missing = np.array([k is None or k != k for k in kinds], dtype=bool)  # None or NaN, by geopandas version
    other = ~missing & (kinds != "Point")
    reprojected = np.zeros(len(kinds), dtype=bool)  # rows whose coordinates come from satclip's own to_crs
    if other.any():
        found = sorted({str(k) for k in kinds[other]})
        if not centroids:
            raise GeometryError(
                f"geometries must be points, found {found} ({_named_rows(obj, other, index_labels, first_row)}); pass "
                "centroids=True (satclip embed --centroids) to embed their centroids, or reduce them yourself first "
                "(.centroid, .representative_point())"
            )
        geometry = _with_centroids(geometry, other)
        if geometry.crs is not None and geometry.crs.is_geographic:  # (computed in CENTROID_CRS, projected back)
            reprojected = other
        if note:
            log.info("embedding the centroids of %d non-point geometries (%s)", int(other.sum()), ", ".join(found))
    crs = geometry.crs
    lonlat = _xy(geometry)
    if crs is None:
        if note and NO_CRS not in _said:  # (once a process: a notebook embedding frames in a loop got one a call)
            _said.add(NO_CRS)
            log.warning(NO_CRS)
    elif not is_wgs84(crs):
        (log.info if note else log.debug)(
            "reprojecting %d geometries from %s to EPSG:4326", len(geometry), crs_name(crs)
        )  # fmt: skip
        xy = lonlat
        finite = np.isfinite(xy).all(axis=1)
        lonlat = _xy(geometry.to_crs("EPSG:4326"))
        reprojected = np.ones(len(geometry), dtype=bool)
        lost = finite & ~np.isfinite(lonlat).all(axis=1)
        lost[finite & ~lost] = outside_crs_area(crs, xy[finite & ~lost])
        if refuse_lost and lost.any():  # (named "(lon=inf, lat=inf) … Expected finite", as if the data were)
            from ..encoding.points import InvalidPointsError

            raise InvalidPointsError(
                f"{_named_rows(obj, lost, index_labels, first_row)}: outside the valid area of {crs_name(crs)} "
                "(reprojecting to EPSG:4326 gives inf/NaN, or a place that does not project back to them): check the "
                "points and their CRS, or drop those rows (skip_invalid=True embeds them as NaN)",
                np.flatnonzero(lost) + first_row)  # fmt: skip
        lonlat[lost] = np.nan  # (invalid points: refused or skipped as such, never embedded where PROJ put them)
    return onto_bounds(lonlat, reprojected)


def _xy(geometry) -> np.ndarray:
    """``(N, 2)`` float64 x and y of the GeoSeries of points ``geometry`` (NaN for missing and empty ones)."""
    return np.column_stack([np.asarray(geometry.x, dtype=np.float64), np.asarray(geometry.y, dtype=np.float64)])


#: metres by which a point's round trip through its CRS's projection (x, y → lon, lat → x, y) may miss it and the
#: point still lie in the projection's valid area: valid points come back within micrometres (a transverse Mercator
#: (UTM) to 0.3 m at 75° from its central meridian), points PROJ clamped or took past the far side of a transverse
#: Mercator by kilometres or more. A miss of whole turns of a cylindrical projection's x-period is no miss
#: (:func:`outside_crs_area`).
ROUND_TRIP_METRES = 1.0


def outside_crs_area(crs, xy: np.ndarray) -> np.ndarray:
    """Rows of ``xy`` (``(N, 2)`` finite x, y in the CRS ``crs``) outside the valid area of its projection, which
    PROJ clamps or moves onto other places instead of refusing them: rows whose round trip through the projection
    (to its own geographic CRS and back: no datum shift) misses them by more than :data:`ROUND_TRIP_METRES`. A point
    the projection maps there and back exactly is valid, also beyond its CRS's area of use (Web Mercator's
    y = 1e8 m is 89.99998°N: a Mercator point near the pole, not an error). So is one that comes back whole turns of
    the projection's x-period away (:func:`_x_period`) and otherwise within the tolerance: a point past the
    antimeridian of a cylindrical projection (Web Mercator's x = 20037508.34 m + 1 m, data crossing the dateline),
    which PROJ reads as its longitude wrapped into [-180°, 180°] (the other edge), as it does several turns out
    (x = 5e7 m is 449°E, 89.16°E), as far as x holds a point to the tolerance (below about 9e15 m: x = 1e20 m,
    whose neighbouring floats are 16 km apart, names no place and is refused). None for a geographic CRS, or one
    that is not pyproj's (duck-typed: no ``is_projected``)."""
    bad = np.zeros(len(xy), dtype=bool)
    if not getattr(crs, "is_projected", False) or not len(xy):  # (a CRS that is no pyproj CRS says nothing)
        return bad
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
    x, y = to_lonlat.transform(lon, lat, direction="INVERSE")
    dx, dy, metres = x - xy[:, 0], y - xy[:, 1], crs.axis_info[0].unit_conversion_factor
    with np.errstate(all="ignore"):  # (NaN misses, a zero or NaN period: refused)
        bad = ~(np.hypot(dx, dy) * metres <= ROUND_TRIP_METRES)
        if bad.any():
            period = _x_period(crs, to_lonlat)
            turns = np.round(dx[bad] / period)
            wrapped = (turns != 0) & (np.hypot(dx[bad] - turns * period, dy[bad]) * metres <= ROUND_TRIP_METRES)
            wrapped &= np.spacing(np.abs(xy[bad, 0])) * metres <= ROUND_TRIP_METRES  # (x = 1e20 m: no place)
            bad[np.flatnonzero(bad)[wrapped]] = False
    return bad


def _x_period(crs, to_lonlat) -> float:
    """The distance in x (the CRS's units) of one turn (360°) around the equator of the projection ``to_lonlat``
    (x, y → lon, lat) of ``crs``, from the x of 179.9° either side of its central meridian: exact for a cylindrical
    projection, whose x is linear in longitude. (For another projection a miss of whole turns of it is no more
    than chance: a transverse Mercator's far side is still refused.)"""
    import warnings

    with warnings.catch_warnings():  # (pyproj: "You will likely lose important projection information …")
        warnings.simplefilter("ignore", UserWarning)
        lon0 = float(crs.to_dict().get("lon_0", 0.0))
    (west, east), _ = to_lonlat.transform([lon0 - 179.9, lon0 + 179.9], [0.0, 0.0], direction="INVERSE")
    return abs(east - west) * 360 / 359.8


def _named_rows(obj, rows: np.ndarray, index_labels: bool, first_row: int) -> str:
    """The first five of ``rows`` (bool) of ``obj``: by their index labels with ``index_labels``, else by their
    positions plus ``first_row`` (a batch's rows are numbered as the whole input's)."""
    positions = np.flatnonzero(rows)[:5]
    more = " …" if rows.sum() > 5 else ""
    if index_labels and hasattr(obj, "index"):  # (text quoted, as encoding.points.row_name does)
        return "index labels " + ", ".join(
            repr(label) if isinstance(label, str) else str(label) for label in obj.index[positions]) + more  # fmt: skip
    return "rows " + ", ".join(str(first_row + r) for r in positions) + more


#: what is said of geometries without a CRS, once a process (:data:`_said`)
NO_CRS = ("geometries have no CRS; assuming they are (lon, lat) degrees (EPSG:4326), as for every such input from "
          "now on")  # fmt: skip
_said: set[str] = set()


#: degrees by which a coordinate satclip reprojected may lie outside lon ∈ [-180, 180], lat ∈ [-90, 90] and be put
#: back on the bound (about 0.1 mm): PROJ returns points on the antimeridian or a pole a few ulp beyond it
#: (180.00000000000003 from EPSG:8857, 3413 or 32601), which were refused as the user's invalid points
REPROJECTION_SLACK = 1e-9


def onto_bounds(lonlat: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``lonlat`` with the coordinates of ``rows`` (bool; the ones satclip reprojected) that lie at most
    :data:`REPROJECTION_SLACK` outside the valid range put on its bound; values further out are kept (refused as
    invalid points later). Modifies and returns ``lonlat``."""
    for axis, bound in ((0, 180.0), (1, 90.0)):
        values = lonlat[:, axis]
        with np.errstate(invalid="ignore"):
            near = rows & (np.abs(values) > bound) & (np.abs(values) <= bound + REPROJECTION_SLACK)
        values[near] = np.copysign(bound, values[near])
    return lonlat


#: equal-area CRS in which the centroids of lon/lat geometries that :func:`satclip.embed.centroids.sphere_centroids`
#: does not take (GeometryCollections) are computed (WGS 84 / NSIDC EASE-Grid 2.0 Global)
CENTROID_CRS = "EPSG:6933"


def _with_centroids(geometry, rows: np.ndarray):
    """A copy of the GeoSeries ``geometry`` with the geometries of ``rows`` (bool) replaced by their centroids;
    points keep their exact coordinates."""
    import shapely

    from .centroids import LINES, POINTS, SURFACES, sphere_centroids

    crs = geometry.crs
    part = geometry[rows]
    if crs is not None and crs.is_geographic:
        spherical = np.isin(part.geom_type.to_numpy(), SURFACES + LINES + POINTS)
        centres = np.empty(len(part), dtype=object)
        # (across the antimeridian, or near a pole, a planar centroid is far off)
        centres[spherical] = shapely.points(sphere_centroids(part.values[spherical]))
        if not spherical.all():
            centres[~spherical] = part[~spherical].to_crs(CENTROID_CRS).centroid.to_crs(crs).values
    else:
        if crs is None:
            log.warning("centroids of geometries without a CRS are computed in their raw coordinates")
        centres = part.centroid.values
    out = geometry.copy()
    out[rows] = centres
    return out


#: dtype kinds a coordinate column must not hold, as the array path refuses them (coordinate_tensor): booleans,
#: complex numbers, timedeltas and dates convert to float64 without error, and were embedded as degrees
_NOT_DEGREES = {"b": "true/false values", "c": "complex numbers", "m": "timedeltas", "M": "dates"}
#: pandas' infer_dtype of a column of Python objects, for those kinds
_INFERRED_KINDS = {"boolean": "b", "complex": "c", "timedelta": "m", "timedelta64": "m", "datetime": "M",
                   "datetime64": "M"}  # fmt: skip


def column_values(table, name: str) -> np.ndarray:
    """A table column as float64 (missing values become NaN). A column of booleans, complex numbers, timedeltas or
    dates is refused (ValueError naming it), as :func:`~satclip.encoding.points.coordinate_tensor` refuses them."""
    column = table[name]
    labels = column.index if hasattr(column, "iloc") else None  # (a pandas column's; pyarrow's, polars' have none)
    if hasattr(column, "to_pandas") and not hasattr(column, "iloc"):  # pyarrow's or polars' column
        column = column.to_pandas()
    dtype = getattr(column, "dtype", None)
    kind = getattr(dtype, "kind", None)
    if kind == "O" and "pandas" in sys.modules:  # Python objects (e.g. Arrow's booleans with nulls): what they are
        from pandas.api.types import infer_dtype

        inferred = infer_dtype(column, skipna=True)
        kind = _INFERRED_KINDS.get(inferred, kind)
        if inferred.startswith("mixed") and any(isinstance(v, (bool, np.bool_)) for v in column.to_numpy()):
            kind = "b"  # (numbers and true/false values: True was read as 1 degree)
        text = _first(column, labels, _is_text)
        if text:  # ("12.5" was read as 12.5 degrees, while encode refuses an array of text)
            unreadable = _first(column, labels, _is_no_number)
            fix = f"frame[{name!r}] = pandas.to_numeric(frame[{name!r}])"
            raise BadInputError(
                f"coordinate column {name!r} holds text, not numbers, and{unreadable} is no number either: fix "
                f"or drop that row, then convert the column, e.g. {fix}" if unreadable else
                f"coordinate column {name!r} holds text, not numbers ({text.strip()}): convert it first, e.g. {fix}"
            )  # fmt: skip
    if kind in _NOT_DEGREES:  # (also pandas' nullable "boolean" and pyarrow-backed dtypes: they have a kind)
        raise BadInputError(
            f"coordinate column {name!r} must be numbers (lon, lat) in degrees, got {dtype} ({_NOT_DEGREES[kind]})"
        )
    try:
        if hasattr(column, "to_numpy"):
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError) as err:
        where = _first(column, labels, _is_no_number).split(" at ", 1)[-1]
        at = f" at {where}" if where else ""
        raise BadInputError(f"coordinate column {name!r} is not numeric{at}: {err}") from err


def warn_of_half_floats(what: str, path=None) -> None:
    """Warn that the coordinates ``what`` come in as float16, rounded when they were stored (13.4 is 13.3984375):
    for a file ``path`` in the log, else to the user's line, as :func:`~satclip.encoding.points.coordinate_tensor`
    warns of 16-bit arrays."""
    rounded = "float16, which holds coordinates to steps of up to 0.125° (at 128–180°): they were rounded"
    if path is None:
        warn_caller(f"{what} are {rounded} before satclip saw them; pass float32 or float64 coordinates")
    else:
        log.warning("%s: %s are %s when stored; store them as float32 or float64", path, what, rounded)


#: how a column of float16 shows its type: NumPy's and pandas', Arrow's, pandas' Arrow-backed one
_HALF_FLOATS = {"float16", "halffloat", "halffloat[pyarrow]"}


def _half_float(column) -> bool:
    dtype = getattr(column, "dtype", None)
    return str(getattr(column, "type", "") if dtype is None else dtype) in _HALF_FLOATS


def _is_text(value) -> bool:
    return isinstance(value, (str, bytes))


def _is_no_number(value) -> bool:
    """Whether ``value`` is neither a number (nor text of one) nor missing (None, ``pd.NA``: NaN)."""
    if value is None or value is getattr(sys.modules.get("pandas"), "NA", None):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return True
    return False


def _first(column, labels, wanted) -> str:
    """`` 'abc' at index label L`` (`` at row N`` without the column's index ``labels``): the first value of
    ``column`` for which ``wanted(value)``, to say in an error; empty if there is none."""
    from ..encoding.points import row_name

    for position, value in enumerate(column.to_numpy() if hasattr(column, "to_numpy") else column):
        if wanted(value):
            where = row_name(labels[position], True) if labels is not None else row_name(position)
            return f" {value!r} at {where}"
    return ""


def _wkb_columns(table, labels: dict) -> list[str]:
    """The columns of ``table`` named like a geometry (:data:`~satclip.embed.columns.GEOMETRY_WORDS`) whose first
    value is bytes: WKB, as a geometry column read without geopandas holds it (``pandas.read_parquet``)."""
    found = []
    for text, label in labels.items():
        if not named_like(text, GEOMETRY_WORDS):
            continue
        column = table[label] if getattr(table, "column_names", None) is None else table.column(label).to_pandas()
        values = column.dropna() if hasattr(column, "dropna") else column
        if len(values) and isinstance(values.iloc[0] if hasattr(values, "iloc") else values[0], (bytes, bytearray)):
            found.append(text)
    return found


def table_lonlat(table, lon_col: str | None = None, lat_col: str | None = None) -> np.ndarray:
    """``(N, 2)`` float64 (lon, lat) from a DataFrame's coordinate columns (detected or named; a column labelled
    by another type than str, e.g. ``DataFrame(array)``'s 0 and 1, is named by its label or its text). A coordinate
    column whose name appears more than once is a :class:`~satclip.embed.columns.ColumnError`."""
    names = getattr(table, "column_names", None)  # a pyarrow Table's .columns are its columns' values
    texts = [str(label) for label in (table.columns if names is None else names)]
    labels = {str(label): label for label in (table.columns if names is None else names)}
    try:
        lon_name, lat_name = detect_lonlat_columns(
            list(labels), None if lon_col is None else str(lon_col), None if lat_col is None else str(lat_col)
        )
    except ColumnError as err:  # (a coordinate as the index was "no longitude column … among ['lat']")
        index = [str(name) for name in getattr(getattr(table, "index", None), "names", []) or [] if name is not None]
        if index and matching_columns(index, LON_NAMES + LAT_NAMES):
            raise ColumnError(f"{err} The frame's index holds {index}: make it a column with "
                              "frame.reset_index()") from None  # fmt: skip
        named = lon_col is not None or lat_col is not None or matching_columns(list(labels), LON_NAMES + LAT_NAMES)
        wkb = [] if named else _wkb_columns(table, labels)
        if wkb:  # (a GeoParquet file read with pandas: its geometry is WKB bytes; naming lon/lat columns was advised)
            geometry = f"geopandas.GeoSeries.from_wkb(frame[{wkb[0]!r}], crs=CRS)"
            raise ColumnError(f"no longitude and latitude columns among {list(labels)}, and column {wkb[0]!r} holds "
                              f"bytes, as WKB geometries do: embed geopandas.GeoDataFrame(frame, geometry={geometry}), "
                              "CRS the geometries' (e.g. 'EPSG:4326'), or read the file with "
                              "geopandas.read_parquet") from None  # fmt: skip
        raise
    for name in (lon_name, lat_name):  # (one label would select several columns: a frame, not a column)
        if texts.count(name) > 1:
            raise ColumnError(
                f"coordinate column {name!r} appears {texts.count(name)} times among the columns {texts}: keep one "
                "(e.g. frame.loc[:, ~frame.columns.duplicated()]) or rename the others"
            )
    half = [name for name in (lon_name, lat_name) if _half_float(table[labels[name]])]
    if half:
        warn_of_half_floats(f"coordinate column(s) {', '.join(map(repr, half))}")
    return np.column_stack([column_values(table, labels[lon_name]), column_values(table, labels[lat_name])])


def _dataset_lonlat(dataset, lon_col: str | None, lat_col: str | None) -> np.ndarray:
    """``(N, 2)`` float64 (lon, lat) of an xarray Dataset's one-dimensional variables (data or coordinates), found
    as a table's columns are."""
    names = {str(name): name for name in (*dataset.data_vars, *dataset.coords) if dataset[name].ndim == 1}
    lon_name, lat_name = detect_lonlat_columns(list(names), lon_col, lat_col)
    lon, lat = dataset[names[lon_name]], dataset[names[lat_name]]
    if lon.dims != lat.dims:
        raise ColumnError(
            f"{lon_name!r} runs along {lon.dims[0]!r} and {lat_name!r} along {lat.dims[0]!r}: points are pairs along "
            "one dimension (the cells of a lon × lat grid are embedded by satclip.embed.xarray.embedding_field)"
        )
    return _number_columns(lon.values, lat.values, lon_name, lat_name)


def _mapping_lonlat(columns: Mapping, lon_col: str | None, lat_col: str | None) -> np.ndarray:
    """``(N, 2)`` float64 (lon, lat) of a dict of equal-length columns (``{"lon": [...], "lat": [...]}``, as
    ``pandas.DataFrame`` takes it), found as a table's columns are."""
    names = {str(name): name for name in columns}
    lon_name, lat_name = detect_lonlat_columns(list(names), lon_col, lat_col)
    lon, lat = np.asarray(columns[names[lon_name]]), np.asarray(columns[names[lat_name]])
    if lon.ndim != 1 or lon.shape != lat.shape:
        raise BadInputError(f"a dict of points holds one value per point in each column: {lon_name!r} has shape "
                            f"{lon.shape} and {lat_name!r} {lat.shape}; give both as lists of one length")  # fmt: skip
    return _number_columns(lon, lat, lon_name, lat_name)


def _number_columns(lon, lat, lon_name: str, lat_name: str) -> np.ndarray:
    from ..encoding.points import number_array

    lon, lat = number_array(lon, f"{lon_name} values"), number_array(lat, f"{lat_name} values")
    half = [name for name, values in ((lon_name, lon), (lat_name, lat)) if values.dtype == np.float16]
    if half:
        warn_of_half_floats(f"coordinate(s) {', '.join(map(repr, half))}")
    return np.column_stack([lon, lat]).astype(np.float64)


def to_lonlat(
    points, lon_col: str | None = None, lat_col: str | None = None, *, centroids: bool = False,
    skip_invalid: bool = False,
) -> np.ndarray | torch.Tensor:
    """Coordinates of ``points`` as ``(N, 2)`` (lon, lat): a tensor stays a tensor (same device), anything
    else becomes a float64 numpy array. What is no (N, 2) array of numbers is refused
    (:func:`satclip.encoding.points.coordinate_tensor`); the range is not checked here. ``centroids``: see
    :func:`geo_lonlat`. An xarray Dataset is read by its coordinate variables, a DataArray with a labelled
    dimension of two (``coord=["lat", "lon"]``) by its labels, as a table by its column names, and so are a dict of
    columns and a numpy structured array (or recarray) by its field names. Points of a GeoDataFrame that lie
    outside the valid area of its CRS are refused as such, unless ``skip_invalid`` (then they are invalid points)."""
    from ..encoding.points import is_xarray_dataset, labelled_axis

    if is_xarray_dataset(points):
        return _dataset_lonlat(points, lon_col, lat_col)
    if isinstance(points, Mapping):
        return _mapping_lonlat(points, lon_col, lat_col)
    if isinstance(points, np.ndarray) and points.dtype.names:  # a structured array (or recarray): named fields
        return _mapping_lonlat({name: points[name] for name in points.dtype.names}, lon_col, lat_col)
    labelled = labelled_axis(points)
    if labelled is not None:
        axis, labels = labelled
        lon_name, lat_name = detect_lonlat_columns(labels, lon_col, lat_col)
        values = np.moveaxis(np.asarray(points.values), axis, 1)
        return _number_columns(values[:, labels.index(lon_name)], values[:, labels.index(lat_name)], lon_name, lat_name)
    if (lon_col is not None or lat_col is not None) and not is_table(points):  # (an array's names were ignored)
        named = ", ".join(f"{k}={v!r}" for k, v in (("lon_col", lon_col), ("lat_col", lat_col)) if v is not None)
        raise BadInputError(f"{named} names columns of a table, but points is a {type(points).__name__}, whose "
                         "columns are (lon, lat): pass the table, or the array without column names")  # fmt: skip
    torch = sys.modules.get("torch")  # (not imported: then points are no tensor; file readers stay torch-free)
    if torch is not None and isinstance(points, torch.Tensor):
        from ..encoding.points import ROUNDING_DTYPES, coordinate_tensor

        tensor = coordinate_tensor(points)  # (which warns of 16-bit floats)
        # float32 holds 16-bit floats exactly; encoding them as they were warned a second time
        return tensor.float() if tensor.dtype in ROUNDING_DTYPES else tensor
    if is_geo(points) and lon_col is None and lat_col is None:
        if hasattr(points, "columns"):  # (a GeoDataFrame: its lon/lat columns were left unused without a word)
            log_geometry_wins(f"the {type(points).__name__}", points.columns, options="lon_col=/lat_col=")
        return geo_lonlat(points, centroids=centroids, index_labels=True, refuse_lost=not skip_invalid)
    if is_table(points):
        return table_lonlat(points, lon_col, lat_col)
    from ..encoding.points import coordinate_tensor  # (points to embed: torch is loaded)

    return coordinate_tensor(points).cpu().double().numpy()
