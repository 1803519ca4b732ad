"""Spherical harmonics against the original's golden values, exact references and quadrature identities."""

from __future__ import annotations

import ast
import gzip
import math
from importlib import resources

import numpy as np
import pytest
import torch

from satclip.encoding import analytic_expressions, create
from satclip.encoding.legendre import real_spherical_harmonics

from . import running_error
from .conftest import REFERENCE, require


@pytest.fixture(scope="module")
def sh_ref():
    return np.load(require(REFERENCE / "sh_reference.npz"))


def sh(lonlat, L, calc, dtype=torch.float64):
    return create("sphericalharmonics", legendre_polys=L, harmonics_calculation=calc)(
        torch.as_tensor(lonlat).to(dtype)
    )


def analytic_factor(lm: np.ndarray) -> np.ndarray:
    """analytic = closed-form × (π on m = 0, (−1)^m on m ≠ 0) — docs/conventions.md."""
    return np.where(lm[:, 1] == 0, np.pi, (-1.0) ** lm[:, 1])


@pytest.fixture(scope="module")
def running_bound_L40(sh_ref):
    """The running-error bound of one float64 evaluation of each printed expression at every fixture
    point, ``(2000, 1600)``."""
    texts = analytic_expressions.expression_texts(40)
    _, bound = running_error.error_bounds(
        [texts[l, m] for l in range(40) for m in range(-l, l + 1)], sh_ref["lonlat"]
    )
    return bound


@pytest.fixture(scope="module")
def analytic_L40(sh_ref, running_bound_L40):
    """Our "analytic-original" (the original's evaluation) at L = 40 on all fixture points in one batch, and
    twice the running-error bound of one evaluation.

    Exact equality with the fixtures is not available: the printed polynomials cancel catastrophically
    at high degree (terms up to 4e14 summing to O(1)), so an ulp of difference in cos θ or in one power
    (torch uses SLEEF vector kernels or scalar libm depending on the CPU and on the batch size) moves the
    result by up to ~1e-2. ``running_error`` bounds, per point and column, how far any float64
    evaluation of the same text can be from the exact value of that text; the original and we are both
    such evaluations, so we may differ from the fixtures by twice the bound and no more. Where the
    polynomial is well conditioned the bound is tiny (≤ 7e-12 for l < 10 away from the poles).
    """
    return sh(sh_ref["lonlat"], 40, "analytic-original").numpy(), 2 * running_bound_L40


def outside_bound(got, want, tolerance):
    """Indices (row, column) where |got − want| exceeds the tolerance."""
    return np.argwhere(~(np.abs(got - want) <= tolerance))


@pytest.mark.parametrize("L", [10, 40])
def test_analytic_original_reproduces_original(sh_ref, analytic_L40, L):
    got, tolerance = (a[:, : L * L] for a in analytic_L40)
    want = sh_ref[f"analytic_L{L}"]
    if L == 10:
        got = sh(sh_ref["lonlat"], 10, "analytic-original").numpy()
        np.testing.assert_array_equal(got, analytic_L40[0][:, :100])
    bad = outside_bound(got, want, tolerance)
    worst = np.max(np.abs(got - want) / np.where(tolerance > 0, tolerance, np.inf))
    assert len(bad) == 0, f"{len(bad)} values outside the bound, e.g. {bad[:3].tolist()}; worst ratio {worst:.3g}"
    # exact where the evaluation has no rounding to disagree on: l = 0, and m ≠ 0 at the poles (sin θ = 0)
    np.testing.assert_array_equal(got[:, 0], want[:, 0])
    poles = np.abs(sh_ref["lonlat"][:, 1]) == 90
    m_nonzero = sh_ref["lm_L40"][: L * L, 1] != 0
    assert not got[np.ix_(poles, m_nonzero)].any() and not want[np.ix_(poles, m_nonzero)].any()


