"""ResNet-18/50 laid out like timm's ``resnet18``/``resnet50``, so timm state dicts (the released SatCLIP
checkpoints' ``model.visual.*`` and the SSL4EO-S12 MoCo backbones) load unchanged.

Architecture (He et al. 2016, "v1.5": the stride of a bottleneck sits on its 3×3 convolution): a 7×7/2
stem convolution, batch norm, ReLU and a 3×3/2 max pool; four stages of residual blocks (64, 128, 256,
512 planes; strides 1, 2, 2, 2; shortcut = 1×1 strided convolution + batch norm where the shape
changes); global average pooling; the linear head ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import ImageEncoder
from .registry import IMAGE_ENCODERS
from .weights import load_backbone_weights


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (the first strided) with an identity or projection shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + shortcut)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand (×4), with an identity or projection shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = _bn(width)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(out + shortcut)


class ResNet(ImageEncoder):
    """A timm-compatible ResNet with ``fc`` as its head (``head`` is an alias of ``fc``).

    Args:
        block: :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50/101/152).
        layers: number of blocks in each of the four stages, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        in_chans: input bands (13 for the Sentinel-2 MoCo backbones).
        embed_dim: output size of ``fc``.
        config: recorded as ``self.config`` (see :class:`~satclip.image.base.ImageEncoder`).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        in_chans: int,
        embed_dim: int,
        config: dict,
    ):
        super().__init__()
        self.config = dict(config)
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = _bn(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if index == 0 else 2
            stage, inplanes = self._make_stage(block, inplanes, planes, blocks, stride)
            self.add_module(f"layer{index + 1}", stage)
        self.fc = nn.Linear(inplanes, embed_dim)
        self._init_weights()

    @staticmethod
    def _make_stage(block, inplanes: int, planes: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
        out = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), _bn(out))
        modules = [block(inplanes, planes, stride, downsample)]
        modules += [block(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules), out

    def _init_weights(self) -> None:
        # He init for convolutions and zero-initialised last norm of each residual branch (as timm)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, (BasicBlock, Bottleneck)):
                nn.init.zeros_(module.last_bn.weight)

    #: its 32× downsampling leaves one position of a 32 px image (1×1 px gave an embedding of padding)
    min_size = 32

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def encode_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W)`` → ``(B, 512 · expansion)`` globally average-pooled features."""
        self.check_input(images)
        x = self.maxpool(self.act1(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


def _moco_resnet(arch: str, block, layers, embed_dim: int, in_chans: int, weights, frozen: bool) -> ResNet:
    config = {
        "name": f"moco_{arch}",
        "embed_dim": int(embed_dim),
        "in_chans": int(in_chans),
        "frozen": bool(frozen),
    }
    model = ResNet(block, layers, in_chans=in_chans, embed_dim=embed_dim, config=config)
    if weights is not None:
        load_backbone_weights(model, arch, weights)
    if frozen:
        model.freeze_backbone()
    return model


@IMAGE_ENCODERS.register("moco_resnet18")
def moco_resnet18(embed_dim: int = 256, in_chans: int = 13, weights=None, frozen: bool = True) -> ResNet:
    """ResNet-18 (timm ``resnet18``) of the released SatCLIP-ResNet18 models.

    ``weights``: ``None`` (random init, e.g. to load a checkpoint into), ``"sentinel2_all_moco"`` (the
    SSL4EO-S12 MoCo backbone of the original, see :mod:`satclip.image.weights`) or a local file with a
    timm ``resnet18`` state dict. ``frozen``: freeze all but ``fc``, as the original.
    """
    return _moco_resnet("resnet18", BasicBlock, (2, 2, 2, 2), embed_dim, in_chans, weights, frozen)


@IMAGE_ENCODERS.register("moco_resnet50")
def moco_resnet50(embed_dim: int = 256, in_chans: int = 13, weights=None, frozen: bool = True) -> ResNet:
    """ResNet-50 (timm ``resnet50``) of the released SatCLIP-ResNet50 models; arguments as
    :func:`moco_resnet18`."""
    return _moco_resnet("resnet50", Bottleneck, (3, 4, 6, 3), embed_dim, in_chans, weights, frozen)
