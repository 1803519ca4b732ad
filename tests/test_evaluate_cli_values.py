"""Values of ``satclip evaluate`` (and ``demo --workers``) that wrote outside --out, ended in a traceback or an
"unexpected error", or ran nonsense with exit 0: refused at argument time in one line naming the value (exit 2),
through the real CLI ``main()``.

Where a refused value is followed by ``--task-file MISSING``, the code before the fix accepted the value and then
stopped at the missing file, so no test here can start a long run on that code.
"""

from __future__ import annotations

import csv
import decimal
import os
from collections import defaultdict

import numpy as np
import pytest

from satclip.cli import main
from tests.conftest import one_error_line

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

FAST = ["--encoders", "wrap", "--max-epochs", "2", "--no-cache", "--seeds", "1"]


def _task_file(path):
    """200 points over lon × lat (-60°..70°) and a target that follows latitude: a real regression task."""
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(-180, 180, 200), rng.uniform(-60, 70, 200)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lon", "lat", "y"])
        writer.writerows(zip(lon, lat, np.sin(np.radians(lat)) + 0.05 * rng.standard_normal(200), strict=True))
    return path


def _files(root):
    """Every file and folder under ``root`` with its bytes (None for a folder)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.join(folder, name)] = None
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                found[os.path.join(folder, name)] = f.read()
    return found


def _refused(argv, capsys) -> str:
    """The one error line of a command refused at argument time (exit 2)."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("satclip evaluate: error: ") or err.startswith("satclip demo: error: "), err
    return err.strip()


@pytest.mark.parametrize("figures", [True, False], ids=["figures", "no-figures"])
def test_a_task_name_with_a_path_writes_nothing_outside_out(tmp_path, capsys, figures):
    """``--task-name ../../../VICTIM``: the residual map went to ``OUT/map_../../../VICTIM_mlp.png``, which is
    ``VICTIM_mlp.png`` beside OUT, replacing the user's file there (and a stray folder ``OUT/map_..``)."""
    table = _task_file(tmp_path / "task.csv")
    victim = tmp_path / "VICTIM_mlp.png"
    victim.write_bytes(b"precious")
    before = _files(tmp_path)
    out = tmp_path / "ev"
    argv = ["evaluate", *FAST, "--task-file", str(table), "--task-name", "../../../VICTIM", "--out", str(out)]
    capsys.readouterr()
    code = main(argv + ([] if figures else ["--no-figures"]))
    err = capsys.readouterr().err
    assert victim.read_bytes() == b"precious"
    assert _files(tmp_path) == before  # nothing written anywhere, OUT not even made
    assert code == 2
    assert err.strip().splitlines() == [
        "satclip evaluate: error: argument --task-name: task name '../../../VICTIM' holds a '/' or '\\': a task "
        "name is one line of text without '/' or '\\' and not '.' or '..' (e.g. soil-moisture or 'yield 2024') "
        "(see satclip evaluate --help)"
    ]


@pytest.mark.parametrize(("name", "why"), [
    ("a/b", "holds a '/' or '\\'"), ("a\\b", "holds a '/' or '\\'"), ("..", "is only dots"), ("", "is empty"),
    ("a\nb", "holds a control character or line break"), ("a\u2028b", "holds a control character or line break"),
])  # fmt: skip
def test_task_names_that_are_no_name_are_refused(tmp_path, capsys, name, why):
    """``a/b`` made a subfolder ``map_a/``; a newline broke results.md's tables (exit 0)."""
    argv = ["evaluate", *FAST, "--task-name", name, "--task-file", str(tmp_path / "missing.csv"), "--out",
            str(tmp_path / "ev")]  # fmt: skip
    err = _refused(argv, capsys)
    assert f"argument --task-name: task name {name!r} {why}: a task name is one line of text" in err


