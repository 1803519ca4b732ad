"""The CLI's error boundary: every command fails with its documented exit code and one error line, never a
traceback (unless --debug); logging prints each record once."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.errors import BadInputError

USAGE = "usage"  # argparse's rejection: one line "satclip COMMAND: error: … (see satclip COMMAND --help)"
ONE_LINE = "one line"  # the boundary's: stderr is exactly "satclip: error: …"


def visible_lines(err: str) -> list[str]:
    """stderr as a terminal shows it: a progress bar redrawn with \\r keeps only its last state."""
    return [line.rsplit("\r", 1)[-1] for line in err.splitlines() if line.rsplit("\r", 1)[-1].strip()]


def check_error(err: str, kind: str, expected: str) -> str:
    """Assert ``err`` is one error line (argparse's, naming the command's help, for ``USAGE``) mentioning
    ``expected``; return it."""
    assert "Traceback" not in err
    lines = visible_lines(err)
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, err
    if kind == ONE_LINE:
        assert lines == errors and errors[0].startswith("satclip: error: "), err
    else:
        assert lines == errors and errors[0].startswith("satclip ") and ": error: " in errors[0], err
        assert errors[0].endswith(" --help)"), err
    assert expected in errors[0], err
    return errors[0]


@pytest.fixture
def files(tmp_path):
    """A small valid points file, a file that is not an image, and paths that do not exist."""
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n13.4,52.5\n-58.4,-34.6\n")
    parquet = tmp_path / "points.parquet"
    pd.read_csv(points).to_parquet(parquet)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a GeoTIFF")
    yaml = tmp_path / "bad.yaml"
    yaml.write_text("model: [unclosed\n")
    return {"points": str(points), "parquet": str(parquet), "junk": str(junk), "yaml": str(yaml),
            "missing": str(tmp_path / "missing.csv"), "out": str(tmp_path / "out"), "tmp": str(tmp_path)}  # fmt: skip


# (argv with {placeholders} for ``files``, exit code, kind, text the error line must contain)
CASES = [
    # demo
    (["demo", "--epochs", "0", "--out", "{out}"], 2, USAGE, "--epochs: must be a positive integer (1 or more), got 0"),
    (["demo", "--air-temperature", "{missing}"], 2, USAGE, "no such file: {missing}"),
    # convert
    (["convert", "{missing}", "{out}"], 2, ONE_LINE, "{missing}"),
    (["convert", "{missing}", "-o", "{out}"], 2, ONE_LINE, "{missing}"),
    (["convert", "nosuch-model", "{out}"], 2, ONE_LINE, "no model 'nosuch-model'"),
    (["convert", "bluemarble-l10"], 2, ONE_LINE, "give one OUTPUT, after SOURCE or as -o OUTPUT"),
    # evaluate
    (["evaluate", "--encoders", "wrap", "--tasks", "nosuch", "--out", "{out}"], 2, ONE_LINE,
     "unknown evaluation task 'nosuch'; known: air-temperature,"),
    (["evaluate", "--encoders", "wrap", "--tasks", "koppen", "--protocol", "nosuch", "--out", "{out}"], 2, ONE_LINE,
     "unknown --protocol 'nosuch'; known:"),
    (["evaluate", "--tasks", "koppen", "--out", "{out}"], 2, ONE_LINE, "--encoders is required"),
    # (" , " was refused in the Python API's words: "EvalConfig: encoders is empty")
    (["evaluate", "--encoders", " , ", "--tasks", "koppen", "--out", "{out}"], 2, ONE_LINE,
     "--encoders is required (e.g. --encoders wrap,sh-l10,geoclip): ' , ' names none"),
    # (it was blamed on --max-epochs: "--probes ridge has no mlp")
    (["evaluate", "--encoders", "wrap", "--probes", "ridge", "--max-epochs", "2", "--out", "{out}"], 2, ONE_LINE,
     "unknown probe 'ridge'; known: linear, mlp, paper-mlp"),
    (["evaluate", "--encoders", "wrap", "--seeds", "0", "--out", "{out}"], 2, USAGE, "--seeds count must be >= 1"),
    (["evaluate", "--encoders", "wrap", "--n-points", "-3", "--out", "{out}"], 2, USAGE, "got -3"),
    (["evaluate", "--encoders", "wrap", "--task-file", "{missing}", "--out", "{out}"], 2, USAGE, "no such file"),
    # embed
    (["embed", "{points}", "-o", "{out}.parquet", "--model", "bluemarble-l10", "--batch-size", "-5"], 2, USAGE,
     "argument --batch-size: must be a positive integer (1 or more), got -5"),
    (["embed", "{points}", "-o", "{out}.parquet", "--model", "bluemarble-l10", "--chunk-rows", "zero"], 2, USAGE,
     "argument --chunk-rows: expected an integer, got 'zero'"),
    (["embed", "{points}", "-o", "{out}.parquet", "--model", "bluemarble-l10", "--device", "bogus"], 2, USAGE,
     "argument --device: 'bogus' is not a torch device; use one of: cpu"),
    (["embed", "{points}", "-o", "{out}.parquet", "--model", "bluemarble-l10", "--shard", "3/3"], 2, USAGE,
     "argument --shard: '3/3': need 0 <= I < N"),
    # (argparse read "-1/2" as an unknown option: "argument --shard: expected one argument")
    (["embed", "{points}", "-o", "{out}.parquet", "--model", "bluemarble-l10", "--shard", "-1/2"], 2, USAGE,
     "argument --shard: '-1/2': need 0 <= I < N"),
    (["embed", "{points}", "-o", "{out}.parquet", "--model", "bluemarble-l10", "--shard", "a/b"], 2, USAGE,
     "expected I/N with integers"),
    (["embed", "{missing}", "-o", "{out}.parquet", "--model", "bluemarble-l10"], 2, USAGE,
     "argument input: no such file: {missing}"),
    (["embed", "{points}", "-o", "{out}.parquet", "--model", "nosuch-model", "--no-progress"], 2, ONE_LINE,
     "no model 'nosuch-model'"),
    (["embed", "{points}", "-o", ".", "--format", "npy", "--model", "bluemarble-l10"], 2, ONE_LINE,
     "the output . names a directory, not a new output in it: add the output's name (e.g. ./name, with the suffix"),
    (["embed", "{points}", "-o", "/", "--format", "zarr", "--model", "bluemarble-l10"], 2, ONE_LINE,
     "the output / names a directory"),
    (["embed", "{parquet}", "-o", ".", "--engine", "dask", "--model", "bluemarble-l10"], 2, ONE_LINE,
     "the output . names a directory, not a new output in it: add the output's name"),
    # map
    (["map", "--model", "bluemarble-l10", "--resolution", "-1", "-o", "{out}.tif"], 2, USAGE,
     "--resolution: must be a finite number greater than 0, got -1"),
    (["map", "--model", "bluemarble-l10", "--resolution", "10", "-o", "{out}.tif", "--pca", "0"], 2, USAGE, "--pca"),
    (["map", "--model", "bluemarble-l10", "--resolution", "0.01", "-o", "{out}.tif"], 2, ONE_LINE,
     "pass --force to go ahead"),
    (["map", "--model", "nosuch-model", "--resolution", "10", "-o", "{out}.tif"], 2, ONE_LINE, "no model"),
    # (each said "use a .zarr OUT and no --pca", whichever was given)
    (["map", "--model", "bluemarble-l10", "--resolution", "10", "-o", "{out}.tif", "--engine", "dask"], 2, ONE_LINE,
     "--engine dask writes Zarr maps of every dimension; {out}.tif is geotiff: use a .zarr OUT"),
    (["map", "--model", "bluemarble-l10", "--resolution", "10", "-o", "{out}.zarr", "--engine", "dask", "--pca", "3"],
     2, ONE_LINE, "--pca 3: --engine dask writes Zarr maps of every dimension: drop --pca"),
    # export
    (["export", "--format", "onnx", "--model", "nosuch-model", "-o", "{out}.onnx"], 2, ONE_LINE, "no model"),
    (["export", "--format", "pdf", "--model", "bluemarble-l10", "-o", "{out}.onnx"], 2, USAGE, "invalid choice"),
    (["export", "--format", "torchscript", "--model", "bluemarble-l10", "-o", "{points}"], 2, ONE_LINE,
     "a TorchScript export is named .pt, .pth or .ts, not .csv"),  # (it said "pass --overwrite", to replace a CSV)
    # an output named for another format was written under it, exit 0 (an ONNX file as x.ckpt, a checkpoint as x.onnx)
    (["export", "--format", "onnx", "--model", "bluemarble-l10", "-o", "{out}.ckpt"], 2, ONE_LINE,
     "out.ckpt names a model (.ckpt), but an export is an ONNX file for other runtimes: write {out}.onnx"),
    (["export", "--format", "torchscript", "--model", "bluemarble-l10", "-o", "{out}.onnx"], 2, ONE_LINE,
     "out.onnx names an ONNX file but the format is torchscript: write {out}.pt or export as onnx"),
    (["export", "--format", "onnx", "--model", "bluemarble-l10", "-o", "-"], 2, ONE_LINE,
     "the output - would be a file named '-': satclip writes no output to standard output"),
    (["convert", "bluemarble-l10", "{out}.onnx", "--location-only"], 2, ONE_LINE,
     "out.onnx: its suffix .onnx names an ONNX export, which is not a model: export it with `satclip export"),
    # locate
    (["locate", "{missing}", "--model", "bluemarble-l10"], 2, USAGE, "argument image: no such file"),
    (["locate", "{junk}", "--model", "bluemarble-l10", "--k", "0"], 2, USAGE, "--k: must be a positive integer"),
    (["locate", "{junk}", "--model", "nosuch-model"], 2, ONE_LINE, "no model 'nosuch-model'"),
    # (checked after the model and image were read, and not named as the option)
    (["locate", "{junk}", "--model", "nosuch-model", "--grid", "bogus"], 2, ONE_LINE,
     "--grid: unknown location grid 'bogus'; known: fibonacci"),
    (["locate", "{junk}", "--model", "bluemarble-l10"], 2, ONE_LINE, "junk.tif is not a GeoTIFF (GDAL cannot open"),
    (["locate", "{junk}", "--model", "bluemarble-l10", "--truth", "200", "10"], 2, ONE_LINE,
     "--truth 200 10 is not a location. Expected finite (lon, lat)"),
    # data
    (["data", "verify", "{tmp}"], 2, ONE_LINE, "no index file"),
    (["data", "verify", "{tmp}", "--workers", "0"], 2, USAGE, "--workers: must be a positive integer"),
    (["data", "download", "{out}"], 1, ONE_LINE, "--from DIR"),  # conftest: HF_HUB_OFFLINE=1
    (["data", "download", "{out}", "--from", "{missing}"], 2, ONE_LINE, "--from {missing}: no such directory"),
    (["data", "download", "{out}", "--revision", ""], 2, USAGE, "argument --revision: '' is not a name"),
    (["data", "download", "{yaml}"], 2, ONE_LINE, "{yaml} is a file, not a dataset root"),  # (before the hub)
    (["data", "bluemarble", "--n", "-5"], 2, USAGE, "--n: must be a positive integer (1 or more), got -5"),
    (["data", "bluemarble", "--gsd-km", "nan"], 2, USAGE, "--gsd-km: must be a finite number greater than 0"),
    # (inf said "must be a number greater than 0, got inf")
    (["data", "bluemarble", "--gsd-km", "inf"], 2, USAGE, "--gsd-km: must be a finite number greater than 0, got inf"),
    (["map", "--model", "bluemarble-l10", "--resolution", "1e309", "-o", "{out}.tif"], 2, USAGE,
     "--resolution: must be a finite number greater than 0, got 1e309"),
    (["evaluate", "--encoders", "wrap", "--block-deg", "1e309", "--out", "{out}"], 2, USAGE,
     "--block-deg: must be a finite number greater than 0, got 1e309"),
    # cache
    (["cache", "build", "--batch-size", "-5"], 2, USAGE, "--batch-size: must be a positive integer"),
    (["cache", "build", "--device", "cuda:99"], 2, USAGE, "--device: 'cuda:99'"),
    (["cache", "build"], 2, ONE_LINE, "cache build needs data.root"),
    (["cache", "build", "--config", "{missing}"], 2, USAGE, "--config: no such file"),
    (["cache", "verify"], 2, ONE_LINE, "give the cache directory"),
    (["cache", "verify", "{tmp}", "--recompute", "-1"], 2, USAGE, "--recompute: must be 0 or more, got -1"),
    (["cache", "verify", "{tmp}", "--recompute", "2"], 2, ONE_LINE, "--recompute needs --config"),
    # retrieval
    (["retrieval", "build", "--model", "bluemarble-l10", "--cache", "{missing}", "-o", "{out}"], 2, ONE_LINE,
     "no such feature cache: {missing}"),
    (["retrieval", "build", "--model", "bluemarble-l10", "--cache", "{tmp}", "-o", "{out}"], 2, ONE_LINE,
     "is not a feature cache (no manifest.json)"),
    (["retrieval", "build", "--model", "nosuch-model", "--cache", "auto", "-o", "{out}"], 2, ONE_LINE, "no model"),
    (["retrieval", "build", "--model", "bluemarble-l10", "--cache", "auto", "-o", "{out}", "--dtype", "float8"], 2,
     USAGE, "invalid choice: 'float8'"),
    # train
    (["train", "--config", "{missing}"], 2, USAGE, "argument --config: no such file: {missing}"),
    (["train", "--config", "{yaml}", "--print-config"], 2, ONE_LINE,
     "bad config: {yaml}: invalid YAML: expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
    (["train", "--optim.lr", "fast", "--print-config"], 2, ONE_LINE, "bad config: optim.lr='fast' must be a number"),
    (["train", "--set", "optim.lr", "--print-config"], 2, ONE_LINE, "--set takes KEY=VALUE, got 'optim.lr'"),
    (["train", "--set", "optim.nosuch=1", "--print-config"], 2, ONE_LINE, "nosuch"),
]


@pytest.mark.parametrize(("argv", "code", "kind", "expected"), CASES, ids=[" ".join(case[0]) for case in CASES])
def test_every_command_fails_with_one_line_and_its_exit_code(argv, code, kind, expected, files, capsys):
    argv = [a.format(**files) for a in argv]
    assert main(argv) == code
    line = check_error(capsys.readouterr().err, kind, expected.format(**files))
    assert not line.startswith('satclip: error: "')  # a KeyError's message, not its repr


def test_every_command_is_covered():
    """A new subcommand must add its bad-argument case above."""
    from satclip.cli import COMMANDS
    from satclip.cli.data import SUBCOMMANDS

    covered = {argv[0] for argv, *_ in CASES} | {" ".join(argv[:2]) for argv, *_ in CASES}
    assert set(COMMANDS) <= covered
    assert {f"data {name}" for name in SUBCOMMANDS} | {"cache build", "cache verify"} <= covered


def test_registry_errors_are_bad_input():
    """An unknown name (KeyError) or parameter (Registry.create's TypeError) is input, not a crash: exit 2 and
    the message as written, without the quotes a KeyError's str() adds."""
    from satclip.cli.boundary import describe
    from satclip.encoding.registry import ENCODINGS

    with pytest.raises(TypeError) as caught:
        ENCODINGS.create("wrap", nosuch=1)
    assert describe(caught.value) == (
        2, "positional encoding 'wrap' got unexpected parameter(s) ['nosuch']; it accepts none"
    )  # fmt: skip
    with pytest.raises(KeyError) as caught:
        ENCODINGS.get("nosuch")
    code, message = describe(caught.value)
    assert code == 2 and message.startswith("unknown positional encoding 'nosuch'; known: ")


def test_an_unknown_name_is_satclips_bad_input_and_still_a_key_error():
    """An unknown protocol, probe or grid in the Python API was a bare KeyError whose str() was quoted; it is a
    BadInputError (callers catching KeyError still catch it), its str() the message."""
    from satclip.errors import BadInputError
    from satclip.eval.probes import create
    from satclip.eval.protocols import PROTOCOLS
    from satclip.models.locate import GRIDS

    for lookup, expected in ((lambda: PROTOCOLS.get("randon"), "unknown evaluation protocol 'randon'; did you mean "
                              "'random'?"), (lambda: create("mpl"), "unknown probe 'mpl'; did you mean 'mlp'?"),
                             (lambda: GRIDS.get("fibonaci"), "unknown location grid 'fibonaci'; did you mean "
                              "'fibonacci'? known: fibonacci")):  # fmt: skip
        with pytest.raises(BadInputError) as caught:
            lookup()
        assert isinstance(caught.value, KeyError) and str(caught.value).startswith(expected)


@pytest.mark.parametrize(
    "error", ["satclip.train.cache.StaleCacheError", "satclip.image.weights.BackboneWeightsError",
              "satclip.io.hub.DownloadError"],
)  # fmt: skip
def test_library_runtime_errors_keep_their_message(error):
    """satclip's runtime failures print their own message (exit 1), not "unexpected error"."""
    import importlib

    from satclip.cli.boundary import describe

    module, name = error.rsplit(".", 1)
    err = getattr(importlib.import_module(module), name)("could not do it.\nDo this instead.")
    assert describe(err) == (1, "could not do it; Do this instead.")


def test_untrusted_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": logging.Formatter()}, ckpt)  # any non-allowlisted class
    assert main(["convert", str(ckpt), str(tmp_path / "out")]) == 1
    line = check_error(capsys.readouterr().err, ONE_LINE, "refusing to unpickle")
    assert "--trust-checkpoint" in line and "logging.Formatter" in line
    assert not (tmp_path / "out").exists()


def test_existing_convert_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "m.ckpt"
    assert main(["convert", "bluemarble-l10", str(out), "--location-only"]) == 0
    stamp = out.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["convert", "bluemarble-l10", str(out), "--location-only"]) == 2
    check_error(capsys.readouterr().err, ONE_LINE, "already exists; pass --overwrite")
    assert out.stat().st_mtime_ns == stamp
    assert main(["convert", "bluemarble-l10", str(out), "--location-only", "--overwrite"]) == 0
    assert out.stat().st_mtime_ns != stamp


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (errno.ENOSPC, "disk full while writing {path}: free space or choose another output"),
        (errno.EFBIG, "file too large for this file system or the file-size limit (ulimit -f): {path}: raise the "
                      "limit or write elsewhere"),
        (errno.EROFS, "read-only file system: {path}: write elsewhere"),
        (errno.EACCES, "permission denied: {path}: fix its permissions or use another location"),
    ],
)
def test_write_failures_are_one_line(tmp_path, monkeypatch, capsys, number, expected):
    """The file system refusing a write (here: the weights of ``satclip convert``) is exit 1, one line."""
    from satclip.io import native

    def refuse(tensors, path, *args, **kwargs):
        raise OSError(number, os.strerror(number), str(path))

    ckpt, out = tmp_path / "m.ckpt", tmp_path / "native"
    assert main(["convert", "bluemarble-l10", str(ckpt), "--location-only"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(native, "save_tensors", refuse)
    assert main(["convert", str(ckpt), str(out)]) == 1
    line = check_error(capsys.readouterr().err, ONE_LINE, "model.safetensors")
    before, after = expected.split("{path}")
    assert line.startswith(f"satclip: error: {before}{tmp_path}") and after in line  # the file that failed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]  # nothing half-written left behind


def _fail_with(monkeypatch, err: BaseException) -> None:
    """Make ``satclip convert`` raise ``err`` (the parser picks ``run`` up when main builds it)."""
    from satclip.cli import convert

    def run(args):
        raise err

    monkeypatch.setattr(convert, "run", run)


SATCLIP_MODULE = """
def bug_key():
    return {}["name"]


def bug_type():
    return len(5)


def unknown_name():
    raise KeyError(
        "unknown thing 'x'; known: a, b"
    )


def bad_parameter():
    raise TypeError("thing 'x' got unexpected parameter(s) ['y']; it accepts none")
"""


@pytest.fixture
def satclip_module(tmp_path):
    """A module named like satclip's own (the boundary trusts messages raised there) with bugs and raises."""
    import importlib.util

    path = tmp_path / "fake_satclip_module.py"
    path.write_text(SATCLIP_MODULE)
    spec = importlib.util.spec_from_file_location("satclip._fake_for_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("function", "code", "message"),
    [
        ("bug_key", 1, "unexpected error (KeyError): name; rerun with --debug"),
        ("bug_type", 1, "unexpected error (TypeError): object of type 'int' has no len(); rerun with --debug"),
        ("unknown_name", 2, "unknown thing 'x'; known: a, b"),
        ("bad_parameter", 2, "thing 'x' got unexpected parameter(s) ['y']; it accepts none"),
    ],
)
def test_key_and_type_errors_are_input_only_when_satclip_raises_them(
    satclip_module, monkeypatch, capsys, function, code, message
):
    """A KeyError or TypeError from a failing expression in satclip is a bug (exit 1); one that satclip's code
    raises with a message (registries, config checks) is bad input (exit 2)."""
    from satclip.cli import convert

    monkeypatch.setattr(convert, "run", lambda args: getattr(satclip_module, function)())
    assert main(["convert", "a", "b"]) == code
    line = check_error(capsys.readouterr().err, ONE_LINE, message)
    assert line.startswith(f"satclip: error: {message}")


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    _fail_with(monkeypatch, KeyboardInterrupt())
    assert main(["convert", "a", "b"]) == 130
    assert capsys.readouterr().err == "satclip: interrupted\n"
    # a Ctrl-C while the command modules are imported (the first tenth of a second) gave a traceback
    import satclip.cli as cli

    def interrupted_import():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted_import)
    assert main(["convert", "a", "b"]) == 130
    assert capsys.readouterr().err == "satclip: interrupted\n"


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_shows_the_traceback_with_the_same_exit_status(monkeypatch, capsys, where):
    _fail_with(monkeypatch, RuntimeError("boom"))
    argv = {"before": ["--debug", "convert", "a", "b"], "after": ["convert", "a", "b", "--debug"]}.get(where)
    if where == "env":
        monkeypatch.setenv("SATCLIP_DEBUG", "1")
        argv = ["convert", "a", "b"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err
    monkeypatch.setenv("SATCLIP_DEBUG", "0")
    assert main(["convert", "a", "b"]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(("err", "code"), [(BadInputError("bad value"), 2), (KeyboardInterrupt(), 130)])
def test_debug_keeps_the_exit_status_of_a_bad_input_and_of_an_interrupt(monkeypatch, capsys, err, code):
    """--debug re-raised: a bad input (2 without it) exited 1 with the traceback."""
    _fail_with(monkeypatch, err)
    assert main(["--debug", "convert", "a", "b"]) == code
    assert "Traceback" in capsys.readouterr().err


def test_debug_with_a_bad_input_of_the_command_exits_2(capsys, tmp_path):
    points = tmp_path / "n3.npy"
    np.save(points, np.zeros((4, 3)))
    assert main(["--debug", "embed", str(points), "-o", str(tmp_path / "x.parquet"), "--model", "bluemarble-l10"]) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "on"), [("TRUE", True), ("yes", True), ("On", True), ("garbage", False)])
def test_satclip_debug_takes_yes_and_no_words_and_names_any_other_value(monkeypatch, capsys, value, on):
    """SATCLIP_DEBUG=garbage turned debug on, without a word."""
    _fail_with(monkeypatch, RuntimeError("boom"))
    monkeypatch.setenv("SATCLIP_DEBUG", value)
    assert main(["convert", "a", "b"]) == 1
    err = capsys.readouterr().err
    assert ("Traceback" in err) == on
    if not on:
        assert err.startswith("satclip: warning: SATCLIP_DEBUG='garbage' is neither on (1, true, yes, on) nor off")
        assert err.count("SATCLIP_DEBUG") == 1 and err.splitlines()[-1].startswith("satclip: error: unexpected error")


def test_help_lists_the_exit_codes(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status: 0 success; 1 runtime failure" in out and "2 bad input" in out and "130 interrupted" in out
    assert "--debug" in out


def test_library_records_are_printed_once(monkeypatch, capsys):
    """A library with its own console handler that also propagates (Lightning, torchmetrics) prints each line
    once, not once per handler; satclip's own records go through the CLI's handler."""
    from satclip.cli import convert

    library = logging.getLogger("fake_library")
    library.addHandler(logging.StreamHandler(sys.stderr))  # like lightning/__init__.py: and it propagates

    def run(args):
        library.warning("from the library")
        logging.getLogger("satclip.cli.convert").info("from satclip")
        return 0

    monkeypatch.setattr(convert, "run", run)
    try:
        for _ in range(2):  # the second call's handler replaces the first's: still once
            assert main(["convert", "a", "b"]) == 0
            assert capsys.readouterr().err.splitlines() == ["from the library", "from satclip"]
    finally:
        library.handlers.clear()
    logging.getLogger("satclip.cli.convert").info("after the command")
    assert capsys.readouterr().err == ""  # the CLI's handler left with its command


def satclip_process(*argv: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "satclip", *argv], capture_output=True, text=True, cwd=cwd)


def test_real_entry_point_exit_codes_and_one_line(tmp_path):
    bad_value = satclip_process("embed", "p.csv", "-o", "e.parquet", "--model", "bluemarble-l10", "--device",
                                "bogus", cwd=tmp_path)  # fmt: skip
    assert bad_value.returncode == 2 and bad_value.stdout == ""
    check_error(bad_value.stderr, USAGE, "argument input: no such file: p.csv")

    (tmp_path / "p.csv").write_text("lon,lat\n0,0\n")
    bad_device = satclip_process("embed", "p.csv", "-o", "e.parquet", "--model", "bluemarble-l10", "--device",
                                 "bogus", cwd=tmp_path)  # fmt: skip
    assert bad_device.returncode == 2
    check_error(bad_device.stderr, USAGE, "argument --device: 'bogus' is not a torch device")

    missing = satclip_process("convert", "missing.ckpt", "out", cwd=tmp_path)
    assert missing.returncode == 2
    check_error(missing.stderr, ONE_LINE, "missing.ckpt")

    debug = satclip_process("--debug", "convert", "missing.ckpt", "out", cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr  # (its exit status kept)
    assert "missing.ckpt" in debug.stderr.splitlines()[-1] and "satclip: error:" not in debug.stderr


def test_real_training_run_logs_each_line_once(tmp_path):
    """Lightning adds a console handler to the 'lightning' logger and lets records propagate to the root:
    with the CLI's handler on the root, its lines used to appear twice. (Its start-up lines show with -v.)"""
    from .conftest import S2_EXAMPLES, require

    args = [
        "-v", "train", "--data.root", str(require(S2_EXAMPLES)), "--data.dataset", "s2100k",
        "--model.image_encoder.name", "mosaiks", "--set", "model.image_encoder.in_chans=13",
        "--set", "model.image_encoder.num_filters=4", "--data.cache", str(tmp_path / "cache"),
        "--data.cache_views", "1", "--data.batch_size", "8", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.output_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    result = satclip_process(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line.removeprefix("INFO: ") for line in result.stderr.splitlines() if line.strip()]
    assert sum("GPU available" in line for line in lines) == 1, lines
    # Lightning's (-v also shows GDAL's debug lines, some of them the same for each file read)
    lightning = [line for line in lines if "available:" in line or "Trainer" in line]
    repeated = {line for line in lightning if lightning.count(line) > 1}
    assert lightning and not repeated, repeated


def test_device_type_names_what_is_available(monkeypatch):
    """Without a GPU here, fake two CUDA devices: the type accepts them and names them when refusing."""
    import argparse

    from satclip.cli.args import device

    assert device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device("cuda") == "cuda" and device("cuda:1") == "cuda:1"
    with pytest.raises(argparse.ArgumentTypeError, match=r"'cuda:2': this machine has 2 cuda device\(s\); "
                                                         r"available: cpu, cuda:0, cuda:1"):  # fmt: skip
        device("cuda:2")
    with pytest.raises(argparse.ArgumentTypeError, match="'gpu' is not a torch device; use one of: cpu, cuda:0"):
        device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(argparse.ArgumentTypeError, match="'cuda': no cuda device on this machine; available: cpu$"):
        device("cuda")


def test_sigterm_interrupts_a_command_that_cleans_up_after_itself(tmp_path):
    """A SIGTERM (a scheduler stopping the job) killed every command but train at once (status 143, no
    message), leaving its lock and temporaries to the next run; it is now an interruption like Ctrl-C."""
    import textwrap

    script = tmp_path / "terminated_map.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        from satclip.cli import main
        from satclip.embed import maps

        real, calls = maps.embed_lonlat, []
        def embed_lonlat(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:  # the second block of grid rows: one is kept to resume from
                os.kill(os.getpid(), signal.SIGTERM)
            return real(*args, **kwargs)
        maps.embed_lonlat = embed_lonlat
        maps.default_block_rows = lambda grid: 4
        sys.exit(main(["map", "--model", "bluemarble-l10", "--resolution", "5", "--all", "-o",
                       sys.argv[1]]))
    """))
    out = tmp_path / "out" / "field.tif"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 130, done.stderr[-2000:]
    # and says that a rerun continues (it said "interrupted" alone)
    assert done.stderr.strip().splitlines()[-2:] == [
        f"satclip: the work done is kept in {out}.partial: rerun the same command to continue where it stopped",
        "satclip: interrupted"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["field.tif.partial"]  # no lock, no temporaries
    assert json.loads((out.parent / "field.tif.partial" / "manifest.json").read_text())["done"] == [0]


@pytest.mark.parametrize("chunks_done", [0, 1])
def test_an_interrupted_embed_says_its_work_is_kept_only_where_it_did_some(tmp_path, monkeypatch, capsys, chunks_done):
    """A Ctrl-C before the first chunk was saved said "the work done is kept: rerun …" of work that did not
    exist; now the message comes only with work, and names where it is kept."""
    from satclip.embed import job

    table = tmp_path / "points.csv"
    table.write_text("lon,lat\n" + "".join(f"{i % 360 - 180},{i % 140 - 70}\n" for i in range(30)))
    real, calls = job.embed_lonlat, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > chunks_done:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "embed_lonlat", interrupted)
    out = tmp_path / "out.parquet"
    argv = ["embed", str(table), "-o", str(out), "--model", "bluemarble-l10", "--chunk-rows", "10"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    kept = f"satclip: the work done is kept in {out}.partial: rerun the same command to continue where it stopped"
    assert (kept in err) == bool(chunks_done) and "work done is kept" in err if chunks_done else "kept" not in err
    assert err.strip().endswith("satclip: interrupted")
    # and only work is kept: an OUT.partial/ of no chunk made a rerun with other options refused ("--restart")
    assert (tmp_path / "out.parquet.partial").exists() == bool(chunks_done)


def test_a_map_interrupted_before_its_first_block_leaves_no_work(tmp_path, monkeypatch, capsys):
    """A Ctrl-C before the first block of grid rows was computed left OUT.partial/ (an empty field of full size,
    352 MB at 0.1°, and a manifest of no block) without a word, and a rerun with other options was then refused
    over it ("holds an unfinished run … pass --restart"). Nothing is left now, and the rerun runs."""
    from satclip.embed import maps

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(maps, "embed_lonlat", interrupted)
    out = tmp_path / "field.tif"
    argv = ["map", "--model", "bluemarble-l10", "--resolution", "10", "--all", "-o", str(out)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.strip().endswith("satclip: interrupted") and "kept" not in err
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert main([*argv[:4], "20", *argv[5:]]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.tif"]


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_after_the_command_finished_keeps_its_exit_status(tmp_path, signum):
    """Ctrl-C or SIGTERM while the finished command's process shut down (torch's teardown, a few hundred ms)
    ended it by the signal (or 130, "interrupted") though its output was written and reported: a script
    reading the status took the output for missing. The process now exits with the command's status."""
    import signal
    import time

    from .conftest import REFERENCE, require

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "native"
    argv = ["satclip", "convert", str(require(REFERENCE / "satclip-resnet18-l10.ckpt")), str(out)]
    # the program as `satclip` runs it, its shut-down made to last 3 s (torch's takes a few hundred ms), so that
    # the signal surely lands in it: sent after a sleep, it could land after the exit, and the test pass untested
    lingering = ("import sys, time; from satclip.cli import main; "
                 f"sys.argv = {argv!r}; code = main(); time.sleep(3); sys.exit(code)")  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", lingering], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    first = process.stdout.readline()  # the report: the command has returned (its last statement prints it)
    time.sleep(0.2)  # (past the flush and the status, well within the 3 s)
    assert process.poll() is None
    process.send_signal(getattr(signal, signum))
    rest, err = process.communicate(timeout=60)
    assert first.startswith(f"wrote {out} (native)") and process.returncode == 0, (process.returncode, err[-2000:])
    assert "interrupted" not in err and "Traceback" not in err
    assert satclip.load(out).encode(torch.tensor([[10.0, 20.0]])).shape == (1, 256)


def test_a_forked_worker_ends_on_sigterm_as_by_default():
    """A process forked during a command (a DataLoader's worker) inherited the command's SIGTERM handler and
    raised KeyboardInterrupt, printing a traceback of its own, where it should just end: its parent cleans up."""
    import signal
    import time

    from satclip.cli import _sigterm_interrupts

    with _sigterm_interrupts():
        child = os.fork()
        if child == 0:  # the worker
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                os._exit(0)
            except KeyboardInterrupt:
                os._exit(7)
            os._exit(0)
        _, status = os.waitpid(child, 0)
        with pytest.raises(KeyboardInterrupt):  # (the command itself is still interrupted)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status


@pytest.mark.parametrize("value", ["false", "no", "off", "0", " False "])
def test_satclip_debug_set_to_a_no_keeps_the_one_line_errors(monkeypatch, capsys, tmp_path, value):
    """SATCLIP_DEBUG=false (or no, off) turned debug on: a bad input printed a traceback and exited 1, not 2."""
    monkeypatch.setenv("SATCLIP_DEBUG", value)
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n1,2\n")
    assert main(["embed", str(points), "-o", str(tmp_path / "x.parquet"), "--model", "no-such-model"]) == 2
    assert capsys.readouterr().err.startswith("satclip: error: ")


@pytest.mark.parametrize(("argv", "message"), [
    (["embed", "{points}", "-o", "{tmp}/o.npy", "--format", "parquet", "--model", "bluemarble-l10"],
     "{tmp}/o.npy: its suffix .npy means npy, but --format says parquet: name it o.parquet, or "
     "drop --format"),
    (["map", "--model", "bluemarble-l10", "--resolution", "30", "-o", "{tmp}/m.tif", "--format", "png"],
     "{tmp}/m.tif: its suffix .tif means geotiff, but --format says png: name it m.png, or drop --format"),
    (["map", "--model", "bluemarble-l10", "--resolution", "30", "-o", "{tmp}/t4.tif", "--format", "zarr"],
     "{tmp}/t4.tif: its suffix .tif means geotiff, but --format says zarr: name it t4.zarr, or drop --format"),
    (["convert", "bluemarble-l10", "{tmp}/c.ckpt", "--target", "native"],
     "{tmp}/c.ckpt: its suffix .ckpt means original, but the target is native: name it c, or write original (drop "
     "--target; target='original' in Python)"),
])  # fmt: skip
def test_a_format_that_contradicts_the_outputs_suffix_is_refused(tmp_path, capsys, argv, message):
    """`embed -o o.npy --format parquet` wrote Parquet into o.npy (np.load could not read it), `map -o m.tif
    --format png` a PNG named .tif, `convert … c.ckpt --target native` a directory named c.ckpt; `export`
    refused such a name."""
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n1,2\n")
    argv = [a.format(points=points, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"satclip: error: {message.format(tmp=tmp_path)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.csv"]


def test_a_satclip_cache_that_is_a_file_is_named_with_its_fix(tmp_path, monkeypatch, capsys):
    """SATCLIP_CACHE naming a file: "…/afile is a file, not a directory, so …/afile/bluemarble cannot be written
    there; choose another output path" (the user gave no output path, and the variable went unnamed)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("SATCLIP_CACHE", str(afile))
    assert main(["data", "bluemarble", "--n", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"satclip: error: {afile} is a file, not a directory, so {afile}/"), err
    assert err.endswith(f"cannot be written there; $SATCLIP_CACHE is {afile}: point it at a directory"), err


def test_a_files_control_characters_are_escaped_in_the_error_line(tmp_path, capsys):
    """A CSV row that does not parse was quoted byte for byte: its terminal escape sequences (ESC [31m) reached
    the user's terminal."""
    points = tmp_path / "evil.csv"
    points.write_bytes(b"lon,lat\n1\x1b[31mRED,2,3\n")
    assert main(["embed", str(points), "-o", str(tmp_path / "x.parquet"), "--model", "bluemarble-l10"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "1\\x1b[31mRED" in err, err


def test_messages_that_named_no_fix_name_one(tmp_path, capsys):
    """A CSV of a header alone said "has no rows"; a --task-file named like a task it runs beside said "task
    names must be unique" without saying how to rename it."""
    header = tmp_path / "header.csv"
    header.write_text("lon,lat\n")
    assert main(["embed", str(header), "-o", str(tmp_path / "x.parquet"), "--model", "bluemarble-l10"]) == 2
    assert capsys.readouterr().err.strip().endswith("has no points (a header alone?): give a file with points in it")
    empty = tmp_path / "empty.npy"  # (it was asked whether it was "a header alone?" too)
    np.save(empty, np.zeros((0, 2)))
    assert main(["embed", str(empty), "-o", str(tmp_path / "y.parquet"), "--model", "bluemarble-l10"]) == 2
    assert capsys.readouterr().err.strip().endswith("has no points (an array of 0 points): give a file with points "
                                                    "in it")  # fmt: skip
    table = tmp_path / "elevation.csv"
    table.write_text("lon,lat,y\n" + "".join(f"{i},{i % 80},{i}\n" for i in range(-150, 150)))
    argv = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--task-file", str(table), "--n-points", "100",
            "--seeds", "1", "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().endswith("name the --task-file's task otherwise with --task-name")


def test_a_log_line_during_a_progress_bar_gets_a_line_of_its_own(capsys):
    """A warning logged while a tqdm bar was drawn was appended to the bar ("…img/s]feature cache …")."""
    from tqdm import tqdm

    from satclip.cli.boundary import cli_logging

    with cli_logging(verbose=False):
        bar = tqdm(total=10, desc="caching features", file=sys.stderr, ascii=True)
        bar.update(3)
        logging.getLogger("satclip.test").warning("feature cache c: left out 1 of 10 images")
        bar.close()
    segments = [part.strip() for part in capsys.readouterr().err.replace("\r", "\n").split("\n")]
    assert "feature cache c: left out 1 of 10 images" in segments, segments


def test_a_trainer_setting_lightning_cannot_honour_is_bad_input():
    """`--trainer.strategy deepspeed` without deepspeed was "unexpected error (MisconfigurationException) …
    please report it", exit 1: it is a setting to change."""
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    from satclip.cli.boundary import describe

    err = MisconfigurationException("To use the DeepSpeedStrategy, you must have DeepSpeed installed.")
    assert describe(err) == (2, "To use the DeepSpeedStrategy, you must have DeepSpeed installed.")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--set", "optim.lr=0.1", "--optim.lr", "0.2"],
         "optim.lr is given twice, as '0.2' and as '0.1' (--set optim.lr=0.1): give it once"),
        (["--target", "rshf", "--trainer.export_target", "torchgeo"],
         "trainer.export_target is given twice, as 'torchgeo' and as 'rshf' (--target rshf): give it once"),
    ],
)  # fmt: skip
def test_a_config_key_given_twice_with_other_values_is_refused(capsys, argv, expected):
    """One of them won without a word (--set over the option whatever the order, --target over the option)."""
    assert main(["train", "--print-config", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"satclip: error: {expected}"
    assert main(["train", "--print-config", "--set", "optim.lr=0.1", "--optim.lr", "0.1"]) == 0  # (the same: fine)


@pytest.mark.parametrize("number", [errno.EACCES, errno.EROFS])
def test_a_refused_write_in_satclips_cache_says_how_to_move_it(tmp_path, monkeypatch, capsys, number):
    """`satclip data bluemarble` (no --out) with an unwritable cache said "permission denied: …/.cache: fix its
    permissions", naming a path the user never gave and neither --out nor SATCLIP_CACHE."""
    from satclip.data import bluemarble

    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "cache"))

    def refuse(out, params, **kwargs):
        raise OSError(number, os.strerror(number), str(tmp_path / "cache" / "bluemarble"))

    monkeypatch.setattr(bluemarble, "build_bluemarble", refuse)
    assert main(["data", "bluemarble", "--n", "10"]) == 1
    line = check_error(capsys.readouterr().err, ONE_LINE, "set SATCLIP_CACHE to a directory you can write")
    assert f"it is satclip's cache ({tmp_path / 'cache'})" in line
    assert "`satclip data bluemarble` also takes --out" in line
    # the demo's --out moves its report, not the corpus: it was told to give one (and shown the path twice)
    from satclip.recipes import demo

    def refuse_cache(*args, **kwargs):
        raise OSError(number, os.strerror(number), str(tmp_path / "cache"))

    monkeypatch.setattr(demo, "run_demo", refuse_cache)
    assert main(["demo", "--quick", "--out", str(tmp_path / "d")]) == 1
    line = check_error(capsys.readouterr().err, ONE_LINE, "set SATCLIP_CACHE to a directory you can write")
    assert "e.g. --out" not in line and line.count(str(tmp_path / "cache")) == 1, line


@pytest.mark.parametrize("number", [errno.EACCES, errno.EROFS])
def test_a_refused_write_above_satclips_cache_is_not_blamed_on_it(tmp_path, monkeypatch, capsys, number):
    """`satclip data bluemarble --out /ro/bm` with SATCLIP_CACHE=/ro/sc said "read-only file system: /ro: it is
    satclip's cache (/ro/sc)": every folder above the cache was taken for it, though the user named /ro/bm."""
    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "cache"))
    _fail_with(monkeypatch, OSError(number, os.strerror(number), str(tmp_path)))
    assert main(["convert", "a", "b"]) == 1
    line = check_error(capsys.readouterr().err, ONE_LINE, f": {tmp_path}: ")
    assert "satclip's cache" not in line and "SATCLIP_CACHE" not in line
    # a missing folder on the way to the cache is made for it: that one is still the cache's
    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "missing" / "cache"))
    _fail_with(monkeypatch, OSError(number, os.strerror(number), str(tmp_path / "missing")))
    assert main(["convert", "a", "b"]) == 1
    check_error(capsys.readouterr().err, ONE_LINE, f"it is satclip's cache ({tmp_path / 'missing' / 'cache'})")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_cache_or_output_folder_that_cannot_be_created_says_where_it_came_from(monkeypatch, capsys):
    """SATCLIP_CACHE=/proc/x said "No such file or directory: /proc/x" (not that it was the cache, nor what to do);
    --out /proc/y "No such file or directory (satclip writes the lock of y there): /proc", of a /proc that exists."""
    monkeypatch.setenv("SATCLIP_CACHE", "/proc/satclip-test-cache")
    assert main(["data", "bluemarble", "--n", "10"]) == 2
    check_error(capsys.readouterr().err, ONE_LINE, "cannot create /proc/satclip-test-cache (No such file or "
                "directory): it is satclip's cache, from $SATCLIP_CACHE: set SATCLIP_CACHE to a directory you can "
                "write")  # fmt: skip
    monkeypatch.delenv("SATCLIP_CACHE")
    assert main(["data", "bluemarble", "--n", "10", "--out", "/proc/satclip-test-out"]) == 2
    check_error(capsys.readouterr().err, ONE_LINE, "/proc/satclip-test-out: cannot create a file in /proc (No such "
                "file or directory), where satclip writes the output's lock: give an output in another folder "
                "(another --out or -o)")  # fmt: skip


