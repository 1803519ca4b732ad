"""Training that really resumes: ``last.ckpt`` is the latest state (every epoch, optionally every N steps)
and ``best.ckpt`` the lowest val_loss, kept apart; a run killed with SIGKILL and resumed ends with the
weights of an uninterrupted run, bit for bit, from an epoch end or from mid-epoch; a damaged checkpoint,
one of another config and a second run on the same directory are refused with a clear error."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml

from satclip import safe_output
from satclip.cli import main
from satclip.errors import BadInputError, LockedError, OutputExistsError, ResumeError
from satclip.io.native import read_native
from satclip.train import dump_config, fit, from_dict, load_config
from satclip.train.callbacks import AtomicCheckpointIO, checksum_path
from satclip.train.data import split_indices

from .conftest import S2_EXAMPLES, ctrl_c_at_default, one_error_line, require, run_in_subprocess_env
from .test_train_fit import cached_config
from .train_helpers import cached_run, synthetic_cache, train_in_subprocess

EPOCHS = 6
#: 200 samples, 10 % validation, batches of 64: 3 training steps per epoch
SETTINGS = {"data": {"batch_size": 64}, "optim": {"lr": 0.07}, "trainer": {"max_epochs": EPOCHS}}


def config_for(cache_dir, output_dir, **trainer) -> dict:
    config = cached_config(cache_dir, output_dir, data=SETTINGS["data"], optim=SETTINGS["optim"],
                           trainer={**SETTINGS["trainer"], **trainer})  # fmt: skip
    return config


#: the epoch whose start multiplies the logits by e³ (``logit_scale`` + 3, ``train_in_subprocess``'s spike): a
#: val_loss far above the epochs before it and the one after it, on any CPU (whether this small run's val_loss
#: ever rises by itself depends on the last bits of its arithmetic)
SPIKE_EPOCH = EPOCHS - 2


def _straight_run(root, spike: int | None = None) -> dict:
    """An uninterrupted run (``train_in_subprocess``'s record), with its cache and validation losses."""
    synthetic_cache(root / "cache", n=200)
    run = train_in_subprocess(config_for(root / "cache", root / "run"), root / "files", spike=spike)
    assert [row["epoch"] for row in run["history"]] == list(range(EPOCHS))
    return {**run, "root": root, "val": [row["val_loss"] for row in run["history"]]}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return _straight_run(tmp_path_factory.mktemp("straight"))


@pytest.fixture(scope="module")
def spiked(tmp_path_factory):
    """As ``straight``, with a worse epoch by construction (``SPIKE_EPOCH``)."""
    return _straight_run(tmp_path_factory.mktemp("spiked"), SPIKE_EPOCH)


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def model_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    return {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items()}


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def exported_trained(directory) -> dict[str, torch.Tensor]:
    """An export's trained tensors (location.*, the head visual.head.*, logit_scale): the training model's
    own names."""
    _, tensors = read_native(directory)
    return {k: v for k, v in tensors.items() if k.startswith(("location.", "visual.head.")) or k == "logit_scale"}


def test_killed_after_a_worse_epoch_resumes_after_it_and_ends_like_an_uninterrupted_run(tmp_path, spiked):
    straight = spiked
    val = straight["val"]
    # the kill comes after an epoch whose val_loss did not improve: a checkpoint kept by val_loss alone
    # would be an older epoch
    worse = [e for e in range(1, EPOCHS - 1) if val[e] >= min(val[:e])]
    assert worse, f"the run's val_loss improved every epoch, the test needs one that does not: {val}"
    k = worse[0]
    best = int(np.argmin(val))
    assert best != EPOCHS - 1, f"the last epoch is the best, the test needs them to differ: {val}"

    config = config_for(straight["root"] / "cache", tmp_path / "run")
    train_in_subprocess(config, tmp_path / "killed", kill=("epoch", k + 1), spike=SPIKE_EPOCH)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert load(checkpoints / "last.ckpt")["epoch"] == k  # the latest state, whatever its val_loss
    assert load(checkpoints / "best.ckpt")["epoch"] == int(np.argmin(val[: k + 1])) < k
    assert_same(model_weights(load(checkpoints / "last.ckpt")), straight["weights"][k])

    with pytest.raises(OutputExistsError, match="--resume"):
        fit(from_dict(config))
    # with a loader worker (a resumable change): workers draw batches before Lightning sets the epoch
    workers = {**config, "data": {**config["data"], "num_workers": 1}}
    resumed = train_in_subprocess(workers, tmp_path / "resumed", resume=True, spike=SPIKE_EPOCH)
    assert resumed["batches"][0] == (k + 1, 0)  # continues at epoch k + 1, not at 0 nor at an older best epoch
    assert sorted({epoch for epoch, _ in resumed["batches"]}) == list(range(k + 1, EPOCHS))
    assert [row["epoch"] for row in resumed["history"]] == list(range(EPOCHS))

    final = load(resumed["checkpoints"]["last"])
    assert final["epoch"] == EPOCHS - 1
    assert_same(model_weights(final), model_weights(load(straight["checkpoints"]["last"])))
    assert_same(model_weights(final), straight["weights"][-1])

    # export/last is the final state, export/best the lowest-val_loss epoch's; here they differ
    assert_same(exported_trained(resumed["exports"]["last"]), straight["weights"][-1])
    assert_same(exported_trained(resumed["exports"]["best"]), straight["weights"][best])
    assert not torch.equal(straight["weights"][best]["logit_scale"], straight["weights"][-1]["logit_scale"])
    metadata = read_native(resumed["exports"]["best"])[0]["metadata"]
    assert metadata["epoch"] == best and metadata["metrics"]["val_loss"] == pytest.approx(val[best], rel=1e-6)
    assert read_native(resumed["exports"]["last"])[0]["metadata"]["epoch"] == EPOCHS - 1


def test_every_n_steps_checkpoints_are_written_and_resume_mid_epoch(tmp_path, straight, monkeypatch):
    saves = []
    original = AtomicCheckpointIO.save_checkpoint

    def recording(self, checkpoint, path, storage_options=None):
        saves.append((os.path.basename(path), checkpoint["global_step"]))
        return original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", recording)
    config = config_for(straight["root"] / "cache", tmp_path / "run", max_epochs=2, checkpoint_every_n_steps=2)
    history = fit(from_dict(config)).history
    per_epoch = math.ceil(len(split_indices(200, 0.1, 0)[0]) / 64)
    epoch_ends = {per_epoch * (e + 1) for e in range(2)}
    expected = sorted(epoch_ends | {s for s in range(1, 2 * per_epoch + 1) if s % 2 == 0})
    assert [step for name, step in saves if name == "last.ckpt"] == expected
    # best.ckpt at the ends of the epochs whose val_loss is the lowest so far (whether the second epoch's is
    # lower depends on the CPU's float32 rounding of so short a run)
    losses = [row["val_loss"] for row in history]
    improved = [per_epoch * (e + 1) for e, loss in enumerate(losses) if loss < min(losses[:e], default=math.inf)]
    assert [step for name, step in saves if name == "best.ckpt"] == improved and improved[0] == per_epoch

    saves.clear()
    fit(from_dict(config_for(straight["root"] / "cache", tmp_path / "default", max_epochs=2)))
    assert [step for name, step in saves if name == "last.ckpt"] == sorted(epoch_ends)  # off by default
    monkeypatch.undo()

    # killed after a step checkpoint in the middle of epoch 1: resumes at its next batch
    step = per_epoch + 1
    config = config_for(straight["root"] / "cache", tmp_path / "killed", checkpoint_every_n_steps=1)
    train_in_subprocess(config, tmp_path / "killed-run", kill=("step", step))
    last = load(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (1, step)
    resumed = train_in_subprocess(config, tmp_path / "resumed-run", resume=True)
    assert resumed["batches"][0] == (1, 1)
    assert len(resumed["batches"]) == EPOCHS * per_epoch - step
    assert_same(model_weights(load(resumed["checkpoints"]["last"])), straight["weights"][-1])
    assert [row["epoch"] for row in resumed["history"]] == list(range(EPOCHS))
    # the row of the epoch resumed in its middle says whose batches its training metrics cover (it read as a
    # whole epoch's, in the demo's report and plot too); the others are the uninterrupted run's
    assert [row.get("resumed_at_batch") for row in resumed["history"]] == [None, 1] + [None] * (EPOCHS - 2)
    for row, whole in zip(resumed["history"], straight["history"], strict=True):
        assert row["epoch"] == 1 or row == whole


def test_an_epochs_row_is_written_once_its_checkpoint_is_on_disk(tmp_path, straight):
    """An epoch's row was written to history.jsonl (and announced) before its checkpoint: killed while it wrote
    that checkpoint, the run had said epoch 2 was done, and resumed from the checkpoint of the batch before.
    The row now follows the checkpoint: none was written, and the resumed run's row of that epoch says where it
    resumed; its weights are the uninterrupted run's."""
    per_epoch = straight["history"][0]["step"]
    config = config_for(straight["root"] / "cache", tmp_path / "killed", checkpoint_every_n_steps=1)
    train_in_subprocess(config, tmp_path / "killed-run", kill=("save", 2 * per_epoch))
    assert load(tmp_path / "killed" / "checkpoints" / "last.ckpt")["global_step"] == 2 * per_epoch - 1
    written = [json.loads(line) for line in (tmp_path / "killed" / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in written] == [0]
    resumed = train_in_subprocess(config, tmp_path / "resumed-run", resume=True)
    assert [row.get("resumed_at_batch") for row in resumed["history"]] == [None, per_epoch - 1] + [None] * (EPOCHS - 2)
    assert_same(model_weights(load(resumed["checkpoints"]["last"])), straight["weights"][-1])


def test_a_run_interrupted_after_an_epochs_checkpoint_names_the_epoch_it_resumes_at(tmp_path, caplog, monkeypatch):
    """Interrupted after epoch 2 was saved (writing its row), the run said "interrupted in epoch 2 of 3", as if
    that epoch were lost; it says epoch 2 was saved and that a resume starts at epoch 3."""
    from satclip.train.callbacks import History

    write = History._write

    def interrupted_at_epoch_2(self):
        if [row["epoch"] for row in self.rows] == [0, 1]:
            raise KeyboardInterrupt
        write(self)

    monkeypatch.setattr(History, "_write", interrupted_at_epoch_2)
    synthetic_cache(tmp_path / "cache", n=200)
    config = from_dict(config_for(tmp_path / "cache", tmp_path / "run", enable_progress_bar=False, max_epochs=3))
    with caplog.at_level(logging.WARNING, logger="satclip"), pytest.raises(KeyboardInterrupt):
        fit(config)
    assert ("training interrupted after epoch 2 of 3, which was saved; continue it with `satclip train --config "
            f"{tmp_path / 'run' / 'config.yaml'} --resume` (it resumes at epoch 3)") in caplog.text  # fmt: skip
    assert load(tmp_path / "run" / "checkpoints" / "last.ckpt")["epoch"] == 1


def test_a_resume_says_which_checkpoint_and_epoch_it_continues_at(tmp_path, short_run, caplog):
    """A resume from an epoch's end said nothing of where it went on (one in the middle of an epoch said "resuming
    epoch 2 after its batch 1 of 3", not from what): one line names the checkpoint and the epoch."""
    config = copy_run(short_run, tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming from")]

    with caplog.at_level(logging.INFO, logger="satclip"):
        fit(from_dict({**config, "trainer": {**config["trainer"], "max_epochs": 3}}), resume=True)
    assert said() == [f"resuming from {last} at epoch 3 of 3"]

    class StopAtStep4(pl.Callback):  # (3 steps an epoch: after batch 1 of epoch 2, whose checkpoint is saved)
        def on_train_batch_start(self, trainer, *_):
            if trainer.global_step == 4:
                raise KeyboardInterrupt

    stopped = {**config, "trainer": {**config["trainer"], "output_dir": str(tmp_path / "mid"),
                                     "checkpoint_every_n_steps": 1}}  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        fit(from_dict(stopped), callbacks=[StopAtStep4()])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="satclip"):
        fit(from_dict(stopped), resume=True)
    assert said() == [f"resuming from {tmp_path / 'mid' / 'checkpoints' / 'last.ckpt'} in epoch 2 of 2, after its "
                      "batch 1 of 3: its training metrics in history.jsonl cover the batches from there on (its row "
                      "says resumed_at_batch)"]  # fmt: skip


def test_a_damaged_history_is_named_and_resumed_past(tmp_path, short_run, caplog):
    """A history.jsonl cut short (or a line of junk) failed the resume with json's "Unterminated string starting
    at: line 1 column 207", naming no file; one deleted was resumed past without a word."""
    root, config = short_run
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    config = {**config, "trainer": {**config["trainer"], "output_dir": str(run), "max_epochs": 3}}
    history = run / "history.jsonl"
    history.write_text(history.read_text()[:-40])  # epoch 1's row cut short
    with caplog.at_level(logging.WARNING, logger="satclip"):
        resumed = fit(from_dict(config), resume=True)
    assert f"{history} line 2 is damaged (not JSON: " in caplog.text
    assert f"{history} holds no row of epoch(s) 2 (deleted or damaged)" in caplog.text  # (counted from 1)
    assert [row["epoch"] for row in resumed.history] == [0, 2]
    caplog.clear()
    history.unlink()
    config["trainer"]["max_epochs"] = 4
    with caplog.at_level(logging.WARNING, logger="satclip"):
        fit(from_dict(config), resume=True)
    assert f"{history} holds no row of epoch(s) 1, 2, 3 (deleted or damaged)" in caplog.text


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A finished 2-epoch run to damage in the tests (copied per test)."""
    root = tmp_path_factory.mktemp("short")
    synthetic_cache(root / "cache", n=200)
    config = config_for(root / "cache", root / "run", max_epochs=2)
    fit(from_dict(config))
    return root, config


def copy_run(short_run, tmp_path) -> dict:
    root, config = short_run
    shutil.copytree(root / "run", tmp_path / "run")
    return {**config, "trainer": {**config["trainer"], "output_dir": str(tmp_path / "run")}}


def record_offset(path, member_suffix: str = "") -> int:
    """The file offset of the data of the largest record of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if i.filename.endswith(member_suffix)), key=lambda i: i.file_size)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset + 26)
        name_length, extra_length = np.frombuffer(handle.read(4), dtype="<u2")
    return info.header_offset + 30 + int(name_length) + int(extra_length) + info.file_size // 2


