"""The output-safety layer, and the write-side attacks of issue 11 replayed against the real commands."""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from satclip import safe_output
from satclip.errors import BadInputError, LockedError, OutputExistsError, SatclipError

from .conftest import one_error_line, run_in_subprocess_env
from .test_embed_cli import checksum, embed, model, points  # noqa: F401 - fixtures

SRC = Path(__file__).resolve().parents[1] / "src"


def user_files(directory: Path) -> Path:
    """A directory of someone else's files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "thesis.tex").write_text("years of work")
    (directory / "data.csv").write_text("a,b\n1,2\n")
    return directory


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def hold_lock(target: Path, then: str, first: str = "") -> subprocess.Popen:
    """A real process that runs ``first``, takes the lock on ``target``, prints ``locked`` and then runs ``then``."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        from satclip import safe_output
        {first}
        with safe_output.exclusive({str(target)!r}):
            print("locked", flush=True)
            {then}
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert process.stdout.readline().strip() == b"locked"
    return process


# --------------------------------------------------------------------------------------------- the layer
def test_atomic_file_leaves_the_old_file_on_failure_and_no_temporaries(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with safe_output.atomic_file(target, overwrite=True) as tmp:
            tmp.write_bytes(b"half of the new")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with safe_output.atomic_file(target, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_existing_files_need_overwrite_and_directories_are_never_replaced_by_files(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        safe_output.write_text(tmp_path / "f", "x", overwrite=False)
    user = user_files(tmp_path / "d")
    before = snapshot(user)
    with pytest.raises(OutputExistsError, match="is a directory"):
        safe_output.write_text(user, "x", overwrite=True)
    assert snapshot(user) == before
    assert (tmp_path / "f").read_text() == "mine"


def test_only_satclip_directories_are_replaced_or_deleted(tmp_path):
    user = user_files(tmp_path / "user")
    before = snapshot(user)
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="did not create"):
            with safe_output.atomic_dir(user, overwrite=overwrite) as tmp:
                (tmp / "x").write_text("x")
    with pytest.raises(OutputExistsError, match="refusing to delete"):
        safe_output.remove_owned(user)
    with pytest.raises(OutputExistsError, match="did not create"):
        safe_output.make_owned_dir(user)
    assert snapshot(user) == before

    ours = tmp_path / "ours"
    with safe_output.atomic_dir(ours) as tmp:
        (tmp / "a").write_text("1")
    assert safe_output.is_owned(ours)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with safe_output.atomic_dir(ours) as tmp:
            pass
    with safe_output.atomic_dir(ours, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in ours.iterdir()) == [safe_output.MARKER, "b"]
    safe_output.remove_owned(ours)
    assert not ours.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user"]

    empty = tmp_path / "empty"  # made by the user beforehand: nothing to lose, no --overwrite needed
    empty.mkdir()
    with safe_output.atomic_dir(empty) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in empty.iterdir()) == [safe_output.MARKER, "c"]
    safe_output.remove_owned(empty)


def test_a_symbolic_link_is_named_as_one(tmp_path):
    """A link to a directory was refused as "exists and is not a directory"; a link loop on an output's way was
    an "unexpected error (RuntimeError)", and a dangling one named satclip's hidden lock file."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputExistsError, match="link is a symbolic link; give the directory it points to"):
        safe_output.make_owned_dir(tmp_path / "link", kind="demo")
    with pytest.raises(OutputExistsError, match="link is a symbolic link; give the directory it points to"):
        safe_output.check_output(tmp_path / "link", overwrite=True, directory=True)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    for name in ("loop", "dangling"):
        with pytest.raises(BadInputError, match=f"{name} is a symbolic link to nothing"):
            safe_output.check_output(tmp_path / name / "out.parquet", inputs=[tmp_path / "real"])
        with pytest.raises(BadInputError, match=f"{name} is a symbolic link to nothing"):
            safe_output.make_dirs(tmp_path / name / "run")


def test_another_satclip_output_inside_one_is_named_as_such(tmp_path):
    """A model converted into a corpus (before convert refused that) blocked `data bluemarble --out CORPUS
    --overwrite` with an untrue message: "it also holds model/config.json, …, which satclip did not write"."""
    from satclip.data import bluemarble as bm

    corpus = bm.build_bluemarble(tmp_path / "corpus", bm.BlueMarbleParams(n=5, patch_size=8, seed=1))
    with safe_output.atomic_dir(corpus / "model") as tmp:  # as convert wrote it there
        (tmp / "config.json").write_text('{"format": "satclip"}')
    with pytest.raises(OutputExistsError) as refused:
        safe_output.check_output(corpus, overwrite=True, directory=True, kind=bm.KIND)
    assert str(refused.value) == (
        f"refusing to replace {corpus}, satclip's {bm.KIND} directory: it also holds model (a satclip model), which "
        "the Blue Marble corpus did not write; move those out and run again"
    )


def test_keep_only_written_deletes_only_what_an_earlier_run_recorded(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(OutputExistsError):
        safe_output.keep_only_written(plain, "figures", [])
    out = safe_output.make_owned_dir(tmp_path / "out")
    for name in ("a.png", "b.png", "mine.png"):
        (out / name).write_bytes(b"x")
    safe_output.keep_only_written(out, "figures", [out / "a.png", out / "b.png"])
    safe_output.keep_only_written(out, "figures", [out / "b.png"])
    assert sorted(p.name for p in out.glob("*.png")) == ["b.png", "mine.png"]
    (out / safe_output.MARKER).write_text("{damaged")  # a damaged record deletes nothing and is written anew
    safe_output.keep_only_written(out, "figures", [])
    assert sorted(p.name for p in out.glob("*.png")) == ["b.png", "mine.png"] and safe_output.is_owned(out)
    marker = safe_output.json.loads((out / safe_output.MARKER).read_text())
    marker["files"]["figures"] = ["../plain/x.png"]  # a record naming a path elsewhere deletes nothing
    (plain / "x.png").write_bytes(b"x")
    (out / safe_output.MARKER).write_text(safe_output.json.dumps(marker))
    safe_output.keep_only_written(out, "figures", [])
    assert (plain / "x.png").exists()


def test_a_published_directory_is_replaced_or_deleted_only_with_nothing_of_the_users_in_it(tmp_path):
    """``convert --overwrite`` deleted the notes a user had put into a model directory satclip wrote."""
    out = tmp_path / "model"
    for content in (b"one", b"two"):
        with safe_output.atomic_dir(out, overwrite=True) as tmp:
            (tmp / "weights.bin").write_bytes(content)
    assert (out / "weights.bin").read_bytes() == b"two"  # its own directory is replaced
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="satclip wrote it, but not notes.txt in it"):
        with safe_output.atomic_dir(out, overwrite=True) as tmp:
            (tmp / "weights.bin").write_bytes(b"three")
    with pytest.raises(OutputExistsError, match="refusing to delete .*notes.txt"):
        safe_output.remove_owned(out)
    assert (out / "notes.txt").read_text() == "mine" and (out / "weights.bin").read_bytes() == b"two"


def test_a_read_only_directory_is_refused_before_it_is_replaced_or_deleted(tmp_path, monkeypatch):
    """`retrieval build --overwrite` of a read-only (555) database swapped the new one in, then failed deleting the
    old one's files ("permission denied", exit 1) and left it beside it as a hidden copy. (The test runs as any
    user, root included, whom no permission stops: a user's refusal is faked from the mode bits.)"""
    out = tmp_path / "db"
    with safe_output.atomic_dir(out) as tmp:
        (tmp / "location.npy").write_bytes(b"old")
    out.chmod(0o555)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: real_access(path, mode, **kwargs) and not (
        mode & os.W_OK and not os.stat(path).st_mode & 0o200))
    try:
        started = []
        with pytest.raises(SatclipError, match=f"refusing to replace {out}: it is read-only, so satclip cannot "
                                               f"delete its files; make it writable \\(chmod u\\+w {out}\\)"):
            with safe_output.atomic_dir(out, overwrite=True) as tmp:
                started.append(tmp)
        with pytest.raises(SatclipError, match=f"refusing to delete {out}: it is read-only"):
            safe_output.remove_owned(out)
        assert not started and (out / "location.npy").read_bytes() == b"old"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]
    finally:
        out.chmod(0o755)


