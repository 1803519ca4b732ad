"""Known models by name: the six released SatCLIP checkpoints (Hugging Face hub) and models shipped
inside this package."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    filename: str

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{self.filename}"


def _released(backbone: str, hub_backbone: str, legendre: int) -> tuple[str, HubModel]:
    name = f"satclip-{backbone}-l{legendre}"
    return name, HubModel(f"microsoft/SatCLIP-{hub_backbone}-L{legendre}", f"{name}.ckpt")


#: the six released checkpoints (Klemmer et al. 2025)
RELEASED: dict[str, HubModel] = dict(
    [
        _released("resnet18", "ResNet18", 10),
        _released("resnet18", "ResNet18", 40),
        _released("resnet50", "ResNet50", 10),
        _released("resnet50", "ResNet50", 40),
        _released("vit16", "ViT16", 10),
        _released("vit16", "ViT16", 40),
    ]
)
_HUB_IDS = {model.repo_id.lower(): model for model in RELEASED.values()}


def released_for_hub_id(repo_id: str) -> HubModel | None:
    return _HUB_IDS.get(repo_id.lower())


def bundled_models() -> dict[str, Path]:
    """Native model directories shipped in ``satclip/pretrained/<name>/``."""
    root = Path(str(resources.files(__package__)))
    return {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").is_file()}


def names() -> list[str]:
    return sorted(RELEASED) + sorted(bundled_models())
