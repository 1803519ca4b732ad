"""Nearest-cell lookups in global latitude/longitude grids."""

from __future__ import annotations

import numpy as np


def cell_values(grid: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Value of the cell holding each point in a global, north-up, cell-registered grid.

    grid: ``(rows, cols, ...)`` covering lat 90 → −90 (row 0 touches 90°N) and lon −180 → 180 (column 0
    touches 180°W), cells of ``180/rows`` × ``360/cols`` degrees. points: ``(N, 2)`` (lon, lat) degrees.
    Returns ``(N, ...)``. Longitudes wrap; lat = −90 falls in the last row.
    """
    rows, cols = grid.shape[:2]
    points = np.asarray(points, dtype=np.float64)
    i = np.clip(np.floor((90.0 - points[:, 1]) * (rows / 180.0)), 0, rows - 1).astype(np.intp)
    j = np.floor((points[:, 0] + 180.0) * (cols / 360.0)).astype(np.intp) % cols
    return grid[i, j]


def node_values(grid: np.ndarray, points: np.ndarray, lon0: float = 0.0) -> np.ndarray:
    """Value at the nearest node of a global node-registered grid (e.g. ERA5's 0.25° grid).

    grid: ``(rows, cols, ...)`` with nodes at lat ``90 − i·180/(rows−1)`` (both poles included) and lon
    ``lon0 + j·360/cols``. points: ``(N, 2)`` (lon, lat) degrees. Returns ``(N, ...)``.
    """
    rows, cols = grid.shape[:2]
    points = np.asarray(points, dtype=np.float64)
    i = np.clip(np.rint((90.0 - points[:, 1]) * ((rows - 1) / 180.0)), 0, rows - 1).astype(np.intp)
    j = np.rint((points[:, 0] - lon0) * (cols / 360.0)).astype(np.intp) % cols
    return grid[i, j]
