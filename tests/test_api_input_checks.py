"""The public Python API's inputs (satclip.embed, satclip.load, encoder.encode): points reprojected onto the
antimeridian, trust_checkpoint, coordinate columns that hold no numbers, index labels in errors (pandas and Dask),
duplicated columns, longitudes in 0..360, the dtype arguments, long-double arrays and tensors without dense
values; a DataFrame task file in run_evaluation, "~" in save, arrays in SatCLIP.encode_location, EvalConfig's fields
checked where it is made, radians and point dicts given to encode, the registries' and load_config's errors. Each
test failed before its fix."""

from __future__ import annotations

import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

import satclip
from satclip.encoding.points import InvalidPointsError
from satclip.errors import BadInputError

from .test_embed_api import CONFIG


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return satclip.LocationEncoder.from_config(CONFIG).eval()


@pytest.mark.parametrize("crs", ["EPSG:8857", "EPSG:32601"])
def test_points_on_the_antimeridian_survive_satclip_reprojection(encoder, crs):
    """Valid points on the antimeridian, in a projected CRS, came back from satclip's own to_crs as
    lon = ±180.00000000000003 and were refused as the user's invalid points."""
    gpd = pytest.importorskip("geopandas")
    lonlat = np.array([[180.0, 10.0], [-180.0, -10.0], [10.0, 10.0]])
    frame = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lonlat[:, 0], lonlat[:, 1]), crs="EPSG:4326").to_crs(crs)
    back = frame.to_crs("EPSG:4326")
    assert (np.abs(back.geometry.x) > 180).any()  # what PROJ gives: ±180.00000000000003 (the defect's cause)
    out = satclip.embed(frame, model=encoder)
    expected = satclip.embed(np.column_stack([np.clip(back.geometry.x, -180, 180), back.geometry.y]), model=encoder)
    np.testing.assert_allclose(out.to_numpy(), expected, rtol=0, atol=1e-6)


def test_reprojection_slack_is_tiny(encoder):
    """Only coordinates satclip reprojected, and only a few ulp beyond the bound, are put on it: the user's own
    lon/lat beyond 180 (no reprojection) and values really outside the range are still refused."""
    gpd = pytest.importorskip("geopandas")
    from satclip.embed.inputs import onto_bounds
    from satclip.encoding.points import InvalidPointsError

    beyond = np.nextafter(180.0, 200.0)
    frame = gpd.GeoDataFrame(geometry=gpd.points_from_xy([beyond, 10.0], [10.0, 10.0]), crs="EPSG:4326")
    with pytest.raises(InvalidPointsError, match=r"index label 0: \(lon=180\.00000000000003"):
        satclip.embed(frame, model=encoder)
    values = np.array([[beyond, -np.nextafter(90.0, 91.0)], [180.001, 90.001], [-180 - 1e-6, np.nan], [beyond, 0.0]])
    out = onto_bounds(values.copy(), np.array([True, True, True, False]))
    np.testing.assert_array_equal(out, [[180.0, -90.0], [180.001, 90.001], [-180 - 1e-6, np.nan], [beyond, 0.0]])


def _untrusted_ckpt(path):
    """A small original-format checkpoint that needs a global outside the allowlist (a pathlib path)."""
    import pathlib

    from satclip.io import original

    torch.manual_seed(0)
    state = satclip.LocationEncoder.from_config(CONFIG).state_dict()
    original.write_original(path, original.hparams_from_location_config(CONFIG), state)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["p"] = pathlib.PurePosixPath("/x")
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("value", ["no", "False", 0, 1, None])
def test_trust_checkpoint_must_be_a_bool(tmp_path, value):
    """trust_checkpoint was tested for truthiness: trust_checkpoint="no" unpickled the file fully."""
    from satclip.errors import BadInputError

    path = _untrusted_ckpt(tmp_path / "untrusted.ckpt")
    for load in (satclip.load, lambda p, **kw: satclip.embed(np.array([[1.0, 2.0]]), model=p, **kw)):
        with pytest.raises(BadInputError, match=rf"^trust_checkpoint={value!r} must be True or False[^\n]*$"):
            load(path, trust_checkpoint=value)
    with pytest.raises(BadInputError, match="must be True or False"):  # a source that is no .ckpt alike
        satclip.load("bluemarble-l10", trust_checkpoint=value)


def test_embed_takes_trust_checkpoint(tmp_path):
    """satclip.embed(points, model="x.ckpt") said "pass trust_checkpoint=True", which embed did not accept."""
    from satclip.io.safe_pickle import UntrustedCheckpointError

    path = _untrusted_ckpt(tmp_path / "untrusted.ckpt")
    points = np.array([[13.4, 52.5], [-58.4, -34.6]])
    with pytest.raises(UntrustedCheckpointError, match="trust_checkpoint=True"):
        satclip.embed(points, model=path)
    out = satclip.embed(points, model=path, trust_checkpoint=True)
    expected = satclip.load(path, trust_checkpoint=np.bool_(True)).encode(points).numpy()
    np.testing.assert_array_equal(out, expected)
    frame = __import__("pandas").DataFrame(points, columns=["lon", "lat"])
    np.testing.assert_array_equal(satclip.embed(frame, model=path, trust_checkpoint=True), expected)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [([True, False], "bool"), ([True, None], "boolean"), ([13.4 + 5j, 1.0], "complex128"),
     ([13, 14], "timedelta64[ns]"), (["2020-01-01", "2020-01-02"], "datetime64[ns]")],
)  # fmt: skip
def test_table_columns_that_are_no_numbers_are_refused(encoder, values, dtype):
    """A DataFrame's bool, complex, timedelta and datetime coordinate columns were embedded silently (as 1.0,
    the real part, nanoseconds), while the array path refuses such points."""
    import pandas as pd
    import pyarrow as pa

    column = pd.Series(values).astype(dtype)
    frame = pd.DataFrame({"lat": [52.52, 10.0], "lon": column})
    pattern = rf"^coordinate column 'lon' must be numbers \(lon, lat\) in degrees, got {re.escape(dtype)} \(.*\)$"
    with pytest.raises(ValueError, match=pattern):
        satclip.embed(frame, model=encoder)
    with pytest.raises(ValueError, match=pattern.replace("'lon'", "'east'")):
        satclip.embed(frame.rename(columns={"lon": "east"}), model=encoder, lon_col="east")
    if dtype not in ("complex128", "timedelta64[ns]"):  # (Arrow has no complex numbers; its durations are ns)
        with pytest.raises(ValueError, match=r"coordinate column 'lon' must be numbers"):
            satclip.embed(pa.Table.from_pandas(frame), model=encoder)
    if dtype in ("bool", "complex128"):  # the array path refuses the same values
        with pytest.raises(ValueError, match=r"^points must be numbers \(lon, lat\) in degrees, got"):
            satclip.embed(np.column_stack([column.to_numpy(), [52.52, 10.0]]).astype(dtype), model=encoder)
    numbers = pd.DataFrame({"lon": pd.Series([13.4, None], dtype="Float64"), "lat": [52.52, 10.0]})
    out = satclip.embed(numbers, model=encoder, skip_invalid=True)  # nullable numbers are still numbers
    np.testing.assert_array_equal(out[0], satclip.embed(np.array([[13.4, 52.52]]), model=encoder)[0])


