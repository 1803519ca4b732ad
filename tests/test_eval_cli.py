"""``satclip evaluate`` end to end through the real CLI ``main()`` on small versions of every task."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from satclip.cli import main
from tests.conftest import AIR_TEMPERATURE_CSV, one_error_line, require

pytest.importorskip("matplotlib")
pytest.importorskip("shapefile")
pytest.importorskip("h5py")
pytest.importorskip("tifffile")

TASKS = ("air-temperature", "era5-temperature", "era5-precipitation", "elevation", "koppen", "landcover", "country")


def _task_file(path):
    from satclip.data.land import sample_land_points

    points = sample_land_points(240, seed=99)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["longitude", "latitude", "ndvi"])
        for (lon, lat), value in zip(points, np.cos(np.radians(points[:, 1])) + 0.01 * points[:, 0], strict=True):
            writer.writerow([lon, lat, value])
    return path


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_runs_all_tasks_and_a_task_file_reproducibly(tmp_path):
    data = require(AIR_TEMPERATURE_CSV)
    table = _task_file(tmp_path / "user.csv")
    args = ["evaluate", "--encoders", "wrap,untrained-satclip", "--tasks", "all", "--task-file", str(table),
            "--protocol", "random", "--seeds", "2", "--n-points", "300", "--max-epochs", "2",
            "--min-class-points", "5", "--data", str(data)]  # fmt: skip
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    out = tmp_path / "a"
    rows = _rows(out / "results.csv")
    assert len(rows) == 8 * 2 * 2  # tasks (7 + file) × encoders × seeds
    assert {r["task"] for r in rows} == set(TASKS) | {"user"}
    by_cell = defaultdict(list)
    for r in rows:
        metrics = ("mse", "r2") if r["kind"] == "regression" else ("accuracy", "macro_f1")
        by_cell[(r["task"], r["encoder"], r["probe"])].append(tuple(float(r[m]) for m in metrics))
    # different seeds → different splits → a real spread, not one result copied (accuracy on ~40 test
    # points can tie by chance, so both metrics are compared)
    assert all(len(v) == 2 and v[0] != v[1] for v in by_cell.values())
    assert all(v[0][0] != v[1][0] for k, v in by_cell.items() if k[0] in TASKS[:4] + ("user",))
    text = (out / "results.md").read_text()
    assert "**" in text and "± = sample std (n − 1) over seeds" in text and "| user | regression | 240 |" in text
    assert (out / "bars_mlp.png").stat().st_size > 10_000
    for task in (*TASKS, "user"):
        assert (out / f"map_{task}_mlp.png").stat().st_size > 10_000

    # same seeds → the same table, byte for byte (here from a fresh output folder, embeddings cached)
    assert main(args + ["--out", str(tmp_path / "b"), "--no-figures"]) == 0
    assert (tmp_path / "b" / "results.csv").read_bytes() == (out / "results.csv").read_bytes()

    # re-running into the same folder resumes: nothing is fitted again
    before = (out / "rows.jsonl").read_text()
    assert main(args + ["--out", str(out), "--no-figures"]) == 0
    assert (out / "rows.jsonl").read_text() == before
    assert (out / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()


def test_maps_of_a_rerun_show_only_its_own_predictions(tmp_path):
    """A second evaluation into the same folder (another protocol, fewer folds) drew its residual maps from
    its own test points plus the earlier run's saved predictions."""
    from satclip.eval.runner import load_predictions

    out = tmp_path / "ev"
    common = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--n-points", "300", "--seeds", "1",
              "--probes", "linear", "--no-figures", "--out", str(out)]  # fmt: skip
    assert main(common) == 0
    assert main([*common, "--protocol", "spatial-block", "--folds", "3"]) == 0
    assert main([*common, "--protocol", "spatial-block", "--folds", "2"]) == 0
    # the runs' test predictions are kept, but those of the 3-fold run's folds 0 and 1, which the last run replaced
    assert len(list((out / "predictions").iterdir())) == 1 + 1 + 2
    last = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()][-2:]  # the last run's
    assert [(r["protocol"], r["fold"]) for r in last] == [("spatial-block", f"seed=0/fold={i}") for i in (0, 1)]
    shown = load_predictions(out, last)
    assert list(shown["folds"]) == ["seed=0/fold=0", "seed=0/fold=1"]
    assert len(shown["y_pred"]) == sum(r["n_test"] for r in last)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # the reused direct/wrap rows had no saved seed-1 predictions: the map showed sh-l10 alone
        (["--encoders", "direct,wrap", "--seeds", "0,1"], ["--encoders", "direct,wrap,sh-l10", "--seeds", "1,2"]),
        # the map, titled "2 folds of seed=1", mixed the test points of seeds 0 and 1
        (["--encoders", "wrap", "--seeds", "0,"], ["--encoders", "wrap", "--seeds", "1,0"]),
    ],
)
def test_maps_of_a_rerun_are_those_of_a_fresh_run(tmp_path, first, second):
    """Residual maps show the current run's first seed for every encoder, whatever earlier runs into the same
    folder fitted and kept: a rerun draws the map a fresh run of the same command draws."""
    common = ["evaluate", "--tasks", "elevation", "--n-points", "300", "--probes", "linear"]
    assert main([*common, *first, "--out", str(tmp_path / "used")]) == 0
    assert main([*common, *second, "--out", str(tmp_path / "used")]) == 0
    assert main([*common, *second, "--out", str(tmp_path / "fresh")]) == 0
    for name in ("map_elevation_linear.png", "results.csv"):
        assert (tmp_path / "used" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name


def test_a_rerun_without_figures_reuses_folds_whose_predictions_are_gone(tmp_path, caplog):
    """With --no-figures no map needs the predictions, yet the folds of the first seed whose predictions were
    gone were fitted again (appending duplicate rows) while the log said every fold was reused; with figures
    they are fitted again for the maps, and the log counts them as fitted."""
    import logging
    import shlex
    import shutil

    from satclip.eval.tasks.base import DEFAULT_POINT_SEED

    out = tmp_path / "ev"
    argv = ["evaluate", "--encoders", "direct,wrap", "--tasks", "elevation", "--n-points", "300", "--seeds", "2",
            "--probes", "linear", "--no-figures", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    # (its report says how to run it again: two runs of other --n-points had the same header)
    from satclip import __version__

    assert (f"Settings: at most 300 points per task (point seed {DEFAULT_POINT_SEED}); embeddings in float64 "
            f"(`direct`, `wrap`); satclip {__version__}. Command: "
            f"`satclip {shlex.join(argv)}`") in (out / "results.md").read_text().splitlines()  # fmt: skip
    rows = (out / "rows.jsonl").read_text()
    shutil.rmtree(out / "predictions")
    with caplog.at_level(logging.INFO, logger="satclip"):
        assert main(argv) == 0
    assert (out / "rows.jsonl").read_text() == rows
    assert f"reusing 4 of 4 folds evaluated by an earlier run in {out}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="satclip"):
        assert main([a for a in argv if a != "--no-figures"]) == 0  # the maps of seed 0: its 2 folds again
    assert len((out / "rows.jsonl").read_text().splitlines()) == 4 + 2
    assert f"reusing 2 of 4 folds evaluated by an earlier run in {out}" in caplog.text


def test_model_paths_with_parentheses_or_commas_are_evaluated(tmp_path, capsys):
    """A model directory named "m10 (1)" was read as m10 with a parameter '1', and "v1,v2" as two encoders."""
    import shutil

    from satclip.eval import encoders
    from satclip.io.resolve import resolve

    shipped = resolve("bluemarble-l10").path
    paths = [str(tmp_path / "m10 (1)"), str(tmp_path / "v1,v2")]
    for path in paths:
        shutil.copytree(shipped, path)
    assert encoders.split_specs(f"wrap,{paths[0]},{paths[1]},sh-l10") == ["wrap", *paths, "sh-l10"]
    assert encoders.create(paths[0]).embedding_dim == 256  # EvalConfig(encoders=(path,)) builds it so
    out = tmp_path / "ev"
    argv = ["evaluate", "--encoders", f"wrap,{paths[0]},{paths[1]}", "--tasks", "elevation", "--n-points", "300",
            "--probes", "linear", "--seeds", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert [r["encoder"] for r in _rows(out / "results.csv")] == ["wrap", *paths]
    assert "| `m10 (1)` | `" in (out / "results.md").read_text()  # its short name is the directory's
    # one that does not exist says what to do
    missing = str(tmp_path / "gone (2)")
    capsys.readouterr()
    assert main([*argv[:2], missing, *argv[3:]]) == 2
    assert "parameter '2' is not key=value; a model path with parentheses" in one_error_line(capsys.readouterr().err)


def test_evaluate_takes_trust_checkpoint_for_the_checkpoints_of_its_encoders(tmp_path, capsys):
    """An untrusted .ckpt in --encoders was refused with "pass --trust-checkpoint", which evaluate did not take
    ("unrecognized arguments"); the option reaches the encoders it loads, and the presets' configurations."""
    from satclip.eval.reference import paper_config, reference_configs
    from tests.test_load import _malicious_checkpoint

    path, marker = _malicious_checkpoint(tmp_path, legacy=False)
    argv = ["evaluate", "--encoders", f"wrap,{path}", "--tasks", "elevation", "--n-points", "300", "--probes",
            "linear", "--seeds", "1", "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main(argv) == 1
    assert "--trust-checkpoint" in one_error_line(capsys.readouterr().err) and not marker.exists()
    assert main([*argv, "--trust-checkpoint"]) == 0
    assert marker.exists()  # (the file's code ran: trusted, as asked)
    assert [r["encoder"] for r in _rows(tmp_path / "ev" / "results.csv")] == ["wrap", str(path)]
    assert all(c.trust_checkpoint for c in reference_configs(trust_checkpoint=True).values())
    assert paper_config(trust_checkpoint=True).trust_checkpoint and not paper_config().trust_checkpoint


def test_figures_of_an_earlier_run_do_not_linger(tmp_path):
    """A rerun into the same folder drawing other figures (or none: --no-figures) left the earlier run's PNGs
    beside a report they did not describe; files satclip did not write there stay."""
    out = tmp_path / "ev"
    common = ["evaluate", "--encoders", "wrap", "--n-points", "300", "--seeds", "1", "--probes", "linear",
              "--out", str(out)]  # fmt: skip
    assert main([*common, "--tasks", "elevation,country"]) == 0
    figures = {"bars_linear.png", "map_elevation_linear.png", "map_country_linear.png"}
    assert figures <= {p.name for p in out.iterdir()}
    (out / "map_mine_linear.png").write_bytes(b"the user's own picture")
    assert main([*common, "--tasks", "country"]) == 0
    pngs = {p.name for p in out.glob("*.png")}
    assert pngs == {"bars_linear.png", "map_country_linear.png", "map_mine_linear.png"}
    assert main([*common, "--tasks", "country", "--no-figures"]) == 0
    assert {p.name for p in out.glob("*.png")} == {"map_mine_linear.png"}
    assert ".png" not in (out / "results.md").read_text()


def test_evaluate_holdout_spatial_block_and_paper(tmp_path, capsys):
    data = require(AIR_TEMPERATURE_CSV)
    common = ["--n-points", "500", "--seeds", "1", "--probes", "linear", "--no-figures"]
    assert main(["evaluate", "--encoders", "sh-l10", "--tasks", "era5-temperature", "--protocol",
                 "holdout-continent", "--out", str(tmp_path / "h"), *common]) == 0  # fmt: skip
    rows = _rows(tmp_path / "h" / "results.csv")
    assert len(rows) == 12 and {r["variant"] for r in rows} == {"zero-shot", "1%"}
    # the map of a hold-out run shows every continent's zero-shot test points
    from satclip.eval.runner import load_predictions

    keyed = [json.loads(line) for line in (tmp_path / "h" / "rows.jsonl").read_text().splitlines()]
    merged = load_predictions(tmp_path / "h", keyed)
    assert len(merged["folds"]) == 6 and all(f.endswith("/zero-shot") for f in merged["folds"])
    assert len(merged["y_pred"]) == sum(int(r["n_test"]) for r in rows if r["variant"] == "zero-shot")
    assert {r["group"] for r in rows} == {"Africa", "Asia", "Europe", "North America", "Oceania", "South America"}
    assert "## Per held-out continent" in (tmp_path / "h" / "results.md").read_text()

    assert main(["evaluate", "--encoders", "wrap", "--tasks", "koppen", "--protocol", "spatial-block",
                 "--block-deg", "30", "--folds", "3", "--min-class-points", "5", "--out", str(tmp_path / "s"),
                 *common]) == 0  # fmt: skip
    folds = [r["fold"] for r in _rows(tmp_path / "s" / "results.csv")]
    assert folds == ["seed=0/fold=0", "seed=0/fold=1", "seed=0/fold=2"]

    assert main(["evaluate", "--preset", "paper", "--encoders", "wrap", "--seeds", "2", "--max-epochs", "40",
                 "--workers", "1", "--data", str(data), "--out", str(tmp_path / "p")]) == 0  # fmt: skip
    # (it named results.md alone)
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path / 'p' / 'results.md'} and " \
        f"{tmp_path / 'p' / 'results.csv'}"  # fmt: skip
    rows = _rows(tmp_path / "p" / "results.csv")
    assert [(r["task"], r["probe"], r["n_train"], r["n_val"], r["n_test"]) for r in rows] == [
        ("air-temperature", "paper-mlp", "1538", "0", "1538")] * 2  # fmt: skip
    assert all(float(r["mse_max_scaled"]) > 0 for r in rows)
    assert json.loads(rows[0]["hparams"])["shared_hidden"] is True
    text = (tmp_path / "p" / "results.md").read_text()
    assert "MSE 0.25 ± 0.02" in text and "Protocol differences" in text and "target / max" in text
    assert "one seeded 50/50 split per seed, mean ± std." in text
    assert main(["evaluate", "--preset", "paper", "--encoders", "wrap", "--seeds", "1", "--max-epochs", "40",
                 "--workers", "1", "--data", str(data), "--out", str(tmp_path / "p1")]) == 0  # fmt: skip
    # (one seed said "mean ± std")
    assert "one seeded 50/50 split per seed, one seed: no spread." in (tmp_path / "p1" / "results.md").read_text()
    # the command that ran it, as other runs record it; only the options of the probe it ran (mlp's was listed)
    assert "Command: `satclip evaluate --preset paper --encoders wrap" in text
    assert "probe options paper-mlp={'epochs': 40}" in text and "mlp={'max_epochs'" not in text


def test_the_paper_report_says_how_many_stations_it_used(tmp_path):
    """It said "the same 3,076 stations" whatever --n-points had sampled."""
    data = require(AIR_TEMPERATURE_CSV)
    argv = ["evaluate", "--encoders", "wrap", "--tasks", "air-temperature", "--protocol", "paper", "--seeds", "1",
            "--max-epochs", "5", "--no-figures", "--data", str(data)]  # fmt: skip
    assert main([*argv, "--n-points", "300", "--out", str(tmp_path / "few")]) == 0
    text = (tmp_path / "few" / "results.md").read_text()
    assert "Data: 300 of the notebook's 3,076 stations (Hooker et al. 2018), sampled (--n-points)" in text
    assert "the same 3,076" not in text
    # every table has its chance row, the notebook's scale (target / max) too (it had none)
    tables = [block for block in text.split("\n\n") if block.startswith("| encoder |")]
    assert len(tables) == 3 and all("| *chance* |" in table for table in tables), tables
    assert float(tables[2].split("| *chance* | ")[1].split(" |")[0]) > 0
    assert main([*argv, "--out", str(tmp_path / "all")]) == 0
    assert "Data: the same 3,076 stations (Hooker et al. 2018)" in (tmp_path / "all" / "results.md").read_text()
    assert "## Compared with the paper" in (tmp_path / "all" / "results.md").read_text()


def test_the_paper_protocol_on_a_table_is_not_compared_with_the_papers_air_temperature(tmp_path):
    """A table of other data, named air-temperature too, was set beside the paper's air-temperature MSE 0.25."""
    table = _task_file(tmp_path / "air-temperature.csv")
    out = tmp_path / "ev"
    assert main(["evaluate", "--encoders", "wrap", "--task-file", str(table), "--protocol", "paper", "--seeds", "1",
                 "--max-epochs", "5", "--no-figures", "--out", str(out)]) == 0  # fmt: skip
    text = (out / "results.md").read_text()
    assert "Compared with the paper" not in text and "0.25" not in text and "air temperature" not in text, text
    assert "## The notebook's protocol" in text
    assert "Data: `air-temperature`, 240 points (user table " in text and "not the notebook's stations" in text


def test_tasks_are_loaded_once_per_evaluation(tmp_path, caplog):
    """Reports loaded the tasks again after the fits: the work and its warnings came twice."""
    argv = ["evaluate", "--encoders", "wrap", "--tasks", "elevation,koppen", "--protocol", "paper", "--seeds", "1",
            "--n-points", "300", "--max-epochs", "5", "--out", str(tmp_path / "ev")]  # fmt: skip
    with caplog.at_level("WARNING", logger="satclip.eval"):
        assert main(argv) == 0
    assert [r.getMessage() for r in caplog.records if "regression only" in r.getMessage()] == [
        "the paper protocol is regression only; skipping koppen"
    ]


def test_evaluate_offline_without_station_file_says_what_to_fetch(tmp_path, capsys):
    args = ["evaluate", "--encoders", "wrap", "--tasks", "air-temperature", "--offline", "--out", str(tmp_path)]
    assert main(args) == 1  # a download that could not happen: a runtime failure, as the README says
    err = capsys.readouterr().err
    assert re.search("stationDataAll.csv.*--data", err)
    # (the offline way, not said; then not given to paste, where the default --tasks all needs the download)
    assert err.strip().endswith("; or leave air-temperature out of the tasks (--tasks era5-temperature,"
                                "era5-precipitation,elevation,koppen,landcover,country)")  # fmt: skip


@pytest.fixture
def no_network(monkeypatch):
    """The station table's download fails as offline, and every attempt is recorded."""
    import urllib.error

    from satclip.eval.tasks import air_temperature

    attempts = []

    def offline(url, timeout):
        attempts.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(air_temperature, "urlopen", offline)
    return attempts


def test_a_failed_station_download_is_a_runtime_failure(tmp_path, capsys, no_network):
    assert main(["evaluate", "--encoders", "wrap", "--tasks", "air-temperature", "--out", str(tmp_path)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert no_network and "could not get it: downloading" in line and "--data PATH" in line


@pytest.mark.parametrize(
    ("encoders", "tasks", "expected"),
    [
        ("bogus", "all", "unknown encoder 'bogus'"),
        ("sh-l11", "all", "unknown encoder 'sh-l11': did you mean 'sh-l10' or 'sh-l40'?"),
        ("sh-l10(foo=5)", "all", "location encoder 'sh-l10' got unexpected parameter(s) ['foo']; it accepts none"),
        ("wrap", "biome,air-temperature", "unknown evaluation task 'biome'"),
        # a model spec's download (HF_HUB_OFFLINE=1 here) comes after the cheap check of the task names
        ("satclip-resnet18-l10", "biome", "unknown evaluation task 'biome'"),
    ],
)  # fmt: skip
def test_cheap_checks_come_before_any_download(tmp_path, capsys, no_network, encoders, tasks, expected):
    assert main(["evaluate", "--encoders", encoders, "--tasks", tasks, "--out", str(tmp_path / "out")]) == 2
    assert expected in one_error_line(capsys.readouterr().err)
    assert not no_network  # nothing was downloaded (or tried)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sh-l10(foo=5)", "location encoder 'sh-l10' got unexpected parameter(s) ['foo']; it accepts none"),
        ("sh-l10(legendre_polys=abc)",
         "location encoder 'sh-l10' got unexpected parameter(s) ['legendre_polys']; it accepts none"),
        ("geoclip(x=1)", "location encoder 'geoclip' got unexpected parameter(s) ['x']; it accepts none"),
        ("untrained-satclip(foo=1)",
         "location encoder 'untrained-satclip' got unexpected parameter(s) ['foo']; it accepts ['legendre_polys', "
         "'seed']"),
        ("bluemarble-l10(foo=1)",
         "location encoder 'bluemarble-l10' got unexpected parameter(s) ['foo']; it accepts ['device', 'dtype', "
         "'harmonics_calculation', 'precision', 'trust_checkpoint']"),
        ("sphericalharmonics(bogus=1)",
         "positional encoding 'sphericalharmonics' got unexpected parameter(s) ['bogus']; it accepts "
         "['harmonics_calculation', 'legendre_polys']"),
        ("sphericalharmonics(legendre_polys=abc)",
         "encoder 'sphericalharmonics(legendre_polys=abc)': parameter legendre_polys='abc' must be an integer "
         "(its default is 10)"),
        ("untrained-satclip(seed=1.5)",
         "encoder 'untrained-satclip(seed=1.5)': parameter seed=1.5 must be an integer (its default is 0)"),
        ("theory(min_radius=abc)", "parameter min_radius='abc' must be a number (its default is 1.0)"),
        ("bluemarble-l10(trust_checkpoint=yes)",
         "parameter trust_checkpoint='yes' must be True or False (its default is False)"),
        # "unexpected error (TypeError)" when the database was opened
        ("bluemarble-l10+range+(database=5)", "parameter database=5 must be text in quotes (its default is 'auto')"),
        ("sphericalharmonics(harmonics_calculation=True)",
         "parameter harmonics_calculation=True must be text in quotes (its default is 'analytic-stable')"),
        # the last one silently won
        ("theory(min_radius=1,min_radius=5)",
         "encoder spec 'theory(min_radius=1,min_radius=5)': parameter min_radius is given twice (min_radius=1, "
         "min_radius=5); give it once"),
    ],
)  # fmt: skip
def test_a_bad_encoder_parameter_is_named_with_its_encoder(tmp_path, capsys, spec, expected):
    assert main(["evaluate", "--encoders", spec, "--tasks", "country", "--out", str(tmp_path / "out")]) == 2
    assert expected in one_error_line(capsys.readouterr().err)



@pytest.mark.parametrize("name", ["emb.npy", "emb.parquet", "points.csv"])
def test_a_file_of_embeddings_is_no_encoder(tmp_path, capsys, name):
    """`--encoders emb.npy` (embeddings `satclip embed` wrote) was tried as a checkpoint: "emb.npy is not a
    readable checkpoint: … download or export it again"."""
    embeddings = tmp_path / name
    np.save(embeddings.with_suffix(".npy"), np.zeros((3, 4), np.float32))
    embeddings.with_suffix(".npy").rename(embeddings)
    assert main(["evaluate", "--encoders", str(embeddings), "--tasks", "country", "--out", str(tmp_path / "out")]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: encoder {str(embeddings)!r} is a file of embeddings or a table ({embeddings.suffix}), not an "
        "encoder: encoders are models (a checkpoint, a native model directory, a model name) and raw encodings, whose "
        "embeddings the evaluation computes at each task's points; precomputed embeddings cannot be evaluated")
    assert not (tmp_path / "out").exists()

def test_reference_benchmark_configuration():
    from satclip.eval import reference

    configs = reference.reference_configs(["my-model/"])
    assert configs["random"].encoders == (*reference.REFERENCE_ENCODERS, "my-model/")
    assert configs["random"].tasks == TASKS and configs["random"].seeds == (0, 1, 2, 3, 4)
    assert configs["holdout-continent"].tasks == TASKS[:-1]  # no zero-shot country classification
    assert configs["holdout-continent"].seeds == (0,) and configs["random"].task_options.n_points == 5000
    assert configs["random"].workers == 2 and configs["random"].threads == 1


def test_the_reference_preset_never_writes_into_a_users_directory(tmp_path, monkeypatch, capsys):
    """`--preset reference --out DIR`, DIR a folder of the user's, was written into (DIR/random/ …) and its
    results.md replaced; the evaluate without a preset refused it. An earlier reference run's directory (which
    an older satclip left unmarked) is still written into again."""
    from satclip import safe_output
    from satclip.eval import reference

    def fake_evaluation(config, out, **kwargs):
        safe_output.make_owned_dir(out, kind="evaluation")
        (out / "results.md").write_text(f"# satclip evaluate: {config.protocol}\n")

    monkeypatch.setattr(reference, "run_evaluation", fake_evaluation)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("MY OWN NOTES")
    argv = ["evaluate", "--preset", "reference", "--no-figures", "--out", str(mine)]
    assert main(argv) == 2
    assert "holds files satclip did not create" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in mine.iterdir()) == ["results.md"]
    assert (mine / "results.md").read_text() == "MY OWN NOTES"
    earlier = tmp_path / "earlier"  # as an older satclip left it: protocol directories marked, the top not
    for protocol in ("random", "holdout-continent"):
        fake_evaluation(reference.reference_configs()[protocol], earlier / protocol)
    (earlier / "results.md").write_text("# Downstream evaluation\n")
    assert reference.run_reference(earlier).read_text().startswith("# Downstream evaluation")
    assert safe_output.owned_kind(earlier) == reference.REFERENCE_KIND
    assert reference.run_reference(tmp_path / "new").is_file()


@pytest.mark.slow
def test_reference_benchmark_report(tmp_path):
    from satclip.eval import reference

    path = reference.run_reference(
        tmp_path, n_points=300, seeds=(0,), tasks=("era5-temperature",), probes=("linear",), workers=1,
        command="satclip evaluate --preset reference",
    )  # fmt: skip
    text = path.read_text()
    assert text.startswith("# Downstream evaluation") and "Command: `satclip evaluate --preset reference`" in text
    assert "## satclip evaluate: random" in text and "## satclip evaluate: holdout-continent" in text
    for encoder in reference.REFERENCE_ENCODERS:
        assert f"| {encoder} |" in text


@pytest.mark.slow
def test_worker_processes_give_the_same_table(tmp_path):
    args = ["evaluate", "--encoders", "sh-l10,wrap", "--tasks", "era5-temperature,koppen", "--protocol",
            "holdout-continent", "--n-points", "500", "--seeds", "1", "--max-epochs", "3", "--no-figures"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    assert (tmp_path / "two" / "results.csv").read_bytes() == (tmp_path / "one" / "results.csv").read_bytes()


def test_protocol_options_are_checked_before_any_download(tmp_path, capsys, no_network):
    argv = ["evaluate", "--encoders", "wrap", "--tasks", "air-temperature", "--protocol", "spatial-block",
            "--folds", "1", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "at least 2 folds (--block-deg, --folds" in one_error_line(capsys.readouterr().err)
    assert not no_network and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # the paper protocol fits its own probe: --probes was replaced silently, unknown names included
        (["--protocol", "paper", "--probes", "linear,nosuch"],
         "--protocol paper does not use --probes (--probes applies to random, holdout-continent, spatial-block); "
         "drop them, or choose that protocol"),
        (["--folds", "3"], "--protocol random does not use --folds (--folds applies to spatial-block)"),
        (["--protocol", "holdout-continent", "--block-deg", "5", "--folds", "3"],
         "--protocol holdout-continent does not use --block-deg, --folds (--block-deg applies to spatial-block; "
         "--folds applies to spatial-block)"),
    ],
)  # fmt: skip
def test_options_the_protocol_does_not_use_are_refused(tmp_path, capsys, no_network, options, expected):
    out = tmp_path / "out"
    assert main(["evaluate", "--encoders", "wrap", "--tasks", "air-temperature", *options, "--out", str(out)]) == 2
    assert expected in one_error_line(capsys.readouterr().err)
    assert not no_network and not out.exists()


def test_a_protocol_with_its_own_probe_refuses_others_from_python(tmp_path):
    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig

    with pytest.raises(BadInputError, match=r"protocol 'paper' fits its own probe \(paper-mlp\): probes \['linear'\]"):
        EvalConfig(encoders=("wrap",), tasks=("elevation",), protocol="paper", probes=("linear",))  # (as it is made)
    with pytest.raises(KeyError, match="unknown probe 'nosuch'"):
        EvalConfig(encoders=("wrap",), tasks=("elevation",), protocol="paper", probes=("mlp", "nosuch"))


def test_presets_refuse_what_they_fix_and_keep_what_applies(tmp_path, capsys, monkeypatch):
    """--preset paper ran air-temperature whatever --task-file/--protocol/--probes/--n-points said, drew the
    figures despite --no-figures, downloaded despite --offline, and its report said 3000 epochs for 5."""
    data = require(AIR_TEMPERATURE_CSV)
    out = tmp_path / "paper"
    base = ["evaluate", "--preset", "paper", "--encoders", "wrap", "--out", str(out)]
    assert main([*base, "--data", str(data), "--protocol", "spatial-block", "--n-points", "300"]) == 2
    expected = ("satclip: error: --preset paper runs a fixed configuration: --protocol, --n-points do(es) not "
                "apply to it; drop them, or run without --preset")
    assert one_error_line(capsys.readouterr().err) == expected
    assert not out.exists()
    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "empty-cache"))
    assert main([*base, "--offline"]) == 1
    assert "download" in one_error_line(capsys.readouterr().err) and not (tmp_path / "empty-cache").exists()
    assert main([*base, "--data", str(data), "--seeds", "1", "--max-epochs", "5", "--no-figures"]) == 0
    assert not list(out.glob("*.png"))
    assert "full-batch Adam lr 1e-3, 5 epochs" in (out / "results.md").read_text()


