"""What a probe is: a small supervised model fitted on frozen location embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...registry import Registry


@dataclass(frozen=True)
class ProbeData:
    """One fold's arrays, already preprocessed as the probe asked (see :class:`Probe`).

    x_*: ``(n, D)`` float32 features. y_*: ``(n,)`` float32 targets (regression) or int64 class indices.
    kind: ``"regression"`` or ``"classification"``; num_classes: K for classification (else 0).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    kind: str
    num_classes: int = 0


@dataclass
class ProbeResult:
    """Test predictions (``(n_test,)`` floats or class indices) and what was chosen on validation."""

    predictions: np.ndarray
    info: dict = field(default_factory=dict)


class Probe:
    """Base class. ``standardise_features``: z-score features with training statistics first.
    ``target_scaling``: ``"zscore"`` (training mean/std) or ``"max"`` (divide by the task's maximum, as the
    SatCLIP notebook does) for regression targets."""

    name = "probe"
    standardise_features = True
    target_scaling = "zscore"

    def fit_predict(self, data: ProbeData, seed: int) -> ProbeResult:  # pragma: no cover - interface
        raise NotImplementedError


PROBES: Registry = Registry("probe")
