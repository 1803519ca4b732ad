"""Paths the CLI met in an audit and handled badly: a FIFO (or device) as an output, replaced by --overwrite; a
FIFO as an input file, on which the command hung; a name too long for the file system (a traceback, or
"unexpected error … please report it"); an empty path, taken as the current directory."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import threading

import pytest
import yaml

import satclip
from satclip import safe_output
from satclip.cli import main
from satclip.errors import OutputExistsError

from .conftest import one_error_line


@pytest.fixture
def points(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("lon,lat\n13.4,52.5\n-58.4,-34.6\n")
    return path


def usage_error_line(err: str, command: str) -> str:
    """stderr of a command argparse refused: its one line ``satclip COMMAND: error: argument …``."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"satclip {command}: error: argument "), err
    return lines[0]


def too_long_name(tmp_path, suffix: str) -> str:
    """A file name longer than the file system of ``tmp_path`` allows."""
    return "a" * (os.pathconf(tmp_path, "PC_NAME_MAX") + 45) + suffix


# ------------------------------------------------------------------------------------ FIFO as an output
@pytest.mark.parametrize("overwrite", [True, False])
def test_a_fifo_output_is_refused_and_stays(points, tmp_path, capsys, overwrite):
    """`embed … -o FIFO --overwrite` replaced the FIFO by a regular Parquet file (and /dev/null itself, as root);
    without --overwrite the message suggested --overwrite. Now refused either way, the FIFO left as it was."""
    fifo = tmp_path / "out.parquet"
    os.mkfifo(fifo)
    argv = ["embed", str(points), "-o", str(fifo), "--model", "bluemarble-l10", "--no-progress"]
    assert main(argv + ["--overwrite"] * overwrite) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{fifo} is a FIFO (named pipe), not a file" in line
    assert "--overwrite" not in line
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_publish_never_replaces_a_fifo_or_a_link_to_one(tmp_path):
    """Every writer ends in safe_output.publish (atomic_file, atomic_dir): with overwrite=True it replaced a FIFO by
    a rename; through a symbolic link to one it now names the FIFO too, and nothing moves."""
    fifo, link = tmp_path / "fifo", tmp_path / "link"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    for target in (fifo, link):
        finished = tmp_path / f"finished-{target.name}"
        finished.write_bytes(b"result")
        with pytest.raises(OutputExistsError, match="is a FIFO"):
            safe_output.publish(finished, target, overwrite=True)
        assert finished.read_bytes() == b"result"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()


