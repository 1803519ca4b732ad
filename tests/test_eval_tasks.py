"""Evaluation tasks: real label sources spot-checked at known places, the country lookup against brute
force, the station table's download path (faked transport) and user tables."""

from __future__ import annotations

import hashlib
import io
import logging
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.conftest import AIR_TEMPERATURE_CSV, require

pytest.importorskip("shapefile")
pytest.importorskip("h5py")
pytest.importorskip("tifffile")

from satclip.eval import naturalearth  # noqa: E402
from satclip.eval.tasks import Task, TaskOptions, elevation, era5, koppen, landcover, load_task, names, table_task  # noqa: E402  # noqa: E402
from satclip.eval.tasks import air_temperature as air  # noqa: E402
from satclip.io.hub import DownloadError  # noqa: E402

PARIS, MANAUS, SAHARA, CAIRO, MOSCOW = (2.35, 48.85), (-60.02, -3.1), (10.0, 23.0), (31.24, 30.04), (37.62, 55.75)


def test_era5_labels_match_known_climates():
    pts = np.array([PARIS, MANAUS, SAHARA, CAIRO, MOSCOW])
    temp = era5.annual_mean_temperature(pts)
    # spot values of the survey (docs/data.md): Paris 11.8, Manaus 26.8, Sahara 25.0, Cairo 22.6, Moscow 6.1 °C
    np.testing.assert_allclose(temp, [11.8, 26.8, 25.0, 22.6, 6.1], atol=1.5)
    rain = era5.annual_precipitation(pts)
    assert 550 < rain[0] < 950 and rain[1] > 2000 and rain[2] < 60 and rain[3] < 60


def test_altitude_koppen_landcover_spot_checks():
    everest, dead_sea, tibet, pacific = (86.93, 27.99), (35.5, 31.5), (88.0, 33.0), (-150.0, 0.0)
    alt = elevation.altitude_m(np.array([everest, dead_sea, tibet, pacific]))
    assert alt[0] > 5000 and alt[1] < -100 and 4500 < alt[2] < 5600 and np.isnan(alt[3])
    names_ = koppen.zone_names()
    zones = [names_[v] for v in koppen.zone_values(np.array([PARIS, SAHARA, MANAUS, MOSCOW, pacific]))]
    assert zones == ["Cfb", "BWh", "Af", "Dfb", "Ocean"]
    iowa, congo = (-93.5, 42.0), (22.0, 0.0)
    igbp = [landcover.IGBP_CLASSES[v] for v in landcover.igbp_values(np.array([SAHARA, congo, iowa, pacific]))]
    assert igbp == ["barren", "evergreen broadleaf forest", "cropland", "water"]


def _brute_force_country(point: np.ndarray, boxes: np.ndarray) -> list[int]:
    """Every country whose rings contain the point by the even-odd rule (no raster)."""
    from matplotlib.path import Path

    hits = []
    candidates = np.flatnonzero((boxes[:, 0] <= point[0]) & (point[0] <= boxes[:, 2]) & (boxes[:, 1] <= point[1])
                                & (point[1] <= boxes[:, 3]))  # fmt: skip
    for index in candidates:
        rings = naturalearth._rings()[index]
        inside = False
        for ring in rings:
            if ring[:, 0].min() <= point[0] <= ring[:, 0].max() and ring[:, 1].min() <= point[1] <= ring[:, 1].max():
                inside ^= bool(Path(ring).contains_point(point))
        if inside:
            hits.append(index)
    return hits


def test_country_lookup_agrees_with_brute_force_point_in_polygon():
    from satclip.data.land import sample_land_points

    points = sample_land_points(400, seed=123)
    fast = naturalearth.country_index(points)
    boxes = np.array([np.concatenate([np.min([r.min(0) for r in rings], 0), np.max([r.max(0) for r in rings], 0)])
                      if rings else [np.inf, np.inf, -np.inf, -np.inf] for rings in naturalearth._rings()])  # fmt: skip
    checked = 0
    for point, got in zip(points, fast, strict=True):
        hits = _brute_force_country(point, boxes)
        if len(hits) == 1:  # inside exactly one polygon: the lookup must agree
            assert got == hits[0], (point, naturalearth.countries().codes[[got, hits[0]]])
            checked += 1
    assert checked >= 380  # the rest lie off every polygon (coast) and take the nearest country


