"""Satclip directories of one kind are never replaced by, or taken over as, another kind of output (issue of the
safety audit: ``--overwrite`` deleted an evaluation, a demo, a training run or a feature cache with the user's
files in it)."""

from __future__ import annotations

import json

import pandas as pd
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
    for name in ("config.json", "model.safetensors"):
        (older / name).write_bytes((model / name).read_bytes())
    assert convert(older, "--overwrite") == 0  # unknown kind, a model in it: replaced as before
    assert snapshot(older) == first
    (older / safe_output.MARKER).write_text(json.dumps({"created_by": "satclip", "version": "0.1"}))
    for name in ("config.json", "model.safetensors"):
        (older / name).unlink()
    (older / "old.bin").write_bytes(b"x")  # (an older satclip's other output: its kind unknown, but no model)
    assert convert(older, "--overwrite") == 2
    assert (older / "old.bin").read_bytes() == b"x"


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


def test_a_failed_command_leaves_a_users_empty_directory_the_users(tmp_path, capsys):
    """`mkdir D; satclip evaluate ... --target-col nope --out D` failed but left D marked as an evaluation,
    so that a later `convert ... D --overwrite` deleted the files the user had put there meanwhile."""
    task = tmp_path / "task.csv"
    task.write_text("lon,lat,value\n" + "".join(f"{i - 100},{i / 3 - 30},{i % 7}\n" for i in range(200)))
    mine = tmp_path / "D1"
    mine.mkdir()
    argv = ["evaluate", "--encoders", "direct", "--task-file", str(task), "--target-col", "nope", "--seeds", "1",
            "--probes", "linear", "--no-figures", "--out", str(mine)]  # fmt: skip
    assert main(argv) == 2
    assert "nope" in capsys.readouterr().err
    assert mine.is_dir() and list(mine.iterdir()) == [] and not safe_output.is_owned(mine)
    (mine / "notes.md").write_text("mine")
    assert convert(mine, "--overwrite") == 2  # the user's directory now: never replaced
    assert "did not create" in capsys.readouterr().err
    assert snapshot(mine) == {"notes.md": b"mine"}


def test_the_marker_put_into_a_users_empty_directory_is_taken_back_on_failure(tmp_path):
    """Whatever command marks an empty directory of the user's and then fails (the CLI calls
    remove_created_if_empty): the directory stays, without the marker; one satclip made goes."""
    safe_output.forget_created()
    mine, kept = tmp_path / "mine", tmp_path / "kept"
    mine.mkdir()
    kept.mkdir()
    safe_output.make_owned_dir(mine, kind="evaluation")
    safe_output.make_owned_dir(kept, kind="evaluation")
    (kept / "rows.jsonl").write_text("{}\n")  # satclip's work done before the failure: kept, and kept marked
    made = safe_output.make_owned_dir(tmp_path / "made", kind="demo")
    assert safe_output.is_owned(mine) and safe_output.is_owned(made)
    safe_output.remove_created_if_empty()
    assert mine.is_dir() and list(mine.iterdir()) == []
    assert not made.exists()
    assert safe_output.owned_kind(kept) == "evaluation"
    safe_output.make_owned_dir(mine, kind="evaluation")
    safe_output.forget_created()  # a command that succeeded: its directories stay satclip's
    safe_output.remove_created_if_empty()
    assert safe_output.owned_kind(mine) == "evaluation"


def test_a_directory_with_a_damaged_marker_is_of_the_kind_that_works_in_it_next(tmp_path, capsys):
    """A damaged marker counts as no kind, so any command may work in the directory; after one did (an
    evaluation) it stayed of no kind for good, and a model could then be converted into the evaluation's
    directory. The command that works in it marks it as its own kind again."""
    evaluation = tmp_path / "ev"
    argv = ["evaluate", "--encoders", "wrap", "--tasks", "elevation", "--n-points", "100", "--seeds", "1",
            "--probes", "linear", "--no-figures", "--out", str(evaluation)]  # fmt: skip
    assert main(argv) == 0
    (evaluation / safe_output.MARKER).write_text("{damaged")
    assert main(argv) == 0
    assert safe_output.owned_kind(evaluation) == "evaluation"
    capsys.readouterr()
    assert convert(evaluation, "--overwrite") == 2
    assert "is a satclip directory of kind 'evaluation', not 'output'" in capsys.readouterr().err
    assert (evaluation / "results.csv").is_file()


def test_a_directory_without_a_marker_holding_satclip_outputs_is_named_for_what_it_is(tmp_path):
    """A run's export/ and the folder a feature cache was made in, given as a run's output, were refused as holding
    "files satclip did not create", though all their files were satclip's: refused still, named for what they are."""
    run = safe_output.make_owned_dir(tmp_path / "run", kind="training-run")
    safe_output.make_owned_dir(run / "export" / "last")
    (run / "export" / "last.ckpt").write_bytes(b"a model")
    cache = safe_output.make_owned_dir(tmp_path / "caches" / "c1", kind="feature-cache")
    mine = tmp_path / "mine"
    safe_output.make_owned_dir(mine / "c2", kind="feature-cache")
    (mine / "notes.txt").write_text("mine")
    refused = {}
    for path in (run / "export", cache.parent, mine):
        with pytest.raises(OutputExistsError) as error:
            safe_output.make_owned_dir(path, kind="training-run")
        refused[path] = str(error.value).split("; satclip never writes")[0]
    assert refused == {
        run / "export": f"{run / 'export'} is part of {run}, a satclip training run, not a satclip directory of its "
                        "own (no .satclip-output marker)",
        cache.parent: f"{cache.parent} holds other satclip outputs (c1: a satclip feature cache) but is not a satclip "
                      "directory itself (no .satclip-output marker)",
        mine: f"{mine} holds files satclip did not create (no .satclip-output marker)",
    }
    assert not safe_output.is_owned(run / "export") and not safe_output.is_owned(cache.parent)


