"""Sentinel-2 patches as the SatCLIP image encoders expect them.

The released models (and their SSL4EO-S12 MoCo backbones) take the 13 Sentinel-2 L1C bands as top-of-
atmosphere reflectance: digital numbers / 10,000. The S2-100K patches hold 12 bands (B10, cirrus, is
missing), so the original inserts an all-zero B10 after the first ten bands (B01 … B09, B10=0, B11, B12).
This is the deterministic part of the original transform; the random crop/flips/blur of training live in
``satclip.data.transforms``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..optional import gdal_warnings_as_debug, require

log = logging.getLogger(__name__)

#: Sentinel-2 L1C bands in the order the 13-band encoders expect them
S2_BANDS_13 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: index at which the missing B10 band is inserted into 12-band patches
B10_INDEX = 10
#: digital number → reflectance
REFLECTANCE_SCALE = 10_000.0
#: :func:`value_level` of Sentinel-2 reflectance lies below this, of digital numbers far above it (the fixture
#: patches: 0.08 over water to 1.0 under cloud as reflectance, so 840 or more as digital numbers)
DIGITAL_NUMBERS_LEVEL = 10.0
#: :func:`value_level` of reflectance divided by 10,000 once more lies below this (a real patch's: 0.08 or more)
SCALED_TWICE_LEVEL = 1e-3
#: :func:`value_level` of RGB colour in [0, 1] lies at most at 1 (the Blue Marble image's patches: 0.07 to 1), of
#: 0-255 colour far above this
RGB_255_LEVEL = 1.5
#: values :func:`value_level` looks at, evenly strided over an image (a 256 px 13-band patch has 852k)
_LEVEL_SAMPLE = 65_536


def value_level(values: np.ndarray) -> float:
    """The scale of an image's values: the 99th percentile of the magnitudes of its finite non-zero ``values`` (of
    up to 65,536 of them, evenly strided), 0.0 where there are none. One outlier pixel does not move it (the maximum
    read a reflectance file with one pixel of 3.0 as digital numbers), nor do no-data zeros or an inserted B10."""
    flat = np.asarray(values).reshape(-1)
    flat = np.abs(flat[:: max(1, flat.size // _LEVEL_SAMPLE)].astype(np.float64))
    flat = flat[np.isfinite(flat) & (flat != 0)]
    return float(np.percentile(flat, 99)) if flat.size else 0.0


def scale_advice(level: float, in_chans: int) -> str | None:
    """What is wrong with the scale of images whose :func:`value_level` is ``level`` for an encoder of ``in_chans``
    bands (13: Sentinel-2 reflectance, 3: RGB in [0, 1]), or None where it looks right."""
    if in_chans == len(S2_BANDS_13) and level > DIGITAL_NUMBERS_LEVEL:
        return (f"look like Sentinel-2 digital numbers (99 % of values up to {level:,.4g}), not the reflectance the "
                f"model takes: divide them by {REFLECTANCE_SCALE:,.0f}")  # fmt: skip
    if in_chans == len(S2_BANDS_13) and 0 < level < SCALED_TWICE_LEVEL:
        return (f"are nearly zero everywhere (99 % of values up to {level:.3g}; a real patch's reach 0.08 and more): "
                f"divided by {REFLECTANCE_SCALE:,.0f} twice? Reflectance is digital numbers / "
                f"{REFLECTANCE_SCALE:,.0f}, once")  # fmt: skip
    if in_chans == 3 and level > RGB_255_LEVEL:
        return (f"look like 0-255 colour (99 % of values up to {level:,.4g}), not the [0, 1] the model takes: divide "
                "them by 255")  # fmt: skip
    return None


def sentinel2_to_13_bands(array: np.ndarray) -> np.ndarray:
    """12-band Sentinel-2 digital numbers → 13-band float32 reflectance.

    Args:
        array: ``(..., 12, H, W)`` digital numbers (any numeric dtype, usually uint16), bands in the order
            of :data:`S2_BANDS_13` without B10.

    Returns:
        ``(..., 13, H, W)`` float32: ``array / 10000`` with a zero band at index 10 (B10). The division is
        done in float32, exactly as the original (``astype(float32) / 10000``), so the result is
        bit-identical to it.
    """
    array = np.asarray(array)
    if array.ndim < 3 or array.shape[-3] != 12:
        raise ValueError(
            f"expected a (..., 12, H, W) Sentinel-2 array (12 bands, B10 missing), got shape {array.shape}; "
            "13-band input already has B10 — scale it with sentinel2_reflectance()"
        )
    scaled = array.astype(np.float32) / np.float32(REFLECTANCE_SCALE)
    zeros = np.zeros_like(scaled[..., :1, :, :])
    return np.concatenate([scaled[..., :B10_INDEX, :, :], zeros, scaled[..., B10_INDEX:, :, :]], axis=-3)


def sentinel2_reflectance(array: np.ndarray) -> np.ndarray:
    """12- or 13-band digital numbers ``(..., C, H, W)`` → 13-band float32 reflectance (see above)."""
    array = np.asarray(array)
    if array.ndim >= 3 and array.shape[-3] == 13:
        return array.astype(np.float32) / np.float32(REFLECTANCE_SCALE)
    return sentinel2_to_13_bands(array)


#: what satclip locate reads (with the functions below), named when a file is none of it
IMAGE_KINDS = "PNG or JPEG pictures (.png, .jpg, .jpeg) and GeoTIFFs (any other name)"
#: a file's first bytes → its format, told apart before a reader that would misname it is tried
_SIGNATURES = {b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"II+\x00": "TIFF", b"MM\x00+": "TIFF",
               b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}  # fmt: skip
#: the suffix under which satclip locate reads each format
_SUFFIX = {"TIFF": ".tif", "PNG": ".png", "JPEG": ".jpg"}


def _file_format(path: str | Path) -> str | None:
    """"TIFF", "PNG", "JPEG" or "WebP" by the file's first bytes, None for anything else."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head.startswith(b"RIFF") and head[8:] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES.items() if head.startswith(magic)), None)


