"""Feature cache: a frozen backbone's pooled features of V views of every image, computed once.

With a frozen backbone only the image head and the location encoder train, so the backbone's output for
each augmented view can be stored and every training step becomes a memory read plus two small
networks. View 0 of each image is the evaluation view (no augmentation; used for validation); views
1 … V−1 are training views (flips and blur of the training transform), each drawn from a generator
seeded by ``(seed, image, view)`` so a rebuilt cache is identical.

Layout of a cache directory::

    manifest.json       format, "complete", the key below, shape, dtype, head prefix, build info, and the
                        sha256 of features.npy (checked before a cache is reused, trained on or verified)
    features.npy        (N, V, F) float16|float32, read with np.load(mmap_mode="r")
    lonlat.npy          (N, 2) float64 (lon, lat) degrees of each image (not jittered)
    backbone.safetensors  the image encoder's state without its head (to export a full model later)

The manifest's ``key`` — image encoder config, sha256 of the backbone weights, transform config,
dataset fingerprint, size and image files' sizes, V, dtype, seed — decides whether an existing cache can be reused:
:func:`build_cache` reuses a complete cache with the same key, resumes an interrupted build and rebuilds a
stale one. A build works in ``CACHE.partial/cache/`` (chunks are written to ``*.partial.npy`` and recorded in
``progress.npy`` only after they are flushed; finished files are moved into place, ``manifest.json`` says
``complete`` last), which is then published as ``CACHE`` (a rename, preceded by one that moves the cache it replaces
aside): ``CACHE`` is a complete cache or absent, and the one a rebuild replaces stays usable until then.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import safe_output
from ..digests import file_digest
from ..errors import BadInputError, LockedError, OutputExistsError, ResumeError, SatclipError
from .config import MAX_CACHE_BATCH_SIZE, MAX_CACHE_VIEWS
from .loader_workers import start_worker
from .sources import PairSource

log = logging.getLogger(__name__)

FORMAT = "satclip.feature-cache"
FORMAT_VERSION = 1
MANIFEST, FEATURES, LONLAT, BACKBONE, PROGRESS, SKIPPED = (
    "manifest.json", "features.npy", "lonlat.npy", "backbone.safetensors", "progress.npy", "skipped.npy",
)  # fmt: skip
DTYPES = ("float16", "float32")
# what a cache directory holds: its files, and those of a build under way (_partial, _compact)
safe_output.declare_contents(
    "feature-cache", MANIFEST, FEATURES, LONLAT, BACKBONE, PROGRESS, SKIPPED, "*.partial.npy", "*.compact.npy"
)

#: the kind of the work directory of a cache's build, ``CACHE.partial/``: it holds the cache being built
#: (:data:`BUILDING`, a directory of kind ``feature-cache``), published as ``CACHE`` once complete
WORK_KIND = "feature-cache-work"
BUILDING = "cache"
safe_output.declare_contents(WORK_KIND, BUILDING)

Progress = Callable[[int, int], None]  # (images done, images total)


class StaleCacheError(SatclipError, RuntimeError):
    """A cache exists but was made from another backbone, transform or dataset."""


# --- the backbone and its fingerprint -------------------------------------------------------------


def head_prefix(encoder: nn.Module) -> str:
    """State-dict prefix of ``encoder.head`` (``"fc"`` for the resnets, ``"head"`` for others)."""
    head = encoder.head
    for name, module in encoder.named_modules():
        if module is head and name:
            return name
    raise ValueError(f"{type(encoder).__name__}.head is not a submodule of the encoder")


def backbone_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's state dict without its head (what the cached features depend on)."""
    prefix = head_prefix(encoder) + "."
    return {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items() if not k.startswith(prefix)}


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict, in sorted key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def cache_key(encoder: nn.Module, source: PairSource, *, views: int, dtype: str, seed: int) -> dict:
    """What a cache's contents depend on; two caches with equal keys hold the same features."""
    sizes = source.file_sizes_sha256()
    return {
        # the head (and so embed_dim) does not change the features
        "image_encoder": {
            k: v for k, v in getattr(encoder, "config", {"name": type(encoder).__name__}).items() if k != "embed_dim"
        },
        "backbone_sha256": state_sha256(backbone_state(encoder)),
        "transform": dict(source.transform_config),
        "dataset": {"fingerprint": source.fingerprint, "size": len(source),
                    **({} if sizes is None else {FILE_SIZES: sizes})},
        "views": int(views),
        "dtype": dtype,
        "seed": int(seed),
    }


#: the entry of a key's ``dataset`` that holds :meth:`~satclip.train.sources.PairSource.file_sizes_sha256` (a cache
#: whose images' pixels were rewritten was called up to date: the fingerprint holds their names and coordinates)
FILE_SIZES = "file_sizes_sha256"


def comparable(recorded: Any, key: dict) -> tuple[Any, dict]:
    """``(recorded, key)`` as JSON, without the dataset's :data:`FILE_SIZES` unless both hold it: a cache of an older
    satclip (or of features computed elsewhere, or of a dataset that names no files) records none, and stays valid."""
    recorded, key = jsonable(recorded), jsonable(key)
    ours, theirs = (k.get("dataset") if isinstance(k, dict) else None for k in (recorded, key))
    if isinstance(ours, dict) and isinstance(theirs, dict) and (FILE_SIZES in ours) != (FILE_SIZES in theirs):
        recorded = {**recorded, "dataset": {k: v for k, v in ours.items() if k != FILE_SIZES}}
        key = {**key, "dataset": {k: v for k, v in theirs.items() if k != FILE_SIZES}}
    return recorded, key


def key_differences(old: dict, new: dict) -> list[str]:
    """Names of the top-level key entries that differ (for the stale-cache message)."""
    old, new = comparable(old, new)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def skipped_summary(skipped: int, listed: int) -> str:
    """``"N of M images skipped (unusable)"``, for a command's summary ("" where none were): the images whose files
    could not be used (missing, undecodable, georeferenced elsewhere than their index row: "unreadable" named one
    reason for all) are left out, said in warnings as they are found, and counted in the summary."""
    return f"{skipped} of {listed} images skipped (unusable)" if skipped else ""


# --- reading --------------------------------------------------------------------------------------


