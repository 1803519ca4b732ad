"""Training data: the S2-100K Sentinel-2 dataset, its checks and download, and the image transforms.

>>> from satclip.data import S2100K, s2_transform
>>> dataset = S2100K("data/s2-100k", transform=s2_transform(train=True))   # doctest: +SKIP
>>> sample = dataset[0]          # {"image": (13, 256, 256) float32, "point": (2,) float64 lon, lat}

Reading GeoTIFFs needs the ``[data]`` extra (rasterio); downloading needs ``[hub]`` (huggingface_hub).
The names below are imported on first use, so that importing one light submodule (``satclip.data.sources``
for the CLI's help, ``satclip.data.land``) does not import torch and rasterio.
"""

from __future__ import annotations

import importlib

#: public name → submodule (relative to this package) defining it
_LAZY = {
    "DownloadSummary": ".download", "download_s2100k": ".download",
    "INDEX_LAYOUTS": ".index", "IndexFormatError": ".index", "S2Index": ".index", "read_index": ".index",
    "S2100K": ".s2100k",
    "HubSource": ".sources", "LocalSource": ".sources", "RemoteFile": ".sources",
    "S2Transform": ".transforms", "s2_transform": ".transforms", "sentinel2_to_13_bands": ".transforms",
    "PROBLEMS": ".verify", "CheckSpec": ".verify", "VerifyReport": ".verify", "check_file": ".verify",
    "verify_s2100k": ".verify",
    "BlueMarble": ".bluemarble", "BlueMarbleParams": ".bluemarble", "build_bluemarble": ".bluemarble",
    "load_bluemarble_arrays": ".bluemarble",
}  # fmt: skip
__all__ = [
    "INDEX_LAYOUTS", "PROBLEMS", "S2100K", "CheckSpec", "DownloadSummary", "HubSource", "IndexFormatError",
    "LocalSource", "RemoteFile", "S2Index", "S2Transform", "VerifyReport", "check_file", "download_s2100k",
    "read_index", "s2_transform", "sentinel2_to_13_bands", "verify_s2100k",
]  # fmt: skip


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
