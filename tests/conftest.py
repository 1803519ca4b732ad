"""Shared test fixtures: paths to the golden data in ../shared and isolation from user caches."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
REFERENCE = FIXTURES / "satclip-reference"
S2_EXAMPLES = FIXTURES / "s2-examples"
AIR_TEMPERATURE_CSV = FIXTURES / "air-temperature" / "stationDataAll.csv"


def require(path: Path) -> Path:
    """Skip the test when golden data from ../shared is not present (it is in CI)."""
    if not path.exists():
        pytest.skip(f"fixture not available: {path}")
    return path


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch):
    """Keep tests out of the user's caches and off the network-backed hub cache."""
    root = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("SATCLIP_CACHE", str(root / "satclip"))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
