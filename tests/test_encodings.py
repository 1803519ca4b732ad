"""Positional encodings: golden values of the original SatCLIP, independent scalar references of each
layout, float32/pole/antimeridian behaviour and the registry's errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import satclip
from satclip.encoding import ENCODINGS, create, create_from_hparams, names

from .conftest import REFERENCE, require

RAW = ["direct", "wrap", "cartesian3d"]
MULTISCALE = ["theory", "grid", "spherec", "spherecplus", "spherem", "spheremplus"]
#: (min_radius, max_radius, frequency_num): the released hyper-parameters and the grid/sphere class defaults
PARAM_SETS = [(1, 360, 16), (1e-5, 0.01, 16)]
#: distinct terms per frequency of each Sphere2Vec variant (each appears twice in the output)
SPHERE_TERMS = {"spherec": 3, "spherecplus": 6, "spherem": 5, "spheremplus": 8}
EXPECTED_DIM = {"direct": 2, "wrap": 4, "cartesian3d": 3, "theory": 6, "grid": 4, **{
    k: 2 * v for k, v in SPHERE_TERMS.items()}}  # fmt: skip


@pytest.fixture(scope="module")
def golden():
    arrays = np.load(require(REFERENCE / "encodings_reference.npz"))
    meta = json.loads(require(REFERENCE / "encodings_reference.json").read_text())
    return arrays, meta


@pytest.fixture(scope="module")
def released_hparams():
    configs = json.loads(require(REFERENCE / "key_shapes.json").read_text())["configs"]
    return configs["satclip-resnet18-l10"]["hyper_parameters"]


def golden_key(name: str, params: tuple[float, float, int]) -> str:
    lo, hi, f = params
    return f"{name}__min{lo:g}_max{hi:g}_freq{f}"


def build(name: str, params: tuple[float, float, int] | None = None):
    if params is None:
        return create(name)
    lo, hi, f = params
    return create(name, min_radius=lo, max_radius=hi, frequency_num=f)


def random_lonlat(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lon = torch.rand(n, generator=g, dtype=torch.float64) * 360 - 180
    lat = torch.rand(n, generator=g, dtype=torch.float64) * 180 - 90
    return torch.stack([lon, lat], dim=1)


# ---------------------------------------------------------------- golden values of the original


def test_fixture_covers_every_non_sh_encoding(golden):
    _, meta = golden
    assert {m["name"] for m in meta.values()} == set(RAW + MULTISCALE)
    assert set(names()) >= set(RAW + MULTISCALE)


@pytest.mark.parametrize("name", RAW)
def test_raw_encodings_match_original(golden, name):
    arrays, meta = golden
    enc = create(name)
    got = enc(torch.from_numpy(arrays["lonlat"]))
    assert enc.embedding_dim == meta[name]["embedding_dim"] == got.shape[1]
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), arrays[name], rtol=0, atol=1e-10)


@pytest.mark.parametrize("params", PARAM_SETS, ids=lambda p: f"{p[0]:g}-{p[1]:g}")
@pytest.mark.parametrize("name", MULTISCALE)
def test_multiscale_encodings_match_original(golden, name, params):
    arrays, meta = golden
    key = golden_key(name, params)
    enc = build(name, params)
    got = enc(torch.from_numpy(arrays["lonlat"]))
    assert enc.embedding_dim == meta[key]["embedding_dim"] == got.shape[1]
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), arrays[key], rtol=0, atol=1e-10)


def test_direct_is_radians_minus_pi():
    lonlat = torch.tensor([[-180.0, -90.0], [0.0, 0.0], [180.0, 90.0], [45.0, -30.0]], dtype=torch.float64)
    want = lonlat * math.pi / 180 - math.pi
    torch.testing.assert_close(create("direct")(lonlat), want, rtol=0, atol=1e-15)


def test_wrap_and_cartesian3d_are_points_on_circles_and_sphere():
    lonlat = random_lonlat()
    w = create("wrap")(lonlat)
    torch.testing.assert_close(w[:, 0] ** 2 + w[:, 1] ** 2, torch.ones(len(lonlat), dtype=torch.float64))
    torch.testing.assert_close(torch.atan2(w[:, 1], w[:, 0]), torch.deg2rad(lonlat[:, 0]))
    xyz = create("cartesian3d")(lonlat)
    torch.testing.assert_close(xyz.norm(dim=1), torch.ones(len(lonlat), dtype=torch.float64))
    torch.testing.assert_close(torch.rad2deg(torch.asin(xyz[:, 2])), lonlat[:, 1])


# ---------------------------------------------------------------- scalar references of the layouts


def scalar_frequencies(lo: float, hi: float, f: int) -> list[float]:
    return [1 / (lo * (hi / lo) ** (i / (f - 1))) for i in range(f)]


def scalar_theory(lon: float, lat: float, lo: float, hi: float, f: int) -> list[float]:
    """Angles [a1, a1, a2, a2, a3, a3] per frequency; the 6F values are split in two halves, and in each
    half even positions take sin, odd ones cos."""
    s = math.sqrt(3) / 2
    proj = [lon, lon, -lon / 2 + s * lat, -lon / 2 + s * lat, -lon / 2 - s * lat, -lon / 2 - s * lat]
    angles = [p * w for w in scalar_frequencies(lo, hi, f) for p in proj]
    half = 3 * f
    return [math.sin(a) if (j % half) % 2 == 0 else math.cos(a) for j, a in enumerate(angles)]


def scalar_grid(lon: float, lat: float, lo: float, hi: float, f: int) -> list[float]:
    freqs = scalar_frequencies(lo, hi, f)
    return [trig(c * w) for c in (lon, lat) for w in freqs for trig in (math.sin, math.cos)]


def scalar_sphere(name: str, lon: float, lat: float, lo: float, hi: float, f: int) -> list[float]:
    out = []
    cos1, sin1 = math.cos, math.sin
    for w in scalar_frequencies(lo, hi, f):
        lam, phi = lon * w, lat * w
        plain = [sin1(phi), cos1(phi), sin1(lam), cos1(lam)]
        terms = {
            "spherec": [sin1(phi), cos1(phi) * cos1(lam), cos1(phi) * sin1(lam)],
            "spherem": [
                sin1(phi),
                cos1(phi) * cos1(lon),
                cos1(lat) * cos1(lam),
                cos1(phi) * sin1(lon),
                cos1(lat) * sin1(lam),
            ],
        }
        terms["spherecplus"] = plain + terms["spherec"][1:]
        terms["spheremplus"] = plain + terms["spherem"][1:]
        out += [t for t in terms[name] for _ in range(2)]
    return out


def scalar_reference(name: str, lon: float, lat: float, lo: float, hi: float, f: int) -> list[float]:
    if name == "theory":
        return scalar_theory(lon, lat, lo, hi, f)
    if name == "grid":
        return scalar_grid(lon, lat, lo, hi, f)
    return scalar_sphere(name, lon, lat, lo, hi, f)


@pytest.mark.parametrize("params", [(1, 360, 3), (0.5, 20, 4), (2, 2, 2)], ids=["F3", "F4", "one-scale"])
@pytest.mark.parametrize("name", MULTISCALE)
def test_multiscale_layout_matches_scalar_definition(name, params):
    lonlat = random_lonlat(8, seed=1)
    got = build(name, params)(lonlat)
    rows = [scalar_reference(name, lon, lat, *params) for lon, lat in lonlat.tolist()]
    assert got.shape == (8, EXPECTED_DIM[name] * params[2])
    torch.testing.assert_close(got, torch.tensor(rows, dtype=torch.float64), rtol=0, atol=1e-12)


def test_theory_odd_frequency_num_flips_sin_cos_in_second_half():
    # columns 8 and 9 both hold a2 at frequency 1 (j = 6·1 + 2, 6·1 + 3); with F = 3 the original splits
    # the 18 values into halves of 9, so column 8 (even, first half) and column 9 (first of the second
    # half) are both sines, where strict alternation would make column 9 a cosine
    enc = build("theory", (1, 360, 3))
    lonlat = torch.tensor([[37.0, 11.0]], dtype=torch.float64)
    w = scalar_frequencies(1, 360, 3)[1]
    a2 = -37.0 / 2 + math.sqrt(3) / 2 * 11.0
    a3 = -37.0 / 2 - math.sqrt(3) / 2 * 11.0
    got = enc(lonlat)[0]
    assert got[8].item() == pytest.approx(math.sin(a2 * w), abs=1e-13)
    assert got[9].item() == pytest.approx(math.sin(a2 * w), abs=1e-13)
    assert got[10].item() == pytest.approx(math.cos(a3 * w), abs=1e-13)  # odd within the second half


@pytest.mark.parametrize("params", PARAM_SETS)
def test_spherec_terms_are_unit_vectors(params):
    out = build("spherec", params)(random_lonlat()).reshape(64, params[2], 3, 2)
    torch.testing.assert_close(out[..., 0], out[..., 1], rtol=0, atol=0)  # each term twice in a row
    torch.testing.assert_close(out[..., 0].norm(dim=-1), torch.ones(64, params[2], dtype=torch.float64))


# ---------------------------------------------------------------- dtypes, poles, antimeridian


def every_encoding():
    yield from ((name, None) for name in RAW)
    yield from ((name, p) for name in MULTISCALE for p in PARAM_SETS)


@pytest.mark.parametrize("name, params", list(every_encoding()))
def test_finite_at_poles_and_antimeridian(name, params):
    lon = torch.tensor([-180.0, -179.999, 0.0, 179.999, 180.0], dtype=torch.float64)
    lat = torch.tensor([-90.0, -89.999, -1e-9, 0.0, 1e-9, 89.999, 90.0], dtype=torch.float64)
    grid = torch.cartesian_prod(lon, lat)
    enc = build(name, params)
    for dtype in (torch.float64, torch.float32):
        out = enc(grid.to(dtype))
        assert out.shape == (len(grid), enc.embedding_dim)
        assert torch.isfinite(out).all(), f"{name} {params} {dtype}"


@pytest.mark.parametrize("name, params", list(every_encoding()))
def test_float32_input(golden, name, params):
    arrays, _ = golden
    lonlat = torch.from_numpy(arrays["lonlat"])
    want = arrays[name if params is None else golden_key(name, params)]
    enc = build(name, params)
    got = enc(lonlat.float())
    assert got.dtype == torch.float32
    if name in MULTISCALE:
        # float64 arithmetic on the float32 coordinates, as the original, rounded once
        torch.testing.assert_close(got, enc(lonlat.float().double()).float(), rtol=0, atol=0)
        assert getattr(enc, "needs_float64", False)
    if params is None or params[0] >= 1:
        # rounding the coordinates to float32 moves angles by at most ~1e-5 rad at frequency 1/min_radius
        np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=3e-5)


@pytest.mark.parametrize("name", RAW + MULTISCALE)
def test_integer_input_gives_float64_and_bad_shape_raises(name):
    enc = create(name)
    out = enc(torch.tensor([[10, 20], [-180, 90]]))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, enc(torch.tensor([[10.0, 20.0], [-180.0, 90.0]], dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        enc(torch.zeros(4, 3))


def test_multiscale_frequencies_survive_dtype_conversion():
    enc = build("spherem", (1e-5, 0.01, 16))
    lonlat = random_lonlat()
    want = enc(lonlat)
    enc.float()
    assert enc.state_dict() == {}  # nothing to store: the frequencies follow from the hyper-parameters
    torch.testing.assert_close(enc(lonlat), want, rtol=0, atol=0)


# ---------------------------------------------------------------- registry: building, hparams, errors


def test_defaults_are_the_original_class_defaults():
    theory = create("theory")
    assert (theory.min_radius, theory.max_radius, theory.frequency_num) == (1000, 10000, 16)
    for name in ["grid", "spherec", "spherecplus", "spherem", "spheremplus"]:
        enc = create(name)
        assert (enc.min_radius, enc.max_radius, enc.frequency_num) == (1e-5, 0.01, 16)
        assert enc.embedding_dim == EXPECTED_DIM[name] * 16


@pytest.mark.parametrize("name", names())
def test_every_registered_encoding_builds_and_runs(name):
    enc = create(name)
    out = enc(random_lonlat(5))
    assert out.shape == (5, enc.embedding_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", RAW + MULTISCALE)
def test_create_from_released_hparams(golden, released_hparams, name):
    arrays, _ = golden
    enc = create_from_hparams(name, released_hparams)  # legendre_polys, embed_dim, … are filtered out
    got = enc(torch.from_numpy(arrays["lonlat"]))
    key = name if name in RAW else golden_key(name, (1, 360, 16))
    np.testing.assert_allclose(got.numpy(), arrays[key], rtol=0, atol=1e-10)


def test_location_encoder_with_multiscale_encoding_uses_float64_features():
    config = {
        "encoding": {"name": "spherecplus", "min_radius": 1, "max_radius": 360, "frequency_num": 4},
        "network": {"name": "siren", "num_classes": 8, "dim_hidden": 16, "num_layers": 1},
    }
    model = satclip.LocationEncoder.from_config(config).eval()
    assert model.posenc.embedding_dim == 48
    assert model.feature_dtype == torch.float64
    out = model.encode([[13.4, 52.5], [-180.0, -90.0]])
    assert out.shape == (2, 8) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_unknown_encoding_lists_known_names():
    with pytest.raises(KeyError) as err:
        create("spherical")
    for name in RAW + MULTISCALE + ["sphericalharmonics"]:
        assert name in str(err.value)


def test_unknown_parameter_lists_accepted_ones():
    with pytest.raises(TypeError, match=r"legendre_polys.*frequency_num.*max_radius.*min_radius"):
        create("grid", legendre_polys=10)
    with pytest.raises(TypeError, match=r"min_radius.*accepts none"):
        create("wrap", min_radius=1)
    assert ENCODINGS.get("theory") is not None


@pytest.mark.parametrize(
    "params, bad",
    [
        ({"frequency_num": 1}, "frequency_num"),
        ({"frequency_num": 2.5}, "frequency_num"),
        ({"frequency_num": True}, "frequency_num"),
        ({"min_radius": 0}, "min_radius"),
        ({"max_radius": -1.0}, "max_radius"),
        ({"min_radius": float("nan")}, "min_radius"),
        ({"max_radius": "360"}, "max_radius"),
    ],
)
@pytest.mark.parametrize("name", ["theory", "grid", "spheremplus"])
def test_invalid_parameter_values_are_named(name, params, bad):
    with pytest.raises(ValueError, match=bad):
        create(name, **params)
