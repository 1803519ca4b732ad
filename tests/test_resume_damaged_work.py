"""A resumed ``satclip embed`` or ``satclip map`` whose work directory (``OUT.partial/``) was damaged since the
run stopped: it used to publish the damage (zeros for a cut-short .npy, NaN rows for a deleted Zarr chunk) and
exit 0. Work that cannot be checked is now refused in one line naming the damaged file and ``--restart`` (exit
1); a chunk missing or cut short in a store that can be checked is embedded again."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from satclip.cli import main

from .conftest import one_error_line
from .test_embed_cli import CHUNK, N, checksum, clean_run_and_target, crash_after, embed, model, points  # noqa: F401
from .test_map import BBOX

RESTART = "pass --restart to discard that run and start again"


def stopped_after_three_chunks(tmp_path, model, points, monkeypatch, name) -> tuple[Path, Path, Path, Path]:  # noqa: F811
    """``(input, the output of a clean run, the output of a run killed after 3 of its 5 chunks, its work dir)``."""
    source, clean, killed = clean_run_and_target(tmp_path, model, points, name)
    with monkeypatch.context() as patch:
        crash_after(patch, 3)
        assert embed(source, "-o", killed, "--model", model, *CHUNK) == 1
    workdir = killed.parent / f"{name}.partial"
    assert json.loads((workdir / "manifest.json").read_text())["done"] == [0, 1, 2]
    return source, clean, killed, workdir


def stopped_before_finishing(tmp_path, model, points, monkeypatch, name) -> tuple[Path, Path, Path, Path]:  # noqa: F811
    """As :func:`stopped_after_three_chunks`, the run killed after all of its chunks, as it assembled the output."""
    from satclip.embed import sinks

    source, clean, killed = clean_run_and_target(tmp_path, model, points, name)
    sink = sinks.SINKS.get(sinks.format_of(killed))

    def crash(self, num_chunks):
        raise RuntimeError("simulated kill")

    with monkeypatch.context() as patch:
        patch.setattr(sink, "finalize", crash)
        assert embed(source, "-o", killed, "--model", model, *CHUNK) == 1
    workdir = killed.parent / f"{name}.partial"
    assert json.loads((workdir / "manifest.json").read_text())["done"] == [0, 1, 2, 3, 4]
    return source, clean, killed, workdir


def refused(capsys, source, model, out) -> str:  # noqa: F811
    """The one error line of resuming the embed into ``out`` (exit 1, nothing published), after the line that
    says what it resumes, if any."""
    capsys.readouterr()
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 1
    assert not out.exists()
    return error_line(capsys.readouterr().err)


def error_line(err: str) -> str:
    """The one ``satclip: error: …`` line of a failed command's stderr, its log lines ('resuming …') left out."""
    return one_error_line("\n".join(line for line in err.splitlines() if line.startswith("satclip")))


def restarted_as_clean(source, model, out, clean) -> None:  # noqa: F811
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--restart") == 0
    assert checksum(out) == checksum(clean)


