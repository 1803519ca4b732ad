"""Up-front checks of an S2-100K-style root, so that bad files are skipped before training, not mid-epoch.

A line of the index that is no row (too few fields, an empty file name) is reported as ``malformed`` by its
line number, and every other row is still checked. Each index row gets one status: ``ok`` or the first
problem found, in this order — a file name that leads outside ``images/`` (absolute or with ``..``; never
opened), a file listed by an earlier row already (``duplicate``: it would be trained on as two images), invalid
coordinates (shown as read, with their line of ``index.csv``), missing file, file under
10 kB (the original skips these as no-data), unreadable or truncated (``corrupt``), wrong band count, wrong
height × width, wrong data type. The default
check reads only the GeoTIFF header and checks that every image block the header points to lies inside
the file (which catches truncated downloads); ``full=True`` also decodes every pixel and reports an image
with NaN or infinite values, or one value everywhere (no data), as ``corrupt``.

Results can be cached per file (size + modification time) under ``$SATCLIP_CACHE/verify/`` (default
``~/.cache/satclip``; the dataset root is never written to), so that building the dataset a second time
only stats the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..encoding.points import great_circle_km, invalid_rows
from ..errors import BadInputError, SatclipError
from ..optional import require
from ..paths import cache_dir
from ..safe_output import write_text
from .index import S2Index, name_problem, read_index, repeated_rows

log = logging.getLogger(__name__)

OK = "ok"
#: problem status → description, in the order they are checked and reported
PROBLEMS: dict[str, str] = {
    "malformed": "malformed index line",
    "path": "file name outside images/",
    "duplicate": "file listed again",
    "coordinates": "invalid (lon, lat) in the index",
    "missing": "missing",
    "unreadable": "unreadable (permissions, a link loop)",
    "nodata": "no-data (file < min size)",
    "corrupt": "corrupt / truncated",
    "bands": "band count mismatch",
    "shape": "shape mismatch",
    "dtype": "dtype mismatch",
    "location": "georeferenced elsewhere than its index row",
}
#: km between a georeferenced image's centre and its index row's (lon, lat) beyond which they are not the same place
#: (an S2-100K patch is 2.56 km across; the fixture's agree to 10 m)
LOCATION_TOLERANCE_KM = 5.0
#: what a file in ``images/`` that no index row names is (listed, never a failure: it is neither checked nor used)
UNLISTED, UNLISTED_DETAIL = "unlisted", "not in the index (not checked, not used)"
#: results that are not kept for the next run: they change without the file's size or time changing (a chmod)
NOT_CACHED = ("missing", "unreadable")
#: files smaller than this are no-data patches, which the original skips
MIN_FILE_SIZE = 10_000
#: names of bad files shown per problem in logs and tables
SHOWN_NAMES = 3
_CACHE_VERSION = 3  # 2: full reads also refuse non-finite and constant images; 3: the centre is checked

Progress = Callable[[Iterable, int], Iterable]


@dataclass(frozen=True)
class CheckSpec:
    """What a good patch looks like: ``bands × height × width`` of ``dtype``, at least ``min_size`` bytes.

    ``dtype`` is any numeric NumPy dtype (``"uint16"``, ``"f4"``; kept as its name, ``"float32"``), or ``None``
    for no check.

    ``full=True`` also decodes all pixels (about 10× slower than the header check) and refuses images with
    NaN or infinite values or a single value everywhere.
    """

    bands: int = 12
    height: int = 256
    width: int = 256
    dtype: str | None = "uint16"
    min_size: int = MIN_FILE_SIZE
    full: bool = False

    def __post_init__(self) -> None:
        if self.dtype is not None:
            object.__setattr__(self, "dtype", dtype_name(self.dtype))

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def dtype_name(value: str) -> str:
    """The name rasterio gives a numeric NumPy dtype (``"f4"`` → ``"float32"``), to compare band types with.

    Raises:
        BadInputError: ``value`` is not a numeric NumPy dtype.
    """
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biufc":
        raise BadInputError(f"{value!r} is not a NumPy dtype (e.g. uint16, int16, float32)")
    return dtype.name


def _truncation(src, path: Path, size: int) -> str | None:
    """Describe the first image block that the header places beyond the end of the file, if any."""
    if src.driver != "GTiff":
        return None
    block_h, block_w = src.block_shapes[0]
    rows, cols = math.ceil(src.height / block_h), math.ceil(src.width / block_w)
    interleave = (src.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE") or "").upper()
    bands = range(1, src.count + 1) if interleave == "BAND" else (1,)
    for band in bands:
        for row in range(rows):
            for col in range(cols):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)
                length = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band)
                if offset is None or length is None:
                    continue
                end = int(offset) + int(length)
                if end > size:
                    return (
                        f"truncated: image block ({row}, {col}) of band {band} ends at byte {end} "
                        f"> file size {size}"
                    )
    return None


def pixel_problem(pixels: np.ndarray) -> str | None:
    """Why decoded pixels hold no image (NaN/inf values, or one value everywhere), or ``None``."""
    if pixels.size == 0:
        return "no pixels"
    if np.issubdtype(pixels.dtype, np.inexact):
        finite = np.isfinite(pixels)
        if not finite.all():
            bad = int(pixels.size - np.count_nonzero(finite))
            if bad == pixels.size:
                return "every pixel value is NaN or infinite"
            return f"{bad} of {pixels.size} pixel values are NaN or infinite"
    first = pixels.flat[0]
    if (pixels == first).all():
        return f"constant image: every pixel value is {first.item()!r} (no data)"
    return None


def check_file(path: str | Path, spec: CheckSpec = CheckSpec(), lonlat: tuple[float, float] | None = None
               ) -> tuple[str, str]:  # fmt: skip
    """``(status, detail)`` of one GeoTIFF: status ``"ok"`` or a key of :data:`PROBLEMS`. ``lonlat``: where its
    index row puts it, checked against its georeferenced centre (one without a CRS is not checked)."""
    rasterio = require("rasterio", "data", "reading Sentinel-2 GeoTIFFs")
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_file():
            with path.open("rb"):  # (rasterio's error for a file it may not read said "corrupt")
                pass
    except FileNotFoundError:
        return "missing", "not found"
    except OSError as err:
        return "unreadable", err.strerror or type(err).__name__
    if not path.is_file():
        return "missing", "not a regular file"
    if size < spec.min_size:
        return "nodata", f"{size} bytes < {spec.min_size}"
    try:
        with rasterio.open(path) as src:
            if src.count != spec.bands:
                return "bands", f"{src.count} bands, expected {spec.bands}"
            if (src.height, src.width) != (spec.height, spec.width):
                return "shape", f"{src.height}×{src.width}, expected {spec.height}×{spec.width}"
            if spec.dtype is not None and set(src.dtypes) != {spec.dtype}:
                return "dtype", f"{', '.join(sorted(set(src.dtypes)))}, expected {spec.dtype}"
            truncated = _truncation(src, path, size)
            if truncated:
                return "corrupt", truncated
            away = _km_from(src, lonlat) if lonlat is not None else None
            if away is not None and away > LOCATION_TOLERANCE_KM:  # (an image of another place was paired with it)
                return "location", f"its centre is {away:,.0f} km from the index's ({lonlat[0]:g}, {lonlat[1]:g})"
            if spec.full:
                problem = pixel_problem(src.read())
                if problem:
                    return "corrupt", problem
    except Exception as err:  # noqa: BLE001 - any failure to read the file makes it corrupt
        # (rasterio's "Read failed. See previous exception for details." named no reason: GDAL's is its cause)
        shown = err.__cause__ if err.__cause__ is not None and "previous exception" in str(err) else err
        return "corrupt", f"{type(shown).__name__}: {shown}".strip()
    return OK, ""


def _km_from(src, lonlat: tuple[float, float]) -> float | None:
    """km from an open GeoTIFF's centre to ``lonlat``, or None where it has no CRS (or a centre on Earth)."""
    from ..image.preprocess import raster_center_lonlat

    centre = raster_center_lonlat(src)
    return None if centre is None else float(great_circle_km(centre, lonlat))