def test_errors_for_pandas_input_name_index_labels(encoder):
    """Errors for labelled pandas and geopandas input said "row 1", meaning position 1, while frame.loc[1] is another
    (valid) row."""
    import pandas as pd

    from satclip.encoding.points import InvalidPointsError

    frame = pd.DataFrame({"lon": [13.4, -58.4, 139.7], "lat": [52.5, np.nan, 35.7]}, index=[1, 0, 2])
    with pytest.raises(
        InvalidPointsError, match=r"^1 invalid point\(s\): index label 0: \(lon=-58\.4, lat=nan\)\."
    ) as info:
        satclip.embed(frame, model=encoder)
    assert np.isnan(frame.loc[0, "lat"]) and info.value.bad_rows.tolist() == [1]  # (bad_rows: positions, as before)
    named = frame.set_axis(["berlin", "buenos aires", "tokyo"])
    with pytest.raises(InvalidPointsError, match=r"index label 'buenos aires': \(lon=-58\.4"):
        satclip.embed(named, model=encoder)
    pairs = frame.set_axis(pd.MultiIndex.from_tuples([(1, "a"), (3, "b"), (4, "c")]))  # (was np.int64(3))
    with pytest.raises(InvalidPointsError, match=r"index label \(3, 'b'\): \(lon=-58\.4"):
        satclip.embed(pairs, model=encoder)
    with pytest.raises(InvalidPointsError, match=r"^1 invalid point\(s\): row 1: "):  # an array has no labels
        satclip.embed(frame.to_numpy(), model=encoder)
    # labels that repeat do not find the row (frame.loc[0] is three rows): its position too
    repeated = frame.set_axis([0, 0, 0])
    with pytest.raises(InvalidPointsError, match=r"^1 invalid point\(s\): index label 0 \(position 1\): \(lon=-58"):
        satclip.embed(repeated, model=encoder)
    # NumPy labels as Python writes them: "index label np.int64(6)", "np.str_('b')" in NumPy 2
    text = pd.DataFrame({"lon": ["1", "abc"], "lat": [1.0, 2.0]}, index=np.array([5, 6]))
    with pytest.raises(ValueError, match=r"'abc' at index label 6 is no number either"):
        satclip.embed(text, model=encoder)
    with pytest.raises(ValueError, match=r"'abc' at index label 'b' is no number either"):
        satclip.embed(text.set_axis(pd.Index([np.str_("a"), np.str_("b")], dtype=object)), model=encoder)


def test_geodataframe_errors_name_index_labels(encoder):
    gpd = pytest.importorskip("geopandas")
    shapely = pytest.importorskip("shapely")
    from satclip.encoding.points import InvalidPointsError

    geometry = [shapely.Point(13.4, 52.5), shapely.box(0, 0, 1, 1), shapely.Point(10.0, 95.0)]
    frame = gpd.GeoDataFrame({"k": range(3)}, geometry=geometry, crs="EPSG:4326", index=[7, "b", 5])
    with pytest.raises(ValueError, match=r"found \['Polygon'\] \(index labels 'b'\); pass centroids=True"):
        satclip.embed(frame, model=encoder)
    with pytest.raises(InvalidPointsError, match=r"^1 invalid point\(s\): index label 5: \(lon=10\.0, lat=95\.0\)"):
        satclip.embed(frame, model=encoder, centroids=True)


def test_duplicated_coordinate_columns_are_named(encoder):
    """Columns ["lon", "lat", "lon"] gave "points must have shape (N, 2) ... got shape (1, 3)", which does not say
    that a column is duplicated."""
    import pandas as pd
    import pyarrow as pa

    from satclip.embed.columns import ColumnError

    frame = pd.DataFrame([[13.4, 52.52, 1.0]], columns=["lon", "lat", "lon"])
    message = r"^coordinate column 'lon' appears 2 times among the columns \['lon', 'lat', 'lon'\]: keep one"
    with pytest.raises(ColumnError, match=message):
        satclip.embed(frame, model=encoder)
    with pytest.raises(
        ColumnError, match=message.replace("'lon' appears", "'lat' appears").replace("'lat', 'lon'", "'lat', 'lat'")
    ):
        satclip.embed(frame.set_axis(["lon", "lat", "lat"], axis=1), model=encoder)
    with pytest.raises(ColumnError, match=r"'x' appears 2 times"):
        satclip.embed(frame.set_axis(["x", "y", "x"], axis=1), model=encoder, lon_col="x", lat_col="y")
    table = pa.Table.from_arrays([pa.array([13.4]), pa.array([52.52]), pa.array([1.0])], names=["lon", "lat", "lon"])
    with pytest.raises(ColumnError, match=message):
        satclip.embed(table, model=encoder)
    other = pd.DataFrame([[13.4, 52.52, 1.0, 2.0]], columns=["lon", "lat", "note", "note"])  # (others may repeat)
    expected = satclip.embed(np.array([[13.4, 52.52]]), model=encoder)
    np.testing.assert_array_equal(satclip.embed(other, model=encoder), expected)