# ------------------------------------------------------------------------------------- FIFO as an input
@pytest.mark.parametrize(
    "argv, option",
    [
        (["demo", "--quick", "--air-temperature", "{fifo}", "--out", "{tmp}/demo"], "--air-temperature"),
        (["locate", "{fifo}", "--model", "bluemarble-l10"], "image"),
        (["embed", "{fifo}", "-o", "{tmp}/e.parquet", "--model", "bluemarble-l10"], "input"),
    ],
)
def test_a_fifo_input_is_refused_at_once(tmp_path, argv, option):
    """A FIFO given as an input file was opened, and the command waited for a writer forever. Now refused while
    parsing (in a subprocess with a timeout: the old code hung)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    argv = [arg.format(fifo=fifo, tmp=tmp_path) for arg in argv]
    done = subprocess.run(
        [sys.executable, "-m", "satclip", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 2, done.stderr
    line = usage_error_line(done.stderr, argv[0])
    assert f"argument {option}: {fifo} is a FIFO (named pipe), not a file: give a file" in line
    assert not (tmp_path / "demo").exists()


# ------------------------------------------------------------------------------ a config from a pipe
CONFIG = "optim:\n  lr: 0.005\n"


def printed_config(argv: list[str], **run) -> subprocess.CompletedProcess:
    """``satclip train … --print-config`` in a subprocess (a pipe is read by the process it was opened for)."""
    return subprocess.run(
        [sys.executable, "-m", "satclip", "train", *argv, "--print-config"], capture_output=True, text=True,
        timeout=60, **run,
    )  # fmt: skip


def test_a_config_from_process_substitution_is_read(tmp_path):
    """`train --config <(sed … base.yaml)`: the pipe (/dev/fd/63) was refused as "a FIFO (named pipe), not a file"."""
    base = tmp_path / "base.yaml"
    base.write_text(CONFIG.replace("0.005", "0.001"))
    command = f"{sys.executable} -m satclip train --config <(sed s/0.001/0.005/ {base}) --print-config"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["optim"]["lr"] == 0.005


def test_a_config_from_stdin_and_an_empty_one_from_dev_null(tmp_path):
    """`--config /dev/stdin` with the YAML piped in, and `--config /dev/null` (a character device: no keys, the
    defaults), were refused."""
    for name in ("/dev/stdin", "-"):  # ('-' was "no such file: -")
        piped = printed_config(["--config", name], input=CONFIG)
        assert piped.returncode == 0, piped.stderr
        assert yaml.safe_load(piped.stdout)["optim"]["lr"] == 0.005
    empty, defaults = printed_config(["--config", "/dev/null"]), printed_config([])
    assert empty.returncode == 0, empty.stderr
    assert yaml.safe_load(empty.stdout) == yaml.safe_load(defaults.stdout)


def test_a_config_pipe_read_before_its_writer_writes(capsys, monkeypatch):
    """A pipe whose writer holds it open and writes later is waited for (read in the process, through
    /dev/fd/N as a shell passes it), not taken as empty. The writer writes only once the reader has found the
    pipe empty and waits (a writer that slept 0.3 s might have written first, the wait then untested)."""
    read_end, write_end = os.pipe()
    waiting, set_blocking = threading.Event(), os.set_blocking

    def reader_waits(fd, blocking):
        set_blocking(fd, blocking)
        waiting.set()

    monkeypatch.setattr(os, "set_blocking", reader_waits)

    def write_later():
        if waiting.wait(timeout=60):
            os.write(write_end, CONFIG.encode())
        os.close(write_end)

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        assert main(["train", "--config", f"/dev/fd/{read_end}", "--print-config"]) == 0
    finally:
        writer.join()
        os.close(read_end)
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["lr"] == 0.005


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("fifo", "{path} is a pipe with nothing to read (no program writes to it, or it wrote nothing): start its "
         "writer first, or give a file"),
        ("empty pipe", "/dev/stdin is a pipe with nothing to read"),
        ("endless device", "/dev/zero holds more than 1 MiB: give the training config, a short YAML file"),
        ("socket", "{path} is a socket, not a file: give a file or a pipe"),
    ],
)  # fmt: skip
def test_a_config_that_cannot_be_read_is_refused_at_once(tmp_path, kind, expected):
    """A FIFO no program writes to is refused at once (opening it for reading would wait for a writer), as is a
    pipe whose writer wrote nothing; /dev/zero is refused after 1 MiB rather than read until memory runs out; a
    socket is no config."""
    path = tmp_path / kind.replace(" ", "-")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
    else:
        path = {"empty pipe": "/dev/stdin", "endless device": "/dev/zero"}[kind]
    done = printed_config(["--config", str(path)], input="")
    assert done.returncode == 2, done.stderr
    line = usage_error_line(done.stderr, "train")
    assert f"argument --config: {expected.format(path=path)}" in line


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "--model", "{fifo}", "--format", "onnx", "-o", "{tmp}/m.onnx"],
        ["evaluate", "--encoders", "{fifo}", "--task-file", "{points}", "--out", "{tmp}/ev"],
        ["embed", "{points}", "--model", "{fifo}", "-o", "{tmp}/e.npy"],
    ],
)
def test_a_fifo_model_is_named_as_what_it_is(tmp_path, points, capsys, argv):
    """A FIFO given as the model (the audit's "still short"): "checkpoint not found: …", though it is there."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert main([arg.format(fifo=fifo, tmp=tmp_path, points=points) for arg in argv]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{fifo} is a FIFO (named pipe), not a checkpoint: give a .ckpt file or a native model directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "points.csv"]


# ---------------------------------------------------------------------------------- a name too long
@pytest.mark.parametrize("command", ["embed", "locate"])
def test_an_input_name_too_long_is_one_line(tmp_path, points, capsys, command):
    """The argparse type's Path.exists() raised ENAMETOOLONG out of main(): a 46-line traceback, exit 1."""
    name = str(tmp_path / too_long_name(tmp_path, ".csv"))
    argv = {"embed": ["embed", name, "-o", str(tmp_path / "e.parquet")], "locate": ["locate", name]}[command]
    assert main([*argv, "--model", "bluemarble-l10"]) == 2
    line = usage_error_line(capsys.readouterr().err, command)
    assert "file name too long for the file system" in line
    assert f"a name in it is {len(too_long_name(tmp_path, '.csv'))} bytes" in line
    assert name not in line and len(line) < 400  # shortened, not the whole name (again)


@pytest.mark.parametrize("where", ["output", "model"])
def test_an_output_or_model_name_too_long_is_one_line(tmp_path, points, capsys, where):
    """`embed -o NAME` or `--model NAME`, a name too long: "unexpected error (OSError) … please report it", exit 1."""
    long = str(tmp_path / too_long_name(tmp_path, ".parquet"))
    output, model = (long, "bluemarble-l10") if where == "output" else (str(tmp_path / "e.parquet"), long)
    assert main(["embed", str(points), "-o", output, "--model", model, "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "file name too long for the file system" in line and "choose a shorter name" in line
    assert len(line) < 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.csv"]


@pytest.mark.parametrize("command", ["embed", "map"])
def test_an_output_name_without_room_for_its_work_names_is_refused_before_the_work(tmp_path, points, capsys,
                                                                                   command):  # fmt: skip
    """A legal name of 222-247 bytes: embed published its output and then failed on OUT.partial's temporary
    (exit 2 after the work, and on every rerun), map failed after computing the field."""
    name = "k" * (256 - safe_output.WORK_NAME_BYTES) + (".parquet" if command == "embed" else ".tif")
    argv = (["embed", str(points), "--no-progress"] if command == "embed" else ["map", "--resolution", "30"])
    assert main([*argv, "--model", "bluemarble-l10", "-o", str(tmp_path / name)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"satclip writes work files beside it whose names add {safe_output.WORK_NAME_BYTES} bytes" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.csv"]
    fits = "k" * (255 - safe_output.WORK_NAME_BYTES - 8) + ".parquet"  # the longest name there is room for
    assert main(["embed", str(points), "--no-progress", "--model", "bluemarble-l10", "-o", str(tmp_path / fits)]) == 0


def test_a_lock_beside_an_output_under_a_dangling_link_is_one_line(tmp_path, points, capsys):
    """`evaluate --out loop/ev` (loop a link to itself, or to nothing) was "unexpected error (OSError): Too many
    levels of symbolic links … please report it"."""
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "dangling").symlink_to("nowhere")
    for parent in ("loop", "dangling"):
        argv = ["evaluate", "--task-file", str(points), "--encoders", "wrap", "--out", str(tmp_path / parent / "ev")]
        assert main(argv) == 2
        assert "is a symbolic link to nothing (its target is missing, or a loop)" in one_error_line(
            capsys.readouterr().err)  # fmt: skip


def test_a_quoted_tilde_is_the_home_directory_in_every_path_option(tmp_path, monkeypatch, capsys):
    """`train --resume '~/run/…'` and `retrieval build --cache '~/c'` took ~ as a directory named ~, where every
    other path option expands it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["train", "--config", "/dev/null", "--trainer.output_dir", str(tmp_path / "r"),
                 "--resume", "~/run/last.ckpt"]) == 2  # fmt: skip
    assert f"{tmp_path / 'home' / 'run' / 'last.ckpt'} does not exist" in capsys.readouterr().err
    assert main(["retrieval", "build", "--model", "bluemarble-l10", "--cache", "~/c", "-o", str(tmp_path / "db")]) == 2
    assert f"no such feature cache: {tmp_path / 'home' / 'c'}" in capsys.readouterr().err



def test_a_folder_named_tilde_here_is_not_the_home_directory(tmp_path, points, monkeypatch, capsys):
    """`-o ./~/res.parquet --overwrite` replaced ~/res.parquet in the home directory (Path drops the ./, then the ~
    was expanded), and `./~/mine.csv` as the input was "no such file"."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "res.parquet").write_text("precious")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "~").mkdir()
    (tmp_path / "~" / "res.parquet").write_text("local")
    (tmp_path / "~" / "mine.csv").write_bytes(points.read_bytes())
    assert main(["embed", "./~/mine.csv", "--model", "bluemarble-l10", "-o", "./~/res.parquet", "--overwrite"]) == 0
    assert (home / "res.parquet").read_text() == "precious"
    assert (tmp_path / "~" / "res.parquet").read_bytes().startswith(b"PAR1")

# ------------------------------------------------------------------------------------- an empty path
@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--quick", "--out", ""],
        ["evaluate", "--task-file", "{points}", "--encoders", "wrap", "--out", ""],
        ["data", "bluemarble", "--n", "10", "--out", ""],
    ],
)
def test_an_empty_out_is_refused(tmp_path, points, monkeypatch, capsys, argv):
    """`--out ""` ran the demo into the current directory (marking it satclip's), and other commands said
    "PosixPath('.') has an empty name"."""
    monkeypatch.chdir(tmp_path)
    argv = [arg.format(points=points) for arg in argv]
    before = sorted(os.listdir(tmp_path))
    assert main(argv) == 2
    command = argv[0] if argv[0] != "data" else "data bluemarble"
    line = usage_error_line(capsys.readouterr().err, command)
    assert "argument --out: an empty path was given: name a file or directory" in line
    assert sorted(os.listdir(tmp_path)) == before


def test_an_empty_data_cache_in_the_config_is_named(tmp_path, capsys):
    """`data: {cache: ""}` in a training config: "PosixPath('.') has an empty name", no key named."""
    config = tmp_path / "config.yaml"
    config.write_text('data:\n  cache: ""\n')
    assert main(["train", "--config", str(config), "--trainer.output_dir", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "data.cache='' must be a directory's path or null, not empty" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["2024_06_01", "007", "0x10", "run #3", " sp", "1e3", "true"])
def test_a_path_override_is_the_path_as_typed(tmp_path, capsys, value):
    """`--trainer.output_dir 007` trained into ./7 (and 2024_06_01 into ./20240601, 0x10 into ./16, 'run #3' into
    ./run); 1e3 and true were refused as "must be a string". The printed config reads back as the same text."""
    from satclip.train.config import load_config

    assert main(["train", "--config", "/dev/null", "--trainer.output_dir", value, "--data.cache", value,
                 "--print-config"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    (tmp_path / "c.yaml").write_text(printed)
    config = load_config(tmp_path / "c.yaml")
    assert config.trainer.output_dir == value and config.data.cache == value


def test_no_home_directory_is_named_instead_of_a_directory_called_tilde(tmp_path, monkeypatch):
    """With no $HOME and no password-database entry, `~` stayed a name: the demo's 80 MB corpus went into
    ./~/.cache/satclip, logged as ~/.cache/satclip/… (which reads as the home directory)."""
    import pwd

    from satclip.errors import SatclipError
    from satclip.paths import cache_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("SATCLIP_CACHE", raising=False)

    def no_entry(uid):
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(SatclipError, match=r"names no home directory here: set SATCLIP_CACHE"):
        cache_dir("bluemarble")
    monkeypatch.setenv("SATCLIP_CACHE", "~no-such-user-satclip/cache")
    with pytest.raises(SatclipError, match=r"^\$SATCLIP_CACHE is '~no-such-user-satclip/cache', and"):
        cache_dir("bluemarble")
    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "cache"))
    assert cache_dir("bluemarble") == tmp_path / "cache" / "bluemarble"
    assert not (tmp_path / "~").exists()


# ------------------------------------------------------------------------ outputs inside other outputs, locks
def _writers(points, out) -> dict[str, list[str]]:
    """Every writing command with its output at ``out`` (a path inside another output)."""
    model = ["--model", "bluemarble-l10"]
    return {
        "embed": ["embed", str(points), "-o", f"{out}.parquet", *model, "--no-progress"],
        "map": ["map", *model, "--resolution", "10", "-o", f"{out}.png"],
        "export": ["export", "--format", "torchscript", *model, "-o", f"{out}.pt"],
        "convert": ["convert", "bluemarble-l10", str(out), "--target", "native"],
        "locate": ["locate", str(points), *model, "-o", f"{out}.csv"],
        "evaluate": ["evaluate", "--task-file", str(points), "--encoders", "wrap", "--out", str(out)],
        "train": ["train", "--trainer.output_dir", str(out)],
        "retrieval build": ["retrieval", "build", *model, "--cache", str(points), "-o", str(out)],
    }


@pytest.mark.parametrize("command", ["embed", "map", "export", "convert", "evaluate", "train", "retrieval build"])
def test_an_output_inside_another_satclip_output_is_refused_by_every_writer(tmp_path, points, capsys, command):
    """Only locate, data bluemarble and cache build refused an output inside another satclip output: `export -o
    CORPUS/x.onnx` or `convert M CORPUS/model` were written, and `data bluemarble --out CORPUS --overwrite` then
    refused the corpus, saying satclip had not written them."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    safe_output.mark_owned(corpus, kind="bluemarble-corpus")
    assert main(_writers(points, corpus / "x")[command]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"is inside {corpus}, a satclip Blue Marble corpus: satclip writes no other output into it" in line
    assert [p.name for p in corpus.iterdir()] == [safe_output.MARKER]



@pytest.mark.parametrize("writer", ["fit", "export", "embed_file"])
def test_the_python_writers_refuse_an_output_inside_another_satclip_output(tmp_path, points, writer):
    """The root check was the CLI's alone: `satclip.train.fit`, `satclip.io.onnx.export` and `embed_file` wrote a
    training run, an export or an embedding into a Blue Marble corpus, which then refused its --overwrite."""
    from satclip.embed import embed_file, open_source
    from satclip.io.onnx import export
    from satclip.train import fit, from_dict

    from .test_train_fit import cached_config
    from .train_helpers import synthetic_cache

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    safe_output.mark_owned(corpus, kind="bluemarble-corpus")
    if writer == "fit":
        synthetic_cache(tmp_path / "cache", n=200)
        write = lambda: fit(from_dict(cached_config(tmp_path / "cache", corpus / "run")))  # noqa: E731
    elif writer == "export":
        write = lambda: export(satclip.load("bluemarble-l10"), corpus / "x.onnx", "onnx")  # noqa: E731
    else:
        write = lambda: embed_file(open_source(points), corpus / "x.parquet", satclip.load("bluemarble-l10"))  # noqa: E731
    with pytest.raises(OutputExistsError, match=f"is inside {re.escape(str(corpus))}, a satclip Blue Marble corpus"):
        write()
    assert [p.name for p in corpus.iterdir()] == [safe_output.MARKER]

def test_an_export_inside_a_training_run_is_still_written(tmp_path):
    """The layout the docs show, `RUN/export/…`, stays allowed: a training run is never replaced whole."""
    run = tmp_path / "run"
    run.mkdir()
    safe_output.mark_owned(run, kind="training-run")
    out = run / "export" / "x.pt"
    assert main(["export", "--format", "torchscript", "--model", "bluemarble-l10", "-o", str(out)]) == 0
    assert out.is_file()



def test_a_reference_evaluation_holds_its_protocols_evaluations(tmp_path):
    """`satclip evaluate --preset reference` writes an evaluation per protocol inside its own directory; the root
    check refused the first ("… is inside …, a satclip directory of kind 'reference-evaluation'")."""
    from satclip.eval.reference import REFERENCE_KIND

    out = tmp_path / "reference"
    out.mkdir()
    safe_output.mark_owned(out, kind=REFERENCE_KIND)
    safe_output.check_not_in_output(out / "random")  # (raised OutputExistsError)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    safe_output.mark_owned(corpus, kind="bluemarble-corpus")
    with pytest.raises(OutputExistsError, match="is inside"):
        safe_output.check_not_in_output(corpus / "random")

@pytest.mark.parametrize("command", ["convert", "export", "locate"])
def test_a_writer_is_refused_while_another_run_holds_the_output(tmp_path, points, capsys, command):
    """While `embed big.csv -o X.zarr` held its lock, `convert bluemarble-l10 X.zarr` wrote a model there and the
    embedding failed at its very end ("X.zarr already exists"): these writers never looked at the lock."""
    argv = _writers(points, tmp_path / "x")[command]
    out = argv[argv.index("-o") + 1] if "-o" in argv else argv[2]
    with safe_output.exclusive(out):  # (another open of the lock: refused as another process's would be)
        assert main(argv) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{out} is in use by another satclip run (PID {os.getpid()} on " in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.csv"]


def test_a_symbolic_link_as_a_run_directory_is_named_first(tmp_path, capsys):
    """`train --trainer.output_dir runl`, runl a link to a run, said "already holds a run … continue it with
    --resume", and --resume then refused the link; a link loop was told to "give the directory it points to"."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    safe_output.mark_owned(run, kind="training-run")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (tmp_path / "runl").symlink_to(run)
    (tmp_path / "la").symlink_to("la")
    for argv in (["train", "--trainer.output_dir", str(tmp_path / "runl")],
                 ["train", "--trainer.output_dir", str(tmp_path / "runl"), "--resume"]):  # fmt: skip
        assert main(argv) == 2
        assert f"{tmp_path / 'runl'} is a symbolic link; give the directory it points to" in one_error_line(
            capsys.readouterr().err)  # fmt: skip
    for argv in (["train", "--trainer.output_dir", str(tmp_path / "la")],
                 ["data", "bluemarble", "--n", "100", "--out", str(tmp_path / "la")]):  # fmt: skip
        assert main(argv) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "la is a symbolic link to nothing (its target is missing, or a loop)" in line
        assert "points to" not in line


@pytest.mark.parametrize("command", [
    ["locate", "IMAGE", "--model", "bluemarble-l10", "-o", "rows.csv/"], ["export", "--model", "bluemarble-l10", "-o",
    "m.onnx/"], ["embed", "POINTS", "--model", "bluemarble-l10", "-o", "emb.parquet/"], ["map", "--model",
    "bluemarble-l10", "--resolution", "10", "-o", "field.tif/"],
])  # fmt: skip
def test_a_file_output_ending_in_a_separator_is_refused(tmp_path, monkeypatch, capsys, command):
    """`satclip locate … -o rows.csv/` wrote a file named rows.csv (Path drops the trailing '/'), as embed, map and
    export did: a path ending in a separator names a folder; a file output there is refused, naming the fix."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "IMAGE").write_bytes(b"x")
    (tmp_path / "POINTS").write_text("lon,lat\n0,0\n")
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    named = command[-1].rstrip("/")
    assert "\n" not in err and err.startswith(f"satclip {command[0]}: error: argument -o/--output: "), err
    assert f"{command[-1]} ends in '/', which names a folder, and a file is written there: give {named}" in err, err
    assert not (tmp_path / named).exists()


def test_a_directory_output_ending_in_a_separator_is_taken():
    from satclip.cli import build_parser

    args = build_parser().parse_args(["embed", "README.md", "--model", "m", "-o", "emb.zarr/"])
    assert args.output.name == "emb.zarr"