@dataclass(frozen=True)
class VerifyReport:
    """Per-row results of :func:`verify_s2100k`; ``status[i]`` / ``details[i]`` belong to index row ``i``.
    ``malformed`` holds ``(line number, what is wrong)`` of the lines of ``index.csv`` that are no row (left out
    of ``index``; counted in ``total`` and as ``malformed`` problems)."""

    root: Path
    index: S2Index
    spec: CheckSpec
    status: tuple[str, ...]
    details: tuple[str, ...]
    malformed: tuple[tuple[int, str], ...] = ()
    #: files in ``images/`` (relative paths) the index does not list: not checked, not used (they were never
    #: mentioned: a file named with another case, or an index missing rows, went unnoticed)
    unlisted: tuple[str, ...] = ()

    @property
    def ok_mask(self) -> np.ndarray:
        """``(N,)`` bool: rows that are usable."""
        return np.array([s == OK for s in self.status], dtype=bool)

    @property
    def all_ok(self) -> bool:
        return not self.malformed and all(s == OK for s in self.status)

    def counts(self) -> dict[str, int]:
        """``{"total", "readable", <each problem>}`` → number of rows (zeros included)."""
        counts = {"total": len(self.status) + len(self.malformed), "readable": sum(s == OK for s in self.status)}
        counts.update({name: 0 for name in PROBLEMS})
        counts["malformed"] = len(self.malformed)
        for s in self.status:
            if s != OK:
                counts[s] += 1
        return counts

    def problems(self) -> dict[str, list[tuple[str, str]]]:
        """Problem status → ``[(file name, detail), ...]`` in index order (only problems that occur); a malformed
        line is named ``"line N"``."""
        found: dict[str, list[tuple[str, str]]] = {}
        if self.malformed:
            found["malformed"] = [(f"line {line}", problem) for line, problem in self.malformed]
        for name, s, detail in zip(self.index.filenames, self.status, self.details, strict=True):
            if s != OK:
                found.setdefault(s, []).append((name, detail))
        return {key: found[key] for key in PROBLEMS if key in found}

    def listing(self) -> list[tuple[str, str, str]]:
        """``(file name, problem, detail)`` of every problem (as :meth:`problems`), then of every file in ``images/``
        the index does not list (problem :data:`UNLISTED`), for ``verify --list``."""
        rows = [(name, problem, detail) for problem, items in self.problems().items() for name, detail in items]
        return rows + [(name, UNLISTED, UNLISTED_DETAIL) for name in self.unlisted]

    def summary(self, shown: int = SHOWN_NAMES) -> str:
        """One line: counts per problem and the first ``shown`` names of each."""
        counts = self.counts()
        if self.all_ok:
            return f"{counts['total']} files in {self.root}, all readable"
        parts = []
        for key, items in self.problems().items():
            names = ", ".join(name for name, _ in items[:shown]) + (", …" if len(items) > shown else "")
            parts.append(f"{len(items)} {PROBLEMS[key]} ({names})")
        usable = f"{counts['readable']}/{counts['total']} files in {self.root} usable"
        return f"{usable}; skipping " + "; ".join(parts)

    def table(self, shown: int = SHOWN_NAMES) -> str:
        """A plain-text table of the counts with the first ``shown`` bad names (and why) per problem."""
        counts = self.counts()
        problems = self.problems()
        labels = {"total": "total", "readable": "readable", **PROBLEMS}
        width = max(len(label) for label in labels.values())
        lines = [f"{self.root}  (index: {self.index.path.name}, layout {self.index.layout}, "
                 f"{'full read' if self.spec.full else 'header check'})"]
        for key, label in labels.items():
            lines.append(f"  {label:<{width}}  {counts[key]:>8}")
            for name, detail in problems.get(key, [])[:shown]:
                lines.append(f"  {'':<{width}}  {'':>8}  {name}" + (f"  ({detail})" if detail else ""))
            if len(problems.get(key, [])) > shown:
                lines.append(f"  {'':<{width}}  {'':>8}  … and {len(problems[key]) - shown} more")
        if self.unlisted:
            first = ", ".join(self.unlisted[:shown]) + (f", … and {len(self.unlisted) - shown} more"
                                                        if len(self.unlisted) > shown else "")  # fmt: skip
            lines.append(f"  {UNLISTED_DETAIL}: {len(self.unlisted)} file(s) in images/: {first}")
        return "\n".join(lines)


