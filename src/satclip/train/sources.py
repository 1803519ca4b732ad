"""Pair sources: images with their locations, and how a training or an evaluation view is made.

A :class:`PairSource` separates reading (``dataset[i]`` → ``{"image", "point"}`` without augmentation)
from viewing (``train_view(image, generator)`` / ``eval_view(image)``), so that augmentations are drawn
from generators the caller seeds per (image, view) or per (epoch, image): the feature cache and the
image training path are then reproducible regardless of worker processes, and a sample's raw image is
read once per cached image rather than once per view.

Sources are registered by name (``SOURCES``); ``data.dataset`` in the training config picks one.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..registry import Registry

TrainView = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
EvalView = Callable[[torch.Tensor], torch.Tensor]


def _identity_train(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return image


def _identity_eval(image: torch.Tensor) -> torch.Tensor:
    return image


@dataclass
class PairSource:
    """A dataset of raw ``{"image": (C, H, W), "point": (2,) lon/lat degrees}`` samples and its views.

    ``fingerprint`` identifies the samples (files and coordinates, in order) and ``transform_config``
    the views; both go into feature-cache manifests so that a stale cache is detected, with
    :meth:`file_sizes_sha256` where the dataset names its files.
    """

    dataset: Any
    fingerprint: str
    train_view: TrainView = _identity_train
    eval_view: EvalView = _identity_eval
    transform_config: dict = field(default_factory=lambda: {"train": "identity", "eval": "identity"})

    def __len__(self) -> int:
        return len(self.dataset)

    def raw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, point)`` of sample ``index``, unaugmented; point as float64 ``(2,)``."""
        return unpack(self.dataset[index])

    def sample_name(self, index: int) -> str:
        """The file of sample ``index`` where its dataset names it (``path(index)``), else ``image {index}``."""
        path = getattr(self.dataset, "path", None)
        return Path(path(index)).name if callable(path) else f"image {index}"

    def file_sizes_sha256(self) -> str | None:
        """sha256 of the sizes in bytes of the samples' files, in order (-1 for one that cannot be stat'ed), where
        the dataset names them (``path(index)``), else None. A file's size survives a copy or a move of the dataset,
        where its modification time does not; an image rewritten to the same size is not told from the one it
        replaces. One stat per file, no read."""
        path = getattr(self.dataset, "path", None)
        if not callable(path):
            return None
        digest = hashlib.sha256()
        for index in range(len(self.dataset)):
            try:
                size = os.stat(path(index)).st_size
            except OSError:  # (gone since the dataset was read: reading it fails, and says so)
                size = -1
            digest.update(f"{size}\0".encode())
        return digest.hexdigest()

    def verify_command(self) -> str:
        """The command that lists the samples whose files cannot be read: ``satclip data verify ROOT --full`` with
        the dataset's root where it has one."""
        root = getattr(self.dataset, "root", None)
        return f"`satclip data verify {shlex.quote(str(root)) if root is not None else 'ROOT'} --full`"

    def listed(self) -> int:
        """The samples the dataset lists (``listed``: those it left out when it was opened, its files unusable,
        included), else ``len(self)``."""
        return int(getattr(self.dataset, "listed", len(self)))

    def skipping_unreadable(self) -> PairSource:
        """This source, reading a sample whose file cannot be read as
        :class:`~satclip.data.s2100k.UnreadableSampleError` rather than as the next readable sample (which was
        then used twice), where its dataset can (``skipping_unreadable()``); else itself."""
        skipping = getattr(self.dataset, "skipping_unreadable", None)
        return replace(self, dataset=skipping()) if callable(skipping) else self


