"""Known models by name: the six released SatCLIP checkpoints (Hugging Face hub) and models shipped
inside this package.

A released checkpoint is fetched at a pinned hub revision and checked against its sha256, as the
backbones in :mod:`satclip.image.weights`, wherever an authoritative value is known. Known today: the
revision of ``microsoft/SatCLIP-ViT16-L40`` (the one torchgeo 0.10 pins). Not known here: the other five
revisions and all six sha256 values (the hub's LFS pointers could not be read offline); until they are
filled in, a file is checked against the sha256 the hub publishes for it (when downloaded) or records in its
cache (the blob's name), and every released checkpoint's hyper-parameters against the release's (backbone,
L, network) before it is used under the release's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class HubModel:
    """A released checkpoint: hub repository, file, pinned revision and sha256 (``None`` where unknown), and
    the hyper-parameters that set it apart from the other releases (``(key, value)`` pairs)."""

    repo_id: str
    filename: str
    revision: str | None = None
    sha256: str | None = None
    hyper_parameters: tuple[tuple[str, object], ...] = ()

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision or 'main'}/{self.filename}"

    def differences(self, hyper_parameters: object) -> list[str]:
        """``"key 'found' (the release: 'expected')"`` for each of this release's hyper-parameters that a
        checkpoint's ``hyper_parameters`` give otherwise (or not at all)."""
        found = hyper_parameters if isinstance(hyper_parameters, dict) else {}
        return [f"{key} {found.get(key)!r} (the release: {value!r})" for key, value in self.hyper_parameters
                if found.get(key) != value]  # fmt: skip


#: what all six releases share (their checkpoints' hyper_parameters, Klemmer et al. 2025)
_RELEASE_ARCHITECTURE = (("le_type", "sphericalharmonics"), ("pe_type", "siren"), ("embed_dim", 256),
                         ("capacity", 512), ("num_hidden_layers", 2), ("in_channels", 13))  # fmt: skip


def _released(
    backbone: str, hub_backbone: str, legendre: int, revision: str | None = None, sha256: str | None = None
) -> tuple[str, HubModel]:
    name = f"satclip-{backbone}-l{legendre}"
    hyper_parameters = (("vision_layers", f"moco_{backbone}"), ("legendre_polys", legendre), *_RELEASE_ARCHITECTURE)
    return name, HubModel(
        f"microsoft/SatCLIP-{hub_backbone}-L{legendre}", f"{name}.ckpt", revision, sha256, hyper_parameters
    )


#: the six released checkpoints (Klemmer et al. 2025)
RELEASED: dict[str, HubModel] = dict(
    [
        _released("resnet18", "ResNet18", 10),
        _released("resnet18", "ResNet18", 40),
        _released("resnet50", "ResNet50", 10),
        _released("resnet50", "ResNet50", 40),
        _released("vit16", "ViT16", 10),
        # revision: torchgeo 0.10.1, torchgeo/models/satclip.py (SatCLIP_Weights.SATCLIP_VIT16_L40)
        _released("vit16", "ViT16", 40, revision="0ef2acc0b91d3c8cfdf4a0cc03207095989287ab"),
    ]
)
_HUB_IDS = {model.repo_id.lower(): model for model in RELEASED.values()}


def released_for_hub_id(repo_id: str) -> HubModel | None:
    return _HUB_IDS.get(repo_id.lower())


def bundled_models() -> dict[str, Path]:
    """Native model directories shipped in ``satclip/pretrained/<name>/``."""
    root = Path(str(resources.files(__package__)))
    return {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").is_file()}


def shipped_model_name(source) -> str:
    """The name of the shipped model ``source`` is (its name, or the path of its own directory in the package,
    which was refused as "not the shipped models", and recorded in exports instead of the name); else
    ``source``."""
    path = Path(source)
    if isinstance(source, str) and not path.exists():  # ("BlueMarble-L10" loaded the model, and was recorded so)
        source = known_name(source) or source
    for name, directory in bundled_models().items():
        if str(source) == name or (path.is_dir() and path.resolve() == Path(directory).resolve()):
            return name
    return source


def recorded_name(source) -> str:
    """How a file made from the model ``source`` names it: a shipped or released model by its name, a hub source
    as given, a local file or directory by its own name alone (a file shared does not carry the layout of the
    machine that wrote it, ``/home/<user>/…``)."""
    from ..io.resolve import HUB_SCHEME

    text = str(shipped_model_name(source))
    if text in names() or text.startswith(HUB_SCHEME) or released_for_hub_id(text) is not None:
        return text
    return Path(text).name or text


def known_name(text: str) -> str | None:
    """The known model name ``text`` is, in any case and with spaces around it (``"BlueMarble-L10 "`` is
    ``bluemarble-l10``), or None."""
    return {name.lower(): name for name in names()}.get(text.strip().lower())


def names() -> list[str]:
    """Every known model name: the released checkpoints, then the models shipped with satclip."""
    return sorted(RELEASED) + sorted(bundled_models())


def fetch(model: HubModel) -> Path:
    """The local path of a released checkpoint (downloaded at its pinned revision, sha256 checked: the pinned
    one, else the one the hub publishes or its cache records)."""
    from ..io import hub

    return hub.fetch(model.repo_id, model.filename, revision=model.revision, sha256=model.sha256)
