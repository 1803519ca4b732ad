"""Outputs of `satclip demo` and `satclip data bluemarble` that a run must not touch: the previous demo's
log when a run is refused, and the corpus's own files when --preview names one of them."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from satclip import safe_output
from satclip.data import bluemarble as bm
from satclip.recipes.demo import QUICK, STAGES, run_demo
from satclip.recipes.progress import StageProgress

from .conftest import one_error_line
from .test_safe_output import dead_pid, hold_lock


def finished_demo(out):
    """A demo directory as a finished run leaves it (made by the demo's own call), with its log."""
    safe_output.make_owned_dir(out, kind="demo")
    log = out / "demo.log"
    log.write_text("2026-12-03 18:00:00,000 INFO satclip.recipes.demo: demo stage evaluation: 128 s\n")
    return log


def test_a_refused_demo_leaves_the_previous_log(tmp_path, capsys, monkeypatch):
    """A second `satclip demo` on a directory in use was refused ('in use by … PID …') and left demo.log at 0
    bytes; one refused for a user's file in model/ emptied the finished run's log too (the log was opened,
    truncated, before the lock and the checks)."""
    from satclip.cli import main
    from satclip.paths import cache_dir

    out = tmp_path / "dq"
    log = finished_demo(out)
    before = log.read_bytes()

    holder = hold_lock(out, "sys.stdin.readline()")
    try:
        assert main(["demo", "--quick", "--out", str(out)]) != 0
        assert "in use by another satclip run" in one_error_line(capsys.readouterr().err)
    finally:
        holder.communicate(b"\n")
    assert log.read_bytes() == before

    (out / "model").mkdir()
    (out / "model" / "notes.txt").write_text("mine")
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "did not create" in one_error_line(capsys.readouterr().err)
    assert log.read_bytes() == before and (out / "model" / "notes.txt").read_text() == "mine"
    assert not cache_dir("bluemarble").exists()  # refused before any work

    # a run that starts appends to the log, after a line that says so, what was logged before it opened it (a
    # stale lock taken over); it replaced the log, and a rerun lost the log of the run that trained the model
    (out / "model" / "notes.txt").unlink()
    pid = dead_pid()
    safe_output.lock_path(out).write_text(json.dumps({"pid": pid, "host": "here", "command": "satclip demo"}))

    class Stopped(Exception):
        pass

    def stopped(*args, **kwargs):
        raise Stopped

    monkeypatch.setattr(bm, "build_bluemarble", stopped)  # the first stage: the run has started
    with pytest.raises(Stopped):
        run_demo(out, QUICK, progress=StageProgress(STAGES, io.StringIO()))
    logged = log.read_text()
    assert logged.startswith(before.decode() + "\n--- satclip demo run again, ")
    assert f"taking over the lock on {out} from PID {pid}" in logged.removeprefix(before.decode())


def test_a_failed_demo_logs_its_error(tmp_path, monkeypatch):
    """A demo that failed (a read-only SATCLIP_CACHE) left demo.log empty: the error went to the console only,
    after the log was closed. It is the log's last line, once."""
    out = tmp_path / "dq"

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "cache" / "bluemarble"))

    monkeypatch.setattr(bm, "build_bluemarble", read_only)
    shown = io.StringIO()
    with pytest.raises(PermissionError):
        run_demo(out, QUICK, progress=StageProgress(STAGES, shown))
    said = f"PermissionError: [Errno 13] Permission denied: '{tmp_path / 'cache' / 'bluemarble'}'"
    lines = (out / "demo.log").read_text().splitlines()
    assert lines[-1].endswith(f"ERROR satclip.recipes.demo: the demo stopped on an error: {said}"), lines
    assert sum(said in line for line in lines) == 1 and "error" not in shown.getvalue()


def test_a_preview_inside_the_corpus_is_refused(tmp_path, capsys):
    """`--preview bm/images.npy --overwrite` replaced the corpus's images with the PNG (the next run: 'right
    manifest but unreadable arrays; rebuilding it')."""
    from satclip.cli import main

    out = tmp_path / "bm"
    argv = ["data", "bluemarble", "--n", "30", "--patch-size", "8", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    corpus = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "link").symlink_to(out)
    for preview in (out / "images.npy", out / "sheet.png", tmp_path / "link" / "sheet.png", tmp_path / "sheet.jpg"):
        assert main([*argv, "--preview", str(preview), "--overwrite"]) == 2
        said = one_error_line(capsys.readouterr().err)
        if preview.suffix == ".png":
            assert f"--preview {preview} is inside the corpus directory" in said
        else:  # (a .jpg got PNG bytes without a word; a corpus file's name is no picture's either)
            assert said == (f"satclip: error: --preview {preview}: the contact sheet is a PNG picture; give a name "
                            "ending in .png")  # fmt: skip
        assert {p.name: p.read_bytes() for p in out.iterdir()} == corpus
    images, _ = bm.load_bluemarble_arrays(out)
    assert images.shape == (30, 8, 8, 3) and images.dtype == np.uint8

    # the default corpus directory (in the cache) likewise, before it is built
    default = bm.default_corpus_dir(bm.BlueMarbleParams(n=30, patch_size=8))
    assert main([*argv[:-2], "--preview", str(default / "sheet.png")]) == 2
    assert "is inside the corpus directory" in one_error_line(capsys.readouterr().err)
    assert not default.exists()

    # beside the corpus: written
    assert main([*argv, "--preview", str(tmp_path / "sheet.png")]) == 0
    assert (tmp_path / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_first_demo_run_logs_its_command_and_where_its_corpus_went(tmp_path, monkeypatch):
    """A first run's demo.log had no header (only a rerun's "--- satclip demo run again, <date> ---"), and where
    it built the corpus was logged at debug only: a first run never said where its cache went."""
    import satclip
    from satclip import recipes
    from satclip.cli import main

    class Stopped(Exception):
        pass

    def built(params, progress):
        progress(params.n)
        return tmp_path / "corpus"

    def stopped(*args, **kwargs):
        raise Stopped

    monkeypatch.setattr(bm, "build_bluemarble", built)
    monkeypatch.setattr(recipes, "prepare_recipe", stopped)  # (the next stage: the log is written by then)
    out = tmp_path / "d"
    assert main(["demo", "--quick", "--out", str(out)]) != 0
    logged = (out / "demo.log").read_text()
    header = logged.splitlines()[0]
    assert header.startswith("--- satclip demo run, 20"), logged
    assert f": satclip demo --quick --out {out} (satclip {satclip.__version__}) ---" in header, header
    assert f"INFO satclip.recipes.demo: built Blue Marble corpus {tmp_path / 'corpus'} (" in logged, logged
    # a rerun's header names its command too
    assert main(["demo", "--quick", "--workers", "1", "--out", str(out)]) != 0
    again = (out / "demo.log").read_text().removeprefix(logged).splitlines()
    assert again[0] == "" and again[1].startswith("--- satclip demo run again, 20"), again
    assert again[1].endswith(f": satclip demo --quick --workers 1 --out {out} (satclip {satclip.__version__}) ---")
