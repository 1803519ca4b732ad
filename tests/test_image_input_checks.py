"""The image side's input checks, one set for ``SatCLIP.encode_image``, ``locate`` and ``satclip locate``'s readers:
the scale of float images (Sentinel-2 digital numbers, reflectance divided twice, 0-255 colour), their shape and band
count with the fix named, B10 as the models saw it, and files that are no GeoTIFF."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.errors import BadInputError
from satclip.image import preprocess
from satclip.models.locate import locate

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


def test_wrongly_scaled_floats_are_embedded_with_one_warning_naming_the_fix(model, patches, caplog):
    """Digital numbers (embedding norm 1e6, not ~18), reflectance divided twice (every patch on the same top point)
    and 0-255 colour for an RGB model were embedded and ranked without a word."""
    caplog.set_level(logging.INFO)
    with torch.no_grad():
        model.encode_image(patches)  # real reflectance, bright cloudy patches among them
        assert _warnings(caplog) == []
        model.encode_image(patches[:4] * 10_000)
        (line,) = _warnings(caplog)
        assert "look like Sentinel-2 digital numbers" in line and line.endswith("divide them by 10,000"), line
    caplog.clear()
    locate(model, patches[:3] * 10_000, k=1, grid_size=50)
    assert len(_warnings(caplog)) == 1 and "divide them by 10,000" in _warnings(caplog)[0]
    caplog.clear()
    locate(model, patches[:3] / 10_000, k=1, grid_size=50)
    (line,) = _warnings(caplog)
    assert "nearly zero everywhere" in line and "divided by 10,000 twice?" in line, line


def test_rgb_models_warn_of_0_255_colour_and_not_of_the_blue_marble_corpus(caplog):
    pytest.importorskip("PIL")
    from satclip.data.bluemarble import bmng_image

    caplog.set_level(logging.INFO)
    model = satclip.load_model("bluemarble-l10")
    image = bmng_image()  # patches across the globe: ice, desert, ocean, forest
    patches = np.stack([image[r : r + 32, c : c + 32] for r in range(0, 2656, 400) for c in range(0, 5360, 400)])
    images = torch.from_numpy(np.ascontiguousarray(patches.transpose(0, 3, 1, 2))).float() / 255
    with torch.no_grad():
        model.encode_image(images)
        assert _warnings(caplog) == []
        model.encode_image(images * 255)
    (line,) = _warnings(caplog)
    assert "look like 0-255 colour" in line and line.endswith("divide them by 255"), line


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


def test_encode_image_and_locate_name_the_fix_for_the_shape_alike(model, patches):
    """encode_image refused one (C, H, W) image without naming x[None] and read channels-last arrays as "256 bands";
    12 bands were refused by both without naming the B10 to insert."""
    one = patches[0]
    with pytest.raises(BadInputError, match=r"are one image; .*add a batch axis, images\[None\]"):
        model.encode_image(one)
    for call in (model.encode_image, lambda x: locate(model, x, k=1, grid_size=10)):
        with pytest.raises(BadInputError, match=r"look channels-last .*np\.moveaxis\(array, -1, -3\)"):
            call(np.moveaxis(patches[:2], 1, -1))
        with pytest.raises(BadInputError, match=r"got 12 bands .*insert B10, all zero, at index 10 .*"
                                                r"sentinel2_reflectance"):  # fmt: skip
            call(np.delete(patches[:2], 10, axis=1))


def test_python_locate_warns_of_an_image_larger_than_the_training_patch(caplog):
    """A 600×800 px picture was embedded whole by an RGB model trained on 32 px patches (the CLI crops it)."""
    model = satclip.load_model("bluemarble-l10")
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))
    caplog.set_level(logging.INFO)
    locate(model, image, k=1, grid_size=10)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("larger than the 32×32 px patches" in line and "center_crop(images, 32)" in line for line in lines)
    caplog.clear()
    locate(model, preprocess.center_crop(image, 32), k=1, grid_size=10)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


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


def test_nan_in_a_float_geotiff_without_declared_nodata_names_the_fix(tmp_path, capsys):
    data = _digital_numbers().astype(np.float32)
    data[:, :5] = np.nan
    path = _write_like(tmp_path, "nan.tif", data)
    assert main(["locate", str(path), "--model", str(require(REFERENCE / "satclip-resnet18-l10.ckpt"))]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "NaN or infinite values" in line and line.endswith("crop the patch to its valid pixels (gdal_translate "
                                                             "-srcwin for a GeoTIFF)"), line  # fmt: skip
