"""ViT-Small/16 laid out like timm's ``vit_small_patch16_224``, so the released SatCLIP-ViT16 checkpoints
and the SSL4EO-S12 MoCo ViT load unchanged.

Architecture (Dosovitskiy et al. 2021): 16×16 patches embedded by a strided convolution, a class token,
learned absolute position embeddings for a fixed 224×224 input (1 + 14² positions), pre-norm transformer
blocks (LayerNorm eps 1e-6, multi-head self-attention with qkv bias, MLP with exact GELU), a final
LayerNorm, and the linear ``head`` on the class token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ImageEncoder
from .registry import IMAGE_ENCODERS
from .weights import load_backbone_weights

LAYER_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    """``(B, C, H, W)`` → ``(B, (H/p)·(W/p), dim)`` by a p×p convolution with stride p."""

    def __init__(self, in_chans: int, dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, tokens, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(ImageEncoder):
    """A timm-compatible ViT with a class token and the linear ``head`` on it.

    Args:
        img_size: the one input size it accepts (position embeddings are not interpolated).
        patch_size, dim, depth, num_heads, mlp_ratio: the transformer.
        in_chans: input bands; embed_dim: output size of ``head``.
        config: recorded as ``self.config``.
    """

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        in_chans: int,
        embed_dim: int,
        config: dict,
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.config = dict(config)
        self.image_size = (img_size, img_size)
        num_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.patch_embed = PatchEmbed(in_chans, dim, patch_size)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(dim, embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def encode_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, 224, 224)`` → ``(B, dim)``: the normalised class token."""
        self.check_input(images)
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return x[:, 0]


@IMAGE_ENCODERS.register("moco_vit16")
def moco_vit16(
    embed_dim: int = 256, in_chans: int = 13, weights=None, frozen: bool = True
) -> VisionTransformer:
    """ViT-Small/16 (timm ``vit_small_patch16_224``: dim 384, depth 12, 6 heads) of the released
    SatCLIP-ViT16 models; 224×224 input only. ``weights``/``frozen`` as
    :func:`~satclip.image.resnet.moco_resnet18`."""
    config = {
        "name": "moco_vit16",
        "embed_dim": int(embed_dim),
        "in_chans": int(in_chans),
        "frozen": bool(frozen),
    }
    model = VisionTransformer(
        img_size=224, patch_size=16, dim=384, depth=12, num_heads=6, mlp_ratio=4.0,
        in_chans=in_chans, embed_dim=embed_dim, config=config,
    )  # fmt: skip
    if weights is not None:
        load_backbone_weights(model, "vit_small_patch16_224", weights)
    if frozen:
        model.freeze_backbone()
    return model
