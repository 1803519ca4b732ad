"""A resumed ``satclip embed`` or ``satclip map`` whose work directory changed since the run stopped without
changing size: bytes flipped in a chunk already written, or a chunk the manifest lists that was never written.
Sizes alone did not show it, and the damage was published with exit 0. Each chunk's size and CRC-32 are now
recorded when it is written and checked on resume: a changed chunk is embedded again, with a warning naming it
(stop 31 refused it, and --restart embedded everything again); a chunk without its record is refused."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import satclip
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
    resumed_as_clean,
    stopped_after_three_chunks,
)

DIM = 8  # (the test model's embedding size)


def npy_data_offset(path: Path) -> int:
    array = np.load(path, mmap_mode="r")
    offset = array.offset
    del array
    return offset


def test_npy_bytes_flipped_in_a_chunk_written_are_embedded_again(tmp_path, model, points, monkeypatch, caplog):  # noqa: F811
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.npy")
    work = workdir / "embeddings.npy"
    flip_byte(work, npy_data_offset(work) + (64 + 5) * DIM * 4 + 2)  # row 69, in chunk 1
    embedded, warnings = resumed_as_clean(monkeypatch, caplog, source, model, out, clean)
    assert embedded == 3  # chunk 1, and 3 and 4 (never done)
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{work}, the embeddings of an unfinished run: its chunk embeddings.npy[64:128] has changed since it was "
        "written (CRC-32 "
    ), warnings
    assert warnings[0].endswith("); embedding it again"), warnings


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


def test_zarr_bytes_flipped_in_a_chunk_written_are_embedded_again(tmp_path, model, points, monkeypatch, caplog):  # noqa: F811
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.zarr")
    store = workdir / "store.zarr"
    key = "embedding/1.0"
    flip_byte(store / key, (store / key).stat().st_size // 2)
    embedded, warnings = resumed_as_clean(monkeypatch, caplog, source, model, out, clean)
    assert embedded == 3
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{store}, the output of an unfinished run: its chunk {key} has changed since it was written (CRC-32 "
    ), warnings


@pytest.mark.parametrize(("name", "edit"), [
    ("embedding/.zarray", lambda meta: {**meta, "fill_value": 0.0}),  # missing values read as 0
    ("embedding/.zattrs", lambda meta: {**meta, "_ARRAY_DIMENSIONS": ["row", "dim"]}),
    (".zattrs", lambda meta: {key: value for key, value in meta.items() if not key.startswith("satclip")}),
])  # fmt: skip
def test_zarr_metadata_edited_in_the_work_store_is_written_again(tmp_path, model, points, monkeypatch, caplog,  # noqa: F811
                                                                  name, edit):  # fmt: skip
    """The metadata of the unfinished run's store (another fill value, dimension names, the model attributes
    gone) was not checked: the resumed run published it as edited. It is now written again, as the run wrote
    it, with a warning naming it; no chunk is embedded again for it."""
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.zarr")
    store = workdir / "store.zarr"
    meta = json.loads((store / name).read_text())
    assert edit(meta) != meta
    (store / name).write_text(json.dumps(edit(meta)))
    embedded, warnings = resumed_as_clean(monkeypatch, caplog, source, model, out, clean)
    assert embedded == 2  # chunks 3 and 4, never done
    assert warnings == [f"{store}, the output of an unfinished run: its metadata file {name} has changed since it "
                        "was written; writing it again"]  # fmt: skip


def test_a_resume_killed_while_it_checks_the_zarr_metadata_leaves_no_foreign_file(tmp_path, model, points,  # noqa: F811
                                                                                  monkeypatch, caplog):  # fmt: skip
    """A resume killed (SIGKILL) while it compared the store's metadata with a fresh one left that store in a
    ``tempfile`` folder of the work directory, taken from then on for a file of the user's: every later run said
    "refusing to delete … which satclip did not write" and left the work directory behind."""
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.zarr")
    killed_there = f"""
import os, sys
from satclip.embed import sinks
from satclip.cli import main
create = sinks.ZarrSink._create
def create_then_die(self, path):
    create(self, path)
    if path != self._path():  # (the store compared with: killed before it is removed)
        os._exit(9)
