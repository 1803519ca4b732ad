"""Location-encoder inference in a chosen precision, with the spherical-harmonics basis fused into the
network's first layer.

:func:`encode_points` is what :meth:`satclip.LocationEncoder.encode` runs. For the released architecture
(spherical harmonics → SIREN) in float32 or bf16 it works on chunks of :data:`CHUNK` points: the scaled
recurrence (:mod:`satclip.encoding.scaled_recurrence`) writes the chunk's ``(L², CHUNK)`` basis block, which
stays in cache, and the first layer reads it straight away, its weights multiplied once by the
recurrence's column constants κ and the SIREN's w0. The 1,600-wide feature block of L = 40 is never
written out for all points. The basis is computed in float32 (float64 for points with |lat| >
:data:`~satclip.encoding.scaled_recurrence.POLAR_LATITUDE`); for ``"analytic"`` models the printed-coefficient
correction (:mod:`satclip.encoding.analytic_exact`) is added to the block.

* ``"float32"``: float32 weights and products.
* ``"bf16"``: the products in bfloat16 with float32 accumulation and bfloat16 activations (the arithmetic of
  ``torch.autocast(dtype=torch.bfloat16)``, with the weights cast once per call instead of once per chunk);
  the float32 basis is rounded once to bfloat16.
* ``"float64"``, and any other encoder (other encodings or networks, a network in training mode): the
  module's own forward in chunks, under ``torch.autocast`` for bf16.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import nn

from ..encoding import analytic_exact, scaled_recurrence
from ..encoding.spherical_harmonics import SphericalHarmonics
from ..machine import cpu_threads
from ..networks.siren import SirenNet
from . import precision as _precision

#: points per fused chunk: the float32 basis block of L = 40 (1600 × 1024 × 4 B = 6.5 MB) and the first
#: layer's 1024 × 512 activations stay in the cache hierarchy; measured on the AMX Xeon, 1 thread
#: (benchmarks/encoding.py)
CHUNK = 2048
#: points per chunk of the generic path (as LocationEncoder.default_batch_size on the CPU)
GENERIC_CHUNK = 4096
#: points per chunk on GPUs: one launch per op for many points
DEVICE_CHUNK = 65536

_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_fusable(encoder) -> bool:
    """Whether :func:`encode_points` can fuse ``encoder``'s basis and first layer: spherical harmonics
    computed by the recurrence (not ``"analytic-original"``) into a SIREN in eval mode."""
    posenc, nnet = encoder.posenc, encoder.nnet
    return (
        isinstance(posenc, SphericalHarmonics)
        and posenc.harmonics_calculation in ("analytic", "analytic-stable", "closed-form")
        and isinstance(nnet, SirenNet)
        and not nnet.training
        and len(nnet.layers) >= 1
    )


class _Plan:
    """Everything a fused call needs that depends only on the encoder, precision and device."""

    def __init__(self, encoder, precision: str, device: torch.device):
        posenc, nnet = encoder.posenc, encoder.nnet
        calc = posenc.harmonics_calculation
        self.degree = posenc.legendre_polys
        self.analytic = calc == "analytic"
        self.recurrence = scaled_recurrence.plan(self.degree, 1.0 if calc == "closed-form" else math.pi,
                                                 calc == "closed-form")  # fmt: skip
        self.dtype = _precision.compute_dtype(precision)
        kappa = self.recurrence.scale.to(device)
        layers = list(nnet.layers)
        weights = []
        for i, layer in enumerate(layers):
            weight = layer.weight.detach().to(device, torch.float64)
            if i == 0:
                if self.analytic:  # the printed polynomials = exact harmonics @ (I + C): fold C in
                    correction = analytic_exact.correction_in_harmonics(self.degree).to(device)
                    weight = weight + weight @ correction.T
                weight = weight * kappa[None, :]
            weight = weight * layer.w0
            bias = layer.bias.detach().to(device, torch.float64) * layer.w0 if layer.bias is not None else None
            weights.append((weight.to(self.dtype), None if bias is None else bias[:, None].to(self.dtype), layer.sine))
        self.hidden = weights
        last = nnet.last_layer
        self.last = (
            last.weight.detach().to(device, self.dtype).T,  # (hidden, out): the output comes out row-major
            None if last.bias is None else last.bias.detach().to(device, self.dtype),
            last.sine,
        )
        self.out_dim = last.weight.shape[0]

    def network(self, features: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``(L², c)`` scaled features (columns are points) in the compute dtype → ``out`` ``(c, out_dim)``
        float32. The hidden layers keep points in columns (``W @ h``, contiguous operands); the output
        layer computes ``hᵀ Wᵀ``, so its result is already row-major (no transposing copy)."""
        h = features
        for weight, bias, sine in self.hidden:
            h = torch.addmm(bias, weight, h) if bias is not None else weight @ h
            if sine:
                h = h.sin_()
        weight, bias, sine = self.last
        if out.dtype == self.dtype:
            result = torch.addmm(bias, h.T, weight, out=out) if bias is not None else torch.mm(h.T, weight, out=out)
        else:
            result = out.copy_(torch.addmm(bias, h.T, weight) if bias is not None else h.T @ weight)
        return result.sin_() if sine else result


