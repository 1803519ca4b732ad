"""Training data: the S2-100K Sentinel-2 dataset, its checks and download, and the image transforms.

>>> from satclip.data import S2100K, s2_transform
>>> dataset = S2100K("data/s2-100k", transform=s2_transform(train=True))   # doctest: +SKIP
>>> sample = dataset[0]          # {"image": (13, 256, 256) float32, "point": (2,) float64 lon, lat}

Reading GeoTIFFs needs the ``[data]`` extra (rasterio); downloading needs ``[hub]`` (huggingface_hub).
"""

from .download import DownloadSummary, download_s2100k
from .index import INDEX_LAYOUTS, IndexFormatError, S2Index, read_index
from .s2100k import S2100K
from .sources import HubSource, LocalSource, RemoteFile
from .transforms import S2Transform, s2_transform, sentinel2_to_13_bands
from .verify import PROBLEMS, CheckSpec, VerifyReport, check_file, verify_s2100k

__all__ = [
    "INDEX_LAYOUTS",
    "PROBLEMS",
    "S2100K",
    "CheckSpec",
    "DownloadSummary",
    "HubSource",
    "IndexFormatError",
    "LocalSource",
    "RemoteFile",
    "S2Index",
    "S2Transform",
    "VerifyReport",
    "check_file",
    "download_s2100k",
    "read_index",
    "s2_transform",
    "sentinel2_to_13_bands",
    "verify_s2100k",
]
from .bluemarble import BlueMarble, BlueMarbleParams, build_bluemarble, load_bluemarble_arrays  # noqa: E402,F401
