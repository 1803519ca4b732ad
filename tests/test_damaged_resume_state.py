"""Damaged saved state of a resumable job, read through the real CLI: the row-group records and manifest of an
unfinished ``satclip embed`` (OUT.partial/), a GeoPackage input that cannot be read, and the finished folds of
``satclip evaluate --out`` (rows.jsonl). Each is refused in one line naming the file and the fix, or (a row group
cut short, the evaluation's rows) named in one warning and computed again; never "unexpected error"."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from satclip.cli import main

from .conftest import one_error_line
from .test_embed_cli import CHUNK, embed, model, points, read_embeddings, reference, stopped_after_one_chunk  # noqa: F401


def _resumed_error(source, out, model, capsys) -> str:  # noqa: F811
    """Resume the embed of ``source`` into ``out``: it must fail with exit 1 and one error line (after, maybe,
    the line "resuming …"); returns that line."""
    capsys.readouterr()
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) <= 2 and all(line.startswith(f"resuming {out}: ") for line in lines[:-1]), lines
    return one_error_line(lines[-1])


def _restart_gives_the_embeddings(source, out, model, points) -> None:  # noqa: F811
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--restart") == 0
    np.testing.assert_allclose(read_embeddings(out), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5)


@pytest.mark.parametrize("size", [100, 5])
def test_a_damaged_row_group_record_is_named_with_restart(tmp_path, model, points, monkeypatch, capsys, size):  # noqa: F811
    """A row-group footer record cut short gave "unexpected error (IndexError): index out of bounds on dimension
    1" (cut to 100 bytes: inside the Thrift footer), or was read as a row group ending at byte 0 (cut to 5)."""
    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    record = tmp_path / "emb.parquet.partial" / "row-group-000000.footer"
    data = record.read_bytes()
    assert len(data) > size
    record.write_bytes(data[:size])
    err = _resumed_error(source, out, model, capsys)
    assert err.startswith(f"satclip: error: {record}, the record of row group 0 of output.parquet, is damaged ("), err
    assert err.endswith("rerun with --restart"), err
    _restart_gives_the_embeddings(source, out, model, points)