def test_country_and_continent_of_known_places():
    maseru, vatican, off_boulogne = (27.48, -29.31), (12.4534, 41.9029), (1.45, 50.85)
    codes, conts = naturalearth.lookup(np.array([PARIS, maseru, vatican, MANAUS, off_boulogne, (151.2, -33.87)]))
    assert list(codes[:4]) == ["FRA", "LSO", "VAT", "BRA"]  # an enclave and a 0.44 km² state
    assert codes[4] == "FRA"  # in the Channel off Boulogne: the nearest country
    assert list(conts) == ["Europe", "Africa", "Europe", "South America", "Europe", "Oceania"]


OFFLINE = ("era5-temperature", "era5-precipitation", "elevation", "koppen", "landcover", "country")


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_tasks_are_well_formed(name):
    options = TaskOptions(n_points=600, min_class_points=10)
    task = load_task(name, options)
    assert task.points.shape == (len(task), 2) and (300 if name == "country" else 500) <= len(task) <= 600
    assert np.isfinite(task.targets).all()
    assert set(task.continents) <= set(naturalearth.MAIN_CONTINENTS) | {"Seven seas (open ocean)"}
    assert (task.points[:, 1] > -60).all()
    if task.kind == "classification":
        counts = np.bincount(task.targets, minlength=task.num_classes)
        assert counts.min() >= 10 and task.num_classes >= 2
    again = load_task(name, options)  # from the cache now
    np.testing.assert_array_equal(again.targets, task.targets)
    np.testing.assert_array_equal(again.points, task.points)


def test_elevation_drops_greenland():
    task = load_task("elevation", TaskOptions(n_points=3000))
    greenland = naturalearth.country_codes(task.points) == "GRL"
    assert not greenland.any()


