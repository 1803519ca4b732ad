"""What `satclip demo` says on its console and in its report beyond the numbers: the note that a run of other
settings replaces the earlier report and model, the evaluation's bookkeeping kept to demo.log, and the report's
*What next*."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace

import pytest

from satclip import safe_output
from satclip.eval.runner import EARLIER_RESULTS
from satclip.io.native import FORMAT as MODEL_FORMAT
from satclip.recipes import demo
from satclip.recipes.demo import FULL, QUICK, STAGES, training_dir_name
from satclip.recipes.progress import StageProgress


def earlier_demo(out, settings):
    """A demo folder as a finished run of ``settings`` leaves it, as far as the note reads it: its model's
    config.json names the training it came from (``work/run-…``)."""
    safe_output.make_owned_dir(out, kind="demo")
    with safe_output.atomic_dir(out / "model", overwrite=True, writes=MODEL_FORMAT) as tmp:
        config = {"metadata": {"train_config": {"trainer": {"output_dir": training_dir_name(settings)}}}}
        (tmp / "config.json").write_text(json.dumps(config))
    (out / "report.md").write_text("# satclip demo report\n")


def test_a_run_of_other_settings_says_first_what_it_replaces(tmp_path):
    """`satclip demo --quick --out full` after a full run replaced full/report.md and full/model without a word
    (the console said only two warnings on replaced evaluation records)."""
    out = tmp_path / "full"
    assert demo._replaced_note(out, QUICK) is None  # (nothing there)
    earlier_demo(out, FULL)
    assert demo._replaced_note(out, FULL) is None  # (the same settings: its model is reused)
    assert demo._replaced_note(out, replace(FULL, workers=4)) is None  # (the same training)
    work = out / "work" / training_dir_name(FULL)
    assert demo._replaced_note(out, QUICK) == (
        f"replacing the full demo's report and model in {out} with this --quick run's (its training stays in "
        f"{work}: `satclip demo --out {out}` gets them back)")  # fmt: skip
    assert demo._replaced_note(out, replace(QUICK, epochs=2)) == demo._replaced_note(out, QUICK)
    # only --epochs differs: the command that made it ("rerun without --quick" repeated this run as it was)
    earlier_demo(out, replace(FULL, epochs=3))
    assert demo._replaced_note(out, FULL) == (
        f"replacing the 3-epoch full demo's report and model in {out} with this run's (its training stays in "
        f"{out / 'work' / training_dir_name(replace(FULL, epochs=3))}: `satclip demo --epochs 3 --out {out}` gets "
        "them back)")  # fmt: skip
    earlier_demo(out, QUICK)
    assert demo._replaced_note(out, FULL) == (
        f"replacing the --quick demo's report and model in {out} with this run's (its training stays in "
        f"{out / 'work' / training_dir_name(QUICK)}: `satclip demo --quick --out {out}` gets them back)")  # fmt: skip
    assert demo._replaced_note(out, replace(QUICK, epochs=2)).endswith(f"`satclip demo --quick --out {out}` gets "
                                                                       "them back)")  # fmt: skip
    earlier_demo(out, replace(QUICK, lr=2e-3))
    assert demo._replaced_note(out, QUICK).startswith("replacing the report and model of an earlier demo run with "
                                                      "other settings in ")  # fmt: skip
    (out / "model" / "config.json").write_text("{}")  # (no training named: nothing said)
    assert demo._replaced_note(out, QUICK) is None


def test_the_note_comes_before_the_work(tmp_path, monkeypatch):
    out = tmp_path / "full"
    earlier_demo(out, FULL)

    def work(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_run", work)
    shown = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(out, QUICK, progress=StageProgress(STAGES, shown))
    assert shown.getvalue().startswith("note: replacing the full demo's report and model in "), shown.getvalue()
    assert "replacing the full demo's report" in (out / "demo.log").read_text()


def test_the_evaluations_notes_of_earlier_results_go_to_the_demo_log_only(tmp_path):
    """The demo's console showed the evaluation's warnings that rows.jsonl records and results.csv rows of an
    earlier run were replaced (two long lines of fold bookkeeping); `satclip evaluate` still shows them."""
    shown = io.StringIO()
    evaluation = logging.getLogger("satclip.eval.runner")
    with demo._quiet(tmp_path / "demo.log", StageProgress(STAGES, shown), "test") as log_file:
        log_file.open()
        evaluation.warning("results.csv: 4 rows of air-temperature left out", extra=EARLIER_RESULTS)
        log_file.replaced_said = True  # (the note said whose report and model this run replaces)
        evaluation.warning("rows.jsonl: 30 record(s) of folds this run evaluates anew are replaced",
                           extra=EARLIER_RESULTS)  # fmt: skip
        evaluation.warning("a test split holds only 17 points")
    # (with no note, --air-temperature left out of a rerun of the same settings: the warning is the console's word)
    assert shown.getvalue() == ("warning: results.csv: 4 rows of air-temperature left out\n"
                                "warning: a test split holds only 17 points\n")  # fmt: skip
    logged = (tmp_path / "demo.log").read_text()
    assert "30 record(s) of folds this run evaluates anew are replaced" in logged and "17 points" in logged


def test_the_report_says_what_next(tmp_path):
    """The report ended with its tables and settings: nothing on what to do with the trained model."""
    model, out = tmp_path / "my demo" / "model", tmp_path / "my demo"
    quick = "\n".join(demo._what_next(QUICK, model, out))
    assert quick.startswith("## What next\n")
    assert f"`satclip embed points.csv -o embeddings.parquet --model '{model}'`" in quick
    assert f"`satclip evaluate --encoders '{model}',sh-l10 --tasks koppen,landcover --protocol " in quick
    assert f"`satclip demo --out '{out}'` replaces this report and model" in quick
    assert "explained under *What ran* (pretraining)" in quick
    assert "satclip demo --out" not in "\n".join(demo._what_next(FULL, model, out))  # (the full one ran)


def test_the_command_shows_a_line_before_its_imports(tmp_path, monkeypatch, capsys):
    """Nothing appeared for the first 3-5 s of `satclip demo` (importing torch and the demo's libraries) on a
    terminal; elsewhere (captured, a log) a refused run's stderr stays its one error line."""
    import inspect
    import sys

    from satclip import terminal
    from satclip.cli import demo as command
    from satclip.cli import main

    seen = []

    def run_demo(*args, **kwargs):
        seen.append(capsys.readouterr().err)
        return tmp_path / "report.md"

    monkeypatch.setattr(demo, "run_demo", run_demo)
    for tty in (True, False):
        monkeypatch.setattr(terminal, "redraws", lambda stream, tty=tty: tty and stream is sys.stderr)
        assert main(["demo", "--quick", "--out", str(tmp_path / "unused")]) == 0
    assert seen == ["satclip demo: starting …\n", ""]
    source = inspect.getsource(command.run)  # (before the demo's module is imported: that took the seconds)
    assert source.index('print("satclip demo: starting …"') < source.index("from ..recipes.demo import")