def test_a_record_of_another_footer_is_named(tmp_path, model, points, monkeypatch, capsys):  # noqa: F811
    """A record whose footer bytes are replaced by other bytes of the same length (not a Parquet footer)."""
    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    record = tmp_path / "emb.parquet.partial" / "row-group-000000.footer"
    data = record.read_bytes()
    record.write_bytes(data[:8] + bytes(range(256)) * (len(data) // 256) + b"\xff" * (len(data) % 256 - 8))
    err = _resumed_error(source, out, model, capsys)
    assert f"{record}, the record of row group 0 of output.parquet, is damaged (" in err, err
    assert err.endswith("--restart"), err


def test_a_row_group_record_with_other_statistics_is_written_again(tmp_path, model, points, monkeypatch, caplog):  # noqa: F811
    """A row-group footer record whose column statistics changed (a valid footer still) was published as the
    finished file's footer: a reader filtering on them (``lon >= …``) skipped the rows. The record is now part
    of its chunk's check: the row group is embedded and written again, with the statistics of its rows."""
    import struct

    import pyarrow.parquet as pq

    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    record = tmp_path / "emb.parquet.partial" / "row-group-000000.footer"
    lowest = float(points["lon"][:64].min())
    data = record.read_bytes()
    assert struct.pack("<d", lowest) in data  # (twice: the footer's min and min_value)
    record.write_bytes(data.replace(struct.pack("<d", lowest), struct.pack("<d", lowest + 1)))
    with caplog.at_level(logging.WARNING, logger="satclip.embed"):
        assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "its chunk row-group-000000.footer has changed since it was written" in warnings[0]
    lon = pq.ParquetFile(out).schema_arrow.get_field_index("lon")
    assert pq.ParquetFile(out).metadata.row_group(0).column(lon).statistics.min == lowest
    assert len(pq.read_table(out, filters=[("lon", ">=", lowest)])) == len(points[points["lon"] >= lowest])
    np.testing.assert_allclose(read_embeddings(out), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5)


def test_a_parquet_run_whose_manifest_skips_a_chunk_writes_the_rest_again(tmp_path, model, points, monkeypatch,  # noqa: F811
                                                                          caplog):  # fmt: skip
    """A manifest of an unfinished Parquet run whose `done` skips a chunk ([0, 2]: chunk 1 lost from it): the
    resumed run appended chunk 1 after chunk 0, cutting off chunk 2's row group, then refused chunk 2 as changed
    and asked for --restart. Row groups are appended in order: every one after the gap is now written again,
    with a warning naming them, and the output is the clean run's."""
    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch, chunks=3)
    record = tmp_path / "emb.parquet.partial" / "manifest.json"
    manifest = json.loads(record.read_text())
    assert manifest["done"] == [0, 1, 2]
    record.write_text(json.dumps({**manifest, "done": [0, 2]}))
    with caplog.at_level(logging.WARNING, logger="satclip.embed"):
        assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{out}.partial/output.parquet: writing its row groups [2] again too (each is appended "
                        "after the one before it)"], warnings  # fmt: skip
    np.testing.assert_allclose(read_embeddings(out), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5)


def test_an_output_cut_short_after_its_last_row_group_is_written_again(tmp_path, model, points, monkeypatch, caplog):  # noqa: F811
    """Every chunk done, OUT.partial/output.parquet cut short before the run wrote its footer: ending the file at
    the recorded end filled the missing bytes with zeros and published that (then: refused, asking for
    --restart). Now the row group cut short alone is embedded and written again."""
    from satclip.embed import job, parquet_append

    source = tmp_path / "points.parquet"
    points.to_parquet(source)
    out = tmp_path / "emb.parquet"
    real = parquet_append.finish

    def killed(*args, **kwargs):
        raise RuntimeError("simulated kill before the footer")

    monkeypatch.setattr(parquet_append, "finish", killed)
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 1
    monkeypatch.setattr(parquet_append, "finish", real)
    written = tmp_path / "emb.parquet.partial" / "output.parquet"
    last = tmp_path / "emb.parquet.partial" / "row-group-000004.footer"
    end = int.from_bytes(last.read_bytes()[:8], "little")  # (the file holds the last writer's footer after it)
    written.write_bytes(written.read_bytes()[: end - 100])
    start = int.from_bytes((last.parent / "row-group-000003.footer").read_bytes()[:8], "little")
    embedded, real_embed = [], job.embed_lonlat
    monkeypatch.setattr(job, "embed_lonlat", lambda *a, **k: embedded.append(1) or real_embed(*a, **k))
    with caplog.at_level(logging.WARNING, logger="satclip.embed"):
        assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    assert len(embedded) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{written}, the output of an unfinished run: its chunk output.parquet row group 4 is {end - 100 - start:,} "
        f"bytes, not the {end - start:,} written; embedding it again"
    ]
    np.testing.assert_allclose(read_embeddings(out), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("done", "0", "done '0' is not a list of chunk numbers from 0 to 4"),
        ("done", ["0"], "done ['0'] is not a list of chunk numbers from 0 to 4"),
        ("done", [0, 7], "done [0, 7] is not a list of chunk numbers from 0 to 4"),
        ("chunks", "x", "chunks 'x' are not the 300 rows' chunks of 64 in this shard"),
        ("rows", None, "rows None are not those of chunks [0, 5]"),
        ("num_input_rows", "300", "num_input_rows '300' is not a number of rows"),
        ("invalid_rows", [], "invalid_rows [] is not a number of rows"),
        ("finished", "../../points.parquet", "finished '../../points.parquet' is not the name of a file in the work"),
    ],
)
def test_a_manifest_with_fields_of_the_wrong_type_is_damaged(tmp_path, model, points, monkeypatch, capsys,  # noqa: F811
                                                             field, value, named):  # fmt: skip
    """`done` not a list of chunk numbers gave "unexpected error (TypeError): can only concatenate str (not
    "int") to str"; other fields of the wrong type failed in other ways, or were trusted."""
    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    record = tmp_path / "emb.parquet.partial" / "manifest.json"
    manifest = json.loads(record.read_text())
    assert field in manifest or field == "finished"
    record.write_text(json.dumps({**manifest, field: value}))
    err = _resumed_error(source, out, model, capsys)
    assert err.startswith(f"satclip: error: {record}, the record of an unfinished run, is damaged ({named}"), err
    assert err.endswith("pass --restart to discard that run and start again"), err
    assert source.is_file()
    _restart_gives_the_embeddings(source, out, model, points)


