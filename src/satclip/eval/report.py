"""Reports of an evaluation: ``results.csv``, ``timings.csv`` and ``results.md``.

``results.md`` reads on its own: a paragraph generated from the numbers (who is best where, where results
tie, what that means), mean ± std tables in which **bold** marks only a best ahead of every other encoder by
more than their difference varies over the folds (:func:`rank`; *italic*: tied for best), a chance row (a probe
that ignores location), the class-filtering rule and count per task, short encoder names with the full specs in a
legend, and every figure linked with a caption.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import safe_output
from .cache import file_part
from .encoders import existing_path
from .metrics import PRIMARY
from .runner import COLUMNS, EARLIER_RESULTS, FEW_TEST_POINTS, ROWS_FILE, EvalConfig, prediction_file
from .tasks import Task

log = logging.getLogger(__name__)

#: what "±" means, per protocol: the sample std (n − 1, :func:`summarise`), which was not said
SPREAD = {
    "random": "sample std (n − 1) over seeds (one random split each)",
    "holdout-continent": "sample std (n − 1) over held-out continents × seeds",
    "spatial-block": "sample std (n − 1) over block folds × seeds",
    "paper": "sample std (n − 1) over seeds (one 50/50 split each)",
}
#: what "±" means under a protocol :data:`SPREAD` does not name
SPREAD_OTHER = "sample std (n − 1) over folds"
METRIC_TITLES = {
    "mse": "MSE (standardised target) ↓", "r2": "R² ↑", "accuracy": "accuracy ↑", "macro_f1": "macro-F1 ↑",
    "mse_max_scaled": "MSE (target / max, the notebook's scale) ↓",
}  # fmt: skip
HIGHER_IS_BETTER = {"mse": False, "r2": True, "accuracy": True, "macro_f1": True, "mse_max_scaled": False}

#: published numbers the paper protocol is shown next to (see docs: PEERS.md of the project research)
PAPER_REFERENCE = (
    "SatCLIP paper, Table 2 (as quoted by a third party): ViT16-L40 air temperature MSE 0.25 ± 0.02.",
    "Original notebook B01 (ViT16-L10, one unseeded 50/50 split, target / max): test MSE 0.00628 — compare "
    "with the `MSE (target / max)` column.",
)
PAPER_DIFFERENCES = (
    "Split: the notebook's single unseeded 50/50 split → here one seeded 50/50 split per seed, {spread}.",
    "Probe: the notebook's MLP as written (64 hidden units, its two hidden blocks share one Linear, "
    "full-batch Adam lr 1e-3, {epochs} epochs, no validation, no early stopping, raw embeddings).",
    "Target: divided by its maximum, as in the notebook; the `MSE` column re-expresses the same predictions "
    "on the standardised target (÷ training std), the scale of the other tables.",
    "Data: {data}; continents from Natural Earth.",
)
#: what the paper's published figure is, beside it (with the air-temperature task only)
PAPER_TABLE = (
    "The paper's table comes from its own experiment scripts (hyper-parameter search, its splits); its exact scale "
    "and split are not published with the notebook, so the 0.25 is context, not a like-for-like target."
)


def _is_stations(task: Task) -> bool:
    """Whether ``task`` is the built-in air-temperature task (the notebook's stations), not a table so named."""
    from .tasks.air_temperature import SOURCE

    return task.name == "air-temperature" and task.source == SOURCE


def _paper_data(tasks: Sequence[Task]) -> str:
    """What the paper protocol ran on: all of the notebook's stations, a sample of them (``--n-points``), or
    another table."""
    from .tasks.air_temperature import N_STATIONS

    parts = []
    for task in tasks:
        if not _is_stations(task):
            parts.append(f"`{task.name}`, {len(task):,} points ({task.source}), not the notebook's stations")
        elif len(task) >= N_STATIONS:
            parts.append(f"the same {N_STATIONS:,} stations (Hooker et al. 2018)")
        else:
            parts.append(f"{len(task):,} of the notebook's {N_STATIONS:,} stations (Hooker et al. 2018), sampled "
                         "(--n-points)")  # fmt: skip
    return "; ".join(parts)


def write_csv(rows: Sequence[dict], path: Path, columns: Sequence[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt_csv(row.get(k)) for k in columns})
    safe_output.write_bytes(path, buffer.getvalue().encode())


def _fmt_csv(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else value


def summarise(rows: Sequence[dict]) -> dict[tuple, dict[str, tuple[float, float, int]]]:
    """(probe, variant, task, encoder) → metric → (mean, std, n) over folds."""
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        key = (row["probe"], row.get("variant", ""), row["task"], row["encoder"])
        for metric in HIGHER_IS_BETTER:
            value = row.get(metric)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                groups[key][metric].append(float(value))
    out = {}
    for key, by_metric in groups.items():
        out[key] = {
            m: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"), len(v))
            for m, v in by_metric.items()
        }
    return out


def fold_scores(rows: Sequence[dict]) -> dict[tuple, dict[str, dict[str, float]]]:
    """(probe, variant, task, encoder) → metric → fold → score: the scores :func:`summarise` averages, by the fold
    (results.csv's ``fold``: seed and split) that :func:`rank` pairs encoders on."""
    out: dict[tuple, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        key = (row["probe"], row.get("variant", ""), row["task"], row["encoder"])
        for metric in HIGHER_IS_BETTER:
            value = row.get(metric)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                out[key][metric][row.get("fold")] = float(value)
    return out


#: a best is clear of another when its mean difference from it over the folds both scored exceeds this many sample
#: stds of that difference (paired: every encoder meets the same splits, and how hard a split is moves all of them);
#: where their folds differ, when the means differ by more than this many × the sum of their stds (1: the mean ± std
#: ranges do not overlap)
TIE_STDS = 1.0


def display_names(encoders: Sequence[str]) -> dict[str, str]:
    """Short names for tables and figures: a spec's name without its parameters (``theory(min_radius=1,…)``
    → ``theory``), a path's last part (``runs/x/model`` → ``model``); names that would collide get
    ``#2``, ``#3`` … in order, except a spec that is the name itself (``theory`` beside ``theory(…)``), which
    keeps it. :func:`legend` lists the full specs."""
    short = {}
    for spec in encoders:
        name = spec
        match = re.fullmatch(r"\s*([^()]+?)\s*\((.*)\)\s*", spec)
        if match and not existing_path(spec):  # (a model directory "m10 (1)" is a path, not parameters)
            name = match[1]
        elif "/" in spec or os.sep in spec:
            name = Path(spec.rstrip("/" + os.sep)).name or spec
        short[spec] = name
    seen: dict[str, int] = defaultdict(int)
    for spec, name in short.items():
        if name in encoders:  # the bare name is itself one of the specs: that one keeps it
            seen[name] = max(seen[name], 1)
        if spec == name:
            continue
        seen[name] += 1
        if seen[name] > 1:
            short[spec] = f"{name}#{seen[name]}"
    return short


def _text(value) -> str:
    """A name as the text of a markdown table cell: a ``|`` in it would end the cell."""
    return str(value).replace("|", "\\|")


def legend(names: dict[str, str], specs: dict[str, str] | None = None) -> str:
    """A markdown table of the encoders: short name, full spec where it differs, and what each is (a reader met
    `direct` or `sh-l10` in the tables with no word on what they are). ``specs``: the spec of an encoder the
    results name otherwise (:class:`EvalConfig` ``names``), by that name."""
    from .encoders import about

    rows = []
    for name, short in names.items():
        spec = (specs or {}).get(name, name)
        rows.append(f"| `{_text(short)}` | {'' if short == spec else f'`{_text(spec)}`'} | {_text(about(spec))} |")
    return "\n".join(["| name | spec | what it is |", "|---|---|---|", *rows])


@dataclass(frozen=True)
class Ranking:
    """Who is best on one task and metric: ``best`` (None when nothing was measured), ``tied`` (the
    encoders tied with it, best first, empty when the best is clear) and ``verdict``: ``"clear"`` and ``"tie"``
    (:data:`TIE_STDS`),
    ``"level"`` (fewer than 2 folds, a score of test points: ``tied`` holds those within one test point of the best,
    empty when the best is ahead of every other by more), ``"no-spread"`` (fewer than 2 folds and no such unit, an
    MSE: not judged, ``tied`` empty, ``best`` the best mean only) or ``"alone"`` (one encoder)."""

    best: str | None
    tied: tuple[str, ...]
    verdict: str


def rank(stats: dict[str, tuple[float, float, int] | None], higher_is_better: bool,
         unit: float | None = None, folds: dict[str, dict[str, float] | None] | None = None) -> Ranking:  # fmt: skip
    """Rank encoders by mean: the best is clear of another when, over the folds both were scored on (``folds``:
    encoder → fold → score, :func:`fold_scores`), its mean difference from it exceeds ``TIE_STDS`` × the sample std
    of that difference: paired, as the encoders meet the same splits (the MLP's MSE of `sh-l10`, lowest on every
    seed, was "tied" with `wrap` by the unpaired ranges, split-to-split spread they share). Where the two were not
    scored on the same folds, it is clear when the means differ by more than ``TIE_STDS`` × (its std + the other's),
    i.e. their mean ± std ranges do not overlap. The others are tied. Without a std (one fold) the one rule of every
    report is ``unit``'s: scores within one test point (``unit``, an accuracy's 1 / n_test) of the best are level
    with it, and without a unit differences are not judged (``"no-spread"``: 0.028 against 0.029 named a best MSE
    the result line refused to judge)."""
    items = [(e, st) for e, st in stats.items() if st is not None and not math.isnan(st[0])]
    if not items:
        return Ranking(None, (), "alone")
    items.sort(key=lambda item: -item[1][0] if higher_is_better else item[1][0])
    best, (mean, std, n) = items[0]
    if len(items) == 1:
        return Ranking(best, (), "alone")
    if any(math.isnan(st[1]) for _, st in items):  # (one fold of all, by the unit; one of some: not judged, as
        if unit is None or not all(math.isnan(st[1]) for _, st in items):  # the rule of one fold is no rule of many)
            return Ranking(best, (), "no-spread")
        level = tuple(e for e, st in items[1:] if abs(mean - st[0]) <= unit)
        return Ranking(best, (best,) + level if level else (), "level")
    sign, ours = (1 if higher_is_better else -1), (folds or {}).get(best)

    def clear_of(other: str, stat: tuple[float, float, int]) -> bool:
        theirs = (folds or {}).get(other)
        if ours and theirs and ours.keys() == theirs.keys() and len(ours) == n == stat[2]:  # (the folds averaged)
            differences = [sign * (ours[fold] - theirs[fold]) for fold in ours]
            return float(np.mean(differences)) > TIE_STDS * float(np.std(differences, ddof=1))
        return abs(mean - stat[0]) > TIE_STDS * (std + stat[1])

    tied = tuple(e for e, st in items[1:] if not clear_of(e, st))
    return Ranking(best, (best,) + tied if tied else (), "tie" if tied else "clear")


def accuracy_units(rows: Sequence[dict]) -> dict[tuple[str, str, str], float]:
    """(probe, variant, task) → one test point of an accuracy there, 1 / the fewest test points of its folds (the
    unit within which :func:`rank` calls one-fold accuracies level), where the rows say ``n_test``."""
    tests: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for row in rows:
        if row.get("n_test"):
            tests[(row["probe"], row.get("variant", ""), row["task"])].append(int(row["n_test"]))
    return {key: 1 / min(counts) + 1e-9 for key, counts in tests.items()}


def _rank_task(summary, probe: str, variant: str, task: str, encoders: Sequence[str], metric: str,
               units: dict[tuple[str, str, str], float] | None, folds=None) -> Ranking:  # fmt: skip
    """:func:`rank` of ``encoders`` on ``task``'s ``metric``, an accuracy with its unit of :func:`accuracy_units`,
    paired by the scores of each fold of ``folds`` (:func:`fold_scores`) where given."""
    unit = (units or {}).get((probe, variant, task)) if metric == "accuracy" else None
    by_fold = {e: (folds or {}).get((probe, variant, task, e), {}).get(metric) for e in encoders}
    return rank({e: summary.get((probe, variant, task, e), {}).get(metric) for e in encoders},
                HIGHER_IS_BETTER[metric], unit, by_fold)  # fmt: skip


def _shown(value: float) -> str:
    """A mean or std as the tables show it."""
    return f"{value:.3f}"


def _cell(stat: tuple[float, float, int] | None, mark: str = "") -> str:
    if stat is None:
        return "–"
    mean, std, _ = stat
    text = _shown(mean) if math.isnan(std) else f"{_shown(mean)} ± {_shown(std)}"
    return {"bold": f"**{text}**", "tie": f"*{text}*"}.get(mark, text)


def metric_table(
    summary, probe: str, variant: str, tasks: Sequence[str], encoders: Sequence[str], metric_of,
    names: dict[str, str] | None = None, chance: dict[str, dict[str, float]] | None = None,
    units: dict[tuple[str, str, str], float] | None = None, folds=None,
) -> str:  # fmt: skip
    """A markdown table: rows = encoders (``names``: their display names), columns = tasks, the metric
    ``metric_of(task)``; a clear best bold, encoders tied (one fold: level) for best italic, as :func:`rank` judges
    with ``units`` (:func:`accuracy_units`) and ``folds`` (:func:`fold_scores`); a last row ``chance`` from
    ``chance[task][metric]`` when given."""
    names = names or {e: e for e in encoders}
    header = "| encoder | " + " | ".join(f"{_text(t)}<br>{METRIC_TITLES[metric_of(t)]}" for t in tasks) + " |"
    lines = [header, "|---" * (len(tasks) + 1) + "|"]
    marks: dict[tuple[str, str], str] = {}
    for t in tasks:
        ranking = _rank_task(summary, probe, variant, t, encoders, metric_of(t), units, folds)
        if ranking.verdict in ("clear", "level") and not ranking.tied:
            marks[(t, ranking.best)] = "bold"
        for e in ranking.tied:
            marks[(t, e)] = "tie"
    for e in encoders:
        cells = [_cell(summary.get((probe, variant, t, e), {}).get(metric_of(t)), marks.get((t, e), "")) for t in tasks]
        lines.append(f"| {_text(names.get(e, e))} | " + " | ".join(cells) + " |")
    if chance:
        values = [chance.get(t, {}).get(metric_of(t)) for t in tasks]
        lines.append("| *chance* | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


def _ordered(values) -> list:
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _join(items: Sequence[str], most: int | None = None) -> str:
    """``"a, b and c"``; with ``most``, the first ``most`` of more items and how many others (``"a, b and 3 more"``)."""
    items = list(items)
    if most is not None and len(items) > most + 1:
        items = [*items[:most], f"{len(items) - most} more"]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def reading(
    summary, probe: str, variant: str, tasks: Sequence[str], encoders: Sequence[str], metric_of,
    names: dict[str, str], chance: dict[str, dict[str, float]], units: dict[tuple[str, str, str], float] | None = None,
    classes: dict[str, int] | None = None, folds=None,
) -> str:  # fmt: skip
    """A paragraph saying, from the numbers, which encoder is best on which task, where the best is tied,
    what a tie means, and which results are near chance (:func:`near_chance`; ``classes``: a classification task's
    number of classes, by name); ranked by :func:`rank` (``folds``: :func:`fold_scores`; with one fold by its one rule,
    ``units``: :func:`accuracy_units`), as :func:`standing` and the tables say it."""
    wins: dict[str, list[str]] = defaultdict(list)
    ahead: dict[str, list[str]] = defaultdict(list)
    ties, level, unjudged = [], [], defaultdict(list)
    for t in tasks:
        ranking = _rank_task(summary, probe, variant, t, encoders, metric_of(t), units, folds)
        if ranking.best is None or ranking.verdict == "alone":  # nothing to rank it against
            continue
        group = f"{t} ({_join([f'`{names[e]}`' for e in ranking.tied])})" if ranking.tied else t
        if ranking.verdict == "tie":
            ties.append(group)
        elif ranking.verdict == "level" and ranking.tied:
            level.append(group)
        elif ranking.verdict == "level":
            ahead[ranking.best].append(t)
        elif ranking.verdict == "no-spread":  # (0.028 against 0.029 was a "best mean" the result line did not judge)
            unjudged[_METRIC_WORD.get(metric_of(t), metric_of(t))].append(t)
        else:
            wins[ranking.best].append(t)
    sentences = []
    for e, won in sorted(wins.items(), key=lambda item: -len(item[1])):
        sentences.append(f"`{names[e]}` is best on {_join(won)}, ahead of every other encoder by more than their "
                         "difference varies over the folds (± std)")  # fmt: skip
    if ties:
        sentences.append(
            f"Tied for best: {_join(ties)}. There the difference from the best varies over the folds (± std) as "
            "much as it averages, so this run cannot rank those encoders; more seeds (--seeds) or points (--n-points) "
            "might"
        )
    for e, won in sorted(ahead.items(), key=lambda item: -len(item[1])):
        sentences.append(f"`{names[e]}` is best on {_join(won)}, ahead of every other encoder by more than one test "
                         "point (one fold: no spread to judge by)")  # fmt: skip
    if level:
        sentences.append(f"Level for best (one fold: accuracies within one test point of the best): {_join(level)}")
    if unjudged:
        tasks_unjudged = _join([t for ts in unjudged.values() for t in ts])
        sentences.append(f"With one fold per task there is no spread to judge {_join(list(unjudged))} differences "
                         f"by, so no best is named on {tasks_unjudged}")  # fmt: skip
    near, below, unsure, compared, near_metrics = [], [], [], 0, set()
    for t in tasks:
        metric = metric_of(t)
        floor = chance.get(t, {}).get(metric)
        if floor is None:
            continue
        for e in encoders:
            stat = summary.get((probe, variant, t, e), {}).get(metric)
            if stat is None:
                continue
            compared += 1
            gap = stat[0] - floor if HIGHER_IS_BETTER[metric] else floor - stat[0]
            if gap < 0:
                below.append(f"`{names[e]}` on {t}")
            elif near_chance(metric, stat[0], floor, (classes or {}).get(t)):
                near.append(f"`{names[e]}` on {t}")
                near_metrics.add(HIGHER_IS_BETTER[metric])
            elif not math.isnan(stat[1]) and gap <= TIE_STDS * stat[1]:  # (0.882 ± 1.065 against 1.337 was "well
                unsure.append(f"`{names[e]}` on {t}")  # above chance", its R² worse than chance's)
    if below:
        sentences.append(f"Worse than chance (a probe that ignores location, row *chance*): {_join(below)}")
    if near:
        close = _join([_NEAR_WORDS[higher] for higher in sorted(near_metrics)])
        sentences.append(f"Close to chance (row *chance*, a probe that ignores location; close: {close}): "
                         f"{_join(near)}")  # fmt: skip
    if unsure:
        sentences.append(f"Above chance by less than the spread over folds (± std), so not surely above it: "
                         f"{_join(unsure)}")  # fmt: skip
    if compared and not near and not below and not unsure:
        sentences.append("Every encoder is well above chance (row *chance*: a probe that ignores location) "
                         "on every task")  # fmt: skip
    return ". ".join(sentences) + "." if sentences else ""


#: how close to chance :func:`near_chance` calls close: a fraction of chance's error (an MSE) or of the room above
#: chance (an accuracy), and for an accuracy a multiple of chance it stays under
NEAR_CHANCE, TIMES_CHANCE = 0.1, 2
#: what :func:`reading` says "close" is, of lower-is-better (False) and higher-is-better (True) scores
_NEAR_WORDS = {
    False: f"an MSE above {1 - NEAR_CHANCE:.0%} of chance's",
    True: f"a score less than {NEAR_CHANCE:.0%} of the way from chance to 1 and under {TIMES_CHANCE}× chance's (an "
          "accuracy: or 1/K, where larger)",
}  # fmt: skip


def near_chance(metric: str, score: float, floor: float, classes: int | None = None) -> bool:
    """Whether ``score`` (``metric``, at or above chance's ``floor``) is close to chance, by rules free of the metric's
    scale: a lower-is-better score (an MSE) removes less than :data:`NEAR_CHANCE` of chance's error (it is above
    0.9 × chance's: a fixed gap of 0.1 called MSE 0.05 against chance's 0.12, R² ≈ 0.6, close, and 485 against 600
    not); a higher-is-better one (an accuracy) covers less than :data:`NEAR_CHANCE` of the room from chance to 1 and
    is under :data:`TIMES_CHANCE` × chance's, or for an accuracy of ``classes`` classes × 1/K where that is larger
    (0.067 on 1,538 classes against chance's 0.000 was close, 100 × 1/K; chance's R², about 0, has no multiple)."""
    if not HIGHER_IS_BETTER[metric]:
        return floor - score < NEAR_CHANCE * floor
    reference = max(floor, 1 / classes) if classes and metric == "accuracy" else floor
    few_times = score < TIMES_CHANCE * reference if metric in ("accuracy", "macro_f1") and reference > 0 else True
    return score - floor < NEAR_CHANCE * (1 - floor) and few_times


def standing(rows: Sequence[dict], encoder: str, *, most: int | None = None, subject: str | None = None) -> str:
    """One line on where ``encoder`` stands against the other encoders in ``rows``, task by task, on each task's
    primary metric under the first probe (as :func:`metric_table` ranks them): ``"best on a and b; tied for best
    with `x` on c; behind `y` and `z` on d (3rd of 5)"`` (behind those of the best and tied with it whose score
    as shown beats its own, its rank by mean in brackets).

    One vocabulary, whatever the number of folds: "tied" is :func:`rank`'s rule. With several folds that is ranges
    that overlap (a place: means equal as shown, ``"tied 3rd of 5 with `z`"``); with one fold per task there is no
    spread, so accuracies that differ by at most one test point (1 / ``n_test``) are tied, the place too (behind
    those more than one test point above, tied with those within one), and differences of MSEs, which have no such
    unit, are not judged (0.970 against 0.980 on 99 test points was "behind `direct` and `geoclip`"). The quick
    demo said "level" and "joint 3rd" where the full one said "tied", and put that caveat first, before the model's
    standing (a 480-character line); it now comes last: ``"… — one fold, so accuracies within one test point
    count as tied and MSE differences are not judged (e)"``. Where every encoder, three or more, is tied for best
    on a task, the line says so (``"tied for best with all 4 others on country (raw lon/lat `direct` included)"``):
    it is no win. The display names are those of the tables (:func:`display_names`). ``most``: name at most that
    many encoders in a group, then how many more, more than ``most`` MSE tasks as a count, and with more than
    ``most`` groups of ties, one phrase for them all (a terminal's line). ``subject``: the line is
    ``"<subject> is …"``."""
    probe, variant = rows[0]["probe"], rows[0].get("variant", "")
    summary = summarise(rows)
    encoders = _ordered(r["encoder"] for r in rows)
    names = display_names(encoders)
    kinds = {r["task"]: r["kind"] for r in rows}
    units, folds = accuracy_units(rows), fold_scores(rows)
    best, tied, behind, level_unit, unjudged = [], defaultdict(list), defaultdict(list), [], {}
    everyone = defaultdict(list)  # (others, raw lon/lat among them) -> tasks where every encoder is tied for best
    for t in kinds:
        metric = PRIMARY[kinds[t]][0]
        means = {e: summary.get((probe, variant, t, e), {}).get(metric) for e in encoders}
        ranking = _rank_task(summary, probe, variant, t, encoders, metric, units, folds)
        if ranking.best is None or means[encoder] is None:
            continue
        if ranking.verdict == "no-spread":  # (no unit one test point moves it by: not judged)
            unjudged[_METRIC_WORD[metric]] = [*unjudged.get(_METRIC_WORD[metric], []), t]
            continue
        sign, own = (1 if HIGHER_IS_BETTER[metric] else -1), means[encoder][0]
        scored = {e: stat[0] for e, stat in means.items() if stat is not None and not math.isnan(stat[0])}
        leaders = list(ranking.tied or (ranking.best,))
        if ranking.verdict == "level":  # one fold: a place is by the one-test-point rule (122 of 178 against 123 was
            # "4th of 5" behind a 3rd it was within one point of); ahead of it, those more than one test point above
            level_unit.append(t)
            unit = units[(probe, variant, t)]
            beats = {e: sign * (scored[e] - own) > unit for e in scored}
            peers = [e for e in scored if e != encoder and abs(scored[e] - own) <= unit]
        else:  # a place shared with an equal mean as the tables show it is said so: "3rd of 5" hid a three-way tie
            beats = {e: sign * scored[e] > sign * own and _shown(scored[e]) != _shown(own) for e in scored}
            peers = [e for e in scored if e != encoder and _shown(scored[e]) == _shown(own)]
        others = tuple(f"`{names[e]}`" for e in leaders if e != encoder)
        if encoder in leaders and not others:
            best.append(t)
        elif encoder in leaders and len(scored) > 2 and set(scored) <= set(leaders):  # (even raw lon/lat: no win)
            everyone[len(scored) - 1, "direct" in scored and encoder != "direct"].append(t)
        elif encoder in leaders:
            tied[others, "tied for best"].append(t)
        else:  # behind the leaders that beat it: an encoder tied with the best by a wide spread can score worse
            # than it (0.076 ± 0.010 beside its 0.073 was one it was "behind")
            named = tuple(f"`{names[e]}`" for e in leaders if beats[e])
            if not named:  # (the best's mean as shown is its own, their spreads too small to overlap)
                tied[others, "tied as shown for best"].append(t)
                continue
            place = f"{_ordinal(sum(beats.values()) + 1)} of {len(scored)}"
            if peers:
                place = f"tied {place} with {_join([f'`{names[e]}`' for e in peers], most)}"
            behind[named].append(f"{t} ({place})")
    said = ["accuracies within one test point count as tied"] if level_unit else []
    if unjudged:
        mse = [t for ts in unjudged.values() for t in ts]
        which = f"on {len(mse)} tasks" if most is not None and len(mse) > most else _join(mse)  # (brief: a count)
        said.append(f"{_join(list(unjudged))} differences are not judged ({which})")
    caveat = f"one fold, so {' and '.join(said)}" if said else ""
    if not (best or tied or behind or everyone):
        where = "not ranked on any task" if caveat else "not scored on any task"
    else:
        parts = [f"best on {_join(best)}"] if best else []
        if most is not None and len(tied) > most:  # (one phrase a group: six groups ran to 560 characters)
            counts = sorted({len(e) for e, _ in tied})
            others = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
            level = _join(sorted({word for _, word in tied}))
            parts.append(f"{level} on {_join([t for ts in tied.values() for t in ts])} (with {others} others each)")
        else:
            parts += [f"{word} with {_join(e, most)} on {_join(ts)}" for (e, word), ts in tied.items()]
        parts += [f"tied for best with all {n} others on {_join(ts)}" + (" (raw lon/lat `direct` included)" if raw
                  else "") for (n, raw), ts in everyone.items()]  # fmt: skip
        parts += [f"behind {_join(e, most)} on {_join(ts)}" for e, ts in behind.items()]
        where = "; ".join(parts)
    where = where if subject is None else f"{subject} is {where}"
    return f"{where} — {caveat}" if caveat else where


#: what :func:`standing` calls a metric in its one-fold caveat
_METRIC_WORD = {"mse": "MSE", "accuracy": "accuracy"}


def terminal_tables(rows: Sequence[dict], width: int = 100) -> str:
    """The headline numbers of an evaluation as plain text for a terminal: a line naming the protocol, the seeds
    and what ± spans (where the rows name their protocol), then per probe (and variant, e.g.
    holdout-continent's zero-shot and few-shot) the primary metric per encoder and task, ``mean ± std`` (means alone
    where that is wider than ``width`` characters), ``*`` on a clear best as in :func:`metric_table`; each title
    line says what is shown. Names longer than a column should be are cut (``…``); results.md has them whole. A
    last line says which encoder a short name is (``spherec#2`` beside results.csv's ``spherec(min_radius=1,…)``)."""
    summary = summarise(rows)
    blocks = [_terminal_table(rows, summary, probe, variant, width) for probe in _ordered(r["probe"] for r in rows)
              for variant in _ordered(r.get("variant", "") for r in rows if r["probe"] == probe)]  # fmt: skip
    protocols = _ordered(r["protocol"] for r in rows if r.get("protocol"))
    if protocols:  # (the tables named no protocol and no seeds: what the ± spans was results.md's to say)
        seeds = _ordered(r["seed"] for r in rows if r.get("seed") is not None)
        spread = SPREAD.get(protocols[0], SPREAD_OTHER) if len(protocols) == 1 else SPREAD_OTHER
        spread = NO_SPREAD if _one_fold(summary) else f"± = {spread}"  # (one seed said "± = sample std … over seeds")
        blocks.insert(0, f"protocol {', '.join(protocols)}, {len(seeds)} seed{'s' * (len(seeds) != 1)} "
                         f"({', '.join(map(str, seeds))}); {spread}")  # fmt: skip
    renamed = [f"{short} = {spec}" for spec, short in display_names(_ordered(r["encoder"] for r in rows)).items()
               if short != spec]  # fmt: skip
    if renamed:
        blocks.append("encoders: " + "; ".join(renamed))
    return "\n\n".join(blocks)


def _terminal_table(rows: Sequence[dict], summary, probe: str, variant: str, width: int) -> str:
    tasks = _ordered(r["task"] for r in rows)
    encoders = _ordered(r["encoder"] for r in rows)
    names = display_names(encoders)
    kinds = {r["task"]: r["kind"] for r in rows}
    best = {}
    units, folds = accuracy_units(rows), fold_scores(rows)
    for t in tasks:  # (as results.md marks them: one fold's best, ahead by more than a test point, was unmarked)
        ranking = _rank_task(summary, probe, variant, t, encoders, PRIMARY[kinds[t]][0], units, folds)
        if ranking.verdict in ("clear", "level") and not ranking.tied:
            best[t] = ranking.best

    def clipped(name: str, most: int = 28) -> str:  # (a 300-character task name was a 300-character column)
        return name if len(name) <= most else name[: most - 1] + "…"

    def table(with_std: bool) -> list[str]:
        cells = [["encoder", *map(clipped, tasks)]]
        for e in encoders:
            line = [clipped(names[e])]
            for t in tasks:
                stat = summary.get((probe, variant, t, e), {}).get(PRIMARY[kinds[t]][0])
                text = "–" if stat is None else _shown(stat[0])
                if stat is not None and with_std and not math.isnan(stat[1]):
                    text += f" ± {_shown(stat[1])}"
                line.append(text + ("*" if best.get(t) == e else ""))
            cells.append(line)
        widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
        return ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]

    stats = [st for (p, v, _, _), by in summary.items() if (p, v) == (probe, variant) for st in by.values()]
    with_std = any(not math.isnan(std) for _, std, _ in stats)
    lines = table(with_std)
    if with_std and max(map(len, lines)) > width:
        with_std, lines = False, table(with_std=False)
    one_fold = _one_fold(summary)
    shown = [NO_SPREAD if one_fold else "mean ± std" if with_std else "mean"]
    by = "one test point" if one_fold else "their difference varies over the folds"
    shown += [f"*: best by more than {by}"] * bool(best)
    label = f"probe {probe}" + (f", {variant}" if variant else "")
    return "\n".join([f"{label}, {METRIC_TITLES_SHORT}; {'; '.join(shown)}:", *lines])


#: what the reports say of a run of one fold per task (one seed of a protocol of one fold a seed): no ± to show
NO_SPREAD = "one seed: no spread, so no ±"


def _one_fold(summary) -> bool:
    """Whether every score of a :func:`summarise` summary is of one fold: no std, no ± (a mean of one, no mean)."""
    return all(stat[2] == 1 for stats in summary.values() for stat in stats.values())


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _task_rows(tasks: Sequence[Task], task_names: Sequence[str]) -> list[str]:
    out = ["| task | kind | points | target | chance (ignoring location) | source |", "|---|---|---|---|---|---|"]
    for t in tasks:
        if t.name not in task_names:
            continue
        if t.kind == "classification":
            kept = t.class_filter
            classes = (f", {kept.classes_kept} of {kept.classes_before} classes" if kept
                       else f", {t.num_classes} classes")  # fmt: skip
            floor = t.chance()
            chance = (f"accuracy {floor['accuracy']:.3f} (most frequent class `{t.majority_class()}`), "
                      f"1/K = {1 / max(t.num_classes, 1):.3f}")  # fmt: skip
        else:
            classes, chance = "", "MSE 1, R² 0 (predicting the mean)"
        out.append(f"| {_text(t.name)} | {t.kind}{classes} | {len(t)} | {_text(t.target)} | {chance} | "
                   f"{_text(t.source)} |")
    return out


def _task_notes(tasks: Sequence[Task], task_names: Sequence[str], config: EvalConfig) -> str:
    """The tasks' notes on their data (a user table's rows left out or sampled, repeated locations) and the
    protocol's on their points (:func:`satclip.eval.protocols.notes`: what holdout-continent never holds out, said
    on stderr alone), or ""."""
    from . import protocols

    notes = [f"{t.name}: {note}" for t in tasks if t.name in task_names
             for note in (*t.notes, *protocols.notes(config.protocol, t, **config.protocol_options))]  # fmt: skip
    return "Notes on the data: " + "; ".join(_text(note) for note in notes) + "." if notes else ""


def _few_test_points_note(rows: Sequence[dict]) -> str:
    """A caveat for tasks whose folds test fewer than :data:`~satclip.eval.runner.FEW_TEST_POINTS` points (a
    12-row task was ranked "ahead by more than their spreads" on 2 test points), or ""."""
    smallest: dict[str, int] = {}
    for row in rows:
        n = int(row.get("n_test") or 0)
        if n:
            smallest[row["task"]] = min(n, smallest.get(row["task"], n))
    few = {task: n for task, n in smallest.items() if n < FEW_TEST_POINTS}
    if not few:
        return ""
    listed = _join([f"{task} ({n})" for task, n in few.items()])
    return (f"Test splits of fewer than {FEW_TEST_POINTS} points: {listed}. One point there is over 5 % of a score, "
            "so those scores, and any ranking on them, are mostly chance; give those tasks more points.")


def _class_filter_note(tasks: Sequence[Task], task_names: Sequence[str]) -> str:
    kept = [t for t in tasks if t.name in task_names and t.class_filter is not None]
    if not kept:
        return ""
    minimum = kept[0].class_filter.min_points
    parts = [f"{t.name} {t.class_filter.describe()}" for t in kept]
    return (
        f"Classification tasks keep only the classes with at least {minimum} points (--min-class-points): a rarer "
        "class cannot be split into training, validation and test points and leaves too little to learn from, "
        f"and its points go with it. {_join(parts)}."
    )


def _map_prefix(task: str) -> str:
    """How the name of a residual map of ``task`` begins: a task name holding a space or ``|`` is made a file part
    (:func:`~satclip.eval.cache.file_part`; "yield 2024" lost its caption, looked for as written)."""
    return f"map_{file_part(task, unique=True)}_"


def map_name(task: str, probe: str) -> str:
    """The file name of the residual map of ``task`` and ``probe`` (:func:`satclip.eval.plots.residual_maps`), which
    :func:`figure_caption` reads back."""
    return f"{_map_prefix(task)}{file_part(probe, unique=True)}.png"


def figure_caption(path: Path, kinds: dict[str, str] | None = None, spread: bool = True) -> str:
    """The caption of a figure :mod:`satclip.eval.plots` writes, from its file name; ``kinds``: task name →
    ``"regression"``/``"classification"``; ``spread``: False where every score is of one fold (no ± to show)."""
    stem, kinds = Path(path).stem, kinds or {}
    if stem.startswith("bars_"):  # bars_PROBE[_VARIANT], a variant's % written pct (plots.bar_chart)
        probe, _, variant = stem[len("bars_") :].partition("_")
        variant = f", {re.sub(r'(?<=[0-9])pct', '%', variant)} variant" if variant else ""
        what = "mean ± std of each task's primary metric" if spread else f"each task's primary metric ({NO_SPREAD})"
        return f"{what}, one bar per encoder (probe {probe}{variant})"
    for task in sorted(kinds, key=len, reverse=True):  # (the longest first: "a_b" before "a")
        if stem.startswith(_map_prefix(task)):
            probe = stem[len(_map_prefix(task)) :]
            colour = ("correct and wrong predictions" if kinds[task] == "classification"
                      else "the residual (prediction − truth)")  # fmt: skip
            return (f"{task}: the test points of the first seed's folds (as the map's title says), one panel per "
                    f"encoder, showing {colour} (probe {probe})")  # fmt: skip
    return stem


def relink(markdown_text: str, prefix: str) -> str:
    """Prefix the relative image links (``](x.png)``) of a report moved ``prefix`` up, e.g. ``"eval/"``."""
    return re.sub(r"\]\((?![a-z]+:|/)([^)\s]+\.png)\)", lambda m: f"]({prefix}{m[1]})", markdown_text)


def blind_chance(config: EvalConfig, tasks: Sequence[Task]) -> dict[str, dict[str, dict[str, float]]]:
    """``{variant: {task: {metric: value}}}``: the mean over the run's folds of what a probe that ignores
    location scores (:func:`~satclip.eval.runner.blind_scores`), the row *chance* of the tables."""
    from . import protocols
    from .runner import blind_scores

    scores: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for task in tasks:
        for fold in protocols.make_folds(config.protocol, task, config.seeds, **config.protocol_options):
            if len(fold.test) and len(fold.train):
                scores[fold.variant][task.name].append(blind_scores(task, fold))
    return {variant: {task: {metric: float(np.mean([s[metric] for s in folds])) for metric in folds[0]}
                      for task, folds in by_task.items()}
            for variant, by_task in scores.items()}  # fmt: skip


#: what a row's ``model_sha256`` is (:func:`satclip.models.location_encoder.model_identity`'s hash): it moves with
#: --precision float64 and is not a ``sha256sum`` of the file; "model weights sha256" said it was
MODEL_SHA256 = ("a sha256 of the model's tensor names and bytes in the dtype it computed in, the value satclip embed, "
                "map and export record; not the sha256 of its model.safetensors file")


def settings_line(
    config: EvalConfig, command: str | None = None, rows: Sequence[dict] = (), tasks: Sequence[Task] = ()
) -> str:  # fmt: skip
    """What a protocol run's results depend on besides its protocol, seeds and probes (two runs of other
    ``--n-points`` or ``--block-deg`` had the same header), the precision each encoder of ``rows`` ran in and each
    satclip model's ``model_sha256`` (:data:`MODEL_SHA256`), and the ``command`` that ran it: enough to run it again.
    The point seed is named where one of ``tasks`` is a draw of it (:attr:`Task.sampled`)."""
    from .. import __version__

    options = config.task_options
    # (a table of no more rows is used whole: "point seed 5" was claimed of a run it did not change)
    seed = (f"point seed {options.seed}" if not tasks or any(t.sampled for t in tasks) else
            "no task had more: each was used whole, so no point seed")  # fmt: skip
    parts = [f"at most {options.n_points:,} points per task ({seed})"]
    precisions = {row["encoder"]: row["precision"] for row in rows if row.get("precision")}
    if precisions:  # (bf16 and float32 score differently: it was recorded nowhere)
        by_precision = {p: [e for e, q in precisions.items() if q == p] for p in _ordered(precisions.values())}
        parts.append("embeddings in " + ", ".join(f"{p} ({', '.join(f'`{e}`' for e in encs)})"
                                                  for p, encs in by_precision.items()))  # fmt: skip
    models = {row["encoder"]: row["model_sha256"] for row in rows if row.get("model_sha256")}
    if models:  # (the spec names a path, whose weights change between runs: every run's export is export/last)
        parts.append(f"model_sha256 ({MODEL_SHA256}) " + ", ".join(f"`{e}` {sha}" for e, sha in models.items()))
    used = {name: values for name, values in config.probe_options.items() if name in config.probe_names()}
    for what, values in (("protocol options", config.protocol_options), ("probe options", used)):
        if values:
            parts.append(f"{what} " + ", ".join(f"{key}={value}" for key, value in values.items()))
    if config.task_file is not None:
        parts.append(f"task file `{config.task_file.path}`")
    if options.data is not None:
        parts.append(f"stations table `{options.data}`")
    line = f"Settings: {'; '.join(parts)}; satclip {__version__}."
    return line + (f" Command: `{command}`" if command else "")


def markdown(
    rows: Sequence[dict], config: EvalConfig, tasks: Sequence[Task], title: str | None = None,
    figures: Sequence[Path] = (), command: str | None = None,
) -> str:  # fmt: skip
    """The ``results.md`` text for one protocol run; ``figures`` (PNG files beside it) are linked with
    captions; ``command``: the command line that ran it, if any."""
    summary = summarise(rows)
    task_names = _ordered(r["task"] for r in rows)
    encoder_names = _ordered(r["encoder"] for r in rows)
    names = display_names(encoder_names)
    kinds = {t.name: t.kind for t in tasks}
    chance = blind_chance(config, tasks)
    primary = lambda t: PRIMARY[kinds[t]][0]  # noqa: E731
    secondary = lambda t: "r2" if kinds[t] == "regression" else "macro_f1"  # noqa: E731
    out = [f"# {title or 'satclip evaluate: ' + config.protocol}", ""]
    one_fold = _one_fold(summary)
    units = accuracy_units(rows)
    classes, folds = {t.name: t.num_classes for t in tasks if t.kind == "classification"}, fold_scores(rows)
    marks = ("One fold per task, so no ± and no spread to judge differences by: accuracies within one test point "
             "of the best are level for best (*italic*), one ahead of all others by more than one test point is "
             "**bold**, and differences of the other scores (MSE, R², macro-F1) are not judged (none marked)"
             if one_fold else
             f"± = {SPREAD.get(config.protocol, SPREAD_OTHER)}. **Bold**: the best mean, when it is ahead of every "
             "other encoder by more than their difference varies over the folds (its mean over the folds both were "
             "scored on exceeds its std; where their folds differ, when the mean ± std ranges do not overlap); "
             "*italic*: tied for best (not so far ahead)")  # fmt: skip
    out.append(
        f"Protocol `{config.protocol}`, seeds {list(config.seeds)}, probes {list(config.probe_names())}. "
        f"{marks}. Row *chance*: a "
        "probe that ignores location (predicting the training split's mean; its most frequent class), scored on "
        "the test splits as the encoders are; the task table's chance is the same prediction made and scored on "
        "all of a task's points, so the two differ by what the splits sample. MSE is of the standardised target "
        "(the target ÷ its training std: in units of the target's variance, so 1 is what predicting the mean "
        "scores and 0.1 leaves a tenth of the variance unexplained)."
    )
    out += ["", settings_line(config, command, rows, tasks)]
    out += ["", *_task_rows(tasks, task_names)]
    notes = (_class_filter_note(tasks, task_names), _task_notes(tasks, task_names, config), _few_test_points_note(rows))
    for note in notes:
        if note:
            out += ["", note]
    out += ["", "The encoders:", "", legend(names, {config.names.get(s, s): s for s in config.encoders})]
    for probe in _ordered(r["probe"] for r in rows):
        for variant in _ordered(r.get("variant", "") for r in rows if r["probe"] == probe):
            label = f"probe `{probe}`" + (f", {variant}" if variant else "")
            args = (summary, probe, variant, task_names, encoder_names)
            out += ["", f"## {label}", ""]
            floor = chance.get(variant, {})
            text = reading(*args, primary, names, floor, units, classes, folds)
            if text:
                out += [f"**Reading it** ({METRIC_TITLES_SHORT}): {text}", ""]
            out += [metric_table(*args, primary, names, floor, units, folds)]
            out += ["", metric_table(*args, secondary, names, floor, units, folds)]
            if config.protocol == "paper":
                out += ["", metric_table(*args, lambda t: "mse_max_scaled", names, floor, units, folds)]
    if config.protocol == "holdout-continent":
        out += ["", "## Per held-out continent", ""]
        out.append(_continent_tables(rows, kinds, names))
    if config.protocol == "paper":
        from .probes.paper import EPOCHS

        epochs = config.probe_options.get("paper-mlp", {}).get("epochs") or EPOCHS
        spread = "one seed: no spread" if one_fold else "mean ± std"  # (one seed said "mean ± std")
        differences = [line.format(epochs=epochs, data=_paper_data(tasks), spread=spread) for line in PAPER_DIFFERENCES]
        if any(_is_stations(t) for t in tasks):
            out += ["", "## Compared with the paper", ""] + [f"- {line}" for line in PAPER_REFERENCE]
            out += ["", "Protocol differences:", ""] + [f"- {line}" for line in [*differences, PAPER_TABLE]]
        else:  # (a table of other data was set beside the paper's air-temperature figure)
            out += ["", "## The notebook's protocol", "", "How it runs here, beside the notebook B01:", ""]
            out += [f"- {line}" for line in differences]
    if figures:
        out += ["", "## Figures", ""]
        for path in figures:
            caption = figure_caption(path, kinds, spread=not one_fold)
            out += [f"![{caption}]({Path(path).name})", "", f"*{Path(path).name}: {caption}.*", ""]
    return "\n".join(out).rstrip() + "\n"


#: what the reading paragraph ranks by
METRIC_TITLES_SHORT = "primary metric: MSE ↓ for regression, accuracy ↑ for classification"


def _continent_tables(rows: Sequence[dict], kinds: dict[str, str], names: dict[str, str]) -> str:
    parts = []
    for probe in _ordered(r["probe"] for r in rows):
        for task in _ordered(r["task"] for r in rows):
            metric = PRIMARY[kinds[task]][0]
            sel = [r for r in rows if r["probe"] == probe and r["task"] == task]
            cols = _ordered((r["group"], r["variant"]) for r in sel)
            encs = _ordered(r["encoder"] for r in sel)
            parts.append(f"**{task}**, probe `{probe}`, {METRIC_TITLES[metric]} (mean over seeds)\n")
            parts.append("| encoder | " + " | ".join(f"{g} {v}" for g, v in cols) + " |")
            parts.append("|---" * (len(cols) + 1) + "|")
            for e in encs:
                cells = []
                for g, v in cols:
                    vals = [r[metric] for r in sel if r["encoder"] == e and r["group"] == g and r["variant"] == v]
                    cells.append(f"{np.mean(vals):.3f}" if vals else "–")
                parts.append(f"| {_text(names.get(e, e))} | " + " | ".join(cells) + " |")
            parts.append("")
    return "\n".join(parts)


#: what tells one result row from another in results.csv
_ROW_KEY = ("task", "encoder", "protocol", "probe", "fold")


def _say_what_is_replaced(path: Path, rows: Sequence[dict]) -> None:
    """Warn where ``path``, an earlier run's results.csv, holds results this run's report leaves out (another
    run's encoders, tasks, seeds: its report was replaced without a word; its folds stay and are reused; dropped
    tasks were counted as encoders). Results of the same folds under other settings (sizes, precision, model
    weights, data) the run has replaced in rows.jsonl, saying what changed
    (:func:`satclip.eval.runner._rewrite_rows`)."""
    try:
        with path.open(newline="") as handle:
            earlier = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return
    rows_file = path.parent / ROWS_FILE
    now = {tuple(str(row.get(k, "")) for k in _ROW_KEY): row for row in rows}
    gone = [key for key in (tuple(row.get(k, "") for k in _ROW_KEY) for row in earlier) if key not in now]
    if gone:
        missing = []
        for position, what in enumerate(("tasks", "encoders", "protocols", "probes", "folds")):
            values = sorted({key[position] for key in gone} - {key[position] for key in now})
            if values:
                missing.append(f"{what} {', '.join(values[:5])}{', …' if len(values) > 5 else ''}")
        log.warning("%s held results of an earlier run: %d this report leaves out (%s), which stay in %s for a run "
                    "with their settings to reuse; results.csv and results.md now hold this run's only", path.parent,
                    len(gone), "; ".join(missing) or "folds of this run", rows_file, extra=EARLIER_RESULTS)  # fmt: skip


def write_reports(
    rows: Sequence[dict], config: EvalConfig, tasks: Sequence[Task], out: Path, figures: Sequence[Path] = (),
    command: str | None = None,
) -> dict[str, Path]:  # fmt: skip
    """Write results.csv, timings.csv and results.md (linking ``figures``; naming the ``command`` that ran it)
    into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "results.csv", "timings": out / "timings.csv", "md": out / "results.md"}
    _say_what_is_replaced(paths["csv"], rows)
    write_csv([{**row, "predictions": prediction_file(out, row)} for row in rows], paths["csv"], COLUMNS)
    write_csv(rows, paths["timings"], ("task", "encoder", "probe", "fold", "embedding_dim", "n_train", "seconds"))
    safe_output.write_bytes(paths["md"], markdown(rows, config, tasks, figures=figures, command=command).encode())
    return paths
