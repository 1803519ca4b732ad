"""Networks that map positional encodings to embeddings, by name: ``satclip.nn.create(name, **params)``.

Every builder takes ``input_dim`` and ``num_classes`` (the embedding size) plus its own parameters,
named as in the original SatCLIP (``dim_hidden``, ``num_layers``).
"""

from __future__ import annotations

from torch import nn

from . import mlp, siren  # noqa: E402,F401  (register the builders)
from .registry import NETWORKS


def create(name: str, **params) -> nn.Module:
    return NETWORKS.create(name, **params)


def names() -> list[str]:
    return NETWORKS.names()
