"""Run encoders × tasks × probes × folds of one protocol; resumable, deterministic for given seeds.

Each finished fold is appended to ``OUT/rows.jsonl`` (with a key naming everything it depends on), so an
interrupted run resumes where it stopped. Test predictions of every seed's folds (zero-shot ones for
``holdout-continent``; together a seed's folds test every point once for the hold-out and block protocols) are
kept in ``OUT/predictions/``, by row key (what a file holds: :func:`_save_predictions`; results.csv names each
row's), for the residual maps, which show the run's first seed: a rerun that lists its seeds in another order, or
adds encoders, maps what a fresh run of it would. A fold's file goes with its record when a rerun evaluates the
fold anew.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import safe_output
from ..errors import BadInputError, OutputExistsError, check_flags
from ..io.safe_pickle import check_trust
from . import embeddings, encoders, metrics, probes, protocols
from .cache import digest, file_part, load_npz, save_npz
from .tasks import REGRESSION, TASKS, Task, TaskOptions, load_task, table_task
from .tasks import names as task_names

log = logging.getLogger(__name__)

#: the ``extra`` of the warnings that an evaluation replaces, or leaves out of its report, an earlier run's results in
#: its output folder: ``satclip evaluate`` shows them; ``satclip demo``, which does so whenever a run of other settings
#: goes into the same folder, keeps them to its log (it says once, before its work, what it replaces)
EARLIER_RESULTS = {"earlier_results": True}

ROWS_FILE = "rows.jsonl"
PREDICTIONS_DIR = "predictions"
#: folds whose test predictions are kept for the residual maps: together, a seed's folds of these variants test
#: every point once (``holdout-continent``: the zero-shot ones)
MAPPED_VARIANTS = ("", "zero-shot")
#: columns of results.csv, in order (timings go to timings.csv: they differ between identical runs)
COLUMNS = (
    "task", "kind", "encoder", "protocol", "probe", "fold", "seed", "group", "variant",
    "n_train", "n_val", "n_test", "mse", "r2", "mse_max_scaled", "accuracy", "macro_f1", "hparams", "precision",
    "model_sha256", "predictions",
)  # fmt: skip


@dataclass(frozen=True)
class TaskFile:
    """A ``--task-file`` table (see :func:`satclip.eval.tasks.table_task`): ``path`` is its file, or a pandas
    DataFrame (or GeoDataFrame) of it."""

    path: Path
    target_col: str | None = None
    lon_col: str | None = None
    lat_col: str | None = None
    kind: str | None = None
    name: str | None = None
    centroids: bool = False
    layer: str | None = None


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate.

    encoders: encoder specs (see :mod:`satclip.eval.encoders`; one string is a list, as ``--encoders`` reads it).
    tasks: registered task names (default: all of them, as ``satclip evaluate``; none when a ``task_file`` is given).
    protocol: a name in :data:`satclip.eval.protocols.PROTOCOLS`. probes: probe names (``paper`` forces
    ``paper-mlp``). seeds: split and probe seeds. protocol_options / probe_options: keyword options
    (``probe_options`` maps probe name → options). threads: torch CPU threads while fitting (1 is fastest
    on a shared 2-core machine; None leaves torch's setting). workers: processes fitting folds in parallel
    (2 on an idle 2-core machine nearly halves the time; results are identical). names: the name the results give
    an encoder, by its spec (default: the spec; the demo names its model by its place in the demo's folder, so that
    a moved folder reuses its folds: they are keyed by name and the model's outputs). trust_checkpoint: unpickle
    the ``.ckpt`` files of model encoders fully (as :func:`satclip.load`'s; only for files you trust), unless a
    spec sets its own ``trust_checkpoint=``.
    """

    encoders: tuple[str, ...]
    tasks: tuple[str, ...] | None = None
    protocol: str = "random"
    probes: tuple[str, ...] = ("mlp",)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    task_options: TaskOptions = TaskOptions()
    task_file: TaskFile | None = None
    protocol_options: dict = field(default_factory=dict)
    probe_options: dict = field(default_factory=dict)
    threads: int | None = 1
    workers: int = 1
    use_cache: bool = True
    names: dict = field(default_factory=dict)
    trust_checkpoint: bool = False

    def __post_init__(self) -> None:
        """One name where a tuple is wanted is taken as a tuple of it (``tasks="koppen"`` was read letter by
        letter); what cannot be meant is refused, naming the field."""
        check_trust(self.trust_checkpoint)
        if self.tasks is None:  # (the CLI's default; an empty tuple asked for nothing and was refused)
            object.__setattr__(self, "tasks", () if self.task_file is not None else tuple(task_names()))
        if isinstance(self.seeds, (str, bytes)):  # ("0" was read as ('0',), "0,1" as ('0', ',', '1'))
            raise BadInputError(f"EvalConfig: seeds={self.seeds!r} is text; give integers >= 0, e.g. seeds=(0, 1)")
        if self.seeds is None or not isinstance(self.seeds, (int, np.integer, Iterable)):
            raise BadInputError(f"EvalConfig: seeds={self.seeds!r}; give integers >= 0, e.g. seeds=(0, 1)")
        self._check_encoders()
        single = {"tasks": str, "probes": str, "seeds": (int, np.integer)}
        for key, kind in single.items():
            value = getattr(self, key)
            if isinstance(value, kind) and not isinstance(value, bool):
                value = (value,)
            object.__setattr__(self, key, tuple(os.fspath(v) if isinstance(v, os.PathLike) else v for v in value))
        others = [t for t in self.tasks if not isinstance(t, str)]
        if others:  # (a Task of table_task's was "TypeError: unhashable type: 'numpy.ndarray'" from the registry)
            raise BadInputError(
                f"EvalConfig: tasks takes task names (e.g. 'koppen'), got a {type(others[0]).__name__}; a table of "
                "your own is task_file=TaskFile(path, target_col=...), its path a file or a pandas DataFrame"
            )
        if not self.encoders:
            raise BadInputError("EvalConfig: encoders is empty; give at least one encoder spec (e.g. 'wrap')")
        encoders.check_distinct(self.encoders)  # one encoder spelt twice ran twice, a false tie in every table
        if self.protocol != "holdout-continent":  # (it ran, the plain retrieval encoder's twin, "tied for best")
            for spec in self.encoders:
                if encoders.parse_spec(spec)[1].get("exclude_heldout") is True:
                    raise BadInputError(
                        f"encoder {spec!r}: exclude_heldout=True leaves each held-out continent out of the database "
                        f"under --protocol holdout-continent; under {self.protocol} it changes nothing: drop it"
                    )
        unnamed = sorted(set(self.names) - set(self.encoders))
        if unnamed:
            raise BadInputError(f"EvalConfig: names are keyed by encoder spec ({', '.join(self.encoders)}), got "
                                f"{unnamed}")
        if self.task_file is not None and not isinstance(self.task_file, TaskFile):
            raise BadInputError(f"EvalConfig: task_file={self.task_file!r} must be a TaskFile(path=…, target_col=…)")
        unknown = sorted(set(self.probe_options) - set(probes.PROBES.names()))
        if unknown:
            raise BadInputError(f"EvalConfig: probe_options are keyed by probe name ({', '.join(probes.PROBES.names())}"
                                f"), got {unknown}: e.g. probe_options={{'linear': {{'alpha': 1.0}}}}")  # fmt: skip
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):  # fmt: skip
            raise BadInputError(f"EvalConfig: threads={self.threads!r} must be a number of threads, 1 or more, or None")
        if isinstance(self.workers, bool) or not isinstance(self.workers, (int, np.integer)) or self.workers < 1:
            # ("two" failed as a TypeError when the pool was made, after the encoders were built; 0 ran sequentially)
            raise BadInputError(f"EvalConfig: workers={self.workers!r} must be a number of processes, 1 or more")
        check_flags(use_cache=self.use_cache)  # ("no" is true: the cache was used)
        self._check_names_and_seeds()

    def _check_encoders(self) -> None:
        """Take one spec string as ``satclip evaluate --encoders`` takes its list (``"wrap,sh-l10"`` is two
        specs, a path with commas one: :func:`~satclip.eval.encoders.split_specs`) and one path as a tuple of it;
        refuse anything but specs: results name an encoder, record its ``model_sha256`` and cache its embeddings by
        its spec (a loaded encoder failed as "'LocationEncoder' object has no attribute 'strip'")."""
        specs = self.encoders
        if isinstance(specs, str):
            specs = encoders.split_specs(specs)
        elif isinstance(specs, (os.PathLike, torch.nn.Module)) or not isinstance(specs, Iterable):
            specs = (specs,)
        specs = tuple(os.fspath(s) if isinstance(s, os.PathLike) else s for s in specs)
        others = [s for s in specs if not isinstance(s, str)]
        if others:
            raise BadInputError(
                f"EvalConfig: encoders are spec strings (e.g. 'bluemarble-l10', 'bluemarble-l10+range+', a model's "
                f"path), got a value of type {type(others[0]).__name__}: give the spec or path you loaded it from"
            )
        object.__setattr__(self, "encoders", specs)

    def _check_names_and_seeds(self) -> None:
        """Refuse an unknown protocol, task or probe name (listing the known ones), probes the protocol does not
        take, and seeds that are not different integers >= 0: they were accepted here and refused by
        :func:`evaluate`, after the encoders were built."""
        protocols.PROTOCOLS.get(self.protocol)
        for name in self.tasks:
            TASKS.get(name)
        self.check_probes()
        seeds = self.seeds
        if not seeds or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
            raise BadInputError(f"EvalConfig: seeds must be integers >= 0, at least one, got {list(seeds)}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))
        for what, values in (("probes", self.probe_names()), ("seeds", self.seeds)):
            if len(set(values)) != len(values):  # repeats fit the same folds again: a spread of 0 and a false winner
                raise BadInputError(f"{what} must be unique, got {list(values)}")

    def probe_names(self) -> tuple[str, ...]:
        fixed = protocols.FIXED_PROBE.get(self.protocol)
        return (fixed,) if fixed else tuple(self.probes)

    def check_probes(self) -> None:
        """Refuse an unknown probe name, and probes other than the default under a protocol that fixes its
        probe (``paper``): they were silently replaced, unknown names included."""
        for name in self.probes:
            probes.PROBES.get(name)  # an unknown name raises, listing the known ones
        fixed = protocols.FIXED_PROBE.get(self.protocol)
        if fixed and tuple(self.probes) not in (EvalConfig.probes, (fixed,)):
            raise BadInputError(
                f"protocol {self.protocol!r} fits its own probe ({fixed}): probes {list(self.probes)} (--probes) do "
                f"not apply to it; leave them out, or use another protocol"
            )


#: tasks left out of the holdout-continent protocol: no country lies in two continents, so zero-shot accuracy is 0
NOT_HELD_OUT = ("country",)


def load_tasks(config: EvalConfig) -> list[Task]:
    """The configured tasks (registered ones, then the task file), skipping what the protocol cannot run."""
    names = config.tasks
    if config.protocol == "holdout-continent":  # (before they are built: country rasterises 258 countries)
        names = tuple(name for name in names if name not in NOT_HELD_OUT)
    tasks = [load_task(name, config.task_options) for name in names]
    if config.task_file is not None:
        tf = config.task_file
        tasks.append(table_task(tf.path, target_col=tf.target_col, lon_col=tf.lon_col, lat_col=tf.lat_col,
                                kind=tf.kind, name=tf.name, options=config.task_options, centroids=tf.centroids,
                                layer=tf.layer))  # fmt: skip
    why = "give tasks and/or a task_file (satclip evaluate: --tasks, --task-file)"
    if config.protocol == "paper":
        skipped = [t.name for t in tasks if t.kind != REGRESSION]
        if skipped:
            log.warning("the paper protocol is regression only; skipping %s", ", ".join(skipped))
            why = "the paper protocol runs regression tasks only, and none of the given ones is one"
        tasks = [t for t in tasks if t.kind == REGRESSION]
    elif config.protocol == "holdout-continent":  # (scored 0.000 for every encoder, and called a tie)
        skipped = [name for name in config.tasks if name in NOT_HELD_OUT] + [t.name for t in tasks if t.name in
                                                                             NOT_HELD_OUT]  # fmt: skip
        if skipped:
            log.warning("skipping %s under holdout-continent: no country lies in two continents, so a held-out "
                        "continent's countries are never trained on and zero-shot accuracy is 0 whatever the "
                        "encoder", ", ".join(skipped))  # fmt: skip
            why = "holdout-continent cannot score country (its classes never cross a continent); give other tasks"
        tasks = [t for t in tasks if t.name not in NOT_HELD_OUT]
    if not tasks:
        raise BadInputError(f"no tasks to evaluate: {why}")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        hint = "; name the --task-file's task otherwise with --task-name" if config.task_file else ""
        raise ValueError(f"task names must be unique, got {names}{hint}")
    return tasks


def _standardise(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    mean = x[train].mean(axis=0, dtype=np.float64)
    std = x[train].std(axis=0, dtype=np.float64)
    std[std < 1e-12] = 1.0
    return ((x - mean) / std).astype(np.float32)


def _target_moments(y: np.ndarray, train: np.ndarray) -> tuple[float, float]:
    """Mean and std (1 where it is 0) of the training targets: the scale regression scores are on."""
    mean, std = float(y[train].mean()), float(y[train].std())
    return mean, std if std > 0 else 1.0  # (any spread: targets of 1e-14 were scored unscaled, an MSE of ~0)


def blind_scores(task: Task, fold: protocols.Fold) -> dict[str, float]:
    """What a probe that ignores location scores on ``fold``, scored as :func:`run_fold` scores: the training
    targets' mean (regression) or most frequent class. Not a constant: on a held-out continent the training
    mean or class can be far from the test points'."""
    y_test = task.targets[fold.test]
    if task.kind == REGRESSION:
        mean, std = _target_moments(task.targets, fold.train)
        predictions = np.full(len(y_test), mean)
        scores = {"mse": metrics.mse(y_test / std, predictions / std), "r2": metrics.r2(y_test, predictions)}
        top = float(np.max(task.targets))  # (the paper protocol's scale: the whole table's maximum)
        if top != 0:
            scores["mse_max_scaled"] = metrics.mse(y_test / top, predictions / top)
        return scores
    majority = np.bincount(task.targets[fold.train].astype(np.int64), minlength=task.num_classes).argmax()
    return metrics.classification_metrics(y_test, np.full(len(y_test), majority))


def run_fold(task: Task, features: np.ndarray, fold: protocols.Fold, probe: probes.Probe) -> tuple[dict, np.ndarray]:
    """Fit ``probe`` on one fold; returns (metrics and choices, test predictions in target units)."""
    x = _standardise(features, fold.train) if probe.standardise_features else features.astype(np.float32)
    y = task.targets
    scale = None
    if task.kind == REGRESSION:
        mean, std = _target_moments(y, fold.train)
        if probe.target_scaling == "max":
            scale = float(np.max(y))  # the notebook divides by the maximum of the whole table
            if scale == 0:
                raise ValueError(f"task {task.name}: cannot scale targets by their maximum 0")
            shift, factor = 0.0, scale
        else:
            shift, factor = mean, std
        y_model = ((y - shift) / factor).astype(np.float32)
    else:
        y_model = y
    data = probes.ProbeData(
        x[fold.train], y_model[fold.train], x[fold.val], y_model[fold.val], x[fold.test], task.kind,
        task.num_classes,
    )  # fmt: skip
    result = probe.fit_predict(data, seed=fold.seed)
    y_test = y[fold.test]
    if task.kind == REGRESSION:
        predictions = result.predictions.astype(np.float64) * factor + shift
        scores = metrics.regression_metrics(y_test / std, predictions / std)
        scores["r2"] = metrics.r2(y_test, predictions)
        if scale is not None:
            scores["mse_max_scaled"] = metrics.mse(y_test / scale, predictions / scale)
    else:
        predictions = result.predictions.astype(np.int64)
        scores = metrics.classification_metrics(y_test, predictions)
    return {**scores, "hparams": json.dumps(result.info, sort_keys=True)}, predictions


def _open_rows(path: Path):
    """Open ``rows.jsonl`` for appending; a last line cut short by an interruption is ended first, so the
    next row starts on a line of its own (the cut line is skipped by :func:`_read_rows`)."""
    torn = False
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW  # (a link made since the check: refused too)
    sink = os.fdopen(os.open(path, flags, 0o666), "a", encoding="utf-8")
    if torn:
        sink.write("\n")
    return sink


#: the entries of a fold's row (see ``record`` in :func:`evaluate_tasks`) that are text, and those that are numbers
_ROW_TEXT = ("key", "task", "kind", "encoder", "protocol", "probe", "fold", "group", "variant", "hparams",
             "precision", "data")  # fmt: skip
_ROW_NUMBERS = ("seed", "n_train", "n_val", "n_test", "mse", "r2", "mse_max_scaled", "accuracy", "macro_f1",
                "seconds", "embedding_dim")  # fmt: skip


def _row(line: bytes) -> dict | None:
    """The fold record on one line of ``rows.jsonl``, or None if the line is not one: cut short, not UTF-8 or
    JSON, or a record without its key, names, or numbers where the report expects them."""
    try:
        row = json.loads(line.decode("utf-8"))
    except ValueError:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        return None
    if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("key", "task", "encoder", "probe",
                                                                                  "fold")):  # fmt: skip
        return None
    if any(k in row and not isinstance(row[k], str) for k in _ROW_TEXT):
        return None
    if any(row.get(k) is not None and (isinstance(row[k], bool) or not isinstance(row[k], int | float))
           for k in _ROW_NUMBERS):  # fmt: skip
        return None
    return row


def _scan_rows(data: bytes) -> tuple[dict[str, dict], list[bytes], int]:
    """The content of ``rows.jsonl`` as (its fold records by key; the lines that are fold records, in order and
    byte for byte, without their end of line; how many other lines there are, not counting a last line cut
    short). Blank lines are neither."""
    lines = data.split(b"\n")  # (bytes: one undecodable line must not lose the others)
    rows: dict[str, dict] = {}
    good: list[bytes] = []
    damaged = 0
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        row = _row(line)
        if row is not None:
            rows[row["key"]] = row
            good.append(line)
        elif number < len(lines) - 1:  # (the last line, if it has no end of line, was cut short while written)
            damaged += 1
    return rows, good, damaged


def _check_rows_file(path: Path) -> None:
    """Refuse a ``rows.jsonl`` that is a symbolic link (never read, appended or replaced through it)."""
    if path.is_symlink():  # appending through it would write fold records into whatever it points at
        raise OutputExistsError(f"{path} is a symbolic link, not the record of finished folds evaluate writes; "
                                "remove it (or choose another --out) and rerun")  # fmt: skip


def _read_rows(path: Path) -> dict[str, dict]:
    """The finished folds recorded in ``path`` (``rows.jsonl``) by their key. A line that is no fold record is
    skipped, its fold fitted again: silently when it is the last one, cut short by an interruption (no end of
    line yet), else with one warning naming the file and the count (:func:`_rewrite_rows` then removes
    it from the file, so that the next run does not warn again)."""
    _check_rows_file(path)
    if not path.is_file():
        return {}
    rows, _, damaged = _scan_rows(path.read_bytes())
    if damaged:
        log.warning("%s: %d line(s) are not records of finished folds (damaged, or cut short by an earlier "
                    "interruption): skipped, their folds are fitted again", path, damaged)  # fmt: skip
    return rows


def _rewrite_rows(out: Path, current: dict[tuple, dict]) -> None:
    """Rewrite ``out/rows.jsonl`` without its lines that are no fold record (damaged, or cut short by an
    interruption: skipped and warned about once, :func:`_read_rows`) and without the records this run supersedes:
    of a fold ``current`` names by ``(task, encoder, protocol, probe, fold)``, under another key (an encoder of that
    name that is another model now, other options), which stayed beside the new ones under the same names. What
    ``current`` gives of each fold (its ``key`` and what :data:`_COMPARED` compares) names what changed, in one
    warning (a rerun in another precision or on other data replaced the earlier results without a word); the
    predictions kept of a record replaced go with it (:func:`_forget_predictions`). The records kept keep their
    order and bytes; the file is replaced atomically, keeping its permissions (a stop here leaves the old file or
    the new one). Only in satclip's own evaluation directory ``out``, by a run that holds its lock
    (:func:`safe_output.exclusive`): another run appending meanwhile would write into the file replaced."""
    path = out / ROWS_FILE
    if not safe_output.is_owned(out):  # (evaluate_tasks has made it satclip's: never a file of someone else's)
        return
    _check_rows_file(path)
    if not path.is_file():
        return
    data = path.read_bytes()  # (read again: the file as it is under the lock, not as it was read before it)
    _, good, _ = _scan_rows(data)
    kept, replaced = [], []
    for line in good:
        row = _row(line)
        now = current.get(_fold_name(row))
        if now is None or now["key"] == row["key"]:
            kept.append(line)
        else:
            replaced.append((row, now))
    if len(kept) == sum(1 for line in data.split(b"\n") if line.strip()):  # (nothing to drop)
        return
    if replaced:
        log.warning("%s: %d record(s) of folds this run evaluates anew are replaced, evaluated before with %s",
                    path, len(replaced), _what_changed(replaced), extra=EARLIER_RESULTS)  # fmt: skip
    safe_output.write_bytes(path, b"".join(line + b"\n" for line in kept))
    _forget_predictions(out, [row for row, _ in replaced])


#: what a fold's record is compared by where a run replaces it (:func:`_what_changed`), and how a change is named
_COMPARED = {
    "precision": "another precision",
    "model_sha256": "other model weights (model_sha256)",
    "data": "other task points or values (the task's data, or --point-seed)",
    "sizes": "folds of other sizes (n_train, n_test: other --n-points, data or protocol options)",
}


def _what_changed(replaced: list[tuple[dict, dict]]) -> str:
    """What the records ``replaced`` (each with what this run evaluates its fold with) were evaluated with
    otherwise, each fold counted once, under all that changed for it, as ``another precision (float32, now
    float64) for encoder m (3 folds); other model weights (model_sha256) and folds of other sizes (…) for encoder m
    and task t (2 folds)`` (a fold named under each of its changes read as 6 + 30 of 30 folds); where none of
    :data:`_COMPARED` differs (or an older satclip recorded none), other settings."""
    groups: dict[tuple[str, ...], list[tuple[dict, dict]]] = {}
    for row, now in replaced:
        earlier = {**row, "sizes": [row.get("n_train"), row.get("n_test")]}
        differ = [what for what in _COMPARED if what in earlier and earlier[what] != now[what]]
        if "precision" in differ and "model_sha256" in differ:  # (it hashes the weights in the dtype they ran in)
            differ.remove("model_sha256")
        if "sizes" in differ and "data" in differ:  # (the digest is of the sample: another --n-points draws another)
            differ.remove("data")
        groups.setdefault(tuple(differ or ["other"]), []).append((row, now))
    said = []
    for whats, rows in groups.items():
        names = []
        for what in whats:
            name = _COMPARED.get(what, "other settings (options of the probe or protocol, the encoder's code, or a "
                                       "record of an older satclip)")  # fmt: skip
            values = sorted({f"{row.get(what)}, now {now.get(what)}" for row, now in rows})
            names.append(name + (f" ({values[0]})" if what == "precision" and len(values) == 1 else ""))
        whom = []
        for whose in ("encoder", "task"):
            if any((what in ("data", "sizes")) == (whose == "task") for what in whats):
                named = sorted({row[whose] for row, _ in rows})  # ("for 6 (encoder model)" was garbled)
                listed = ", ".join(named[:3]) + (", …" if len(named) > 3 else "")
                whom.append(f"{whose}{'s' * (len(named) > 1)} {listed}")
        said.append(f"{' and '.join(names)} for {' and '.join(whom)} ({len(rows)} fold{'s' * (len(rows) != 1)})")
    return "; ".join(said)


def _forget_predictions(out: Path, rows: list[dict]) -> None:
    """Delete the test predictions kept of the fold records ``rows`` that a run replaces (:func:`_rewrite_rows`):
    a rerun in another precision or on other data left them beside the new ones (30 files for 18 rows). Only the
    files satclip named after those records (:func:`_prediction_path`), in its own evaluation directory ``out``,
    never through a link."""
    if (out / PREDICTIONS_DIR).is_symlink():  # (the files it points at are not satclip's: run_evaluation refuses it)
        return
    paths = [_prediction_path(out, r["task"], r["encoder"], r["probe"], r["fold"], r["key"]) for r in rows]
    safe_output.remove_owned_files(out, [path.relative_to(out).as_posix() for path in paths if path.is_file()])


def _fold_name(row: dict) -> tuple:
    """What a fold record is of, by name: ``(task, encoder, protocol, probe, fold)``."""
    return tuple(row.get(name) for name in ("task", "encoder", "protocol", "probe", "fold"))


#: test points per fold under which a task's scores are called noise (one point is over 5 % of each score)
FEW_TEST_POINTS = 20


def _warn_of_few_test_points(task: Task, folds: Sequence[protocols.Fold]) -> None:
    """Warn where a fold of ``task`` tests fewer than :data:`FEW_TEST_POINTS` points: a 12-row task's folds
    scored 0 or 1 on 2 test points each, without a word."""
    smallest = min((len(fold.test) for fold in folds), default=0)
    if 0 < smallest < FEW_TEST_POINTS:
        log.warning("%s: a test split holds only %d point(s), each of them %.0f %% of the score: such scores are "
                    "mostly chance; give the task more points", task.name, smallest, 100 / smallest)  # fmt: skip


def _timed_fold(task: Task, features: np.ndarray, fold: protocols.Fold, probe: probes.Probe):
    start = time.perf_counter()
    scores, predictions = run_fold(task, features, fold, probe)
    return scores, predictions, time.perf_counter() - start


#: how often a worker looks whether the evaluation that started it is still there (seconds)
PARENT_POLL_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """End this worker process when the process ``parent`` is gone. A killed evaluation (SIGKILL, the OOM
    killer) left its workers waiting on their task queue forever, ~300 MB each: the kernel kills this one
    with its parent on Linux (``PR_SET_PDEATHSIG``), and a daemon thread polling ``os.getppid()`` ends it
    elsewhere, and where the parent died before the signal was set up."""
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # (no prctl here: the poll below does it)
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)  # (the parent is gone: nobody reads what this worker would compute)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="satclip-parent-watch", daemon=True).start()


