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


def test_a_late_polygon_is_named_by_its_row_in_the_whole_file(model, tmp_path, capsys, caplog):
    """A polygon at row 99,999 of a GeoParquet file was reported at row 34,463: its row in the 65,536-row batch
    read; and a file without a CRS said so once per batch read, twice over (four times for 100,000 rows)."""
    import logging

    import numpy as np

    n = 100_000
    rng = np.random.default_rng(1)
    points = gpd.GeoDataFrame({"id": np.arange(n)}, geometry=gpd.points_from_xy(rng.uniform(-180, 180, n),
                                                                                 rng.uniform(-85, 85, n)))  # fmt: skip
    points.loc[n - 1, "geometry"] = shapely.box(0, 0, 1, 1)
    path = tmp_path / "late.parquet"
    points.to_parquet(path, row_group_size=20_000)  # (no CRS)
    argv = ["embed", str(path), "-o", str(tmp_path / "out.parquet"), "--model", str(model), "--no-progress"]
    assert main(argv) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("satclip: error: ")]
    assert f"found ['Polygon'] (rows {n - 1}); pass" in error
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satclip"):
        assert main([*argv, "--centroids"]) == 0
    said = [r.getMessage() for r in caplog.records if "no CRS" in r.getMessage()]
    assert said == [f"{path}: geometry column 'geometry' has no CRS; assuming (lon, lat) degrees (EPSG:4326)"], said


def test_table_inputs_whose_columns_cannot_be_read_as_named_say_so(model, tmp_path, capsys):
    """Two Parquet columns named lon were 'ambiguous' and, named with --lon-col as told, 'unexpected error
    (KeyError)'; a CSV without a header was told to name its longitude column --lon-col 13.4, which read its
    first point as the header and dropped it; a .csv.gz was 'cannot tell the format'; an .npy of shape (2, N)
    was not told it is transposed."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    twice = tmp_path / "twice.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([13.4]), pa.array([52.5]), pa.array([1.0])],
                                        names=["lon", "lat", "lon"]), twice)  # fmt: skip
    headless = tmp_path / "headless.csv"
    headless.write_text("13.4,52.5\n2.35,48.85\n")
    transposed = tmp_path / "transposed.npy"
    np.save(transposed, np.zeros((2, 5)))
    cases = [
        ([str(twice)], "2 columns are named 'lon' (longitude): rename all but one"),
        ([str(twice), "--lon-col", "lon", "--lat-col", "lat"], "2 columns are named 'lon' (longitude)"),
        ([str(headless)], "the column names ['13.4', '52.5'] are numbers (a CSV file without a header line"),
        ([str(transposed)], "expected an (N, 2) array of (lon, lat), got shape (2, 5) (transposed? save points.T)"),
    ]
    for k, (given, said) in enumerate(cases):
        argv = ["embed", *given, "-o", str(tmp_path / f"out{k}.parquet"), "--model", str(model), "--no-progress"]
        assert main(argv) == 2, given
        assert said in one_error_line(capsys.readouterr().err), given
    compressed = tmp_path / "points.csv.gz"
    import gzip

    compressed.write_bytes(gzip.compress(b"lon,lat\n13.4,52.5\n2.35,48.85\n"))
    out = tmp_path / "gz.parquet"
    assert main(["embed", str(compressed), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    assert pq.read_table(out).num_rows == 2


def test_missing_geometries_are_named_as_such(model, tmp_path, capsys):
    """A null GeoParquet geometry, or a GeoJSON point of one coordinate, was an invalid point
    "(lon=nan, lat=nan)" without a word of the geometry; a CSV's NaN cells are what they say."""
    import numpy as np

    points = gpd.GeoDataFrame({"id": np.arange(6)}, geometry=gpd.points_from_xy(np.arange(6.0), np.arange(6.0)),
                              crs="EPSG:4326")  # fmt: skip
    points.loc[4, "geometry"] = None
    points.to_parquet(tmp_path / "null.parquet")
    (tmp_path / "short.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": '
        '"Point", "coordinates": [13.4]}}, {"type": "Feature", "properties": {}, "geometry": {"type": "Point", '
        '"coordinates": [1, 2]}}]}'
    )
    (tmp_path / "nan.csv").write_text("lon,lat\n1,2\nnan,nan\n")
    for name, said in (("null.parquet", "Its (lon=nan, lat=nan) rows are null or empty geometries."),
                       ("short.geojson", "Its (lon=nan, lat=nan) rows are features without a point (a null or empty "
                                         "geometry, or fewer than two coordinates)."),
                       ("nan.csv", None)):  # fmt: skip
        argv = ["embed", str(tmp_path / name), "-o", str(tmp_path / f"{name}.out.parquet"), "--model", str(model),
                "--no-progress"]  # fmt: skip
        assert main(argv) == 2, name
        line = one_error_line(capsys.readouterr().err)
        assert "(lon=nan, lat=nan)" in line and (said in line if said else "rows are" not in line), line
    pytest.importorskip("distributed")  # the Dask engine says it too (its workers' message, read by the client)
    argv = ["embed", str(tmp_path / "null.parquet"), "-o", str(tmp_path / "dask-out"), "--model", str(model),
            "--no-progress", "--engine", "dask", "--workers", "1"]  # fmt: skip
    assert main(argv) == 2
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("satclip: error: ")][0]
    assert "Its (lon=nan, lat=nan) rows are null or empty geometries. Pass --skip-invalid" in line, line


