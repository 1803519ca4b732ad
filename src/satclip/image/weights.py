"""Pretrained backbone weights: the SSL4EO-S12 MoCo backbones the original SatCLIP starts from.

The released SatCLIP checkpoints contain their whole backbone, so loading one never needs these. They
are needed to *train* a SatCLIP model the original way (frozen pretrained backbone, trainable head).

Where ``weights="sentinel2_all_moco"`` looks, in order:

1. ``$SATCLIP_CACHE/backbones/<filename>`` (default ``~/.cache/satclip/backbones/``): put a downloaded
   file here to use it offline;
2. torch hub's checkpoint directory (``torch.hub.get_dir()/checkpoints/<filename>``), where torchgeo keeps
   the file once it has downloaded it;
3. the Hugging Face hub, through :func:`satclip.io.hub.fetch` (revision pinned as in torchgeo; its cache
   first; offline or unreachable, one error at once saying what to download from where and where to put it).

Checksums: a download is checked against the full sha256 the hub publishes for the file (its LFS etag), or
in the hub cache against the sha256 its blob is named by. Every file, downloaded or found, is also checked
against the sha256 prefix in its name (8 hex digits, the torch hub convention torchgeo pins): that prefix is
all that is published independently of the hub, so it is all satclip can pin here; a file placed by hand in
(1) or (2) is checked against it alone.
A local file can
also be passed directly: ``weights="/path/to/file.pth"`` (a torch state dict, read as checkpoints are by
:func:`satclip.io.safe_pickle.load_checkpoint`: a pickle that needs anything besides tensors and containers is
refused, never run) or ``.safetensors``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..digests import file_digest
from ..errors import BadInputError, SatclipError, interruptions_kept
from ..paths import cache_dir, expand_user

log = logging.getLogger(__name__)


class BackboneWeightsError(SatclipError, RuntimeError):
    """Pretrained backbone weights could not be found, downloaded or loaded."""


@dataclass(frozen=True)
class BackboneWeights:
    """A pretrained backbone checkpoint and its provenance."""

    arch: str  # timm architecture: resnet18 | resnet50 | vit_small_patch16_224
    name: str  # e.g. "sentinel2_all_moco"
    repo_id: str
    filename: str
    revision: str
    torchgeo_enum: str  # e.g. "ResNet18_Weights.SENTINEL2_ALL_MOCO"
    in_chans: int = 13
    dataset: str = "SSL4EO-S12"
    ssl_method: str = "moco"
    publication: str = "https://arxiv.org/abs/2211.07044"

    @property
    def url(self) -> str:
        return f"https://hf.co/{self.repo_id}/resolve/{self.revision}/{self.filename}"

    @property
    def sha256_prefix(self) -> str | None:
        match = re.search(r"-([0-9a-f]{8,})\.[^.]+$", self.filename)
        return match.group(1) if match else None

    def cache_path(self) -> Path:
        return backbone_cache_dir() / self.filename


def _moco(arch: str, enum: str, revision: str, digest: str) -> BackboneWeights:
    return BackboneWeights(
        arch=arch,
        name="sentinel2_all_moco",
        repo_id=f"torchgeo/{arch}_sentinel2_all_moco",
        filename=f"{arch}_sentinel2_all_moco-{digest}.pth",
        revision=revision,
        torchgeo_enum=f"{enum}.SENTINEL2_ALL_MOCO",
    )


#: (arch, name) → weights; the URLs and revisions torchgeo 0.8 pins
BACKBONE_WEIGHTS: dict[tuple[str, str], BackboneWeights] = {
    (w.arch, w.name): w
    for w in (
        _moco("resnet18", "ResNet18_Weights", "5b8cddc9a14f3844350b7f40b85bcd32aed75918", "59bfdff9"),
        _moco("resnet50", "ResNet50_Weights", "da4f3c9dbe09272eb902f3b37f46635fa4726879", "df8b932e"),
        _moco(
            "vit_small_patch16_224",
            "ViTSmall16_Weights",
            "1cb683f6c14739634cdfaaceb076529adf898c74",
            "67c9032d",
        ),
    )
}


#: names of the head in timm models (resnet: fc, vit: head); never taken from pretrained weights
HEAD_NAMES = ("fc", "head")


def backbone_cache_dir() -> Path:
    return cache_dir("backbones")


def read_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (read by :func:`satclip.io.safe_pickle.load_checkpoint`:
    tensors and plain containers only, nothing unpickled that could run code; a nested ``state_dict`` or
    ``model`` entry is unwrapped).

    Raises:
        BadInputError: no such file, a file that is no readable state dict (the message names it).
        UntrustedCheckpointError: a pickle that needs Python globals besides tensors and containers (refused,
            not run).
    """
    from ..io.safe_pickle import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"backbone weights file not found: {path}; give the path of a .pth or .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            with interruptions_kept():
                return load_file(path)
        except (SafetensorError, ValueError) as err:
            raise BadInputError(
                f"{path} is not a readable safetensors file ({err}); download it again, or give the right file"
            ) from err
    state = load_checkpoint(path, if_trusted=(  # (not --trust-checkpoint: that is for models, not backbones)
        "save its state dict as .safetensors once (torch.load with weights_only=False, then "
        "safetensors.torch.save_file) and give that file"
    ))  # fmt: skip
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(
            f"{path} does not hold a state dict (a mapping of names to tensors): give the backbone's weights file"
        )
    return state