@pytest.mark.parametrize("identity", ["missing", "map", "list"])
def test_a_manifest_of_another_kind_is_named_in_a_short_line(tmp_path, model, points, monkeypatch, capsys,  # noqa: F811
                                                              identity):  # fmt: skip
    """A manifest without the job's identity (none, satclip map's, not an object) was compared entry by entry:
    an ~900-character "different input, model or options (input: None → {…})" line that did not say the
    record is not this job's."""
    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    record = tmp_path / "emb.parquet.partial" / "manifest.json"
    manifest = json.loads(record.read_text())
    recorded = {"missing": None, "list": [manifest["identity"]],
                "map": {"model": manifest["identity"]["model"], "grid": [1, 2], "cells": None}}[identity]  # fmt: skip
    record.write_text(json.dumps({**manifest, "identity": recorded}))
    err = _resumed_error(source, out, model, capsys)
    assert err == (f"satclip: error: {record}, the record of an unfinished run, is damaged (it records no input, "
                   "model, options of a run of this command); pass --restart to discard that run and start again")
    _restart_gives_the_embeddings(source, out, model, points)


def test_a_changed_option_is_listed_without_whole_records(tmp_path, model, points, monkeypatch, capsys):  # noqa: F811
    """An identity entry that is a dictionary on one side and not on the other was printed whole."""
    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    record = tmp_path / "emb.parquet.partial" / "manifest.json"
    manifest = json.loads(record.read_text())
    record.write_text(json.dumps({**manifest, "identity": {**manifest["identity"], "model": "another"}}))
    capsys.readouterr()
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "model: 'another' → {" in err and len(err) < 400, err


