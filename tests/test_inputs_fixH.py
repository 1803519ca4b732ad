"""Inputs of the public API that failed with bare library errors or named rows unlike the rest: long-double
numpy points, sparse, nested and meta tensors (satclip.encoding.points), and the errors of a Dask DataFrame
(satclip.embed.distributed). Each test failed before its fix."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import satclip
from satclip.errors import BadInputError

from .test_embed_api import CONFIG


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return satclip.LocationEncoder.from_config(CONFIG).eval()


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
            "nested": (
                torch.nested.nested_tensor([dense, dense[:1]]),
                r"nested tensor \(layout torch\.strided\): .*torch\.cat\(points\.unbind\(\)\)",
            ),
            "jagged": (
                torch.nested.nested_tensor([dense, dense[:1]], layout=torch.jagged),
                r"nested tensor \(layout torch\.jagged\): .*torch\.cat\(points\.unbind\(\)\)",
            ),
        }


@pytest.mark.parametrize("kind", ["sparse_coo", "sparse_csr", "meta", "nested", "jagged"])
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
