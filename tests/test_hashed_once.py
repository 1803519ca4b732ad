"""Work done once that was done twice: the sha256 of a checkpoint a rerun of the demo continues from, and the
backbone hash of a feature cache a resumed training rebuilds or reuses."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from satclip.recipes.demo import QUICK, STAGES, run_demo
from satclip.recipes.progress import StageProgress
from satclip.train import callbacks

from .test_train_resume import flip_byte, record_offset


def test_a_continued_demo_hashes_its_checkpoint_once(tmp_path, monkeypatch):
    """A rerun of `satclip demo` computed the sha256 of the checkpoint it continues from twice: once to decide
    whether to continue, once more as training resumed from it. Now once, by the resume itself; a damaged
    checkpoint is still refused (and training starts again)."""
    from lightning.pytorch.callbacks import Callback

    from satclip.eval import api
    from satclip.recipes import demo

    settings = replace(
        QUICK, patches=2000, epochs=2, batch_size=512, eval_points=300, baselines=("direct",), workers=1,
        extra_encoders=(),
    )  # fmt: skip
    trained = []

    class Epochs(Callback):
        def on_train_epoch_start(self, trainer, module):
            trained.append(trainer.current_epoch)

    class Evaluated(Exception):
        pass

    def evaluation(*args, **kwargs):  # the training is what is looked at: stop the demo there
        raise Evaluated

    hashed = []
    file_sha256 = callbacks.file_sha256

    def counted(path):
        hashed.append(Path(path).name)
        return file_sha256(path)

    monkeypatch.setattr(demo, "_training_progress", lambda progress: Epochs())
    monkeypatch.setattr(api, "run_evaluation", evaluation)
    monkeypatch.setattr(callbacks, "file_sha256", counted)
    out = tmp_path / "demo"
    with pytest.raises(Evaluated):
        run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO()))
    assert trained == [0, 1]
    last = out / "work" / "run" / "checkpoints" / "last.ckpt"
    assert last.is_file() and "last.ckpt" not in hashed  # (the new ones are hashed as their temporaries)

    hashed.clear()
    with pytest.raises(Evaluated):  # the same settings: continued (nothing left to train)
        run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO()))
    assert trained == [0, 1]
    assert hashed.count("last.ckpt") == 1, hashed

    hashed.clear()
    flip_byte(last, record_offset(last))  # a damaged checkpoint (its .sha256 file says so): training starts again
    with pytest.raises(Evaluated):
        run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO()))
    assert trained == [0, 1, 0, 1]
    assert hashed.count("last.ckpt") == 1, hashed
    assert "the file is damaged" in (out / "demo.log").read_text()