def test_air_temperature_from_local_file():
    path = require(AIR_TEMPERATURE_CSV)
    task = load_task("air-temperature", TaskOptions(data=path))
    assert len(task) == air.N_STATIONS == 3076
    assert task.points[0].tolist() == [7.82, 36.83] and task.targets[0] == pytest.approx(18.025)
    assert -20 < task.targets.min() < task.targets.max() < 31
    counts = dict(zip(*np.unique(task.continents, return_counts=True), strict=True))
    assert counts["North America"] == 1549 and counts["Oceania"] == 108


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_air_temperature_download_checks_sha256_and_caches(monkeypatch):
    data = require(AIR_TEMPERATURE_CSV).read_bytes()
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return _FakeResponse(data)

    monkeypatch.setattr(air, "urlopen", fake_urlopen)
    task = load_task("air-temperature", TaskOptions(n_points=100))
    assert urls == [air.URL] and len(task) == 100
    assert air.cached_path().read_bytes() == data
    load_task("air-temperature", TaskOptions(n_points=100))  # served from the cache
    assert len(urls) == 1

    air.cached_path().unlink()
    monkeypatch.setattr(air, "urlopen", lambda url, timeout: _FakeResponse(data + b"tampered"))
    with pytest.raises(DownloadError, match="sha256"):  # a failed download: a runtime error (exit 1)
        load_task("air-temperature", TaskOptions())
    assert not air.cached_path().exists()

    # a cached copy cut short (where the offline message says to save the file) was used "as given" and reported
    # as the published table; it is refused, saying how to use it anyway, and left as it is
    air.cached_path().write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match=r"differs from the published .*; delete it to download .* --data "):
        load_task("air-temperature", TaskOptions(n_points=100))
    assert air.cached_path().read_bytes() == data[: len(data) // 2]
    assert len(load_task("air-temperature", TaskOptions(n_points=100, data=air.cached_path()))) == 100


@pytest.fixture
def station_server(monkeypatch):
    """A local HTTP server whose response announces 1,000 bytes and sends ``body`` (a list: the bytes to send,
    and the seconds to wait before each), then closes the connection; the station table's download is sent there."""
    import http.server
    import threading
    import time

    body: list[tuple[bytes, float]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for chunk, wait in body:
                time.sleep(wait)
                self.wfile.write(chunk)
                self.wfile.flush()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    local = f"http://127.0.0.1:{server.server_address[1]}/stationDataAll.csv"
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(air, "urlopen", lambda url, timeout: urllib.request.urlopen(local, timeout=timeout))
    yield body
    server.shutdown()
    server.server_close()


def test_a_station_download_cut_short_says_what_to_fetch(station_server):
    """A response shorter than its Content-Length (http.client.IncompleteRead) was an "unexpected error …
    please report it"; it is a download that failed, whose message says what to fetch and where."""
    station_server.append((b"Lon,Lat,meanT\n", 0.0))
    with pytest.raises(DownloadError) as err:
        load_task("air-temperature", TaskOptions())
    message = str(err.value)
    assert "could not get it: downloading" in message and "IncompleteRead" in message
    assert air.SHA256 in message and "--data" in message and not air.cached_path().exists()


def test_a_station_download_that_trickles_ends_at_the_deadline(station_server, monkeypatch):
    """A server sending a byte at a time held the run for ever: urlopen's timeout bounds each read, not the
    transfer."""
    monkeypatch.setattr(air, "DOWNLOAD_DEADLINE", 0.3, raising=False)
    station_server.extend([(b"x", 0.02)] * 200)  # (4 s in all, each byte well within urlopen's timeout)
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        load_task("air-temperature", TaskOptions())
    assert time.monotonic() - start < 2.0
    assert "the transfer took more than 0.3 s" in str(err.value) and "--data" in str(err.value)


def test_air_temperature_offline_error_says_what_to_fetch(monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(air, "urlopen", offline)
    with pytest.raises(DownloadError) as err:  # a runtime error (exit 1), not bad input
        load_task("air-temperature", TaskOptions())
    message = str(err.value)
    assert air.URL in message and air.SHA256 in message and "--data" in message and str(air.cached_path()) in message
    with pytest.raises(DownloadError, match="downloading is disabled"):
        load_task("air-temperature", TaskOptions(allow_download=False))


def test_task_names_and_unknown_task():
    assert names()[:7] == ["air-temperature", "era5-temperature", "era5-precipitation", "elevation", "koppen",
                           "landcover", "country"]  # fmt: skip
    with pytest.raises(KeyError, match="known: air-temperature"):
        load_task("biome")


def test_a_table_task_with_a_constant_target_or_rows_without_one_is_said_so(tmp_path, caplog):
    """A constant regression target was evaluated as a task, its probes scoring a perfect MSE of 0; rows with no
    target were left out without a word."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lon": rng.uniform(-180, 180, 50), "lat": rng.uniform(-60, 60, 50), "y": 5.0})
    frame.to_csv(tmp_path / "const.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="satclip.eval.tasks.table"), pytest.raises(
        ValueError, match="target 'y' is 5 at every point of the task: there is nothing to predict"
    ):
        table_task(tmp_path / "const.csv")
    assert "regressed as numbers" not in caplog.text  # (before "nothing to predict")
    frame.assign(y=np.where(np.arange(50) % 7 == 0, np.nan, np.arange(50.0))).to_csv(tmp_path / "gaps.csv",
                                                                                     index=False)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="satclip.eval.tasks.table"):
        assert len(table_task(tmp_path / "gaps.csv")) == 42
    assert "gaps.csv: 8 of 50 row(s) have no target 'y' (empty or NaN): left out" in caplog.text


def test_table_task_detects_columns_and_kind(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"Longitude": [2.35, 13.4, -74.0, 151.2] * 10, "Latitude": [48.85, 52.5, 40.7, -33.9] * 10,
                          "value": np.arange(40.0)})  # fmt: skip
    frame.to_csv(tmp_path / "t.csv", index=False)
    task = table_task(tmp_path / "t.csv")
    assert task.kind == "regression" and task.name == "t" and len(task) == 40
    np.testing.assert_array_equal(task.targets, np.arange(40.0))
    assert task.continents[0] == "Europe" and task.continents[2] == "North America"

    frame.assign(label=["a", "b"] * 20).drop(columns="value").to_parquet(tmp_path / "c.parquet")
    cls = table_task(tmp_path / "c.parquet", options=TaskOptions(min_class_points=5))
    assert cls.kind == "classification" and list(cls.classes) == ["a", "b"]

    frame.assign(lng=frame["Longitude"]).to_csv(tmp_path / "ambiguous.csv", index=False)
    with pytest.raises(ValueError, match="--lon-col"):
        table_task(tmp_path / "ambiguous.csv", target_col="value")
    assert len(table_task(tmp_path / "ambiguous.csv", target_col="value", lon_col="lng")) == 40

    frame.rename(columns={"Latitude": "Longitude", "Longitude": "Latitude"}).to_csv(tmp_path / "swap.csv", index=False)
    with pytest.raises(ValueError, match="columns 'Longitude' and 'Latitude' hold each other's values"):
        table_task(tmp_path / "swap.csv")


def test_a_class_target_of_one_class_or_a_class_per_point_says_what_is_wrong(tmp_path):
    """Both were told "use more points (--n-points) or a lower --min-class-points", also at --min-class-points 1."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lon": rng.uniform(-180, 180, 40), "lat": rng.uniform(-60, 60, 40), "y": "forest"})
    frame.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(ValueError, match="the target is 'forest' at every point \\(40 points\\): there is nothing"):
        table_task(tmp_path / "one.csv", options=TaskOptions(min_class_points=1))
    frame.assign(y=[f"{v:.2f}m" for v in rng.uniform(0, 100, 40)]).to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(ValueError, match="each of its 40 points has a class of its own: .*--task-kind regression "
                                         r"\(kind='regression' in Python\)"):  # fmt: skip
        table_task(tmp_path / "text.csv", options=TaskOptions(min_class_points=1))


def test_a_table_is_split_by_its_data_not_by_its_file_name(tmp_path):
    """The folds were salted with the task's name, the file's stem by default: the same table under another file
    name was split otherwise and scored otherwise. Built-in tasks keep the splits their name salts."""
    pd = pytest.importorskip("pandas")
    from satclip.eval import protocols

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lon": rng.uniform(-180, 180, 200), "lat": rng.uniform(-60, 60, 200),
                          "y": rng.standard_normal(200)})  # fmt: skip
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "b.csv", index=False)
    first, second = table_task(tmp_path / "a.csv"), table_task(tmp_path / "b.csv", name="renamed")
    for protocol in ("random", "spatial-block", "paper"):
        for one, other in zip(protocols.make_folds(protocol, first, [0, 1]),
                              protocols.make_folds(protocol, second, [0, 1]), strict=True):  # fmt: skip
            for part in ("train", "val", "test"):
                np.testing.assert_array_equal(getattr(one, part), getattr(other, part))
    frame.assign(lon=frame["lon"] / 2).to_csv(tmp_path / "c.csv", index=False)
    moved = table_task(tmp_path / "c.csv", name="a")
    assert not np.array_equal(protocols.make_folds("random", moved, [0])[0].test,
                              protocols.make_folds("random", first, [0])[0].test)  # fmt: skip
    builtin = Task("koppen", "regression", first.points, first.targets, first.continents, "y", "s")
    salted = np.random.default_rng([0, int.from_bytes(hashlib.sha256(b"koppen").digest()[:8], "little")])
    np.testing.assert_array_equal(protocols.make_folds("random", builtin, [0])[0].test,
                                  np.sort(salted.permutation(200)[160:]))  # fmt: skip