def test_a_geopackage_of_several_layers_needs_one_named(model, tmp_path, capsys):
    """A GeoPackage of two layers embedded its first, with pyogrio's warning alone, and there was no way to
    choose another; the layer is now part of the input (a rerun with another layer is another input)."""
    import pyarrow.parquet as pq

    path = tmp_path / "multi.gpkg"
    gpd.GeoDataFrame({"a": [1]}, geometry=gpd.points_from_xy([1.0], [2.0]), crs="EPSG:4326").to_file(path, layer="one")
    gpd.GeoDataFrame({"a": [1, 2]}, geometry=gpd.points_from_xy([3.0, 4.0], [5.0, 6.0]), crs="EPSG:4326").to_file(
        path, layer="two")  # fmt: skip
    argv = ["embed", str(path), "--model", str(model), "--no-progress", "-o"]
    assert main([*argv, str(tmp_path / "a.parquet")]) == 2
    assert one_error_line(capsys.readouterr().err).endswith(f"{path} holds 2 layers (one, two): choose one with "
                                                            "--layer NAME")  # fmt: skip
    assert main([*argv, str(tmp_path / "b.parquet"), "--layer", "three"]) == 2
    assert "has no layer 'three' (--layer); its layers are one, two" in one_error_line(capsys.readouterr().err)
    assert main([*argv, str(tmp_path / "c.parquet"), "--layer", "two"]) == 0
    assert pq.read_table(tmp_path / "c.parquet").column("lon").to_pylist() == [3.0, 4.0]
    from satclip.embed.sources import open_source

    assert open_source(path, layer="one").fingerprint() != open_source(path, layer="two").fingerprint()