def test_a_users_file_inside_a_published_directorys_folder_is_never_deleted(tmp_path):
    """``--overwrite`` of a published Zarr store deleted a user's file in one of its folders
    (``z.zarr/embedding/notes.txt``): only the top-level names were compared with those satclip wrote."""
    out = tmp_path / "z.zarr"
    with safe_output.atomic_dir(out) as tmp:
        (tmp / "embedding").mkdir()
        (tmp / "embedding" / "0.0").write_bytes(b"chunk")
        (tmp / ".zattrs").write_text("{}")
    (out / "embedding" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="satclip wrote it, but not embedding/notes.txt in it"):
        with safe_output.atomic_dir(out, overwrite=True) as tmp:
            (tmp / ".zattrs").write_text("{}")
    with pytest.raises(OutputExistsError, match="refusing to delete .*embedding/notes.txt"):
        safe_output.remove_owned(out)
    assert (out / "embedding" / "notes.txt").read_text() == "mine"
    (out / "embedding" / "notes.txt").unlink()
    # a directory published by a satclip that recorded top-level names only: a recorded folder covers its files
    marker = json.loads((out / safe_output.MARKER).read_text())
    marker["files"]["published"] = ["embedding", ".zattrs"]
    (out / safe_output.MARKER).write_text(json.dumps(marker))
    with safe_output.atomic_dir(out, overwrite=True) as tmp:
        (tmp / ".zattrs").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == sorted([".zattrs", safe_output.MARKER])


def test_an_empty_folder_of_the_users_inside_a_published_directory_is_never_deleted(tmp_path):
    """`convert --overwrite` deleted an empty folder the user made in a model directory it had written: only
    files counted as the user's. An empty folder satclip published is still its own."""
    out = tmp_path / "model"
    with safe_output.atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "empty-of-satclips").mkdir()
    (out / "mine").mkdir()
    with pytest.raises(OutputExistsError, match="satclip wrote it, but not mine in it"):
        with safe_output.atomic_dir(out, overwrite=True) as tmp:
            (tmp / "config.json").write_text("{}")
    assert (out / "mine").is_dir()
    (out / "mine").rmdir()
    with safe_output.atomic_dir(out, overwrite=True) as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == sorted(["config.json", safe_output.MARKER])


def test_a_users_empty_directory_is_filled_not_replaced(tmp_path, model, points):  # noqa: F811
    """An empty directory a user made private (0o700) for an output was replaced by a new one with the usual
    permissions (0o755): the embeddings became readable to everyone. It is now kept and filled."""
    out = tmp_path / "private.zarr"
    out.mkdir(mode=0o700)
    out.chmod(0o700)
    inode = out.stat().st_ino
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    assert embed(source, "-o", out, "--model", model) == 0
    assert out.stat().st_ino == inode and oct(out.stat().st_mode & 0o777) == "0o700"
    assert safe_output.owned_kind(out) == "output" and len(list(out.iterdir())) > 1
    assert embed(source, "-o", out, "--model", model, "--overwrite") == 0  # replaced as satclip's: still private
    assert oct(out.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("again", [[], ["--overwrite"]])
def test_a_fill_of_an_empty_directory_stopped_midway_is_completed_by_the_rerun(  # noqa: F811
    tmp_path, model, points, monkeypatch, again  # noqa: F811
):
    """A run stopped while it moved its Zarr store into the user's empty directory left part of it there; the
    rerun asked for --overwrite, and with it published the entries not yet moved alone (the store lost .zgroup
    and lon, and exited 0). The rerun now moves the rest, and the store equals an uninterrupted run's."""
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    clean = tmp_path / "clean.zarr"
    assert embed(source, "-o", clean, "--model", model) == 0
    out = tmp_path / "empty.zarr"
    out.mkdir()
    real, moved = os.replace, []

    def stopping(src, dst):
        if Path(dst).parent == out and Path(dst).name != safe_output.MARKER:
            if len(moved) == 2:
                raise KeyboardInterrupt
            moved.append(Path(dst).name)
        return real(src, dst)

    monkeypatch.setattr(safe_output.os, "replace", stopping)
    assert embed(source, "-o", out, "--model", model) == 130
    monkeypatch.setattr(safe_output.os, "replace", real)
    assert safe_output.is_owned(out) and 2 <= len(list(out.iterdir())) < len(list(clean.iterdir()))
    assert embed(source, "-o", out, "--model", model, *again) == 0
    strip = lambda d: {k: v for k, v in snapshot(d).items() if k != safe_output.MARKER}  # noqa: E731
    assert strip(out) == strip(clean)
    assert not (tmp_path / "empty.zarr.partial").exists()


def test_an_old_directory_left_by_a_killed_swap_is_removed_by_the_next(tmp_path):
    """A run killed between moving the old output aside and deleting it left that whole old copy as a hidden
    sibling for ever: the next publish of the same output removes it (a live run's is kept)."""
    out = tmp_path / "out.zarr"
    with safe_output.atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    stale = out.with_name(f".out.zarr{safe_output._TMP_TAG}{dead_pid()}-abcdef")
    out.rename(stale)  # as publish leaves it when killed between its two renames
    with safe_output.atomic_dir(out) as tmp:
        (tmp / "a").write_text("2")
    live = out.with_name(f".out.zarr{safe_output._TMP_TAG}{os.getpid()}-abcdef")
    live.mkdir()
    with safe_output.atomic_dir(out, overwrite=True) as tmp:
        (tmp / "a").write_text("3")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "out.zarr"])
    assert (out / "a").read_text() == "3"


def test_a_replaced_file_keeps_its_permissions(tmp_path, model, points):  # noqa: F811
    out = tmp_path / "e.npy"
    out.write_bytes(b"old")
    out.chmod(0o600)
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    assert embed(source, "-o", out, "--model", model, "--overwrite") == 0
    assert oct(out.stat().st_mode & 0o777) == "0o600" and np.load(out).ndim == 2


