"""Progress bars on the terminal (tqdm, on stderr), made in one place for the commands and the demo.

A bar follows the terminal's width as it changes. A terminal that reports no size (0 × 0: a pseudo-terminal
made without one, e.g. ``docker run -t`` or ``script``) gets a fixed 80 × 24 bar: tqdm drew no bar at all
there, and a long command showed nothing until it ended.
"""

from __future__ import annotations

import os
import sys
import time
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


class ProgressLines:
    """A progress report for where a bar cannot be redrawn (a pipe, a log file, ``TERM=dumb``): a plain line of the
    ``unit`` count done of ``total`` with the elapsed time and the latest description, at most every ``every`` seconds
    and at the end, with tqdm's ``update``/``set_postfix_str``/``close`` (a tqdm bar wrote its redraws into logs,
    carriage returns and block characters)."""

    def __init__(self, total: int, unit: str, stream: IO | None = None, every: float = 30.0):
        self.total, self.unit, self.every, self.done, self.postfix = total, unit, every, 0, ""
        self.stream = sys.stderr if stream is None else stream
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.done:
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        after = f", {self.postfix}" if self.postfix else ""
        print(f"{self.done:,} of {self.total:,} {self.unit}s{share} in {self.last - self.start:.0f} s{after}",
              file=self.stream, flush=True)

