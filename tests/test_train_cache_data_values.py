"""Values of ``satclip train``, ``satclip cache`` and ``satclip data`` that were accepted or failed badly: each is
now refused at once with one line naming the key or option and what is allowed (exit 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from satclip import machine, safe_output
from satclip.cli import main
from satclip.train.config import MAX_CACHE_VIEWS

from .conftest import one_error_line, users_output
from .test_train_fit import cached_config
from .train_helpers import synthetic_cache

#: a cache build's forward pass: at most a chunk of 1,024 images × the most views
MAX_CACHE_BATCH_SIZE = 1024 * MAX_CACHE_VIEWS


def test_max_workers_is_a_number_and_cpu_threads_a_context():
    """The bound every worker count is checked against is an int; cpu_threads still restores the thread count."""
    assert machine.max_workers() == max(64, 4 * machine.usable_cores())
    before = torch.get_num_threads()
    with machine.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


MOST_WORKERS = max(64, 4 * machine.usable_cores())


def _refused(capsys, argv: list[str]) -> str:
    """The one error line of a command that exits 2."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    if ": error: argument " in err:  # an argparse type's error: "satclip COMMAND: error: argument --OPTION: …"
        line = err.splitlines()[-1]
        assert line.startswith("satclip ") and "unexpected error" not in line, err
        return line
    return one_error_line(err)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # forked ~900 loader processes (all the machine's memory) for 10**20
        (("data.num_workers", "100000000000000000000"),
         f"data.num_workers=100000000000000000000 must be 0 (load in the main process) to {MOST_WORKERS}"),
        (("data.num_workers", str(MOST_WORKERS + 1)),
         f"to {MOST_WORKERS} (4 per core of this machine or 64, whichever is more)"),
        # "unexpected error (RuntimeError): … tried to allocate 1280000000000 bytes"
        (("model.location_encoder.encoding.legendre_polys", "100000"),
         "model.location_encoder.encoding.legendre_polys=100000 is too large for this machine: its L² = "
         "10,000,000,000 basis functions need at least"),
        # trained and exported (exit 0)
        (("data.coord_jitter", "1e308"), "data.coord_jitter=1e+308 must be 0 (off) to 180 degrees"),
        (("data.coord_jitter", "181"), "data.coord_jitter=181.0 must be 0 (off) to 180 degrees"),
        # a 309-digit batch size in config.yaml, while 2.5 was refused
        (("data.batch_size", "1e308"), "data.batch_size=1e+308 must be an integer"),
        (("data.batch_size", "64.0"), "data.batch_size=64.0 must be an integer"),
        # "must be one of (<class 'int'>, <class 'NoneType'>)"
        (("model.train_degrees_from", "nosuch"), "model.train_degrees_from='nosuch' must be an integer or null"),
        # "training diverged … a lower optim.lr"
        (("model.logit_scale_init", "1e308"), "model.logit_scale_init=1e+308 must be in [-88, 88]"),
        (("model.logit_scale_init", "-89"), "model.logit_scale_init=-89.0 must be in [-88, 88]"),
        # Lightning's "Requirement 'torch_xla>=1.13' not met" (exit 1) and its own texts
        (("trainer.accelerator", "tpu"),
         "trainer.accelerator='tpu' is not one of ['auto', 'cpu', 'gpu', 'cuda', 'mps']"),
        (("trainer.accelerator", "nosuch"), "trainer.accelerator='nosuch' is not one of ['auto', 'cpu'"),
        (("trainer.strategy", "nosuch"), "trainer.strategy='nosuch' is not one of ['auto', 'single_device', 'ddp'"),
    ],
)
def test_train_values_are_refused_by_the_config_check(tmp_path, capsys, override, expected):
    key, value = override
    run = tmp_path / "run"
    line = _refused(capsys, ["train", "--set", f"{key}={value}", "--trainer.output_dir", str(run), "--print-config"])
    assert line.startswith("satclip: error: bad config: ") and expected in line, line
    assert not run.exists()


def test_the_limits_keep_what_works(tmp_path):
    """The largest values each bound allows still load (and 4 workers, L = 40 and an integer batch size)."""
    from satclip.train.config import TrainConfig

    config = TrainConfig().replace(**{
        "data.num_workers": MOST_WORKERS, "data.coord_jitter": 180, "model.logit_scale_init": -88,
        "model.location_encoder.encoding.legendre_polys": 40, "data.batch_size": 64, "trainer.strategy": "ddp",
        "trainer.accelerator": "cpu",
    })  # fmt: skip
    assert config.data.num_workers == MOST_WORKERS and config.data.batch_size == 64
    assert config.model.logit_scale_init == -88.0 and config.data.coord_jitter == 180.0


