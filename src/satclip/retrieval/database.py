"""Retrieval databases: (location, location embedding, image embedding) triplets of a model over a feature cache.

A database is built from a feature cache (:mod:`satclip.train.cache`: backbone features of a corpus) and a
trained model whose image encoder has the cache's backbone: each cached image's evaluation view (view 0)
goes through the model's image head (``visual.head``), each image's location through the model's location
encoder. Both are computed in float64 on one thread (the same bytes whatever the machine's thread count)
and stored (location embeddings in float32, image embeddings in ``dtype``). Layout of a database directory::

    manifest.json   format, key (model identity, cache identity, view, dtype), shape, rounding, built_from (the
                    model's source and model_sha256, as other outputs record it, the cache and where it lies
                    relative to the database: a database moved with its cache finds it), entries_sha256
                    (:meth:`RetrievalDatabase.sha256` of the entries, checked when opened)
    lonlat.npy      (N, 2) float64 (lon, lat) degrees of each image
    location.npy    (N, D) float32 location embeddings (unnormalised)
    image.npy       (N, E) float16|float32 image embeddings (unnormalised)

The manifest's ``key`` names what the contents depend on: the model's identity (configs and sha256 of the
location encoder's and the image head's weights, as :func:`satclip.load_model` reads them) and the cache's
(:func:`cache_identity`: the sha256 of what decides its features — its key: backbone, transform, dataset, views,
dtype, seed — its shape and the sha256 of its features and of its points; not its bookkeeping). A database whose
model or cache changed is refused (:class:`StaleDatabaseError`, naming what changed and the command that rebuilds
it); one whose manifest lost its key is refused as damaged. Nothing is unpickled; a database holds imagery
embeddings only, never labels.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import safe_output
from ..errors import BadInputError, OutputExistsError
from ..machine import cpu_threads
from ..models.location_encoder import model_record
from ..paths import expand_user
from ..train.cache import jsonable

log = logging.getLogger(__name__)

FORMAT = "satclip.retrieval-db"
FORMAT_VERSION = 1
MANIFEST, LONLAT, LOCATION, IMAGE = "manifest.json", "lonlat.npy", "location.npy", "image.npy"
DTYPES = ("float16", "float32")
#: storage of the image embeddings. float16 halves them; measured on the bluemarble-l10 database (docs/retrieval.md)
#: it moves retrieved embeddings by at most 2.4e-4 relative (cosine to float32 storage ≥ 1 − 3e-8): nothing a
#: probe can see. Location embeddings stay float32: in float16 they reorder near-tied semantic neighbours, which
#: moved a few retrieved embeddings by up to 11 % (median 6e-5).
DEFAULT_DTYPE = "float16"
LOCATION_DTYPE = "float32"
#: the evaluation view of a feature cache (views 1 … V−1 are training augmentations)
VIEW = 0
FLOAT16_MAX = 65504.0


class StaleDatabaseError(BadInputError):
    """A database built from another model or another feature cache than the one it is used with."""


class DamagedDatabaseError(BadInputError):
    """A database whose files were damaged (or edited) since it was built: ``problem`` says what, without the fix,
    for a build that rebuilds it to say so (it repeated "rebuild it with `satclip retrieval build`" of itself)."""

    def __init__(self, path: str | Path, problem: str, fix: str | None = None):
        fix = fix or f"rebuild it with `satclip retrieval build --model M --cache C -o {path}`"
        super().__init__(f"retrieval database {path}: {problem}; {fix}")
        self.path, self.problem = path, problem

    def rebuilding(self) -> str:
        """What a build that rebuilds the database says of it."""
        return f"retrieval database {self.path}: {self.problem}; rebuilding it"


# --- identities -----------------------------------------------------------------------------------


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(jsonable(value), sort_keys=True).encode()).hexdigest()


def model_key(model) -> dict:
    """What a database depends on in a :class:`~satclip.SatCLIP` model: the location encoder's config and
    weights (sha256 over names, dtypes, shapes and bytes) and the image encoder's config and head weights."""
    from ..train.cache import head_prefix, state_sha256

    visual = model.visual
    head = {k: v for k, v in visual.head.state_dict().items()}
    image_config = {k: v for k, v in dict(getattr(visual, "config", {})).items() if k != "weights"}
    return jsonable({
        "location_encoder": dict(model.location.config),
        "location_sha256": state_sha256(model.location.state_dict()),
        "image_encoder": image_config,
        "head": head_prefix(visual),
        "head_sha256": state_sha256(head),
    })  # fmt: skip


#: the entries of a feature cache's manifest that decide its features (its key: backbone, transform, dataset, views,
#: dtype, seed; its shape; the sha256 of its files): the rest is bookkeeping (the build record, the images listed),
#: which a rebuild of the same features may change
CACHE_CONTENT = ("key", "shape", "features_sha256", "lonlat_sha256")


