"""Worker processes of ``satclip evaluate --workers N`` end with the evaluation that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("h5py")
if not Path("/proc/self/stat").exists():
    pytest.skip("reads processes from /proc", allow_module_level=True)


def _children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid``: pid → command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # (gone meanwhile)
            continue
        if f"\nPPid:\t{pid}\n" in status:
            found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie nobody reaped: the container's init may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow  # (~12 s: two spawned workers must import torch and fit a fold first)
@pytest.mark.parametrize("stop", ["kill", "terminate-group"])
def test_workers_end_when_the_evaluation_is_killed(tmp_path, stop):
    """SIGKILL of `satclip evaluate --workers 2` left both spawned workers (~320 MB each) waiting on their
    task queue forever, re-parented to PID 1. A SIGTERM to the whole process group (a scheduler stopping the
    job) killed the workers first, and the parent ended on their broken pool ("unexpected error", exit 1)."""
    out = tmp_path / "ev"
    argv = [sys.executable, "-m", "satclip", "evaluate", "--encoders", "wrap", "--tasks", "elevation",
            "--n-points", "3000", "--probes", "mlp", "--seeds", "8", "--workers", "2", "--no-figures",
            "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    workers: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        rows = out / "rows.jsonl"
        # workers exist, have set themselves up and fitted a fold: the parent has written a row
        while not (rows.is_file() and rows.read_bytes().count(b"\n") >= 1):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no fold finished within 120 s"
            time.sleep(0.1)
        workers = {pid: cmd for pid, cmd in _children(proc.pid).items() if "spawn_main" in cmd}
        assert len(workers) == 2, _children(proc.pid)
        assert proc.poll() is None, "the evaluation ended before it could be killed: make it longer"
        if stop == "kill":
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 130
            assert proc.stderr.read().decode().strip().splitlines()[-1] == "satclip: interrupted"
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived the evaluation"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:  # (only those this test started)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


STUCK_PROBE_SCRIPT = '''
import os
import sys
import time

from satclip.eval.probes import PROBES, Probe


@PROBES.register("stuck")
class Stuck(Probe):
    """A fold that takes as long as a large probe's: it says when it started, then sleeps."""

    def fit_predict(self, data, seed):
        open(os.path.join(os.environ["FITTING_DIR"], str(os.getpid())), "w").close()
        time.sleep(600)


if __name__ == "__main__":
    from satclip.cli import main

    sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.slow  # (~10 s: two spawned workers import torch)
@pytest.mark.parametrize("when", ["fitting", "starting"])
def test_ctrl_c_stops_an_evaluation_at_once_and_its_workers_with_it(tmp_path, when):
    """Ctrl-C (SIGINT to the terminal's process group) stopped `satclip evaluate --workers 2` only once the
    folds the workers were fitting had finished: nothing for as long as a fold takes (minutes for large probes),
    and a second Ctrl-C meanwhile printed a traceback. A Ctrl-C while the workers still imported torch printed
    each worker's traceback. Now the evaluation kills its workers and exits 130 with one line, at once."""
    script = tmp_path / "stuck_probe.py"
    script.write_text(STUCK_PROBE_SCRIPT)
    fitting = tmp_path / "fitting"
    fitting.mkdir()
    argv = [sys.executable, str(script), "evaluate", "--encoders", "wrap", "--tasks", "elevation",
            "--n-points", "500", "--probes", "stuck", "--seeds", "2", "--workers", "2", "--no-figures",
            "--out", str(tmp_path / "ev")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FITTING_DIR": str(fitting)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while True:
            workers |= {pid for pid, cmd in _children(proc.pid).items() if "spawn_main" in cmd}
            if (len(list(fitting.iterdir())) == 2) if when == "fitting" else workers:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, f"the workers did not {when[:-3]} within 120 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        # (a fold takes 600 s: the old code waited for it)
        assert proc.wait(timeout=60) == 130
        stderr = proc.stderr.read().decode()
        assert "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines()[-1] == "satclip: interrupted"
        assert not [pid for pid in workers if _alive(pid)], "workers outlived the evaluation"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