def test_more_cpu_devices_than_cores_is_refused_before_the_run_starts(tmp_path, capsys):
    """`trainer.devices 100` on a 2-core machine started 100 DDP processes."""
    synthetic_cache(tmp_path / "cache", n=50)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cached_config(tmp_path / "cache", tmp_path / "run")))
    cores = machine.usable_cores()
    line = _refused(capsys, ["train", "--config", str(tmp_path / "c.yaml"), "--trainer.accelerator", "cpu",
                             "--trainer.devices", str(cores + 1)])  # fmt: skip
    assert f"trainer.devices={cores + 1} must be at most {cores} here (or -1 for all of them)" in line, line
    assert f"this machine has {cores} usable CPU core(s)" in line
    assert not (tmp_path / "run").exists()


def test_a_config_that_is_no_text_names_the_file(tmp_path, capsys):
    """`--config img.png` said "bad config: 'utf-8' codec can't decode byte 0x89 in position 0" (no file)."""
    png = tmp_path / "img.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    line = _refused(capsys, ["train", "--config", str(png), "--print-config"])
    assert f"{png} is not a YAML text file (byte 0 is not UTF-8 text)" in line, line


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        # 10**20 forked worker processes until the machine ran out of memory
        ("--num-workers", str(MOST_WORKERS + 1), f"argument --num-workers: must be at most {MOST_WORKERS}"),
        # "Stop argument for islice() must be None or an integer: 0 <= x <= sys.maxsize" (no option named)
        ("--batch-size", "100000000000000000000", f"argument --batch-size: must be at most {MAX_CACHE_BATCH_SIZE}"),
    ],
)
def test_cache_build_counts_are_bounded(tmp_path, capsys, option, value, expected):
    line = _refused(capsys, ["cache", "build", "--data.root", str(tmp_path), "--data.cache", str(tmp_path / "c"),
                             option, value])  # fmt: skip
    assert expected in line, line
    assert not (tmp_path / "c").exists()


def test_cache_build_batch_size_bound_is_the_library_s(tmp_path):
    """The library refuses what the CLI refuses (build_cache's own check, before anything is written)."""
    from satclip.train.cache import build_cache

    with pytest.raises(ValueError, match=f"batch_size=1048577 must be an integer from 1 to {MAX_CACHE_BATCH_SIZE}"):
        build_cache(tmp_path / "c", None, None, batch_size=MAX_CACHE_BATCH_SIZE + 1)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("what", ["file", "plain directory", "evaluation directory"])
def test_cache_verify_of_no_cache_is_bad_input(tmp_path, capsys, what):
    """A file or a directory that is no cache was reported as a failed cache (exit 1), a missing path exit 2."""
    path = tmp_path / "x"
    users_output(path, as_file=what == "file")
    if what == "evaluation directory":
        safe_output.mark_owned(path, kind="evaluation")
    line = _refused(capsys, ["cache", "verify", str(path)])
    if what == "file":
        assert f"{path} is a file, not a directory: a feature cache is the directory" in line, line
    else:
        assert f"{path} is not a feature cache (no manifest.json, no features.npy)" in line, line


def test_cache_verify_of_a_cache_without_its_manifest_still_reports_it_damaged(tmp_path, capsys):
    """A cache that lost its manifest is a damaged cache (exit 1, the report), not "no cache"."""
    synthetic_cache(tmp_path / "cache", n=20)
    (tmp_path / "cache" / "manifest.json").unlink()
    assert main(["cache", "verify", str(tmp_path / "cache")]) == 1
    out = capsys.readouterr().out
    # (a finished cache whose manifest was removed was said to be "interrupted before it wrote its manifest")
    assert "FAILED" in out and "damaged: it holds features.npy but no manifest.json" in out, out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # numpy's "expected non-negative integer"
        (["--seed", "-1"], "argument --seed: must be 0 or more, got -1"),
        # exit 0 with numpy warnings and NaN pixels; 100000: patches 3 million km across
        (["--gsd-km", "1e308"], "--gsd-km must be at most 913.1 km per pixel for 32 px patches, got 1e+308"),
        # (named as the Python API names it: "min_lat")
        (["--min-lat", "10", "--max-lat", "5"], "need -90 <= --min-lat < --max-lat <= 90, got 10.0, 5.0"),
        (["--gsd-km", "100000"], "got 100000: the patch's corners would lie 2,192,031 km from its centre, past the "
                                 "antipode (20,015 km away in the aeqd projection)"),
        (["--gsd-km", "600", "--projection", "laea"], "at most 581.3 km per pixel for 32 px patches, got 600"),
    ],
)
def test_bluemarble_values_are_refused(tmp_path, capsys, argv, expected):
    line = _refused(capsys, ["data", "bluemarble", "--n", "10", *argv, "--out", str(tmp_path / "bm")])
    assert expected in line, line
    assert not (tmp_path / "bm").exists()