@dataclass
class FeatureCache:
    """A complete feature cache, opened lazily (picklable: DataLoader workers reopen the memmap)."""

    path: Path
    manifest: dict
    _features: np.ndarray | None = field(default=None, repr=False)
    _lonlat: np.ndarray | None = field(default=None, repr=False)
    _checked: bool = field(default=False, repr=False)  # check_files passed (it reads all features: once)

    @classmethod
    def open(cls, path: str | Path) -> FeatureCache:
        path = Path(path)
        if unfinished(path):
            raise interrupted(path)
        if safe_output.owned_kind(path) == WORK_KIND:  # (it was "not a feature cache (no manifest.json)")
            cache = path.with_name(path.name.removesuffix(".partial"))
            raise BadInputError(f"{path} is where satclip builds the feature cache {cache}, not a cache: give "
                                f"{cache} (`satclip cache build` with its config finishes its build)")  # fmt: skip
        manifest = read_manifest(path)
        if not manifest.get("complete"):
            raise interrupted(path)
        _check_no_foreign_entries(path)
        for name in (FEATURES, LONLAT, BACKBONE):
            if not (path / name).is_file():
                raise FileNotFoundError(f"feature cache {path} lacks {name}: rebuild it with `satclip cache build`")
        return cls(path, manifest)

    def __getstate__(self) -> dict:
        return {"path": self.path, "manifest": self.manifest, "_features": None, "_lonlat": None,
                "_checked": self._checked}  # fmt: skip

    @property
    def key(self) -> dict:
        return self.manifest["key"]

    @property
    def features(self) -> np.ndarray:
        """``(N, V, F)`` read-only memmap."""
        if self._features is None:
            self._features = _load_cache_array(self.path / FEATURES, mmap_mode="r")
        return self._features

    @property
    def lonlat(self) -> np.ndarray:
        """``(N, 2)`` float64 (lon, lat) degrees."""
        if self._lonlat is None:
            self._lonlat = _load_cache_array(self.path / LONLAT)
        return self._lonlat

    def check_files(self) -> None:
        """Raise :class:`~satclip.errors.BadInputError` naming a file of the cache that cannot be read as the
        manifest describes it (cut short, overwritten)."""
        if self._checked:
            return
        for name, array, shape in ((FEATURES, self.features, tuple(self.manifest["shape"])),
                                   (LONLAT, self.lonlat, (len(self), 2))):  # fmt: skip
            if array.shape != shape:
                raise DamagedCacheError(self.path / name, f"shape {array.shape}, the manifest says {shape}")
        # coordinates, dtype and finite values too: a cache with NaN or lon=1e9 points, or features of another
        # dtype, was reused and trained on (NaN val_loss, or "training diverged … lower optim.lr")
        dtype = self.key.get("dtype")
        if str(self.features.dtype) != dtype:
            raise DamagedCacheError(self.path / FEATURES, f"dtype {self.features.dtype}, the manifest says {dtype}")
        if self.lonlat.dtype != np.float64:  # (float32 coordinates are ~1 m off)
            raise DamagedCacheError(self.path / LONLAT, f"dtype {self.lonlat.dtype}, a cache stores float64 (lon, lat)")
        from ..encoding.points import describe_invalid, invalid_rows

        bad = invalid_rows(self.lonlat)
        if bad.any():
            raise DamagedCacheError(self.path / LONLAT, describe_invalid(self.lonlat, bad))
        if not all_finite(self.features):
            shown, count = non_finite_images(self.features)
            raise DamagedCacheError(self.path / FEATURES, f"NaN or infinite features in {count} of {len(self)} images, "
                                                          f"first {', '.join(map(str, shown))}")  # fmt: skip
        # its weights as the key records them: a damaged backbone was reused, trained on and exported
        if state_sha256(self.backbone_state()) != self.key["backbone_sha256"]:
            raise DamagedCacheError(self.path / BACKBONE, "its weights do not match the manifest's backbone_sha256")
        for name, problem in changed_files(self.path, self.manifest).items():
            raise DamagedCacheError(self.path / name, problem)
        self._checked = True

    def __len__(self) -> int:
        return int(self.manifest["shape"][0])

    @property
    def listed(self) -> int:
        """The images its dataset listed: those in it, and those left out, their files unusable (when the dataset
        was opened, or when the build read them); a cache of an older satclip knows the latter only."""
        return int(self.manifest.get("listed", self.key["dataset"]["size"]))

    def skipped_summary(self) -> str:
        """:func:`skipped_summary` of the images left out of it."""
        return skipped_summary(self.listed - len(self), self.listed)

    @property
    def views(self) -> int:
        return int(self.manifest["shape"][1])

    @property
    def feature_dim(self) -> int:
        return int(self.manifest["shape"][2])

    @property
    def image_encoder_config(self) -> dict:
        return dict(self.key["image_encoder"])

    @property
    def head_prefix(self) -> str:
        return self.manifest["head_prefix"]

    def backbone_state(self) -> dict[str, torch.Tensor]:
        with self._backbone_file() as tensors:
            return {name: tensors.get_tensor(name) for name in tensors.keys()}

    def _backbone_file(self):
        """``backbone.safetensors`` opened (memory-mapped), its header checked against the file's size."""
        from safetensors import SafetensorError, safe_open

        try:
            return safe_open(self.path / BACKBONE, framework="pt")
        except (SafetensorError, OSError) as err:  # cut short, overwritten
            raise DamagedCacheError(self.path / BACKBONE, str(err)) from err

    def gather(self, index: np.ndarray, view: np.ndarray) -> torch.Tensor:
        """Features of images ``index`` (int array) in views ``view`` → float32 ``(len(index), F)``."""
        return torch.from_numpy(np.asarray(self.features[index, view], dtype=np.float32))


#: the files whose sha256 the manifest records when the cache is completed (a cache of an older satclip records the
#: features' alone, or none): a changed feature was reused and trained on, and only ``verify --recompute`` of that very
#: image found it; a changed point went unnoticed by ``verify``, ``verify --config`` and ``build`` alike
DIGESTS = {FEATURES: "features_sha256", LONLAT: "lonlat_sha256"}


def changed_files(path: Path, manifest: dict) -> dict[str, str]:
    """``{file name: what is wrong}`` for the files of :data:`DIGESTS` whose bytes are not those the manifest
    records."""
    return {
        name: f"its bytes are not the ones it was built with ({entry} differs): changed since"
        for name, entry in DIGESTS.items()
        if manifest.get(entry) is not None and file_digest(path / name) != manifest[entry]
    }


def _digests(path: Path) -> dict[str, str]:
    """The manifest's records of :data:`DIGESTS` for the files in ``path``."""
    return {entry: file_digest(path / name) for name, entry in DIGESTS.items()}


#: the command that builds a cache, as messages name it where its config is not known
BUILD_COMMAND = "satclip cache build --config CONFIG"
#: the entries of a cache's key that a config option sets
KEY_OPTIONS = {"views": "data.cache_views", "dtype": "data.cache_dtype"}


def rebuild_fix(build_command: str = BUILD_COMMAND) -> str:
    """The fix for a damaged cache, ``build_command`` being the command that builds it."""
    return f"rebuild the cache with `{build_command}` (it rebuilds a damaged cache of its own) or `--rebuild`"


class DamagedCacheError(BadInputError):
    """A cache file that cannot be used; ``problem`` says what without the fix (a build that rebuilds it says so)."""

    def __init__(self, file: Path, what: str):
        self.problem = f"{file} is damaged ({what})"
        super().__init__(f"{self.problem}: {rebuild_fix()}")


class ReplacedCacheError(ResumeError):
    """The backbone of a feature cache is not the one whose features a run trained on: the cache was rebuilt (another
    ``satclip cache build`` replaced it) or changed while the run trained (a runtime failure, exit 1: no input given
    was wrong). ``resume``: the command that writes the run's exports."""

    def __init__(self, path: Path, resume: str = "satclip train --config RUN/config.yaml --resume"):
        self.path = Path(path)
        super().__init__(f"{self.path / BACKBONE} is not the backbone whose features this run trained on (the feature "
                         "cache was replaced or changed while it trained): nothing was exported; the run is kept: "
                         f"`{resume}` writes its exports from the cache it trained on (rebuilt from data.root)")


def _check_no_foreign_entries(path: Path) -> None:
    """Raise :class:`~satclip.errors.BadInputError` where one of a cache's file names in ``path`` is taken by
    something else (a directory): satclip did not make it, so a rebuild may not delete it (it said "rebuilding
    it", then failed with "Is a directory")."""
    names = (MANIFEST, PROGRESS, SKIPPED, FEATURES, LONLAT, BACKBONE)
    for name in (*names, *(f(path, name).name for f in (_partial, _compact) for name in names)):
        entry = path / name
        if entry.exists() and not entry.is_file():
            kind = "a directory" if entry.is_dir() else "not a regular file"
            raise BadInputError(
                f"{entry} is {kind}, not the feature cache's {name}: satclip did not make it and does not delete it; "
                "move it away (or use another data.cache directory) and run again"
            )


def _load_cache_array(file: Path, **kwargs) -> np.ndarray:
    try:
        return safe_output.load_array(file, **kwargs)
    except (ValueError, EOFError, OSError) as err:  # a truncated header or data, or another file in its place
        raise DamagedCacheError(file, str(err) or type(err).__name__) from err


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise FileNotFoundError(
            f"{path} is not a feature cache (no {MANIFEST}); create it with `satclip cache build --config CONFIG`"
        )
    try:
        manifest = json.loads(file.read_text())
    except ValueError as err:
        raise DamagedCacheError(file, f"not JSON: {err}") from err
    if not isinstance(manifest, dict):
        raise DamagedCacheError(file, "not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} holds {safe_output.format_noun(manifest.get('format'))}, not a feature cache: give "
                         "the directory `satclip cache build` wrote (data.cache)")  # fmt: skip
    problem = _manifest_problem(manifest)
    if problem:
        raise DamagedCacheError(file, problem)
    # (a ValueError, no BadInputError: no damage for verify to report or build to rebuild; refused, exit 2)
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has cache format_version {manifest['format_version']}; this satclip reads up "
                               f"to {FORMAT_VERSION}: upgrade satclip")  # fmt: skip
    return manifest