def unpack(sample: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image, point)`` of a dict sample (``"image"`` and ``"point"``) or an ``(image, point)`` pair."""
    if isinstance(sample, dict):
        try:
            image, point = sample["image"], sample["point"]
        except KeyError as err:
            raise KeyError(f"a sample must have 'image' and 'point', got keys {sorted(sample)}") from err
    else:
        image, point = sample
    return torch.as_tensor(image), torch.as_tensor(point, dtype=torch.float64)


def fingerprint_points(names: list[str] | tuple[str, ...] | None, lonlat: np.ndarray | torch.Tensor) -> str:
    """sha256 of sample names (in order) and their float64 (lon, lat) bytes."""
    digest = hashlib.sha256()
    for name in names or ():
        digest.update(name.encode() + b"\0")
    points = np.ascontiguousarray(np.asarray(lonlat, dtype=np.float64))
    digest.update(str(points.shape).encode())
    digest.update(points.tobytes())
    return digest.hexdigest()


def dataset_fingerprint(dataset: Any) -> str:
    """A fingerprint of any dataset exposing ``points`` (and optionally ``filenames``)."""
    fingerprint = getattr(dataset, "fingerprint", None)
    if callable(fingerprint):
        return str(fingerprint())
    points = getattr(dataset, "points", None)
    if points is None:
        raise TypeError(
            f"cannot fingerprint {type(dataset).__name__}: it has no 'points' attribute or fingerprint() "
            "method; pass PairSource(dataset, fingerprint=...) explicitly"
        )
    return fingerprint_points(getattr(dataset, "filenames", None), np.asarray(points))


SOURCES: Registry[PairSource] = Registry("pair source")


@SOURCES.register("s2100k")
def s2100k(root: str, jitter: float = 0.0, image_size: int | None = None, **transform_options) -> PairSource:
    """S2-100K (or any root with ``index.csv`` + ``images/``) with the original pretrained-backbone
    transform: train views flip and blur, eval views only rescale and add B10. Coordinate jitter is
    applied by the training data path (``data.coord_jitter``), not here.

    ``image_size``: the one input side of a fixed-size encoder (224 for ``moco_vit16``). Views are then cut to
    it as the original's ViT runs did (``crop_size: 224``: a random 224 px crop of the 256 px patch in training,
    drawn with the view's generator) and, for evaluation, the central window (as ``satclip locate`` reads an
    image for such a model)."""
    from ..data.s2100k import S2100K
    from ..data.transforms import s2_transform

    if image_size is not None:
        transform_options.setdefault("crop_size", int(image_size))
    dataset = S2100K(root, mode="both", transform=None)
    train = s2_transform(True, jitter=jitter, **transform_options)
    evaluate = s2_transform(False, **transform_options)
    return PairSource(
        dataset=dataset,
        fingerprint=dataset_fingerprint(dataset),
        train_view=train.image,
        eval_view=evaluate.image,
        transform_config={"train": repr(train), "eval": repr(evaluate)},
    )


def _dihedral_view(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips and a random transpose: one of the 8 symmetries of the square,
    for imagery without a preferred orientation at patch scale."""
    from ..data.functional import random_flip

    image = random_flip(random_flip(image, -1, generator=generator), -2, generator=generator)
    if torch.rand(1, generator=generator) < 0.5:
        image = image.transpose(-1, -2)
    return image


@SOURCES.register("bluemarble")
def bluemarble(root: str) -> PairSource:
    """A Blue Marble corpus (``satclip.data.bluemarble``): float32 RGB in [0, 1]; training views are
    random flips/transposes of the patch."""
    from ..data.bluemarble import BlueMarble

    dataset = BlueMarble(root)
    return PairSource(
        dataset=dataset,
        fingerprint=dataset_fingerprint(dataset),
        train_view=_dihedral_view,
        transform_config={"train": "dihedral (flip h, flip v, transpose)", "eval": "identity"},
    )


def create_source(name: str, root: str | None, **options) -> PairSource:
    """The registered source ``name`` over ``root`` (``data.dataset`` / ``data.root`` of the config)."""
    if root is None:
        raise ValueError(f"data.root is required to read the {name!r} dataset (the directory holding it)")
    return SOURCES.create(name, root=str(root), **options)