def test_bluemarble_into_another_kind_of_satclip_directory_suggests_no_overwrite(tmp_path, capsys):
    """An evaluation directory as --out: "… remove it or pass --overwrite", and --overwrite was then refused."""
    evaluation = tmp_path / "ev"
    safe_output.make_owned_dir(evaluation, kind="evaluation")
    (evaluation / "results.csv").write_text("task,metric\n")
    for extra in ([], ["--overwrite"]):
        line = _refused(capsys, ["data", "bluemarble", "--n", "10", "--out", str(evaluation), *extra])
        assert f"{evaluation} is a satclip evaluation, not a Blue Marble corpus" in line, line
        assert "pass --overwrite" not in line and f"remove {evaluation}" not in line
    assert (evaluation / "results.csv").read_text() == "task,metric\n"


def non_directory(path, kind: str):
    """A regular file or a FIFO at ``path``, and how an error names it."""
    if kind == "file":
        path.write_text("x\n")
        return "a file"
    os.mkfifo(path)
    return "a FIFO (named pipe)"


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_download_from_a_file_says_it_is_a_file(tmp_path, capsys, kind):
    """`data download dl1 --from afile` said "--from afile: no such directory"; a FIFO was "not a directory"."""
    what = non_directory(tmp_path / "afile", kind)
    line = _refused(capsys, ["data", "download", str(tmp_path / "dl"), "--from", str(tmp_path / "afile")])
    assert f"--from {tmp_path / 'afile'} is {what}: give the directory of a local copy" in line, line
    assert "(a `git clone` or `hf download --local-dir` folder)" in line  # (huggingface-cli: gone from the hub client)


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_retrieval_build_from_a_file_says_it_is_a_file(tmp_path, capsys, kind):
    """`retrieval build --cache afile` said "no such feature cache: afile"; a FIFO was "not a directory"."""
    what = non_directory(tmp_path / "afile", kind)
    line = _refused(capsys, ["retrieval", "build", "--model", "bluemarble-l10", "--cache", str(tmp_path / "afile"),
                             "-o", str(tmp_path / "db")])  # fmt: skip
    assert f"--cache {tmp_path / 'afile'} is {what}, not a feature cache directory" in line, line
    assert not (tmp_path / "db").exists()


def test_cache_verify_and_an_output_directory_name_a_fifo(tmp_path, capsys):
    """`cache verify FIFO` and `data bluemarble --out FIFO` said "… is not a directory" / "is a file"."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    line = _refused(capsys, ["cache", "verify", str(fifo)])
    assert f"{fifo} is a FIFO (named pipe), not a directory: a feature cache is the directory" in line, line
    line = _refused(capsys, ["data", "bluemarble", "--n", "10", "--out", str(fifo / "bm")])
    assert f"{fifo} is a FIFO (named pipe), not a directory" in line, line


def _children(pid: int) -> list[int]:
    """Live (non-zombie) child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status and "\nState:\tZ" not in status:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads processes from /proc")
def _handles(pid: int, mask: str, signum: int) -> bool:
    """Whether ``signum`` is in the ``mask`` ("SigCgt": caught, "SigIgn": ignored) of process ``pid``."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(mask))
    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)


class _BrokenHandOver(torch.utils.data.Dataset):
    """In the worker, a batch hand-over that the reading process breaks off (as a stopping command does)."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> int:
        from multiprocessing import connection, current_process, resource_sharer

        resource_sharer.DupFd(os.open(os.devnull, os.O_RDONLY))  # the worker's sharing thread starts serving it
        address = resource_sharer._resource_sharer._address
        connection.Client(address, authkey=current_process().authkey).close()  # connected, left without asking
        time.sleep(0.5)  # (the thread meets the closed end)
        return index