def test_a_mount_point_is_filled_in_place(tmp_path, monkeypatch):
    """An empty mount point given as an output failed with 'unexpected error … Device or resource busy': it
    cannot be renamed. satclip's own directory there is now emptied of its recorded files and filled."""
    out = tmp_path / "mnt"
    out.mkdir()
    renamed = []
    real_rename = Path.rename
    monkeypatch.setattr(os.path, "ismount", lambda path: Path(path) == out)
    monkeypatch.setattr(Path, "rename", lambda self, target: renamed.append(self) or real_rename(self, target))
    inode = out.stat().st_ino
    for content in (b"one", b"two"):
        with safe_output.atomic_dir(out, overwrite=True) as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / content.decode()).write_bytes(content)
    assert out not in renamed and out.stat().st_ino == inode
    assert snapshot(out) == {"sub/two": b"two", safe_output.MARKER: (out / safe_output.MARKER).read_bytes()}
    (out / "notes.txt").write_text("mine")  # a user's file there is refused as anywhere else
    with pytest.raises(OutputExistsError, match="not notes.txt"):
        with safe_output.atomic_dir(out, overwrite=True) as tmp:
            (tmp / "x").write_bytes(b"x")
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "two").exists()


def test_a_file_appearing_in_an_empty_output_directory_stays(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    check, checks = safe_output.check_output, []

    def check_then_user_writes(path, **kwargs):  # the user writes just after publishing's last check
        check(path, **kwargs)
        checks.extend([path] if Path(path) == out else [])
        if len(checks) == 3:  # (atomic_dir's, then publish's first and last)
            (out / "notes.txt").write_text("mine")

    monkeypatch.setattr(safe_output, "check_output", check_then_user_writes)
    with pytest.raises(OutputExistsError, match="no longer empty"):
        with safe_output.atomic_dir(out) as tmp:
            (tmp / "x").write_bytes(b"x")
    assert snapshot(out) == {"notes.txt": b"mine"}


def test_output_equal_to_an_input_is_refused(tmp_path):
    source = tmp_path / "points.csv"
    source.write_text("lon,lat\n0,0\n")
    for same in (source, tmp_path / "." / "points.csv"):
        with pytest.raises(BadInputError, match="also an input"):
            safe_output.check_output(same, overwrite=True, inputs=[source])
    (tmp_path / "link.csv").symlink_to(source)
    with pytest.raises(BadInputError, match="also an input"):
        safe_output.check_output(tmp_path / "link.csv", overwrite=True, inputs=[source])


def test_a_directory_removal_stopped_midway_leaves_no_half_directory(tmp_path):
    """remove_owned renames first: a process killed in its rmtree leaves a temporary, not a marker-less
    half of the directory, and the next make_owned_dir of the path removes it."""
    work = safe_output.make_owned_dir(tmp_path / "out.parquet.partial", kind="embed-work")
    for i in range(50):
        (work / f"row-group-{i:05d}.footer").write_bytes(b"x" * 100)
    code = textwrap.dedent(f"""
        import os, shutil
        from satclip import safe_output
        def killed(path):
            for entry in sorted(os.listdir(path))[:20]:
                os.unlink(os.path.join(path, entry))
            os._exit(9)
        shutil.rmtree = killed
        safe_output.remove_owned({str(work)!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 9
    assert not work.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.parquet.partial.satclip-tmp-")]
    assert len(leftovers) == 1 and len(list(leftovers[0].iterdir())) == 31
    assert safe_output.make_owned_dir(work, kind="embed-work") == work
    assert [p.name for p in tmp_path.iterdir()] == [work.name]


def test_temporaries_of_dead_processes_are_cleaned_by_the_next_write(tmp_path):
    target = tmp_path / "out.bin"
    dead = tmp_path / f".out.bin.satclip-tmp-{dead_pid()}-abcdef"
    alive = tmp_path / f".out.bin.satclip-tmp-{os.getpid()}-abcdef"
    dead_dir = tmp_path / f".out.bin.satclip-tmp-{dead_pid()}-012345"
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    dead_dir.mkdir()
    (dead_dir / "part").write_bytes(b"x")
    safe_output.write_bytes(target, b"ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "out.bin"])


def test_a_temporary_of_another_host_or_container_is_left_alone(tmp_path, monkeypatch):
    """A temporary was judged dead from its PID alone: one written in another container sharing the volume (or on
    another host over NFS), whose PID does not exist here, was deleted while its writer ran. Its name now records
    whose PIDs it counts (:func:`host_id`); only this host's and container's (and an older satclip's) are judged."""
    target = tmp_path / "m.onnx"
    gone = dead_pid()
    with monkeypatch.context() as patch:
        patch.setattr(safe_output.os, "getpid", lambda: gone)  # a PID that names no process here
        ours = safe_output.temp_path(target)
        patch.setattr(safe_output, "host_id", lambda: "0123abcd", raising=False)  # written in another container
        theirs = safe_output.temp_path(target)
    older = target.with_name(f".m.onnx{safe_output._TMP_TAG}{gone}-abcdef")  # an older satclip's name
    for temporary in (ours, theirs, older):
        temporary.mkdir()
        (temporary / "data").write_text("being written")
    safe_output.write_bytes(target, b"ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([theirs.name, "m.onnx"])
    assert len(theirs.name) - len(".m.onnx") <= safe_output.WORK_NAME_BYTES - len(".partial")


def test_a_live_temporary_is_kept_by_a_run_in_another_pid_namespace(tmp_path):
    """`unshare --pid --fork --mount-proc satclip export … -o m2.onnx` deleted `.m2.onnx.satclip-tmp-PID-…` of a
    live process outside it, whose PID did not exist in the new namespace."""
    if subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode:
        pytest.skip("unshare --pid needs privileges this test does not have")
    target = tmp_path / "m2.onnx"
    live = safe_output.temp_path(target)  # this live process's
    live.mkdir()
    (live / "data").write_text("being written")
    code = f"from satclip import safe_output; safe_output.write_bytes({str(target)!r}, b'ok')"
    env = {**os.environ, "PYTHONPATH": str(Path(safe_output.__file__).parents[1])}  # (the sources under test)
    command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code]
    assert subprocess.run(command, env=env).returncode == 0
    assert (live / "data").read_text() == "being written" and target.read_bytes() == b"ok"


def test_a_lock_held_in_another_container_or_host_says_so(tmp_path, caplog):
    """"in use by another satclip run (PID 1 on vm …)" named a PID the user could not find or stop here (the holder
    ran in another container), and a takeover said "from PID 1" without the host it was recorded on."""
    target = tmp_path / "job"
    holder = hold_lock(target, "sys.stdin.read()", first="safe_output.host_id = lambda: '0123abcd'")
    try:
        with pytest.raises(LockedError, match=f"PID {holder.pid} of another container \\(PID namespace\\) on "):
            with safe_output.exclusive(target):
                pass
    finally:
        holder.communicate(b"")
    safe_output.lock_path(target).write_text('{"pid": 1, "host": "elsewhere"}')  # left by a run on another host
    with caplog.at_level(logging.INFO, logger="satclip.safe_output"):
        with safe_output.exclusive(target):
            pass
    assert "from PID 1 on the other host elsewhere, which stopped" in caplog.text


def test_a_second_run_is_refused_naming_the_holder(tmp_path):
    target = tmp_path / "job"
    holder = hold_lock(target, "sys.stdin.read()")
    try:
        with pytest.raises(LockedError, match=f"PID {holder.pid}"):
            with safe_output.exclusive(target):
                pass
    finally:
        holder.communicate(b"")
    with safe_output.exclusive(target):  # released with its holder
        pass
    assert not safe_output.lock_path(target).exists()


def test_a_reentrant_lock_lets_its_block_lock_the_target_again(tmp_path):
    """A command locks its output from before it loads its model (``reentrant``), and the library function it
    calls locks it again: that runs under the command's lock; any other lock of it in this process, or another
    process's, is still refused, and the lock ends with the outer block."""
    target = tmp_path / "job"
    with safe_output.exclusive(target, reentrant=True):
        safe_output.check_unlocked(target)
        with safe_output.exclusive(target):
            pass
        assert safe_output.lock_path(target).exists()  # (still held: not released by the inner block)
        assert refused_elsewhere(target)
    assert not safe_output.lock_path(target).exists()
    with safe_output.exclusive(target):  # not lent: refused as another run's, as ever
        with pytest.raises(LockedError):
            with safe_output.exclusive(target):
                pass


def refused_elsewhere(target) -> bool:
    """Whether another process is refused the lock on ``target``."""
    code = f"from satclip import safe_output\nwith safe_output.exclusive({str(target)!r}):\n    pass"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_in_subprocess_env())
    return run.returncode != 0 and "LockedError" in run.stderr


def test_a_waiting_lock_waits_for_the_holder(tmp_path):
    """Shared caches' builders wait for a concurrent build (then reuse it) instead of failing."""
    target = tmp_path / "cache"
    process = hold_lock(target, "import time; time.sleep(1.0)")
    started = time.perf_counter()
    try:
        with pytest.raises(LockedError):
            with safe_output.exclusive(target):
                pass
        with safe_output.exclusive(target, wait=True):
            assert time.perf_counter() - started >= 0.5  # it held the lock for a second
            assert process.poll() is not None or process.wait(timeout=5) == 0
    finally:
        process.communicate(b"")


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    target = tmp_path / "job"
    holder = hold_lock(target, "os.kill(os.getpid(), signal.SIGKILL)")
    holder.wait()
    assert safe_output.lock_path(target).exists()  # left behind by the killed process
    # what it was removing when killed (an old output under --overwrite, renamed to its temporary name) stayed
    # for good: a rerun that completed the job never removed it
    removing = tmp_path / f".job.satclip-tmp-{holder.pid}-1a2b3c"
    (removing / "store").mkdir(parents=True)
    running = tmp_path / f".job.satclip-tmp-{os.getpid()}-4d5e6f"  # (a live process's: kept)
    running.write_text("being written")
    with caplog.at_level(logging.INFO, logger="satclip.safe_output"):
        with safe_output.exclusive(target):
            pass
    assert f"from PID {holder.pid}" in caplog.text
    assert not removing.exists() and running.exists()


def test_a_lock_name_satclip_did_not_write_is_never_written_through(tmp_path, model, points, capsys):  # noqa: F811
    """The lock followed a symbolic link at ``.NAME.lock`` (``notes.txt`` overwritten with the lock's JSON, the
    link deleted; a dangling link's target created) and truncated, then deleted, a user's file of that name."""
    source = tmp_path / "p.csv"
    points.to_csv(source, index=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    link = safe_output.lock_path(tmp_path / "out.parquet")
    link.symlink_to(notes.name)
    dangling = safe_output.lock_path(tmp_path / "d.parquet")
    dangling.symlink_to("nowhere.txt")
    own = safe_output.lock_path(tmp_path / "o2.parquet")
    own.write_text("the user's, named like a lock")
    for output, lock in (("out.parquet", link), ("d.parquet", dangling), ("o2.parquet", own)):
        assert embed(source, "-o", tmp_path / output, "--model", model) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"satclip: error: {lock}, where satclip keeps its lock, ") and "\n" not in err, err
        assert not (tmp_path / output).exists()
    assert notes.read_text() == "my notes" and link.is_symlink() and os.readlink(link) == notes.name
    assert dangling.is_symlink() and not (tmp_path / "nowhere.txt").exists()
    assert own.read_text() == "the user's, named like a lock"
    empty = safe_output.lock_path(tmp_path / "e.parquet")
    empty.touch()  # what a run killed between creating its lock and writing it leaves: satclip's, taken over
    assert embed(source, "-o", tmp_path / "e.parquet", "--model", model) == 0
    assert (tmp_path / "e.parquet").is_file() and not empty.exists()


def test_an_output_at_a_symbolic_link_never_writes_through_it(tmp_path, model, points, capsys):  # noqa: F811
    """As the README says: with --overwrite a link where a file output goes is replaced by the file, its target left
    as it is; a link where a directory output goes is refused, --overwrite or not."""
    source = tmp_path / "p.csv"
    points.to_csv(source, index=False)
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "out.npy").symlink_to("notes.txt")
    assert embed(source, "-o", tmp_path / "out.npy", "--model", model) == 2
    assert embed(source, "-o", tmp_path / "out.npy", "--model", model, "--overwrite") == 0
    assert not (tmp_path / "out.npy").is_symlink() and np.load(tmp_path / "out.npy").shape[0] == len(points)
    assert (tmp_path / "notes.txt").read_text() == "my notes"
    (tmp_path / "mine").mkdir()
    (tmp_path / "out.zarr").symlink_to("mine", target_is_directory=True)
    capsys.readouterr()
    assert embed(source, "-o", tmp_path / "out.zarr", "--model", model, "--overwrite") == 2
    assert "is a symbolic link" in capsys.readouterr().err
    assert list((tmp_path / "mine").iterdir()) == [] and (tmp_path / "out.zarr").is_symlink()


def test_reserve_allocates_the_blocks_of_a_sparse_file(tmp_path):
    path = tmp_path / "sparse.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1 << 20, 4))
    size = path.stat().st_size
    if path.stat().st_blocks * 512 >= size:
        pytest.skip("this filesystem does not make sparse files")
    safe_output.reserve(path)
    assert path.stat().st_blocks * 512 >= size


# ------------------------------------------------------------------------------------------- the attacks
def test_embed_overwrite_never_replaces_a_directory_of_user_files(tmp_path, model, points):  # noqa: F811
    source = tmp_path / "p.csv"
    points.to_csv(source, index=False)
    user = user_files(tmp_path / "results.parquet")
    before = snapshot(user)
    assert embed(source, "-o", user, "--model", model, "--overwrite") == 2
    assert snapshot(user) == before
    zarr_dir = user_files(tmp_path / "store.zarr")  # a directory output replaces only satclip's directories
    assert embed(source, "-o", zarr_dir, "--model", model, "--overwrite") == 2
    assert snapshot(zarr_dir) == snapshot(user)
    assert embed(source, "-o", tmp_path / "ok.zarr", "--model", model) == 0
    assert embed(source, "-o", tmp_path / "ok.zarr", "--model", model, "--overwrite") == 0


def test_embed_keeps_a_foreign_partial_directory_and_refuses_output_equal_to_input(tmp_path, model, points):  # noqa: F811
    source = tmp_path / "p.parquet"
    points.to_parquet(source)
    partial = user_files(tmp_path / "out.parquet.partial")
    before = snapshot(partial)
    assert embed(source, "-o", tmp_path / "out.parquet", "--model", model) == 2
    assert snapshot(partial) == before and not (tmp_path / "out.parquet").exists()
    original = source.read_bytes()
    assert embed(source, "-o", source, "--model", model, "--overwrite") == 2
    assert source.read_bytes() == original
    # one with a manifest.json of the user's: called a damaged manifest ("pass --restart"), which --restart then
    # refused to delete; it is named as the user's directory, with or without --restart
    (partial / "manifest.json").write_text("mine")
    before = snapshot(partial)
    for restart in ([], ["--restart"]):
        assert embed(source, "-o", tmp_path / "out.parquet", "--model", model, *restart) == 2
    assert snapshot(partial) == before


def test_an_output_named_like_another_outputs_work_directory_is_kept(tmp_path, model, points, capsys):  # noqa: F811
    """`-o y.zarr.partial`, then `-o y.zarr`: the finished store was taken for leftover work and deleted, exit 0
    (by `embed` and by `map`, either command's store)."""
    from satclip.cli import main

    source = tmp_path / "p.parquet"
    points.to_parquet(source)
    base = ["--model", str(model), "--resolution", "30", "--bbox", "-30", "-30", "30", "30"]
    for first, second in (("embed", "embed"), ("embed", "map"), ("map", "embed"), ("map", "map")):
        named = tmp_path / f"{first}-{second}.zarr.partial"
        command = {"embed": ["embed", str(source), "--model", str(model), "--format", "zarr"],
                   "map": ["map", *base, "--format", "zarr"]}  # fmt: skip
        assert main([*command[first], "-o", str(named)]) == 0
        before = snapshot(named)
        output = str(tmp_path / f"{first}-{second}.zarr")
        argv = ["embed", str(source), "--model", str(model), "-o", output] if second == "embed" else [
            "map", *base, "-o", output]
        for restart in ([], ["--restart"]):
            assert main([*argv, *restart]) == 2, (first, second)
            assert f"{named} is a satclip output directory, and satclip keeps its unfinished work" in (
                capsys.readouterr().err
            )
        assert snapshot(named) == before and not Path(output).exists()


@pytest.mark.parametrize("command", ["embed", "map"])
def test_an_output_written_while_a_run_waited_for_its_lock_is_refused_before_any_work(
    tmp_path, model, points, capsys, monkeypatch, command  # noqa: F811
):  # fmt: skip
    """The output was checked before the lock was taken, not after: a run that got the lock just after another
    had published the same output computed the whole map, was refused at the end, and left its field (195 MB)
    in OUT.partial/ for every rerun to refuse again."""
    from satclip.cli import main

    source = tmp_path / "p.parquet"
    points.to_parquet(source)
    out = tmp_path / "out.zarr"
    exclusive = safe_output.exclusive

    def another_run_published_first(path, *args, **kwargs):
        if Path(path) == out and not out.exists():
            safe_output.make_owned_dir(out)  # (what the run that held the lock published)
        return exclusive(path, *args, **kwargs)

    monkeypatch.setattr(safe_output, "exclusive", another_run_published_first)
    argv = {"embed": ["embed", str(source), "--model", str(model), "-o", str(out)],
            "map": ["map", "--model", str(model), "--resolution", "30", "-o", str(out)]}[command]  # fmt: skip
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert not (tmp_path / "out.zarr.partial").exists()  # refused before any work


def test_concurrent_embeds_of_different_inputs_to_one_output(tmp_path, model, points):  # noqa: F811
    """The second run is refused while the first holds the output; the first's output equals a solo run."""
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    points.to_parquet(first)
    points.assign(lon=points.lon / 2).to_parquet(second)
    out = tmp_path / "out.parquet"
    slow_first = textwrap.dedent(f"""
        import sys, time
        from satclip.embed import sinks
        write = sinks.ParquetSink.write
        def slow(self, *args):
            if args[0] == 1:
                print("running", flush=True)
                sys.stdin.read()  # hold here until the test has tried the second run
            write(self, *args)
        sinks.ParquetSink.write = slow
        from satclip.cli import main
        sys.exit(main(["embed", {str(first)!r}, "-o", {str(out)!r}, "--model", {str(model)!r},
                       "--chunk-rows", "64", "--no-progress"]))
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen([sys.executable, "-c", slow_first], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env=env)  # fmt: skip
    try:
        assert process.stdout.readline().strip() == b"running"
        from satclip.embed.api import load_encoder
        from satclip.embed.job import embed_file
        from satclip.embed.sources import open_source

        with pytest.raises(LockedError, match=f"PID {process.pid}"):
            embed_file(open_source(second), out, load_encoder(str(model)), chunk_rows=64)
    finally:
        process.communicate(b"")
    assert process.returncode == 0
    assert embed(first, "-o", tmp_path / "solo.parquet", "--model", model, "--chunk-rows", "64") == 0
    assert checksum(out) == checksum(tmp_path / "solo.parquet")


def test_embed_to_npy_fails_before_the_work_when_the_disk_is_full(tmp_path, model, points, monkeypatch):  # noqa: F811
    source = tmp_path / "p.csv"
    points.to_csv(source, index=False)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    job = importlib.import_module("satclip.embed.job")  # satclip.embed is also the function
    from satclip.embed.api import load_encoder
    from satclip.embed.sources import open_source

    calls = []
    monkeypatch.setattr(job, "embed_lonlat", lambda *a, **k: calls.append(1))
    with pytest.raises(OSError) as err:
        job.embed_file(open_source(source), tmp_path / "e.npy", load_encoder(str(model)))
    assert err.value.errno == errno.ENOSPC and not calls
    assert not (tmp_path / "e.npy").exists()


def test_map_refuses_an_oversized_grid_at_once_and_leaves_nothing_when_stopped(tmp_path, model, monkeypatch):  # noqa: F811
    import satclip
    from satclip.embed import maps
    from satclip.embed.maps import render_map

    encoder = satclip.load(model)
    with monkeypatch.context() as patch:  # refused before any cell is embedded
        patch.setattr(maps, "embed_lonlat", lambda *a, **k: pytest.fail("embedded before refusing"))
        with pytest.raises(BadInputError, match=r"--force") as err:
            render_map(encoder, tmp_path / "huge.tif", resolution=0.001)
    assert "core-hours" in str(err.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "model"]

    def stop(rows):
        raise KeyboardInterrupt

    for name in ("m.tif", "m.zarr", "m.png"):
        with pytest.raises(KeyboardInterrupt):
            render_map(encoder, tmp_path / name, resolution=10, progress=stop)
    # no output, no hidden temporary, no lock: the work to resume (the field computed so far) only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png.partial", "m.tif.partial", "m.zarr.partial", "model"]


def test_demo_and_evaluate_refuse_a_directory_of_user_files(tmp_path):
    from satclip.eval.api import run_evaluation
    from satclip.eval.runner import EvalConfig
    from satclip.recipes.demo import QUICK, run_demo

    user = user_files(tmp_path / "mine")
    before = snapshot(user)
    with pytest.raises(OutputExistsError, match="did not create"):
        run_demo(user, QUICK)
    with pytest.raises(OutputExistsError, match="did not create"):
        run_evaluation(EvalConfig(encoders=("direct",), tasks=("country",)), user)
    assert snapshot(user) == before

    earlier = safe_output.make_owned_dir(tmp_path / "demo", kind="demo")  # an earlier demo's directory ...
    user_files(earlier / "model")  # ... where the user put their own files under model/
    before = snapshot(earlier / "model")
    with pytest.raises(OutputExistsError, match="did not create"):
        run_demo(earlier, QUICK)
    assert snapshot(earlier / "model") == before


def test_a_satclip_directory_of_another_kind_is_not_taken_over(tmp_path, capsys):
    """`evaluate --out MODEL_DIR` (or a training run or feature cache there) mixed its files into a model
    directory satclip had written, and rewrote its marker."""
    from satclip.cli import main

    converted = tmp_path / "model"
    assert main(["convert", "bluemarble-l10", str(converted), "--target", "native", "--location-only"]) == 0
    before = snapshot(converted)
    argv = ["evaluate", "--encoders", "direct", "--tasks", "elevation", "--n-points", "200", "--seeds", "1",
            "--probes", "linear", "--no-figures", "--out", str(converted)]  # fmt: skip
    assert main(argv) == 2
    assert "is a satclip directory of kind 'output', not 'evaluation'" in capsys.readouterr().err
    assert snapshot(converted) == before
    run = safe_output.make_owned_dir(tmp_path / "run", kind="training-run")
    assert safe_output.make_owned_dir(run, kind="training-run") == run  # its own kind: taken again
    with pytest.raises(OutputExistsError, match="of kind 'training-run', not 'feature-cache'"):
        safe_output.make_owned_dir(run, kind="feature-cache")


def test_an_output_under_a_file_is_refused_before_the_work(tmp_path, model, points, capsys):  # noqa: F811
    """It failed at the first write, after the work, naming a hidden temporary or lock file."""
    from satclip.cli import main

    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    commands = [
        ["embed", str(source), "-o", str(source / "out.parquet"), "--model", str(model)],
        ["export", "--format", "torchscript", "--model", str(model), "-o", str(source / "m.pt")],
        ["map", "--model", str(model), "--resolution", "30", "-o", str(source / "deeper" / "m.tif")],
    ]
    for argv in commands:
        assert main([*argv, "--no-progress"] if argv[0] == "embed" else argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"satclip: error: {source} is a file, not a directory, so {argv[argv.index('-o') + 1]} cannot "
                       "be written there; choose another output path"), err  # fmt: skip
    with pytest.raises(BadInputError, match="is a file, not a directory"):
        safe_output.make_dirs(source / "run")
    with pytest.raises(BadInputError, match="is a file, not a directory"):  # (locks are made beside their target)
        with safe_output.exclusive(source / "run"):
            pass


def test_a_failed_command_leaves_no_directories_it_made(tmp_path, model, points):  # noqa: F811
    """Missing parent directories of an output are made (plain directories, no marker) and kept when the
    command succeeds; when it fails, those it made are removed again, and nothing that was there before."""
    from satclip.cli import main

    good, bad = tmp_path / "p.csv", tmp_path / "bad.csv"
    points.to_csv(good, index=False)
    bad.write_text("lon,lat\n10,20\n10,95\n")
    assert embed(bad, "-o", tmp_path / "new" / "deeper" / "o.parquet", "--model", model) == 2
    assert not (tmp_path / "new").exists()
    assert main(["evaluate", "--encoders", "sh-l10", "--tasks", "no-such-task", "--out", str(tmp_path / "ev")]) == 2
    assert not (tmp_path / "ev").exists()
    empty = tmp_path / "empty"
    empty.mkdir()  # the user's: kept, even empty
    assert embed(bad, "-o", empty / "o.parquet", "--model", model) == 2
    assert empty.is_dir()
    assert embed(good, "-o", tmp_path / "made" / "o.parquet", "--model", model) == 0
    assert (tmp_path / "made" / "o.parquet").is_file() and not safe_output.is_owned(tmp_path / "made")


def test_library_writers_never_replace_the_model_they_were_loaded_from(tmp_path, model, points):  # noqa: F811
    """The CLI refused ``-o`` naming ``--model``, but the Python writers given an encoder loaded from a file
    (export, embed_file, render_map) replaced that .ckpt or the native weights with their output."""
    from satclip.cli import main
    from satclip.embed.api import load_encoder
    from satclip.embed.job import embed_file
    from satclip.embed.maps import render_map
    from satclip.embed.sources import open_source
    from satclip.io.onnx import export

    source = tmp_path / "p.csv"
    points.to_csv(source, index=False)
    ckpt = tmp_path / "model.ckpt"
    assert main(["convert", str(model), str(ckpt), "--location-only"]) == 0
    for loaded_from, target in ((ckpt, ckpt), (model, model / "model.safetensors")):
        encoder = load_encoder(str(loaded_from))
        before = target.read_bytes()
        writers = (
            (export, (encoder, target, "torchscript"), {}),
            (embed_file, (open_source(source), target, encoder), {"out_format": "npy"}),
            (render_map, (encoder, target), {"resolution": 30, "fmt": "png"}),
        )
        for write, args, options in writers:
            with pytest.raises(BadInputError, match="is also an input"):
                write(*args, **options, overwrite=True)
            assert target.read_bytes() == before
    encoder = load_encoder(str(model))
    with pytest.raises(BadInputError, match="is inside the input"):
        export(encoder, model / "m.pt", "torchscript")
    assert export(encoder, tmp_path / "m.pt", "torchscript") == tmp_path / "m.pt"


def test_a_cache_given_with_a_tilde_is_in_the_home_directory(monkeypatch, tmp_path):
    """SATCLIP_CACHE='~/satclip-cache' (quoted, so the shell leaves the ~) made a directory named '~' in the
    working directory."""
    from satclip.paths import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SATCLIP_CACHE", "~/satclip-cache")
    assert cache_dir("precision") == tmp_path / "satclip-cache" / "precision"
    monkeypatch.delenv("SATCLIP_CACHE")
    assert cache_dir() == tmp_path / ".cache" / "satclip"


# ------------------------------------------------------------------------------------------- typed paths
def test_user_path_expands_home_and_folds_dotdot_only_over_missing_directories(tmp_path, monkeypatch):
    from satclip.paths import user_path

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_path("~/out.parquet") == tmp_path / "home" / "out.parquet"
    monkeypatch.chdir(tmp_path)
    assert user_path("nosuch/../out.parquet") == tmp_path / "out.parquet"
    assert user_path("plain/out.parquet") == Path("plain/out.parquet")  # no '..': kept as typed
    # where the directory exists and is a link, '..' is the link target's parent, as the kernel takes it
    (tmp_path / "far" / "inner").mkdir(parents=True)
    (tmp_path / "near").symlink_to(tmp_path / "far" / "inner")
    assert user_path("near/../out.parquet") == tmp_path / "far" / "out.parquet"
    (tmp_path / "link.parquet").symlink_to(tmp_path / "elsewhere.parquet")
    assert user_path("nosuch/../link.parquet") == tmp_path / "link.parquet"  # the last component is not followed
    # '~name' of no user is a name, as the shell leaves it (Path.expanduser raised RuntimeError: a traceback)
    assert user_path("~no-such-user-here/draft.tif") == Path("~no-such-user-here/draft.tif")
    monkeypatch.delenv("HOME")
    import pwd

    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    assert user_path("~/x.tif") == Path("~/x.tif")


def test_cli_outputs_under_quoted_home_and_through_missing_dotdot(tmp_path, model, points, monkeypatch):  # noqa: F811
    points.to_csv(tmp_path / "points.csv", index=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert embed("points.csv", "-o", "~/out.parquet", "--model", model) == 0
    assert (home / "out.parquet").is_file() and not (tmp_path / "~").exists()
    assert embed("points.csv", "-o", "nosuch/../out.parquet", "--model", model) == 0
    assert (tmp_path / "out.parquet").is_file() and not (tmp_path / "nosuch").exists()


def test_a_lock_ends_with_the_process_that_took_it_not_with_its_forked_children(tmp_path):
    """A killed run's forked children (data-loader workers) inherited the lock's descriptor and held the lock
    until they ended: the next run waited for, or was refused by, a process that was gone."""
    import signal

    target = tmp_path / "cache"
    # the child says it runs (os.fork returns in it after its fork hooks), the parent names it: either order,
    # each line one write (print's text and newline could interleave with the other process's line)
    parent = hold_lock(target, "child = os.fork()\n"
                               "            if child == 0:\n"
                               "                os.write(1, b'forked\\n'); import time; time.sleep(60); os._exit(0)\n"
                               "            os.write(1, b'%d\\n' % child); signal.pause()")  # fmt: skip
    lines = sorted(parent.stdout.readline().strip() for _ in range(2))
    assert lines[1] == b"forked", lines
    child = int(lines[0])
    try:
        parent.kill()
        parent.wait()
        with safe_output.exclusive(target):  # not LockedError naming the dead PID
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_lock_that_cannot_be_written_names_the_output_not_the_lock_file(capsys):
    """`-o /proc/x` (or trainer.output_dir there) failed with "No such file or directory: /proc/.x.lock", a file
    the user never named; then it named the output itself ("permission denied: d4/eval" of a writable folder in a
    read-only one). It names the folder the lock goes into, and the output whose lock it is."""
    import sys

    from satclip.cli import main

    if not sys.platform.startswith("linux"):
        pytest.skip("/proc is Linux's")
    with pytest.raises(BadInputError) as caught, safe_output.exclusive("/proc/satclip-test-output"):
        pass
    assert str(caught.value) == (
        "/proc/satclip-test-output: cannot create a file in /proc (No such file or directory), where satclip writes "
        "the output's lock: give an output in another folder (another --out or -o)"
    )
    assert main(["train", "--trainer.output_dir", "/proc/satclip-test-run", "--trainer.max_epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert ".satclip-test-run.lock" not in err and "/proc/satclip-test-run: cannot create a file in /proc" in err, err


def test_a_lock_file_left_there_that_cannot_be_opened_is_named(tmp_path, monkeypatch, capsys):
    """A stale lock file of another user's run (read-only to this one) was reported as the output itself,
    "permission denied: OUT: fix its permissions", whose permissions were fine (the test runs as any user, root
    included: the refusal is the operating system's, faked)."""
    from satclip.cli import main

    output = tmp_path / "emb.npy"
    lock = safe_output.lock_path(output)
    lock.write_text('{"pid": 1, "host": "elsewhere"}')
    real_open = os.open

    def refuse_the_lock(path, *args, **kwargs):
        if str(path) == str(lock):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_the_lock)
    (tmp_path / "p.csv").write_text("lon,lat\n1,2\n")
    assert main(["embed", str(tmp_path / "p.csv"), "-o", str(output), "--model", "bluemarble-l10"]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: permission denied: {lock}: fix its permissions or use another location"
    )


def test_a_full_disk_while_an_output_is_reserved_leaves_no_work_directory(tmp_path, model, points, monkeypatch,  # noqa: F811
                                                                           capsys):
    """`embed -o e.npy` on a full disk left e.npy.partial/ with a reserved embeddings.npy and no manifest: a
    rerun started over beside it, and it was never removed."""
    from satclip.embed import sinks

    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)

    def full(self):  # (the NPY header is written, then reserving the rest fails)
        (self.workdir / "embeddings.npy").write_bytes(b"\x93NUMPY" + b" " * 120)
        raise OSError(errno.ENOSPC, "No space left on device", str(self.workdir / "embeddings.npy"))

    monkeypatch.setattr(sinks.NpySink, "create", full)
    assert embed(source, "-o", tmp_path / "e.npy", "--model", model) == 1
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "points.csv"]


