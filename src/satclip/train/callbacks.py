"""Lightning plumbing: checkpoint files with a checksum, the two checkpoints of a run (``last``: the
latest state, ``best``: the lowest ``val_loss``), the per-epoch history file, and the check a checkpoint
passes before a run resumes from it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from .. import safe_output
from ..digests import file_digest
from ..errors import ResumeError, ResumeMismatchError
from ..io.history import read_history
from ..io.safe_pickle import torch_file_kind, zip_problem
from ..optional import require
from .module import epoch_metrics

pl = require("lightning.pytorch", "train", "training")
_plugins = require("lightning.fabric.plugins", "train", "training")

log = logging.getLogger(__name__)

#: what to do about a checkpoint that cannot be used, appended to every ResumeError about one
RESUME_FIX = (
    "resume from an intact checkpoint of this run with --resume PATH (e.g. its checkpoints/best.ckpt), or start "
    "a new run in another trainer.output_dir"
)


def checksum_path(path: str | Path) -> Path:
    """``NAME.sha256`` beside checkpoint ``NAME`` (the ``sha256sum`` format: ``sha256sum -c`` checks it)."""
    path = Path(path)
    return path.with_name(f"{path.name}.sha256")


def _recorded_digests(path: Path) -> list[str]:
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        return []
    return [line.split()[0] for line in sidecar.read_text().splitlines() if line.strip()]


def _record_digests(path: Path, digests: list[str]) -> None:
    safe_output.write_text(checksum_path(path), "".join(f"{d}  {path.name}\n" for d in dict.fromkeys(digests)))


class AtomicCheckpointIO(_plugins.TorchCheckpointIO):
    """Writes each checkpoint through :func:`satclip.safe_output.atomic_file` (a temporary sibling, fsynced
    and renamed: the file is complete or absent, even when the process is killed mid-write) and records its
    sha256 in ``NAME.sha256``.

    The checksum file lists the new digest beside the old one(s) before the rename and the new one alone
    after it, so whenever the process stops it vouches for the checkpoint on disk, and a changed byte
    (a disk or copy error) is caught by :func:`verify_checkpoint`.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        path = Path(path)
        with safe_output.atomic_file(path, overwrite=True) as tmp:
            safe_output.write_serialised(tmp, lambda buffer: torch.save(checkpoint, buffer))
            digest = file_digest(tmp)
            _record_digests(path, [*_recorded_digests(path), digest])
        _record_digests(path, [digest])

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        checksum_path(path).unlink(missing_ok=True)


def verify_checkpoint(path: str | Path) -> dict:
    """Check that checkpoint ``path`` is intact and a satclip training checkpoint, and return it (loaded
    with ``weights_only=True``, tensors memory-mapped).

    Intact: its sha256 is one its ``.sha256`` file records; a checkpoint without one (written by an older
    satclip, or copied without it) must pass the CRC-32 checks of its zip records instead.

    Raises:
        ResumeError: the file is damaged or unreadable; the message names the file, what is wrong and what to do.
        ResumeMismatchError: it is not a satclip training checkpoint (a bad input): another file, or a model (an
            export), for which the message names ``--model.init_from``.
    """
    path = Path(path)
    expected = _recorded_digests(path)
    if expected:
        actual = file_digest(path)
        if actual not in expected:
            raise ResumeError(
                f"cannot resume from {path}: the file is damaged (disk or copy error): its sha256 {actual} is not "
                f"the {expected[-1]} recorded in {checksum_path(path).name} when it was written; {RESUME_FIX}"
            )
    else:
        try:
            kind = torch_file_kind(path)
            foreign = kind in ("other", "plain-pickle", "onnx")  # (a CSV was "damaged: truncated or corrupt", exit 1)
            problem = zip_problem(path) if not foreign else None
        except OSError as err:
            foreign, problem = False, f"it cannot be read ({err})"
        if foreign:
            raise ResumeMismatchError(
                f"cannot resume from {path}: it is not a training checkpoint (no file torch.save writes); give a run's "
                "checkpoints/last.ckpt, or no value to continue the run in trainer.output_dir"
            )
        if problem:
            raise ResumeError(f"cannot resume from {path}: the file is damaged: {problem}; {RESUME_FIX}")
        checkpoint = read_checkpoint(path)  # (an export has no checksum file either: it is refused first)
        log.warning("%s has no %s file (an older satclip wrote it): checked its CRC-32s instead", path,
                    checksum_path(path).name)  # fmt: skip
        return checkpoint
    return read_checkpoint(path)