def cache_identity(cache) -> dict:
    """A feature cache's identity: ``content_sha256`` over :data:`CACHE_CONTENT`, with the parts a changed cache is
    told by (the sha256 of its features and points, its size, backbone and dataset), so rebuilding the same features
    keeps a database valid and any change of content does not."""
    manifest = cache.manifest
    return {"content_sha256": _sha256_json({k: manifest.get(k) for k in CACHE_CONTENT}),
            "features_sha256": manifest.get("features_sha256"), "lonlat_sha256": manifest.get("lonlat_sha256"),
            "size": len(cache), "backbone_sha256": cache.key["backbone_sha256"],
            "dataset": cache.key["dataset"]}  # fmt: skip


def _legacy_cache_identity(cache) -> dict:
    """The identity a satclip before 2026-12-07 recorded of a cache: the sha256 of its whole manifest but the build
    record (its bookkeeping included)."""
    manifest = {k: v for k, v in cache.manifest.items() if k != "build"}
    return {"sha256": _sha256_json(manifest), "size": len(cache), "backbone_sha256": cache.key["backbone_sha256"],
            "dataset": cache.key["dataset"]}  # fmt: skip


def cache_differences(recorded: dict, cache) -> list[str]:
    """What differs between the cache identity a database ``recorded`` and ``cache`` (none: the database is of it):
    compared with :func:`cache_identity`, or, for a database of an older satclip (which recorded the sha256 of the
    whole manifest), with that identity."""
    if "sha256" in recorded and "content_sha256" not in recorded:
        return _differences(recorded, _legacy_cache_identity(cache))
    return _differences(recorded, cache_identity(cache))


#: how a stale database's message names a difference of its cache's identity
_CACHE_CHANGES = {
    "features_sha256": "its features", "lonlat_sha256": "its points", "size": "its number of images",
    "backbone_sha256": "its backbone", "dataset": "its dataset",
    "content_sha256": "its settings (views, dtype, transform, seed or shape)",
    "sha256": "its manifest (the database, of an older satclip, records no more of it than its sha256)",
}  # fmt: skip


def _cache_changes(differ: list[str], recorded: dict, cache) -> str:
    """``differ`` (names of :func:`cache_differences`) in words: the size with both values, and the settings only
    where nothing more telling differs."""
    telling = [name for name in differ if name != "content_sha256"] or differ
    said = []
    for name in telling:
        words = _CACHE_CHANGES.get(name, name)
        if name == "size":
            words += f" ({recorded.get('size')}, now {len(cache)})"
        said.append(words)
    return ", ".join(said)


def _differences(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if jsonable(old.get(k)) != jsonable(new.get(k)))


# --- the database ---------------------------------------------------------------------------------


