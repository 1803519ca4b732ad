"""Where satclip keeps what it derives or downloads, and how it reads the paths users type."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$SATCLIP_CACHE/<parts…>``, default ``~/.cache/satclip/<parts…>`` (not created here)."""
    root = os.environ.get("SATCLIP_CACHE") or os.path.join("~", ".cache", "satclip")
    return expand_user(root).joinpath(*parts)  # SATCLIP_CACHE='~/…' (quoted, unexpanded by the shell) too


def expand_user(path: str | os.PathLike) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; ``~name`` of no user (or ``~`` without a home) stays a
    name, as the shell leaves it (``Path.expanduser`` raises)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


def user_path(text: str | os.PathLike) -> Path:
    """A path as a user means it: ``~`` expanded (also when quoted, so the shell left it), and ``..`` taken as
    the kernel takes it where the directories exist and by name where they do not — ``nosuch/../out`` is
    ``./out``, never a new directory ``nosuch``. The last component is kept as given (a symbolic link there is
    seen, not followed)."""
    path = expand_user(text)
    if ".." not in path.parts:
        return path
    if path.name in ("", ".."):
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(path.parent)) / path.name
