"""The precision switch through satclip.embed and `satclip embed`: used, recorded in the output, checked."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.models import precision

from .test_embed_cli import model  # noqa: F401 - fixture


@pytest.fixture
def points(tmp_path):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"lon": rng.uniform(-180, 180, 200), "lat": rng.uniform(-90, 90, 200)})
    frame.loc[0] = (180.0, 90.0)
    path = tmp_path / "points.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_embed_api_precision(model, points):  # noqa: F811
    _, frame = points
    lonlat = frame[["lon", "lat"]].to_numpy()
    f32 = satclip.embed(lonlat, model=str(model), precision="float32")
    bf16 = satclip.embed(lonlat, model=str(model), precision="bf16")
    f64 = satclip.embed(lonlat, model=str(model), dtype=torch.float64)
    assert f32.dtype == bf16.dtype == np.float32 and f64.dtype == np.float64
    encoder = satclip.load(str(model), precision="float32")
    np.testing.assert_array_equal(bf16, encoder.encode(lonlat, precision="bf16").numpy())
    np.testing.assert_array_equal(f32, encoder.encode(lonlat).numpy())
    assert np.abs(f32 - bf16).max() > 1e-5  # it ran in bf16 (agreement is test_fused's, for released models)
    np.testing.assert_allclose(f32, f64, atol=1e-5)
    again = satclip.embed(lonlat, model=encoder, precision="bf16")
    np.testing.assert_array_equal(again, bf16)
    assert encoder.precision == "float32"  # the caller's encoder keeps its own choice


@pytest.mark.parametrize("fmt", ["parquet", "zarr"])
def test_embed_cli_records_the_precision(tmp_path, model, points, capsys, fmt):  # noqa: F811
    if fmt == "zarr":
        zarr = pytest.importorskip("zarr")
    path, _ = points
    out = tmp_path / f"e.{fmt}"
    args = ["embed", str(path), "-o", str(out), "--model", str(model), "--precision", "bf16", "--no-progress"]
    assert main(args) == 0
    assert "precision bf16" in capsys.readouterr().out
    if fmt == "parquet":
        metadata = pq.read_schema(out).metadata
        record = json.loads(metadata[b"satclip"])
    else:
        record = json.loads(zarr.open_group(str(out), mode="r").attrs["satclip"])
    assert record["precision"] == {"precision": "bf16", "requested": "bf16", "reason": "requested"}
    assert record["model"]["precision"] == "bf16"


def test_embed_cli_auto_says_what_it_chose(tmp_path, model, points, capsys, monkeypatch):  # noqa: F811
    monkeypatch.delenv(precision.ENV)
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"avx512_f": True})  # no bf16 unit
    path, _ = points
    out = tmp_path / "e.parquet"
    assert main(["embed", str(path), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "precision float32 (auto: CPU without" in printed
    record = json.loads(pq.read_schema(out).metadata[b"satclip"])
    assert record["precision"]["requested"] == "auto" and record["precision"]["precision"] == "float32"


def test_embed_cli_dtype_still_works_and_conflicts_are_refused(tmp_path, model, points, capsys):  # noqa: F811
    path, _ = points
    out = tmp_path / "e.npy"
    assert main(["embed", str(path), "-o", str(out), "--model", str(model), "--dtype", "float64", "--no-progress"]) == 0
    assert np.load(out).dtype == np.float64
    capsys.readouterr()
    code = main(["embed", str(path), "-o", str(tmp_path / "f.npy"), "--model", str(model), "--dtype", "float64",
                 "--precision", "bf16", "--no-progress"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "contradicts" in err and len(err.strip().splitlines()) == 1


def test_a_dtype_given_with_auto_is_that_dtype(tmp_path, model, points, capsys, monkeypatch):  # noqa: F811
    """--dtype float32 --precision auto (satclip.load(…, dtype=torch.float32, precision="auto")) wrote bf16 embeddings
    where auto chose bf16, though --dtype float32 alone, auto the default, runs in float32 (--dtype is the older
    spelling of --precision float32); dtype float64 with auto was refused as a contradiction. "auto" given with a
    dtype is that dtype, as when it is the default."""
    path, _ = points
    monkeypatch.setattr(precision, "bf16_support", lambda device="cpu": (True, "CPU with amx_bf16 (faked)"))
    monkeypatch.setattr(precision, "_calibrate", lambda *args: precision.Choice("bf16", "auto", "calibrated (test)"))
    monkeypatch.setattr(precision, "MIN_COSINE", -1.0)  # (this random model's bf16 is further from float32's)
    assert satclip.load(model, precision="auto").precision == "bf16"  # (auto chooses bf16 here)
    for dtype, name in [(torch.float32, "float32"), (torch.float64, "float64")]:
        encoder = satclip.load(model, dtype=dtype, precision="auto")
        assert encoder.precision == name and encoder.precision_choice.requested == name
        assert encoder.encode([[0.0, 0.0]]).dtype == dtype
    for options, name in [([], "bf16"), (["--dtype", "float32"], "float32")]:
        out = tmp_path / f"{name}.parquet"
        argv = ["embed", str(path), "-o", str(out), "--model", str(model), "--precision", "auto", *options]
        assert main([*argv, "--no-progress"]) == 0
        assert json.loads(pq.read_schema(out).metadata[b"satclip"])["precision"]["precision"] == name
    assert "precision float32\n" in capsys.readouterr().out


def test_map_records_and_uses_the_precision(tmp_path, model, capsys):  # noqa: F811
    pytest.importorskip("zarr")
    import zarr

    out = tmp_path / "m.zarr"
    args = ["map", "--model", str(model), "--resolution", "30", "--all", "-o", str(out), "--precision", "bf16"]
    assert main(args) == 0
    assert "precision bf16" in capsys.readouterr().out
    group = zarr.open_group(str(out), mode="r")
    recorded = json.loads(dict(group.attrs)["precision"])
    assert recorded == {"precision": "bf16", "requested": "bf16", "reason": "requested"}
    from satclip.embed.maps import field_blocks, make_grid

    grid = make_grid(30)
    encoder = satclip.load(str(model), precision="float32")
    (_, bf16), = field_blocks(encoder, grid, precision="bf16")  # fmt: skip
    np.testing.assert_array_equal(np.asarray(group["embedding"]).transpose(1, 2, 0), bf16)


def test_evaluate_loads_its_models_in_the_precision_asked(model):  # noqa: F811
    from satclip.eval.encoders import create

    with precision.default_as("bf16"):
        encoder = create(str(model))
    assert encoder.module.precision == "bf16"
    points = np.array([[0.0, 0.0], [10.0, 80.0], [-180.0, -90.0]])
    np.testing.assert_array_equal(encoder.embed(points), encoder.module.encode(points, precision="bf16").numpy())
    assert create(f"{model}(precision='float64')").module.precision == "float64"


class _StopAfterFirstChunk:
    def start(self, total, done):
        pass

    def update(self, rows):
        raise KeyboardInterrupt


def _auto(encoder, chosen: str):
    """``encoder`` as ``precision="auto"`` leaves it when the calibration chose ``chosen``."""
    encoder.precision, encoder.precision_choice = chosen, precision.Choice(chosen, "auto", "calibrated (test)")
    return encoder


def test_auto_precision_resumes_in_the_precision_it_started_with(tmp_path, model, points):  # noqa: F811
    """"auto" times bf16 against float32 and may choose differently on the rerun of an interrupted job: the
    rerun resumes in the precision the job started with (not refused as another model), and the output
    equals an uninterrupted run in that precision; an explicit other precision is still refused."""
    from satclip.embed import ResumeMismatchError, embed_file, open_source

    path, _ = points
    out, whole = tmp_path / "e.parquet", tmp_path / "whole.parquet"
    with pytest.raises(KeyboardInterrupt):
        embed_file(open_source(path), out, _auto(satclip.load(model), "bf16"), chunk_rows=64,
                   progress=_StopAfterFirstChunk())  # fmt: skip
    resumed = _auto(satclip.load(model), "float32")
    result = embed_file(open_source(path), out, resumed, chunk_rows=64)
    assert result.resumed_chunks == 1 and resumed.precision == "bf16"
    embed_file(open_source(path), whole, _auto(satclip.load(model), "bf16"), chunk_rows=64)
    values = [np.stack(pq.read_table(p).column("embedding").to_numpy(zero_copy_only=False)) for p in (out, whole)]
    np.testing.assert_array_equal(values[0], values[1])
    float32 = np.stack(satclip.load(model, precision="float32").encode(points[1].to_numpy()).numpy())
    assert np.abs(values[0] - float32).max() > 0  # (the two precisions do differ: bf16 was kept)
    assert json.loads(pq.read_schema(out).metadata[b"satclip"])["model"]["precision"] == "bf16"

    again = tmp_path / "again.parquet"
    with pytest.raises(KeyboardInterrupt):
        embed_file(open_source(path), again, _auto(satclip.load(model), "bf16"), chunk_rows=64,
                   progress=_StopAfterFirstChunk())  # fmt: skip
    with pytest.raises(ResumeMismatchError, match="precision"):
        embed_file(open_source(path), again, satclip.load(model, precision="float32"), chunk_rows=64)


def test_auto_precision_resumes_only_the_same_job_in_its_precision(tmp_path, model, points, caplog):  # noqa: F811
    """After a killed bf16 run, a rerun with another model or other options, where "auto" chose float32, said
    "resuming in bf16, the precision this run started with" (in another model's precision) and was then refused:
    the refusal comes alone, the encoder keeps the precision chosen now; the same job still resumes in bf16."""
    import logging

    from satclip.embed import ResumeMismatchError, embed_file, open_source

    path, _ = points
    out = tmp_path / "e.parquet"
    with pytest.raises(KeyboardInterrupt):
        embed_file(open_source(path), out, _auto(satclip.load(model), "bf16"), chunk_rows=64,
                   progress=_StopAfterFirstChunk())  # fmt: skip
    other = satclip.load(model)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    for encoder, chunk_rows in ((_auto(other, "float32"), 64), (_auto(satclip.load(model), "float32"), 32)):
        caplog.clear()
        with caplog.at_level(logging.INFO), pytest.raises(ResumeMismatchError, match="different input, model or"):
            embed_file(open_source(path), out, encoder, chunk_rows=chunk_rows)
        assert "resuming in" not in caplog.text and encoder.precision == "float32"
    stat = path.stat()  # the input touched since: this job, told how to give the input back its time …
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = _auto(satclip.load(model), "float32")
    with pytest.raises(ResumeMismatchError, match=r"\(input\.mtime_ns: [0-9]+ → [0-9]+\)\. Rerun .*touch -d @"):
        embed_file(open_source(path), out, touched, chunk_rows=64)  # (… the precision only said: model.precision too)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    resumed = _auto(satclip.load(model), "float32")
    with caplog.at_level(logging.INFO):
        assert embed_file(open_source(path), out, resumed, chunk_rows=64).resumed_chunks == 1
    assert 'resuming in bf16, the precision this run started with ("auto" chose float32 now)' in caplog.text
    assert resumed.precision == "bf16"


@pytest.mark.parametrize(("first", "then"), [("auto", "bf16"), ("bf16", "auto")])
def test_a_zarr_run_resumed_with_its_precision_spelled_otherwise_says_no_file_changed(tmp_path, model,  # noqa: F811
                                                                                     points, monkeypatch, caplog,
                                                                                     first, then):  # fmt: skip
    """A Zarr run started with --precision auto (bf16 here) and resumed with --precision bf16 is accepted as the same
    run, yet warned "its metadata file .zattrs has changed since it was written; writing it again": the attributes
    record how the precision was asked, and the options check accepts either spelling. Nothing is said of the file,
    and the output records the run that finished it."""
    import logging

    from .test_embed_cli import crash_after

    path, _ = points
    monkeypatch.setattr(precision, "bf16_support", lambda device="cpu": (True, "CPU with amx_bf16 (faked)"))
    monkeypatch.setattr(precision, "_calibrate", lambda *args: precision.Choice("bf16", "auto", "calibrated (test)"))
    monkeypatch.setattr(precision, "MIN_COSINE", -1.0)  # (this random model's bf16 is further from float32's)
    out = tmp_path / "emb.zarr"
    argv = ["embed", str(path), "-o", str(out), "--model", str(model), "--chunk-rows", "50", "--no-progress"]
    with monkeypatch.context() as patch:
        crash_after(patch, 2)
        assert main([*argv, "--precision", first]) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip"):
        assert main([*argv, "--precision", then]) == 0
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    recorded = json.loads(json.loads((out / ".zattrs").read_text())["satclip"])["precision"]
    assert recorded["precision"] == "bf16" and recorded["requested"] == then
