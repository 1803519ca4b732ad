"""``satclip.embed``: embeddings for any collection of points, with any model source."""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..encoding.points import InvalidPointsError, describe_invalid, invalid_rows, radians_hint, range_hints
from ..errors import check_flags
from ..io.basis import rebased
from ..io.safe_pickle import check_trust
from ..machine import check_device
from ..models import precision as _precision
from ..models.location_encoder import LocationEncoder, check_batch_size
from ..models.provenance import recorded_footprint
from .columns import warn_of_swapped_names
from .footprint import outside_count, outside_note
from .inputs import embedding_frame, is_dask_frame, is_geo, to_lonlat, warn_of_shared_columns

log = logging.getLogger(__name__)


def load_encoder(
    model: LocationEncoder | str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    harmonics_calculation: str | None = None,
    trust_checkpoint: bool = False,
    precision: str | None = None,
) -> LocationEncoder:
    """A location encoder from a model source (anything :func:`satclip.load` takes) or an encoder (also one
    compiled with ``torch.compile``: the encoder it wraps).

    An encoder passed in is used as it is when ``device``/``dtype``/``harmonics_calculation``/``precision``
    are None or already match; otherwise a converted copy is used (the caller's module is never modified, its
    train/eval mode included: :meth:`~satclip.LocationEncoder.encode` computes in eval mode whatever it is).
    ``precision`` (see :mod:`satclip.models.precision`) is resolved here and recorded on the returned encoder.
    """
    trust_checkpoint = check_trust(trust_checkpoint)
    if isinstance(getattr(model, "_orig_mod", None), LocationEncoder):  # torch.compile(encoder): was refused as "not
        model = model._orig_mod  # a OptimizedModule"; encode runs the fused path, never the compiled forward
    if not isinstance(model, (LocationEncoder, str, os.PathLike)):
        from ..io.resolve import not_a_source

        hint = "a SatCLIP: pass model.location, its location encoder" if isinstance(
            getattr(model, "location", None), LocationEncoder) else ""  # fmt: skip
        raise not_a_source(model, "a LocationEncoder", hint)
    if not isinstance(model, LocationEncoder):
        from ..io.load import load

        return load(
            model, device=device or "cpu", dtype=dtype, harmonics_calculation=harmonics_calculation,
            trust_checkpoint=trust_checkpoint, precision=precision,
        )  # fmt: skip
    if device is not None:
        check_device(device)
    param = next(model.parameters())
    current = getattr(model.posenc, "harmonics_calculation", None)
    if harmonics_calculation is not None and harmonics_calculation != current:
        config, state = rebased(copy.deepcopy(model.config), model.state_dict(), harmonics_calculation, "this encoder")
        rebuilt = LocationEncoder.from_config(config, initialise=False)
        rebuilt.load_state_dict(state)
        rebuilt.provenance = getattr(model, "provenance", {})
        rebuilt = rebuilt.to(device=param.device, dtype=param.dtype).eval()
        model = model.with_location(rebuilt) if hasattr(model, "with_location") else rebuilt  # retrieval kept
    want_device = torch.device(device) if device is not None else param.device
    wanted = _precision.requested(precision, dtype) if precision is not None or dtype is not None else None
    want_dtype = _precision.weights_dtype(wanted) if wanted not in (None, "auto") else param.dtype
    if want_device != param.device or want_dtype != param.dtype:
        model = copy.deepcopy(model).to(device=want_device, dtype=want_dtype)
    if wanted is not None:
        choice = _precision.resolve(wanted, model)
        if getattr(model, "precision_choice", None) != choice:
            model = copy.copy(model)  # shares the weights; only the recorded choice differs
            model.precision, model.precision_choice = choice.precision, choice
    return model  # (in the caller's mode: embeddings are computed in eval mode whatever it is)