def _manifest_problem(manifest: dict) -> str | None:
    """What is wrong with the entries of a cache's manifest that satclip reads (an edited or damaged one failed
    with "unexpected error (KeyError)", or a ``complete`` of "false" was taken for a complete cache), or None."""

    def count(value) -> bool:
        return type(value) is int and value >= 0

    shape, key = manifest.get("shape"), manifest.get("key")
    if not count(manifest.get("format_version", 0)):
        return f"format_version {manifest.get('format_version')!r:.40} is not a number"
    if not isinstance(manifest.get("complete", False), bool):
        return f"complete {manifest.get('complete')!r:.40} is not true or false"
    if not (isinstance(shape, list) and len(shape) == 3 and all(count(n) for n in shape)):
        return f"shape {shape!r:.40} is not [images, views, features]"
    if not isinstance(key, dict):
        return f"key {key!r:.40} is not the record of what the features depend on"
    dataset = key.get("dataset")
    for name, fine in (
        ("dtype", key.get("dtype") in DTYPES), ("views", count(key.get("views"))),
        ("seed", type(key.get("seed")) is int), ("backbone_sha256", isinstance(key.get("backbone_sha256"), str)),
        ("image_encoder", isinstance(key.get("image_encoder"), dict)),
        ("dataset", isinstance(dataset, dict) and count(dataset.get("size"))),
    ):  # fmt: skip
        if not fine:
            return f"key.{name} {key.get(name)!r:.40} is missing or not what satclip writes"
    for entry in DIGESTS.values():
        if not isinstance(manifest.get(entry, ""), str):
            return f"{entry} {manifest.get(entry)!r:.40} is not a digest"
    skipped = manifest.get("skipped", [])
    if not (isinstance(skipped, list) and all(count(i) and i < dataset["size"] for i in skipped)):
        return f"skipped {skipped!r:.40} is not a list of images of the dataset"
    if not (count(manifest.get("listed", shape[0])) and manifest.get("listed", shape[0]) >= shape[0]):
        return f"listed {manifest.get('listed')!r:.40} is not a number of images of at least shape[0]"
    return None


# --- building -------------------------------------------------------------------------------------


def view_generator(seed: int, index: int, view: int) -> torch.Generator:
    """The generator of one (image, view): independent of order, workers and chunking."""
    digest = hashlib.sha256(f"satclip-cache:{seed}:{index}:{view}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class _ImageViews(torch.utils.data.Dataset):
    """Item j of a chunk → ``(V, C, H, W)`` views of image ``indices[j]``, its point, its index and None; or,
    for an image whose file cannot be read (:class:`~satclip.data.s2100k.UnreadableSampleError`), ``(None,
    None, index, why)``: it is left out of the cache."""

    def __init__(self, source: PairSource, indices: np.ndarray, views: int, seed: int):
        self.source, self.indices, self.views, self.seed = source, indices, views, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        from ..data.s2100k import UnreadableSampleError

        index = int(self.indices[j])
        try:
            image, point = self.source.raw(index)
        except UnreadableSampleError as err:
            return None, None, index, str(err)
        out = [self.source.eval_view(image)]
        out += [self.source.train_view(image, view_generator(self.seed, index, v)) for v in range(1, self.views)]
        return torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in out]), point, index, None


def _collate_views(items: list) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, list]:
    """A batch of :class:`_ImageViews` items → ``(views, points, indices)`` of the readable images (None when
    there are none) and ``[(index, why), …]`` of the unreadable ones."""
    read = [item for item in items if item[0] is not None]
    unreadable = [(item[2], item[3]) for item in items if item[0] is None]
    if not read:
        return None, None, torch.zeros(0, dtype=torch.long), unreadable
    return (torch.stack([item[0] for item in read]), torch.stack([item[1] for item in read]),
            torch.tensor([item[2] for item in read]), unreadable)  # fmt: skip


def _older_cache(path: Path) -> bool:
    """Whether ``path`` is a cache made before ownership markers, or one whose marker said "output"
    (write_cache's before markers named their kind), which a build marks as a feature cache; not a directory of
    the user's holding a copied cache among other files."""
    return (_existing_manifest(path) is not None and safe_output.owned_kind(path) in (None, "output")
            and not safe_output.undeclared(path, "feature-cache"))  # fmt: skip


def check_cache_directory(path: str | Path, *, rebuild: bool = False) -> None:
    """Raise now what :func:`build_cache` would refuse at ``path`` only after the work before it (fitting the
    MOSAIKS filters on the images): a file, a directory of the user's or another satclip output, a cache file name
    taken by a directory, a ``PATH.partial`` of the user's where the build keeps its work, a symbolic link (a cache
    of an older satclip behind one was refused only after the filters were fitted), unless it links to a complete
    cache and not to ``rebuild`` it: one up to date is used as it is, as `cache verify` and `train` read it."""
    path = Path(path)
    if rebuild or _manifest_json(path).get("complete") is not True:
        safe_output.check_not_link(path)
    try:
        work_dir(path)
    except (OutputExistsError, BadInputError):
        if _manifest_json(path).get("complete") is not True:  # (a complete one may be up to date: see build_cache)
            raise
    if path.is_dir():
        _check_no_foreign_entries(path)
        if _older_cache(path):
            return
    safe_output.check_owned_dir(path, kind="feature-cache")


def _up_to_date(path: Path, key: dict) -> tuple[FeatureCache | None, str | None]:
    """``(cache, None)``: the complete, intact cache at ``path`` built for ``key``; ``(None, problem)``: one
    built for ``key`` that cannot be used (what is damaged); ``(None, None)``: none."""
    try:
        manifest = _existing_manifest(path)
        if manifest is None or not manifest.get("complete") or key_differences(manifest.get("key", {}), jsonable(key)):
            return None, None
        cache = FeatureCache.open(path)
        cache.check_files()
    except (BadInputError, FileNotFoundError) as err:  # (the build rebuilds it: "rebuild the cache with …" was said)
        return None, getattr(err, "problem", str(err))
    return cache, None


