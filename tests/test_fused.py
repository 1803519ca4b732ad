"""The fused encoder (basis + first layer in cache-sized chunks) and its scaled float32 recurrence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import satclip
from satclip.encoding import create, scaled_recurrence
from satclip.encoding.spherical_harmonics import _RECURRENCE_CONVENTIONS
from satclip.models import fused

from .conftest import FLOAT32_REASSOCIATION, REFERENCE, require

#: the issue's accuracy target for a float32 basis at L = 40, poles included
FLOAT32_BASIS_MAX_ABS = 1e-4
#: bf16 embeddings against float32, every point (issue 14)
BF16_MIN_COSINE = 0.9999


def points_with_poles(n: int = 20000, seed: int = 1) -> torch.Tensor:
    """Uniform points, a fifth of them within 15° of a pole, plus the poles, ±180° and near-pole points."""
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lat[: n // 5] = np.sign(rng.uniform(-1, 1, n // 5)) * (90 - rng.uniform(0, 15, n // 5))
    lon = rng.uniform(-180, 180, n)
    special = [(0, 90), (0, -90), (-180, 90), (180, -90), (17, 89.9999), (-17, -89.99999), (-180, 0), (180, 0),
               (180, 80.0001), (-180, -79.9999)]  # fmt: skip
    return torch.as_tensor(np.concatenate([np.array(special, dtype=float), np.stack([lon, lat], 1)]))


def stable_angles(lonlat: torch.Tensor):
    lat = torch.deg2rad(lonlat[:, 1])
    s = torch.where(lonlat[:, 1].abs() == 90, 0.0, torch.cos(lat))
    return -torch.sin(lat), s, torch.deg2rad(lonlat[:, 0] + 180)


@pytest.mark.parametrize("calc", ["analytic-stable", "closed-form"])
def test_scaled_recurrence_float64_equals_legendre(calc):
    """κ · Ŷ is the same basis as the unscaled recurrence (both float64): the scaling is exact algebra."""
    pts = points_with_poles(3000)
    m0_scale, condon_shortley = _RECURRENCE_CONVENTIONS[calc]
    plan = scaled_recurrence.plan(40, m0_scale, condon_shortley)
    got = scaled_recurrence.harmonics(*stable_angles(pts), plan, torch.float64)
    want = create("sphericalharmonics", legendre_polys=40, harmonics_calculation=calc)(pts)
    assert (got - want).abs().max().item() <= 1e-12  # both float64 recurrences: ~l²·u·|Y| apart


def test_scaled_recurrence_float32_accuracy_poles_included():
    """float32 basis within 1e-4 of float64 at L = 40 everywhere: float32 where it is accurate, float64
    within 10° of the poles — where a float32 recurrence alone is not (the split is what makes it pass)."""
    pts = points_with_poles()
    x, s, phi = stable_angles(pts)
    plan = scaled_recurrence.plan(40, math.pi, False)
    exact = create("sphericalharmonics", legendre_polys=40)(pts)
    polar = pts[:, 1].abs() > scaled_recurrence.POLAR_LATITUDE
    split = scaled_recurrence.harmonics(x, s, phi, plan, torch.float32, polar=polar)
    assert split.dtype == torch.float32 and torch.isfinite(split).all()
    assert (split.double() - exact).abs().max().item() <= FLOAT32_BASIS_MAX_ABS
    plain = scaled_recurrence.harmonics(x, s, phi, plan, torch.float32)
    assert (plain.double() - exact).abs().max().item() > FLOAT32_BASIS_MAX_ABS
    assert (plain.double() - exact)[~polar].abs().max().item() <= FLOAT32_BASIS_MAX_ABS / 4


def released(L: int) -> satclip.LocationEncoder:
    return satclip.load(require(REFERENCE / f"satclip-resnet18-l{L}.ckpt"), precision="float32")


@pytest.fixture(scope="module")
def fixture_points():
    return torch.as_tensor(np.load(require(REFERENCE / "sh_reference.npz"))["lonlat"])


@pytest.mark.parametrize("L", [10, 40])
def test_fused_float32_equals_the_module_forward(L, fixture_points):
    """The fused path computes the module's function: same basis (up to float32 rounding, ≤ 1e-4),
    the "analytic" correction folded into the first layer instead of added to the basis."""
    encoder = released(L)
    assert fused.is_fusable(encoder)
    with torch.no_grad():
        reference = encoder.double()(fixture_points).float()  # float64 module forward, "analytic" basis
    encoder.float()
    got = fused.encode_points(encoder, fixture_points, "float32")
    cosine = torch.nn.functional.cosine_similarity(got.double(), reference.double(), dim=1)
    # float32 network on a ≤ 1e-4 basis: test_load_reference's float32 criterion
    assert cosine.min().item() >= 0.99999
    # and the "analytic" part is really there: the exact basis alone is further away near the poles
    stable = satclip.load(
        require(REFERENCE / f"satclip-resnet18-l{L}.ckpt"), precision="float32", harmonics_calculation="analytic-stable"
    )
    if L == 40:
        gap = (fused.encode_points(stable, fixture_points, "float32") - reference).abs().max().item()
        assert gap > 10 * (got - reference).abs().max().item()


@pytest.mark.parametrize("L", [10, 40])
def test_bf16_agrees_with_float32_at_every_fixture_point(L, fixture_points):
    """Issue 14: min cosine ≥ 0.9999 on the 2,000 fixture points, poles and antimeridian included."""
    encoder = released(L)
    f32 = encoder.encode(fixture_points, precision="float32")
    bf16 = encoder.encode(fixture_points, precision="bf16")
    assert bf16.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(f32.double(), bf16.double(), dim=1)
    worst = int(cosine.argmin())
    assert cosine.min().item() >= BF16_MIN_COSINE, f"point {fixture_points[worst].tolist()}: {cosine[worst]}"
    special = (fixture_points[:, 1].abs() == 90) | (fixture_points[:, 0].abs() == 180)
    assert special.sum() >= 10 and bool(torch.isfinite(bf16).all())


def test_bf16_generic_path_uses_autocast_and_agrees(fixture_points):
    """Networks the fused path does not cover (here: the original's own "analytic" evaluation) run under
    torch.autocast for bf16, with the same agreement."""
    encoder = satclip.load(
        require(REFERENCE / "satclip-resnet18-l10.ckpt"), precision="float32", harmonics_calculation="analytic-original"
    )
    assert not fused.is_fusable(encoder)
    f32 = encoder.encode(fixture_points, precision="float32")
    bf16 = encoder.encode(fixture_points, precision="bf16")
    cosine = torch.nn.functional.cosine_similarity(f32.double(), bf16.double(), dim=1)
    assert cosine.min().item() >= BF16_MIN_COSINE
    assert (f32 - bf16).abs().max().item() > 1e-4  # it really ran in bf16


def test_chunking_and_polar_split_are_invisible(fixture_points):
    """Chunk size and the polar float64 group do not change a point's embedding beyond float32 GEMM
    reassociation (different blockings of the same float32 products)."""
    encoder = released(40)
    whole = fused.encode_points(encoder, fixture_points, "float32")
    pieces = torch.cat([fused.encode_points(encoder, p, "float32", chunk=7) for p in fixture_points.split(333)])
    rows = range(0, len(fixture_points), 97)
    one_by_one = torch.cat([fused.encode_points(encoder, fixture_points[i : i + 1], "float32") for i in rows])
    scale = whole.abs().max().item()
    # float32 products of length 1600 reassociated: a few ulps of the accumulated magnitude
    assert (whole - pieces).abs().max().item() <= FLOAT32_REASSOCIATION * scale
    assert (whole[::97] - one_by_one).abs().max().item() <= FLOAT32_REASSOCIATION * scale


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_the_number_of_torch_threads_changes_no_embedding(precision):
    """The last chunk of a call (another width than the full chunks) and the points near a pole were multiplied
    with all of torch's threads, whose blocking summed them in another order than one thread does: up to one bf16
    step (0.031 at L = 40) between `satclip embed` and the same file on --engine dask (one thread per worker) or
    under OMP_NUM_THREADS=1 (float32: 2.9e-6 at the polar rows). Those rows are now multiplied on one thread:
    the same bytes on any CPU. Full chunks use all threads, and how the BLAS splits them is its own: MKL's
    AVX-512 kernels sum them alike with any number, its AVX2 ones (AMD EPYC) do not, so there only float32
    reassociation (bf16: its rounding) is promised."""
    encoder = satclip.load("bluemarble-l40", precision=precision)
    points = points_with_poles(10000, seed=3)  # (4 full chunks, a last one of 1,818, and 2,000 polar)
    before = torch.get_num_threads()
    embeddings = []
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            embeddings.append(encoder.encode(points.numpy()))
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before
    one_thread = points[:, 1].abs() > scaled_recurrence.POLAR_LATITUDE
    one_thread[4 * fused.CHUNK :] = True
    assert 0 < one_thread.sum() < len(points)
    scale = embeddings[0].abs().max().item()
    for other in embeddings[1:]:
        assert torch.equal(other[one_thread], embeddings[0][one_thread])
        if precision == "float32":
            assert (other - embeddings[0]).abs().max().item() <= FLOAT32_REASSOCIATION * scale
        else:
            assert torch.nn.functional.cosine_similarity(other, embeddings[0], dim=1).min() >= BF16_MIN_COSINE


def test_empty_input_and_output_dtypes(fixture_points):
    encoder = released(10)
    for precision, dtype in (("float32", torch.float32), ("bf16", torch.float32), ("float64", torch.float64)):
        out = encoder.encode(np.empty((0, 2)), precision=precision)
        assert out.shape == (0, 256) and out.dtype == dtype
        assert encoder.encode(fixture_points[:3], precision=precision).dtype == dtype


def test_weights_updated_in_place_are_seen(fixture_points):
    """The fused plan (weights cast and scaled once) is rebuilt when the weights change."""
    encoder = released(10)
    before = encoder.encode(fixture_points[:50], precision="float32")
    with torch.no_grad():
        encoder.nnet.last_layer.bias.add_(1.0)
    after = encoder.encode(fixture_points[:50], precision="float32")
    assert torch.allclose(after - before, torch.ones_like(before), atol=1e-4)


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_weights_updated_through_data_are_seen(fixture_points, precision):
    """An update through ``p.data`` (weight averaging does that) leaves the tensors' version counters as they
    were: the plans built for the old weights were used, and ``encode`` gave the old embeddings (bf16) or a mix
    of old and new (float32, off the forward pass by up to 2.2)."""
    encoder = released(10)
    points = torch.as_tensor(fixture_points[:50], dtype=torch.float32)
    before = encoder.encode(points, precision=precision)
    for parameter in encoder.parameters():
        parameter.data.mul_(0.5)
    after = encoder.encode(points, precision=precision)
    with torch.no_grad():
        forward = encoder(points)
    assert not torch.allclose(after, before, atol=0.1)
    if precision == "bf16":  # (its rounding of the features and the weights: as issue 14's bf16 check)
        assert torch.nn.functional.cosine_similarity(after, forward, dim=1).min() >= 0.9999
    else:
        torch.testing.assert_close(after, forward, rtol=0, atol=FLOAT32_REASSOCIATION * float(forward.abs().max()))


def test_staged_recurrence_is_the_float32_block_rounded_once():
    """bf16 features come from a float32 recurrence in three cached blocks, each rounded into the output:
    bit for bit the float32 block rounded once."""
    pts = points_with_poles(3000)
    pts = pts[pts[:, 1].abs() <= scaled_recurrence.POLAR_LATITUDE]
    x, s, phi = stable_angles(pts)
    plan = scaled_recurrence.plan(40, math.pi, False)
    block = scaled_recurrence.scaled_harmonics(x, s, phi, plan, torch.empty(1600, len(pts)))
    ring = torch.empty(3, 79, len(pts) + 5)  # wider than needed, as the fused loop's last chunk sees it
    staged = scaled_recurrence.scaled_harmonics_staged(
        x, s, phi, plan, torch.empty(1600, len(pts), dtype=torch.bfloat16), ring
    )
    assert torch.equal(staged, block.to(torch.bfloat16))


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_no_subnormal_operands_near_the_poles(monkeypatch, fixture_points, precision):
    """(s·e^{iφ})^m underflows near a pole — at 89.9° for every m ≥ 12, half the columns of a point — and
    subnormal operands slow float32 products down many times over. The features the network sees hold
    subnormals only where a polynomial happens to pass near a root (isolated values), and embeddings stay
    finite."""
    subnormal, total = [0], [0]
    real = fused._Plan.network

    def spy(self, features, out):
        values = features.float().abs()
        subnormal[0] += int(((values > 0) & (values < torch.finfo(torch.float32).tiny)).sum())
        total[0] += values.numel()
        return real(self, features, out)

    monkeypatch.setattr(fused._Plan, "network", spy)
    near_poles = torch.tensor([[10.0, 89.9], [-120.0, -85.0], [0.0, 90.0], [45.0, 80.5], [3.0, 12.0]])
    # points on the equator are left out: cos θ there is 0 or 6e-17 and its powers underflow (inherent to
    # such inputs, as in the module's float32 output)
    others = fixture_points[:300][fixture_points[:300, 1].abs() > 1e-3]
    out = fused.encode_points(released(40), torch.cat([near_poles.double(), others]), precision)
    assert subnormal[0] < 1e-3 * total[0] and torch.isfinite(out).all()  # one underflowed point: ~3e-3


@pytest.mark.parametrize("precision", ["float32", "bf16", "float64"])
def test_embeddings_written_into_the_columns_of_a_wider_output(fixture_points, precision):
    """``out=`` (the location half of a retrieval encoder's output): the same numbers as a fresh result,
    written into the given columns only, for the fused paths and the generic float64 one."""
    encoder = released(10)
    expected = fused.encode_points(encoder, fixture_points, precision)
    wide = torch.full((len(fixture_points), encoder.location_dim + 3), 7.0, dtype=expected.dtype)
    got = fused.encode_points(encoder, fixture_points, precision, chunk=100, out=wide[:, 1:-2])
    assert got.data_ptr() == wide[:, 1:-2].data_ptr()
    # chunks of 100 are summed in other blocks than the default's: reassociation, scaled as above
    if precision == "bf16":
        assert torch.nn.functional.cosine_similarity(wide[:, 1:-2], expected, dim=1).min() >= BF16_MIN_COSINE
    else:
        reassociation = FLOAT32_REASSOCIATION if precision == "float32" else 1e-12  # (float64: test_load_reference)
        torch.testing.assert_close(wide[:, 1:-2], expected, rtol=0, atol=reassociation * expected.abs().max().item())
    assert (wide[:, 0] == 7).all() and (wide[:, -2:] == 7).all()
    with pytest.raises(ValueError, match="out must be"):
        fused.encode_points(encoder, fixture_points, precision, out=wide)


@pytest.mark.parametrize("model", ["shipped", "fixture"])
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_a_callers_autocast_changes_no_embedding(model, precision):
    """Under the caller's ``torch.autocast`` (bf16 or float16) encode of a float32 model failed with "mat1 and
    mat2 must have the same dtype" in the fused output layer, and a bf16 one gave other bytes under float16."""
    source = "bluemarble-l10" if model == "shipped" else require(REFERENCE / "satclip-resnet18-l10.ckpt")
    encoder = satclip.load(source, precision=precision)
    points = points_with_poles(300).numpy()  # poles included: their rows come from a second pass
    expected = encoder.encode(points)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            assert torch.equal(encoder.encode(points), expected), dtype
            assert np.array_equal(satclip.embed(points, encoder), expected.numpy()), dtype


@pytest.mark.parametrize("precision", ["float32", "bf16", "float64"])
def test_another_default_dtype_changes_no_embedding(precision):
    """After ``torch.set_default_dtype(torch.float64)``, encode of points near a pole failed with "Index put
    requires the source and destination dtypes match": their second pass wrote into a buffer of the default
    dtype."""
    encoder = satclip.load("bluemarble-l10", precision=precision)
    points = points_with_poles(300).numpy()
    expected = encoder.encode(points)
    torch.set_default_dtype(torch.float64)
    try:
        got = encoder.encode(points)
    finally:
        torch.set_default_dtype(torch.float32)
    assert got.dtype == expected.dtype and torch.equal(got, expected)