sinks.ZarrSink._create = create_then_die
sys.exit(main({["embed", str(source), "-o", str(out), "--model", str(model), *CHUNK, "--no-progress"]!r}))
"""
    src = str(Path(satclip.__file__).parents[1])
    run = subprocess.run([sys.executable, "-c", killed_there], env={**os.environ, "PYTHONPATH": src}, check=False)
    assert run.returncode == 9
    with caplog.at_level(logging.WARNING):
        assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    assert "refusing" not in caplog.text and not workdir.exists(), caplog.text
    assert checksum(out) == checksum(clean)


def test_zarr_records_of_sizes_alone_still_resume(tmp_path, model, points, monkeypatch):  # noqa: F811
    """The chunk records of satclip 2026-12-03 hold sizes alone: such a run resumes, checked by size."""
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.zarr")
    for record in workdir.glob("zarr-chunk-*.json"):
        stored = json.loads(record.read_text())
        record.write_text(json.dumps({key: None if value is None else value[0] for key, value in stored.items()}))
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    assert checksum(out) == checksum(clean)


def test_parquet_bytes_flipped_in_a_row_group_written_are_written_again(tmp_path, model, points, monkeypatch, caplog):  # noqa: F811
    """Row group 1 changed: it and the row groups after it (each is appended after the one before) are written
    again, row group 0 is kept."""
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.parquet")
    work = workdir / "output.parquet"
    start, end = (int.from_bytes((workdir / f"row-group-{k:06d}.footer").read_bytes()[:8], "little") for k in (0, 1))
    flip_byte(work, (start + end) // 2)
    embedded, warnings = resumed_as_clean(monkeypatch, caplog, source, model, out, clean)
    assert embedded == 4  # chunks 1 and 2, and 3 and 4 (never done)
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"{work}, the output of an unfinished run: its chunk output.parquet row group 1 "
                                  "has changed since it was written (CRC-32 "), warnings  # fmt: skip
    assert warnings[1] == f"{work}: writing its row groups [2] again too (each is appended after the one before it)"


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


def test_map_field_block_changed_since_written_is_computed_again(tmp_path, model, monkeypatch, caplog):  # noqa: F811
    """A map resumed from a field.npy with bytes flipped in a block done wrote that block's damage into the map,
    exit 0 (stop 31 refused it); the block is now computed again, with a warning naming it."""
    from satclip.embed import maps

    argv = map_argv(model)
    clean, out = map_clean_and_stopped(tmp_path, argv, monkeypatch)
    workdir = tmp_path / "field.zarr.partial"
    field, path = workdir / "field.npy", workdir / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["done"] == [0, 4] and set(manifest["crc32"]) == {"0", "4"}
    flip_byte(field, npy_data_offset(field) + (4 * 30 + 3) * DIM * 4 + 1)  # grid row 4, column 3: block 4–7
    computed, real = [], maps.embed_lonlat
    caplog.clear()
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, logger="satclip.embed"):
        patch.setattr(maps, "embed_lonlat", lambda *a, **k: computed.append(1) or real(*a, **k))
        assert main([*argv, "-o", str(out)]) == 0
    assert_same_field(out, clean)
    assert len(computed) == 3  # the block of rows 4–7, and the two never computed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{field}, the embedding field of an unfinished run: its block of rows from 4 has changed since it was "
        "written (CRC-32 "
    ), warnings


def test_map_block_listed_done_but_never_computed_is_refused(tmp_path, model, monkeypatch, capsys):  # noqa: F811
    """A manifest listing a block never computed: its zeros were written into the map, exit 0."""
    argv = map_argv(model)
    out = map_stopped_after_two_blocks(tmp_path, argv, monkeypatch)
    path = tmp_path / "field.zarr.partial" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "done": [0, 4, 8]}))
    capsys.readouterr()
    assert main([*argv, "-o", str(out)]) == 1
    line = error_line(capsys.readouterr().err)
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


def test_a_sink_never_assembles_a_chunk_changed_and_not_written_again(tmp_path, model, points, monkeypatch, caplog):  # noqa: F811
    """Whoever drives a sink: finalize refuses while a chunk that changed since it was written is not written
    again (the job writes it again first)."""
    from satclip.embed import sinks
    from satclip.errors import ResumeError

    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.npy")
    work = workdir / "embeddings.npy"
    flip_byte(work, npy_data_offset(work) + (64 + 5) * DIM * 4 + 2)  # chunk 1
    sink = sinks.NpySink(workdir, N, DIM, np.float32, 64, {})
    with pytest.raises(ResumeError, match=r"its chunk\(s\) \[1\] changed since they were written, and were not "):
        sink.finalize(5)
    sink.write(1, None, np.load(clean)[64:128], np.ones(64, dtype=bool))
    assert sink.changed_chunks() == []
