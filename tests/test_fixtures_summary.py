"""tests/conftest.py itself: without the golden data, the run says so in one line (its terminal summary); its
isolation from the user's caches holds for the whole of every test."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import REPO


def _pytest(fixtures: str, *tests: str) -> str:
    env = {**os.environ, "SATCLIP_FIXTURES": fixtures}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *tests],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_missing_fixtures_are_counted_in_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    out = _pytest(
        str(missing),
        "tests/test_map.py::test_world_map_png",  # needs the fixtures
        "tests/test_locate.py::test_fibonacci_grid_is_equal_area",  # does not
        "tests/test_map.py::test_grid_cell_centres",  # does not
    )
    lines = [line for line in out.splitlines() if "golden fixtures" in line]
    assert lines == [
        f"1 test(s) need the golden fixtures and were skipped: {missing} does not exist "
        "(set SATCLIP_FIXTURES=PATH; README.md, 'Tests and benchmarks', says where they come from)"
    ]
    assert "2 passed, 1 skipped" in out


def test_no_line_when_nothing_needed_them(tmp_path):
    out = _pytest(str(tmp_path / "nowhere"), "tests/test_map.py::test_grid_cell_centres")
    assert "golden fixtures" not in out and "1 passed" in out


def test_a_tests_monkeypatch_undo_keeps_the_isolation(monkeypatch):
    """A test's ``monkeypatch.undo()`` undid conftest's patches too: the rest of the test read and wrote the user's
    ``~/.cache/satclip`` (an evaluation rerun read a task sample another CPU had cached, with other fold keys),
    went online and loaded models in "auto" precision."""
    isolated = {name: os.environ.get(name) for name in ("SATCLIP_CACHE", "HF_HOME", "TORCH_HOME", "HF_HUB_OFFLINE",
                                                         "SATCLIP_PRECISION")}  # fmt: skip
    monkeypatch.setenv("SATCLIP_CACHE", "elsewhere")
    monkeypatch.undo()
    assert {name: os.environ.get(name) for name in isolated} == isolated
    assert isolated["HF_HUB_OFFLINE"] == "1" and isolated["SATCLIP_PRECISION"] == "float32"
