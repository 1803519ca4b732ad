"""A rerun of ``satclip evaluate`` into the same --out that evaluates a fold anew (another precision, new weights
at the same path, other task data of the same size) says what changed, as it said other sizes: it replaced the
earlier results without a word. And the predictions kept of a fold replaced go with it: they piled up in
OUT/predictions/ (30 files for 18 rows)."""

from __future__ import annotations

import csv
import logging

import numpy as np
import torch

import satclip
from satclip.cli import main

from .test_embed_api import CONFIG


def _stations(path, targets: np.ndarray):
    """A stations table for ``--data`` (Lon, Lat, meanT), the air-temperature task's, of 200 stations."""
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(-180, 180, len(targets)), rng.uniform(-60, 70, len(targets))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Lon", "Lat", "meanT"])
        writer.writerows(zip(lon, lat, targets, strict=True))
    return path


def _replaced(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "are replaced" in r.getMessage()]


def test_a_rerun_says_what_it_replaces_and_drops_the_old_predictions(tmp_path, caplog):
    model, out = tmp_path / "mine", tmp_path / "ev"
    torch.manual_seed(0)
    satclip.LocationEncoder.from_config(CONFIG).save(model)
    targets = np.linspace(-20.0, 30.0, 200)
    data = _stations(tmp_path / "stations.csv", targets)
    argv = ["evaluate", "--encoders", f"wrap,{model}", "--tasks", "air-temperature", "--data", str(data),
            "--seeds", "0,1", "--probes", "linear", "--no-figures", "--no-cache", "--out", str(out)]  # fmt: skip
    rows = out / "rows.jsonl"
    predictions = out / "predictions"

    def rerun(*extra: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="satclip"):
            assert main([*argv, *extra]) == 0
        # one record and one file of predictions per fold: those of the folds replaced are gone
        assert len(rows.read_text().splitlines()) == len(list(predictions.iterdir())) == 4
        return _replaced(caplog)

    assert rerun() == []
    assert rerun() == []  # (the same settings: every fold reused, nothing replaced)
    [said] = rerun("--precision", "float64")
    assert f"{rows}: 2 record(s) of folds this run evaluates anew are replaced, evaluated before with another " \
           f"precision (float32, now float64) for encoder {model} (2 folds)" == said  # fmt: skip
    torch.manual_seed(1)  # retrained: new weights at the same path
    satclip.LocationEncoder.from_config(CONFIG).save(model, overwrite=True)
    [said] = rerun("--precision", "float64")
    assert said.endswith(f"evaluated before with other model weights (model_sha256) for encoder {model} (2 folds)")
    _stations(data, np.random.default_rng(5).permutation(targets))  # the same stations, their targets shuffled
    [said] = rerun("--precision", "float64")
    assert said == f"{rows}: 4 record(s) of folds this run evaluates anew are replaced, evaluated before with other " \
                   "task points or values (the task's data, or --point-seed) for task air-temperature " \
                   "(4 folds)"  # fmt: skip
    [said] = rerun("--precision", "float64", "--n-points", "150")  # (other sizes: no "other data" for the sample)
    assert said.endswith("evaluated before with folds of other sizes (n_train, n_test: other --n-points, data or "
                         "protocol options) for task air-temperature (4 folds)")  # fmt: skip
    kept = {path.name for path in predictions.iterdir()}
    mine = predictions / "notes.txt"  # a file satclip did not write stays, whatever a rerun replaces
    mine.write_text("mine")
    _stations(data, targets)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip"):
        assert main([*argv, "--precision", "float64"]) == 0
    assert mine.read_text() == "mine" and len(list(predictions.iterdir())) == 5
    assert not kept & {path.name for path in predictions.iterdir()}


def test_what_changed_counts_each_fold_once():
    """The demo's full run after --quick warned "30 record(s) … replaced, evaluated before with other model
    weights (model_sha256) for encoder model (6 folds); folds of other sizes … (30 folds)": 36 of 30, a fold named
    under each of its changes."""
    from satclip.eval.runner import _what_changed

    def fold(encoder: str, task: str, sha: str, n: int) -> dict:
        return {"encoder": encoder, "task": task, "precision": "float32", "model_sha256": sha, "data": "d",
                "n_train": 3 * n, "n_test": n, "sizes": [3 * n, n]}  # fmt: skip

    tasks = ("country", "elevation", "koppen")
    replaced = [(fold(e, t, "old" if e == "model" else None, 200), fold(e, t, "new" if e == "model" else None, 600))
                for e in ("model", "direct", "wrap") for t in tasks for _ in range(2)]  # fmt: skip
    assert _what_changed(replaced) == (
        "other model weights (model_sha256) and folds of other sizes (n_train, n_test: other --n-points, data or "
        "protocol options) for encoder model and tasks country, elevation, koppen (6 folds); folds of other sizes "
        "(n_train, n_test: other --n-points, data or protocol options) for tasks country, elevation, koppen (12 folds)"
    )  # fmt: skip