WRAP = r"The longitudes over 180 look like \[0, 360\] ones: wrap them with lon = \(\(lon \+ 180\) % 360\) - 180\.$"


@pytest.mark.parametrize(
    ("points", "hint", "swap"),
    [([[350.0, 10.0], [10.0, 10.0]], True, False), ([[180.5, 10.0], [360.0, -5.0]], True, False),
     ([[200.0, np.nan]], True, False), ([[350.0, 10.0], [-190.0, 10.0]], False, False),
     ([[361.0, 10.0]], False, False), ([[10.0, 95.0], [200.0, np.nan]], True, True), ([[10.0, 95.0]], False, True),
     ([[10.0, 95.0], [200.0, 10.0]], True, False)],  # (swapped, (200, 10) would be invalid: no swap hint)
)  # fmt: skip
def test_longitudes_in_0_360_get_the_fix(encoder, points, hint, swap):
    """Longitudes in 0..360 were refused with "lon in [-180, 180]" and no word of how to fix them; the hint comes
    only where every finite longitude beyond ±180 lies in (180, 360], beside the lat/lon swap hint."""
    import pandas as pd

    from satclip.encoding.points import InvalidPointsError

    points = np.array(points)
    for embed in (encoder.encode, lambda p: satclip.embed(p, model=encoder),
                  lambda p: satclip.embed(pd.DataFrame(p, columns=["lon", "lat"]), model=encoder)):  # fmt: skip
        with pytest.raises(InvalidPointsError) as info:
            embed(points)
        message = str(info.value)
        assert bool(re.search(WRAP, message)) == hint, message
        assert ("lat/lon are swapped" in message) == swap, message
        assert "\n" not in message


def test_dtype_errors_name_dtype_and_what_it_takes(encoder):
    """load(dtype=torch.float16) and load_model(dtype=None) said "precision=…", a parameter the caller did not
    pass; load_model(dtype=torch.int64) failed in torch's Module.to with a TypeError."""
    from satclip.errors import BadInputError

    accepted = r"is not one of torch\.float32, torch\.float64, torch\.bfloat16 \(or precision= one of auto, "
    for value in (torch.float16, torch.int64, "float16"):
        for call in (lambda v: satclip.load("bluemarble-l10", dtype=v),
                     lambda v: satclip.embed(np.array([[13.4, 52.5]]), model=encoder, dtype=v)):  # fmt: skip
            with pytest.raises(BadInputError, match=rf"^dtype={re.escape(repr(value))} {accepted}[^\n]*\)$"):
                call(value)
    with pytest.raises(BadInputError, match=r"^precision='float16' is not one of auto, float32, bf16, float64$"):
        satclip.load("bluemarble-l10", precision="float16")  # (the parameter passed is the one named)
    accepted = r"give the model's dtype: torch\.float32, torch\.float64, torch\.bfloat16, torch\.float16 or a name"
    for value in (None, torch.int64, torch.complex64, "auto", "int64"):
        with pytest.raises(BadInputError, match=rf"^load_model\(dtype={re.escape(repr(value))}\): {accepted}"):
            satclip.load_model("bluemarble-l10", dtype=value)
    for value, dtype in ((torch.float64, torch.float64), ("bf16", torch.bfloat16), ("fp32", torch.float32)):
        assert {p.dtype for p in satclip.load_model("bluemarble-l10", dtype=value).visual.parameters()} == {dtype}


POINTS = [[13.4, 52.52], [-58.38, -34.6], [139.7, 35.7]]


def test_long_double_points_are_numbers(encoder):
    """np.longdouble points passed the number check and then failed in torch ("can't convert np.ndarray of
    type numpy.longdouble")."""
    expected = encoder.encode(np.array(POINTS, dtype=np.float64))
    long_double = np.array(POINTS, dtype=np.longdouble)
    torch.testing.assert_close(encoder.encode(long_double), expected, rtol=0, atol=0)
    np.testing.assert_array_equal(satclip.embed(long_double, model=encoder), expected.numpy())
    rows = [[np.longdouble(lon), np.longdouble(lat)] for lon, lat in POINTS]  # (np.asarray makes them longdouble)
    torch.testing.assert_close(encoder.encode(rows), expected, rtol=0, atol=0)


def _tensors():
    dense = torch.tensor(POINTS)
    with warnings.catch_warnings():  # (sparse CSR and nested tensors warn that they are in beta / prototype)
        warnings.simplefilter("ignore")
        return {
            "sparse_coo": (dense.to_sparse(), r"sparse tensor \(layout torch\.sparse_coo\): pass points\.to_dense\(\)"),
            "sparse_csr": (dense.to_sparse_csr(), r"sparse tensor \(layout torch\.sparse_csr\): pass points\.to_dense"),
            "meta": (dense.to("meta"), r"meta tensor \(shape \(3, 2\)\): it has no values"),
            "quantized": (
                torch.quantize_per_tensor(dense, 0.01, 0, torch.qint32),
                r"quantized tensor \(dtype torch\.qint32\): pass points\.dequantize\(\)",
            ),
            "nested": (
                torch.nested.nested_tensor([dense, dense[:1]]),
                r"nested tensor \(layout torch\.strided\): .*torch\.cat\(points\.unbind\(\)\)",
            ),
            "jagged": (
                torch.nested.nested_tensor([dense, dense[:1]], layout=torch.jagged),
                r"nested tensor \(layout torch\.jagged\): .*torch\.cat\(points\.unbind\(\)\)",
            ),
        }