def test_a_table_of_too_few_rows_per_class_says_so_and_lists_its_classes(tmp_path):
    """A table was told to "use more points (--n-points)", which only caps a table's rows, and not which classes
    it held or how many rows each."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    labels = ["forest"] * 25 + ["desert"] * 12 + ["ice"] * 3
    frame = pd.DataFrame({"lon": rng.uniform(-180, 180, 40), "lat": rng.uniform(-60, 60, 40), "y": labels})
    frame.to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(ValueError) as caught:
        table_task(tmp_path / "few.csv")
    assert str(caught.value) == (
        "task few: fewer than 2 classes have >= 20 points (40 points; by class: forest 25, desert 12, ice 3); the "
        "table has too few rows of its classes: add rows to the table (--n-points only caps its rows), or lower "
        "--min-class-points"
    )
    # a table sampled down to --n-points: raising it gives the task more rows (it was told to add rows)
    frame = pd.DataFrame({"lon": rng.uniform(-180, 180, 400), "lat": rng.uniform(-60, 60, 400),
                          "y": ["A"] * 340 + ["B"] * 60})  # fmt: skip
    frame.to_csv(tmp_path / "many.csv", index=False)
    with pytest.raises(ValueError, match=r"raise --n-points \(the table has 400 rows, the task took 60\), or lower"):
        table_task(tmp_path / "many.csv", options=TaskOptions(n_points=60))


def test_a_table_row_without_coordinates_is_left_out_and_swapped_columns_are_named(tmp_path):
    """An empty or NaN lon or lat stopped the whole run as "1 invalid point(s)"; a missing target was left out
    with a note. Swapped columns were told "satclip takes (lon, lat) order", though the columns are named."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lon": rng.uniform(-180, 180, 30), "lat": rng.uniform(-60, 60, 30),
                          "y": rng.standard_normal(30)})  # fmt: skip
    frame.loc[3, "lon"], frame.loc[7, "lat"], frame.loc[9, "y"] = np.nan, np.nan, np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    task = table_task(tmp_path / "gaps.csv")
    assert len(task) == 27
    assert task.notes == ("1 of 30 row(s) have no target 'y' (empty or NaN): left out",
                          "2 of 30 row(s) have no 'lon' or 'lat' (empty or NaN): left out")  # fmt: skip
    frame.loc[5, "lat"] = 95.0  # (out of range: still refused, naming the row)
    frame.to_csv(tmp_path / "out.csv", index=False)
    with pytest.raises(ValueError, match=r"1 invalid point\(s\): row 5: \(lon="):
        table_task(tmp_path / "out.csv")
    frame.loc[5, "lat"] = np.inf
    frame.to_csv(tmp_path / "inf.csv", index=False)
    with pytest.raises(ValueError, match=r"1 invalid point\(s\): row 5: \(lon=.*, lat=inf\)"):
        table_task(tmp_path / "inf.csv")
    frame.rename(columns={"lon": "lat", "lat": "lon"}).assign(lat=lambda f: f["lat"].clip(-170, 170)).to_csv(
        tmp_path / "swap.csv", index=False)  # fmt: skip
    with pytest.raises(ValueError) as caught:
        table_task(tmp_path / "swap.csv")
    assert "This looks like columns 'lon' and 'lat' hold each other's values: name the longitude and latitude " \
           "columns with --lon-col and --lat-col (lon_col= and lat_col= in Python)." in str(caught.value)  # fmt: skip
    assert "(lon, lat) order" not in str(caught.value)


