"""What a map file says of itself: the dtype it stores, the precision it was computed in and why, the model that
made it (PNG too), what its principal components are, and longitudes that run past 180°."""

from __future__ import annotations

import json

import numpy as np
import pytest

import satclip
from satclip.cli import main

from .test_map import BBOX, centres, model  # noqa: F401 (the fixture)

ARGS = ["--resolution", "6", "--bbox", *BBOX, "--all"]


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_a_float64_map_stores_float64(tmp_path, model, suffix):  # noqa: F811
    """`--precision float64` maps were stored as float32 while their tags said satclip_dtype float64; `satclip embed`
    keeps float64. They are float64, as the field computed in float64."""
    out = tmp_path / f"m{suffix}"
    assert main(["map", "--model", str(model), *ARGS, "--precision", "float64", "-o", str(out)]) == 0
    if suffix == ".tif":
        rasterio = pytest.importorskip("rasterio")
        with rasterio.open(out) as src:
            dtypes, tags, values = set(src.dtypes), src.tags(), np.moveaxis(src.read(), 0, -1)
    else:
        xr = pytest.importorskip("xarray")
        with xr.open_zarr(out) as opened:
            dtypes, tags = {str(opened.embedding.dtype)}, opened.embedding.attrs
            values = np.moveaxis(opened.embedding.values, 0, -1)
    assert dtypes == {"float64"} and tags["satclip_dtype"] == "float64"
    expected = satclip.load(model, precision="float64").encode(centres()).numpy().reshape(5, 10, 8)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)  # (float32 values were 1e-8 off)


def test_a_map_is_float32_by_default_even_where_auto_would_choose_bf16(tmp_path, model, monkeypatch):  # noqa: F811
    """bf16's rounding (~4e-3) washed out fine maps: at 0.001° ~9 distinct values per band over 900 cells. `satclip
    map` loads in float32 unless --precision or $SATCLIP_PRECISION says otherwise, as `satclip evaluate` does, and
    records the precision as `satclip embed` records it: what was chosen, asked for, and why."""
    rasterio = pytest.importorskip("rasterio")
    from satclip.models import precision

    real_resolve = precision.resolve
    monkeypatch.setattr(precision, "bf16_support", lambda device="cpu": (True, "CPU with amx_bf16 (test)"))
    monkeypatch.setattr(precision, "resolve", lambda asked, encoder, device=None: precision.Choice(
        "bf16", "auto", "calibrated (test)", 2.0, 0.99995) if asked == "auto" else real_resolve(asked, encoder, device))
    monkeypatch.delenv(precision.ENV, raising=False)
    assert precision.resolve(precision.default(), None).precision == "bf16"  # ("auto" would choose bf16)
    assert main(["map", "--model", str(model), *ARGS, "-o", str(tmp_path / "m.tif")]) == 0
    with rasterio.open(tmp_path / "m.tif") as src:
        tags = src.tags()
    assert tags["satclip_precision"] == "float32"
    assert json.loads(tags["precision"]) == {"precision": "float32", "requested": "float32", "reason": "requested"}
    assert main(["map", "--model", str(model), *ARGS, "--precision", "auto", "-o", str(tmp_path / "auto.tif")]) == 0
    with rasterio.open(tmp_path / "auto.tif") as src:
        assert json.loads(src.tags()["precision"]) == {"precision": "bf16", "requested": "auto",
                                                       "reason": "calibrated (test)", "speedup": 2.0,
                                                       "min_cosine": 0.99995}  # fmt: skip
    monkeypatch.setenv(precision.ENV, "bf16")
    assert main(["map", "--model", str(model), *ARGS, "-o", str(tmp_path / "env.tif")]) == 0
    with rasterio.open(tmp_path / "env.tif") as src:
        assert json.loads(src.tags()["precision"])["precision"] == "bf16"


def test_a_png_map_records_what_made_it(tmp_path, model):  # noqa: F811
    """A PNG map carried no record of its model, precision or satclip version; its text chunks hold the GeoTIFF's
    tags."""
    pytest.importorskip("matplotlib")
    rasterio = pytest.importorskip("rasterio")
    image = pytest.importorskip("PIL.Image")
    argv = ["map", "--model", str(model), *ARGS]
    assert main([*argv, "--no-coastlines", "-o", str(tmp_path / "m.png")]) == 0
    assert main([*argv, "--pca", "3", "-o", str(tmp_path / "m.tif")]) == 0
    with image.open(tmp_path / "m.png") as png:
        text = dict(png.text)
    with rasterio.open(tmp_path / "m.tif") as src:
        tags = src.tags()
    for key in ("satclip_model_sha256", "satclip_version", "satclip_basis", "satclip_precision", "precision",
                "pca_mean", "pca_components"):  # fmt: skip
        assert text[key] == tags[key], key
    assert len(text["satclip_model_sha256"]) == 64 and json.loads(text["precision"])["precision"] == "float32"


def test_a_pca_map_is_named_so_and_keeps_its_projection(tmp_path, model):  # noqa: F811
    """A `--pca 3` GeoTIFF was named "SatCLIP location embedding" (the Zarr map was named for its components), and
    neither kept the PCA: other embeddings could not be projected onto the same components."""
    rasterio = pytest.importorskip("rasterio")
    xr = pytest.importorskip("xarray")
    argv = ["map", "--model", str(model), *ARGS, "--pca", "3"]
    assert main([*argv, "-o", str(tmp_path / "m.tif")]) == 0
    assert main([*argv, "-o", str(tmp_path / "m.zarr")]) == 0
    embeddings = satclip.load(model).encode(centres()).double().numpy()
    with rasterio.open(tmp_path / "m.tif") as src:
        tags, bands = src.tags(), np.moveaxis(src.read(), 0, -1).reshape(-1, 3)
    assert tags["long_name"] == "principal components of the SatCLIP location embedding"
    mean, components = np.array(json.loads(tags["pca_mean"])), np.array(json.loads(tags["pca_components"]))
    assert mean.shape == (8,) and components.shape == (3, 8)
    np.testing.assert_allclose((embeddings - mean) @ components.T, bands, rtol=0, atol=1e-5)
    with xr.open_zarr(tmp_path / "m.zarr") as opened:
        assert opened.pca_components.dims == ("component", "dim") and opened.pca_mean.dims == ("dim",)
        np.testing.assert_array_equal(opened.pca_components.values, components)
        np.testing.assert_array_equal(opened.pca_mean.values, mean)
        assert opened.pca.attrs["long_name"] == tags["long_name"]


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_a_map_across_the_antimeridian_says_how_its_longitudes_run(tmp_path, model, suffix):  # noqa: F811
    """A map of `--bbox 170 -20 -170 0` has longitudes 170 … 190; nothing in it said what those past 180 are."""
    pytest.importorskip("rasterio" if suffix == ".tif" else "zarr")

    def attrs(out):
        if suffix == ".tif":
            import rasterio

            with rasterio.open(out) as src:
                return src.tags()
        import zarr

        return dict(zarr.open_group(str(out), mode="r").attrs)

    base = ["map", "--model", str(model), "--resolution", "5", "--all"]
    assert main([*base, "--bbox", "170", "-20", "-170", "0", "-o", str(tmp_path / f"across{suffix}")]) == 0
    assert main([*base, "--bbox", *BBOX, "-o", str(tmp_path / f"europe{suffix}")]) == 0
    said = attrs(tmp_path / f"across{suffix}")["lon_range"]
    assert said.startswith("170 to 190: ") and "190 is -170" in said
    assert "lon_range" not in attrs(tmp_path / f"europe{suffix}")
