"""The CLIP "modified ResNet" the original SatCLIP trains from scratch when ``vision_layers`` is a
tuple of four block counts (Radford et al. 2021). State-dict keys match the original's ``visual.*``.

Differences from a plain ResNet: a stem of three 3×3 convolutions followed by a 2×2 average pool;
anti-aliased downsampling (a strided block average-pools before its last 1×1 convolution and its
shortcut, whose convolutions then have stride 1); attention pooling instead of average pooling: the mean
token (plus a learned position embedding) attends over all positions, and the output projection
``attnpool.c_proj`` is the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ImageEncoder
from .registry import IMAGE_ENCODERS


class AntiAliasedBottleneck(nn.Module):
    """1×1 → 3×3 → (avg-pool when strided) → 1×1 (×4 channels), shortcut avg-pool + 1×1 + norm."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride > 1 or inplanes != out:
            # "-1" is the parameter-free pool, so the convolution and norm keep the original's keys 0 and 1
            self.downsample = nn.Sequential()
            self.downsample.add_module("-1", nn.AvgPool2d(stride) if stride > 1 else nn.Identity())
            self.downsample.add_module("0", nn.Conv2d(inplanes, out, 1, bias=False))
            self.downsample.add_module("1", nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.pool(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class AttentionPool(nn.Module):
    """Multi-head attention of the mean token over ``[mean, positions]``; ``c_proj`` is applied by the
    owner (it is the encoder's head)."""

    def __init__(self, grid: int, dim: int, num_heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, dim) / dim**0.5)
        self.k_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, output_dim)
        self.num_heads = num_heads

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim, g, g)`` → ``(B, dim)``: the attention output before ``c_proj``."""
        tokens = x.flatten(2).transpose(1, 2)  # (B, g², dim)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        tokens = tokens + self.positional_embedding.to(tokens.dtype)
        batch, length, dim = tokens.shape
        heads = self.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, t.shape[1], heads, dim // heads).transpose(1, 2)

        q = split(self.q_proj(tokens[:, :1]))
        out = F.scaled_dot_product_attention(q, split(self.k_proj(tokens)), split(self.v_proj(tokens)))
        return out.transpose(1, 2).reshape(batch, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.pool(x))


class ModifiedResNet(ImageEncoder):
    """CLIP's ResNet for ``image_resolution``² inputs (fixed by the attention pool's positions).

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` (the original's ``vision_layers``).
        width: stem width (``vision_width``); features are ``width · 32`` wide.
        image_resolution, in_chans, embed_dim: input size, bands and output size.
        heads: attention-pool heads; the original uses ``width · 32 // 64``.
    """

    def __init__(
        self,
        layers,
        *,
        width: int = 64,
        image_resolution: int = 224,
        in_chans: int = 3,
        embed_dim: int = 256,
        heads: int | None = None,
        config: dict | None = None,
    ):
        super().__init__()
        layers = tuple(int(n) for n in layers)
        if len(layers) != 4:
            raise ValueError(f"layers must give the blocks of 4 stages, e.g. (3, 4, 6, 3), got {layers}")
        if image_resolution % 32:
            raise ValueError(f"image_resolution must be a multiple of 32, got {image_resolution}")
        heads = heads or width * 32 // 64
        self.config = dict(config or {})
        self.image_size = (image_resolution, image_resolution)
        self.conv1 = nn.Conv2d(in_chans, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for index, blocks in enumerate(layers):
            planes, stride = width * 2**index, (1 if index == 0 else 2)
            stage = [AntiAliasedBottleneck(inplanes, planes, stride)]
            inplanes = planes * AntiAliasedBottleneck.expansion
            stage += [AntiAliasedBottleneck(inplanes, planes) for _ in range(1, blocks)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.attnpool = AttentionPool(image_resolution // 32, width * 32, heads, embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        # the original SatCLIP's initialisation: scaled normal attention-pool projections, zero-init
        # last norm of every residual branch
        std = self.attnpool.c_proj.in_features**-0.5
        for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(proj.weight, std=std)
        for module in self.modules():
            if isinstance(module, AntiAliasedBottleneck):
                nn.init.zeros_(module.bn3.weight)

    @property
    def head(self) -> nn.Linear:
        return self.attnpool.c_proj

    def encode_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, R, R)`` → ``(B, width · 32)`` attention-pooled features (before ``c_proj``)."""
        self.check_input(images)
        x = images.to(self.conv1.weight.dtype)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(F.relu(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool.pool(x)


@IMAGE_ENCODERS.register("clip_resnet")
def clip_resnet(
    layers=(3, 4, 6, 3),
    width: int = 64,
    image_resolution: int = 224,
    in_chans: int = 13,
    embed_dim: int = 256,
) -> ModifiedResNet:
    """CLIP modified ResNet trained from scratch (original ``vision_layers`` = a tuple)."""
    config = {
        "name": "clip_resnet", "layers": [int(n) for n in layers], "width": int(width),
        "image_resolution": int(image_resolution), "in_chans": int(in_chans), "embed_dim": int(embed_dim),
    }  # fmt: skip
    return ModifiedResNet(
        layers,
        width=width,
        image_resolution=image_resolution,
        in_chans=in_chans,
        embed_dim=embed_dim,
        config=config,
    )