def _misnamed(path: str | Path, kind: str) -> BadInputError:
    """The error for a file of format ``kind`` under a name that satclip reads as another format."""
    read_as = "a GeoTIFF" if kind == "TIFF" else "a picture"
    return BadInputError(
        f"{path} is a {kind} file named {Path(path).suffix or 'without a suffix'}: rename it to {_SUFFIX[kind]} to "
        f"read it as {read_as}"
    )


def _not_an_image(path: str | Path, expected: str) -> BadInputError:
    """The error for a file that is not the ``expected`` image its reader takes it for: an empty one, a WebP
    picture (each was "not a GeoTIFF"), or anything else."""
    if Path(path).stat().st_size == 0:
        return BadInputError(f"{path} is empty (0 bytes): give the image file itself (a download or copy cut short?)")
    if _file_format(path) == "WebP":
        return BadInputError(f"{path} is a WebP picture, which satclip does not read: convert it to PNG")
    return BadInputError(f"{path} is not {expected}; satclip locate reads {IMAGE_KINDS}")


@contextlib.contextmanager
def open_geotiff(path: str | Path) -> Iterator:
    """``path`` opened with rasterio as a GeoTIFF (needs rasterio); one without georeference opens quietly (its
    ``crs`` is None: the callers say what that means).

    Only GDAL's GeoTIFF driver is tried, so that no other driver takes a CSV for a grid of XYZ points.

    Raises:
        BadInputError: not a GeoTIFF, or one that cannot be read to the end (truncated, damaged).
    """
    rasterio = require("rasterio", "data", "reading GeoTIFF images")
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    with gdal_warnings_as_debug():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                src = rasterio.open(path, driver="GTiff")
        except RasterioIOError as err:
            kind = _file_format(path)
            if kind in ("PNG", "JPEG"):  # (it was "not a GeoTIFF", no word of what it is)
                raise _misnamed(path, kind) from err
            if kind == "TIFF":  # (a GeoTIFF cut within its header was "not a GeoTIFF")
                reason = str(err).removeprefix(f"{path}: ").rstrip(".")
                raise BadInputError(
                    f"{path} is a TIFF file GDAL cannot open ({reason}): is the GeoTIFF truncated or damaged?"
                ) from err
            raise _not_an_image(path, "a GeoTIFF (GDAL cannot open it as one)") from err
        try:
            with src:
                yield src
        except RasterioIOError as err:
            reason = str(err.__cause__ or err).rstrip(".")  # GDAL's message, e.g. "TIFFReadEncodedStrip() failed"
            raise BadInputError(
                f"{path} cannot be read to the end ({reason}): is the GeoTIFF truncated or damaged?"
            ) from err


