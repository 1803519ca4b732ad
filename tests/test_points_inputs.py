"""Point collections that satclip.embed and encode could not read or refused without the fix: a shapely MultiPoint
(shapely's NotImplementedError from the xarray check) and numpy structured arrays (read by their field names, as a
dict of columns is). Each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import satclip
from satclip.embed.columns import ColumnError
from satclip.errors import BadInputError

from .test_embed_api import CONFIG

shapely = pytest.importorskip("shapely")


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return satclip.LocationEncoder.from_config(CONFIG).eval()


@pytest.mark.parametrize("geometry", [shapely.MultiPoint([(13.4, 52.5), (2.3, 48.8)]), shapely.Point(13.4, 52.5)])
def test_a_shapely_geometry_is_one_line_with_the_fix(encoder, geometry):
    kind = type(geometry).__name__
    for call in (lambda: satclip.embed(geometry, model=encoder), lambda: encoder.encode(geometry)):
        with pytest.raises(BadInputError, match=rf"^points is a shapely {kind}: pass shapely.get_coordinates\("):
            call()
    fixed = satclip.embed(shapely.get_coordinates(geometry), model=encoder)
    np.testing.assert_array_equal(fixed, encoder.encode(np.array(geometry.coords if kind == "Point" else
                                                                 [(13.4, 52.5), (2.3, 48.8)])).numpy())  # fmt: skip


def test_a_structured_array_is_read_by_its_field_names(encoder):
    """Read as a dict of its fields (lat first here: found by name, not place); a recarray too; lon_col/lat_col name
    fields; fields named neither way are refused as a table's columns are. encode says how to pass one."""
    expected = encoder.encode([[13.4, 52.5], [2.3, 48.8]]).numpy()
    points = np.array([(52.5, 13.4, 1), (48.8, 2.3, 2)], dtype=[("latitude", "f8"), ("lng", "f4"), ("id", "i8")])
    np.testing.assert_allclose(satclip.embed(points, model=encoder), expected, atol=1e-6)  # (lng is float32)
    np.testing.assert_allclose(satclip.embed(points.view(np.recarray), model=encoder), expected, atol=1e-6)
    renamed = points.astype([("y", "f8"), ("x", "f8"), ("id", "i8")])
    np.testing.assert_array_equal(satclip.embed(renamed, model=encoder, lon_col="x", lat_col="y"), expected)
    with pytest.raises(ColumnError):
        satclip.embed(renamed, model=encoder)
    with pytest.raises(BadInputError, match=r"^points is a structured array of fields 'latitude', 'lng', 'id': pass it "
                                            r"to satclip.embed\(points, model=…\)"):  # fmt: skip
        encoder.encode(points)


#: values of the fields of the structured arrays below, by name
FIELDS = {"lon": [13.4, 2.3], "lat": [52.5, 48.8], "id": [7, 8], "Latitude": [52.5, 48.8], "x": [0.0, 1.0],
          "LONGITUDE": [13.4, 2.3], "t": [5.0, 6.0]}  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "lon", "lat"),
    [(("id", "lon", "lat"), "lon", "lat"), (("lat", "lon"), "lon", "lat"),
     (("Latitude", "x", "LONGITUDE", "id", "t"), "LONGITUDE", "Latitude")],
)  # fmt: skip
def test_encode_never_names_the_wrong_fields_of_a_structured_array(encoder, fields, lon, lat):
    """encode's refusal said np.column_stack([points[FIRST], points[LAST]]) with lon first: the id field for ('id',
    'lon', 'lat'), the latitude first for ('lat', 'lon'). It points to satclip.embed, which reads the fields by name,
    and stacks placeholders, which the user's longitude and latitude fields fill."""
    points = np.array(list(zip(*(FIELDS[name] for name in fields), strict=True)),
                      dtype=[(name, "i8" if name == "id" else "f8") for name in fields])  # fmt: skip
    with pytest.raises(BadInputError) as err:
        encoder.encode(points)
    assert str(err.value).endswith(" or np.column_stack([points[LON_FIELD], points[LAT_FIELD]]) with its longitude "
                                   "and latitude fields")  # fmt: skip
    stacked = np.column_stack([points[lon], points[lat]])
    np.testing.assert_array_equal(stacked, [[13.4, 52.5], [2.3, 48.8]])
    np.testing.assert_array_equal(encoder.encode(stacked).numpy(), satclip.embed(points, model=encoder))


def test_encode_gives_field_placeholders_where_no_field_is_named_lon_or_lat(encoder):
    points = np.array([(52.5, 13.4)], dtype=[("northing", "f8"), ("easting", "f8")])
    with pytest.raises(BadInputError, match=r"^points is a structured array of fields 'northing', 'easting': .* or "
                                            r"np.column_stack\(\[points\[LON_FIELD\], points\[LAT_FIELD\]\]\) with its "
                                            r"longitude and latitude fields$"):  # fmt: skip
        encoder.encode(points)