def test_a_batch_hand_over_broken_off_by_the_stopping_command_prints_no_traceback(capfd):
    """The loader worker's sharing thread printed "Traceback … EOFError" (or BrokenPipeError) above
    "satclip: interrupted" when the command stopped reading mid hand-over."""
    from satclip.train.loader_workers import start_worker

    loader = torch.utils.data.DataLoader(_BrokenHandOver(), batch_size=None, num_workers=1, worker_init_fn=start_worker)
    assert list(loader) == [0]
    assert "Traceback" not in capfd.readouterr().err


def test_sigterm_to_the_process_group_of_a_run_with_loader_workers_is_an_interruption(tmp_path):
    """`timeout` (or a scheduler) sends SIGTERM to the whole process group: the loader workers died of it and the
    run ended in "unexpected error (RuntimeError): DataLoader worker (pid N) is killed by signal: Terminated …
    please report it" (exit 1). Now it is the run's interruption: exit 130, how to continue, no worker left."""
    synthetic_cache(tmp_path / "cache", n=2000)
    # two workers for each of the two loaders: the more workers die of the SIGTERM, the surer the DataLoader
    # reports one of them (with one worker the run, before the fix, sometimes ended cleanly by luck)
    config = cached_config(tmp_path / "cache", tmp_path / "run", data={"batch_size": 64, "num_workers": 2},
                           trainer={"max_epochs": 10000})  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "satclip", "train", "--config", str(tmp_path / "c.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "history.jsonl").is_file():  # an epoch trained: the worker is serving batches
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no epoch within 120 s"
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert workers, "no loader worker"
        # each dies of the SIGTERM at once (it ran the command's handler and left through Python, where a thread
        # handing a batch over printed its traceback) and leaves Ctrl-C to the command
        assert not any(_handles(pid, "SigCgt", signal.SIGTERM) for pid in workers)
        assert all(_handles(pid, "SigIgn", signal.SIGINT) for pid in workers)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        err = proc.stderr.read().decode()
        assert err.strip().splitlines()[-1] == "satclip: interrupted", err
        assert "training interrupted in epoch" in err and "unexpected error" not in err and "Traceback" not in err
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and pid in _children(proc.pid) for pid in workers):
            assert time.monotonic() < deadline, "loader workers outlived the run"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:  # (only those this test started)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_sigterm_to_the_process_group_of_a_cache_build_with_loader_workers_is_an_interruption(tmp_path):
    """The loader workers died of the SIGTERM too, and torch's child-death handler raised "DataLoader worker (pid N)
    is killed by signal: Terminated" while the build unwound: "Exception ignored in … __del__" and a traceback
    were printed around "satclip: interrupted"."""
    import shutil

    from .conftest import S2_EXAMPLES, require

    shutil.copytree(require(S2_EXAMPLES), tmp_path / "s2")
    argv = [sys.executable, "-m", "satclip", "cache", "build", "--data.root", str(tmp_path / "s2"),
            "--data.dataset", "s2100k", "--model.image_encoder.name", "mosaiks", "--set",
            "model.image_encoder.in_chans=13", "--set", "model.image_encoder.num_filters=64",
            "--data.cache", str(tmp_path / "cache"), "--data.cache_views", "256", "--data.batch_size", "256",
            "--data.num_workers", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(workers := _children(proc.pid)) < 2:  # the loader's workers are reading images
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no loader workers within 120 s"
            time.sleep(0.05)
        time.sleep(3)  # (their first batches read)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        err = proc.stderr.read().decode()
        assert err.strip().splitlines()[-1] == "satclip: interrupted", err
        assert "Traceback" not in err and "Exception ignored" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize("inside", ["images", "cache"])
def test_a_run_directory_inside_the_image_folder_or_the_feature_cache_is_refused(tmp_path, capsys, inside):
    """`trainer.output_dir` inside data.root/images (or inside the feature cache) was accepted: ~100 MB of
    checkpoints joined the user's dataset (and its next archive), where `cache build` refuses a cache there."""
    import shutil

    from satclip.cli import main

    from .conftest import S2_EXAMPLES, require

    root = tmp_path / "s2"
    shutil.copytree(require(S2_EXAMPLES), root)
    common = ["--data.root", str(root), "--data.dataset", "s2100k", "--model.image_encoder.name", "mosaiks",
              "--set", "model.image_encoder.in_chans=13", "--set", "model.image_encoder.num_filters=4",
              "--data.cache", str(tmp_path / "cache"), "--data.cache_views", "1", "--data.batch_size", "8",
              "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert main(["cache", "build", *common]) == 0
    images = sorted(p.name for p in (root / "images").iterdir())
    run = (root / "images" if inside == "images" else tmp_path / "cache") / "run"
    capsys.readouterr()
    assert main(["train", *common, "--trainer.output_dir", str(run)]) == 2
    what = "the image folder of data.root " + str(root / "images") if inside == "images" else \
        "the feature cache " + str(tmp_path / "cache")  # fmt: skip
    assert capsys.readouterr().err.strip() == f"satclip: error: the output {run} is inside {what}; write it elsewhere"
    assert not run.exists() and sorted(p.name for p in (root / "images").iterdir()) == images


def test_a_run_or_cache_inside_a_blue_marble_corpus_is_refused(tmp_path, capsys):
    """A Blue Marble corpus keeps its images in images.npy at its root: a run (checkpoints, exports) or a cache
    written inside it was accepted (only an S2-100K root's images/ was kept out) and mixed with the corpus."""
    from satclip.errors import BadInputError
    from satclip.train import fit, from_dict

    from .train_helpers import bluemarble_run

    config = bluemarble_run(tmp_path)
    root = Path(config["data"]["root"])
    before = sorted(p.name for p in root.iterdir())
    run = {**config, "trainer": {**config["trainer"], "output_dir": str(root / "run")}}
    with pytest.raises(BadInputError, match=r"is inside the Blue Marble corpus of data\.root"):
        fit(from_dict(run))
    cache = {**config, "data": {**config["data"], "cache": str(root / "cache")}}
    with pytest.raises(BadInputError, match=r"is inside the Blue Marble corpus of data\.root"):
        fit(from_dict(cache))
    assert sorted(p.name for p in root.iterdir()) == before


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"data": {"batch_size": 64, "drop_last": True}},
         "data.batch_size=64 with data.drop_last=true leaves no training batch of the 18 training samples "
         "(data.val_fraction=0.1 of them held out): lower data.batch_size to at most 18, or set data.drop_last false"),
        ({"data": {"batch_size": 8}, "trainer": {"limit_train_batches": 0.01}},
         "trainer.limit_train_batches=0.01 of the 3 training batches per epoch is less than one batch: use at least "
         "0.334"),
    ],
)  # fmt: skip
def test_a_run_of_no_training_batch_is_refused(tmp_path, capsys, overrides, expected):
    """`drop_last` with a batch larger than the training samples trained nothing, exited 0 and exported the
    untrained model as export/last; a limit_train_batches fraction under one batch failed in Lightning's words."""
    synthetic_cache(tmp_path / "cache", n=20)
    config = cached_config(tmp_path / "cache", tmp_path / "run", data={"val_fraction": 0.1})
    for section, values in overrides.items():
        config[section] = {**config[section], **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path)]) == 2
    assert one_error_line(capsys.readouterr().err) == f"satclip: error: {expected}"
    assert not (tmp_path / "run").exists()  # (refused before anything is written)