def test_an_output_directory_that_cannot_be_created_is_named_not_its_temporary(tmp_path, monkeypatch, capsys):
    """`convert M ro/x-rshf --target rshf` in a directory it could not write said "permission denied:
    ro/.x-rshf.satclip-tmp-32643-3796c0", a name the user never gave (file outputs named the output)."""
    from satclip.cli import main

    mkdir = Path.mkdir

    def refused(self, *args, **kwargs):
        if ".satclip-tmp-" in self.name:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refused)
    out = tmp_path / "x-rshf"
    with pytest.raises(PermissionError) as caught, safe_output.atomic_dir(out):
        pass
    assert caught.value.filename == str(out)
    assert main(["convert", "bluemarble-l10", str(out), "--target", "rshf"]) == 1
    err = capsys.readouterr().err
    assert f"{out}" in err and "satclip-tmp" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_destination_is_named_not_the_temporary(tmp_path, monkeypatch, capsys):
    """On a read-only file system `convert M /ro/x.ckpt` said "read-only file system: /ro/.x.ckpt.satclip-tmp-…":
    the temporary's removal after the failed write (unlink refuses even a missing file there) raised EROFS again,
    replacing the error that named the output."""
    from satclip.cli import main

    def read_only(method):
        def refused(self, *args, **kwargs):
            if ".satclip-tmp-" in str(self):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return method(self, *args, **kwargs)

        return refused

    for name in ("open", "mkdir", "unlink"):
        monkeypatch.setattr(Path, name, read_only(getattr(Path, name)))
    for out, writer in ((tmp_path / "x.ckpt", safe_output.atomic_file), (tmp_path / "x-rshf", safe_output.atomic_dir)):
        with pytest.raises(OSError) as caught, writer(out) as tmp:
            safe_output.write_data(tmp if writer is safe_output.atomic_file else tmp / "a", b"data")
        assert (caught.value.errno, caught.value.filename) == (errno.EROFS, str(out))
        argv = ["convert", "bluemarble-l10", str(out), "--location-only"] + ([] if out.suffix else ["--target", "rshf"])
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert str(out) in err and "satclip-tmp" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_work_directory_a_run_killed_after_publishing_was_removing_is_swept_by_the_next_check(tmp_path,
                                                                                                monkeypatch):
    """A run killed just after publishing OUT, while removing OUT.partial (renamed to a temporary first), left that
    temporary (a map's whole field); the next run of the command stopped at "OUT already exists" and never removed
    it. The check of OUT sweeps it (a dead writer's, of this host), whatever it then says."""
    out = tmp_path / "out.parquet"
    out.write_bytes(b"published")
    gone = dead_pid()
    with monkeypatch.context() as patch:
        patch.setattr(safe_output.os, "getpid", lambda: gone)  # a PID that names no process here
        left = safe_output.temp_path(tmp_path / "out.parquet.partial")
    live = safe_output.temp_path(tmp_path / "out.parquet.partial")  # this live process's: kept
    for temporary in (left, live):
        temporary.mkdir()
        (temporary / "field.npy").write_bytes(b"x" * 1000)
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        safe_output.check_output(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "out.parquet"])