@pytest.mark.parametrize("kind", ["sparse_coo", "sparse_csr", "meta", "quantized", "nested", "jagged"])
def test_tensors_without_dense_values_are_refused(encoder, kind):
    """A sparse tensor given to encoder.encode failed in torch with NotImplementedError ("Could not run
    'aten::ne.Scalar' … from the 'SparseCPU' backend"), a meta one with "Cannot copy out of meta tensor", a
    nested one with "NestedTensorImpl doesn't support sizes"; now one BadInputError line saying what to pass."""
    points, message = _tensors()[kind]
    for call in (lambda: encoder.encode(points), lambda: satclip.embed(points, model=encoder)):
        with pytest.raises(BadInputError, match=f"^points is a {message}") as info:
            call()
        assert "\n" not in str(info.value)
    if kind.startswith("sparse"):  # the fix the message gives works
        torch.testing.assert_close(encoder.encode(points.to_dense()), encoder.encode(torch.tensor(POINTS)))
    if kind == "quantized":  # (a scale of 0.01 holds the test's points exactly)
        torch.testing.assert_close(encoder.encode(points.dequantize()), encoder.encode(torch.tensor(POINTS)))
    if kind in ("nested", "jagged"):
        flat = torch.cat(points.unbind())
        torch.testing.assert_close(encoder.encode(flat), encoder.encode(torch.tensor([*POINTS, POINTS[0]])))


def test_dask_frame_errors_name_index_labels_as_pandas_does(encoder):
    """A Dask DataFrame's invalid points were named 'partition 1 (row numbers within the partition; index labels
    ['d', 'e']): … row 0: (lon=…' while the same rows of a pandas frame are "index label 'd': (lon=…"; now the
    pandas path's message with the partition number before it."""
    dd = pytest.importorskip("dask.dataframe")
    from satclip.encoding.points import InvalidPointsError

    lon = [13.4, -58.4, 139.7, 10.0, 20.0, 30.0]
    lat = [52.5, 1.0, 35.7, 95.0, np.nan, 1.0]  # invalid: 'd' and 'e', positions 0 and 1 of partition 1
    frame = pd.DataFrame({"lon": lon, "lat": lat}, index=["a", "b", "c", "d", "e", "f"])
    lazy = dd.from_pandas(frame, npartitions=2, sort=False)
    part = lazy.get_partition(1).compute(scheduler="synchronous")
    assert part.index.tolist() == ["d", "e", "f"]
    with pytest.raises(InvalidPointsError) as pandas_error:
        satclip.embed(part, model=encoder)
    with pytest.raises(InvalidPointsError) as info:
        satclip.embed(lazy, model=encoder).compute(scheduler="synchronous")
    message = str(info.value)
    assert message == f"partition 1: {pandas_error.value} Pass skip_invalid=True for NaN rows instead."
    assert "index label 'd': (lon=10.0, lat=95.0), index label 'e': (lon=20.0, lat=nan)" in message
    assert "row 0" not in message and info.value.bad_rows.tolist() == [0, 1]  # (bad_rows: positions, as before)
    skipped = satclip.embed(lazy, model=encoder, skip_invalid=True).compute(scheduler="synchronous")
    assert skipped.loc[["d", "e"]].isna().all().all() and skipped.drop(index=["d", "e"]).notna().all().all()


def test_text_in_a_coordinate_column_is_named_by_index_label_and_partition(encoder):
    """Text in a column of Python objects was 'coordinate column 'lon' is not numeric: could not convert string
    to float: 'abc'', with no row, and from a Dask frame no partition either."""
    dd = pytest.importorskip("dask.dataframe")
    frame = pd.DataFrame({"lon": [13.4, None, 139.7, 10.0, "abc", 30.0], "lat": [0.0] * 6}, index=list("abcdef"))
    said = r"coordinate column 'lon' holds text, not numbers, and 'abc' at index label 'e' is no number either: .*"
    with pytest.raises(ValueError, match=f"^{said}$"):  # (None before it is missing, not text)
        satclip.embed(frame, model=encoder)
    table = pa.Table.from_pandas(frame.fillna(1.0).astype({"lon": str}), preserve_index=False)  # (no labels)
    with pytest.raises(ValueError, match=r"^coordinate column 'lon' holds text, .* and 'abc' at row 4 is no number"):
        satclip.embed(table, model=encoder)
    lazy = dd.from_pandas(frame.fillna(1.0), npartitions=2, sort=False)
    with pytest.raises(ValueError, match=f"^partition 1: {said}$"):
        satclip.embed(lazy, model=encoder).compute(scheduler="synchronous")


def test_dask_geodataframe_non_points_name_index_labels(encoder):
    """A dask-geopandas frame's non-point geometries were named by their positions within the partition ('found
    ['Polygon'] (rows 0, 2)', no partition) where a GeoDataFrame's are named by index labels."""
    dask_geopandas = pytest.importorskip("dask_geopandas")
    gpd = pytest.importorskip("geopandas")
    shapely = pytest.importorskip("shapely")

    points = [shapely.Point(x, x) for x in range(6)]
    points[3], points[5] = shapely.box(0, 0, 1, 1), shapely.box(1, 1, 2, 2)  # 'd' and 'f', in partition 1
    frame = gpd.GeoDataFrame({"k": range(6)}, geometry=points, crs="EPSG:4326", index=["a", "b", "c", "d", "e", "f"])
    lazy = dask_geopandas.from_geopandas(frame, npartitions=2, sort=False)
    part = lazy.get_partition(1).compute(scheduler="synchronous")
    assert part.index.tolist() == ["d", "e", "f"]
    with pytest.raises(ValueError) as pandas_error:
        satclip.embed(part, model=encoder)
    with pytest.raises(ValueError) as info:
        satclip.embed(lazy, model=encoder).compute(scheduler="synchronous")
    assert str(info.value) == f"partition 1: {pandas_error.value}"
    assert "found ['Polygon'] (index labels 'd', 'f'); pass centroids=True" in str(info.value)
    centres = satclip.embed(lazy, model=encoder, centroids=True).compute(scheduler="synchronous")
    expected = satclip.embed(frame, model=encoder, centroids=True).to_numpy()  # (embedded in other batches)
    np.testing.assert_allclose(centres.to_numpy(), expected, rtol=0, atol=1e-5)


