"""``fit(config)``: train a SatCLIP model with Lightning and export it.

A run directory (``trainer.output_dir``) holds::

    config.yaml                 the resolved config of the run
    checkpoints/last.ckpt       Lightning checkpoint after the latest epoch (resume point)
    checkpoints/best.ckpt       lowest val_loss so far
    history.jsonl               one line of epoch metrics per finished epoch
    logs/version_*/metrics.csv  step and epoch metrics (CSV logger; TensorBoard too when installed)
    export/{best,last}/         native model directories (config.json + model.safetensors)
    export/{best,last}.ckpt     the same in the original .ckpt layout

``resume=True`` continues from ``checkpoints/last.ckpt``: the data order, augmentation, jitter and dropout
of every epoch depend only on the seed and the epoch number, and the checkpoint restores weights,
optimizer state and loop counters, so an interrupted and resumed run ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import TrainConfig, dump_config, from_dict, load_config
from .export import Exported, export_pair, lightning_state_to_pair

log = logging.getLogger(__name__)

#: config keys a resumed run may change (everything else must match the run's config.yaml)
RESUMABLE_CHANGES = (
    "trainer.max_epochs", "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.export",
    "data.num_workers", "trainer.limit_val_batches",
)  # fmt: skip


@dataclass
class FitResult:
    """What a run produced. ``history``: one dict of epoch metrics per finished epoch (``epoch``,
    ``train_loss``, ``val_loss``, ``val_acc_i2l`` …); ``exports``: ``{"best"|"last": Exported}``."""

    run_dir: Path
    config: TrainConfig
    checkpoints: dict[str, Path] = field(default_factory=dict)
    exports: dict[str, Exported] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    pair: torch.nn.Module | None = None
    image_config: dict = field(default_factory=dict)


def _as_config(config: TrainConfig | dict | str | Path) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return from_dict(config)
    return load_config(config)


def _flatten(value: dict, prefix: str = "") -> dict:
    out = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_flatten(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = item
    return out


def _check_resumable(saved: TrainConfig, current: TrainConfig) -> None:
    old, new = _flatten(saved.to_dict()), _flatten(current.to_dict())
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        details = "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in changed)
        raise ValueError(
            f"cannot resume with a different config ({details}); only {', '.join(RESUMABLE_CHANGES)} may change"
        )


def _check_same_cache(ckpt_path: Path, cache) -> None:
    from .cache import key_differences

    saved = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("hyper_parameters", {}).get("cache_key")
    if saved is not None:
        differ = key_differences(saved, cache.key)
        if differ:
            raise ValueError(
                f"cannot resume {ckpt_path}: it was trained on another feature cache ({', '.join(differ)} differ "
                f"from {cache.path})"
            )


def fit(
    config: TrainConfig | dict | str | Path,
    *,
    resume: bool | str | Path = False,
    cache=None,
    source=None,
    callbacks: Sequence = (),
) -> FitResult:
    """Train and export. ``config``: a :class:`TrainConfig`, a dict of sections or a YAML path.

    Args:
        resume: ``True`` continues from ``<output_dir>/checkpoints/last.ckpt``; a path continues from that
            checkpoint. Without it, an output directory that already holds checkpoints is refused.
        cache: a :class:`~satclip.train.cache.FeatureCache` to train from (instead of ``data.cache``).
        source: a :class:`~satclip.train.sources.PairSource` to train from images (instead of
            ``data.dataset``/``data.root``).
        callbacks: extra Lightning callbacks.
    """
    try:
        import lightning.pytorch as pl
        from lightning.pytorch.callbacks import ModelCheckpoint
        from lightning.pytorch.loggers import CSVLogger
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("training needs Lightning: pip install 'satclip[train]'") from err
    from .build import build_pair
    from .callbacks import AtomicCheckpointIO, History
    from .datamodule import PairDataModule
    from .module import SatCLIPTrainingModule
    from .prepare import cache_from_config, source_from_config

    config = _as_config(config)
    run_dir = Path(config.trainer.output_dir)
    ckpt_dir = run_dir / "checkpoints"
    ckpt_path = None
    if resume:
        ckpt_path = Path(resume) if not isinstance(resume, bool) else ckpt_dir / "last.ckpt"
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"cannot resume: {ckpt_path} does not exist (start without --resume)")
        if (run_dir / "config.yaml").is_file():
            _check_resumable(load_config(run_dir / "config.yaml"), config)
    elif (ckpt_dir / "last.ckpt").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run (checkpoints/last.ckpt): continue it with --resume, or choose "
            "another trainer.output_dir"
        )

    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    if config.data.source == "cache":
        cache = cache if cache is not None else cache_from_config(config)
        source = None
    else:
        source = source if source is not None else source_from_config(config)
        cache = None
    if ckpt_path is not None and cache is not None:
        _check_same_cache(ckpt_path, cache)
    pair, image_config = build_pair(config, cache)
    module = SatCLIPTrainingModule(config.to_dict(), pair, image_config, cache.key if cache is not None else None)
    datamodule = PairDataModule(config.data, config.trainer.seed, cache=cache, source=source)
    has_val = len(datamodule.val_indices) > 0

    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor="val_loss" if has_val else None, mode="min", save_top_k=1,
        save_last=True, save_on_train_epoch_end=True, enable_version_counter=False,
    )  # fmt: skip
    history = History(run_dir / "history.jsonl")
    loggers = [CSVLogger(run_dir, name="logs")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))
    except (ImportError, ModuleNotFoundError):
        pass
    t = config.trainer
    trainer = pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        num_nodes=t.num_nodes, precision=t.precision, accumulate_grad_batches=t.accumulate_grad_batches,
        fast_dev_run=t.fast_dev_run, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches if has_val else 0, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch, enable_progress_bar=t.enable_progress_bar,
        deterministic=t.deterministic, use_distributed_sampler=False, num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()], default_root_dir=run_dir,
        callbacks=[checkpoint, history, *callbacks], logger=loggers, enable_model_summary=False,
    )  # fmt: skip
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(config, run_dir / "config.yaml")
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)

    # read back from disk: under spawn-based strategies the callbacks' state stays in the workers
    rows = list(history.rows)
    if history.path.is_file():
        rows = [json.loads(line) for line in history.path.read_text().splitlines() if line.strip()]
    result = FitResult(run_dir, config, history=rows, pair=pair, image_config=image_config)
    for name in ("best", "last"):
        if (ckpt_dir / f"{name}.ckpt").is_file() and not t.fast_dev_run:
            result.checkpoints[name] = ckpt_dir / f"{name}.ckpt"
    if trainer.is_global_zero and t.export:
        result.exports = _export_all(result, cache, trainer, run_dir / "export")
    return result


def _export_all(result: FitResult, cache, trainer, directory: Path) -> dict[str, Exported]:
    """Export best and last from their checkpoint files (or the in-memory model when none was written,
    e.g. under ``fast_dev_run``)."""
    from .build import build_pair

    exports = {}
    if not result.checkpoints:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        exports["last"] = export_pair(
            result.pair, result.image_config, result.config, directory, "last", cache=cache,
            epoch=trainer.current_epoch, global_step=trainer.global_step, metrics=metrics,
        )  # fmt: skip
        return exports
    for name, path in result.checkpoints.items():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        pair, image_config = build_pair(result.config, cache)
        pair.load_state_dict(lightning_state_to_pair(ckpt["state_dict"]))
        metrics = {}
        for state in ckpt.get("callbacks", {}).values():
            score = state.get("best_model_score") if isinstance(state, dict) else None
            if score is not None and name == "best":
                metrics["val_loss"] = float(score)
        exports[name] = export_pair(
            pair, image_config, result.config, directory, name, cache=cache, epoch=ckpt.get("epoch", 0),
            global_step=ckpt.get("global_step", 0), metrics=metrics,
        )  # fmt: skip
    return exports
