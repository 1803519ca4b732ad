"""Spherical-harmonics bases across readers: overriding a model's basis, and rewriting a first layer so a
reader with another basis computes the same function.

satclip's bases (``harmonics_calculation``) and who else computes them:

* ``"analytic"`` — the original's sympy polynomials, with their float64 rounding error near the poles at
  high degree (the released models were trained on them). Original code, rangegeo, rshf (L = 40 only).
* ``"analytic-stable"`` — the same convention computed exactly (π on m = 0, no Condon–Shortley phase).
  torchgeo ≥ 0.10 computes exactly this (with latitudes clamped to ±89.95°).
* ``"closed-form"`` — the original's other option, exact: ``analytic-stable / π`` on m = 0 and
  ``(−1)^m · analytic-stable`` otherwise.

A SIREN's first layer is linear in the features, so a model on one exact basis is the same function on
the other when its first layer's input columns are multiplied by the ratio of the two (:func:`columns_to`).
``"analytic"`` equals ``"analytic-stable"`` to < 1e-8 for degrees below :data:`ANALYTIC_EXACT_BELOW`
(measured on a 0.125° latitude grid with the poles: 9.4e-9 at degree 19, 1.2e-8 at 20, 0.62 at 39).
"""

from __future__ import annotations

import math

import torch

from ..errors import BadInputError

#: ``"analytic"`` agrees with the exact basis to < 1e-8 for ``legendre_polys`` up to this (degrees < 20)
ANALYTIC_EXACT_BELOW = 20
EXACT = "analytic-stable"
#: bases with no rounding error (related by a column scaling)
EXACT_BASES = ("analytic-stable", "closed-form")
#: the weight that reads the basis, per network (the released models' SIREN first)
FIRST_LAYERS = {"siren": "nnet.layers.0.weight", "mlp": "nnet.features.0.weight", "fcnet": "nnet.feats.0.weight",
                "linear": "nnet.weight"}  # fmt: skip
FIRST_LAYER = FIRST_LAYERS["siren"]


def first_layer(state: dict[str, torch.Tensor]) -> str:
    """The key of the weight in a location state dict (``nnet.*``) that reads the basis."""
    return next(key for key in FIRST_LAYERS.values() if key in state)


def is_exact(calculation: str) -> bool:
    """Whether a ``harmonics_calculation`` is an exact basis (else a variant of the original's printed
    ``"analytic"`` polynomials)."""
    return calculation in EXACT_BASES


def computes_original(calculation: str) -> bool:
    """Whether satclip's ``calculation`` is what the original code (and rangegeo, rshf) compute for
    ``"analytic"``: the printed polynomials evaluated in float64 in the original's order."""
    from ..encoding.spherical_harmonics import CALCULATIONS

    return calculation == "analytic-original" or (calculation == "analytic" and "analytic-original" not in CALCULATIONS)


def with_harmonics(config: dict, harmonics_calculation: str | None, source: object = "the model") -> dict:
    """``config`` (a LocationEncoder config) with its spherical harmonics computed by
    ``harmonics_calculation`` instead (``None``: unchanged). The weights stay as they are: this changes the
    model when the two bases differ (see the module docstring).

    Raises:
        BadInputError: ``harmonics_calculation`` is no basis (the argument named, not the model), or the model's
            encoding is not spherical harmonics.
    """
    if harmonics_calculation is None:
        return config
    from ..encoding.spherical_harmonics import CALCULATIONS

    if harmonics_calculation not in CALCULATIONS:
        raise BadInputError(f"harmonics_calculation={harmonics_calculation!r} is not one of {list(CALCULATIONS)}")
    encoding = config["encoding"]
    if encoding["name"] != "sphericalharmonics":
        raise BadInputError(
            f"harmonics_calculation applies to spherical-harmonics models; {source} uses {encoding['name']!r}"
        )
    return {**config, "encoding": {**encoding, "harmonics_calculation": harmonics_calculation}}


def rebased(
    config: dict, state: dict[str, torch.Tensor], harmonics_calculation: str | None, source: object = "the model"
) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config, state)`` of a LocationEncoder with its spherical harmonics computed by ``harmonics_calculation``
    (``None``: unchanged) and, across ``"closed-form"`` and the other bases, its first layer's columns rescaled
    (:func:`columns_to`) so that it computes the same function: the override alone made another model (cosine
    down to −0.10 with the shipped model's embeddings). Between the others the weights stay as they are.

    Raises:
        BadInputError: as :func:`with_harmonics`.
    """
    rebased_config = with_harmonics(config, harmonics_calculation, source)
    before = config["encoding"].get("harmonics_calculation")
    if harmonics_calculation is None or before is None or (before == "closed-form") == (harmonics_calculation ==
                                                                                       "closed-form"):  # fmt: skip
        return rebased_config, state
    return rebased_config, columns_to(state, int(config["encoding"]["legendre_polys"]), before, harmonics_calculation)


def degree_order(legendre_polys: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(l, m)`` of each of the ``legendre_polys²`` columns (index l² + l + m)."""
    l = torch.arange(legendre_polys).repeat_interleave(2 * torch.arange(legendre_polys) + 1)
    m = torch.cat([torch.arange(-k, k + 1) for k in range(legendre_polys)])
    return l, m


def closed_form_to_exact(legendre_polys: int) -> torch.Tensor:
    """``(L²,)`` float64 factors f with ``analytic-stable = f · closed-form`` per column: π on m = 0,
    (−1)^m otherwise."""
    _, m = degree_order(legendre_polys)
    return torch.where(m == 0, torch.tensor(math.pi, dtype=torch.float64), (-1.0) ** m.abs().double())


def columns_to(
    state: dict[str, torch.Tensor], legendre_polys: int, source: str, target: str
) -> dict[str, torch.Tensor]:
    """The location state dict (``nnet.*``) of the same function on basis ``target`` instead of ``source``:
    the first layer's input columns rescaled, in float64 (a float32 layer times π would be rounded). Both
    bases are taken as exact; ``"analytic"`` counts as ``"analytic-stable"`` here, which it equals to < 1e-8
    only below :data:`ANALYTIC_EXACT_BELOW`. Other tensors are shared, not copied."""
    source = "closed-form" if source == "closed-form" else EXACT
    target = "closed-form" if target == "closed-form" else EXACT
    if source == target:
        return dict(state)
    factors = closed_form_to_exact(legendre_polys)
    # features_exact = f · features_closed, so W_closed = W_exact · f and W_exact = W_closed / f
    factors = factors if source == EXACT else 1 / factors
    key = first_layer(state)
    weight = state[key]
    out = dict(state)
    out[key] = weight.double() * factors.to(weight.device)
    return out
