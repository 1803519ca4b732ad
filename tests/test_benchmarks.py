"""benchmarks/' scripts as a user meets them: a bad option is one argparse line (exit 2), a missing optional package
one line naming the extra before any work (exit 1), and a benchmark leaves the user's cache alone. Each script runs
in this process (runpy), stopped where its measuring would begin."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class Parsed(Exception):
    """The options were accepted: the script would start measuring."""


class Started(Exception):
    """The script began its work (printed the hardware line)."""


@pytest.fixture
def script(monkeypatch, capsys):
    """``script(NAME, *argv)`` → (exit status, stderr) of ``python benchmarks/NAME argv``, run in this process."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import hardware

    def started(*_args, **_kwargs):
        raise Started

    monkeypatch.setattr(hardware, "print_hardware", started)

    def run(name: str, *argv: str) -> tuple[int | str | None, str]:
        monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / name), *argv])
        with pytest.raises(SystemExit) as stopped:
            runpy.run_path(str(BENCHMARKS / name), run_name="__main__")
        return stopped.value.code, capsys.readouterr().err

    return run


BAD_OPTIONS = [
    ("embed.py", "--points", "0"),
    ("embed.py", "--points", "-5"),
    ("embed.py", "--repeats", "0"),
    ("embed.py", "--threads", "0"),
    ("retrieval.py", "--points", "0"),
    ("retrieval.py", "--repeats", "0"),
    ("retrieval.py", "--semantic-points", "0"),
    ("dask_embed.py", "--repeats", "0"),
    ("encoding.py", "--repeats", "0"),
    ("pretrain.py", "--images", "0"),
    ("parquet_checksums.py", "--repeats", "0"),
    ("mosaiks.py", "--repeats", "0"),
    ("mosaiks.py", "--n", "0"),
    ("locate_bluemarble.py", "--patches", "0"),
    ("bench_bluemarble.py", "--n", "0"),
    ("graph_memory.py", "--points", "x"),
]


@pytest.mark.parametrize("name,option,value", BAD_OPTIONS)
def test_a_bad_option_is_one_argparse_line(script, monkeypatch, name, option, value):
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, *args, **kwargs):  # accepted: stop before the benchmark runs
        parse(self, *args, **kwargs)
        raise Parsed(f"{name} accepted {option} {value}")

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    code, err = script(name, option, value)
    assert code == 2
    assert err.strip().splitlines()[-1].endswith(f"argument {option}: {value} is less than 1: give 1 or more") or (
        value == "x" and "'x' is not a whole number" in err
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no CUDA GPU")
def test_pretrain_refuses_cuda_without_a_gpu(script, monkeypatch):
    code, err = script("pretrain.py", "--device", "cuda", "--images", "1")
    assert code == 2
    assert "argument --device: cuda: " in err and "give --device cpu" in err


MISSING = [
    ("graph_memory.py", "onnx", "export", ()),
    ("graph_memory.py", "onnxruntime", "export", ()),
    ("parquet_checksums.py", "pyarrow", "embed", ()),
    ("retrieval.py", "scipy", "retrieval", ("--points", "10")),
    ("bench_bluemarble.py", "scipy", "bench", ("--n", "10")),
    ("dask_embed.py", "distributed", "dask", ()),
    ("peer_exports.py", "pytest", "dev", ()),
]


@pytest.mark.parametrize("name,module,extra,argv", MISSING)
def test_a_missing_package_is_named_before_any_work(script, monkeypatch, tmp_path, name, module, extra, argv):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ModuleNotFoundError
    if name == "dask_embed.py":
        argv = ("--work", str(tmp_path))
    code, err = script(name, *argv)
    assert code == f"benchmarks/{name} needs {module}, which is not installed: pip install 'satclip[{extra}]' " \
                   f"(or: pip install {module})"  # fmt: skip
    assert err == ""  # (sys.exit prints the message; nothing else was said)
    assert list(tmp_path.iterdir()) == []  # dask_embed made no points before the check


def test_encoding_measures_calibration_afresh_without_touching_the_cache(monkeypatch, tmp_path, capsys):
    """encoding.py times precision "auto"'s calibration from scratch; the user's saved calibrations (of every model)
    stay where they are, and none is added."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import encoding

    from satclip import safe_output
    from satclip.models import fused, precision

    cache = tmp_path / "cache"
    monkeypatch.setenv("SATCLIP_CACHE", str(cache))
    kept = precision.calibration_file(torch.device("cpu"), ("another model",))
    safe_output.make_owned_dir(kept.parent, kind="precision-calibrations")  # as satclip keeps them
    kept.write_text("{}")
    before = sorted(p.name for p in kept.parent.iterdir())
    args = SimpleNamespace(points=encoding.BASIS_BLOCK, repeats=1, reference=str(tmp_path / "no-checkpoints"))
    encoding.encoder_rows(10, args, fused)
    assert "measured afresh" in capsys.readouterr().out
    assert sorted(p.name for p in kept.parent.iterdir()) == before
    assert os.environ["SATCLIP_CACHE"] == str(cache)  # (restored)
