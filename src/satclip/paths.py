"""Where satclip keeps what it derives or downloads."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$SATCLIP_CACHE/<parts…>``, default ``~/.cache/satclip/<parts…>`` (not created here)."""
    root = os.environ.get("SATCLIP_CACHE") or os.path.join("~", ".cache", "satclip")
    return Path(root).expanduser().joinpath(*parts)  # SATCLIP_CACHE='~/…' (quoted, unexpanded by the shell) too
