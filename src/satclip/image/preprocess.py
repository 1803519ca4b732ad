"""Sentinel-2 patches as the SatCLIP image encoders expect them.

The released models (and their SSL4EO-S12 MoCo backbones) take the 13 Sentinel-2 L1C bands as top-of-
atmosphere reflectance: digital numbers / 10,000. The S2-100K patches hold 12 bands (B10, cirrus, is
missing), so the original inserts an all-zero B10 after the first ten bands (B01 … B09, B10=0, B11, B12).
This is the deterministic part of the original transform; the random crop/flips/blur of training live in
``satclip.data.transforms``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..optional import require

#: Sentinel-2 L1C bands in the order the 13-band encoders expect them
S2_BANDS_13 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: index at which the missing B10 band is inserted into 12-band patches
B10_INDEX = 10
#: digital number → reflectance
REFLECTANCE_SCALE = 10_000.0


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


def read_geotiff(path: str | Path) -> np.ndarray:
    """All bands of a GeoTIFF as a ``(C, H, W)`` array in the file's dtype (needs rasterio)."""
    rasterio = require("rasterio", "data", "reading GeoTIFF images")
    with rasterio.open(path) as src:
        return src.read()


def geotiff_center_lonlat(path: str | Path) -> tuple[float, float] | None:
    """(lon, lat) degrees of a georeferenced image's centre, or ``None`` without a CRS (needs rasterio)."""
    rasterio = require("rasterio", "data", "reading GeoTIFF images")
    from rasterio.warp import transform

    with rasterio.open(path) as src:
        if src.crs is None:
            return None
        x, y = src.xy(src.height / 2, src.width / 2, offset="ul")
        lon, lat = transform(src.crs, "EPSG:4326", [x], [y])
    return float(lon[0]), float(lat[0])


def load_sentinel2(path: str | Path) -> np.ndarray:
    """Read a 12- or 13-band Sentinel-2 GeoTIFF → ``(13, H, W)`` float32 reflectance."""
    array = read_geotiff(path)
    if array.shape[0] not in (12, 13):
        raise ValueError(
            f"{path} has {array.shape[0]} bands; SatCLIP's Sentinel-2 encoders need the 12 S2-100K bands "
            f"(B10 missing) or all 13 L1C bands ({', '.join(S2_BANDS_13)})"
        )
    return sentinel2_reflectance(array)


def center_crop(images, size: int):
    """The central ``size × size`` window of ``(..., H, W)`` images (numpy array or torch tensor; a view).

    The offsets are torchvision's ``CenterCrop``: ``top = round((H − size) / 2)`` with Python's
    round-half-to-even, so an odd margin puts the extra row at the top when ⌊margin / 2⌋ is odd and at
    the bottom otherwise (margin 3 → top 2, margin 5 → top 2), not always at the bottom.
    """
    h, w = images.shape[-2], images.shape[-1]
    if h < size or w < size:
        raise ValueError(f"cannot centre-crop {h}×{w} images to {size}×{size}: crop to at most {min(h, w)}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return images[..., top : top + size, left : left + size]