def _check_sha256(path: Path, weights: BackboneWeights) -> None:
    prefix = weights.sha256_prefix
    if prefix is None:
        return
    found = file_digest(path)
    if not found.startswith(prefix):
        raise BackboneWeightsError(
            f"{path} has sha256 {found[:16]}…, expected one starting with {prefix}: the file is "
            f"corrupt or not {weights.filename}; delete it and download {weights.url} again"
        )


def _by_hand(weights: BackboneWeights) -> str:
    """How to get ``weights`` without satclip's download (what :func:`satclip.io.hub.fetch` says offline)."""
    return (
        f"fetch {weights.url} on a machine with internet access and save it as {weights.cache_path()}, or give its "
        f"path as model.image_encoder.weights (weights='/path/to/{weights.filename}'); loading a released SatCLIP "
        "checkpoint does not need this file"
    )


def _local_copies(weights: BackboneWeights) -> list[Path]:
    """Where a copy of ``weights`` may already be: satclip's backbone cache, torch hub's (torchgeo's) one."""
    return [weights.cache_path(), Path(torch.hub.get_dir()) / "checkpoints" / weights.filename]


def _hf_download(weights: BackboneWeights) -> Path:
    """The file from the Hugging Face hub (or its cache), checked against the sha256 the hub publishes."""
    from ..io import hub

    return hub.fetch(weights.repo_id, weights.filename, revision=weights.revision, manual=_by_hand(weights))


def fetch_state_dict(weights: BackboneWeights) -> dict[str, torch.Tensor]:
    """The state dict of ``weights`` from a local copy or the hub (see the module docstring).

    Raises:
        DownloadError: not here and the hub cannot be reached (at once; the message says what to fetch and where
            to put it), or the download does not have the sha256 the hub publishes.
        BackboneWeightsError: a file without the sha256 prefix of its name.
    """
    path = next((p for p in _local_copies(weights) if p.is_file()), None)
    if path is None:
        path = _hf_download(weights)
    _check_sha256(path, weights)
    log.info("backbone weights: %s", path)
    return read_state_file(path)


def resolve_state_dict(arch: str, weights: str | Path) -> dict[str, torch.Tensor]:
    """``weights`` = a known name for ``arch`` (e.g. ``"sentinel2_all_moco"``) or a local file."""
    key = (arch, str(weights))
    if key in BACKBONE_WEIGHTS:
        return fetch_state_dict(BACKBONE_WEIGHTS[key])
    path = expand_user(weights)
    if path.is_file():
        return read_state_file(path)
    known = sorted(name for a, name in BACKBONE_WEIGHTS if a == arch)
    raise BadInputError(
        f"backbone weights {str(weights)!r} for {arch} are neither a file (no such file: {path}) nor a known name "
        f"({', '.join(known)}): give the path of a .pth or .safetensors file, or one of those names"
    )


def load_backbone_weights(model: nn.Module, arch: str, weights: str | Path | dict) -> None:
    """Load pretrained backbone weights into ``model`` (a timm-compatible ``arch``), leaving its head.

    The head (``fc``/``head``) is trained from scratch, so it may be missing from (or differ in shape
    from) ``weights``; every other tensor must be present with its shape.
    """
    state = dict(weights) if isinstance(weights, dict) else resolve_state_dict(arch, weights)
    own = model.state_dict()
    is_head = lambda key: key.split(".")[0] in HEAD_NAMES  # noqa: E731
    state = {k: v for k, v in state.items() if not is_head(k)}
    head_keys = {k for k in own if is_head(k)}
    missing = sorted(set(own) - set(state) - head_keys)
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(state) & set(own) if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
        if wrong:
            details.append(
                "wrong shape "
                + ", ".join(f"{k} {tuple(state[k].shape)} ≠ {tuple(own[k].shape)}" for k in wrong[:5])
            )
        raise BackboneWeightsError(f"backbone weights do not fit {arch}: {'; '.join(details)}")
    model.load_state_dict(state, strict=False)