@pytest.mark.parametrize("damage", ["cut", "text", "empty"])
def test_an_unreadable_geopackage_is_named_in_one_line(tmp_path, model, points, capsys, damage):  # noqa: F811
    """A GeoPackage cut short gave "unexpected error (DataSourceError): sqlite3_prepare_v2(…) failed: database
    disk image is malformed; … please report it" (exit 1), without the file; so did any file GDAL cannot read."""
    geopandas = pytest.importorskip("geopandas")
    pytest.importorskip("pyogrio")
    whole = tmp_path / "whole.gpkg"
    frame = geopandas.GeoDataFrame(points, geometry=geopandas.points_from_xy(points.lon, points.lat), crs="EPSG:4326")
    frame.to_file(whole, driver="GPKG")
    assert main(["embed", str(whole), "-o", str(tmp_path / "whole.parquet"), "--model", str(model),
                 "--no-progress"]) == 0  # fmt: skip
    broken = tmp_path / "points.gpkg"
    data = whole.read_bytes()
    broken.write_bytes({"cut": data[: len(data) // 2], "text": b"lon,lat\n0,0\n", "empty": b""}[damage])
    out = tmp_path / "emb.parquet"
    capsys.readouterr()
    assert main(["embed", str(broken), "-o", str(out), "--model", str(model), "--no-progress"]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith(f"satclip: error: {broken}: not a readable GeoPackage file ("), err
    assert err.endswith({"cut": "damaged or cut short? write it again, or give the points as Parquet or CSV with "
                                "lon/lat",
                         "text": "it looks like CSV: rename it to .csv or pass --input-format csv",
                         "empty": "it is empty: write the points to it again"}[damage]), err  # fmt: skip
    assert not out.exists()


EVALUATE = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--n-points", "300", "--seeds", "0,1,2",
            "--probes", "linear", "--no-figures"]  # fmt: skip


def evaluated_twice(tmp_path) -> tuple:
    """An intact evaluation (``clean``) and one into ``ev`` with the same rows (three folds): (clean, out, its
    rows.jsonl, its three lines with their ends of line)."""
    clean, out = tmp_path / "clean", tmp_path / "ev"
    assert main([*EVALUATE, "--out", str(clean)]) == 0
    assert main([*EVALUATE, "--out", str(out)]) == 0
    rows = out / "rows.jsonl"
    lines = rows.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    return clean, out, rows, lines


@pytest.mark.parametrize("damage", ["no key", "text metric", "binary", "not an object"])
def test_damaged_rows_of_an_evaluation_are_fitted_again(tmp_path, capsys, caplog, damage):
    """A damaged rows.jsonl in an `evaluate --out` folder: a row without "key" gave "unexpected error (KeyError):
    key", a metric that is text "could not convert string to float: 'abc'" naming no file, undecodable bytes
    "'utf-8' codec can't decode byte 0x9b …" naming none either. Now such lines are skipped with one warning
    naming the file and their count, and their folds fitted again; the results are those of an intact run."""
    pytest.importorskip("h5py")
    clean, out, rows, lines = evaluated_twice(tmp_path)
    first, second = json.loads(lines[0]), json.loads(lines[1])
    broken = {
        "no key": [json.dumps({k: v for k, v in first.items() if k != "key"}).encode() + b"\n",
                   json.dumps({**second, "key": 7}).encode() + b"\n"],
        "text metric": [json.dumps({**first, "mse": "abc"}).encode() + b"\n",
                        json.dumps({**second, "task": None}).encode() + b"\n"],
        "binary": [b"\x9b\x00\xff" + lines[0][3:], bytes(range(14, 256)) + b"\n"],  # (no line ends inside)
        "not an object": [b"[1, 2]\n", b"null\n"],
    }[damage]
    rows.write_bytes(b"".join([*broken, lines[2]]))
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip.eval.runner"):
        assert main([*EVALUATE, "--out", str(out)]) == 0
    warnings = [r.getMessage() for r in caplog.records if "rows.jsonl" in r.getMessage()]
    assert warnings == [f"{rows}: 2 line(s) are not records of finished folds (damaged, or cut short by an earlier "
                        "interruption): skipped, their folds are fitted again"], warnings  # fmt: skip
    assert "unexpected error" not in capsys.readouterr().err
    # the damaged lines are dropped from the file, the two folds fitted again (appended), the third reused; the
    # results are the intact run's
    assert rows.read_bytes().startswith(lines[2])
    refitted = [json.loads(line) for line in rows.read_bytes().splitlines()[1:]]
    assert sorted(r["key"] for r in refitted) == sorted([first["key"], second["key"]])
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()


def test_a_row_cut_short_by_an_interruption_is_fitted_again_without_a_warning(tmp_path, caplog):
    """The last row cut short while it was written (no end of line): fitted again, as before, without a warning."""
    pytest.importorskip("h5py")
    out = tmp_path / "ev"
    assert main([*EVALUATE, "--out", str(out)]) == 0
    rows = out / "rows.jsonl"
    data = rows.read_bytes()
    rows.write_bytes(data[: len(data) - 40])
    with caplog.at_level(logging.WARNING, logger="satclip.eval.runner"):
        assert main([*EVALUATE, "--out", str(out)]) == 0
    assert not [r for r in caplog.records if "rows.jsonl" in r.getMessage()]
    assert len(rows.read_bytes().splitlines()) == 3  # (the cut line is dropped, its fold appended again)
