"""Networks that map positional encodings to embeddings, by name: ``satclip.nn.create(name, **params)``.

Every builder takes ``input_dim`` and ``num_classes`` (the embedding size) plus its own parameters,
named as in the original SatCLIP (``dim_hidden``, ``num_layers``).
"""

from __future__ import annotations

import inspect

from torch import nn

from . import mlp, siren  # noqa: E402,F401  (register the builders)
from .registry import NETWORKS


def create(name: str, **params) -> nn.Module:
    builder = NETWORKS.get(name)
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise TypeError(
            f"network {name!r} got unexpected parameter(s) {unknown}; it accepts {sorted(accepted)}"
        )
    return builder(**params)


def names() -> list[str]:
    return NETWORKS.names()