#: the signals that stop an evaluation: the parent's to handle, never its workers' (see _init_worker)
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def _init_worker(threads: int | None, parent: int | None = None) -> None:
    # Ctrl-C, and a SIGTERM sent to the whole process group (a scheduler stopping the job), are the parent's: it
    # stops the pool (workers printed tracebacks of the KeyboardInterrupt each got; killed by the SIGTERM, they
    # left the parent a broken pool, an "unexpected error"); a worker ends with its parent (_exit_with_parent).
    # The worker started with both blocked (_submit): one that came while it imported torch is dropped here.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # (not on Windows)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if threads:
        torch.set_num_threads(threads)
    if parent is not None:
        _exit_with_parent(parent)


def _submit(pool, fn: Callable, *args):
    """``pool.submit(fn, *args)`` with SIGINT and SIGTERM blocked in this thread meanwhile. ``submit`` spawns the
    pool's workers, and a process starts with the signal mask of the thread that spawned it: a Ctrl-C to the
    terminal's process group while a worker still imported torch printed that worker's traceback; now it waits
    in the worker, blocked, until :func:`_init_worker` drops it. One sent to this process meanwhile is delivered
    when the mask is restored, not lost."""
    if not hasattr(signal, "pthread_sigmask"):  # (Windows: no signal masks)
        return pool.submit(fn, *args)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return pool.submit(fn, *args)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _kill_workers(pool) -> None:
    """End the workers of an evaluation that stops (Ctrl-C, SIGTERM, an error) at once. They ignore both
    signals (:func:`_init_worker`), and shutting the pool down waited for the folds they were fitting: a
    minute and more for large probes, with a second Ctrl-C printing a traceback. Nothing a worker holds is
    kept: its fold is fitted again by the next run. (``pool._processes`` is private; Python 3.14 has
    ``ProcessPoolExecutor.kill_workers``.)"""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        try:
            process.kill()
        except (OSError, ValueError, AttributeError):  # (gone already, or closed)
            pass
    for process in processes:
        process.join(5)


