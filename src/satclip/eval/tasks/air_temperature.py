"""``air-temperature``: the SatCLIP paper's task — annual mean air temperature at 3,076 weather stations.

Data: ``stationDataAll.csv`` of Hooker, Duveiller & Cescatti (2018), "A global dataset of air temperature
derived from satellite remote sensing and weather stations", Scientific Data 5:180246 (figshare deposit
12609182), as redistributed in the SatCLIP repository (``figures/ssl4eo/stationDataAll.csv``). Columns used:
``Lon``, ``Lat`` and ``meanT`` (°C, 2003–2016 mean), the notebook's target.

Where the file comes from, in order: ``TaskOptions.data`` (``--data PATH``); the eval cache
(``$SATCLIP_CACHE/eval/downloads/stationDataAll.csv``); a download from :data:`URL`, checked against
:data:`SHA256` and kept in the cache (best effort: where the cache cannot keep it, one warning, and the
download serves the run from memory). Offline with neither, a :class:`~satclip.io.hub.DownloadError` (a
runtime failure, exit 1) says what to fetch and where to put it.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from ... import safe_output
from ...encoding.points import describe_invalid, invalid_rows
from ...errors import SatclipError
from ...io.hub import DownloadError
from ...paths import expand_user
from ..cache import cache_root, why_not_written
from .base import REGRESSION, TASKS, Task, TaskOptions, continent_labels, subsample

log = logging.getLogger(__name__)

FILENAME = "stationDataAll.csv"
URL = "https://raw.githubusercontent.com/microsoft/satclip/main/figures/ssl4eo/stationDataAll.csv"
SHA256 = "92d8456d82aafd3929ccba589e0ffe4ca15eeb321c07c430855d6756aaf07d33"
N_STATIONS = 3076
LON, LAT, TARGET = "Lon", "Lat", "meanT"
SOURCE = "Hooker et al. 2018 (Sci. Data 5:180246) station data, via the SatCLIP repository"

#: how the download is opened (tests replace it with a fake transport)
urlopen = urllib.request.urlopen
#: seconds the whole download may take (the table is ~300 kB): urlopen's timeout bounds each read of the socket
#: only, and a server sending a byte at a time held a run for ever
DOWNLOAD_DEADLINE = 300.0
#: bytes asked for per read (a read returns what has arrived, so the deadline is looked at as the bytes come)
_CHUNK = 1 << 16


def cached_path() -> Path:
    """Where a downloaded (or hand-placed) copy is looked for: ``$SATCLIP_CACHE/eval/downloads/``."""
    return cache_root() / "downloads" / FILENAME


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _offline_message(reason: str) -> str:
    return (
        f"air-temperature needs {FILENAME} (Hooker et al. 2018) and could not get it: {reason}. "
        f"Download {URL} (sha256 {SHA256}) and either pass it with --data PATH (in Python: "
        f"TaskOptions(data=PATH)) or save it as {cached_path()}; or leave air-temperature out of the tasks "
        f"(--tasks {','.join(_other_tasks())})"
    )


def _other_tasks() -> list[str]:
    """The registered tasks but this one, in the CLI's order: the ``--tasks`` value that leaves it out (the default
    ``all`` needs the download, and the fix was not given to paste)."""
    from . import names

    return [name for name in names() if name != "air-temperature"]


def download(url: str = URL, sha256: str = SHA256, timeout: float = 60.0) -> bytes:
    """Fetch the station table and check its sha256; returns its bytes, after keeping a copy at
    :func:`cached_path`. Keeping it only saves the next download: where the cache cannot (a full disk, a
    file-size limit, a read-only or missing cache area) that is one warning naming the file, and the bytes
    serve this run all the same."""
    try:
        with urlopen(url, timeout=timeout) as response:
            data = _read(response)
    # (HTTPException: a response cut short, IncompleteRead, was an "unexpected error … please report it")
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as err:
        raise DownloadError(_offline_message(f"downloading {url} failed ({err})")) from err
    actual = _sha256(data)
    if actual != sha256:
        raise DownloadError(
            f"downloaded {url} has sha256 {actual}, expected {sha256}: the file changed upstream or the "
            f"download is damaged; nothing was saved. Fetch it by hand and pass it with --data PATH"
        )
    path = cached_path()
    try:
        safe_output.write_bytes(path, data)
    except (OSError, SatclipError) as err:
        log.warning("could not keep the downloaded %s as %s (%s); using it for this run only (SATCLIP_CACHE=DIR "
                    "moves the cache, --data PATH reads a copy of your own)", FILENAME, path,
                    why_not_written(err, path))  # fmt: skip
    else:
        log.info("downloaded %s to %s", url, path)
    return data


def _read(response) -> bytes:
    """The body of ``response``, read within :data:`DOWNLOAD_DEADLINE` seconds.

    Raises:
        TimeoutError: the transfer ran past the deadline.
        http.client.IncompleteRead: the server closed the connection before the length it announced.
    """
    deadline = time.monotonic() + DOWNLOAD_DEADLINE
    parts = []
    while chunk := response.read1(_CHUNK):
        parts.append(chunk)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the transfer took more than {DOWNLOAD_DEADLINE:g} s")
    data = b"".join(parts)
    missing = getattr(response, "length", None)  # (an HTTP response's bytes still to come of its Content-Length)
    if missing:  # (read1, unlike read, returns what came without a word)
        raise http.client.IncompleteRead(data, missing)
    return data


def station_table(options: TaskOptions) -> tuple[bytes, str]:
    """The station table to read, as ``(its bytes, where they come from)``: the given file, the cached one, or a
    fresh download (:data:`URL`)."""
    if options.data is not None:
        path = expand_user(options.data)
        if not path.is_file():
            raise FileNotFoundError(f"--data {path}: no such file (expected {FILENAME} from {URL})")
        return path.read_bytes(), str(path)
    path = cached_path()
    if path.is_file():
        data = path.read_bytes()
        if _sha256(data) != SHA256:  # (a copy cut short was used "as given", and reported as the published table)
            raise DownloadError(
                f"{path} differs from the published {FILENAME} (sha256 {SHA256}): the copy is damaged or another "
                f"file; delete it to download it again (or save {URL} there), or pass --data {path} to use it as "
                "it is"
            )
        return data, str(path)
    if not options.allow_download:
        raise DownloadError(_offline_message("no local copy was given and downloading is disabled"))
    return download(), URL


def read_stations(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` float64 (lon, lat) and ``(N,)`` float64 ``meanT`` (°C) from a station table."""
    return parse_stations(Path(path).read_bytes(), str(path))


