"""Inputs of the public API that failed with bare library errors or named rows unlike the rest: long-double
numpy points, sparse, nested and meta tensors (satclip.encoding.points), and the errors of a Dask DataFrame
(satclip.embed.distributed). Each test failed before its fix."""

from __future__ import annotations

import warnings

import numpy as np
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
