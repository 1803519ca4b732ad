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
    # cut within the header (a JPEG's markers, a PNG's chunks): Pillow's OSError was an "unexpected error", exit 1
    Image.fromarray(np.moveaxis(pixels, 0, -1)).save("whole.jpg")
    (tmp_path / "head.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:100])
    (tmp_path / "head.png").write_bytes((tmp_path / "whole.png").read_bytes()[:8] + b"junk" * 16)
    for name in ("head.jpg", "head.png"):
        assert main(["locate", name, "--model", "bluemarble-l10"]) == 2
        assert _only_line(capfd) == (
            f"satclip: error: {name} cannot be read (Truncated File Read): is the picture truncated or damaged?"
        )
    assert main(["locate", "cut.tif", "--model", "bluemarble-l10"]) == 2
    line = _only_line(capfd)
    assert line.startswith("satclip: error: cut.tif cannot be read to the end (") and line.endswith(
        "): is the GeoTIFF truncated or damaged?"
    )


def test_a_truncated_geotiff_of_one_strip_is_one_line_without_gdals_warnings(tmp_path, monkeypatch, capfd):
    """Cut within its one strip, a GeoTIFF's StripByteCounts run past its end: GDAL warned "TIFFReadDirectory:
    Bogus StripByteCounts field" each time the file was opened (five lines) before satclip's error line."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    monkeypatch.chdir(tmp_path)
    pixels = np.random.default_rng(1).integers(0, 255, (3, 32, 32), dtype=np.uint8)
    with rasterio.open("whole.tif", "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(10, 50, 0.01, 0.01)) as dst:  # fmt: skip
        dst.write(pixels)
    data = (tmp_path / "whole.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
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
    bands[10] = 0  # B10 as the models saw it (a real one is set to 0, and said)
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


def _header_only_png(path, width: int, height: int):
    """A PNG whose header declares ``width × height`` RGB pixels, with a few bytes of image data (a few
    hundred bytes on disk, however large it claims to be)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_a_picture_too_large_to_decode_safely_is_one_line(tmp_path, monkeypatch, capfd):
    """Pillow's DecompressionBombError was "unexpected error … please report it" (exit 1); between Pillow's
    limit and twice that it only warned, and the whole picture was decoded."""
    Image = pytest.importorskip("PIL.Image")
    monkeypatch.chdir(tmp_path)
    _header_only_png(tmp_path / "huge.png", 100_000, 100_000)
    assert main(["locate", "huge.png", "--model", "bluemarble-l10"]) == 2
    assert _only_line(capfd) == (
        f"satclip: error: huge.png has 10,000,000,000 pixels, more than Pillow decodes safely "
        f"({Image.MAX_IMAGE_PIXELS:,}; a possible decompression bomb): crop it to the patch to locate (or downscale "
        "it) first, e.g. 32×32 px at 7.5 km/px for the bluemarble-* models"
    )
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save("large.png")
    assert main(["locate", "large.png", "--model", "bluemarble-l10"]) == 2  # 1,600 pixels: Pillow only warns
    assert _only_line(capfd).startswith("satclip: error: large.png has 1,600 pixels, more than Pillow decodes safely")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_16_bit_png_is_refused_not_read_by_its_high_bytes(tmp_path, monkeypatch, capfd):
    """Pillow opens a 48-bit RGB PNG as "RGB" from the high byte of each value: a picture of values 0-1000 was
    located as an almost black one (values 0-3), exit 0; a uint16 GeoTIFF is refused, and so is this now."""
    import struct
    import zlib

    monkeypatch.chdir(tmp_path)
    pixels = np.random.default_rng(0).integers(0, 1000, (32, 32, 3)).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", 32, 32, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows))
    (tmp_path / "deep.png").write_bytes(png + _png_chunk(b"IEND", b""))
    assert main(["locate", "deep.png", "--model", "bluemarble-l10"]) == 2
    assert _only_line(capfd) == (
        "satclip: error: deep.png is a 16-bit PNG; RGB models take 8-bit colour (0-255): rescale it to 8 bits per "
        "channel"
    )


def test_a_large_picture_is_cropped_before_it_is_converted(tmp_path):
    """A 300 MB PNG took 2.1 GB: the whole picture went to float32 before its central 32×32 px were cut."""
    import tracemalloc

    Image = pytest.importorskip("PIL.Image")
    import satclip
    from satclip.models.locate import load_image

    model = satclip.load_model("bluemarble-l10")
    pixels = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    pixels[:, :1000] = 0  # (compresses: a quick file)
    Image.fromarray(pixels).save(tmp_path / "big.png")
    tracemalloc.start()
    try:
        image = load_image(model, tmp_path / "big.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tuple(image.shape) == (3, 32, 32)
    np.testing.assert_array_equal(image.numpy(), pixels[984:1016, 984:1016].transpose(2, 0, 1) / np.float32(255))
    assert peak < 4_000_000, f"{peak:,} bytes allocated for a 32×32 px crop"  # the whole picture in float32: 48 MB


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # writing the test's GeoTIFF
def test_an_image_without_signal_is_named_by_its_file_and_judged_on_its_bands_as_read(tmp_path, monkeypatch, capfd):
    """The checks said "image 0"; and a constant 12-band patch was located, because the zero B10 band inserted
    for the model made the 13-band tensor non-constant (the same constant picture was refused)."""
    rasterio = pytest.importorskip("rasterio")
    Image = pytest.importorskip("PIL.Image")
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    monkeypatch.chdir(tmp_path)
    with rasterio.open("flat.tif", "w", driver="GTiff", width=256, height=256, count=12, dtype="uint16") as dst:
        dst.write(np.full((12, 256, 256), 1000, dtype=np.uint16))
    assert main(["locate", "flat.tif", "--model", str(ckpt)]) == 2
    assert _only_line(capfd).startswith("satclip: error: flat.tif is constant (every value is 0.1)")
    Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8)).save("grey.png")
    assert main(["locate", "grey.png", "--model", "bluemarble-l10"]) == 2
    assert _only_line(capfd).startswith("satclip: error: grey.png is constant (every value is 0.50")