def test_repeated_seeds_or_probes_are_refused(tmp_path, capsys):
    """--seeds 0,0,0 fitted one split three times: '0.039 ± 0.000' and a bold winner 'by more than the spreads'."""
    common = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--n-points", "300", "--out", str(tmp_path)]
    for seeds in ("0,0", "-1,2", ","):
        assert main([*common, f"--seeds={seeds}"]) == 2
        assert "--seeds takes a count (5) or a list of different seeds >= 0" in capsys.readouterr().err
    assert main([*common, "--seeds", "1", "--probes", "linear,linear"]) == 2
    assert one_error_line(capsys.readouterr().err) == "satclip: error: probes must be unique, got ['linear', 'linear']"


def test_one_given_seed_is_explained(tmp_path, capsys):
    """--seeds 0 is a count of none, and neither --help nor the error said how to give one seed."""
    out = tmp_path / "out"
    common = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--n-points", "300", "--out", str(out)]
    assert main([*common, "--seeds", "0"]) == 2
    assert "--seeds count must be >= 1, got 0 (seed 0 alone: --seeds 0,)" in capsys.readouterr().err
    assert main([*common, "--seeds", "-1"]) == 2  # (it suggested --seeds -1, which is refused in turn)
    assert "--seeds count must be >= 1, got -1 (seeds are 0 or more)" in capsys.readouterr().err
    assert main(["evaluate", "--help"]) == 0
    assert "one given seed takes a comma: 3, (3 alone is a count)" in " ".join(capsys.readouterr().out.split())


