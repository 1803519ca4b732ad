"""The offline demo pipeline end to end (tiny sizes), the recipes and the shipped models."""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

import satclip
from satclip.pretrained import bundled_models
from satclip.recipes import recipe_names, recipe_path
from satclip.recipes.demo import QUICK, STAGES, run_demo
from satclip.recipes.progress import StageProgress
from satclip.train.config import load_config


def test_shipped_models_load_offline_without_shared(tmp_path):
    code = (
        "import socket, satclip, torch\n"
        "def refuse(*a, **k): raise OSError('network disabled in this test')\n"
        "socket.socket.connect = refuse\n"
        "for name in ('bluemarble-l10', 'bluemarble-l40'):\n"
        "    e = satclip.load(name)\n"
        "    assert e.encode(torch.tensor([[13.4, 52.5]])).shape == (1, 256)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_shipped_models_follow_their_recipes():
    assert set(bundled_models()) >= {"bluemarble-l10", "bluemarble-l40"}
    for name in ("bluemarble-l10", "bluemarble-l40"):
        recipe = load_config(recipe_path(name))
        config = json.loads((bundled_models()[name] / "config.json").read_text())
        shipped = config["location_encoder"]
        assert shipped["encoding"] == recipe.model.location_encoder["encoding"]
        assert config["image_encoder"]["name"] == recipe.model.image_encoder["name"]
        assert recipe.data.batch_size == 8192
    assert recipe_names() == ["bluemarble-l10", "bluemarble-l40"]


def test_shipped_models_were_trained_by_their_recipes():
    """The training config recorded in each shipped model is its recipe (paths aside)."""
    from satclip.train.config import from_dict

    for name in ("bluemarble-l10", "bluemarble-l40"):
        recipe = load_config(recipe_path(name)).to_dict()
        config = json.loads((bundled_models()[name] / "config.json").read_text())
        trained = from_dict(config["metadata"]["train_config"]).to_dict()  # missing keys: their defaults
        assert trained["model"] == recipe["model"] and trained["optim"] == recipe["optim"]
        for key in ("root", "cache"):
            trained["data"].pop(key), recipe["data"].pop(key)
        assert trained["data"] == recipe["data"]
        for key in ("max_epochs", "seed", "check_val_every_n_epoch", "precision"):
            assert trained["trainer"][key] == recipe["trainer"][key], (name, key)


def test_shipped_model_embeddings_are_structured():
    """Nearby points embed closer than distant ones (a trained field, not noise)."""
    encoder = satclip.load("bluemarble-l10")
    points = torch.tensor([[10.0, 50.0], [10.5, 50.3], [-60.0, -5.0], [135.0, -25.0]])
    emb = torch.nn.functional.normalize(encoder.encode(points), dim=1)
    near = (emb[0] * emb[1]).sum()
    far = torch.stack([(emb[0] * emb[2]).sum(), (emb[0] * emb[3]).sum()])
    assert (near > far).all()


def test_contrastive_chance_is_batches_over_pairs():
    from satclip.recipes.demo import contrastive_chance

    assert contrastive_chance(10_000, 8192) == 2 / 10_000  # batches of 8,192 and 1,808
    assert contrastive_chance(8192, 8192) == 1 / 8192
    assert contrastive_chance(10_000, 8192, drop_last=True) == 1 / 8192  # (the 1,808 are not trained on)
    assert contrastive_chance(8193, 8192) == 1 / 8192  # (a last batch of one pair is dropped)


def test_demo_end_to_end_tiny(tmp_path):
    settings = replace(
        QUICK, patches=2000, epochs=2, batch_size=512, eval_points=300, baselines=("direct",),
        map_resolution=10.0, workers=1, extra_encoders=(),
    )  # fmt: skip
    shown = io.StringIO()  # not a terminal: a line per stage
    report = run_demo(tmp_path / "demo", settings, progress=StageProgress(STAGES, shown))
    text = report.read_text()
    lines = shown.getvalue().splitlines()
    assert [line.split("]")[0] for line in lines if " done " in line] == [f"[{k}/5" for k in range(1, 6)]
    # no warning but the one these tiny tasks earn (country keeps 86 of 300 points: a 17-point test split)
    warned = [line for line in lines if "warning" in line.lower()]
    assert "· 100% ·" in lines[-1] and all("a test split holds only" in line for line in warned), lines
    # nothing of this directory's to reuse (the corpus, in satclip's cache, may be another test's)
    assert not [line for line in lines if line.startswith("note:") and "Blue Marble corpus" not in line], lines
    logged = (tmp_path / "demo" / "demo.log").read_text()
    assert "feature cache" in logged and "demo stage evaluation" in logged  # the INFO lines went to the log
    assert "## Results" in text and "direct" in text
    stages = re.search(r"- stage times: (.*)", text)[1]  # (every stage's: "map and report" was missing)
    assert [re.sub(r" \d+ s( \(.*\))?$", "", part) for part in stages.split(", ")] == list(STAGES), stages
    assert "up to 512 pairs per contrastive softmax (an epoch's last batch is what remains)" in text
    for name in ("map.png", "training.png", "eval/results.csv"):
        assert (tmp_path / "demo" / name).stat().st_size > 0
    # every picture linked with a caption, the eval ones under eval/
    pictures = {p.relative_to(tmp_path / "demo").as_posix() for p in (tmp_path / "demo").rglob("*.png")}
    linked = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", text)
    assert {name for _, name in linked} == pictures and "eval/bars_mlp.png" in pictures
    assert all(f"*{name.split('/')[-1]}: {caption}.*" in text for caption, name in linked)
    # chance of the contrastive accuracies: 1 batch of 200 validation pairs, 4 of 1,800 training pairs
    assert re.search(r"val_acc_i2l \d\.\d{3} \(chance 0\.00500\)", text)
    assert re.search(r"train_acc_i2l \d\.\d{3} \(chance 0\.00222\)", text)
    assert "## Compared with the model card" in text and "300 points per sampled task and 1 seed (model card" in text
    encoder = satclip.load(tmp_path / "demo" / "model")
    assert encoder.encode(torch.tensor([[0.0, 0.0]])).shape == (1, 256)
    snippet = re.search(r"load with `satclip\.load\((.*?)\)`", text)[1]  # (a Python literal, quotes escaped)
    assert ast.literal_eval(snippet) == str(tmp_path / "demo" / "model")
    assert "trained by an earlier run" not in text
    # what to do next, with this run's model (the report had no such section); "tied" said once for both demos
    assert "## What next" in text and f"--model {tmp_path / 'demo' / 'model'}`" in text
    assert text.count("*Tied* (in the result line above, for the full demo and `--quick` alike)") == 1
    # where the model stands, in one line on the console and atop the report (the run ended with "wrote
    # report.md"), naming every task once
    result = [line for line in lines if line.startswith("result: ")]
    # (the model's place first, the one-fold caveat after it: it came first, in a 480-character line); on the
    # console the gist and where the details are, the report naming every task once
    assert len(result) == 1 and result[0].startswith("result: the demo model is "), result
    assert " — one fold, so " in result[0] and result[0].endswith(f". Details: {report}")
    outcome = re.search(r"\*\*Result\*\*: (the demo model \(`model`\) is .*) \(primary metric: MSE", text)[1]
    assert outcome.endswith(")") and " — one fold, so " in outcome  # (its MSE tasks named: not judged)
    assert all(len(re.findall(rf"(?<![\w-]){task}(?![\w-])", outcome)) == 1 for task in settings.tasks), outcome

    # the same command again: nothing is trained again, and the report says whose epochs those are (its stage
    # times said "pretraining 0 s" of a model trained for 2 epochs)
    weights = (tmp_path / "demo" / "model" / "model.safetensors").read_bytes()
    timings = tmp_path / "demo" / "timings.json"
    first = json.loads(timings.read_text())
    assert list(first) == list(STAGES) and all(v > 0 for v in first.values())
    recorded = tmp_path / "demo" / "work" / "timings.json"  # (this setting's times, that a rerun of it reads)
    kept = json.loads(recorded.read_text())  # (stage → what its work depended on → seconds)
    assert {stage: list(times.values()) for stage, times in kept.items()} == {k: [v] for k, v in first.items()}
    kept["pretraining"] = dict.fromkeys(kept["pretraining"], 999.0)  # (as if it had taken that long)
    recorded.write_text(json.dumps(kept))
    shown = io.StringIO()
    from satclip.recipes import demo as demo_module

    with pytest.MonkeyPatch.context() as patch:  # (reused: faster than its expected seconds at all, on any CPU)
        patch.setattr(demo_module, "REUSED_SPEEDUP", 1.0)
        again = run_demo(tmp_path / "demo", settings, progress=StageProgress(STAGES, shown)).read_text()
    assert "- pretraining: 2 epochs (all 2 trained by an earlier run of these settings; none here, its model is " \
           "reused)" in again
    # the time of the reused training is the run's that did it (the report and timings.json said "0 s")
    assert "pretraining 999 s (an earlier run's: reused)" in again
    assert json.loads(timings.read_text())["pretraining"] == 999.0
    # and the console says what the rerun reused, stage by stage (it said nothing: only demo.log did)
    notes = [line for line in shown.getvalue().splitlines() if line.startswith("note: ")]
    expected = ["reusing Blue Marble corpus ", "feature cache ", "reusing the model an earlier demo run of these "
                "settings trained (2 epochs, ", "reusing 12 of 12 folds evaluated by an earlier run in "]  # fmt: skip
    assert len(notes) == len(expected), notes
    assert all(n.startswith(f"note: {e}") for n, e in zip(notes, expected, strict=True)), notes
    assert notes[1].endswith("is up to date"), notes  # (12 folds: 6 tasks × 2 encoders, 1 probe, 1 seed)
    assert (tmp_path / "demo" / "model" / "model.safetensors").read_bytes() == weights

    import unittest.mock

    from satclip.embed import maps
    from satclip.recipes import demo

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    # the same command stopped in its report stage: its model is the one the report describes, and the report
    # stays (it was deleted, though nothing had been trained)
    shown = io.StringIO()
    with unittest.mock.patch.object(maps, "render_map", stopped), pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path / "demo", settings, progress=StageProgress(STAGES, shown))
    assert all((tmp_path / "demo" / name).exists() for name in demo.REPORT_FILES)
    said = "demo interrupted in its map and report stage; rerun the same satclip demo command: only the map and "
    assert said in (tmp_path / "demo" / "demo.log").read_text() and said in shown.getvalue(), shown.getvalue()

    # a rerun stopped after its new model replaced the old one leaves no report of the old model beside it (the
    # report, map and curve of the first run stayed, describing a model no longer there)
    with unittest.mock.patch.object(maps, "render_map", stopped), pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path / "demo", replace(settings, epochs=1), progress=StageProgress(STAGES, io.StringIO()))
    assert (tmp_path / "demo" / "model" / "model.safetensors").read_bytes() != weights  # the 1-epoch model
    assert not [name for name in demo.REPORT_FILES if name != "timings.json" and (tmp_path / "demo" / name).exists()]
    # timings.json holds this run's times of the stages that ended (each written as it ended), none of the
    # model replaced
    stopped_run = json.loads(timings.read_text())
    assert list(stopped_run) == list(STAGES)[:4] and stopped_run["pretraining"] != 999.0, stopped_run


