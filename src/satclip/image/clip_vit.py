"""The CLIP vision transformer the original SatCLIP trains from scratch when ``vision_layers`` is an int
(Radford et al. 2021). State-dict keys match the original's ``visual.*``.

Patches embedded by a bias-free strided convolution, a class embedding, learned positions for a fixed
input size, ``ln_pre``, pre-norm residual blocks (``torch.nn.MultiheadAttention``, MLP with the
sigmoid GELU approximation ``x·σ(1.702x)``), ``ln_post`` on the class token and a bias-free
projection matrix ``proj`` (width × embed_dim) as the head. LayerNorms compute in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ImageEncoder
from .registry import IMAGE_ENCODERS


class Float32LayerNorm(nn.LayerNorm):
    """LayerNorm evaluated in float32 whatever the input dtype (stable in half precision)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = Float32LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = Float32LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class ProjectionHead(nn.Module):
    """``x @ proj`` for a ``(in_features, out_features)`` parameter owned by the encoder.

    A view, not a submodule of the encoder: the parameter stays under its original key ``proj``.
    """

    def __init__(self, proj: nn.Parameter):
        super().__init__()
        self.proj = proj

    @property
    def in_features(self) -> int:
        return self.proj.shape[0]

    @property
    def out_features(self) -> int:
        return self.proj.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.proj


class CLIPVisionTransformer(ImageEncoder):
    """CLIP ViT for ``image_resolution``² inputs; heads = ``width // 64`` as in the original."""

    def __init__(
        self,
        *,
        layers: int,
        width: int = 768,
        patch_size: int = 32,
        image_resolution: int = 224,
        in_chans: int = 3,
        embed_dim: int = 256,
        config: dict | None = None,
    ):
        super().__init__()
        if image_resolution % patch_size:
            raise ValueError(
                f"image_resolution {image_resolution} is not a multiple of patch_size {patch_size}"
            )
        if width < 64 or width % 64:
            raise ValueError(f"width must be a positive multiple of 64 (heads = width // 64), got {width}")
        self.config = dict(config or {})
        self.image_size = (image_resolution, image_resolution)
        scale = width**-0.5
        self.conv1 = nn.Conv2d(in_chans, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn((image_resolution // patch_size) ** 2 + 1, width)
        )
        self.ln_pre = Float32LayerNorm(width)
        self.transformer = Transformer(width, layers, width // 64)
        self.ln_post = Float32LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    @property
    def head(self) -> ProjectionHead:
        return ProjectionHead(self.proj)

    def encode_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, R, R)`` → ``(B, width)``: ``ln_post`` of the class token."""
        self.check_input(images)
        x = self.conv1(images.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0])


@IMAGE_ENCODERS.register("clip_vit")
def clip_vit(
    layers: int = 12,
    width: int = 768,
    patch_size: int = 32,
    image_resolution: int = 224,
    in_chans: int = 13,
    embed_dim: int = 256,
) -> CLIPVisionTransformer:
    """CLIP ViT trained from scratch (original ``vision_layers`` = an int)."""
    config = {
        "name": "clip_vit", "layers": int(layers), "width": int(width), "patch_size": int(patch_size),
        "image_resolution": int(image_resolution), "in_chans": int(in_chans), "embed_dim": int(embed_dim),
    }  # fmt: skip
    return CLIPVisionTransformer(
        layers=layers, width=width, patch_size=patch_size, image_resolution=image_resolution,
        in_chans=in_chans, embed_dim=embed_dim, config=config,
    )  # fmt: skip
