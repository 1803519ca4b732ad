"""Turn in-memory point collections into ``(N, 2)`` (lon, lat) degrees.

Accepted: numpy arrays and torch tensors of shape ``(N, 2)`` in (lon, lat) order; pandas DataFrames
(coordinate columns detected by name, see :mod:`satclip.embed.columns`); GeoDataFrames / GeoSeries of
points (recognised by duck typing — geopandas is not imported here), reprojected to EPSG:4326 when
their CRS is another one.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .columns import detect_lonlat_columns

log = logging.getLogger(__name__)

_WGS84_NAMES = {"EPSG:4326", "OGC:CRS84", "CRS84", "WGS84", "WGS 84"}


def is_geo(obj) -> bool:
    """True for GeoDataFrame/GeoSeries-like objects (a ``geometry``, a ``crs`` and ``to_crs``)."""
    return all(hasattr(obj, name) for name in ("geometry", "crs", "to_crs"))


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


def geo_lonlat(obj) -> np.ndarray:
    """``(N, 2)`` float64 (lon, lat) of a GeoDataFrame or GeoSeries of points, in EPSG:4326."""
    crs = obj.crs
    if crs is None:
        log.warning("geometries have no CRS; assuming they are (lon, lat) degrees (EPSG:4326)")
    elif not is_wgs84(crs):
        log.info("reprojecting %d geometries from %s to EPSG:4326", len(obj), crs)
        obj = obj.to_crs("EPSG:4326")
    geometry = obj.geometry
    kinds = {str(t) for t in np.asarray(geometry.geom_type, dtype=object) if t is not None}
    if kinds - {"Point"}:
        raise ValueError(
            f"geometries must be points, found {sorted(kinds)}; use .centroid or .representative_point() first"
        )
    return np.column_stack([np.asarray(geometry.x, dtype=np.float64), np.asarray(geometry.y, dtype=np.float64)])


def column_values(table, name: str) -> np.ndarray:
    """A table column as float64 (missing values become NaN)."""
    column = table[name]
    try:
        if hasattr(column, "to_numpy"):
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"coordinate column {name!r} is not numeric: {err}") from err


def table_lonlat(table, lon_col: str | None = None, lat_col: str | None = None) -> np.ndarray:
    """``(N, 2)`` float64 (lon, lat) from a DataFrame's coordinate columns (detected or named)."""
    lon_name, lat_name = detect_lonlat_columns(list(table.columns), lon_col, lat_col)
    return np.column_stack([column_values(table, lon_name), column_values(table, lat_name)])


def to_lonlat(points, lon_col: str | None = None, lat_col: str | None = None) -> np.ndarray | torch.Tensor:
    """Coordinates of ``points`` as ``(N, 2)`` (lon, lat): a tensor stays a tensor (same device), anything
    else becomes a float64 numpy array. Values are not validated here."""
    if isinstance(points, torch.Tensor):
        return points
    if is_geo(points) and lon_col is None and lat_col is None:
        return geo_lonlat(points)
    if is_table(points):
        return table_lonlat(points, lon_col, lat_col)
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) as (lon, lat) in degrees, got shape {array.shape}")
    return array