@dataclass
class RetrievalDatabase:
    """Triplets ``lonlat`` ``(N, 2)`` float64 degrees, ``location`` ``(N, D)`` and ``image`` ``(N, E)``
    embeddings (float16 or float32 numpy arrays, as stored), with the manifest that describes them."""

    lonlat: np.ndarray
    location: np.ndarray
    image: np.ndarray
    manifest: dict = field(default_factory=dict)
    path: Path | None = None
    #: True where :func:`build_database` found it up to date and kept its entries as they were
    kept: bool = field(default=False, init=False, compare=False)
    _sha256: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from ..encoding.points import describe_invalid, invalid_rows

        self.lonlat = np.ascontiguousarray(self.lonlat, dtype=np.float64)
        n = len(self.lonlat)
        if self.lonlat.shape != (n, 2) or self.location.ndim != 2 or self.image.ndim != 2:
            raise BadInputError(
                f"a retrieval database needs lonlat (N, 2), location (N, D) and image (N, E) arrays, got "
                f"{self.lonlat.shape}, {self.location.shape}, {self.image.shape}"
            )
        if len(self.location) != n or len(self.image) != n:
            raise BadInputError(
                f"retrieval database arrays differ in length: {n}, {len(self.location)}, {len(self.image)}"
            )
        if n == 0:
            raise BadInputError("a retrieval database needs at least one entry")
        bad = invalid_rows(self.lonlat)
        if bad.any():
            raise BadInputError(f"retrieval database{' ' + str(self.path) if self.path else ''}: "
                                f"{describe_invalid(self.lonlat, bad)}")

    @classmethod
    def from_arrays(cls, lonlat, location, image, manifest: dict | None = None) -> RetrievalDatabase:
        """A database in memory (no model or cache behind it: nothing to check for staleness); its embeddings must
        be finite floating-point numbers (a NaN would come back as NaN embeddings of every point retrieving it)."""
        location, image = np.asarray(location), np.asarray(image)
        for name, values in (("location", location), ("image", image)):
            if values.dtype.kind != "f" or not np.isfinite(values).all():
                found = "NaN or infinite values" if values.dtype.kind == "f" else f"{values.dtype} values"
                raise BadInputError(f"retrieval database {name} embeddings must be finite floating-point numbers, "
                                    f"got {found}")  # fmt: skip
        return cls(np.asarray(lonlat), location, image, dict(manifest or {}))

    def __len__(self) -> int:
        return len(self.lonlat)

    @property
    def location_dim(self) -> int:
        return int(self.location.shape[1])

    @property
    def image_dim(self) -> int:
        return int(self.image.shape[1])

    @property
    def key(self) -> dict:
        return self.manifest.get("key", {})

    def sha256(self) -> str:
        """A sha256 of the entries (their locations and embeddings: dtypes, shapes and bytes), computed once:
        what a retrieval-augmented encoder's embeddings depend on, subsets and in-memory databases included."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            for array in (self.lonlat, self.location, self.image):
                digest.update(f"{array.dtype.str}{array.shape}".encode())
                digest.update(np.ascontiguousarray(array).data)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def subset(self, keep: np.ndarray) -> RetrievalDatabase:
        """The entries where boolean ``keep`` is True (e.g. all but one continent)."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (len(self),):
            raise ValueError(f"keep must be a boolean mask of {len(self)} entries, got shape {keep.shape}")
        manifest = {**self.manifest, "subset": int(keep.sum())}
        return RetrievalDatabase(self.lonlat[keep], self.location[keep], self.image[keep], manifest, self.path)

    @classmethod
    def open(cls, path: str | Path) -> RetrievalDatabase:
        """Read a database directory (arrays into memory; ``~`` expanded, as a model source's is). Staleness is
        checked by :func:`check_fresh`."""
        path = expand_user(path)
        manifest = read_manifest(path)
        fix = f"rebuild it: {rebuild_command(manifest, path)}"  # (the manifest says what from)
        arrays = {}
        for name in (LONLAT, LOCATION, IMAGE):
            file = path / name
            if not file.is_file():
                raise DamagedDatabaseError(path, f"{name} is missing", fix)
            try:
                arrays[name] = safe_output.load_array(file)
            except (OSError, ValueError, EOFError) as err:
                raise DamagedDatabaseError(path, f"{name} is damaged ({err})", fix) from err
        n, d, e = manifest["shape"]
        for name, shape in ((LONLAT, (n, 2)), (LOCATION, (n, d)), (IMAGE, (n, e))):
            if arrays[name].shape != shape:
                raise DamagedDatabaseError(path, f"{name} has shape {arrays[name].shape}, the manifest's {shape}", fix)
            if arrays[name].dtype.kind != "f" or not np.isfinite(arrays[name]).all():  # (a build never writes them)
                raise DamagedDatabaseError(path, f"{name} holds {arrays[name].dtype} values that are not all finite "
                                                 "numbers; it is damaged", fix)  # fmt: skip
        dtypes = manifest.get("key", {}).get("dtype", {})
        for name, kind in ((LOCATION, "location"), (IMAGE, "image")):
            if dtypes.get(kind) not in (None, arrays[name].dtype.name):
                raise DamagedDatabaseError(path, f"{name} holds {arrays[name].dtype} values, not the {dtypes[kind]} "
                                                 "of its manifest; it is damaged", fix)  # fmt: skip
        database = cls(arrays[LONLAT], arrays[LOCATION], arrays[IMAGE], manifest, path)
        recorded = manifest.get("entries_sha256")  # (databases of a satclip before 2026-12-04 record none)
        if recorded is not None and database.sha256() != recorded:
            raise DamagedDatabaseError(path, f"its entries ({LONLAT}, {LOCATION}, {IMAGE}) are damaged: their sha256 "
                                             f"differs from the one recorded in {MANIFEST}", fix)  # fmt: skip
        return database


def _damaged(path: Path) -> BadInputError | None:
    """Why the database at ``path`` cannot be opened (None where it can)."""
    try:
        RetrievalDatabase.open(path)
    except BadInputError as err:
        return err
    return None


def _without_manifest(path: Path) -> bool:
    """Whether ``path`` is what is left of a retrieval database of satclip's that lost its manifest: a satclip output
    directory holding some of a database's arrays and nothing else, where satclip published a database (its marker
    records a manifest.json, or, from an older satclip, records nothing). Files of the user's or of another output
    there are refused by the checks that replace it."""
    if (path / MANIFEST).exists() or safe_output.owned_kind(path) != "output":
        return False
    published = safe_output.recorded_files(path, "published")
    arrays = [name for name in (LONLAT, LOCATION, IMAGE) if (path / name).is_file()]
    return bool(arrays) and (published is None or MANIFEST in published) and not safe_output.other_contents(
        path, (LONLAT, LOCATION, IMAGE))


def _rebuilding(path: Path, why: BadInputError | str) -> None:
    """Say that a build rebuilds its own database at ``path``, which ``why`` refused (an error, not to rebuild it,
    as loading it says; or what is wrong with it), once no file of the user's there refuses the rebuild (it said
    "rebuilding it", then refused it for that file)."""
    refuse_other_outputs(path)
    if isinstance(why, str):
        log.warning("retrieval database %s: %s; rebuilding it", path, why)
    else:
        log.warning("%s", why.rebuilding() if isinstance(why, DamagedDatabaseError) else f"{why}; rebuilding it")


