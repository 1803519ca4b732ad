"""Neighbour search of a retrieval database: semantic (cosine of location embeddings, exact) and the
weighted mean of the retrieved entries' image embeddings.

Semantic search is a brute-force product with every database entry (RANGE's own retrieval): exact, and
about 1,000 queries/s per CPU core against 100,000 entries of 256 dimensions (2.6·10⁷ multiply-adds and a
top-k over 10⁵ scores per query). Geographic search (:class:`~satclip.retrieval.geo.GeoIndex`) is a k-d tree
query, two orders of magnitude faster: see docs/retrieval.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .geo import first_valid

#: scores computed at once: (queries per chunk) × (database entries) ≤ this (64 MiB of float32)
SCORE_ELEMENTS = 1 << 24


class SemanticIndex:
    """Exact top-k database entries by cosine similarity of location embeddings."""

    def __init__(self, location: np.ndarray):
        keys = torch.from_numpy(np.asarray(location, dtype=np.float32))
        self.keys = keys / keys.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def __len__(self) -> int:
        return len(self.keys)

    def search(
        self, queries: torch.Tensor, k: int, excluded: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` entries most similar to ``(B, D)`` query embeddings (normalised here), best first.

        ``excluded(rows, index)`` → boolean ``(len(rows), m)``: which candidate entries ``index`` of queries
        ``rows`` may not be returned (e.g. those within a radius of the query); a query left with fewer
        than ``k`` candidates is searched again with more. Returns ``(index, cosine)``: ``(B, k)`` int64
        (−1 where fewer than ``k`` entries remain) and float32 (−inf there).
        """
        queries = queries.to(torch.float32)
        queries = queries / queries.norm(dim=1, keepdim=True).clamp_min(1e-12)
        n, b = len(self), len(queries)
        index_out = np.full((b, k), -1, dtype=np.int64)
        score_out = np.full((b, k), -np.inf, dtype=np.float32)
        chunk = max(1, SCORE_ELEMENTS // n)
        for start in range(0, b, chunk):
            rows = np.arange(start, min(b, start + chunk))
            extra = 8 if excluded is not None else 0
            while len(rows):
                kk = min(n, k + extra)
                scores = queries[torch.from_numpy(rows)] @ self.keys.T
                top, index = scores.topk(kk, dim=1)
                top, index = top.numpy(), index.numpy()
                valid = np.ones_like(index, dtype=bool) if excluded is None else ~excluded(rows, index)
                done = (valid.sum(axis=1) >= min(k, n)) | (kk >= n)
                index_k, score_k = first_valid(index[done], top[done], valid[done], k)
                width = index_k.shape[1]
                index_out[rows[done], :width] = index_k
                score_out[rows[done], :width] = np.where(index_k >= 0, score_k, -np.inf)
                rows = rows[~done]
                extra = 4 * extra + 64
        return index_out, score_out


def softmax_weights(scores: np.ndarray, index: np.ndarray, scale: float) -> np.ndarray:
    """Softmax of ``scores / scale`` over each row's valid entries (``index`` ≥ 0); rows without any get all-zero
    weights. The row's best score is subtracted before dividing, so a tiny positive ``scale`` cannot overflow (a
    temperature of 1e-39 gave inf − inf = NaN): it gives the best entries all the weight."""
    scores = np.where(index >= 0, scores, -np.inf).astype(np.float64)
    top = scores.max(axis=1, keepdims=True)
    with np.errstate(over="ignore"):  # (a difference over a tiny scale is -inf: a weight of 0)
        weights = np.exp((scores - np.where(np.isfinite(top), top, 0.0)) / scale)
    total = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0).astype(np.float32)


def weighted_mean(values: torch.Tensor, index: np.ndarray, weights: np.ndarray) -> torch.Tensor:
    """``Σ_j weights[:, j] · values[index[:, j]]`` → ``(B, E)`` float32 (one fused gather-and-sum)."""
    safe = torch.from_numpy(np.where(index >= 0, index, 0))
    w = torch.from_numpy(np.where(index >= 0, weights, 0.0).astype(np.float32))
    return torch.nn.functional.embedding_bag(safe, values, per_sample_weights=w, mode="sum")
