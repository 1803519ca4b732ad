"""The precision switch: names, the bf16 capability check, "auto" and its calibration."""

from __future__ import annotations

import logging
import os
import shutil
import types
from pathlib import Path

import pytest
import torch

import satclip
from satclip.errors import BadInputError
from satclip.models import precision

from .conftest import REFERENCE, require


@pytest.fixture(autouse=True)
def fresh_calibrations(monkeypatch):
    monkeypatch.delenv(precision.ENV, raising=False)  # the library default, "auto"
    precision.clear_calibrations()
    yield
    precision.clear_calibrations()


@pytest.fixture
def ckpt():
    return require(REFERENCE / "satclip-resnet18-l10.ckpt")


def no_bf16_cpu(monkeypatch):
    """A CPU like the AMD EPYC dev box or a pre-Sapphire-Rapids Xeon: AVX-512 without BF16, no AMX."""
    caps = {"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": False, "amx_tile": False}
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: caps)


def test_names_aliases_and_errors():
    assert precision.check("bfloat16") == precision.check(torch.bfloat16) == "bf16"
    assert precision.check("FP32") == precision.check(torch.float32) == "float32"
    with pytest.raises(BadInputError, match="half.*auto, float32, bf16, float64"):
        precision.check("half")
    # the numbers as the texts "32" and "64" are (precision=32 was refused while "32" was taken)
    assert precision.check(32) == precision.check("32") == "float32"
    assert precision.check(64) == precision.check("64") == "float64"
    for number in (16, True, 32.0):
        with pytest.raises(BadInputError, match=r"is not one of auto, float32, bf16, float64"):
            precision.check(number)
    assert precision.requested(None, torch.float64) == "float64"
    assert precision.requested("bf16", torch.float32) == "bf16"  # bf16 runs from float32 weights
    with pytest.raises(BadInputError, match="contradicts"):
        precision.requested("bf16", torch.float64)


def test_the_command_line_takes_the_aliases_the_api_takes(tmp_path, capsys):
    """``--precision fp32`` was an "invalid choice" without a suggestion, while ``precision="fp32"`` and
    SATCLIP_PRECISION=fp32 were taken."""
    from satclip.cli import build_parser, main, precision_option

    assert precision_option.PRECISIONS == precision.PRECISIONS and precision_option.ALIASES == precision._ALIASES
    parser = build_parser()
    for given, name in [("fp32", "float32"), ("FP64", "float64"), ("bfloat16", "bf16"), ("32", "float32")]:
        args = parser.parse_args(["map", "--model", "m", "--resolution", "10", "-o", str(tmp_path / "m.tif"),
                                  "--precision", given])  # fmt: skip
        assert args.precision == name == precision.check(given)
        assert parser.parse_args(["evaluate", "--out", "ev", "--precision", given]).precision == name
    assert main(["map", "--model", "m", "--resolution", "10", "-o", str(tmp_path / "m.tif"), "--precision",
                 "fp33"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "invalid choice: 'fp33'" in err and "did you mean 'fp32'?" in err, err


def test_default_is_auto_unless_the_environment_says(monkeypatch):
    assert precision.default() == "auto"
    monkeypatch.setenv(precision.ENV, "fp64")
    assert precision.default() == "float64"
    monkeypatch.setenv(precision.ENV, "fast")
    with pytest.raises(BadInputError, match="SATCLIP_PRECISION"):
        precision.default()


def test_capability_check_reads_the_bf16_features(monkeypatch):
    no_bf16_cpu(monkeypatch)
    supported, why = precision.bf16_support("cpu")
    assert not supported and "avx512_bf16" in why
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"avx512_f": True, "amx_bf16": True})
    assert precision.bf16_support("cpu") == (True, "CPU with amx_bf16")
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"avx512_bf16": True})  # AMD Zen 4
    assert precision.bf16_support("cpu")[0]


def test_auto_falls_back_to_float32_without_bf16_and_measures_nothing(monkeypatch, ckpt, caplog):
    no_bf16_cpu(monkeypatch)

    def must_not_run(*args, **kwargs):
        raise AssertionError("no calibration on a CPU without bf16")

    monkeypatch.setattr(precision, "_calibrate", must_not_run)
    with caplog.at_level(logging.INFO, logger="satclip.models.precision"):
        encoder = satclip.load(ckpt)  # the default: "auto"
    assert encoder.precision == "float32"
    assert encoder.precision_choice.requested == "auto"
    assert "float32" in caplog.text and "bf16 would be emulated" in caplog.text
    assert encoder.encode([[0.0, 0.0]]).dtype == torch.float32


