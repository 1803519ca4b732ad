"""The original SatCLIP transform for the pretrained (SSL4EO MoCo) backbones, in plain torch.

Training (``train=True``), in the original's order:

1. reflectance = digital numbers / 10,000 and a zero B10 band inserted after the first ten bands
   (12 → 13 bands; :func:`satclip.image.preprocess.sentinel2_to_13_bands`);
2. random crop to ``crop_size`` (256: a no-op on S2-100K patches, and then no random number is drawn);
3. horizontal flip, then vertical flip, each with probability 0.5;
4. Gaussian blur, 3 × 3 kernel, sigma ~ U(0.1, 2.0) px drawn per call (torchvision ``GaussianBlur(3)``);
5. coordinate jitter ``point + U(0, 1) · 0.01`` degrees on lon and lat independently — one-sided, as in
   the original (``jitter_mode="symmetric"`` draws from U(-1, 1) instead).

Evaluation (``train=False``) keeps step 1 only, plus a centre crop when ``crop_size`` is smaller than the
image; it equals the fixture preprocessing bit for bit.

Randomness: ``seed`` (default 0) gives the transform its own ``torch.Generator``, so a run is
reproducible without touching global state. Inside ``DataLoader`` workers the generator is re-seeded
from ``(seed, worker seed)``, so workers draw different augmentations and every epoch differs, while the
whole run stays reproducible when the loader's base seed is (``torch.manual_seed`` / ``seed_everything``).
``seed=None`` draws from torch's global generator exactly as the original (torchvision) did.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import torch
from torch.utils.data import get_worker_info

from . import functional as Fn

Sample = dict[str, torch.Tensor]


def sentinel2_to_13_bands(array) -> np.ndarray:
    """12-band digital numbers ``(..., 12, H, W)`` → 13-band float32 reflectance (see module docstring)."""
    from ..image.preprocess import sentinel2_to_13_bands as convert

    return convert(array)


def _to_reflectance(image, add_b10: bool) -> torch.Tensor:
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if add_b10:
        from ..image.preprocess import sentinel2_reflectance

        array = sentinel2_reflectance(array)
    else:
        array = array.astype(np.float32) / np.float32(10_000.0)
    return torch.from_numpy(np.ascontiguousarray(array))


def _keep_in_range(point: torch.Tensor) -> torch.Tensor:
    """Wrap lon back into [-180, 180] and clamp lat to [-90, 90]; in-range values are returned unchanged."""
    lon, lat = point[..., 0], point[..., 1]
    if bool((lon.abs() <= 180).all()) and bool((lat.abs() <= 90).all()):
        return point
    lon = torch.where(lon.abs() > 180, torch.remainder(lon + 180, 360) - 180, lon)
    return torch.stack([lon, lat.clamp(-90, 90)], dim=-1)


class S2Transform:
    """Callable on a sample dict (``"image"`` optional, ``"point"``); see :func:`s2_transform`."""

    def __init__(
        self,
        train: bool,
        *,
        crop_size: int | None = 256,
        flips: bool = True,
        blur_kernel: int | None = 3,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        jitter: float = 0.01,
        jitter_mode: Literal["one-sided", "symmetric"] = "one-sided",
        keep_in_range: bool = True,
        add_b10: bool = True,
        seed: int | None = 0,
    ) -> None:
        if jitter_mode not in ("one-sided", "symmetric"):
            raise ValueError(f"jitter_mode must be 'one-sided' or 'symmetric', got {jitter_mode!r}")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"crop_size must be a positive number of pixels or None, got {crop_size}")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"blur_sigma must be (low, high) with 0 < low <= high, got {blur_sigma}")
        if jitter < 0:
            raise ValueError(f"jitter must be >= 0 degrees, got {jitter}")
        self.train = train
        self.crop_size = crop_size
        self.flips = flips
        self.blur_kernel = blur_kernel
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        self.jitter = float(jitter)
        self.jitter_mode = jitter_mode
        self.keep_in_range = keep_in_range
        self.add_b10 = add_b10
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._owner: tuple[int, int] | None = None

    def reset(self) -> None:
        """Restart the random stream from ``seed``."""
        self._generator, self._owner = None, None

    def generator(self) -> torch.Generator | None:
        """This process's generator (``None`` when ``seed`` is ``None``: torch's global one)."""
        if self.seed is None:
            return None
        info = get_worker_info()
        owner = None if info is None else (info.id, info.seed)
        if self._generator is None or owner != self._owner:
            seed = self.seed
            if info is not None:
                digest = hashlib.sha256(f"{self.seed}:{info.seed}".encode()).digest()
                seed = int.from_bytes(digest[:8], "little") >> 1
            self._generator = torch.Generator().manual_seed(seed)
            self._owner = owner
        return self._generator

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_generator"], state["_owner"] = None, None  # re-created lazily in the new process
        return state

    def image(self, image, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(12, H, W)`` digital numbers (array or tensor) → ``(13, h, w)`` float32 tensor.

        ``generator`` defaults to this transform's own (see :meth:`generator`).
        """
        x = _to_reflectance(image, self.add_b10)
        if not self.train:
            if self.crop_size is not None and tuple(x.shape[-2:]) != (self.crop_size, self.crop_size):
                x = Fn.center_crop(x, self.crop_size)
            return x
        generator = generator if generator is not None else self.generator()
        if self.crop_size is not None:
            x = Fn.random_crop(x, self.crop_size, generator)
        if self.flips:
            x = Fn.random_flip(x, -1, generator=generator)
            x = Fn.random_flip(x, -2, generator=generator)
        if self.blur_kernel:
            x = Fn.random_gaussian_blur(x, self.blur_kernel, self.blur_sigma, generator)
        return x.contiguous()

    def point(self, point: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Jitter a ``(2,)`` (lon, lat) tensor in degrees (train only; dtype kept; generator as above)."""
        point = torch.as_tensor(point)
        if not self.train or self.jitter == 0:
            return point
        generator = generator if generator is not None else self.generator()
        noise = torch.rand(point.shape, generator=generator)
        if self.jitter_mode == "symmetric":
            noise = noise * 2 - 1
        out = point + noise * self.jitter
        return _keep_in_range(out) if self.keep_in_range else out

    def __call__(self, sample: Sample) -> Sample:
        generator = self.generator() if self.train else None
        out = dict(sample)
        if "image" in sample:
            out["image"] = self.image(sample["image"], generator)
        if "point" in sample:
            out["point"] = self.point(sample["point"], generator)
        return out

    def __repr__(self) -> str:
        parts = [f"train={self.train}", f"crop_size={self.crop_size}"]
        if self.train:
            parts += [
                f"flips={self.flips}",
                f"blur_kernel={self.blur_kernel}",
                f"blur_sigma={self.blur_sigma}",
                f"jitter={self.jitter}",
                f"jitter_mode={self.jitter_mode!r}",
                f"seed={self.seed}",
            ]
        return f"S2Transform({', '.join(parts)})"


def s2_transform(train: bool, **options) -> S2Transform:
    """The original pretrained-backbone Sentinel-2 transform (``train=True``) or its eval version.

    ``options`` are :class:`S2Transform`'s: ``crop_size=256``, ``flips=True``, ``blur_kernel=3``
    (``None`` = no blur), ``blur_sigma=(0.1, 2.0)``, ``jitter=0.01`` degrees,
    ``jitter_mode="one-sided"|"symmetric"``, ``keep_in_range=True`` (wrap lon / clamp lat of jittered
    points that leave the valid range; in-range points are untouched), ``add_b10=True``, ``seed=0``.
    """
    return S2Transform(train, **options)
