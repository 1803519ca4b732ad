"""``satclip.load``: a ready-to-use location encoder from any model source."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from . import pretrained
from .io import hub, native, original
from .location_encoder import LocationEncoder

log = logging.getLogger(__name__)


@dataclass
class ResolvedSource:
    """Where a model comes from: a native directory or an original checkpoint file."""

    kind: str  # "native" | "original"
    path: Path


def resolve(source: str | Path) -> ResolvedSource:
    """Turn a path, a model name or a hub id into a local file or directory (downloading if needed)."""
    path = Path(source).expanduser()
    if native.is_native(path):
        return ResolvedSource("native", path)
    if path.is_file():
        return ResolvedSource("original", path)
    text = str(source)
    bundled = pretrained.bundled_models()
    if text in bundled:
        return ResolvedSource("native", bundled[text])
    if text in pretrained.RELEASED:
        model = pretrained.RELEASED[text]
        return ResolvedSource("original", hub.fetch(model.repo_id, model.filename))
    if text.count("/") == 1 and not path.exists() and not text.startswith((".", "/", "~")):
        model = pretrained.released_for_hub_id(text)
        if model is not None:
            return ResolvedSource("original", hub.fetch(model.repo_id, model.filename))
        files = hub.list_files(text)
        if native.CONFIG_FILE in files and native.WEIGHTS_FILE in files:
            config = hub.fetch(text, native.CONFIG_FILE)
            hub.fetch(text, native.WEIGHTS_FILE)
            return ResolvedSource("native", config.parent)
        ckpts = [f for f in files if f.endswith(".ckpt")]
        if len(ckpts) == 1:
            return ResolvedSource("original", hub.fetch(text, ckpts[0]))
        raise FileNotFoundError(
            f"hub repository {text} holds neither a native model nor exactly one .ckpt (found {ckpts})"
        )
    if path.exists():
        raise FileNotFoundError(
            f"{path} is a directory but not a satclip model (no config.json + model.safetensors)"
        )
    raise FileNotFoundError(
        f"no model {text!r}: not a file, a model directory, a known name ({', '.join(pretrained.names())}) "
        "or a Hugging Face id like 'microsoft/SatCLIP-ViT16-L40'"
    )


def _location_parts(resolved: ResolvedSource, trust_checkpoint: bool) -> tuple[dict, dict, dict]:
    """(LocationEncoder config, its state dict, provenance) of a resolved source."""
    if resolved.kind == "native":
        config, tensors = native.read_native(resolved.path)
        prefix = "location."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        return config["location_encoder"], state, {"source": str(resolved.path), "format": "native"}
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
            (``microsoft/SatCLIP-ViT16-L40``). Names and ids are downloaded with ``huggingface_hub``.
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
            raise ValueError(
                f"harmonics_calculation applies to spherical-harmonics models; {source} uses "
                f"{config['encoding']['name']!r}"
            )
        config = {
            **config,
            "encoding": {**config["encoding"], "harmonics_calculation": harmonics_calculation},
        }
    encoder = LocationEncoder.from_config(config)
    encoder.load_state_dict(state)
    encoder.provenance = provenance
    return encoder.to(device=device, dtype=dtype).eval()
