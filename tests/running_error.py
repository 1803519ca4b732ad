"""A running floating-point error bound for the original's printed spherical-harmonic expressions.

``analytic`` evaluates sympy-printed polynomials in cos θ whose terms cancel catastrophically at high
degree near the poles, so two correct float64 evaluations of the same text (the original on the machine
that made the fixtures, ours here, or ours at another batch size, where torch switches between SLEEF
vector kernels and scalar libm) legitimately differ by up to ~1e-2. This module walks the same
expression AST in numpy and carries, beside each value v̂, a bound e on |v̂ − v| where v is the value of
that sub-expression in exact arithmetic on the same float inputs and float coefficients (Higham,
*Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.3 "running error analysis"):

* ``+``, ``−``, ``×`` are correctly rounded: the result carries ``u·|v|`` more (u = 2⁻⁵³), plus the
  operands' errors propagated exactly (|a|·e_b + |b|·e_a + e_a·e_b for a product);
* ``cos``, ``sin`` and ``pow`` are libm/SLEEF functions, faithful to 1 ulp ≤ 2u·|v| (glibc and SLEEF's
  ``u10`` kernels guarantee this; torch computes ``x**2`` as x·x, ``x**3`` as x·x·x and ``x**0.5`` as
  sqrt, all inside that); the argument's error goes through a Lipschitz bound (1 for sin/cos;
  p·(|x| + e)^(p−1) for x^p with p ≥ 1, min(e^p, p·(|x| − e)^(p−1)·e) for 0 < p < 1).

θ = radians(lat + 90) and φ = radians(lon + 180) are one correctly rounded addition and one
multiplication each, so every IEEE machine computes the same floats; they enter with error 0.

The bound on one evaluation's error is first order in u only where the rounding terms use the computed
|v̂| instead of the exact |v| (the difference is O(u²)). Two evaluations are each within it, so they
differ by at most twice the bound.
"""

from __future__ import annotations

import ast

import numpy as np

U = 2.0**-53
#: a correctly rounded result ŷ of y: |ŷ − y| ≤ u·|y| ≤ u/(1 − u)·|ŷ|
ROUNDED = U / (1 - U)
#: a faithful (≤ 1 ulp) result: |ŷ − y| ≤ 2u·|y| ≤ 2u/(1 − 2u)·|ŷ|
FAITHFUL = 2 * U / (1 - 2 * U)


def _pow(x: np.ndarray, ex: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    v = x**p
    ax = np.abs(x)
    if p >= 1:  # mean value theorem: the derivative is largest at the far end of [x − e, x + e]
        prop = p * (ax + ex) ** (p - 1) * ex
    elif 0 < p < 1:  # x^p is concave and subadditive: |(x+δ)^p − x^p| ≤ |δ|^p, and the derivative bound
        low = np.maximum(ax - ex, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(low > 0, p * low ** (p - 1) * ex, np.inf)
        prop = np.minimum(ex**p, slope)
    else:
        raise NotImplementedError(f"no error rule for x**{p}")
    return v, prop + FAITHFUL * np.abs(v)


def _eval(node: ast.AST, names: dict, memo: dict) -> tuple:
    if isinstance(node, ast.Expression):
        return _eval(node.body, names, memo)
    if isinstance(node, ast.Constant):
        return float(node.value), 0.0
    if isinstance(node, ast.Name):
        return names[node.id], 0.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v, e = _eval(node.operand, names, memo)
        return (-v if isinstance(node.op, ast.USub) else v), e
    if isinstance(node, (ast.Call, ast.BinOp)) and isinstance(getattr(node, "op", ast.Pow()), ast.Pow):
        key = ast.dump(node)  # cos(theta)**k and sin(k*phi) recur in hundreds of expressions
        if key not in memo:
            memo[key] = _call_or_pow(node, names, memo)
        return memo[key]
    if isinstance(node, ast.BinOp):
        a, ea = _eval(node.left, names, memo)
        b, eb = _eval(node.right, names, memo)
        if isinstance(node.op, (ast.Add, ast.Sub)):
            v = a + b if isinstance(node.op, ast.Add) else a - b
            return v, ea + eb + ROUNDED * np.abs(v)
        if isinstance(node.op, ast.Mult):
            v = a * b
            return v, np.abs(a) * eb + np.abs(b) * ea + ea * eb + ROUNDED * np.abs(v)
    raise NotImplementedError(f"no error rule for {ast.dump(node)}")


def _call_or_pow(node: ast.AST, names: dict, memo: dict) -> tuple:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("cos", "sin"):
        x, ex = _eval(node.args[0], names, memo)
        v = np.cos(x) if node.func.id == "cos" else np.sin(x)
        return v, ex + FAITHFUL * np.abs(v)
    if isinstance(node, ast.BinOp) and isinstance(node.right, ast.Constant):
        a, ea = _eval(node.left, names, memo)
        return _pow(np.asarray(a), np.asarray(ea), float(node.right.value))
    raise NotImplementedError(f"no error rule for {ast.dump(node)}")


def error_bounds(texts: list[str], lonlat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate printed expressions at ``(N, 2)`` (lon, lat) degrees with the original's angles.

    Returns ``(values, bounds)``, each ``(N, len(texts))`` float64: bounds[i, j] bounds the error of any
    float64 evaluation of ``texts[j]`` at point i under the rules above.
    """
    lonlat = np.asarray(lonlat, dtype=np.float64)
    names = {"theta": np.deg2rad(lonlat[:, 1] + 90), "phi": np.deg2rad(lonlat[:, 0] + 180)}
    memo: dict = {}
    values = np.empty((lonlat.shape[0], len(texts)))
    bounds = np.empty_like(values)
    for j, text in enumerate(texts):
        values[:, j], bounds[:, j] = _eval(ast.parse(text, mode="eval"), names, memo)
    return values, bounds
