"""Probes fitted on frozen embeddings, by name: ``mlp``, ``linear`` and the notebook's ``paper-mlp``."""

from __future__ import annotations

from . import linear, mlp, paper  # noqa: F401  (register the probes)
from .base import PROBES, Probe, ProbeData, ProbeResult


def create(name: str, **options) -> Probe:
    """Build the probe ``name`` (unknown names list the known ones)."""
    return PROBES.get(name)(**options)


__all__ = ["PROBES", "Probe", "ProbeData", "ProbeResult", "create"]