def _version(encoder) -> tuple:
    """Changes when the weights are replaced or updated in place (but not through ``.data``: see :func:`_cached`)."""
    return tuple((p.data_ptr(), p._version) for p in encoder.parameters())


def _cached(encoder, key: tuple, build):
    """``build()`` cached per encoder and ``key`` while its weights are unchanged: the same tensors (``_version``)
    holding the same values as when the plans were built (a copy is kept and compared: an update through
    ``p.data``, as weight averaging does, leaves ``_version`` as it was, and the plans gave the old weights'
    embeddings without a word)."""
    version, params = _version(encoder), [p.detach() for p in encoder.parameters()]
    entry = _PLANS.setdefault(encoder, {})
    weights = entry.get("weights")
    if (weights is None or weights[0] != version
            or not all(torch.equal(kept, now) for kept, now in zip(weights[1], params, strict=True))):  # fmt: skip
        entry.clear()  # plans of weights that no longer exist
        entry["weights"] = (version, [p.clone() for p in params])
    plans = entry.setdefault("plans", {})
    if key not in plans:
        plans[key] = build()
    return plans[key]


def _plan(encoder, precision: str, device: torch.device) -> _Plan:
    return _cached(encoder, ("fused", precision, str(device)), lambda: _Plan(encoder, precision, device))


def _angles(lonlat: torch.Tensor, analytic: bool):
    """``(x, s, phi)`` float64 for the recurrence: the original's angles for "analytic" (its polynomials
    saw cos θ and (1 − cos²θ)^0.5), else cos θ = −sin(lat) and sin θ = cos(lat) (exactly 0 at the poles)."""
    if analytic:
        return analytic_exact.original_angles(lonlat)
    lat = torch.deg2rad(lonlat[:, 1])
    x = -torch.sin(lat)
    s = torch.where(lonlat[:, 1].abs() == 90, 0.0, torch.cos(lat))
    return x, s, torch.deg2rad(lonlat[:, 0] + 180)


def _fused(encoder, lonlat: torch.Tensor, precision: str, chunk: int, out: torch.Tensor | None) -> torch.Tensor:
    device = lonlat.device
    plan = _plan(encoder, precision, device)
    n, degree = lonlat.shape[0], plan.degree
    out = torch.empty(n, plan.out_dim, dtype=torch.float32, device=device) if out is None else out
    polar = lonlat[:, 1].abs() > scaled_recurrence.POLAR_LATITUDE
    # points near a pole get a float64 recurrence (rounded degree by degree into the features): all points are
    # computed in order (no scatter of the many), then the few near a pole (1.5 % of a uniform sample) again,
    # and their rows replaced
    groups = [(None, lonlat, torch.float32)]
    if bool(polar.any()):
        near = polar.nonzero().squeeze(1)
        # in the first pass they stand in at 45°: (s·e^{iφ})^39 near a pole is subnormal in float32, and
        # subnormal operands slow float32 arithmetic and products down many times over
        stand_in = torch.where(polar[:, None], lonlat.new_tensor([0.0, 45.0]), lonlat)
        groups = [(None, stand_in, torch.float32), (near, lonlat[near], torch.float64)]
    width = min(chunk, n)
    if plan.dtype == torch.float32:  # the recurrence writes the features themselves
        block = torch.empty(degree * degree, width, dtype=torch.float32, device=device)
        full_views = scaled_recurrence.block_views(block, degree)
    else:  # bf16: a float32 recurrence in three cached blocks, each rounded once into the features
        block = torch.empty(degree * degree, width, dtype=plan.dtype, device=device)
    rings = {}
    for index, points, basis_dtype in groups:
        result = out if index is None else torch.empty(points.shape[0], plan.out_dim, dtype=out.dtype, device=device)
        for start in range(0, points.shape[0], chunk):
            part = points[start : start + chunk]
            c = part.shape[0]
            x, s, phi = _angles(part, plan.analytic)
            features, recurrence = block[:, :c], plan.recurrence
            if basis_dtype == torch.float32 and plan.dtype == torch.float32:
                scaled_recurrence.scaled_harmonics(x, s, phi, recurrence, features, full_views if c == width else None)
            else:  # bf16, or near a pole: the recurrence in basis_dtype, each degree rounded into the features
                if basis_dtype not in rings:
                    rings[basis_dtype] = torch.empty(3, 2 * degree - 1, width, dtype=basis_dtype, device=device)
                floor = scaled_recurrence.SEED_FLOOR if basis_dtype != torch.float32 else 0.0
                scaled_recurrence.scaled_harmonics_staged(x, s, phi, recurrence, features, rings[basis_dtype], floor)
            if c == CHUNK or device.type != "cpu":
                plan.network(features, result[start : start + c])
            else:  # products of other widths (the last chunk, the points near a pole) sum in another order with
                with cpu_threads(1):  # more threads: one thread gives a Dask worker's (or a sharded run's) bytes
                    plan.network(features, result[start : start + c])
        if index is not None:
            out[index] = result
    return out


