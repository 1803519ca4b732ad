"""What a model knows about its own training: where on the globe its images came from (the *training
footprint*) and what images it takes (bands, patch size, ground sampling distance).

Both are read from the ``metadata`` a model carries (a native model's ``config.json``, or the ``satclip`` entry
of a ``.ckpt`` satclip wrote with ``convert`` or ``train``):

- ``training_footprint``: ``{"surface": "land" | "any", "min_lat": -60.0, "max_lat": 90.0, …}``. ``"land"``
  is the GSHHG land mask (ocean and lakes never seen); ``min_lat``/``max_lat`` bound the training points.
- ``image_input``: ``{"bands": ["red", "green", "blue"], "patch_size": 32, "gsd_km": 7.5,
  "scale": "uint8 / 255", …}``.

Models trained by satclip on a Blue Marble corpus (the shipped ``bluemarble-*`` ones, ``satclip demo``'s)
record both, read from the corpus manifest at export (:func:`recorded_inputs`). One exported before they were
recorded has them derived from its training config's corpus path and manifest (or the corpus defaults when the
corpus is gone). Anything else — the released S2-100K checkpoints, torchgeo ``.pt`` files (tensors only), models
trained elsewhere — is taken to know **land anywhere** (S2-100K samples land; nothing is known of its latitude band)
and to take images of unknown scale.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LAND, ANY = "land", "any"
#: the ``origin`` of the footprint of a model that records none (:func:`training_footprint`)
ASSUMED = "assumed: no training_footprint recorded"


@dataclass(frozen=True)
class Footprint:
    """The part of the globe a model was trained on: ``surface`` (``"land"``: the GSHHG land mask, or
    ``"any"``) between ``min_lat`` and ``max_lat`` degrees; ``origin`` says how it is known."""

    surface: str = LAND
    min_lat: float = -90.0
    max_lat: float = 90.0
    origin: str = ASSUMED

    def __post_init__(self) -> None:
        if self.surface not in (LAND, ANY):
            raise ValueError(f"training_footprint surface must be {LAND!r} or {ANY!r}, got {self.surface!r}")
        if not -90.0 <= self.min_lat < self.max_lat <= 90.0:
            raise ValueError(f"training_footprint needs -90 <= min_lat < max_lat <= 90, got {self.min_lat}, "
                             f"{self.max_lat}")  # fmt: skip

    @property
    def global_band(self) -> bool:
        return self.min_lat <= -90.0 and self.max_lat >= 90.0

    def describe(self) -> str:
        """E.g. ``"land north of 60°S"``, ``"land"``, ``"the whole globe"``."""
        what = "land" if self.surface == LAND else "the whole globe"
        if self.global_band:
            return what
        parts = []
        if self.min_lat > -90:
            parts.append(f"north of {_lat(self.min_lat)}")
        if self.max_lat < 90:
            parts.append(f"south of {_lat(self.max_lat)}")
        return f"{what} {' and '.join(parts)}"

    def contains(self, lonlat: np.ndarray, land: np.ndarray | None = None) -> np.ndarray:
        """``(N,)`` bool for ``(N, 2)`` (lon, lat) points; ``land`` (their GSHHG land flags) when known."""
        lonlat = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
        inside = (lonlat[:, 1] >= self.min_lat) & (lonlat[:, 1] <= self.max_lat)
        if self.surface == LAND:
            if land is None:
                from ..data.land import is_land

                land = is_land(lonlat)
            inside &= np.asarray(land, dtype=bool).reshape(-1)
        return inside


@dataclass(frozen=True)
class ImageInput:
    """The images a model's image encoder was trained on: ``bands`` in order, ``patch_size`` pixels a side,
    ``gsd_km`` km between pixel centres, and how pixel values were scaled (``scale``)."""

    bands: tuple[str, ...]
    patch_size: int | None = None
    gsd_km: float | None = None
    scale: str = "uint8 / 255"
    origin: str = "recorded"

    @property
    def extent_km(self) -> float | None:
        return None if self.patch_size is None or self.gsd_km is None else self.patch_size * self.gsd_km

    def describe(self) -> str:
        """E.g. ``"3-band RGB (red, green, blue) images of 32×32 px at 7.5 km/px (240 km across)"``."""
        rgb = " RGB" if tuple(self.bands) == ("red", "green", "blue") else ""
        text = f"{len(self.bands)}-band{rgb} ({', '.join(self.bands)}) images"
        if self.patch_size:
            text += f" of {self.patch_size}×{self.patch_size} px"
        if self.gsd_km:
            text += f" at {self.gsd_km:g} km/px"
        if self.extent_km:
            text += f" ({self.extent_km:g} km across)"
        return text


def _lat(value: float) -> str:
    return f"{abs(value):g}°{'S' if value < 0 else 'N'}"


def metadata(model) -> dict:
    """The ``metadata`` a loaded model (``satclip.load``/``load_model``) came with: its native ``config.json``'s
    or the ``satclip`` entry's of a ``.ckpt`` satclip wrote; ``{}`` for a file that holds none (a torchgeo ``.pt``)
    or a model built in memory."""
    provenance = getattr(model, "provenance", None) or {}
    if isinstance(provenance.get("metadata"), dict):
        return provenance["metadata"]
    if provenance.get("format") != "native" or not provenance.get("source"):
        return {}
    from ..io import native

    try:
        return dict(native.read_config(provenance["source"]).get("metadata") or {})
    except (OSError, ValueError) as err:
        log.debug("no metadata for %s: %s", provenance["source"], err)
        return {}


def _derived_inputs(meta: dict) -> tuple[dict, str] | None:
    """``training_footprint`` and ``image_input`` (:func:`_corpus_inputs`) of a model that records neither but was
    trained on a Blue Marble corpus: from the corpus manifest, else the corpus defaults; with where they come
    from. None if it was not trained on one."""
    data = ((meta.get("train_config") or {}).get("data")) or {}
    if data.get("dataset") != "bluemarble":
        return None
    params = _corpus_params(data.get("root"))
    if params is not None:
        return _corpus_inputs(params), f"derived from the Blue Marble corpus manifest in {data['root']}"
    from dataclasses import asdict

    from ..data.bluemarble import BlueMarbleParams

    return (_corpus_inputs(asdict(BlueMarbleParams())),
            "derived: trained on a Blue Marble corpus (its defaults; the corpus is gone)")  # fmt: skip


def _corpus_params(root: str | None) -> dict | None:
    """The parameters in the manifest of the Blue Marble corpus at ``root``; None if there is none to read."""
    if not root:
        return None
    try:
        return dict(json.loads((Path(root) / "manifest.json").read_text())["params"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _corpus_inputs(params: dict) -> dict:
    """``training_footprint`` and ``image_input``, as a model's metadata records them, of a Blue Marble corpus of
    ``params``."""
    footprint = {"surface": LAND, "min_lat": float(params["min_lat"]), "max_lat": float(params["max_lat"])}
    image = {"bands": ["red", "green", "blue"], "patch_size": int(params["patch_size"]),
             "gsd_km": float(params["gsd_km"]), "scale": "uint8 / 255"}  # fmt: skip
    return {"training_footprint": footprint, "image_input": image}


def recorded_inputs(train_config: dict) -> dict:
    """``training_footprint`` and ``image_input`` for the metadata of a model trained by ``train_config`` on a
    Blue Marble corpus, read from the corpus manifest while it is at hand: the model then knows them without
    the corpus (or its path, which a shared model does not carry). ``{}`` for other data or no manifest."""
    data = train_config.get("data") or {}
    params = _corpus_params(data.get("root")) if data.get("dataset") == "bluemarble" else None
    return {} if params is None else _corpus_inputs(params)


def _recorded_or_derived(meta: dict, key: str, usable: Callable[[object], bool]) -> tuple[dict | None, str]:
    """The model's metadata entry ``key`` and where it comes from: recorded (where ``usable``), or derived
    (:func:`_derived_inputs`); ``(None, "")`` when neither."""
    if usable(meta.get(key)):
        return meta[key], "recorded in the model's metadata"
    derived = _derived_inputs(meta)
    return (derived[0][key], derived[1]) if derived is not None else (None, "")


def training_footprint(model) -> Footprint:
    """The model's :class:`Footprint`: recorded, derived from its training config, or assumed (land)."""
    recorded, origin = _recorded_or_derived(metadata(model), "training_footprint", lambda v: isinstance(v, dict))
    if recorded is not None:
        return Footprint(
            surface=str(recorded.get("surface", LAND)), min_lat=float(recorded.get("min_lat", -90.0)),
            max_lat=float(recorded.get("max_lat", 90.0)), origin=origin,
        )  # fmt: skip
    return Footprint()


def recorded_footprint(model) -> Footprint | None:
    """The model's :class:`Footprint` where it records one (or its training config gives it); None where it is only
    assumed (:func:`training_footprint`) or takes in the whole globe."""
    footprint = training_footprint(model)
    if footprint.origin == ASSUMED or (footprint.surface == ANY and footprint.global_band):
        return None
    return footprint


def image_input(model) -> ImageInput | None:
    """The model's :class:`ImageInput` (recorded or derived from a Blue Marble training config), else None."""
    recorded, origin = _recorded_or_derived(metadata(model), "image_input",
                                            lambda v: isinstance(v, dict) and bool(v.get("bands")))  # fmt: skip
    if recorded is not None:
        size, gsd = recorded.get("patch_size"), recorded.get("gsd_km")
        return ImageInput(
            bands=tuple(recorded["bands"]), patch_size=int(size) if size else None,
            gsd_km=float(gsd) if gsd and math.isfinite(float(gsd)) else None,
            scale=str(recorded.get("scale", "uint8 / 255")), origin=origin,
        )  # fmt: skip
    return None
