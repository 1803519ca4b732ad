"""Satclip directories of one kind are never replaced by, or taken over as, another kind of output (issue of the
safety audit: ``--overwrite`` deleted an evaluation, a demo, a training run or a feature cache with the user's
files in it)."""

from __future__ import annotations

import json

import pytest

from satclip import safe_output
from satclip.cli import main
from satclip.errors import OutputExistsError

from .test_safe_output import snapshot


def convert(out, *flags) -> int:
    return main(["convert", "bluemarble-l10", str(out), "--target", "native", "--location-only", *flags])


@pytest.mark.parametrize("kind", ["evaluation", "demo", "training-run", "feature-cache"])
def test_overwrite_never_replaces_a_satclip_directory_of_another_kind(tmp_path, capsys, kind):
    """`satclip convert m.ckpt EVAL_DIR --overwrite` deleted the evaluation directory and the user's notes in it."""
    other = safe_output.make_owned_dir(tmp_path / "other", kind=kind)
    (other / "results.csv").write_text("task,score\nelevation,0.9\n")
    (other / "notes.md").write_text("what I make of these results")  # the user's, added later
    before = snapshot(other)
    assert convert(other, "--overwrite") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"satclip: error: {other} is a satclip directory of kind {kind!r}, not 'output'; satclip never "
                   "replaces it with another kind of output, even with --overwrite: choose another output path or "
                   "remove it yourself"), err  # fmt: skip
    assert snapshot(other) == before and safe_output.owned_kind(other) == kind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]  # no temporary left beside it


def test_overwrite_still_replaces_its_own_kind_and_an_older_satclips_directory(tmp_path):
    model = tmp_path / "model"
    assert convert(model) == 0
    first = snapshot(model)
    assert convert(model, "--overwrite") == 0  # a model directory by a model directory
    assert snapshot(model) == first
    older = safe_output.make_owned_dir(tmp_path / "older")
    (older / safe_output.MARKER).write_text(json.dumps({"created_by": "satclip", "version": "0.1"}))  # no kind
    (older / "old.bin").write_bytes(b"x")
    assert convert(older, "--overwrite") == 0  # unknown kind: replaced as before
    assert snapshot(older) == first


def test_the_library_writers_refuse_another_kind_too(tmp_path):
    cache = safe_output.make_owned_dir(tmp_path / "cache", kind="feature-cache")
    (cache / "features.npy").write_bytes(b"features")
    before = snapshot(cache)
    with pytest.raises(OutputExistsError, match="of kind 'feature-cache', not 'output'"):
        with safe_output.atomic_dir(cache, overwrite=True) as tmp:  # (a Blue Marble corpus, a map, a database)
            (tmp / "images.npy").write_bytes(b"images")
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "part-0.parquet").write_bytes(b"rows")
    with pytest.raises(OutputExistsError, match="of kind 'feature-cache', not 'output'"):
        safe_output.publish(finished, cache, overwrite=True)
    assert snapshot(cache) == before
    with safe_output.atomic_dir(cache, overwrite=True, kind="feature-cache") as tmp:  # a new cache of its own kind
        (tmp / "features.npy").write_bytes(b"new")
    assert (cache / "features.npy").read_bytes() == b"new"