def fake_timings(monkeypatch, seconds: dict[str, float]):
    monkeypatch.setattr(precision, "bf16_support", lambda device="cpu": (True, "CPU with amx_bf16 (faked)"))
    monkeypatch.setattr(precision, "_speedup", lambda run, rounds=5: seconds["float32"] / seconds["bf16"])


def test_emulated_bf16_is_refused_after_a_quick_look(monkeypatch, ckpt):
    """Where bf16 is far slower, one comparison on a few points decides, not the full calibration."""
    monkeypatch.setattr(precision, "bf16_support", lambda device="cpu": (True, "CPU with amx_bf16 (faked)"))
    calls = []

    def speedup(run, rounds=5):
        calls.append(rounds)
        return 1.0 / 50.0

    monkeypatch.setattr(precision, "_speedup", speedup)
    choice = satclip.load(ckpt, precision="auto").precision_choice
    assert choice.precision == "float32" and choice.speedup == pytest.approx(0.02)
    assert calls == [1, 1] and choice.min_cosine is None  # two looks agree: no full calibration


def test_one_slow_quick_look_does_not_decide(monkeypatch, ckpt):
    """A first look disturbed by another job (bf16 50x slower) is looked at again before float32 is chosen."""
    monkeypatch.setattr(precision, "bf16_support", lambda device="cpu": (True, "CPU with amx_bf16 (faked)"))
    ratios = iter([1.0 / 50.0, 2.0])  # first look, second look; then the full calibration

    def speedup(run, rounds=5):
        return next(ratios, 4.0)

    monkeypatch.setattr(precision, "_speedup", speedup)
    choice = satclip.load(ckpt, precision="auto").precision_choice
    assert choice.precision == "bf16" and choice.speedup == pytest.approx(4.0)



def test_one_disturbed_measurement_of_the_full_calibration_does_not_decide(monkeypatch, ckpt):
    """On a busy machine one measurement of a model bf16 runs 1.9x as fast measured 0.8x, and "auto" chose float32
    and kept it: the full calibration takes the median of three measurements."""
    monkeypatch.setattr(precision, "bf16_support", lambda device="cpu": (True, "CPU with avx512_bf16 (faked)"))
    ratios = iter([1.0, 0.8, 1.9, 1.8])  # the quick look; then the full calibration's three

    def speedup(run, rounds=5):
        return next(ratios)

    monkeypatch.setattr(precision, "_speedup", speedup)
    choice = satclip.load(ckpt, precision="auto").precision_choice
    assert choice.precision == "bf16" and choice.speedup == pytest.approx(1.8)
    assert next(ratios, None) is None

def test_a_burst_of_other_work_during_the_calibration_does_not_decide(monkeypatch, ckpt):
    """The calibration timed float32 three times, then bf16 three times: a second of another job's work falling
    on bf16's timings measured it 0.06x float32 on an AMX CPU (3x faster there), and "auto" chose float32 and
    kept that choice. On a clock where bf16 takes 0.3 of float32's time, and four calls in the middle of the
    full calibration are each 10 s slower, bf16 is still measured 3.3x faster."""
    from satclip.models import fused

    monkeypatch.setattr(precision, "bf16_support", lambda device="cpu": (True, "CPU with amx_bf16 (faked)"))
    clock, calls, real = [0.0], [0], fused.encode_points

    def timed(encoder, points, name):
        calls[0] += 1
        clock[0] += (1.0 if name == "float32" else 0.3) + (10.0 if 11 <= calls[0] <= 14 else 0.0)
        return real(encoder, points, name)

    monkeypatch.setattr(fused, "encode_points", timed)
    monkeypatch.setattr(precision, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))  # (its clock only)
    choice = satclip.load(ckpt, precision="auto").precision_choice
    assert choice.precision == "bf16" and choice.speedup == pytest.approx(1.0 / 0.3), choice