def test_an_encoder_spelt_twice_is_refused(tmp_path, capsys):
    """direct(),direct ran the same encoder twice (a false tie in every table)."""
    out = tmp_path / "out"
    argv = ["evaluate", "--tasks", "elevation", "--n-points", "300", "--seeds", "1", "--out", str(out)]
    assert main([*argv, "--encoders", "direct(),wrap,direct"]) == 2
    expected = (
        "satclip: error: encoders 'direct()' and 'direct' are the same encoder; give it once (keep 'direct()', "
        "drop 'direct')"
    )
    assert one_error_line(capsys.readouterr().err) == expected
    assert not out.exists()


def test_a_model_spelt_twice_is_refused(tmp_path, capsys, monkeypatch):
    """runs/m10,./runs/m10 (or its absolute path, a link to it, runs/m10/) evaluated one model twice: the
    check compared the text, and every table showed a false tie. The CLI and the Python API refuse it."""
    import shutil

    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig, encoders
    from satclip.io.resolve import resolve

    monkeypatch.chdir(tmp_path)
    shutil.copytree(resolve("bluemarble-l10").path, tmp_path / "runs" / "m10")
    (tmp_path / "link").symlink_to(tmp_path / "runs" / "m10", target_is_directory=True)
    model = str((tmp_path / "runs" / "m10").resolve())
    out = tmp_path / "out"
    argv = ["evaluate", "--tasks", "elevation", "--n-points", "300", "--seeds", "1", "--probes", "linear",
            "--out", str(out)]  # fmt: skip
    for other in ("./runs/m10", model, "link", "runs/m10/", "runs/m10/config.json"):
        assert main([*argv, "--encoders", f"runs/m10,wrap,{other}"]) == 2
        expected = (
            f"satclip: error: encoders 'runs/m10' and {other!r} are the same model ({model}); give it once "
            f"(keep 'runs/m10', drop {other!r})"
        )
        assert one_error_line(capsys.readouterr().err) == expected
        assert not out.exists()
        with pytest.raises(BadInputError, match=re.escape(expected.removeprefix("satclip: error: "))):
            EvalConfig(encoders=("runs/m10", "wrap", other), tasks=("elevation",), seeds=(1,))
    # two copies are two models, and names are compared as names
    shutil.copytree(tmp_path / "runs" / "m10", tmp_path / "runs" / "m10-copy")
    encoders.check_distinct(["runs/m10", "runs/m10-copy", "bluemarble-l10", "direct()", "wrap"])