def test_a_long_task_name_is_a_short_file_name_inside_out(tmp_path, capsys):
    """A task name is part of the figure's file name through the one function that makes names file names
    (``satclip.eval.cache.file_part``): a 300-character name, with spaces and a non-ASCII letter, was a file
    name over the 255-byte limit (the run failed after all its fits)."""
    table = _task_file(tmp_path / "task.csv")
    name = "Bodenfeuchte (Mai 2024) " + "ä" * 20 + "x" * 276
    out = tmp_path / "ev"
    assert main(["evaluate", *FAST, "--task-file", str(table), "--task-name", name, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[-1].startswith("1 result; wrote ")  # ("1 results")
    assert printed.out.splitlines()[3] == "encoder  " + name[:27] + "…"  # (not a 300-character column)
    assert "wrote" not in printed.err  # (the API's "wrote …" was logged too)
    from satclip.eval.cache import file_part

    maps = sorted(p.name for p in out.iterdir() if p.name.startswith("map_"))
    part = file_part(name, unique=True)
    assert maps == [f"map_{part}_mlp.png"]
    assert part.startswith("Bodenfeuchte_Mai_2024_") and len(maps[0]) < 100
    assert f"({maps[0]})" in (out / "results.md").read_text(encoding="utf-8")  # results.md links it
    assert {p.name for p in tmp_path.iterdir()} == {"task.csv", "ev"}
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        assert [row["task"] for row in csv.DictReader(f)] == [name]


@pytest.mark.parametrize(("seeds", "expected"), [
    ("1000000000000000000000", "argument --seeds: count 1000000000000000000000 is more than 1000, the most one "
                               "evaluation runs"),
    ("1001", "argument --seeds: count 1001 is more than 1000"),
    ("100000000000000000000,", "argument --seeds: seed 100000000000000000000 is too large: seeds are 0 to "
                               "4294967295"),
    ("3,4294967296", "argument --seeds: seed 4294967296 is too large"),
    (",".join(map(str, range(1001))), "argument --seeds: lists 1001 seeds; one evaluation runs at most 1000"),
], ids=["count-10**21", "count-1001", "seed-10**20", "seed-2**32", "1001-seeds"])  # fmt: skip
def test_seed_counts_and_seeds_out_of_range_are_refused(tmp_path, capsys, seeds, expected):
    """``--seeds 10**21`` was a traceback (OverflowError in ``range``); a seed of 10**20 an "Overflow when unpacking
    long long" after the progress bar, naming neither option nor value."""
    argv = ["evaluate", "--encoders", "wrap", "--seeds", seeds, "--task-file", str(tmp_path / "missing.csv"),
            "--out", str(tmp_path / "ev")]  # fmt: skip
    assert expected in _refused(argv, capsys)


@pytest.mark.parametrize("seeds", ["-1,", "-1,3", "-2,-1"])
def test_a_list_of_seeds_starting_negative_gets_the_seeds_message(tmp_path, capsys, seeds):
    """``--seeds -1,`` was read as an option: "argument --seeds: expected one argument", naming neither value nor
    fix (``--seeds=-1,`` named both)."""
    argv = ["evaluate", "--encoders", "wrap", "--seeds", seeds, "--task-file", str(tmp_path / "missing.csv"),
            "--out", str(tmp_path / "ev")]  # fmt: skip
    assert f"argument --seeds: --seeds takes a count (5) or a list of different seeds >= 0 (0,3,7), got {seeds!r}" in \
        _refused(argv, capsys)


@pytest.mark.parametrize(("option", "value"), [("--seeds", "0,,1"), ("--seeds", ",3"), ("--encoders", "wrap,,direct"),
                                               ("--encoders", ",wrap"), ("--tasks", "koppen,,elevation"),
                                               ("--probes", "mlp,,linear")])  # fmt: skip
def test_an_empty_item_in_a_list_is_refused(tmp_path, capsys, option, value):
    """``--seeds 0,,1`` ran seeds 0 and 1 and ``--encoders wrap,,direct`` exited 0: the empty item was dropped."""
    argv = ["evaluate", "--encoders", "wrap", "--seeds", "1", option, value, "--task-file",
            str(_task_file(tmp_path / "task.csv")), "--out", str(tmp_path / "ev")]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"an empty item between commas in {value!r}: remove the extra comma" in err
    assert not (tmp_path / "ev").exists()


def test_a_trailing_comma_is_still_one_seed_and_one_encoder():
    from satclip.cli.evaluate import _seeds
    from satclip.eval.encoders import split_specs

    assert _seeds("3,") == (3,) and split_specs("wrap,") == ["wrap"] and split_specs(" , ") == []


def test_the_largest_seed_runs_and_the_next_is_refused(tmp_path, capsys):
    """The bound is numpy's: 2**32 - 1 is a seed a run takes (it was accepted before too), 2**32 is refused (it
    ran as well)."""
    table = _task_file(tmp_path / "task.csv")
    argv = ["evaluate", "--encoders", "wrap", "--max-epochs", "2", "--no-cache", "--no-figures", "--task-file",
            str(table), "--out", str(tmp_path / "ev")]  # fmt: skip
    assert "argument --seeds: seed 4294967296 is too large" in _refused([*argv, "--seeds", "4294967296,"], capsys)
    assert main([*argv, "--seeds", "4294967295,"]) == 0
    with open(tmp_path / "ev" / "results.csv", newline="") as f:
        assert [row["seed"] for row in csv.DictReader(f)] == ["4294967295"]


@pytest.mark.parametrize("argv", [
    ["evaluate", "--encoders", "wrap", "--workers", "100000000000000000000"],
    ["evaluate", "--encoders", "wrap", "--threads", "100000000000000000000"],
    ["demo", "--workers", "100000000000000000000"],
], ids=["evaluate-workers", "evaluate-threads", "demo-workers"])  # fmt: skip
def test_worker_and_thread_counts_are_bounded(tmp_path, capsys, argv):
    """``evaluate --workers 10**20`` ended in "unexpected error (OverflowError) … please report it", ``--threads
    10**20`` in "Overflow when unpacking long long"; ``demo --workers 10**20`` was accepted."""
    from satclip.machine import max_workers

    missing = "--air-temperature" if argv[0] == "demo" else "--task-file"
    err = _refused([*argv, missing, str(tmp_path / "missing.csv"), "--out", str(tmp_path / "ev")], capsys)
    option = argv[-2]
    assert f"argument {option}: must be at most {max_workers()} (4 per core of this machine or 64, whichever is " \
           "more), got 100000000000000000000" in err  # fmt: skip


@pytest.mark.parametrize("probes", ["", ",", " , "])
def test_probes_that_name_no_probe_are_refused(tmp_path, capsys, probes):
    """``--probes ""`` ran 0 fits and wrote a results.csv of a header alone, exit 0."""
    argv = ["evaluate", "--encoders", "wrap", "--probes", probes, "--task-file", str(tmp_path / "missing.csv"),
            "--out", str(tmp_path / "ev")]  # fmt: skip
    assert f"argument --probes: names no probe, got {probes!r}: give mlp, linear or both" in _refused(argv, capsys)


def test_the_probes_help_names_every_probe(capsys, monkeypatch):
    """`--probes` help said "mlp, linear" while the error for an unknown one listed linear, mlp, paper-mlp."""
    from satclip.eval.probes import PROBES

    monkeypatch.setenv("COLUMNS", "1000")  # (one line per option: no name broken at its hyphen)
    assert main(["evaluate", "--help"]) == 0
    text = capsys.readouterr().out
    described = text.split("--probes PROBES ")[1].split(" --")[0]
    assert PROBES.names() and all(name in described.replace(",", " ").split() for name in PROBES.names()), described

def test_too_few_points_are_refused_and_the_fewest_allowed_run(tmp_path, capsys):
    """``--n-points 1`` ran 1 training point and no validation or test point: empty metrics and numpy warnings,
    exit 0. The least allowed, 10, is split 6 / 2 / 2 by the random protocol."""
    table = _task_file(tmp_path / "task.csv")
    for n in (1, 9):
        argv = ["evaluate", "--encoders", "wrap", "--n-points", str(n), "--task-file", str(tmp_path / "missing.csv"),
                "--out", str(tmp_path / "ev")]  # fmt: skip
        assert f"argument --n-points: must be at least 10, got {n}: a task needs training, validation and test " \
               "points" in _refused(argv, capsys)  # fmt: skip
    out = tmp_path / "ev"
    argv = ["evaluate", *FAST, "--no-figures", "--n-points", "10", "--task-file", str(table), "--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 0
    with open(out / "results.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["n_train"], row["n_val"], row["n_test"]) == ("6", "2", "2")
    assert np.isfinite(float(row["mse"])) and np.isfinite(float(row["r2"]))
    # and says that 2 test points make a score of chance (a 12-row classification scored 0 without a word)
    assert "task: a test split holds only 2 point(s), each of them 50 % of the score: such scores are mostly " \
           "chance" in capsys.readouterr().err  # fmt: skip
    assert "Test splits of fewer than 20 points: task (2). One point there is over 5 % of a score" in (
        out / "results.md").read_text()  # (and results.md says so, beside its ranking)  # fmt: skip
    from satclip.eval.tasks.base import MIN_POINTS

    assert MIN_POINTS == 10  # the bound the refusals name


@pytest.mark.parametrize(("spec", "key", "limit", "default"), [
    ("spherec(frequency_num=100000000000000000000)", "frequency_num", 512, 16),
    ("sphericalharmonics(legendre_polys=101)", "legendre_polys", 100, 10),
    ("untrained-satclip(legendre_polys=100000)", "legendre_polys", 100, 10),
])  # fmt: skip
def test_encoder_sizes_are_bounded_naming_the_parameter(tmp_path, capsys, spec, key, limit, default):
    """``spherec(frequency_num=10**20)`` ended in "Maximum allowed size exceeded", naming nothing."""
    table = _task_file(tmp_path / "task.csv")
    argv = ["evaluate", "--encoders", spec, "--max-epochs", "2", "--no-cache", "--seeds", "1", "--no-figures",
            "--task-file", str(table), "--out", str(tmp_path / "ev")]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    value = spec.split("=")[1].rstrip(")")
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: encoder {spec!r}: parameter {key}={value} is too large: it sizes the encoder's features, "
        f"and {limit} is the most evaluate takes (its default is {default})"
    )


def test_a_task_file_without_a_target_column_says_what_it_needs(tmp_path, capsys):
    """It said "name the target column with --target-col (candidates: [])": no column to name."""
    table = tmp_path / "pts.csv"
    table.write_text("lon,lat\n13.4,52.5\n-58.4,-34.6\n0,0\n")
    argv = ["evaluate", *FAST, "--no-figures", "--task-file", str(table), "--out", str(tmp_path / "ev")]
    capsys.readouterr()
    assert main(argv) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {table} has no column besides its coordinates 'lon' and 'lat': a task file needs a column "
        "with the target to predict too (a number or a class label per point), e.g. lon,lat,yield"
    )


def test_a_pipe_in_a_task_name_keeps_the_report_tables_whole(tmp_path):
    """A ``|`` in a task (or encoder) name ended its markdown table cell: results.md's rows got a column more."""
    import re

    task = _task_file(tmp_path / "t.csv")
    out = tmp_path / "ev"
    argv = ["evaluate", "--task-file", str(task), "--task-name", "a|b", *FAST, "--no-figures", "--out", str(out)]
    assert main(argv) == 0
    text = (out / "results.md").read_text()
    assert "a\\|b" in text
    for table in re.findall(r"(?:^\|.*\n)+", text, flags=re.MULTILINE):  # each table: all rows as wide
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(widths) == 1, table


def test_min_class_points_below_one_is_refused_at_argument_time(capsys):
    """--min-class-points 0 passed the argument check and was refused by TaskOptions after the tasks loaded, in
    the words of its Python API ("TaskOptions: min_class_points=0 …")."""
    line = _refused(["evaluate", "--min-class-points", "0", *FAST, "--task-file", "MISSING.csv"], capsys)
    assert "argument --min-class-points: must be a positive integer (1 or more), got 0" in line, line


@pytest.mark.parametrize("option", [["--n-points", "10000"], ["--protocol", "random"], ["--seeds", "5"],
                                    ["--probes", "mlp"], ["--min-class-points", "20"]])  # fmt: skip
def test_an_option_a_preset_fixes_is_refused_even_at_its_default_value(tmp_path, capsys, option):
    """`--preset reference --n-points 10000` (the option's default) was accepted and ignored: the reference ran
    its own 5,000 points per task and both protocols. An option given is refused, whatever its value."""
    assert main(["evaluate", "--preset", "reference", *option, "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"satclip: error: --preset reference runs a fixed configuration: {option[0]} "), err
    assert not (tmp_path / "ev").exists()


def test_a_protocol_option_given_at_its_default_value_with_another_protocol_is_refused(tmp_path, capsys):
    argv = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--folds", "5", "--out", str(tmp_path / "ev")]
    assert main(argv) == 2
    assert "--protocol random does not use --folds" in capsys.readouterr().err


def _table(path, columns: dict, sep: str = ",") -> str:
    """A task table of ``columns`` (name → values) at ``path``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(list(columns))
        writer.writerows(zip(*columns.values(), strict=True))
    return str(path)


def _task_columns(n: int = 200, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(-180, 180, n), rng.uniform(-60, 70, n)
    return {"lon": lon, "lat": lat, "y": np.cos(np.radians(lat)) * 30 + rng.normal(0, 1, n)}


def _error(argv, capsys) -> str:
    """The one ``satclip: error`` line of a run refused once its task is read (exit 2; the lines before it say
    what was read)."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("satclip: error: ")]
    assert "Traceback" not in err and err.rstrip().endswith(line), err
    return line


def test_task_tables_that_would_score_nonsense_are_refused(tmp_path, capsys):
    """Task files that ran with exit 0 and a nonsense score: a coordinate as the target (R² 0.9999); a numeric
    column with one '-' (a classification of its values); a target of 1e200 (every score NaN); a ';'-separated
    file (told to name its longitude column)."""
    base = _task_columns()
    run = ["evaluate", *FAST, "--no-figures", "--out", str(tmp_path / "ev"), "--task-file"]
    table = _table(tmp_path / "t.csv", base)
    assert "--target-col 'lat' (target_col= in Python) is the latitude column; the target is what the location " \
           "should predict" in _error(
        [*run, table, "--target-col", "lat"], capsys)  # fmt: skip
    dashed = {**base, "y": [f"{v:.1f}" for v in base["y"]]}
    dashed["y"][7] = "-"
    dashed["y"][3], dashed["y"][5] = "NA", "n/a"  # (missing values on their own: they were listed as "no number" too)
    line = _error([*run, _table(tmp_path / "dash.csv", dashed)], capsys)
    assert "target 'y' holds 1 value(s) that are no number (data rows from 0): row 7: '-'; fix or remove" in line
    assert "or pass --task-kind classification (kind='classification' in Python) if the column holds class " \
           "labels" in line  # fmt: skip
    huge = _table(tmp_path / "huge.csv", {**base, "y": base["y"] * 1e200})
    assert "target 'y' reaches 3.1e+201, too large to score (its spread overflows)" in _error([*run, huge], capsys)
    assert not (tmp_path / "ev" / "results.csv").exists()


def test_task_tables_separated_by_semicolons_or_tabs_are_read(tmp_path, capsys):
    """A ';'-separated task file (as spreadsheets write them where the decimal mark is a comma) was refused as
    one column; its delimiter is sniffed as the embed command's is, and decimal commas are named."""
    from satclip.eval.tasks.table import table_task

    base = _task_columns()
    comma = table_task(_table(tmp_path / "t.csv", base))
    for sep in (";", "\t", "|"):
        other = table_task(_table(tmp_path / f"t{ord(sep)}.csv", base, sep=sep))
        np.testing.assert_array_equal(other.points, comma.points)
        np.testing.assert_array_equal(other.targets, comma.targets)
    decimal = {name: [f"{v:.3f}".replace(".", ",") for v in values] for name, values in base.items()}
    run = ["evaluate", *FAST, "--no-figures", "--out", str(tmp_path / "ev"), "--task-file"]
    line = _error([*run, _table(tmp_path / "dec.csv", decimal, sep=";")], capsys)
    assert "column 'lon' holds 200 value(s) that are no number" in line
    assert line.endswith("write decimal points (13.4): decimal commas are not read as numbers")


def test_task_tables_that_may_be_misread_are_scored_with_a_warning(tmp_path, capsys):
    """Whole-number codes 0–4 were regressed with only an INFO line (then a warning on stderr alone, not in
    results.md); rows over --n-points were dropped without a word; a target in units of 1e-14 was left
    unstandardised (its MSE ~0, 'best' by far)."""
    base = _task_columns()
    codes = _table(tmp_path / "codes.csv", {**base, "y": np.digitize(base["lat"], [-30, 0, 20, 45])})
    out = tmp_path / "ev"
    run = ["evaluate", *FAST, "--no-figures", "--task-file"]
    capsys.readouterr()
    assert main([*run, codes, "--out", str(out), "--n-points", "150"]) == 0
    err = capsys.readouterr().err
    assert "target 'y' holds only 5 distinct whole numbers (0, 1, 2, 3, 4): regressed as numbers; pass " \
           "--task-kind classification (kind='classification' in Python) if they are classes" in err  # fmt: skip
    assert "codes.csv: 200 rows: the task uses a sample of 150 of them (--n-points to change)" in err
    assert "codes: target 'y' holds only 5 distinct whole numbers (0, 1, 2, 3, 4): regressed as numbers; pass " \
           "--task-kind classification (kind='classification' in Python) if they are classes" in \
           (out / "results.md").read_text()  # fmt: skip  (it was on stderr alone)
    scores = {}
    for name, factor in (("plain", 1.0), ("tiny", 1e-14)):  # (the splits are seeded by the points)
        (tmp_path / name).mkdir()
        table = _table(tmp_path / name / "task.csv", {**base, "y": base["y"] * factor})
        assert main([*run, table, "--out", str(tmp_path / name / "ev")]) == 0
        with open(tmp_path / name / "ev" / "results.csv", newline="") as f:
            (row,) = list(csv.DictReader(f))
        scores[name] = float(row["mse"])
    assert scores["tiny"] == pytest.approx(scores["plain"], rel=1e-3), scores  # (the same task in other units)


def test_spatial_blocks_that_leave_a_fold_nothing_to_train_on_are_refused(tmp_path, capsys):
    """Three 10° blocks in two folds: the fold testing two blocks kept the third for validation and trained on
    nothing, exit 0 (regression: NaN scores averaged away; classification: an untrained probe's accuracy)."""
    rng = np.random.default_rng(3)
    lon = np.r_[rng.uniform(0, 9, 200), rng.uniform(11, 19, 100), rng.uniform(21, 29, 100)]
    lat = rng.uniform(41, 49, 400)
    table = _table(tmp_path / "three.csv", {"lon": lon, "lat": lat, "y": lon + lat + rng.normal(0, 1, 400)})
    argv = ["evaluate", *FAST, "--no-figures", "--task-file", table, "--protocol", "spatial-block", "--block-deg",
            "10", "--folds", "2", "--out", str(tmp_path / "ev")]  # fmt: skip
    line = _error(argv, capsys)
    assert "task three: its points lie in 3 blocks of 10°; fold " in line
    assert "leaving none to train on; use smaller blocks (--block-deg)" in line and "--folds" not in line


def test_points_holdout_continent_never_holds_out_are_counted(tmp_path, capsys):
    """Points in the sea (no continent, or Natural Earth's 'Seven seas') were never held out, and nothing said
    so; they are counted once per run (the reports make the folds again)."""
    rng = np.random.default_rng(5)
    n = 400
    lon, lat = rng.uniform(-180, 180, n), rng.uniform(-60, 60, n)
    table = _table(tmp_path / "globe.csv", {"lon": lon, "lat": lat, "y": np.cos(np.radians(lat)) + lon / 360})
    capsys.readouterr()
    argv = ["evaluate", *FAST, "--no-figures", "--task-file", table, "--protocol", "holdout-continent", "--out",
            str(tmp_path / "ev")]  # fmt: skip
    assert main(argv) == 0
    from satclip.eval import tasks

    labels = tasks.table_task(table).continents
    elsewhere = int((~np.isin(labels, ("Africa", "Asia", "Europe", "North America", "Oceania",
                                       "South America"))).sum())  # fmt: skip
    said = [line for line in capsys.readouterr().err.splitlines() if "lie on none of the continents" in line]
    assert elsewhere > 0 and len(said) == 1, said
    assert said[0].startswith(f"task globe: {elsewhere} of {n} points lie on none of the continents held out ("), said
    assert "(no continent)" in said[0] and "they are never held out" in said[0]


def test_a_continent_with_too_few_points_to_hold_out_is_named(tmp_path, capsys):
    """A continent with fewer points than a held-out one needs had no column in the report, and the spread was
    over the other continents, without a word."""
    rng = np.random.default_rng(6)
    centres = {"Europe": (10, 50, 60), "Africa": (20, 5, 60), "Asia": (90, 45, 60), "Oceania": (135, -25, 8)}
    lonlat = np.concatenate([np.column_stack([rng.uniform(lon - 4, lon + 4, n), rng.uniform(lat - 4, lat + 4, n)])
                             for lon, lat, n in centres.values()])  # fmt: skip
    table = _table(tmp_path / "four.csv", {"lon": lonlat[:, 0], "lat": lonlat[:, 1], "y": rng.normal(size=188)})
    from satclip.eval import tasks

    labels = tasks.table_task(table).continents
    assert {name: int((labels == name).sum()) for name in centres} == {name: n for name, (*_, n) in centres.items()}
    capsys.readouterr()
    argv = ["evaluate", *FAST, "--no-figures", "--task-file", table, "--protocol", "holdout-continent", "--out",
            str(tmp_path / "ev")]  # fmt: skip
    assert main(argv) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "a held-out continent needs" in line]
    assert said == ["task four: Oceania (8 points) has fewer than the 20 points a held-out continent needs: never "
                    "held out, and no column of the report; add rows to the table (--n-points only caps its rows) to "
                    "hold it out"], said  # (--n-points cannot add rows to a table)
    assert "Oceania" not in (tmp_path / "ev" / "results.csv").read_text()


def test_results_csv_names_each_rows_saved_predictions(tmp_path):
    """predictions/ keeps earlier runs' files (told apart by a digest of their settings) and results.csv named
    none of them: a user could not tell which file held a row's predictions. (A fold evaluated anew, as here, takes
    its earlier file away with its record.)"""
    out = tmp_path / "ev"
    named = []
    for k, scale in enumerate((1.0, 2.0)):  # (the same task name, other targets: a second run's own files)
        (tmp_path / str(k)).mkdir()
        columns = _task_columns()
        table = _table(tmp_path / str(k) / "task.csv", {**columns, "y": columns["y"] * scale})
        assert main(["evaluate", *FAST, "--no-figures", "--task-file", table, "--out", str(out)]) == 0
        with open(out / "results.csv", newline="") as f:
            (row,) = list(csv.DictReader(f))
        saved = np.load(out / row["predictions"])
        assert row["predictions"].startswith("predictions/") and len(saved["y_pred"]) == int(row["n_test"])
        named.append((row["predictions"], saved["y_true"]))
    assert named[0][0] != named[1][0] and list((out / "predictions").glob("*.npz")) == [out / named[1][0]]
    np.testing.assert_allclose(named[1][1], 2 * named[0][1])  # each row names its own run's file (same split)


def test_task_tables_as_spreadsheets_and_r_write_them_are_read_as_meant(tmp_path, caplog):
    """Numbers with decimal commas or thousands separators became a classification of their texts (exit 0);
    class labels NA and None were read as missing and their rows left out; a Parquet target of decimals or of
    numbers as text was classified (and refused with --task-kind regression); lon and lat as a Parquet file's
    index were lost; a ';' at every line's end asked for --target-col; a target of 1e-200 scored MSE 0."""
    pd = pytest.importorskip("pandas")
    from satclip.eval.tasks.table import table_task

    base = _task_columns()
    comma = {**base, "y": [f"{v:.1f}".replace(".", ",") for v in base["y"]]}
    with pytest.raises(ValueError, match=r"target 'y' holds numbers written with commas \('\d+,\d' in data row 0"):
        table_task(_table(tmp_path / "comma.csv", comma, sep=";"))
    thousands = {**base, "y": [f"{1000 * abs(v):,.0f}" for v in base["y"]]}
    with pytest.raises(ValueError, match="a decimal comma or a thousands separator"):
        table_task(_table(tmp_path / "thousands.csv", thousands))
    labels = np.where(np.asarray(base["lon"]) < 0, "NA", "EU")
    with caplog.at_level("WARNING"):
        task = table_task(_table(tmp_path / "na.csv", {**base, "y": labels}))
    assert sorted(task.classes) == ["EU", "NA"] and len(task.points) == len(labels)
    assert "has the class label 'NA'" in caplog.text and any("class label 'NA'" in note for note in task.notes)
    missing = {**base, "y": ["NA" if i % 10 == 0 else f"{v:.3f}" for i, v in enumerate(base["y"])]}
    task = table_task(_table(tmp_path / "r.csv", missing))  # (R writes NA in a column of numbers: missing)
    assert task.kind == "regression" and len(task.points) == 180
    frame = pd.DataFrame(base)
    for name, values in (("decimal", [decimal.Decimal(f"{v:.2f}") for v in base["y"]]),
                         ("text", [f"{v:.2f}" for v in base["y"]])):  # fmt: skip
        frame.assign(y=values).to_parquet(tmp_path / f"{name}.parquet")
        task = table_task(tmp_path / f"{name}.parquet")
        assert task.kind == "regression"
        np.testing.assert_allclose(np.sort(task.targets), np.sort(np.round(base["y"], 2)))
    frame.set_index(["lon", "lat"]).to_parquet(tmp_path / "indexed.parquet")
    plain = table_task(_table(tmp_path / "t.csv", base))
    np.testing.assert_array_equal(table_task(tmp_path / "indexed.parquet").points, plain.points)
    text = "lon;lat;y;\n" + "".join(f"{a};{b};{c};\n" for a, b, c in zip(*base.values(), strict=True))
    (tmp_path / "trailing.csv").write_text(text)
    assert table_task(tmp_path / "trailing.csv").kind == "regression"
    with pytest.raises(ValueError, match=r"target 'y' reaches only .*e-199, too small to score"):
        table_task(_table(tmp_path / "tiny.csv", {**base, "y": np.asarray(base["y"]) * 1e-200}))


def test_a_rerun_with_other_settings_says_whose_report_it_replaces(tmp_path, caplog):
    """A rerun into the same --out with other encoders replaced results.csv, results.md and the figures with no
    word (other commands refuse to replace another run's output); it says so, and a rerun of the same settings
    does not. Folds replaced in rows.jsonl were said to stay there."""
    task = _task_file(tmp_path / "t.csv")
    run = ["evaluate", "--no-cache", "--seeds", "1", "--no-figures", "--probes", "linear",
           "--task-file", str(task), "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main([*run, "--encoders", "wrap,direct"]) == 0
    with caplog.at_level("WARNING", logger="satclip"):
        assert main([*run, "--encoders", "wrap,direct"]) == 0
        assert "this report leaves out" not in caplog.text
        assert main([*run, "--encoders", "wrap"]) == 0
    rows = tmp_path / "ev" / "rows.jsonl"
    assert f"held results of an earlier run: 1 this report leaves out (encoders direct), which stay in {rows} for a " \
           "run with their settings to reuse; results.csv" in caplog.text  # fmt: skip
    assert len(rows.read_text().splitlines()) == 2
    caplog.clear()
    with caplog.at_level("WARNING", logger="satclip"):  # (other points were replaced without a word)
        assert main([*run, "--encoders", "wrap", "--n-points", "150"]) == 0
    assert f"{rows}: 1 record(s) of folds this run evaluates anew are replaced, evaluated before with folds of " \
           "other sizes (n_train, n_test: other --n-points, data or protocol options) for task t " \
           "(1 fold)\n" in caplog.text
    # (not also "other task data": the data's digest is of the sample, which another --n-points draws anew)
    assert "held results of an earlier run" not in caplog.text  # (said once, by the run that replaces them)
    assert "stay in" not in caplog.text and len(rows.read_text().splitlines()) == 2  # (it said they stayed)
    caplog.clear()
    other_task = ["evaluate", "--no-cache", "--seeds", "1", "--no-figures", "--probes", "linear", "--tasks",
                  "elevation", "--n-points", "150", "--encoders", "wrap", "--out", str(tmp_path / "ev")]  # fmt: skip
    with caplog.at_level("WARNING", logger="satclip"):  # (a task left out was named as its encoders)
        assert main(other_task) == 0
    assert "held results of an earlier run: 1 this report leaves out (tasks t), which stay in " in caplog.text


@pytest.mark.parametrize("seed, said", [("-1", "must be 0 or more, got -1"),
                                        (str(2**32), f"{2**32} is too large: seeds are 0 to {2**32 - 1}")])  # fmt: skip
def test_a_point_seed_out_of_range_is_named(tmp_path, capsys, seed, said):
    """`--point-seed -1` ended in numpy's "expected non-negative integer", naming no option; 10**20 was taken."""
    line = _refused(["evaluate", *FAST, "--tasks", "elevation", "--point-seed", seed, "--out", str(tmp_path)], capsys)
    assert f"argument --point-seed: {said}" in line, line
    from satclip.eval import TaskOptions

    with pytest.raises(ValueError, match=r"TaskOptions: seed=-1 must be an integer, 0 or more"):
        TaskOptions(seed=-1)


def test_data_without_the_task_that_reads_it_is_refused(tmp_path, capsys):
    """--data (the air-temperature stations) with tasks that never read it ran without a word of it."""
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n")
    assert main(["evaluate", *FAST, "--tasks", "elevation", "--data", str(table), "--out", str(tmp_path / "ev")]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: --data {table} is the air-temperature task's stations table, and the tasks (elevation) do "
        "not include air-temperature: add it to --tasks, or drop --data"
    )
    assert not (tmp_path / "ev").exists()


def test_an_empty_or_other_stations_table_says_what_it_should_be(tmp_path, capsys):
    """An empty --data said "lacks column(s) ['Lon', 'Lat', 'meanT']; found None", and neither message said what
    the file should be."""
    empty, other = tmp_path / "empty.csv", tmp_path / "other.csv"
    empty.write_text("")
    other.write_text("a,b\n1,2\n")
    wanted = "give the air-temperature stations table (the SatCLIP repository's stationDataAll.csv)"
    for table, said in ((empty, "is empty"), (other, "lacks column(s) ['Lon', 'Lat', 'meanT'] (found ['a', 'b'])")):
        argv = ["evaluate", *FAST, "--tasks", "air-temperature", "--offline", "--data", str(table), "--out",
                str(tmp_path / "ev")]  # fmt: skip
        assert main(argv) == 2
        assert one_error_line(capsys.readouterr().err) == f"satclip: error: {table} {said}; {wanted}"


@pytest.mark.parametrize(
    "spec, said",
    [
        ("theory(abc)", "encoder spec 'theory(abc)': parameter 'abc' is not key=value: write theory(key=value,...)"),
        ("sh-l10(l=5", "unbalanced '(' in encoder list 'sh-l10(l=5': close each '(' with ')'"),
        ("theory(min_radius=-1)", "encoder 'theory(min_radius=-1)': min_radius must be a positive finite number, "
                                  "got -1"),
        ("bluemarble-l10+range+beta=2", "encoder spec 'bluemarble-l10+range+beta=2': a retrieval spec is "
                                        "MODEL+range or MODEL+range+, its parameters in parentheses, e.g. "
                                        "bluemarble-l10+range+(beta=2)"),
    ],
)  # fmt: skip
def test_a_malformed_encoder_spec_says_how_to_write_it(tmp_path, capsys, spec, said):
    """They named the problem without the fix, or no encoder ("min_radius must be … got -1"), or listed every
    encoder and model in 700 characters, suggesting bluemarble-l10+range+ for bluemarble-l10+range+beta=2."""
    argv = ["evaluate", "--encoders", spec, "--tasks", "elevation", "--offline", "--out", str(tmp_path / "ev")]
    assert main(argv) == 2
    assert one_error_line(capsys.readouterr().err) == f"satclip: error: {said}"


def test_too_few_points_say_the_least_there_is(tmp_path, capsys):
    """--n-points 0 said "a positive integer (1 or more)"; the least is 10."""
    line = _refused(["evaluate", *FAST, "--tasks", "elevation", "--n-points", "0", "--out", str(tmp_path)], capsys)
    assert "argument --n-points: must be at least 10, got 0: " in line, line


def test_what_a_task_file_lost_or_repeats_is_in_results_md(tmp_path):
    """Rows without a target left out, a sample of a larger table, locations repeated (a random split's leak):
    said on stderr alone, while results.md showed the smaller count and called the scores well above chance."""
    table = _task_file(tmp_path / "task.csv")
    lines = table.read_text().splitlines()
    rows = lines[1:] + lines[1:11]  # 10 locations twice (one of them then without a target: 9 repeated)
    rows[0] = ",".join(rows[0].split(",")[:2] + [""])  # one without a target
    table.write_text("\n".join([lines[0], *rows]) + "\n")
    out = tmp_path / "ev"
    argv = ["evaluate", *FAST, "--task-file", str(table), "--n-points", "150", "--out", str(out), "--no-figures"]
    assert main(argv) == 0
    text = (out / "results.md").read_text()
    assert ("Notes on the data: task: 1 of 210 row(s) have no target 'y' (empty or NaN): left out; task: 9 row(s) "
            "repeat another row's location: a random split can put one location in both training and test points "
            "(--protocol spatial-block cannot); task: 209 rows: the task uses a sample of 150 of them (--n-points "
            "to change).") in text


def test_a_column_named_nearly_so_is_suggested(tmp_path, capsys):
    """`--target-col Y` for a column `y` listed the columns without pointing at it."""
    table = _task_file(tmp_path / "task.csv")
    assert main(["evaluate", *FAST, "--task-file", str(table), "--target-col", "Y", "--out", str(tmp_path / "a")]) == 2
    assert f"{table}: no column 'Y', given as --target-col (target_col= in Python); did you mean 'y'? columns are " \
           "['lon', 'lat', 'y']" in \
        capsys.readouterr().err  # fmt: skip
    assert main(["evaluate", *FAST, "--task-file", str(table), "--lon-col", "LON", "--out", str(tmp_path / "b")]) == 2
    assert "no column 'LON', given as --lon-col (lon_col= in Python); did you mean 'lon'?" in capsys.readouterr().err


def test_the_headline_numbers_are_printed(tmp_path, capsys):
    """``satclip evaluate`` printed only where it wrote its results: a user opened results.md to see any number.
    It prints the first probe's primary metric per encoder, mean ± std over the seeds as results.csv holds them."""
    table = _task_file(tmp_path / "task.csv")
    out = tmp_path / "ev"
    argv = ["evaluate", "--encoders", "wrap,direct", "--no-cache", "--seeds", "2", "--probes", "linear",
            "--task-file", str(table), "--task-name", "lat", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    header, _, *lines = capsys.readouterr().out.splitlines()  # (the protocol and seeds were named nowhere)
    assert header == "protocol random, 2 seeds (0, 1); ± = sample std (n − 1) over seeds (one random split each)"
    assert lines[0].startswith("probe linear, primary metric: MSE ↓") and "mean ± std" in lines[0]
    assert lines[1].split() == ["encoder", "lat"]
    with open(out / "results.csv") as f:
        mse = defaultdict(list)
        for row in csv.DictReader(f):
            mse[row["encoder"]].append(float(row["mse"]))
    assert sorted(mse) == ["direct", "wrap"] and all(len(v) == 2 for v in mse.values())
    for line, encoder in zip(lines[2:4], ("wrap", "direct"), strict=True):
        name, mean, plus_minus, std = line.rstrip("*").split()
        assert (name, plus_minus) == (encoder, "±")
        assert float(mean) == round(float(np.mean(mse[encoder])), 3)
        assert float(std) == round(float(np.std(mse[encoder], ddof=1)), 3)
    assert lines[-1].startswith("4 results; wrote ")


def test_a_map_of_a_task_whose_name_is_no_file_name_keeps_its_caption(tmp_path):
    """`--task-name "yield 2024"` (check_task_name's own example) drew map_yield_2024-<digest>_mlp.png, whose
    caption was looked for as map_yield 2024_: results.md captioned it with its bare file name."""
    table = tmp_path / "points.csv"
    _task_file(table)
    out = tmp_path / "ev"
    assert main(["evaluate", *FAST, "--task-file", str(table), "--task-name", "yield 2024", "--out", str(out)]) == 0
    (figure,) = [path.name for path in out.glob("map_*.png")]
    text = (out / "results.md").read_text()
    assert f"*{figure}: yield 2024: the test points of the first seed's folds" in text, text.split("## Figures")[1]


def test_a_point_seed_that_drew_no_points_is_said_unused(tmp_path, capsys):
    """`--point-seed 5` on a table of no more rows than --n-points changed nothing (the table is used whole), exit 0
    without a word, and results.md's Settings claimed "point seed 5". It warns, as --precision that set no encoder's
    precision, and the Settings line says no point seed was used; a sampled table still names it."""
    table = _task_file(tmp_path / "points.csv")
    argv = ["evaluate", *FAST, "--no-figures", "--task-file", str(table), "--point-seed", "5"]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    assert ("--point-seed 5 drew the points of no task: points has no more rows than --n-points (10000) and is used "
            "whole, so the seed changes nothing; drop --point-seed") in capsys.readouterr().err
    settings = (tmp_path / "whole" / "results.md").read_text().split("Settings: ")[1].split(";")[0]
    assert settings == "at most 10,000 points per task (no task had more: each was used whole, so no point seed)"
    assert main([*argv, "--n-points", "100", "--out", str(tmp_path / "drawn")]) == 0
    assert "drew the points of no task" not in capsys.readouterr().err
    settings = (tmp_path / "drawn" / "results.md").read_text().split("Settings: ")[1].split(";")[0]
    assert settings == "at most 100 points per task (point seed 5)"


def test_a_task_table_in_radians_is_noted_once_per_task_and_in_results_md(tmp_path, capsys):
    """A table of points in radians (valid degrees, off West Africa) was scored with exit 0 and no word, while
    satclip embed notes such points: --task-file is read as embed reads it."""
    columns = _task_columns()
    table = _table(tmp_path / "rad.csv", {**columns, "lon": np.radians(columns["lon"]),
                                          "lat": np.radians(columns["lat"])})  # fmt: skip
    out = tmp_path / "ev"
    capsys.readouterr()
    assert main(["evaluate", "--encoders", "wrap,sh-l10", "--no-cache", "--seeds", "1", "--probes", "linear",
                 "--no-figures", "--task-file", table, "--out", str(out)]) == 0  # fmt: skip
    note = ("every point lies within ±3.14° of longitude and ±1.57° of latitude, as coordinates in radians do: if "
            "they are, convert 'lon' and 'lat' to degrees (× 180/π)")  # fmt: skip
    assert capsys.readouterr().err.count(note) == 1  # (once for the task, not once per encoder)
    assert f"rad: {note}" in (out / "results.md").read_text()
    plain = _table(tmp_path / "deg.csv", columns)  # (degrees: no note)
    assert main(["evaluate", *FAST, "--no-figures", "--task-file", plain, "--out", str(tmp_path / "deg")]) == 0
    assert "radians" not in capsys.readouterr().err


def test_saved_classification_predictions_name_their_classes(tmp_path):
    """predictions/*.npz held y_true and y_pred as class codes, and no output named the classes they stand for."""
    columns = _task_columns()
    zones = np.where(columns["lat"] > 30, "north", np.where(columns["lat"] < -10, "south", "mid"))
    table = _table(tmp_path / "zones.csv", {**columns, "y": zones})
    out = tmp_path / "ev"
    assert main(["evaluate", *FAST, "--no-figures", "--task-file", table, "--out", str(out)]) == 0
    with open(out / "results.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    with np.load(out / row["predictions"], allow_pickle=False) as saved:
        classes, y_true, points = saved["classes"], saved["y_true"], saved["points"]
    assert list(classes) == ["mid", "north", "south"]
    by_point = dict(zip(map(tuple, np.stack([columns["lon"], columns["lat"]], axis=1)), zones, strict=True))
    assert [by_point[tuple(p)] for p in points] == list(classes[y_true])  # (the codes map back to the labels)


def test_the_classes_a_task_drops_are_named_in_results_md(tmp_path, capsys):
    """Rare classes dropped were named on stderr alone, as "dropped 2 classes with < 20 points (4 points)" (and
    "dropped 1 classes"); results.md gave their count only."""
    columns = _task_columns()
    zones = np.where(columns["lat"] > 20, "north", "south").astype(object)
    zones[:4] = ["ice", "ice", "ice", "sand"]
    table = _table(tmp_path / "zones.csv", {**columns, "y": zones})
    out = tmp_path / "ev"
    capsys.readouterr()
    assert main(["evaluate", *FAST, "--no-figures", "--task-file", table, "--out", str(out)]) == 0
    assert "zones: dropped 2 classes with < 20 points (ice: 3 points, sand: 1 point); 2 classes remain" in \
        capsys.readouterr().err  # fmt: skip
    assert "zones keeps 2 of 4 classes (196 of 200 points; drops ice: 3 points, sand: 1 point)." in \
        (out / "results.md").read_text()  # fmt: skip
    zones[:4] = ["ice", "north", "north", "north"]
    table = _table(tmp_path / "one.csv", {**columns, "y": zones})
    assert main(["evaluate", *FAST, "--no-figures", "--task-file", table, "--out", str(tmp_path / "one")]) == 0
    assert "one: dropped 1 class with < 20 points (ice: 1 point); 2 classes remain" in capsys.readouterr().err