def evaluate(
    config: EvalConfig, out_dir: str | Path | None = None, *, progress: Callable[[int], object] | None = None
) -> list[dict]:
    """Run the evaluation; returns one row per (task, encoder, probe, fold) in a fixed order. Models are
    loaded in float32 unless ``$SATCLIP_PRECISION`` or a spec's ``precision=`` says otherwise
    (:func:`satclip.models.precision.evaluation_precision`); each row names its encoder's ``precision``.

    With ``out_dir``, finished folds are appended to ``rows.jsonl`` there and reused on a re-run, and
    their test predictions are saved for maps (a finished fold of the first seed whose predictions are not
    there, from an older satclip, is fitted again). ``progress(total)`` may return a tqdm-like object
    (``update``, ``set_postfix_str``, ``close``). With ``config.workers > 1`` folds are fitted in that many
    spawned processes (results do not depend on it; a calling script needs the usual
    ``if __name__ == "__main__":`` guard). ``out_dir`` is locked while the evaluation runs
    (:func:`satclip.safe_output.exclusive`): a second run into it at the same time raises
    :class:`~satclip.errors.LockedError`.
    """
    if out_dir is None:
        return evaluate_tasks(config, progress=progress)[0]
    with safe_output.exclusive(out_dir):
        return evaluate_tasks(config, out_dir, progress=progress)[0]