def test_auto_picks_bf16_only_when_measured_faster(monkeypatch, ckpt):
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 1.25})
    slower = satclip.load(ckpt, precision="auto").precision_choice
    assert slower.precision == "float32" and slower.speedup == pytest.approx(0.8)
    precision.clear_calibrations()
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.95})  # within timing noise: not worth it
    assert satclip.load(ckpt, precision="auto").precision == "float32"
    precision.clear_calibrations()
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.25})
    faster = satclip.load(ckpt, precision="auto").precision_choice
    assert faster.precision == "bf16" and faster.speedup == pytest.approx(4.0)
    assert faster.min_cosine >= precision.MIN_COSINE


def test_auto_is_measured_once_per_machine_and_kept(monkeypatch, ckpt, caplog):
    """A later run (a new process: the in-memory calibrations gone) makes the same choice from the kept
    calibration without measuring, even when the machine would now measure otherwise, and says so (at INFO, as a
    fresh calibration: it was a debug line), naming the file; a corrupt kept choice is made again from the kept
    timing, a corrupt timing, or another thread count, is measured again."""
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.25})
    encoder = satclip.load(ckpt, precision="auto")
    first = encoder.precision_choice
    assert first.precision == "bf16"
    timing, choice = calibration_of(encoder), choice_of(encoder)
    assert sorted(timing.parent.glob("*.json")) == sorted([timing, choice])
    as_in_a_new_process()
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 1.25})  # busy now: bf16 would measure slower
    with caplog.at_level(logging.INFO, logger="satclip.models.precision"):
        assert satclip.load(ckpt, precision="auto").precision_choice == first
    said = f"{first.reason}; chosen before on this machine, {choice}: delete {choice.parent} to measure again"
    assert f"precision auto -> bf16 ({said})" in caplog.text
    choice.write_text("{not json")
    as_in_a_new_process()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="satclip.models.precision"):
        assert satclip.load(ckpt, precision="auto").precision_choice == first  # from the kept timing
    said = f"{first.reason}; min cosine to float32 {first.min_cosine:.6f}; timed before on this machine for the same"
    assert f"precision auto -> bf16 ({said} architecture, {timing})" in caplog.text
    timing.write_text("{not json")
    choice.unlink()
    as_in_a_new_process()
    assert satclip.load(ckpt, precision="auto").precision == "float32"  # measured again
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        as_in_a_new_process()
        fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.25})
        assert satclip.load(ckpt, precision="auto").precision == "bf16"  # another key: measured
    finally:
        torch.set_num_threads(threads)


def test_auto_picks_bf16_only_within_the_cosine_bound(monkeypatch, ckpt):
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.25})
    monkeypatch.setattr(precision, "MIN_COSINE", 1.0)  # no bf16 result is that close
    choice = satclip.load(ckpt, precision="auto").precision_choice
    assert choice.precision == "float32" and "cosine" in choice.reason


def as_in_a_new_process():
    """Forget what this process timed and chose (the kept files stay)."""
    precision._CALIBRATED.clear()
    precision._TIMED.clear()


def test_timing_runs_once_per_architecture_and_device_and_the_cosine_per_model(monkeypatch, ckpt):
    """The best and last exports of one training run, loaded on a busy machine, were timed either side of
    MIN_SPEEDUP and ran in different precisions: the timing is the architecture's, the cosine the weights'."""
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.5})
    calls = []
    real = precision._calibrate
    monkeypatch.setattr(precision, "_calibrate", lambda *a: calls.append(1) or real(*a))
    first = satclip.load(ckpt, precision="auto")
    again = satclip.load(ckpt, precision="auto")
    first.encode([[1.0, 2.0]], precision="auto")
    assert len(calls) == 1 and first.precision_choice == again.precision_choice
    assert first.precision == "bf16"
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 1.25})  # busy now: bf16 would be timed slower
    with torch.no_grad():
        again.nnet.last_layer.bias.add_(1.0)  # other weights: another model of the same architecture
    other = precision.resolve("auto", again)
    assert len(calls) == 1 and other.precision == "bf16" and other.speedup == first.precision_choice.speedup
    assert other.min_cosine != first.precision_choice.min_cosine  # (its own weights' cosine)
    as_in_a_new_process()  # … and in a later process, from the kept timing
    assert precision.resolve("auto", again) == other and len(calls) == 1
    monkeypatch.setattr(precision, "MIN_COSINE", 1.0)  # no bf16 result is that close: the cosine decides …
    choice_of(again).unlink()  # (… where the choice is made again: from the kept timing, not timed)
    as_in_a_new_process()
    assert precision.resolve("auto", again).precision == "float32" and len(calls) == 1
    monkeypatch.setattr(precision, "MIN_COSINE", 0.9999)
    wider = satclip.load("bluemarble-l10", precision="float32")  # another architecture: timed
    precision.resolve("auto", wider)
    assert len(calls) == 2


