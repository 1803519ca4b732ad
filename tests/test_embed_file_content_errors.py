"""A point file satclip reads but refuses for its content is named once, not called unreadable."""

from __future__ import annotations

import pytest
import torch

import satclip
from satclip.cli import main
from satclip.io.native import write_native

from .conftest import one_error_line
from .test_embed_api import CONFIG

gpd = pytest.importorskip("geopandas")
shapely = pytest.importorskip("shapely")


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(CONFIG).eval()
    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    return write_native(tmp_path / "model", {"location_encoder": CONFIG}, tensors)


def test_polygons_are_named_as_content_not_as_an_unreadable_file(model, tmp_path, capsys):
    """A GeoParquet or GeoPackage of polygons without --centroids said 'poly.parquet: not a readable Parquet
    file: geometries must be points …', though the file was read: satclip's own refusal of its content now
    names the file once; a file the reader cannot read is still 'not a readable' one."""
    polygons = gpd.GeoDataFrame({"name": ["a"]}, geometry=[shapely.Point(10.0, 50.0).buffer(0.1)], crs="EPSG:4326")
    polygons.to_parquet(tmp_path / "poly.parquet")
    polygons.to_file(tmp_path / "poly.gpkg")
    (tmp_path / "damaged.parquet").write_bytes(b"hello")
    for name in ("poly.parquet", "poly.gpkg"):
        path = tmp_path / name
        argv = ["embed", str(path), "-o", str(tmp_path / f"{name}.out.parquet"), "--model", str(model), "--no-progress"]
        assert main(argv) == 2, name
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith(f"satclip: error: {path}: geometries must be points, found ['Polygon'] (rows 0)"), line
        assert "not a readable" not in line and line.count(str(path)) == 1 and "--centroids" in line, line
        assert main([*argv, "--centroids"]) == 0, name  # the file itself is readable
        capsys.readouterr()
    damaged = tmp_path / "damaged.parquet"
    argv = ["embed", str(damaged), "-o", str(tmp_path / "d.out.parquet"), "--model", str(model), "--no-progress"]
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.lower().startswith(f"satclip: error: {damaged}: not a readable parquet file: ".lower()), line