def a_model_given(path: Path, model: Path) -> ResumeMismatchError:
    """The refusal of ``--resume`` given a model (``path``: an export, a released checkpoint), with ``model`` to
    start a new run from."""
    return ResumeMismatchError(
        f"cannot resume from {path}: it is a model (weights only), not a satclip training checkpoint; resume from a "
        f"run's checkpoints/last.ckpt, or start a new run from its weights with --model.init_from {model}"
    )


def read_checkpoint(path: str | Path) -> dict:
    """Checkpoint ``path`` (loaded with ``weights_only=True``, tensors memory-mapped), refused unless it is a
    satclip training checkpoint; its integrity is not checked (:func:`verify_checkpoint` checks it, then reads
    it with this).

    Raises:
        ResumeError: it cannot be read.
        ResumeMismatchError: it is not a satclip training checkpoint (a bad input).
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for a broken or foreign file
        raise ResumeError(
            f"cannot resume from {path}: it cannot be read as a checkpoint ({err}); {RESUME_FIX}"
        ) from err
    config = checkpoint.get("hyper_parameters", {}).get("config") if isinstance(checkpoint, dict) else None
    if not isinstance(config, dict) or "state_dict" not in checkpoint:
        if _is_model(checkpoint):  # an export (export/last.ckpt) or a released checkpoint: weights, no training state
            raise a_model_given(path, path.with_suffix("") if path.with_suffix("").is_dir() else path)
        raise ResumeMismatchError(
            f"cannot resume from {path}: it is not a satclip training checkpoint (it holds no training config); "
            f"{RESUME_FIX}"
        )
    return checkpoint


def _is_model(checkpoint) -> bool:
    """Whether a file read as a checkpoint is a model in the original's layout: a satclip export (its ``satclip``
    entry describes the model) or a released SatCLIP checkpoint (the original's ``hyper_parameters``)."""
    if not isinstance(checkpoint, dict):
        return False
    described = checkpoint.get("satclip")
    hyper = checkpoint.get("hyper_parameters")
    return (isinstance(described, dict) and "format" in described) or (isinstance(hyper, dict) and "le_type" in hyper)


class LatestCheckpoint(pl.callbacks.Checkpoint):
    """Writes ``path`` (``checkpoints/last.ckpt``), the latest training state, whatever the metrics: after
    every epoch (its validation included) and, with ``every_n_steps``, after every N-th optimizer step
    within an epoch. It is the point a run resumes from; the best checkpoint is :class:`BestCheckpoint`."""

    def __init__(self, path: str | Path, every_n_steps: int = 0):
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step = -1
        #: (epoch, batch), counted from 0, where a run resumed from the last checkpoint this one saved starts
        self.resumes_at: tuple[int, int] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step % self.every_n_steps or step == self._saved_step:
            return  # not due, or no optimizer step since the last save (gradient accumulation)
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch's last batch: the end-of-epoch checkpoint follows its validation
        self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # optimizer and loops too: a run resumes from it
        self._saved_step = trainer.global_step
        position = trainer.datamodule.state_dict() if trainer.datamodule is not None else {}  # (what it recorded)
        self.resumes_at = (position["epoch"], position["batch"]) if "epoch" in position else None


class ValidatedEpochs(pl.Callback):
    """Knows whether the current training epoch ran validation (``trainer.callback_metrics`` keeps the last
    ``val_*`` values through the epochs without one, with ``trainer.check_val_every_n_epoch`` > 1)."""

    _validated_epoch = -1

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch
        super().on_validation_end(trainer, pl_module)

    def validated(self, trainer: pl.Trainer) -> bool:
        return self._validated_epoch == trainer.current_epoch


class BestCheckpoint(ValidatedEpochs, pl.callbacks.ModelCheckpoint):
    """``dirpath/best.ckpt``: the state with the lowest ``monitor`` (``val_loss``), checked at the end of
    every training epoch; with ``monitor=None`` (no validation) the latest state.

    Its record of the best score survives a moved run directory (Lightning would drop it and let the next
    epoch overwrite ``best.ckpt`` whatever its score)."""

    def __init__(self, dirpath: str | Path, monitor: str | None = "val_loss"):
        super().__init__(
            dirpath=dirpath, filename="best", monitor=monitor, mode="min", save_top_k=1, save_last=False,
            save_on_train_epoch_end=True, enable_version_counter=False,
        )  # fmt: skip

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None and not self.validated(trainer):
            return  # an epoch without validation: nothing to compare (Lightning warned or compared a stale value)
        super().on_train_epoch_end(trainer, pl_module)

    def load_state_dict(self, state_dict: dict) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:

            def moved(path):
                if not isinstance(path, str) or not path or Path(old) not in Path(path).parents:
                    return path
                return os.path.join(new, os.path.relpath(path, old))

            state_dict = {key: moved(value) for key, value in state_dict.items()}
            state_dict["best_k_models"] = {moved(k): v for k, v in state_dict.get("best_k_models", {}).items()}
            state_dict["dirpath"] = new
        super().load_state_dict(state_dict)


def write_history(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as a run's history.jsonl (one JSON line per epoch), atomically."""
    safe_output.write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def epoch_progress_bar() -> pl.callbacks.ProgressBar:
    """Lightning's progress bar (Rich's where rich is installed, as Lightning picks), with epochs counted as the
    run's other lines count them: "Epoch 2/2" in the last of ``max_epochs`` 2, where Lightning's said "Epoch 1/1"
    (Rich) or "Epoch 1" (tqdm), counting from 0."""
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    return _RichEpochBar() if _RICH_AVAILABLE else _TqdmEpochBar()


def _epoch_description(trainer: pl.Trainer) -> str:
    return f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"


class _RichEpochBar(pl.callbacks.RichProgressBar):
    def _get_train_description(self, current_epoch: int) -> str:  # (Lightning's hook for the epoch bar's title)
        return f"{_epoch_description(self.trainer):{len(self.validation_description)}}"  # (padded as Lightning's)


class _TqdmEpochBar(pl.callbacks.TQDMProgressBar):
    def on_train_epoch_start(self, trainer: pl.Trainer, *_) -> None:  # (Lightning's, with the description)
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset(total=self.total_train_batches if self.total_train_batches != float("inf")
                                      else None)  # fmt: skip
        self.train_progress_bar.initial = 0
        self.train_progress_bar.set_description(_epoch_description(trainer))


class History(ValidatedEpochs, pl.callbacks.Checkpoint):
    """Appends one JSON line per finished epoch (epoch-level metrics; ``val_*`` only for the epochs that ran
    validation) to ``path``; on resume, lines of epochs at or after the resumed epoch are dropped first, so the
    file always describes one run. The row of an epoch resumed in its middle says so (``resumed_at_batch``: its
    training metrics cover the batches from there on; Lightning keeps no running means in a checkpoint).
    ``announce``: also log each epoch's row (where no progress bar shows it: output to a file or pipe).

    A :class:`~lightning.pytorch.callbacks.Checkpoint` only for when Lightning runs its epoch end: after the other
    callbacks', with the checkpoints', in their order. Given after :class:`LatestCheckpoint`, an epoch's row is
    written and announced once its ``last.ckpt`` is on disk (written before it, a Ctrl-C or a kill in between lost
    the epoch just announced)."""

    def __init__(self, path: str | Path, *, announce: bool = False):
        self.path, self.announce = Path(path), announce
        self.rows: list[dict] = []
        self.resumed = (-1, 0)  # (epoch, batch) of a resume in the middle of an epoch

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        start = trainer.current_epoch  # restored from the checkpoint by now
        earlier = read_history(self.path)
        self.rows = [r for r in earlier if r["epoch"] < start]
        missing = sorted(set(range(start)) - {r["epoch"] for r in self.rows})
        if missing:  # (the checkpoints hold no metrics of earlier epochs to write them again from)
            log.warning("%s holds no row of epoch(s) %s (deleted or damaged): the history of this run lacks them",
                        self.path, ", ".join(str(epoch + 1) for epoch in missing))  # fmt: skip
        position = getattr(getattr(trainer, "datamodule", None), "position", None) or {}  # (restored with it)
        checkpoint = getattr(trainer, "ckpt_path", None)  # (what the run resumes from; None for a new run)
        if position.get("epoch") == start and position.get("batch", 0) > 0:
            self.resumed = (start, int(position["batch"]))
            log.info("resuming from %s in epoch %d of %d, after its batch %d of %d: its training metrics in %s cover "
                     "the batches from there on (its row says resumed_at_batch)", checkpoint, start + 1,
                     trainer.max_epochs, self.resumed[1], trainer.num_training_batches, self.path.name)  # fmt: skip
        elif checkpoint is not None:  # (from an epoch's end it said nothing of where it went on)
            log.info("resuming from %s at epoch %d of %d", checkpoint, start + 1, trainer.max_epochs)
        if trainer.is_global_zero:
            self._write()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        validated = self.validated(trainer)
        row.update({k: v for k, v in epoch_metrics(trainer.callback_metrics).items()
                    if validated or not k.startswith("val_")})  # fmt: skip
        if self.resumed[0] == trainer.current_epoch:
            row["resumed_at_batch"] = self.resumed[1]
        self.rows.append(row)
        if trainer.is_global_zero:
            self._write()
            if self.announce:
                metrics = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k.endswith("_loss"))
                log.info("epoch %d of %s: %s", row["epoch"] + 1, trainer.max_epochs, metrics)

    def _write(self) -> None:
        write_history(self.path, self.rows)
