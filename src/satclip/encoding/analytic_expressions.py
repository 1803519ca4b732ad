"""The original SatCLIP "analytic" spherical harmonics, reproduced expression for expression.

The released checkpoints were trained on features from sympy-printed closed-form polynomials in
cos θ. Printed to 15 significant digits and evaluated in float64, those polynomials carry large
cancellation errors at high degree near the poles (up to 0.6 at l = 39), and the released L = 40 models
learned on exactly those values. To reproduce them we generate the same expressions from the published
formula (Wikipedia's real form, with the original's m = 0 normalisation ``sqrt((2l+1)/4·π)``, see
docs/conventions.md), ship the printed text for l < 40, and evaluate it in float64 with torch in the
original order of operations. Higher degrees are generated with sympy on first use and cached.

The expression text is parsed with :mod:`ast` and only arithmetic on ``theta``, ``phi``, ``cos`` and
``sin`` is accepted, so the data file cannot run anything else.
"""

from __future__ import annotations

import ast
import gzip
import logging
from functools import lru_cache
from importlib import resources

import torch

from .. import safe_output
from ..optional import require
from ..paths import cache_dir

log = logging.getLogger(__name__)

SHIPPED_FILE = "analytic_ylm_l40.txt.gz"
SHIPPED_DEGREE = 40
_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant, ast.Load,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd,
)  # fmt: skip
_ALLOWED_NAMES = {"theta", "phi", "cos", "sin"}


def sympy_expression(l: int, m: int) -> str:
    """Print Y_lm in the original generator's form with sympy (needs the ``sympy`` package)."""
    require("sympy", "dev", "analytic spherical harmonics beyond degree 39")
    from sympy import Abs, Symbol, assoc_legendre, cos, factorial, pi, sin, sqrt

    theta, phi = Symbol("theta"), Symbol("phi")
    if m == 0:
        # The original's normalisation: (2l+1)/4·π, not (2l+1)/(4π) (upstream issue #33).
        ylm = sqrt((2 * l + 1) / 4 * pi) * assoc_legendre(l, m, cos(theta))
    else:
        # sympy's assoc_legendre carries the Condon–Shortley phase; the (-1)^m below cancels it.
        order = Abs(m) if m < 0 else m
        legendre = assoc_legendre(l, order, cos(theta))
        normalised = sqrt(((2 * l + 1) / (4 * pi)) * (factorial(l - order) / factorial(l + order))) * legendre
        azimuth = sin(order * phi) if m < 0 else cos(order * phi)
        ylm = (-1) ** m * sqrt(2) * normalised * azimuth
    return str(ylm.evalf())


def _check_safe(tree: ast.AST, text: str) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ValueError(f"unexpected {type(node).__name__} in spherical-harmonics expression {text!r}")
        if isinstance(node, ast.Name) and node.id not in _ALLOWED_NAMES:
            raise ValueError(f"unexpected name {node.id!r} in spherical-harmonics expression {text!r}")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in {"cos", "sin"}
        ):
            raise ValueError(f"unexpected call in spherical-harmonics expression {text!r}")


def _read_lines(lines) -> dict[tuple[int, int], str]:
    table = {}
    for line in lines:
        l, m, text = line.rstrip("\n").split(" ", 2)
        table[int(l), int(m)] = text
    return table


@lru_cache(maxsize=4)
def expression_texts(degree: int) -> dict[tuple[int, int], str]:
    """Printed expressions for every (l, m) with l < ``degree``."""
    with resources.files(__package__).joinpath(SHIPPED_FILE).open("rb") as raw:
        with gzip.open(raw, "rt") as fh:
            table = _read_lines(fh)
    missing = [(l, m) for l in range(degree) for m in range(-l, l + 1) if (l, m) not in table]
    if missing:
        cache = cache_dir("analytic_sh") / f"ylm_l{degree}.txt"
        extra = _cached_lines(cache)
        if not set(missing) <= set(extra):
            if cache.exists():
                log.warning("%s is damaged or incomplete: generating it again", cache)
            log.info("generating %d analytic spherical harmonics with sympy (once)", len(missing))
            extra = {lm: sympy_expression(*lm) for lm in missing}
            safe_output.write_text(cache, "".join(f"{l} {m} {t}\n" for (l, m), t in extra.items()))
        table.update(extra)
    return table


def _cached_lines(cache) -> dict[tuple[int, int], str]:
    """The expressions an earlier run generated into ``cache`` (nothing when it is missing or unreadable)."""
    try:
        with open(cache, encoding="utf-8") as fh:
            return _read_lines(fh)
    except (OSError, UnicodeDecodeError, ValueError):
        return {}


@lru_cache(maxsize=4)
def compiled_expressions(degree: int) -> list:
    """Code objects in output-column order (l-major, m = -l … l)."""
    texts = expression_texts(degree)
    codes = []
    for l in range(degree):
        for m in range(-l, l + 1):
            text = texts[l, m]
            tree = ast.parse(text, mode="eval")
            _check_safe(tree, text)
            codes.append(compile(tree, f"<Y_{l},{m}>", "eval"))
    return codes


def analytic_harmonics(lonlat: torch.Tensor, degree: int) -> torch.Tensor:
    """The original ``SphericalHarmonics(legendre_polys=degree, harmonics_calculation="analytic")``.

    Args:
        lonlat: ``(N, 2)`` (lon, lat) in degrees; evaluated in float64 whatever its dtype.
    Returns:
        ``(N, degree²)`` float64.
    """
    lonlat = lonlat.to(torch.float64)
    phi = torch.deg2rad(lonlat[:, 0] + 180)
    theta = torch.deg2rad(lonlat[:, 1] + 90)
    cos_theta = torch.cos(theta)

    def cos(t):  # the expressions call cos(theta) many times; the value is the same each time
        return cos_theta if t is theta else torch.cos(t)

    namespace = {"theta": theta, "phi": phi, "cos": cos, "sin": torch.sin, "__builtins__": {}}
    out = torch.empty(lonlat.shape[0], degree * degree, dtype=torch.float64, device=lonlat.device)
    for column, code in enumerate(compiled_expressions(degree)):
        out[:, column] = eval(code, namespace)  # noqa: S307 - AST-checked arithmetic only
    return out
