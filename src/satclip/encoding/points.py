"""Validation of (lon, lat) point arrays at the public boundary."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import torch

from ..errors import BadInputError, warn_caller

MAX_REPORTED_ROWS = 5


class InvalidPointsError(BadInputError):
    """Raised for coordinates that are not finite (lon, lat) degrees in range."""

    def __init__(self, message: str, bad_rows: np.ndarray):
        super().__init__(message)
        self.bad_rows = bad_rows

    def __reduce__(self):  # pickled with both arguments (Dask sends worker errors to the client)
        return type(self), (str(self), self.bad_rows)


#: IUGG mean Earth radius (km): distances on a sphere
EARTH_RADIUS_KM = 6371.0088


def check_pairs(lonlat: torch.Tensor) -> None:
    """Raise :class:`BadInputError` unless ``lonlat`` is ``(N, 2)`` (a shape check only: no values are read).
    Skipped while an export traces the encoding: its points are satclip's own, and the comparison on a traced
    shape printed a TracerWarning to the user."""
    if torch.jit.is_tracing():
        return
    if lonlat.ndim != 2 or lonlat.shape[1] != 2:
        transposed = (" (transposed? pass points.T)" if lonlat.ndim == 2 and lonlat.shape[0] == 2
                      else " (one point? pass [[lon, lat]])" if tuple(lonlat.shape) == (2,) else "")  # fmt: skip
        raise BadInputError(
            f"points must have shape (N, 2) as (lon, lat) in degrees, got shape {tuple(lonlat.shape)}{transposed}"
        )


def great_circle_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Haversine distance in km between (lon, lat) degree arrays ``a`` and ``b`` (broadcast, ``(..., 2)``)."""
    a, b = np.radians(np.asarray(a, dtype=np.float64)), np.radians(np.asarray(b, dtype=np.float64))
    dlat, dlon = b[..., 1] - a[..., 1], b[..., 0] - a[..., 0]
    h = np.sin(dlat / 2) ** 2 + np.cos(a[..., 1]) * np.cos(b[..., 1]) * np.sin(dlon / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def wrap_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes ``lon`` (degrees) in [-180, 180): those outside (180, a map's 170 … 190 across the antimeridian, or
    0 … 360) wrapped; those inside unchanged, bit for bit."""
    return np.where((lon >= -180) & (lon < 180), lon, (lon + 180) % 360 - 180)


def places(lonlat: np.ndarray) -> np.ndarray:
    """``(N, 2)`` valid (lon, lat) degrees with one pair per place on Earth: lon 180 is −180 (one meridian,
    :func:`wrap_lon`), and so is a pole's longitude (a pole is one point whatever its longitude)."""
    lonlat = np.array(lonlat, dtype=np.float64)
    lonlat[:, 0] = wrap_lon(lonlat[:, 0])
    lonlat[np.abs(lonlat[:, 1]) == 90, 0] = -180.0
    return lonlat


def invalid_rows(lonlat: np.ndarray) -> np.ndarray:
    """Boolean mask of rows that are non-finite or outside lon ∈ [-180, 180], lat ∈ [-90, 90]."""
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    return ~ok


#: the hint where invalid points look like (lat, lon) ones, for points given in order
SWAPPED = "This looks like lat/lon are swapped: satclip takes (lon, lat) order."
#: what to do with projected coordinates, in Python (:data:`PROJECTED_FILE`: from the command line)
PROJECTED_ADVICE = ("give (lon, lat) degrees, or a GeoDataFrame whose CRS says what they are (gdf.set_crs(…)): satclip "
                    "reprojects it.")  # fmt: skip
#: what to do with projected coordinates in a file given to ``satclip embed``
PROJECTED_FILE = ("convert them to lon/lat degrees (EPSG:4326), or give a GeoPackage or GeoParquet file whose CRS says "
                  "what they are: satclip reprojects it.")  # fmt: skip


def describe_invalid(
    lonlat: np.ndarray, bad: np.ndarray, row_offset: int = 0, labels=None, *, index_labels: bool = False,
    swapped: str = SWAPPED, projected: str = PROJECTED_ADVICE, evidence: tuple[int, int] | None = None,
) -> str:  # fmt: skip
    """A message naming the first bad rows (numbered from ``row_offset``, or by ``labels``: each row's number
    in its file) and, where it fits, the lat/lon swap (``swapped``: the hint, for points whose order is known
    another) or what to do with projected coordinates (``projected``). ``index_labels``: ``labels`` are the
    labels of a pandas index, named as such (``index label 'a'``), not as row numbers. ``evidence``: the whole
    table's where ``lonlat`` is a chunk of it (:func:`range_hints`)."""
    rows = np.flatnonzero(bad)
    # labels that repeat do not find the row: its position too (a pandas index knows whether they do)
    repeated = index_labels and labels is not None and not (
        labels.is_unique if hasattr(labels, "is_unique") else len(set(labels)) == len(labels))  # fmt: skip
    shown = ", ".join(
        f"{row_name(r + row_offset if labels is None else labels[r], index_labels)}"
        f"{f' (position {r})' if repeated else ''}: (lon={float(lonlat[r, 0])!r}, lat={float(lonlat[r, 1])!r})"
        for r in rows[:MAX_REPORTED_ROWS]
    )
    more = f" and {len(rows) - MAX_REPORTED_ROWS} more" if len(rows) > MAX_REPORTED_ROWS else ""
    advice = valid_range_advice(lonlat, bad, swapped, projected, evidence)
    return f"{len(rows)} invalid point(s): {shown}{more}. {advice}"


def row_name(label, index_label: bool = False) -> str:
    """``row 3``, or for the label of a pandas index ``index label 3`` / ``index label 'a'`` (text quoted)."""
    if isinstance(label, np.generic):  # (NumPy 2 shows np.int64(1), np.str_('a') in a repr)
        label = label.item()
    if not index_label:
        return f"row {label}"
    if isinstance(label, tuple):  # a MultiIndex's: its numbers as numbers (NumPy 2 shows np.int64(1) in a repr)
        label = tuple(part.item() if isinstance(part, np.generic) else part for part in label)
    return f"index label {label!r}" if isinstance(label, str) else f"index label {label}"


#: a coordinate larger than this is taken for a projected one (metres or feet), not for degrees typed wrong
PROJECTED = 1000.0
#: the least share of the finite rows, beside at least two rows, whose latitude beyond ±90 says a table is swapped
SWAP_SHARE = 0.1
#: how far past a pole a latitude is taken for rounding (a projection's, a float32's) rather than another error
POLE_ROUNDING = 1e-3


def valid_range_advice(
    lonlat: np.ndarray, bad: np.ndarray, swapped: str = SWAPPED, projected: str = PROJECTED_ADVICE,
    evidence: tuple[int, int] | None = None,
) -> str:  # fmt: skip
    """What a valid point is, then :func:`range_hints`."""
    advice = "Expected finite (lon, lat) in degrees with lon in [-180, 180] and lat in [-90, 90]."
    return advice + range_hints(lonlat, bad, swapped, projected, evidence)


def outside_radians_box(lonlat: np.ndarray) -> int:
    """How many valid (lon, lat) rows of ``lonlat`` lie beyond ±π of longitude or ±π/2 of latitude, the box that
    holds every coordinate in radians (in degrees it is open sea off West Africa): none, of at least two valid
    points, is what :func:`radians_hint` and ``satclip embed``'s note say."""
    return _outside_box(lonlat[~invalid_rows(lonlat)])


def _outside_box(valid) -> int:
    """How many rows of ``valid`` (lon, lat) degrees (a numpy array or a tensor) lie outside the radians box."""
    return int(((abs(valid[:, 0]) > math.pi) | (abs(valid[:, 1]) > math.pi / 2)).sum())


def looks_like_radians(valid: int, outside_box: int | None) -> bool:
    """Whether ``valid`` points of which ``outside_box`` lie outside the radians box (:func:`outside_radians_box`;
    None: not counted) look like coordinates in radians. Radians are valid degrees, embedded at the wrong places
    without a word."""
    return outside_box == 0 and valid >= 2


RADIANS_NOTE = "every point lies within ±3.14° of longitude and ±1.57° of latitude, as coordinates in radians do"


def radians_hint(lonlat: np.ndarray) -> str:
    """A hint, after a space, where the valid rows of ``lonlat`` look like radians (:func:`looks_like_radians`);
    else empty."""
    valid = lonlat[~invalid_rows(lonlat)]
    if not looks_like_radians(len(valid), _outside_box(valid)):
        return ""
    return f" {RADIANS_ADVICE}"


RADIANS_ADVICE = f"{RADIANS_NOTE.capitalize()}: if they are, pass numpy.degrees(points)."


def warn_if_radians(lonlat: torch.Tensor) -> None:
    """Warn (:func:`warn_caller`) where the points of an ``(N, 2)`` tensor of valid (lon, lat) degrees (checked by
    :func:`as_lonlat`) look like radians (:func:`looks_like_radians`): one vectorised pass."""
    if looks_like_radians(len(lonlat), _outside_box(lonlat)):
        warn_caller(RADIANS_ADVICE)


def swap_evidence(lonlat: np.ndarray) -> tuple[int, int]:
    """``(rows with a finite latitude beyond ±90, finite rows)`` of ``lonlat``: what :func:`range_hints` weighs a
    swap by; summed over the chunks of a table, its evidence is the table's."""
    finite = np.isfinite(lonlat).all(axis=1)
    return int((finite & (np.abs(lonlat[:, 1]) > 90)).sum()), int(finite.sum())


def range_hints(lonlat: np.ndarray, bad: np.ndarray, swapped: str = SWAPPED, projected: str = PROJECTED_ADVICE,
                evidence: tuple[int, int] | None = None) -> str:  # fmt: skip
    """What the invalid rows ``bad`` look like, each hint after a space; empty where they look like nothing in
    particular: the lat/lon swap (``swapped``) where swapping every row would make the finite invalid ones valid and
    keep the valid ones so (an invalid row among others would only move: "pass --lon-col lat --lat-col lon" for a lat
    of 91 beside a lon of 181, or beside valid lons beyond ±90, made those invalid) and enough rows have a latitude
    beyond ±90 to tell a swap from a typo (every finite row, or two or more and :data:`SWAP_SHARE` of them), rounding
    past a pole, projected coordinates (and what to do: ``projected``), and how to wrap longitudes in [0, 360] where
    every finite longitude of theirs beyond ±180 lies in (180, 360]. ``evidence``: :func:`swap_evidence` of the
    whole table where ``lonlat`` is one chunk of it (the last chunk holding only a typo was "every finite row")."""
    advice = ""
    finite = np.isfinite(lonlat).all(axis=1)
    lat_out = bad & finite & (np.abs(lonlat[:, 1]) > 90)
    # (a swapped table's invalid rows are those whose true longitude lies beyond ±90°: two or more, a tenth of the
    # rows or more, wherever its places spread over the Americas, East Asia or Oceania, or every row of a table of one
    # point. One latitude beyond ±90 among valid rows is likelier a typo, and swapping would move every valid point)
    beyond, rows = evidence or swap_evidence(lonlat)
    telling = beyond == rows or (beyond >= 2 and beyond >= SWAP_SHARE * rows)
    swap_fixes = telling and not (invalid_rows(lonlat[:, ::-1]) & finite).any()  # (a valid row is finite)
    past_pole = np.abs(lonlat[lat_out, 1]) - 90
    if lat_out.any() and (past_pole <= POLE_ROUNDING).all():  # (rounding, not a swap: -90.0001 swapped is no point)
        advice += (f" The latitudes beyond ±90 are past a pole by at most {POLE_ROUNDING:g}° (rounding?): clip them "
                   "to [-90, 90].")  # fmt: skip
    elif lat_out.any() and swap_fixes:
        advice += f" {swapped}"
    largest = np.abs(lonlat[bad & finite]).max(initial=0)
    if largest > PROJECTED:
        advice += f" Coordinates as large as {largest:,.0f} look projected (metres or feet): {projected}"
    lon = lonlat[bad, 0]
    with np.errstate(invalid="ignore"):
        lon_out = lon[np.isfinite(lon) & (np.abs(lon) > 180)]
    if lon_out.size and ((lon_out > 180) & (lon_out <= 360)).all():  # (as satclip.embed.xarray says for an axis)
        advice += " The longitudes over 180 look like [0, 360] ones: wrap them with lon = ((lon + 180) % 360) - 180."
    return advice


def coordinate_tensor(points, *, device=None) -> torch.Tensor:
    """``points`` as an ``(N, 2)`` tensor of numbers, neither converted nor checked for range (see
    :func:`as_lonlat`). What is no (N, 2) array of numbers — a DataFrame, text, booleans, complex numbers,
    (2, N) points, sparse, nested and meta tensors — raises ValueError saying what to pass; the masked entries
    of a numpy masked array become NaN (missing values, as pandas' NA)."""
    if hasattr(points, "columns") and hasattr(points, "iloc"):  # a DataFrame: its columns are named, not ordered
        raise BadInputError(
            "points is a DataFrame: pass frame[['lon', 'lat']].to_numpy() (longitude first), or use "
            "satclip.embed(frame, model=…), which finds the coordinate columns (rows come back in the frame's order)"
        )
    if hasattr(points, "to_frame") and hasattr(points, "iloc"):  # a Series: one column (it was "one point?")
        raise BadInputError(
            f"points is a pandas Series{'' if points.name is None else f' ({points.name!r})'}, one column: pass both "
            "coordinate columns, "
            "frame[['lon', 'lat']].to_numpy() (longitude first), or the frame to satclip.embed"
        )
    if is_xarray_dataset(points):  # (xarray's own error advised to_dataarray(): (variable, point), transposed)
        raise BadInputError(
            "points is an xarray Dataset: pass satclip.embed(dataset, model=…), which reads its lon and lat "
            "variables, or np.column_stack([dataset['lon'], dataset['lat']]) (longitude first)"
        )
    labelled = labelled_axis(points)
    if labelled is not None:  # (read by place, a ["lat", "lon"] dimension embedded swapped points)
        dim = points.dims[labelled[0]]
        raise BadInputError(
            f"points is an xarray DataArray whose dimension {dim!r} is labelled {labelled[1]}, and encode reads "
            f"columns by place: pass satclip.embed(points, model=…), which reads them by label, or "
            f"points.sel({dim}=[LON, LAT]) with your labels, longitude first"
        )
    if isinstance(points, Mapping):  # ("float() argument must be a string or a real number, not 'dict'")
        raise BadInputError(
            f"points is a {type(points).__name__} of columns ({', '.join(map(repr, list(points)[:4]))}): pass it to "
            "satclip.embed(points, model=…), which finds the coordinate columns, or "
            "np.column_stack([points['lon'], points['lat']]) (longitude first)"
        )
    names = getattr(getattr(points, "dtype", None), "names", None)
    if isinstance(points, np.ndarray) and names:  # (a structured array or recarray: "got [('lon', '<f8'), …]")
        raise BadInputError(
            f"points is a structured array of fields {', '.join(map(repr, names[:4]))}"
            f"{' …' if len(names) > 4 else ''}: pass it to satclip.embed(points, model=…), which finds the "
            "coordinate fields by name, or np.column_stack([points[LON_FIELD], points[LAT_FIELD]]) with its longitude "
            "and latitude fields"
        )
    if type(points).__module__.startswith("shapely"):  # (a MultiPoint: shapely's NotImplementedError)
        raise BadInputError(
            f"points is a shapely {type(points).__name__}: pass shapely.get_coordinates(points), its (x, y) as (N, 2) "
            "(lon, lat) if they are degrees, or geopandas.GeoSeries(shapely.get_parts(points), crs=CRS) to "
            "satclip.embed, which reprojects them"
        )
    if points is None:
        raise BadInputError("points is None: pass an (N, 2) array of (lon, lat) in degrees")
    if isinstance(points, (str, bytes, os.PathLike)):
        raise BadInputError(
            f"points is {str(points)[:80]!r}, text or a path, not coordinates: read the file first (e.g. "
            "pandas.read_csv) and pass the frame, or embed it with `satclip embed FILE -o OUT`"
        )
    if isinstance(points, torch.Tensor):
        _check_values_held(points)
    elif not hasattr(points, "__cuda_array_interface__"):
        points = number_array(points)
    tensor = torch.as_tensor(points, device=device)
    if tensor.numel() == 0 and tensor.ndim < 2:  # [] or np.array([]): no points
        tensor = tensor.reshape(0, 2)
    check_pairs(tensor)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise BadInputError(f"points must be numbers (lon, lat) in degrees, got {tensor.dtype}")
    if tensor.dtype in ROUNDING_DTYPES:  # (results moved by up to 0.06 / 0.18 from the float64 points': said once)
        name = str(tensor.dtype).removeprefix("torch.")
        warn_caller(f"points are {name}, which holds coordinates to steps of up to {ROUNDING_DTYPES[tensor.dtype]}° "
                    "(at 128–180°): they were rounded before satclip saw them; pass float32 or float64 coordinates")
    return tensor


#: 16-bit float dtypes → the spacing of their values between 128 and 256 (degrees a coordinate may be off by)
ROUNDING_DTYPES = {torch.float16: 0.125, torch.bfloat16: 1.0}


def is_xarray_dataset(points) -> bool:
    return hasattr(points, "data_vars") and hasattr(points, "coords")


def labelled_axis(points) -> tuple[int, list[str]] | None:
    """``(axis, labels)`` of a 2-D xarray DataArray's dimension of size 2 labelled with text (``coord=["lat",
    "lon"]``): which coordinate each column holds is its label's to say, not its place; else None."""
    dims = getattr(points, "dims", None)
    if dims is None or is_xarray_dataset(points) or len(dims) != 2:  # (a MultiPoint's .coords raises)
        return None
    coords = getattr(points, "coords", None)
    if coords is None:
        return None
    for axis, dim in enumerate(dims):
        if points.shape[axis] == 2 and dim in coords:
            labels = np.asarray(coords[dim].values)
            if labels.dtype.kind in "OUS":
                return axis, [str(label) for label in labels]
    return None


def _check_values_held(points: torch.Tensor) -> None:
    """Refuse tensors whose values are not held as one dense (N, 2) block, which torch's elementwise operations
    reject with errors that do not say what to pass: sparse and nested tensors, meta tensors (no values) and
    quantized ones (integers and a scale)."""
    if points.is_nested:
        raise BadInputError(
            f"points is a nested tensor (layout {points.layout}): pass one (N, 2) tensor of (lon, lat) in degrees, "
            "e.g. torch.cat(points.unbind()) where each piece is (n, 2)"
        )
    if points.layout != torch.strided:
        raise BadInputError(
            f"points is a sparse tensor (layout {points.layout}): pass points.to_dense(), an (N, 2) tensor of "
            "(lon, lat) in degrees"
        )
    if points.is_meta:
        raise BadInputError(
            f"points is a meta tensor (shape {tuple(points.shape)}): it has no values; pass a tensor on a device "
            "that holds the (lon, lat) coordinates (e.g. the CPU)"
        )
    if points.is_quantized:
        raise BadInputError(
            f"points is a quantized tensor (dtype {points.dtype}): pass points.dequantize(), an (N, 2) tensor of "
            "(lon, lat) in degrees (quantized coordinates are rounded to its scale)"
        )


def number_array(points, what: str = "points") -> np.ndarray:
    """``points`` (array-like: lists, numpy, xarray, anything with ``__array__``) as a numpy array of numbers
    that torch takes without a copy where it can: numbers held as Python objects (a frame's ``.values``; None and
    ``pd.NA`` missing) and long doubles as float64, masked entries as NaN, other byte orders as the native one,
    read-only arrays and arrays of negative strides (``a[::-1]``) copied (torch takes neither as it is). ``what``
    names the values in errors (``"points"``, ``"lon axis"``)."""
    degrees = "(lon, lat) in degrees" if what == "points" else "in degrees"
    odd = None
    try:
        array = np.ma.asarray(points) if isinstance(points, np.ma.MaskedArray) else np.asarray(points)
        if array.dtype.kind == "O" and (odd := _first_non_number(array)) is None:
            array = _object_numbers(array)
    except (TypeError, ValueError) as err:
        raise BadInputError(f"{what} must be numbers, an (N, 2) array of (lon, lat) in degrees ({err})"
                         if what == "points" else f"{what} must be numbers {degrees} ({err})") from None  # fmt: skip
    if odd is not None:  # (an array of Python objects: read by astype, True was 1 and "12.5" 12.5)
        index, value = odd
        raise BadInputError(f"{what} must be numbers {degrees}; entry {index} is {value!r} ({type(value).__name__})")
    if array.dtype.kind not in "iuf":  # booleans, complex numbers, text, dates
        raise BadInputError(f"{what} must be numbers {degrees}, got {array.dtype}")
    if isinstance(array, np.ma.MaskedArray):
        array = array.astype(np.float64).filled(np.nan)
    elif array.dtype.kind == "f" and array.dtype.itemsize > 8:  # longdouble, which torch does not take
        array = array.astype(np.float64)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array if array.flags.writeable and min(array.strides, default=0) >= 0 else array.copy()


#: what an array of Python objects may not hold where numbers are wanted (a typed array of them is refused)
_NOT_NUMBERS = (bool, np.bool_, str, bytes, complex, np.complexfloating)


def _first_non_number(array: np.ndarray) -> tuple[tuple[int, ...], object] | None:
    """The index and value of the first boolean, text or complex number in an array of Python objects (refused,
    as typed arrays of them are), or None."""
    for position, value in enumerate(array.ravel().tolist()):
        if isinstance(value, _NOT_NUMBERS):
            return tuple(int(i) for i in np.unravel_index(position, array.shape)), value
    return None


def _object_numbers(array: np.ndarray) -> np.ndarray:
    """An array of Python numbers, None and ``pd.NA`` as float64, the missing values NaN."""
    flat = [None if type(value).__name__ == "NAType" else value for value in array.ravel().tolist()]  # (pd.NA)
    return np.array(flat, dtype=np.float64).reshape(array.shape)


def as_lonlat(points, *, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Validate ``points`` and return them as a ``(N, 2)`` tensor of (lon, lat) degrees.

    Accepts anything ``np.asarray`` or ``torch.as_tensor`` understands (:func:`coordinate_tensor`). ``dtype``
    defaults to the input's floating dtype (float64 for integers). Read-only arrays (pandas' ``to_numpy()``
    under copy-on-write, memory-mapped files) are copied, never written.
    """
    tensor = coordinate_tensor(points, device=device)
    if dtype is None:
        dtype = tensor.dtype if tensor.is_floating_point() else torch.float64
    tensor = tensor.to(dtype)  # (before the range check: 180 does not fit an int8)
    check_in_range(tensor)
    return tensor


def check_in_range(tensor: torch.Tensor) -> None:
    """Raise :class:`InvalidPointsError` naming the rows of an ``(N, 2)`` tensor that are not finite (lon, lat)
    degrees in range."""
    lon, lat = tensor[:, 0], tensor[:, 1]
    ok = torch.isfinite(lon) & torch.isfinite(lat) & (lon.abs() <= 180) & (lat.abs() <= 90)
    if not bool(ok.all()):
        values = tensor.detach().to("cpu", torch.float64).numpy()
        bad = ~ok.cpu().numpy()
        raise InvalidPointsError(describe_invalid(values, bad), np.flatnonzero(bad))