def evaluate_tasks(
    config: EvalConfig,
    out_dir: str | Path | None = None,
    *,
    progress: Callable[[int], object] | None = None,
    maps: bool = True,
) -> tuple[list[dict], list[Task]]:
    """:func:`evaluate`, also returning the tasks it loaded (for reports: loading them again repeated the
    work and its warnings). The caller holds the lock of ``out_dir`` (:func:`satclip.safe_output.exclusive`):
    lines of ``rows.jsonl`` that are no fold record, or of folds it evaluates anew, are dropped from it
    (:func:`_rewrite_rows`). ``maps``:
    the caller draws the residual maps of the first seed, so a finished fold of that seed whose predictions an
    earlier run did not keep is fitted again (without maps it is reused as it is)."""
    out = Path(out_dir) if out_dir is not None else None
    done = _read_rows(out / ROWS_FILE) if out else {}
    # the cheap checks and the encoders first: task data may have to be downloaded; every encoder's name before the
    # first is built (a typo in the second was named once the first had been downloaded)
    protocols.check_options(config.protocol, **config.protocol_options)
    for spec in config.encoders:
        encoders.check_known(spec)
    from ..models.precision import default_as, evaluation_precision

    with default_as(evaluation_precision()):  # (not "auto": a timing calibration chose, and moved the scores)
        encs = [encoders.create(spec, trust_checkpoint=config.trust_checkpoint) for spec in config.encoders]
    for enc, spec in zip(encs, config.encoders, strict=True):  # (before its identity, which holds the name)
        enc.name = config.names.get(spec, spec)
    names = [e.name for e in encs]
    if len(set(names)) != len(names):
        raise ValueError(f"encoder specs must be unique, got {names}")
    probe_names = config.probe_names()
    probe_objs = [probes.create(n, **config.probe_options.get(n, {})) for n in probe_names]
    tasks = load_tasks(config)
    folds = {t.name: protocols.make_folds(config.protocol, t, config.seeds, **config.protocol_options) for t in tasks}
    for task in tasks:
        protocols.warn_about(config.protocol, task, **config.protocol_options)
        _warn_of_few_test_points(task, folds[task.name])
    total = sum(len(folds[t.name]) for t in tasks) * len(encs) * len(probe_objs)
    bar = progress(total) if progress else None
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    pool = None
    if config.workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(config.threads, os.getpid()))  # fmt: skip
    groups: list[tuple[Task, encoders.Encoder, list[dict | None]]] = []  # rows in the order returned
    sink = None

    def record(group: int, slot: int, key: str, probe_name: str, fold, mapped: bool, features, result) -> None:
        task, enc, slots = groups[group]
        scores, predictions, seconds = result
        row = {
            "key": key, "task": task.name, "kind": task.kind, "encoder": enc.name, "data": task_keys[task.name],
            "protocol": config.protocol, "probe": probe_name, "fold": fold.name,
            "seed": fold.seed, "group": fold.group, "variant": fold.variant,
            "n_train": len(fold.train), "n_val": len(fold.val), "n_test": len(fold.test),
            **scores, "precision": enc.precision, "model_sha256": enc.model_sha256, "seconds": round(seconds, 3),
            "embedding_dim": int(features.shape[1]),
        }  # fmt: skip
        if out and mapped:  # (before the row: a fold recorded done whose predictions failed to be written was
            # reused without them by a rerun that draws no maps)
            _save_predictions(out, task, enc.name, probe_name, fold, predictions, key)
        if sink:
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            safe_output.keep_work(out)
        slots[slot] = row
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{task.name} · {enc.name} · {probe_name}")

    try:
        # (a split salt, where a task has one, too: rows of the splits an older satclip salted otherwise are not reused)
        task_keys = {task.name: digest(task.name, task.kind, task.points, task.targets,
                                       *([task.split_salt] if task.split_salt else [])) for task in tasks}  # fmt: skip

        def fold_key(task: Task, enc: encoders.Encoder, probe_name: str, fold: protocols.Fold) -> str:
            options = config.probe_options.get(probe_name, {})
            return digest(task_keys[task.name], enc.identity, config.protocol, config.protocol_options, probe_name,
                          options, fold.name)  # fmt: skip

        if out:
            safe_output.make_owned_dir(out, kind="evaluation")
            # (what each fold is evaluated with: a record of it under another key is replaced, naming what changed)
            current = {(t.name, e.name, config.protocol, p, f.name): {
                "key": fold_key(t, e, p, f), "precision": e.precision, "model_sha256": e.model_sha256,
                "data": task_keys[t.name], "sizes": [len(f.train), len(f.test)]}
                for t in tasks for e in encs for p in probe_names for f in folds[t.name]}  # fmt: skip
            _rewrite_rows(out, current)  # (before appending: the rows of this run go into the file rewritten)
            sink = _open_rows(out / ROWS_FILE)
        # every fold is queued as soon as its embeddings exist, so the workers never wait for a (task,
        # encoder) group to finish; rows are written as folds finish and returned in the fixed order
        futures = {}

        def reusable(task: Task, enc: encoders.Encoder, probe_name: str, fold: protocols.Fold) -> dict | None:
            """The row of this fold an earlier run finished, if it is reused."""
            key = fold_key(task, enc, probe_name, fold)
            row = done.get(key)
            if row is not None and out and maps and fold.variant in MAPPED_VARIANTS and fold.seed == config.seeds[0]:
                # a finished fold this run maps, whose predictions an earlier run did not keep (it saved its own
                # first seed's only): fitted again (the same result), so that the maps show every encoder's test
                # points of this run's first seed
                path = _prediction_path(out, task.name, enc.name, probe_name, fold.name, key)
                row = row if path.is_file() else None
            return row

        if done:  # (counted as the loop below reuses them: refitted folds were counted as reused)
            kept = sum(reusable(t, e, p, f) is not None for t in tasks for e in encs for p in probe_names
                       for f in folds[t.name])  # fmt: skip
            if kept:
                log.info("reusing %d of %d folds evaluated by an earlier run in %s", kept, total, out,
                         extra=safe_output.RESUMED)  # fmt: skip
                safe_output.keep_work(out)
        for task in tasks:
            for enc in encs:
                slots: list[dict | None] = []
                todo = []
                for probe_name, probe in zip(probe_names, probe_objs, strict=True):
                    for fold in folds[task.name]:
                        key = fold_key(task, enc, probe_name, fold)
                        mapped = fold.variant in MAPPED_VARIANTS
                        row = reusable(task, enc, probe_name, fold)
                        slots.append(row)
                        if row is None:
                            todo.append((len(slots) - 1, key, probe_name, probe, fold, mapped))
                        elif bar is not None:
                            bar.update(1)
                groups.append((task, enc, slots))
                if not todo:
                    continue
                # an encoder may embed each fold its own way (retrieval without the held-out continent)
                fold_encs = [enc.for_fold(job[4]) if hasattr(enc, "for_fold") else enc for job in todo]
                unique = {id(e): e for e in fold_encs}
                embedded = {i: embeddings.embed(e, task.points, use_cache=config.use_cache)
                            for i, e in unique.items()}  # fmt: skip
                for fold_enc, (slot, key, probe_name, probe, fold, mapped) in zip(fold_encs, todo, strict=True):
                    features = embedded[id(fold_enc)]
                    job = (len(groups) - 1, slot, key, probe_name, fold, mapped, features)
                    if pool is None:
                        record(*job, _timed_fold(task, features, fold, probe))
                    else:
                        futures[_submit(pool, _timed_fold, task, features, fold, probe)] = job
        if futures:
            from concurrent.futures import as_completed

            for future in as_completed(futures):
                record(*futures[future], future.result())
        # (the precision and weights of this run's encoder: a reused row of an older satclip has none)
        rows = [{**row, "precision": enc.precision, "model_sha256": enc.model_sha256}
                for _, enc, slots in groups for row in slots]  # fmt: skip
    except BaseException:
        if pool is not None:
            _kill_workers(pool)
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if sink:
            sink.close()
        if bar is not None:
            bar.close()
        torch.set_num_threads(previous_threads)
    return rows, tasks