def mount_namespace_or_skip() -> None:
    """Skip unless this user may mount file systems in a mount namespace of its own (``unshare -m``: root)."""
    probe = ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"]
    if subprocess.run(probe, capture_output=True).returncode:
        pytest.skip("mounting a tmpfs in a mount namespace (unshare -m) needs privileges this test does not have")


def test_an_empty_mount_point_is_filled_on_its_own_file_system(tmp_path):
    """`satclip data bluemarble --out MP`, MP an empty mount point, built the corpus beside it on the parent's file
    system, then failed moving it in: "unexpected error (OSError): Invalid cross-device link". The work is now built
    in MP (on its disk) and lands there; a read-only mount point is refused before any work."""
    mount_namespace_or_skip()
    mp = tmp_path / "mp"
    mp.mkdir()
    build = ["-m", "satclip", "data", "bluemarble", "--n", "20", "--patch-size", "8", "--out", str(mp)]
    script = (f"mount -t tmpfs tmpfs {mp} && {sys.executable} {' '.join(build)}; code=$?; "
              f"ls -A {mp}; stat -c %d {mp} {mp}/images.npy; exit $code")  # fmt: skip
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=run_in_subprocess_env(), capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    *listing, device, corpus = done.stdout.split()
    assert "manifest.json" in listing and not [name for name in listing if "satclip-tmp" in name], listing
    assert device == corpus  # (on the mount's file system)
    assert list(mp.iterdir()) == []  # (all of it on the tmpfs, gone with the namespace; nothing on the parent's)
    script = f"mount -t tmpfs -o ro tmpfs {mp} && {sys.executable} {' '.join(build)}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=run_in_subprocess_env(), capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 1 and one_error_line(done.stderr) == (
        f"satclip: error: refusing to write {mp}: it is on a read-only file system, so satclip cannot write its "
        "files into it; choose another output path"), done.stderr  # fmt: skip
    assert list(tmp_path.iterdir()) == [mp]