def test_a_table_of_neither_coordinate_name_names_both_flags(tmp_path):
    """Columns x and y: the error named --lon-col only, and the run with it was refused for --lat-col. Called from
    Python, the messages named only the command line's flags, not table_task's arguments."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.uniform(-180, 180, 20), "y": rng.uniform(-60, 60, 20), "v": np.arange(20.0)})
    frame.to_csv(tmp_path / "xy.csv", index=False)
    with pytest.raises(ValueError, match=r"cannot tell which columns hold longitudes and latitudes: .* name them with "
                                         r"--lon-col and --lat-col \(lon_col= and lat_col= in Python\)$"):  # fmt: skip
        table_task(tmp_path / "xy.csv")
    with pytest.raises(ValueError, match=r"holds latitudes: none of .*; name it with --lat-col "
                                         r"\(lat_col= in Python\)$"):  # fmt: skip
        table_task(tmp_path / "xy.csv", lon_col="x")
    with pytest.raises(ValueError, match=r"no column 'X', given as --lon-col \(lon_col= in Python\); did you mean "):
        table_task(tmp_path / "xy.csv", lon_col="X", lat_col="y")
    with pytest.raises(ValueError, match=r"name the target column with --target-col \(target_col= in Python\)"):
        table_task(frame.assign(w=1.0), lon_col="x", lat_col="y")
    assert len(table_task(tmp_path / "xy.csv", lon_col="x", lat_col="y", target_col="v")) == 20


def test_a_table_not_utf8_or_separated_by_spaces_says_where_and_what(tmp_path):
    """A Latin-1 byte was placed by pandas' offset in its own buffer ("at byte 1" for byte 21); a space-separated
    .txt was read as one column, 'lon lat y', and the user told to name it with --lon-col."""
    (tmp_path / "latin1.csv").write_bytes("lon,lat,y\n1,2,3\n4,5,Zürich\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"is not UTF-8 text \(invalid start byte at byte 21, line 3\): save it"):
        table_task(tmp_path / "latin1.csv")
    (tmp_path / "spaces.txt").write_text("lon lat y\n" + "".join(f"{i} {i} {i}\n" for i in range(20)))
    with pytest.raises(ValueError, match="its header 'lon lat y' is one column holding spaces: the file seems "
                                         "space-separated; satclip reads text separated by ',', ';', tab or '|'"):
        table_task(tmp_path / "spaces.txt")


def _stations(n: int = 40):
    """A table of ``n`` points (lon, lat) and a target ``y``, as a pandas DataFrame."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    return pd.DataFrame({"lon": rng.uniform(-170, 170, n), "lat": rng.uniform(-60, 60, n), "y": rng.normal(size=n)})


