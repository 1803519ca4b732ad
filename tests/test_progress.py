"""The demo's one progress display: weighted stages, elapsed time and ETA, throttled lines off a terminal."""

from __future__ import annotations

import io

import pytest

from satclip.recipes import progress as progress_module
from satclip.recipes.progress import StageProgress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_weighted_fraction_elapsed_and_eta():
    clock, shown = FakeClock(), io.StringIO()
    progress = StageProgress({"a": 1.0, "b": 3.0}, shown, clock=clock)
    with progress.stage("a"):
        clock.now += 60
        progress.update(0.5)
        assert progress.overall == pytest.approx(0.125)
    assert progress.overall == pytest.approx(0.25)
    with progress.stage("b"):
        clock.now += 60  # 2 minutes for a quarter of the work done and half of b: ETA from the pace so far
        progress.update(0.5)
        assert progress.overall == pytest.approx(0.625)
        assert progress.status() == "[2/2] b · 62% · 2:00 elapsed · ETA 1:12"
    assert shown.getvalue().splitlines() == [
        "[1/2] a · 0% · 0:00 elapsed",
        "[1/2] a · 12% · 1:00 elapsed · ETA 7:00",
        "[1/2] a done · 25% · 1:00 elapsed · ETA 3:00",
        "[2/2] b · 25% · 1:00 elapsed · ETA 3:00",
        "[2/2] b · 62% · 2:00 elapsed · ETA 1:12",
        "[2/2] b done · 100% · 2:00 elapsed",
    ]


def test_lines_are_throttled_off_a_terminal():
    clock, shown = FakeClock(), io.StringIO()
    progress = StageProgress({"only": 1.0}, shown, clock=clock)
    with progress.stage("only"):
        for step in range(1, 101):  # 100 updates over 99 s: a line at most every LOG_EVERY seconds
            clock.now += 1
            progress.update(step / 100)
    lines = shown.getvalue().splitlines()
    assert 2 + 99 // progress_module.LOG_EVERY - 1 <= len(lines) <= 2 + 99 // progress_module.LOG_EVERY + 1


def test_unknown_stage_and_bad_weights_are_refused():
    with pytest.raises(ValueError, match="positive weights"):
        StageProgress({"a": 0.0}, io.StringIO())
    with pytest.raises(KeyError, match="unknown stage 'c'"):
        with StageProgress({"a": 1.0}, io.StringIO()).stage("c"):
            pass


def test_on_a_terminal_one_line_is_redrawn():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown = Terminal()
    progress = StageProgress({"a": 1.0, "b": 1.0}, shown)
    for name in ("a", "b"):
        with progress.stage(name):
            progress.update(0.5)
    progress.close()
    text = shown.getvalue()
    assert text.count("\n") == 1 and text.count("\r") > 3  # one line, redrawn in place
    assert text.rstrip().split("\r")[-1].startswith("[2/2] b ") and "100% · 0:00 elapsed" in text
