"""GeoPandas in and out with the real geopandas: GeoDataFrames in any CRS, centroids on request, GeoParquet
and GeoPackage files through ``satclip embed``, dask-geopandas frames."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.embed.columns import ColumnError
from satclip.embed.inputs import geo_lonlat
from satclip.encoding.points import InvalidPointsError, great_circle_km
from satclip.errors import EXIT_RUNTIME
from satclip.io.native import write_native

from .test_embed_api import CONFIG

gpd = pytest.importorskip("geopandas")
shapely = pytest.importorskip("shapely")


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return satclip.LocationEncoder.from_config(CONFIG).eval()


@pytest.fixture
def model(tmp_path, encoder):
    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    return write_native(tmp_path / "model", {"location_encoder": CONFIG}, tensors)


def lonlat(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-180, 180, n), rng.uniform(-80, 80, n)])  # Web Mercator stops at ±85°


def mercator_frame(points: np.ndarray) -> gpd.GeoDataFrame:
    wgs84 = gpd.GeoDataFrame(
        {"name": [f"p{i}" for i in range(len(points))]},
        geometry=gpd.points_from_xy(points[:, 0], points[:, 1]),
        crs="EPSG:4326",
        index=pd.Index(np.arange(len(points)) * 7 + 3, name="site"),
    )
    return wgs84.to_crs("EPSG:3857")


def test_geodataframe_in_web_mercator(encoder, caplog):
    points = lonlat()
    frame = mercator_frame(points)
    with caplog.at_level(logging.INFO, logger="satclip"):
        out = satclip.embed(frame, model=encoder)
    assert any("reprojecting 500 geometries from EPSG:3857 to EPSG:4326" in r.getMessage() for r in caplog.records)
    assert isinstance(out, pd.DataFrame) and out.index.equals(frame.index)
    assert list(out.columns) == [f"emb_{j:03d}" for j in range(8)]
    expected = satclip.embed(points, model=encoder)  # the same points in degrees
    np.testing.assert_allclose(out.to_numpy(), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.loc[frame.index[::-1]].to_numpy(), expected[::-1], rtol=0, atol=1e-5)
    # a GeoSeries too, and a shuffled frame stays aligned on its index
    shuffled = frame.sample(frac=1.0, random_state=0)
    np.testing.assert_allclose(
        satclip.embed(shuffled.geometry, model=encoder).loc[frame.index].to_numpy(), expected, rtol=0, atol=1e-5
    )


def test_non_points_refused_or_reduced_to_centroids(encoder):
    centres = lonlat(20, seed=1)
    square = gpd.GeoSeries(gpd.points_from_xy(centres[:, 0], centres[:, 1]), crs="EPSG:4326").to_crs("EPSG:3857")
    polygons = square.buffer(5_000, cap_style="square")  # squares symmetric about the centre, in metres
    geometry = list(square)
    geometry[3], geometry[11] = polygons.iloc[3], polygons.iloc[11]
    frame = gpd.GeoDataFrame({"k": range(20)}, geometry=geometry, crs="EPSG:3857")
    refused = r"must be points, found \['Polygon'\] \(index labels 3, 11\).*centroids=True"
    with pytest.raises(ValueError, match=refused):
        satclip.embed(frame, model=encoder)
    out = satclip.embed(frame, model=encoder, centroids=True)
    np.testing.assert_allclose(out.to_numpy(), satclip.embed(centres, model=encoder), rtol=0, atol=1e-5)


def _box_moments(west, south, east, north) -> np.ndarray:
    """∬ r̂ dA over a lon/lat box on the unit sphere (dA = cos φ dφ dλ), in closed form."""
    w, e, s, n = np.radians([west, east, south, north])
    cos2 = (n - s) / 2 + (np.sin(2 * n) - np.sin(2 * s)) / 4  # ∫ cos²φ dφ
    sin_cos = (np.sin(n) ** 2 - np.sin(s) ** 2) / 2  # ∫ sin φ cos φ dφ
    return np.array([(np.sin(e) - np.sin(w)) * cos2, (np.cos(w) - np.cos(e)) * cos2, (e - w) * sin_cos])


def _direction(moments: np.ndarray) -> tuple[float, float]:
    x, y, z = moments
    return float(np.degrees(np.arctan2(y, x))), float(np.degrees(np.arctan2(z, np.hypot(x, y))))


def test_centroids_of_lon_lat_polygons_are_taken_on_the_sphere(encoder):
    """Taken in EPSG:6933, which cuts the globe at ±180°: Fiji (parts at 177…180° and −180…−179°) was embedded at
    89° E, a polar cap at 82.9° S instead of the pole."""
    from shapely.geometry import MultiPolygon, box

    from satclip.embed.centroids import sphere_centroids

    fiji = MultiPolygon([box(177, -19, 180, -16), box(-180, -19, -179, -16)])
    expected = _direction(_box_moments(177, -19, 181, -16))  # the same surface, its longitudes unwrapped
    assert expected[0] == pytest.approx(179.0)
    cap = box(-180, -90, 180, -80)
    hole = box(0, 0, 10, 10).difference(box(1, 1, 3, 9))  # a hole subtracts its moments
    cases = [(fiji, expected), (box(10, 40, 11, 41), _direction(_box_moments(10, 40, 11, 41))),
             (box(100, 60, 140, 75), _direction(_box_moments(100, 60, 140, 75))),
             (hole, _direction(_box_moments(0, 0, 10, 10) - _box_moments(1, 1, 3, 9)))]  # fmt: skip
    found = sphere_centroids([geometry for geometry, _ in cases])
    # (the edges are integrated in 0.25° pieces by Simpson's rule: 2e-9° off at most on these)
    np.testing.assert_allclose(found, [centre for _, centre in cases], rtol=0, atol=1e-7)
    assert sphere_centroids([cap])[0, 1] == pytest.approx(-90.0)
    frame = gpd.GeoDataFrame({"k": [0, 1]}, geometry=[fiji, cap], crs="EPSG:4326")
    out = satclip.embed(frame, model=encoder, centroids=True)
    np.testing.assert_allclose(out.to_numpy(), satclip.embed(np.array([expected, (0.0, -90.0)]), model=encoder),
                               rtol=0, atol=1e-5)  # fmt: skip


def test_centroids_of_lon_lat_points_and_lines_are_taken_on_the_sphere(encoder):
    """MultiPoints and lines took planar centroids in EPSG:6933: 179° E and 179° W came out at 0° instead of 180°, a
    line along 89° N from 0° to 180° at 89° N instead of nearer the pole."""
    from shapely.geometry import LineString, MultiLineString, MultiPoint

    from satclip.embed.centroids import sphere_centroids

    def mean_direction(lon, lat):  # (an independent reference: many points along the line, equally spaced)
        lam, phi = np.radians(lon), np.radians(lat)
        return _direction(np.array([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)]).sum(axis=1))

    along = np.linspace(0, 180, 200_001)
    polar = mean_direction(along, np.full_like(along, 89.0))
    assert polar[1] == pytest.approx(89.3633, abs=1e-4)
    meridian = np.linspace(-10, 30, 200_001)
    cases = [(MultiPoint([(179, 0), (-179, 0)]), (180.0, 0.0)), (LineString([(0, 89), (180, 89)]), polar),
             (MultiLineString([[(170, 10), (180, 10)], [(-180, 10), (-170, 10)], [(5, 5), (5, 5)]]),
              mean_direction(np.linspace(170, 190, 200_001), np.full(200_001, 10.0))),
             (LineString([(20, -10), (20, 30)]), mean_direction(np.full_like(meridian, 20.0), meridian)),
             (LineString([(3, 4), (3, 4)]), (3.0, 4.0)), (MultiPoint([(0, 0), (180, 0)]), (np.nan, np.nan)),
             (LineString(), (np.nan, np.nan))]  # fmt: skip
    found = sphere_centroids([geometry for geometry, _ in cases])
    # (a line is integrated in 0.25° pieces taken as great-circle arcs, which bulge from a parallel: 2e-5° off)
    np.testing.assert_allclose(np.abs(found[:, 0]), np.abs([c[0] for _, c in cases]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(found[:, 1], [c[1] for _, c in cases], rtol=0, atol=2e-5)
    frame = gpd.GeoDataFrame({"k": [0, 1]}, geometry=[cases[0][0], cases[1][0]], crs="EPSG:4326")
    out = satclip.embed(frame, model=encoder, centroids=True)
    np.testing.assert_allclose(out.to_numpy(), satclip.embed(np.array([(180.0, 0.0), polar]), model=encoder),
                               rtol=0, atol=1e-5)  # fmt: skip


def test_missing_geometries_are_invalid_points(encoder):
    """A missing geometry (geom_type NaN in geopandas 1.x) was taken for a non-point: refused even with
    skip_invalid, as the docstring and the CLI have it (NaN rows)."""
    points = lonlat(4, seed=2)
    geometry = [shapely.Point(*points[0]), None, shapely.Point(), shapely.Point(*points[3])]
    frame = gpd.GeoDataFrame({"k": range(4)}, geometry=geometry, crs="EPSG:4326")
    out = satclip.embed(frame, model=encoder, skip_invalid=True)
    assert np.isnan(out.to_numpy()[1:3]).all()
    np.testing.assert_allclose(out.to_numpy()[[0, 3]], satclip.embed(points[[0, 3]], model=encoder), rtol=0, atol=1e-5)

    with pytest.raises(InvalidPointsError, match="index label 1: .*index label 2: "):
        satclip.embed(frame, model=encoder)


def test_geoparquet_and_geopackage_through_the_cli(model, encoder, tmp_path):
    points = lonlat(300, seed=2)
    frame = mercator_frame(points).reset_index()
    expected = satclip.embed(points, model=encoder)
    frame.to_parquet(tmp_path / "points.parquet")
    frame.to_file(tmp_path / "points.gpkg")
    for name in ("points.parquet", "points.gpkg"):
        out = tmp_path / f"{name}.emb.parquet"
        assert main(["embed", str(tmp_path / name), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
        table = pq.read_table(out)
        np.testing.assert_allclose(np.stack(table.column("lon").to_numpy()), points[:, 0], atol=1e-9)
        values = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-5)
        assert table.column("site").to_pylist() == frame["site"].tolist()
    # GeoParquet in, GeoParquet out: the geometry column and its metadata are kept
    back = gpd.read_parquet(tmp_path / "points.parquet.emb.parquet")
    assert back.crs.to_epsg() == 3857 and back.geometry.geom_equals(frame.geometry).all()
    # the geometry's lon/lat may be named (they were an 'unexpected error (KeyError)'); swapped, they are refused
    named = ["embed", str(tmp_path / "points.parquet"), "--model", str(model), "--no-progress", "-o"]
    assert main([*named, str(tmp_path / "named.parquet"), "--lon-col", "lon", "--lat-col", "lat"]) == 0
    assert pq.read_table(tmp_path / "named.parquet").equals(pq.read_table(tmp_path / "points.parquet.emb.parquet"))
    assert main([*named, str(tmp_path / "swapped.parquet"), "--lon-col", "lat", "--lat-col", "lon"]) == 2


def test_geometry_coordinates_never_take_an_attributes_name(model, tmp_path):
    """GeoJSON properties 'lon' and 'geometry_lon' made the geometry's longitude a second 'geometry_lon':
    'unexpected error (… exists 2 times)'."""
    feature = {"type": "Feature", "properties": {"lon": 1, "geometry_lon": 2},
               "geometry": {"type": "Point", "coordinates": [13.4, 52.5]}}  # fmt: skip
    source = tmp_path / "p.geojson"
    source.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    out = tmp_path / "p.parquet"
    assert main(["embed", str(source), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    table = pq.read_table(out)
    assert table.column_names[:4] == ["lon", "geometry_lon", "geometry_lon_2", "geometry_lat_2"]
    assert table.column("geometry_lon_2").to_pylist() == [13.4] and table.column("lon").to_pylist() == [1]


def test_a_geometry_used_over_lon_lat_columns_is_said(model, tmp_path, caplog):
    """A GeoParquet or GeoJSON file with a point geometry and lat/lon columns was embedded at the geometry's points,
    the columns left unused without a word; one line now says so, and how to use the columns instead."""
    frame = gpd.GeoDataFrame({"lat": [1.0], "lon": [2.0]}, geometry=gpd.points_from_xy([13.4], [52.5]), crs=4326)
    frame.to_parquet(tmp_path / "both.parquet")
    feature = {"type": "Feature", "properties": {"Latitude": 1.0}, "geometry": {"type": "Point", "coordinates": [13.4,
               52.5]}}  # fmt: skip
    (tmp_path / "both.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    for name, said in (("both.parquet", "'lat', 'lon'"), ("both.geojson", "'Latitude'")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="satclip"):
            assert main(["embed", str(tmp_path / name), "-o", str(tmp_path / f"{name}.npy"), "--model", str(model),
                         "--no-progress"]) == 0  # fmt: skip
        assert (f"{tmp_path / name}: the coordinates are its point geometry's; its column(s) {said} are not used "
                "(--lon-col/--lat-col use them instead)") in caplog.text  # fmt: skip
    lonlat = np.array([[13.4, 52.5]])
    np.testing.assert_allclose(np.load(tmp_path / "both.parquet.npy"), satclip.load(model).encode(lonlat).numpy(),
                               atol=1e-6)  # fmt: skip


def test_a_geometry_used_over_lon_lat_columns_is_said_in_python_too(model, caplog):
    """satclip.embed(GeoDataFrame) with a point geometry and lat/lon columns embedded the geometry without the
    word a file of the same frame gets; lon_col=/lat_col= embed the columns."""
    frame = gpd.GeoDataFrame({"lat": [1.0], "lon": [2.0]}, geometry=gpd.points_from_xy([13.4], [52.5]), crs=4326)
    encoder = satclip.load(model)
    with caplog.at_level(logging.INFO, logger="satclip"):
        np.testing.assert_array_equal(satclip.embed(frame, encoder), encoder.encode([[13.4, 52.5]]).numpy())
    assert ("the GeoDataFrame: the coordinates are its point geometry's; its column(s) 'lat', 'lon' are not used "
            "(lon_col=/lat_col= use them instead)") in caplog.text  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="satclip"):
        np.testing.assert_array_equal(satclip.embed(frame, encoder, lon_col="lon", lat_col="lat"),
                                      encoder.encode([[2.0, 1.0]]).numpy())  # fmt: skip
    assert "are not used" not in caplog.text


def test_points_outside_their_crs_area_are_named_so(model, caplog):
    """A point that reprojecting to EPSG:4326 made infinite was refused as "(lon=inf, lat=inf) … Expected finite", as
    if the user's data were; a CRS from a proj string was logged as reprojected "from unknown"."""
    encoder = satclip.load(model)
    frame = gpd.GeoDataFrame(geometry=gpd.points_from_xy([1e8, 0.0], [1e8, 0.0]), crs="ESRI:54009", index=["far", "ok"])
    with pytest.raises(InvalidPointsError) as err:
        satclip.embed(frame, encoder)
    assert str(err.value) == (
        "index labels 'far': outside the valid area of ESRI:54009 (reprojecting to EPSG:4326 gives inf/NaN, or a place "
        "that does not project back to them): check the points and their CRS, or drop those rows (skip_invalid=True "
        "embeds them as NaN)")  # fmt: skip
    embedded = satclip.embed(frame, encoder, skip_invalid=True)
    assert np.isnan(embedded.loc["far"]).all() and np.isfinite(embedded.loc["ok"]).all()
    with caplog.at_level(logging.INFO, logger="satclip"):
        satclip.embed(gpd.GeoDataFrame(geometry=gpd.points_from_xy([1e5], [1e5]), crs="+proj=moll +lon_0=10"), encoder)
    assert "reprojecting 1 geometries from +proj=moll +lon_0=10" in caplog.text