def read_geotiff(path: str | Path) -> np.ndarray:
    """All bands of a GeoTIFF as a ``(C, H, W)`` array in the file's dtype (needs rasterio)."""
    with open_geotiff(path) as src:
        return src.read()


def _read_central(
    path: str | Path, size: int | None, rgb: bool = False, sentinel2: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(bands, gaps)`` of a GeoTIFF's central ``size × size`` window (the whole image when it is not larger,
    or without ``size``; the window of :func:`center_crop`, read alone): ``(C, h, w)`` in the file's dtype,
    north up, and where it has no data (``(h, w)`` bool: its declared nodata value in every band, or its mask;
    None where it has neither). ``rgb``: bands declared red, green and blue in another order are put in that
    order; ``sentinel2``: bands named B01 … B12 in another order are put in :data:`S2_BANDS_13`'s. A file whose
    stored values are not the imagery as read is refused (:func:`_check_layout`)."""
    with open_geotiff(path) as src:
        _check_layout(path, src)
        window = None
        if size is not None and (src.height > size or src.width > size):
            from rasterio.windows import Window

            rows, cols = min(size, src.height), min(size, src.width)
            window = Window(_centre_offset(src.width, cols), _centre_offset(src.height, rows), cols, rows)
        array = src.read(window=window)
        gaps = None
        if src.nodata is not None or any(_MASKED & set(flags) for flags in _mask_flags(src)):
            # rasterio's dataset mask: no data where every band holds the nodata value (one band's 0 can be
            # data), or where the file's own mask says so (a GDAL mask band; an internal mask was embedded)
            gaps = src.dataset_mask(window=window) == 0
        if rgb:
            array = _in_rgb_order(src, array)
        if sentinel2:
            array = _in_sentinel2_order(path, src.descriptions, array)
        grid = not src.transform.is_identity  # (a file without georeference has rasterio's identity: as stored)
        if grid and src.transform.e > 0:  # rows from south to north: turned north up, as the models were trained
            array, gaps = array[:, ::-1], None if gaps is None else gaps[::-1]
        if grid and src.transform.a < 0:  # columns from east to west
            array, gaps = array[:, :, ::-1], None if gaps is None else gaps[:, ::-1]
    return np.ascontiguousarray(array), gaps


def _mask_flags(src) -> list:
    return [[flag.name for flag in flags] for flags in src.mask_flag_enums]


#: rasterio mask flags of a file whose mask is its own (a mask band), not "all valid"
_MASKED = {"per_dataset", "alpha"}


def _check_layout(path, src) -> None:
    """Refuse a GeoTIFF that read as it is would not be the imagery it holds: an alpha band (read as a band
    of imagery), scale or offset tags (values that are not the imagery's own), a rotated grid, ground control
    points instead of a grid, or more than one image."""
    alpha = [i + 1 for i, interp in enumerate(src.colorinterp) if interp.name == "alpha"]
    if alpha:
        others = " ".join(f"-b {band}" for band in range(1, src.count + 1) if band not in alpha)
        raise BadInputError(
            f"{path}: band {alpha[0]} is an alpha band (transparency), not imagery: drop it (gdal_translate {others} "
            f"-mask {alpha[0]} {Path(path).name} {Path(path).stem}_{src.count - len(alpha)}bands.tif), or give the "
            "patch without it"
        )
    if any(scale != 1 for scale in src.scales) or any(offset != 0 for offset in src.offsets):
        raise BadInputError(
            f"{path} declares values to be scaled (scales {list(src.scales)}, offsets {list(src.offsets)}): satclip "
            "reads the stored values as they are; write the imagery's own values (gdal_translate -unscale) and "
            "give that file"
        )
    if src.transform.b != 0 or src.transform.d != 0:
        raise BadInputError(f"{path} is on a rotated grid: warp it north up (gdalwarp) and give that file")
    if src.crs is None and src.gcps[0]:
        raise BadInputError(
            f"{path} is georeferenced by ground control points, not a grid: warp it north up (gdalwarp) and give "
            "that file (its scale and orientation are unknown otherwise)"
        )
    if src.subdatasets:
        raise BadInputError(f"{path} holds {len(src.subdatasets)} images: give one image per file")


def _in_rgb_order(src, array: np.ndarray) -> np.ndarray:
    """``array`` (3 bands) in red, green, blue order where the file declares those colours in another order
    (a BGR GeoTIFF was read as RGB)."""
    names = [interp.name for interp in src.colorinterp]
    if sorted(names) == ["blue", "green", "red"] and names != ["red", "green", "blue"]:
        return array[[names.index("red"), names.index("green"), names.index("blue")]]
    return array


def _in_sentinel2_order(path, descriptions, array: np.ndarray) -> np.ndarray:
    """``array`` in :data:`S2_BANDS_13`'s order (B10 left out in 12 bands) where the file names its bands B01 …
    B12 (``B1``, ``b8a`` too) in another order (an alphabetical export put B8A last: read as B12); refused where
    those names are not the bands satclip takes. Files whose bands carry no such names are read in file order."""
    names = [re.sub(r"^B0?(\d+A?)$", r"\1", (d or "").strip().upper()) for d in descriptions]
    wanted = [re.sub(r"^B0?(\d+A?)$", r"\1", b) for b in S2_BANDS_13 if len(names) == 13 or b != "B10"]
    if len(names) not in (12, 13) or not all(re.fullmatch(r"\d+A?", n) for n in names):  # (unnamed: file order)
        return array
    if sorted(names) != sorted(wanted):
        raise BadInputError(
            f"{path} names its bands {list(descriptions)}; SatCLIP's Sentinel-2 encoders take "
            f"{', '.join(b for b in S2_BANDS_13 if len(names) == 13 or b != 'B10')}: give a file of those bands"
        )
    return array[[names.index(n) for n in wanted]] if names != wanted else array


def _refuse_gaps(
    path, gaps: np.ndarray | None, size: int | None, held: str = "hold its nodata value or are masked",
    fix: str = "give a patch without nodata",
) -> None:  # fmt: skip
    """Raise :class:`BadInputError` where a GeoTIFF's window has no data (``gaps`` of :func:`_read_central`, or
    what ``held`` says of them): those pixels would enter the model as dark ground."""
    if gaps is not None and gaps.any():
        where = f"the central {gaps.shape[0]}×{gaps.shape[1]} px of " if size is not None else ""
        raise BadInputError(
            f"{int(gaps.sum()):,} of {gaps.size:,} pixels in {where}{path} {held}: a patch with gaps would be "
            f"embedded as if they were dark ground; {fix}"
        )


def geotiff_center_lonlat(path: str | Path) -> tuple[float, float] | None:
    """(lon, lat) degrees of a georeferenced image's centre, the longitude in [-180, 180) (a raster across the
    antimeridian, or in 0–360°, has its centre east of 180°), or ``None`` without a CRS or a centre on Earth
    (needs rasterio)."""
    with open_geotiff(path) as src:
        return raster_center_lonlat(src)


def raster_center_lonlat(src) -> tuple[float, float] | None:
    """:func:`geotiff_center_lonlat` of a raster rasterio has open."""
    if src.crs is None:
        return None
    from rasterio.warp import transform

    x, y = src.xy(src.height / 2, src.width / 2, offset="ul")
    lon, lat = transform(src.crs, "EPSG:4326", [x], [y])
    lon, lat = float(lon[0]), float(lat[0])
    if not (np.isfinite(lon) and np.isfinite(lat) and abs(lat) <= 90):
        return None
    return (lon + 180.0) % 360.0 - 180.0, lat


#: what to do with a picture too large to decode
_PICTURE_FIX = (
    "crop it to the patch to locate (or downscale it) first, e.g. 32×32 px at 7.5 km/px for the bluemarble-* models"
)

#: suffixes read as pictures (Pillow) rather than GeoTIFFs (rasterio)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_picture(path: str | Path) -> bool:
    """True for PNG/JPEG files (no georeference, 8-bit)."""
    return Path(path).suffix.lower() in PICTURE_SUFFIXES


@contextlib.contextmanager
def _open_picture(path: str | Path) -> Iterator:
    """``path`` opened with Pillow.

    Raises:
        BadInputError: not a picture Pillow knows, or one that cannot be decoded to the end (truncated, damaged).
    """
    pil_image = require("PIL.Image", "eval", "reading PNG/JPEG images")
    if _file_format(path) == "TIFF":  # (Pillow's TIFF reader prints to stderr)
        raise _misnamed(path, "TIFF")
    try:
        with warnings.catch_warnings():  # (Pillow only warns between its limit and twice that: refused alike)
            warnings.simplefilter("error", pil_image.DecompressionBombWarning)
            picture = pil_image.open(path)
    except pil_image.UnidentifiedImageError as err:
        raise _not_an_image(path, "a PNG or JPEG picture (Pillow cannot identify it)") from err
    except (pil_image.DecompressionBombError, pil_image.DecompressionBombWarning) as err:
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels[1]):,} pixels" if pixels else "too many pixels"
        raise BadInputError(
            f"{path} has {size}, more than Pillow decodes safely ({pil_image.MAX_IMAGE_PIXELS:,}; a possible "
            f"decompression bomb): {_PICTURE_FIX}"
        ) from err
    except OSError as err:
        if err.errno is not None:  # the system's (an I/O error), not Pillow's reading of the header
            raise
        raise BadInputError(  # "Truncated File Read": the file ends within the header (a download cut short)
            f"{path} cannot be read ({err}): is the picture truncated or damaged?"
        ) from err
    try:
        with picture:
            yield picture
    except OSError as err:  # Pillow's decoders: "image file is truncated", "broken data stream …"
        raise BadInputError(
            f"{path} cannot be decoded to the end ({err}): is the picture truncated or damaged?"
        ) from err


def image_shape(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` in pixels of a PNG/JPEG or GeoTIFF (nothing but the header is read)."""
    if is_picture(path):
        with _open_picture(path) as im:
            return im.height, im.width
    with open_geotiff(path) as src:
        return int(src.height), int(src.width)


