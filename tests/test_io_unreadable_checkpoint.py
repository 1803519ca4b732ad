"""A checkpoint file torch cannot read (empty, truncated, not a torch file) is bad input on every command
that loads a model: one line saying what the file is, exit 2, never "unexpected error"."""

from __future__ import annotations

import pytest

from satclip.cli import main

from .conftest import REFERENCE, one_error_line, require


@pytest.fixture
def broken(tmp_path):
    """name → (a broken checkpoint, what the error says about it)."""
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.ckpt"
    junk.write_text("junk\n")
    html = tmp_path / "page.ckpt"  # an error page saved in place of the file
    html.write_text("<html><body>404 Not Found</body></html>")
    return {
        "empty": (empty, "the file is empty (0 bytes)"),
        "junk": (junk, "it is not a torch checkpoint (5 bytes that are neither a zip archive nor a pickle)"),
        "html": (html, "it is not a torch checkpoint"),
    }


@pytest.fixture
def truncated(tmp_path):
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(require(REFERENCE / "satclip-resnet18-l10.ckpt").read_bytes()[:100_000])
    return path


@pytest.mark.parametrize("kind", ["empty", "junk", "html"])
@pytest.mark.parametrize("trust", [False, True])
def test_convert_of_a_broken_checkpoint_is_bad_input(tmp_path, capsys, broken, kind, trust):
    path, reason = broken[kind]
    argv = ["convert", str(path), str(tmp_path / "out")] + (["--trust-checkpoint"] if trust else [])
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{path} is not a readable checkpoint: {reason}" in line
    assert "download or export it again" in line
    assert not (tmp_path / "out").exists()


def test_a_truncated_checkpoint_is_named_on_every_command(tmp_path, capsys, truncated):
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n10,20\n30,40\n")
    commands = [
        ["convert", str(truncated), str(tmp_path / "native")],
        ["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(truncated)],
        ["evaluate", "--encoders", str(truncated), "--tasks", "country", "--out", str(tmp_path / "eval")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        line = one_error_line(capsys.readouterr().err)
        assert f"{truncated} is not a readable checkpoint: it is truncated or corrupt (100000 bytes; zip: " in line
        assert line.endswith("download or copy it again, or give the right file")


def test_a_torch_file_that_is_not_a_lightning_checkpoint_keeps_its_message(tmp_path, capsys):
    import torch

    path = tmp_path / "weights.ckpt"
    torch.save({"weights": torch.zeros(2)}, path)
    assert main(["convert", str(path), str(tmp_path / "out")]) == 2
    assert "not a Lightning checkpoint" in one_error_line(capsys.readouterr().err)


def test_a_training_runs_resume_checkpoint_is_told_to_give_the_runs_export(tmp_path, capsys):
    """`RUN/checkpoints/last.ckpt` given as a model was "checkpoint hyper_parameters lack ['le_type', 'pe_type',
    'embed_dim']; is this a SatCLIP checkpoint?": it is one, of satclip's own training, and the export is the model."""
    from satclip.train import fit, from_dict

    from .test_train_fit import cached_config
    from .train_helpers import synthetic_cache

    synthetic_cache(tmp_path / "cache", n=600)
    fit(from_dict(cached_config(tmp_path / "cache", tmp_path / "run", trainer={"max_epochs": 1})))
    resume = tmp_path / "run" / "checkpoints" / "last.ckpt"
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n10,20\n")
    export = tmp_path / "run" / "export" / "last"
    assert main(["embed", str(points), "-o", str(tmp_path / "x.parquet"), "--model", str(export)]) == 0
    capsys.readouterr()
    assert main(["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(resume)]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {resume}: this is a checkpoint satclip train saves to resume a run (RUN/checkpoints/), not "
        "a model: give the run's export instead, RUN/export/best or RUN/export/last (or the .ckpt beside them)"
    )


class _Runs:
    """Pickled, runs code when unpickled: it appends to ``ran``."""

    def __reduce__(self):
        return (_RAN.append, ("unpickled",))


_RAN: list[str] = []


@pytest.mark.parametrize("trust", [False, True])
def test_files_of_other_formats_are_named_and_never_unpickled(tmp_path, capsys, trust):
    """A plain Python pickle was refused with advice to pass --trust-checkpoint, which ran its code and then called
    the file "truncated or corrupt" (torch.load reads no plain pickle, trusted or not); a NumPy .npz (a zip) was
    "truncated or corrupt … download it again". Both are named for what they are, before anything is unpickled."""
    import pickle

    import numpy as np
    import torch

    plain = tmp_path / "plain.ckpt"
    plain.write_bytes(pickle.dumps({"state_dict": _Runs()}))
    npz = tmp_path / "arrays.ckpt"
    np.savez(npz.with_suffix(".npz"), lonlat=np.zeros((2, 2)))
    npz.with_suffix(".npz").rename(npz)
    trusted = ["--trust-checkpoint"] if trust else []
    for path, what in ((plain, "is a Python pickle but not a torch checkpoint"),
                       (npz, "is a zip archive but not a torch checkpoint (no data.pkl among its 1 entries, e.g. "
                             "lonlat.npy; a NumPy .npz is such an archive)")):  # fmt: skip
        assert main(["convert", str(path), str(tmp_path / "out"), *trusted]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"{path} {what}" in line and "trust" not in line and "corrupt" not in line, line
    assert _RAN == [] and not (tmp_path / "out").exists()
    # torch's own files, in the older (not zip) format, are read as before
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": {}}, legacy, _use_new_zipfile_serialization=False)
    from satclip.io.safe_pickle import load_checkpoint

    assert load_checkpoint(legacy) == {"state_dict": {}}


def test_a_training_run_with_no_exports_yet_says_how_it_stands_and_how_to_get_them(tmp_path, capsys):
    """A run killed (or still training) before it exported: --model RUN was "a directory but not a satclip model"
    and RUN/checkpoints/last.ckpt "give the run's export instead", which did not exist. Both say it is a run with
    no exports yet, running (its lock's PID) or stopped after how many epochs, and the command that continues it."""
    import os
    import shutil

    from satclip import safe_output
    from satclip.train import fit, from_dict

    from .test_train_fit import cached_config
    from .train_helpers import synthetic_cache

    synthetic_cache(tmp_path / "cache", n=600)
    run = tmp_path / "run"
    fit(from_dict(cached_config(tmp_path / "cache", run, trainer={"max_epochs": 1})))
    shutil.rmtree(run / "export")  # (killed before it exported)
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n10,20\n")
    resume = run / "checkpoints" / "last.ckpt"
    stopped = f"{run} is a training run with no exports yet (stopped after epoch 1): continue it with `satclip " \
              f"train --config {run / 'config.yaml'} --resume` (it exports its model when it ends)"  # fmt: skip
    for model, said in ((run, stopped), (resume, f"{resume}: this is a checkpoint satclip train saves to resume a "
                                                 f"run (RUN/checkpoints/), not a model: {stopped}")):  # fmt: skip
        assert main(["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(model)]) == 2
        assert one_error_line(capsys.readouterr().err) == f"satclip: error: {said}"
    with safe_output.exclusive(run):  # a run still training holds the lock
        assert main(["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(run)]) == 2
        assert one_error_line(capsys.readouterr().err) == (
            f"satclip: error: {run} is a training run with no exports yet (running: PID {os.getpid()}): wait for it "
            "to finish (it exports its model when it ends)"
        )
    assert main(["train", "--config", str(run / "config.yaml"), "--resume"]) == 0  # the command it gives
    assert main(["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(run / "export" / "last")]) == 0