def _generic(encoder, lonlat: torch.Tensor, precision: str, chunk: int, out: torch.Tensor | None) -> torch.Tensor:
    weights = _precision.weights_dtype(precision)
    param = next(encoder.parameters())
    module = encoder if param.dtype == weights else _converted(encoder, weights)
    needs64 = precision == "float64" or getattr(encoder.posenc, "needs_float64", False)
    feature_dtype = torch.float64 if needs64 else weights
    out_dtype = torch.float64 if precision == "float64" else torch.float32
    if out is None:
        out = torch.empty(lonlat.shape[0], encoder.location_dim, dtype=out_dtype, device=lonlat.device)
    for start in range(0, lonlat.shape[0], chunk):
        features = module.posenc(lonlat[start : start + chunk].to(feature_dtype)).to(weights)
        with torch.autocast(lonlat.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out[start : start + chunk] = module.nnet(features)
    return out


def _converted(encoder, dtype: torch.dtype) -> nn.Module:
    """A copy of ``encoder`` in ``dtype`` (cached while the weights are unchanged)."""
    import copy

    return _cached(encoder, ("converted", dtype), lambda: copy.deepcopy(encoder).to(dtype=dtype))


@torch.no_grad()
def encode_points(
    encoder, lonlat: torch.Tensor, precision: str, chunk: int | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Embed ``(N, 2)`` (lon, lat) degrees (float64, validated, on the encoder's device).

    Args:
        encoder: a :class:`~satclip.LocationEncoder`.
        precision: ``"float32"``, ``"bf16"`` or ``"float64"`` (resolve ``"auto"`` first with
            :func:`satclip.models.precision.resolve`).
        chunk: at most this many points per step (fused on the CPU: at most :data:`CHUNK`, the size that
            keeps a step in cache; otherwise default :data:`GENERIC_CHUNK` on the CPU, 65,536 elsewhere).
        out: an ``(N, location_dim)`` tensor of the result's dtype and device to write the embeddings into
            (e.g. the columns of a wider output; rows may be strided), instead of a new one.

    Returns:
        ``(N, location_dim)`` (``out`` when given): float64 for ``"float64"``, else float32; the same bytes inside
        and outside a caller's ``torch.autocast`` (it is off here).
    """
    precision = _precision.check(precision)
    if precision == "auto":
        raise ValueError("encode_points needs a resolved precision: call satclip.models.precision.resolve first")
    lonlat = lonlat.to(torch.float64)
    on_cpu = lonlat.device.type == "cpu"
    if out is not None:
        dtype = torch.float64 if precision == "float64" else torch.float32
        shape = (lonlat.shape[0], encoder.location_dim)
        if tuple(out.shape) != shape or out.dtype != dtype or out.device != lonlat.device:
            raise ValueError(f"out must be {shape} {dtype} on {lonlat.device}, got {tuple(out.shape)} {out.dtype} "
                             f"on {out.device}")  # fmt: skip
    # the precision is chosen here: a caller's autocast made the fused products mix dtypes ("mat1 and mat2 must
    # have the same dtype") or round float32 ones to float16
    with torch.autocast(lonlat.device.type, enabled=False):
        if precision != "float64" and is_fusable(encoder):
            limit = CHUNK if on_cpu else DEVICE_CHUNK
            return _fused(encoder, lonlat, precision, min(chunk or limit, limit), out)
        return _generic(encoder, lonlat, precision, chunk or (GENERIC_CHUNK if on_cpu else DEVICE_CHUNK), out)
