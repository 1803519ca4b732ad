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
        clock.now += 60
    assert progress.overall == pytest.approx(0.25)
    with progress.stage("b"):
        clock.now += 120  # 4 minutes for a quarter of the work and half of b: ETA from the pace so far
        progress.update(0.5)
        assert progress.overall == pytest.approx(0.625)
        assert progress.status() == "[2/2] b · 62% · 4:00 elapsed · ETA 2:24"
    assert shown.getvalue().splitlines() == [
        "[1/2] a · 0% · 0:00 elapsed",
        "[1/2] a · 12% · 1:00 elapsed · ETA 7:00",
        "[1/2] a done · 25% · 2:00 elapsed · ETA 6:00",
        "[2/2] b · 25% · 2:00 elapsed · ETA 6:00",
        "[2/2] b · 62% · 4:00 elapsed · ETA 2:24",
        "[2/2] b done · 100% · 4:00 elapsed",
    ]


def test_work_reused_from_an_earlier_run_is_left_out_of_the_pace():
    """A rerun of the demo reuses the corpus, the features and the training in seconds, and the ETA at the pace
    of those seconds said a few seconds were left with the whole evaluation ahead (weights: seconds on the
    reference machine, as the demo's; this machine runs at half its pace)."""
    clock, shown = FakeClock(), io.StringIO()
    progress = StageProgress({"corpus": 20.0, "training": 180.0, "evaluation": 120.0, "report": 2.0}, shown,
                             clock=clock)  # fmt: skip
    clock.now += 6  # the command starting: no stage's work (and the corpus, reused after it, took no time)
    for name in ("corpus", "training"):
        with progress.stage(name):  # reused: done at once
            clock.now += 0.5
            progress.update(1.0)
    with progress.stage("evaluation"):
        progress.update(0.3)  # folds an interrupted run finished, reported at once: reused too
        clock.now += 48  # 0.2 of 120 reference seconds in 48 s: half the reference pace
        progress.update(0.5)
        # 62 reference seconds left (60 of the evaluation, 2 of the report) at half the pace
        assert progress.status() == "[3/4] evaluation · 81% · 0:55 elapsed · ETA 2:04"
        assert progress.reused == pytest.approx(200 + 36)
    # (at the pace of the reused work the ETA said 0:12); work done at 20x the reference pace or slower counts
    fast = StageProgress({"a": 100.0, "b": 100.0}, io.StringIO(), clock=clock)
    with fast.stage("a"):
        clock.now += 5.5
        fast.update(1.0)
    assert fast.reused == 0 and fast.status() == "[1/2] a · 50% · 0:06 elapsed · ETA 0:06"


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


def test_on_a_terminal_one_line_is_redrawn(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")  # (TERM=dumb gets lines: a run of the tests there drew none)

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


def test_the_demo_weighs_its_stages_by_the_run_it_is():
    """--quick weighed its stages as the full demo's (corpus and features a sixth of the time where they take a
    tenth), and --epochs did not change the pretraining's weight."""
    from dataclasses import replace

    from satclip.recipes.demo import FULL, QUICK, QUICK_STAGES, STAGES, stage_seconds

    assert stage_seconds(FULL) == STAGES and stage_seconds(replace(QUICK, workers=1)) == QUICK_STAGES
    assert stage_seconds(replace(QUICK, epochs=2 * QUICK.epochs))["pretraining"] == 2 * QUICK_STAGES["pretraining"]
    assert stage_seconds(replace(FULL, epochs=5)) == {**STAGES, "pretraining": STAGES["pretraining"] / 2}
