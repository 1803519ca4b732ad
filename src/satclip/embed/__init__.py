"""Embedding at scale: :func:`embed` for in-memory points, :func:`embed_file` for point files.

>>> emb = satclip.embed(df, model="satclip-resnet50-l40")              # DataFrame with lon/lat columns
>>> result = embed_file(open_source("points.parquet"), "emb.parquet", encoder)   # resumable, chunked

The ``satclip embed`` command wraps :func:`embed_file` with a progress bar.
"""

from .api import embed, load_encoder
from .columns import ColumnError, detect_lonlat_columns
from .job import EmbedResult, ResumeMismatchError, embed_file
from .sources import open_source

__all__ = [
    "ColumnError", "EmbedResult", "ResumeMismatchError", "detect_lonlat_columns", "embed", "embed_file",
    "load_encoder", "open_source",
]  # fmt: skip