def test_analytic_bound_would_catch_a_wrong_basis(sh_ref, analytic_L40):
    """The tolerance of test_analytic_reproduces_original is loose only where the original is noisy
    (high degree near the poles), so a wrong column still fails it: a sign error, any two columns
    swapped, shown for every column and every pair."""
    got, tolerance = analytic_L40
    want = sh_ref["analytic_L40"]
    # a sign error in column j: |−want − want| = 2|want| must exceed the tolerance somewhere
    assert (2 * np.abs(want) > tolerance).any(axis=0).all()
    # columns j and k swapped: some point must have |want_j − want_k| > tolerance_j + tolerance_k.
    # Sufficient, and one matrix product for all 1600² pairs: Σ_i d_i² > 2 Σ_i (tol_ij² + tol_ik²),
    # on the points where every column is well conditioned (any subset of points will do).
    rows = np.abs(sh_ref["lonlat"][:, 1]) < 60
    a, t = want[rows], tolerance[rows]
    sq = (a * a).sum(0)
    distance2 = sq[:, None] + sq[None, :] - 2 * a.T @ a
    tol2 = (t * t).sum(0)
    separated = distance2 > 2 * (tol2[:, None] + tol2[None, :])
    np.fill_diagonal(separated, True)
    assert separated.all(), f"indistinguishable column pairs: {np.argwhere(~separated)[:5].tolist()}"
    # and literally, on the comparison the golden test makes
    col = {tuple(lm): j for j, lm in enumerate(sh_ref["lm_L40"].tolist())}
    swapped = got.copy()
    swapped[:, [col[39, 1], col[39, -1]]] = got[:, [col[39, -1], col[39, 1]]]
    flipped = got.copy()
    flipped[:, col[20, 3]] *= -1
    for wrong in (swapped, flipped):
        assert len(outside_bound(wrong, want, tolerance)) > 0


def test_analytic_batch_size_noise_within_bound(sh_ref, analytic_L40):
    """Our own evaluation in batches of 15 (scalar libm for most of each batch, where a single call
    on 2,000 points uses vector kernels) stays within the same bound. On an AVX-512 Xeon it differs by
    1.5e-5 on these rows (2% of the bound at worst) and by up to 8e-3 elsewhere in the fixture points,
    which is why the golden comparison cannot be exact."""
    got, tolerance = analytic_L40
    n = 105  # the special-point grid with poles and near-pole latitudes
    chunks = [sh(sh_ref["lonlat"][i : i + 15], 40, "analytic-original").numpy() for i in range(0, n, 15)]
    assert len(outside_bound(np.concatenate(chunks), got[:n], tolerance[:n])) == 0


#: our own float64 error for "analytic" against the printed polynomials' exact value, a priori: the
#: recurrence loses ~l²·u relative (u = 2⁻⁵³) and |Y| < 9 at L = 40: 40² · 1.1e-16 · 9 = 1.6e-12
#: (measured against mpmath: 9.8e-14, test_analytic_is_the_exact_value_of_the_printed_polynomials)
OWN_ERROR_L40 = 40**2 * 2.0**-53 * 9


@pytest.mark.parametrize("L", [10, 40])
def test_analytic_is_within_the_originals_rounding(sh_ref, running_bound_L40, L):
    """"analytic" computes the exact value of the printed polynomials; the original's float64 evaluation
    is within one running-error bound of that value, so the two differ by at most that bound plus our
    own error, at every fixture point and column (poles and antimeridian included)."""
    got = sh(sh_ref["lonlat"], L, "analytic").numpy()
    want = sh_ref[f"analytic_L{L}"]
    tolerance = running_bound_L40[:, : L * L] + OWN_ERROR_L40
    bad = outside_bound(got, want, tolerance)
    assert len(bad) == 0, f"{len(bad)} values outside the bound, e.g. {bad[:3].tolist()}"
    np.testing.assert_array_equal(got[:, 0], want[:, 0])  # the printed constant itself
    poles = np.abs(sh_ref["lonlat"][:, 1]) == 90
    m_nonzero = sh_ref["lm_L40"][: L * L, 1] != 0
    assert not got[np.ix_(poles, m_nonzero)].any()