def test_a_stopped_demo_continues_its_training(tmp_path, monkeypatch):
    """Training restarted from epoch 0 on every rerun (minutes of the full demo lost to a Ctrl-C); now a rerun
    of the same settings continues from the last epoch saved, and other settings train afresh."""
    from lightning.pytorch.callbacks import Callback

    from satclip.eval import api
    from satclip.recipes import demo

    settings = replace(
        QUICK, patches=2000, epochs=3, batch_size=512, eval_points=300, baselines=("direct",), workers=1,
        extra_encoders=(),
    )  # fmt: skip
    trained, stop_at = [], [1]

    class Epochs(Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == stop_at[0]:
                raise KeyboardInterrupt
            trained.append(trainer.current_epoch)

    class Evaluated(Exception):
        pass

    def evaluation(*args, **kwargs):  # the training is what is looked at: stop the demo there
        raise Evaluated

    monkeypatch.setattr(demo, "_training_progress", lambda progress: Epochs())
    monkeypatch.setattr(api, "run_evaluation", evaluation)
    out = tmp_path / "demo"
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO()))
    assert trained == [0]
    # the times of the stages that ended are kept for the rerun (timings.json was written at the end only, and the
    # resumed run's report said "corpus 0 s, image features 0 s")
    assert list(json.loads((out / "timings.json").read_text())) == ["corpus", "image features"]
    stop_at[0] = None
    shown = io.StringIO()
    with pytest.raises(Evaluated):
        run_demo(out, settings, progress=StageProgress(STAGES, shown))
    assert trained == [0, 1, 2]  # continued at epoch 1, and the console says so (only demo.log did)
    assert list(json.loads((out / "timings.json").read_text())) == ["corpus", "image features", "pretraining"]
    assert "note: continuing the training of an earlier demo run from " in shown.getvalue()
    assert "(1 of 3 epochs done)" in shown.getvalue()
    run = out / "work" / demo.training_dir_name(settings)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    monkeypatch.chdir(tmp_path)
    for spelling in ("demo", "demo/../demo"):  # finished: nothing to train again (the directory spelt otherwise)
        with pytest.raises(Evaluated):
            run_demo(spelling, settings, progress=StageProgress(STAGES, io.StringIO()))
    assert trained == [0, 1, 2]
    # the directory moved: the run and feature cache in it are the same (training started again from epoch 0)
    (tmp_path / "demo").rename(tmp_path / "moved")
    with pytest.raises(Evaluated):
        run_demo(tmp_path / "moved", settings, progress=StageProgress(STAGES, io.StringIO()))
    assert trained == [0, 1, 2]
    (tmp_path / "moved").rename(tmp_path / "demo")
    # other settings: a new training beside the earlier one, which stays as it was (it was deleted, and a file of
    # the user's in it with it); the earlier settings again reuse their training, and their model is back in model/
    weights = (out / "model" / "model.safetensors").read_bytes()
    checkpoint = (run / "checkpoints" / "last.ckpt").read_bytes()
    (run / "NOTES.txt").write_text("mine")
    with pytest.raises(Evaluated):
        run_demo(out, replace(settings, epochs=1), progress=StageProgress(STAGES, io.StringIO()))
    assert trained == [0, 1, 2, 0]  # trained afresh
    assert (out / "model" / "model.safetensors").read_bytes() != weights
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == checkpoint and (run / "NOTES.txt").is_file()
    shown = io.StringIO()
    with pytest.raises(Evaluated):
        run_demo(out, settings, progress=StageProgress(STAGES, shown))
    assert trained == [0, 1, 2, 0]  # nothing trained again
    assert "reusing the model an earlier demo run of these settings trained (3 epochs" in shown.getvalue()
    assert (out / "model" / "model.safetensors").read_bytes() == weights
    # a demo directory of an earlier satclip (every setting trained in work/run): its training of these settings
    # is continued where it is now kept; one of other settings is left, with a note that it is no longer used
    older = out / "work" / "run"
    (run / "NOTES.txt").unlink()
    run.rename(older)
    with pytest.raises(Evaluated):
        run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO()))
    assert trained == [0, 1, 2, 0] and (run / "checkpoints" / "last.ckpt").read_bytes() == checkpoint
    assert not older.exists()
    run.rename(older)
    shown = io.StringIO()
    with pytest.raises(Evaluated):
        run_demo(out, replace(settings, epochs=2), progress=StageProgress(STAGES, shown))
    assert trained == [0, 1, 2, 0, 0, 1] and (older / "checkpoints" / "last.ckpt").read_bytes() == checkpoint
    assert f"note: {older} holds the training of an earlier satclip's demo of other settings" in shown.getvalue()