def _cache_file(root: Path, spec: CheckSpec) -> Path:
    """The cache file for ``root`` under the user cache (a dataset root is never written to)."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir("verify") / f"{digest}-{spec.key()}.json"


def _load_cache(root: Path, spec: CheckSpec) -> dict[str, list]:
    try:
        data = json.loads(_cache_file(root, spec).read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") == _CACHE_VERSION and data.get("spec") == asdict(spec):
        return data.get("files", {})
    return {}


def _save_cache(root: Path, spec: CheckSpec, files: dict[str, list]) -> None:
    payload = json.dumps(
        {"version": _CACHE_VERSION, "root": str(root.resolve()), "spec": asdict(spec), "files": files}
    )
    path = _cache_file(root, spec)
    try:
        write_text(path, payload)
    except (OSError, SatclipError) as err:
        log.debug("cannot write verification cache %s: %s", path, err)


def _line_of(index: S2Index, row: int) -> str:
    """Where row ``row`` of ``index`` is: its line of the file, or its row for an index not read from one."""
    return f"on line {int(index.lines[row])}" if index.lines is not None else f"in row {row}"


def coordinates_detail(index: S2Index, row: int) -> str:
    """The ``(lon, lat)`` of index row ``row`` as verification reports them: each value as the number read, or,
    where its text is no number (a NaN would hide it), the text quoted as read; after the row's line of the file
    (``"line 3: lon='abc' (not a number), lat=52.5"``)."""
    texts = index.unparsed.get(row, (None, None))
    shown = ", ".join(
        f"{name}={value}" if text is None else f"{name}={text!r} (not a number)"
        for name, value, text in zip(("lon", "lat"), index.lonlat[row].tolist(), texts, strict=True)
    )
    return shown if index.lines is None else f"line {int(index.lines[row])}: {shown}"


#: images to check from which opening a dataset says it checks them (≈ 7 ms a header: 7 s; a few dozen said it too,
#: a line before every cache build's one error line)
SAY_CHECKING_FROM = 1000


def verify_s2100k(
    root: str | Path,
    spec: CheckSpec = CheckSpec(),
    *,
    index: S2Index | None = None,
    workers: int = 1,
    use_cache: bool = False,
    write_cache: bool = False,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every row of ``ROOT/index.csv`` against ``ROOT/images/`` (see the module docstring).

    Args:
        root: directory holding ``index.csv`` and ``images/``.
        spec: what a good patch looks like (bands, size, dtype, minimum bytes, full read or header only).
        index: an already parsed index (default: read ``root/index.csv``, reporting its malformed lines).
        workers: threads for the file checks (GDAL releases the GIL while reading), 1 to
            :func:`satclip.machine.max_workers`.
        use_cache: reuse earlier results for files whose size and modification time are unchanged.
        write_cache: store the results for later ``use_cache`` runs (best effort, never fails).
        progress: optional wrapper ``progress(iterable, total)`` for a progress bar (the CLI passes tqdm).
    """
    from ..machine import MAX_WORKERS_RULE, max_workers

    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= max_workers():
        raise ValueError(f"workers={workers!r} must be an integer from 1 to {max_workers()} "
                         f"({MAX_WORKERS_RULE})")  # fmt: skip
    root = Path(root)
    malformed: list[tuple[int, str]] = []
    index = read_index(root / "index.csv", malformed=malformed) if index is None else index
    images = root / "images"
    if not images.is_dir():  # (every row was "missing: not found")
        raise BadInputError(f"{root} has no images/ folder: an S2-100K root holds index.csv and images/ with the "
                            "files it lists (`satclip data download` writes both)")  # fmt: skip
    bad_coordinates = invalid_rows(index.lonlat)
    earlier = repeated_rows(index.filenames)
    cached = _load_cache(root, spec) if use_cache else {}
    fresh: dict[str, list] = {}
    unchecked = len(set(index.filenames) - cached.keys())
    if progress is None and unchecked >= SAY_CHECKING_FROM:  # (100,000 headers took ~11 min without a word)
        log.info("checking %s of %d image(s) in %s (%d thread(s))%s", "every pixel" if spec.full else "the header",
                 unchecked, images, workers, "; later runs reuse the results" if write_cache else "")  # fmt: skip

    def check(row: int) -> tuple[str, str]:
        unsafe = name_problem(index.filenames[row])
        if unsafe:
            return "path", unsafe
        if earlier[row] >= 0:  # (it was read, cached and trained on as a second image)
            return "duplicate", f"its file is listed {_line_of(index, int(earlier[row]))} already"
        if bad_coordinates[row]:
            return "coordinates", coordinates_detail(index, row)
        name = index.filenames[row]
        path = images / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return "missing", "not found"
        except OSError as err:  # (a folder it may not search, a link loop: they were "not found")
            return "unreadable", err.strerror or type(err).__name__
        lonlat = (float(index.lonlat[row, 0]), float(index.lonlat[row, 1]))
        stamp = [stat.st_size, stat.st_mtime_ns, *lonlat]  # (the row's place too: an edited index is checked again)
        hit = cached.get(name)
        if hit is not None and hit[:4] == stamp:
            result = (hit[4], hit[5])
        else:
            result = check_file(path, spec, lonlat)
        if result[0] not in NOT_CACHED:
            fresh[name] = [*stamp, *result]
        return result

    from ..optional import gdal_warnings_as_debug

    rows: Iterable[int] = range(len(index))
    # (once, around the threads: a PNG named .tif printed rasterio's warning, a damaged TIFF GDAL's "CPLE_AppDefined
    # in patch_….tif: TIFFReadDirectoryCheckOrder…" amid the table, which reports each file's problem)
    with warnings.catch_warnings(), gdal_warnings_as_debug():
        warnings.simplefilter("ignore", require("rasterio", "data", "reading GeoTIFFs").errors.NotGeoreferencedWarning)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                results_iter = pool.map(check, rows)
                results = list(progress(results_iter, len(index)) if progress else results_iter)
        else:
            results = [check(row) for row in (progress(rows, len(index)) if progress else rows)]
    if write_cache:
        _save_cache(root, spec, fresh)
    report = VerifyReport(
        root=root,
        index=index,
        spec=spec,
        status=tuple(r[0] for r in results),
        details=tuple(r[1] for r in results),
        malformed=tuple(malformed),
        unlisted=_unlisted(images, index.filenames),
    )
    return report


def _unlisted(images: Path, listed: Iterable[str]) -> tuple[str, ...]:
    """The files under ``images`` (paths relative to it, sorted) that ``listed`` does not name."""
    names = {PurePosixPath(name).as_posix().removeprefix("./") for name in listed}
    found = []
    for folder, folders, files in os.walk(images):
        folders[:] = [name for name in folders if not name.startswith(".")]  # (satclip's temporaries, hidden ones)
        relative = Path(folder).relative_to(images)
        found += [(relative / name).as_posix() for name in files
                  if not name.startswith(".") and (relative / name).as_posix() not in names]  # fmt: skip
    return tuple(sorted(found))