def flip_byte(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_refused(tmp_path, short_run):
    config = copy_run(short_run, tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert checksum_path(last).read_text().split() == [
        __import__("hashlib").sha256(last.read_bytes()).hexdigest(), "last.ckpt",
    ]  # fmt: skip
    before = last.read_bytes()
    flip_byte(last, record_offset(last))
    with pytest.raises(ResumeError, match=r"last\.ckpt: the file is damaged .*sha256.*another trainer\.output_dir"):
        fit(from_dict(config), resume=True)
    # a checkpoint without its checksum file (an older satclip, a copy) is checked by its CRC-32s
    checksum_path(last).unlink()
    with pytest.raises(ResumeError, match=r"damaged: its record .* fails its CRC-32 check"):
        fit(from_dict(config), resume=True)
    last.write_bytes(before)  # intact again: resumes (nothing left to train) and exports
    result = fit(from_dict(config), resume=True)
    assert result.exports["last"].native.is_dir()


def test_a_checkpoint_of_another_config_or_not_of_satclip_is_refused(tmp_path, short_run, capsys):
    config = copy_run(short_run, tmp_path)
    other = {**config, "model": {**config["model"], "embed_dim": 16}}
    with pytest.raises(ResumeError, match=r"another config \(model\.embed_dim: 32 in the checkpoint, 16 now\)"):
        fit(from_dict(other), resume=True)
    # the command: a bad input (exit 2, as embed's resume of another job), not a failure of the run (it exited 1)
    assert main(["train", "--config", str(dump_config(from_dict(other), tmp_path / "other.yaml")), "--resume"]) == 2
    assert "another config (model.embed_dim: 32 in the checkpoint" in one_error_line(capsys.readouterr().err)
    lr = {**config, "optim": {"lr": 0.01}}
    with pytest.raises(ResumeError, match=r"optim\.lr.*its config\.yaml.*another trainer\.output_dir"):
        fit(from_dict(lr), resume=True)
    # the same, from a checkpoint given by path into a fresh output directory
    fresh = {**other, "trainer": {**other["trainer"], "output_dir": str(tmp_path / "fresh")}}
    with pytest.raises(ResumeError, match=r"model\.embed_dim"):
        fit(from_dict(fresh), resume=tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert not (tmp_path / "fresh").exists()  # refused before anything was written

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    with pytest.raises(ResumeError, match="not a satclip training checkpoint"):
        fit(from_dict(config), resume=foreign)

    # a resumable change: more epochs continue the run
    more = {**config, "trainer": {**config["trainer"], "max_epochs": 3}}
    result = fit(from_dict(more), resume=True)
    assert [row["epoch"] for row in result.history] == [0, 1, 2]


def test_a_refused_resume_lists_what_may_change_and_not_the_caches_options(tmp_path, short_run):
    """A refused resume listed data.cache_views and data.cache_dtype among the keys that "may change when
    resuming", and a resume that changed them was refused (they are the feature cache's: another cache). The list
    names the keys that change freely; the cache's options must be that cache's."""
    config = copy_run(short_run, tmp_path)
    with pytest.raises(ResumeError) as refused:
        fit(from_dict({**config, "optim": {"lr": 0.01}}), resume=True)
    assert str(refused.value).split("; only ")[1] == (
        "trainer.max_epochs, trainer.enable_progress_bar, trainer.log_every_n_steps, trainer.export, "
        "trainer.checkpoint_every_n_steps, trainer.output_dir, data.num_workers, trainer.limit_val_batches, "
        "trainer.export_target may change when resuming (and data.cache and data.root, where the checkpoint records "
        "its feature cache's key: data.cache_views and data.cache_dtype must then be that cache's)"
    )


def test_resuming_from_a_missing_file_points_to_the_runs_own_checkpoint(tmp_path, short_run):
    config = copy_run(short_run, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt does not exist \(continue from .*last\.ckpt with"):
        fit(from_dict(config), resume=str(tmp_path / "nope.ckpt"))


def test_a_second_run_on_the_same_output_dir_fails_fast(tmp_path, short_run):
    config = config_for(short_run[0] / "cache", tmp_path / "run", max_epochs=1)
    with safe_output.exclusive(tmp_path / "run"):
        with pytest.raises(LockedError, match=rf"in use by another satclip run \(PID {os.getpid()}\b"):
            fit(from_dict(config))
    assert not (tmp_path / "run").exists()
    assert fit(from_dict(config)).history  # the lock went with its holder



def test_a_second_train_command_on_a_run_in_use_is_refused_before_lightning_is_imported(tmp_path):
    """`satclip train … --resume` on a run directory another run uses was refused, but only after Lightning was
    imported and the config checked against its run (26 s on a busy machine; the docs say "fails at once")."""
    import subprocess
    import sys

    from satclip.train import dump_config

    from .conftest import run_in_subprocess_env

    dump_config(from_dict(config_for(tmp_path / "cache", tmp_path / "run", max_epochs=1)), tmp_path / "config.yaml")
    script = ("import sys; from satclip.cli import main; code = main(['train', '--config', sys.argv[1], '--resume']); "
              "print(code, 'lightning' in sys.modules)")  # fmt: skip
    with safe_output.exclusive(tmp_path / "run"):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "config.yaml")], capture_output=True,
                              text=True, env=run_in_subprocess_env())  # fmt: skip
    assert done.stdout.split() == ["1", "False"], (done.stdout, done.stderr[-2000:])  # (exit 1: in use)
    assert f"in use by another satclip run (PID {os.getpid()} " in done.stderr

def test_run_directory_ownership(tmp_path, short_run):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="satclip did not create"):
        fit(from_dict(config_for(short_run[0] / "cache", foreign, max_epochs=1)))
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    # a run directory of an older satclip (no marker, no checksum files) resumes and is marked
    config = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    for directory in (run, run / "export" / "best", run / "export" / "last"):
        (directory / safe_output.MARKER).unlink()
    for sidecar in (run / "checkpoints").glob("*.sha256"):
        sidecar.unlink()
    fit(from_dict({**config, "trainer": {**config["trainer"], "max_epochs": 3}}), resume=True)
    assert safe_output.is_owned(run) and checksum_path(run / "checkpoints" / "last.ckpt").is_file()
    assert safe_output.is_owned(run / "export" / "best")  # its exports were replaced


SIGNALLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import lightning.pytorch as pl

    class Signal(pl.Callback):  # as a scheduler's SIGTERM or a Ctrl-C in the second epoch
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == int(sys.argv[3]):
                os.kill(os.getpid(), getattr(signal, sys.argv[2]))

    import satclip.train
    from satclip.cli import main

    real_fit = satclip.train.fit  # the command's fit, with the callback that signals
    satclip.train.fit = lambda config, **kwargs: real_fit(config, callbacks=[Signal()], **kwargs)
    sys.exit(main(["train", "--config", sys.argv[1]]))
    """
)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signalled_run_says_so_and_how_to_continue(tmp_path, signal_name):
    """A SIGTERM ended the run early with exit 0, as if it had finished; a Ctrl-C with exit 1 and Lightning's
    line only: both are "interrupted" (exit 130) with the command that continues the run, and no export."""
    synthetic_cache(tmp_path / "cache", n=200)
    config_file = tmp_path / "run.yaml"
    dump_config(from_dict(config_for(tmp_path / "cache", tmp_path / "run", enable_progress_bar=False)), config_file)
    script = tmp_path / "signalled_run.py"
    script.write_text(SIGNALLED_RUN)
    env = run_in_subprocess_env()
    with ctrl_c_at_default():  # (whatever this pytest ignores)
        done = subprocess.run([sys.executable, str(script), str(config_file), signal_name, "1"], env=env,
                              capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 130, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "satclip: interrupted"
    assert f"continue it with `satclip train --config {tmp_path / 'run' / 'config.yaml'} --resume`" in lines[-2]
    assert not (tmp_path / "run" / "export").exists()


def test_a_run_interrupted_before_its_first_checkpoint_is_told_to_start_again(tmp_path):
    """Interrupted in its first epoch, the run said to continue with --resume, which then failed: no
    checkpoints/last.ckpt. It says to start again, and that command works."""
    from satclip.cli import main

    synthetic_cache(tmp_path / "cache", n=200)
    config_file = tmp_path / "run.yaml"
    dump_config(from_dict(config_for(tmp_path / "cache", tmp_path / "run", enable_progress_bar=False,
                                     max_epochs=1)), config_file)  # fmt: skip
    script = tmp_path / "signalled_run.py"
    script.write_text(SIGNALLED_RUN)
    env = run_in_subprocess_env()
    with ctrl_c_at_default():  # (whatever this pytest ignores)
        done = subprocess.run([sys.executable, str(script), str(config_file), "SIGINT", "0"], env=env,
                              capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 130, done.stderr[-3000:]
    command = f"satclip train --config {tmp_path / 'run' / 'config.yaml'}"
    assert f"no epoch was saved yet, so there is nothing to resume: start it again with `{command}`" in done.stderr
    assert main(command.split()[1:]) == 0


def test_a_workflow_that_trains_as_one_stage_gives_its_own_continuation(caplog):
    """The demo's Ctrl-C in pretraining said to continue with `satclip train --config … --resume`, which
    finished the training but made no model, evaluation or report: the demo is rerun instead."""
    import logging
    import types

    from satclip.train.fitting import _fit_or_interrupt

    def fit(*args, **kwargs):
        raise SystemExit(1)  # what Lightning does on Ctrl-C

    trainer = types.SimpleNamespace(fit=fit, interrupted=True, current_epoch=1, max_epochs=5)
    with caplog.at_level(logging.WARNING, logger="satclip"), pytest.raises(KeyboardInterrupt):
        _fit_or_interrupt(trainer, None, None, None, lambda: "rerun the same `satclip demo` command")
    assert "training interrupted in epoch 2 of 5; rerun the same `satclip demo` command" in caplog.text


@pytest.mark.parametrize("epoch", [0, 1])
def test_a_workflow_interrupted_before_its_first_checkpoint_says_it_starts_again(tmp_path, caplog, epoch):
    """The demo interrupted in its first epoch said "training continues where it stopped"; with no checkpoint
    saved, its rerun trained from the start without a word."""
    import logging

    class CtrlC(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.current_epoch == epoch:
                raise KeyboardInterrupt

    from satclip import safe_output

    synthetic_cache(tmp_path / "cache", n=200)
    config = from_dict(config_for(tmp_path / "cache", tmp_path / "run", enable_progress_bar=False, max_epochs=2))
    safe_output.forget_created()  # (a command starts)
    with caplog.at_level(logging.WARNING, logger="satclip"), pytest.raises(KeyboardInterrupt):
        fit(config, callbacks=[CtrlC()], rerun="the same `satclip demo` command")
    # the advice is given once: the CLI's "the work done is kept in …/checkpoints: rerun the same command …" said
    # it again on the next line
    assert tmp_path / "run" / "checkpoints" not in safe_output.kept_work()
    said = {0: "no epoch was saved yet, so there is nothing to resume: rerun the same `satclip demo` command to "
               "start the training again",
            1: "rerun the same `satclip demo` command: training continues from its last finished epoch"}[epoch]
    assert f"training interrupted in epoch {epoch + 1} of 2; {said}" in caplog.text


def _cli_config(tmp_path, config: dict, **trainer) -> str:
    """``config`` (with ``trainer`` changes) as a YAML file for ``satclip train --config``."""
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.yaml')))}.yaml"
    dump_config(from_dict({**config, "trainer": {**config["trainer"], **trainer}}), path)
    return str(path)


def test_another_runs_checkpoint_is_not_resumed_into_a_directory_holding_a_run(tmp_path, short_run, capsys):
    """`--resume OTHER.ckpt` into an output_dir holding a finished run of another config exited 0: it replaced
    that run's checkpoints and config.yaml, and history.jsonl mixed the epochs of the two runs."""
    config = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    files = ("config.yaml", "history.jsonl", "checkpoints/last.ckpt", "checkpoints/best.ckpt")
    before = {name: (run / name).read_bytes() for name in files}
    other = {**config, "optim": {"lr": 0.01}}
    fit(from_dict({**other, "trainer": {**other["trainer"], "output_dir": str(tmp_path / "other"), "max_epochs": 1}}))
    theirs = str(tmp_path / "other" / "checkpoints" / "last.ckpt")

    assert main(["train", "--config", _cli_config(tmp_path, other, max_epochs=3), "--resume", theirs]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot resume from {theirs} in {run}: that directory holds another run (optim.lr: 0.07 there" in line
    assert "choose another trainer.output_dir" in line
    assert {name: (run / name).read_bytes() for name in files} == before
    (run / "config.yaml").rename(tmp_path / "aside.yaml")  # without it, its last checkpoint's config tells
    with pytest.raises(OutputExistsError, match=r"holds another run \(optim\.lr: 0\.07 there, 0\.01 now\)"):
        fit(from_dict({**other, "trainer": {**other["trainer"], "output_dir": str(run)}}), resume=theirs)
    (tmp_path / "aside.yaml").rename(run / "config.yaml")
    # into a new directory it resumes; the run's own best checkpoint resumes into the run's directory
    assert main(["train", "--config", _cli_config(tmp_path, other, output_dir=str(tmp_path / "new")),
                 "--resume", theirs]) == 0  # fmt: skip
    own_best = str(run / "checkpoints" / "best.ckpt")  # (with epochs left to train from it)
    assert main(["train", "--config", _cli_config(tmp_path, config, max_epochs=3), "--resume", own_best]) == 0


def test_resumes_that_would_roll_back_or_train_nothing_are_refused(tmp_path, short_run, capsys, caplog):
    """(1) Another run's checkpoint of the same config, resumed into a directory holding a finished run, rolled
    it back and left its later best beside the rolled-back last, exit 0. (2) A checkpoint that had done all of
    trainer.max_epochs trained nothing and exported the directory's own last.ckpt, not itself; one saved during
    the next epoch exported its part-trained state as the last finished epoch's. (3) A finished run resumed says
    there is nothing to train."""
    import logging

    config = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    files = ("config.yaml", "history.jsonl", "checkpoints/last.ckpt", "checkpoints/best.ckpt")
    before = {name: (run / name).read_bytes() for name in files}
    elsewhere = tmp_path / "elsewhere"
    fit(from_dict({**config, "trainer": {**config["trainer"], "output_dir": str(elsewhere), "max_epochs": 1}}))
    theirs = str(elsewhere / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert main(["train", "--config", _cli_config(tmp_path, config, max_epochs=2), "--resume", theirs]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot resume from {theirs} in {run}: that directory holds a run of its own" in line, line
    assert {name: (run / name).read_bytes() for name in files} == before
    # all epochs done: from a checkpoint that is not the directory's last, nothing to train and the wrong export
    assert main(["train", "--config", _cli_config(tmp_path, config, max_epochs=1, output_dir=str(tmp_path / "new")),
                 "--resume", theirs]) == 2  # fmt: skip
    line = one_error_line(capsys.readouterr().err)
    assert f"{theirs} has done all 1 epoch(s) of trainer.max_epochs=1: resuming from it trains nothing" in line
    assert "--trainer.max_epochs 2 or more" in line
    # saved during epoch 2 (a step checkpoint): the run must go on to finish that epoch
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["started"] = 2
    checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] = 1
    midway = tmp_path / "midway" / "checkpoints" / "last.ckpt"
    midway.parent.mkdir(parents=True)
    torch.save(checkpoint, midway)
    digest = hashlib.sha256(midway.read_bytes()).hexdigest()  # (as the run records it)
    midway.with_name("last.ckpt.sha256").write_text(f"{digest}  last.ckpt\n")
    assert main(["train", "--config", _cli_config(tmp_path, config, max_epochs=1, output_dir=str(tmp_path / "m2")),
                 "--resume", str(midway)]) == 2  # fmt: skip
    assert f"{midway} was saved during epoch 2, and trainer.max_epochs=1 ends the run before it: resume with " \
           "--trainer.max_epochs 2 or more" in one_error_line(capsys.readouterr().err)  # fmt: skip
    # the run's own finished last.ckpt: said to have nothing to train
    logs = sorted(p.name for p in (run / "logs").iterdir())
    history = (run / "history.jsonl").read_text()
    with caplog.at_level(logging.INFO, logger="satclip.train.fitting"):
        result = fit(from_dict(config), resume=True)
    assert f"{run} has trained all 2 epoch(s) of trainer.max_epochs: nothing to train" in caplog.text
    # no trainer was started (it added an empty logs/version_N); the result is the finished run's
    assert sorted(p.name for p in (run / "logs").iterdir()) == logs
    assert (run / "history.jsonl").read_text() == history and [row["epoch"] for row in result.history] == [0, 1]
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    trained = result.model.state_dict()
    location = [name for name in saved if name.startswith("model.location")]
    assert location and all(torch.equal(trained[name.removeprefix("model.")], saved[name]) for name in location)
    assert set(result.exports) == {"best", "last"} and result.exports["last"].native.is_dir()


def test_an_interrupted_export_says_how_to_write_it(tmp_path, short_run, monkeypatch, caplog):
    """Ctrl-C while a trained run wrote its exports said only "interrupted"; the training's own interruption
    says how to continue."""
    import logging

    from satclip.train import fitting

    config = copy_run(short_run, tmp_path)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "_export_all", stopped)
    with caplog.at_level(logging.WARNING, logger="satclip.train.fitting"), pytest.raises(KeyboardInterrupt):
        fit(from_dict(config), resume=True)
    assert ("export interrupted; the run is trained: write its exports with `satclip train --config "
            f"{tmp_path / 'run' / 'config.yaml'} --resume`") in caplog.text  # fmt: skip


def test_fewer_epochs_than_done_are_refused_and_config_yaml_is_kept(tmp_path, short_run, capsys):
    """trainer.max_epochs below the epochs done: Lightning's MisconfigurationException ("unexpected error"),
    or with one epoch less a silent re-export, after config.yaml was rewritten, so that the command printed to
    continue the run failed from then on."""
    config = copy_run(short_run, tmp_path)
    recorded = dump_config(from_dict(config), tmp_path / "run" / "config.yaml")  # as the copy's own run wrote it
    before = recorded.read_text()
    assert main(["train", "--config", _cli_config(tmp_path, config, max_epochs=1), "--resume"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "trainer.max_epochs=1 is below the 2 epochs" in line and "--trainer.max_epochs 2 or more" in line
    assert recorded.read_text() == before
    assert main(["train", "--config", str(recorded), "--resume"]) == 0


def test_resume_given_a_directory_says_it_takes_a_checkpoint_file(tmp_path, short_run, capsys):
    """`--resume DIR` said "cannot resume: DIR does not exist"."""
    config = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--config", _cli_config(tmp_path, config), "--resume", str(run)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot resume from {run}: it is a directory; --resume takes a checkpoint file" in line
    assert f"(e.g. {run / 'checkpoints' / 'last.ckpt'})" in line
    # the run's checkpoints/ given: its last.ckpt is named (it said checkpoints/checkpoints/last.ckpt)
    assert main(["train", "--config", _cli_config(tmp_path, config), "--resume", str(run / "checkpoints")]) == 2
    assert f"(e.g. {run / 'checkpoints' / 'last.ckpt'})" in one_error_line(capsys.readouterr().err)


def test_a_resume_from_another_cache_is_refused_before_the_cache_is_rebuilt(tmp_path, caplog):
    """A resume to be refused for another feature cache first rebuilt (so destroyed) the run's cache, which
    the dataset at data.root no longer matches."""
    root = tmp_path / "s2"
    shutil.copytree(require(S2_EXAMPLES), root)
    config = cached_run(tmp_path, root, "s2100k", in_chans=13, batch_size=4)
    fit(from_dict(config))
    more = from_dict({**config, "trainer": {**config["trainer"], "max_epochs": 2}})
    assert len(fit(more, resume=True).history) == 2  # the same images: the run's own cache
    files = {p.name: p.read_bytes() for p in (tmp_path / "cache").iterdir() if p.is_file()}
    index = root / "index.csv"
    index.write_text("".join(index.read_text().splitlines(keepends=True)[:-1]))  # one image fewer
    with pytest.raises(ResumeError, match=r"another feature cache \(.*dataset.* differ"):
        fit(more.replace(**{"trainer.max_epochs": 3}), resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "cache").iterdir() if p.is_file()} == files
    # the finished run resumed as it is: refused without first saying its exports are written again
    with caplog.at_level("INFO", logger="satclip"), pytest.raises(ResumeError, match="another feature cache"):
        fit(more, resume=True)
    assert "nothing to train" not in caplog.text


def test_a_run_that_recorded_other_cache_views_resumes_with_the_caches(tmp_path):
    """A run from a prebuilt cache recorded data.cache_views and data.cache_dtype whatever the cache held (the
    defaults); now that a config must say the cache's, such a run resumes with them: the cache's key, checked
    on every resume, holds both."""
    synthetic_cache(tmp_path / "cache", n=200, views=4)
    config = config_for(tmp_path / "cache", tmp_path / "run", max_epochs=1)
    config["data"] = {**config["data"], "cache_views": 4}
    fit(from_dict(config))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = load(last)
    checkpoint["hyper_parameters"]["config"]["data"]["cache_views"] = 8  # as an older satclip recorded it
    torch.save(checkpoint, last)
    checksum_path(last).unlink()
    result = fit(from_dict({**config, "trainer": {**config["trainer"], "max_epochs": 2}}), resume=True)
    assert [row["epoch"] for row in result.history] == [0, 1]


def test_a_users_config_yaml_in_the_output_dir_is_never_rewritten(tmp_path, capsys):
    """`satclip train --config u2/config.yaml --trainer.output_dir u2`, u2 holding the user's config (with
    comments) and an empty checkpoints/: satclip took u2 for a run of an older satclip, marked it, and rewrote
    config.yaml as the resolved config, the user's comments gone. It refuses, and changes nothing; a
    config.yaml in the form satclip writes (an older satclip's interrupted run) is still continued there."""
    synthetic_cache(tmp_path / "cache", n=200)
    mine = tmp_path / "u2"
    (mine / "checkpoints").mkdir(parents=True)
    config = config_for(tmp_path / "cache", mine, max_epochs=1)
    text = "# my smoke run: small, one epoch\n" + yaml.safe_dump(config, sort_keys=False)
    (mine / "config.yaml").write_text(text)
    command = ["train", "--config", str(mine / "config.yaml"), "--trainer.output_dir", str(mine)]
    assert main(command) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{mine} is no satclip run" in line and "its config.yaml is not one satclip wrote" in line
    assert (mine / "config.yaml").read_text() == text
    assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")) == ["checkpoints", "config.yaml"]

    dump_config(from_dict(config), mine / "config.yaml")  # as an older satclip wrote it
    assert main(command) == 0
    assert safe_output.is_owned(mine) and (mine / "checkpoints" / "last.ckpt").is_file()


def test_a_run_resumes_from_its_feature_cache_moved_elsewhere(tmp_path):
    """A feature cache moved (with the directory of a demo holding it) made the resumed run "another config
    (data.cache: …)": refused, and the demo trained again from epoch 0. The checkpoint records the cache's key,
    which is what is checked: the same features elsewhere resume; other features, or a checkpoint of a satclip
    that recorded no key, are still refused."""
    from .train_helpers import bluemarble_run

    config = bluemarble_run(tmp_path)
    fit(from_dict(config))
    (tmp_path / "cache").rename(tmp_path / "moved")
    moved = from_dict({**config, "data": {**config["data"], "cache": str(tmp_path / "moved")},
                       "trainer": {**config["trainer"], "max_epochs": 2}})  # fmt: skip
    assert len(fit(moved, resume=True).history) == 2
    assert not (tmp_path / "cache").exists()  # (the moved cache was used, not built again)

    # other views: the option is named with both values, not blamed on the cache ("point data.cache at the run's
    # cache", which it was)
    views = moved.replace(**{"data.cache_views": 1, "trainer.max_epochs": 3})
    with pytest.raises(ResumeError) as refused:
        fit(views, resume=True)
    assert str(refused.value) == (
        f"cannot resume from {tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}: it trained with data.cache_views 2, "
        "the config says data.cache_views 1; resume with data.cache_views 2 (in the config, or --data.cache_views 2), "
        "or start a new run in another trainer.output_dir"  # ("drop --data.cache_views 1": a flag never given)
    )

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    del checkpoint["hyper_parameters"]["cache_key"]  # (as a checkpoint of an older satclip)
    torch.save(checkpoint, last)
    checksum_path(last).unlink()
    (tmp_path / "moved").rename(tmp_path / "again")
    again = moved.replace(**{"data.cache": str(tmp_path / "again"), "trainer.max_epochs": 3})
    with pytest.raises(ResumeError, match=r"another config \(data.cache: "):
        fit(again, resume=True)


def test_a_run_resumes_with_its_images_moved_or_not_given(tmp_path):
    """The dataset copied elsewhere (data.root) made the resumed run "another config (data.root: …)", as did
    training on from the cache alone (data.root null), though the cache's key, checked on resume, holds the images'
    fingerprint; other images are still refused."""
    from .train_helpers import bluemarble_run

    config = bluemarble_run(tmp_path)
    fit(from_dict(config))
    shutil.copytree(tmp_path / "corpus", tmp_path / "copy")
    moved = from_dict({**config, "data": {**config["data"], "root": str(tmp_path / "copy")},
                       "trainer": {**config["trainer"], "max_epochs": 2}})  # fmt: skip
    assert len(fit(moved, resume=True).history) == 2
    alone = moved.replace(**{"data.root": None, "trainer.max_epochs": 3})
    assert len(fit(alone, resume=True).history) == 3
    from satclip.data.bluemarble import BlueMarbleParams, build_bluemarble

    other = build_bluemarble(tmp_path / "other", BlueMarbleParams(n=40, patch_size=8, seed=1))
    with pytest.raises(ResumeError, match=r"another feature cache \(.*dataset differ") as refused:
        fit(moved.replace(**{"data.root": str(other), "trainer.max_epochs": 4}), resume=True)
    # (it said to point data.cache at the run's cache, which it was: the images are what differ)
    assert ": the images of data.root differ); give data.root the images the run was trained on" in str(refused.value)
    assert "dataset" in str(refused.value).split("(", 1)[1].split(")", 1)[0]


def test_continuing_a_run_in_a_new_directory_takes_its_history_and_best(tmp_path, caplog):
    """`--resume OTHER/checkpoints/last.ckpt` into a new output_dir gave a run whose history started at the
    resumed epoch and which had no export/best unless it beat the other run's best. The new run now takes that
    run's history of the epochs before and its best checkpoint, where the checkpoint resumed records them."""
    import logging

    synthetic_cache(tmp_path / "cache", n=600)
    first = cached_config(tmp_path / "cache", tmp_path / "first", trainer={"max_epochs": 1})
    fit(from_dict(first))
    checkpoints = tmp_path / "first" / "checkpoints"
    for name in ("last.ckpt", "last.ckpt.sha256"):  # (epoch 1's state, kept for the last case below)
        shutil.copyfile(checkpoints / name, checkpoints / name.replace("last", "epoch1"))
    second = cached_config(tmp_path / "cache", tmp_path / "second", trainer={"max_epochs": 2})
    with caplog.at_level(logging.INFO, logger="satclip.train.fitting"):
        result = fit(from_dict(second), resume=checkpoints / "last.ckpt")
    assert (f"continuing {checkpoints / 'last.ckpt'} in a new run directory {tmp_path / 'second'}: the history of "
            f"its 1 epoch(s) and its best checkpoint taken from {tmp_path / 'first'}") in caplog.text  # fmt: skip
    # the new run holds the whole history and a best export, whichever epoch was best
    history = [json.loads(line) for line in (tmp_path / "second" / "history.jsonl").read_text().splitlines()]
    earlier = json.loads((tmp_path / "first" / "history.jsonl").read_text().splitlines()[0])
    assert [row["epoch"] for row in history] == [0, 1] and history[0] == earlier
    assert set(result.exports) == {"best", "last"}
    best = json.loads((tmp_path / "second" / "export" / "best" / "config.json").read_text())["metadata"]["metrics"]
    assert best["val_loss"] == pytest.approx(min(row["val_loss"] for row in history))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="satclip.train.fitting"):  # (its own run: nothing to say)
        fit(from_dict(cached_config(tmp_path / "cache", tmp_path / "first", trainer={"max_epochs": 2})), resume=True)
    assert "in a new run directory" not in caplog.text
    # epoch 1's state after the first run went on: its history of epoch 0 is taken; the run's best is taken only
    # where it is still the one epoch 1 recorded (epoch 1 did not beat it)
    caplog.clear()
    third = cached_config(tmp_path / "cache", tmp_path / "third", trainer={"max_epochs": 2})
    with caplog.at_level(logging.INFO, logger="satclip.train.fitting"):
        fit(from_dict(third), resume=checkpoints / "epoch1.ckpt")
    first_rows = [json.loads(line) for line in (tmp_path / "first" / "history.jsonl").read_text().splitlines()]
    third_rows = [json.loads(line) for line in (tmp_path / "third" / "history.jsonl").read_text().splitlines()]
    assert third_rows[0] == first_rows[0] and [row["epoch"] for row in third_rows] == [0, 1]
    kept = first_rows[1]["val_loss"] >= first_rows[0]["val_loss"]  # (the first run's best is still epoch 0's)
    assert ("its best checkpoint taken from" in caplog.text) == kept, caplog.text
    assert ("its best checkpoint stay" in caplog.text) == (not kept), caplog.text


def test_a_users_file_in_an_export_is_refused_before_the_run_trains(tmp_path):
    """A file of the user's in export/best (or export/best.ckpt replaced by a directory of theirs) was refused
    only after the resumed run had trained its extra epochs and written last.ckpt: the exports were left an
    epoch behind the checkpoints. It is now refused before any training, the run as it was."""
    from .train_helpers import bluemarble_run

    config = bluemarble_run(tmp_path)
    fit(from_dict(config))
    notes = tmp_path / "run" / "export" / "best" / "NOTES.txt"
    notes.write_text("mine")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    more = from_dict({**config, "trainer": {**config["trainer"], "max_epochs": 2}})
    with pytest.raises(OutputExistsError, match="but not NOTES.txt in it"):
        fit(more, resume=True)
    assert last.read_bytes() == before and notes.read_text() == "mine"
    notes.unlink()
    assert len(fit(more, resume=True).history) == 2


def test_a_run_of_relative_paths_continues_from_any_directory(tmp_path, monkeypatch):
    """config.yaml recorded output_dir and data.cache as typed (`run`, `cache`): the printed command to continue,
    `satclip train --config run/config.yaml --resume`, failed from another directory ("no such file"), and with
    the file's absolute path it looked for run/checkpoints/last.ckpt there (and, without --resume, would have
    started a new run there). The run's own paths are recorded absolute."""
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    synthetic_cache(tmp_path / "work" / "cache", n=200)
    monkeypatch.chdir(tmp_path / "work")
    dump_config(from_dict(config_for("cache", "run", enable_progress_bar=False, max_epochs=1)), "run.yaml")
    assert main(["train", "--config", "run.yaml"]) == 0
    recorded = load_config(tmp_path / "work" / "run" / "config.yaml")
    assert recorded.trainer.output_dir == str(tmp_path / "work" / "run")
    assert recorded.data.cache == str(tmp_path / "work" / "cache")
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = str(tmp_path / "work" / "run" / "config.yaml")
    assert main(["train", "--config", config, "--resume", "--trainer.max_epochs", "2"]) == 0
    history = (tmp_path / "work" / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [0, 1]
    assert list((tmp_path / "elsewhere").iterdir()) == []
    # the run's first config, its paths relative, still continues from its own directory (as an older satclip's)
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", "--config", "run.yaml", "--resume", "--trainer.max_epochs", "3"]) == 0


def test_a_resume_does_not_warn_of_its_own_checkpoints(tmp_path, short_run):
    """Every resume printed Lightning's "Checkpoint directory … exists and is not empty": the run's own."""
    root, config = short_run
    shutil.copytree(root / "run", tmp_path / "run")
    config = {**config, "trainer": {**config["trainer"], "output_dir": str(tmp_path / "run"), "max_epochs": 3}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(from_dict(config), resume=True)
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]


def test_fit_that_fails_to_open_its_data_leaves_no_run_directory(tmp_path):
    """`fit()` from Python with the dataset not downloaded left OUTPUT_DIR/ holding only satclip's marker; the
    command removes such a directory, the library call now does too (an existing one is kept)."""
    config = {"trainer.output_dir": str(tmp_path / "run"), "data.root": str(tmp_path / "not-downloaded"),
              "data.cache": str(tmp_path / "cache")}  # fmt: skip
    smoke = Path(__file__).parents[1] / "configs" / "s2-examples-smoke.yaml"
    with pytest.raises(ValueError, match="no such directory: "):
        fit(load_config(smoke, config))
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="no such directory: "):
        fit(load_config(smoke, config))
    assert (tmp_path / "run").is_dir() and not any((tmp_path / "run").iterdir())  # the user's, as it was


def test_exports_of_another_target_left_by_an_earlier_export_are_named(tmp_path, short_run, caplog):
    """Resumed with another export target (--target torchgeo after original), the run left export/last.ckpt and
    best.ckpt of the earlier target beside the new exports without a word: an older model under the names of
    the current ones. They are kept (never deleted) and named, with the command that writes them again."""
    config = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    more = {**config, "trainer": {**config["trainer"], "max_epochs": 3, "export_target": "torchgeo"}}
    with caplog.at_level(logging.WARNING, logger="satclip"):
        fit(from_dict(more), resume=True)
    old = f"{run / 'export' / 'best.ckpt'}, {run / 'export' / 'last.ckpt'}"
    assert (f"{old}: exports for trainer.export_target original left by an earlier export (this one wrote torchgeo "
            "only), they may hold an older model: write them again with `satclip train --config "
            f"{run / 'config.yaml'} --resume --target original`, or delete them") in caplog.text  # fmt: skip
    assert (run / "export" / "last.ckpt").is_file() and (run / "export" / "last.pt").is_file()
    # the command it gives, nothing trained since: the torchgeo files hold the same model, and are not named (each
    # target's resume warned of the other's files, back and forth)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip"):
        fit(from_dict({**more, "trainer": {**more["trainer"], "export_target": "original"}}), resume=True)
    assert "left by an earlier export" not in caplog.text


def test_a_file_that_is_no_training_checkpoint_is_a_bad_input(tmp_path, short_run, capsys):
    """`--resume points.csv` said "the file is damaged: it is truncated or corrupt" (exit 1), and `--resume
    RUN/export/last.ckpt` first warned it "has no last.ckpt.sha256 file (an older satclip wrote it)", false of an
    export. Both are bad input (exit 2) saying what the file is; the export is pointed to --model.init_from."""
    config = copy_run(short_run, tmp_path)
    run = tmp_path / "run"
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n1,2\n")
    more = _cli_config(tmp_path, config, max_epochs=3)
    assert main(["train", "--config", more, "--resume", str(points)]) == 2
    assert f"cannot resume from {points}: it is not a training checkpoint" in one_error_line(capsys.readouterr().err)
    export = run / "export" / "last.ckpt"
    # the export's directory too (it was told to try export/last/checkpoints/last.ckpt, which cannot be)
    assert main(["train", "--config", more, "--resume", str(run / "export" / "last")]) == 2
    assert (f"cannot resume from {run / 'export' / 'last'}: it is a model (weights only), not a satclip training "
            "checkpoint") in one_error_line(capsys.readouterr().err)
    assert main(["train", "--config", more, "--resume", str(export)]) == 2
    err = capsys.readouterr().err
    assert "sha256" not in err
    assert (f"cannot resume from {export}: it is a model (weights only), not a satclip training checkpoint; resume "
            f"from a run's checkpoints/last.ckpt, or start a new run from its weights with --model.init_from "
            f"{run / 'export' / 'last'}") in one_error_line(err)  # fmt: skip


def test_a_resume_from_an_earlier_checkpoint_of_the_run_says_it_rolls_back(tmp_path, short_run, caplog):
    """`--resume checkpoints/best.ckpt` (an earlier state) in the run's own directory replaced its later epochs
    (last.ckpt and history rows) without a word."""
    config = copy_run(short_run, tmp_path)
    checkpoints = tmp_path / "run" / "checkpoints"
    for name in ("last.ckpt", "last.ckpt.sha256"):  # (epoch 2's state, kept)
        shutil.copyfile(checkpoints / name, checkpoints / name.replace("last", "epoch2"))
    fit(from_dict({**config, "trainer": {**config["trainer"], "max_epochs": 3}}), resume=True)
    with caplog.at_level(logging.INFO, logger="satclip"):
        result = fit(from_dict({**config, "trainer": {**config["trainer"], "max_epochs": 4}}),
                     resume=checkpoints / "epoch2.ckpt")  # fmt: skip
    assert ("rolling back from epoch 3 to epoch 2 (epoch2.ckpt): checkpoints/last.ckpt and the history row of epoch "
            "3 are replaced as the run trains on") in caplog.text  # fmt: skip
    assert [row["epoch"] for row in result.history] == [0, 1, 2, 3]


def test_a_copied_or_moved_runs_config_yaml_does_not_resume_the_directory_it_names(tmp_path, short_run, capsys):
    """`--config COPY/config.yaml --resume` trained on and rewrote the original run (config.yaml records its
    output_dir absolute), and a moved run's file named its old place, where "start without --resume" began anew."""
    config = copy_run(short_run, tmp_path)
    run, copy, moved = tmp_path / "run", tmp_path / "copy", tmp_path / "moved"
    dump_config(from_dict(config), run / "config.yaml")  # (the run's own file names it)
    shutil.copytree(run, copy)
    files = ("config.yaml", "history.jsonl", "checkpoints/last.ckpt")
    before = {name: (run / name).read_bytes() for name in files}
    more = ["--resume", "--trainer.max_epochs", "3"]
    assert main(["train", "--config", str(copy / "config.yaml"), *more]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {copy / 'config.yaml'} names trainer.output_dir {run}, not the run directory it is in; the "
        f"run was copied from there. To continue the run in {copy}, pass --trainer.output_dir {copy}; to continue "
        f"the run in {run}, pass --trainer.output_dir {run}")  # fmt: skip
    with pytest.raises(BadInputError, match="the run was copied from there"):  # (from Python too)
        fit(copy / "config.yaml", resume=True)
    assert {name: (run / name).read_bytes() for name in files} == before
    assert main(["train", "--config", str(copy / "config.yaml"), *more, "--trainer.output_dir", str(copy)]) == 0
    assert {name: (run / name).read_bytes() for name in files} == before
    assert len((copy / "history.jsonl").read_text().splitlines()) == 3
    # its config.yaml names it now: it continues as any run does
    assert main(["train", "--config", str(copy / "config.yaml"), "--resume", "--trainer.max_epochs", "4"]) == 0
    run.rename(moved)
    capsys.readouterr()
    assert main(["train", "--config", str(moved / "config.yaml"), *more]) == 2
    said = one_error_line(capsys.readouterr().err)
    assert (f"the run was moved from there, which no longer exists: a new run would start there. To continue the "
            f"run in {moved}, pass --trainer.output_dir {moved}") in said  # fmt: skip
    assert not run.exists()


def test_a_users_config_beside_a_checkpoints_folder_is_no_run(tmp_path, short_run, monkeypatch):
    """A project folder of the user's holding config.yaml (output_dir runs/exp1, relative) and a checkpoints/ of
    its own was taken for a moved run: refused, and its advice (--trainer.output_dir .) trained into the folder."""
    config = copy_run(short_run, tmp_path)
    project = tmp_path / "project"
    (project / "checkpoints").mkdir(parents=True)
    (project / "checkpoints" / "downloaded.ckpt").write_bytes(b"the user's")
    config["trainer"] = {**config["trainer"], "output_dir": "runs/exp1", "max_epochs": 1}
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(project)
    assert main(["train", "--config", "config.yaml"]) == 0
    assert (project / "runs" / "exp1" / "export" / "last").is_dir()
    assert sorted(p.name for p in (project / "checkpoints").iterdir()) == ["downloaded.ckpt"]


def test_a_rollback_past_a_damaged_last_checkpoint_is_said_from_the_history(tmp_path, short_run, caplog):
    """With checkpoints/last.ckpt damaged (truncated), `--resume checkpoints/best.ckpt` replaced the run's later
    epochs without the rollback line: it was said only where last.ckpt could be read."""
    config = copy_run(short_run, tmp_path)
    checkpoints = tmp_path / "run" / "checkpoints"
    for name in ("last.ckpt", "last.ckpt.sha256"):  # (epoch 2's state, kept)
        shutil.copyfile(checkpoints / name, checkpoints / name.replace("last", "epoch2"))
    assert main(["train", "--config", _cli_config(tmp_path, config, max_epochs=3), "--resume"]) == 0
    last = checkpoints / "last.ckpt"
    os.truncate(last, last.stat().st_size // 2)
    with caplog.at_level(logging.INFO, logger="satclip"):
        assert main(["train", "--config", _cli_config(tmp_path, config, max_epochs=4),
                     "--resume", str(checkpoints / "epoch2.ckpt")]) == 0  # fmt: skip
    assert ("rolling back from epoch 3 to epoch 2 (epoch2.ckpt; last.ckpt cannot be read, history.jsonl records epoch "
            "3): checkpoints/last.ckpt and the history row of epoch 3 are replaced as the run trains on") in caplog.text


def test_a_run_given_its_cache_in_python_resumes_from_its_config_yaml(tmp_path, capsys):
    """`fit(config, cache="runs/cache/bm")` recorded data.cache null in the run's config.yaml: the resume it
    printed, `satclip train --config RUN/config.yaml --resume`, failed ("data.cache must name the feature-cache
    directory"). config.yaml names the cache, with the views and dtype it holds (4 views, the config's default 8)."""
    synthetic_cache(tmp_path / "cache", n=200, views=4)
    config = config_for(tmp_path / "cache", tmp_path / "run", max_epochs=1)
    config["data"] = {**config["data"], "cache": None}
    fit(from_dict(config), cache=tmp_path / "cache")
    recorded = load_config(tmp_path / "run" / "config.yaml").data
    assert (recorded.cache, recorded.cache_views, recorded.cache_dtype) == (str(tmp_path / "cache"), 4, "float16")
    capsys.readouterr()
    command = ["train", "--config", str(tmp_path / "run" / "config.yaml"), "--resume", "--trainer.max_epochs", "2"]
    assert main(command) == 0, capsys.readouterr().err
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [0, 1]


@pytest.mark.parametrize("exported", [True, False])
def test_a_finished_run_resumed_says_whether_its_exports_are_written_again(tmp_path, short_run, caplog, exported):
    """Interrupted during its final export (none written yet), `--resume` said its exports "are written again"."""
    config = copy_run(short_run, tmp_path)
    if not exported:
        shutil.rmtree(tmp_path / "run" / "export")
    with caplog.at_level(logging.INFO, logger="satclip.train.fitting"):
        fit(from_dict(config), resume=True)
    said = "its exports are written again from" if exported else "its exports are written from"
    assert f"nothing to train; {said} its checkpoints" in caplog.text
    assert (tmp_path / "run" / "export" / "last" / "model.safetensors").is_file()