def test_a_saved_model_loads_with_the_same_calibration(monkeypatch, ckpt, tmp_path):
    """The fingerprint hashed repr(config), which follows the key order, and config.json has sorted keys: a model
    saved and loaded again was calibrated anew (a measurement that could pick the other precision, embeddings
    0.02 apart)."""
    config = {"encoding": {"name": "sphericalharmonics", "legendre_polys": 10}, "network": {"name": "siren"}}
    reordered = {"network": {"name": "siren"}, "encoding": {"legendre_polys": 10, "name": "sphericalharmonics"}}
    assert precision._fingerprint(types.SimpleNamespace(config=config, state_dict=dict)) == precision._fingerprint(
        types.SimpleNamespace(config=reordered, state_dict=dict))  # fmt: skip
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.5})
    calls = []
    real = precision._calibrate
    monkeypatch.setattr(precision, "_calibrate", lambda *a: calls.append(1) or real(*a))
    first = satclip.load(ckpt, precision="auto")
    first.save(tmp_path / "saved")
    again = satclip.load(tmp_path / "saved", precision="auto")
    assert len(calls) == 1 and again.precision_choice == first.precision_choice


def shipped_encoder():
    """A model shipped with the package (the calibration tests need no golden data)."""
    return satclip.load("bluemarble-l10", precision="float32")


def calibration_of(encoder) -> Path:
    """The file of the timing of ``encoder``'s architecture."""
    key = ("cpu", torch.get_num_threads(), precision._fingerprint(encoder, weights=False))
    return precision.calibration_file(torch.device("cpu"), key)


def choice_of(encoder) -> Path:
    """The file of the choice for ``encoder`` (its architecture's timing and its own cosine)."""
    architecture = precision._fingerprint(encoder, weights=False)
    key = ("cpu", torch.get_num_threads(), architecture, precision._fingerprint(encoder))
    return precision.calibration_file(torch.device("cpu"), key)


def must_not_calibrate(*args):
    raise AssertionError("calibrated although another process was calibrating")


def test_auto_waits_for_the_calibration_another_process_is_making(monkeypatch, caplog):
    """Shards of one job started at once on a fresh cache each calibrated while the others loaded the CPU, so
    they could choose differently (one bf16, one float32) and overwrote each other's file. Now the first holds
    the calibration's lock; a second waits for it (saying so once) and takes its choice without measuring."""
    from satclip import safe_output

    from .test_safe_output import hold_lock

    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.25})
    monkeypatch.setattr(precision, "_calibrate", must_not_calibrate)
    encoder = shipped_encoder()
    file = calibration_of(encoder)
    safe_output.make_owned_dir(file.parent, kind="precision-calibrations")  # as the calibrating process did
    theirs = precision.Choice("float32", "auto", "measured by the other shard", 1.1, 0.99999)
    # the other process: holds the lock until told to go on (once this one waits), then keeps its choice
    keep = f"p._keep_calibration(Path({str(file)!r}), p.{theirs!r})"
    process = hold_lock(
        file, f"sys.stdin.readline(); from pathlib import Path; import satclip.models.precision as p; {keep}"
    )

    class GoOnWhenWaited(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("waiting for PID"):
                process.stdin.write(b"go\n")
                process.stdin.flush()

    handler = GoOnWhenWaited()
    logging.getLogger("satclip.safe_output").addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="satclip"):
            choice = precision.resolve("auto", encoder)
    finally:
        logging.getLogger("satclip.safe_output").removeHandler(handler)
        process.communicate(b"")
    assert choice == theirs  # (this process would have measured bf16 4x as fast)
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for PID")]
    assert waits == [f"waiting for PID {process.pid}, which is calibrating precision ({file})"]
    assert f"timed by another process, {file})" in caplog.text
    assert process.returncode == 0
    kept = [safe_output.MARKER, file.name, choice_of(encoder).name]  # (the timing and the choice: no lock left)
    assert sorted(p.name for p in file.parent.iterdir()) == sorted(kept)
    assert precision.resolve("auto", encoder) == theirs  # kept in this process too