def test_a_picture_too_small_is_refused_before_its_crop_is_logged(tmp_path, monkeypatch, capfd):
    """A 100×20 px picture logged "centre-cropping 100×20 to 32×20 for bluemarble-l10" and then was refused as too
    small: the crop line is now said only of an image that passed every check."""
    Image = pytest.importorskip("PIL.Image")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (100, 20, 3), dtype=np.uint8)).save("narrow.png")
    assert main(["locate", "narrow.png", "--model", "bluemarble-l10"]) == 2
    assert _only_line(capfd) == (
        "satclip: error: narrow.png is 100×20 px; bluemarble-l10 takes 32×32 px (240 km across): use a larger image"
    )
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save("big.png")
    assert main(["locate", "big.png", "--model", "bluemarble-l10", "--k", "1", "--grid-size", "10"]) == 0
    assert capfd.readouterr().err.splitlines() == [
        "big.png carries no georeference; assuming 7.5 km/px, the scale bluemarble-l10 was trained at",
        "read the central 32×32 px of big.png's 40×48 for bluemarble-l10 (the size of its training patches)",
    ]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # writing the test's GeoTIFF
def test_nan_in_a_12_band_patch_are_counted_among_its_own_values(tmp_path, monkeypatch, capfd):
    """The zero B10 band inserted for the model was counted: an all-NaN 12-band patch "has 786432 NaN or infinite
    values of 851968", not that it holds only NaN, and the numbers had no thousands separators."""
    rasterio = pytest.importorskip("rasterio")
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    monkeypatch.chdir(tmp_path)
    bands = np.random.default_rng(3).uniform(100, 3000, (12, 64, 64)).astype(np.float32)
    for name, data in (("nan.tif", np.full_like(bands, np.nan)), ("band.tif", np.where(
            (np.arange(12) == 4)[:, None, None], np.nan, bands))):  # fmt: skip
        with rasterio.open(name, "w", driver="GTiff", width=64, height=64, count=12, dtype="float32") as dst:
            dst.write(data)
    assert main(["locate", "nan.tif", "--model", str(ckpt)]) == 2
    assert _only_line(capfd).startswith("satclip: error: nan.tif has only NaN or infinite values; ")
    assert main(["locate", "band.tif", "--model", str(ckpt)]) == 2
    assert _only_line(capfd).startswith("satclip: error: band.tif has 4,096 NaN or infinite values of 49,152; ")