def test_an_encoder_spelt_another_way_is_refused(tmp_path, capsys, monkeypatch):
    """sh-l10,sphericalharmonics(legendre_polys=10) (an alias and what it builds), untrained-satclip and
    untrained-satclip(seed=0) (a default written out), a retrieval's database=db and database=./db/ and its
    defaults written out each ran one encoder twice, a false tie in every table: the check compared the
    parsed name and parameters as given. The CLI and the Python API refuse them; encoders that differ run."""
    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig, encoders
    from satclip.eval.encoders.retrieval import EVAL_EXCLUDE_RADIUS_KM
    from satclip.retrieval.encoder import DEFAULTS

    monkeypatch.chdir(tmp_path)
    (tmp_path / "db").mkdir()
    out = tmp_path / "out"
    argv = ["evaluate", "--tasks", "elevation", "--n-points", "300", "--seeds", "1", "--probes", "linear",
            "--out", str(out)]  # fmt: skip
    assert main([*argv, "--encoders", "sh-l10,wrap,sphericalharmonics(legendre_polys=10)"]) == 2
    expected = (
        "satclip: error: encoders 'sh-l10' and 'sphericalharmonics(legendre_polys=10)' are the same encoder (both "
        "are sphericalharmonics(harmonics_calculation='analytic-stable',legendre_polys=10)); give it once (keep "
        "'sh-l10', drop 'sphericalharmonics(legendre_polys=10)')"
    )
    assert one_error_line(capsys.readouterr().err) == expected
    assert main([*argv, "--encoders", "untrained-satclip,untrained-satclip(seed=0)"]) == 2
    expected = (
        "satclip: error: encoders 'untrained-satclip' and 'untrained-satclip(seed=0)' are the same encoder (both "
        "are untrained-satclip(legendre_polys=10,seed=0)); give it once (keep 'untrained-satclip', drop "
        "'untrained-satclip(seed=0)')"
    )
    assert one_error_line(capsys.readouterr().err) == expected
    assert not out.exists()

    k = DEFAULTS["k"]
    same = [
        ("sh-l10", "sphericalharmonics(legendre_polys=10)"), ("sh-l10", "sphericalharmonics"),
        ("sh-l40", "sphericalharmonics(harmonics_calculation='analytic-stable',legendre_polys=40)"),
        ("untrained-satclip", "untrained-satclip(seed=0)"), ("untrained-satclip", "untrained-satclip-l10"),
        ("untrained-satclip-l40", "untrained-satclip(legendre_polys=40,seed=0)"),
        ("theory", "theory(min_radius=1,max_radius=3.6e2,frequency_num=16)"), ("direct", "direct()"),
        ("bluemarble-l10+range(database=db)", "bluemarble-l10+range(database=./db/)"),
        ("bluemarble-l10+range(database=db)", f"bluemarble-l10+range(database={tmp_path / 'db'})"),
        ("bluemarble-l10+range", "bluemarble-l10+range(beta=0)"),
        ("bluemarble-l10+range", "bluemarble-l10+range+(beta=0)"),  # (the same embeddings: test_retrieval.py)
        ("bluemarble-l10+range+", f"bluemarble-l10+range+(k={k},exclude_radius_km={EVAL_EXCLUDE_RADIUS_KM:g})"),
        ("satclip-vit16-l40", "hf://microsoft/SatCLIP-ViT16-L40"),
    ]  # fmt: skip
    points = np.array([[13.4, 52.5], [-58.4, -34.6], [151.2, -33.9]])
    for first, other in same:
        if "+range" not in first and not first.startswith("satclip-"):  # (what makes them one: they embed alike)
            np.testing.assert_array_equal(encoders.create(first).embed(points), encoders.create(other).embed(points))
        message = f"encoders {first!r} and {other!r} are the same "
        with pytest.raises(BadInputError, match=re.escape(message)) as raised:
            EvalConfig(encoders=(first, "wrap", other), tasks=("elevation",), seeds=(1,))
        assert str(raised.value).endswith(f"; give it once (keep {first!r}, drop {other!r})")
    # encoders that differ (a parameter, the model, the database, an alias of another size) run side by side
    differ = ["sh-l10", "sh-l40", "sphericalharmonics(legendre_polys=11)", "untrained-satclip",
              "untrained-satclip(seed=1)", "untrained-satclip-l40", "theory", "theory(min_radius=1000.5)",
              "bluemarble-l10+range", "bluemarble-l10+range+", "bluemarble-l10+range(database=db)",
              "bluemarble-l10+range+(beta=0.5)", "bluemarble-l10", "bluemarble-l40", "satclip-vit16-l10"]  # fmt: skip
    assert EvalConfig(encoders=tuple(differ), tasks=("elevation",), seeds=(1,)).encoders == tuple(differ)


