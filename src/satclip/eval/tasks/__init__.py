"""Downstream tasks, by name (``TASKS``), plus user tables (:func:`table_task`).

>>> from satclip.eval.tasks import load_task, TaskOptions
>>> task = load_task("era5-temperature", TaskOptions(n_points=2000))   # doctest: +SKIP
>>> task.points.shape, task.kind                                       # doctest: +SKIP
((2000, 2), 'regression')

Offline tasks label one shared, seeded, area-uniform sample of land points (lat > −60°) from real global
data shipped in PyPI wheels; ``air-temperature`` reads the paper's station table. See docs/data.md for
sources and licences.
"""

from __future__ import annotations

from . import air_temperature, country, elevation, era5, koppen, landcover  # noqa: F401  (register tasks)
from .base import CLASSIFICATION, REGRESSION, TASKS, Task, TaskOptions
from .table import table_task

#: the registered tasks in the order reports list them
ORDER = ("air-temperature", "era5-temperature", "era5-precipitation", "elevation", "koppen", "landcover", "country")


def names() -> list[str]:
    """Registered task names, in report order."""
    return [n for n in ORDER if n in TASKS] + [n for n in TASKS.names() if n not in ORDER]


def load_task(name: str, options: TaskOptions | None = None) -> Task:
    """Build the registered task ``name`` (unknown names list the known ones) with ``options`` (defaults:
    :class:`TaskOptions`)."""
    return TASKS.get(name)(options or TaskOptions())


__all__ = ["CLASSIFICATION", "REGRESSION", "TASKS", "Task", "TaskOptions", "load_task", "names", "table_task"]