def build_cache(
    path: str | Path,
    encoder: nn.Module,
    source: PairSource,
    *,
    views: int = 8,
    dtype: str = "float16",
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    chunk_size: int = 1024,
    amp: bool = False,
    rebuild: bool = False,
    progress: Progress | None = None,
    threads: int = 1,
    check_key: Callable[[dict], None] | None = None,
) -> FeatureCache:
    """Compute (or finish, or reuse) the feature cache of ``encoder`` on ``source`` at ``path``.

    Args:
        encoder: an image encoder (``encode_features``, ``head``, ``config``) with a frozen backbone.
        source: the images and their views (:mod:`satclip.train.sources`).
        views: V, views per image (view 0 = evaluation view, 1 … V−1 = training views).
        dtype: storage dtype, ``"float16"`` (half the disk and page cache) or ``"float32"``.
        seed: seeds the training views (with the image and view number).
        batch_size: views per backbone forward pass.
        chunk_size: images per resumable unit (flushed and recorded when done).
        amp: run the backbone under bfloat16 autocast (GPU); features are stored in ``dtype``.
        rebuild: recompute even when a complete cache with the same key exists.
        progress: called with (images done, images total) after each chunk.
        threads: chunks computed at once, each in a thread of its own (on a CPU, with torch's intra-op threads
            set to 1: small MOSAIKS products scale across chunks, measured 1.6× with 2 on 2 cores, where more
            intra-op threads slow down on a busy machine). The cache does not depend on it.
        check_key: called with the cache's key (:func:`cache_key`) before anything is read or written, to
            refuse it (a resume from another cache) without touching a stale cache.

    Returns the opened :class:`FeatureCache`. Raises :class:`ValueError` when features overflow float16.
    """
    path = Path(path)
    if dtype not in DTYPES:
        raise ValueError(f"cache dtype {dtype!r} is not one of {list(DTYPES)}")
    for name, value, high in (("views", views, MAX_CACHE_VIEWS), ("chunk_size", chunk_size, None),
                              ("batch_size", batch_size, MAX_CACHE_BATCH_SIZE)):  # (checked before anything is written)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (high and value > high):
            raise ValueError(f"{name}={value!r} must be an integer from 1" + (f" to {high}" if high else " up"))
    if not isinstance(source, PairSource):
        raise TypeError(f"source must be a PairSource (images with their locations and transforms), got "
                        f"{type(source).__name__}")  # fmt: skip
    if not getattr(encoder, "frozen_backbone", False):
        log.warning("caching features of a backbone that is not frozen: training from this cache keeps it fixed")
    device = torch.device(device)
    key = cache_key(encoder, source, views=views, dtype=dtype, seed=seed)
    root = getattr(source.dataset, "root", None)
    source = source.skipping_unreadable()  # an unreadable image is left out, not stored twice (as the next one)
    if check_key is not None:
        check_key(key)
    n = len(source)
    if n == 0:
        raise ValueError("cannot cache features of an empty dataset")

    def reused(cache: FeatureCache) -> FeatureCache:
        log.info("feature cache %s is up to date", path, extra=safe_output.RESUMED)
        skipped = cache.manifest.get("skipped", [])
        if skipped:  # (files repaired since stay left out: the key knows the images by name and place)
            log.warning(
                "feature cache %s leaves out %d image(s) whose files could not be used when it was built (first: "
                "%s); once they are repaired, `satclip cache build --rebuild` includes them", path, len(skipped),
                ", ".join(source.sample_name(i) for i in skipped[:3]),
            )  # fmt: skip
        if progress:
            progress(n, n)
        return cache

    try:
        work = work_dir(path)
        building = work / BUILDING
        for directory in (path, building):  # (before "cannot be used: rebuilding it": a rebuild may not delete it)
            if directory.is_dir():
                _check_no_foreign_entries(directory)
    except (OutputExistsError, BadInputError) as refused:  # (what a build would need is taken: no build is needed)
        current = None if rebuild else _up_to_date(path, key)[0]
        if current is None:
            raise
        log.warning("%s; the feature cache itself is up to date and used as it is", refused)
        return reused(current)
    if not rebuild and not work.exists():  # up to date: read without the lock (read-only caches, readers at once)
        current, _ = _up_to_date(path, key)
        if current is not None:
            return reused(current)
    safe_output.check_not_link(path)  # (a link to an up-to-date cache is used; nothing is written through one)
    with safe_output.exclusive(path, wait=True):  # one build per cache; a concurrent one is waited out
        if _older_cache(path):
            safe_output.mark_owned(path, kind="feature-cache")
        _adopt_unfinished(path, work)
        manifest = _work_manifest(building)
        differ = None if manifest is None else key_differences(manifest.get("key", {}), jsonable(key))
        stale = not rebuild and (manifest is None or differ)  # (an unfinished build of this key is finished instead)
        # (again: a build just waited out may have made it)
        current, problem = _up_to_date(path, key) if stale else (None, None)
        if current is not None:
            if manifest is None:
                _discard(work)  # what a build stopped after publishing left: nothing to resume
            else:  # (it stays, for that config to finish: it holds the disk space of a cache, silently)
                log.warning("%s holds an unfinished build of other settings (%s differ), kept: `satclip cache "
                            "build` with those settings finishes it, or delete %s", work, ", ".join(differ), work)
            return reused(current)
        # what the new cache replaces at the end is refused now, before a rebuild is announced ("rebuilding it" was
        # said, then it was refused)
        if path.exists() or path.is_symlink():
            safe_output.check_owned_dir(path, kind="feature-cache")
            safe_output.check_output(path, overwrite=True, directory=True, kind="feature-cache")
        if stale:
            old = _existing_manifest(path)
            if problem:
                log.warning("feature cache %s cannot be used (%s): rebuilding it in %s, which replaces it once "
                            "complete", path, problem, work)  # fmt: skip
            elif old is not None:
                differing = _differing_values(*comparable(old.get("key", {}), key))  # (by name: dataset.file_sizes…)
                log.warning("feature cache %s is stale (%s differ): rebuilding it in %s, which replaces it once "
                            "complete", path, ", ".join(name for name, _, _ in differing), work)
        if differ:  # (one of this key is finished, with --rebuild too: it recomputes what it has not done)
            log.warning("%s holds the unfinished build of another cache (%s differ): starting again", work,
                        ", ".join(differ))  # fmt: skip
            manifest = None
        elif manifest is not None and manifest.get("complete"):
            log.info("feature cache %s: publishing what a build stopped after completing it had built", path,
                     extra=safe_output.RESUMED)  # fmt: skip
            return _publish_work(path, work)
        elif manifest is not None and manifest.get("publishing") and _published_or_built(building,
                                                                                             manifest["publishing"]):
            log.info("feature cache %s: finishing what a build stopped while publishing it had built", path,
                     extra=safe_output.RESUMED)  # fmt: skip
            _finish(building, manifest, manifest.get("build", {}))
            return _publish_work(path, work)
        elif manifest is not None and not (_partial(building, FEATURES).is_file()
                                           and _partial(building, LONLAT).is_file()):  # fmt: skip
            manifest = None  # interrupted before its files were created

        encoder = encoder.to(device).eval()
        if manifest is None:
            _discard(work)
            safe_output.make_owned_dir(work, kind=WORK_KIND)
            try:  # (a full disk left a directory that verify called interrupted and training no cache at all)
                safe_output.make_owned_dir(building, kind="feature-cache")
                feature_dim = _probe_feature_dim(encoder, source, device)
                manifest = {
                    "format": FORMAT, "format_version": FORMAT_VERSION, "complete": False, "key": jsonable(key),
                    "shape": [n, views, feature_dim], "head_prefix": head_prefix(encoder),
                    "files": {"features": FEATURES, "lonlat": LONLAT, "backbone": BACKBONE},
                    "build": {} if root is None else {"root": str(Path(root).absolute())},
                    "listed": source.listed(),  # (the images the dataset lists, the unusable ones included)
                }  # fmt: skip
                _save_backbone(building / BACKBONE, encoder)
                np.lib.format.open_memmap(_partial(building, FEATURES), mode="w+", dtype=dtype,
                                          shape=(n, views, feature_dim))  # fmt: skip
                np.lib.format.open_memmap(_partial(building, LONLAT), mode="w+", dtype=np.float64, shape=(n, 2))
                for file in (FEATURES, LONLAT):  # a full disk fails now, not with SIGBUS later
                    safe_output.reserve(_partial(building, file))
                _write_json(building / MANIFEST, manifest)
            except BaseException:
                with contextlib.suppress(OSError):  # (what stopped it is the error to report)
                    _discard(work)
                raise
        else:
            safe_output.make_owned_dir(building, kind="feature-cache")
        chunks = (n + chunk_size - 1) // chunk_size
        done = _read_progress(building, chunks)
        skipped = _read_skipped(building, n) if done.any() else np.zeros(n, dtype=bool)
        reasons: dict[int, str] = {}
        maps = {name: np.load(_partial(building, file), mmap_mode="r+") for name, file in
                (("features", FEATURES), ("lonlat", LONLAT))}  # fmt: skip
        if maps["features"].shape != tuple(manifest["shape"]):
            raise RuntimeError(
                f"{_partial(building, FEATURES)} has shape {maps['features'].shape}, manifest says {manifest['shape']}"
            )
        start = time.perf_counter()
        images_done = int(sum(min(chunk_size, n - c * chunk_size) for c in np.flatnonzero(done)))
        if images_done:
            log.info("resuming feature cache %s from %s: %d of %d images done", path, work, images_done, n,
                     extra=safe_output.RESUMED)  # fmt: skip
            safe_output.keep_work(work)
        loader_batch = max(1, batch_size // views)

        def compute(chunk: int) -> int:
            """Writes the features of one chunk into the memory maps; returns its number of images."""
            indices = np.arange(chunk * chunk_size, min(n, (chunk + 1) * chunk_size))
            loader = torch.utils.data.DataLoader(
                _ImageViews(source, indices, views, seed), batch_size=loader_batch, num_workers=num_workers,
                shuffle=False, pin_memory=device.type == "cuda", collate_fn=_collate_views,
                worker_init_fn=start_worker,
            )  # fmt: skip
            for stacked, points, index, unreadable in loader:
                for row, why in unreadable:
                    skipped[row] = True
                    reasons[row] = why
                if stacked is None:
                    continue
                b = stacked.shape[0]
                flat = stacked.flatten(0, 1).to(device, non_blocking=True)
                with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
                    out = encoder.encode_features(flat)
                out = out.float().cpu().numpy().reshape(b, views, -1)
                with np.errstate(over="ignore"):  # reported below, with what to do
                    stored = out.astype(dtype)
                if not np.isfinite(stored).all():
                    bad = "non-finite backbone features" if not np.isfinite(out).all() else "features overflow float16"
                    raise ValueError(f"{bad} for images {index.tolist()[:5]}…; rebuild with dtype='float32'")
                rows = index.numpy()
                maps["features"][rows] = stored
                maps["lonlat"][rows] = points.numpy()
            return len(indices)

        def finished(chunk: int, images: int) -> None:
            nonlocal images_done
            for array in maps.values():
                array.flush()
            done[chunk] = True
            with safe_output.atomic_file(building / SKIPPED, overwrite=True) as tmp:  # (before the chunk is done)
                safe_output.save_array(tmp, skipped)
            with safe_output.atomic_file(building / PROGRESS, overwrite=True) as tmp:
                safe_output.save_array(tmp, done)
            safe_output.keep_work(work)
            images_done += images
            if progress:
                progress(images_done, n)

        todo = [int(chunk) for chunk in np.flatnonzero(~done)]
        try:
            if progress:
                progress(images_done, n)
            if threads <= 1 or len(todo) <= 1:
                for chunk in todo:
                    finished(chunk, compute(chunk))
            else:
                from concurrent.futures import ThreadPoolExecutor, as_completed

                pool = ThreadPoolExecutor(threads)
                try:
                    running = {pool.submit(compute, chunk): chunk for chunk in todo}
                    for future in as_completed(running):
                        finished(running[future], future.result())
                finally:  # on an error, chunks not yet started are dropped; running ones end before the maps close
                    pool.shutdown(cancel_futures=True)
        except BaseException:
            if not done.any():  # (a Ctrl-C left the backbone and full-size reserved files, with nothing to resume)
                maps.clear()
                with contextlib.suppress(OSError):  # (what stopped it is the error to report)
                    _discard(work)
            raise
        left_out = np.flatnonzero(skipped)
        if len(left_out) == n:  # (nothing of it is worth resuming: a rerun reads them again, repaired or not)
            maps.clear()
            _discard(work)
            raise BadInputError(f"none of the {n} images could be read ({next(iter(reasons.values()), 'unreadable')}); "
                                f"run {source.verify_command()} on the dataset")  # fmt: skip
        files = {FEATURES: _partial(building, FEATURES), LONLAT: _partial(building, LONLAT)}
        if len(left_out):
            files = _without(building, maps, np.flatnonzero(~skipped))
            first = ("; ".join(reasons[i] for i in left_out[:3] if i in reasons)
                     or ", ".join(source.sample_name(int(i)) for i in left_out[:3]))  # fmt: skip
            log.warning(
                "feature cache %s: left out %d of %d images whose files cannot be read (%s); "
                "%s lists them", path, len(left_out), n, first, source.verify_command(),
            )  # fmt: skip
        maps.clear()  # closes the memory maps before their files are renamed
        # recorded first: a build stopped while it publishes is finished by the next (its chunks are all done)
        manifest["publishing"] = {"shape": [n - len(left_out), *manifest["shape"][1:]], "skipped": left_out.tolist(),
                                  "files": {name: file.name for name, file in files.items()}}  # fmt: skip
        _write_json(building / MANIFEST, manifest)
        _finish(building, manifest, {**manifest.get("build", {}), "device": str(device),
                                     "seconds_last_session": round(time.perf_counter() - start, 3)})
        return _publish_work(path, work)


def _finish(building: Path, manifest: dict, build: dict) -> None:
    """Move the built files into place in the cache being built (those not moved yet), and record it complete."""
    publishing = manifest.pop("publishing")
    for name, built in publishing["files"].items():
        if (building / built).is_file():
            safe_output.publish(building / built, building / name, overwrite=True)
    safe_output.remove_owned_files(building, [_partial(building, FEATURES).name, _partial(building, LONLAT).name])
    manifest.update({"complete": True, "shape": publishing["shape"], "skipped": publishing["skipped"],
                     **_digests(building), "build": {**build, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})
    _write_json(building / MANIFEST, manifest)
    safe_output.remove_owned_files(building, [PROGRESS, SKIPPED])  # (the chunks' record: the manifest says complete)


def _publish_work(path: Path, work: Path) -> FeatureCache:
    """Publish the complete cache built in ``work`` as ``path`` (:func:`safe_output.publish`: the cache there, which
    stayed usable until now, is renamed aside, then the new one into place), and remove ``work``."""
    safe_output.publish(work / BUILDING, path, overwrite=True)
    safe_output.work_finished(work)  # (before the removal: a failure there keeps no work, the cache is published)
    _discard(work)
    cache = FeatureCache.open(path)  # (debug: `cache build` prints what it built, and once)
    log.debug("feature cache %s: %s %s features", path, cache.manifest["shape"], cache.key.get("dtype", ""))
    return cache


def work_path(path: str | Path) -> Path:
    """``CACHE.partial``, where a build of the cache ``path`` keeps its unfinished work."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def work_dir(path: Path) -> Path:
    """:func:`work_path` of ``path``, refused where something else has that name (a file or directory of the
    user's, another satclip output), or where it (or the cache being built in it) holds a file satclip did not
    write: the build refused it only after all its work ("refusing to delete", saying the work was kept), or
    published it as part of the cache. An empty directory of the user's there is taken as the work directory."""
    safe_output.check_named(path)
    work = work_path(path)
    safe_output.check_work_dir(work, (WORK_KIND,))
    if safe_output.owned_kind(work) == WORK_KIND:
        building = work / BUILDING
        for directory, foreign in ((work, safe_output.undeclared(work)),
                                   (building, safe_output.undeclared(building, "feature-cache"))):  # fmt: skip
            if foreign:
                raise OutputExistsError(
                    f"{directory}, where satclip builds {path}, holds {safe_output.listed(foreign)}, which satclip "
                    "did not write and does not publish or delete: move it out and run again"
                )
    return work


def _discard(work: Path) -> None:
    """Remove the work directory ``work`` (nothing happens where there is none), the cache being built in it first:
    a file of the user's in that cache is refused as it is in any cache, not deleted with its folder. An empty
    directory of the user's there (:func:`work_dir` takes it) holds nothing to discard: it stays."""
    if not safe_output.is_owned(work):
        return
    safe_output.remove_owned(work / BUILDING)
    safe_output.remove_owned(work)


def _work_manifest(building: Path) -> dict | None:
    """The manifest of the cache being built in ``building``; None where there is none, or a damaged one (that
    build starts again)."""
    return _existing_manifest(building) if building.is_dir() else None


def _unfinished_in_place(path: Path) -> bool:
    """Whether ``path`` holds a build an older satclip stopped (it built a cache under its own name): a cache
    directory whose manifest says it is not complete, or that holds neither a manifest nor features."""
    if safe_output.owned_kind(path) != "feature-cache":
        return False
    if not (path / MANIFEST).is_file():
        return not (path / FEATURES).exists()  # (features without a manifest: a damaged cache, no build)
    manifest = _manifest_json(path)
    return manifest.get("format") == FORMAT and manifest.get("complete") is False


def _adopt_unfinished(path: Path, work: Path) -> None:
    """Move a build an older satclip stopped in ``path`` itself into the work directory ``work``, where it is
    resumed (or started again) like a build of this one."""
    if work.exists() or not _unfinished_in_place(path):
        return
    safe_output.make_owned_dir(work, kind=WORK_KIND)
    safe_output.publish(path, work / BUILDING)
    log.info("feature cache %s: moved the unfinished build in it to %s", path, work)


def _kept_build(path: Path) -> bool:
    """Whether ``PATH.partial/`` holds a cache being built (not only its marker: a build killed after publishing
    the cache, before it removed its work directory, left that)."""
    work = work_path(path)
    return safe_output.owned_kind(work) == WORK_KIND and (work / BUILDING).is_dir()


def unfinished(path: str | Path) -> bool:
    """Whether ``path`` names a cache whose build was interrupted: only its work directory ``PATH.partial/`` is
    there, holding the cache being built, or ``path`` holds a build that an older satclip stopped (it built in
    place)."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return _kept_build(path)
    return _unfinished_in_place(path)


def _manifest_json(directory: Path) -> dict:
    """The manifest in ``directory`` read as JSON and not checked (an unfinished or an older satclip's build); empty
    where there is none, or it is no JSON object."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _kept_manifest(path: Path) -> dict:
    """The manifest (read as JSON) of the build kept in ``PATH.partial/``; empty where there is none."""
    return _manifest_json(work_path(path) / BUILDING)


def other_settings(recorded: Any, expected: dict) -> list[str]:
    """The entries of the cache key ``expected`` (all of a key, or some: some entries of its image encoder) that
    the key ``recorded`` does not hold as they are there."""

    def holds(ours: Any, theirs: Any) -> bool:
        if isinstance(theirs, dict):
            return isinstance(ours, dict) and all(holds(ours.get(k), v) for k, v in theirs.items())
        return jsonable(ours) == jsonable(theirs)

    recorded, expected = comparable(recorded if isinstance(recorded, dict) else {}, expected)
    return sorted(name for name in expected if not holds(recorded.get(name), expected[name]))


class InterruptedCacheError(ResumeError):
    """The build of a feature cache was interrupted; the message names the command that finishes it
    (``build_command``, else the one its work records, else `satclip cache build` with the same config), or, where
    ``expected_key`` (the entries of the key the config decides) differs from the one of that build, that another
    config's build is kept there (the command named discarded it). ``root``: the images it was built from, where
    its work records them."""

    def __init__(self, path: str | Path, build_command: str | None = None, expected_key: dict | None = None):
        self.path, self.expected_key = Path(path), expected_key
        work, kept = work_path(self.path), _kept_manifest(self.path)
        self.root = _recorded_root(self.path, kept)
        recorded = None if build_command else _recorded_build_command(self.path, self.root, kept)
        command = (f"`{build_command}`" if build_command else
                   f"`{recorded}` (CONFIG: the config it was started with)" if recorded else
                   "`satclip cache build` again with the same config")  # fmt: skip
        differ = other_settings(kept.get("key"), expected_key) if kept and expected_key else []
        if differ:
            message = (f"feature cache {path} is not there: {work} holds an unfinished build of other settings "
                       f"({', '.join(differ)} differ): `satclip cache build` with those settings finishes it, or "
                       f"delete {work}")  # fmt: skip
        elif kept.get("complete") is True:  # (stopped between the two renames that publish it)
            message = (f"feature cache {path} is not there yet: its build in {work} finished but was not published: "
                       f"run {command} to publish it")  # fmt: skip
        else:
            message = f"feature cache {path} is incomplete (its build was interrupted): run {command} to finish it"
        super().__init__(message)


def interrupted(path: str | Path, build_command: str | None = None, expected_key: dict | None = None) -> SatclipError:
    """What a reader of the unfinished cache ``path`` raises: :class:`~satclip.errors.LockedError` saying
    :func:`building_now` where a build writes it now (a build still running was said to be "interrupted", and
    a user told so may delete its work under it), else :class:`InterruptedCacheError` (its arguments)."""
    building = building_now(path)
    return LockedError(building) if building else InterruptedCacheError(path, build_command, expected_key)


def _recorded_build_command(path: Path, root: str | None, kept: dict) -> str | None:
    """The ``satclip cache build`` that finishes the unfinished build of the cache ``path`` as its work records it
    (``kept``: the manifest in ``PATH.partial/``; ``root``: its images): the config it was started with
    (``CONFIG``), with the cache, the images and the entries of its key that an option sets (views, dtype,
    backbone); None where it records no key ("again with the same config" named no command, though the build
    recorded them)."""
    key = kept.get("key")
    if not isinstance(key, dict):
        return None
    words = ["satclip", "cache", "build", "--config", "CONFIG", "--data.cache", str(path)]
    words += ["--data.root", root] if root else []
    for entry, option in KEY_OPTIONS.items():
        if isinstance(key.get(entry), (int, str)) and not isinstance(key[entry], bool):
            words += [f"--{option}", str(key[entry])]
    encoder = key.get("image_encoder")
    if isinstance(encoder, dict) and isinstance(encoder.get("name"), str):
        words += ["--model.image_encoder.name", encoder["name"]]
    return shlex.join(words)


def _recorded_root(path: Path, kept: dict) -> str | None:
    """The image folder the unfinished build of the cache ``path`` records (``kept``: the manifest of the build
    kept beside it, :func:`_kept_manifest`; else the one an older satclip left in ``path``), or None."""

    def root(manifest: dict) -> str | None:
        build = manifest.get("build")
        recorded = build.get("root") if isinstance(build, dict) else None
        return recorded if isinstance(recorded, str) else None

    recorded = root(kept)
    return recorded if recorded is not None else root(_manifest_json(path))


def write_cache(
    path: str | Path,
    features: np.ndarray,
    lonlat: np.ndarray,
    encoder: nn.Module,
    *,
    fingerprint: str,
    transform_config: dict | None = None,
    seed: int = 0,
) -> FeatureCache:
    """Store features computed elsewhere as a cache: ``features`` ``(N, V, F)`` (float16/float32; view 0
    the evaluation view) of ``encoder``'s backbone, ``lonlat`` ``(N, 2)`` degrees, ``fingerprint`` naming
    the images. Written atomically (into a temporary directory, then renamed)."""
    from ..encoding.points import describe_invalid, invalid_rows

    features = np.asarray(features)
    lonlat = np.asarray(lonlat, dtype=np.float64)
    if features.ndim != 3 or str(features.dtype) not in DTYPES:
        raise ValueError(f"features must be (N, V, F) float16/float32, got {features.shape} {features.dtype}")
    if 0 in features.shape or features.shape[1] > MAX_CACHE_VIEWS:
        raise ValueError(f"features must hold at least one image, 1 to {MAX_CACHE_VIEWS} views and one feature, got "
                         f"shape {features.shape}")  # fmt: skip
    if not np.isfinite(features).all():  # (training on them diverged at once, blaming the learning rate)
        raise ValueError("features hold NaN or infinite values; a cache holds the backbone's finite outputs")
    if lonlat.shape != (features.shape[0], 2):
        raise ValueError(f"lonlat must be ({features.shape[0]}, 2) (lon, lat) degrees, got {lonlat.shape}")
    if invalid_rows(lonlat).any():
        raise ValueError(describe_invalid(lonlat, invalid_rows(lonlat)))
    feature_dim = getattr(encoder, "feature_dim", features.shape[2])
    if int(feature_dim) != features.shape[2]:
        raise ValueError(f"{encoder.config.get('name')} has {feature_dim} features, the array {features.shape[2]}")
    path = Path(path)
    source = PairSource(dataset=range(features.shape[0]), fingerprint=fingerprint)
    if transform_config is not None:
        source.transform_config = dict(transform_config)
    key = cache_key(encoder, source, views=features.shape[1], dtype=str(features.dtype), seed=seed)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "complete": True, "key": jsonable(key),
        "shape": list(features.shape), "head_prefix": head_prefix(encoder),
        "files": {"features": FEATURES, "lonlat": LONLAT, "backbone": BACKBONE},
        "build": {"device": "external", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }  # fmt: skip
    with safe_output.atomic_dir(path, overwrite=True, kind="feature-cache") as tmp:  # only one satclip made
        for name, values in ((FEATURES, features), (LONLAT, lonlat)):
            safe_output.save_array(tmp / name, values)
        _save_backbone(tmp / BACKBONE, encoder)
        _write_json(tmp / MANIFEST, {**manifest, **_digests(tmp)})
    return FeatureCache.open(path)


def _probe_feature_dim(encoder: nn.Module, source: PairSource, device: torch.device) -> int:
    feature_dim = getattr(encoder, "feature_dim", None)
    if feature_dim is not None:
        return int(feature_dim)
    from ..data.s2100k import UnreadableSampleError

    for index in range(len(source)):  # the first image that can be read (one that cannot is left out of the cache)
        try:
            image, _ = source.raw(index)
            break
        except UnreadableSampleError:
            continue
    else:
        raise BadInputError(f"none of the {len(source)} images could be read; run {source.verify_command()} on the "
                            "dataset")  # fmt: skip
    with torch.inference_mode():
        return int(encoder.encode_features(source.eval_view(image)[None].to(device)).shape[-1])


def _existing_manifest(path: Path) -> dict | None:
    """The manifest of the cache at ``path``; None where there is none, or (in a directory satclip made) a
    damaged one: that cache is rebuilt."""
    try:
        return read_manifest(path)
    except FileNotFoundError:
        return None
    except BadInputError as err:
        if not safe_output.is_owned(path):
            raise
        log.warning("%s; rebuilding it", err)
        return None


def _published_or_built(path: Path, publishing: dict) -> bool:
    """Whether each file a stopped build was publishing is in place or still beside it, of the recorded shape."""
    for name, built in publishing["files"].items():
        file = path / built if (path / built).is_file() else path / name
        try:
            rows = np.load(file, mmap_mode="r").shape[0]
        except (OSError, ValueError):
            return False
        if rows != publishing["shape"][0]:
            return False
    return True


def _partial(path: Path, name: str) -> Path:
    return path / name.replace(".npy", ".partial.npy")


def _compact(path: Path, name: str) -> Path:
    """Where an array without the images left out is written before it is moved into place."""
    return path / name.replace(".npy", ".compact.npy")


def _without(path: Path, maps: dict[str, np.ndarray], kept: np.ndarray) -> dict[str, Path]:
    """The built arrays with only the rows ``kept``, written beside them (``*.compact.npy``), block by block."""
    files = {}
    for name, file in (("features", FEATURES), ("lonlat", LONLAT)):
        array = maps[name]
        files[file] = _compact(path, file)
        out = np.lib.format.open_memmap(files[file], mode="w+", dtype=array.dtype, shape=(len(kept), *array.shape[1:]))
        for start in range(0, len(kept), CHECK_BLOCK):
            out[start : start + CHECK_BLOCK] = array[kept[start : start + CHECK_BLOCK]]
        out.flush()
        del out
    return files


def _read_skipped(path: Path, n: int) -> np.ndarray:
    """Which images the chunks done so far left out (unreadable files); none where there is no record."""
    file = path / SKIPPED
    if file.is_file():
        try:
            skipped = np.load(file)
        except (ValueError, OSError, EOFError):
            skipped = None
        if skipped is not None and skipped.shape == (n,) and skipped.dtype == bool:
            return skipped.copy()
    return np.zeros(n, dtype=bool)


def _read_progress(path: Path, chunks: int) -> np.ndarray:
    file = path / PROGRESS
    if file.is_file():
        done = np.load(file)
        if done.shape == (chunks,) and done.dtype == bool:
            return done.copy()
        log.warning("%s does not match the cache's chunks; recomputing all chunks", file)
    return np.zeros(chunks, dtype=bool)


def _save_backbone(file: Path, encoder: nn.Module) -> None:
    from ..io.native import save_tensors

    with safe_output.atomic_file(file, overwrite=True) as tmp:
        save_tensors(backbone_state(encoder), tmp)


def _write_json(file: Path, data: dict) -> None:
    safe_output.write_text(file, json.dumps(data, indent=2, sort_keys=True) + "\n")


def jsonable(value: Any) -> Any:
    """JSON round trip (tuples → lists), so keys compare equal to what a manifest holds."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


# --- verifying ------------------------------------------------------------------------------------


#: images whose features are read at a time when checking them (a cache may be larger than memory)
CHECK_BLOCK = 4096
#: images with non-finite features named in a verify report
SHOWN_IMAGES = 10


def all_finite(features: np.ndarray, *, block: int = CHECK_BLOCK) -> bool:
    """Whether the float16/float32 ``features`` hold no NaN or infinity, read ``block`` images at a time by
    their exponent bits (3× faster than ``np.isfinite``: 0.15 s for 400 MB of float16 in the page cache)."""
    bits, exponent = {"float16": (np.uint16, 0x7C00), "float32": (np.uint32, 0x7F800000)}.get(
        str(features.dtype), (None, None)
    )
    for start in range(0, len(features), block):
        chunk = np.asarray(features[start : start + block])
        if bits is None:
            if not np.isfinite(chunk).all():
                return False
        elif ((chunk.view(bits) & exponent) == exponent).any():
            return False
    return True


def non_finite_images(features: np.ndarray, *, block: int = CHECK_BLOCK) -> tuple[list[int], int]:
    """The first :data:`SHOWN_IMAGES` indices of images with a NaN or infinite feature in any view of the
    ``(N, V, F)`` ``features``, and how many such images there are (reading ``block`` images at a time)."""
    shown: list[int] = []
    count = 0
    for start in range(0, len(features), block):
        chunk = features[start : start + block]
        bad = np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)) + start
        count += len(bad)
        shown += bad[: SHOWN_IMAGES - len(shown)].tolist()
    return shown, count


def _describe_non_finite(shown: list[int], count: int, total: int, cache: FeatureCache, build_command: str) -> str:
    """The non-finite problem of a verify report: the first bad images by index (the dataset's order) with
    their (lon, lat) where lonlat.npy can be read."""
    try:
        lonlat = cache.lonlat if cache.lonlat.shape == (total, 2) else None
    except BadInputError:  # (reported on its own)
        lonlat = None
    names = ", ".join(
        f"{i}" if lonlat is None else f"{i} (lon={float(lonlat[i, 0])!r}, lat={float(lonlat[i, 1])!r})" for i in shown
    )
    more = f" and {count - len(shown)} more" if count > len(shown) else ""
    which = "image" if count == 1 else "images"
    return (
        f"non-finite features (NaN or infinite) in {count} of {total} images: {which} {names}{more}; the cache was "
        f"changed after it was built: {rebuild_fix(build_command)}"
    )


def _stale(cached: dict, expected: dict, build_command: str) -> str:
    """The stale problem of a verify report: the entries of the key that differ (nested ones by dotted name), each
    with the cache's value and the config's, and the build that replaces the cache."""
    differ = _differing_values(cached, expected)
    names = [name for name, _, _ in differ]
    shown = [f"the cache's {_short(ours)}, the config's {_short(theirs)}" for _, ours, theirs in differ]
    if len(differ) == 1:
        said = f"{names[0]} differs from the config ({shown[0]})"
    else:
        listed = "; ".join(f"{name}: {values}" for name, values in zip(names, shown, strict=True))
        said = f"{', '.join(names[:-1])} and {names[-1]} differ from the config ({listed})"
    return f"stale: {said}: rebuild it with `{build_command}`"


def _differing_values(cached: Any, expected: Any, name: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted name, cached value, expected value)`` of each entry that differs, dictionaries entered."""
    if isinstance(cached, dict) and isinstance(expected, dict):
        return [difference for key in sorted(set(cached) | set(expected)) for difference in
                _differing_values(cached.get(key), expected.get(key), f"{name}.{key}" if name else key)]  # fmt: skip
    return [] if cached == expected else [(name, cached, expected)]


def _short(value: Any) -> str:
    """``value`` as JSON, cut to 40 characters (a fingerprint, a config); a string is cut inside its quotes (they
    were left unbalanced: ``the cache's "f20d3cc0…, the config's "76ce24…``)."""
    text = json.dumps(value, ensure_ascii=False)
    if len(text) <= 40:
        return text
    return json.dumps(value[:37] + "…", ensure_ascii=False) if isinstance(value, str) else text[:39] + "…"


@dataclass
class CacheReport:
    """Result of :func:`verify_cache`: ``ok`` when ``problems`` is empty."""

    path: Path
    shape: tuple[int, ...] = ()
    problems: list[str] = field(default_factory=list)
    #: what was not checked (a cache without recorded checksums), said beside "ok"
    notes: list[str] = field(default_factory=list)
    recomputed: int = 0
    max_abs_diff: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


#: the storage's rounding: half a unit in the last place of a float16/float32 value, relative to it (and the
#: absolute half-spacing of float16's subnormals)
ROUNDING = {"float16": (2.0**-11, 2.0**-25), "float32": (2.0**-24, 0.0)}
#: the backbone's own noise between a build and a check, relative to the image's largest feature: float32 on
#: CPUs (measured 0 for ResNet18 and MOSAIKS built and checked on one CPU, 2026-12-04; other CPUs' SIMD paths
#: change float32 results in the last bits, ~1e-7 relative per operation), and where either ran on a GPU (TF32
#: convolutions, a build under bf16 autocast: 8 significant bits, over a backbone's layers; not measured here)
BACKBONE_NOISE = {"cpu": 1e-5, "gpu": 3e-2}


def recompute_tolerance(manifest: dict, device: str | torch.device) -> tuple[float, float, float]:
    """``(rtol, atol, scale_tol)``: a recomputed feature ``f`` of an image matches its stored value when
    ``|f − stored| ≤ rtol·|f| + atol + scale_tol·max|f|`` (the maximum over the image's views), ``device``
    being the one that recomputes. A fixed absolute tolerance (1e-2 before 2026-12-04) passed caches whose
    features, ~3e-3 typically, were zeroed or swapped between images."""
    rtol, atol = ROUNDING[manifest["key"]["dtype"]]
    built = str(manifest.get("build", {}).get("device", "external")) if isinstance(manifest.get("build"), dict) else ""
    on_cpu = built == "cpu" and torch.device(device).type == "cpu"
    return rtol, atol, BACKBONE_NOISE["cpu" if on_cpu else "gpu"]


def building_now(path: str | Path) -> str | None:
    """What to say when a ``satclip cache build`` is writing the cache ``path`` now (it then looks interrupted, or
    not a cache yet), or None."""
    holder = safe_output.lock_holder(path)
    if holder is None:
        return None
    return (f"feature cache {path} is being built now (PID {holder.get('pid', '?')}: {holder.get('command', '?')}); "
            "use or verify it once that build has finished")  # fmt: skip


#: and of one that holds its features but no manifest (removed since the build finished)
LOST_MANIFEST = (f"damaged: it holds {FEATURES} but no {MANIFEST}, without which its features cannot be checked or "
                 "used (run `satclip cache build` with its config to build it again)")  # fmt: skip


def verify_cache(
    path: str | Path,
    *,
    expected_key: dict | None = None,
    encoder: nn.Module | None = None,
    source: PairSource | None = None,
    recompute: int = 0,
    device: str | torch.device = "cpu",
    build_command: str = BUILD_COMMAND,
) -> CacheReport:
    """Check a cache: complete, files of the manifest's shape and dtype, finite features, valid
    coordinates, backbone file matching its hash, and (``expected_key``: the entries of the key it should
    have, all of them or some) not stale. With ``encoder``, ``source`` and ``recompute`` > 0, recompute that
    many random images (all views) and compare (:func:`recompute_tolerance`). The fixes name ``build_command``,
    the command that builds the cache (the CLI's names the config and overrides it was given).

    Raises:
        ValueError: the manifest is not one this satclip reads (another format, a newer format_version), as
            :func:`read_manifest`; a damaged one is reported."""
    path = Path(path)
    report = CacheReport(path)
    building = building_now(path)
    if building:
        report.problems.append(building)
        return report
    if unfinished(path):  # (as training says it: "incomplete: … interrupted before it wrote its manifest" was
        report.problems.append(str(InterruptedCacheError(path, build_command, expected_key)))  # verify's,
        # "not a cache" train's)
        return report
    if not (path / MANIFEST).exists() and safe_output.owned_kind(path) == "feature-cache":
        report.problems.append(LOST_MANIFEST)  # (a finished cache whose manifest was removed since)
        return report
    try:
        manifest = read_manifest(path)
    except (FileNotFoundError, BadInputError) as err:
        report.problems.append(str(err))
        return report
    report.shape = tuple(manifest["shape"])
    if _kept_build(path):  # (said nothing of a rebuild stopped beside it)
        work = work_path(path)
        differ = other_settings(_kept_manifest(path).get("key"), expected_key) if expected_key else []
        if differ:  # (the config's build reports this cache up to date, and leaves that one as it is)
            report.notes.append(f"{work} holds an unfinished build of other settings ({', '.join(differ)} differ), "
                                f"which takes disk space: `satclip cache build` with those settings finishes it "
                                f"(replacing this cache), or delete {work}")  # fmt: skip
        else:
            report.notes.append(f"an unfinished build that replaces this cache once complete is kept in {work}: "
                                f"`{build_command}` with that build's config finishes it")  # fmt: skip
    if expected_key is not None:
        cached, expected = comparable({k: manifest["key"].get(k) for k in expected_key}, expected_key)
        if cached != expected:
            report.problems.append(_stale(cached, expected, build_command))
    try:
        cache = FeatureCache.open(path)
        feats = cache.features
    except (OSError, ValueError, RuntimeError) as err:
        report.problems.append(str(err))
        return report
    dtype = manifest["key"]["dtype"]
    if feats.shape != report.shape or str(feats.dtype) != dtype:
        report.problems.append(f"{FEATURES} is {feats.shape} {feats.dtype}, the manifest says {report.shape} {dtype}: "
                               f"{rebuild_fix(build_command)}")  # fmt: skip
        return report
    shown, count = non_finite_images(feats)
    if count:
        report.problems.append(_describe_non_finite(shown, count, len(feats), cache, build_command))
    changed = [f"{name}: {problem}" for name, problem in changed_files(path, manifest).items()
               if not (count and name == FEATURES)]  # fmt: skip
    if changed:  # (the catch-all, where nothing more is said; one fix for both files)
        report.problems.append(f"{'; '.join(changed)}: {rebuild_fix(build_command)}")
    unrecorded = [name for name, entry in DIGESTS.items() if manifest.get(entry) is None]
    if unrecorded:  # (a changed byte of an older satclip's cache was called plainly "ok")
        report.notes.append(
            f"no checksum is recorded for {' or '.join(unrecorded)} (a cache of an older satclip), so "
            f"{'its' if len(unrecorded) == 1 else 'their'} contents were not checked: `--recompute K` with its config "
            f"compares K images with the backbone, and `{build_command} --rebuild` records the checksums"
        )
    from ..encoding.points import describe_invalid, invalid_rows

    try:
        lonlat = cache.lonlat
    except BadInputError as err:
        report.problems.append(str(err))
        return report
    if lonlat.shape != (report.shape[0], 2):
        report.problems.append(f"lonlat.npy has shape {lonlat.shape}, expected ({report.shape[0]}, 2)")
    elif lonlat.dtype != np.float64:
        report.problems.append(f"lonlat.npy is {lonlat.dtype}, a cache stores float64 (lon, lat)")
    elif invalid_rows(lonlat).any():
        report.problems.append("lonlat.npy: " + describe_invalid(lonlat, invalid_rows(lonlat)))
    try:
        if state_sha256(cache.backbone_state()) != manifest["key"]["backbone_sha256"]:
            report.problems.append("backbone.safetensors does not match the manifest's backbone_sha256")
    except BadInputError as err:
        report.problems.append(str(err))
    if recompute and encoder is not None and source is not None:
        _recompute(report, cache, encoder, source, recompute, device, build_command)
    return report


def _recompute(report: CacheReport, cache: FeatureCache, encoder: nn.Module, source: PairSource, count: int,
               device: str | torch.device, build_command: str) -> None:  # fmt: skip
    """Recompute ``count`` random images of ``cache`` into ``report``: a problem for each whose features differ by
    more than :func:`recompute_tolerance` allows (or whose point differs), naming its file where the source does
    and the rebuild (``build_command --rebuild``: the cache's checksums may hold, its images or backbone changed),
    and the largest absolute difference (NaN where a stored feature is NaN)."""
    manifest = cache.manifest
    rtol, atol, scale_tol = recompute_tolerance(manifest, device)
    rng = np.random.default_rng()
    picks = np.sort(rng.choice(len(cache), size=min(count, len(cache)), replace=False))
    # cache row → image of the source: the images a build left out (unreadable) have no row
    images = np.delete(np.arange(manifest["key"]["dataset"]["size"]), manifest.get("skipped", []))
    views_ds = _ImageViews(source, images[picks], cache.views, manifest["key"]["seed"])
    encoder = encoder.to(device).eval()
    worst = 0.0
    fix = f"rebuild it with `{build_command} --rebuild`"
    for j, index in enumerate(picks):
        name = source.sample_name(int(images[index]))  # (its file, where the dataset names it)
        image = f"image {index}" + ("" if name == f"image {images[index]}" else f" ({name})")
        stacked, point, _, unreadable = views_ds[j]
        if stacked is None:
            report.problems.append(f"image {index}: {unreadable}")
            continue
        with torch.inference_mode():
            fresh = encoder.encode_features(stacked.to(device)).float().cpu().numpy()
        stored = np.asarray(cache.features[index], dtype=np.float32)
        diff = np.abs(fresh - stored)
        largest = float(diff.max())  # (NaN where a stored feature is NaN)
        worst = largest if not largest <= worst else worst
        allowed = rtol * np.abs(fresh) + atol + scale_tol * float(np.abs(fresh).max())
        if not (diff <= allowed).all():
            at = np.unravel_index(np.argmax(np.where(diff <= allowed, -np.inf, diff - allowed)), diff.shape)
            report.problems.append(
                f"{image}: recomputed features differ (view {at[0]}, feature {at[1]}: |diff| {float(diff[at]):.3g}, "
                f"more than the {float(allowed[at]):.3g} the storage and backbone explain there): {fix}"
            )  # fmt: skip
        if not np.array_equal(point.numpy(), cache.lonlat[index]):
            report.problems.append(
                f"{image}: stored (lon, lat) {cache.lonlat[index]} != dataset {point.numpy()}: {fix}"
            )
    report.recomputed, report.max_abs_diff = len(picks), worst
