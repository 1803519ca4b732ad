"""Embeddings of a task's points, computed once per encoder and point set and cached.

Key: the encoder's identity (its spec plus a fingerprint of its outputs, so changed weights or code miss
the cache) and a hash of the points. Entries live in ``$SATCLIP_CACHE/eval/embeddings/``.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .cache import cached_arrays, digest, file_part
from .encoders import Encoder

log = logging.getLogger(__name__)


def embed(encoder: Encoder, points: np.ndarray, *, use_cache: bool = True) -> np.ndarray:
    """``(N, D)`` float32 embeddings of ``(N, 2)`` (lon, lat) points, from the cache when present."""
    points = np.ascontiguousarray(points, dtype=np.float64)

    def build() -> dict[str, np.ndarray]:
        start = time.perf_counter()
        features = encoder.embed(points)
        log.info("embedded %d points with %s in %.1f s", len(points), encoder.name, time.perf_counter() - start)
        return {"embeddings": features}

    key = digest(encoder.identity, points)
    arrays = cached_arrays("embeddings", f"{file_part(encoder.name, 'encoder')}-{key}", build, enabled=use_cache)
    features = arrays["embeddings"]
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).any(axis=1).sum())
        raise ValueError(f"encoder {encoder.name} produced non-finite embeddings for {bad} of {len(points)} points")
    return features