def picture_mode(path: str | Path) -> str | None:
    """Pillow's mode of a PNG/JPEG (``"RGB"``, ``"CMYK"``, ``"L"`` …), None for a GeoTIFF."""
    if not is_picture(path):
        return None
    with _open_picture(path) as im:
        return im.mode


def band_count(path: str | Path) -> int:
    """Number of bands of a PNG/JPEG (an opaque alpha channel or a palette not counted) or GeoTIFF (one that would
    not be read as the imagery it holds is refused first, :func:`_check_layout`: an RGBA GeoTIFF was "4 bands")."""
    if is_picture(path):
        with _open_picture(path) as im:
            if im.mode in ("P", "PA"):
                return 3
            bands = len(im.getbands())
            if im.mode in ("RGBA", "LA") and im.getchannel("A").getextrema() == (255, 255):
                bands -= 1  # an opaque alpha channel carries nothing
            return bands
    with open_geotiff(path) as src:
        _check_layout(path, src)
        return int(src.count)


def keep_rgb_advice(path: str | Path) -> str:
    """How to make an RGB GeoTIFF of one with more than 3 bands (RGB and near-infrared, say): the gdal_translate
    that keeps the bands it declares red, green and blue, or bands 1-3 where it declares none."""
    with open_geotiff(path) as src:
        colours = [interp.name for interp in src.colorinterp]
    declared = all(colour in colours for colour in ("red", "green", "blue"))
    keep = [colours.index(colour) + 1 for colour in ("red", "green", "blue")] if declared else [1, 2, 3]
    command = f"gdal_translate {' '.join(f'-b {band}' for band in keep)} {Path(path).name} {Path(path).stem}_rgb.tif"
    return f"keep its red, green and blue bands: {command}" if declared else (
        f"keep its red, green and blue bands, e.g. {command} (if those are bands 1, 2, 3)")  # fmt: skip


