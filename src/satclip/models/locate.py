"""Image → location retrieval: where on Earth does a satellite image most likely come from?

The image embedding is compared (cosine similarity) with the location embeddings of candidate points,
by default a Fibonacci lattice of ``grid_size`` nearly equally spaced points over the globe; the ``k``
best candidates are returned. Candidate sets are pluggable: a registered grid name, any callable
``n → (n, 2)`` (lon, lat) array (e.g. a land-only grid), or an explicit ``(N, 2)`` array.

:func:`load_image` reads an image file the way a model was trained on: 12/13-band Sentinel-2 GeoTIFFs
for the released models, RGB (PNG, JPEG, 3-band GeoTIFF) at the recorded patch size and scale for the
shipped ``bluemarble-*`` models, and says in one line what would fit when the image does not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..encoding.points import check_in_range
from ..errors import BadInputError, check_flags
from ..image.base import check_bands, float_images, refuse_non_finite
from ..image.preprocess import B10_INDEX, S2_BANDS_13
from ..registry import Registry
from .clip import SatCLIP
from .provenance import training_footprint

log = logging.getLogger(__name__)

#: pixel size of the S2-100K patches the released Sentinel-2 models were trained on (10 m)
SENTINEL2_GSD_KM = 0.01
#: the side of the S2-100K patches the released models were trained on (px): a larger image is cropped to it
S2_100K_PATCH_PX = 256
#: the most candidate points locate makes on a grid (2 GB of embeddings, were they kept)
MAX_GRID_SIZE = 10_000_000
#: candidate points embedded and scored at a time (memory: ~4 MB per 1,000 with 256-d embeddings)
CANDIDATE_CHUNK = 262_144
#: a candidate scores higher than the true location only by more than this: the same point embedded in another
#: batch differs by float32 rounding (~1e-7 in a score), and a candidate on the truth counted as above it
SCORE_TIE = 1e-6
#: an image whose pixel size is within this factor of the training scale is accepted
SCALE_TOLERANCE = 1.25
#: what a user with the other kind of image can use instead
_RGB_MODEL_HINT = "locate RGB images with --model bluemarble-l10 (32×32 px at 7.5 km/px)"
_S2_MODEL_HINT = "locate Sentinel-2 patches with a released model, e.g. --model satclip-resnet18-l10"
#: Pillow's picture modes, as messages name them
PICTURE_MODES = {"L": "greyscale", "LA": "greyscale", "1": "black-and-white", "I;16": "16-bit greyscale",
                 "I": "32-bit greyscale", "F": "floating-point", "CMYK": "CMYK", "YCbCr": "YCbCr",
                 "RGBA": "partly transparent RGB"}  # fmt: skip

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


def _spacing_km(n: int) -> float:
    """Typical distance between neighbours of ``n`` points spread evenly over the Earth (km)."""
    return math.sqrt(4 * math.pi * 6371.0**2 / n)


def _check_count(name: str, value) -> None:
    """Raise :class:`BadInputError` unless ``value`` is a whole number of at least 1 (2.7 was 2, True 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BadInputError(f"{name} must be a whole number of at least 1, got {value!r}")


def check_grid_size(grid_size: int) -> None:
    """Raise :class:`BadInputError` for a ``grid_size`` that is no whole number of at least 1 (10.5 made 11 points)
    or beyond :data:`MAX_GRID_SIZE` (``satclip locate`` checks it before it loads the model and the image)."""
    _check_count("grid_size", grid_size)
    if grid_size > MAX_GRID_SIZE:
        raise BadInputError(
            f"a grid of {grid_size:,} candidates is more than locate makes (at most {MAX_GRID_SIZE:,}, about "
            f"{_spacing_km(MAX_GRID_SIZE):.0f} km apart; the default 10,000 are {_spacing_km(10_000):.0f} km apart): "
            "use a smaller --grid-size, or (from Python) pass your own candidate points around a region as "
            "satclip.models.locate.locate(model, images, grid=ARRAY)"
        )


def candidate_points(grid: str | Callable[[int], np.ndarray] | np.ndarray, grid_size: int) -> np.ndarray:
    """Resolve ``grid`` (a name in :data:`GRIDS`, a callable ``n → (n, 2)`` or an array) to ``(N, 2)``.

    Raises:
        BadInputError: a ``grid_size`` that is no whole number from 1 to :data:`MAX_GRID_SIZE` for a grid made here
            (:func:`check_grid_size`), or points that are no ``(N, 2)`` array.
        InvalidPointsError: points of an array or callable that are not finite (lon, lat) degrees in range.
    """
    if not isinstance(grid, np.ndarray):
        check_grid_size(grid_size)
    if isinstance(grid, str):
        points = GRIDS.get(grid)(grid_size)
    elif callable(grid):
        points = grid(grid_size)
    else:
        points = grid
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise BadInputError(
            f"candidate points must be a non-empty (N, 2) (lon, lat) array, got shape {points.shape}"
        )
    if not isinstance(grid, str):  # (a NaN row was refused only after "k=5 is more than the 1 candidates")
        check_in_range(torch.from_numpy(np.ascontiguousarray(points)))  # (latlon[:, ::-1] has a negative stride)
    return points


@dataclass
class Located:
    """Top-k candidates per image: ``lonlat`` ``(B, k, 2)`` degrees, ``scores`` ``(B, k)`` cosine
    similarities in [-1, 1], best first. With a ``truth`` given to :func:`locate`: ``above_truth`` ``(B,)``,
    the share of candidates scoring higher than the true location itself (≤ 0.01: in the top 1 %), and
    ``candidates``, their number."""

    lonlat: np.ndarray
    scores: np.ndarray
    above_truth: np.ndarray | None = None
    candidates: int = 0
    #: ``(B, k)`` bool: the candidate lies outside the model's training footprint (where it saw no images)
    outside: np.ndarray | None = None
    #: what the model's training footprint is (``"land north of 60°S"``), as :attr:`outside` and the candidates
    #: kept by ``within_footprint`` judge it
    footprint: str = ""

    def rows(self, index: int = 0) -> list[tuple[float, float, float]]:
        """``[(lon, lat, score), …]`` of image ``index``, best first."""
        pairs = zip(self.lonlat[index], self.scores[index], strict=True)
        return [(float(lon), float(lat), float(score)) for (lon, lat), score in pairs]


@torch.no_grad()
def embed_candidates(model: SatCLIP, points: np.ndarray, batch_size: int | None = None) -> torch.Tensor:
    """L2-normalised location embeddings ``(N, embed_dim)`` of candidate points (validated)."""
    embeddings = model.location.encode(points, batch_size=batch_size, warn_radians=False)  # (a grid, maybe a region's)
    return torch.nn.functional.normalize(embeddings, dim=1)


#: the smallest Sentinel-2 patch the ResNet encoders take: their 32× downsampling leaves one position of it
MIN_S2_PX = 32


def check_images(images: torch.Tensor, names: list[str] | None = None) -> None:
    """Refuse images that carry no location signal: any NaN or inf, or one value everywhere (a no-data
    patch). ``images`` is ``(B, C, H, W)``; the message names the first bad image (by ``names[row]``, e.g. its
    file, else "image ROW") and why. A 13-band image whose B10 band is all zero — the band inserted into
    12-band Sentinel-2 patches — is judged on its other bands: the inserted zeros carry nothing (it is constant
    when they are, and its NaN are counted among their values)."""
    if images.ndim != 4 or images.shape[0] == 0 or images[0].numel() == 0:
        raise BadInputError(
            f"images must be a non-empty (B, C, H, W) or (C, H, W) array, got shape {tuple(images.shape)}"
        )
    refuse_non_finite(images, names)
    flat = images.reshape(len(images), -1)
    others, inserted = flat, torch.zeros(len(images), dtype=torch.bool, device=images.device)
    if images.shape[1] == len(S2_BANDS_13):  # the values without a B10 band of zeros (inserted, not read)
        others = torch.cat([images[:, :B10_INDEX], images[:, B10_INDEX + 1 :]], dim=1).reshape(len(images), -1)
        inserted = (images[:, B10_INDEX] == 0).reshape(len(images), -1).all(dim=1)
    constant_others = inserted & (others == others[:, :1]).all(dim=1)
    constant = (flat == flat[:, :1]).all(dim=1) | constant_others
    if bool(constant.any()):
        row = int(constant.nonzero()[0])
        value = (others if constant_others[row] else flat)[row, 0].item()
        raise BadInputError(
            f"{names[row] if names is not None else f'image {row}'} is constant (every value is {value:g}): a "
            "no-data patch carries no location signal, and every candidate would get the same score"
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
    truth: np.ndarray | None = None,
    within_footprint: bool = False,
) -> Located:
    """The ``k`` candidate locations most similar to each image.

    Args:
        model: a :class:`~satclip.SatCLIP` model (e.g. from :func:`satclip.load_model`); put it in eval mode.
        images: ``(B, C, H, W)`` or one ``(C, H, W)`` image, preprocessed for the model (13-band
            reflectance for the released models, see :mod:`satclip.image.preprocess`).
        k: results per image (at most the number of candidates).
        grid, grid_size: candidate points (see :func:`candidate_points`).
        candidates: precomputed :func:`embed_candidates` of those points, to reuse across calls.
        truth: ``(B, 2)`` or ``(2,)`` (lon, lat) where the images really are, if known: sets
            ``Located.above_truth``.
        within_footprint: rank only the grid's points inside the model's training footprint
            (:func:`satclip.models.provenance.training_footprint`; not applied to an array ``grid``, which is ranked
            as given). Either way ``Located.outside`` marks the candidates outside it.

    Images larger than the model's training patches (:func:`_training_patch_px`: 32 px for ``bluemarble-*``, 256
    px for the released Sentinel-2 models) are embedded whole, with a warning (``satclip locate`` embeds the
    central patch); mis-scaled ones are embedded with a warning too (:meth:`SatCLIP.encode_image`).

    Raises:
        BadInputError: ``model`` is no SatCLIP model (:func:`check_model`), ``images`` a path (read it with
            :func:`load_image`), an image is not finite or constant (:func:`check_images`), of another shape or band
            count (:func:`satclip.image.base.check_bands`), too small, or a bad argument.
    """
    check_model(model)
    check_flags(within_footprint=within_footprint)  # ("no" is true: only the footprint's candidates were ranked)
    images = float_images(images)
    given, name = tuple(images.shape), _model_name(model, None)
    check_bands(images, model.visual.in_chans, name, one=True)  # (the checks and messages of encode_image)
    if images.ndim == 3:
        images = images[None]
    check_image_size(model, *images.shape[-2:], what=f"an image of shape {given}", shown=tuple(images.shape[-2:]),
                     name=name)  # fmt: skip
    check_images(images)
    trained_px = _training_patch_px(model)
    if trained_px and max(images.shape[-2:]) > trained_px:  # (a 600×800 px picture was embedded whole, 4,500 km)
        log.warning("images of shape %s are larger than the %d×%d px patches %s was trained on, and are embedded "
                    "whole: satclip locate embeds their central patch, satclip.image.center_crop(images, %d)", given,
                    trained_px, trained_px, name, trained_px)  # fmt: skip
    if truth is not None:  # (before the images are embedded: (1, 3) failed as "cannot reshape array of size 3")
        truth = np.asarray(truth, dtype=np.float64)
        if truth.shape != (2,) and (truth.ndim != 2 or truth.shape[1] != 2):
            raise BadInputError(f"truth must be (lon, lat) for one image or (B, 2), one row per image, got shape "
                                f"{truth.shape}")  # fmt: skip
        truth = truth.reshape(-1, 2)
        if len(truth) != len(images):
            raise BadInputError(f"{len(truth)} true locations for {len(images)} images: give one (lon, lat) per image")
    footprint = training_footprint(model)
    points = candidate_points(grid, grid_size)
    if within_footprint and not isinstance(grid, np.ndarray):
        points = points[footprint.contains(points)]
        if not len(points):
            raise BadInputError(f"none of the {grid_size:,} grid points lies inside the model's training footprint "
                                f"({footprint.describe()}): use a larger grid")  # fmt: skip
    if candidates is not None and len(candidates) != len(points):
        raise ValueError(f"{len(candidates)} candidate embeddings for {len(points)} points")
    _check_count("k", k)
    if int(k) > len(points):
        log.warning("k=%s is more than the %s candidates: all %s are ranked", f"{int(k):,}", f"{len(points):,}",
                    f"{len(points):,}")  # fmt: skip
    k = min(int(k), len(points))
    unfitted = [m for m in model.visual.modules() if isinstance(getattr(m, "fitted", None), torch.Tensor)
                and not bool(m.fitted)]  # fmt: skip
    if unfitted:  # (it failed as "unexpected error (RuntimeError)" when the image was embedded)
        raise BadInputError(
            f"the model's image encoder ({type(unfitted[0]).__name__}) was never fitted to images, so it locates "
            "nothing: use a trained model (satclip train fits it; the shipped bluemarble-l10 is one)"
        )
    param = next(model.visual.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    image_embeddings = torch.nn.functional.normalize(model.encode_image(images.to(device)), dim=1).double()
    own = None
    if truth is not None:
        at_truth = embed_candidates(model, truth).to(device).double()
        own = (image_embeddings * at_truth).sum(dim=1, keepdim=True)
    scores = index = None
    higher = torch.zeros(len(images), dtype=torch.float64, device=device)
    for lo in range(0, len(points), CANDIDATE_CHUNK):  # (memory bounded by the chunk, not the grid)
        chunk = (candidates[lo : lo + CANDIDATE_CHUNK] if candidates is not None
                 else embed_candidates(model, points[lo : lo + CANDIDATE_CHUNK]))  # fmt: skip
        similarity = image_embeddings @ chunk.to(device).double().T
        if own is not None:
            higher += (similarity > own + SCORE_TIE).sum(dim=1)
        top, where = similarity.topk(min(k, similarity.shape[1]), dim=1)
        if scores is None:
            scores, index = top, where + lo
        else:  # (the earlier chunk first: among equal scores the lower index stays ahead)
            merged = torch.cat([scores, top], dim=1)
            scores, pick = merged.topk(min(k, merged.shape[1]), dim=1)
            index = torch.cat([index, where + lo], dim=1).gather(1, pick)
    above = (higher / len(points)).cpu().numpy() if own is not None else None
    best = points[index.cpu().numpy()]
    outside = ~footprint.contains(best).reshape(best.shape[:2])
    return Located(lonlat=best, scores=scores.cpu().numpy(), above_truth=above, candidates=len(points),
                   outside=outside, footprint=footprint.describe())  # fmt: skip


def check_model(model, what: str = "locate") -> None:
    """Raise :class:`BadInputError` unless ``model`` is a :class:`~satclip.SatCLIP` (image and location encoder):
    the location encoder alone, what :func:`satclip.load` gives, failed as "'LocationEncoder' object has no
    attribute 'visual'". ``what``: the function the message names."""
    if not isinstance(getattr(model, "_orig_mod", model), SatCLIP):  # (torch.compile's wrapper: its _orig_mod)
        raise BadInputError(f"{what} takes a SatCLIP model from satclip.load_model(...), got a value of type "
                            f"{type(model).__name__} (satclip.load gives the location encoder alone)")  # fmt: skip


def _model_name(model, name: str | None) -> str:
    if name:
        return name
    source = (getattr(model, "provenance", None) or {}).get("source")
    return Path(source).name if source else "this model"


def load_image(model: SatCLIP, path: str | Path, *, name: str | None = None) -> torch.Tensor:
    """Read ``path`` as ``model`` was trained to see images → ``(C, H, W)`` float32 tensor.

    - RGB models (3 input bands, e.g. ``bluemarble-l10``): PNG, JPEG or a 3-band GeoTIFF, scaled as
      :func:`satclip.image.preprocess.read_rgb`; larger than the recorded patch size
      (:func:`satclip.models.provenance.image_input`) → centre-cropped to it; a GeoTIFF's pixel size must be
      within a factor 1.25 of the recorded scale.
    - Sentinel-2 models (13 input bands, the released ones): a 12- or 13-band L1C GeoTIFF at ≈10 m,
      :func:`~satclip.image.preprocess.load_sentinel2` (B10 set to 0, as in training); centre-cropped to the
      encoder's fixed size (ViT) or, larger than the 256 px S2-100K patches, to those (only that window is read).

    An image without georeference (a picture, a GeoTIFF without CRS) is taken to be at the training scale,
    which is logged. ``name`` names the model in messages (default: its source's file name).

    Raises:
        BadInputError: not an image satclip reads, or bands, size or scale do not fit the model; the message
            says what would.
    """
    from ..image import preprocess
    from .provenance import image_input

    check_model(model, "load_image")
    path = Path(path)
    name = _model_name(model, name)
    in_chans = model.visual.in_chans
    bands = preprocess.band_count(path)
    scale = preprocess.pixel_size_km(path)
    if in_chans == 3:
        expected = image_input(model)
        wants = expected.describe() if expected else "3-band RGB images"
        if bands != 3:
            hint = f": {_S2_MODEL_HINT}" if bands in (12, 13) else ""
            kind = " (a Sentinel-2 patch?)" if bands in (12, 13) else ""
            mode = preprocess.picture_mode(path)
            if mode not in (None, "RGB", "P", "PA"):  # (a CMYK JPEG was "4 band(s)", no word of CMYK)
                kind = f" (a {PICTURE_MODES.get(mode, mode)} picture)"
                hint = ": save it as 8-bit RGB" + (" without transparency" if mode in ("RGBA", "LA") else "")
            elif mode is None and bands > 3 and bands not in (12, 13):  # (RGB + near-infrared was "4 band(s)", no fix)
                hint = f": {preprocess.keep_rgb_advice(path)}"
            raise BadInputError(f"{name} takes {wants}; {path.name} has {bands} band(s){kind}{hint}")
        size = _input_size(model)
        image = torch.from_numpy(preprocess.read_rgb(path, size=size))  # (only that window is converted)
        trained = expected.gsd_km if expected else None
    elif in_chans == 13:
        if bands not in (12, 13):
            hint = f": {_RGB_MODEL_HINT}" if bands == 3 else (  # (5 bands were said, with no word of a fix)
                f": export all 13 L1C bands in the order {', '.join(S2_BANDS_13)} (or those 12 without B10); for an "
                f"RGB picture, {_RGB_MODEL_HINT}")  # fmt: skip
            raise BadInputError(
                f"{name} takes Sentinel-2 L1C GeoTIFFs with 12 (B10 missing) or 13 bands at 10 m/px, as in S2-100K; "
                f"{path.name} has {bands} band(s){hint}"
            )
        size = _input_size(model)  # (a ViT's fixed input)
        image = torch.from_numpy(preprocess.load_sentinel2(path, size=size or S2_100K_PATCH_PX))
        expected, trained = None, SENTINEL2_GSD_KM
    else:
        raise BadInputError(
            f"{name} takes {in_chans}-band images; satclip locate reads 3-band RGB (for RGB models such as "
            "bluemarble-l10) and 12/13-band Sentinel-2 GeoTIFFs (for the released models)"
        )
    off = [km for km in scale or () if not 1 / SCALE_TOLERANCE <= km / trained <= SCALE_TOLERANCE] if trained else []
    if off:  # (each direction: 14.9 km × 0.1 km pixels passed as their mean)
        shown = f"{scale[0]:.3g} km/px" if f"{scale[0]:.3g}" == f"{scale[1]:.3g}" else (
            f"{scale[0]:.3g} × {scale[1]:.3g} km/px")  # fmt: skip
        raise BadInputError(
            f"{path.name} has {shown}; {name} was trained on {trained:g} km/px: resample the image to "
            f"{trained:g} km/px (e.g. gdalwarp -tr with the size in the image's units) or use a model trained at "
            f"its scale" + (f" ({_S2_MODEL_HINT} for 10 m Sentinel-2)" if in_chans == 3 and off[0] < 0.1 else "")
        )
    height, width = image.shape[-2:]
    file_shape = preprocess.image_shape(path)  # (an image larger than size is read as its central window)
    check_image_size(model, height, width, what=path.name, shown=file_shape, name=name)
    check_images(image[None], names=[path.name])  # (named by its file, the bands as read: no inserted B10 counts)
    if trained and scale is None:  # a picture, or a GeoTIFF without CRS or geotransform
        log.info("%s carries no georeference; assuming %g km/px, the scale %s was trained at", path.name, trained, name)
    # said once the image passed every check (a 100×20 px picture was "centre-cropped to 32×20", then refused)
    if file_shape != (height, width):
        log.info("read the central %d×%d px of %s's %d×%d for %s (the size of its training patches)", height, width,
                 path.name, *file_shape, name)  # fmt: skip
    trained_px = _training_patch_px(model) if size is None else None  # (a fixed size was checked above)
    if trained_px and min(height, width) < trained_px:  # (a 64 px patch was taken by a model of 256 px ones, silently)
        log.warning("%s is %d×%d px, smaller than the %d×%d px patches %s was trained on: its results may be off",
                    path.name, height, width, trained_px, trained_px, name)  # fmt: skip
    return image.contiguous()


def _input_size(model: SatCLIP) -> int | None:
    """The side of the square images ``model``'s image encoder takes (an RGB model's recorded patch size, a ViT's
    fixed input); None where it takes any size."""
    from .provenance import image_input

    expected = image_input(model) if model.visual.in_chans == 3 else None
    size = expected.patch_size if expected is not None and expected.patch_size else None
    return size or (model.visual.image_size[0] if model.visual.image_size is not None else None)


def check_image_size(model: SatCLIP, height: int, width: int, *, what: str, shown: tuple[int, int],
                     name: str) -> None:  # fmt: skip
    """Raise :class:`BadInputError` for images of ``height`` × ``width`` px too small for ``model`` (``name``): smaller
    than the size its encoder takes (:func:`_input_size`), or a Sentinel-2 ResNet's :data:`MIN_S2_PX` (1×1 px was
    embedded and ranked). ``what`` names the image, ``shown`` its size as given (a file larger one way is read as its
    central window). The CLI's files and Python's tensors are held to the same rule (an 8×8 px tensor was taken)."""
    from .provenance import image_input

    size = _input_size(model)
    if size is not None and (height < size or width < size):
        expected = image_input(model)
        extent = f" ({expected.extent_km:g} km across)" if expected is not None and expected.extent_km else ""
        raise BadInputError(f"{what} is {shown[0]}×{shown[1]} px; {name} takes {size}×{size} px{extent}: use a larger "
                            "image")  # fmt: skip
    if size is None and model.visual.in_chans == len(S2_BANDS_13) and min(height, width) < MIN_S2_PX:
        raise BadInputError(
            f"{what} is {shown[0]}×{shown[1]} px; {name} takes Sentinel-2 patches of at least {MIN_S2_PX}×{MIN_S2_PX} "
            f"px (its ResNet reduces {MIN_S2_PX} px to one; S2-100K patches are {S2_100K_PATCH_PX} px): use a larger "
            "image"
        )


def _training_patch_px(model: SatCLIP) -> int | None:
    """The side of the patches the model was trained on, as recorded: its image input's patch size, or the original's
    ``image_resolution`` hyper-parameter (256 for the released models, S2-100K's patches); None where not recorded."""
    from .provenance import image_input, metadata

    expected = image_input(model)
    if expected is not None and expected.patch_size:
        return expected.patch_size
    recorded = (metadata(model).get("hyper_parameters") or {}).get("image_resolution")
    return recorded if type(recorded) is int and recorded > 0 else None
