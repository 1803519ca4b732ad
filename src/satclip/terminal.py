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


def redraws(stream: IO) -> bool:
    """Whether ``stream`` is a terminal that can redraw a line in place: a terminal, but not one of
    ``TERM=dumb`` (an editor's shell, a CI log viewer), which shows every redraw (carriage returns, block
    characters) as text, as a pipe or a log file would."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # (no isatty, or closed)
        return False
    return terminal and os.environ.get("TERM") != "dumb"


def progress_bar(iterable=None, *, stream: IO | None = None, disable: bool | None = None, **options):
    """A tqdm bar on ``stream`` (default stderr) with ``options`` (``total``, ``desc``, ``unit``, …), sized by
    :func:`shape_options`. By default (``disable=None``) it is drawn where it :func:`redraws` only: into a log
    file its redrawn lines are noise; ``disable=False`` draws it wherever the stream goes."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    disable = not redraws(stream) if disable is None else disable
    return tqdm(iterable, file=stream, disable=disable, **shape_options(stream), **options)