def test_a_retrieval_encoder_spelt_twice_is_named_as_given(tmp_path, capsys):
    """bluemarble-l10+range and bluemarble-l10+range+(beta=0), one encoder, ran twice; and two spellings of one
    were named by the package's model directory ("both are /…/satclip/pretrained/bluemarble-l10+range+(…)")."""
    out = tmp_path / "out"
    argv = ["evaluate", "--tasks", "elevation", "--n-points", "300", "--seeds", "1", "--out", str(out)]
    assert main([*argv, "--encoders", "bluemarble-l10+range,bluemarble-l10+range+(beta=0)"]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "satclip: error: encoders 'bluemarble-l10+range' and 'bluemarble-l10+range+(beta=0)' are the same encoder "
        "(both are bluemarble-l10+range(database='auto',exclude_heldout=False,exclude_radius_km=10.0,k=16,"
        "temperature=0.01)); give it once (keep 'bluemarble-l10+range', drop 'bluemarble-l10+range+(beta=0)')"
    )
    assert main([*argv, "--encoders", "bluemarble-l10+range+,bluemarble-l10+range+(k=16)"]) == 2
    assert "(both are bluemarble-l10+range+(beta=1.0," in one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_user_tables_without_enough_finite_targets_are_refused(tmp_path, capsys):
    """All targets missing ran '2 fits' with no test points; an inf target gave empty metrics; both with exit 0
    and 'every encoder is well above chance'. --lon-col and --lat-col naming one column were accepted."""
    rows = "".join(f"{i},{i},{i}\n" for i in range(20))
    cases = {
        "empty.csv": ("lon,lat,y\n1,2,\n3,4,\n", [], "0 of 2 row(s) have a target 'y'; a task needs at least 10"),
        "inf.csv": ("lon,lat,y\n" + rows.replace("3,3,3", "3,3,inf"), [],
                    "target 'y' is not a finite number in 1 row(s) (e.g. inf)"),
        "same.csv": ("lon,lat,y\n" + rows, ["--lon-col", "lat", "--lat-col", "lat"],
                     "--lon-col and --lat-col (lon_col= and lat_col= in Python) both name column 'lat'"),
    }  # fmt: skip
    for name, (text, extra, message) in cases.items():
        (tmp_path / name).write_text(text)
        argv = ["evaluate", "--encoders", "wrap", "--task-file", str(tmp_path / name), "--seeds", "1", *extra]
        assert main([*argv, "--out", str(tmp_path / f"out-{name}")]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("satclip: error: ") and message in last
        assert not (tmp_path / f"out-{name}").exists()


def test_text_in_a_coordinate_column_is_named_with_its_file_column_and_rows(tmp_path, capsys):
    """It was "could not convert string to float: 'abc'", naming neither file, column nor row."""
    lines = [f"{i},{i},{i}" for i in range(20)]
    lines[4], lines[9] = "abc,4,4", "1.5°,9,9"
    table = tmp_path / "points.csv"
    table.write_text("\n".join(["lon,lat,y", *lines, "12,,12"]) + "\n")
    out = tmp_path / "out"
    argv = ["evaluate", "--encoders", "wrap", "--task-file", str(table), "--seeds", "1", "--out", str(out)]
    assert main(argv) == 2
    expected = (
        f"{table}: column 'lon' holds 2 value(s) that are no number (data rows from 0): row 4: 'abc', row 9: '1.5°'; "
        "coordinates must be (lon, lat) in decimal degrees: fix or remove those rows"
    )
    assert one_error_line(capsys.readouterr().err) == f"satclip: error: {expected}"
    assert not out.exists()


def test_an_evaluation_into_the_current_directory(tmp_path, monkeypatch, capsys):
    """`--out .` failed with "PosixPath('.') has an empty name" (its lock had no name to sit beside)."""
    rng = np.random.default_rng(0)
    table = tmp_path / "points.csv"
    pd.DataFrame({"lon": rng.uniform(-180, 180, 200), "lat": rng.uniform(-60, 60, 200),
                  "y": rng.normal(size=200)}).to_csv(table, index=False)  # fmt: skip
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    argv = ["evaluate", "--encoders", "wrap", "--task-file", str(table), "--seeds", "1", "--probes", "linear",
            "--no-figures", "--out", "."]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "here" / "results.csv").is_file() and not list(tmp_path.glob(".*.lock"))