def test_an_array_of_negative_strides_is_embedded(encoder):
    """`encode(a[::-1])` (or np.flipud) failed with torch's "At least one stride in the given numpy array is
    negative …": the array is copied, as read-only ones are."""
    points = np.array([[13.4, 52.52], [1.0, 2.0], [-70.0, -33.0]])
    expected = encoder.encode(points[::-1].copy()).numpy()
    np.testing.assert_array_equal(encoder.encode(points[::-1]).numpy(), expected)
    np.testing.assert_array_equal(satclip.embed(np.flipud(points), model=encoder), expected)


@pytest.mark.parametrize(("values", "named"), [
    ([[True, False]], r"entry \(0, 0\) is True \(bool\)"),
    ([[12.5, "52.5"]], r"entry \(0, 1\) is '52.5' \(str\)"),
    ([[1 + 2j, 2.0]], r"entry \(0, 0\) is \(1\+2j\) \(complex\)"),
])  # fmt: skip
def test_an_array_of_python_objects_is_refused_where_a_typed_one_is(encoder, values, named):
    """True held as a Python object was embedded as 1 degree and "52.5" as 52.5, where the same values in a
    bool or text array are refused."""
    with pytest.raises(ValueError, match=rf"^points must be numbers \(lon, lat\) in degrees; {named}$"):
        encoder.encode(np.array(values, dtype=object))


def test_pd_na_in_an_array_of_python_objects_is_a_missing_value(encoder):
    """pd.NA (what a nullable column's to_numpy() holds) gave "float() argument must be … not 'NAType'"; it is a
    missing value, as None is: the row is named as invalid (or NaN with skip_invalid)."""
    points = np.array([[pd.NA, 1.0], [2.0, 3.0]], dtype=object)
    with pytest.raises(InvalidPointsError, match=r"row 0: \(lon=nan"):
        encoder.encode(points)
    out = satclip.embed(points, model=encoder, skip_invalid=True)
    assert np.isnan(out[0]).all()
    np.testing.assert_array_equal(out[1], encoder.encode([[2.0, 3.0]]).numpy()[0])


def test_a_column_of_numbers_and_true_false_values_is_refused(encoder):
    """A column of Python objects mixing numbers and booleans embedded True as 1 degree (one of booleans alone,
    or a bool column, is refused)."""
    frame = pd.DataFrame({"lon": pd.Series([True, 1.0, 2.0], dtype=object), "lat": [0.0, 1.0, 2.0]})
    with pytest.raises(ValueError, match=r"coordinate column 'lon' must be numbers .* \(true/false values\)"):
        satclip.embed(frame, model=encoder)


@pytest.mark.parametrize("column", [
    pd.Series(["12.5", "13.0"], index=["a", "b"]),  # text held as Python objects (a CSV read as text)
    pd.Series(["12.5", None], index=["a", "b"], dtype="string"),  # pandas' text dtype, one missing
    pd.Series([1.0, "12.5"], index=["a", "b"], dtype=object),  # numbers and text mixed
])  # fmt: skip
def test_a_column_of_text_is_refused_as_an_array_of_text_is(encoder, column):
    """A DataFrame column of text numbers was embedded ("12.5" as 12.5 degrees) while encode refuses the same
    text as an array: both refuse it, naming the first text value and the conversion."""
    frame = pd.DataFrame({"lon": column, "lat": [0.0, 1.0]}, index=column.index)
    first = next(label for label, value in column.items() if isinstance(value, str))
    with pytest.raises(ValueError, match=rf"^coordinate column 'lon' holds text, not numbers \('12.5' at index "
                                         rf"label '{first}'\): convert it first, e.g. .*to_numeric"):  # fmt: skip
        satclip.embed(frame, model=encoder)
    with pytest.raises(ValueError, match="must be numbers"):
        encoder.encode(np.array([[column[first], "0.0"]]))
    with pytest.raises(ValueError, match=r"holds text, not numbers \('12.5' at row 0\)"):  # (no labels)
        satclip.embed(pa.table({"lon": ["12.5", "13.0"], "lat": [0.0, 1.0]}), model=encoder)


@pytest.mark.parametrize("option", ["skip_invalid", "centroids"])
def test_the_switches_of_embed_take_true_or_false_only(encoder, option):
    """`skip_invalid="no"` made invalid points NaN rows (and `centroids="no"` embedded polygons at their
    centroids): any truthy value counted as True."""
    with pytest.raises(BadInputError, match=rf"^{option} must be True or False, got 'no'$"):
        satclip.embed(np.array([[200.0, 0.0], [1.0, 1.0]]), model=encoder, **{option: "no"})


@pytest.mark.parametrize("options", [{"skip_invalid": "no"}, {"batch_size": 0}, {"batch_size": 2.5}])
def test_lazy_embeddings_refuse_bad_options_at_once(encoder, options):
    """A lazy field or Dask frame took `skip_invalid="no"` as True (the invalid cell became NaN without a word)
    and a `batch_size` of 0 or 2.5 without a word: it failed only when computed, perhaps on a worker midway."""
    pytest.importorskip("xarray")
    dd = pytest.importorskip("dask.dataframe")
    from satclip.embed.xarray import embedding_field

    name = next(iter(options))
    with pytest.raises(BadInputError, match=rf"^{name} must be "):
        embedding_field(encoder, np.array([[0.0, 400.0]]), np.array([[0.0, 10.0]]), **options)
    frame = dd.from_pandas(pd.DataFrame({"lon": [1.0, 400.0], "lat": [2.0, 3.0]}), npartitions=1)
    with pytest.raises(BadInputError, match=rf"^{name} must be "):
        satclip.embed(frame, model=encoder, **options)


def test_a_dask_series_is_named_not_an_attribute_error(encoder):
    """A Dask Series (one column) failed with "AttributeError: 'Series' object has no attribute 'columns'"."""
    dd = pytest.importorskip("dask.dataframe")
    frame = dd.from_pandas(pd.DataFrame({"lon": [1.0], "lat": [2.0]}), npartitions=1)
    with pytest.raises(BadInputError, match=r"^points is a Dask Series \('lon'\), not a table of coordinates"):
        satclip.embed(frame.lon, model=encoder)


