"""A full disk (ENOSPC) or a file-size limit (EFBIG, ``ulimit -f``) while satclip writes a model, checkpoint,
export or database: one line naming the file (exit 1), never "unexpected error" or a C++ abort, and nothing
left behind, neither under the output's name nor as a temporary.

Real failures, no mocks: the full disk is a 1 MiB tmpfs (mounting needs root with CAP_SYS_ADMIN; skipped
elsewhere), the size limit ``RLIMIT_FSIZE`` (any user; Python ignores SIGXFSZ, so a write past it fails with
EFBIG) set in the ``satclip`` subprocess or, for library calls, around the call.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import resource
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import satclip
from satclip import safe_output
from satclip.retrieval.database import RetrievalDatabase, build_database

from .conftest import one_error_line
from .test_retrieval import tiny_cache, tiny_model

#: bytes a file may grow to under the size limit: more than any config, manifest or log, less than the models
#: (bluemarble-l40: 5 MB), the retrieval database's arrays and the checkpoints written below
LIMIT = 64 * 1024
DISK_FULL = "satclip: error: disk full while writing {file}: free space or choose another output"
TOO_LARGE = ("satclip: error: file too large for this file system or the file-size limit (ulimit -f): {file}: "
             "raise the limit or write elsewhere")  # fmt: skip


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs at ``tmp_path/disk``, unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tiny tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {done.stderr.strip()}")
    try:
        yield disk
    finally:
        gc.collect()  # (a writer that failed may hold its file open until collected: "target is busy")
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(disk)], check=True)  # detached now, freed once files close


@pytest.fixture(params=["disk full", "file too large"])
def tight(request, tmp_path):
    """``(directory to write into, size limit for the writer or None, expected line)`` for both failures."""
    if request.param == "disk full":
        return request.getfixturevalue("full_disk"), None, DISK_FULL
    out = tmp_path / "out"
    out.mkdir()
    return out, LIMIT, TOO_LARGE


def satclip_cli(*argv: str, limit: int | None, cwd) -> subprocess.CompletedProcess:
    """``python -m satclip ARGV``, its files limited to ``limit`` bytes (``ulimit -f``) where given."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.run(
        [sys.executable, "-m", "satclip", *argv], capture_output=True, text=True, cwd=cwd,
        preexec_fn=limited if limit is not None else None,
    )  # fmt: skip


@contextlib.contextmanager
def size_limit(limit: int | None):
    """Limit the size of the files this process writes for the block (nothing where ``limit`` is None)."""
    if limit is None:
        yield
        return
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)


def check_failed(done: subprocess.CompletedProcess, expected: str, file) -> None:
    assert done.returncode == 1, done.stderr[-3000:]  # (134: torch.jit.save aborted)
    assert one_error_line(done.stderr) == expected.format(file=file)


