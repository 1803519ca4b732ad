"""Progress bars on the terminal (tqdm, on stderr), made in one place for the commands and the demo.

A bar follows the terminal's width as it changes. A terminal that reports no size (0 × 0: a pseudo-terminal
made without one, e.g. ``docker run -t`` or ``script``) gets a fixed 80 × 24 bar: tqdm drew no bar at all
there, and a long command showed nothing until it ended.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

#: the size a bar assumes on a terminal that reports none (columns, rows)
FALLBACK_SIZE = (80, 24)


def reports_size(stream: IO) -> bool:
    """Whether the terminal of ``stream`` reports a size (True for what is not a terminal: tqdm's own way)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):  # (no file descriptor, not a terminal, closed)
        return True
    return size.columns > 0 and size.lines > 0


def shape_options(stream: IO) -> dict[str, Any]:
    """tqdm's size options for a bar on ``stream``."""
    if reports_size(stream):
        return {"dynamic_ncols": True}
    columns, rows = FALLBACK_SIZE
    return {"ncols": columns, "nrows": rows}


def progress_bar(iterable=None, *, stream: IO | None = None, disable: bool | None = None, **options):
    """A tqdm bar on ``stream`` (default stderr) with ``options`` (``total``, ``desc``, ``unit``, …), sized by
    :func:`shape_options`. By default (``disable=None``) it is drawn on a terminal only: into a log file its
    redrawn lines are noise; ``disable=False`` draws it wherever the stream goes."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    return tqdm(iterable, file=stream, disable=disable, **shape_options(stream), **options)