def resumed_as_clean(monkeypatch, caplog, source, model, out, clean) -> tuple[int, list[str]]:  # noqa: F811
    """Resume the embed into ``out``: exit 0 and the clean run's bytes; returns ``(chunks embedded, warnings)``."""
    from satclip.embed import job

    embedded, real = [], job.embed_lonlat
    caplog.clear()
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, logger="satclip.embed"):
        patch.setattr(job, "embed_lonlat", lambda *a, **k: embedded.append(1) or real(*a, **k))
        assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    assert checksum(out) == checksum(clean)
    return len(embedded), [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def cut(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        file.truncate(size)


def test_a_rerun_with_every_chunk_done_says_so_not_a_rate(tmp_path, model, points, monkeypatch, capsys):  # noqa: F811
    """A run stopped as it wrote its output, rerun, wrote it from the chunks done and said "0 points/s"."""
    source, clean, out, _ = stopped_before_finishing(tmp_path, model, points, monkeypatch, "emb.parquet")
    capsys.readouterr()
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    said = capsys.readouterr().out
    assert "resumed after 5 chunk(s)" in said and "every chunk was embedded before" in said, said
    assert "points/s" not in said


@pytest.mark.parametrize("stop", [stopped_after_three_chunks, stopped_before_finishing])
def test_npy_cut_short_is_refused_not_filled_with_zeros(tmp_path, model, points, monkeypatch, capsys, stop):  # noqa: F811
    """Resumed from an embeddings.npy cut short, the run said 'resuming … 3 of 5 chunks already done', exit 0,
    and published zeros for the rows cut off (NumPy's memory map extends the file)."""
    source, clean, out, workdir = stop(tmp_path, model, points, monkeypatch, "emb.npy")
    work = workdir / "embeddings.npy"
    full = work.stat().st_size
    cut(work, 1000)
    from satclip.embed import job

    embedded, real = [], job.embed_lonlat
    monkeypatch.setattr(job, "embed_lonlat", lambda *a, **k: embedded.append(1) or real(*a, **k))
    line = refused(capsys, source, model, out)
    assert embedded == []  # refused before any chunk is embedded again
    monkeypatch.undo()
    assert line.startswith(f"satclip: error: {work}, the embeddings of an unfinished run, is damaged (1,000 bytes, ")
    assert f"takes {full:,}" in line and line.endswith(RESTART), line
    assert work.stat().st_size == 1000  # not extended
    restarted_as_clean(source, model, out, clean)


def test_npy_replaced_or_deleted_is_refused(tmp_path, model, points, monkeypatch, capsys):  # noqa: F811
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.npy")
    work = workdir / "embeddings.npy"
    np.save(work, np.zeros((N, 8), dtype=np.float64))  # the job's rows, another dtype
    line = refused(capsys, source, model, out)
    assert f"is damaged (it holds a ({N}, 8) float64 array, not the job's ({N}, 8) float32)" in line, line
    work.unlink()
    assert refused(capsys, source, model, out) == (
        f"satclip: error: {work}, the embeddings of an unfinished run, is missing; {RESTART}"
    )
    restarted_as_clean(source, model, out, clean)


@pytest.mark.parametrize("stop", [stopped_after_three_chunks, stopped_before_finishing])
@pytest.mark.parametrize("damage", ["deleted", "cut", "lon deleted"])
def test_zarr_chunk_deleted_or_cut_is_embedded_again(tmp_path, model, points, monkeypatch, caplog, stop, damage):  # noqa: F811
    """A finished chunk deleted from the work store was published as NaN rows (like invalid points, which the
    summary did not count), exit 0; one cut short was published too, and the output then failed when read. Then
    both were refused, asking for --restart; now that chunk alone is embedded again, with a warning naming it."""
    source, clean, out, workdir = stop(tmp_path, model, points, monkeypatch, "emb.zarr")
    store = workdir / "store.zarr"
    key = "lon/1" if damage == "lon deleted" else "embedding/1.0"
    written = (store / key).stat().st_size
    if damage == "cut":
        cut(store / key, 100)
        problem = f"is 100 bytes, not the {written:,} written"
    else:
        (store / key).unlink()
        problem = "is missing"
    embedded, warnings = resumed_as_clean(monkeypatch, caplog, source, model, out, clean)
    assert embedded == (1 if stop is stopped_before_finishing else 3)  # chunk 1 (and 3, 4, never done)
    assert warnings == [f"{store}, the output of an unfinished run: its chunk {key} {problem}; embedding it again"]


@pytest.mark.parametrize("lost", ["embedding/.zarray", "lat/.zarray", ".zgroup"])
def test_zarr_metadata_missing_is_written_again(tmp_path, model, points, monkeypatch, caplog, lost):  # noqa: F811
    """Without embedding/.zarray the run failed with 'unexpected error (KeyError): embedding' (then: refused,
    asking for --restart). The store's metadata is what the run wrote when it began: written again, with a
    warning, and the chunks done are kept."""
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.zarr")
    store = workdir / "store.zarr"
    (store / lost).unlink()
    embedded, warnings = resumed_as_clean(monkeypatch, caplog, source, model, out, clean)
    assert embedded == 2  # chunks 3 and 4, never done
    assert warnings == [f"{store}, the output of an unfinished run: its metadata file {lost} is missing or "
                        "damaged; writing it again"]  # fmt: skip


def test_zarr_chunk_record_missing_is_refused(tmp_path, model, points, monkeypatch, capsys):  # noqa: F811
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.zarr")
    records = sorted(p.name for p in workdir.glob("zarr-chunk-*.json"))
    assert records == [f"zarr-chunk-{k:06d}.json" for k in range(3)]  # one per chunk written
    (workdir / records[2]).unlink()
    line = refused(capsys, source, model, out)
    assert f"cannot be checked (the record of its chunk 2, {workdir / records[2]}, is missing" in line, line
    restarted_as_clean(source, model, out, clean)


def test_zarr_chunk_of_invalid_points_alone_resumes(tmp_path, model, points, monkeypatch):  # noqa: F811
    """zarr stores no chunk of nothing but missing values: a chunk of invalid points only is not damage."""
    points.loc[64:127, "lat"] = 95.0  # chunk 1
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    args = ["--model", model, *CHUNK, "--skip-invalid"]
    (tmp_path / "clean").mkdir()
    clean, out = tmp_path / "clean" / "emb.zarr", tmp_path / "emb.zarr"
    assert embed(source, "-o", clean, *args) == 0
    assert not (clean / "embedding" / "1.0").exists() and (clean / "embedding" / "0.0").is_file()
    with monkeypatch.context() as patch:
        crash_after(patch, 3)
        assert embed(source, "-o", out, *args) == 1
    assert json.loads((tmp_path / "emb.zarr.partial" / "manifest.json").read_text())["done"] == [0, 1, 2]
    assert embed(source, "-o", out, *args) == 0
    assert checksum(out) == checksum(clean)


@pytest.mark.parametrize("stop", [stopped_after_three_chunks, stopped_before_finishing])
def test_parquet_output_missing_is_refused(tmp_path, model, points, monkeypatch, capsys, stop):  # noqa: F811
    """Without OUT.partial/output.parquet the run failed with 'No such file or directory: …', exit 2, no fix."""
    source, clean, out, workdir = stop(tmp_path, model, points, monkeypatch, "emb.parquet")
    work = workdir / "output.parquet"
    work.unlink()
    assert refused(capsys, source, model, out) == (
        f"satclip: error: {work}, the output of an unfinished run, is missing; {RESTART}"
    )
    restarted_as_clean(source, model, out, clean)


def map_argv(model: Path) -> list[str]:  # noqa: F811
    """``satclip map`` of a 15 × 30 grid (2°) of every cell, without its output."""
    pytest.importorskip("zarr")
    return ["map", "--model", str(model), "--resolution", "2", "--bbox", *BBOX, "--all"]


def map_stopped_after_two_blocks(tmp_path: Path, argv: list[str], monkeypatch) -> Path:
    """``tmp_path/field.zarr``, the output of the map ``argv`` stopped by Ctrl-C after 2 of its 4 blocks of 4 grid
    rows (blocks of 4 rows stay set for the test)."""
    from satclip.embed import maps

    monkeypatch.setattr(maps, "default_block_rows", lambda grid: 4)
    real, calls = maps.embed_lonlat, []

    def killed_after_two(encoder, lonlat, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(lonlat))
        return real(encoder, lonlat, **kwargs)

    out = tmp_path / "field.zarr"
    with monkeypatch.context() as patch:
        patch.setattr(maps, "embed_lonlat", killed_after_two)
        assert main([*argv, "-o", str(out)]) != 0
    return out


def map_clean_and_stopped(tmp_path: Path, argv: list[str], monkeypatch) -> tuple[Path, Path]:
    """``(the output of an uninterrupted map argv, the output of the same map stopped after 2 of its 4 blocks)``.
    Both in blocks of 4 grid rows: a map in other blocks embeds its cells in batches of other sizes, whose float32
    sums round otherwise on CPUs without AVX-512 (the same blocks on every run of a map are what makes it resume
    to the uninterrupted map's bytes)."""
    from satclip.embed import maps

    monkeypatch.setattr(maps, "default_block_rows", lambda grid: 4)
    (tmp_path / "clean").mkdir()
    clean = tmp_path / "clean" / "field.zarr"
    assert main([*argv, "-o", str(clean)]) == 0
    return clean, map_stopped_after_two_blocks(tmp_path, argv, monkeypatch)


def assert_same_field(a: Path, b: Path) -> None:
    import zarr

    x, y = (zarr.open_group(str(p), mode="r")["embedding"][:] for p in (a, b))
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("size", [1000, "header"])
def test_map_field_cut_short_is_refused(tmp_path, model, monkeypatch, capsys, size):  # noqa: F811
    """A map resumed from a field.npy cut short said 'resuming …: 30 of 30 grid rows already done', exit 0, and
    wrote an all-zero map."""
    argv = map_argv(model)
    clean, out = map_clean_and_stopped(tmp_path, argv, monkeypatch)
    field = tmp_path / "field.zarr.partial" / "field.npy"
    full = field.stat().st_size
    header = full - 15 * 30 * 8 * 4  # the header: float32 (15 × 30 cells, 8)
    cut(field, header if size == "header" else size)
    capsys.readouterr()
    assert main([*argv, "-o", str(out)]) == 1
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"satclip: error: {field}, the embedding field of an unfinished run, is damaged (")
    assert f"where its (450, 8) float32 array takes {full:,})" in line and line.endswith(RESTART), line
    assert not out.exists() and os.path.getsize(field) < full
    assert main([*argv, "-o", str(out), "--restart"]) == 0
    assert_same_field(out, clean)


@pytest.mark.parametrize("edit", [{"done": "0"}, {"done": [0, 3]}, {"done": [0, 99]}, {"block_rows": "4"},
                                  {"shape": [1, 2, 3]}])  # fmt: skip
def test_map_manifest_with_fields_of_the_wrong_type_is_damaged(tmp_path, model, monkeypatch, capsys, edit):  # noqa: F811
    """A map's work manifest whose done, block_rows or shape was edited or damaged failed with 'unexpected error
    (TypeError)' or resumed on nonsense (a block starting at row 3 of blocks of 4, one past the grid)."""
    argv = map_argv(model)
    out = map_stopped_after_two_blocks(tmp_path, argv, monkeypatch)
    path = tmp_path / "field.zarr.partial" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["done"] == [0, 4]
    path.write_text(json.dumps({**manifest, **edit}))
    capsys.readouterr()
    assert main([*argv, "-o", str(out)]) == 1
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"satclip: error: {path}, the record of an unfinished run, is damaged ({next(iter(edit))} ")
    assert line.endswith("pass --restart to discard that run and start again") and not out.exists(), line
    assert main([*argv, "-o", str(out), "--restart"]) == 0
