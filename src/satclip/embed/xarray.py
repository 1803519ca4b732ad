"""Lazy embedding fields for xarray (the ``dask`` extra).

>>> import numpy as np
>>> from satclip.embed.xarray import embedding_field
>>> lon, lat = np.arange(-179.95, 180, 0.1), np.arange(89.95, -90, -0.1)      # a 0.1° grid's cell centres
>>> field = embedding_field("bluemarble-l10", lon, lat, where="land")
>>> field                                          # (lat: 1800, lon: 3600, dim: 256), nothing computed yet
>>> field.sel(lat=slice(55, 47), lon=slice(5, 15)).compute()      # only the chunks over central Europe
>>> field.to_zarr("land.zarr")                     # chunk by chunk, on whatever Dask scheduler is active

:func:`embedding_field` returns a Dask-backed ``xarray.DataArray`` ``(…, dim)``: each chunk of cells is
embedded when (and only when) it is computed, on the threaded scheduler or a ``distributed`` cluster (the
model enters the graph once, as one key; ``satclip map --engine dask`` ships it to each worker once, in a worker
plugin: :func:`satclip.embed.distributed.model_shipped`). Coordinates and attributes follow CF: ``lat``/``lon`` in
degrees_north/degrees_east; the model, its basis, dtype and the satclip version in the attributes.
``satclip map --engine dask`` writes the same field as ``satclip map`` does (:func:`write_map_zarr`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .. import safe_output
from ..encoding.points import MAX_REPORTED_ROWS, InvalidPointsError, invalid_rows, number_array, wrap_lon
from ..errors import BadInputError, OutputExistsError
from ..io.resolve import encoder_files
from ..optional import require
from .maps import DIM, DIM_ATTRS, GRID_MAPPING, LAT_ATTRS, LON_ATTRS, WGS84_GRID_MAPPING, model_attrs

log = logging.getLogger(__name__)

#: cells per chunk by default: 64 MiB of float32 embeddings at 256 dimensions
DEFAULT_CHUNK_CELLS = 1 << 16


class LandCells:
    """``where="land"``: cells whose centre is GSHHG land (not lake or ocean), the lookup of ``satclip map``."""

    description = "GSHHG land cells (lakes and ocean not computed)"

    def __call__(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        from . import maps

        if lon.shape[0] == 1 and lat.shape[1] == 1:  # a chunk of a regular grid: its two axes
            return maps.land_mask(_axes(lon, lat))
        from ..data.land import is_land

        return _by_point(lon, lat, is_land)


def _by_point(lon: np.ndarray, lat: np.ndarray, keep: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``keep(points)`` (``(N, 2)`` lon/lat → ``(N,)`` bool) for the cells of 2-D coordinates. A cell without
    finite coordinates is in no mask and is kept: computing it names it as invalid (or makes it NaN, skipping
    invalid cells) where the mask would have hidden it."""
    lon, lat = np.broadcast_arrays(lon, lat)
    points = np.column_stack([lon.reshape(-1), lat.reshape(-1)])
    return (keep(points) | ~np.isfinite(points).all(axis=1)).reshape(lon.shape)