def test_points_that_proj_clamps_are_outside_their_crs_area_and_wrapped_ones_are_not(encoder):
    """Projected points outside their CRS's valid area that PROJ returned finite were embedded at other places without
    a word: UTM 33N's (-1e7, 1e9) at (-53.0, 0.67), Web Mercator's y = 1e9 m at the pole (y = 2.4e8 m back), its
    x = 1e20 m (floats 16 km apart) at 121°E. They are refused as points that PROJ makes inf are, by index label;
    skip_invalid makes them NaN. Web Mercator's y = 1e8 m is a Mercator point (89.99998°N, there and back exactly),
    embedded; so are x = 5e7 m and -6e7 m, whole turns around the cylinder (449°E is 89.16°E, 538.99°W 178.99°W:
    they were refused as outside it)."""
    turn = 2 * np.pi * 6378137.0  # (Web Mercator's x-period, metres)
    xy = ([5e7, -6e7, 1e6, 0.0, 0.0, 1e20], [0.0, 0.0, 1e6, 1e8, 1e9, 0.0])
    frame = gpd.GeoDataFrame(geometry=gpd.points_from_xy(*xy), crs="EPSG:3857",
                             index=["wide", "west", "ok", "polar", "clamped", "huge"])  # fmt: skip
    with pytest.raises(InvalidPointsError, match=r"^index labels 'clamped', 'huge': outside the valid area of EPSG"):
        satclip.embed(frame, encoder)
    embedded = satclip.embed(frame, encoder, skip_invalid=True)
    assert np.isnan(embedded.loc[["clamped", "huge"]]).all(axis=None)
    assert np.isfinite(embedded.loc[["ok", "polar"]]).all(axis=None)
    wrapped = np.array([[(5e7 / turn * 360 + 180) % 360 - 180, 0.0], [(-6e7 / turn * 360 + 180) % 360 - 180, 0.0]])
    np.testing.assert_allclose(wrapped, [[89.15764, 0.0], [-178.98917, 0.0]], atol=1e-5)
    np.testing.assert_allclose(geo_lonlat(frame.loc[["wide", "west"]], note=False), wrapped, rtol=0, atol=1e-9)
    np.testing.assert_allclose(embedded.loc[["wide", "west"]], satclip.embed(wrapped, encoder), rtol=0, atol=1e-5)
    utm = gpd.GeoDataFrame(geometry=[shapely.Point(-1e7, 1e9), shapely.Point(5e5, 5e6)], crs="EPSG:32633")
    with pytest.raises(InvalidPointsError, match=r"^index labels 0: outside the valid area of EPSG:32633 ") as err:
        satclip.embed(utm, encoder)
    assert list(err.value.bad_rows) == [0]


