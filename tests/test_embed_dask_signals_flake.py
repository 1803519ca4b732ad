"""``satclip embed --engine dask`` stopped by Ctrl-C or SIGTERM to its whole process group at the moments where
that was not one line and exit 130 (tests/test_embed_dask.py's slow signal test failed now and then): while the
client waits for its event loop, busy as on a loaded machine (the loop's tracebacks of what the signal cut short),
while Python runs a garbage-collector callback (the interruption lost: the job ran to its end, exit 0), and
during the first seconds, while the server the workers are forked from imports torch (its traceback).

Each command runs in a session of its own, started as from a terminal (:func:`ctrl_c_at_default`). A preamble
run before the command (``PREAMBLE_*``, ``python -c``) sends the signal at the chosen moment, from inside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from .conftest import ctrl_c_at_default

pytest.importorskip("distributed")

N = 200_000

#: ``python -c`` program: a preamble, then ``satclip`` with the arguments that follow, as ``python -m satclip``
#: runs it
LAUNCH = """\
import runpy, signal, sys
{preamble}
sys.argv[0] = "satclip"
runpy.run_module("satclip", run_name="__main__", alter_sys=True)
"""

#: the client's event loop busy for 2 s (as when the machine is loaded) as the job registers its plugin; the
#: signal comes 0.5 s later, while the client waits for the loop to take its call: the KeyboardInterrupt left
#: distributed's cancel of that call to run on the loop before the call had started, and tornado logged its
#: NameError with a traceback
PREAMBLE_BUSY_LOOP = """
import os, threading, time
import distributed

register = distributed.Client.register_plugin

def register_plugin(self, *args, **kwargs):
    self.loop.add_callback(time.sleep, 2)
    threading.Timer(0.5, os.killpg, (0, signal.{signal})).start()
    return register(self, *args, **kwargs)

distributed.Client.register_plugin = register_plugin
"""

#: the signal sent, as the job registers its plugin, from a garbage-collector callback in the main thread (the
#: scheduler of a local cluster runs one on every collection): Python runs the handler inside the callback,
#: where its KeyboardInterrupt was printed as "Exception ignored" and dropped
PREAMBLE_GC_CALLBACK = """
import gc, os, threading, time
import distributed

armed = []

def in_a_gc_callback(phase, info):
    if armed and phase == "start" and threading.current_thread() is threading.main_thread():
        armed.clear()
        os.killpg(0, signal.{signal})
        time.sleep(0.2)  # the handler runs after this call, in the callback

gc.callbacks.append(in_a_gc_callback)
register = distributed.Client.register_plugin

def register_plugin(self, *args, **kwargs):
    armed.append(True)
    gc.collect()
    return register(self, *args, **kwargs)

distributed.Client.register_plugin = register_plugin
"""


@pytest.fixture(scope="module")
def points(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("in") / "p.parquet"
    pd.DataFrame({"lon": rng.uniform(-180, 180, N), "lat": rng.uniform(-90, 90, N)}).to_parquet(path)
    return path


def embed_argv(points: Path, out: Path, preamble: str | None = None) -> list[str]:
    """``python -m satclip embed … --engine dask --workers 2``, or the same after ``preamble``."""
    command = ["-m", "satclip"] if preamble is None else ["-c", LAUNCH.format(preamble=preamble)]
    return [sys.executable, *command, "embed", str(points), "-o", str(out), "--model", "bluemarble-l40",
            "--precision", "float32", "--engine", "dask", "--workers", "2", "--no-progress"]  # fmt: skip


def start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with ctrl_c_at_default():
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    """stderr of ``proc`` once it has ended (its whole group killed if it does not)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return err


def assert_interrupted(proc: subprocess.Popen, err: str) -> None:
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip().splitlines()[-1] == "satclip: interrupted", err


def assert_resumes(points: Path, out: Path) -> None:
    """Nothing half-written: no output yet, and the same command (no preamble) completes the job."""
    assert not out.exists()
    proc = start(embed_argv(points, out))
    err = finish(proc, timeout=300)
    assert proc.returncode == 0, err
    table = pq.read_table(out)
    assert table.num_rows == N and table.column("lon").equals(pq.read_table(points).column("lon"))
    assert not out.with_name(out.name + ".partial").exists()


@pytest.mark.slow  # (~30 s: a local cluster started twice per signal)
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_client_waits_for_its_busy_event_loop_is_one_line(points, tmp_path, signal_name):
    out = tmp_path / "e.parquet"
    proc = start(embed_argv(points, out, PREAMBLE_BUSY_LOOP.format(signal=signal_name)))
    assert_interrupted(proc, finish(proc))
    assert_resumes(points, out)


@pytest.mark.slow  # (~30 s)
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_handled_in_a_gc_callback_still_interrupts(points, tmp_path, signal_name):
    out = tmp_path / "e.parquet"
    proc = start(embed_argv(points, out, PREAMBLE_GC_CALLBACK.format(signal=signal_name)))
    assert_interrupted(proc, finish(proc))
    assert_resumes(points, out)


def child_commands(psutil, pid: int) -> list[str]:
    commands = []
    for child in psutil.Process(pid).children():
        try:
            commands.append(" ".join(child.cmdline()))
        except psutil.Error:  # (gone meanwhile)
            pass
    return commands


@pytest.mark.slow  # (~10 s)
def test_ctrl_c_while_the_workers_server_imports_is_one_line(points, tmp_path):
    """Ctrl-C half a second after the server the workers are forked from has started: it is importing its
    preload (distributed, torch, satclip: seconds), which printed a KeyboardInterrupt traceback."""
    psutil = pytest.importorskip("psutil")
    proc = start(embed_argv(points, tmp_path / "e.parquet"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            if any("multiprocessing.forkserver" in command for command in child_commands(psutil, proc.pid)):
                break
            time.sleep(0.02)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
    finally:
        err = finish(proc)
    assert_interrupted(proc, err)
