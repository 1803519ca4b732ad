"""Feature cache: contents equal the backbone's output per view, reproducible, resumable, stale detection,
verification, memory-mapped reads."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from satclip import safe_output
from satclip.cli import main
from satclip.errors import ResumeError
from satclip.train.cache import (
    FeatureCache,
    build_cache,
    cache_key,
    state_sha256,
    verify_cache,
    view_generator,
)  # fmt: skip

from .train_helpers import flip_view, sphere_points, tiny_encoder, tiny_source


def test_cache_holds_the_backbone_features_of_each_view(tmp_path):
    encoder, source = tiny_encoder(), tiny_source(10)
    cache = build_cache(tmp_path / "c", encoder, source, views=3, dtype="float32", chunk_size=4, batch_size=5)
    assert cache.features.shape == (10, 3, 16) and isinstance(cache.features, np.memmap)
    assert source.dataset.reads == 10  # one read per image, whatever the number of views
    for index in (0, 7):
        image, point = source.raw(index)
        views = [image] + [flip_view(image, view_generator(0, index, v)) for v in (1, 2)]
        with torch.no_grad():
            expected = encoder.encode_features(torch.stack(views)).numpy()
        np.testing.assert_allclose(cache.features[index], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(cache.lonlat[index], point.numpy())
    assert not np.allclose(cache.features[:, 1], cache.features[:, 2])  # views differ
    rows = cache.gather(np.array([3, 1]), np.array([2, 0]))
    np.testing.assert_array_equal(rows.numpy(), cache.features[[3, 1], [2, 0]])
    assert verify_cache(cache.path).ok


def test_rebuild_is_identical_and_up_to_date_cache_is_reused(tmp_path):
    a = build_cache(tmp_path / "a", tiny_encoder(), tiny_source(10), views=2, chunk_size=3)
    b = build_cache(tmp_path / "b", tiny_encoder(), tiny_source(10), views=2, chunk_size=7, batch_size=3)
    np.testing.assert_array_equal(a.features, b.features)  # independent of chunking and batching
    c = build_cache(tmp_path / "threads", tiny_encoder(), tiny_source(10), views=2, chunk_size=2, threads=3)
    np.testing.assert_array_equal(a.features, c.features)  # and of building chunks in threads
    np.testing.assert_array_equal(a.lonlat, c.lonlat)
    source = tiny_source(10)
    build_cache(tmp_path / "a", tiny_encoder(), source, views=2)
    assert source.dataset.reads == 0


def test_a_cache_written_from_outside_features_is_rebuilt_in_place(tmp_path):
    """write_cache marked its directory a plain output: building the cache of another source there (stale:
    rebuilt) was refused as a satclip directory of another kind."""
    from satclip.train.cache import write_cache

    features = np.zeros((10, 2, 16), dtype=np.float32)
    lonlat = np.stack([np.linspace(-170, 170, 10), np.linspace(-80, 80, 10)], axis=1)
    written = write_cache(tmp_path / "c", features, lonlat, tiny_encoder(), fingerprint="outside")
    assert len(written) == 10
    rebuilt = build_cache(tmp_path / "c", tiny_encoder(), tiny_source(10), views=2)
    assert verify_cache(rebuilt.path).ok and not np.array_equal(rebuilt.features, features)

    # one written before markers named their kind ("output") is adopted the same way
    from satclip import safe_output

    old = write_cache(tmp_path / "old", features, lonlat, tiny_encoder(), fingerprint="outside").path
    marker = json.loads((old / safe_output.MARKER).read_text())
    (old / safe_output.MARKER).write_text(json.dumps({**marker, "kind": "output"}))
    assert verify_cache(build_cache(old, tiny_encoder(), tiny_source(10), views=2).path).ok

    # a build stopped in a cache written from outside features leaves satclip's own files there: writing the
    # cache again replaces the directory (they were refused as files satclip had not written)
    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        raise Stop

    stopped = write_cache(tmp_path / "stopped", features, lonlat, tiny_encoder(), fingerprint="outside").path
    with pytest.raises(Stop):
        build_cache(stopped, tiny_encoder(), tiny_source(10), views=2, chunk_size=3, progress=stop)
    assert len(write_cache(stopped, features, lonlat, tiny_encoder(), fingerprint="outside")) == 10


def test_interrupted_build_resumes_to_the_same_cache(tmp_path):
    reference = build_cache(tmp_path / "ref", tiny_encoder(), tiny_source(10), views=2, chunk_size=3)

    class Stop(Exception):
        pass

    def stop_after_two_chunks(done: int, total: int) -> None:
        if done >= 6:
            raise Stop

    with pytest.raises(Stop):
        build_cache(
            tmp_path / "c", tiny_encoder(), tiny_source(10), views=2, chunk_size=3, progress=stop_after_two_chunks
        )
    assert not verify_cache(tmp_path / "c").ok  # incomplete, and says so
    with pytest.raises(ResumeError, match="incomplete"):
        FeatureCache.open(tmp_path / "c")
    source = tiny_source(10)
    cache = build_cache(tmp_path / "c", tiny_encoder(), source, views=2, chunk_size=3)
    assert source.dataset.reads == 4  # only the last two chunks (3 + 1 images) were computed
    np.testing.assert_array_equal(cache.features, reference.features)
    assert not (tmp_path / "c" / "progress.npy").exists()


@pytest.mark.parametrize("stopped", ["between the files", "hashing"])
def test_a_build_stopped_while_publishing_is_finished_not_computed_again(tmp_path, monkeypatch, stopped):
    """Killed after its files were moved into place, before the manifest said complete, a build was cleared and
    computed again from the first chunk (the README says `cache build` continues at the first unfinished one)."""
    from satclip import safe_output
    from satclip.train import cache as cache_module

    reference = build_cache(tmp_path / "ref", tiny_encoder(), tiny_source(10), views=2, chunk_size=3)

    class Stop(BaseException):  # (as a kill: nothing catches it)
        pass

    publish, digest = safe_output.publish, cache_module.file_digest

    def publish_one(built, target, **options):
        if target.name == "lonlat.npy":
            raise Stop
        return publish(built, target, **options)

    def stop(path):
        raise Stop

    if stopped == "hashing":
        monkeypatch.setattr(cache_module, "file_digest", stop)
    else:
        monkeypatch.setattr(safe_output, "publish", publish_one)
    with pytest.raises(Stop):
        build_cache(tmp_path / "c", tiny_encoder(), tiny_source(10), views=2, chunk_size=3)
    monkeypatch.setattr(safe_output, "publish", publish)
    monkeypatch.setattr(cache_module, "file_digest", digest)
    with pytest.raises(ResumeError, match="incomplete"):
        FeatureCache.open(tmp_path / "c")
    source = tiny_source(10)
    cache = build_cache(tmp_path / "c", tiny_encoder(), source, views=2, chunk_size=3)
    assert source.dataset.reads == 0  # nothing computed again
    np.testing.assert_array_equal(cache.features, reference.features)
    np.testing.assert_array_equal(cache.lonlat, reference.lonlat)
    assert verify_cache(tmp_path / "c").ok
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(p.name for p in (tmp_path / "ref").iterdir())


def test_interrupted_threaded_build_resumes_to_the_same_cache(tmp_path):
    """A chunk failing in one thread stops the build; the chunks recorded as done are kept and not redone."""
    reference = build_cache(tmp_path / "ref", tiny_encoder(), tiny_source(10), views=2, chunk_size=2)

    class Stop(Exception):
        pass

    def stop_after_two_chunks(done: int, total: int) -> None:
        if done >= 4:
            raise Stop

    with pytest.raises(Stop):
        build_cache(tmp_path / "c", tiny_encoder(), tiny_source(10), views=2, chunk_size=2, threads=2,
                    progress=stop_after_two_chunks)  # fmt: skip
    recorded = int(np.load(tmp_path / "c.partial" / "cache" / "progress.npy").sum())  # (its work, beside it)
    assert 2 <= recorded < 5
    source = tiny_source(10)
    cache = build_cache(tmp_path / "c", tiny_encoder(), source, views=2, chunk_size=2, threads=2)
    assert source.dataset.reads == 10 - 2 * recorded
    np.testing.assert_array_equal(cache.features, reference.features)


def test_stale_cache_is_detected_and_rebuilt(tmp_path):
    path = tmp_path / "c"
    build_cache(path, tiny_encoder(seed=0), tiny_source(10), views=2)
    other_backbone = tiny_encoder(seed=1)
    other_transform = tiny_source(10, tag="v2")
    for encoder, source, field in ((other_backbone, tiny_source(10), "backbone_sha256"),
                                   (tiny_encoder(), other_transform, "transform")):  # fmt: skip
        key = cache_key(encoder, source, views=2, dtype="float16", seed=0)
        report = verify_cache(path, expected_key=key)
        assert not report.ok and field in report.problems[0]
    rebuilt_source = tiny_source(10, tag="v2")
    cache = build_cache(path, tiny_encoder(), rebuilt_source, views=2)
    assert rebuilt_source.dataset.reads == 10
    assert cache.key["transform"]["train"] == "flip+noise v2"


def test_verify_detects_corruption(tmp_path):
    cache = build_cache(tmp_path / "c", tiny_encoder(), tiny_source(10), views=2)
    features = np.load(cache.path / "features.npy", mmap_mode="r+")
    features[4, 1, 0] = np.nan
    features.flush()
    del features
    report = verify_cache(cache.path)
    assert not report.ok and "non-finite" in report.problems[0]

    manifest = json.loads((cache.path / "manifest.json").read_text())
    manifest["key"]["backbone_sha256"] = "0" * 64
    (cache.path / "manifest.json").write_text(json.dumps(manifest))
    assert any("backbone" in p for p in verify_cache(cache.path).problems)


def test_verify_names_the_images_with_non_finite_features(tmp_path, capsys):
    """A NaN in one image's features was reported as "non-finite features in images 0…4095", the whole block
    of 4,096 images it was read in; now the report names the images that hold one, with their (lon, lat)."""
    cache = build_cache(tmp_path / "c", tiny_encoder(), tiny_source(12), views=3)
    features = np.load(cache.path / "features.npy", mmap_mode="r+")
    features[2, 1, 5], features[7, 0, 0], features[11, 2, 15] = np.nan, np.inf, -np.inf
    features.flush()
    del features
    lonlat = np.load(cache.path / "lonlat.npy")
    report = verify_cache(cache.path)
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert "in 3 of 12 images: images 2 (lon=" in problem and "--rebuild" in problem
    assert [int(i) for i in re.findall(r"(\d+) \(lon=", problem)] == [2, 7, 11]
    for i in (2, 7, 11):
        assert f"{i} (lon={float(lonlat[i, 0])!r}, lat={float(lonlat[i, 1])!r})" in problem
    assert "…" not in problem

    assert main(["cache", "verify", str(cache.path)]) == 1
    assert f"  - {problem}" in capsys.readouterr().out.splitlines()


def test_non_finite_images_are_found_block_by_block():
    from satclip.train.cache import non_finite_images

    features = np.ones((50, 2, 4), np.float16)
    bad = [0, 3, 4, 9, 12, 13, 20, 21, 22, 30, 31, 44, 49]
    features[bad, 1, 2] = np.nan
    for block in (1, 4, 7, 4096):
        assert non_finite_images(features, block=block) == (bad[:10], len(bad))
    assert non_finite_images(np.ones((5, 1, 3), np.float32)) == ([], 0)


def test_recompute_check_compares_fresh_features(tmp_path):
    encoder, source = tiny_encoder(), tiny_source(10)
    cache = build_cache(tmp_path / "c", encoder, source, views=2, dtype="float32")
    report = verify_cache(cache.path, encoder=encoder, source=source, recompute=3)
    assert report.ok and report.recomputed == 3 and report.max_abs_diff < 1e-5
    with torch.no_grad():
        encoder.filters.mul_(1.5)  # a different backbone under the same cache
    assert not verify_cache(cache.path, encoder=encoder, source=source, recompute=3).ok


def test_float16_overflow_is_refused(tmp_path):
    encoder = tiny_encoder()
    with torch.no_grad():
        encoder.filters.mul_(1e6)
    with pytest.raises(ValueError, match="float32"):
        build_cache(tmp_path / "c", encoder, tiny_source(4), views=1, dtype="float16")


def test_backbone_hash_ignores_the_head():
    a, b = tiny_encoder(), tiny_encoder()
    with torch.no_grad():
        b.head.weight.add_(1)
    key = {k: v for k, v in a.state_dict().items() if not k.startswith("head.")}
    other = {k: v for k, v in b.state_dict().items() if not k.startswith("head.")}
    assert state_sha256(key) == state_sha256(other)
    assert cache_key(a, tiny_source(2), views=1, dtype="float16", seed=0) == cache_key(
        b, tiny_source(2), views=1, dtype="float16", seed=0
    )


@pytest.mark.parametrize("damage", ["lonlat cut short", "manifest not json", "backbone cut short"])
def test_a_damaged_cache_is_named_by_verify_and_rebuilt_by_build(tmp_path, damage):
    """A cut-short lonlat.npy or a garbage manifest.json: verify named no file (numpy's or json's message
    alone) and build reported the cache as fine; now verify names the file and build rebuilds it. A cut-short
    backbone.safetensors crashed verify (SafetensorError) and build called the cache up to date."""
    encoder, source = tiny_encoder(), tiny_source(10)
    cache = build_cache(tmp_path / "c", encoder, source, views=2, dtype="float32")
    expected = np.array(cache.features)
    file = cache.path / {"lonlat": "lonlat.npy", "manifest": "manifest.json", "backbone": "backbone.safetensors"}[
        damage.split()[0]
    ]
    if damage.endswith("cut short"):
        file.write_bytes(file.read_bytes()[:100])
    else:
        file.write_text("{")
    report = verify_cache(cache.path)
    assert not report.ok and any(f"{file} is damaged" in p for p in report.problems), report.problems
    rebuilt = build_cache(tmp_path / "c", encoder, source, views=2, dtype="float32")
    assert verify_cache(rebuilt.path).ok
    np.testing.assert_array_equal(np.array(rebuilt.features), expected)


def test_written_features_without_images_views_or_finite_values_are_refused(tmp_path):
    """write_cache stored NaN features (training then 'diverged', blaming the learning rate), zero views (an
    IndexError in training) and zero images."""
    from satclip.train.cache import write_cache

    lonlat = sphere_points(4, 0)
    for features, message in ((np.full((4, 2, 8), np.nan, np.float16), "NaN or infinite values"),
                              (np.zeros((4, 0, 8), np.float16), "1 to 1024 views"),
                              (np.zeros((0, 2, 8), np.float16), "at least one image")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            write_cache(tmp_path / "c", features, lonlat[: len(features)], tiny_encoder(), fingerprint="x")
        assert not (tmp_path / "c").exists()


def test_build_cache_checks_its_sizes_and_source_before_writing(tmp_path):
    """chunk_size=0 was a ZeroDivisionError, a negative one numpy's error, views='2' a TypeError, a plain dataset
    an AttributeError — each after the cache directory and its partial files were written."""
    for kwargs, error, message in (({"chunk_size": 0}, ValueError, "chunk_size=0 must be an integer from 1 up"),
                                   ({"views": "2"}, ValueError, "views='2' must be an integer from 1 to 1024"),
                                   ({"views": 100_000}, ValueError, "views=100000 must be"),
                                   ({"batch_size": -1}, ValueError, "batch_size=-1 must be")):  # fmt: skip
        with pytest.raises(error, match=message):
            build_cache(tmp_path / "c", tiny_encoder(), tiny_source(), **kwargs)
    with pytest.raises(TypeError, match="source must be a PairSource"):
        build_cache(tmp_path / "c", tiny_encoder(), tiny_source().dataset, views=2)
    assert not (tmp_path / "c").exists()


def test_a_completed_cache_is_not_named_as_work_to_continue(tmp_path):
    """The demo stopped in its first epoch said "nothing to resume" and, from the CLI, "the work done is kept in
    …/cache-…: rerun the same command to continue where it stopped" of the feature cache it had finished. A cache
    is named so while its build is unfinished only."""
    safe_output.forget_created()  # (a command starts)
    build_cache(tmp_path / "c", tiny_encoder(), tiny_source(10), views=2, chunk_size=3)
    assert safe_output.kept_work() == []  # (nor its work directory, removed)


class Stop(BaseException):  # (as a kill: nothing catches it)
    pass


def stop_after(images: int):
    """A progress callback that stops a build once ``images`` images are done."""

    def stop(done: int, total: int) -> None:
        if done >= images:
            raise Stop

    return stop


def test_an_interrupted_build_keeps_its_work_beside_the_cache_not_under_its_name(tmp_path):
    """A build stopped midway left its partial files and a manifest saying "complete": false under the cache's own
    name (the README promises complete or absent); now they are in CACHE.partial/ until the cache is complete."""
    with pytest.raises(Stop):
        build_cache(tmp_path / "c", tiny_encoder(), tiny_source(10), views=2, chunk_size=3, progress=stop_after(6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.partial"]
    source = tiny_source(10)
    cache = build_cache(tmp_path / "c", tiny_encoder(), source, views=2, chunk_size=3)
    assert source.dataset.reads == 4  # resumed from the work directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"] and verify_cache(cache.path).ok


@pytest.mark.parametrize("how", ["another backbone", "--rebuild", "damaged"])
def test_a_cache_stays_usable_until_the_one_replacing_it_is_complete(tmp_path, how):
    """A build of another backbone (or --rebuild, or of a damaged cache) deleted the old cache as it started: a
    Ctrl-C later, the old features were gone. Now the old cache stays as it was until the new one replaces it, and
    `cache verify` notes the unfinished build beside it."""
    path = tmp_path / "c"
    old = build_cache(path, tiny_encoder(), tiny_source(10), views=2)
    features = np.array(old.features)
    if how == "damaged":
        (path / "lonlat.npy").write_bytes((path / "lonlat.npy").read_bytes()[:100])
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    encoder = tiny_encoder(seed=1) if how == "another backbone" else tiny_encoder()
    with pytest.raises(Stop):
        build_cache(path, encoder, tiny_source(10), views=2, chunk_size=3, rebuild=how == "--rebuild",
                    progress=stop_after(3))  # fmt: skip
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    if how != "damaged":
        np.testing.assert_array_equal(FeatureCache.open(path).features, features)
        report = verify_cache(path)  # (which said nothing of the rebuild beside it)
        assert report.ok and report.notes == [
            f"an unfinished build that replaces this cache once complete is kept in {tmp_path / 'c.partial'}: "
            "`satclip cache build --config CONFIG` with that build's config finishes it"
        ]
    source = tiny_source(10)
    new = build_cache(path, encoder, source, views=2, chunk_size=3)
    assert source.dataset.reads == 7  # the rebuild finished from where it stopped, and replaced the old cache
    assert verify_cache(path).ok and not (tmp_path / "c.partial").exists()
    assert (how == "another backbone") != np.array_equal(new.features, features)


def test_a_build_that_fails_before_its_manifest_leaves_nothing(tmp_path, monkeypatch):
    """A build failing before it wrote its manifest (a full disk) left a directory that `cache verify` called an
    interrupted build (exit 1) and training "not a feature cache (no manifest.json)" (exit 2)."""
    import errno

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(safe_output, "reserve", full)
    with pytest.raises(OSError, match="No space left"):
        build_cache(tmp_path / "c", tiny_encoder(), tiny_source(10), views=2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stopped", ["midway", "before its manifest", "while publishing"])
def test_a_build_an_older_satclip_stopped_in_place_is_finished(tmp_path, monkeypatch, stopped):
    """satclip before 2026-12 built a cache under its own name: one it left unfinished there is moved into the
    work directory and resumed (or started again), never refused or left half."""
    from satclip.train import cache as cache_module

    reference = build_cache(tmp_path / "ref", tiny_encoder(), tiny_source(10), views=2, chunk_size=3)
    path = tmp_path / "c"
    if stopped == "before its manifest":
        safe_output.make_owned_dir(path, kind="feature-cache")
        (path / "backbone.safetensors").write_bytes(b"half")
    else:
        publish = safe_output.publish

        def stop_publishing(built, target, **options):
            if target.name == "lonlat.npy":
                raise Stop
            return publish(built, target, **options)

        monkeypatch.setattr(cache_module.safe_output, "publish", stop_publishing)
        with pytest.raises(Stop):
            build_cache(path, tiny_encoder(), tiny_source(10), views=2, chunk_size=3,
                        progress=stop_after(6) if stopped == "midway" else None)  # fmt: skip
        monkeypatch.setattr(cache_module.safe_output, "publish", publish)
        (tmp_path / "c.partial" / "cache").rename(path)  # the layout an older satclip left
        safe_output.remove_owned(tmp_path / "c.partial")
    with pytest.raises(ResumeError, match=r"is incomplete \(its build was interrupted\)"):
        FeatureCache.open(path)
    source = tiny_source(10)
    cache = build_cache(path, tiny_encoder(), source, views=2, chunk_size=3)
    assert source.dataset.reads == {"midway": 4, "before its manifest": 10, "while publishing": 0}[stopped]
    np.testing.assert_array_equal(cache.features, reference.features)
    assert verify_cache(path).ok and sorted(p.name for p in tmp_path.iterdir()) == ["c", "ref"]


def test_a_link_to_an_older_cache_is_refused_before_any_work(tmp_path):
    """A symbolic link to a cache of an older satclip (no marker of its kind) passed the early check, so `cache
    build --rebuild` fitted its MOSAIKS filters on the images before the build refused the link."""
    from satclip.errors import OutputExistsError
    from satclip.train.cache import check_cache_directory

    older = tmp_path / "older"
    build_cache(older, tiny_encoder(), tiny_source(10), views=2)
    (older / safe_output.MARKER).unlink()  # (as an older satclip left it)
    (tmp_path / "link").symlink_to(older)
    with pytest.raises(OutputExistsError, match=f"{tmp_path / 'link'} is a symbolic link; give the directory it"):
        check_cache_directory(tmp_path / "link", rebuild=True)
    check_cache_directory(tmp_path / "link")  # (without --rebuild it may be up to date: used through the link)
    check_cache_directory(older)  # (the cache itself is one to build into)


def test_a_users_folder_named_like_the_work_directory_is_refused_naming_its_files(tmp_path):
    """`cup.partial` of the user's holding a file: "cup.partial is not satclip's, … move or rename it" named none of
    its files, though docs/training.md says the build refuses it naming them."""
    from satclip.errors import OutputExistsError

    mine = tmp_path / "cup.partial"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (mine / "a.csv").write_text("mine")
    said = f"{mine} is not satclip's (it holds a.csv, notes.txt), and cup.partial is where satclip keeps the unfinished"
    with pytest.raises(OutputExistsError, match=re.escape(said)):
        build_cache(tmp_path / "cup", tiny_encoder(), tiny_source(6), views=1)
    assert sorted(p.name for p in mine.iterdir()) == ["a.csv", "notes.txt"] and not (tmp_path / "cup").exists()


def test_a_link_to_an_up_to_date_cache_is_used_and_nothing_is_written_through_one(tmp_path, capsys):
    """`cache build --data.cache lnk` (lnk → an up-to-date cache) was refused as "a symbolic link" where `cache
    verify lnk` and `train` read it: it is used as it is; a build that would write (--rebuild, before any work; other
    settings, once the key is known) is refused in one line naming the link, the cache behind it untouched."""
    from satclip.train import dump_config, from_dict

    from .train_helpers import bluemarble_run

    dump_config(from_dict(bluemarble_run(tmp_path)), tmp_path / "c.yaml")
    build = ["cache", "build", "--config", str(tmp_path / "c.yaml")]
    assert main(build) == 0
    (tmp_path / "lnk").symlink_to(tmp_path / "cache")
    before = {p.name: p.read_bytes() for p in (tmp_path / "cache").iterdir() if p.is_file()}
    capsys.readouterr()
    assert main([*build, "--data.cache", str(tmp_path / "lnk")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'lnk'}: 40 images × 2 views")
    for extra in (["--rebuild"], ["--data.cache_views", "3"]):
        assert main([*build, "--data.cache", str(tmp_path / "lnk"), *extra]) == 2, extra
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"satclip: error: {tmp_path / 'lnk'} is a symbolic link; give the directory it points to, or another path"
        ), extra
    assert {p.name: p.read_bytes() for p in (tmp_path / "cache").iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if "lnk" in p.name) == ["lnk"]


def test_an_interrupted_rebuild_is_finished_by_the_same_command(tmp_path):
    """After an interrupted `cache build --rebuild`, the message said "rerun the same command to continue where it
    stopped", but rerunning it with --rebuild threw that work away and started again."""
    path = tmp_path / "c"
    build_cache(path, tiny_encoder(), tiny_source(10), views=2, chunk_size=3)
    safe_output.forget_created()  # (a command starts)
    with pytest.raises(Stop):
        build_cache(path, tiny_encoder(), tiny_source(10), views=2, chunk_size=3, rebuild=True, progress=stop_after(3))
    assert safe_output.kept_work() == [tmp_path / "c.partial"]
    source = tiny_source(10)
    build_cache(path, tiny_encoder(), source, views=2, chunk_size=3, rebuild=True)
    assert source.dataset.reads == 7 and verify_cache(path).ok and not (tmp_path / "c.partial").exists()


