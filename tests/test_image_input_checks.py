"""The image side's input checks: the scale of a Sentinel-2 file's values judged robustly, B10 as the models saw it,
and files that are no GeoTIFF."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import satclip
from satclip.cli import main
from satclip.errors import BadInputError
from satclip.image import preprocess

from .conftest import REFERENCE, S2_EXAMPLES, one_error_line, require

PATCH = "patch_75123.tif"
SCALE_WARNING = "satclip.image.base"


@pytest.fixture(scope="module")
def model():
    return satclip.load_model(require(REFERENCE / "satclip-resnet18-l10.ckpt"))


@pytest.fixture(scope="module")
def patches():
    pytest.importorskip("rasterio")
    files = sorted(require(S2_EXAMPLES / "images").glob("*.tif"))
    return np.stack([preprocess.load_sentinel2(file) for file in files])


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SCALE_WARNING and r.levelno == logging.WARNING]


def _write_like(tmp_path, name: str, data: np.ndarray, **profile_changes):
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(require(S2_EXAMPLES / "images" / PATCH)) as src:
        profile = dict(src.profile)
    profile.update(count=len(data), dtype=data.dtype, **profile_changes)
    path = tmp_path / name
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _digital_numbers():
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(require(S2_EXAMPLES / "images" / PATCH)) as src:
        return src.read()


def test_a_reflectance_geotiff_with_one_outlier_pixel_is_not_divided_again(tmp_path):
    """The check looked at the maximum: one pixel of 3.0 made a float32 reflectance file digital numbers."""
    reflectance = _digital_numbers().astype(np.float32) / 10_000
    reflectance[0, 0, 0] = 3.0
    path = _write_like(tmp_path, "outlier.tif", reflectance)
    with pytest.raises(BadInputError, match=r"99 % of its values up to 0\.\d+ look like reflectance already"):
        preprocess.load_sentinel2(path)


def test_a_13_band_files_real_b10_is_set_to_zero_as_in_training(tmp_path, caplog):
    """The released models only saw B10 = 0 (S2-100K has none); a real B10 went into them unchanged."""
    numbers = _digital_numbers()
    path = _write_like(tmp_path, "b13.tif", np.insert(numbers, 10, 1200, axis=0))
    caplog.set_level(logging.INFO, logger="satclip.image.preprocess")
    read = preprocess.load_sentinel2(path)
    np.testing.assert_array_equal(read, preprocess.sentinel2_reflectance(numbers))
    assert any("B10 (cirrus) band to 0" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [("empty.tif", b"", "empty.tif is empty (0 bytes)"),
     ("picture.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 ", "picture.webp is a WebP picture, which satclip does not read: "
      "convert it to PNG")],
)  # fmt: skip
def test_an_empty_file_or_a_webp_picture_is_named_as_such(tmp_path, monkeypatch, capsys, name, content, expected):
    """Both were "not a GeoTIFF (GDAL cannot open it as one)"."""
    pytest.importorskip("rasterio")
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(content)
    assert main(["locate", name, "--model", str(require(REFERENCE / "satclip-resnet18-l10.ckpt"))]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"satclip: error: {expected}")
