"""``linear``: ridge regression / L2-regularised multinomial logistic regression, strength chosen on validation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .base import PROBES, Probe, ProbeData, ProbeResult

#: ridge penalties, per training sample (the penalty is alpha · n · ‖w‖²)
RIDGE_ALPHAS = tuple(10.0**k for k in range(-6, 3))
#: logistic-regression L2 strengths (loss = mean cross-entropy + λ/2 ‖W‖²), strongest first (warm starts)
LOGISTIC_LAMBDAS = (1e-1, 1e-2, 1e-3, 1e-4)
#: used when a protocol has no validation set
DEFAULT_ALPHA, DEFAULT_LAMBDA = 1e-3, 1e-3


def _ridge_weights(xc: np.ndarray, yc: np.ndarray) -> Callable[[float], np.ndarray]:
    """``w(penalty)``: the ridge weights ``(xcᵀxc + penalty·I)⁻¹ xcᵀyc`` of centred ``xc`` ``(n, d)``, for any
    penalty from one eigendecomposition: of the ``d × d`` covariance, or, with fewer samples than features, of the
    ``n × n`` Gram matrix (``w = xcᵀ (xc xcᵀ + penalty·I)⁻¹ yc``, the same weights: a 10,000-wide basis of
    legendre_polys=100 took minutes, uninterruptibly, in a d × d eigendecomposition for 300 points)."""
    if len(xc) < xc.shape[1]:
        evals, evecs = np.linalg.eigh(xc @ xc.T)
        proj = evecs.T @ yc
        return lambda penalty: xc.T @ (evecs @ (proj / (np.maximum(evals, 0) + penalty)))
    evals, evecs = np.linalg.eigh(xc.T @ xc)
    proj = evecs.T @ (xc.T @ yc)
    return lambda penalty: evecs @ (proj / (np.maximum(evals, 0) + penalty))


def _ridge(data: ProbeData) -> ProbeResult:
    x = data.x_train.astype(np.float64)
    y = data.y_train.astype(np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean()
    weights = _ridge_weights(x - x_mean, y - y_mean)
    best = None
    for alpha in RIDGE_ALPHAS if len(data.x_val) else (DEFAULT_ALPHA,):
        w = weights(alpha * len(x))
        b = y_mean - x_mean @ w
        score = float(np.mean((data.x_val @ w + b - data.y_val) ** 2)) if len(data.x_val) else float("nan")
        if best is None or score < best[0]:
            best = (score, alpha, w, b)
    score, alpha, w, b = best
    return ProbeResult(data.x_test.astype(np.float64) @ w + b, {"alpha": alpha, "val_mse": score})


def _logistic(data: ProbeData, seed: int, max_iter: int) -> ProbeResult:
    x = torch.from_numpy(np.ascontiguousarray(data.x_train, dtype=np.float32))
    y = torch.from_numpy(data.y_train.astype(np.int64))
    xv = torch.from_numpy(np.ascontiguousarray(data.x_val, dtype=np.float32))
    yv = torch.from_numpy(data.y_val.astype(np.int64))
    w = torch.zeros(x.shape[1], data.num_classes, requires_grad=True)
    b = torch.zeros(data.num_classes, requires_grad=True)
    best = None
    for lam in LOGISTIC_LAMBDAS if len(xv) else (DEFAULT_LAMBDA,):
        optimizer = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-6)

        def closure(lam=lam, optimizer=optimizer):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w + b, y) + 0.5 * lam * (w * w).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            if len(xv):
                logits = xv @ w + b
                key = (-(logits.argmax(1) == yv).float().mean().item(),
                       torch.nn.functional.cross_entropy(logits, yv).item())  # fmt: skip
            else:
                key = (0.0,)
        if best is None or key < best[0]:
            best = (key, lam, w.detach().clone(), b.detach().clone())
    key, lam, wb, bb = best
    with torch.no_grad():
        pred = (torch.from_numpy(np.ascontiguousarray(data.x_test, dtype=np.float32)) @ wb + bb).argmax(1)
    info = {"lambda": lam}
    if len(xv):
        info["val_accuracy"] = -key[0]
    return ProbeResult(pred.numpy(), info)


class LinearProbe(Probe):
    """Ridge (regression) or multinomial logistic regression (classification, full-batch L-BFGS); the
    regularisation strength with the best validation score is kept (refitting on train only)."""

    name = "linear"

    def __init__(self, max_iter: int = 100):
        self.max_iter = max_iter

    def fit_predict(self, data: ProbeData, seed: int) -> ProbeResult:
        if data.kind == "regression":
            return _ridge(data)
        return _logistic(data, seed, self.max_iter)


@PROBES.register("linear")
def _build(**options) -> LinearProbe:
    return LinearProbe(**options)