@pytest.mark.parametrize(
    ("crs", "past"), [("EPSG:3857", 1.0), ("EPSG:3857", 5e4), ("EPSG:4087", 2e4), ("EPSG:6933", 1e3)]
)
def test_points_just_past_the_antimeridian_of_a_cylindrical_projection_are_embedded_wrapped(encoder, crs, past):
    """Data crossing the dateline in a cylindrical projection has x a little past its edge (x of 180°): PROJ reads
    them at the other edge, one turn (the x-period) round, and they were refused as outside the CRS's valid area (their
    round trip misses by ~40,000 km). They are embedded at their wrapped longitudes, either side, at any latitude."""
    from pyproj import Transformer

    forward = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    edge, _ = forward.transform(180.0, 0.0)
    lat = np.array([0.0, 40.0, -60.0, 80.0])
    _, y = forward.transform(np.zeros_like(lat), lat)
    x = np.repeat([edge + past, -edge - past], len(lat))
    frame = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, np.tile(y, 2)), crs=crs)
    degrees = past / (2 * edge) * 360  # (x is linear in longitude)
    wrapped = np.column_stack([np.repeat([-180 + degrees, 180 - degrees], len(lat)), np.tile(lat, 2)])
    back = geo_lonlat(frame, refuse_lost=True, note=False)  # (6933's inverse iterates: lat to 1e-8°, 1 mm)
    np.testing.assert_allclose(back, wrapped, rtol=0, atol=1e-7)
    np.testing.assert_allclose(satclip.embed(frame, encoder), satclip.embed(wrapped, encoder), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("crs", "lon", "lat"),
    [
        ("EPSG:3857", (-180.0, 180.0), (-89.0, 89.0)),  # beyond its area of use (±85.06°): Mercator points still
        ("EPSG:3395", (-180.0, 180.0), (-89.0, 89.0)),  # (area of use 80°S-84°N)
        ("EPSG:32633", (-15.0, 45.0), (-80.0, 84.0)),  # UTM 33N up to 30° either side of its 6° zone, south too
        ("EPSG:32733", (-15.0, 45.0), (-80.0, 84.0)),
        ("EPSG:3413", (-180.0, 180.0), (30.0, 90.0)),  # polar stereographic, 30° beyond its area of use
        ("EPSG:6933", (-179.9, 179.9), (-86.0, 86.0)),
        ("EPSG:8857", (-179.9, 179.9), (-90.0, 90.0)),  # Equal Earth: an iterative inverse (2 mm)
        ("EPSG:27700", (-12.0, 5.0), (48.0, 62.0)),  # a datum shift, beyond its area of use
        ("EPSG:2263", (-80.0, -68.0), (38.0, 45.0)),  # US survey feet
    ],
)  # fmt: skip
def test_valid_projected_points_near_the_edges_are_embedded(encoder, crs, lon, lat):
    """The valid-area check refuses none of a grid of points over and beyond the areas of use of common CRSs (points
    projected from lon/lat), and they come back where they were (180°E as 180°W, a pole at any longitude)."""
    grid = np.column_stack([a.ravel() for a in np.meshgrid(np.linspace(*lon, 61), np.linspace(*lat, 41))])
    frame = gpd.GeoDataFrame(geometry=gpd.points_from_xy(grid[:, 0], grid[:, 1]), crs="EPSG:4326").to_crs(crs)
    back = geo_lonlat(frame, refuse_lost=True, note=False)
    assert great_circle_km(back, grid).max() < 0.5  # (OSGB36's datum shift beyond its area: 200 m off)
    assert np.isfinite(satclip.embed(frame, encoder)).all(axis=None)


