"""Shared test fixtures: paths to the golden data (``../shared/fixtures`` or ``$SATCLIP_FIXTURES``) and
isolation from user caches.

The golden data is not part of the repository: it was made by running the original SatCLIP code (its
README.md says how). Tests that need it are skipped without it, and the run ends with one line saying how
many were.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
#: the golden data: $SATCLIP_FIXTURES when set, else ../shared/fixtures beside the checkout
FIXTURES = Path(os.environ["SATCLIP_FIXTURES"]) if os.environ.get("SATCLIP_FIXTURES") else SHARED / "fixtures"
REFERENCE = FIXTURES / "satclip-reference"
S2_EXAMPLES = FIXTURES / "s2-examples"
AIR_TEMPERATURE_CSV = FIXTURES / "air-temperature" / "stationDataAll.csv"


#: the start of the skip reason of :func:`require`, counted by :func:`pytest_terminal_summary`
#: float32 embeddings of the same points computed in other batch sizes or thread splits differ by float32 GEMM
#: reassociation: at most this times the embeddings' largest magnitude. Derived, not measured: one dot product
#: of K terms summed in any order is off by ≤ γ_K ≈ K·eps of Σ|terms| (Higham §3.1), K = 512 the sums the
#: location networks' hidden and output layers make (as test_image_model's batch-size bound). Measured: ≤ 9e-6
#: (docs/scale.md), the CPU's SIMD path deciding how much; a point 0.01° off moves by ~4e-4 (median).
FLOAT32_REASSOCIATION = 512 * 2.0**-23
_MISSING = "fixture not available"


def require(path: Path) -> Path:
    """Skip the test when the golden data is not present (it is in CI)."""
    if not path.exists():
        pytest.skip(f"{_MISSING}: {path}")
    return path


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """One line at the end of the run: how many tests were skipped for want of the golden data."""
    reasons = [getattr(r, "longrepr", None) for r in terminalreporter.stats.get("skipped", [])]
    count = sum(1 for r in reasons if isinstance(r, tuple) and str(r[-1]).startswith(f"Skipped: {_MISSING}"))
    if count:
        terminalreporter.write_line(
            f"{count} test(s) need the golden fixtures and were skipped: {FIXTURES} does not exist "
            "(set SATCLIP_FIXTURES=PATH; README.md, 'Tests and benchmarks', says where they come from)",
            yellow=True,
        )


def flip_byte(path: Path, offset: int) -> None:
    """Invert the bits of the byte at ``offset`` of the file ``path`` (its size is kept)."""
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


def users_output(path: Path, as_file: bool) -> Path:
    """Put something of the user's at ``path``: a file, or a directory holding ``notes.txt``; returns the file
    (to check that it is left as it was: it reads "mine")."""
    if as_file:
        path.write_text("mine")
        return path
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    return path / "notes.txt"


def run_in_subprocess_env() -> dict:
    """The environment of a satclip command run by a test in a fresh Python: this process's, with its import path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def one_error_line(err: str) -> str:
    """stderr of a failed command as its one line ``satclip: error: …`` (never "unexpected error")."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("satclip: error: "), err
    assert "unexpected error" not in lines[0]
    return lines[0]


@contextlib.contextmanager
def ctrl_c_at_default():
    """Around starting a command: Ctrl-C reaches it as from a terminal. A shell's background job (a pytest run
    with ``&`` in a script) ignores Ctrl-C, and so would the commands it starts: their Ctrl-C test failed."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:  # (a Python handler is reset to the default in the command started)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory):
    """Keep tests out of the user's caches and off the network-backed hub cache. Patched apart from the test's
    ``monkeypatch``: its ``undo()`` undid this too, and the rest of the test read and wrote ``~/.cache/satclip`` (a
    task sample cached there by a run on another CPU gave an evaluation rerun other points, and other fold keys)."""
    root = tmp_path_factory.mktemp("caches")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SATCLIP_CACHE", str(root / "satclip"))
        patch.setenv("HF_HOME", str(root / "hf"))
        patch.setenv("TORCH_HOME", str(root / "torch"))  # (torchvision/timm weights: ~/.cache/torch)
        patch.setenv("HF_HUB_OFFLINE", "1")
        # (huggingface_hub reads the variable once, at import: imported while collecting a test module, before
        # this fixture set it, it stayed online, and a later test of the offline cache tried huggingface.co)
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:
            patch.setattr(constants, "HF_HUB_OFFLINE", True)
        patch.setenv("MPLBACKEND", "Agg")
        # (a fresh cache holds no precision calibration: what this process timed and chose for a model in an earlier
        # test's cache was taken, and a test of "auto" passed or failed by the tests before it)
        hub = sys.modules.get("satclip.io.hub")
        if hub is not None:  # (a hub an earlier test's fake left unanswered sent this one's fetches to the cache)
            hub._UNANSWERED.clear()
        precision = sys.modules.get("satclip.models.precision")
        if precision is not None:
            precision._CALIBRATED.clear()
            precision._TIMED.clear()
        yield


@pytest.fixture(autouse=True)
def float32_by_default():
    """satclip.load's default precision is "auto", which picks bf16 on CPUs with AMX/AVX512-BF16 and so
    gives machine-dependent results; tests whose tolerances were derived for float32 get float32 unless
    they ask for a precision (tests of "auto" itself remove the variable). Patched apart from the test's
    ``monkeypatch``, whose ``undo()`` would give the rest of the test "auto"."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SATCLIP_PRECISION", "float32")
        yield
