"""``satclip train --restart``: the run a trainer.output_dir holds is discarded and trained again from scratch
there, under the run's lock and once every check of the new run has passed; a file satclip did not write there is
never deleted, and a run that is refused (locked, bad config) deletes nothing."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from satclip import safe_output
from satclip.cli import main
from satclip.errors import BadInputError, LockedError
from satclip.io.history import read_history
from satclip.train import dump_config, fit, from_dict
from satclip.train.fitting import epochs_done

from .conftest import one_error_line
from .test_train_resume import short_run  # noqa: F401 - fixture


def copy_run(run, tmp_path) -> tuple[dict, Path]:
    """The finished 2-epoch run (test_train_resume's) copied to ``tmp_path/run``: its config, and that config as a
    file outside the run."""
    root, config = run
    shutil.copytree(root / "run", tmp_path / "run")
    config = {**config, "trainer": {**config["trainer"], "output_dir": str(tmp_path / "run")}}
    dump_config(from_dict(config), tmp_path / "config.yaml")
    return config, tmp_path / "config.yaml"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("state", ["finished", "stopped", "older"])
def test_restart_discards_the_run_and_trains_it_from_scratch(tmp_path, short_run, caplog, capsys, state):  # noqa: F811
    """A finished run in the directory (or one stopped before its exports, or one of an older satclip, without
    markers): `--restart` trains again from epoch 0, its checkpoints, history, logs and exports the new run's only."""
    _, path = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    if state == "stopped":
        shutil.rmtree(run / "export")
    if state == "older":
        for directory in (run, run / "export" / "best", run / "export" / "last"):
            (directory / safe_output.MARKER).unlink()
        for sidecar in (run / "checkpoints").glob("*.sha256"):  # (nor checksums)
            sidecar.unlink()
    before = snapshot(run)
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["version_0"]
    with caplog.at_level(logging.INFO, logger="satclip"):
        assert main(["train", "--config", str(path), "--restart", "--trainer.max_epochs", "1"]) == 0
    assert f"discarding the run in {run} (2 epoch(s) trained): --restart" in caplog.text
    assert [row["epoch"] for row in read_history(run / "history.jsonl")] == [0]  # (not the old epochs 0 and 1)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert epochs_done(last) == 1
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["version_0"]  # (the old logs gone, not version_1)
    after = snapshot(run)
    for name in ("checkpoints/last.ckpt", "export/last/model.safetensors", "export/last.ckpt"):
        assert after[name] != before.get(name), name  # the new run's epoch 1, not the old run's epoch 2
    assert {"export/best/model.safetensors", "export/best.ckpt"} <= set(after)
    assert safe_output.owned_kind(run) == "training-run"
    assert f"run directory: {run}" in capsys.readouterr().out


def test_restart_and_resume_exclude_each_other(tmp_path, short_run, capsys):  # noqa: F811
    config, path = copy_run(short_run, tmp_path)
    before = snapshot(tmp_path / "run")
    assert main(["train", "--config", str(path), "--restart", "--resume"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # (argparse's usage error, one line)
    assert len(lines) == 1 and "argument --resume: not allowed with argument --restart" in lines[0], lines
    with pytest.raises(BadInputError, match=r"--restart \(restart=True\) discards .* give one of them"):
        fit(from_dict(config), resume=True, restart=True)
    assert snapshot(tmp_path / "run") == before


def test_restart_refuses_a_run_directory_holding_a_users_file(tmp_path, short_run, capsys):  # noqa: F811
    """A file of the user's in the run directory, or their config (with comments) as its config.yaml: refused,
    naming it, and nothing deleted."""
    _, path = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    (run / "notes.txt").write_text("keep me")
    before = snapshot(run)
    assert main(["train", "--config", str(path), "--restart"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"refusing to replace {run}" in line and "notes.txt, which the training run did not write" in line
    assert snapshot(run) == before

    (run / "notes.txt").unlink()
    # inside the folders a run writes too (they were declared whole: --restart deleted these without a word)
    for mine in ("checkpoints/my_best_epoch.ckpt", "logs/notes.txt", "logs/mine/analysis.ipynb", "export/model.pt",
                 "logs/version_0_before_restart/metrics.csv", "logs/version_0/mine/hparams.yaml"):  # (a copy aside)
        (run / mine).parent.mkdir(exist_ok=True)
        (run / mine).write_text("keep me")
        before = snapshot(run)
        assert main(["train", "--config", str(path), "--restart"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"refusing to replace {run}" in line and f"{mine}, which the training run did not write" in line
        assert snapshot(run) == before
        (run / mine).unlink()
        if (run / mine).parent.name in ("mine", "version_0_before_restart"):
            (run / mine).parent.rmdir()
    (run / "logs" / "version_7").mkdir()  # (an empty folder on the way to a run's files is the run's)
    mine = "# my run: see the wiki\n" + path.read_text()
    (run / "config.yaml").write_text(mine)  # (the user's --config, kept in the run directory)
    before = snapshot(run)
    assert main(["train", "--config", str(run / "config.yaml"), "--restart"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{run / 'config.yaml'} is not a config satclip wrote" in line and "--restart would delete it" in line
    assert snapshot(run) == before


def test_restart_of_a_run_in_use_or_refused_deletes_nothing(tmp_path, short_run, capsys):  # noqa: F811
    """Another process holds the run's lock: its error comes first and nothing is touched; a run refused by a
    check that needs its inputs (no training batch) deletes nothing either."""
    config, path = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    before = snapshot(run)
    with safe_output.exclusive(run):
        assert main(["train", "--config", str(path), "--restart"]) == 1
        assert f"in use by another satclip run (PID {os.getpid()} " in one_error_line(capsys.readouterr().err)
        with pytest.raises(LockedError):
            fit(from_dict(config), restart=True)
    assert snapshot(run) == before

    assert main(["train", "--config", str(path), "--restart", "--data.drop_last", "true",
                 "--data.batch_size", "4096"]) == 2  # fmt: skip
    assert "leaves no training batch" in one_error_line(capsys.readouterr().err)
    assert snapshot(run) == before


def test_a_rerun_without_restart_is_told_of_it(tmp_path, short_run, capsys):  # noqa: F811
    _, path = copy_run(short_run, tmp_path)
    before = snapshot(tmp_path / "run")
    assert main(["train", "--config", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "already holds a run" in line and "start it again from scratch with --restart (restart=True)" in line
    assert snapshot(tmp_path / "run") == before


def test_restart_names_everything_it_did_not_write_in_one_message(tmp_path, short_run, capsys):  # noqa: F811
    """A model converted into the run, an export beside its own and a user's file: all named at once (it named the
    model first, then, once that was moved, "export/model.onnx, mine.pt, which satclip did not write" — satclip's
    export wrote that file), as what the run did not write."""
    _, path = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    shutil.copytree(run / "export" / "best", run / "native-copy")
    (run / "export" / "model.onnx").write_bytes(b"onnx")
    (run / "mine.pt").write_bytes(b"mine")
    before = snapshot(run)
    assert main(["train", "--config", str(path), "--restart"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert (f"refusing to replace {run}, satclip's training-run directory: it also holds native-copy (a satclip "
            "model), export/model.onnx, mine.pt, which the training run did not write; move those out") in line, line
    assert snapshot(run) == before