def test_a_bad_air_temperature_table_is_refused_before_the_work(tmp_path, capsys):
    """It was read at the evaluation: minutes of corpus, features and pretraining first."""
    from satclip.cli import main
    from satclip.paths import cache_dir

    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--air-temperature", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "lacks column(s) ['Lon', 'Lat', 'meanT']" in err
    assert "using it as given" not in err  # (a warning that the table is used, then the error that it is not)
    assert not cache_dir("bluemarble").exists() and not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_demo_quick_cli(tmp_path):
    from satclip.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path / "quick")]) == 0
    assert (tmp_path / "quick" / "report.md").exists()


def test_the_command_ends_with_the_result_line_on_stdout(tmp_path, monkeypatch, capsys):
    """The result line went to stderr, before the last line ("wrote …/report.md"): a user keeping stdout got the
    path alone."""
    from satclip.cli import main
    from satclip.recipes import demo

    tiny = replace(QUICK, patches=2000, epochs=2, batch_size=512, eval_points=300, baselines=("direct",),
                   map_resolution=10.0, workers=1, extra_encoders=())  # fmt: skip
    monkeypatch.setattr(demo, "QUICK", tiny)
    from satclip.embed import maps

    drawn, render = [], maps.render_map

    def render_map(*args, **kwargs):
        drawn.append(kwargs.get("precision"))
        return render(*args, **kwargs)

    monkeypatch.setattr(maps, "render_map", render_map)
    from satclip.models import precision

    monkeypatch.delenv("SATCLIP_PRECISION")  # (the demo's own choices, not the tests' float32)
    asked, resolve = [], precision.resolve
    monkeypatch.setattr(precision, "resolve", lambda wanted, *a, **k: asked.append(wanted) or resolve(wanted, *a, **k))
    assert main(["demo", "--quick", "--epochs", "1", "--out", str(tmp_path / "demo")]) == 0
    # the map's model was loaded in "auto", calibrated (bf16 timed: 6 s), then drawn in float32
    assert "auto" not in asked and "float32" in asked, asked
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[-2].startswith("wrote ") and lines[-1].startswith("result: the demo model is "), out
    assert lines[-1].endswith(f". Details: {tmp_path / 'demo' / 'report.md'}"), out
    assert "result: " not in err
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "**Result**: the demo model (`model`) is " in report
    # for a newcomer: what a probe and the protocol are, that this was the quick demo, and the test-set sizes to
    # judge a difference by (n_test was in eval/results.csv only)
    assert "A probe is a small model trained on each encoder's frozen embeddings" in report
    assert "60 % to train the probe, 20 % to validate it and 20 % to test it" in report
    # (with --epochs: it said "this was `satclip demo --quick`" and "trains 1 epochs")
    assert "- this was `satclip demo --quick --epochs 1`: the full demo trains on 100,000 patches" in report
    assert "the demo model trains 1 epoch at lr" in report
    # the precisions as the Settings line gives them (it said "embeddings in float32 (the same on every machine and
    # run…)" above "float64 (`direct`)"), and the map's, which "auto" chose (bf16 on one machine)
    assert "embeddings in float32, float64 for `direct` (the same on every machine" in report
    assert "float32 (`model`), float64 (`direct`)" in report
    assert drawn == ["float32"] and "*map.png: the demo model's embeddings (float32, as evaluated) on a " in report
    sizes = re.search(r"Test points per fold \(.*?\): (.*)\.\n", report)[1]
    assert sizes.startswith("era5-temperature 60, ") and len(sizes.split(", ")) == 6, sizes


