"""Without the golden data, the run says so in one line (tests/conftest.py's terminal summary)."""

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
