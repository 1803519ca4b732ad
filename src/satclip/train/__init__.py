"""Contrastive pretraining of SatCLIP models (the ``[train]`` extra: Lightning, PyYAML, tqdm).

>>> from satclip.train import fit, load_config
>>> result = fit(load_config("configs/s2100k-resnet18-l10.yaml", {"trainer.max_epochs": 5}))  # doctest: +SKIP
>>> result.exports["best"].native                                                               # doctest: +SKIP

Two data paths, one objective: from a feature cache of a frozen backbone (:mod:`satclip.train.cache`;
only the head and the location encoder train, so one softmax spans the whole batch on any device), or
end-to-end from images. The loss gathers features over all ranks (:mod:`satclip.train.loss`). Importing
this package does not import Lightning; :func:`fit` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import (
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    TrainerConfig,
    dump_config,
    from_dict,
    load_config,
)  # fmt: skip

if TYPE_CHECKING:  # pragma: no cover
    from .fitting import FitResult, fit

__all__ = [
    "DataConfig", "FitResult", "ModelConfig", "OptimConfig", "TrainConfig", "TrainerConfig", "dump_config",
    "fit", "from_dict", "load_config",
]  # fmt: skip


def __getattr__(name: str):
    if name in ("fit", "FitResult"):
        from . import fitting

        return getattr(fitting, name)
    raise AttributeError(f"module 'satclip.train' has no attribute {name!r}")
