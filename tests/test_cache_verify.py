"""``satclip cache verify`` against caches changed or checked the wrong way: features altered within the old
fixed tolerance (1e-2, when features are ~3e-3), a running maximum reported as each image's difference, a
manifest with entries of the wrong type ("unexpected error (KeyError)"), a cache checked while a build writes
it ("interrupted", "not a feature cache"), a config without data.root (called ok whatever it said), a directory
of another satclip format (exit 1, not 2), and a user's directory holding a copied cache adopted by a build."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from satclip import safe_output
from satclip.cli import main
from satclip.errors import OutputExistsError
from satclip.train import dump_config, from_dict
from satclip.train.cache import build_cache, verify_cache

from .conftest import S2_EXAMPLES, one_error_line, require
from .train_helpers import tiny_encoder, tiny_source

REBUILD = ("rebuild the cache with `satclip cache build --config CONFIG` (it rebuilds a damaged cache of its own) or "
           "`--rebuild`")


@pytest.fixture
def built(tmp_path):
    encoder, source = tiny_encoder(), tiny_source(10)
    cache = build_cache(tmp_path / "c", encoder, source, views=2, dtype="float16")
    return encoder, source, cache


def recomputed(built):
    encoder, source, cache = built
    return verify_cache(cache.path, encoder=encoder, source=source, recompute=len(cache))


def changed(cache, change) -> None:
    features = np.load(cache.path / "features.npy")
    change(features)
    np.save(cache.path / "features.npy", features)


def test_an_untouched_float16_cache_passes_with_the_storage_rounding(built):
    report = recomputed(built)
    assert report.ok, report.problems
    assert 0 < report.max_abs_diff  # (float16 storage: not zero, and within its rounding)


@pytest.mark.parametrize("change", ["every value moved by 0.009", "two images swapped", "views swapped"])
def test_features_changed_within_the_old_absolute_tolerance_are_found(built, change):
    encoder, source, cache = built
    if change == "every value moved by 0.009":  # (within the old atol=1e-2: real features are ~3e-3)
        changed(cache, lambda f: f.__iadd__(np.float16(0.009)))
    elif change == "two images swapped":
        changed(cache, lambda f: f.__setitem__([3, 8], f[[8, 3]]))
    else:
        changed(cache, lambda f: f.__setitem__(slice(None), f[:, ::-1].copy()))
    report = recomputed(built)
    assert not report.ok
    flagged = {int(p.split(":")[0].split()[1]) for p in report.problems if p.startswith("image ")}
    assert flagged == ({3, 8} if change == "two images swapped" else set(range(10))), report.problems


def test_each_image_is_reported_with_its_own_difference(built):
    """The message gave the running maximum over the images checked so far, and a NaN hid behind max(); then it
    set an image's largest difference against the largest allowance anywhere ("max |diff| 1.62e-05, more than the
    5.13e-05 …"): it names the feature that differs beyond its own allowance."""
    encoder, source, cache = built
    before = np.load(cache.path / "features.npy").astype(np.float32)
    changed(cache, lambda f: f.__setitem__(slice(None), (f * 2).astype(f.dtype)))
    report = recomputed(built)
    assert report.problems[0] == "features.npy: its bytes are not the ones it was built with (features_sha256 " \
                                 f"differs): changed since: {REBUILD}"  # fmt: skip
    assert len(report.problems) == 11
    for problem in report.problems[1:]:
        index = int(problem.split(":")[0].split()[1])
        own = float(np.abs(before[index]).max())  # (doubled: the difference is the value itself, near enough)
        shown, allowed = (float(problem.split(marker)[1].split(",")[0].split()[0])
                          for marker in ("|diff| ", "than the "))  # fmt: skip
        assert shown == pytest.approx(own, rel=5e-3), problem  # (printed to 3 digits)
        assert shown > allowed, problem
    changed(cache, lambda f: f.__setitem__((9, 0, 0), np.nan))
    report = recomputed(built)
    assert np.isnan(report.max_abs_diff)
    assert any(p.startswith("image 9: recomputed features differ (view 0, feature 0: |diff| nan") for p in
               report.problems)  # fmt: skip
    one = np.load(cache.path / "features.npy")
    one[:] = before.astype(one.dtype)
    one[4, 1, 3] += np.float16(0.5)  # one feature of one view: named, its difference above its allowance
    np.save(cache.path / "features.npy", one)
    report = recomputed(built)
    assert [p.split(" (")[0] for p in report.problems[1:]] == ["image 4: recomputed features differ"]
    assert "(view 1, feature 3: |diff| 0.5" in report.problems[1], report.problems