def test_a_reader_that_goes_away_ends_the_command_quietly(monkeypatch, capsys, tmp_path):
    """`satclip cache verify C --json | head -1` sometimes ended with "unexpected error (BrokenPipeError) … please
    report it", exit 1: the reader of the output went away, which ends a shell's commands quietly (SIGPIPE)."""
    import satclip.cli.data as data_cli

    def the_reader_went_away(args):
        print("a first line")
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(data_cli, "run_verify", the_reader_went_away)
    assert main(["data", "verify", str(tmp_path)]) == 141
    assert capsys.readouterr().err == ""


def test_the_process_around_a_command_is_named_not_blamed_on_it(tmp_path, capsys):
    """A prefix of an option was taken for it (`--over` replaced an existing output as --overwrite); a finished
    command whose last line held a '—' under PYTHONIOENCODING=latin-1 exited 2 ("'latin-1' codec can't encode");
    a full standard output was "disk full while writing the output" of an output written whole; and a deleted
    working directory died inside oneMKL with status 2."""
    (tmp_path / "p.csv").write_text("lon,lat\n0,0\n")
    (tmp_path / "e.parquet").write_text("mine")
    assert main(["embed", str(tmp_path / "p.csv"), "-o", str(tmp_path / "e.parquet"), "--model", "bluemarble-l10",
                 "--over"]) == 2  # fmt: skip
    assert "unrecognized arguments: --over" in capsys.readouterr().err
    assert (tmp_path / "e.parquet").read_text() == "mine"

    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}
    command = [sys.executable, "-m", "satclip", "convert", "bluemarble-l10", "t.pt"]
    latin = subprocess.run(command, capture_output=True, cwd=tmp_path, env=env)
    assert latin.returncode == 0 and b"\\u2014" in latin.stdout and latin.stderr == b"", latin.stderr
    with open("/dev/full", "w") as full:  # (Linux)
        written = subprocess.run([*command[:-1], "t2.pt"], stdout=full, stderr=subprocess.PIPE, text=True,
                                 cwd=tmp_path)  # fmt: skip
    assert written.returncode == 1 and (tmp_path / "t2.pt").is_file()
    check_error(written.stderr, ONE_LINE, "disk full while writing standard output")

    gone = tmp_path / "gone"
    gone.mkdir()
    script = f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); from satclip.cli import main; " \
             "sys.exit(main(['embed', 'p.csv', '-o', 'e.parquet', '--model', 'bluemarble-l10']))"
    deleted = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert deleted.returncode == 1
    check_error(deleted.stderr, ONE_LINE, "the current directory no longer exists")
