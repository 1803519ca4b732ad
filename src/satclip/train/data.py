"""Batches for contrastive training, reproducible from the seed alone.

Everything random about a batch — which images (the epoch's permutation), which cached view, the
coordinate jitter, the image augmentations — is drawn from generators seeded by ``(seed, epoch, …)``.
The data of epoch *e* is therefore the same whether a run went straight through or was resumed, and
whatever the number of loader workers.

:class:`EpochBatchSampler` yields one :class:`BatchSpec` per step (this rank's share of a global batch);
:class:`CachedPairs` and :class:`ImagePairs` turn a spec into a batch dict
``{"features" | "image": (B, …) float32, "lonlat": (B, 2) float64}``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..data.bluemarble import offset_lonlat
from ..errors import BadInputError
from .cache import FeatureCache
from .config import MIN_BATCH_PAIRS
from .sources import PairSource

log = logging.getLogger(__name__)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random ``(train, val)`` split of ``range(n)``, both sorted; ``round(n · val_fraction)`` (at
    least one when the fraction is > 0 and n > 1) samples go to validation."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n > 1:
        n_val = max(n_val, 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def derived_seed(*parts: int | str) -> int:
    """A 63-bit seed from integers/strings (stable across processes and Python versions)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def jitter_points(lonlat: torch.Tensor, jitter: float, generator: torch.Generator) -> torch.Tensor:
    """Add one-sided ``U(0, jitter)`` degrees to lon and lat (the original's coordinate jitter), then wrap
    lon into [-180, 180] and clamp lat to [-90, 90]. ``(B, 2)`` float64 in and out."""
    if jitter == 0:
        return lonlat
    out = lonlat + torch.rand(lonlat.shape, generator=generator, dtype=torch.float64) * jitter
    lon = torch.where(out[:, 0] > 180, out[:, 0] - 360, out[:, 0])
    return torch.stack([lon, out[:, 1].clamp(max=90.0)], dim=1)


def footprint_jitter(lonlat: torch.Tensor, half_width_km: float, generator: torch.Generator) -> torch.Tensor:
    """Move each point to a uniformly drawn point of the ``±half_width_km`` square (east, north) around it in
    its local azimuthal-equidistant frame — the ground footprint of a north-up image patch centred on it
    (a Blue Marble patch of 32 px × 7.5 km: 120 km). Symmetric: the mean offset is zero. ``(B, 2)`` float64
    (lon, lat) degrees in and out; lon in [-180, 180), lat in [-90, 90]."""
    if half_width_km == 0:
        return lonlat
    offset = (torch.rand(lonlat.shape, generator=generator, dtype=torch.float64) * 2 - 1) * half_width_km
    offset = offset.numpy()
    moved = offset_lonlat(lonlat.detach().cpu().double().numpy(), offset[:, :1], offset[:, 1:])
    return torch.from_numpy(moved[:, 0])


def _jitter_generator(seed: int, spec: BatchSpec, stream: str = "jitter") -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(stream, seed, spec.epoch, spec.batch, spec.rank))


def jitter_batch(lonlat: torch.Tensor, seed: int, spec: BatchSpec, jitter: float, jitter_km: float) -> torch.Tensor:
    """The training coordinates of a batch: the footprint jitter (``jitter_km``, its own stream) and then the
    one-sided degree jitter (``jitter``), each from a generator seeded by (seed, epoch, batch, rank)."""
    if jitter_km:
        lonlat = footprint_jitter(lonlat, jitter_km, _jitter_generator(seed, spec, "jitter-km"))
    if jitter:
        lonlat = jitter_points(lonlat, jitter, _jitter_generator(seed, spec))
    return lonlat


@dataclass(frozen=True)
class BatchSpec:
    """One step's work: this rank's ``indices`` (into the dataset) of global batch ``batch`` in ``epoch``;
    ``batch_indices``: every rank's indices of that global batch (None: ``indices``, a single rank), which the
    loss gathers, and ``world_size`` the number of ranks it is split over."""

    epoch: int
    batch: int
    rank: int
    indices: np.ndarray
    batch_indices: np.ndarray | None = None
    world_size: int = 1


