"""``paper-mlp``: the probe of the SatCLIP air-temperature notebook (B01), reproduced as it is.

What it does (read from the notebook, not copied): targets divided by their maximum; raw embeddings (no
feature scaling); ``Linear(d, 64) → ReLU → [Linear(64, 64) → ReLU] × 2 → Linear(64, 1)`` where the two
hidden blocks are **one shared Linear** (``[Linear, ReLU] * 2`` repeats the same module); full-batch Adam,
learning rate 1e-3, 3000 epochs, MSE loss, no validation or early stopping.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import PROBES, Probe, ProbeData, ProbeResult

HIDDEN, EPOCHS, LR, SHARED_REPEATS = 64, 3000, 1e-3, 2


def build_notebook_mlp(input_dim: int) -> nn.Sequential:
    """The notebook's network, hidden weights shared between its two hidden blocks."""
    shared = nn.Linear(HIDDEN, HIDDEN)
    layers: list[nn.Module] = [nn.Linear(input_dim, HIDDEN), nn.ReLU()]
    layers += [shared, nn.ReLU()] * SHARED_REPEATS
    layers.append(nn.Linear(HIDDEN, 1))
    return nn.Sequential(*layers)


class PaperMLPProbe(Probe):
    """The notebook's MLP (regression only); ``epochs`` can be lowered for quick tests."""

    name = "paper-mlp"
    standardise_features = False
    target_scaling = "max"

    def __init__(self, epochs: int = EPOCHS):
        self.epochs = epochs

    def fit_predict(self, data: ProbeData, seed: int) -> ProbeResult:
        if data.kind != "regression":
            raise ValueError("the paper-mlp probe reproduces a regression notebook; use 'mlp' for classification")
        x = torch.from_numpy(np.ascontiguousarray(data.x_train, dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(data.y_train, dtype=np.float32))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_notebook_mlp(x.shape[1])
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        for _ in range(self.epochs):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x)[:, 0], y).backward()
            optimizer.step()
        with torch.no_grad():
            pred = model(torch.from_numpy(np.ascontiguousarray(data.x_test, dtype=np.float32)))[:, 0]
        return ProbeResult(pred.numpy(), {"hidden": HIDDEN, "epochs": self.epochs, "lr": LR, "shared_hidden": True})


@PROBES.register("paper-mlp")
def _build(**options) -> PaperMLPProbe:
    return PaperMLPProbe(**options)