def test_column_names_given_with_an_array_are_refused(encoder):
    """`satclip.embed(array, lon_col="lon")` ignored the name: an array's columns are (lon, lat) whatever it says."""
    with pytest.raises(ValueError, match=r"^lon_col='lat' names columns of a table, but points is a ndarray"):
        satclip.embed(np.array([[1.0, 2.0]]), model=encoder, lon_col="lat")


def test_one_point_as_a_pair_is_told_how_to_pass_it(encoder):
    with pytest.raises(ValueError, match=r"got shape \(2,\) \(one point\? pass \[\[lon, lat\]\]\)$"):
        encoder.encode([13.4, 52.5])


@pytest.mark.parametrize(("value", "message"), [
    ("", r"^retrieval='' names no database: pass retrieval='auto' or a database directory"),
    ("Auto", r"^retrieval='Auto': did you mean retrieval='auto'\?$"),
])  # fmt: skip
def test_a_retrieval_value_that_names_no_database_is_named(value, message):
    """`retrieval=""` was read as the directory "." (". is not a retrieval database"); "Auto" as a directory."""
    with pytest.raises(BadInputError, match=message):
        satclip.load("bluemarble-l10", retrieval=value)


def test_messages_name_the_input_as_it_is(encoder, tmp_path, monkeypatch, caplog):
    """What a notebook user met: a Series was told "one point? pass [[lon, lat]]"; -90.0001 (rounding) was said
    to look like swapped lat/lon; a URL was read as the path "https:/example.com/x.ckpt"; a folder named like a
    shipped model hid it without a word; an encoder moved to 'meta' failed inside torch; "k configure retrieval"."""
    with pytest.raises(ValueError, match=r"^points is a pandas Series \('lon'\), one column: pass both"):
        encoder.encode(pd.Series([13.4, 52.5], name="lon"))
    with pytest.raises(ValueError, match=r"^points is a pandas Series, one column: pass both"):  # (it said "(None)")
        encoder.encode(pd.Series([13.4, 52.5]))
    with pytest.raises(InvalidPointsError, match=r"past a pole by at most 0\.001° \(rounding\?\): clip them") as err:
        encoder.encode([[10.0, -90.0001]])
    assert "swapped" not in str(err.value)
    with pytest.raises(InvalidPointsError, match="lat/lon are swapped"):  # (far past a pole: as before)
        encoder.encode([[10.0, -120.0]])
    with pytest.raises(BadInputError, match=r"^https://example\.com/x\.ckpt is a URL: satclip loads no model from a"):
        satclip.load("https://example.com/x.ckpt")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bluemarble-l10").mkdir()
    with pytest.raises(FileNotFoundError, match=r"it hides the model 'bluemarble-l10': rename that folder"):
        satclip.load("bluemarble-l10")
    # a model there under that name (here bluemarble-l40's) was loaded as bluemarble-l10 without a word
    (tmp_path / "bluemarble-l10").rmdir()
    shutil.copytree(satclip.pretrained.bundled_models()["bluemarble-l40"], tmp_path / "bluemarble-l10")
    with caplog.at_level("WARNING", logger="satclip"):
        assert satclip.load("bluemarble-l10").config["encoding"]["legendre_polys"] == 40
    assert "not the model named 'bluemarble-l10': pass ./bluemarble-l10 to say you mean it" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="satclip"):
        satclip.load("./bluemarble-l10")
    assert caplog.text == ""
    with pytest.raises(BadInputError, match=r"^k configures retrieval: also pass retrieval='auto' or a database$"):
        satclip.load(satclip.pretrained.bundled_models()["bluemarble-l40"], k=5)
    meta = satclip.LocationEncoder.from_config(CONFIG).to("meta")
    with pytest.raises(BadInputError, match=r"weights are on the 'meta' device, which holds no values"):
        meta.encode([[1.0, 2.0]])


def test_a_coordinate_in_the_frames_index_is_named(encoder):
    """A frame whose lon was its index was told "no longitude column … among ['lat']"."""
    from satclip.embed.columns import ColumnError

    frame = pd.DataFrame([[1.0, 2.0]], columns=["lon", "lat"]).set_index("lon")
    with pytest.raises(ColumnError, match=r"The frame's index holds \['lon'\]: make it a column with "
                                          r"frame\.reset_index\(\)$"):  # fmt: skip
        satclip.embed(frame, model=encoder)
    assert satclip.embed(frame.reset_index(), model=encoder).shape == (1, encoder.embedding_dim)


@pytest.mark.parametrize("points, options", [
    (pd.DataFrame({"lon": ["13.4", "x"], "lat": [52.5, 1.0]}), {}),  # text in a coordinate column
    (pd.DataFrame({"lon": [True, False], "lat": [52.0, 0.0]}), {}),  # booleans
    (np.zeros((2, 2)), {"lon_col": "a", "lat_col": "b"}),  # column names for an array
    (pd.DataFrame({"x": [1.0], "y": [2.0]}), {}),  # no coordinate columns (ColumnError)
])  # fmt: skip
def test_bad_coordinate_columns_are_satclips_bad_input(encoder, points, options):
    """They were plain ValueErrors (and ColumnError a ValueError): a notebook catching satclip's BadInputError, as
    every other bad argument raises, missed them."""
    with pytest.raises(BadInputError):
        satclip.embed(points, encoder, **options)


def test_coordinates_in_radians_are_named_in_the_footprint_note(caplog):
    """Radians are valid degrees: satclip.embed embedded them at the wrong places, and said only that every point lay
    outside the footprint. The note now says they look like radians, and nothing of it for degrees."""
    encoder = satclip.load("bluemarble-l10")
    rng = np.random.default_rng(0)
    degrees = np.column_stack([rng.uniform(-180, 180, 200), rng.uniform(-60, 80, 200)])
    with caplog.at_level("WARNING", logger="satclip"):
        satclip.embed(np.radians(degrees), encoder)
        assert "as coordinates in radians do: if they are, pass numpy.degrees(points)" in caplog.text
        caplog.clear()
        satclip.embed(degrees, encoder)
    assert "outside the model's training footprint" in caplog.text and "radians" not in caplog.text