def test_a_batch_larger_than_the_training_samples_is_said(tmp_path, capsys):
    """`--data.batch_size 64` on 18 training samples trained without a word at an 18-way softmax (with
    data.drop_last it is refused): one warning names both numbers and what it means, once the run's checks pass."""
    synthetic_cache(tmp_path / "cache", n=20)
    config = cached_config(tmp_path / "cache", tmp_path / "run", data={"val_fraction": 0.1, "batch_size": 64},
                           trainer={"max_epochs": 1})  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "data.batch_size" in line]
    assert said == [
        "data.batch_size=64 is more than the 18 training samples: each epoch is one batch of all 18, whose "
        "contrastive softmax is 18-way instead of 64-way, so its losses (validation's too) are not comparable to "
        "those of runs at that batch size"
    ]
    assert main(["train", "--config", str(path), "--data.batch_size", "18", "--trainer.output_dir",
                 str(tmp_path / "run18")]) == 0  # fmt: skip
    assert "data.batch_size" not in capsys.readouterr().err


def test_a_run_into_a_file_says_its_epochs_and_no_lightning_chatter(tmp_path):
    """Every run printed Lightning's GPU/TPU lines, an advert for a cloud logger, "limit_train_batches=1.0 was
    configured …", a deprecation warning from inside Lightning and "fit stopped", and drew its progress bar's
    frames into a file that stdout went to (the last one in front of the results, with a 'v_num: 0.000')."""
    synthetic_cache(tmp_path / "cache", n=200)
    config = cached_config(tmp_path / "cache", tmp_path / "run", data={"val_fraction": 0.1},
                           trainer={"max_epochs": 2, "enable_progress_bar": True})  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "satclip", "train", "--config", str(path)], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for chatter in ("GPU available", "TPU available", "litlogger", "LeafSpec", "was configured so 100%",
                    "`Trainer.fit` stopped", "logging interval"):  # fmt: skip
        assert chatter not in done.stderr, chatter
    assert "v_num" not in done.stdout and "━" not in done.stdout
    epochs = [line.split(":")[0] for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert epochs == ["epoch 1 of 2", "epoch 2 of 2"]  # (each epoch's row, where no bar shows it)
    assert done.stdout.startswith("epoch 2 of 2: ")  # the summary counts epochs as they do
    verbose = subprocess.run([sys.executable, "-m", "satclip", "-v", "train", "--config", str(path),
                              "--trainer.output_dir", str(tmp_path / "v")], capture_output=True, text=True)  # fmt: skip
    assert verbose.returncode == 0 and "GPU available" in verbose.stderr  # (-v shows them)


def test_the_progress_bar_counts_epochs_as_the_other_lines_do(tmp_path, monkeypatch, capsys):
    """Lightning's bar said "Epoch 1" in the last epoch of `max_epochs 2` (from 0, no total), beside satclip's
    "epoch 2 of 2" lines and summary."""
    from lightning.pytorch.utilities import imports

    from satclip.train import fit, fitting, from_dict

    monkeypatch.setattr(fitting, "_progress_bar_shown", lambda: True)  # (a terminal)
    synthetic_cache(tmp_path / "cache", n=200)
    for rich in (True, False):  # (Lightning draws Rich's bar where rich is installed, else tqdm's)
        if rich and not imports._RICH_AVAILABLE:
            continue
        monkeypatch.setattr(imports, "_RICH_AVAILABLE", rich)
        config = cached_config(tmp_path / "cache", tmp_path / f"run{rich}",
                               trainer={"max_epochs": 2, "enable_progress_bar": True})  # fmt: skip
        fit(from_dict(config))
        shown = capsys.readouterr()
        bars = shown.out + shown.err
        assert "Epoch 2/2" in bars, rich  # (Rich's bar, captured, shows its last frame only)
        assert "Epoch 0" not in bars and "Epoch 1/1" not in bars and "Epoch 1:" not in bars, rich


def test_the_results_of_a_run_list_its_readers_once(tmp_path, capsys):
    """`satclip train` printed every reader of each export, best and last alike (about ten lines of the same
    readers); each export is one line now, and the readers are listed once."""
    synthetic_cache(tmp_path / "cache", n=100)
    config = cached_config(tmp_path / "cache", tmp_path / "run", trainer={"max_epochs": 1})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    export = tmp_path / "run" / "export"
    assert f"best: {export / 'best'} (native), {export / 'best.ckpt'} (original)" in out
    assert f"last: {export / 'last'} (native), {export / 'last.ckpt'} (original)" in out
    assert out.count(f"readers of {export / 'last.ckpt'} and the others:") == 1
    assert sum("satclip: reproduces it exactly" in line for line in out) == 1


def test_the_batch_warning_counts_the_devices_batches_as_one_softmax(tmp_path, caplog):
    """The loss gathers the devices' batches into one softmax: 19 samples on 2 devices at data.batch_size 64 train
    one batch of 18 (9 per device), an 18-way softmax instead of a 128-way one."""
    import logging

    from satclip.train.config import from_dict
    from satclip.train.fitting import _check_training_batches

    config = from_dict(cached_config(tmp_path / "cache", tmp_path / "run", data={"batch_size": 64},
                                     trainer={"devices": 2}))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="satclip"):
        _check_training_batches(19, config)
    assert [r.getMessage() for r in caplog.records] == [
        "data.batch_size=64 on 2 devices is more than the 19 training samples: each epoch is one batch of 18 of them "
        "(9 per device), whose contrastive softmax is 18-way instead of 128-way, so its losses (validation's too) are "
        "not comparable to those of runs at that batch size"
    ]
