"""Progress bars on a terminal that reports no size (0 × 0: ``docker run -t``, ``script``): tqdm drew nothing
there, so a long `satclip embed`, `map`, `cache build` or the demo showed no progress until it ended."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

from satclip.recipes.progress import StageProgress


@pytest.fixture(autouse=True)
def _a_terminal_that_redraws(monkeypatch):
    """Tests run from a TERM=dumb terminal (which gets lines, not a bar) see the bars a terminal shows."""
    monkeypatch.setenv("TERM", "xterm")


def _terminal(columns: int, rows: int) -> tuple[int, int]:
    """A pseudo-terminal ``(master, slave)`` whose size is ``columns`` × ``rows``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def _read_all(master: int) -> str:
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # (the other end closed)
            break
        if not data:
            break
        out += data
    os.close(master)
    return out.decode(errors="replace")


@pytest.mark.parametrize(("columns", "rows"), [(0, 0), (100, 30)])
def test_embed_shows_its_bar_on_a_terminal_of_any_reported_size(tmp_path, columns, rows):
    points = np.random.default_rng(0).uniform([-180, -60], [180, 80], size=(3000, 2))
    table = tmp_path / "points.csv"
    table.write_text("lon,lat\n" + "\n".join(f"{x:.4f},{y:.4f}" for x, y in points) + "\n")
    master, slave = _terminal(columns, rows)
    command = [sys.executable, "-m", "satclip", "embed", str(table), "-o", str(tmp_path / "out.parquet"),
               "--model", "bluemarble-l10"]  # fmt: skip
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    shown = _read_all(master)
    assert process.wait() == 0, shown[-2000:]
    assert "embedding: 100%" in shown and "3.00k/3.00k" in shown, shown[-2000:]


def _half_a_stage(stream) -> None:
    """The demo's progress display of two stages on ``stream``, the first half done, then closed."""
    progress = StageProgress({"corpus": 1.0, "pretraining": 3.0}, stream)
    with progress.stage("corpus"):
        progress.update(0.5)
    progress.close()


def test_the_demo_progress_line_shows_on_a_terminal_that_reports_no_size():
    master, slave = _terminal(0, 0)
    with os.fdopen(slave, "w") as stream:
        _half_a_stage(stream)
    shown = _read_all(master)
    assert "[1/2] corpus" in shown and "[2/2]" not in shown


def test_a_dumb_terminal_gets_the_progress_lines_of_a_pipe(monkeypatch):
    """`TERM=dumb` (an editor's shell, a CI log viewer) got the redrawn bar: 62 carriage returns and block
    characters shown as text. It gets a line per stage, as a pipe does."""
    from satclip.terminal import progress_bar

    monkeypatch.setenv("TERM", "dumb")
    master, slave = _terminal(100, 30)
    with os.fdopen(slave, "w") as stream:
        _half_a_stage(stream)
        assert progress_bar(range(3), stream=stream).disable
    shown = _read_all(master)
    assert "\r" not in shown.replace("\r\n", "\n") and "█" not in shown, repr(shown)
    assert "[1/2] corpus done · 25% ·" in shown, repr(shown)


def test_embed_draws_no_bar_into_a_log(tmp_path):
    """`satclip embed … 2>log` wrote tqdm's redrawn bar (\\r-separated) into the log, as no other command did."""
    table = tmp_path / "points.csv"
    table.write_text("lon,lat\n10,50\n-60,-5\n")
    command = [sys.executable, "-m", "satclip", "embed", str(table), "-o", str(tmp_path / "out.parquet"),
               "--model", "bluemarble-l10"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0 and "embedding:" not in done.stderr and "\r" not in done.stderr, done.stderr
