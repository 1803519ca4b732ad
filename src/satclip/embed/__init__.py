"""Embedding at scale: :func:`embed` for in-memory points, :func:`embed_file` for point files.

>>> emb = satclip.embed(df, model="satclip-resnet50-l40")              # DataFrame with lon/lat columns
>>> result = embed_file(open_source("points.parquet"), "emb.parquet", encoder)   # resumable, chunked

The ``satclip embed`` command wraps :func:`embed_file` with a progress bar.
"""

import importlib

#: public name → the submodule defining it; imported on first use, so that a light submodule (e.g.
#: :mod:`satclip.embed.cluster`) can be imported without torch
_EXPORTS = {
    "embed": "api", "load_encoder": "api", "ColumnError": "columns", "detect_lonlat_columns": "columns",
    "EmbedResult": "job", "ResumeMismatchError": "job", "embed_file": "job", "open_source": "sources",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