def entries(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- the CLI --------------------------------------------------------------------------------------


def test_convert_native_that_does_not_fit_is_one_line_and_leaves_nothing(tight, tmp_path):
    directory, limit, expected = tight
    out = directory / "model"
    done = satclip_cli("convert", "--target", "native", "bluemarble-l40", str(out), limit=limit, cwd=tmp_path)
    check_failed(done, expected, out / "model.safetensors")  # (not "unexpected error (SafetensorError)")
    assert entries(directory) == []  # no model, no temporary


@pytest.mark.parametrize(("target", "name"), [("original", "m.ckpt"), ("torchgeo", "m.pth")])
def test_torch_save_outputs_that_do_not_fit_are_one_line(tight, tmp_path, target, name):
    directory, limit, expected = tight
    out = directory / name
    argv = ("convert", "--target", target, "bluemarble-l40", str(out), "--location-only")
    check_failed(satclip_cli(*argv, limit=limit, cwd=tmp_path), expected, out)  # (not "[enforce fail at …")
    assert entries(directory) == []


def test_torchscript_export_that_does_not_fit_is_one_line_not_an_abort(tight, tmp_path):
    directory, limit, expected = tight
    out = directory / "m.pt"
    argv = ("export", "--format", "torchscript", "--model", "bluemarble-l40", "-o", str(out))
    check_failed(satclip_cli(*argv, limit=limit, cwd=tmp_path), expected, out)
    assert entries(directory) == []


def test_retrieval_database_that_does_not_fit_is_one_line(tight, tmp_path):
    directory, limit, expected = tight
    model_dir = tmp_path / "model"
    tiny_model().save(model_dir)
    cache = tiny_cache(tmp_path / "cache", n=10000)  # lonlat 160 kB, embeddings 640 kB each (float32)
    db = directory / "db"
    argv = ("retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(db), "--dtype",
            "float32")  # fmt: skip
    done = satclip_cli(*argv, limit=limit, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    arrays = {expected.format(file=db / name) for name in ("lonlat.npy", "location.npy", "image.npy")}
    assert one_error_line(done.stderr) in arrays  # (not "OSError: 5120 requested and 2016 written")
    assert entries(directory) == []


# --- library writers ------------------------------------------------------------------------------


def test_checkpoint_that_does_not_fit_names_it_and_leaves_nothing(tight):
    from satclip.train.callbacks import AtomicCheckpointIO

    directory, limit, _ = tight
    path = directory / "last.ckpt"
    checkpoint = {"state_dict": {"w": torch.zeros(2**19)}, "epoch": 3}  # 2 MB
    with pytest.raises(OSError) as err, size_limit(limit):
        AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    assert err.value.errno == (27 if limit else 28) and err.value.filename == str(path)
    assert entries(directory) == []  # neither the checkpoint, its .sha256 nor a temporary


def test_feature_cache_that_does_not_fit_names_the_file(tight):
    directory, limit, _ = tight
    with pytest.raises(OSError) as err, size_limit(limit):
        tiny_cache(directory / "cache", n=40000)  # features: 40000 x 2 x 16 float32 = 5 MB
    assert err.value.errno == (27 if limit else 28)
    assert err.value.filename == str(directory / "cache" / "features.npy")
    assert entries(directory) == []


# --- what is written where there is room is what was written before ------------------------------------


def test_native_weights_are_the_bytes_safetensors_writes(tmp_path):
    from satclip.cli import main

    out = tmp_path / "model"
    assert main(["convert", "--target", "native", "bluemarble-l40", str(out)]) == 0
    tensors = load_file(out / "model.safetensors")
    save_file(tensors, tmp_path / "reference.safetensors")
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "reference.safetensors").read_bytes()
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~_umask()  # as a new file gets


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_torch_and_numpy_files_read_back_as_written(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "n": 3}
    with safe_output.atomic_file(tmp_path / "s.pt") as tmp:
        safe_output.write_serialised(tmp, lambda buffer: torch.save(state, buffer))
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert loaded["n"] == 3 and torch.equal(loaded["w"], state["w"])
    assert zipfile.ZipFile(tmp_path / "s.pt").testzip() is None
    values = np.random.default_rng(0).normal(size=(3000, 700)).astype(np.float32)  # more than numpy's 16 MiB chunk
    with safe_output.writing(tmp_path / "a.npy") as handle:
        np.save(handle, values)
    buffer = io.BytesIO()
    np.save(buffer, values)
    assert (tmp_path / "a.npy").read_bytes() == buffer.getvalue()


def test_retrieval_database_is_unchanged_where_it_fits(tmp_path):
    model_dir = tmp_path / "model"
    tiny_model().save(model_dir)
    cache = tiny_cache(tmp_path / "cache")
    db = build_database(tmp_path / "db", satclip.load_model(model_dir), cache, model_source=str(model_dir))
    for name in ("lonlat.npy", "location.npy", "image.npy"):
        array = np.load(db.path / name)
        buffer = io.BytesIO()
        np.save(buffer, array)
        assert (db.path / name).read_bytes() == buffer.getvalue()
    assert isinstance(RetrievalDatabase.open(db.path), RetrievalDatabase)