def test_overwrite_never_replaces_one_sort_of_output_by_another(tmp_path, capsys):
    """`satclip convert bluemarble-l10 victim --target native; satclip map ... -o victim --format zarr --overwrite`
    deleted the model and wrote a Zarr map there: both directories' markers say kind 'output'. What each holds (its
    config.json's format, a Zarr group) now decides; a map still replaces a map."""
    pytest.importorskip("zarr")
    model = tmp_path / "model"
    assert convert(model) == 0
    before = snapshot(model)
    map_argv = ["map", "--model", "bluemarble-l10", "--resolution", "60", "--format", "zarr", "--overwrite", "-o"]
    assert main([*map_argv, str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"satclip: error: {model} is a satclip model, not a Zarr map; "
                   "satclip never replaces it with one, even with --overwrite: choose another output path or remove "
                   "it yourself"), err  # fmt: skip
    assert snapshot(model) == before
    zarr_map = tmp_path / "map.zarr"
    assert main([*map_argv, str(zarr_map)]) == 0
    assert main([*map_argv, str(zarr_map)]) == 0  # a map by a map
    assert safe_output.held_format(zarr_map) == safe_output.ZARR_MAP
    maps = snapshot(zarr_map)
    for writes in ("satclip", "satclip.retrieval-db"):  # (convert refuses it before, by its contents)
        with pytest.raises(OutputExistsError, match=f"{zarr_map} is a satclip Zarr map, not a "):
            with safe_output.atomic_dir(zarr_map, overwrite=True, writes=writes):
                pass
    finished = safe_output.make_owned_dir(tmp_path / "finished")
    (finished / "config.json").write_text(json.dumps({"format": "satclip"}))
    with pytest.raises(OutputExistsError, match="is a satclip Zarr map"):  # publishing says it, after the work
        safe_output.publish(finished, zarr_map, overwrite=True)
    assert snapshot(zarr_map) == maps
    older = safe_output.make_owned_dir(tmp_path / "older")  # an output whose contents say nothing: as before
    (older / "data.bin").write_bytes(b"rows")
    safe_output.check_output(older, overwrite=True, directory=True, kind="output", writes=safe_output.ZARR_MAP)
    dataset = safe_output.make_owned_dir(tmp_path / "dataset")  # the Dask engine's embeddings: no map's to replace
    (dataset / "part-0.parquet").write_bytes(b"rows")
    with pytest.raises(OutputExistsError, match="is a satclip Parquet dataset"):
        safe_output.check_output(dataset, overwrite=True, directory=True, kind="output", writes=safe_output.ZARR_MAP)


def test_embed_overwrite_never_replaces_a_model(tmp_path, capsys):
    """`satclip embed -o MODEL_DIR --overwrite` (a Zarr store, or with the Dask engine a Parquet dataset) is refused
    before the model loads, by what the directory holds; the model stays as it was."""
    pytest.importorskip("zarr")
    model = tmp_path / "model.zarr"
    assert convert(model) == 0
    before = snapshot(model)
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n10,20\n")
    assert main(["embed", str(points), "-o", str(model), "--overwrite", "--model", "bluemarble-l10"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"satclip: error: {model} is a satclip model, not a Zarr embedding store")
    dataset = tmp_path / "model.parquet"
    assert convert(dataset) == 0
    parquet = tmp_path / "points.parquet"
    pd.DataFrame({"lon": [10.0], "lat": [20.0]}).to_parquet(parquet)
    argv = ["embed", str(parquet), "-o", str(dataset), "--overwrite", "--model", "bluemarble-l10", "--engine", "dask"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"satclip: error: {dataset} is a satclip model, not a Parquet dataset")
    assert snapshot(model) == before


def test_a_map_and_an_embedding_store_never_replace_each_other(tmp_path, capsys):
    """Both are Zarr groups: `satclip map -o STORE.zarr --format zarr --overwrite` replaced the embeddings of a
    `satclip embed` run (hours of work on a national grid), and an embed the map. Their attributes tell them apart."""
    pytest.importorskip("zarr")
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n10,20\n")
    store, zarr_map = tmp_path / "store.zarr", tmp_path / "map.zarr"
    model = ["--model", "bluemarble-l10", "--precision", "float32"]
    assert main(["embed", str(points), "-o", str(store), *model]) == 0
    assert main(["map", "--resolution", "60", "-o", str(zarr_map), *model]) == 0
    held = [safe_output.held_format(p) for p in (store, zarr_map)]
    assert held == [safe_output.ZARR_EMBEDDINGS, safe_output.ZARR_MAP]
    kept = snapshot(store), snapshot(zarr_map)
    capsys.readouterr()
    assert main(["map", "--resolution", "60", "-o", str(store), "--overwrite", *model]) == 2
    assert f"{store} is a satclip Zarr embedding store, not a Zarr map" in capsys.readouterr().err
    assert main(["embed", str(points), "-o", str(zarr_map), "--overwrite", *model]) == 2
    assert f"{zarr_map} is a satclip Zarr map, not a Zarr embedding store" in capsys.readouterr().err
    assert (snapshot(store), snapshot(zarr_map)) == kept
    assert main(["embed", str(points), "-o", str(store), "--overwrite", *model]) == 0  # each replaces its own sort
    assert main(["map", "--resolution", "60", "-o", str(zarr_map), "--overwrite", *model]) == 0
