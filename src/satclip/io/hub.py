"""Fetching checkpoints from the Hugging Face hub (optional ``huggingface_hub`` extra).

``huggingface_hub`` caches files under ``HF_HOME`` and checks only their size; satclip checks each file
against a sha256: the pinned one when given, else the one the hub publishes for an LFS file (when
downloading) or the name of its blob in the hub cache (the same sha256, when found there). A missing hub
is reported at once: with ``HF_HUB_OFFLINE=1`` only the cache is looked at; online, one request without
retries first checks that the hub answers (``huggingface_hub`` itself retries a failed connection for ~25 s
before looking in its cache), and when it does not, the cache is used or one :class:`DownloadError` names
the URL to fetch by hand and how to pass the file instead. Once the hub has answered, a transfer that stalls
is resumed by ``huggingface_hub`` (a few times; its log of each retry is silenced) before it fails, in one line.
A hub that did not answer is remembered for :data:`UNANSWERED_FOR` seconds: meanwhile what the hub cache holds is
used without asking it (a network that drops packets cost each load the probe's 10 s); a file it does not hold asks
the hub again. A file of a pinned commit
that the cache holds, with a sha256 to check it against, is used without asking the hub. A repository the hub
says does not exist (or is gated) is bad input, :class:`~satclip.errors.BadInputError`, where the cache does not
hold the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path

from ..digests import file_digest
from ..errors import BadInputError, MissingExtraError, SatclipError
from ..optional import require

log = logging.getLogger(__name__)

#: seconds the reachability check waits for the hub
PROBE_TIMEOUT = 10.0
#: seconds a hub that did not answer the check is taken to be away: fetches meanwhile use what the cache holds at once
UNANSWERED_FOR = 300.0
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
        f"path wherever the model's name goes: satclip.load('/path/to/{filename}') in Python, the command's model "
        f"option on the command line (--model /path/to/{filename}; satclip evaluate: --encoders)"
    )


#: hub endpoint → (when, the error's type) it last did not answer the check, in this process (:func:`_unanswered`)
_UNANSWERED: dict[str, tuple[float, str]] = {}


def _endpoint() -> str:
    return require("huggingface_hub.constants", "hub").ENDPOINT


def _unanswered() -> str | None:
    """Why the hub did not answer a check less than :data:`UNANSWERED_FOR` seconds ago, or None: what the hub cache
    holds is then used without asking it (a miss asks it again: the network may be back)."""
    when, error = _UNANSWERED.get(_endpoint(), (None, None))
    if when is None or time.monotonic() - when > UNANSWERED_FOR:
        return None
    # (the error's message names the file that was asked for: another one, maybe of another repository)
    return f"{error}: the hub did not answer {time.monotonic() - when:.0f} s ago"


def _probe(hf, url: str):
    """One request for the metadata of ``url``, no retries (is the hub there at all?), remembered
    (:func:`_unanswered`) where it gets no answer at all and forgotten where it gets one (an HTTP error is an
    answer; huggingface_hub's offline mode says nothing of the network). Returns the metadata; raises what the
    request raised."""
    errors = require("huggingface_hub.errors", "hub")
    try:
        metadata = hf.get_hf_file_metadata(url, timeout=PROBE_TIMEOUT)
    except Exception as err:
        if isinstance(err, errors.HfHubHTTPError):
            _UNANSWERED.pop(_endpoint(), None)
        elif not isinstance(err, errors.OfflineModeIsEnabled):
            _UNANSWERED[_endpoint()] = (time.monotonic(), type(err).__name__)
        raise
    _UNANSWERED.pop(_endpoint(), None)
    return metadata


def _refusal(err: Exception, repo_id: str) -> BadInputError | None:
    """The bad-input error for a hub's answer that ``repo_id`` does not exist or may not be read (404, 401,
    gated); None for any other failure (offline, unreachable, a server error: those say what to fetch)."""
    errors = require("huggingface_hub.errors", "hub")
    login = "log in with `hf auth login` (`huggingface-cli login` before huggingface_hub 0.34) or set HF_TOKEN"
    if isinstance(err, errors.GatedRepoError):
        return BadInputError(f"the Hugging Face repository {repo_id} is gated: request access at "
                             f"https://huggingface.co/{repo_id} and {login}")  # fmt: skip
    if not isinstance(err, errors.RepositoryNotFoundError):
        return None
    if getattr(getattr(err, "response", None), "status_code", None) == 401:  # (the hub's answer for private ones)
        return BadInputError(f"no such Hugging Face repository {repo_id}, or it is private: check the name, or "
                             f"{login} with access to it")  # fmt: skip
    return BadInputError(f"no such Hugging Face repository {repo_id}: check the name")


#: downloads running in this process with huggingface_hub's log silenced, and the level it had before the first
_QUIET = {"downloads": 0, "level": logging.NOTSET}
_QUIET_LOCK = threading.Lock()


@contextlib.contextmanager
def _hub_log_quiet():
    """Silence ``huggingface_hub``'s own log (a line per retry of a stalled transfer, before satclip's one-line
    error) while this process downloads, restoring its level after the last download (counted: two threads'
    downloads that overlapped left it silenced for good)."""
    logger = logging.getLogger("huggingface_hub")
    with _QUIET_LOCK:
        if _QUIET["downloads"] == 0:
            _QUIET["level"] = logger.level
            logger.setLevel(logging.CRITICAL)
        _QUIET["downloads"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["downloads"] -= 1
            if _QUIET["downloads"] == 0:
                logger.setLevel(_QUIET["level"])


def _cached_at_commit(hf, repo_id: str, filename: str, revision: str | None, sha256: str | None) -> Path | None:
    """The hub cache's ``filename`` of ``repo_id`` at ``revision`` where that is a commit (whose files never change)
    and the file can be checked without the hub: against ``sha256``, or the sha256 its blob is named by. None
    otherwise (the hub is asked: a branch moves, and only the hub publishes another file's sha256)."""
    if not re.fullmatch(r"[0-9a-f]{40}", revision or ""):
        return None
    cached = hf.try_to_load_from_cache(repo_id, filename, revision=revision)
    if not isinstance(cached, str):  # (None, or a marker that the hub said the file does not exist)
        return None
    path = Path(cached)
    return path if sha256 or _blob_sha256(path) is not None else None


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
        BadInputError: the hub answered that ``repo_id`` does not exist, is private or gated, and the cache does
            not hold the file.
        MissingExtraError: ``huggingface_hub`` is not installed.
    """
    by_hand = manual or _by_hand(repo_id, filename, revision)
    hf = _hub(f"downloading {filename} from the Hugging Face repository {repo_id}", by_hand)
    pin = {"revision": revision} if revision else {}
    what = f"{filename} of {repo_id}" + (f" at {revision}" if revision else "")
    reason = "HF_HUB_OFFLINE is set" if offline() else None
    published, refused = None, None
    path = _cached_at_commit(hf, repo_id, filename, revision, sha256) if reason is None else None
    looked = path is None and reason is None and (unanswered := _unanswered()) is not None
    if looked:  # (not in the cache: the hub is asked again, the network may be back)
        path = _in_cache(hf, repo_id, filename, pin)
    if reason is None and path is None:
        try:
            metadata = _probe(hf, hf.hf_hub_url(repo_id, filename, **pin))
            published = _sha256_or_none(getattr(metadata, "etag", None))  # (an LFS file's etag is its sha256)
        except Exception as err:  # noqa: BLE001 - unreachable, refused, not found: all end in the cache
            reason, refused = f"{type(err).__name__}: {err}", _refusal(err, repo_id)
    if path is not None:
        log.debug("using the cached %s of %s%s", filename, repo_id, f" ({unanswered})" if looked else "")
    elif reason is None:
        try:
            with _hub_log_quiet():
                path = Path(hf.hf_hub_download(repo_id=repo_id, filename=filename, **pin))
        except Exception as err:  # noqa: BLE001 - network, auth and hub errors all end the same way
            raise _refusal(err, repo_id) or DownloadError(
                f"could not download {filename} from the Hugging Face repository {repo_id} "
                f"({type(err).__name__}: {err}). To get it anyway, {by_hand}."
            ) from err
    else:
        path = None if looked else _in_cache(hf, repo_id, filename, pin)
        if path is None:
            raise refused or DownloadError(
                f"cannot download {filename} from the Hugging Face repository {repo_id} ({reason}) and it is "
                f"not in the hub cache. To get it, {by_hand}."
            )
        log.debug("using the cached %s of %s (%s)", filename, repo_id, reason)
    if sha256:
        check_sha256(path, sha256, what)
    elif published:
        check_sha256(path, published, f"{what}; the sha256 the hub publishes for it")
    elif (recorded := _blob_sha256(path)) is not None:
        check_sha256(path, recorded, f"{what}; the sha256 its hub cache entry is named by")
    return path


def _in_cache(hf, repo_id: str, filename: str, pin: dict) -> Path | None:
    """``filename`` of ``repo_id`` (at ``pin``'s revision) in the hub cache, or None where it is not there (or its
    entry is broken)."""
    try:
        return Path(hf.hf_hub_download(repo_id=repo_id, filename=filename, local_files_only=True, **pin))
    except Exception:  # noqa: BLE001 - not in the cache, whatever the error says
        return None


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
        _probe(hf, url)
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
    cached = _cached_files(repo_id)  # (its snapshot in the hub cache, where there is one)
    if offline():
        reason = "HF_HUB_OFFLINE is set"
    elif cached and (unanswered := _unanswered()) is not None:
        reason = unanswered  # (a hub that did not answer lately is not asked for what the cache holds)
    else:
        reason = unreachable(repo_id)
    if reason is not None:
        if cached:
            log.debug("listing the cached snapshot of %s (%s)", repo_id, reason)
            return cached
        raise DownloadError(f"cannot list the Hugging Face repository {repo_id} ({reason}) and the hub cache has no "
                            f"snapshot of it; {manual}")  # fmt: skip
    try:
        return list(hf.list_repo_files(repo_id))
    except Exception as err:  # noqa: BLE001
        raise _refusal(err, repo_id) or DownloadError(
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
