"""The exact value of the original's printed "analytic" polynomials, from the stable recurrence plus a
small correction polynomial per column.

The released checkpoints were trained on sympy-printed expressions (:mod:`.analytic_expressions`)::

    C · (1.0 - cos(theta)**2)**(a/2) · cos(|m|·phi) or sin(|m|·phi) · Σ_k p_k · cos(theta)**k

whose constants are the exact normalised associated Legendre coefficients rounded to 15 significant
digits and then to float64. Evaluated in float64 the sums cancel catastrophically at high degree near the
poles, so the original's own output carries rounding noise of up to ~1e-2 there (it moves with batch size
and CPU). What the expression *means* is well defined, though: with x = cos θ and the float64 constants
as printed, its exact value is

    exact harmonic (recurrence)  +  s^a · t_m(φ) · D(x),    D(x) = Σ_k δ_k x^k,

where δ_k = C·p_k − q_k is the (tiny) difference between the printed float64 coefficients and the exact
coefficients q_k of the same polynomial, computed here once in 60-digit decimal arithmetic. The
correction is well conditioned (|D(x)| ≤ Σ|δ_k| ≤ 0.61 at L = 40, and its terms are small), so it costs one
``(N, L) @ (L, C)`` product in any dtype. Columns whose ``Σ|δ_k|`` is below the output's resolution can be
skipped (:meth:`PrintedCorrection.select`).

The expression text is parsed with :mod:`ast` and only the shape above is accepted; anything else raises.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import cache, lru_cache

import torch

from .analytic_expressions import expression_texts

_PRECISION = 60
_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459230781640628620899863")
_ONE_MINUS_X2 = ast.dump(ast.parse("1.0 - cos(theta)**2", mode="eval").body)

Polynomial = dict[int, Decimal]  # power of x = cos θ → coefficient


def _mul(a: Polynomial, b: Polynomial) -> Polynomial:
    out: Polynomial = {}
    for i, u in a.items():
        for j, v in b.items():
            out[i + j] = out.get(i + j, Decimal(0)) + u * v
    return out


def _is_cos_theta(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "cos"
        and len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id == "theta"
    )  # fmt: skip


def _polynomial(node: ast.AST, text: str) -> Polynomial:
    """A polynomial in cos(theta) with the float64 value of every printed constant, exactly."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return {0: Decimal(float(node.value))}  # the float64 the original computes with, exactly
    if _is_cos_theta(node):
        return {1: Decimal(1)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return {k: -v for k, v in _polynomial(node.operand, text).items()}
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):
            exponent = node.right.value if isinstance(node.right, ast.Constant) else None
            if not isinstance(exponent, (int, float)) or exponent < 0 or exponent != int(exponent):
                raise ValueError(f"unexpected power in spherical-harmonics expression {text!r}")
            out: Polynomial = {0: Decimal(1)}
            base = _polynomial(node.left, text)
            for _ in range(int(exponent)):
                out = _mul(out, base)
            return out
        left, right = _polynomial(node.left, text), _polynomial(node.right, text)
        if isinstance(node.op, ast.Mult):
            return _mul(left, right)
        if isinstance(node.op, (ast.Add, ast.Sub)):
            sign = 1 if isinstance(node.op, ast.Add) else -1
            out = dict(left)
            for k, v in right.items():
                out[k] = out.get(k, Decimal(0)) + sign * v
            return out
    raise ValueError(f"unexpected {ast.dump(node)[:80]} in spherical-harmonics expression {text!r}")


def _factors(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _factors(node.left) + _factors(node.right)
    return [node]


def parse_printed(text: str) -> tuple[int, tuple[str, int] | None, Polynomial]:
    """``(a, azimuth, polynomial)`` of an expression ``(1 - cos²θ)^(a/2) · azimuth · polynomial(cos θ)``:
    ``azimuth`` is ``("cos" | "sin", k)`` for a factor cos(kφ) or sin(kφ), or None."""
    a, azimuth, poly = 0, None, {0: Decimal(1)}
    for factor in _factors(ast.parse(text, mode="eval").body):
        if ast.dump(factor) == _ONE_MINUS_X2:
            a += 2
            continue
        if (
            isinstance(factor, ast.BinOp) and isinstance(factor.op, ast.Pow)
            and ast.dump(factor.left) == _ONE_MINUS_X2 and isinstance(factor.right, ast.Constant)
        ):  # fmt: skip
            a += round(2 * float(factor.right.value))
            continue
        if isinstance(factor, ast.Call) and isinstance(factor.func, ast.Name) and factor.func.id in ("cos", "sin"):
            (arg,) = factor.args
            if isinstance(arg, ast.Name) and arg.id == "phi":
                k = 1
            elif (
                isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mult) and isinstance(arg.left, ast.Constant)
                and isinstance(arg.right, ast.Name) and arg.right.id == "phi"
            ):  # fmt: skip
                k = int(arg.left.value)
            else:
                k = None
            if k is not None:
                if azimuth is not None:
                    raise ValueError(f"two azimuth factors in spherical-harmonics expression {text!r}")
                azimuth = (factor.func.id, k)
                continue
        poly = _mul(poly, _polynomial(factor, text))
    return a, azimuth, poly