class EpochBatchSampler(torch.utils.data.Sampler):
    """Global batches of ``batch_size · world_size`` samples, split evenly over ranks.

    ``shuffle``: a fresh permutation each epoch from ``(seed, epoch)`` (Lightning calls
    :meth:`set_epoch`). A last, smaller global batch is kept (split evenly; up to world_size − 1
    samples dropped) unless ``drop_last``, or unless it would keep fewer than
    :data:`~satclip.train.config.MIN_BATCH_PAIRS` pairs: a single pair has no negative, so its step's loss is 0 and
    its accuracy 1, averaged into the epoch's train_loss and val_loss (which chooses best.ckpt) for nothing learned.
    Indices within a rank's batch are sorted (memmap locality; the
    loss does not depend on the order of pairs).
    """

    def __init__(
        self, indices: np.ndarray, batch_size: int, *, shuffle: bool, seed: int, rank: int = 0,
        world_size: int = 1, drop_last: bool = False,
    ):  # fmt: skip
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _global_batches(self) -> list[np.ndarray]:
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, self.epoch]).permutation(len(order))]
        step = self.batch_size * self.world_size
        batches = [order[i : i + step] for i in range(0, len(order), step)]
        if batches and len(batches[-1]) < step:
            per_rank = len(batches[-1]) // self.world_size
            if self.drop_last or per_rank * self.world_size < MIN_BATCH_PAIRS:
                batches.pop()
            else:
                batches[-1] = batches[-1][: per_rank * self.world_size]
        return batches

    def __iter__(self) -> Iterator[BatchSpec]:
        for number, batch in enumerate(self._global_batches()):
            per_rank = len(batch) // self.world_size
            mine = np.sort(batch[self.rank * per_rank : (self.rank + 1) * per_rank])
            yield BatchSpec(self.epoch, number, self.rank, mine, batch[: per_rank * self.world_size], self.world_size)

    def __len__(self) -> int:
        n, step = len(self.indices), self.batch_size * self.world_size
        full, rest = divmod(n, step)
        return full + int((rest // self.world_size) * self.world_size >= MIN_BATCH_PAIRS and not self.drop_last)


class CachedPairs(torch.utils.data.Dataset):
    """Batches from a :class:`~satclip.train.cache.FeatureCache`.

    Training (``train=True``): each image contributes one of its training views (1 … V−1, uniformly;
    view 0 when V = 1) and jittered coordinates (:func:`jitter_batch`). Validation: view 0, exact coordinates.
    """

    def __init__(self, cache: FeatureCache, *, train: bool, seed: int, jitter: float = 0.0, jitter_km: float = 0.0):
        self.cache, self.train, self.seed, self.jitter, self.jitter_km = cache, train, seed, jitter, jitter_km

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, spec: BatchSpec) -> dict[str, torch.Tensor]:
        index = spec.indices
        views = self.cache.views
        if self.train and views > 1:
            rng = np.random.default_rng(derived_seed("views", self.seed, spec.epoch, spec.batch, spec.rank))
            view = rng.integers(1, views, size=len(index))
        else:
            view = np.zeros(len(index), dtype=np.int64)
        lonlat = torch.from_numpy(self.cache.lonlat[index].astype(np.float64))
        if self.train:
            lonlat = jitter_batch(lonlat, self.seed, spec, self.jitter, self.jitter_km)
        return {"features": self.cache.gather(index, view), "lonlat": lonlat}


class ImagePairs(torch.utils.data.Dataset):
    """Batches of images read from a :class:`~satclip.train.sources.PairSource`, with the training view
    (augmentation seeded by ``(seed, epoch, image)``) or the evaluation view.

    ``split``: the sample indices of this split (default: all). A sample whose file cannot be read (it changed
    after the dataset was verified) is replaced, with a warning naming it, by the next readable sample of the
    split that is in no rank's share of the global batch, so that batches keep their size (ranks gather equal
    batches) and hold no pair twice (a pair twice is its own negative in the contrastive loss): the dataset's own
    substitute, the next sample of the whole dataset, could be one of the other split (a validation pair trained
    on), and the next one of the split could be in the batch already. Under DDP rank *r* takes only samples whose
    place in the split is *r* modulo the number of ranks, so that two ranks never take the same one. Where no such
    sample is left (a split hardly larger than the global batch), the next readable sample of this rank's batch is
    used, which the warning says: that pair is then twice in the batch."""

    def __init__(self, source: PairSource, *, train: bool, seed: int, jitter: float = 0.0, jitter_km: float = 0.0,
                 split: np.ndarray | None = None):  # fmt: skip
        self.source, self.train, self.seed, self.jitter, self.jitter_km = source, train, seed, jitter, jitter_km
        self.reader = source.skipping_unreadable()
        self.split = np.sort(np.asarray(split if split is not None else np.arange(len(source)), dtype=np.int64))
        self.unreadable: set[int] = set()

    def __len__(self) -> int:
        return len(self.source)

    def _raw(
        self, index: int, allowed: Callable[[int, int], bool]
    ) -> tuple[int, tuple[torch.Tensor, torch.Tensor]] | None:
        """``(sample, (image, point))`` of sample ``index``, or of the next readable sample of the split after it
        for which ``allowed(sample, its place in the split)``; None where there is none."""
        from ..data.s2100k import MAX_SUBSTITUTES, UnreadableSampleError

        start, failed = int(np.searchsorted(self.split, index)), 0
        for step in range(len(self.split)):
            position = (start + step) % len(self.split)
            candidate = int(self.split[position])
            if candidate in self.unreadable or (candidate != index and not allowed(candidate, position)):
                continue
            try:
                return candidate, self.reader.raw(candidate)
            except UnreadableSampleError as err:
                self.unreadable.add(candidate)
                log.warning("%s: the next readable %s sample in no rank's share of its batch is used in its place",
                            err, "training" if self.train else "validation")  # fmt: skip
                failed += 1
                if failed > MAX_SUBSTITUTES:
                    raise BadInputError(f"the image files of {failed} samples from sample {index} on cannot be read: "
                                        f"run {self.source.verify_command()} to list them") from None  # fmt: skip
        return None

    def _read(self, index: int, spec: BatchSpec, taken: set[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, point)`` of sample ``index`` or of its substitute (class docstring), which joins ``taken``."""
        mine = {int(i) for i in spec.indices}

        def outside(candidate: int, position: int) -> bool:
            return candidate not in taken and position % spec.world_size == spec.rank

        found = self._raw(index, outside)
        if found is None:
            found = self._raw(index, lambda candidate, position: candidate in mine and candidate != index)
            if found is None:
                raise BadInputError(f"none of the image files of the samples of its batch can be read: run "
                                    f"{self.source.verify_command()} to list them")  # fmt: skip
            log.warning("sample %d cannot be read and every other readable sample of its split that this rank may "
                        "take is in its batch: sample %d of the batch is used twice", index, found[0])  # fmt: skip
        taken.add(found[0])
        return found[1]

    def __getitem__(self, spec: BatchSpec) -> dict[str, torch.Tensor]:
        images, points = [], []
        taken = {int(i) for i in (spec.indices if spec.batch_indices is None else spec.batch_indices)}
        for index in spec.indices:
            image, point = self._read(int(index), spec, taken)
            if self.train:
                generator = torch.Generator().manual_seed(derived_seed("view", self.seed, spec.epoch, int(index)))
                image = self.source.train_view(image, generator)
            else:
                image = self.source.eval_view(image)
            images.append(torch.as_tensor(image, dtype=torch.float32))
            points.append(point)
        lonlat = torch.stack(points).to(torch.float64)
        if self.train:
            lonlat = jitter_batch(lonlat, self.seed, spec, self.jitter, self.jitter_km)
        return {"image": torch.stack(images), "lonlat": lonlat}
