"""Lines of an evaluation's ``rows.jsonl`` that are no fold record (damaged, or cut short by an interruption and
then followed by new rows) are warned about once, on the run that fits their folds again, and dropped from the
file then: every later rerun warned about them again although it had nothing left to fix."""

from __future__ import annotations

import json
import logging
import stat

import pytest

from satclip import safe_output
from satclip.cli import main
from satclip.errors import LockedError
from satclip.eval import EvalConfig, TaskOptions, evaluate, runner

from .test_damaged_resume_state import EVALUATE, evaluated_twice

pytest.importorskip("h5py")

WARNING = ("{}: {} line(s) are not records of finished folds (damaged, or cut short by an earlier interruption): "
           "skipped, their folds are fitted again")  # fmt: skip


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "rows.jsonl" in r.getMessage()]


def _rerun(out, caplog) -> list[str]:
    """``satclip evaluate`` into ``out`` again; returns its warnings about rows.jsonl."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip.eval.runner"):
        assert main([*EVALUATE, "--out", str(out)]) == 0
    return _warnings(caplog)


def _same_fold(line: bytes, again: bytes) -> None:
    """``again`` is the row of ``line``'s fold fitted again: the same key and results (only the time differs)."""
    first, second = json.loads(line), json.loads(again)
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def _damage(line: bytes, damage: str) -> bytes:
    row = json.loads(line)
    return {
        "no key": json.dumps({k: v for k, v in row.items() if k != "key"}).encode() + b"\n",
        "text metric": json.dumps({**row, "mse": "abc"}).encode() + b"\n",
        "binary": b"\x9b\x00\xff" + line[3:],
    }[damage]


@pytest.mark.parametrize("damage", ["no key", "text metric", "binary"])
def test_a_damaged_line_is_warned_about_once_and_dropped(tmp_path, caplog, damage):
    """A damaged line in the middle of rows.jsonl: the first rerun warns once and fits its fold again; the
    second warned the same again (the line stayed in the file) though it fitted nothing. Now the first rerun
    rewrites the file without the line: the good lines keep their bytes, order and the file's permissions,
    and the second rerun warns about nothing and fits nothing."""
    clean, out, rows, lines = evaluated_twice(tmp_path)
    rows.write_bytes(lines[0] + _damage(lines[1], damage) + lines[2])
    rows.chmod(0o640)  # (not the umask's default: kept by the rewrite)

    assert _rerun(out, caplog) == [WARNING.format(rows, 1)]
    now = rows.read_bytes().splitlines(keepends=True)
    assert now[:2] == [lines[0], lines[2]] and len(now) == 3  # the good lines as they were, then the fold fitted again
    _same_fold(lines[1], now[2])
    assert stat.S_IMODE(rows.stat().st_mode) == 0o640
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()

    fixed = rows.read_bytes()
    assert _rerun(out, caplog) == []
    assert rows.read_bytes() == fixed  # nothing fitted again
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()


def test_a_row_cut_short_and_followed_by_new_rows_is_not_warned_about(tmp_path, caplog):
    """The last row cut short by an interruption: the rerun fits its fold again without a warning, as before,
    but the cut line stayed in the file, ended and followed by the new row, and every later rerun warned about
    it ("1 line(s) are not records …") though it had nothing to fix. Now the rerun drops it."""
    clean, out, rows, lines = evaluated_twice(tmp_path)
    rows.write_bytes(b"".join(lines)[:-40])

    assert _rerun(out, caplog) == []
    now = rows.read_bytes().splitlines(keepends=True)
    assert now[:2] == lines[:2] and len(now) == 3
    _same_fold(lines[2], now[2])

    fixed = rows.read_bytes()
    assert _rerun(out, caplog) == []
    assert rows.read_bytes() == fixed
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()


def test_a_run_stopped_after_dropping_damaged_lines_loses_no_fold(tmp_path, caplog, monkeypatch):
    """A run stopped after rows.jsonl was rewritten without its damaged line, before it appended the fold fitted
    again: the good lines are all there, byte for byte; the next run fits the missing fold without a warning
    (the damaged line is gone), and the results are those of an intact run."""
    clean, out, rows, lines = evaluated_twice(tmp_path)
    rows.write_bytes(lines[0] + _damage(lines[1], "no key") + lines[2])

    def stopped(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_open_rows", stopped)
    assert main([*EVALUATE, "--out", str(out)]) == 130
    monkeypatch.undo()
    assert rows.read_bytes() == lines[0] + lines[2]

    assert _rerun(out, caplog) == []
    now = rows.read_bytes().splitlines(keepends=True)
    assert now[:2] == [lines[0], lines[2]] and len(now) == 3
    _same_fold(lines[1], now[2])
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()


def test_the_python_api_takes_the_lock_before_rewriting_rows(tmp_path, caplog):
    """``satclip.eval.evaluate(config, out)`` took no lock: a second run into the same folder at the same time
    appended to rows.jsonl beside the first (and, now that damaged lines are dropped by rewriting the file, would
    have rewritten it under the other run). It is refused while another run holds the folder, which it leaves as
    it was; once free, it drops the damaged line as the CLI does."""
    _, out, rows, lines = evaluated_twice(tmp_path)
    damaged = lines[0] + _damage(lines[1], "text metric") + lines[2]
    rows.write_bytes(damaged)
    config = EvalConfig(encoders=("wrap",), tasks=("elevation",), probes=("linear",), seeds=(0, 1, 2),
                        task_options=TaskOptions(n_points=300))  # fmt: skip
    with safe_output.exclusive(out), pytest.raises(LockedError, match="is in use by another satclip run"):
        evaluate(config, out)
    assert rows.read_bytes() == damaged

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip.eval.runner"):
        evaluate(config, out)
    assert _warnings(caplog) == [WARNING.format(rows, 1)]
    assert rows.read_bytes().startswith(lines[0] + lines[2])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip.eval.runner"):
        evaluate(config, out)
    assert _warnings(caplog) == []


def test_records_of_another_model_under_the_same_name_are_replaced(tmp_path, caplog):
    """Evaluating a model retrained in place (same directory, so the same encoder name) appended its folds to
    rows.jsonl beside the old model's, under the same task, encoder, probe and fold names: two records of each
    fold, one of a model no longer there. The rerun replaces them; records of other folds stay."""
    import torch

    import satclip

    from .test_embed_api import CONFIG

    model = tmp_path / "mine"
    torch.manual_seed(0)
    satclip.LocationEncoder.from_config(CONFIG).save(model)
    argv = [*EVALUATE[:2], f"wrap,{model}", *EVALUATE[3:], "--out", str(tmp_path / "ev")]
    assert main(argv) == 0
    rows = tmp_path / "ev" / "rows.jsonl"
    before = [json.loads(line) for line in rows.read_bytes().splitlines()]
    torch.manual_seed(1)  # retrained: another model in the same place
    satclip.LocationEncoder.from_config(CONFIG).save(model, overwrite=True)
    with caplog.at_level(logging.INFO, logger="satclip.eval.runner"):
        assert main(argv) == 0
    after = [json.loads(line) for line in rows.read_bytes().splitlines()]
    assert len(after) == len(before) == 6
    assert [r for r in after if r["encoder"] == "wrap"] == [r for r in before if r["encoder"] == "wrap"]
    mine = [r for r in after if r["encoder"] != "wrap"]
    assert len(mine) == 3 and not {r["key"] for r in mine} & {r["key"] for r in before}
    assert "3 record(s) of folds this run evaluates anew are replaced, evaluated before with other model weights " \
           f"(model_sha256) for encoder {model} (3 folds)" in caplog.text  # fmt: skip
