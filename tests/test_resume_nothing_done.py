"""A ``satclip map`` or ``satclip embed`` killed (SIGKILL, out of memory, a lost node) before its first block or
chunk was recorded: no clean-up runs, and ``OUT.partial/`` is left with a manifest of nothing done (a map's with
its whole field reserved on disk). A rerun with other arguments was refused ("holds an unfinished run … pass
--restart"), and a map with ``--engine dask`` too ("holds the work of an unfinished local run"), though there was
nothing to resume. Such work is now discarded by the next run, which starts."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from satclip.cli import main

from .conftest import run_in_subprocess_env
from .test_embed_cli import CHUNK, embed, model, points  # noqa: F401

#: a satclip command (``sys.argv[2:]``) in a fresh Python, killed by SIGKILL as it embeds its first points (in the
#: module ``sys.argv[1]``): nothing of its own runs after that, as after the kernel's OOM killer or a lost node
KILLED_AT_FIRST_EMBEDDING = textwrap.dedent(
    """
    import importlib, os, signal, sys
    from satclip.cli import main

    module = importlib.import_module(sys.argv[1])
    module.embed_lonlat = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
    sys.exit(main(sys.argv[2:]))
    """
)


def killed_before_first_block(module: str, argv: list[str]) -> None:
    run = subprocess.run([sys.executable, "-c", KILLED_AT_FIRST_EMBEDDING, module, *argv], env=run_in_subprocess_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == -9, run.stderr[-2000:]


def recorded_nothing(work: Path) -> bool:
    return json.loads((work / "manifest.json").read_text())["done"] in ([], {})


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_map_killed_before_its_first_block_does_not_block_another_map(tmp_path, capsys, caplog, engine):
    if engine == "dask":
        pytest.importorskip("distributed")
    out, work = tmp_path / "m.zarr", tmp_path / "m.zarr.partial"
    argv = ["map", "--model", "bluemarble-l10", "--precision", "float32", "--resolution", "10", "--all", "-o", str(out)]
    killed_before_first_block("satclip.embed.maps", argv)
    assert (work / "field.npy").stat().st_size > 0 and recorded_nothing(work)  # (what the kill left)
    again = [*argv[:6], "20", *argv[7:]]  # another grid; or the Dask engine, of the same grid
    if engine == "dask":
        again = [*argv, "--engine", "dask", "--workers", "1"]
    with caplog.at_level(logging.INFO, logger="satclip"):
        assert main(again) == 0, capsys.readouterr().err
    assert "error" not in capsys.readouterr().err
    assert any(str(work) in r.getMessage() and "done nothing" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zarr"]


def test_an_embed_killed_before_its_first_chunk_does_not_block_other_options(tmp_path, model, points, capsys):  # noqa: F811
    source, out = tmp_path / "points.csv", tmp_path / "out.parquet"
    points.to_csv(source, index=False)
    killed_before_first_block("satclip.embed.job", ["embed", str(source), "-o", str(out), "--model", str(model),
                                                     *CHUNK, "--no-progress"])  # fmt: skip
    assert recorded_nothing(tmp_path / "out.parquet.partial")
    assert embed(source, "-o", out, "--model", model, "--chunk-rows", "100") == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out.parquet", "points.csv"]
