"""A satclip directory of another kind (a training run) given as the output of ``embed`` or ``convert`` with
``--overwrite`` is refused by the commands' first output check, before any work: it was refused only when the
finished output was to replace it, after all the compute, leaving a satclip-owned ``OUT.partial`` behind."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import satclip
from satclip import safe_output
from satclip.cli import main
from satclip.embed import api, job
from satclip.embed.distributed import embed_dataset
from satclip.errors import OutputExistsError
from satclip.io import convert as convert_module
from satclip.io.native import write_native

from .conftest import one_error_line
from .test_embed_api import CONFIG
from .test_safe_output import snapshot


@pytest.fixture
def model(tmp_path) -> Path:
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(CONFIG)
    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    return write_native(tmp_path / "model", {"location_encoder": CONFIG}, tensors)


@pytest.fixture
def points(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "pts.parquet"
    pd.DataFrame({"lon": rng.uniform(-180, 180, 500), "lat": rng.uniform(-90, 90, 500)}).to_parquet(path)
    return path


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A training run as `satclip train` makes it (step by step, kind "training-run"), with the user's notes."""
    run = safe_output.make_owned_dir(tmp_path / "runs" / "k", kind="training-run")
    (run / "config.yaml").write_text("model: {}\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights of a week of training")
    (run / "notes.md").write_text("what I make of this run")
    return run


def assert_refused_untouched(run: Path, before: dict, err: str) -> None:
    line = one_error_line(err)
    assert f"{run} is a satclip directory of kind 'training-run', not 'output'" in line, line
    assert snapshot(run) == before and safe_output.owned_kind(run) == "training-run"
    assert sorted(p.name for p in run.parent.iterdir()) == ["k"]  # no OUT.partial, no temporary beside it


def test_local_embed_refuses_a_training_run_before_embedding(model, points, run_dir, capsys, monkeypatch):
    """`satclip embed pts.parquet -o runs/k --format zarr --overwrite` embedded every point, then was refused."""
    embedded = []
    real = job.embed_lonlat
    monkeypatch.setattr(job, "embed_lonlat", lambda *a, **k: embedded.append(1) or real(*a, **k))
    loaded = []
    real_load = api.load_encoder
    monkeypatch.setattr(api, "load_encoder", lambda *a, **k: loaded.append(1) or real_load(*a, **k))
    before = snapshot(run_dir)
    argv = ["embed", str(points), "-o", str(run_dir), "--format", "zarr", "--model", str(model), "--overwrite"]
    assert main([*argv, "--no-progress"]) == 2
    assert_refused_untouched(run_dir, before, capsys.readouterr().err)
    assert embedded == [] and loaded == []  # (the model, a released L=40 one, took seconds to load for nothing)
    shard = run_dir.with_name("k.shard-1-of-2")  # a shard's output is checked, not the name given
    shard.mkdir()
    (shard / "mine.txt").write_text("x")
    argv = ["embed", str(points), "-o", str(run_dir.parent / "k"), "--format", "zarr", "--model", str(model)]
    assert main([*argv, "--shard", "1/2", "--no-progress"]) == 2
    assert f"{shard} is a directory satclip did not create" in one_error_line(capsys.readouterr().err)
    assert loaded == []


def test_dask_embed_refuses_a_training_run_before_starting_a_cluster(model, points, run_dir, capsys, caplog):
    """`satclip embed pts.parquet -o runs/k --engine dask --overwrite` computed every partition, then was refused."""
    pytest.importorskip("distributed")
    before = snapshot(run_dir)
    argv = ["embed", str(points), "-o", str(run_dir), "--model", str(model), "--engine", "dask", "--workers", "1"]
    with caplog.at_level(logging.INFO):
        assert main([*argv, "--overwrite", "--no-progress"]) == 2
    assert_refused_untouched(run_dir, before, capsys.readouterr().err)
    assert "starting a local Dask cluster" not in caplog.text


def test_embed_dataset_refuses_a_training_run_before_connecting(model, points, run_dir):
    """The library call behind `--engine dask` checks it first too (here with a scheduler nobody listens on)."""
    pytest.importorskip("distributed")
    before = snapshot(run_dir)
    with pytest.raises(OutputExistsError, match="of kind 'training-run', not 'output'"):
        embed_dataset(points, run_dir, satclip.load(model), overwrite=True, scheduler="tcp://127.0.0.1:1")
    assert snapshot(run_dir) == before
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["k"]


def test_convert_refuses_a_training_run_before_reading_the_model(model, run_dir, capsys, monkeypatch):
    """`satclip convert MODEL runs/k --target native --overwrite` read and converted the model, then was refused."""
    read = []
    real = convert_module.read_parts
    monkeypatch.setattr(convert_module, "read_parts", lambda *a, **k: read.append(1) or real(*a, **k))
    before = snapshot(run_dir)
    assert main(["convert", str(model), str(run_dir), "--target", "native", "--overwrite"]) == 2
    assert_refused_untouched(run_dir, before, capsys.readouterr().err)
    assert read == []