def test_a_geo_task_file_takes_its_points_from_the_geometry(tmp_path):
    """GeoJSON and GeoPackage were refused as an "unknown table format", and a GeoParquet file was told to name
    its longitude column with --lon-col (its points were WKB bytes in a column 'geometry')."""
    geopandas = pytest.importorskip("geopandas")
    frame = _stations()
    frame.to_csv(tmp_path / "plain.csv", index=False)
    plain = table_task(tmp_path / "plain.csv")
    points = geopandas.GeoDataFrame({"y": frame["y"]}, geometry=geopandas.points_from_xy(frame["lon"], frame["lat"]),
                                    crs="EPSG:4326")  # fmt: skip
    points.to_file(tmp_path / "t.geojson", driver="GeoJSON")
    points.to_file(tmp_path / "t.gpkg", driver="GPKG")
    points.to_parquet(tmp_path / "t.parquet")
    points.to_crs("EPSG:3857").to_parquet(tmp_path / "mercator.parquet")  # (reprojected back, as embed does)
    for name in ("t.geojson", "t.gpkg", "t.parquet", "mercator.parquet"):
        task = table_task(tmp_path / name)
        assert task.kind == "regression" and task.target == "y", name
        np.testing.assert_allclose(task.points, plain.points, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(task.targets, plain.targets)
    assert table_task(tmp_path / "t.parquet").split_salt == plain.split_salt
    # read back from a projected CRS, the points differ in their last bits: they split alike all the same
    assert table_task(tmp_path / "mercator.parquet").split_salt == plain.split_salt
    # rows without a geometry are left out as such (they were said to have no 'lon' or 'lat', columns of satclip's)
    missing = points.copy()
    missing.loc[[0, 1], "geometry"] = None
    missing.to_parquet(tmp_path / "missing.parquet")
    assert "2 of 40 row(s) have no geometry (null or empty): left out" in table_task(tmp_path / "missing.parquet").notes
    # named columns win over the geometry
    points.assign(x=frame["lat"], z=frame["lon"]).to_file(tmp_path / "named.geojson", driver="GeoJSON")
    named = table_task(tmp_path / "named.geojson", lon_col="z", lat_col="x", target_col="y")
    np.testing.assert_allclose(named.points, plain.points, rtol=0, atol=1e-9)

    shapes = points.set_geometry(points.to_crs("EPSG:3857").buffer(1000.0).to_crs("EPSG:4326"))
    shapes.to_file(tmp_path / "shapes.geojson", driver="GeoJSON")
    with pytest.raises(ValueError, match="shapes.geojson: feature 0 is a Polygon; only Point geometries"):
        table_task(tmp_path / "shapes.geojson")
    shapes.to_parquet(tmp_path / "shapes.parquet")
    with pytest.raises(ValueError, match=r"shapes.parquet: geometries must be points, found \['Polygon'\] \(rows 0"):
        table_task(tmp_path / "shapes.parquet")


def test_a_table_task_from_a_dataframe_reads_as_its_file_does(tmp_path, caplog):
    """``table_task(pd.read_csv(...))`` raised "expected str, bytes or os.PathLike object, not DataFrame"."""
    geopandas = pytest.importorskip("geopandas")
    frame = _stations()
    frame.to_csv(tmp_path / "plain.csv", index=False)
    plain = table_task(tmp_path / "plain.csv")
    task = table_task(frame)
    assert (task.name, task.kind, task.target) == ("table", "regression", "y")
    with pytest.raises(TypeError, match="takes a file's path or a pandas DataFrame .*, not a Series"):
        table_task(frame["y"])  # (it was "expected str, bytes or os.PathLike object, not Series")
    np.testing.assert_array_equal(task.points, plain.points)
    np.testing.assert_array_equal(task.targets, plain.targets)
    assert task.split_salt == plain.split_salt
    points = geopandas.GeoDataFrame({"y": frame["y"]}, geometry=geopandas.points_from_xy(frame["lon"], frame["lat"]),
                                    crs="EPSG:4326").to_crs("EPSG:3857")  # fmt: skip
    np.testing.assert_allclose(table_task(points, name="geo").points, plain.points, rtol=0, atol=1e-9)
    with caplog.at_level(logging.WARNING, logger="satclip.eval.tasks.table"):
        assert len(table_task(frame.assign(y=frame["y"].where(frame.index > 0)), name="gaps")) == 39
    assert "DataFrame 'gaps': 1 of 40 row(s) have no target 'y' (empty or NaN): left out" in caplog.text
    with pytest.raises(ValueError, match="DataFrame 'table': cannot tell which column holds longitudes"):
        table_task(frame.rename(columns={"lon": "x"}))


def test_table_task_messages_give_the_python_word_for_the_kind_and_a_json_list_its_fix(tmp_path):
    """From Python, TaskFile(df, kind="regression") of a text target was told "pass --task-kind classification"
    beside messages that say "(target_col= in Python)"; a JSON list of records was told "expected GeoJSON …, got
    'list'" and not what to write instead."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lon": rng.uniform(-180, 180, 40), "lat": rng.uniform(-60, 60, 40), "y": ["a", "b"] * 20})
    with pytest.raises(ValueError, match=r"or pass --task-kind classification \(kind='classification' in Python\) "
                                         "if the column holds class labels"):  # fmt: skip
        table_task(frame, kind="regression")
    frame.to_json(tmp_path / "records.json", orient="records")
    with pytest.raises(ValueError) as caught:
        table_task(tmp_path / "records.json")
    assert str(caught.value).endswith(
        "got 'list'; a list of records is no GeoJSON: write it as a CSV with lon and lat columns (pandas.read_json("
        f"{str(tmp_path / 'records.json')!r}).to_csv(...)) or as a FeatureCollection of Point features"
    )
