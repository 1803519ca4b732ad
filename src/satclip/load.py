"""``satclip.load``: a ready-to-use location encoder from any model source."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from . import pretrained
from .errors import BadInputError
from .io import hub, native, original
from .location_encoder import LocationEncoder, check_config

log = logging.getLogger(__name__)

#: prefix of an explicit Hugging Face hub source: ``hf://owner/name``
HUB_SCHEME = "hf://"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
#: endings of model files: a source ending so names a local file, never a hub repository
_FILE_SUFFIXES = (".ckpt", ".safetensors", ".json", ".pt", ".pth")


@dataclass
class ResolvedSource:
    """Where a model comes from: a native directory or an original checkpoint file."""

    kind: str  # "native" | "original"
    path: Path


def _looks_like_path(text: str) -> bool:
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (
        any(sep in text for sep in separators)
        or text.startswith((".", "~"))
        or text.lower().endswith(_FILE_SUFFIXES)
    )


def _local(path: Path) -> ResolvedSource:
    if native.is_native(path):
        return ResolvedSource("native", path)
    if path.is_dir():
        raise FileNotFoundError(
            f"{path} is a directory but not a satclip model (no {native.CONFIG_FILE} + {native.WEIGHTS_FILE})"
        )
    if path.name in (native.CONFIG_FILE, native.WEIGHTS_FILE) and native.is_native(path.parent):
        return ResolvedSource("native", path.parent)
    return ResolvedSource("original", path)


def _hub_repository(repo_id: str) -> ResolvedSource:
    if not _HUB_ID.match(repo_id):
        raise BadInputError(f"{HUB_SCHEME}{repo_id} is not a Hugging Face repository id (expected hf://owner/name)")
    model = pretrained.released_for_hub_id(repo_id)
    if model is not None:
        return ResolvedSource("original", hub.fetch(model.repo_id, model.filename))
    files = hub.list_files(repo_id)
    if native.CONFIG_FILE in files and native.WEIGHTS_FILE in files:
        config = hub.fetch(repo_id, native.CONFIG_FILE)
        hub.fetch(repo_id, native.WEIGHTS_FILE)
        return ResolvedSource("native", config.parent)
    ckpts = [f for f in files if f.endswith(".ckpt")]
    if len(ckpts) == 1:
        return ResolvedSource("original", hub.fetch(repo_id, ckpts[0]))
    raise FileNotFoundError(
        f"hub repository {repo_id} holds neither a native model nor exactly one .ckpt (found {ckpts})"
    )


def resolve(source: str | Path) -> ResolvedSource:
    """Turn a path, a model name, a released hub id or ``hf://owner/name`` into a local file or directory
    (downloading if needed). Only names and ids are looked up on the hub; a path that does not exist is
    an error naming it, never a hub request.

    Raises:
        FileNotFoundError: no such file or directory, or an unknown name (the message lists the known ones).
    """
    text = os.fspath(source)
    if text.startswith(HUB_SCHEME):
        return _hub_repository(text[len(HUB_SCHEME) :])
    path = Path(text).expanduser()
    if path.exists():
        return _local(path)
    if not isinstance(source, os.PathLike):
        bundled = pretrained.bundled_models()
        if text in bundled:
            return ResolvedSource("native", bundled[text])
        if text in pretrained.RELEASED:
            model = pretrained.RELEASED[text]
            return ResolvedSource("original", hub.fetch(model.repo_id, model.filename))
        model = pretrained.released_for_hub_id(text)
        if model is not None:
            return ResolvedSource("original", hub.fetch(model.repo_id, model.filename))
    if isinstance(source, os.PathLike) or _looks_like_path(text):
        hint = f"; for a Hugging Face repository write {HUB_SCHEME}{text}" if _HUB_ID.match(text) else ""
        raise FileNotFoundError(f"no such model file or directory: {path} (absolute: {path.absolute()}){hint}")
    raise FileNotFoundError(
        f"no model {text!r}: not a file, a model directory or a known name ({', '.join(pretrained.names())}); "
        f"a Hugging Face repository is written {HUB_SCHEME}owner/name"
    )


def _location_parts(resolved: ResolvedSource, trust_checkpoint: bool) -> tuple[dict, dict, dict]:
    """(LocationEncoder config, its state dict, provenance) of a resolved source; the config is checked
    against the weights' shapes (see :func:`~satclip.location_encoder.check_config`)."""
    if resolved.kind == "native":
        config = native.read_config(resolved.path)["location_encoder"]
        prefix = "location."
        shapes = {k[len(prefix) :]: v for k, v in native.read_shapes(resolved.path).items() if k.startswith(prefix)}
        check_config(config, shapes, str(resolved.path))  # before any tensor is read or module built
        tensors = native.read_tensors(resolved.path, [prefix + k for k in shapes])
        state = {k[len(prefix) :]: v for k, v in tensors.items()}
        return config, state, {"source": str(resolved.path), "format": "native"}
    ckpt = original.read_original(resolved.path, trust_checkpoint=trust_checkpoint)
    provenance = {"source": str(resolved.path), "format": "original", "hyper_parameters": ckpt.hparams}
    return ckpt.location_config(), ckpt.location_state_dict(), provenance


def load(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    harmonics_calculation: str | None = None,
    trust_checkpoint: bool = False,
) -> LocationEncoder:
    """Load a location encoder in eval mode.

    Args:
        source: an original SatCLIP ``.ckpt`` file; a native model directory (``config.json`` +
            ``model.safetensors``); a known name (``satclip-resnet18-l10`` … ``satclip-vit16-l40``, or a
            model shipped with satclip such as ``bluemarble-l10``); or a Hugging Face id
            (``microsoft/SatCLIP-ViT16-L40``) of a released model; or ``hf://owner/name`` for any other
            Hugging Face repository (holding ``config.json`` + ``model.safetensors`` or one ``.ckpt``).
            Names, ids and ``hf://`` sources are downloaded with ``huggingface_hub``; anything that looks
            like a path (has a ``/``, starts with ``.`` or ``~``, ends in ``.ckpt`` …) is only looked for on
            disk, and a missing one is a FileNotFoundError naming it, never a hub request.
        device, dtype: where and in which precision the network runs. float32 is the fast path; the
            ``"analytic"`` spherical harmonics of the released models are still evaluated in float64.
        harmonics_calculation: override what the model records, e.g. ``"analytic-stable"`` to use the
            exact, fast basis with a released checkpoint (identical to ≤ 1e-12 at L = 10; at L = 40 it
            moves embeddings near the poles, see docs/conventions.md).
        trust_checkpoint: allow unpickling arbitrary objects from a ``.ckpt`` (runs code: only for files
            you trust). Not needed for the released checkpoints.
    """
    resolved = resolve(source)
    config, state, provenance = _location_parts(resolved, trust_checkpoint)
    if harmonics_calculation is not None:
        if config["encoding"]["name"] != "sphericalharmonics":
            raise BadInputError(
                f"harmonics_calculation applies to spherical-harmonics models; {source} uses "
                f"{config['encoding']['name']!r}"
            )
        config = {
            **config,
            "encoding": {**config["encoding"], "harmonics_calculation": harmonics_calculation},
        }
    encoder = LocationEncoder.from_weights(config, state, provenance["source"])
    encoder.provenance = provenance
    return encoder.to(device=device, dtype=dtype).eval()