@pytest.mark.parametrize("asked", [None, "bf16"])
def test_the_demo_evaluates_in_float32_unless_asked_otherwise(tmp_path, monkeypatch, asked):
    """The evaluation embedded in precision "auto": a busy machine, or a fresh cache, timed bf16 otherwise and the
    shipped model's scores moved between runs (koppen macro-F1 0.675 and 0.642), the report saying nothing of it.
    It embeds in float32 now, as the report says, unless $SATCLIP_PRECISION asks for another."""
    from satclip.eval import encoders
    from satclip.models import precision

    if asked:
        monkeypatch.setenv("SATCLIP_PRECISION", asked)
    else:
        monkeypatch.delenv("SATCLIP_PRECISION", raising=False)
    settings = replace(QUICK, patches=2000, epochs=1, batch_size=512, eval_points=300, baselines=("direct",),
                       workers=1, extra_encoders=())  # fmt: skip
    seen = []

    class Evaluated(Exception):
        pass

    def create(*args, **kwargs):  # (the evaluation's models: built in the precision it embeds in)
        seen.append(precision.default())
        raise Evaluated

    monkeypatch.setattr(encoders, "create", create)
    with pytest.raises(Evaluated):
        run_demo(tmp_path / "demo", settings, progress=StageProgress(STAGES, io.StringIO()))
    assert seen == [asked or "float32"]
    from satclip.models.precision import evaluation_precision

    assert evaluation_precision() == (asked or "float32")