def test_dask_geopandas_points_outside_their_crs_area_are_named_so(encoder):
    """dask-geopandas partitions refuse such points as satclip.embed does (they were embedded at PROJ's places)."""
    dask_geopandas = pytest.importorskip("dask_geopandas")
    frame = gpd.GeoDataFrame(geometry=gpd.points_from_xy([1e6, 0.0], [1e6, 1e9]), crs="EPSG:3857", index=["ok", "far"])
    lazy = dask_geopandas.from_geopandas(frame, npartitions=1)
    with pytest.raises(InvalidPointsError, match=r"^partition 0: index labels 'far': outside the valid area of EPSG"):
        satclip.embed(lazy, model=encoder).compute(scheduler="sync")
    embedded = satclip.embed(lazy, model=encoder, skip_invalid=True).compute(scheduler="sync")
    assert np.isnan(embedded.loc["far"]).all() and np.isfinite(embedded.loc["ok"]).all()


def test_missing_extras_are_one_line_naming_them(model, tmp_path, capsys, monkeypatch):
    """A GeoPackage without geopandas, and --engine dask without distributed: one line naming the extra."""
    frame = mercator_frame(lonlat(20, seed=3)).reset_index()
    frame.to_file(tmp_path / "points.gpkg")
    frame.drop(columns="geometry").assign(lon=0.0, lat=0.0).to_parquet(tmp_path / "plain.parquet")
    cases = [("geopandas", "points.gpkg", [], "geo"), ("distributed", "plain.parquet", ["--engine", "dask"], "dask")]
    for module, name, extra_args, extra in cases:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, module, None)  # as if not installed
            argv = ["embed", str(tmp_path / name), "-o", str(tmp_path / f"{extra}.parquet"), "--model", str(model)]
            assert main([*argv, *extra_args, "--no-progress"]) == EXIT_RUNTIME  # (the environment, not the input)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pip install 'satclip[{extra}]'" in err[0], err
        assert not (tmp_path / f"{extra}.parquet").exists()


