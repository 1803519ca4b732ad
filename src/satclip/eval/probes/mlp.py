"""``mlp``: a small ReLU MLP on frozen embeddings, early-stopped and chosen from a small grid on validation.

Unlike the MLP of the original SatCLIP notebooks (whose ``[Linear, ReLU] * n`` reuses one Linear, see
:mod:`.paper`), every hidden layer here has its own weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .base import PROBES, Probe, ProbeData, ProbeResult


@dataclass(frozen=True)
class MLPConfig:
    """One point of the hyper-parameter grid."""

    hidden: int = 128
    layers: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-4


#: the default grid, two learning rates: kept small so that a full benchmark fits in 30 CPU minutes
DEFAULT_GRID = (MLPConfig(lr=1e-3), MLPConfig(lr=3e-3))


def build_mlp(input_dim: int, output_dim: int, config: MLPConfig) -> nn.Sequential:
    """``Linear(d, h) → ReLU → [Linear(h, h) → ReLU] × (layers − 1) → Linear(h, out)``, each layer its own."""
    dims = [input_dim] + [config.hidden] * config.layers
    modules: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        modules += [nn.Linear(a, b), nn.ReLU()]
    modules.append(nn.Linear(dims[-1], output_dim))
    return nn.Sequential(*modules)


def _loss(kind: str):
    if kind == "regression":
        return lambda out, y: nn.functional.mse_loss(out[:, 0], y)
    return nn.functional.cross_entropy


class MLPProbe(Probe):
    """Mini-batch AdamW with early stopping on the validation loss (best epoch restored); the grid
    point with the best validation score (MSE, or accuracy then loss) is kept."""

    name = "mlp"

    def __init__(
        self, grid: tuple[MLPConfig, ...] = DEFAULT_GRID, max_epochs: int = 60, patience: int = 6,
        batch_size: int = 256,
    ):  # fmt: skip
        if not grid:
            raise ValueError("the MLP probe needs at least one grid point")
        self.grid = tuple(grid)
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size

    def _train(self, data: ProbeData, config: MLPConfig, seed: int):
        kind = data.kind
        out_dim = 1 if kind == "regression" else data.num_classes
        target_dtype = torch.float32 if kind == "regression" else torch.int64
        x = torch.from_numpy(np.ascontiguousarray(data.x_train, dtype=np.float32))
        y = torch.from_numpy(data.y_train).to(target_dtype)
        xv = torch.from_numpy(np.ascontiguousarray(data.x_val, dtype=np.float32))
        yv = torch.from_numpy(data.y_val).to(target_dtype)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_mlp(x.shape[1], out_dim, config)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loss_fn = _loss(kind)
        best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
        for epoch in range(self.max_epochs):
            model.train()
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), self.batch_size):
                idx = order[start : start + self.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(x[idx]), y[idx]).backward()
                optimizer.step()
            if not len(xv):
                continue
            model.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(model(xv), yv))
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch, stale = val_loss, epoch + 1, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch = self.max_epochs
        model.eval()
        score = None
        if len(xv):
            with torch.no_grad():
                out = model(xv)
            if kind == "regression":
                score = (float(nn.functional.mse_loss(out[:, 0], yv)),)
            else:
                score = (-float((out.argmax(1) == yv).float().mean()), best_loss)
        return model, score, best_epoch

    def fit_predict(self, data: ProbeData, seed: int) -> ProbeResult:
        grid = self.grid if len(data.x_val) else self.grid[:1]
        best = None
        for i, config in enumerate(grid):
            model, score, epochs = self._train(data, config, seed * 1000 + i)
            if best is None or (score is not None and score < best[1]):
                best = (model, score, epochs, config)
        model, score, epochs, config = best
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(data.x_test, dtype=np.float32)))
        predictions = out[:, 0].numpy() if data.kind == "regression" else out.argmax(1).numpy()
        info = {**asdict(config), "epochs": epochs}
        if score is not None:
            info["val_" + ("mse" if data.kind == "regression" else "accuracy")] = (
                score[0] if data.kind == "regression" else -score[0]
            )
        return ProbeResult(predictions, info)


@PROBES.register("mlp")
def _build(grid=None, **options) -> MLPProbe:
    if grid is not None:
        grid = tuple(MLPConfig(**g) if isinstance(g, dict) else g for g in grid)
        options["grid"] = grid
    return MLPProbe(**options)