def test_a_geotiff_of_more_than_rgb_is_refused_with_the_fix(tmp_path, monkeypatch, capfd):
    """An RGBA GeoTIFF (band 4 declared alpha) was refused as "has 4 band(s)", no word of alpha, and an RGB +
    near-infrared one the same, with no fix: the band count was checked before the file's declared layout."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin

    from satclip.errors import BadInputError
    from satclip.image.preprocess import read_rgb

    monkeypatch.chdir(tmp_path)
    pixels = np.random.default_rng(4).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    profile = dict(driver="GTiff", width=32, height=32, count=4, dtype="uint8", crs="EPSG:4326",
                   transform=from_origin(10, 50, 0.0675, 0.0675), photometric="MINISBLACK")  # fmt: skip
    colours = {"rgba.tif": ["red", "green", "blue", "alpha"], "nir_first.tif": ["undefined", "red", "green", "blue"],
               "rgbn.tif": None}  # (gray, undefined …: no colours declared)  # fmt: skip
    for name, interp in colours.items():
        with rasterio.open(name, "w", **profile) as dst:
            dst.write(pixels)
        if interp:
            with rasterio.open(name, "r+") as dst:
                dst.colorinterp = [ColorInterp[colour] for colour in interp]
    wants = "bluemarble-l10 takes 3-band RGB (red, green, blue) images of 32×32 px at 7.5 km/px (240 km across)"
    expected = {
        "rgba.tif": "rgba.tif: band 4 is an alpha band (transparency), not imagery: drop it (gdal_translate -b 1 -b 2 "
                    "-b 3 -mask 4 rgba.tif rgba_3bands.tif), or give the patch without it",
        "nir_first.tif": f"{wants}; nir_first.tif has 4 band(s): keep its red, green and blue bands: gdal_translate "
                         "-b 2 -b 3 -b 4 nir_first.tif nir_first_rgb.tif",
        "rgbn.tif": f"{wants}; rgbn.tif has 4 band(s): keep its red, green and blue bands, e.g. gdal_translate -b 1 "
                    "-b 2 -b 3 rgbn.tif rgbn_rgb.tif (if those are bands 1, 2, 3)",
    }  # fmt: skip
    for name, message in expected.items():
        assert main(["locate", name, "--model", "bluemarble-l10"]) == 2
        assert _only_line(capfd) == f"satclip: error: {message}"
    with pytest.raises(BadInputError, match=r"rgbn.tif has 4 band\(s\); an RGB image has 3 .*-b 1 -b 2 -b 3 rgbn.tif"):
        read_rgb("rgbn.tif")


def test_a_picture_named_like_a_geotiff_or_a_geotiff_cut_in_its_header_is_named(tmp_path, monkeypatch, capfd):
    """A PNG or JPEG named .tif was "not a GeoTIFF (GDAL cannot open it as one)", no word of renaming it (a TIFF
    named .png got one), and so was a GeoTIFF cut within its header, no word of truncation."""
    rasterio = pytest.importorskip("rasterio")
    Image = pytest.importorskip("PIL.Image")
    monkeypatch.chdir(tmp_path)
    pixels = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save("png.tif", format="PNG")
    Image.fromarray(pixels).save("jpeg.tif", format="JPEG")
    with rasterio.open("whole.tif", "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=rasterio.transform.Affine(0.0675, 0, 10, 0, -0.0675, 50)) as dst:
        dst.write(np.moveaxis(pixels, -1, 0))  # fmt: skip
    (tmp_path / "head.tif").write_bytes((tmp_path / "whole.tif").read_bytes()[:16])
    for name, expected in (("png.tif", "png.tif is a PNG file named .tif: rename it to .png to read it as a picture"),
                           ("jpeg.tif", "jpeg.tif is a JPEG file named .tif: rename it to .jpg to read it as a "
                                        "picture")):  # fmt: skip
        assert main(["locate", name, "--model", "bluemarble-l10"]) == 2
        assert _only_line(capfd) == f"satclip: error: {expected}"
    assert main(["locate", "head.tif", "--model", "bluemarble-l10"]) == 2
    line = _only_line(capfd)
    assert line.startswith("satclip: error: head.tif is a TIFF file GDAL cannot open (") and line.endswith(
        "): is the GeoTIFF truncated or damaged?"
    )
