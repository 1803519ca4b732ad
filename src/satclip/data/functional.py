"""Image operations of the S2 transforms in plain torch, matching torchvision's arithmetic.

All take a ``(C, H, W)`` floating tensor. Random ones draw from ``generator`` (``None`` = torch's global
generator) in the same order and with the same calls as torchvision's ``RandomCrop``,
``RandomHorizontalFlip``/``RandomVerticalFlip`` and ``GaussianBlur``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# one centre crop for the whole library (torchvision's offsets); re-exported for the transforms
from ..image.preprocess import center_crop  # noqa: F401


def _check_chw(image: torch.Tensor, what: str) -> None:
    if image.ndim != 3:
        raise ValueError(f"{what} expects one (C, H, W) image, got shape {tuple(image.shape)}")


def random_crop(image: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``size × size`` window; no random number is drawn when the image already has that size."""
    _check_chw(image, "random_crop")
    h, w = image.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop a {h}×{w} image to {size}×{size}; lower crop_size")
    if h == size and w == size:
        return image
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator).item())
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator).item())
    return image[..., top : top + size, left : left + size]


def random_flip(
    image: torch.Tensor, dim: int, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Flip along ``dim`` (-1 horizontal, -2 vertical) with probability ``p`` (one ``rand(1)`` draw)."""
    if torch.rand(1, generator=generator) < p:
        return image.flip(dim)
    return image


def gaussian_kernel1d(kernel_size: int, sigma: float) -> torch.Tensor:
    """``(kernel_size,)`` float32 Gaussian weights summing to 1, sampled at integer offsets."""
    half = (kernel_size - 1) * 0.5
    x = torch.linspace(-half, half, steps=kernel_size)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    return pdf / pdf.sum()


def gaussian_blur(image: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Blur each band with a ``kernel_size²`` Gaussian of std ``sigma`` px, reflect-padded at the edges."""
    _check_chw(image, "gaussian_blur")
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    k1 = gaussian_kernel1d(kernel_size, sigma).to(image.dtype)
    kernel = torch.mm(k1[:, None], k1[None, :])
    channels = image.shape[0]
    weight = kernel.expand(channels, 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    padded = F.pad(image.unsqueeze(0), [pad, pad, pad, pad], mode="reflect")
    return F.conv2d(padded, weight, groups=channels).squeeze(0)


def random_gaussian_blur(
    image: torch.Tensor,
    kernel_size: int,
    sigma_range: tuple[float, float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`gaussian_blur` with ``sigma ~ U(sigma_range)`` drawn once per call."""
    sigma = float(torch.empty(1).uniform_(sigma_range[0], sigma_range[1], generator=generator).item())
    return gaussian_blur(image, kernel_size, sigma)
