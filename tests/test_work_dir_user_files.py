"""A file of the user's put into a work directory of satclip's (``OUT.partial/`` of ``embed`` and ``map``, a
feature cache, a training run): ``--restart``, finishing the run or rebuilding the cache deleted it with satclip's
own files, as those directories recorded no list of their files. What each kind of work directory holds is now
declared (:func:`satclip.safe_output.declare_contents`): one that holds anything else is not deleted, in one line
naming the file, and the run goes on once the file is moved out."""

from __future__ import annotations

import re

import numpy as np
import pytest

from satclip import safe_output
from satclip.cli import main
from satclip.errors import OutputExistsError

from .test_embed_cli import CHUNK, checksum, embed, model, points  # noqa: F401
from .test_resume_damaged_work import (
    assert_same_field,
    error_line,
    map_argv,
    map_clean_and_stopped,
    stopped_after_three_chunks,
)
from .train_helpers import tiny_encoder, tiny_source


def refusal(workdir, kind: str, names: str = "notes.txt") -> str:
    return (
        f"satclip: error: refusing to delete {workdir}, satclip's {kind} directory: it also holds {names}, which "
        "satclip did not write; move those out and run again"
    )


@pytest.mark.parametrize("name", ["emb.npy", "emb.parquet", "emb.zarr"])
def test_restart_keeps_a_file_of_the_users_in_an_embed_work_directory(tmp_path, model, points, monkeypatch, capsys,  # noqa: F811
                                                                      name):  # fmt: skip
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, name)
    (workdir / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--restart") == 2
    assert error_line(capsys.readouterr().err) == refusal(workdir, "embed-work")
    assert (workdir / "notes.txt").read_text() == "mine" and (workdir / "manifest.json").is_file()
    (workdir / "notes.txt").rename(tmp_path / "notes.txt")
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--restart") == 0
    assert checksum(out) == checksum(clean) and not workdir.exists()


def test_a_finished_embed_keeps_a_file_of_the_users_in_its_work_directory(tmp_path, model, points, monkeypatch,  # noqa: F811
                                                                          capsys):  # fmt: skip
    """The output is published, and the command succeeds (it exited 2, as if nothing were written); the work
    directory stays, with a warning on each run, until the file is moved out, and the next run only removes it."""
    source, clean, out, workdir = stopped_after_three_chunks(tmp_path, model, points, monkeypatch, "emb.parquet")
    (workdir / "notes.txt").write_text("mine")
    capsys.readouterr()
    refused = refusal(workdir, "embed-work").removeprefix("satclip: error: ")
    left = f"wrote {out}, and left its work directory: {refused}"
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    assert left in capsys.readouterr().err
    assert checksum(out) == checksum(clean) and (workdir / "notes.txt").read_text() == "mine"
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0  # (still there: said again)
    assert left in capsys.readouterr().err
    (workdir / "notes.txt").rename(tmp_path / "notes.txt")
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    assert checksum(out) == checksum(clean) and not workdir.exists()


def test_map_restart_keeps_a_file_of_the_users_in_its_work_directory(tmp_path, model, monkeypatch, capsys):  # noqa: F811
    argv = map_argv(model)
    clean, out = map_clean_and_stopped(tmp_path, argv, monkeypatch)
    workdir = out.with_name(out.name + ".partial")
    (workdir / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main([*argv, "-o", str(out), "--restart"]) == 2
    assert error_line(capsys.readouterr().err) == refusal(workdir, "map-work")
    assert (workdir / "notes.txt").read_text() == "mine"
    (workdir / "notes.txt").rename(tmp_path / "notes.txt")
    assert main([*argv, "-o", str(out), "--restart"]) == 0
    assert_same_field(out, clean)
    assert not workdir.exists()


def test_a_directory_of_the_users_named_like_the_work_directory_is_named_so(tmp_path, model, points, capsys):  # noqa: F811
    """A directory of the user's at ``OUT.partial`` (not satclip's) was told "choose a new or empty directory", of a
    name the user had not chosen; the message now says that satclip keeps its unfinished work under that name."""
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    mine = tmp_path / "emb.parquet.partial"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert embed(source, "-o", tmp_path / "emb.parquet", "--model", model) == 2
    assert error_line(capsys.readouterr().err) == (
        f"satclip: error: {mine} is not satclip's (it holds notes.txt), and emb.parquet.partial is where satclip "
        "keeps the unfinished work of emb.parquet: move or rename it, or choose another output path"
    )
    assert (mine / "notes.txt").read_text() == "mine" and not (tmp_path / "emb.parquet").exists()


def test_a_feature_cache_holding_a_file_of_the_users_is_not_replaced(tmp_path):
    """``write_cache`` over a cache that ``build_cache`` made replaced the whole directory, the user's file with
    it. A rebuild by ``build_cache`` replaces the cache once the new one is complete: it is refused before it
    starts, the file and the cache kept."""
    from satclip.train.cache import build_cache, write_cache

    encoder, source = tiny_encoder(), tiny_source(6)
    cache = build_cache(tmp_path / "c", encoder, source, views=1, dtype="float16")
    features, lonlat = np.array(cache.features), np.array(cache.lonlat)
    (cache.path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"satclip wrote it, but not notes\.txt in it"):
        write_cache(cache.path, features * 2, lonlat, encoder, fingerprint="elsewhere")
    assert (cache.path / "notes.txt").read_text() == "mine"
    np.testing.assert_array_equal(np.load(cache.path / "features.npy"), features)
    with pytest.raises(OutputExistsError, match=r"satclip wrote it, but not notes\.txt in it"):
        build_cache(tmp_path / "c", encoder, source, views=2, dtype="float16")
    assert (cache.path / "notes.txt").read_text() == "mine" and not (tmp_path / "c.partial").exists()
    np.testing.assert_array_equal(np.load(cache.path / "features.npy"), features)


def test_a_refused_rebuild_of_a_cache_holding_a_file_of_the_users_is_not_announced(tmp_path, caplog):
    """A stale cache holding a file of the user's: the build said "is stale (…): rebuilding it in c.partial" and then
    refused to replace it. The refusal comes first, and no rebuild is announced."""
    import logging

    from satclip.train.cache import build_cache

    encoder, source = tiny_encoder(), tiny_source(6)
    cache = build_cache(tmp_path / "c", encoder, source, views=1, dtype="float16")
    (cache.path / "notes.txt").write_text("mine")
    with caplog.at_level(logging.INFO, logger="satclip"), pytest.raises(OutputExistsError, match=r"but not notes"):
        build_cache(tmp_path / "c", encoder, source, views=1, dtype="float16", seed=1)
    assert "rebuilding" not in caplog.text and "stale" not in caplog.text
    assert not (tmp_path / "c.partial").exists()

def test_a_users_file_in_an_unfinished_cache_build_is_not_deleted_with_it(tmp_path):
    """The work directory of a cache's build, ``CACHE.partial/``, holds the cache being built: a build of another
    cache that starts again there refuses to delete a file of the user's put into it."""
    from satclip.train.cache import build_cache

    def stop(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path / "c", tiny_encoder(), tiny_source(6), views=1, chunk_size=2, progress=stop)
    building = tmp_path / "c.partial" / "cache"
    (building / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"holds notes\.txt, which satclip did not write"):
        build_cache(tmp_path / "c", tiny_encoder(seed=1), tiny_source(6), views=1)
    assert (building / "notes.txt").read_text() == "mine"
    (building / "notes.txt").unlink()
    build_cache(tmp_path / "c", tiny_encoder(seed=1), tiny_source(6), views=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_only_what_a_kind_declares_is_satclips_own(tmp_path):
    """Declared names and what is under a declared folder are satclip's, as are its temporaries, locks and the
    markers of its own folders; ``{output}`` is the work's output name (a pattern character in it is literal)."""
    safe_output.declare_contents("test-work", "manifest.json", "part-[0-9]*", "store", "{output}")
    work = safe_output.make_owned_dir(tmp_path / "o[1].tif.partial", kind="test-work")
    for name in ("manifest.json", "part-000001", "store/0/1", "o[1].tif", ".manifest.json.lock",
                 ".part-000002.satclip-tmp-999999-a1b2c3", "store/.satclip-output"):  # fmt: skip
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text("")
    (work / "empty").mkdir()
    (work / "o1.tif").write_text("")
    (work / "store2").write_text("")
    with pytest.raises(OutputExistsError, match=r"it also holds empty, o1\.tif, store2, which satclip did not"):
        safe_output.remove_owned(work)
    for name in ("empty", "o1.tif", "store2"):
        path = work / name
        path.rmdir() if path.is_dir() else path.unlink()
    safe_output.remove_owned(work)
    assert not work.exists()


def stopped_cache_build(tmp_path):
    """``tmp_path/c.partial``: the work of a build of ``tmp_path/c`` stopped after its first chunk was recorded."""
    from satclip.train.cache import build_cache

    def stop(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path / "c", tiny_encoder(), tiny_source(6), views=1, chunk_size=2, progress=stop)
    return tmp_path / "c.partial"


@pytest.mark.parametrize("where", ["", "cache"])
def test_a_users_file_in_a_cache_build_is_refused_before_any_work(tmp_path, where):
    """A file of the user's in ``CACHE.partial/`` was found only after the whole build, which then said "refusing
    to delete … (the work done so far is kept)" of a cache it had published; one in ``CACHE.partial/cache/`` was
    published inside the cache. Both are refused before any image is read, naming the file."""
    from satclip.train.cache import build_cache, check_cache_directory

    work = stopped_cache_build(tmp_path)
    (work / where / "notes.txt").write_text("mine")
    source = tiny_source(6)
    message = f"{work / where}, where satclip builds {tmp_path / 'c'}, holds notes.txt, which satclip did not write"
    for check in (lambda: check_cache_directory(tmp_path / "c"),
                  lambda: build_cache(tmp_path / "c", tiny_encoder(), source, views=1, chunk_size=2)):  # fmt: skip
        with pytest.raises(OutputExistsError, match=re.escape(message)):
            check()
    assert source.dataset.reads == 0 and (work / where / "notes.txt").read_text() == "mine"
    (work / where / "notes.txt").rename(tmp_path / "notes.txt")
    cache = build_cache(tmp_path / "c", tiny_encoder(), source, views=1, chunk_size=2)
    assert source.dataset.reads == 4 and "notes.txt" not in {p.name for p in cache.path.iterdir()}


def test_a_build_stopped_after_publishing_keeps_no_work_it_names(tmp_path):
    """A file put into ``CACHE.partial/`` while the build ran made the removal after publishing fail, and the
    command said "the work done so far is kept in CACHE.partial" of a folder holding nothing but that file."""
    from satclip.train.cache import build_cache

    def drop_notes(done: int, total: int) -> None:
        if done == total:
            (tmp_path / "c.partial" / "notes.txt").write_text("mine")

    safe_output.forget_created()  # (a command starts)
    with pytest.raises(OutputExistsError, match=r"notes\.txt"):
        build_cache(tmp_path / "c", tiny_encoder(), tiny_source(6), views=1, chunk_size=2, progress=drop_notes)
    assert safe_output.kept_work() == [] and (tmp_path / "c" / "manifest.json").is_file()


def test_an_empty_folder_of_the_users_named_like_the_work_directory(tmp_path):
    """An empty folder named ``CACHE.partial`` passed the early check but was then refused ("refusing to delete …:
    satclip did not create it"), even beside an up-to-date cache. An up-to-date cache is reused, leaving it as it
    is; a build takes it as its work directory."""
    from satclip.train.cache import build_cache

    path, work = tmp_path / "c", tmp_path / "c.partial"
    work.mkdir()
    build_cache(path, tiny_encoder(), tiny_source(6), views=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    work.mkdir()
    source = tiny_source(6)
    build_cache(path, tiny_encoder(), source, views=1)
    assert source.dataset.reads == 0 and work.is_dir() and not any(work.iterdir())


@pytest.mark.parametrize("whose", ["satclip", "user"])
def test_a_users_file_in_the_work_directory_does_not_block_an_up_to_date_cache(tmp_path, whose, caplog):
    """A file of the user's in ``CACHE.partial/`` (satclip's work directory of a stopped ``--rebuild``, or a folder of
    the user's with that name) blocked an up-to-date cache beside it with "move it out and run again", though no
    build, and so nothing in ``CACHE.partial/``, is needed. The cache is used as it is, with the file named; a
    rebuild, which needs the work directory, is still refused, and the file stays."""
    from satclip.train.cache import build_cache, check_cache_directory

    path, work = tmp_path / "c", tmp_path / "c.partial"
    build_cache(path, tiny_encoder(), tiny_source(6), views=1, chunk_size=2)
    if whose == "satclip":

        def stop(done: int, total: int) -> None:
            if done:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            build_cache(path, tiny_encoder(), tiny_source(6), views=1, chunk_size=2, rebuild=True, progress=stop)
        assert safe_output.is_owned(work)
    else:
        work.mkdir()
    (work / "notes.txt").write_text("mine")
    check_cache_directory(path)
    source = tiny_source(6)
    with caplog.at_level("WARNING"):
        cache = build_cache(path, tiny_encoder(), source, views=1, chunk_size=2)
    assert source.dataset.reads == 0 and cache.path == path
    assert str(work) in caplog.text and "the feature cache itself is up to date and used as it is" in caplog.text
    with pytest.raises(OutputExistsError, match=re.escape(str(work))):
        build_cache(path, tiny_encoder(), tiny_source(6), views=1, chunk_size=2, rebuild=True)
    assert (work / "notes.txt").read_text() == "mine"
