"""A training run's ``history.jsonl`` (one JSON row per finished epoch, written by
:class:`satclip.train.callbacks.History`), read without Lightning: by training, and by the model loader where a run
with no exports yet is given as a model (:func:`satclip.io.native.run_without_exports`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def read_history(path: Path) -> list[dict]:
    """The rows of a run's history.jsonl, as :class:`~satclip.train.callbacks.History` writes it ([] where there is
    none); a line that is not such a row (the file damaged or edited) is skipped with a warning naming it."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            row, problem = None, f"not JSON: {err}"
        else:
            problem = "" if isinstance(row, dict) and isinstance(row.get("epoch"), int) else "no epoch's row"
        if problem:
            log.warning("%s line %d is damaged (%s): skipped", path, number, problem)
            continue
        rows.append(row)
    return rows