def test_geoparquet_polygons_need_centroids(model, tmp_path, capsys):
    polygons = gpd.GeoDataFrame(geometry=[shapely.Point(10.0, 50.0).buffer(0.1)], crs="EPSG:4326")
    polygons.to_parquet(tmp_path / "areas.parquet")
    argv = ["embed", str(tmp_path / "areas.parquet"), "-o", str(tmp_path / "o.parquet"), "--model", str(model)]
    assert main([*argv, "--no-progress"]) == 2
    assert "must be points, found ['Polygon']" in capsys.readouterr().err
    assert main([*argv, "--no-progress", "--centroids"]) == 0
    lon = pq.read_table(tmp_path / "o.parquet").column("lon").to_numpy()
    assert abs(lon[0] - 10.0) < 1e-6  # the centroid of a circle about (10, 50), computed in an equal-area CRS


def test_geojson_polygons_need_centroids(model, tmp_path, capsys):
    """A GeoJSON of a point and a polygon: refused, naming --centroids; with it, the polygon's centroid (as
    for GeoParquet and GeoPackage) and the point as it is, properties kept."""
    features = [
        {"type": "Feature", "properties": {"name": "a"}, "geometry": {"type": "Point", "coordinates": [13.4, 52.5]}},
        {"type": "Feature", "properties": {"name": "b"},
         "geometry": {"type": "Polygon", "coordinates": [[[9.9, 49.9], [10.1, 49.9], [10.1, 50.1], [9.9, 50.1],
                                                          [9.9, 49.9]]]}},
    ]  # fmt: skip
    path = tmp_path / "areas.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    argv = ["embed", str(path), "-o", str(tmp_path / "o.parquet"), "--model", str(model), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "feature 1 is a Polygon" in err and "--centroids" in err
    assert main([*argv, "--centroids"]) == 0
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column("name").to_pylist() == ["a", "b"]
    np.testing.assert_allclose(table.column("lon").to_numpy(), [13.4, 10.0], atol=1e-6)
    np.testing.assert_allclose(table.column("lat").to_numpy(), [52.5, 50.0], atol=1e-3)