def test_atomic_dir_builds_in_a_directory_it_fills(tmp_path, monkeypatch):
    """A directory that is kept and filled (an empty one of the user's, a mount point) may lie on another file system
    than its parent, which no rename crosses: the work is built in it (simulated here, where nothing can be mounted,
    by a rename that refuses to cross into ``out`` from outside it). A temporary a killed build left there is no
    content of it: the next build takes the directory, and sweeps it."""
    out, rename, replace = tmp_path / "out", os.rename, os.replace

    def one_device(move):
        def moved(src, dst, *args, **kwargs):
            if Path(dst).is_relative_to(out) != Path(src).is_relative_to(out):
                raise OSError(errno.EXDEV, "Invalid cross-device link", str(src), str(dst))
            return move(src, dst, *args, **kwargs)

        return moved

    monkeypatch.setattr(os, "rename", one_device(rename))
    monkeypatch.setattr(os, "replace", one_device(replace))
    monkeypatch.setattr(Path, "rename", lambda self, target: one_device(rename)(self, target) or Path(target))
    out.mkdir()
    left = out / f".out{safe_output._TMP_TAG}{dead_pid()}-h{safe_output.host_id()}-abcdef"
    left.mkdir()
    (left / "half").write_text("a killed build's")
    safe_output.check_output(out, directory=True)
    with safe_output.atomic_dir(out, kind="k") as tmp:
        assert tmp.parent == out
        (tmp / "a").write_text("one")
    assert sorted(p.name for p in out.iterdir()) == [safe_output.MARKER, "a"] and safe_output.owned_kind(out) == "k"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("shown", [logging.WARNING, logging.INFO])
