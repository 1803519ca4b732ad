"""Errors that name the file they are about, for the writers of ``embed`` and ``map``.

pyarrow, zarr and numpy raise a full disk (and other write failures) as an ``OSError`` without a filename,
so the CLI could only say "disk full while writing the output"; :func:`naming` adds the file being written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Inside, an ``OSError`` with an errno but no filename is raised again as the same error naming ``path``
    (the original chained); others pass unchanged."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err