def _prediction_path(out: Path, task: str, encoder: str, probe: str, fold: str, key: str) -> Path:
    """Where the test predictions of one result row (its ``key``: task data, encoder, protocol, probe, fold)
    are kept: an earlier run into the same folder (other points, protocol or folds) never mixes in."""
    parts = "__".join(file_part(name) for name in (task, encoder, probe, fold))
    return out / PREDICTIONS_DIR / f"{parts}__{key[:16]}.npz"


def _save_predictions(out: Path, task: Task, encoder: str, probe: str, fold: protocols.Fold, pred, key: str) -> None:
    """One fold's ``.npz`` (read with ``allow_pickle=False``): ``points`` ``(n, 2)`` (lon, lat) degrees of its test
    points, ``y_true`` and ``y_pred`` ``(n,)`` (regression: the target in its unit; classification: int64 indices
    into ``classes``), ``fold`` its name and, for a classification, ``classes`` ``(K,)`` the class labels as text
    (the codes named no class: 'mid', 'north' and 'south' were 0, 1 and 2 in no file)."""
    arrays = {"points": task.points[fold.test], "y_true": task.targets[fold.test], "y_pred": pred,
              "fold": np.array(fold.name)}  # fmt: skip
    if task.classes is not None:
        arrays["classes"] = np.asarray(task.classes).astype(str)  # (text, never objects: no pickle to read them)
    save_npz(_prediction_path(out, task.name, encoder, probe, fold.name, key), arrays)


