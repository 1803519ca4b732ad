"""The Lightning data module: the seeded train/validation split and per-rank batch loaders."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch

from .cache import FeatureCache
from .config import DataConfig
from .data import CachedPairs, EpochBatchSampler, ImagePairs, split_indices
from .sources import PairSource


class PairDataModule(pl.LightningDataModule):
    """Serves :class:`~satclip.train.data.CachedPairs` (``cache``) or :class:`~satclip.train.data.ImagePairs`
    (``source``) batches. ``batch_size`` is per rank; the sampler shards each global batch over ranks
    itself (Lightning's distributed sampler is turned off by the trainer)."""

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

    def _dataset(self, train: bool):
        jitter = self.config.coord_jitter
        if self.cache is not None:
            return CachedPairs(self.cache, train=train, seed=self.seed, jitter=jitter)
        return ImagePairs(self.source, train=train, seed=self.seed, jitter=jitter)

    def _loader(self, indices: np.ndarray, train: bool) -> torch.utils.data.DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = EpochBatchSampler(
            indices, self.config.batch_size, shuffle=train, seed=self.seed, rank=rank, world_size=world,
            drop_last=self.config.drop_last and train,
        )  # fmt: skip
        workers = self.config.num_workers
        return torch.utils.data.DataLoader(
            self._dataset(train), sampler=sampler, batch_size=None, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
        )  # fmt: skip

    def train_dataloader(self):
        return self._loader(self.train_indices, True)

    def val_dataloader(self):
        if len(self.val_indices) == 0:
            return []
        return self._loader(self.val_indices, False)
