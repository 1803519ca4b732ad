"""Lightning plumbing: atomic checkpoint files and a per-epoch history file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same directory, fsyncs it and renames it into
    place: a checkpoint file is complete or absent, even when the process is killed mid-write."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # mkstemp files are private
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class History(pl.Callback):
    """Appends one JSON line per finished epoch (epoch-level metrics) to ``path``; on resume, lines of
    epochs at or after the resumed epoch are dropped first, so the file always describes one run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        start = trainer.current_epoch  # restored from the checkpoint by now
        rows = []
        if self.path.is_file():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        self.rows = [r for r in rows if r["epoch"] < start]
        if trainer.is_global_zero:
            self._write()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.endswith("_step"):
                continue
            name = key[: -len("_epoch")] if key.endswith("_epoch") else key
            row[name] = float(value)
        self.rows.append(row)
        if trainer.is_global_zero:
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in self.rows)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)