def test_coordinates_in_radians_are_named_for_a_model_without_a_footprint(caplog):
    """The hint came only beside a footprint note: a model that records no footprint (the released checkpoints)
    embedded radians without a word."""
    encoder = satclip.LocationEncoder.from_config(CONFIG)
    rng = np.random.default_rng(0)
    degrees = np.column_stack([rng.uniform(-180, 180, 200), rng.uniform(-90, 90, 200)])
    with caplog.at_level("WARNING", logger="satclip"):
        satclip.embed(np.radians(degrees), encoder)
        assert caplog.messages == ["Every point lies within ±3.14° of longitude and ±1.57° of latitude, as coordinates "
                                   "in radians do: if they are, pass numpy.degrees(points)."]  # fmt: skip
        caplog.clear()
        satclip.embed(degrees, encoder)
    assert not caplog.messages


def test_run_evaluation_takes_a_dataframe_task_file(tmp_path):
    """A TaskFile of a DataFrame (its docstring allows one) was "TypeError: expected str, bytes or os.PathLike
    object, not DataFrame" from the check that the output is none of the inputs; evaluate took it."""
    from satclip.eval import EvalConfig, TaskFile, run_evaluation

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lon": rng.uniform(-170, 170, 60), "lat": rng.uniform(-60, 60, 60), "y": rng.normal(size=60)})
    config = EvalConfig(encoders=("wrap",), task_file=TaskFile(frame, target_col="y"), seeds=(1,), probes=("linear",))
    out = run_evaluation(config, tmp_path / "out", figures=False)
    assert [(row["task"], row["encoder"]) for row in out.rows] == [("table", "wrap")]
    assert out.files["csv"].is_file()


def tiny_clip():
    """A SatCLIP of a fitted MOSAIKS image encoder and a small location encoder (embed_dim 16)."""
    import torch

    import satclip
    from satclip.models.clip import SatCLIP

    images = torch.rand(4, 13, 16, 16, generator=torch.Generator().manual_seed(0))
    visual = satclip.image.create("mosaiks", in_chans=13, num_filters=8, embed_dim=16).fit(images, seed=0)
    location = satclip.LocationEncoder.from_config(
        {"encoding": {"name": "sphericalharmonics", "legendre_polys": 4},
         "network": {"name": "siren", "num_classes": 16, "dim_hidden": 8, "num_layers": 1}}
    )  # fmt: skip
    return SatCLIP(visual, location).eval()


def test_save_expands_a_home_directory_as_load_does(tmp_path, monkeypatch):
    """`encoder.save("~/m")` wrote ./~/m (a folder named "~") while `satclip.load("~/m")` read the home's m."""
    import torch

    import satclip

    from .test_embed_api import CONFIG

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    encoder = satclip.LocationEncoder.from_config(CONFIG).eval()
    assert encoder.save("~/m").path == home / "m"
    model = tiny_clip()
    assert model.save("~/clip").path == home / "clip"
    assert sorted(p.name for p in work.iterdir()) == []  # (no folder named "~")
    points = torch.tensor([[13.4, 52.5], [-70.0, -33.0]])
    torch.testing.assert_close(satclip.load("~/m").encode(points), encoder.encode(points), rtol=0, atol=0)
    assert (home / "clip" / "config.json").is_file()


def test_encode_location_takes_arrays_and_lists_as_encode_image_does():
    """`SatCLIP.encode_location(numpy array)` was "AttributeError: 'str' object has no attribute 'type'", and a
    list an AttributeError, while encode_image beside it takes numpy arrays."""
    import torch

    from satclip.encoding.points import InvalidPointsError

    model = tiny_clip()
    points = [[13.4, 52.5], [-70.0, -33.0], [151.2, -33.9]]
    with torch.no_grad():
        expected = model.encode_location(torch.tensor(points, dtype=torch.float64))
        for given in (np.array(points), points):
            torch.testing.assert_close(model.encode_location(given), expected, rtol=0, atol=0)
    with pytest.raises(InvalidPointsError, match="row 1"):
        model.encode_location(np.array([[13.4, 52.5], [13.4, 95.0]]))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"protocol": "rand"}, "unknown evaluation protocol 'rand'; did you mean 'random'?"),
        ({"probes": ("svm",)}, "unknown probe 'svm'; known: linear, mlp, paper-mlp"),
        ({"tasks": ("kopen",)}, "unknown evaluation task 'kopen'; did you mean 'koppen'?"),
        ({"seeds": "0"}, "EvalConfig: seeds='0' is text; give integers >= 0"),
        ({"seeds": None}, "EvalConfig: seeds=None; give integers >= 0"),
        ({"seeds": (0, -1)}, "EvalConfig: seeds must be integers >= 0, at least one, got [0, -1]"),
        ({"seeds": (0, "1")}, "EvalConfig: seeds must be integers >= 0, at least one, got [0, '1']"),
        ({"seeds": (1, 1)}, "seeds must be unique, got [1, 1]"),
        ({"probes": ("linear", "linear")}, "probes must be unique, got ['linear', 'linear']"),
    ],
)  # fmt: skip
def test_eval_config_refuses_what_cannot_be_meant_as_it_is_made(options, expected, monkeypatch):
    """EvalConfig took seeds="0" (as ('0',)), unknown protocol, probe and task names; evaluate refused them later,
    some as plain ValueErrors. Nothing is loaded."""
    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig
    from satclip.io import load

    monkeypatch.setattr(load, "load", lambda *a, **k: pytest.fail("EvalConfig loaded a model"))
    with pytest.raises(BadInputError) as refused:
        EvalConfig(**{"encoders": ("wrap",), "tasks": ("koppen",), **options})
    assert expected in str(refused.value) and len(str(refused.value)) < 200
    config = EvalConfig(encoders=("wrap", "satclip-resnet18-l10", "bluemarble-l10+range", "./m.ckpt", "hf://a/b"),
                        tasks=("koppen",), seeds=[np.int64(1), 0])  # fmt: skip
    assert config.seeds == (1, 0) and all(type(seed) is int for seed in config.seeds)
    assert EvalConfig(encoders=("wrap",), tasks=("koppen",), seeds=np.int64(2)).seeds == (2,)