def test_an_evaluation_inside_a_model_directory_it_reads_is_refused(tmp_path, capsys):
    """`--out MODEL/ev` was written into the model directory (every other command refuses that), and a later
    `convert --overwrite` of the model then refused the directory for holding ev/."""
    model = tmp_path / "model"
    assert main(["convert", "bluemarble-l10", str(model), "--target", "native", "--location-only"]) == 0
    argv = ["evaluate", "--encoders", str(model), "--tasks", "elevation", "--n-points", "200", "--seeds", "1",
            "--probes", "linear", "--no-figures", "--out", str(model / "ev")]  # fmt: skip
    assert main(argv) == 2
    assert f"the output {model / 'ev'} is inside the input {model}" in capsys.readouterr().err
    assert sorted(p.name for p in model.iterdir()) == [".satclip-output", "config.json", "model.safetensors"]


def test_unreadable_user_tables_are_named(tmp_path, capsys):
    """They gave "'utf-8' codec can't decode byte …" or "No columns to parse from file", without the file."""
    cases = {
        "latin1.csv": ("lon,lat,name\n1,2,Zürich\n".encode("latin-1"), "is not UTF-8 text"),
        "empty.csv": (b"", "is empty: expected a header row"),
        "not.parquet": (b"hello", "is not a readable parquet table"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        argv = ["evaluate", "--encoders", "wrap", "--task-file", str(tmp_path / name), "--out", str(tmp_path / "o")]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"satclip: error: --task-file {tmp_path / name} {message}") and "\n" not in err, err
    (tmp_path / "stations.csv").write_bytes("Lon,Lat,meanT\n1,2,3\n# Zürich\n".encode("latin-1"))
    from satclip.eval.tasks.air_temperature import read_stations

    with pytest.raises(ValueError, match=f"{tmp_path / 'stations.csv'} is not UTF-8 text"):
        read_stations(tmp_path / "stations.csv")


def test_repeated_locations_in_a_user_table_are_pointed_out(tmp_path, capsys):
    rows = "".join(f"{i},{i % 10},{i}\n" for i in range(20))  # lon i, lat i mod 10: distinct points
    (tmp_path / "t.csv").write_text("lon,lat,y\n" + rows + "3,3,99\n4,4,98\n")  # two repeats
    argv = ["evaluate", "--encoders", "wrap", "--task-file", str(tmp_path / "t.csv"), "--seeds", "1", "--probes",
            "linear", "--no-figures", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    assert "2 row(s) repeat another row's location" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_cache_entry_is_rebuilt(tmp_path, damage):
    """A truncated or emptied embedding cache entry was 'unexpected error (BadZipFile)' / '(EOFError)', where the
    cache promises to rebuild a damaged entry."""
    from satclip.eval.cache import cache_root, cached_arrays

    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(1000.0)}

    first = cached_arrays("embeddings", f"entry-{damage}", build)
    path = cache_root() / "embeddings" / f"entry-{damage}.npz"
    with open(path, "r+b") as f:
        f.truncate(100 if damage == "truncated" else 0)
    again = cached_arrays("embeddings", f"entry-{damage}", build)
    assert len(calls) == 2 and np.array_equal(first["x"], again["x"])
    assert np.array_equal(cached_arrays("embeddings", f"entry-{damage}", build)["x"], first["x"]) and len(calls) == 2


def test_a_link_in_place_of_the_rows_file_is_not_appended_through(tmp_path, capsys):
    """rows.jsonl was opened for appending through a symbolic link put there since the last run, writing fold
    records into the file it pointed at."""
    out = tmp_path / "ev"
    common = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--n-points", "300", "--seeds", "1",
              "--probes", "linear", "--no-figures", "--out", str(out)]  # fmt: skip
    assert main(common) == 0
    capsys.readouterr()
    (out / "rows.jsonl").unlink()
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    (out / "rows.jsonl").symlink_to(notes)
    assert main(common) == 2
    assert "rows.jsonl is a symbolic link" in one_error_line(capsys.readouterr().err)
    assert notes.read_text() == "mine\n"