def test_analytic_is_not_the_original_evaluation_nor_the_true_harmonics(sh_ref):
    """The three bases are distinct where it matters: "analytic" differs from "analytic-stable" by the
    printed coefficients' error (up to 0.6 at L = 40) and from the original's evaluation by its rounding
    noise (so a test that only compared with the original within its noise could not tell them apart)."""
    lonlat = sh_ref["lonlat"]
    exact = sh(lonlat, 40, "analytic").numpy()
    assert np.abs(exact - sh(lonlat, 40, "analytic-stable").numpy()).max() > 0.5
    assert np.abs(exact - sh_ref["analytic_L40"]).max() > 1e-3


def printed_value(text: str, lonlat: np.ndarray):
    """A printed expression's exact value (50-digit mpmath) at one (lon, lat) point, from the float64 inputs the
    original forms: θ, φ, cos θ and 1 − cos²θ."""
    import mpmath

    mpmath.mp.dps = 50
    one_minus_x2 = ast.dump(ast.parse("1.0 - cos(theta)**2", mode="eval").body)
    theta, phi = np.deg2rad(lonlat[1] + 90), np.deg2rad(lonlat[0] + 180)
    x = np.cos(theta)
    env = {"theta": mpmath.mpf(theta), "phi": mpmath.mpf(phi), "cos_theta": mpmath.mpf(x),
           "one_minus_x2": mpmath.mpf(1.0 - x * x)}  # fmt: skip

    def evaluate(node):
        if isinstance(node, ast.Constant):
            return mpmath.mpf(float(node.value))
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.UnaryOp):
            return -evaluate(node.operand)
        if isinstance(node, ast.Call):
            arg = node.args[0]
            if isinstance(arg, ast.Name) and arg.id == "theta":
                return env["cos_theta"]
            return (mpmath.cos if node.func.id == "cos" else mpmath.sin)(evaluate(arg))
        if ast.dump(node) == one_minus_x2:
            return env["one_minus_x2"]
        if isinstance(node.op, ast.Pow):
            base = env["one_minus_x2"] if ast.dump(node.left) == one_minus_x2 else evaluate(node.left)
            return base ** mpmath.mpf(float(node.right.value))
        a, b = evaluate(node.left), evaluate(node.right)
        return a + b if isinstance(node.op, ast.Add) else a - b if isinstance(node.op, ast.Sub) else a * b

    return evaluate(ast.parse(text, mode="eval").body)


@pytest.mark.slow
def test_analytic_is_the_exact_value_of_the_printed_polynomials(sh_ref):
    """Against an independent 50-digit mpmath evaluation of the printed text at the same float64 inputs
    (cos θ and 1 − cos²θ as the original forms them), on the special points (poles, near-poles,
    antimeridian) and a sample of others, for every column with l ≥ 37 and a sample of the rest."""
    rng = np.random.default_rng(0)
    lonlat = sh_ref["lonlat"]
    rows = np.concatenate([np.arange(0, int(sh_ref["n_special"]), 9), rng.choice(np.arange(105, len(lonlat)), 5)])
    lm = [(l, m) for l in range(40) for m in range(-l, l + 1) if l >= 37 or rng.random() < 0.03]
    texts = analytic_expressions.expression_texts(40)
    got = sh(lonlat[rows], 40, "analytic").numpy()
    worst = 0.0
    for i, row in enumerate(rows):
        for l, m in lm:
            worst = max(worst, abs(got[i, l * l + l + m] - float(printed_value(texts[l, m], lonlat[row]))))
    assert worst <= OWN_ERROR_L40


