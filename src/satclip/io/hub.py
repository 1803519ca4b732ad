"""Fetching checkpoints from the Hugging Face hub (optional ``huggingface_hub`` extra).

``huggingface_hub`` caches files under ``HF_HOME`` and checks only their size; satclip checks each file
against a sha256: the pinned one when given, else the one the hub publishes for an LFS file (when
downloading) or the name of its blob in the hub cache (the same sha256, when found there). A missing hub
is reported at once: with ``HF_HUB_OFFLINE=1`` only the cache is looked at; online, one request without
retries first checks that the hub answers (``huggingface_hub`` itself retries a failed connection for ~25 s
before looking in its cache), and when it does not, the cache is used or one :class:`DownloadError` names
the URL to fetch by hand and how to pass the file instead. Once the hub has answered, a transfer that stalls
is resumed by ``huggingface_hub`` (a few times, logging each retry) before it fails.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ..digests import file_digest
from ..errors import MissingExtraError, SatclipError
from ..optional import require

log = logging.getLogger(__name__)

#: seconds the reachability check waits for the hub
PROBE_TIMEOUT = 10.0
#: a hub repository id: ``owner/name``
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class DownloadError(SatclipError, RuntimeError):
    """A file could not be fetched (offline, unreachable, refused); the message says how to get it by hand."""


def file_url(repo_id: str, filename: str, revision: str | None = None) -> str:
    return f"https://huggingface.co/{repo_id}/resolve/{revision or 'main'}/{filename}"


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (in the environment now, or when ``huggingface_hub`` was imported)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "on", "yes", "true"}:
        return True
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _hub(what: str, manual: str):
    try:
        return require("huggingface_hub", "hub", what)
    except MissingExtraError as err:
        raise MissingExtraError(f"{err}; or {manual}") from err


def _by_hand(repo_id: str, filename: str, revision: str | None = None) -> str:
    url = file_url(repo_id, filename, revision)
    return (
        f"fetch {url} on a machine with internet access, copy it to this one (any directory) and pass its "
        f"path wherever the model's name goes, e.g. satclip.load('/path/to/{filename}'), `satclip embed … --model "
        f"/path/to/{filename}` or `satclip evaluate --encoders /path/to/{filename}`"
    )


#: files this process found to have their sha256, as (path, size, mtime, sha256): not hashed again per load
_VERIFIED: set[tuple[str, int, int, str]] = set()


def check_sha256(path: Path, expected: str, what: str) -> None:
    """Raise :class:`DownloadError` unless the file ``path`` has the sha256 ``expected`` (hex)."""
    stat = Path(path).stat()
    seen = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, expected.lower())
    if seen in _VERIFIED:
        return
    found = file_digest(path)
    if found != expected.lower():
        blob = Path(path).resolve()
        # (the hub cache links its file to a blob: deleting the link alone, the damaged blob was linked again)
        delete = f"delete it and the file it links to, {blob}," if blob != Path(path).absolute() else "delete it"
        raise DownloadError(
            f"{path} ({what}) has sha256 {found}, expected {expected}: the file is damaged or not the "
            f"release; {delete} and fetch it again"
        )
    _VERIFIED.add(seen)


def fetch(
    repo_id: str, filename: str, *, revision: str | None = None, sha256: str | None = None, manual: str | None = None
) -> Path:
    """Download (or find in the hub cache) ``filename`` of ``repo_id`` at ``revision`` (default: the main
    branch) and return its local path, checked against ``sha256`` when given. ``manual``: how to get the file by
    hand, where a model's advice (fetch it elsewhere and pass its path to satclip.load) does not fit.

    Raises:
        DownloadError: offline or unreachable and not cached, refused by the hub (no retries), or the file
            does not have the expected sha256.
        MissingExtraError: ``huggingface_hub`` is not installed.
    """
    by_hand = manual or _by_hand(repo_id, filename, revision)
    hf = _hub(f"downloading {filename} from the Hugging Face repository {repo_id}", by_hand)
    pin = {"revision": revision} if revision else {}
    what = f"{filename} of {repo_id}" + (f" at {revision}" if revision else "")
    reason = "HF_HUB_OFFLINE is set" if offline() else None
    published = None
    if reason is None:
        try:  # one request, no retries: is the hub there at all?
            metadata = hf.get_hf_file_metadata(hf.hf_hub_url(repo_id, filename, **pin), timeout=PROBE_TIMEOUT)
            published = _sha256_or_none(getattr(metadata, "etag", None))  # (an LFS file's etag is its sha256)
        except Exception as err:  # noqa: BLE001 - unreachable, refused, not found: all end in the cache
            reason = f"{type(err).__name__}: {err}"
    if reason is None:
        try:
            path = Path(hf.hf_hub_download(repo_id=repo_id, filename=filename, **pin))
        except Exception as err:  # noqa: BLE001 - network, auth and hub errors all end the same way
            raise DownloadError(
                f"could not download {filename} from the Hugging Face repository {repo_id} "
                f"({type(err).__name__}: {err}). To get it anyway, {by_hand}."
            ) from err
    else:
        try:
            path = Path(hf.hf_hub_download(repo_id=repo_id, filename=filename, local_files_only=True, **pin))
        except Exception as err:  # noqa: BLE001 - not in the cache (or a broken cache entry)
            raise DownloadError(
                f"cannot download {filename} from the Hugging Face repository {repo_id} ({reason}) and it is "
                f"not in the hub cache. To get it, {by_hand}."
            ) from err
        log.info("using the cached %s of %s (%s)", filename, repo_id, reason)
    if sha256:
        check_sha256(path, sha256, what)
    elif published:
        check_sha256(path, published, f"{what}; the sha256 the hub publishes for it")
    elif (recorded := _blob_sha256(path)) is not None:
        check_sha256(path, recorded, f"{what}; the sha256 its hub cache entry is named by")
    return path


def snapshot_commit(path: Path) -> str | None:
    """The commit a file fetched into the hub cache belongs to (``…/snapshots/<commit>/file``), or None."""
    commit = Path(path).parent.name
    return commit if Path(path).parent.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def _sha256_or_none(text: object) -> str | None:
    text = str(text or "").strip('"').lower()
    return text if re.fullmatch(r"[0-9a-f]{64}", text) else None


def _blob_sha256(path: Path) -> str | None:
    """The sha256 a hub cache records for a file: the name of the blob its snapshot entry links to
    (``…/blobs/<sha256>``), or None (not a link into a cache of LFS blobs)."""
    if not path.is_symlink():
        return None
    blob = path.resolve()
    return _sha256_or_none(blob.name) if blob.parent.name == "blobs" else None


def unreachable(repo_id: str, *, repo_type: str | None = None, revision: str | None = None) -> str | None:
    """Why the hub cannot be reached for ``repo_id`` (``"ConnectError: …"``), or None when it answers (an HTTP
    error included: the real request says which). One request, no retries: listing a repository retries a
    failed connection for ~25 s before giving up."""
    hf = require("huggingface_hub", "hub")
    errors = require("huggingface_hub.errors", "hub")
    url = hf.hf_hub_url(repo_id, ".gitattributes", repo_type=repo_type, revision=revision)
    try:
        hf.get_hf_file_metadata(url, timeout=PROBE_TIMEOUT)
    except errors.HfHubHTTPError:
        return None  # it answered (a repository without that file, or none at all)
    except Exception as err:  # noqa: BLE001 - unreachable
        return f"{type(err).__name__}: {err}"
    return None


def list_files(repo_id: str) -> list[str]:
    """The files of the hub repository ``repo_id`` (for ``hf://owner/name`` sources)."""
    manual = (
        f"download the model from https://huggingface.co/{repo_id}/tree/main (config.json + model.safetensors, "
        "or its .ckpt) elsewhere and pass the local path"
    )
    hf = _hub(f"resolving hf://{repo_id}", manual)
    reason = "HF_HUB_OFFLINE is set" if offline() else unreachable(repo_id)
    if reason is not None:  # the files of its snapshot in the hub cache, where there is one
        cached = _cached_files(repo_id)
        if cached:
            log.info("listing the cached snapshot of %s (%s)", repo_id, reason)
            return cached
        raise DownloadError(f"cannot list the Hugging Face repository {repo_id} ({reason}) and the hub cache has no "
                            f"snapshot of it; {manual}")  # fmt: skip
    try:
        return list(hf.list_repo_files(repo_id))
    except Exception as err:  # noqa: BLE001
        raise DownloadError(
            f"could not list the Hugging Face repository {repo_id} ({type(err).__name__}: {err}); {manual}"
        ) from err


def _cached_files(repo_id: str) -> list[str]:
    """The files of the main branch's snapshot of model repository ``repo_id`` in the hub cache (links to blobs
    that are there; relative paths), or [] where it has none."""
    constants = require("huggingface_hub.constants", "hub")
    repo = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return []
    snapshot = repo / "snapshots" / ref.read_text().strip()
    if not snapshot.is_dir():
        return []
    return sorted(path.relative_to(snapshot).as_posix() for path in snapshot.rglob("*") if path.is_file())