def test_a_cache_whose_build_stopped_before_its_manifest_is_said_to_be_incomplete(tmp_path, capsys):
    """A directory `cache build` made and was killed in before writing its manifest was "not a feature cache"
    (exit 2); it is an interrupted build, to be finished by `cache build` (one an older satclip left under the
    cache's own name is named so too)."""
    directory = tmp_path / "c"
    safe_output.make_owned_dir(directory, kind="feature-cache")
    assert main(["cache", "verify", str(directory)]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: feature cache {directory} is incomplete (its build was interrupted): run `satclip cache "
        "build` again with the same config to finish it"
    )


def _interrupted_build(tmp_path):
    """``(cache, root)``: the build of a small Blue Marble cache at ``cache`` (config ``tmp_path/c.yaml``) stopped
    after its first chunk."""
    from satclip.train.prepare import cache_from_config

    from .train_helpers import bluemarble_run

    config = bluemarble_run(tmp_path)
    dump_config(from_dict(config), tmp_path / "c.yaml")

    def stop(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache_from_config(from_dict(config), progress=stop)
    cache = tmp_path / "cache"
    assert not cache.exists() and (tmp_path / "cache.partial").is_dir()
    return cache, config["data"]["root"]


def test_verify_and_train_say_the_same_of_an_interrupted_build(tmp_path, capsys):
    """An interrupted build was "incomplete: interrupted before it wrote its manifest" to `cache verify` (exit 1)
    and "not a feature cache (no manifest.json)" to `train --data.root null` (exit 2), and `verify --config` named
    no config in "run `satclip cache build` to finish it". Now both name the build that finishes it."""
    cache, root = _interrupted_build(tmp_path)
    args = ["--config", str(tmp_path / "c.yaml"), "--data.root", "null"]
    expected = (f"satclip: error: feature cache {cache} is incomplete (its build was interrupted): run `satclip cache "
                f"build --config {tmp_path / 'c.yaml'} --data.root {root}` to finish it")  # fmt: skip
    for argv in (["cache", "verify", *args], ["train", *args]):
        assert main(argv) == 1, argv
        assert one_error_line(capsys.readouterr().err) == expected, argv
    assert main(["cache", "verify", "--config", str(tmp_path / "c.yaml")]) == 1
    assert f"run `satclip cache build --config {tmp_path / 'c.yaml'}` to finish it" in capsys.readouterr().err
    assert not cache.exists()


def test_train_and_retrieval_build_say_a_build_still_running_is_being_built(tmp_path, capsys):
    """`satclip train` (and `retrieval build --cache`) of a cache whose build is still running said it "was
    interrupted", where `cache verify` said it is being built now: a user told so might delete its work under it."""
    cache, _ = _interrupted_build(tmp_path)
    train = ["train", "--config", str(tmp_path / "c.yaml"), "--data.root", "null"]
    retrieval = ["retrieval", "build", "--model", "bluemarble-l10", "-o", str(tmp_path / "db"), "--cache", str(cache)]
    with safe_output.exclusive(cache):  # (the build holds the cache's lock while it runs)
        for argv in (["cache", "verify", str(cache)], train, retrieval):
            assert main(argv) == 1, argv
            assert one_error_line(capsys.readouterr().err).startswith(
                f"satclip: error: feature cache {cache} is being built now (PID "
            ), argv
    assert main(train) == 1  # (once it has stopped: interrupted, as ever)
    assert "is incomplete (its build was interrupted)" in capsys.readouterr().err
    assert (tmp_path / "cache.partial").is_dir() and not (tmp_path / "db").exists()


def test_an_interrupted_build_is_named_with_the_build_command_of_its_settings(tmp_path, capsys):
    """`cache verify CACHE` of an interrupted build said "run `satclip cache build` again with the same config",
    naming no command though the build records its key and images; `train` named one carrying its own options
    (`--trainer.output_dir`, `--optim.lr`), which mean nothing to `cache build`."""
    cache, root = _interrupted_build(tmp_path)
    assert main(["cache", "verify", str(cache)]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: feature cache {cache} is incomplete (its build was interrupted): run `satclip cache build "
        f"--config CONFIG --data.cache {cache} --data.root {root} --data.cache_views 2 --data.cache_dtype float16 "
        "--model.image_encoder.name mosaiks` (CONFIG: the config it was started with) to finish it"
    )
    config = str(tmp_path / "c.yaml")
    train = ["train", "--config", config, "--data.root", "null", "--trainer.output_dir", str(tmp_path / "x1"),
             "--optim.lr", "0.01", "--set", "trainer.max_epochs=3", "--set", "model.image_encoder.num_filters=4"]
    assert main(train) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: feature cache {cache} is incomplete (its build was interrupted): run `satclip cache build "
        f"--config {config} --data.root {root} --set model.image_encoder.num_filters=4` to finish it"
    )


