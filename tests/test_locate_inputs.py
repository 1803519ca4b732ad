"""``satclip locate`` on files it cannot use as an image: one line naming the file and what locate reads, exit 2,
nothing from Pillow, GDAL or Python's warnings around it."""

from __future__ import annotations

import numpy as np
import pytest

from satclip.cli import main

from .conftest import REFERENCE, require

KINDS = "satclip locate reads PNG or JPEG pictures (.png, .jpg, .jpeg) and GeoTIFFs (any other name)"


def _only_line(capfd) -> str:
    """stderr (Python's and the C libraries') as exactly one line."""
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("fake.png", "notimg\n", "fake.png is not a PNG or JPEG picture (Pillow cannot identify it)"),
        # a table of points: GDAL's XYZ driver would take the 3-column one for a grid and log its guesses
        ("points.csv", "lon,lat\n10.5,20.25\n-3.0,40.0\n100.0,-20.0\n", "points.csv is not a GeoTIFF"),
        ("grid.csv", "lon,lat,v\n1,2,0\n1,3,0\n2,5,0\n", "grid.csv is not a GeoTIFF"),
        ("text.tif", "notimg\n", "text.tif is not a GeoTIFF"),
    ],
)
def test_a_file_that_is_no_image_is_one_line(tmp_path, monkeypatch, capfd, name, content, expected):
    pytest.importorskip("rasterio")
    pytest.importorskip("PIL.Image")
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(content)
    assert main(["locate", name, "--model", "bluemarble-l10"]) == 2
    line = _only_line(capfd)
    assert line.startswith(f"satclip: error: {expected}") and line.endswith(KINDS), line


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # writing the test's GeoTIFF
def test_a_truncated_image_is_one_line(tmp_path, monkeypatch, capfd):
    rasterio = pytest.importorskip("rasterio")
    Image = pytest.importorskip("PIL.Image")
    monkeypatch.chdir(tmp_path)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    Image.fromarray(np.moveaxis(pixels, 0, -1)).save("whole.png")
    with rasterio.open("whole.tif", "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as dst:
        dst.write(pixels)
    for name in ("whole.png", "whole.tif"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut{name[5:]}").write_bytes(data[: len(data) // 2])
    assert main(["locate", "cut.png", "--model", "bluemarble-l10"]) == 2
    assert _only_line(capfd) == (
        "satclip: error: cut.png cannot be decoded to the end (image file is truncated): is the picture truncated or "
        "damaged?"
    )
    assert main(["locate", "cut.tif", "--model", "bluemarble-l10"]) == 2
    line = _only_line(capfd)
    assert line.startswith("satclip: error: cut.tif cannot be read to the end (") and line.endswith(
        "): is the GeoTIFF truncated or damaged?"
    )


def test_a_geotiff_without_georeference_gets_satclips_own_note(tmp_path, monkeypatch, capfd, recwarn):
    """rasterio warns (NotGeoreferencedWarning) on opening it; locate says instead what it assumes."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.errors import NotGeoreferencedWarning

    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    monkeypatch.chdir(tmp_path)
    bands = np.random.default_rng(0).integers(0, 3000, (13, 256, 256), dtype=np.uint16)
    with rasterio.open("plain.tif", "w", driver="GTiff", width=256, height=256, count=13, dtype="uint16") as dst:
        dst.write(bands)
    recwarn.clear()
    assert main(["locate", "plain.tif", "--model", str(ckpt), "--k", "2", "--grid-size", "100"]) == 0
    assert not [w for w in recwarn if issubclass(w.category, NotGeoreferencedWarning)]
    captured = capfd.readouterr()
    assert captured.err.splitlines() == [
        "plain.tif carries no georeference; assuming 0.01 km/px, the scale satclip-resnet18-l10.ckpt was trained at"
    ]
    assert captured.out.splitlines()[0].split() == ["rank", "lon", "lat", "score"]  # no true location to rank