def test_threads_resolving_auto_at_once_calibrate_once(monkeypatch, caplog):
    """Threads of one process (embedding in parallel) each calibrated too, and the second one logged that it
    was waiting for its own PID; now one calibrates and the others take its choice."""
    import threading

    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.25})
    encoder = shipped_encoder()
    calls, started, release = [], threading.Event(), threading.Event()
    calibrate = precision._calibrate

    def slow_calibration(*args):
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(timeout=60)  # the other threads reach resolve meanwhile
        return calibrate(*args)

    monkeypatch.setattr(precision, "_calibrate", slow_calibration)
    choices = []
    threads = [threading.Thread(target=lambda: choices.append(precision.resolve("auto", encoder))) for _ in range(3)]
    with caplog.at_level(logging.INFO, logger="satclip"):
        threads[0].start()
        started.wait(timeout=60)
        for thread in threads[1:]:
            thread.start()
        release.set()
        for thread in threads:
            thread.join(timeout=120)
    assert len(calls) == 1 and len(choices) == 3 and len(set(choices)) == 1
    assert "waiting for PID" not in caplog.text


def test_auto_calibrates_without_keeping_in_a_cache_not_satclips(monkeypatch, caplog):
    """A precision directory holding someone else's files: calibrated each time, nothing written there (no
    calibration, no lock file), and said (a debug line: embed's precision changed between runs unexplained)."""
    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.25})
    encoder = shipped_encoder()
    foreign = calibration_of(encoder).parent
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    try:
        with caplog.at_level(logging.WARNING, logger="satclip"):
            assert precision.resolve("auto", encoder).precision == "bf16"
        assert "precision auto measures again on every run" in caplog.text
        assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
        as_in_a_new_process()  # measured again
        fake_timings(monkeypatch, {"float32": 1.0, "bf16": 1.25})
        assert precision.resolve("auto", encoder).precision == "float32"
    finally:
        shutil.rmtree(foreign)  # (clear_calibrations removes only satclip's directory)


def test_auto_calibrates_without_keeping_in_a_read_only_cache(monkeypatch, caplog):
    """A read-only cache (one shared by an administrator): the lock file cannot be created either; calibrated
    without keeping, no error. Creating a file there fails as the kernel fails it for a user (a chmod 555 would
    not stop root, and CI runs as root)."""
    import builtins
    import errno
    import io

    from satclip import safe_output

    fake_timings(monkeypatch, {"float32": 1.0, "bf16": 0.25})
    encoder = shipped_encoder()
    directory = calibration_of(encoder).parent
    safe_output.make_owned_dir(directory, kind="precision-calibrations")
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.dirname(os.path.abspath(path)) == str(directory):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    real_io_open = io.open

    def read_only_io_open(file, mode="r", *args, **kwargs):
        if set(mode) & set("wxa") and os.path.dirname(os.path.abspath(file)) == str(directory):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))
        return real_io_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    monkeypatch.setattr(io, "open", read_only_io_open)
    monkeypatch.setattr(builtins, "open", read_only_io_open)
    with caplog.at_level(logging.WARNING, logger="satclip"):
        assert precision.resolve("auto", encoder).precision == "bf16"
    assert "could not keep the precision calibration" in caplog.text and "Permission denied" in caplog.text
    assert sorted(p.name for p in directory.iterdir()) == [safe_output.MARKER]


def test_auto_on_this_machine(ckpt):
    """Whatever this CPU is: "auto" resolves to a concrete precision and records why (a CPU whose bf16 is
    slower is not asked how close it comes: the test asserted a cosine there too, failing where bf16 ran at
    0.05x float32, and later where a busy machine measured it at 1.05x)."""
    supported, _ = precision.bf16_support("cpu")
    encoder = satclip.load(ckpt)
    choice = encoder.precision_choice
    assert choice.precision in (("bf16", "float32") if supported else ("float32",))
    if supported:
        assert choice.speedup is not None
        # no cosine only where the timing already said float32 (the quick look's or the full measurement's
        # verdict; a busy machine can measure bf16 below MIN_SPEEDUP)
        assert choice.min_cosine is not None or choice.speedup < precision.MIN_SPEEDUP
    if choice.precision == "bf16":
        assert choice.min_cosine >= precision.MIN_COSINE and choice.speedup >= precision.MIN_SPEEDUP
    assert precision.describe_cpu().startswith(torch.backends.cpu.get_cpu_capability())