def test_a_wait_for_another_process_is_said_in_python_too(tmp_path, caplog, shown):
    """Two Python processes building the same `retrieval="auto"` database: the second waited about 90 s without a
    word, its "waiting for PID N, which is building …" an INFO line that Python does not show. It is a warning there,
    and stays one INFO line where satclip's INFO lines are shown (the CLI)."""
    target = tmp_path / "db"
    holder = hold_lock(target, "time.sleep(1)", first="import time")
    try:
        with caplog.at_level(shown, logger="satclip"), safe_output.exclusive(target, wait=True):
            pass
    finally:
        holder.communicate(b"")
    waits = [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("waiting for")]
    assert waits == [(shown, f"waiting for PID {holder.pid}, which is building {target}")]


def test_a_users_empty_directory_filled_by_another_writer_meanwhile_keeps_the_last_output(tmp_path):
    """atomic_dir builds in a user's empty directory it fills; when another writer (overwrite=True, no lock: two
    encoder.save calls) filled it meanwhile, publishing renamed the directory away with the temporary inside it, lost
    the other's output and failed with FileNotFoundError. The directory stays, holding the last writer's output."""
    out = tmp_path / "out"
    out.mkdir()
    with safe_output.atomic_dir(out, overwrite=True) as outer:
        (outer / "outer.txt").write_text("outer")
        with safe_output.atomic_dir(out, overwrite=True) as inner:
            (inner / "inner.txt").write_text("inner")
        assert (out / "inner.txt").read_text() == "inner"
    assert sorted(p.name for p in out.iterdir()) == [safe_output.MARKER, "outer.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_output_folder_that_cannot_be_made_is_named_also_without_a_home_directory(monkeypatch):
    """Where no cache can be named (no $HOME, no $SATCLIP_CACHE), make_dirs' check whether the folder is the cache's
    raised that SatclipError instead of naming the folder it could not make."""
    from satclip import paths

    def no_home(*parts):
        raise SatclipError("satclip keeps its cache in ~/.cache/satclip, but ~ names no home directory here")

    monkeypatch.setattr(paths, "cache_dir", no_home)
    monkeypatch.setattr(safe_output, "cache_dir", no_home)
    with pytest.raises(BadInputError, match=r"^cannot create the folder /proc/nope \(No such file or directory\)"):
        safe_output.make_dirs("/proc/nope/m")