def test_spreadsheet_exports_and_standard_input_are_named_for_what_they_are(model, tmp_path, capsys):
    """Excel's 'Unicode text' (UTF-16) failed with a raw "'utf-8' codec can't decode byte 0xff"; a 'sep=;' first
    line was taken for the header ("no longitude column among ['sep=', '']"); and '-' was 'no such file: -'."""
    (tmp_path / "u16.txt").write_text("lon\tlat\n1\t2\n", encoding="utf-16")
    (tmp_path / "sep.csv").write_bytes(b"\xef\xbb\xbfsep=;\r\nlon;lat\r\n1;2\r\n")
    expected = {"u16.txt": "is UTF-16 text (a spreadsheet's 'Unicode text'): save it as UTF-8",
                "sep.csv": "the first line 'sep=;' is a spreadsheet's delimiter hint, not the header: delete that line",
                "-": "'-' (standard input) is not read: write the data to a file"}  # fmt: skip
    for name, says in expected.items():
        path = name if name == "-" else str(tmp_path / name)
        assert main(["embed", path, "-o", str(tmp_path / "out.npy"), "--model", str(model), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, (name, err)
    assert not (tmp_path / "out.npy").exists()


def test_a_spreadsheets_empty_unnamed_columns_are_left_out(model, tmp_path, capsys, caplog, monkeypatch):
    """A CSV saved from a spreadsheet with empty trailing columns (``lon,lat,,``) was refused: "the header names
    column(s) [''] more than once". Unnamed columns without a value are left out with a note; one with a value,
    found in any block of the file, is refused naming it."""
    import logging

    import pyarrow.parquet as pq

    from satclip.embed.sources import CsvSource

    monkeypatch.setattr(CsvSource, "BLOCK_SIZE", 1 << 10)  # (several blocks: a value after the first is found)
    source = tmp_path / "sheet.csv"
    source.write_text("name,lon,,lat,,\n" + "a,13.4,,52.5,,\n" * 200 + "b,1.5,, 2.5,,\n")
    out = tmp_path / "sheet.parquet"
    with caplog.at_level(logging.INFO, logger="satclip"):
        assert main(["embed", str(source), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    assert f"{source}: left out 3 column(s) without a name or any value (columns 3, 5, 6 of the header line)" in (
        caplog.text)  # fmt: skip
    capsys.readouterr()
    table = pq.read_table(out)
    assert table.column_names == ["name", "lon", "lat", "embedding"]
    assert table.column("lat").to_pylist()[-2:] == [52.5, 2.5] and table.num_rows == 201
    filled = tmp_path / "filled.csv"
    filled.write_text("name,lon,,lat,,\n" + "a,13.4,,52.5,,\n" * 200 + "b,1.5,,2.5,,note\n")
    argv = ["embed", str(filled), "-o", str(tmp_path / "f.parquet"), "--model", str(model), "--no-progress"]
    assert main(argv) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {filled}: column 6 of the header line has no name and holds 'note' in row 200 (rows counted "
        "from 0, the first after the header line, blank lines not counted): name it in the header line"
    )


def test_text_that_is_no_number_in_a_coordinate_column_is_named_by_its_row(model, tmp_path, capsys):
    """Text coordinates of which one does not parse said "Failed to parse string: 'abc' as a scalar of type double",
    naming neither the row nor a fix, where an invalid number is named by its row (in a dataset, by its part file's
    too); the row is found in a later chunk, and past a part file's start."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    lon = np.linspace(-10, 10, 3_000).astype(str).astype(object)
    lon[2_345] = "abc"
    pq.write_table(pa.table({"lon": lon, "lat": np.linspace(0, 10, 3_000)}), tmp_path / "text.parquet")
    (tmp_path / "ds").mkdir()
    for part in range(2):
        pq.write_table(pa.table({"lon": lon[part * 1_500 : (part + 1) * 1_500],
                                 "lat": np.zeros(1_500)}), tmp_path / "ds" / f"part.{part}.parquet")  # fmt: skip
    fix = "fix or remove that row, or store the column as numbers (decimal degrees, 13.4)"
    for name, where in (("text.parquet", "rows counted from 0"),
                        ("ds", "rows counted from 0; row 2345 is row 845 of part.1.parquet")):  # fmt: skip
        argv = ["embed", str(tmp_path / name), "-o", str(tmp_path / f"{name}.out.parquet"), "--model", str(model),
                "--no-progress", "--chunk-rows", "1024"]  # fmt: skip
        assert main(argv) == 2, name
        assert one_error_line(capsys.readouterr().err) == (
            f"satclip: error: {tmp_path / name}: coordinate column 'lon' (string) is not numeric: row 2345 holds "
            f"'abc' ({where}): {fix}"
        )
