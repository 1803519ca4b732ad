"""Image → location retrieval: where on Earth does a satellite image most likely come from?

The image embedding is compared (cosine similarity) with the location embeddings of candidate points,
by default a Fibonacci lattice of ``grid_size`` nearly equally spaced points over the globe; the ``k``
best candidates are returned. Candidate sets are pluggable: a registered grid name, any callable
``n → (n, 2)`` (lon, lat) array (e.g. a land-only grid), or an explicit ``(N, 2)`` array.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .errors import BadInputError
from .model import SatCLIP
from .registry import Registry

#: candidate-point generators: name → function(n) returning an (n, 2) float64 (lon, lat) array
GRIDS: Registry[np.ndarray] = Registry("location grid")


@GRIDS.register("fibonacci")
def fibonacci_grid(n: int) -> np.ndarray:
    """``n`` points of the Fibonacci (golden-angle) lattice: ``(n, 2)`` float64 (lon, lat) degrees.

    Point ``i`` has ``sin(lat) = 1 − (2i + 1)/n`` (equal-area latitude bands) and longitude advancing by
    the golden angle, so every region of the sphere receives points in proportion to its area.
    """
    if n < 1:
        raise ValueError(f"grid size must be at least 1, got {n}")
    i = np.arange(n, dtype=np.float64)
    lat = np.degrees(np.arcsin(1.0 - (2.0 * i + 1.0) / n))
    golden_angle = 180.0 * (3.0 - math.sqrt(5.0))  # degrees
    lon = np.mod(i * golden_angle + 180.0, 360.0) - 180.0
    return np.stack([lon, lat], axis=1)


def candidate_points(grid: str | Callable[[int], np.ndarray] | np.ndarray, grid_size: int) -> np.ndarray:
    """Resolve ``grid`` (a name in :data:`GRIDS`, a callable ``n → (n, 2)`` or an array) to ``(N, 2)``."""
    if isinstance(grid, str):
        points = GRIDS.get(grid)(grid_size)
    elif callable(grid):
        points = grid(grid_size)
    else:
        points = grid
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(
            f"candidate points must be a non-empty (N, 2) (lon, lat) array, got shape {points.shape}"
        )
    return points


@dataclass
class Located:
    """Top-k candidates per image: ``lonlat`` ``(B, k, 2)`` degrees, ``scores`` ``(B, k)`` cosine
    similarities in [-1, 1], best first."""

    lonlat: np.ndarray
    scores: np.ndarray

    def rows(self, index: int = 0) -> list[tuple[float, float, float]]:
        """``[(lon, lat, score), …]`` of image ``index``, best first."""
        pairs = zip(self.lonlat[index], self.scores[index], strict=True)
        return [(float(lon), float(lat), float(score)) for (lon, lat), score in pairs]


@torch.no_grad()
def embed_candidates(model: SatCLIP, points: np.ndarray, batch_size: int | None = None) -> torch.Tensor:
    """L2-normalised location embeddings ``(N, embed_dim)`` of candidate points (validated)."""
    embeddings = model.location.encode(points, batch_size=batch_size)
    return torch.nn.functional.normalize(embeddings, dim=1)


def check_images(images: torch.Tensor) -> None:
    """Refuse images that carry no location signal: any NaN or inf, or one value everywhere (a no-data
    patch). ``images`` is ``(B, C, H, W)``; the message names the first bad image and why."""
    if images.ndim != 4 or images.shape[0] == 0 or images[0].numel() == 0:
        raise BadInputError(
            f"images must be a non-empty (B, C, H, W) or (C, H, W) array, got shape {tuple(images.shape)}"
        )
    flat = images.reshape(len(images), -1)
    if flat.is_floating_point() or flat.is_complex():
        finite = torch.isfinite(flat)
        if not bool(finite.all()):
            row = int((~finite).any(dim=1).nonzero()[0])
            bad = int((~finite[row]).sum())
            size = flat.shape[1]
            what = "only NaN or infinite values" if bad == size else f"{bad} NaN or infinite values of {size}"
            raise BadInputError(
                f"image {row} has {what}; locating it needs finite pixel values (a no-data patch or a bad read?)"
            )
    constant = (flat == flat[:, :1]).all(dim=1)
    if bool(constant.any()):
        row = int(constant.nonzero()[0])
        raise BadInputError(
            f"image {row} is constant (every value is {flat[row, 0].item():g}): a no-data patch carries no location "
            "signal, and every candidate would get the same score"
        )


@torch.no_grad()
def locate(
    model: SatCLIP,
    images: torch.Tensor | np.ndarray,
    *,
    k: int = 5,
    grid: str | Callable[[int], np.ndarray] | np.ndarray = "fibonacci",
    grid_size: int = 10_000,
    candidates: torch.Tensor | None = None,
) -> Located:
    """The ``k`` candidate locations most similar to each image.

    Args:
        model: a :class:`~satclip.SatCLIP` model (e.g. from :func:`satclip.load_model`); put it in eval mode.
        images: ``(B, C, H, W)`` or one ``(C, H, W)`` image, preprocessed for the model (13-band
            reflectance for the released models, see :mod:`satclip.image.preprocess`).
        k: results per image (at most the number of candidates).
        grid, grid_size: candidate points (see :func:`candidate_points`).
        candidates: precomputed :func:`embed_candidates` of those points, to reuse across calls.

    Raises:
        BadInputError: an image is not finite or constant (:func:`check_images`), or a bad argument.
    """
    images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images[None]
    check_images(images)
    points = candidate_points(grid, grid_size)
    if candidates is None:
        candidates = embed_candidates(model, points)
    if len(candidates) != len(points):
        raise ValueError(f"{len(candidates)} candidate embeddings for {len(points)} points")
    k = min(int(k), len(points))
    if k < 1:
        raise BadInputError(f"k must be at least 1, got {k}")
    param = next(model.visual.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    image_embeddings = torch.nn.functional.normalize(model.encode_image(images.to(device)), dim=1)
    similarity = image_embeddings.double() @ candidates.to(image_embeddings.device).double().T
    scores, index = similarity.topk(k, dim=1)
    index = index.cpu().numpy()
    return Located(lonlat=points[index], scores=scores.cpu().numpy())