def prediction_file(out: Path, row: dict) -> str:
    """The saved test predictions of result ``row`` as a path relative to ``out`` (``predictions/….npz``), or ""
    where none is there (a variant not mapped, or an evaluation without an output folder): results.csv names it,
    since ``predictions/`` also keeps earlier runs' files, told apart by a digest of their settings."""
    path = _prediction_path(out, row["task"], row["encoder"], row["probe"], row["fold"], row["key"])
    return path.relative_to(out).as_posix() if path.is_file() else ""


def load_predictions(out: Path, rows: Sequence[dict]) -> dict[str, np.ndarray] | None:
    """The saved test predictions of result ``rows`` (one task, encoder and probe; rows as :func:`evaluate`
    returns them, with their ``key``), concatenated in the rows' order (``points``, ``y_true``, ``y_pred``;
    ``folds`` lists the fold names), or None if none was saved (see :data:`MAPPED_VARIANTS`). Pass the rows
    of one seed: each seed's folds test the same points again."""
    paths = [_prediction_path(out, r["task"], r["encoder"], r["probe"], r["fold"], r["key"]) for r in rows]
    parts = [load_npz(path) for path in paths if path.is_file()]
    if not parts:
        return None
    merged = {k: np.concatenate([p[k] for p in parts]) for k in ("points", "y_true", "y_pred")}
    merged["folds"] = np.array([str(p["fold"]) for p in parts])
    return merged