def _another_database(path: Path, existing: dict, key: dict, model_source: str | None) -> OutputExistsError:
    """The refusal of the database ``existing`` (its manifest) at ``path``, which another ``key`` would replace; each
    difference named with its values where the manifest records them (it said "of another dtype", not which)."""
    old, built_from = existing.get("key", {}), existing.get("built_from", {})
    was_model = built_from.get("model") if built_from.get("model") != _source_name(None) else None
    now_model = _source_name(model_source) if model_source is not None else None
    said = []
    for name in _differences(old, key):
        if name == "dtype" and old.get("dtype", {}).get("image"):
            said.append(f"dtype (image embeddings in {old['dtype']['image']}, not {key['dtype']['image']})")
        elif name == "model" and was_model:
            said.append(f"model (built from {was_model}"
                        + (")" if now_model is None else f", not {now_model})" if now_model != was_model else
                           " as it was then: its weights or config have changed)"))  # fmt: skip
        elif name == "cache" and built_from.get("cache"):
            said.append(f"cache (built from {built_from['cache']})")
        else:
            said.append(name)
    return OutputExistsError(f"{path} holds a retrieval database of another {', '.join(said)}; pass --overwrite "
                             "(overwrite=True in Python) to replace it")  # fmt: skip


def check_replaceable(path: str | Path, model, *, overwrite: bool, model_source: str | None = None) -> None:
    """Refuse, before any work (a feature cache built for it), an output ``path`` that
    :func:`build_database` would refuse: something other than a retrieval database, or (without ``overwrite``)
    a database of another model (``model_source`` names ``model`` in the message)."""
    path = Path(path)
    if not path.is_dir():
        return
    refuse_other_outputs(path, rebuilding=False)
    if overwrite:
        return
    try:
        existing = read_manifest(path)
    except BadInputError:
        return  # (a broken one: build_database rebuilds it if it is satclip's, else refuses it)
    if _differences(existing.get("key", {}).get("model", {}), model_key(model)) and _damaged(path) is None:
        raise _another_database(path, {**existing, "key": {"model": existing.get("key", {}).get("model")}},
                                {"model": model_key(model)}, model_source)  # fmt: skip


