"""MOSAIKS random convolutional features (Rolf et al. 2021, Nature Communications 12:4392): a frozen,
download-free image backbone for any band count, the offline default for CPU-only users.

``K`` filters are ``k × k × C`` patches sampled from the data. With ``whiten=True`` (as in MOSAIKS) both
the filters and the image patches are ZCA-whitened: ``z(p) = A (p − μ)`` with ``A = (Σ + εI)^(-1/2)``
(``μ``, ``Σ``: mean and covariance of a sample of patches; ``ε = zca_eps · mean eigenvalue``), and
filter ``i`` is ``f_i = z(q_i) / ‖z(q_i)‖`` for its sampled patch ``q_i``. Without whitening,
``A = I / s`` with ``s`` the patches' RMS deviation. The response to an image patch ``p`` is
``r_i(p) = f_i · z(p)``, about unit variance on the data; features are the spatial means of
``ReLU(r_i − b)`` and ``ReLU(−r_i − b)``: ``2K`` numbers per image.

Whitening is folded into the filters (``r_i = (Aᵀf_i) · p − (Aᵀf_i) · μ``), so ``forward`` is one plain
convolution (a matrix product over unfolded patches, in cache-sized chunks). ``filters``
(``(K, C, k, k)``) and ``offsets`` (``(K,)``) are buffers: a fitted encoder saves and loads with the
model. The head is a trainable ``nn.Linear(2K, embed_dim)``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .base import ImageEncoder
from .registry import IMAGE_ENCODERS

log = logging.getLogger(__name__)

#: response-map elements computed at once: small enough to stay in cache (measured fastest on CPU)
CHUNK_ELEMENTS = 1 << 20


def sample_patches(images: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``size × size`` windows of ``(B, C, H, W)`` images → ``(count, C, size, size)``."""
    batch, channels, height, width = images.shape
    if height < size or width < size:
        raise ValueError(f"images of {height}×{width} are smaller than the {size}×{size} filters")
    b = torch.randint(batch, (count,), generator=generator)
    y = torch.randint(height - size + 1, (count,), generator=generator)
    x = torch.randint(width - size + 1, (count,), generator=generator)
    offsets = torch.arange(size)
    rows = (y[:, None] + offsets)[:, None, :, None]
    cols = (x[:, None] + offsets)[:, None, None, :]
    return images[b[:, None, None, None], torch.arange(channels)[None, :, None, None], rows, cols]


