"""One call that runs an evaluation and writes every report and figure into a folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import safe_output
from ..errors import OutputExistsError
from .report import write_reports
from .runner import PREDICTIONS_DIR, EvalConfig, evaluate_tasks
from .tasks import Task

log = logging.getLogger(__name__)


@dataclass
class EvalOutputs:
    """Rows of the run, the files written (``csv``, ``timings``, ``md``, ``bars``, ``maps``) and the tasks it ran."""

    rows: list[dict]
    files: dict[str, Path | list[Path]]
    tasks: list[Task] = field(default_factory=list)


def run_evaluation(
    config: EvalConfig,
    out_dir: str | Path,
    *,
    figures: bool = True,
    progress: Callable[[int], object] | None = None,
    command: str | None = None,
) -> EvalOutputs:
    """Evaluate and write ``results.csv``, ``timings.csv``, ``results.md`` (naming the ``command`` that ran it,
    if given), ``bars_*.png`` and ``map_*.png``.

    ``out_dir`` must be new, empty or an earlier evaluation's (finished folds there are reused); it is
    locked while the evaluation runs.
    """
    out = Path(out_dir)
    from ..io.resolve import local_model_files

    # never inside a model directory it evaluates (convert --overwrite of that model would refuse it then), nor
    # holding a table it reads (a --task-file or --data named results.csv there was replaced by the results); a
    # task_file given as a DataFrame is no file
    tables = [config.task_file.path if config.task_file else None, config.task_options.data]
    tables = [table for table in tables if isinstance(table, (str, os.PathLike))]
    safe_output.check_not_input(out, [file for spec in config.encoders for file in local_model_files(spec)] + tables)
    safe_output.check_not_in_output(out)
    # refuses a directory of someone else's files now; evaluate_tasks makes and marks it once the tasks and
    # encoders are checked (a failed check leaves a user's empty directory as it was, not satclip's)
    safe_output.check_owned_dir(out, kind="evaluation")
    predictions = out / PREDICTIONS_DIR
    if predictions.is_symlink():  # (the predictions were written into the folder it points to, outside out_dir)
        raise OutputExistsError(f"{predictions} is a symbolic link: satclip writes an evaluation's predictions in "
                                "its own folder, never through a link; remove the link, or choose another --out")
    with safe_output.exclusive(out):
        rows, tasks = evaluate_tasks(config, out, progress=progress, maps=figures)
        files: dict[str, Path | list[Path]] = {}
        if figures:  # first, so that results.md links them
            from .plots import bar_chart, residual_maps

            files["bars"] = bar_chart(rows, tasks, out / "bars.png", f"satclip evaluate: {config.protocol}")
            files["maps"] = residual_maps(rows, tasks, out, seed=config.seeds[0])
        pictures = [*files.get("bars", []), *files.get("maps", [])]
        files.update(write_reports(rows, config, tasks, out, figures=pictures, command=command))
        safe_output.keep_only_written(out, "figures", pictures)  # an earlier run's other figures go
    log.debug("wrote %s", ", ".join(str(p) for p in files.values() if isinstance(p, Path)))
    return EvalOutputs(rows, files, tasks)
