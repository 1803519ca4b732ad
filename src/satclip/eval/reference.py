"""The reference benchmark behind docs/results.md, and the paper's air-temperature protocol.

:func:`run_reference` evaluates the baseline encoders (plus any models given) on all seven tasks under
``random`` and ``holdout-continent`` with the MLP probe and writes one combined ``results.md``. Its sizes
are chosen so that the six baselines finish in under 30 minutes on a 2-core CPU (see docs/data.md for
measured timings): 5,000 points per sampled task, 5 random seeds, 1 hold-out seed (6 continents × 2
variants; ``country`` is not held out, as no country spans two continents).

:func:`run_paper` runs ``air-temperature`` under the ``paper`` protocol (the notebook's probe and split)
and puts the result next to the published figure.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from .. import safe_output
from .api import run_evaluation
from .report import relink
from .runner import NOT_HELD_OUT, EvalConfig
from .tasks import TaskOptions, names

log = logging.getLogger(__name__)

REFERENCE_ENCODERS = ("direct", "wrap", "cartesian3d", "sh-l10", "untrained-satclip", "geoclip")
REFERENCE_POINTS = 5_000
REFERENCE_SEEDS = (0, 1, 2, 3, 4)
REFERENCE_HOLDOUT_SEEDS = (0,)


def reference_configs(
    extra_encoders: Sequence[str] = (), *, data: Path | None = None, n_points: int = REFERENCE_POINTS,
    seeds: Sequence[int] = REFERENCE_SEEDS, holdout_seeds: Sequence[int] = REFERENCE_HOLDOUT_SEEDS,
    probes: Sequence[str] = ("mlp",), tasks: Sequence[str] | None = None, threads: int | None = 1,
    workers: int = 2, allow_download: bool = True, use_cache: bool = True, trust_checkpoint: bool = False,
) -> dict[str, EvalConfig]:  # fmt: skip
    """The ``random`` and ``holdout-continent`` configurations of the reference benchmark."""
    encoders = tuple(REFERENCE_ENCODERS) + tuple(e for e in extra_encoders if e not in REFERENCE_ENCODERS)
    options = TaskOptions(n_points=n_points, data=data, allow_download=allow_download, use_cache=use_cache)
    base = EvalConfig(
        encoders=encoders, tasks=tuple(tasks or names()), probes=tuple(probes), seeds=tuple(seeds),
        task_options=options, threads=threads, workers=workers, use_cache=use_cache,
        trust_checkpoint=trust_checkpoint,
    )  # fmt: skip
    holdout_tasks = tuple(t for t in base.tasks if t not in NOT_HELD_OUT)
    return {
        "random": replace(base, protocol="random"),
        "holdout-continent": replace(
            base, protocol="holdout-continent", seeds=tuple(holdout_seeds), tasks=holdout_tasks
        ),
    }


def _demote(markdown: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _environment(config: EvalConfig) -> str:
    return (f"torch {torch.__version__}, {config.workers} worker process(es) × {config.threads or 'default'} "
            f"thread(s), {os.cpu_count()} CPU(s), Python {platform.python_version()}")  # fmt: skip


def run_reference(
    out_dir: str | Path, extra_encoders: Sequence[str] = (), *, progress: Callable[[int], object] | None = None,
    command: str | None = None, figures: bool = True, **options,
) -> Path:  # fmt: skip
    """Run both protocols into ``out_dir/<protocol>/`` and write ``out_dir/results.md`` (returned). ``out_dir``
    must be new, empty or an earlier reference run's (a directory of the user's was written into, its
    results.md replaced)."""
    out = Path(out_dir)
    parts, timings = [], []
    configs = reference_configs(extra_encoders, **options)
    if _earlier_reference_run(out, configs):  # (of a satclip that did not mark it)
        safe_output.mark_owned(out, kind=REFERENCE_KIND)
    safe_output.check_owned_dir(out, kind=REFERENCE_KIND)
    safe_output.make_owned_dir(out, kind=REFERENCE_KIND)
    for protocol, config in configs.items():
        start = time.perf_counter()
        run_evaluation(config, out / protocol, progress=progress, figures=figures)
        timings.append(f"{protocol}: {time.perf_counter() - start:.0f} s")
        parts.append(relink(_demote((out / protocol / "results.md").read_text(encoding="utf-8")), f"{protocol}/"))
    header = [
        "# Downstream evaluation", "",
        "Frozen location embeddings, probed on seven global tasks (see docs/data.md for data and licences).",
        f"Wall time of this run: {', '.join(timings)} ({_environment(configs['random'])}).",
    ]  # fmt: skip
    if command:
        header.append(f"Command: `{command}`")
    path = out / "results.md"
    safe_output.write_bytes(path, ("\n".join(header) + "\n\n" + "\n\n".join(parts)).encode())
    return path


def paper_config(
    encoders: Sequence[str] = REFERENCE_ENCODERS, *, data: Path | None = None, seeds: Sequence[int] = REFERENCE_SEEDS,
    epochs: int | None = None, threads: int | None = 1, workers: int = 1, allow_download: bool = True,
    use_cache: bool = True, trust_checkpoint: bool = False,
) -> EvalConfig:  # fmt: skip
    """``air-temperature`` under the ``paper`` protocol (notebook probe, 50/50 split, target / max)."""
    return EvalConfig(
        encoders=tuple(encoders), tasks=("air-temperature",), protocol="paper", seeds=tuple(seeds),
        task_options=TaskOptions(data=data, allow_download=allow_download, use_cache=use_cache), threads=threads,
        workers=workers, probe_options={"paper-mlp": {"epochs": epochs}} if epochs else {}, use_cache=use_cache,
        trust_checkpoint=trust_checkpoint,
    )  # fmt: skip


#: the kind of directory a reference run writes (its protocols' evaluations and results.md)
REFERENCE_KIND = "reference-evaluation"


def _earlier_reference_run(out: Path, configs: dict) -> bool:
    """Whether ``out`` is an unmarked directory holding only what a reference run writes: the evaluation
    directories of its protocols (satclip's, marked) and results.md."""
    if not out.is_dir() or out.is_symlink() or safe_output.is_owned(out):
        return False
    entries = [entry for entry in out.iterdir() if not entry.name.startswith(".")]
    protocols = [entry for entry in entries if entry.name in configs]
    return bool(protocols) and all(safe_output.owned_kind(entry) == "evaluation" for entry in protocols) and all(
        entry.name in configs or entry.name == "results.md" for entry in entries
    )  # fmt: skip


def run_paper(
    out_dir: str | Path, encoders: Sequence[str] = REFERENCE_ENCODERS, *, figures: bool = True,
    command: str | None = None, **options,
) -> Path:  # fmt: skip
    """Run :func:`paper_config` into ``out_dir``; returns its ``results.md`` (with the paper's figure and, where
    given, the ``command`` that ran it)."""
    run_evaluation(paper_config(encoders, **options), out_dir, figures=figures, command=command)
    return Path(out_dir) / "results.md"
