"""Ctrl-C arriving as a command publishes its final output (:mod:`satclip.interrupts`): the finished command exits
0, where it exited 130 "interrupted" with its output complete, and the rerun was refused ("already exists")."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from satclip import safe_output
from satclip.cli import main
from satclip.errors import EXIT_INTERRUPTED

from .test_embed_cli import model  # noqa: F401 - fixture

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@pytest.fixture
def points(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "points.parquet"
    pd.DataFrame({"lon": rng.uniform(-180, 180, 100), "lat": rng.uniform(-90, 90, 100)}).to_parquet(path)
    return path


def interrupt_after_renaming(monkeypatch, output: Path) -> None:
    """Send this process SIGINT right after ``output`` is renamed into place (the race an audit hit 4 of 4 times:
    a signal at the moment the output appears)."""
    replace = os.replace

    def replace_then_interrupt(src, dst, *args, **kwargs):
        replace(src, dst, *args, **kwargs)
        if Path(dst) == output:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace_then_interrupt)


def interrupt_before_publishing(monkeypatch, output: Path) -> None:
    """Send this process SIGINT as the finished ``output`` is about to be published."""
    publish = safe_output.publish

    def interrupt_then_publish(finished, path, **kwargs):
        if Path(path) == output:
            os.kill(os.getpid(), signal.SIGINT)
        return publish(finished, path, **kwargs)

    monkeypatch.setattr(safe_output, "publish", interrupt_then_publish)


COMMANDS = {
    "export": lambda m, points, out: ["export", "--format", "torchscript", "--model", str(m), "-o", str(out)],
    "embed": lambda m, points, out: ["embed", str(points), "--model", str(m), "-o", str(out)],
    "map": lambda m, points, out: ["map", "--model", str(m), "--resolution", "6", "--bbox", "-20", "30", "40", "60",
                                   "--all", "-o", str(out)],  # fmt: skip
}
OUTPUTS = {"export": "m.pt", "embed": "e.parquet", "map": "m.zarr"}


@pytest.mark.parametrize("command", COMMANDS)
def test_an_interrupt_after_the_output_is_in_place_lets_the_command_finish(tmp_path, model, points, command,  # noqa: F811
                                                                          monkeypatch, capsys):  # fmt: skip
    out = tmp_path / OUTPUTS[command]
    handlers = {signum: signal.getsignal(signum) for signum in SIGNALS}
    interrupt_after_renaming(monkeypatch, out)
    assert main(COMMANDS[command](model, points, out)) == 0
    err = capsys.readouterr().err
    assert "interrupted" not in err and ".partial" not in err
    assert f"satclip: the interrupt came after {out} was complete: nothing to rerun" in err
    assert {signum: signal.getsignal(signum) for signum in SIGNALS} == handlers  # (main ran in-process: put back)
    assert not Path(f"{out}.partial").exists()
    if command == "embed":
        assert pq.read_table(out).num_rows == 100
    monkeypatch.undo()  # the output is good: the same command with --overwrite rewrites it
    assert main([*COMMANDS[command](model, points, out), "--overwrite"]) == 0


@pytest.mark.parametrize("command", ["export", "embed"])
def test_an_interrupt_before_the_output_is_published_still_interrupts(tmp_path, model, points, command,  # noqa: F811
                                                                      monkeypatch, capsys):  # fmt: skip
    out = tmp_path / OUTPUTS[command]
    interrupt_before_publishing(monkeypatch, out)
    assert main(COMMANDS[command](model, points, out)) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.splitlines()[-1] == "satclip: interrupted"
    assert not out.exists()


def test_holding_is_a_no_op_outside_the_cli(tmp_path):
    from satclip import interrupts  # (here: the tests above run on satclip before it too)

    handlers = {signum: signal.getsignal(signum) for signum in SIGNALS}
    out = tmp_path / "x.txt"
    interrupts.final_output(out)  # (not enabled: the Python API)
    safe_output.write_text(out, "x")
    assert {signum: signal.getsignal(signum) for signum in SIGNALS} == handlers
    assert interrupts.held() is None
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)


def test_only_the_final_output_is_held(tmp_path):
    """An intermediate output (a chunk, a cache) published by the command is not: a Ctrl-C during the rest of a long
    run would be ignored."""
    from satclip import interrupts

    handlers = {signum: signal.getsignal(signum) for signum in SIGNALS}
    with interrupts.enabled():
        interrupts.final_output(tmp_path / "final.txt")
        safe_output.write_text(tmp_path / "chunk.txt", "x")
        assert {signum: signal.getsignal(signum) for signum in SIGNALS} == handlers
        safe_output.write_text(tmp_path / "final.txt", "x")
        assert signal.getsignal(signal.SIGINT) is not handlers[signal.SIGINT]
        os.kill(os.getpid(), signal.SIGINT)  # held: no KeyboardInterrupt
        assert interrupts.held() == tmp_path / "final.txt"
    assert {signum: signal.getsignal(signum) for signum in SIGNALS} == handlers