def test_invalid_points_of_a_task_file_are_numbered_as_in_the_file(tmp_path, capsys):
    """Out-of-range coordinates were numbered after the rows without a target were dropped (data row 5 was
    'row 4'), while text in a coordinate column was numbered as in the file."""
    lines = [f"{i},{i},{i}" for i in range(12)]
    lines[2], lines[5] = "2,2,", "500,5,5"  # row 2: no target (dropped); row 5: out of range
    table = tmp_path / "points.csv"
    table.write_text("\n".join(["lon,lat,y", *lines]) + "\n")
    argv = ["evaluate", "--encoders", "wrap", "--task-file", str(table), "--seeds", "1", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    error = one_error_line(capsys.readouterr().err)
    assert "data rows from 0: 1 invalid point(s): row 5: (lon=500.0, lat=5.0)" in error


@pytest.mark.parametrize(("option", "name"), [("--task-file", "results.csv"), ("--data", "timings.csv")])
def test_an_evaluation_holding_a_table_it_reads_is_refused(tmp_path, capsys, option, name):
    """A --task-file (or --data) kept in the evaluation's own --out under a name it writes (results.csv,
    timings.csv) was replaced by the results, exit 0: the user's table was gone."""
    data = require(AIR_TEMPERATURE_CSV)
    out = tmp_path / "ev"
    common = ["--seeds", "1", "--probes", "linear", "--no-figures", "--n-points", "300", "--out", str(out)]
    first = ["evaluate", "--encoders", "wrap", "--tasks", "air-temperature", "--data", str(data), *common]
    assert main(first) == 0
    table = out / name
    table.write_bytes(data.read_bytes())
    if option == "--task-file":
        argv = ["evaluate", "--encoders", "wrap", "--task-file", str(table), "--target-col", "meanT", "--lon-col",
                "Lon", "--lat-col", "Lat", "--task-kind", "regression", *common]  # fmt: skip
    else:
        argv = ["evaluate", "--encoders", "wrap", "--tasks", "air-temperature", "--data", str(table), *common]
    capsys.readouterr()
    assert main(argv) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: the output {out} contains the input {table}; choose another output path"
    )
    assert table.read_bytes() == data.read_bytes()


def test_holdout_continent_on_points_of_one_continent_is_refused(tmp_path, capsys):
    """A task file whose points all lie in Africa: `--protocol holdout-continent` fitted its zero-shot probe on 0
    points (empty metrics, numpy's 'Mean of empty slice' warnings) and its 1 % probe on 1 point, exit 0."""
    rng = np.random.default_rng(1)
    table = tmp_path / "africa.csv"
    rows = [f"{lon},{lat},{y}" for lon, lat, y in zip(rng.uniform(0, 20, 300), rng.uniform(5, 15, 300),
                                                       rng.normal(size=300), strict=True)]  # fmt: skip
    table.write_text("\n".join(["lon,lat,y", *rows]) + "\n")
    out = tmp_path / "ev"
    argv = ["evaluate", "--encoders", "wrap", "--task-file", str(table), "--target-col", "y", "--seeds", "1",
            "--protocol", "holdout-continent", "--no-figures", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after the INFO lines on the task it read)
    assert err.startswith("satclip: error: task africa: holdout-continent holds out one continent"), err
    assert "Africa 300: add rows to the table (--n-points only caps its rows) if they span continents" in err, err
    assert err.endswith("use --protocol random or spatial-block for points of one continent"), err