def test_a_build_stopped_before_its_first_record_leaves_nothing(tmp_path, monkeypatch):
    """A Ctrl-C before the first chunk was recorded left CACHE.partial/ (the backbone and full-size reserved files)
    with nothing to resume, where the docs say such a build leaves nothing."""
    encoder = tiny_encoder()

    def interrupted(images):
        raise KeyboardInterrupt

    monkeypatch.setattr(encoder, "encode_features", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path / "c", encoder, tiny_source(10), views=2, chunk_size=3)
    assert list(tmp_path.iterdir()) == []


def test_a_build_stopped_before_it_was_published_is_said_to_be_finished(tmp_path, monkeypatch):
    """Publishing takes two renames (the old cache aside, the new one in): stopped between them, or before, no
    CACHE is there and its complete build is in CACHE.partial/cache, which was called "incomplete (its build was
    interrupted)". It is said to be finished but not published, and the next build publishes it."""
    from satclip.train import cache as cache_module

    path = tmp_path / "c"
    publish = safe_output.publish

    def stop_at_the_end(built, target, **options):
        if target == path:
            raise Stop
        return publish(built, target, **options)

    monkeypatch.setattr(cache_module.safe_output, "publish", stop_at_the_end)
    with pytest.raises(Stop):
        build_cache(path, tiny_encoder(), tiny_source(10), views=2, chunk_size=3)
    monkeypatch.setattr(cache_module.safe_output, "publish", publish)
    with pytest.raises(ResumeError, match=rf"feature cache {path} is not there yet: its build in {path}\.partial "
                                          r"finished but was not published: run `satclip cache build --config CONFIG "
                                          rf"--data.cache {path} --data.cache_views 2"):
        FeatureCache.open(path)
    source = tiny_source(10)
    build_cache(path, tiny_encoder(), source, views=2, chunk_size=3)
    assert source.dataset.reads == 0 and verify_cache(path).ok


def test_a_cache_array_of_other_bytes_is_not_a_npy_file_never_one_to_unpickle(tmp_path):
    """lonlat.npy of other bytes was "damaged (This file contains pickled (object) data. If you trust the file you
    can load it unsafely using the `allow_pickle=` keyword…)": advice to unpickle a damaged file."""
    cache = build_cache(tmp_path / "c", tiny_encoder(), tiny_source(10), views=2, dtype="float32")
    (cache.path / "lonlat.npy").write_bytes(b"not an array at all, nor a pickle")
    report = verify_cache(cache.path)
    said = f"{cache.path / 'lonlat.npy'} is damaged (it is not a valid .npy array file: no NumPy header)"
    assert any(said in p for p in report.problems), report.problems
    assert not any("allow_pickle" in p for p in report.problems), report.problems
