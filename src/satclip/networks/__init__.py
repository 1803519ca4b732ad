"""Networks that map positional encodings to embeddings, by name: ``satclip.networks.create(name, **params)``.

Every builder takes ``input_dim`` and ``num_classes`` (the embedding size) plus its own parameters,
named as in the original SatCLIP (``dim_hidden``, ``num_layers``).
"""

from __future__ import annotations

from torch import nn

from . import mlp, siren  # noqa: E402,F401  (register the builders)
from .registry import NETWORKS, SIZES


def create(name: str, **params) -> nn.Module:
    return NETWORKS.create(name, **params)


def sizes_from_shapes(name: str, shapes, prefix: str = "") -> dict[str, tuple[int, str]]:
    """``{param: (value, evidence)}``: the builder parameters of network ``name`` that its state-dict
    ``shapes`` (keys starting with ``prefix``) imply, read without building anything.

    Raises:
        BadInputError: a tensor the network needs is missing or has the wrong rank.
    """
    return SIZES.get(name)(shapes, prefix)


def names() -> list[str]:
    return NETWORKS.names()