@pytest.mark.parametrize(("spec", "expected"), [
    ("nonsense", "unknown encoder 'nonsense': known: cartesian3d, direct, geoclip, grid, sh-l10, "),
    ("sh-l11", "unknown encoder 'sh-l11': did you mean 'sh-l10' or 'sh-l40'?"),
])  # fmt: skip
def test_an_unknown_encoder_name_is_refused_by_name_before_anything_is_loaded(spec, expected, monkeypatch):
    """An unknown encoder was refused in 700 characters, as a plain ValueError. It is refused by its name now, when
    the evaluation starts, in one short line; the config is made (a bare name may be a model directory written
    after it, and a config only describes results for eval.report)."""
    from satclip.errors import UnknownNameError
    from satclip.eval import EvalConfig, evaluate
    from satclip.io import load

    monkeypatch.setattr(load, "load", lambda *a, **k: pytest.fail("a model was loaded"))
    for encoders in ((spec,), ("satclip-resnet18-l10", spec)):  # (the second's typo: before the first is loaded)
        with pytest.raises(UnknownNameError) as refused:
            evaluate(EvalConfig(encoders=encoders, tasks=("koppen",)))
        message = str(refused.value)  # (the known names listed, no satclip.load failure: 700 characters were)
        assert expected in message and "bluemarble-l10, " in message and len(message) < 600, message


def test_encode_warns_once_of_points_that_look_like_radians_and_embed_once_too(caplog):
    """`encoder.encode(np.radians(points))` embedded them off West Africa without a word, while satclip.embed warned.
    encode warns once a call (not once a batch); satclip.embed and embed_lonlat (satclip embed's chunks, Dask
    partitions) leave it to their own note, said once."""
    import warnings

    import satclip
    from satclip.embed.api import embed_lonlat

    from .test_embed_api import CONFIG

    encoder = satclip.LocationEncoder.from_config(CONFIG).eval()
    degrees = np.array([[13.4, 52.5], [-70.0, -33.0], [151.2, -33.9], [2.35, 48.85]])
    radians = np.radians(degrees)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.encode(radians, batch_size=1)
    assert [str(w.message) for w in caught] == [
        "Every point lies within ±3.14° of longitude and ±1.57° of latitude, as coordinates in radians do: if they "
        "are, pass numpy.degrees(points)."
    ]
    assert caught[0].filename == __file__  # (the user's line)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.encode(degrees)
        encoder.encode(radians[:1])  # (one point says nothing)
        encoder.encode(radians, warn_radians=False)
        embed_lonlat(encoder, radians, batch_size=1)
        caplog.clear()
        satclip.embed(radians, model=encoder, batch_size=1)
    assert caught == []
    said = [r.getMessage() for r in caplog.records if "radians" in r.getMessage()]
    assert len(said) == 1 and "numpy.degrees(points)" in said[0]


def test_encode_points_a_dict_of_columns_to_satclip_embed():
    """`encode({"lon": ..., "lat": ...})` said "(float() argument must be a string or a real number, not
    'dict')"; satclip.embed takes the dict, and a DataFrame, which encode keeps refusing (its column order)."""
    import satclip
    from satclip.errors import BadInputError

    from .test_embed_api import CONFIG

    encoder = satclip.LocationEncoder.from_config(CONFIG).eval()
    columns = {"lon": [13.4, -70.0], "lat": [52.5, -33.0]}
    with pytest.raises(BadInputError, match=r"points is a dict of columns \('lon', 'lat'\): pass it to "
                                            r"satclip.embed\(points, model=…\)"):  # fmt: skip
        encoder.encode(columns)
    with pytest.raises(BadInputError, match=r"points is a DataFrame: .* satclip.embed\(frame, model=…\)"):
        encoder.encode(pd.DataFrame(columns))
    expected = encoder.encode(np.column_stack([columns["lon"], columns["lat"]])).numpy()
    np.testing.assert_array_equal(satclip.embed(columns, model=encoder), expected)


def test_a_builder_parameter_it_does_not_take_is_a_bad_input_naming_the_accepted_ones():
    """`satclip.image.create("moco_resnet18", embed_dm=8)` was a plain TypeError (the location encoders' registry
    refuses the same mistake as a BadInputError); it is both now, so that `except TypeError` keeps working."""
    import satclip
    from satclip.errors import BadInputError

    with pytest.raises(BadInputError, match=r"image encoder 'moco_resnet18' got unexpected parameter\(s\) "
                                            r"\['embed_dm'\]; it accepts \[.*'embed_dim'") as refused:  # fmt: skip
        satclip.image.create("moco_resnet18", embed_dm=8)
    assert isinstance(refused.value, TypeError)
    with pytest.raises(BadInputError, match=r"got unexpected parameter\(s\) \['bogus'\]"):
        satclip.encoding.ENCODINGS.create("sphericalharmonics", bogus=1)


def test_load_config_takes_a_dict_as_fit_does():
    """`satclip.train.load_config({...})` was "TypeError: expected str, bytes or os.PathLike object, not dict"
    while fit takes the dict; the overrides apply to it as to a file's."""
    train = pytest.importorskip("satclip.train")

    sections = {"optim": {"lr": 0.001}, "trainer": {"max_epochs": 3}}
    config = train.load_config(sections, {"trainer.max_epochs": "5"})
    assert config == train.from_dict({"optim": {"lr": 0.001}, "trainer": {"max_epochs": 5}})
    assert sections == {"optim": {"lr": 0.001}, "trainer": {"max_epochs": 3}}  # (the caller's dict is left as it is)
