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
    file_digest = callbacks.file_digest

    def counted(path):
        hashed.append(Path(path).name)
        return file_digest(path)

    monkeypatch.setattr(demo, "_training_progress", lambda progress: Epochs())
    monkeypatch.setattr(api, "run_evaluation", evaluation)
    monkeypatch.setattr(callbacks, "file_digest", counted)
    out = tmp_path / "demo"
    with pytest.raises(Evaluated):
        run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO()))
    assert trained == [0, 1]
    last = out / "work" / demo.training_dir_name(settings) / "checkpoints" / "last.ckpt"
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


def test_a_resumed_training_hashes_the_cache_backbone_once(tmp_path, monkeypatch):
    """A training resumed with data.root set (its feature cache built or reused as needed) hashed the backbone's
    state twice: once for the key the resume checks against the checkpoint's, once more for the key the cache is
    built or reused by. Now once for the key, and once more the cache's own backbone file, checked before the
    cache is reused (a damaged one was trained on); a checkpoint trained on a cache of another backbone is still
    refused before the cache is touched."""
    import torch

    from satclip.errors import ResumeError
    from satclip.train import cache, fit, from_dict
    from satclip.train.callbacks import checksum_path

    from .train_helpers import bluemarble_run

    config = bluemarble_run(tmp_path)
    fit(from_dict(config))
    hashed = []
    state_sha256 = cache.state_sha256

    def counted(state):
        hashed.append(digest := state_sha256(state))
        return digest

    monkeypatch.setattr(cache, "state_sha256", counted)
    more = from_dict({**config, "trainer": {**config["trainer"], "max_epochs": 2}})
    assert len(fit(more, resume=True).history) == 2
    recorded = cache.FeatureCache.open(tmp_path / "cache").key["backbone_sha256"]
    assert hashed == [recorded, recorded]  # the encoder's backbone for the key, then the cache's file

    # the run's checkpoint says it trained on a cache of another backbone: refused, the cache left as it is
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["cache_key"]["backbone_sha256"] = "0" * 64
    torch.save(checkpoint, last)
    checksum_path(last).unlink()  # (as a checkpoint of an older satclip: checked by its CRC-32s)
    files = {p.name: p.read_bytes() for p in (tmp_path / "cache").iterdir() if p.is_file()}
    with pytest.raises(ResumeError, match=r"another feature cache \(backbone_sha256 differ"):
        fit(more.replace(**{"trainer.max_epochs": 3}), resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "cache").iterdir() if p.is_file()} == files
