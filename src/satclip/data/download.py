"""Download S2-100K into ``ROOT/index.csv`` + ``ROOT/images/*.tif``, resumably.

The hub repository ``torchgeo/s2-100k`` has held the images as tar archives in different layouts over
time (one ``satclip.tar``; ``images/data_{1..10}.tar.xz``; ``data/shard-*.tar``), so every ``*.tar``,
``*.tar.gz``/``.tgz``, ``*.tar.xz`` and ``*.tar.bz2`` of the repository is treated as a shard.

Per shard: fetch into ``ROOT/.download/`` (``huggingface_hub`` resumes a partial download), check its
SHA-256 (or git blob id) when the source publishes one, extract its ``.tif`` members into a private
temporary folder beside ``images/``, move them into ``images/`` one by one (each move atomic), then write the
shard's marker ``ROOT/.download/done/<shard>.json`` and delete the archive. A rerun skips shards with a
marker whose images are all still in ``images/`` and redoes any other shard from scratch, so an interruption at
any point loses at most one shard's work and never leaves a half-written image in ``images/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import safe_output
from ..errors import OutputExistsError
from ..io.hub import DownloadError
from .sources import HubSource, RemoteFile, Source, offline_instructions

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2")
IMAGE_SUFFIXES = (".tif", ".tiff")
STATE_DIR = ".download"

Progress = Callable[[Iterable, int], Iterable]


class ChecksumError(DownloadError):
    """A fetched file does not match the checksum its source publishes."""


@dataclass(frozen=True)
class DownloadSummary:
    """What :func:`download_s2100k` did: shards extracted now, shards already done, images added."""

    root: Path
    extracted: tuple[str, ...]
    skipped: tuple[str, ...]
    images: int


def _marker(root: Path, file: RemoteFile) -> Path:
    return root / STATE_DIR / "done" / (file.path.replace("/", "__") + ".json")


def _digest(path: Path, algorithm: str, prefix: bytes = b"") -> str:
    h = hashlib.new(algorithm)
    h.update(prefix)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(path: Path, file: RemoteFile) -> str:
    """Raise :class:`ChecksumError` unless ``path`` matches ``file``'s checksum; return what was checked."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise ChecksumError(f"{file.path}: {size} bytes, expected {file.size} (incomplete or wrong file)")
    expected = file.sha256
    if expected:
        actual = _digest(path, "sha256")
        if actual != expected.lower():
            raise ChecksumError(f"{file.path}: sha256 {actual}, expected {expected}")
        return f"sha256 {expected}"
    if file.git_sha1:
        actual = _digest(path, "sha1", f"blob {size}\0".encode())
        if actual != file.git_sha1.lower():
            raise ChecksumError(f"{file.path}: git blob id {actual}, expected {file.git_sha1}")
        return f"git blob {file.git_sha1}"
    if file.size is not None:
        log.warning("%s: the source publishes no checksum; only its size was checked", file.path)
        return "size only"
    log.warning("%s: no checksum to check it against (pass the copy's --revision if it is a known one)", file.path)
    return "unchecked"


def is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def _fetch_checked(source: Source, file: RemoteFile, staging: Path) -> Path:
    """Fetch ``file`` and check it; a file that fails the check is deleted (if it is ours) and re-raised."""
    try:
        path = source.fetch(file, staging)
    except DownloadError as err:
        raise DownloadError(f"{err}; rerun the same command to resume") from err
    except Exception as err:  # noqa: BLE001 - a broken connection, a full disk, ...
        raise DownloadError(
            f"fetching {file.path} failed ({type(err).__name__}: {err}); rerun the same command to resume"
        ) from err
    try:
        verify_checksum(path, file)
    except ChecksumError:
        if path.resolve().is_relative_to(staging.resolve()):
            path.unlink(missing_ok=True)
        raise
    return path


def extract_images(archive: Path, images: Path, label: str) -> list[str]:
    """Move the ``.tif`` members of ``archive`` into ``images/`` (flattened; other members ignored); returns
    their names.

    Members are streamed into a temporary directory beside ``images/<label>`` first; only complete files
    are moved into ``images/``, and an image already there is kept as it is (moves are atomic, so it is
    complete). Member paths are reduced to their base name, so no member can write outside ``images/``.
    """
    safe_output.clean_stale(images / label)
    partial = safe_output.temp_path(images / label)
    partial.mkdir(parents=True)
    safe_output.mark_owned(partial, kind="download")
    names = []
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if not member.isfile() or not name.lower().endswith(IMAGE_SUFFIXES) or name.startswith("."):
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source, (partial / name).open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                names.append(name)
        for name in names:
            if not (images / name).exists():
                safe_output.publish(partial / name, images / name)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DownloadError(
            f"cannot extract {archive.name} ({type(err).__name__}: {err}); rerun to retry"
        ) from err
    finally:
        safe_output.remove_owned(partial)
    return names