def test_analytic_float32_is_float64_rounded(sh_ref):
    """float32 output: the float64 value rounded, with corrections below float32's resolution skipped."""
    lonlat = torch.as_tensor(sh_ref["lonlat"])
    got = create("sphericalharmonics", legendre_polys=40, harmonics_calculation="analytic")(lonlat.float())
    want = sh(lonlat.float().double(), 40, "analytic")
    assert got.dtype == torch.float32
    # half an ulp of |value| < 9, plus the skipped corrections (each < 2^-24, at most 1,600 of them,
    # bounded by their Σ|δ| in total)
    from satclip.encoding.analytic_exact import printed_correction

    corr = printed_correction(40)
    skipped = float(corr.bound[corr.bound <= 2.0**-24].sum())
    assert (got.double() - want).abs().max().item() <= 2.0**-24 * 8 + skipped


@pytest.mark.parametrize("L", [10, 40])
def test_closed_form_matches_original(sh_ref, L):
    got = sh(sh_ref["lonlat"], L, "closed-form").numpy()
    assert np.abs(got - sh_ref[f"closedform_L{L}"]).max() <= 1e-10


def test_analytic_stable_is_exact_at_L40(sh_ref):
    exact = sh_ref["closedform_L40"] * analytic_factor(sh_ref["lm_L40"])
    got = sh(sh_ref["lonlat"], 40, "analytic-stable").numpy()
    assert np.abs(got - exact).max() <= 1e-10


def test_analytic_stable_agrees_with_analytic_at_L10(sh_ref):
    # the original's own float64 error at l = 9 is ~3e-12 (research/REFERENCE.md)
    diff = sh(sh_ref["lonlat"], 10, "analytic-stable").numpy() - sh_ref["analytic_L10"]
    assert np.abs(diff).max() <= 1e-11


def test_analytic_carries_the_printed_coefficients_error_near_poles(sh_ref):
    """The reason "analytic" is not "analytic-stable": at l = 39, m = 0, lat = −90 the true harmonic (the
    fixture's closed form × π) is 7.88, the printed polynomial's exact value (mpmath) 8.48 (its 15-digit
    coefficients) and the original's float64 evaluation of it (the fixture) 8.479 (its rounding noise). The
    expected values used to be typed in, and the last check compared a 0.004 difference with a bound of 3.6."""
    assert sh_ref["lonlat"][0, 1] == -90
    south_pole = torch.as_tensor(sh_ref["lonlat"][:1])
    col = 39 * 39 + 39
    printed = float(printed_value(analytic_expressions.expression_texts(40)[39, 0], sh_ref["lonlat"][0]))
    true_harmonic = sh_ref["closedform_L40"][0, col] * math.pi
    assert sh(south_pole, 40, "analytic")[0, col].item() == pytest.approx(printed, rel=0, abs=OWN_ERROR_L40)
    assert sh(south_pole, 40, "analytic-stable")[0, col].item() == pytest.approx(true_harmonic, rel=0, abs=1e-10)
    # apart by far more than those tolerances: the printed coefficients' error, then the original's rounding noise
    original = sh_ref["analytic_L40"][0, col]
    assert abs(printed - true_harmonic) > 0.5 and abs(printed - original) > 1e3 * OWN_ERROR_L40


def test_lm_ordering(sh_ref):
    lm = sh_ref["lm_L40"]
    l, m = lm[:, 0], lm[:, 1]
    assert np.array_equal(l * l + l + m, np.arange(1600))


def gauss_legendre_grid(L: int):
    """Quadrature nodes (lon, lat) and weights exact for products of harmonics of degree < L."""
    x, w = np.polynomial.legendre.leggauss(L + 1)  # nodes in cos θ (θ from the original: cos θ = −sin lat)
    n_phi = 2 * L + 2
    lon = -180 + 360 * np.arange(n_phi) / n_phi
    lat = np.degrees(-np.arcsin(x))
    lon_g, lat_g = np.meshgrid(lon, lat)
    weights = np.repeat(w, n_phi) * (2 * np.pi / n_phi)
    return np.stack([lon_g.ravel(), lat_g.ravel()], 1), weights


