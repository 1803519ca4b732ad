"""Other commands' outputs may be written beside a training run's own files, never over them: `convert …
RUN/checkpoints/last.ckpt --overwrite` replaced the run's resume state with a weights-only model (then `--resume`
said "the file is damaged"), and `convert … RUN/export/last --overwrite` the model `satclip.load(RUN/export/last)`
gives, both with exit 0."""

from __future__ import annotations

import shutil

import pytest

from satclip import safe_output
from satclip.cli import main
from satclip.errors import OutputExistsError

from .conftest import one_error_line
from .test_train_restart import copy_run, snapshot
from .test_train_resume import short_run  # noqa: F401 - fixture


@pytest.mark.parametrize(
    "output, extra",
    [("checkpoints/last.ckpt", []), ("checkpoints/best.ckpt", ["--target", "original"]),
     ("export/last", ["--target", "native"]), ("export/best.ckpt", [])],
)  # fmt: skip
def test_convert_never_replaces_a_runs_own_files(tmp_path, short_run, capsys, output, extra):  # noqa: F811
    copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    model = shutil.copytree(run / "export" / "best", tmp_path / "other")  # (a model of its own, outside the run)
    (model / safe_output.MARKER).write_text((run / "export" / "best" / safe_output.MARKER).read_text())
    before = snapshot(run)
    assert main(["convert", str(model), str(run / output), "--overwrite", *extra]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{run / output} is {output} of {run}, a satclip training run" in line, line
    assert "even with --overwrite" in line and "satclip train --restart" in line, line
    assert snapshot(run) == before


def test_outputs_beside_a_runs_files_are_allowed_and_its_own_paths_refused(tmp_path, short_run):  # noqa: F811
    copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    for mine in ("export/model.onnx", "eval", "checkpoints/mine.ckpt", "logs/notes", "export/best-copy"):
        safe_output.check_not_in_output(run / mine)  # (the docs' `satclip export -o RUN/export/model.onnx`)
    for kept in ("config.yaml", "history.jsonl", "checkpoints", "checkpoints/last.ckpt.sha256", "logs/version_0",
                 "logs/version_3", "export", "export/last.ckpt", "logs"):
        with pytest.raises(OutputExistsError, match="which keeps it for itself"):
            safe_output.check_not_in_output(run / kept)


def test_a_runs_files_behind_a_linked_folder_of_it_are_refused_too(tmp_path, short_run):  # noqa: F811
    """With RUN/checkpoints a link to another disk, the resolved path of RUN/checkpoints/last.ckpt lies outside the
    run, and its writing was allowed."""
    copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    (tmp_path / "disk").mkdir()
    elsewhere = shutil.move(run / "checkpoints", tmp_path / "disk" / "checkpoints")
    (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    for kept in ("checkpoints/last.ckpt", "checkpoints/best.ckpt.sha256"):
        with pytest.raises(OutputExistsError, match="which keeps it for itself"):
            safe_output.check_not_in_output(run / kept)
    safe_output.check_not_in_output(run / "checkpoints" / "mine.ckpt")
