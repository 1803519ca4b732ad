"""Downstream evaluation of location encoders: tasks × protocols × probes, with reports.

>>> from satclip.eval import EvalConfig, run_evaluation
>>> config = EvalConfig(encoders=("wrap", "sh-l10", "geoclip"), tasks=("era5-temperature", "koppen"),
...                     protocol="random", seeds=(0, 1, 2))
>>> run_evaluation(config, "eval-out")                     # doctest: +SKIP

The command line is ``satclip evaluate``. Tasks, protocols, probes and encoders are looked up by name
(:data:`TASKS`, :data:`PROTOCOLS`, :data:`PROBES`, :data:`ENCODERS`). Needs the ``[eval]`` extra.
"""

from __future__ import annotations

from .api import EvalOutputs, run_evaluation
from .encoders import ENCODERS
from .probes import PROBES
from .protocols import PROTOCOLS
from .runner import EvalConfig, TaskFile, evaluate
from .tasks import TASKS, Task, TaskOptions, load_task, table_task

__all__ = [
    "ENCODERS", "PROBES", "PROTOCOLS", "TASKS", "EvalConfig", "EvalOutputs", "Task", "TaskFile",
    "TaskOptions", "evaluate", "load_task", "run_evaluation", "table_task",
]  # fmt: skip