def read_rgb(path: str | Path, size: int | None = None) -> np.ndarray:
    """An RGB image → ``(3, H, W)`` float32 in [0, 1], as the Blue Marble corpus feeds the shipped models; with
    ``size``, only its central ``size × size`` px (the window of :func:`center_crop`; the whole image when it is
    not larger), cut before anything is converted (a GeoTIFF's window is read alone).

    PNG/JPEG: 8-bit RGB (a palette or an opaque alpha channel is fine) / 255. GeoTIFF: 3 bands in R, G, B
    order; uint8 / 255, or floats already in [0, 1].

    Raises:
        BadInputError: not 3 bands, pixels of a GeoTIFF's declared nodata value, values that are not 8-bit or
            [0, 1] (the message says what would do), or a picture too large for Pillow to decode safely.
    """
    bands = band_count(path)
    if bands != 3:
        fix = f": {keep_rgb_advice(path)}" if bands > 3 and not is_picture(path) else ""
        raise BadInputError(f"{path} has {bands} band(s); an RGB image has 3 (red, green, blue){fix}")
    if is_picture(path):
        with _open_picture(path) as im:
            if im.mode not in ("RGB", "RGBA", "P", "PA"):
                raise BadInputError(f"{path} is a {im.mode!r} picture; save it as 8-bit RGB")
            if im.format == "PNG" and _png_bit_depth(path) == 16:  # (Pillow reads its high bytes alone, as RGB)
                raise BadInputError(f"{path} is a 16-bit PNG; RGB models take 8-bit colour (0-255): rescale it to "
                                    "8 bits per channel")  # fmt: skip
            if "transparency" in im.info or im.mode == "PA":  # (a palette's or a colour key's: dropped)
                alpha = im.convert("RGBA").getchannel("A").getextrema()
                if alpha[0] < 255:
                    raise BadInputError(f"{path} has transparent pixels; save it as 8-bit RGB without transparency "
                                        "(a patch with gaps would be embedded as if they were imagery)")  # fmt: skip
            from PIL import ImageOps

            im = ImageOps.exif_transpose(im)  # (a camera's "rotate on display" was read as stored)
            if size is not None and (im.height > size or im.width > size):
                rows, cols = min(size, im.height), min(size, im.width)
                top, left = _centre_offset(im.height, rows), _centre_offset(im.width, cols)
                im = im.crop((left, top, left + cols, top + rows))
            pixels = np.asarray(im.convert("RGB"))
        return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
    array, gaps = _read_central(path, size, rgb=True)
    _refuse_gaps(path, gaps, size)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(array.dtype, np.floating) and np.nanmin(array) >= 0 and np.nanmax(array) <= 1:
        return array.astype(np.float32)
    raise BadInputError(
        f"{path} holds {array.dtype} values in [{np.nanmin(array):g}, {np.nanmax(array):g}]; RGB models take "
        "8-bit colour (uint8, 0-255) or floats in [0, 1]: rescale it, e.g. to a true-colour uint8 GeoTIFF or PNG"
    )


