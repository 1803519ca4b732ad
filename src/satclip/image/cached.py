"""The image encoder of a run on cached backbone features."""

from __future__ import annotations

import torch
from torch import nn

from .base import ImageEncoder


class CachedFeatures(ImageEncoder):
    """An identity backbone (a feature cache holds its output) followed by a trainable ``head``.

    ``forward((B, feature_dim) features) = head(features)``. Training a :class:`satclip.SatCLIP` with this
    as its ``visual`` makes the trained weights ``visual.head.*``; exporting puts the cache's backbone in
    front of that head (:func:`satclip.train.build.full_image_encoder`). ``config`` is the complete
    encoder's (what the cache was computed with), so the model describes what it will be exported as.
    """

    def __init__(self, head: nn.Module, config: dict):
        super().__init__()
        self.head = head
        self.config = dict(config)

    def encode_features(self, features: torch.Tensor) -> torch.Tensor:
        return features