def test_the_demo_refuses_an_output_inside_satclips_cache(tmp_path, monkeypatch, capsys):
    """`--out` inside the cache (which the README says to delete) wrote the report and model there without a word;
    the cache's own folders were refused as "files satclip did not create"."""
    from satclip.cli import main

    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "cache"))
    for out in (tmp_path / "cache" / "mydemo", tmp_path / "cache"):
        assert main(["demo", "--quick", "--out", str(out)]) == 2
        assert f"--out {out} is inside satclip's cache ({tmp_path / 'cache'})" in capsys.readouterr().err
        assert not (tmp_path / "cache" / "mydemo").exists()


def test_a_rerun_that_reuses_every_fold_keeps_the_evaluations_time(tmp_path, monkeypatch):
    """A rerun reusing all 30 folds still takes a few seconds (tasks loaded, figures drawn): judged by its speed
    alone (not 20 times the expected), it was reported as a fresh evaluation of 3 s, and timings.json lost the
    first run's time. (Here no stage is quick enough to count as reused by speed.)"""
    from satclip.recipes import demo

    monkeypatch.setattr(demo, "REUSED_SPEEDUP", 1e12)
    settings = replace(QUICK, patches=2000, epochs=1, batch_size=512, eval_points=300, baselines=("direct",),
                       map_resolution=10.0, workers=1, extra_encoders=())  # fmt: skip
    from satclip.data.bluemarble import build_bluemarble
    from satclip.recipes import CORPUS

    build_bluemarble(params=replace(CORPUS, n=settings.patches, seed=settings.seed))  # (as another --out did)
    out = tmp_path / "demo"
    report = run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO())).read_text()
    # the corpus came from satclip's cache: said so (its "corpus 0 s" read as a stage that took no time)
    assert "- stage times: corpus 0 s (reused from satclip's cache), image features " in report
    first = json.loads((out / "timings.json").read_text())["evaluation"]
    # the folder moved: the evaluation of its model is reused too (keyed by the model's absolute path, its folds
    # were fitted again, with a warning of an earlier run's results left out and orphan rows in rows.jsonl)
    out = out.rename(tmp_path / "moved")
    shown = io.StringIO()
    report = run_demo(out, settings, progress=StageProgress(STAGES, shown)).read_text()
    assert "note: reusing 12 of 12 folds evaluated by an earlier run" in shown.getvalue(), shown.getvalue()
    assert "held results of an earlier run" not in shown.getvalue()
    assert json.loads((out / "timings.json").read_text())["evaluation"] == first
    assert f"evaluation {first:.0f} s (an earlier run's: reused)" in report
    assert len((out / "eval" / "rows.jsonl").read_text().splitlines()) == 12
    assert "result: the demo model is " in shown.getvalue()
    assert f"| `model` | `{out / 'model'}` | a model loaded from this path |" in report  # (its spec: the path)