def test_a_cache_without_recorded_checksums_is_not_called_plainly_ok(built, capsys):
    """A cache of an older satclip records no checksums: a changed byte of its features was reported "ok"."""
    _, _, cache = built
    manifest = json.loads((cache.path / "manifest.json").read_text())
    for entry in ("format_version", "features_sha256", "lonlat_sha256"):
        del manifest[entry]
    (cache.path / "manifest.json").write_text(json.dumps(manifest))
    changed(cache, lambda f: f.__setitem__((3, 1, 2), f[3, 1, 2] + np.float16(0.001)))
    report = verify_cache(cache.path)
    assert report.ok and report.notes == [
        "no checksum is recorded for features.npy or lonlat.npy (a cache of an older satclip), so their contents were "
        "not checked: `--recompute K` with its config compares K images with the backbone, and `satclip cache build "
        "--config CONFIG --rebuild` records the checksums"
    ]
    assert main(["cache", "verify", str(cache.path)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [f"  note: {report.notes[0]}"]
    assert main(["cache", "verify", str(cache.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == report.notes


@pytest.mark.parametrize("edit", [
    ("key", None), ("key.dtype", None), ("format_version", "2"), ("key.seed", None), ("skipped", [100]),
    ("shape", "abc"), ("complete", "false"),
])  # fmt: skip
def test_a_manifest_with_an_entry_of_the_wrong_type_is_reported_damaged(built, capsys, edit):
    encoder, source, cache = built
    name, value = edit
    manifest = json.loads((cache.path / "manifest.json").read_text())
    where, _, entry = name.rpartition(".")
    holder = manifest[where] if where else manifest
    if value is None:
        del holder[entry]
    else:
        holder[entry] = value
    (cache.path / "manifest.json").write_text(json.dumps(manifest))
    report = verify_cache(cache.path, encoder=encoder, source=source, recompute=3)
    assert report.problems == [report.problems[0]] and f"manifest.json is damaged ({name} " in report.problems[0]
    capsys.readouterr()
    assert main(["cache", "verify", str(cache.path)]) == 1
    out = capsys.readouterr()
    assert out.err == "" and f"manifest.json is damaged ({name} " in out.out
    build_cache(cache.path, encoder, source, views=2, dtype="float16")  # (its own damaged cache: rebuilt)
    assert verify_cache(cache.path).ok


def test_a_cache_being_built_is_said_to_be_so(built, capsys):
    """A cache checked while `cache build` wrote it was 'incomplete: the build was interrupted', or, before its
    manifest, 'not a feature cache' (exit 2)."""
    _, _, cache = built
    with safe_output.exclusive(cache.path):
        assert not verify_cache(cache.path).ok
        assert "is being built now (PID" in verify_cache(cache.path).problems[0]
        capsys.readouterr()
        assert main(["cache", "verify", str(cache.path)]) == 1
        assert one_error_line(capsys.readouterr().err).startswith(
            f"satclip: error: feature cache {cache.path} is being built now (PID "
        )
    assert verify_cache(cache.path).ok


def test_a_config_without_data_root_is_compared_as_training_compares_it(built, tmp_path, capsys):
    """`cache verify --config` with no data.root said ok whatever views, dtype or image encoder it named;
    `satclip train` with that config refused the cache."""
    _, _, cache = built
    config = {"model": {"image_encoder": {"name": "mosaiks", "in_chans": 3, "num_filters": 8, "kernel_size": 3}},
              "data": {"cache": str(cache.path), "cache_views": 2, "cache_dtype": "float16"}}  # fmt: skip
    path = tmp_path / "c.yaml"
    for data, model, problem in [
        ({}, {}, None),
        ({"cache_views": 7}, {}, "stale: views differs from the config (the cache's 2, the config's 7): rebuild it "
                                 f"with `satclip cache build --config {path} --data.root ROOT`"),
        ({"cache_dtype": "float32"}, {}, "stale: dtype differs from the config (the cache's \"float16\", the "
                                         "config's \"float32\")"),
        ({"cache_views": 7, "cache_dtype": "float32"}, {}, "stale: dtype and views differ from the config (dtype: the "
         "cache's \"float16\", the config's \"float32\"; views: the cache's 2, the config's 7)"),
        ({}, {"num_filters": 4}, "stale: model.image_encoder does not match the feature cache"),
    ]:
        given = {"model": {"image_encoder": {**config["model"]["image_encoder"], **model}},
                 "data": {**config["data"], **data}}  # fmt: skip
        dump_config(from_dict(given), path)
        capsys.readouterr()
        assert main(["cache", "verify", "--config", str(path)]) == (0 if problem is None else 1)
        out = capsys.readouterr().out
        assert (problem is None and ": ok," in out) or (problem is not None and problem in out), out


def test_a_directory_of_another_satclip_format_is_bad_input(tmp_path, capsys):
    other = tmp_path / "db"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"format": "satclip.retrieval-db"}))
    assert main(["cache", "verify", str(other)]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {other} holds a satclip retrieval database, not a feature cache: give the directory "
        "`satclip cache build` wrote (data.cache)"
    )  # (the format's noun: "a satclip satclip.bluemarble" was said of a corpus)
    (other / "manifest.json").write_text(json.dumps({"format": "other"}))  # (it said "holds a other")
    assert main(["cache", "verify", str(other)]) == 2
    assert "holds a manifest of format 'other', not a feature cache" in capsys.readouterr().err


def test_a_users_directory_holding_a_copied_cache_is_not_adopted(built, tmp_path):
    """A directory of the user's (no marker) with a cache copied into it among their own files was marked as
    satclip's by a build (and its stale cache rebuilt there)."""
    encoder, source, cache = built
    mine = tmp_path / "mine"
    shutil.copytree(cache.path, mine)
    (mine / safe_output.MARKER).unlink()
    (mine / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    with pytest.raises(OutputExistsError, match="holds files satclip did not create"):
        build_cache(mine, encoder, source, views=3, dtype="float16")
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    (mine / "notes.txt").unlink()  # a cache of an older satclip (no marker) alone: adopted, as before
    build_cache(mine, encoder, source, views=3, dtype="float16")
    assert safe_output.owned_kind(mine) == "feature-cache"


def test_verify_names_the_fix_of_a_manifest_shape_or_of_files_changed_since(built, capsys):
    """A manifest whose shape was edited, and features.npy or lonlat.npy whose bytes changed since the build, were
    reported with no fix; the fix is said once however many files changed."""
    _, _, cache = built
    manifest = json.loads((cache.path / "manifest.json").read_text())
    (cache.path / "manifest.json").write_text(json.dumps({**manifest, "shape": [10, 2, 8]}))
    assert verify_cache(cache.path).problems == [
        f"features.npy is (10, 2, 16) float16, the manifest says (10, 2, 8) float16: {REBUILD}"
    ]
    (cache.path / "manifest.json").write_text(json.dumps(manifest))
    changed(cache, lambda f: f.__setitem__((0, 0, 0), f[0, 0, 0] + np.float16(1)))
    lonlat = np.load(cache.path / "lonlat.npy")
    np.save(cache.path / "lonlat.npy", lonlat + 0.5)
    assert verify_cache(cache.path).problems == [
        "features.npy: its bytes are not the ones it was built with (features_sha256 differs): changed since; "
        f"lonlat.npy: its bytes are not the ones it was built with (lonlat_sha256 differs): changed since: {REBUILD}"
    ]


def test_a_stale_cache_is_told_the_values_and_the_build_of_the_config_given(built, tmp_path, capsys):
    """`cache verify DIR --config C --data.cache_views 4` of a 2-view cache said "stale: views differ from the
    config": neither value, nor the fix (the build of that config, its overrides and DIR)."""
    _, _, cache = built
    path = tmp_path / "my config.yaml"
    dump_config(from_dict({"model": {"image_encoder": {"name": "mosaiks", "in_chans": 3, "num_filters": 8,
                                                       "kernel_size": 3}},
                           "data": {"cache_views": 2, "cache_dtype": "float16"}}), path)  # fmt: skip
    assert main(["cache", "verify", str(cache.path), "--config", str(path), "--data.cache_views", "4"]) == 1
    assert (f"  - stale: views differs from the config (the cache's 2, the config's 4): rebuild it with `satclip cache "
            f"build --config '{path}' --data.cache_views 4 --data.root ROOT --data.cache {cache.path}`"
            ) in capsys.readouterr().out


def test_the_build_suggested_without_a_data_root_asks_for_one(built, tmp_path, capsys):
    """`cache verify C --config smoke.yaml --data.root null` said "rebuild it with `satclip cache build --config
    smoke.yaml --data.root null`", which refused to run: a build needs data.root."""
    _, _, cache = built
    path = tmp_path / "smoke.yaml"
    dump_config(from_dict({"model": {"image_encoder": {"name": "mosaiks", "in_chans": 3, "num_filters": 8,
                                                       "kernel_size": 3}},
                           "data": {"root": str(tmp_path), "cache_views": 4}}), path)  # fmt: skip
    for given in (["--data.root", "null"], ["--set", "data.root=null"]):
        capsys.readouterr()
        assert main(["cache", "verify", str(cache.path), "--config", str(path), *given]) == 1
        assert (f"rebuild it with `satclip cache build --config {path} --data.root ROOT --data.cache {cache.path}`"
                in capsys.readouterr().out)


def test_a_cache_is_never_built_inside_another_satclip_output(built, tmp_path, capsys):
    """`cache build --data.cache C1/nested` built a cache inside the cache C1 (which then held files satclip did
    not write there)."""
    _, _, cache = built
    root = tmp_path / "s2"
    shutil.copytree(require(S2_EXAMPLES), root)
    nested = cache.path / "nested"
    options = ["--data.root", str(root), "--data.dataset", "s2100k", "--model.image_encoder.name", "mosaiks",
               "--set", "model.image_encoder.in_chans=13", "--set", "model.image_encoder.num_filters=4",
               "--data.cache", str(nested), "--data.cache_views", "1"]  # fmt: skip
    assert main(["cache", "build", *options]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {nested} is inside {cache.path}, a satclip feature cache: satclip writes no other output "
        "into it; choose a path outside it"
    )
    assert not nested.exists() and verify_cache(cache.path).ok


def _small_mosaiks_cache_options(tmp_path):
    """``(root, cache, options)``: a copy of the S2 examples at ``root`` and the `cache build`/`cache verify` options
    of a one-view MOSAIKS (4 filters) cache of them at ``cache``."""
    root = tmp_path / "s2"
    shutil.copytree(require(S2_EXAMPLES), root)
    cache = tmp_path / "cache"
    options = ["--data.root", str(root), "--data.dataset", "s2100k", "--model.image_encoder.name", "mosaiks",
               "--set", "model.image_encoder.in_chans=13", "--set", "model.image_encoder.num_filters=4",
               "--data.cache", str(cache), "--data.cache_views", "1"]  # fmt: skip
    return root, cache, options


def test_a_cache_of_a_newer_satclip_is_refused_alike_by_verify_and_build(tmp_path, capsys):
    """A manifest of format_version 99 exited 1 from `cache verify` (reported as a failed cache, which a script
    would rebuild) and 2 from `cache build`: both refuse it as a file this satclip cannot use, exit 2."""
    root, cache, options = _small_mosaiks_cache_options(tmp_path)
    assert main(["cache", "build", *options]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    said = f"satclip: error: {cache} has cache format_version 99; this satclip reads up to 1: upgrade satclip"
    for command in (["cache", "verify", str(cache)], ["cache", "verify", *options], ["cache", "build", *options]):
        capsys.readouterr()
        assert main(command) == 2, command
        assert capsys.readouterr().err.strip().splitlines()[-1] == said  # (after "fitting mosaiks …" with data.root)
    assert json.loads((cache / "manifest.json").read_text())["format_version"] == 99  # (never rebuilt)


def stop_after_one_chunk(done: int, total: int) -> None:
    if done:
        raise KeyboardInterrupt


def test_an_unfinished_build_of_other_settings_is_not_said_to_be_finished_by_the_config(tmp_path, capsys, caplog):
    """verify and train named `cache build` of the config given as the command that finishes an unfinished build of
    another backbone (it discarded that build), and beside a complete cache said that build's config finishes it,
    while the config's own build called the cache up to date and left the other build's disk space taken, silently."""
    from satclip.train.cache import InterruptedCacheError, cache_key

    path, work = tmp_path / "c", tmp_path / "c.partial"
    with pytest.raises(KeyboardInterrupt):
        build_cache(path, tiny_encoder(seed=1), tiny_source(10), views=2, chunk_size=3, progress=stop_after_one_chunk)
    key = cache_key(tiny_encoder(), tiny_source(10).skipping_unreadable(), views=2, dtype="float16", seed=0)
    other = f"{work} holds an unfinished build of other settings (backbone_sha256 differ)"
    assert other in verify_cache(path, expected_key=key).problems[0]
    message = str(InterruptedCacheError(path, "satclip cache build --config c.yaml", {"views": 3, "dtype": "float16"}))
    assert message == (f"feature cache {path} is not there: {work} holds an unfinished build of other settings (views "
                       f"differ): `satclip cache build` with those settings finishes it, or delete {work}")
    assert "to finish it" in str(InterruptedCacheError(path, "satclip cache build", {"views": 2, "dtype": "float16"}))
    build_cache(path, tiny_encoder(), tiny_source(10), views=2, chunk_size=3)  # (of other settings: starts again)
    with pytest.raises(KeyboardInterrupt):
        build_cache(path, tiny_encoder(seed=1), tiny_source(10), views=2, chunk_size=3, progress=stop_after_one_chunk)
    assert any(other in note for note in verify_cache(path, expected_key=key).notes)
    caplog.clear()
    build_cache(path, tiny_encoder(), tiny_source(10), views=2, chunk_size=3)
    assert [r.getMessage() for r in caplog.records if other in r.getMessage()] and work.is_dir()


def test_a_work_directory_left_holding_only_its_marker_is_no_unfinished_build(built):
    """A build killed after publishing the cache, before removing CACHE.partial/, left only its marker there: verify
    noted "an unfinished build … is kept" that does not exist."""
    _, _, cache = built
    safe_output.make_owned_dir(cache.path.with_name("c.partial"), kind="feature-cache-work")
    report = verify_cache(cache.path)
    assert report.ok and report.notes == []


def test_images_rewritten_to_other_sizes_make_the_cache_stale_and_a_copied_dataset_does_not(tmp_path, caplog):
    """`cache build` said "up to date" after the images' pixels were rewritten in place, and `cache verify
    --recompute` then failed: the key knew the images by name and place only. It records their files' sizes (which
    a copy keeps, where it changes their times); a cache of an older satclip, which records none, stays valid."""
    rasterio = pytest.importorskip("rasterio")
    import logging
    import os

    import torch

    from satclip import image
    from satclip.train.cache import cache_key
    from satclip.train.sources import create_source

    root = tmp_path / "s2"
    shutil.copytree(require(S2_EXAMPLES), root)
    encoder = image.create("mosaiks", in_chans=13, num_filters=4, kernel_size=3, embed_dim=8)
    encoder.fit(torch.rand(4, 13, 32, 32, generator=torch.Generator().manual_seed(0)), seed=0)  # (not on the images)

    def build(where=root):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            return build_cache(tmp_path / "cache", encoder, create_source("s2100k", str(where)), views=1)

    build()
    copy = tmp_path / "copy"  # (a plain copy: other modification times, the same sizes)
    shutil.copytree(root, copy, copy_function=shutil.copyfile)
    build(copy)
    assert "is up to date" in caplog.text and "stale" not in caplog.text
    first = create_source("s2100k", str(root)).dataset.path(0)
    size = first.stat().st_size
    os.chmod(first, 0o644)
    with rasterio.open(first, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dataset:  # noise: its blocks compress less
        pixels = dataset.read()
        dataset.write(pixels + np.random.default_rng(0).integers(0, 64, pixels.shape, dtype=pixels.dtype))
    assert first.stat().st_size != size
    rebuilt = build()
    assert "is up to date" not in caplog.text
    said = f"feature cache {tmp_path / 'cache'} is stale (dataset.file_sizes_sha256 differ): rebuilding it"
    assert said in caplog.text
    assert verify_cache(rebuilt.path, encoder=encoder, source=create_source("s2100k", str(root)), recompute=20).ok
    expected = cache_key(encoder, create_source("s2100k", str(copy)), views=1, dtype="float16", seed=0)
    report = verify_cache(rebuilt.path, expected_key=expected)  # (the copy holds the images as they were)
    assert [p.split(" (")[0] for p in report.problems] == ["stale: dataset.file_sizes_sha256 differs from the config"]
    manifest = json.loads((rebuilt.path / "manifest.json").read_text())  # as an older satclip wrote it
    del manifest["key"]["dataset"]["file_sizes_sha256"]
    (rebuilt.path / "manifest.json").write_text(json.dumps(manifest))
    assert verify_cache(rebuilt.path, expected_key=expected).ok
    build(copy)
    assert "is up to date" in caplog.text


def test_a_recomputed_image_that_differs_is_named_by_its_file_with_the_rebuild(tmp_path, capsys):
    """`cache verify --recompute` said "image 0: recomputed features differ (…)": a row of the cache, neither the
    image's file nor what to do (its checksums hold: the images or the backbone changed since, and a plain `cache
    build` calls it up to date)."""
    from satclip.digests import file_digest
    from satclip.train.sources import create_source

    root, cache, options = _small_mosaiks_cache_options(tmp_path)
    assert main(["cache", "build", *options]) == 0
    features = np.load(cache / "features.npy")
    features[3] = -features[3]  # (as if its image had changed since: the checksum recorded is the features')
    np.save(cache / "features.npy", features)
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["features_sha256"] = file_digest(cache / "features.npy")
    (cache / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["cache", "verify", *options, "--recompute", "20"]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  - ")]
    name = create_source("s2100k", str(root)).sample_name(3)
    assert len(problems) == 1 and problems[0].startswith(f"  - image 3 ({name}): recomputed features differ (view 0")
    build = ["satclip", "cache", "build", *options[:6], *options[10:], *options[6:10], "--rebuild"]  # (--set last)
    assert problems[0].endswith(f"): rebuild it with `{' '.join(build)}`"), problems[0]


def test_a_cache_build_says_what_it_built_once(tmp_path, capsys):
    """A build printed its result twice, as a log line on stderr ("feature cache C: [20, 1, 8] float16 features")
    and as the command's line on stdout: read as two caches."""
    root, cache, options = _small_mosaiks_cache_options(tmp_path)
    assert main(["cache", "build", *options]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{cache}: 20 images × 1 views × 8 features (float16) of mosaiks"]
    assert str(cache) not in err, err


def test_a_stale_digest_is_shown_cut_inside_its_quotes(built):
    """`backbone_sha256: the cache's "f20d3cc0…, the config's "76ce24…`: a digest cut to 40 characters lost its
    closing quote."""
    _, _, cache = built
    ours = cache.key["backbone_sha256"]
    report = verify_cache(cache.path, expected_key={"backbone_sha256": "0" * 64})
    assert report.problems == [
        f'stale: backbone_sha256 differs from the config (the cache\'s "{ours[:37]}…", the config\'s "{"0" * 37}…"): '
        "rebuild it with `satclip cache build --config CONFIG`"
    ]