def parse_stations(data: bytes, path: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_stations` of a station table's bytes (``path``: where they come from, for messages)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); give the station table as "
                         "UTF-8 CSV") from err  # fmt: skip
    reader = csv.DictReader(io.StringIO(text))
    wanted = "give the air-temperature stations table (the SatCLIP repository's stationDataAll.csv)"
    if not reader.fieldnames:  # ("found None")
        raise ValueError(f"{path} is empty; {wanted}")
    missing = [c for c in (LON, LAT, TARGET) if c not in reader.fieldnames]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing} (found {reader.fieldnames}); {wanted}")
    rows = [(row[LON], row[LAT], row[TARGET]) for row in reader]
    try:
        values = np.array(rows, dtype=np.float64).reshape(-1, 3)
    except ValueError as err:
        raise ValueError(f"{path}: non-numeric {LON}/{LAT}/{TARGET} values ({err})") from err
    points, target = values[:, :2], values[:, 2]
    bad = invalid_rows(points)
    if bad.any():
        raise ValueError(f"{path}: {describe_invalid(points, bad)}")
    if _sha256(data) != SHA256:  # (once it is read: a table refused below was called "used as given" first)
        log.warning("%s differs from the published %s (sha256 %s); using it as given", path, FILENAME, SHA256)
    keep = np.isfinite(target)
    return points[keep], target[keep]


@TASKS.register("air-temperature")
def air_temperature(options: TaskOptions) -> Task:
    points, target = parse_stations(*station_table(options))
    sampled = len(points) > options.n_points
    index = subsample(len(points), options.n_points, options.seed)
    points, target = points[index], target[index]
    return Task(
        name="air-temperature", kind=REGRESSION, points=points, targets=target,
        continents=continent_labels(points, options.use_cache), target="annual mean air temperature (°C)",
        source=SOURCE, sampled=sampled,
    )  # fmt: skip