def test_a_rerun_after_other_settings_reports_its_own_settings_times(tmp_path, monkeypatch):
    """The full demo, then --quick, then the full one again into one --out: the last report's "image features 11 s
    (an earlier run's: reused)" was the quick run's time (the full one's took 115 s), and its "pretraining 1 s"
    (all epochs trained earlier) had no word that it was reused."""
    from satclip.recipes import demo

    monkeypatch.setattr(demo, "REUSED_SPEEDUP", 0.0)  # (any stage is fast enough to be a reused one)
    settings = replace(QUICK, patches=2000, epochs=1, batch_size=512, eval_points=300, baselines=("direct",),
                       tasks=("elevation",), map_resolution=10.0, workers=1, extra_encoders=())  # fmt: skip
    other = replace(settings, lr=2e-3, views=1)  # (its own features and training)
    out = tmp_path / "demo"
    run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO()))
    first = json.loads((out / "timings.json").read_text())
    run_demo(out, other, progress=StageProgress(STAGES, io.StringIO()))
    said = f"image features {first['image features']:.0f} s (an earlier run's: reused), pretraining " \
           f"{first['pretraining']:.0f} s (an earlier run's: reused), evaluation "  # fmt: skip
    # and with other --workers, which change no stage's work (keyed by every setting, the times were lost: "image
    # features 0 s", and the reused stages' few seconds were kept as their times for later reruns)
    for rerun in (settings, replace(settings, workers=2), settings):
        report = run_demo(out, rerun, progress=StageProgress(STAGES, io.StringIO())).read_text()
        assert said in report, re.search(r"- stage times: .*", report)[0]
    assert len(json.loads((out / "work" / "timings.json").read_text())["pretraining"]) == 2  # (each training's own)