def test_task_file_options_without_a_task_file_are_refused(tmp_path, capsys):
    """--target-col, --task-kind, --lon-col and --task-name without --task-file were ignored: the named task ran
    as it is, exit 0."""
    argv = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--target-col", "y", "--task-kind",
            "classification", "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main(argv) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "satclip: error: --target-col, --task-kind describe(s) a --task-file table, and none is given: add "
        "--task-file TABLE, or drop them"
    )
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # grew memory at 75 MB/s until the machine ran out
        (["--tasks", "country", "--n-points", "1000000000000"], "--n-points: must be at most 1,000,000, got"),
        # ignored without a word
        (["--tasks", "air-temperature", "--probes", "linear", "--max-epochs", "1"],
         "--max-epochs sets the MLP probe's epochs, and --probes linear has no mlp"),
        # "give --tasks and/or --task-file", though --tasks was given
        (["--tasks", "country", "--protocol", "paper"],
         "no tasks to evaluate: the paper protocol runs regression tasks only, and none of the given ones is one"),
        (["--tasks", "country", "--protocol", "holdout-continent"],
         "no tasks to evaluate: holdout-continent cannot score country"),
    ],
)  # fmt: skip
def test_evaluate_refuses_what_it_could_not_honour(tmp_path, capsys, extra, expected):
    assert main(["evaluate", "--encoders", "wrap", "--seeds", "1", "--no-figures", *extra,
                 "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    assert expected in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out" / "results.csv").exists()


def test_holdout_continent_skips_country_saying_why(tmp_path, caplog):
    """country under holdout-continent scored 0.000 ± 0.000 for every encoder (a held-out continent's countries
    are never trained on), and results.md called that a tie "more seeds might rank"."""
    from satclip.eval import reference
    from satclip.eval.runner import load_tasks

    config = reference.reference_configs(tasks=("country", "koppen"), n_points=200)["random"]
    from dataclasses import replace

    with caplog.at_level("WARNING", logger="satclip.eval.runner"):
        tasks = load_tasks(replace(config, protocol="holdout-continent"))
    assert [t.name for t in tasks] == ["koppen"]
    assert "skipping country under holdout-continent: no country lies in two continents" in caplog.text


def test_offline_downloads_no_model_either(tmp_path, monkeypatch, capsys):
    """`--offline` said "never download" but still asked the hub for a released model (a connection attempt in
    its error); now no request is made and the error says it is offline and what to fetch."""
    import os

    hub_constants = pytest.importorskip("huggingface_hub.constants")
    import huggingface_hub

    from .conftest import AIR_TEMPERATURE_CSV, require

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # (as a user's shell: online)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    asked = []
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: asked.append(a) or 1 / 0)
    argv = ["evaluate", "--encoders", "satclip-resnet18-l10", "--tasks", "air-temperature", "--seeds", "1",
            "--data", str(require(AIR_TEMPERATURE_CSV)), "--no-figures", "--offline", "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "(HF_HUB_OFFLINE is set) and it is not in the hub cache" in err and asked == []
    assert "HF_HUB_OFFLINE" not in os.environ


def test_evaluate_embeds_in_float32_unless_told_and_says_so(tmp_path, monkeypatch):
    """Models were loaded in "auto", which a timing calibration resolves to bf16 or float32 (on a busy machine
    the other one), moving the scores; results.md and results.csv said neither."""
    from satclip.eval import EvalConfig, TaskFile, evaluate
    from satclip.models import precision

    calibrated = precision.resolve

    def busy_machine(asked, encoder, device=None):  # ("auto" here measures bf16 as the faster)
        if precision.check(asked) == "auto":
            return precision.Choice("bf16", "auto", "a busy machine's timing")
        return calibrated(asked, encoder, device)

    monkeypatch.setattr(precision, "resolve", busy_machine)
    monkeypatch.delenv(precision.ENV, raising=False)
    table = _task_file(tmp_path / "t.csv")
    argv = ["evaluate", "--encoders", "bluemarble-l10,wrap", "--task-file", str(table), "--seeds", "1", "--probes",
            "linear", "--no-figures"]  # fmt: skip
    for extra, expected in (([], "float32"), (["--precision", "auto"], "bf16"), (["--precision", "bf16"], "bf16")):
        out = tmp_path / "_".join(["out", *extra])
        assert main([*argv, *extra, "--out", str(out)]) == 0
        assert {(r["encoder"], r["precision"]) for r in _rows(out / "results.csv")} == {
            ("bluemarble-l10", expected), ("wrap", "float64")}  # fmt: skip
        assert f"embeddings in {expected} (`bluemarble-l10`), float64 (`wrap`)" in (out / "results.md").read_text()
    config = EvalConfig(encoders=("bluemarble-l10",), task_file=TaskFile(table), seeds=(1,), probes=("linear",))
    assert {row["precision"] for row in evaluate(config)} == {"float32"}
    monkeypatch.setenv(precision.ENV, "auto")
    assert {row["precision"] for row in evaluate(config)} == {"bf16"}


def test_evaluate_reports_progress_as_lines_where_no_bar_redraws(tmp_path, capsys):
    """Into a log (or a TERM=dumb terminal) evaluate wrote tqdm's redraws: carriage returns and block characters
    between its lines. It writes plain lines there: fits done of the total, the time, the latest fit."""
    table = _task_file(tmp_path / "t.csv")
    argv = ["evaluate", "--encoders", "wrap,direct", "--task-file", str(table), "--seeds", "1", "--probes", "linear",
            "--no-figures", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "█" not in err, repr(err)
    assert re.search(r"^2 of 2 fits \(100 %\) in \d+ s, t · (wrap|direct) · linear$", err, re.MULTILINE), err


def test_evaluate_reports_progress_as_lines_without_tqdm(tmp_path, capsys, monkeypatch):
    """Without tqdm (an extra's) evaluate reported no progress at all, even into a log where it writes lines."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tqdm" else find_spec(name, *a))
    table = _task_file(tmp_path / "t.csv")
    argv = ["evaluate", "--encoders", "wrap", "--task-file", str(table), "--seeds", "1", "--probes", "linear",
            "--no-figures", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    assert re.search(r"^1 of 1 fits \(100 %\) in \d+ s", capsys.readouterr().err, re.MULTILINE)


def test_a_precision_no_encoder_takes_is_said(tmp_path, caplog):
    """`--precision bf16` with raw encodings only (they compute in float64) changed nothing, and only results.md's
    Settings line said what ran; with a satclip model among the encoders nothing is said."""
    table = _task_file(tmp_path / "t.csv")
    argv = ["evaluate", "--task-file", str(table), "--seeds", "1", "--probes", "linear", "--no-figures",
            "--precision", "bf16"]  # fmt: skip
    assert main([*argv, "--encoders", "wrap,direct", "--out", str(tmp_path / "raw")]) == 0
    assert "--precision bf16 set the precision of none of the encoders" in caplog.text
    assert "wrap (float64), direct (float64)" in caplog.text
    caplog.clear()
    assert main([*argv, "--encoders", "bluemarble-l10,wrap", "--out", str(tmp_path / "model")]) == 0
    assert "set the precision of none" not in caplog.text


def test_a_geo_task_file_of_shapes_or_layers_takes_centroids_and_layer(tmp_path, capsys):
    """A GeoJSON of polygons and a GeoPackage of two layers were refused as "unknown table format"; read as embed
    reads them, their errors advise --centroids and --layer, which evaluate takes as embed does."""
    geopandas = pytest.importorskip("geopandas")
    rng = np.random.default_rng(0)
    points = geopandas.GeoDataFrame({"y": rng.normal(size=60)}, crs="EPSG:4326",
                                    geometry=geopandas.points_from_xy(rng.uniform(-170, 170, 60),
                                                                      rng.uniform(-60, 60, 60)))  # fmt: skip
    points.set_geometry(points.to_crs("EPSG:3857").buffer(1000.0).to_crs("EPSG:4326")).to_file(
        tmp_path / "shapes.geojson", driver="GeoJSON")  # fmt: skip
    for layer in ("a", "b"):
        points.to_file(tmp_path / "two.gpkg", layer=layer, driver="GPKG")
    points.drop(columns="geometry").assign(lon=points.geometry.x, lat=points.geometry.y).to_csv(tmp_path / "t.csv")
    base = ["evaluate", "--encoders", "wrap", "--seeds", "1", "--probes", "linear", "--no-figures"]
    refusals = [
        (["--task-file", str(tmp_path / "shapes.geojson")], "feature 0 is a Polygon; only Point geometries"),
        (["--task-file", str(tmp_path / "two.gpkg")], "holds 2 layers (a, b): choose one with --layer NAME"),
        (["--task-file", str(tmp_path / "t.csv"), "--centroids"], "holds points as lon/lat: drop --centroids"),
        (["--task-file", str(tmp_path / "t.csv"), "--layer", "a"], "is not one: drop --layer"),
        (["--tasks", "elevation", "--centroids"], "--centroids describe(s) a --task-file table, and none is given"),
    ]
    for extra, message in refusals:
        assert main([*base, *extra, "--out", str(tmp_path / "refused")]) == 2, extra
        assert message in one_error_line(capsys.readouterr().err), extra
    assert not (tmp_path / "refused").exists()
    for extra in (["--task-file", str(tmp_path / "shapes.geojson"), "--centroids"],
                  ["--task-file", str(tmp_path / "two.gpkg"), "--layer", "b"]):  # fmt: skip
        out = tmp_path / f"out-{extra[2]}"
        assert main([*base, *extra, "--out", str(out)]) == 0, capsys.readouterr().err
        assert len(pd.read_csv(out / "results.csv")) == 1


def test_the_results_record_the_weights_of_each_satclip_model(tmp_path):
    """results.csv, results.md and rows.jsonl named a model by the spec as typed: new weights at the same path
    (every run's export is RUN/export/last) gave results no one could tell apart. Each row records the sha256 that
    embed, map and export record of the model (model_record), results.md's settings line too; none for a raw one."""
    import satclip
    from satclip.models.location_encoder import model_identity

    model = tmp_path / "export" / "last"
    table = _task_file(tmp_path / "t.csv")
    shas = []
    for shipped in ("bluemarble-l10", "bluemarble-l40"):  # (new weights at the same path)
        assert main(["convert", shipped, str(model), "--target", "native", "--overwrite"]) == 0
        sha = model_identity(satclip.load(model))["sha256"]
        out = tmp_path / f"eval-{shipped}"
        assert main(["evaluate", "--encoders", f"{model},wrap", "--task-file", str(table), "--seeds", "1", "--probes",
                     "linear", "--no-figures", "--out", str(out)]) == 0  # fmt: skip
        assert {(r["encoder"], r["model_sha256"]) for r in _rows(out / "results.csv")} == {(str(model), sha),
                                                                                         ("wrap", "")}  # fmt: skip
        assert f"not the sha256 of its model.safetensors file) `{model}` {sha}" in (out / "results.md").read_text()
        recorded = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
        assert {r["model_sha256"] for r in recorded if r["encoder"] == str(model)} == {sha}
        shas.append(sha)
    assert shas[0] != shas[1]


def test_a_predictions_folder_that_is_a_link_is_refused(tmp_path, capsys):
    """With out/predictions a symbolic link to a user's folder, evaluate wrote its prediction files into that
    folder, outside --out."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    out = tmp_path / "out"
    argv = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--n-points", "300", "--seeds", "1",
            "--probes", "linear", "--no-figures", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    shutil.rmtree(out / "predictions")
    (out / "predictions").symlink_to(user)
    capsys.readouterr()
    assert main([*argv, "--seeds", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"satclip: error: {out / 'predictions'} is a symbolic link: satclip writes an evaluation's predictions in its "
        "own folder, never through a link; remove the link, or choose another --out"
    )
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
