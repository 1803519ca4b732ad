"""Model sources: a path, a known name, a released model's hub id or ``hf://owner/name`` → a local file or
native directory (downloading if needed)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import pretrained
from ..errors import BadInputError, UnknownNameError
from ..paths import expand_user
from ..registry import did_you_mean
from . import hub, native, peers

log = logging.getLogger(__name__)

#: prefix of an explicit Hugging Face hub source: ``hf://owner/name``
HUB_SCHEME = "hf://"
#: a URL of any scheme but hf:// (which names a hub repository)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: endings of model files: a source ending so names a local file, never a hub repository
_FILE_SUFFIXES = (".ckpt", ".safetensors", ".json", ".pt", ".pth")


class ModelNotFoundError(BadInputError, FileNotFoundError):
    """A model source that is no model: a missing path, a directory that holds none, a hub repository that holds
    none. A satclip error (``except SatclipError``; the CLI exits 2) and a FileNotFoundError as before."""


class UnknownModelError(UnknownNameError, FileNotFoundError):
    """A name that is no known model's (the message lists them): a satclip error (``except SatclipError``, an
    :class:`~satclip.errors.UnknownNameError`; the CLI exits 2) and a FileNotFoundError as before."""


@dataclass
class ResolvedSource:
    """Where a model comes from: a native directory, a directory rshf's SatClip saved, or an original checkpoint
    file (or a torchgeo state dict)."""

    kind: str  # "native" | "rshf" | "original"
    path: Path
    #: the released checkpoint the source names (its file is checked to be that release)
    release: pretrained.HubModel | None = None


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
    if peers.is_rshf_save(path):
        return ResolvedSource("rshf", path)
    if path.is_dir():
        raise ModelNotFoundError(native.not_native(path))
    if path.name in (native.CONFIG_FILE, native.WEIGHTS_FILE) and native.is_native(path.parent):
        return ResolvedSource("native", path.parent)
    return ResolvedSource("original", path)


def _hub_repository(repo_id: str) -> ResolvedSource:
    if not hub.REPO_ID.match(repo_id):
        raise BadInputError(f"{HUB_SCHEME}{repo_id} is not a Hugging Face repository id (expected hf://owner/name)")
    model = pretrained.released_for_hub_id(repo_id)
    if model is not None:
        return ResolvedSource("original", pretrained.fetch(model), model)
    files = hub.list_files(repo_id)
    if native.CONFIG_FILE in files and native.WEIGHTS_FILE in files:
        config = hub.fetch(repo_id, native.CONFIG_FILE)
        # the weights of the same commit, not of a push in between (the config's snapshot names its commit)
        hub.fetch(repo_id, native.WEIGHTS_FILE, revision=hub.snapshot_commit(config))
        return ResolvedSource("native", config.parent)
    ckpts = [f for f in files if f.endswith(".ckpt")]
    if len(ckpts) == 1:
        return ResolvedSource("original", hub.fetch(repo_id, ckpts[0]))
    raise ModelNotFoundError(
        f"hub repository {repo_id} holds neither a native model nor exactly one .ckpt (found {ckpts})"
    )


def _known_name_hint(path: Path) -> str:
    """What a missing file's message adds where its name without a model file's ending is a known model's
    (``satclip-resnet18-l10.ckpt`` was "no such model file" alone, though the name loads that release)."""
    name = path.stem if path.suffix.lower() in _FILE_SUFFIXES else path.name
    if name not in pretrained.names():
        return ""
    return f"; {name} is the name of a known model: give {name!r} (no path or ending) to load it by name"


def not_a_source(source, also: str = "", hint: str = "") -> BadInputError:
    """The error for a model ``source`` that is no string or path: what a model is (``also``: what else the caller
    takes, e.g. ``"a LocationEncoder"``), and ``hint`` (or, for a dict, how to load a state dict)."""
    kind = type(source).__name__
    message = f"a model is {also + ', ' if also else ''}a name, a .ckpt file, a model directory or hf://owner/name, " \
        f"not a {kind}"
    if isinstance(source, dict):
        hint = hint or ("a state dict: build the encoder with satclip.LocationEncoder.from_config(config) and load it "
                        "with load_state_dict")  # fmt: skip
    return BadInputError(message + (f" ({hint})" if hint else ""))


def resolve(source: str | Path) -> ResolvedSource:
    """Turn a path, a model name, a released hub id or ``hf://owner/name`` into a local file or directory
    (downloading if needed). Only names and ids are looked up on the hub; a path that does not exist is
    an error naming it, never a hub request.

    Raises:
        ModelNotFoundError: no such file or directory, or none that holds a model (a FileNotFoundError too).
        UnknownModelError: an unknown name, the message lists the known ones (a FileNotFoundError too).
        BadInputError: ``source`` is not a string or path (e.g. a state dict or a tensor).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise not_a_source(source)
    text = os.fspath(source)
    if not text.strip():  # (Path("") is the current directory: an unset variable would load whatever is there)
        raise BadInputError(
            f"the model is {text!r}, empty: give a name ({', '.join(pretrained.names())}), a .ckpt file, a model "
            "directory or hf://owner/name"
        )
    if text.startswith(HUB_SCHEME):
        return _hub_repository(text[len(HUB_SCHEME) :])
    if _URL.match(text) and not isinstance(source, os.PathLike):  # (read as the path "https:/host/…")
        raise BadInputError(
            f"{text} is a URL: satclip loads no model from a URL; download the file and pass its path, or write a "
            f"Hugging Face repository as {HUB_SCHEME}owner/name"
        )
    path = expand_user(text)
    if path.exists():
        hides = not isinstance(source, os.PathLike) and text in pretrained.names()
        try:
            resolved = _local(path)
        except ModelNotFoundError as err:  # (a folder of that name hides the model: say so)
            if not hides:
                raise
            raise ModelNotFoundError(
                f"{err}; it hides the model {text!r}: rename that folder, or run from another directory"
            ) from None
        if hides:  # (an L = 40 file named satclip-resnet18-l10 was loaded as that model without a word)
            log.warning("loading %s, the %s in the current directory, not the model named %r: pass ./%s to say you "
                        "mean it, or rename it or run from another directory to load that model",
                        path.absolute(), "directory" if path.is_dir() else "file", text, text)  # fmt: skip
        return resolved
    if not isinstance(source, os.PathLike):
        # a known name in another case or with surrounding spaces ("BlueMarble-L10", "bluemarble-l10 ") is that name
        name = pretrained.known_name(text) or text
        bundled = pretrained.bundled_models()
        if name in bundled:
            return ResolvedSource("native", bundled[name])
        model = pretrained.RELEASED.get(name) or pretrained.released_for_hub_id(text)
        if model is not None:
            return ResolvedSource("original", pretrained.fetch(model), model)
    if isinstance(source, os.PathLike) or _looks_like_path(text):
        hint = f"; for a Hugging Face repository write {HUB_SCHEME}{text}" if hub.REPO_ID.match(text) else ""
        raise ModelNotFoundError(
            f"no such model file or directory: {path} (absolute: {path.absolute()}){hint}{_known_name_hint(path)}"
        )
    base, plus, mode = text.partition("+")
    if plus and mode.startswith("range"):  # (its did-you-mean named the plain model: half the embedding, unsaid)
        raise BadInputError(
            f"{text!r} is a retrieval encoder spec, which satclip evaluate, embed and map take; a model here is a "
            f"file, a directory or a name: from Python, satclip.load({base!r}, retrieval='auto' or DATABASE, "
            f"mode={mode.partition('(')[0]!r}) embeds with retrieval"
        )
    suggestion = did_you_mean(text, pretrained.names())
    raise UnknownModelError(
        f"no model {text!r}{f' ({suggestion})' if suggestion else ''}: not a file, a model directory or a known "
        f"name ({', '.join(pretrained.names())}); a Hugging Face repository is written {HUB_SCHEME}owner/name"
    )


def local_model_files(source: str | Path) -> list[Path]:
    """The files a local model ``source`` is read from (the path, and a native directory's config and
    weights): the inputs an output must not replace. Empty for a name, a hub id, a missing path and an empty
    ``source`` (no path: ``Path("")`` is the current directory)."""
    if not os.fspath(source).strip():
        return []
    path = expand_user(os.fspath(source))
    if not path.exists():
        return []
    return [path, path / native.CONFIG_FILE, path / native.WEIGHTS_FILE] if path.is_dir() else [path]


def encoder_files(encoder) -> list[Path]:
    """The local files a loaded ``encoder`` was read from (:func:`local_model_files` of its provenance's
    source): what the library's writers refuse to replace, as the CLI does with ``--model``."""
    source = (getattr(encoder, "provenance", None) or {}).get("source")
    return local_model_files(source) if source else []