def test_a_training_begun_again_after_a_damaged_checkpoint_is_not_reported_as_reused(tmp_path, monkeypatch):
    """A rerun whose checkpoint failed its sha256 trained afresh ("training starts again" in demo.log), yet its
    report said "pretraining 3 s (an earlier run's: reused)": the stage was marked reused before the check."""
    from satclip.recipes import demo

    monkeypatch.setattr(demo, "REUSED_SPEEDUP", 0.0)  # (any stage is fast enough to be a reused one)
    settings = replace(QUICK, patches=2000, epochs=1, batch_size=512, eval_points=300, baselines=("direct",),
                       tasks=("elevation",), map_resolution=10.0, workers=1, extra_encoders=())  # fmt: skip
    out = tmp_path / "demo"
    run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO()))
    digest = next((out / "work").glob("run-*/checkpoints/last.ckpt.sha256"))
    digest.write_text("0" * 8 + digest.read_text()[8:])
    report = run_demo(out, settings, progress=StageProgress(STAGES, io.StringIO())).read_text()
    assert "training starts again" in (out / "demo.log").read_text()
    times = re.search(r"- stage times: .*", report)[0]
    assert re.search(r"pretraining \d+ s, evaluation", times), times


def test_a_demo_never_replaces_another_sort_of_output_in_its_model_folder(tmp_path):
    """OUT/model holding a satclip Zarr store (not a model) was refused only when the trained model was published,
    after the whole pretraining; now before any work, and it stays as it was."""
    from satclip import safe_output
    from satclip.errors import OutputExistsError

    out = safe_output.make_owned_dir(tmp_path / "demo", kind="demo")
    store = safe_output.make_owned_dir(out / "model")
    (store / ".zgroup").write_text('{"zarr_format": 2}')
    with pytest.raises(OutputExistsError, match=r"is a satclip Zarr dataset, not a model;"):
        run_demo(out, QUICK, progress=StageProgress(STAGES, io.StringIO()))
    assert sorted(p.name for p in store.iterdir()) == sorted([".zgroup", safe_output.MARKER])
    assert not (out / "work").exists()


def test_a_demo_stopped_in_its_evaluation_gives_its_advice_once(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the demo's evaluation said "demo interrupted in its evaluation stage; rerun the same satclip demo
    command: …" and then the CLI's "the work done is kept in …/eval: rerun the same command to continue where it
    stopped": the same advice twice (as the training's was, train/fitting.py)."""
    from satclip.cli import main
    from satclip.eval import api
    from satclip.recipes import demo

    tiny = replace(QUICK, patches=2000, epochs=1, batch_size=512, eval_points=300, baselines=("direct",),
                   map_resolution=10.0, workers=1, extra_encoders=())  # fmt: skip
    monkeypatch.setattr(demo, "QUICK", tiny)
    evaluate = api.run_evaluation

    class CtrlC:  # (after the first fold is recorded: there is work kept to continue from)
        def update(self, n):
            raise KeyboardInterrupt

        def set_postfix_str(self, text):
            pass

        def close(self):
            pass

    def stopped(config, out_dir, **kwargs):
        return evaluate(config, out_dir, **{**kwargs, "progress": lambda total: CtrlC()})

    monkeypatch.setattr(api, "run_evaluation", stopped)
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) != 0
    err = capsys.readouterr().err
    assert (tmp_path / "demo" / "eval" / "rows.jsonl").read_text().count("\n") == 1  # (the work kept)
    assert err.count("demo interrupted in its evaluation stage; rerun the same satclip demo command: the probes "
                     "already fitted") == 1, err  # fmt: skip
    assert "the work done is kept" not in err and "continue where it stopped" not in err, err
