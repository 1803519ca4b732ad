"""A model as data: configs and tensors, and the native key layout (``location.*``, ``visual.*``,
``logit_scale``).

Every reader (:mod:`satclip.io.read`) produces a :class:`ModelParts` and every writer consumes one, so the
native layout is assembled in one place, :func:`pack`, and taken apart in one place, :func:`unpack`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch

from ..errors import BadInputError

LOCATION = "location."
VISUAL = "visual."
LOGIT_SCALE = "logit_scale"


@dataclass
class ModelParts:
    """What a model file holds, independent of its format.

    ``location_config`` is a :class:`~satclip.LocationEncoder` config and ``location_state`` its state dict
    (``nnet.…`` keys); ``image_config``/``visual_state`` the image encoder's (``None`` for a location-only
    model); ``metadata`` what the native ``config.json`` records beside them; ``provenance`` where the
    parts were read from (``source``, ``format``, …).
    """

    location_config: dict
    location_state: dict[str, torch.Tensor]
    image_config: dict | None = None
    visual_state: dict[str, torch.Tensor] | None = None
    logit_scale: torch.Tensor | None = None
    metadata: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def has_image_encoder(self) -> bool:
        return bool(self.image_config) and bool(self.visual_state)

    def location_only(self) -> ModelParts:
        """The same model without its image encoder and ``logit_scale``."""
        return replace(self, image_config=None, visual_state=None, logit_scale=None)

    def native_config(self) -> dict:
        """The ``config.json`` sections of the native format (without ``format``/``format_version``)."""
        return {
            "location_encoder": self.location_config,
            "image_encoder": self.image_config if self.visual_state else None,
            "metadata": self.metadata,
        }


def check_metadata(metadata: Mapping) -> None:
    """Raise :class:`BadInputError` naming the first entry of ``metadata`` that JSON cannot store (``config.json``
    holds it), before anything is written (json's TypeError came from deep in the writer)."""

    def check(value, where: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):  # (1 was written as "1": it did not load back as it was given)
                    raise BadInputError(f"{where} has the key {key!r} of type {type(key).__name__}, which config.json "
                                        "holds as text only: give keys that are strings")  # fmt: skip
                check(item, f"{where}[{key!r}]")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                check(item, f"{where}[{index}]")
        elif isinstance(value, float) and not math.isfinite(value):  # (NaN was written as JSON no reader takes)
            raise BadInputError(f"{where} is {value}, which JSON cannot hold: give a finite number, or None")
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            raise BadInputError(f"{where} is of type {type(value).__name__}, which config.json cannot hold: give "
                                "metadata of JSON values (str, number, bool, None, list, dict)")  # fmt: skip

    check(metadata, "metadata")


def pack(parts: ModelParts) -> dict[str, torch.Tensor]:
    """The native state dict of ``parts``: ``location.*``, then ``visual.*`` and ``logit_scale`` when present.

    The one place the native key layout is assembled (also :class:`satclip.SatCLIP`'s ``state_dict``)."""
    tensors = {LOCATION + k: v for k, v in parts.location_state.items()}
    tensors.update({VISUAL + k: v for k, v in (parts.visual_state or {}).items()})
    if parts.logit_scale is not None:
        tensors[LOGIT_SCALE] = parts.logit_scale
    return tensors


def unpack(
    tensors: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor | None]:
    """``(location_state, visual_state, logit_scale)`` of a native state dict (the inverse of :func:`pack`)."""
    location = {k[len(LOCATION) :]: v for k, v in tensors.items() if k.startswith(LOCATION)}
    visual = {k[len(VISUAL) :]: v for k, v in tensors.items() if k.startswith(VISUAL)}
    return location, visual, tensors.get(LOGIT_SCALE)


def location_keys(names) -> dict[str, str]:
    """Native key → location state-dict key, for the ``location.*`` names among ``names``."""
    return {k: k[len(LOCATION) :] for k in names if k.startswith(LOCATION)}
