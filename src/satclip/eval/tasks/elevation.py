"""``elevation``: terrain height at land points, from pvlib's global 5′ altitude grid.

Data: ``pvlib/data/Altitude.h5`` (dataset ``Altitude``, ``(2160, 4320)`` uint8, north-up from 180°W);
metres = ``code · 28 − 450`` and 255 = no data (ocean), as pvlib's ``lookup_altitude`` decodes it. The
grid holds bedrock, not the ice surface, over Greenland, so points in Greenland are dropped.
Upstream: Mapzen / Joerd terrain tiles (ETOPO1, GMTED2010, SRTM, …; attributions in pvlib's docs).
"""

from __future__ import annotations

import numpy as np

from ...optional import require
from .. import assets
from ..grids import cell_values
from .base import REGRESSION, TASKS, Task, TaskOptions
from .land import labelled_sample

NODATA = 255
#: countries whose grid values are not the surface height
MASKED_COUNTRIES = ("GRL",)


def altitude_m(points: np.ndarray) -> np.ndarray:
    """Altitude in metres (float64, NaN where the grid has no data) at ``(N, 2)`` (lon, lat) points."""
    h5py = require("h5py", "eval")
    with h5py.File(assets.ALTITUDE.path(), "r") as f:
        codes = f["Altitude"][:]
    values = cell_values(codes, points)
    return np.where(values == NODATA, np.nan, values.astype(np.float64) * 28.0 - 450.0)


@TASKS.register("elevation")
def elevation(options: TaskOptions) -> Task:
    arrays = labelled_sample("elevation", options, altitude_m)
    values = arrays["labels"].astype(np.float64)
    keep = np.isfinite(values) & ~np.isin(arrays["countries"], MASKED_COUNTRIES)
    return Task(
        name="elevation", kind=REGRESSION, points=arrays["points"][keep], targets=values[keep],
        continents=arrays["continents"][keep], target="terrain height (m)",
        source="pvlib Altitude.h5 (Mapzen/Joerd terrain), 5′; Greenland dropped",
    )  # fmt: skip