def test_dask_geopandas_frame(encoder):
    dask_geopandas = pytest.importorskip("dask_geopandas")
    points = lonlat(1000, seed=3)
    frame = mercator_frame(points)
    lazy = satclip.embed(dask_geopandas.from_geopandas(frame, npartitions=4), model=encoder)
    out = lazy.compute(scheduler="sync")
    assert out.index.equals(frame.index)
    np.testing.assert_allclose(out.to_numpy(), satclip.embed(points, model=encoder), rtol=0, atol=1e-5)


def test_geojson_properties_of_mixed_types_ids_and_a_byte_order_mark(model, tmp_path):
    """Valid GeoJSON was refused as 'not a readable geojson file': a property of mixed JSON types across
    features (1 and "x"), a UTF-8 byte-order mark; feature ids were dropped."""
    features = [{"type": "Feature", "id": ident, "properties": props, "geometry": {"type": "Point", "coordinates": xy}}
                for ident, props, xy in (("a", {"v": 1}, [13.4, 52.5]), ("b", {"v": "x"}, [-58.4, -34.6]),
                                         ("c", {"v": {"k": 1}, "n": 2}, [2.0, 3.0]))]  # fmt: skip
    source = tmp_path / "mixed.geojson"
    source.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8-sig")
    out = tmp_path / "mixed.parquet"
    assert main(["embed", str(source), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == ["a", "b", "c"]
    assert table.column("v").to_pylist() == ["1", "x", '{"k": 1}'] and table.column("n").to_pylist() == [None, None, 2]
    assert table.column("lon").to_pylist() == [13.4, -58.4, 2.0]


def test_a_geojson_feature_or_point_alone_is_a_table_of_one_row(model, tmp_path, capsys):
    """Valid RFC 7946 GeoJSON, a top-level Feature or a bare Point geometry, was refused: "expected a GeoJSON
    FeatureCollection, got 'Feature'". Each is read as one row; other JSON names what is read."""
    point = {"type": "Point", "coordinates": [13.4, 52.5]}
    for name, data in (("feature", {"type": "Feature", "id": 7, "properties": {"name": "Berlin"}, "geometry": point}),
                       ("point", point)):  # fmt: skip
        source, out = tmp_path / f"{name}.geojson", tmp_path / f"{name}.parquet"
        source.write_text(json.dumps(data))
        assert main(["embed", str(source), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
        table = pq.read_table(out)
        assert table.num_rows == 1 and table.column("lon").to_pylist() == [13.4]
        assert table.column("lat").to_pylist() == [52.5]
    assert pq.read_table(tmp_path / "feature.parquet").column("name").to_pylist() == ["Berlin"]
    (tmp_path / "other.geojson").write_text(json.dumps({"type": "Topology"}))
    assert main(["embed", str(tmp_path / "other.geojson"), "-o", str(tmp_path / "o.parquet"), "--model", str(model),
                 "--no-progress"]) == 2  # fmt: skip
    assert ("expected GeoJSON (a FeatureCollection, a Feature or a geometry), got 'Topology'"
            in capsys.readouterr().err)  # fmt: skip


def test_a_wkb_column_without_geoparquet_metadata_is_named_with_the_fix(model, tmp_path, capsys):
    """A plain Parquet file whose geometry column holds WKB bytes (no GeoParquet 'geo' key) was told "no longitude
    column … Name them with lon_col=NAME", which naming the geometry cannot satisfy; the error names the column as
    WKB without GeoParquet metadata and how to write it, and bytes named otherwise are not."""
    import pyarrow as pa

    wkb = [shapely.to_wkb(shapely.Point(13.4, 52.5)), shapely.to_wkb(shapely.Point(2.0, 3.0))]
    for name, named in (("geometry", True), ("the_geom", True), ("payload", False)):
        source = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"id": [1, 2], name: wkb}), source)
        assert main(["embed", str(source), "-o", str(tmp_path / "o.parquet"), "--model", str(model),
                     "--no-progress"]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert (f"Column(s) [{name!r}] hold bytes, as WKB geometries without GeoParquet metadata do: write the file "
                "with geopandas (GeoDataFrame.to_parquet records its geometry column), or add lon and lat columns."
                in err) is named, err  # fmt: skip
    gpd.GeoDataFrame({"id": [1, 2]}, geometry=gpd.GeoSeries.from_wkb(wkb), crs="EPSG:4326").to_parquet(source)
    assert main(["embed", str(source), "-o", str(tmp_path / "o.parquet"), "--model", str(model), "--no-progress"]) == 0


def test_a_frame_with_a_wkb_column_is_told_how_to_make_it_a_geodataframe(encoder):
    """A GeoParquet file read with pandas holds its geometry as WKB bytes; satclip.embed(frame) was told "no
    longitude column … Name them with lon_col=NAME", which no column satisfies. The error names the column and the
    GeoDataFrame that embeds it (pandas and pyarrow tables alike); bytes named otherwise are not named."""
    import pyarrow as pa

    wkb = [shapely.to_wkb(shapely.Point(13.4, 52.5)), shapely.to_wkb(shapely.Point(2.0, 3.0))]
    for name, named in (("geometry", True), ("wkb_geometry", True), ("payload", False)):
        frame = pd.DataFrame({"id": [1, 2], name: wkb})
        for table in (frame, pa.Table.from_pandas(frame)):
            with pytest.raises(ColumnError) as err:
                satclip.embed(table, model=encoder)
            hint = f"geopandas.GeoDataFrame(frame, geometry=geopandas.GeoSeries.from_wkb(frame[{name!r}], crs=CRS))"
            assert (hint in str(err.value)) is named, str(err.value)
            assert ("lon_col=NAME" in str(err.value)) is not named, str(err.value)  # (no column to name)
    frame = gpd.GeoDataFrame({"id": [1, 2]}, geometry=gpd.GeoSeries.from_wkb(wkb), crs="EPSG:4326")
    assert satclip.embed(frame, model=encoder).shape[0] == 2


def test_geopackage_feature_ids_are_kept(model, tmp_path):
    """A GeoPackage's FIDs (its features' ids, the key to join the embeddings back on) were dropped, while
    GeoJSON's ids are kept; they come back as a column named as the file names its FID column."""
    frame = gpd.GeoDataFrame({"fid": [1, 5, 1001], "name": ["a", "b", "c"]},
                             geometry=gpd.points_from_xy([13.4, 2.3, -74.0], [52.5, 48.9, 40.7]), crs="EPSG:4326")
    frame.to_file(tmp_path / "fid.gpkg")
    frame.drop(columns="fid").to_file(tmp_path / "objectid.gpkg", layer_options={"FID": "objectid"})
    for name, column, ids in (("fid.gpkg", "fid", [1, 5, 1001]), ("objectid.gpkg", "objectid", [1, 2, 3])):
        out = tmp_path / f"{name}.parquet"
        assert main(["embed", str(tmp_path / name), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
        table = pq.read_table(out)
        assert table.column_names == [column, "name", "lon", "lat", "embedding"]
        assert table.column(column).to_pylist() == ids


def test_a_table_without_geometries_read_as_a_geopackage_is_named(model, tmp_path, capsys):
    """A CSV of lon/lat given --input-format gpkg: GDAL reads it as a table without geometries, which ended in
    "unexpected error (AttributeError): 'DataFrame' object has no attribute 'geometry' … please report it"."""
    source = tmp_path / "points.csv"
    source.write_text("lon,lat\n13.4,52.5\n-58.4,-34.6\n")
    out = tmp_path / "o.parquet"
    argv = ["embed", str(source), "-o", str(out), "--model", str(model), "--input-format", "gpkg", "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"satclip: error: {source} holds no geometries as a GeoPackage: if it is a table with lon/lat columns, drop "
        "--input-format (or name its format: csv, parquet)"
    )
    assert not out.exists()


def test_gdal_warnings_on_reading_a_geopackage_are_debug_lines(model, tmp_path, caplog):
    """pyogrio's RuntimeWarnings (GDAL's "bad application_id" of a GeoPackage another tool wrote) were printed as
    raw Python warnings, each with its source line."""
    import sqlite3
    import warnings

    source = tmp_path / "appid.gpkg"
    gpd.GeoDataFrame({"k": [1]}, geometry=gpd.points_from_xy([13.4], [52.5]), crs="EPSG:4326").to_file(source)
    with sqlite3.connect(source) as database:
        database.execute("PRAGMA application_id=0")
    database.close()
    argv = ["embed", str(source), "-o", str(tmp_path / "o.parquet"), "--model", str(model), "--no-progress"]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG, logger="pyogrio"):
        warnings.simplefilter("always")
        assert main(argv) == 0
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert any("bad application_id" in r.getMessage() and r.levelname == "DEBUG" for r in caplog.records)


def test_a_geopackage_attribute_table_gives_its_lon_lat_columns(model, encoder, tmp_path, capsys):
    """A GeoPackage table without geometries but with lon/lat columns was refused as "holds no geometries as a
    GeoPackage: … drop --input-format", which was not given; its columns are found or named as a CSV's."""
    pyogrio = pytest.importorskip("pyogrio")
    source = tmp_path / "attr.gpkg"
    pyogrio.write_dataframe(pd.DataFrame({"name": ["b", "x"], "Longitude": [13.4, 2.0], "LAT": [52.5, 48.9]}), source,
                            layer="tab")  # fmt: skip
    out = tmp_path / "o.parquet"
    assert main(["embed", str(source), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["fid", "name", "Longitude", "LAT", "embedding"]
    values = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    expected = satclip.embed(np.array([[13.4, 52.5], [2.0, 48.9]]), model=encoder)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-5)
    named = tmp_path / "named.gpkg"
    pyogrio.write_dataframe(pd.DataFrame({"a": [13.4, 2.0], "b": [52.5, 48.9]}), named, layer="tab")
    argv = ["embed", str(named), "-o", str(tmp_path / "n.parquet"), "--model", str(model), "--no-progress"]
    assert main(argv) == 2 and "no longitude column and no latitude column" in capsys.readouterr().err
    assert main([*argv, "--lon-col", "a", "--lat-col", "b"]) == 0
    values = np.stack(pq.read_table(tmp_path / "n.parquet").column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-5)


def test_centroids_of_a_table_without_geometries_are_refused(model, tmp_path, capsys):
    """--centroids with a GeoPackage attribute table (read by its lon/lat columns) or a plain Parquet file was
    accepted and did nothing, while it is refused for a CSV."""
    pyogrio = pytest.importorskip("pyogrio")
    frame = pd.DataFrame({"name": ["b", "x"], "lon": [13.4, 2.0], "lat": [52.5, 48.9]})
    pyogrio.write_dataframe(frame, tmp_path / "attr.gpkg", layer="tab")
    frame.to_parquet(tmp_path / "plain.parquet")
    for name, fmt in (("attr.gpkg", "gpkg"), ("plain.parquet", "parquet")):
        out = tmp_path / f"{name}.out.parquet"
        argv = ["embed", str(tmp_path / name), "-o", str(out), "--model", str(model), "--no-progress", "--centroids"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"satclip: error: --centroids embeds the centroids of geometries, and {tmp_path / name} ({fmt}) "
                       "holds points as lon/lat: drop --centroids"] and not out.exists()


@pytest.mark.parametrize("name", ["geometries.gpkg", "geometries.geojson"])
def test_a_file_of_geometries_without_attributes_is_embedded(model, encoder, tmp_path, name):
    """A GeoPackage or GeoJSON holding geometries and no attribute column was refused as "not a readable gpkg
    file: Added column's length must match table's length" (a table of no columns has no rows)."""
    points = lonlat(20, seed=4)
    gpd.GeoDataFrame(geometry=gpd.points_from_xy(points[:, 0], points[:, 1]), crs="EPSG:4326").to_file(tmp_path / name)
    out = tmp_path / "out.parquet"
    assert main(["embed", str(tmp_path / name), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    table = pq.read_table(out)
    np.testing.assert_allclose(np.stack(table.column("lon").to_numpy()), points[:, 0], atol=1e-9)
    values = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(values, satclip.embed(points, model=encoder), rtol=0, atol=1e-5)


def test_geometries_without_a_crs_are_said_once_and_metres_among_them_named(encoder, monkeypatch, caplog):
    """A GeoDataFrame without a CRS logged its warning on every call (100 in a loop of 100), and one holding metres
    (EPSG:3857 without its CRS) was refused as invalid points without a word of projections."""
    from satclip.embed import inputs

    monkeypatch.setattr(inputs, "_said", set(), raising=False)
    degrees = gpd.GeoDataFrame(geometry=gpd.points_from_xy([13.4, -58.4], [52.5, -34.6]))
    with caplog.at_level(logging.WARNING, logger="satclip.embed.inputs"):
        for _ in range(3):
            satclip.embed(degrees, model=encoder)
    assert caplog.text.count("geometries have no CRS") == 1
    metres = gpd.GeoDataFrame(geometry=gpd.points_from_xy([1491681.17, -6500000.0], [6891000.0, -4100000.0]))
    with pytest.raises(InvalidPointsError, match=r"Coordinates as large as 6,891,000 look projected \(metres or "
                                                 r"feet\).*gdf\.set_crs"):  # fmt: skip
        satclip.embed(metres, model=encoder)
