"""Retrieval-augmented location embeddings (RANGE, Dhakal et al., CVPR 2025, arXiv 2502.19781).

A retrieval database (:mod:`~satclip.retrieval.database`) holds, for every image of a corpus, its location,
the model's location embedding and the model's image embedding. A :class:`RetrievalEncoder` embeds a
point as ``[location embedding ‖ image embedding estimated from retrieved entries]``.
"""

from __future__ import annotations

from .database import RetrievalDatabase, StaleDatabaseError, build_database, check_fresh
from .encoder import RetrievalEncoder

__all__ = ["RetrievalDatabase", "RetrievalEncoder", "StaleDatabaseError", "build_database", "check_fresh"]