class MapCells:
    """The cells ``satclip map`` computes: inside ``footprint`` (a :class:`satclip.models.provenance.Footprint`;
    None: everywhere), and land only with ``land_only`` (on a regular grid the same lookups as the map,
    chunk by chunk)."""

    def __init__(self, footprint=None, land_only: bool = False):
        self.footprint, self.land_only = footprint, land_only
        what = [] if footprint is None else [f"inside the training footprint ({footprint.describe()})"]
        self.description = " and ".join(what + (["GSHHG land"] if land_only else [])) or "every cell"

    def __call__(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        from . import maps

        if not (lon.shape[0] == 1 and lat.shape[1] == 1):  # 2-D coordinates: point by point
            return _by_point(lon, lat, self._keep)
        grid = _axes(lon, lat)
        land = maps.land_mask(grid) if self.land_only or self.footprint is not None else None
        mask = None if self.footprint is None else maps.footprint_mask(grid, self.footprint, land)
        if self.land_only:
            mask = land if mask is None else mask & land
        return np.ones((grid.height, grid.width), bool) if mask is None else mask


    def _keep(self, points: np.ndarray) -> np.ndarray:
        from ..data.land import is_land

        land = is_land(points) if self.land_only or self.footprint is not None else None
        keep = np.ones(len(points), bool) if self.footprint is None else self.footprint.contains(points, land)
        return keep & land if self.land_only else keep


def _axes(lon: np.ndarray, lat: np.ndarray):
    """A chunk of a regular grid as the ``lat``/``lon``/``height``/``width`` that :mod:`satclip.embed.maps` reads."""
    lon, lat = np.asarray(lon).reshape(-1), np.asarray(lat).reshape(-1)
    return types.SimpleNamespace(lon=lon, lat=lat, width=len(lon), height=len(lat))


def _where_mask(where: Callable, lon, lat, shape: tuple[int, ...]) -> np.ndarray:
    """What ``where(lon, lat)`` returns for a chunk, checked: booleans of the chunk's shape (a land fraction or
    None was cast to bool: every cell computed, or none)."""
    mask = where(lon, lat)
    dtype = np.bool_ if isinstance(mask, (bool, np.bool_)) else getattr(mask, "dtype", None)
    if dtype is None or np.dtype(dtype) != np.bool_:
        raise BadInputError(f"where: the function returned {type(mask).__name__}"
                            f"{f' of dtype {dtype}' if dtype is not None else ''}, not booleans: return True for "
                            "the cells to compute, e.g. `lambda lon, lat: is_land(lon, lat)`")  # fmt: skip
    try:
        return np.broadcast_to(np.asarray(mask), shape)
    except ValueError:
        raise BadInputError(f"where: the function returned shape {np.shape(mask)} for a chunk of {shape} cells: "
                            "return one value per (lon, lat) it is given (they broadcast to the chunk)") from None


def _embed_block(lat, lon, encoder, *mask, where, batch_size, skip_invalid, out_dtype, block_info=None):
    """``(h, w, D)`` embeddings of one chunk; cells outside the mask are NaN and not computed."""
    from .api import embed_lonlat
    from .distributed import model_of

    encoder = model_of(encoder)
    lat_b, lon_b = np.broadcast_arrays(np.asarray(lat, np.float64), np.asarray(lon, np.float64))
    shape = lat_b.shape
    keep = np.ones(shape, bool)
    if mask:
        keep &= np.asarray(mask[0], bool)
    if where is not None and keep.any():
        keep &= _where_mask(where, lon, lat, shape)
    out = np.full(shape + (encoder.embedding_dim,), np.nan, dtype=out_dtype)
    cells = np.argwhere(keep)
    points = np.column_stack([lon_b[keep], lat_b[keep]])
    bad = invalid_rows(points)
    if bad.any() and not skip_invalid:
        (r0, _), (c0, _) = block_info[None]["array-location"][:2] if block_info else ((0, 0), (0, 0))
        shown = ", ".join(
            f"cell ({r0 + i}, {c0 + j}): (lon={float(lon_b[i, j])!r}, lat={float(lat_b[i, j])!r})"
            for i, j in cells[bad][:MAX_REPORTED_ROWS]
        )
        wrap = _wrap_advice(points[bad, 0])
        raise InvalidPointsError(
            f"{int(bad.sum())} cell(s) with invalid coordinates: {shown}. Expected finite (lon, lat) degrees in "
            f"range (lon in [-180, 180], lat in [-90, 90]){wrap}; pass skip_invalid=True to leave them NaN, or "
            "mask them with where=",
            np.flatnonzero(bad),
        )
    if (~bad).any():
        good = cells[~bad]
        values = embed_lonlat(encoder, points[~bad], batch_size=batch_size).cpu().numpy()
        out[good[:, 0], good[:, 1]] = values
    return out


def _runs_across_180(lon: np.ndarray) -> bool:
    """Whether the 1-D lon axis ``lon`` runs east past 180° (170 … 190, as ``satclip map`` writes a map across the
    antimeridian, or 0 … 360): finite, strictly increasing, in [-180, 540) and less than 360° across, so that each
    longitude wrapped into [-180, 180) is another point."""
    return _east_past_180(lon) and lon[-1] - lon[0] < 360


def _east_past_180(lon: np.ndarray) -> bool:
    """Whether the 1-D lon axis ``lon`` is finite, strictly increasing, in [-180, 540) and past 180° at its end."""
    return bool(
        lon.size and np.isfinite(lon).all() and (np.diff(lon) > 0).all() and lon[0] >= -180 and lon[-1] < 540
        and lon[-1] > 180
    )


def _wrap_advice(lon: np.ndarray, axis: str | None = None) -> str:
    """How to wrap longitudes into [-180, 180) where those of ``lon`` out of range look like longitudes in
    [0, 360] (every finite one beyond ±180 lies in (180, 360]; ``""`` otherwise); with ``axis``, the name of
    a 1-D lon axis, also how to do it on an xarray Dataset (sorted, so the axis ascends again)."""
    with np.errstate(invalid="ignore"):
        out = lon[np.isfinite(lon) & (np.abs(lon) > 180)]
    if not out.size or not (out <= 360).all() or not (out > 180).all():
        return ""
    advice = "; the longitudes over 180 look like [0, 360] ones: wrap them with lon = ((lon + 180) % 360) - 180"
    if axis is not None:
        advice += f", on a Dataset ds.assign_coords({axis}=((ds.{axis} + 180) % 360) - 180).sortby({axis!r})"
    return advice


def _chunk_sizes(shape: tuple[int, int], chunks, dims: tuple[str, str], dim: int, dtype) -> tuple[int, int]:
    """Cells per chunk ``(rows, columns)`` of a grid of ``shape`` (along ``dims``) for ``chunks=`` (see
    :func:`embedding_field`). ``-1`` or ``None`` for a size is the whole axis (Dask's and xarray's convention;
    ``chunks=None`` itself is the default). ``"auto"`` is Dask's automatic chunking (``normalize_chunks``) of
    the output, ``(rows, columns, dim)`` of ``dtype`` with the embedding axis one chunk: chunks of up to Dask's
    ``array.chunk-size``.

    Raises:
        BadInputError: ``chunks`` is none of the forms above, or names a dimension the grid lacks.
    """
    height, width = shape
    if not height or not width:
        raise BadInputError(f"the grid has no cells ({height} × {width}): give each axis at least one coordinate")
    if chunks is None:
        cx = min(width, 1024)
        return min(height, max(1, DEFAULT_CHUNK_CELLS // cx)), cx
    spec = chunks
    if isinstance(chunks, dict):
        unknown = sorted(set(chunks) - set(dims), key=str)
        if unknown:
            raise BadInputError(
                f"chunks={chunks!r} names dimension(s) {unknown} the grid lacks; its dimensions are {list(dims)} "
                "(the embedding axis is always one chunk)"
            )
        spec = (chunks.get(dims[0], height), chunks.get(dims[1], width))
    elif not isinstance(chunks, (tuple, list)):
        spec = (chunks, chunks)
    if len(spec) != 2 or not all(_is_chunk_size(size) for size in spec):
        raise BadInputError(
            f"chunks={chunks!r}: give one positive int (the size along both axes), (rows, columns) or "
            f"{{{dims[0]!r}: rows, {dims[1]!r}: columns}}, with 'auto' (Dask's automatic chunking) or -1 or None "
            "(the whole axis) for any size"
        )
    spec = tuple(
        n if _whole_axis(size) else size if isinstance(size, str) else min(int(size), n)
        for size, n in zip(spec, shape, strict=True)
    )
    if any(isinstance(size, str) for size in spec):
        from dask.array.core import normalize_chunks

        auto = normalize_chunks((*spec, dim), (height, width, dim), dtype=dtype)
        spec = tuple(sizes[0] for sizes in auto[:2])
    return spec


def _is_chunk_size(size) -> bool:
    if isinstance(size, str):
        return size == "auto"
    return _whole_axis(size) or isinstance(size, numbers.Integral) and not isinstance(size, bool) and size >= 1


def _whole_axis(size) -> bool:
    """``-1`` or ``None`` as one axis's chunk size: the whole axis."""
    return size is None or isinstance(size, numbers.Integral) and not isinstance(size, bool) and size == -1


def _check_boolean(dtype) -> None:
    """Refuse a ``where=`` mask of another dtype than bool, read from its dtype (a Dask mask is not computed):
    taken as bool, every non-zero value (NaN included) would count as a cell to compute."""
    if getattr(dtype, "kind", None) != "b":
        raise BadInputError(
            f"where: the mask has dtype {dtype}, not bool (every non-zero value, NaN included, would count as "
            "a cell to compute): pass a boolean mask, e.g. lsm > 0.5 for a land fraction, or mask.notnull() for "
            "one that is NaN outside"
        )


def _mask_on_grid(mask, dims: tuple[str, str], grid_coords: dict):
    """An xarray ``mask`` in the grid's dimension order and, along each dimension both label, at the grid's
    labels (an ascending-latitude mask over a descending grid is flipped to it, not applied by position).

    Raises:
        BadInputError: the mask lacks one of the grid's dimensions, has others (e.g. ERA5's ``time``), or does
            not hold a label of the grid's.
    """
    missing = [dim for dim in dims if dim not in mask.dims]
    if missing:
        others = ", ".join(f"{dim!r}: …" for dim in mask.dims if dim not in dims)
        how = f"mask.rename({{{others}}}) to {missing}" if others else f"a mask along {missing} too"
        raise BadInputError(
            f"where: the mask has dimensions {tuple(mask.dims)}, the grid {dims}; name them alike, e.g. {how}, "
            "or pass a plain array in the grid's order"
        )
    extra = {dim: size for dim, size in mask.sizes.items() if dim not in dims}
    if extra:  # (never squeezed here: which time step is the mask is the caller's choice)
        first, size = next(iter(extra.items()))
        pick = f"{first}=" if isinstance(first, str) and first.isidentifier() else f"{{{first!r}: "
        end = "" if pick.endswith("=") else "}"
        how = f"mask.squeeze({first!r})" if size == 1 else f"mask.isel({pick}0{end}) or mask.sel({pick}…{end})"
        raise BadInputError(
            f"where: the mask has dimension(s) that the grid {dims} lacks: "
            f"{', '.join(f'{dim!r} (size {n})' for dim, n in extra.items())}; select one value along each "
            f"first, e.g. {how}"
        )
    mask = mask.transpose(*dims)
    for dim in dims:
        labels = getattr(grid_coords.get(dim), "values", None)
        if dim not in mask.indexes or labels is None or np.ndim(labels) != 1:
            continue
        if np.array_equal(mask.indexes[dim].values, labels):
            continue
        if not mask.indexes[dim].is_unique:  # (which of two cells labelled alike is meant is unknown)
            repeated = mask.indexes[dim][mask.indexes[dim].duplicated()]
            raise BadInputError(
                f"where: the mask's {dim} coordinate repeats values (first {_plain(repeated[0])}) and does not "
                f"equal the grid's {dim} values, so its cells cannot be matched by label; give it the grid's "
                "coordinates (or pass a plain array in the grid's order)"
            )
        try:
            mask = mask.sel({dim: labels})
        except KeyError:
            absent = labels[~np.isin(labels, mask.indexes[dim].values)]
            which = f" ({len(absent)} missing, first {_plain(absent[0])})" if len(absent) else ""
            raise BadInputError(
                f"where: the mask's {dim} coordinate does not hold the grid's {dim} values{which}; give it the "
                "grid's coordinates (or pass a plain array in the grid's order)"
            ) from None
    return mask


def embedding_field(
    model,
    lon,
    lat,
    *,
    chunks=None,
    where: str | Callable | object | None = None,
    skip_invalid: bool = False,
    batch_size: int | None = None,
    device=None,
    dtype=None,
    harmonics_calculation: str | None = None,
    trust_checkpoint: bool = False,
    precision: str | None = None,
    name: str = "embedding",
):
    """The embedding field of ``model`` over a grid of cells, as a lazy (Dask-backed) ``xarray.DataArray``.

    Args:
        model: a :class:`~satclip.LocationEncoder` or any source :func:`satclip.load` takes.
        lon, lat: degrees, either the 1-D axes of a regular grid (``(W,)`` and ``(H,)``: the field is
            ``(lat, lon, dim)``), or 2-D coordinate arrays of one shape ``(H, W)``, e.g. a reprojected
            raster's (the field is ``(y, x, dim)`` with ``lon``/``lat`` as auxiliary coordinates). numpy,
            Dask or xarray arrays; an xarray input lends its dimension names (and other coordinates). A 1-D
            ``lon`` axis may run east past 180° (strictly increasing, less than 360° across, in [-180, 540)):
            170 … 190 as ``satclip map`` writes a map across the antimeridian, or ERA5's 0 … 360; its cells are
            embedded at their longitudes wrapped into [-180, 180) (the map's values) and keep its coordinates.
        chunks: cells per chunk, ``(rows, columns)``, one int for both, or ``{dim: size}`` (a dimension
            not named is one chunk); ``-1`` or ``None`` in place of a size is the whole axis, and
            ``chunks=-1`` the whole grid in one chunk (Dask's convention; ``chunks=None`` itself is the
            default); ``"auto"``, for both axes or in place of one size, is Dask's automatic chunking of the
            output (chunks of up to Dask's ``array.chunk-size``, 128 MiB unless configured); default about
            65,536 cells (up to 1,024 columns), i.e. 64 MiB of float32 at 256 dimensions. The embedding axis
            is one chunk. Dask-backed 2-D coordinates keep their chunks unless given. Anything else (floats,
            ``0``, ``-2``, one size in a tuple) raises BadInputError.
        where: which cells to compute (the others are NaN, and chunks without any are never embedded):
            ``"land"`` (the GSHHG land mask of ``satclip map --land-only``), ``"footprint"`` (the model's
            training footprint, what ``satclip map`` computes by default: e.g. land north of 60°S for the
            shipped models), a boolean array of the grid's shape (numpy, Dask or xarray; dtype bool: a
            land fraction or a mask that is NaN outside is refused, pass ``lsm > 0.5`` or
            ``mask.notnull()``), or a callable ``f(lon, lat) -> bool array`` evaluated per chunk on arrays
            that broadcast to the chunk (``(h, 1)`` and ``(1, w)`` on a regular grid).
        skip_invalid: cells of 2-D coordinate arrays that are invalid (non-finite, out of range) are NaN
            instead of an error raised when their chunk is computed. 1-D axes are checked at once, whatever
            it says: an invalid value on an axis spoils a whole row or column, and is refused naming it.
        batch_size, device, dtype, harmonics_calculation, trust_checkpoint, precision: as
            :func:`satclip.embed` (the precision the chunks are computed in is recorded as the attribute
            ``satclip_precision``).
        name: the DataArray's name.

    Returns:
        ``xarray.DataArray`` of the model's dtype with dims ``(lat, lon, dim)`` or ``(y, x, dim)``.

    Raises:
        BadInputError (a ValueError): coordinates of other shapes or dimensions, out-of-range 1-D axes, a grid
            without cells; an unknown ``where``, a ``where`` mask that is not boolean, has another shape or
            other dimensions or labels than the grid's; ``chunks`` of another form.
        MissingExtraError: xarray or dask is not installed (``pip install 'satclip[dask]'``).
    """
    from ..models.location_encoder import model_identity

    xr = require("xarray", "dask", "lazy embedding fields")
    require("dask", "dask", "lazy embedding fields")
    darray = require("dask.array", "dask", "lazy embedding fields")
    from .api import check_options, load_encoder
    from .distributed import model_in_graph

    check_options(batch_size, skip_invalid=skip_invalid)
    encoder = load_encoder(
        model, device=device, dtype=dtype, harmonics_calculation=harmonics_calculation,
        trust_checkpoint=trust_checkpoint, precision=precision,
    )  # fmt: skip
    out_dtype = np.dtype(str(encoder.dtype).removeprefix("torch."))
    embedding_dim = encoder.embedding_dim
    if hasattr(lon, "dims") and hasattr(lat, "dims") and np.ndim(lon) == np.ndim(lat) == 2 and lat.dims != lon.dims:
        if set(lat.dims) != set(lon.dims):
            rename = ", ".join(f"{a!r}: {b!r}" for a, b in zip(lat.dims, lon.dims, strict=True) if a != b)
            raise BadInputError(
                f"lon has dims {lon.dims} and lat {lat.dims}: 2-D coordinates must share their dimensions; name "
                f"them alike, e.g. lat.rename({{{rename}}}) if its axes are lon's in the same order"
            )
        lat = lat.transpose(*lon.dims)  # (paired by dimension name, not by position)
    # (an xarray object's values; a numpy array's .data is a memoryview of its buffer)
    lon_data, lat_data = (c.data if hasattr(c, "dims") else c for c in (lon, lat))
    extra_coords = {}
    if np.ndim(lon_data) == 1 and np.ndim(lat_data) == 1:
        dims = (getattr(lat, "dims", ("lat",))[0], getattr(lon, "dims", ("lon",))[0])
        if dims[0] == dims[1]:
            raise BadInputError(
                f"lon and lat both run along {dims[0]!r}: they are points, not the axes of a grid; embed points "
                "with satclip.embed (a field needs a lat axis and a lon axis, or 2-D coordinates)"
            )
        lat_axis, lon_axis = (number_array(data, f"{axis} axis").astype(np.float64)
                              for data, axis in ((lat_data, "lat"), (lon_data, "lon")))  # fmt: skip
        # the points embedded: an axis across the antimeridian (a map's) at its longitudes wrapped, as the map's
        lon_points = wrap_lon(lon_axis) if _runs_across_180(lon_axis) else lon_axis
        for axis, values, limit in (("lon", lon_points, 180), ("lat", lat_axis, 90)):
            bad = ~np.isfinite(values) | (np.abs(values) > limit)
            if bad.any():
                name = getattr(lon, "name", None)
                wrap = _wrap_advice(values[bad], name if isinstance(name, str) and name.isidentifier() else None)
                first = f"first at index {int(np.flatnonzero(bad)[0])}: {float(values[bad][0])!r}"
                if axis == "lon" and _east_past_180(values):  # refused for its span alone: said so
                    raise BadInputError(
                        f"lon axis: {int(bad.sum())} value(s) past 180°, {first}, on an axis {float(values[0])!r} … "
                        f"{float(values[-1])!r}, {float(values[-1] - values[0])!r}° across: an axis runs east past "
                        "180° only less than 360° across (its longitudes wrapped would repeat): cut it to less "
                        "than 360°"
                    )  # (no wrap advice: wrapped, such an axis repeats longitudes, which is why it is refused)
                raise BadInputError(
                    f"{axis} axis: {int(bad.sum())} value(s) not finite degrees in [-{limit}, {limit}], {first}"
                    f"{wrap if axis == 'lon' else ''}"
                )
        shape = (len(lat_axis), len(lon_axis))
        cy, cx = _chunk_sizes(shape, chunks, dims, embedding_dim, out_dtype)
        lat_d = darray.from_array(lat_axis[:, None], chunks=(cy, 1))
        lon_d = darray.from_array(lon_points[None, :], chunks=(1, cx))
        # an axis that is its dimension's own coordinate (lat along lat, ERA5's latitude along latitude) indexes
        # the grid under that name; along other dimensions (a projected raster's y/x) lat/lon are auxiliary
        # coordinates and the input's own coordinates of those dimensions are kept
        coords = {}
        indexed = []
        for axis, dim, values, cf, letter in ((lat, dims[0], lat_axis, LAT_ATTRS, "Y"),
                                              (lon, dims[1], lon_axis, LON_ATTRS, "X")):  # fmt: skip
            index = dim in ("lat", "lon") or getattr(axis, "name", None) == dim
            key = dim if index else ("lat" if letter == "Y" else "lon")
            coords[key] = xr.Variable(dim, values, {**cf, "axis": letter} if index else cf)
            indexed.append(index)
        if all(indexed):  # a lon/lat grid: its CRS (along a projected raster's y/x it is the raster's)
            coords[GRID_MAPPING] = xr.Variable((), np.int32(0), WGS84_GRID_MAPPING)
        extra_coords = {k: v for k, v in _other_coords((lon, lat), dims).items() if k not in coords}
    elif np.ndim(lon_data) == 2 and np.shape(lon_data) == np.shape(lat_data):
        dims = tuple(getattr(lon, "dims", ("y", "x")))
        shape = tuple(np.shape(lon_data))
        given = chunks is None and hasattr(lon_data, "chunks")
        for data, axis in ((lon_data, "lon"), (lat_data, "lat")):
            dtype = np.dtype(data.dtype if hasattr(data, "dtype") else np.asarray(data).dtype)
            if dtype.kind not in "iuf":  # (booleans, text and dates were read as degrees; objects failed in dask)
                raise BadInputError(f"{axis} must be numbers in degrees, got {dtype}: pass {axis}.astype(float) if "
                                    "its values are numbers")  # fmt: skip
        lon_d = darray.asarray(lon_data).astype(np.float64)
        lat_d = darray.asarray(lat_data).astype(np.float64)
        if given:
            lat_d = lat_d.rechunk(lon_d.chunks)
        else:
            size = _chunk_sizes(shape, chunks, dims, embedding_dim, out_dtype)
            lon_d, lat_d = lon_d.rechunk(size), lat_d.rechunk(size)
        coords = {"lon": xr.Variable(dims, lon_d, LON_ATTRS), "lat": xr.Variable(dims, lat_d, LAT_ATTRS)}
        extra_coords = _other_coords((lon, lat), dims)
    else:
        raise BadInputError(
            f"lon and lat must be the 1-D axes of a regular grid or 2-D arrays of one shape, got shapes "
            f"{np.shape(lon_data)} and {np.shape(lat_data)}: pass both axes (lon (W,), lat (H,)), or both 2-D "
            "(np.meshgrid(lon, lat) makes them from the axes)"
        )

    arrays = [lat_d, lon_d]
    where_fn, description = None, "every cell"
    if isinstance(where, str):
        if where not in ("land", "footprint"):
            raise BadInputError(
                f"where={where!r}: use 'land', 'footprint', a boolean array of the grid's shape, or a callable"
            )
        if where == "land":
            where_fn = LandCells()
        else:
            from ..models.provenance import training_footprint

            where_fn = MapCells(training_footprint(encoder))
        description = where_fn.description
    elif callable(where):
        where_fn = where
        description = getattr(where, "description", f"cells where {getattr(where, '__name__', 'a callable')} holds")
    elif where is not None:
        if getattr(where, "dtype", None) is None:  # a list: numpy's dtype (xarray and Dask masks keep theirs)
            where = np.asarray(where)
        _check_boolean(where.dtype)
        if hasattr(where, "dims") and hasattr(where, "transpose"):
            where = _mask_on_grid(where, dims, {**extra_coords, **coords})
        mask = darray.asarray(getattr(where, "data", where)).astype(bool)
        if mask.shape != shape:
            raise BadInputError(
                f"where: a mask of shape {mask.shape} for a grid of shape {shape} {dims}: "
                f"{_mask_shape_advice(mask.shape, shape, dims)}"
            )
        arrays.append(mask.rechunk(darray.core.broadcast_chunks(lat_d.chunks, lon_d.chunks)))
        description = "cells of the given mask"

    identity = model_identity(encoder)
    model_description = model_attrs(encoder, identity, model)
    encoder_key = model_in_graph(encoder)
    out_chunks = darray.core.broadcast_chunks(lat_d.chunks, lon_d.chunks) + ((embedding_dim,),)
    data = darray.map_blocks(
        _embed_block, arrays[0], arrays[1], encoder_key, *arrays[2:], where=where_fn, batch_size=batch_size,
        skip_invalid=skip_invalid, out_dtype=out_dtype, dtype=out_dtype, new_axis=2, chunks=out_chunks,
        meta=np.empty((0, 0, 0), out_dtype),
    )  # fmt: skip
    coords[DIM] = xr.Variable(DIM, np.arange(embedding_dim, dtype=np.int32), DIM_ATTRS)
    attrs = {**model_description, "satclip_cells": description}
    if GRID_MAPPING in coords:
        attrs["grid_mapping"] = GRID_MAPPING
    field = xr.DataArray(data, dims=(*dims, DIM), coords=coords, name=name, attrs=attrs)
    return field.assign_coords(extra_coords) if extra_coords else field


def _plain(value) -> str:
    """A label as the user wrote it: ``89.0``, not ``np.float64(89.0)``."""
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        value = value.item()
    return repr(value)


def _mask_shape_advice(shape: tuple[int, ...], grid: tuple[int, int], dims: tuple[str, str]) -> str:
    """How to make a ``where=`` array of ``shape`` fit a grid of shape ``grid`` along ``dims``: squeeze or select
    along the axes it has beyond the grid's, transpose it where its axes are swapped."""
    if any(np.isnan(size) for size in shape):  # a Dask array of chunks of unknown size (e.g. boolean-indexed)
        return "its shape is unknown to Dask: give it known chunks first, mask.compute_chunk_sizes()"
    for order, swapped in ((grid, False), (grid[::-1], True)):
        kept, rest = [], list(order)
        for size in shape:  # the grid's sizes in order, the other axes extra (the first such reading)
            kept.append(bool(rest) and size == rest[0])
            if kept[-1]:
                rest.pop(0)
        extra = [(axis, size) for axis, (size, keep) in enumerate(zip(shape, kept, strict=True)) if not keep]
        if rest or not (extra or swapped):
            continue
        what = " and ".join(f"{axis} (size {size})" for axis, size in extra)
        what = [f"it has the extra {'axes' if len(extra) > 1 else 'axis'} {what}"] if extra else []
        if swapped:
            what.append(f"its axes are swapped ({dims[1]}, {dims[0]})")
        index = [":" if keep else "0" for keep in kept]
        while index and index[-1] == ":":  # (mask[0], not mask[0, :, :])
            index.pop()
        select = f"mask[{', '.join(index)}]" if extra else "mask"
        fix = select + (".T" if swapped else "")
        if extra and all(size == 1 for _, size in extra):
            axes = extra[0][0] if len(extra) == 1 else tuple(axis for axis, _ in extra)
            squeeze = f"mask.squeeze(axis={axes})" + (".T" if swapped else "")
            how = f"squeeze it: {squeeze} (or {fix})"
        elif extra:
            how = f"select one value along {'it' if len(extra) == 1 else 'each'}, e.g. {fix}"
        else:
            how = f"transpose it: {fix}"
        return f"{' and '.join(what)}; {how}"
    if len(shape) != 2 and int(np.prod(shape)) == grid[0] * grid[1]:
        return f"if it holds the grid's cells row by row, reshape it: mask.reshape{grid}"
    return f"give a boolean array of the grid's shape {grid} ({dims[0]}, {dims[1]})"


def _other_coords(sources, dims) -> dict:
    """The coordinates of xarray ``sources`` (lon, lat) other than lon/lat that lie along ``dims``: what the
    field keeps of its input (e.g. a raster's projected x/y), so that it aligns with the input's dataset."""
    found = {}
    for source in sources:
        for key, coord in getattr(source, "coords", {}).items():
            if key not in ("lon", "lat") and set(coord.dims) <= set(dims):
                found[key] = coord
    return found


@contextlib.contextmanager
def _workers_died(output: Path) -> Iterator[None]:
    """:class:`~satclip.embed.cluster.ClusterError` for a field whose chunk ended every Dask worker that ran it (it
    was "unexpected error (KilledWorker) … please report it")."""
    from .cluster import ClusterError

    distributed = require("distributed", "dask", "satclip map --engine dask")
    try:
        yield
    except distributed.KilledWorker as err:
        raise ClusterError(
            f"a chunk of {output} ended every Dask worker that ran it (out of memory, or killed from outside?): give "
            "the workers more memory (`dask worker --memory-limit`, or fewer --workers on this machine) and run again"
        ) from err


def write_map_zarr(
    encoder,
    output: str | Path,
    *,
    resolution: float,
    bbox: tuple[float, float, float, float] | None = None,
    land_only: bool = False,
    blank_unseen: bool = True,
    footprint=None,
    batch_size: int | None = None,
    overwrite: bool = False,
    force: bool = False,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    restart: bool = False,
) -> Path:
    """``satclip map --engine dask``: the Zarr map of :func:`satclip.embed.maps.render_map` (the same cells,
    values, coordinates and attributes: ``embedding`` ``(dim, lat, lon)`` float32, float64 in precision float64),
    computed chunk by chunk
    on a Dask cluster (``client``, the scheduler at ``scheduler``, or a ``LocalCluster`` of ``workers``
    processes started here) and written atomically. Chunks: rows of about 65,536 cells. The unfinished work of
    a local ``satclip map`` into ``output`` (``OUTPUT.partial/``) is kept, and the map refused, unless ``restart``
    discards it."""
    from ..models.precision import for_encoder as precision_of
    from ..models.provenance import training_footprint
    from . import maps
    from .cluster import dask_client
    from .distributed import model_shipped

    xr = require("xarray", "dask", "satclip map --engine dask")
    output = Path(output).absolute()  # (workers write its chunks: a remote one's directory is not this one's)
    maps.map_format(output, "zarr")  # (a Zarr store named .tif was written)
    grid = maps.make_grid(resolution, bbox)
    maps.warn_about_box(grid, bbox)  # (said by the local engine only)
    maps.check_size(grid, encoder, "zarr", force, pca=False)  # (--engine dask refuses --pca)
    maps.check_map_output(output, "zarr", overwrite=overwrite, inputs=encoder_files(encoder))
    if blank_unseen:
        footprint = footprint or training_footprint(encoder)
        log.info("cells outside the training footprint (%s; %s) are left blank; --all computes them",
                 footprint.describe(), footprint.origin)  # fmt: skip
    cells = MapCells(footprint if blank_unseen else None, land_only)
    rows = max(1, min(grid.height, DEFAULT_CHUNK_CELLS // grid.width))
    if (blank_unseen or land_only) and not any(
        cells(grid.wrapped_lon[None, :], grid.lat[r : r + rows, None]).any() for r in range(0, grid.height, rows)
    ):  # (stops at the first chunk with a cell to compute)
        maps.warn_no_cells(grid.height * grid.width)
    chunks = maps.zarr_chunks(encoder.embedding_dim, grid.height, grid.width)
    # (Dask's chunks are whole Zarr chunks, of DEFAULT_CHUNK_CELLS cells: 256 × 256 at 256 dimensions)
    side = math.isqrt(DEFAULT_CHUNK_CELLS)
    tile = tuple(min(n, max(z, side // z * z)) for n, z in zip((grid.height, grid.width), chunks[1:], strict=True))

    def mapped():
        """The map as a lazy Dataset, made within :func:`~satclip.embed.distributed.model_shipped` (its graph
        carries the model by name)."""
        # (the map's longitudes: 170 … 190 across the antimeridian, embedded wrapped)
        field = embedding_field(encoder, grid.lon, grid.lat, chunks=tile, where=cells, batch_size=batch_size)
        embedding = field.astype(maps.map_dtype(precision_of(encoder))).transpose(DIM, "lat", "lon")
        embedding.attrs = field.attrs
        attrs = maps.map_attrs(resolution, grid, land_only, footprint if blank_unseen else None,
                               maps.map_precision(encoder))  # fmt: skip
        bounds = {name: ((name.removesuffix("_bnds"), maps.BOUNDS_DIM), edges)
                  for name, edges in maps.cell_bounds(grid).items()}  # fmt: skip
        dataset = xr.Dataset({"embedding": embedding, **bounds}, attrs=maps.zarr_group_attrs(attrs, field.attrs))
        for name in ("lat", "lon"):  # (the Dataset's own copies: the field's coordinates keep their attributes)
            dataset[name].attrs = {**dataset[name].attrs, "bounds": f"{name}_bnds"}
        return dataset

    encoding = {"embedding": {"chunks": chunks}}
    with safe_output.exclusive(output):
        _local_work_kept(output, restart)  # (under the lock: not the work of a local run writing it now)
        tasks = -(-grid.height // tile[0]) * -(-grid.width // tile[1])
        log.info("embedding %d × %d grid cells at %g° on Dask (%d chunk%s)", grid.height, grid.width, resolution,
                 tasks, "s" * (tasks != 1))  # fmt: skip
        with safe_output.atomic_dir(output, overwrite=overwrite) as tmp, _workers_died(output), \
                contextlib.nullcontext(client) if client is not None else dask_client(scheduler, workers) as active, \
                active.as_current(), model_shipped(active, encoder):  # fmt: skip
            mapped().to_zarr(tmp, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    return output


def _local_work_kept(output: Path, restart: bool) -> None:
    """Refuse to start while ``OUTPUT.partial/`` holds the work of an unfinished local ``satclip map`` into
    ``output`` (it was removed once the Dask map was written, whatever grid it was for), unless ``restart``
    discards it; work with nothing done (:func:`~satclip.embed.job.nothing_done`: a run killed before its first
    block; or no record at all, killed as it began) is discarded, as a local run of another map discards it."""
    from .job import MANIFEST, ResumeMismatchError, nothing_done, work_dir, work_manifest

    workdir = work_dir(output)
    if not workdir.exists():
        return
    if not safe_output.is_owned(workdir):
        raise OutputExistsError(
            f"{workdir}, where satclip map keeps its unfinished work, is a directory satclip did not create: move or "
            "remove it, or choose another output path"
        )
    recorded = (workdir / MANIFEST).is_file()
    if not restart and recorded and not nothing_done(work_manifest(workdir)):
        raise ResumeMismatchError(
            f"{workdir} holds the work of an unfinished local run of {output}: rerun it without --engine dask to "
            "resume it, or pass --restart to discard it"
        )
    why = "--restart" if restart else "it had done nothing"
    log.info("removing %s, the work of an unfinished local run of %s (%s)", workdir, output, why)
    safe_output.remove_owned(workdir)
