"""``satclip evaluate``: probe frozen location embeddings on downstream tasks and write reports.

    satclip evaluate --encoders wrap,sh-l10,geoclip --tasks all --protocol random --seeds 5 --out eval \\
        --data stationDataAll.csv
    satclip evaluate --encoders my-model/ --task-file points.csv --target-col yield --out eval
    satclip evaluate --preset reference --data stationDataAll.csv --out results   # six baselines (docs/data.md)
    satclip evaluate --preset paper --data stationDataAll.csv --out paper          # the notebook's protocol
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import shlex
import shutil
import sys

from ..errors import BadInputError
from . import precision_option
from .args import (
    add_trust_option,
    comma_items,
    existing_file,
    integer,
    non_negative_int,
    positive_float,
    positive_int,
    record_given,
    user_path,
    worker_count,
    worker_count_or_zero,
)

log = logging.getLogger(__name__)

#: the most seeds one evaluation runs: each seed fits every task × encoder × probe once more (the reports'
#: tables use 5); a count typed wrong (10**21) was built into a tuple of that length, or a traceback
MAX_SEEDS = 1000
#: the largest seed: numpy's and scikit-learn's seeds are 32-bit (10**20 ended in "Overflow when unpacking long long")
MAX_SEED = 2**32 - 1


def _point_seed(text: str) -> int:
    """``--point-seed``: 0 to :data:`MAX_SEED` (-1 was refused by numpy as "expected non-negative integer")."""
    seed = non_negative_int(text)
    if seed > MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text} is too large: seeds are 0 to {MAX_SEED} (2**32 - 1, numpy's limit)")
    return seed


def _seeds(text: str) -> tuple[int, ...]:
    usage = f"--seeds takes a count (5) or a list of different seeds >= 0 (0,3,7), got {text!r}"
    try:
        if "," in text:
            seeds = tuple(int(s) for s in comma_items(text))
            if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
                raise ValueError
        else:
            n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(usage) from None
    if "," in text:
        if len(seeds) > MAX_SEEDS:
            raise argparse.ArgumentTypeError(f"lists {len(seeds)} seeds; one evaluation runs at most {MAX_SEEDS}")
        if max(seeds) > MAX_SEED:
            raise argparse.ArgumentTypeError(
                f"seed {max(seeds)} is too large: seeds are 0 to {MAX_SEED} (2**32 - 1, numpy's limit)"
            )
        return seeds
    if n < 1:
        alone = f" (seed {n} alone: --seeds {n},)" if n == 0 else " (seeds are 0 or more)"  # (-1, was refused too)
        raise argparse.ArgumentTypeError(f"--seeds count must be >= 1, got {n}{alone}")
    if n > MAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"count {n} is more than {MAX_SEEDS}, the most one evaluation runs (each seed fits every task, encoder "
            "and probe once more)"
        )
    return tuple(range(n))


def _probes(text: str) -> str:
    """A comma-separated list naming at least one probe (the names are checked with the configuration)."""
    if not comma_items(text):
        raise argparse.ArgumentTypeError(f"names no probe, got {text!r}: give mlp, linear or both (mlp,linear)")
    return text


def _tasks(text: str) -> str:
    """A comma-separated list of task names, or 'all' (the names are checked with the configuration)."""
    comma_items(text)
    return text


def _task_name(text: str) -> str:
    from ..eval.tasks.table import check_task_name

    try:
        return check_task_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _n_points(text: str) -> int:
    from ..eval.tasks.base import MAX_POINTS, MIN_POINTS

    value = integer(text)  # (0 was "a positive integer (1 or more)", where the least is MIN_POINTS)
    if value < MIN_POINTS:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_POINTS}, got {text}: a task needs training, validation and test points (the "
            f"random protocol splits {MIN_POINTS} points 6/2/2)"
        )
    if value > MAX_POINTS:  # (a typo grew memory until the machine ran out)
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_POINTS:,}, got {text}: the sampled tasks draw their points in memory, and a probe "
            "on millions of points takes hours per fold on a CPU"
        )
    return value


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="probe location embeddings on downstream tasks (results.csv, results.md, figures)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--encoders", default=None,
                        help="comma-separated encoder specs: raw encodings (direct, wrap, cartesian3d, sh-l10, "
                             "sh-l40, theory, grid, spherec, …, NAME(key=value); the multi-scale ones theory, grid, "
                             "spherec, spherecplus, spherem, spheremplus at SatCLIP's released scales min_radius=1, "
                             "max_radius=360 (degrees), frequency_num=16 unless the spec sets them), "
                             "untrained-satclip, geoclip, "
                             "or anything satclip.load takes (model dir, .ckpt, model name); MODEL+range or "
                             "MODEL+range+(beta=…): MODEL retrieval-augmented (docs/retrieval.md); a file or "
                             "directory that exists is one spec as it stands, commas and parentheses in its "
                             "name included (the longest such piece of the list)")  # fmt: skip
    parser.add_argument(
        "--tasks", type=_tasks, default=None,
        help="comma-separated task names or 'all' (default: all, or none with --task-file)",
    )  # fmt: skip
    parser.add_argument(
        "--protocol", default="random", help="random | holdout-continent | spatial-block | paper (default random)"
    )
    parser.add_argument("--probes", type=_probes, default="mlp",
                        help="comma-separated: mlp, linear, paper-mlp (the air-temperature notebook's MLP, "
                             "regression only) (default mlp; --protocol paper fits its own)")  # fmt: skip
    parser.add_argument("--seeds", type=_seeds, default=(0, 1, 2, 3, 4),
                        help="a count N: seeds 0..N-1 (default 5), or a list of seeds: 0,3,7; one given seed "
                             "takes a comma: 3, (3 alone is a count)")  # fmt: skip
    parser.add_argument("--out", type=user_path, required=True, help="output folder (re-running resumes)")
    parser.add_argument("--data", type=existing_file, default=None, help="air-temperature: local stationDataAll.csv")
    parser.add_argument("--offline", action="store_true",
                        help="never download: neither task data (air-temperature) nor models (released checkpoints "
                             "are read from the hub cache)")  # fmt: skip
    tf = parser.add_argument_group("user task from a table")
    tf.add_argument("--task-file", type=existing_file, default=None,
                    help="CSV (values separated by ',', ';', tab or '|'; decimal points) or Parquet with lon, lat "
                         "and a target; or GeoParquet, GeoJSON or GeoPackage whose point geometries are the points "
                         "(reprojected to EPSG:4326, as embed reads them)")  # fmt: skip
    tf.add_argument("--centroids", action="store_true",
                    help="GeoParquet/GeoJSON/GeoPackage: take the centroids of non-point geometries as the points")
    tf.add_argument("--layer", metavar="NAME", default=None,
                    help="GeoPackage: the layer of the points (needed where it has several)")
    tf.add_argument("--target-col", default=None, help="target column (default: the only other column)")
    tf.add_argument("--lon-col", default=None, help="longitude column (default: lon/longitude/lng)")
    tf.add_argument("--lat-col", default=None, help="latitude column (default: lat/latitude)")
    tf.add_argument("--task-kind", choices=("regression", "classification"), default=None,
                    help="default: numeric target → regression, else classification")  # fmt: skip
    tf.add_argument("--task-name", type=_task_name, default=None,
                    help="name in reports: one line without '/' or '\\' (default: the file's stem)")  # fmt: skip
    size = parser.add_argument_group("sizes and probe settings")
    size.add_argument("--n-points", type=_n_points, default=10_000, help="points per task (at least 10; default 10000)")
    size.add_argument("--point-seed", type=_point_seed, default=None,
                      help="seed of the task point sample (0 or more; a table of no more rows than --n-points is "
                           "used whole)")  # fmt: skip
    size.add_argument("--min-class-points", type=positive_int, default=20, help="drop rarer classes (default 20)")
    size.add_argument("--max-epochs", type=positive_int, default=None, help="MLP probe epoch cap (paper-mlp: epochs)")
    size.add_argument("--block-deg", type=positive_float, default=10.0, help="spatial-block: block size in degrees")
    size.add_argument("--folds", type=positive_int, default=5, help="spatial-block: number of folds")
    size.add_argument("--threads", type=worker_count_or_zero, default=1,
                      help="torch threads per fitting process (default 1; 0: torch's default)")  # fmt: skip
    size.add_argument("--workers", type=worker_count, default=None,
                      help="processes fitting folds in parallel (default 1; presets 2: right for an "
                           "idle 2-core machine)")  # fmt: skip
    parser.add_argument("--preset", choices=("reference", "paper"), default=None,
                        help="reference: the six baseline encoders (--encoders adds models) on all tasks, "
                             "5,000 points per task, MLP probe, random (5 seeds) and holdout-continent "
                             "(docs/data.md; docs/results.md's tables come from the commands shown there); "
                             "paper: air-temperature under the notebook's protocol")  # fmt: skip
    add_trust_option(parser, " from the .ckpt files of --encoders (only for files you trust)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the eval cache")
    parser.add_argument(
        "--no-figures", action="store_true", help="draw no PNG figures (those an earlier run drew into OUT are removed)"
    )
    parser.add_argument(
        "--precision", type=precision_option.canonical, choices=precision_option.PRECISIONS,
        help="precision of the models satclip.load builds (a spec's own precision=... wins): float32 | bf16 | "
             "float64 | auto (default: $SATCLIP_PRECISION, else float32, so that scores are the same on every machine "
             "and run; auto = bf16 where a one-time timing calibration finds it faster). results.md and results.csv "
             "name the precision each encoder ran in",
    )  # fmt: skip
    # what a preset fixes itself: given with --preset, these are refused rather than ignored
    fixed = {"reference": ("tasks", "protocol", "probes", "seeds", "task_file", "target_col", "lon_col", "lat_col",
                           "task_kind", "task_name", "centroids", "layer", "n_points", "point_seed", "min_class_points",
                           "max_epochs", "block_deg", "folds"),
             "paper": ("tasks", "protocol", "probes", "task_file", "target_col", "lon_col", "lat_col", "task_kind",
                       "task_name", "centroids", "layer", "n_points", "point_seed", "min_class_points", "block_deg",
                       "folds")}  # fmt: skip
    flags = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
    preset_fixed = {preset: {dest: flags[dest] for dest in dests} for preset, dests in fixed.items()}
    # options of some protocols only: given with another, they are refused rather than ignored
    protocol_only = {dest: (flags[dest], protocols) for dest, protocols in PROTOCOL_ONLY.items()}
    record_given(parser, {dest for dests in fixed.values() for dest in dests} | set(PROTOCOL_ONLY))
    parser.set_defaults(func=run, preset_fixed=preset_fixed, protocol_only=protocol_only)


#: option → the protocols it applies to (paper fits its own probe; blocks and folds are spatial-block's)
PROTOCOL_ONLY = {
    "probes": ("random", "holdout-continent", "spatial-block"),
    "block_deg": ("spatial-block",),
    "folds": ("spatial-block",),
}


def _check_protocol_options(args: argparse.Namespace) -> None:
    """Refuse options given that the chosen ``--protocol`` does not use (they were silently ignored)."""
    given = [flag for dest, (flag, protocols) in args.protocol_only.items()
             if dest in args.given and args.protocol not in protocols]  # fmt: skip
    if given:
        used = {flag: protocols for flag, protocols in args.protocol_only.values() if flag in given}
        where = "; ".join(f"{flag} applies to {', '.join(protocols)}" for flag, protocols in used.items())
        raise BadInputError(
            f"--protocol {args.protocol} does not use {', '.join(given)} ({where}); drop them, or choose that protocol"
        )


#: the options that describe a --task-file table, and their destinations
TASK_FILE_OPTIONS = {"--target-col": "target_col", "--lon-col": "lon_col", "--lat-col": "lat_col",
                     "--task-kind": "task_kind", "--task-name": "task_name", "--centroids": "centroids",
                     "--layer": "layer"}  # fmt: skip


def _check_preset(args: argparse.Namespace) -> None:
    """Refuse the options a ``--preset`` fixes itself (they were silently ignored)."""
    given = [flag for dest, flag in args.preset_fixed[args.preset].items() if dest in args.given]
    if given:
        raise BadInputError(
            f"--preset {args.preset} runs a fixed configuration: {', '.join(given)} do(es) not apply to it; drop "
            "them, or run without --preset"
        )


def _progress():
    from ..terminal import ProgressLines, progress_bar, redraws

    if redraws(sys.stderr) and importlib.util.find_spec("tqdm") is not None:  # (tqdm: an extra's)
        return lambda total: progress_bar(total=total, unit="fit", disable=False)
    # into a log, a TERM=dumb terminal or without tqdm too (runs of hours), as lines: a bar wrote its redraws there
    return lambda total: ProgressLines(total, "fit")


def _config(args: argparse.Namespace):
    from ..eval import EvalConfig, TaskFile, TaskOptions
    from ..eval.encoders import split_specs
    from ..eval.probes import PROBES
    from ..eval.tasks import names

    specs = split_specs(args.encoders or "")
    if not specs:  # (" , " was refused in the Python API's words: "EvalConfig: encoders is empty")
        blank = f": {args.encoders!r} names none" if args.encoders else ""
        raise BadInputError(f"--encoders is required (e.g. --encoders wrap,sh-l10,geoclip){blank}")
    if args.tasks is None:
        tasks = () if args.task_file else tuple(names())
    elif args.tasks.strip() == "all":
        tasks = tuple(names())
    else:
        tasks = tuple(comma_items(args.tasks))
    if args.data is not None and "air-temperature" not in tasks:  # (it was never read, without a word)
        raise BadInputError(f"--data {args.data} is the air-temperature task's stations table, and the tasks "
                            f"({', '.join(tasks) or 'the --task-file alone'}) do not include air-temperature: add it "
                            "to --tasks, or drop --data")  # fmt: skip
    options = TaskOptions(
        n_points=args.n_points, min_class_points=args.min_class_points, data=args.data,
        allow_download=not args.offline, use_cache=not args.no_cache,
        **({"seed": args.point_seed} if args.point_seed is not None else {}),
    )  # fmt: skip
    task_file = None
    if args.task_file:
        task_file = TaskFile(args.task_file, args.target_col, args.lon_col, args.lat_col, args.task_kind,
                             args.task_name, args.centroids, args.layer)  # fmt: skip
    protocol_options = {"block_deg": args.block_deg, "k": args.folds} if args.protocol == "spatial-block" else {}
    probe_options = {}
    probes = comma_items(args.probes)
    for name in probes:  # (an unknown name was blamed on --max-epochs: "--probes ridge has no mlp")
        PROBES.get(name)
    if args.max_epochs and args.protocol != "paper" and "mlp" not in probes:  # (it was ignored without a word)
        raise BadInputError(f"--max-epochs sets the MLP probe's epochs, and --probes {args.probes} has no mlp: drop "
                            "it, or add mlp to --probes")  # fmt: skip
    if args.max_epochs:
        probe_options = {"mlp": {"max_epochs": args.max_epochs}, "paper-mlp": {"epochs": args.max_epochs}}
    return EvalConfig(
        encoders=tuple(specs), tasks=tasks, protocol=args.protocol,
        probes=tuple(probes), seeds=tuple(args.seeds),
        task_options=options, task_file=task_file, protocol_options=protocol_options,
        probe_options=probe_options, threads=args.threads or None, workers=args.workers or 1,
        use_cache=not args.no_cache, trust_checkpoint=args.trust_checkpoint,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ..machine import environment_variable
    from ..models.precision import default_as

    # --offline downloads no model either, not the task data alone: a released model is read from the hub cache,
    # or its error says what to fetch (here and in worker processes, as the precision)
    offline = environment_variable("HF_HUB_OFFLINE", "1") if args.offline else contextlib.nullcontext()
    with default_as(args.precision), offline:
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..eval import run_evaluation
    from ..eval.protocols import PROTOCOLS

    if args.protocol not in PROTOCOLS:
        from ..registry import did_you_mean

        hint = did_you_mean(args.protocol, PROTOCOLS.names())
        known = ", ".join(PROTOCOLS.names())
        raise BadInputError(f"unknown --protocol {args.protocol!r}; {hint + ' ' if hint else ''}known: {known}")
    if not args.task_file:  # (they were ignored: the evaluation ran on the named tasks alone)
        given = [flag for flag, dest in TASK_FILE_OPTIONS.items() if dest in args.given]
        if given:
            raise BadInputError(f"{', '.join(given)} describe(s) a --task-file table, and none is given: add "
                                "--task-file TABLE, or drop them")  # fmt: skip
    if args.preset:
        _check_preset(args)
    else:
        _check_protocol_options(args)
    command = "satclip " + shlex.join(args.argv)
    common = {"data": args.data, "threads": args.threads, "workers": args.workers or 2,
              "allow_download": not args.offline, "use_cache": not args.no_cache, "figures": not args.no_figures,
              "trust_checkpoint": args.trust_checkpoint}
    if args.preset == "reference":
        from ..eval.encoders import split_specs
        from ..eval.reference import run_reference

        path = run_reference(args.out, split_specs(args.encoders or ""), progress=_progress(), command=command,
                             **common)  # fmt: skip
        print(f"wrote {path}")
        return 0
    if args.preset == "paper":
        from ..eval.encoders import split_specs
        from ..eval.reference import REFERENCE_ENCODERS, run_paper

        encoders = split_specs(args.encoders or "") or REFERENCE_ENCODERS  # (" , ": none given, as "")
        path = run_paper(args.out, encoders, seeds=args.seeds, epochs=args.max_epochs, command=command, **common)
        print(f"wrote {path} and {path.with_name('results.csv')}")  # (as an evaluation without a preset says)
        return 0
    outputs = run_evaluation(_config(args), args.out, figures=not args.no_figures, progress=_progress(),
                             command=command)  # fmt: skip
    count = len(outputs.rows)
    if count:  # (the headline numbers: results.md holds every probe, metric and note)
        from ..eval.report import terminal_tables

        print(terminal_tables(outputs.rows, width=shutil.get_terminal_size((100, 24)).columns))
    print(f"{count} result{'s' * (count != 1)}; wrote {outputs.files['md']} and {outputs.files['csv']}")
    _note_precision_unused(args.precision, outputs.rows)
    _note_point_seed_unused(args, outputs.tasks)
    return 0


def _note_point_seed_unused(args: argparse.Namespace, tasks) -> None:
    """Warn when ``--point-seed`` drew the points of none of the tasks (tables of no more rows than --n-points are
    used whole): it was ignored without a word, while results.md claimed it. Known once the tasks are read, as
    :func:`_note_precision_unused`'s precisions; results.md's Settings line says so too."""
    if args.point_seed is not None and tasks and not any(task.sampled for task in tasks):
        one = len(tasks) == 1
        log.warning("--point-seed %d drew the points of no task: %s ha%s no more rows than --n-points (%d) and %s used "
                    "whole, so the seed changes nothing; drop --point-seed", args.point_seed,
                    ", ".join(t.name for t in tasks), "s" if one else "ve", args.n_points, "is" if one else "are")


def _note_precision_unused(precision: str | None, rows: list[dict]) -> None:
    """Warn when ``--precision`` set the precision of no encoder evaluated (it sets satclip models'; raw encodings
    and GeoCLIP compute in their own), which was said only by results.md's Settings line."""
    ran = {row["encoder"]: row.get("precision") for row in rows}
    if precision is None or not ran or any(p == precision or precision == "auto" and p in ("bf16", "float32")
                                           for p in ran.values()):  # fmt: skip
        return
    shown = ", ".join(f"{encoder} ({p})" for encoder, p in ran.items())
    log.warning("--precision %s set the precision of none of the encoders: it applies to satclip models, and these "
                "ran in their own: %s", precision, shown)
