"""``satclip map`` when it cannot go ahead: a resolution coarser than the area, a full disk under GeoTIFF or Zarr.
Each is one ``satclip: error: …`` line with the right exit status, nothing from GDAL, libtiff or asyncio around it,
and no temporary left behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import satclip
from satclip import safe_output
from satclip.cli import main
from satclip.io.native import write_native

from .test_embed_api import CONFIG

DISK_FULL = "satclip: error: disk full while writing {where}: free space or choose another output"
#: what a failed run whose finished blocks a rerun resumes adds (its work folder was left unnamed)
KEPT = " (the work done so far is kept in {work})"


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(CONFIG)
    state = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    return write_native(tmp_path / "model", {"location_encoder": CONFIG}, state)


@pytest.mark.parametrize(
    ("extent", "expected"),
    [
        ([], "resolution 500° is coarser than the whole globe (360° × 180°): use a resolution of at most 180°"),
        (["--bbox", "0", "40", "4", "50"],
         "resolution 500° is coarser than the bbox 0 40 4 50 (4° × 10°): use a resolution of at most 4°"),
    ],
)  # fmt: skip
def test_a_resolution_coarser_than_the_area_names_the_area_and_the_limit(tmp_path, capsys, extent, expected):
    out = tmp_path / "m.png"
    assert main(["map", "--model", "bluemarble-l10", "--resolution", "500", *extent, "-o", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"satclip: error: {expected}"]
    assert not out.exists()


@pytest.mark.parametrize(("bbox", "edges"), [("180 0 -180 10", "west 180 and east -180"),
                                            ("10 10 10 20", "west 10 and east 10")])  # fmt: skip
def test_a_bbox_0_degrees_wide_says_so_and_what_the_globe_is(tmp_path, capsys, bbox, edges):
    """`--bbox 180 0 -180 10` said "coarser than the bbox 180 0 180 10 (0° × 10°): use a resolution of at most 0°",
    and `10 10 10 20` the generic "must be (west, south, east, north) …", neither that the box has no width."""
    out = tmp_path / "w0.tif"
    assert main(["map", "--model", "bluemarble-l10", "--resolution", "1", "--bbox", *bbox.split(), "-o", str(out)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("satclip: error: bbox (") and "\n" not in line
    assert line.endswith(f"{edges} are the same meridian, a box 0° wide; give an east edge east of the west one "
                         "(the whole globe: west -180, east 180)")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["map", "--model", "bluemarble-l10", "--resolution", "1e-30", "--force", "-o", "OUT/m.tif"],
      "satclip maps at most 1,000,000,000,000 cells: use a coarser --resolution or a smaller --bbox"),
     (["map", "--model", "bluemarble-l10", "--resolution", "1e-308", "-o", "OUT/m.tif"],  # (cells: inf)
      "satclip maps at most 1,000,000,000,000 cells: use a coarser --resolution or a smaller --bbox"),
     (["map", "--model", "bluemarble-l10", "--resolution", "1e-200", "-o", "OUT/m.tif"],  # (not 203 digits)
      "resolution 1e-200° makes 1.8e+202 × 3.6e+202 cells; satclip maps at most"),
     (["data", "bluemarble", "--patch-size", "100000", "--out", "OUT/c"], "--patch-size must be 1 to 512 pixels"),
     (["data", "bluemarble", "--n", "99999999999999", "--out", "OUT/c"],
      "99,999,999,999,999 patches of 32 px would be 286,102,295 GiB of pixels; satclip builds corpora up to 64 GiB")],
)  # fmt: skip
def test_sizes_no_machine_holds_are_bad_input(tmp_path, capsys, argv, expected):
    """They ended in "Maximum allowed size exceeded" (naming nothing), or a MemoryError reported as a bug, or
    sampling without end."""
    assert main([arg.replace("OUT", str(tmp_path)) for arg in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("satclip: error: ") and expected in err and "\n" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_geotiff_on_a_full_disk(tmp_path, model, monkeypatch, capfd):
    """The GeoTIFF's temporary is /dev/full, where every write fails with ENOSPC, as on a full disk: libtiff
    printed "_tiffWriteProc: No space left on device." and GDAL raised "Write failed" (exit 2)."""
    pytest.importorskip("rasterio")
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    temporary = safe_output.temp_path

    def full_disk_temporary(path):
        tmp = temporary(path)
        if Path(path).name == "m.tif":  # the GeoTIFF's (the field in m.tif.partial/ has room)
            tmp.symlink_to("/dev/full")
        return tmp

    monkeypatch.setattr(safe_output, "temp_path", full_disk_temporary)
    out = tmp_path / "m.tif"
    assert main(["map", "--model", str(model), "--resolution", "2", "--all", "-o", str(out)]) == 1
    lines = capfd.readouterr().err.splitlines()
    assert lines[-1] == DISK_FULL.format(where=out) + KEPT.format(work=f"{out}.partial"), lines
    assert not [line for line in lines if "_tiff" in line or "Write failed" in line], lines
    # the temporary is gone, nothing published; the computed field is kept for the rerun
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif.partial", "model"]
    monkeypatch.setattr(safe_output, "temp_path", temporary)
    assert main(["map", "--model", str(model), "--resolution", "2", "--all", "-o", str(out)]) == 0
    assert "resuming" in capfd.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "model"]


#: ``satclip map`` in a fresh interpreter whose Zarr chunk writes fail with ENOSPC, as on a full disk; zarr's
#: asyncio tasks printed their tracebacks when the interpreter exited, so the check needs a process of its own
ZARR_ON_A_FULL_DISK = textwrap.dedent(
    """
    import errno, os, sys

    import zarr.storage

    from satclip.cli import main

    write = zarr.storage.LocalStore.set

    async def full_disk(self, key, value, *args, **kwargs):
        if key.startswith("embedding/") and not key.endswith((".zarray", ".zattrs")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return await write(self, key, value, *args, **kwargs)

    zarr.storage.LocalStore.set = full_disk
    sys.exit(main(sys.argv[1:]))
    """
)


def test_zarr_on_a_full_disk(tmp_path):
    pytest.importorskip("zarr")
    out = tmp_path / "m.zarr"
    argv = ["map", "--model", "bluemarble-l10", "--resolution", "2", "--all", "-o", str(out)]  # 256 chunks to write
    done = subprocess.run([sys.executable, "-c", ZARR_ON_A_FULL_DISK, *argv], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    # (zarr's OSError names no file)
    assert lines[-1] == DISK_FULL.format(where=out) + KEPT.format(work=f"{out}.partial"), done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Task was destroyed" not in done.stderr, done.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["m.zarr.partial"]  # no temporary, nothing published: the field


def test_a_field_without_room_fails_before_the_work(tmp_path, model, monkeypatch, capsys):
    """The field kept for resuming is allocated first: a full disk is one line naming it, before any cell is
    embedded (not a SIGBUS in its memory map), and nothing is left behind."""
    import errno
    import os

    from satclip.embed import maps

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    monkeypatch.setattr(maps, "embed_lonlat", lambda *a, **k: pytest.fail("embedded before the field had room"))
    out = tmp_path / "m.tif"
    assert main(["map", "--model", str(model), "--resolution", "2", "--all", "-o", str(out)]) == 1
    where = out.with_name("m.tif.partial") / "field.npy"
    assert capsys.readouterr().err.splitlines()[-1] == DISK_FULL.format(where=where)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_pca_of_no_cells_is_refused_before_the_work(tmp_path, capsys):
    """An ocean bbox with --pca (or a PNG) failed after the field was set up: OUT.partial/ stayed, and the fix the
    error suggested (--all) was then refused as another job's unfinished run."""
    argv = ["map", "--model", "bluemarble-l10", "--resolution", "1", "--bbox", "-40", "-40", "-30", "-30"]
    assert main([*argv, "-o", str(tmp_path / "ocean.png")]) == 2
    assert "no cells to fit a PCA on" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main([*argv, "-o", str(tmp_path / "ocean.png"), "--all"]) == 0


def test_the_cells_note_says_land_only_within_any_footprint():
    """With --land-only a model whose footprint is the whole globe was described as 'Every cell computed'."""
    from satclip.embed.maps import _cells_note
    from satclip.models.provenance import ANY, LAND, Footprint

    note = _cells_note(Footprint(ANY, -90.0, 90.0), land_only=True)
    assert note.startswith("Land cells only (GSHHG; --land-only)") and "Every cell" not in note
    assert _cells_note(Footprint(LAND, -60.0, 90.0), land_only=False, picture=True).startswith("Blank: outside")


@pytest.mark.parametrize(("name", "module", "purpose"), [
    ("m.png", "matplotlib", "drawing PNG maps"), ("m.tif", "rasterio", "writing GeoTIFF maps"),
    ("m.zarr", "zarr", "writing Zarr maps"),
])  # fmt: skip
def test_a_missing_writer_is_named_before_the_field_is_computed(tmp_path, model, monkeypatch, capsys, name,
                                                                 module, purpose):  # fmt: skip
    """Without matplotlib (rasterio, zarr) the whole field was computed, then "drawing PNG maps needs matplotlib"
    ended the run, leaving OUT.partial/ behind."""
    from satclip.embed import maps

    for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, module, None)  # (import fails: as where it is not installed)
    monkeypatch.setattr(maps, "embed_lonlat", lambda *a, **k: pytest.fail("the field was computed"))
    assert main(["map", "--model", str(model), "--resolution", "30", "-o", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"satclip: error: {purpose} needs {module}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_tall_narrow_picture_is_drawn_at_a_bounded_size(tmp_path):
    """A 0.5° × 160° PNG (320 × 1 cells) asked for an 18 GiB figure (its height grew with the box's height over
    its width) and failed as an unexpected MemoryError; the map now fits 10 × 20 inches."""
    pytest.importorskip("matplotlib")
    from PIL import Image

    from satclip.embed.maps import PNG_MAP_INCHES, PNG_MIN_WIDTH_INCHES

    out = tmp_path / "tall.png"
    argv = ["map", "--model", "bluemarble-l10", "--resolution", "0.5", "--bbox", "0", "-80", "0.5", "80", "--all"]
    assert main([*argv, "--no-coastlines", "-o", str(out)]) == 0
    width, height = Image.open(out).size
    assert width <= 150 * PNG_MIN_WIDTH_INCHES + 1 and height <= 150 * (PNG_MAP_INCHES[1] + 2), (width, height)


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_zarr_map_named_like_another_format_is_refused_by_both_engines(tmp_path, capsys, engine):
    """`-o m.tif --format zarr --engine dask` wrote a Zarr directory named m.tif (the local engine refused it);
    `-o m --no-coastlines` said "a None map has no coastlines drawn"."""
    if engine == "dask":
        pytest.importorskip("distributed")
    argv = ["map", "--model", "bluemarble-l10", "--resolution", "30", "--engine", engine]
    assert main([*argv, "--format", "zarr", "-o", str(tmp_path / "m.tif")]) == 2
    assert "m.tif: its suffix .tif means geotiff, but --format says zarr" in capsys.readouterr().err
    assert main([*argv, "--no-coastlines", "-o", str(tmp_path / "m")]) == 2
    assert "cannot tell the map format of" in capsys.readouterr().err
    # a suffix of a format satclip does not write maps in (a Zarr directory named m.nc was written, exit 0)
    assert main([*argv, "--format", "zarr", "-o", str(tmp_path / "m.nc")]) == 2
    assert "m.nc: satclip writes no netCDF maps" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_pca_of_values_that_do_not_vary_explains_nothing():
    """A one-cell map's PCA reported explained-variance ratios of 0.098, 0.056, … (rounding noise normalised)."""
    import numpy as np

    from satclip.embed.maps import fit_pca, make_grid

    grid = make_grid(20, (0, 0, 20, 20))
    values = np.random.default_rng(0).normal(size=(1, 1, 16)).astype(np.float32)
    assert fit_pca(iter([(0, values)]), grid, 3).explained_variance_ratio.tolist() == [0.0, 0.0, 0.0]
    varying = make_grid(10, (0, 0, 20, 20))
    many = np.random.default_rng(1).normal(size=(2, 2, 16)).astype(np.float32)
    assert 0 < fit_pca(iter([(0, many)]), varying, 3).explained_variance_ratio.sum() <= 1


#: a satclip command (``sys.argv[2:]``) in a fresh Python whose model load waits for the file ``sys.argv[1]`` to
#: exist, having said it began (``… .loading`` beside it)
LOADING_SLOWLY = textwrap.dedent(
    """
    import importlib, pathlib, sys, time
    from satclip.cli import main

    api = importlib.import_module("satclip.embed.api")

    release, real = pathlib.Path(sys.argv[1]), api.load_encoder

    def slow(*args, **kwargs):
        release.with_suffix(".loading").touch()
        for _ in range(600):
            if release.exists():
                break
            time.sleep(0.1)
        return real(*args, **kwargs)

    api.load_encoder = slow
    sys.exit(main(sys.argv[2:]))
    """
)


def refused_while_the_first_loads(argv: list[str], out, tmp_path, monkeypatch, capsys) -> None:
    """Run ``satclip ARGV`` writing ``out`` in a fresh Python whose model load waits (:data:`LOADING_SLOWLY`), and
    again here once it is loading: the second is refused, exit 1, naming the first's PID, having loaded no model
    and written nothing; then the first finishes, exit 0."""
    import time

    from satclip.embed import api

    from .conftest import run_in_subprocess_env

    release = tmp_path / "release"
    first = subprocess.Popen([sys.executable, "-c", LOADING_SLOWLY, str(release), *argv], env=run_in_subprocess_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for _ in range(600):
            if release.with_suffix(".loading").exists():
                break
            assert first.poll() is None, first.communicate()[1][-2000:]
            time.sleep(0.1)
        loaded = []
        monkeypatch.setattr(api, "load_encoder", lambda *args, **kwargs: loaded.append(1))
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"satclip: error: {out} is in use by another satclip run (PID {first.pid}" in err, err
        assert loaded == [] and not out.exists()
    finally:
        release.touch()
        _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err[-2000:]


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_second_map_of_one_output_is_refused_before_it_loads_its_model(tmp_path, model, monkeypatch, capsys, engine):
    """A second ``satclip map`` of the OUT a first was making passed the lock check before its model load (the
    first took the lock only after loading its own), was refused ~10 s later, once loaded, or wrote OUT itself
    where it got there first. The first run holds the lock from before it loads its model: the second is refused
    before loading anything, exit 1 (a lock held by another run, as for every command)."""
    if engine == "dask":
        pytest.importorskip("distributed")
    out = tmp_path / "m.zarr"
    argv = ["map", "--model", str(model), "--resolution", "30", "--all", "-o", str(out), "--engine", engine]
    refused_while_the_first_loads(argv, out, tmp_path, monkeypatch, capsys)
    assert out.is_dir()


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_second_embed_of_one_output_is_refused_before_it_loads_its_model(tmp_path, model, monkeypatch, capsys,
                                                                           engine):  # fmt: skip
    """As a second map: a second ``satclip embed`` of the OUT a first was writing was refused only once it had loaded
    its model (the first took the lock in the job, after its own load). The first holds it from before."""
    import pandas as pd

    if engine == "dask":
        pytest.importorskip("distributed")
    points, out = tmp_path / "p.parquet", tmp_path / "e.parquet"
    pd.DataFrame({"lon": [13.4, -58.4, 151.2], "lat": [52.5, -34.6, -33.9]}).to_parquet(points)
    argv = ["embed", str(points), "-o", str(out), "--model", str(model), "--engine", engine, "--no-progress"]
    refused_while_the_first_loads(argv, out, tmp_path, monkeypatch, capsys)
    assert len(pd.read_parquet(out)) == 3


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_an_existing_output_is_refused_before_the_model_is_loaded(tmp_path, model, monkeypatch, capsys, engine):
    """`satclip map --model bluemarble-l10 -o user.tif` (user.tif there) loaded the model and chose its precision
    ("precision auto -> …", or a hub download) before saying user.tif exists; and a Zarr map --overwrite onto a model
    directory was refused only once loaded. Both are said now before anything is loaded."""
    from satclip.embed import api

    if engine == "dask":
        pytest.importorskip("distributed")
    loaded = []
    monkeypatch.setattr(api, "load_encoder", lambda *args, **kwargs: loaded.append(1))
    user = safe_output.make_owned_dir(tmp_path / "user.zarr")  # an earlier map
    (user / ".zgroup").write_text("mine")
    other = write_native(tmp_path / "other", {"location_encoder": CONFIG}, {})
    cases = [(user, [], "already exists; pass --overwrite"), (other, ["--overwrite"], "is a satclip model, not a Zarr")]
    for out, flags, said in cases:
        argv = ["map", "--model", str(model), "--resolution", "30", "-o", str(out), "--format", "zarr", "--engine",
                engine, *flags]  # fmt: skip
        assert main(argv) == 2
        assert said in capsys.readouterr().err
    assert loaded == [] and (user / ".zgroup").read_text() == "mine"