def test_dtype_still_works_and_the_recorded_precision_follows_the_weights(ckpt):
    encoder = satclip.load(ckpt, dtype=torch.float64)
    assert encoder.precision == "float64" and encoder.dtype == torch.float64
    assert encoder.encode([[0.0, 0.0]]).dtype == torch.float64
    bf16 = satclip.load(ckpt, precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.precision == "bf16"
    bf16.double()  # weights changed by the user: encode follows them
    assert bf16.encode([[0.0, 0.0]]).dtype == torch.float64
    with pytest.raises(BadInputError, match="contradicts"):
        satclip.load(ckpt, precision="bf16", dtype=torch.float64)


def test_float64_of_weights_rounded_at_load_says_so_once(ckpt, caplog):
    """The released location networks hold float64 weights: loaded in float32 and then run in float64, the
    embeddings were float64 arrays ~1e-7 from the original's, with nothing said (conventions: float64 is the
    exact comparison)."""
    import numpy as np

    lonlat = np.load(REFERENCE / "expected.npz")["lonlat"]
    expected = np.load(REFERENCE / "expected.npz")["l10_location_embeddings"]
    rounded = satclip.load(ckpt, precision="float32")
    with caplog.at_level(logging.WARNING, logger="satclip"):
        near = rounded.encode(lonlat, precision="float64").numpy()
        satclip.embed(lonlat, model=rounded, precision="float64")
    warnings = [r.getMessage() for r in caplog.records if "rounded to float32" in r.getMessage()]
    assert len(warnings) == 1 and "precision='float64'" in warnings[0]  # once per encoder (and its copies)
    exact = satclip.load(ckpt, precision="float64")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip"):
        np.testing.assert_allclose(exact.encode(lonlat, precision="float64").numpy(), expected, rtol=0, atol=1e-12)
        rounded.encode(lonlat, precision="float64")
    assert not caplog.records
    assert np.abs(near - expected).max() > 1e-9  # what the warning is about


def test_setting_precision_switches_it_as_load_would(ckpt, caplog):
    """`encoder.precision = "float64"` was stored as given: the name read back was another ("float32") and
    `encode` ran in float32; `"auto"` failed the next `encode` with an internal error; `"fast"` was taken and failed
    every later call. Now the setter switches as `satclip.load(..., precision=…)` loads, or refuses the name."""
    points = torch.tensor([[13.4, 52.52], [-58.38, -34.6]], dtype=torch.float64)
    encoder = satclip.load(ckpt, precision="float32")
    with caplog.at_level(logging.WARNING, logger="satclip.models.precision"):
        encoder.precision = torch.float64
    assert encoder.precision == "float64" and encoder.encode(points).dtype == torch.float64
    # (the file's float64 weights were rounded to float32 at load: said, as `encode(precision="float64")` says)
    assert "load it with precision='float64' for exact values" in caplog.text
    encoder.precision = "float32"
    assert encoder.precision == "float32"
    fresh = satclip.load(ckpt, precision="float32")
    torch.testing.assert_close(encoder.encode(points), fresh.encode(points), rtol=0, atol=0)
    encoder.precision = "auto"
    assert encoder.precision in precision.AUTO_CHOICES and encoder.encode(points).shape == (2, 256)
    with pytest.raises(BadInputError, match=r"^precision='fast' is not one of auto, float32, bf16, float64$"):
        encoder.precision = "fast"
    assert encoder.precision in precision.AUTO_CHOICES and encoder.encode(points).shape == (2, 256)


@pytest.mark.parametrize("cast", ["half", "bfloat16"])
def test_16_bit_weights_are_refused_not_computed_as_float32(ckpt, cast):
    """After `.half()` or `.bfloat16()`, `encoder.precision` still read "float32" while `encode` computed with the
    16-bit weights (1e-3 and 1e-2 off the float32 embeddings)."""
    encoder = getattr(satclip.load(ckpt, precision="float32"), cast)()
    with pytest.raises(BadInputError, match=r"the location weights are (float16|bfloat16) \(after \.half\(\) or "
                                            r"\.bfloat16\(\)\).*call \.float\(\) first"):  # fmt: skip
        encoder.encode([[13.4, 52.5]])
    assert "weights)" in repr(encoder)  # (the repr names them instead)
    assert encoder.float().encode([[13.4, 52.5]]).dtype == torch.float32