@torch.no_grad()
def embed_lonlat(
    encoder: LocationEncoder,
    lonlat: np.ndarray | torch.Tensor,
    *,
    batch_size: int | None = None,
    skip_invalid: bool = False,
    row_offset: int = 0,
    precision: str | None = None,
    index=None,
) -> torch.Tensor:
    """Embed ``(N, 2)`` (lon, lat) degrees; returns ``(N, embedding_dim)`` on the model's device, float64 for
    ``precision="float64"`` else float32 (``precision`` None: the encoder's,
    :func:`satclip.models.precision.for_encoder`).

    Invalid rows (non-finite, |lon| > 180, |lat| > 90) raise :class:`~satclip.encoding.points.InvalidPointsError`
    naming them (row numbers shifted by ``row_offset``, or the labels of ``index``, the points' pandas index), or
    with ``skip_invalid`` come back as NaN rows.
    ``batch_size`` None: the encoder's ``default_batch_size``. Points that look like radians are not warned of
    here: its callers, which embed in chunks, say it once (satclip.embed, ``satclip embed``'s note after the run).
    """
    batch_size = encoder.batch_size(batch_size)
    precision = _precision.for_encoder(encoder, precision)
    values = lonlat.detach().to("cpu", torch.float64).numpy() if isinstance(lonlat, torch.Tensor) else lonlat
    values = np.asarray(values, dtype=np.float64)
    if not isinstance(lonlat, torch.Tensor):
        lonlat = values if values.flags.writeable else values.copy()  # torch warns on read-only arrays
    bad = invalid_rows(values)
    if not bad.any():
        return encoder.encode(lonlat, batch_size=batch_size, precision=precision, warn_radians=False)
    if not skip_invalid:
        message = describe_invalid(values, bad, row_offset, labels=index, index_labels=index is not None)
        raise InvalidPointsError(message, np.flatnonzero(bad) + row_offset)
    param = next(encoder.parameters())
    dtype = torch.float64 if precision == "float64" else torch.float32
    out = torch.full((len(values), encoder.embedding_dim), float("nan"), dtype=dtype, device=param.device)
    good = torch.from_numpy(~bad).to(param.device)
    if bool(good.any()):
        out[good] = encoder.encode(values[~bad], batch_size=batch_size, precision=precision, warn_radians=False)
    log.debug("%d invalid point(s) embedded as NaN", int(bad.sum()))
    return out


def _float64(lonlat: np.ndarray | torch.Tensor) -> np.ndarray:
    values = lonlat.detach().to("cpu", torch.float64).numpy() if isinstance(lonlat, torch.Tensor) else lonlat
    return np.asarray(values, dtype=np.float64)


def _warn_of_misread(lonlat: np.ndarray | torch.Tensor) -> None:
    """Warn where the invalid points skipped look swapped, projected, … (:func:`range_hints`): the valid rest is then
    embedded at wrong places (a swapped table came back 45% NaN without a word)."""
    values = _float64(lonlat)
    bad = invalid_rows(values)
    hints = range_hints(values, bad) if bad.any() else ""
    if hints:
        log.warning("%d of %d point(s) are invalid and embedded as NaN (skip_invalid):%s", int(bad.sum()), len(bad),
                    hints)  # fmt: skip


def _warn_of_placement(encoder: LocationEncoder, lonlat: np.ndarray | torch.Tensor, model) -> None:
    """Warn where points lie outside the training footprint the model records (:mod:`satclip.embed.footprint`):
    their embeddings extrapolate, as ``satclip embed`` says after its run; and where they look like radians
    (:func:`~satclip.encoding.points.radians_hint`), with a footprint or without."""
    values = _float64(lonlat)
    hint = radians_hint(values)
    footprint = recorded_footprint(encoder)
    outside = outside_count(footprint, values)
    if outside:
        name = str(model) if isinstance(model, (str, Path)) else "the model"
        valid = len(values) - int(invalid_rows(values).sum())
        log.warning("%s%s", outside_note(outside, valid, name, footprint.describe()), hint)
    elif hint:
        log.warning("%s", hint.lstrip())


def check_options(batch_size, **flags) -> None:
    """Raise :class:`BadInputError` now, not when a lazy result is computed, unless ``batch_size`` is None or a
    whole number >= 1 and every flag is True or False (``"no"`` is true: invalid rows became NaN, polygons
    centroids)."""
    check_batch_size(batch_size)
    check_flags(**flags)