def _shard_done(root: Path, images: Path, shard: RemoteFile) -> bool:
    """Whether ``shard`` was extracted and its images are still in ``images/`` (a shard whose images were
    removed since is fetched again; markers written before they listed the names are trusted)."""
    marker = _marker(root, shard)
    if not marker.is_file():
        return False
    names = json.loads(marker.read_text()).get("names")
    missing = sum(not (images / name).is_file() for name in names or ())
    if missing:
        log.warning("%s: %d of its %d images are missing from %s; fetching it again", shard.path, missing,
                    len(names), images)  # fmt: skip
    return not missing


def download_s2100k(
    root: str | Path,
    source: Source | None = None,
    *,
    keep_archives: bool = False,
    progress: Progress | None = None,
) -> DownloadSummary:
    """Fetch ``index.csv`` and all image shards of S2-100K into ``root`` (see the module docstring).

    Args:
        root: the dataset root to create or complete.
        source: where the files come from (default :class:`~satclip.data.sources.HubSource`:
            ``torchgeo/s2-100k`` on the Hugging Face hub); pass ``LocalSource(dir)`` for a local copy.
        keep_archives: keep the fetched archives in ``ROOT/.download/`` after extraction.
        progress: optional ``progress(iterable, total)`` wrapper over the shards (the CLI passes tqdm).

    Raises:
        DownloadError: the source cannot be reached (with instructions for fetching the files by hand),
            has no ``index.csv`` or no archives, or a file fails its checksum (:class:`ChecksumError`).
    """
    root = Path(root)
    source = source or HubSource()
    try:
        files = source.list_files()
    except DownloadError as err:
        raise DownloadError(f"{err}\n{offline_instructions(root)}") from err
    index = next((f for f in files if f.path == "index.csv"), None)
    shards = sorted((f for f in files if is_archive(f.path)), key=lambda f: f.path)
    if index is None or not shards:
        listing = ", ".join(f.path for f in files[:20]) + (" …" if len(files) > 20 else "")
        raise DownloadError(
            f"{source.description} does not look like S2-100K: expected index.csv and image archives "
            f"({', '.join(ARCHIVE_SUFFIXES)}), found: {listing or 'no files'}"
        )
    with safe_output.exclusive(root):  # one download per dataset root
        staging = root / STATE_DIR / "files"
        images = root / "images"
        images.mkdir(parents=True, exist_ok=True)
        extracted, skipped, added = [], [], 0

        if _marker(root, index).is_file() and (root / "index.csv").is_file():
            skipped.append(index.path)
        else:
            path = _fetch_checked(source, index, staging)
            data = path.read_bytes()
            if (root / "index.csv").is_file() and (root / "index.csv").read_bytes() != data:
                raise OutputExistsError(
                    f"{root / 'index.csv'} exists and differs from the dataset's index.csv; satclip does not replace "
                    "it: move it away or download into another root"
                )
            safe_output.write_bytes(root / "index.csv", data)
            marker = {"path": index.path, "sha256": index.sha256}
            safe_output.write_bytes(_marker(root, index), json.dumps(marker).encode())
            extracted.append(index.path)

        done = {shard.path for shard in shards if _shard_done(root, images, shard)}
        todo = [shard for shard in shards if shard.path not in done]
        skipped += [shard.path for shard in shards if shard.path in done]
        if skipped:
            log.info("resuming: %d of %d files already done", len(skipped), len(shards) + 1)
        for shard in progress(todo, len(todo)) if progress else todo:
            path = _fetch_checked(source, shard, staging)
            names = extract_images(path, images, shard.path.replace("/", "__"))
            count = len(names)
            record = {"path": shard.path, "sha256": shard.sha256, "images": count, "names": names}
            safe_output.write_bytes(_marker(root, shard), json.dumps(record).encode())
            if not keep_archives and path.resolve().is_relative_to(staging.resolve()):
                path.unlink(missing_ok=True)
            log.info("%s: %d images", shard.path, count)
            extracted.append(shard.path)
            added += count
    return DownloadSummary(root, tuple(extracted), tuple(skipped), added)
