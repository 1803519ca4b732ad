"""Downstream metrics: MSE and R² for regression, accuracy and macro-F1 for classification."""

from __future__ import annotations

import numpy as np

#: the metric each task kind is ranked by, and whether higher is better
PRIMARY = {"regression": ("mse", False), "classification": ("accuracy", True)}


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean squared error of ``(N,)`` arrays."""
    return float(np.mean((np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)) ** 2))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination, 1 − SSE / SST about the mean of ``y_true`` (NaN if ``y_true`` is constant)."""
    y_true = np.asarray(y_true, np.float64)
    sst = float(np.sum((y_true - y_true.mean()) ** 2))
    sse = float(np.sum((np.asarray(y_pred, np.float64) - y_true) ** 2))
    return 1.0 - sse / sst if sst > 0 else float("nan")


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's default)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.union1d(y_true, y_pred)
    if labels.size == 0:
        return float("nan")
    scores = []
    for label in labels:
        tp = np.sum((y_true == label) & (y_pred == label))
        fp = np.sum((y_true != label) & (y_pred == label))
        fn = np.sum((y_true == label) & (y_pred != label))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``mse`` and ``r2`` (pass standardised targets to get the MSE on standardised targets)."""
    return {"mse": mse(y_true, y_pred), "r2": r2(y_true, y_pred)}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred)}