def embed(
    points,
    model: LocationEncoder | str | Path,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    harmonics_calculation: str | None = None,
    lon_col: str | None = None,
    lat_col: str | None = None,
    skip_invalid: bool = False,
    centroids: bool = False,
    precision: str | None = None,
    trust_checkpoint: bool = False,
):
    """Location embeddings of ``points``. Valid points outside the training footprint the model records (the
    shipped ``bluemarble-*`` models: land north of 60°S) are embedded all the same, with a logged warning saying
    how many: their embeddings extrapolate; points that look like radians are warned of too. A Dask frame's
    points are not read until it is computed, so it gets neither warning: ``satclip embed --engine dask`` counts
    both into its manifest and says so after its run.

    Args:
        points: ``(N, 2)`` (lon, lat) degrees as a numpy array, a torch tensor or anything array-like; a
            pandas DataFrame, pyarrow Table or dict of equal-length columns (columns ``lon``/``longitude``/``lng``
            and ``lat``/``latitude`` detected, or named by ``lon_col``/``lat_col``; rows come back in order), an
            xarray Dataset (its variables so named) or a DataArray whose dimension of two is labelled (read by
            label); a
            GeoDataFrame/GeoSeries of points (reprojected to EPSG:4326 if its CRS is another); or a Dask DataFrame /
            dask-geopandas GeoDataFrame of either (embedded lazily, partition by partition:
            :func:`satclip.embed.distributed.embed_frame`).
        model: a :class:`~satclip.LocationEncoder`, or any source :func:`satclip.load` accepts (a model
            name, a ``.ckpt`` file, a native model directory, a Hugging Face id).
        batch_size: points per forward pass (bounds memory); default: the encoder's ``default_batch_size``.
        device: where to run; default the CPU for a loaded source, the encoder's own for an encoder.
        precision: ``"float32" | "bf16" | "float64" | "auto"`` (:mod:`satclip.models.precision`); default: for a
            loaded source ``$SATCLIP_PRECISION`` or ``"auto"``, for an encoder what it was loaded with.
            ``dtype`` (``torch.float32``/``torch.float64``) is the older way to say float32/float64.
        harmonics_calculation: override the spherical-harmonics basis (e.g. ``"analytic-original"``: the
            original's own float64 evaluation of the released models' ``"analytic"`` polynomials, slow;
            ``"analytic-stable"``: the true harmonics; docs/conventions.md).
        skip_invalid: embed invalid points as NaN rows instead of raising.
        centroids: geometries that are not points are embedded at their centroids instead of refused.
        trust_checkpoint: allow unpickling arbitrary objects from a ``.ckpt`` model (runs code: only for files
            you trust; True or False). Not needed for the released checkpoints.

    Returns:
        ``(N, embedding_dim)``: a torch tensor on the model's device for tensor input; for a GeoDataFrame
        or GeoSeries a pandas DataFrame on its index (columns ``emb_000`` …); for a Dask DataFrame a lazy
        Dask DataFrame likewise; else a numpy array; float64 for ``precision="float64"``, else float32.

    Raises:
        satclip.encoding.points.InvalidPointsError: invalid points (message names the first bad rows: their
            index labels for pandas and geopandas input, else their row numbers).
        satclip.embed.columns.ColumnError: the coordinate columns of a table are missing or ambiguous.
    """
    check_options(batch_size, skip_invalid=skip_invalid, centroids=centroids)
    warn_of_swapped_names(lon_col, lat_col)
    if is_dask_frame(points):
        from .distributed import embed_frame

        encoder = load_encoder(
            model, device=device, dtype=dtype, harmonics_calculation=harmonics_calculation, precision=precision,
            trust_checkpoint=trust_checkpoint,
        )  # fmt: skip
        return embed_frame(
            points, encoder, batch_size=batch_size, lon_col=lon_col, lat_col=lat_col, skip_invalid=skip_invalid,
            centroids=centroids,
        )  # fmt: skip
    lonlat = to_lonlat(points, lon_col, lat_col, centroids=centroids, skip_invalid=skip_invalid)
    index = points.index if hasattr(points, "iloc") else None  # pandas and geopandas: errors name index labels
    encoder = load_encoder(
        model, device=device, dtype=dtype, harmonics_calculation=harmonics_calculation, precision=precision,
        trust_checkpoint=trust_checkpoint,
    )  # fmt: skip
    if skip_invalid:
        _warn_of_misread(lonlat)
    out = embed_lonlat(encoder, lonlat, batch_size=batch_size, skip_invalid=skip_invalid, index=index)
    _warn_of_placement(encoder, lonlat, model)
    if isinstance(lonlat, torch.Tensor):
        return out
    values = out.cpu().numpy()
    if is_geo(points) and hasattr(points, "index"):
        if hasattr(points, "columns"):
            warn_of_shared_columns(points.columns, values.shape[1])
        return embedding_frame(values, points.index)
    return values
