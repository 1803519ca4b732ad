"""A resumed ``satclip embed`` or ``satclip map`` whose work directory changed since the run stopped without
changing size: bytes flipped in a chunk already written, or a chunk the manifest lists that was never written.
Sizes alone did not show it, and the damage was published with exit 0; each chunk's size and CRC-32 are now
recorded when it is written and checked on resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from satclip.cli import main

from .conftest import flip_byte
from .test_embed_cli import CHUNK, N, checksum, crash_after, embed, model, points  # noqa: F401
from .test_resume_damaged_work import (
    RESTART,
    assert_same_field,
    error_line,
    map_argv,
    map_clean_and_stopped,
    map_stopped_after_two_blocks,
    refused,
    restarted_as_clean,
    stopped_after_three_chunks,
)

DIM = 8  # (the test model's embedding size)


def npy_data_offset(path: Path) -> int:
    array = np.load(path, mmap_mode="r")
    offset = array.offset
    del array
    return offset


def test_npy_bytes_flipped_in_a_chunk_written_are_refused(tmp_path, model, points, monkeypatch, capsys):  # noqa: F811
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.npy")
    work = workdir / "embeddings.npy"
    flip_byte(work, npy_data_offset(work) + (64 + 5) * DIM * 4 + 2)  # row 69, in chunk 1
    line = refused(capsys, source, model, out)
    assert line.startswith(f"satclip: error: {work}, the embeddings of an unfinished run, is damaged (its chunk "
                           "embeddings.npy[64:128] has changed since it was written (CRC-32 "), line  # fmt: skip
    assert line.endswith(RESTART), line
    restarted_as_clean(source, model, out, clean)


def test_npy_chunk_listed_done_but_never_written_is_refused(tmp_path, model, points, monkeypatch, capsys):  # noqa: F811
    """A manifest listing chunk 3, which the run never wrote: its rows were published as zeros."""
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.npy")
    path = workdir / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "done": [0, 1, 2, 3]}))
    line = refused(capsys, source, model, out)
    record = workdir / "npy-chunk-000003.json"
    assert line == (f"satclip: error: {workdir / 'embeddings.npy'}, the embeddings of an unfinished run, cannot be "
                    f"checked (the record of its chunk 3, {record}, is missing or damaged); {RESTART}")  # fmt: skip
    restarted_as_clean(source, model, out, clean)


def test_zarr_bytes_flipped_in_a_chunk_written_are_refused(tmp_path, model, points, monkeypatch, capsys):  # noqa: F811
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.zarr")
    store = workdir / "store.zarr"
    key = "embedding/1.0"
    flip_byte(store / key, (store / key).stat().st_size // 2)
    line = refused(capsys, source, model, out)
    assert line.startswith(f"satclip: error: {store}, the output of an unfinished run, is damaged (its chunk {key} "
                           "has changed since it was written (CRC-32 "), line  # fmt: skip
    restarted_as_clean(source, model, out, clean)


def test_zarr_records_of_sizes_alone_still_resume(tmp_path, model, points, monkeypatch):  # noqa: F811
    """The chunk records of satclip 2026-12-03 hold sizes alone: such a run resumes, checked by size."""
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.zarr")
    for record in workdir.glob("zarr-chunk-*.json"):
        stored = json.loads(record.read_text())
        record.write_text(json.dumps({key: None if value is None else value[0] for key, value in stored.items()}))
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    assert checksum(out) == checksum(clean)


def test_parquet_bytes_flipped_in_a_row_group_written_are_refused(tmp_path, model, points, monkeypatch, capsys):  # noqa: F811
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.parquet")
    work = workdir / "output.parquet"
    start, end = (int.from_bytes((workdir / f"row-group-{k:06d}.footer").read_bytes()[:8], "little") for k in (0, 1))
    flip_byte(work, (start + end) // 2)
    line = refused(capsys, source, model, out)
    assert line.startswith(f"satclip: error: {work}, the output of an unfinished run, is damaged (its chunk "
                           "output.parquet row group 1 has changed since it was written (CRC-32 "), line  # fmt: skip
    restarted_as_clean(source, model, out, clean)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_a_run_of_an_older_satclip_without_chunk_records_resumes(tmp_path, model, points, monkeypatch, fmt):  # noqa: F811
    """A work directory of a satclip before chunk records (no records, no ``chunk_records`` in its manifest) is
    resumed as before, not refused."""
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, f"emb.{fmt}")
    for record in workdir.glob(f"{fmt}-chunk-*.json"):
        record.unlink()
    path = workdir / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["chunk_records"]
    path.write_text(json.dumps(manifest))
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    assert checksum(out) == checksum(clean)


@pytest.mark.parametrize("damage", ["flipped", "listed done"])
def test_map_field_changed_since_written_is_refused(tmp_path, model, monkeypatch, capsys, damage):  # noqa: F811
    """A map resumed from a field.npy with bytes flipped in a block done, or whose manifest lists a block never
    computed, wrote that block's damage (or zeros) into the map, exit 0."""
    argv = map_argv(model)
    out = map_stopped_after_two_blocks(tmp_path, argv, monkeypatch)
    workdir = tmp_path / "field.zarr.partial"
    field, path = workdir / "field.npy", workdir / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["done"] == [0, 4] and set(manifest["crc32"]) == {"0", "4"}
    if damage == "flipped":
        flip_byte(field, npy_data_offset(field) + (4 * 30 + 3) * DIM * 4 + 1)  # grid row 4, column 3: block 4–7
    else:
        path.write_text(json.dumps({**manifest, "done": [0, 4, 8]}))
    capsys.readouterr()
    assert main([*argv, "-o", str(out)]) == 1
    line = error_line(capsys.readouterr().err)
    if damage == "flipped":
        assert line.startswith(f"satclip: error: {field}, the embedding field of an unfinished run, is damaged (its "
                               "block of rows from 4 has changed since it was written: CRC-32 "), line  # fmt: skip
    else:
        assert line.startswith(f"satclip: error: {path}, the record of an unfinished run, is damaged (crc32 "), line
    assert line.endswith(RESTART) and not out.exists(), line
    assert main([*argv, "-o", str(out), "--restart"]) == 0


def test_map_of_an_older_satclip_without_crc32_resumes(tmp_path, model, monkeypatch):  # noqa: F811
    argv = map_argv(model)
    clean, out = map_clean_and_stopped(tmp_path, argv, monkeypatch)
    path = tmp_path / "field.zarr.partial" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["crc32"]
    path.write_text(json.dumps(manifest))
    assert main([*argv, "-o", str(out)]) == 0
    assert_same_field(out, clean)