def exact_polynomial(l: int, m: int) -> Polynomial:
    """Coefficients q_k of ``Y_lm / ((1 − x²)^(|m|/2) · azimuth)`` in the analytic convention, to 60
    digits: the m = 0 normalisation sqrt((2l+1)/4 · π) of the original generator, and
    √2 · sqrt((2l+1)/(4π) · (l−|m|)!/(l+|m|)!) otherwise, times d^|m|/dx^|m| P_l(x)."""
    order = abs(m)
    # 2^l P_l(x) = Σ_k (−1)^k C(l, k) C(2l − 2k, l) x^(l−2k); its |m|-th derivative, in integers
    derivative = {
        l - 2 * k - order: (-1) ** k * math.comb(l, k) * math.comb(2 * l - 2 * k, l) * math.perm(l - 2 * k, order)
        for k in range(l // 2 + 1)
        if l - 2 * k >= order
    }
    if m == 0:
        norm = (Decimal(2 * l + 1) / 4 * _PI).sqrt()
    else:
        ratio = Decimal(math.factorial(l - order)) / Decimal(math.factorial(l + order))
        norm = (2 * Decimal(2 * l + 1) / (4 * _PI) * ratio).sqrt()
    norm /= Decimal(2) ** l
    return {e: norm * c for e, c in derivative.items()}


def _divide_one_minus_x2(poly: Polynomial, text: str) -> Polynomial:
    """``poly / (1 − x²)``, which must divide it exactly (e.g. ``3.0 − 3.0·x²``)."""
    rest = {k: v for k, v in poly.items() if v}
    quotient: Polynomial = {}
    while rest:
        top = max(rest)
        if top < 2:
            raise ValueError(f"(1 - cos(theta)**2) does not divide the polynomial of {text!r}")
        coefficient = -rest[top]  # q_(top−2)·x^(top−2)·(1 − x²) has leading term −q_(top−2)·x^top
        quotient[top - 2] = coefficient
        for k, v in ((top, coefficient), (top - 2, -coefficient)):
            rest[k] = rest.get(k, Decimal(0)) + v
        rest = {k: v for k, v in rest.items() if v}
    return quotient


@dataclass(frozen=True)
class PrintedCorrection:
    """Per corrected column: ``value = s^a · azimuth_m(φ) · Σ_k coefficients[k] · x^k`` with s = sin θ.

    Attributes (all on the CPU; ``C`` corrected columns):
        columns: ``(C,)`` int64 output columns (index l² + l + m).
        coefficients: ``(degree, C)`` float64 δ_k.
        sine_power: ``(C,)`` int64 a = |m| (the text's (1 − x²)^(|m|/2), also where it was printed
            multiplied into the polynomial).
        order: ``(C,)`` int64 m: azimuth cos(mφ) for m > 0, sin(|m|φ) for m < 0, 1 for m = 0.
        bound: ``(C,)`` float64 Σ_k |δ_k| ≥ |correction| for every point.
        constants: column → value of the expressions that are a bare constant (l = 0), which need no
            evaluation at all: the column is that float64.
    """

    columns: torch.Tensor
    coefficients: torch.Tensor
    sine_power: torch.Tensor
    order: torch.Tensor
    bound: torch.Tensor
    constants: dict[int, float]

    def select(self, threshold: float) -> PrintedCorrection:
        """The columns whose correction can exceed ``threshold`` (absolute)."""
        keep = self.bound > threshold
        return PrintedCorrection(
            self.columns[keep], self.coefficients[:, keep], self.sine_power[keep], self.order[keep],
            self.bound[keep], self.constants,
        )  # fmt: skip

    def __len__(self) -> int:
        return int(self.columns.numel())

    def values(self, x: torch.Tensor, s: torch.Tensor, phi: torch.Tensor, dtype: torch.dtype | None = None):
        """``(N, C)`` corrections at ``x = cos θ``, ``s = sin θ ≥ 0`` and azimuth ``phi`` (``(N,)`` each,
        radians), computed in ``dtype`` (default: ``x``'s)."""
        dtype = dtype or x.dtype
        device = x.device
        x, s, phi = x.to(dtype), s.to(dtype), phi.to(dtype)
        degree = self.coefficients.shape[0]
        powers = torch.cumprod(torch.cat([torch.ones_like(x)[:, None], x[:, None].expand(-1, degree - 1)], 1), 1)
        poly = powers @ self.coefficients.to(device, dtype)
        order = self.order.to(device)
        angle = order.abs().to(dtype)[None, :] * phi[:, None]
        azimuth = torch.where(order > 0, torch.cos(angle), torch.where(order < 0, torch.sin(angle), 1.0))
        return poly * azimuth * s[:, None] ** self.sine_power.to(device, dtype)[None, :]


@lru_cache(maxsize=4)
def _exact_differences(degree: int) -> tuple[dict[int, float], dict[tuple[int, int], Polynomial]]:
    """``(constants, differences)``: the columns whose expression is a bare constant (column → value),
    and for every other (l, m) the exact polynomial ``printed − exact`` (in the form with the whole
    (1 − x²)^(|m|/2) factored out)."""
    texts = expression_texts(degree)
    constants, differences = {}, {}
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        for l in range(degree):
            for m in range(-l, l + 1):
                text = texts[l, m]
                a, azimuth, printed = parse_printed(text)
                want = (("cos" if m > 0 else "sin"), abs(m)) if m else None
                if azimuth != want or a > abs(m) or (abs(m) - a) % 2:
                    raise ValueError(f"Y_{l},{m} is not of the expected form: {text!r}")
                if a == 0 and azimuth is None and set(printed) <= {0}:
                    constants[l * l + l + m] = float(printed.get(0, 0))
                    continue
                for _ in range((abs(m) - a) // 2):  # part of (1 − x²)^(|m|/2) was multiplied into the polynomial
                    printed = _divide_one_minus_x2(printed, text)
                exact = _exact_polynomial_cached(l, m)
                differences[l, m] = {
                    k: printed.get(k, Decimal(0)) - exact.get(k, Decimal(0)) for k in set(printed) | set(exact)
                }
    return constants, differences


@cache
def _exact_polynomial_cached(l: int, m: int) -> Polynomial:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return exact_polynomial(l, m)


@lru_cache(maxsize=8)
def printed_correction(degree: int) -> PrintedCorrection:
    """The correction for every column of degree < ``degree`` whose printed coefficients differ from the
    exact ones (all but a handful)."""
    constants, differences = _exact_differences(degree)
    columns, deltas, orders, bounds = [], [], [], []
    for (l, m), difference in differences.items():
        delta = [float(difference.get(k, 0)) for k in range(degree)]
        if any(delta):
            columns.append(l * l + l + m)
            deltas.append(delta)
            orders.append(m)
            bounds.append(math.fsum(abs(d) for d in delta))
    return PrintedCorrection(
        columns=torch.tensor(columns, dtype=torch.int64),
        coefficients=torch.tensor(deltas, dtype=torch.float64).T.contiguous().reshape(degree, len(columns)),
        sine_power=torch.tensor(orders, dtype=torch.int64).abs(),
        order=torch.tensor(orders, dtype=torch.int64),
        bound=torch.tensor(bounds, dtype=torch.float64),
        constants=constants,
    )


@lru_cache(maxsize=8)
def correction_in_harmonics(degree: int, threshold: float = 0.0) -> torch.Tensor:
    """``(L², L²)`` float64 C with ``printed = exact + exact @ C`` column by column (``exact`` the true
    harmonics in the analytic convention, rows are points): the correction of column (l, m) is a
    polynomial in cos θ of degree ≤ l − |m| times the same s^|m|·azimuth as the harmonics of order m, so it
    is exactly a combination of Y_{l'}^m, l' = |m| … l, found by a triangular solve in 60-digit arithmetic.
    A network's first layer ``W`` applied to the printed basis is then ``W (I + C)ᵀ`` applied to the exact
    one: the correction costs nothing per point. Columns whose correction bound (Σ|δ_k|) is at most
    ``threshold`` are left out."""
    constants, differences = _exact_differences(degree)
    correction = torch.zeros(degree * degree, degree * degree, dtype=torch.float64)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        for column, value in constants.items():  # Y_00 is the constant sqrt(π)/2 exactly
            correction[column, column] = float(Decimal(value) / (_PI.sqrt() / 2) - 1)
        for (l, m), difference in differences.items():
            if math.fsum(abs(float(v)) for v in difference.values()) <= threshold:
                continue
            rest = dict(difference)
            order = abs(m)
            for degree_l in range(l, order - 1, -1):  # leading power of Y_{l'}^m's polynomial: l' − |m|
                basis = _exact_polynomial_cached(degree_l, m)
                top = degree_l - order
                coefficient = rest.get(top, Decimal(0)) / basis[top]
                if coefficient:
                    for k, v in basis.items():
                        rest[k] = rest.get(k, Decimal(0)) - coefficient * v
                    correction[degree_l * degree_l + degree_l + m, l * l + l + m] = float(coefficient)
    return correction


def original_angles(lonlat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, s, phi)`` float64 as the original computes them: θ = radians(lat + 90), x = cos θ,
    s = (1 − x²)^0.5 (so near the poles s carries the original's rounding, exactly 0 at ±90°) and
    φ = radians(lon + 180). Gradients with respect to the coordinates flow through s as through sin θ (which s
    equals), finite at the poles, where the square root's is infinite (NaN embeddings' gradients before)."""
    lonlat = lonlat.to(torch.float64)
    theta = torch.deg2rad(lonlat[:, 1] + 90)
    x = torch.cos(theta)
    s = torch.sqrt(1.0 - x * x)
    if s.requires_grad:  # the value stays the original's, bit for bit (sin θ − sin θ is exactly 0)
        sine = torch.sin(theta)
        s = s.detach() + (sine - sine.detach())
    return x, s, torch.deg2rad(lonlat[:, 0] + 180)