def zca_matrix(patches: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ZCA whitening of ``(N, D)`` patches: ``(A, μ)`` with ``A (p − μ)`` of ≈ identity covariance.

    ``eps`` regularises small eigenvalues, relative to their mean (float64 throughout).
    """
    patches = patches.double()
    mean = patches.mean(dim=0)
    centred = patches - mean
    cov = centred.T @ centred / max(len(patches) - 1, 1)
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(0) + eps * values.clamp_min(0).mean().clamp_min(1e-30)
    return (vectors * values.rsqrt()) @ vectors.T, mean


class Mosaiks(ImageEncoder):
    """Random convolutional features; call :meth:`fit` on a sample of images before use.

    Args:
        in_chans: input bands (any number).
        num_filters: ``K``; features are ``2K`` wide.
        kernel_size: ``k``, filter size in pixels.
        bias: ``b`` in ``ReLU(±r − b)``, in units of the responses' standard deviation.
        whiten: ZCA-whiten filters and patches (MOSAIKS) or only centre and scale them.
        zca_eps: whitening regulariser relative to the mean eigenvalue.
        stride: stride of the convolution (> 1 trades detail for speed on large images).
        embed_dim: output size of the head.
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        num_filters: int = 256,
        kernel_size: int = 3,
        bias: float = 1.0,
        whiten: bool = True,
        zca_eps: float = 1e-2,
        stride: int = 1,
        embed_dim: int = 256,
    ):
        super().__init__()
        self.config = {
            "name": "mosaiks", "in_chans": int(in_chans), "num_filters": int(num_filters),
            "kernel_size": int(kernel_size), "bias": float(bias), "whiten": bool(whiten),
            "zca_eps": float(zca_eps), "stride": int(stride), "embed_dim": int(embed_dim),
        }  # fmt: skip
        self.register_buffer("filters", torch.zeros(num_filters, in_chans, kernel_size, kernel_size))
        self.register_buffer("offsets", torch.zeros(num_filters))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.head = nn.Linear(2 * num_filters, embed_dim)
        self.frozen_backbone = True  # nothing to train besides the head

    @property
    def min_size(self) -> int:
        """One filter's size: a smaller image has no patch to respond to."""
        return self.config["kernel_size"]

    @torch.no_grad()
    def fit(self, images, seed: int = 0, num_whitening_patches: int = 10_000) -> Mosaiks:
        """Sample the filters (and the whitening statistics) from ``(B, C, H, W)`` images.

        Deterministic for a given ``seed`` and input. Returns ``self``.
        """
        cfg = self.config
        images = torch.as_tensor(images).detach().to("cpu", torch.float64)
        self.check_input(images)
        k, n = cfg["kernel_size"], cfg["num_filters"]
        generator = torch.Generator().manual_seed(int(seed))
        sample = sample_patches(images, max(num_whitening_patches, n), k, generator).flatten(1)
        picked = sample_patches(images, n, k, generator).flatten(1)
        if cfg["whiten"]:
            transform, mean = zca_matrix(sample, cfg["zca_eps"])
        else:
            mean = sample.mean(dim=0)
            rms = (sample - mean).pow(2).mean().sqrt().clamp_min(1e-12)
            transform = torch.eye(sample.shape[1], dtype=torch.float64) / rms
        directions = (picked - mean) @ transform.T
        norms = directions.norm(dim=1, keepdim=True)
        degenerate = int((norms < 1e-12).sum())
        if degenerate:
            log.warning("%d of %d MOSAIKS filters come from constant patches and stay zero", degenerate, n)
        filters = (directions / norms.clamp_min(1e-12)) @ transform  # Aᵀ f_i (A symmetric)
        self.filters.copy_(filters.reshape(self.filters.shape))
        self.offsets.copy_(filters @ mean)
        self.fitted.fill_(True)
        return self

    def encode_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W)`` → ``(B, 2K)``: spatial means of ``ReLU(r − b)`` then ``ReLU(−r − b)``."""
        if not bool(self.fitted):
            raise RuntimeError(
                "MOSAIKS filters are not fitted: call .fit(images, seed) on a sample of images first"
            )
        self.check_input(images)
        images = images.to(self.filters.dtype)
        if images.requires_grad:
            return self._features_differentiable(images)
        return self._features_chunked(images)

    def _features_chunked(self, images: torch.Tensor) -> torch.Tensor:
        # Small chunks keep the (chunk, K, positions) responses in cache, and reusing two buffers avoids
        # the page faults of allocating them afresh (which cost more than the arithmetic). Uses
        # mean(ReLU(r − b)) = mean(max(r, b)) − b and mean(ReLU(−r − b)) = −mean(min(r, −b)) − b.
        cfg = self.config
        k, stride, bias, n_filters = cfg["kernel_size"], cfg["stride"], cfg["bias"], cfg["num_filters"]
        positions = ((images.shape[2] - k) // stride + 1) * ((images.shape[3] - k) // stride + 1)
        chunk = max(1, min(len(images), CHUNK_ELEMENTS // max(n_filters * positions, 1)))
        weight = self.filters.reshape(n_filters, -1)
        offsets = self.offsets[:, None]
        out = images.new_empty(len(images), 2 * n_filters)
        response = images.new_empty(chunk, n_filters, positions)
        clamped = torch.empty_like(response)
        with torch.no_grad():
            for start in range(0, len(images), chunk):
                part = images[start : start + chunk]
                n = len(part)
                r, c = response[:n], clamped[:n]
                torch.matmul(weight, F.unfold(part, k, stride=stride), out=r)
                r.sub_(offsets)
                torch.mean(torch.clamp_min(r, bias, out=c), dim=2, out=out[start : start + n, :n_filters])
                torch.mean(r.clamp_max_(-bias), dim=2, out=out[start : start + n, n_filters:])
        out[:, :n_filters] -= bias
        out[:, n_filters:].neg_().sub_(bias)
        return out

    def _features_differentiable(self, images: torch.Tensor) -> torch.Tensor:
        bias = self.config["bias"]
        response = F.conv2d(images, self.filters, -self.offsets, stride=self.config["stride"]).flatten(2)
        positive = response.clamp_min(bias).mean(dim=2) - bias
        negative = -response.clamp_max(-bias).mean(dim=2) - bias
        return torch.cat([positive, negative], dim=1)


@IMAGE_ENCODERS.register("mosaiks")
def mosaiks(
    in_chans: int = 3,
    num_filters: int = 256,
    kernel_size: int = 3,
    bias: float = 1.0,
    whiten: bool = True,
    zca_eps: float = 1e-2,
    stride: int = 1,
    embed_dim: int = 256,
) -> Mosaiks:
    """MOSAIKS random convolutional features (unfitted: call ``.fit(images, seed)``)."""
    return Mosaiks(
        in_chans=in_chans, num_filters=num_filters, kernel_size=kernel_size, bias=bias, whiten=whiten,
        zca_eps=zca_eps, stride=stride, embed_dim=embed_dim,
    )  # fmt: skip
