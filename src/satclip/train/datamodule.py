"""The Lightning data module: the seeded train/validation split and per-rank batch loaders that resume
mid-epoch."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import numpy as np
import torch

from ..optional import require
from .cache import FeatureCache
from .config import MIN_BATCH_PAIRS, DataConfig
from .data import BatchSpec, CachedPairs, EpochBatchSampler, ImagePairs, split_indices
from .loader_workers import start_worker
from .sources import PairSource

log = logging.getLogger(__name__)

pl = require("lightning.pytorch", "train", "training")


class ResumableSampler(torch.utils.data.Sampler):
    """An :class:`~satclip.train.data.EpochBatchSampler` that can start epoch ``epoch`` at global batch
    ``start`` (a run resumed from a checkpoint written after ``start`` steps of that epoch). Other epochs,
    and the length, are the wrapped sampler's."""

    def __init__(self, sampler: EpochBatchSampler, epoch: int = 0, start: int = 0):
        self.sampler = sampler
        self.sampler.set_epoch(epoch)
        self.start = start

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.sampler.epoch:
            self.start = 0
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[BatchSpec]:
        return itertools.islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        return len(self.sampler)


class ResumableLoader(torch.utils.data.DataLoader):
    """A DataLoader whose position is saved in checkpoints (Lightning calls :meth:`state_dict` and, when it
    restarts mid-epoch, :meth:`load_state_dict`); the position itself is kept by :class:`PairDataModule`."""

    def __init__(self, *args, datamodule: PairDataModule, **kwargs):
        super().__init__(*args, **kwargs)
        self.datamodule = datamodule

    def state_dict(self) -> dict:
        return self.datamodule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.datamodule.load_state_dict(state)
        self.sampler.set_epoch(self.datamodule.position["epoch"])
        self.sampler.start = self.datamodule.position["batch"]


class PairDataModule(pl.LightningDataModule):
    """Serves :class:`~satclip.train.data.CachedPairs` (``cache``) or :class:`~satclip.train.data.ImagePairs`
    (``source``) batches. ``batch_size`` is per rank; the sampler shards each global batch over ranks
    itself (Lightning's distributed sampler is turned off by the trainer).

    Its state in a checkpoint is the position of the next training batch, ``{"epoch": e, "batch": b}``; a
    resumed run's first training loader starts there, so a checkpoint written mid-epoch (every N steps)
    resumes with the batches an uninterrupted run would see. The loader is built at that epoch before
    any batch is drawn, which also keeps loader workers from prefetching another epoch's batches.
    """

    def __init__(
        self, config: DataConfig, seed: int, *, cache: FeatureCache | None = None, source: PairSource | None = None
    ):
        super().__init__()
        if (cache is None) == (source is None):
            raise ValueError("give exactly one of cache (features) or source (images)")
        self.config, self.seed, self.cache, self.source = config, seed, cache, source
        n = len(cache) if cache is not None else len(source)
        self.train_indices, self.val_indices = split_indices(n, config.val_fraction, seed)
        if len(self.train_indices) == 0:
            raise ValueError(f"no training samples: {n} samples with val_fraction={config.val_fraction}")
        if 0 < len(self.val_indices) < MIN_BATCH_PAIRS:  # (its val_loss, 0, chose best.ckpt)
            log.warning("data.val_fraction=%g holds out %d sample(s) of %d, too few for a contrastive batch of %d "
                        "pairs: the run has no validation (best.ckpt is the latest epoch's); raise data.val_fraction, "
                        "or set it 0", config.val_fraction, len(self.val_indices), n, MIN_BATCH_PAIRS)  # fmt: skip
        self.position = {"epoch": 0, "batch": 0}

    def state_dict(self) -> dict:
        """The position of the next training batch (called while a checkpoint is written)."""
        trainer = self.trainer
        if trainer is None:
            return dict(self.position)
        epoch = trainer.current_epoch
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed  # batches of this epoch trained on
        if done >= trainer.num_training_batches:
            epoch, done = epoch + 1, 0
        return {"epoch": int(epoch), "batch": int(done)}

    def load_state_dict(self, state: dict) -> None:
        self.position = {"epoch": int(state["epoch"]), "batch": int(state["batch"])}

    def _dataset(self, train: bool):
        jitter = {"jitter": self.config.coord_jitter, "jitter_km": self.config.coord_jitter_km}
        if self.cache is not None:
            return CachedPairs(self.cache, train=train, seed=self.seed, **jitter)
        split = self.train_indices if train else self.val_indices
        return ImagePairs(self.source, train=train, seed=self.seed, split=split, **jitter)

    def _loader(self, indices: np.ndarray, train: bool) -> torch.utils.data.DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = EpochBatchSampler(
            indices, self.config.batch_size, shuffle=train, seed=self.seed, rank=rank, world_size=world,
            drop_last=self.config.drop_last and train,
        )  # fmt: skip
        workers = self.config.num_workers
        options = {
            "batch_size": None, "num_workers": workers, "persistent_workers": workers > 0,
            "pin_memory": torch.cuda.is_available(), "worker_init_fn": start_worker,
        }  # fmt: skip
        if not train:
            return torch.utils.data.DataLoader(self._dataset(train), sampler=sampler, **options)
        resumable = ResumableSampler(sampler, self.position["epoch"], self.position["batch"])
        return ResumableLoader(self._dataset(train), sampler=resumable, datamodule=self, **options)

    def train_dataloader(self):
        return self._loader(self.train_indices, True)

    @property
    def validates(self) -> bool:
        """Whether the validation split makes a batch (it holds at least :data:`MIN_BATCH_PAIRS` samples)."""
        return len(self.val_indices) >= MIN_BATCH_PAIRS

    def val_dataloader(self):
        if not self.validates:
            return []
        return self._loader(self.val_indices, False)