@pytest.mark.parametrize(("calc", "m0_diag"), [("closed-form", 1.0), ("analytic-stable", math.pi**2)])
def test_orthonormal_by_quadrature(calc, m0_diag):
    L = 40
    points, weights = gauss_legendre_grid(L)
    y = sh(points, L, calc).numpy()
    gram = (y * weights[:, None]).T @ y
    l = np.repeat(np.arange(L), 2 * np.arange(L) + 1)
    m = np.concatenate([np.arange(-k, k + 1) for k in range(L)])
    expected = np.diag(np.where(m == 0, m0_diag, 1.0))
    assert l.shape == (L * L,)
    assert np.abs(gram - expected).max() < 1e-10


def test_float32_accuracy_and_finiteness(sh_ref):
    lonlat32 = torch.as_tensor(sh_ref["lonlat"]).float()
    got = sh(lonlat32, 40, "analytic-stable", torch.float32)
    exact = sh(lonlat32.double(), 40, "analytic-stable")  # same (rounded) inputs
    assert got.dtype == torch.float32
    assert torch.isfinite(got).all()
    assert (got.double() - exact).abs().max() <= 1e-4


def test_float32_is_float64_rounded_once_near_the_poles():
    """float32 output comes from the float64 recurrence, so its error is its own rounding: ≤ half an ulp
    of the largest value (|Y| < 8 at L = 40, ulp/2 = 4.8e-7). A float32 recurrence fails this near the
    poles (1.9e-4 on random points), where it loses ~l²·eps."""
    rng = np.random.default_rng(3)
    n = 4000
    lat = np.concatenate([rng.uniform(80, 90, n // 2), rng.uniform(-90, -80, n // 4), rng.uniform(-80, 80, n // 4)])
    lonlat = torch.as_tensor(np.stack([rng.uniform(-180, 180, n), lat], 1)).float()
    got = sh(lonlat, 40, "analytic-stable", torch.float32)
    exact = sh(lonlat.double(), 40, "analytic-stable")
    assert exact.abs().max() < 8
    assert (got.double() - exact).abs().max() <= 4.8e-7


def test_autograd_path_computes_the_same_values():
    rng = np.random.default_rng(4)
    lonlat = torch.as_tensor(np.stack([rng.uniform(-180, 180, 300), rng.uniform(-90, 90, 300)], 1))
    plain = sh(lonlat, 30, "closed-form")
    tracked = sh(lonlat.clone().requires_grad_(True), 30, "closed-form")
    assert tracked.requires_grad
    assert (tracked.detach() - plain).abs().max() <= 1e-13


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_high_degree_finite_at_poles_and_antimeridian(dtype):
    lonlat = torch.tensor(
        [[-180, -90], [180, 90], [-180, 0], [180, 0], [0, 90], [0, -90], [179.999, 89.999]], dtype=dtype
    )
    y = sh(lonlat, 100, "analytic-stable", dtype)
    assert y.shape == (7, 10000)
    assert torch.isfinite(y).all()
    assert torch.allclose(y[2], y[3], atol=1e-5 if dtype == torch.float32 else 1e-12)
    assert (
        y[4, 1:].count_nonzero() == (torch.arange(1, 100) ** 2 + torch.arange(1, 100)).numel()
    )  # m = 0 only


@pytest.mark.parametrize("calc", ["analytic-stable", "analytic"])
def test_gradient_finite_at_poles(calc):
    """The released checkpoints' "analytic" basis keeps the original's values (s = (1 − x²)^0.5) and had its
    NaN gradients at ±90° too; they now flow as through sin θ: finite, and equal to central differences."""
    lonlat = torch.tensor(
        [[10.0, 90.0], [10.0, -90.0], [180.0, 0.0], [50.0, 89.0], [-120.0, -33.0]], dtype=torch.float64,
        requires_grad=True,
    )  # fmt: skip
    weights = torch.as_tensor(np.random.default_rng(1).normal(size=400))
    (sh(lonlat, 20, calc) @ weights).sum().backward()
    assert torch.isfinite(lonlat.grad).all()
    h = 1e-6
    for j in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[j] = h
        with torch.no_grad():
            inner = lonlat[3:]  # (central differences need room on both sides: not at a pole)
            numeric = (sh(inner + step, 20, calc) @ weights - sh(inner - step, 20, calc) @ weights) / (2 * h)
        assert torch.allclose(lonlat.grad[3:, j], numeric, rtol=1e-6, atol=1e-6)
    assert torch.equal(sh(lonlat, 20, calc).detach(), sh(lonlat.detach(), 20, calc))  # the same values


def test_recurrence_chunking_is_invisible():
    from satclip.encoding import legendre

    rng = np.random.default_rng(0)
    n = legendre.CHUNK + 123
    x = torch.as_tensor(rng.uniform(-1, 1, n))
    phi = torch.as_tensor(rng.uniform(0, 2 * np.pi, n))
    full = real_spherical_harmonics(x, torch.sqrt(1 - x * x), phi, 12)
    parts = torch.cat([real_spherical_harmonics(x[i : i + 7], torch.sqrt(1 - x[i : i + 7] ** 2), phi[i : i + 7], 12)
                       for i in range(0, n, 7)])  # fmt: skip
    assert torch.equal(full, parts)


def test_shipped_expressions_are_what_sympy_prints():
    pytest.importorskip("sympy")
    table = analytic_expressions.expression_texts(analytic_expressions.SHIPPED_DEGREE)
    for l, m in [(0, 0), (1, -1), (2, 0), (7, 3), (20, -20), (33, 0), (39, 1)]:
        assert table[l, m] == analytic_expressions.sympy_expression(l, m)


def test_shipped_file_covers_l_below_40():
    with resources.files("satclip.encoding").joinpath(analytic_expressions.SHIPPED_FILE).open("rb") as raw:
        lines = gzip.decompress(raw.read()).decode().splitlines()
    assert len(lines) == 1600


def test_expression_parser_rejects_code():
    import ast

    for text in ["__import__('os').system('true')", "theta.__class__", "open('x')", "lambda: 1"]:
        with pytest.raises(ValueError, match=r"^unexpected .* in spherical-harmonics expression "):
            analytic_expressions._check_safe(ast.parse(text, mode="eval"), text)


def test_unknown_calculation_and_degree():
    with pytest.raises(ValueError, match="analytic-stable"):
        create("sphericalharmonics", legendre_polys=10, harmonics_calculation="discretized")
    with pytest.raises(ValueError, match="positive integer"):
        create("sphericalharmonics", legendre_polys=0)


@pytest.mark.parametrize("damage", ["40 0 cos(theta", "not a line", "\xff"])
def test_damaged_generated_expressions_are_generated_again(tmp_path, monkeypatch, damage):
    """Expressions beyond the shipped L = 40 are generated once into the cache; a damaged or incomplete file
    there ended in a KeyError or ValueError at every load."""
    pytest.importorskip("sympy")
    from satclip.paths import cache_dir

    cache = cache_dir("analytic_sh") / "ylm_l41.txt"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(damage.encode("latin-1"))
    analytic_expressions.expression_texts.cache_clear()
    try:
        texts = analytic_expressions.expression_texts(41)
    finally:
        analytic_expressions.expression_texts.cache_clear()
    assert len(texts) == 41 * 41 and cache.read_text().count("\n") == 2 * 40 + 1
    assert texts[40, 0] == analytic_expressions.sympy_expression(40, 0)