def _png_bit_depth(path: str | Path) -> int:
    """The bit depth a PNG's header (IHDR) records per channel."""
    with open(path, "rb") as file:
        header = file.read(25)
    return header[24] if len(header) == 25 else 0


def pixel_size_km(path: str | Path) -> tuple[float, float] | None:
    """Ground distances between neighbouring pixel centres at a GeoTIFF's centre along its rows and its columns
    (km, on a sphere), or None for a picture or a GeoTIFF without CRS."""
    if is_picture(path):
        return None
    with open_geotiff(path) as src:
        if src.crs is None:
            return None
        from rasterio.warp import transform

        row, col = src.height / 2, src.width / 2
        points = [src.xy(row, col, offset="ul"), src.xy(row, col + 1, offset="ul"), src.xy(row + 1, col, offset="ul")]
        lon, lat = transform(src.crs, "EPSG:4326", [p[0] for p in points], [p[1] for p in points])
    from ..encoding.points import great_circle_km

    lonlat = np.column_stack([lon, lat])
    return float(great_circle_km(lonlat[0], lonlat[1])), float(great_circle_km(lonlat[0], lonlat[2]))


def load_sentinel2(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read a 12- or 13-band Sentinel-2 GeoTIFF → ``(13, H, W)`` float32 reflectance; with ``size``, only its
    central ``size × size`` px (a whole scene is not read). B10 is 0 (logged where a 13-band file's is not), as in
    the S2-100K patches the models were trained on, which have none.

    Raises:
        BadInputError: another band count; pixels of the file's declared nodata value, or 0 in every band (L1C's
            no-data value, declared or not: they would enter the model as reflectance); negative values (no L1C
            digital number is); float values that are reflectance already (they would be divided again).
    """
    array, gaps = _read_central(path, size, sentinel2=True)
    if array.shape[0] not in (12, 13):
        raise BadInputError(
            f"{path} has {array.shape[0]} bands; SatCLIP's Sentinel-2 encoders need the 12 S2-100K bands "
            f"(B10 missing) or all 13 L1C bands ({', '.join(S2_BANDS_13)})"
        )
    _refuse_gaps(path, gaps, size)
    if array.dtype in (np.uint8, np.int8):  # (L1C digital numbers reach 10,000 and more: near-black as read)
        raise BadInputError(
            f"{path} holds 8-bit values, which cannot be Sentinel-2 L1C digital numbers (reflectance × "
            f"{REFLECTANCE_SCALE:g}, up to 10,000 and more): give the L1C file (uint16, as S2-100K stores them)"
        )
    negative = int(np.count_nonzero(array < 0))
    if negative:  # (an int16 block of -5000 was embedded as reflectance -0.5)
        raise BadInputError(
            f"{path} holds {negative:,} negative values of {array.size:,} (down to {np.nanmin(array):g}); SatCLIP's "
            "Sentinel-2 encoders take L1C digital numbers (0 to 10,000 and more, never negative), so these are "
            "another product's (a radiometric offset applied?) or a fill value: declare the fill value nodata "
            "(gdal_edit.py -a_nodata VALUE) or rescale the file to L1C digital numbers"
        )
    if np.issubdtype(array.dtype, np.floating):
        level = value_level(array)  # (the maximum: one pixel of 3.0 made reflectance "digital numbers")
        if 0 < level <= DIGITAL_NUMBERS_LEVEL:
            raise BadInputError(
                f"{path}: 99 % of its values up to {level:.3g} look like reflectance already; SatCLIP's Sentinel-2 "
                f"encoders take L1C digital numbers (reflectance × {REFLECTANCE_SCALE:g}, as S2-100K stores them): "
                f"multiply it by {REFLECTANCE_SCALE:g}, or give the L1C file"
            )
    # (a patch's edge of L1C no-data zeros was located when the file declared no nodata)
    _refuse_gaps(path, ~array.any(axis=0), size, held="are 0 in every band, Sentinel-2 L1C's no-data value",
                 fix="crop the patch to its valid pixels (gdal_translate -srcwin) and declare 0 nodata (gdal_edit.py "
                 "-a_nodata 0)")  # fmt: skip
    reflectance = sentinel2_reflectance(array)
    if array.shape[0] == len(S2_BANDS_13) and reflectance[B10_INDEX].any():
        # (the models saw B10 = 0 only, S2-100K having none: a real B10 moved where a patch's truth ranked)
        reflectance[B10_INDEX] = 0
        log.info("set %s's B10 (cirrus) band to 0, as in the S2-100K patches the Sentinel-2 models were trained on",
                 Path(path).name)  # fmt: skip
    return reflectance


def center_crop(images, size: int):
    """The central ``size × size`` window of ``(..., H, W)`` images (numpy array or torch tensor; a view).

    The offsets are torchvision's ``CenterCrop``: ``top = round((H − size) / 2)`` with Python's
    round-half-to-even, so an odd margin puts the extra row at the top when ⌊margin / 2⌋ is odd and at
    the bottom otherwise (margin 3 → top 2, margin 5 → top 2), not always at the bottom.
    """
    h, w = images.shape[-2], images.shape[-1]
    if h < size or w < size:
        raise ValueError(f"cannot centre-crop {h}×{w} images to {size}×{size}: crop to at most {min(h, w)}")
    top, left = _centre_offset(h, size), _centre_offset(w, size)
    return images[..., top : top + size, left : left + size]


def _centre_offset(length: int, size: int) -> int:
    """Where a centred window of ``size`` starts along an axis of ``length``: torchvision's ``CenterCrop``
    rounding (see :func:`center_crop`)."""
    return int(round((length - size) / 2.0))
