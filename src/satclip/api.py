"""``satclip.load``, the public entry point for location encoders: the model itself (:func:`satclip.io.load.load`),
or, with ``retrieval=``, the model augmented with a retrieval database (:mod:`satclip.retrieval`). It sits above
the applications it combines (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

import torch

from .io.load import load as load_location_encoder
from .io.safe_pickle import check_trust
from .models.location_encoder import LocationEncoder


def load(
    source: str | Path,
    *,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype | None = None,
    harmonics_calculation: str | None = None,
    trust_checkpoint: bool = False,
    precision: str | None = None,
    retrieval=None,
    mode: str | None = None,
    k: int | None = None,
    beta: float | None = None,
    temperature: float | None = None,
    distance_scale_km: float | None = None,
    exclude_radius_km: float | None = None,
) -> LocationEncoder:
    """Load a location encoder in eval mode.

    ``source``, ``device``, ``dtype``, ``harmonics_calculation``, ``trust_checkpoint`` and ``precision`` are
    those of :func:`satclip.io.load.load` (a ``.ckpt``, a native directory, a known name, a hub id or
    ``hf://owner/name``; precision ``"float32" | "bf16" | "float64" | "auto"``); ``device`` is the CPU by default
    (``None`` is the CPU too, as in :func:`satclip.embed`).

    ``retrieval``: ``None`` (the plain location encoder), or a retrieval database — ``"auto"`` for the shipped
    models (built from their corpus on first use) or a directory from ``satclip retrieval build`` — to get a
    :class:`~satclip.retrieval.encoder.RetrievalEncoder` whose embedding is ``[location embedding ‖ retrieved
    image embedding]``; ``mode`` (``"range+"`` default, or ``"range"``), ``k``, ``beta``, ``temperature``,
    ``distance_scale_km`` and ``exclude_radius_km`` configure it (docs/retrieval.md). A database of another
    model or cache is refused.
    """
    trust_checkpoint = check_trust(trust_checkpoint)  # (for every source: what works on a directory works on a .ckpt)
    options = {"mode": mode, "k": k, "beta": beta, "temperature": temperature,
               "distance_scale_km": distance_scale_km, "exclude_radius_km": exclude_radius_km}  # fmt: skip
    plain = retrieval is None and all(value is None for value in options.values())
    if not plain:  # (before the model is loaded: a bad beta was named only once it had loaded, or failed to)
        from .retrieval.encoder import augment, check_arguments

        check_arguments(retrieval, options, source)
    encoder = load_location_encoder(
        source, device="cpu" if device is None else device, dtype=dtype, harmonics_calculation=harmonics_calculation,
        trust_checkpoint=trust_checkpoint, precision=precision,
    )  # fmt: skip
    if plain:
        return encoder
    return augment(encoder, source, retrieval, trust_checkpoint=trust_checkpoint, **options)