def check_output_path(path: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse, before the model is loaded, an output ``path`` that no database is written to whatever the model: a
    file, a directory of the user's or another output of satclip's, an input. A retrieval database there is left to
    :func:`build_database`: an up-to-date one is kept as it is (a file of the user's in it, or read-only)."""
    path = Path(path)
    safe_output.check_not_input(path, inputs)
    safe_output.check_not_in_output(path)
    if safe_output.recorded_format(path / MANIFEST) != FORMAT:
        safe_output.check_output(path, overwrite=True, directory=True, inputs=inputs, writes=FORMAT)


def refuse_other_outputs(path: Path, fix: str = "choose another output directory", *, rebuilding: bool = True) -> None:
    """Raise :class:`OutputExistsError`, its message ending in ``fix``, if the existing directory ``path`` holds
    something other than a retrieval database (a corpus, a feature cache, a model, a training run, a user's
    files): those were taken for a broken database of satclip's and replaced, also without --overwrite. A
    database with files of the user's beside its own is refused only when ``rebuilding`` it (it is not known yet
    whether it is up to date, and so kept as it is, where ``rebuilding=False``)."""
    found = safe_output.recorded_format(path / MANIFEST)
    if found not in (None, FORMAT):
        raise OutputExistsError(f"{path} holds {safe_output.format_noun(found)}, not a retrieval database; satclip "
                                f"does not replace it with one, even with --overwrite: {fix}")  # fmt: skip
    own = (MANIFEST, LONLAT, LOCATION, IMAGE)
    if found is None:
        safe_output.refuse_other_contents(path, "a retrieval database", own=own, fix=fix)
        return
    other = safe_output.other_contents(path, own)
    if other and rebuilding:  # (it said "holds notes.txt, not a retrieval database")
        raise OutputExistsError(f"{path} holds a retrieval database and {safe_output.listed(other)}, which satclip "
                                "did not write; satclip does not rebuild the database with those in it: move them "
                                "out of it and run again")  # fmt: skip


def read_manifest(path: str | Path) -> dict:
    path = expand_user(path)
    file = path / MANIFEST
    if not path.exists() or path.is_file():  # (both were "not a retrieval database (no manifest.json)")
        what = "no such directory" if not path.exists() else "a file, not a directory"
        raise BadInputError(f"retrieval database {path}: {what}; give the directory `satclip retrieval build -o DB` "
                            "wrote, or 'auto' for a shipped model's")  # fmt: skip
    if not file.is_file():
        raise BadInputError(
            f"{path} is not a retrieval database (no {MANIFEST}); build one with "
            "`satclip retrieval build --model M --cache C -o DB`"
        )
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedDatabaseError(path, f"{MANIFEST} is damaged (not JSON: {err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BadInputError(f"{file} is not a satclip retrieval database (format={found!r})")
    problem = _manifest_problem(manifest)
    if problem:
        built = manifest.get("built_from")
        fix = f"rebuild it: {rebuild_command({'built_from': built}, path)}" if isinstance(built, dict) and all(
            isinstance(v, str) for v in built.values()) else None  # fmt: skip
        raise DamagedDatabaseError(path, f"{MANIFEST} is damaged ({problem})", fix)
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BadInputError(
            f"{path} has retrieval database format_version {manifest['format_version']}; upgrade satclip"
        )
    return manifest


def _manifest_problem(manifest: dict) -> str | None:
    """What is wrong with the entries of a database's manifest that satclip reads (an edited or damaged one failed
    with "unexpected error (KeyError)", or was called up to date by a build and failed when loaded), or None."""
    shape, key, built = manifest.get("shape"), manifest.get("key", {}), manifest.get("built_from", {})
    if type(manifest.get("format_version", 0)) is not int:
        return f"format_version {manifest.get('format_version')!r:.40} is not a number"
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(n) is int and n >= 0 for n in shape)):
        return f"shape {shape!r:.40} is not [entries, location size, image size]"
    if "key" not in manifest:  # (it was used with any model, unchecked)
        return "it records no key: which model and feature cache the database holds the embeddings of"
    if not isinstance(key, dict) or not all(isinstance(key.get(k), dict) and key[k] for k in ("model", "cache")) \
            or not isinstance(key.get("dtype", {}), dict):  # fmt: skip
        return f"key {key!r:.40} is not the record of a model and a cache"
    if not isinstance(built, dict) or not all(isinstance(v, str) for v in built.values()):
        return f"built_from {built!r:.40} does not name a model and a cache"
    if not isinstance(manifest.get("entries_sha256", ""), str):
        return f"entries_sha256 {manifest.get('entries_sha256')!r:.40} is not a sha256"
    return None


def _build_command(model: object, cache: object, path: str | Path | None) -> str:
    return f"satclip retrieval build --model {model} --cache {cache} -o {path or 'DB'} --overwrite"


def rebuild_command(manifest: dict, path: str | Path | None) -> str:
    """The command that builds the database at ``path`` again, from the model and cache it was built from (``--cache
    auto`` for a shipped model's ``retrieval="auto"`` cache), in the dtype it was built in; where the cache it was
    built from is gone, the command names CACHE and says so."""
    model = manifest.get("built_from", {}).get("model", "MODEL")
    dtype = manifest.get("key", {}).get("dtype", {}).get("image", DEFAULT_DTYPE)
    keep = f" --dtype {dtype}" if dtype in DTYPES and dtype != DEFAULT_DTYPE else ""  # (else rebuilt in float16)
    cache = recorded_cache(manifest, path)
    if cache is not None and _auto_cache(model, cache):
        return _build_command(model, "auto", path) + keep
    if cache is not None and (Path(cache) / MANIFEST).is_file():
        return _build_command(model, cache, path) + keep
    gone = f"the feature cache it was built from, {cache}, is gone: " if cache else ""
    return (f"{_build_command(model, 'CACHE', path)}{keep} ({gone}CACHE being a feature cache of the model's image "
            "encoder, `satclip cache build`)")  # fmt: skip


def _auto_cache(model: str, cache: str) -> bool:
    """Whether ``cache`` is the ``retrieval="auto"`` feature cache of the shipped model ``model`` (in this
    ``$SATCLIP_CACHE`` or another: `--cache auto` builds it where it belongs)."""
    from .auto import AUTO_FEATURES, shipped_models

    return model in shipped_models() and Path(cache).parts[-3:] == ("retrieval", model, AUTO_FEATURES)


def recorded_cache(manifest: dict, path: str | Path | None) -> str | None:
    """The feature cache the database at ``path`` was built from: the one where the cache lay relative to the
    database, if a feature cache is there (a database moved with its cache, as a moved or copied ``SATCLIP_CACHE``
    moves the ``retrieval="auto"`` ones: the recorded path is then the old one), else the recorded path."""
    built = manifest.get("built_from", {})
    if path is not None and built.get("cache_relative"):
        moved = Path(os.path.abspath(Path(path) / built["cache_relative"]))
        if (moved / MANIFEST).is_file():
            return str(moved)
    return built.get("cache")


def _build_for(source: str | Path | None, path: str | Path | None) -> str:
    """How to build a database of the model ``source`` (None: not known) at ``path`` or elsewhere; its
    ``--cache`` is ``auto`` for a shipped model, else a feature cache of the model's image encoder."""
    from .auto import auto_directory, shipped_models

    shipped = shipped_models()
    if path is not None and any(Path(path).resolve() == (auto_directory(name) / "database").resolve()
                                for name in shipped):  # fmt: skip
        # (another shipped model's retrieval="auto" database: building over it replaced that model's)
        if source is not None and str(source) in shipped:
            return f"retrieval='auto' (`{source}+range+` for --model) builds and keeps that of {source}"
        path = None
    keep = "(or -o another directory, to keep this one)" if path is not None else "(DB: a directory of your choice)"
    if source is not None and str(source) in shipped:
        return f"{_build_command(source, 'auto', path)} {keep}"
    return (f"{_build_command(source or 'MODEL', 'CACHE', path)} {keep}, CACHE being a feature cache of its image "
            "encoder (`satclip cache build`)")  # fmt: skip


def check_fresh(
    database: RetrievalDatabase, *, model=None, identity: dict | None = None, cache=None,
    source: str | Path | None = None,
) -> None:  # fmt: skip
    """Refuse a database built from another model or cache.

    ``model`` (a :class:`~satclip.SatCLIP`) or its ``identity`` (:func:`model_key`) is compared with the
    manifest's model key; ``source``, the name or path that model was loaded from, goes into the command
    that builds a database for it. ``cache``: a :class:`~satclip.train.cache.FeatureCache`, or ``None`` to
    check the cache the database was built from where it still exists (a database outlives a deleted cache).

    Raises:
        StaleDatabaseError: one line naming what changed and the command that builds the right database.
    """
    key = database.key
    where = database.path or "the retrieval database"
    fix = rebuild_command(database.manifest, database.path)
    if model is not None or identity is not None:
        identity = identity if identity is not None else model_key(model)
        differ = _differences(key.get("model", {}), identity)
        built = database.manifest.get("built_from", {}).get("model", "a model")
        if differ and source is not None and _source_name(source) == built:  # ("another model" of the same path)
            raise StaleDatabaseError(
                f"retrieval database {where} was built from {built}, whose model has changed since "
                f"({', '.join(differ)} differ): rebuild it from the model there now: {fix}"
            )
        if differ:
            raise StaleDatabaseError(
                f"retrieval database {where} was built from another model ({', '.join(differ)} differ): it "
                f"holds the embeddings of {built}. Build one for {source or 'the model you use'}: "
                f"{_build_for(source, database.path)}"
            )
    if cache is None:
        recorded = recorded_cache(database.manifest, database.path)
        if recorded and (Path(recorded) / "manifest.json").is_file():
            from ..train.cache import FeatureCache

            try:
                cache = FeatureCache.open(recorded)
            except BadInputError as err:  # damaged: as a cache that is gone (the database's own files are checked)
                log.warning("retrieval database %s: its feature cache %s cannot be read (%s); using the database as "
                            "built, unchecked against it", where, recorded, err)  # fmt: skip
            except (OSError, RuntimeError, ValueError) as err:  # an incomplete rebuild in progress, say
                raise StaleDatabaseError(f"retrieval database {where}: its feature cache {recorded} cannot be "
                                         f"opened ({err}); finish the cache, then {fix}") from err  # fmt: skip
        elif recorded:
            log.debug("feature cache %s of %s is gone; using the database as built", recorded, where)
    if cache is not None:
        differ = cache_differences(key.get("cache", {}), cache)
        changes = _cache_changes(differ, key.get("cache", {}), cache)
        if differ and _same_cache(database.manifest, database.path, cache):  # (it said "another feature cache")
            raise StaleDatabaseError(
                f"retrieval database {where} was built from the feature cache {cache.path}, which has changed since "
                f"({changes} differ): rebuild it from the cache as it is now: {fix}"
            )
        if differ:
            raise StaleDatabaseError(
                f"retrieval database {where} was built from another feature cache than {cache.path} "
                f"({changes} differ); rebuild it: {fix}"
            )


def _same_cache(manifest: dict, path: str | Path | None, cache) -> bool:
    """Whether ``cache`` lies where the database at ``path`` (of ``manifest``) was built from (a cache rebuilt in
    place since is the same cache, changed)."""
    recorded = recorded_cache(manifest, path)
    return recorded is not None and safe_output.same_path(recorded, cache.path)


# --- building -------------------------------------------------------------------------------------


def _rounding(exact: np.ndarray, stored: np.ndarray) -> dict:
    """How much storing moved the values: max |error| relative to the largest value, RMS relative error."""
    diff = stored.astype(np.float64) - exact
    scale = float(np.abs(exact).max()) or 1.0
    rms = float(np.sqrt((diff**2).sum() / max((exact**2).sum(), 1e-300)))
    return {"max_abs_over_max": float(np.abs(diff).max()) / scale, "rms_relative": rms}


def _source_name(source: str | os.PathLike | None) -> str:
    """How the rebuild command names the model ``source``: a local path made absolute (the command is shown where
    the database is used, from any directory), a model's name or hub id as it is."""
    if source is None:
        return "MODEL"
    return os.path.abspath(source) if os.path.exists(source) else str(source)


def embed_cache(model, cache, *, batch_size: int = 16384) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lonlat, location, image)`` float64 arrays of every cached image (view 0) under ``model``.

    Raises:
        BadInputError: the cache is damaged (points off the globe, non-finite features: named in the cache's
            own files, not blamed on the database), or of another backbone.
    """
    from ..train.cache import backbone_state, state_sha256

    cache.check_files()
    visual = model.visual
    if state_sha256(backbone_state(visual)) != cache.key["backbone_sha256"]:
        raise BadInputError(
            f"feature cache {cache.path} holds features of another backbone than the model's "
            f"{visual.config.get('name')} image encoder: build the cache with the model's image encoder "
            "(the cache a model was trained from, or `satclip cache build` with its config)"
        )
    if cache.feature_dim != visual.feature_dim:
        raise BadInputError(f"feature cache {cache.path} has {cache.feature_dim} features per image, the model's "
                            f"image head takes {visual.feature_dim}")  # fmt: skip
    head = copy.deepcopy(visual.head).to(torch.float64)  # the caller's model stays as it is
    location = copy.deepcopy(model.location).to(torch.float64)
    lonlat = np.asarray(cache.lonlat, dtype=np.float64)
    locs, images = [], []
    with cpu_threads(1), torch.no_grad(), torch.autocast("cpu", enabled=False):
        for start in range(0, len(cache), batch_size):
            stop = min(len(cache), start + batch_size)
            feats = torch.from_numpy(np.asarray(cache.features[start:stop, VIEW], dtype=np.float64))
            images.append(head(feats).numpy())
            locs.append(location(torch.from_numpy(lonlat[start:stop])).numpy())
    return lonlat, np.concatenate(locs), np.concatenate(images)


def _built_from(path: Path, model, model_source: str | None, cache) -> dict:
    """The manifest's record of what a database at ``path`` is built from (beside the key, which stays as it was:
    the sha256 embed, map and export outputs record of the model, and where the cache is)."""
    record = {"model": _source_name(model_source), "model_sha256": model_record(model.location)["sha256"],
              "cache": str(Path(cache.path).resolve())}  # fmt: skip
    with contextlib.suppress(ValueError):  # (none on another drive)
        record["cache_relative"] = os.path.relpath(record["cache"], Path(path).resolve())
    return record


def _manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def _up_to_date(existing: dict, key: dict, cache) -> bool:
    """Whether a database whose manifest records ``existing`` as its key is the one ``key`` (of ``cache``) builds:
    the same key, or one of an older satclip that identified the same cache otherwise."""
    if existing == key:
        return True
    rest = {k: v for k, v in existing.items() if k != "cache"}
    return (isinstance(existing.get("cache"), dict) and rest == {k: v for k, v in key.items() if k != "cache"}
            and not cache_differences(existing["cache"], cache))  # fmt: skip


def _kept(path: Path, database: RetrievalDatabase, key: dict, built_from: dict) -> RetrievalDatabase:
    """``database``, up to date at ``path`` (its lock held), kept; its manifest's ``key`` and ``built_from`` brought
    up to date where they differ (one of an older satclip recorded no model_sha256, or its cache's identity the older
    way; one moved with its cache named the old cache), atomically, or left as they were where the directory cannot
    be written or is not satclip's (a user's copy without its marker: kept as it is, as the build says)."""
    database.kept = True
    if database.manifest.get("built_from") == built_from and database.key == key or not safe_output.is_owned(path):
        return database
    manifest = {**database.manifest, "key": key, "built_from": built_from}
    try:
        safe_output.write_bytes(path / MANIFEST, _manifest_bytes(manifest))
    except OSError as err:
        log.debug("retrieval database %s: its record of what it was built from is left as it was (%s)", path, err)
        return database
    database.manifest = manifest
    return database


def build_database(
    path: str | Path,
    model,
    cache,
    *,
    dtype: str = DEFAULT_DTYPE,
    overwrite: bool = False,
    model_source: str | None = None,
    batch_size: int = 16384,
) -> RetrievalDatabase:
    """Build the retrieval database of ``model`` (a :class:`~satclip.SatCLIP` with the cache's backbone, or a
    source :func:`satclip.load_model` takes)
    over ``cache`` (a :class:`~satclip.train.cache.FeatureCache` or its path) at ``path``, image embeddings
    stored in ``dtype`` (see :data:`DEFAULT_DTYPE`).

    An existing, up-to-date database of the same dtype is reused as it is; any other existing ``path`` is
    replaced only with ``overwrite=True`` and only if satclip made it. ``model_source`` (the name or path the
    model was loaded from) is recorded for the rebuild command in error messages.

    Raises:
        BadInputError: the cache is of another backbone, an embedding overflows float16, ``path`` exists.
    """
    from ..train.cache import FeatureCache

    if dtype not in DTYPES:
        raise BadInputError(f"retrieval database dtype {dtype!r} is not one of {list(DTYPES)}")
    if not isinstance(cache, FeatureCache):
        cache = FeatureCache.open(cache)
    if isinstance(model, (str, os.PathLike)):
        from ..io.load import load_model

        model_source, model = model_source or str(model), load_model(model, needed_for="build_database")
    if not hasattr(model, "visual"):
        raise BadInputError(
            f"build_database needs a whole SatCLIP model (image and location encoders), got a "
            f"{type(model).__name__}: pass satclip.load_model(source) or the source itself"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BadInputError(f"batch_size={batch_size!r} must be an integer, 1 or more")
    path = Path(path)
    from ..io.resolve import encoder_files

    inputs = [cache.path, *encoder_files(model)]  # (never replaced by the database: the model dir included)
    safe_output.check_not_input(path, inputs)
    safe_output.check_not_in_output(path)
    model = model.cpu().eval()
    dtypes = {"location": LOCATION_DTYPE, "image": dtype}
    key = jsonable({"model": model_key(model), "cache": cache_identity(cache), "view": VIEW, "dtype": dtypes})
    built_from = _built_from(path, model, model_source, cache)
    with contextlib.suppress(BadInputError):  # up to date: read without the lock (read-only caches, readers at once)
        if _up_to_date(read_manifest(path)["key"], key, cache):
            database = RetrievalDatabase.open(path)
            writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)  # (its lock lies beside it)
            if database.manifest.get("built_from") == built_from and database.key == key or not writable \
                    or not safe_output.is_owned(path) or path.is_symlink():  # (its record is not written through it)
                log.debug("retrieval database %s is up to date", path)
                database.kept = True
                return database
    safe_output.check_not_link(path)  # a rebuild would write through it (it was told to pass --overwrite, then this)
    with safe_output.exclusive(path, wait=True):  # a concurrent build of the same database is waited out
        refuse_other_outputs(path, rebuilding=False)
        if (path / MANIFEST).is_file():
            try:
                existing = read_manifest(path)
            except BadInputError as err:
                existing = None
                if safe_output.is_owned(path):  # our own database, broken: rebuilding it loses nothing
                    _rebuilding(path, err)
                    overwrite = True
            if existing is not None and _up_to_date(existing["key"], key, cache):
                try:
                    database = RetrievalDatabase.open(path)
                except BadInputError as err:
                    if not safe_output.is_owned(path):
                        raise
                    _rebuilding(path, err)
                    existing, overwrite = None, True
                else:
                    log.debug("retrieval database %s is up to date", path)
                    return _kept(path, database, key, built_from)
            # its own database, damaged so that its manifest names another key than its arrays hold (another
            # dtype): loading it said to rebuild it, and building asked for --overwrite
            problem = _damaged(path) if existing is not None and not overwrite and safe_output.is_owned(path) else None
            if problem is not None:
                _rebuilding(path, problem)
                overwrite = True
            stale = cache_differences(existing["key"]["cache"], cache) if existing else []
            if (stale and not overwrite and _differences(existing["key"], key) == ["cache"]
                    and _same_cache(existing, path, cache) and safe_output.is_owned(path)):  # fmt: skip
                # its own database of this model, from this cache changed since: it asked for --overwrite
                changes = _cache_changes(stale, existing["key"]["cache"], cache)
                _rebuilding(path, f"its feature cache {cache.path} has changed since it was built ({changes} differ)")
                overwrite = True
            if existing is not None and not overwrite:
                raise _another_database(path, existing, key, model_source)
        if not overwrite and _without_manifest(path):  # (loading said to build one there: --overwrite was asked)
            _rebuilding(path, f"{MANIFEST} is missing")
            overwrite = True
        refuse_other_outputs(path)
        safe_output.check_output(path, overwrite=overwrite, inputs=inputs, directory=True, writes=FORMAT)
        lonlat, location, image = embed_cache(model, cache, batch_size=batch_size)
        stored = {}
        for name, values in ((LOCATION, location), (IMAGE, image)):
            kind = name[:-4]
            if not np.isfinite(values).all():
                raise BadInputError(f"the model gives non-finite {kind} embeddings for cache {cache.path}")
            if dtypes[kind] == "float16" and np.abs(values).max() > FLOAT16_MAX:
                raise BadInputError(f"{kind} embeddings exceed float16's range (max |x| "
                                    f"{np.abs(values).max():.3g}): build with --dtype float32")  # fmt: skip
            stored[name] = values.astype(dtypes[kind])
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "key": key,
            "shape": [len(lonlat), location.shape[1], image.shape[1]],
            "files": {"lonlat": LONLAT, "location": LOCATION, "image": IMAGE},
            "rounding": {name[:-4]: _rounding(exact, stored[name]) for name, exact in
                         ((LOCATION, location), (IMAGE, image))},
            "built_from": built_from,
            "entries_sha256": RetrievalDatabase(lonlat, stored[LOCATION], stored[IMAGE]).sha256(),
        }  # fmt: skip
        with safe_output.atomic_dir(path, overwrite=overwrite, inputs=inputs, writes=FORMAT) as tmp:
            for name, values in ((LONLAT, lonlat), (LOCATION, stored[LOCATION]), (IMAGE, stored[IMAGE])):
                safe_output.save_array(tmp / name, values)
            safe_output.write_data(tmp / MANIFEST, _manifest_bytes(manifest))
        log.debug("retrieval database %s: %d entries, image embeddings in %s", path, len(lonlat), dtype)
        return RetrievalDatabase.open(path)
