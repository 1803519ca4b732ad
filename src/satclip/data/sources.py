"""Where S2-100K files come from: the Hugging Face hub, or a local copy of the repository.

A source lists the repository's files (:class:`RemoteFile`: path, size, and a checksum where the source
publishes one) and fetches one file into a directory. :func:`satclip.data.download.download_s2100k`
does the rest (checksums, extraction, resuming), so tests can pass a fake source.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import BadInputError, MissingExtraError
from ..io.hub import REPO_ID, DownloadError
from ..optional import require
from ..paths import expand_user, not_a_directory

log = logging.getLogger(__name__)

HF_REPO = "torchgeo/s2-100k"
#: revision → SHA-256 of files, as published by torchgeo (``S2100k`` pinned to this hub commit); used for a
#: local copy when its revision is given (the hub itself publishes SHA-256 for every LFS file)
KNOWN_SHA256: dict[str, dict[str, str]] = {
    "fbdbb78ba57d22d5b6be203913f1e6020c2b4e0a": {
        "index.csv": "9fdcdec776b331fcc2d9ab5af18355efc5bd0716df33ab78e1ff03f60cf343ad",
        "satclip.tar": "da1bae4e9dd44fb00e5f1fc537b752f5025ac908a73b5a9e24ff90bcbdd56edb",
    },
}


def hub_url(repo_id: str = HF_REPO, revision: str | None = None) -> str:
    return f"https://huggingface.co/datasets/{repo_id}/tree/{revision or 'main'}"


def offline_instructions(root: Path | str, repo_id: str = HF_REPO, revision: str | None = None) -> str:
    """What to fetch by hand, and where to put it, when the hub cannot be reached (the commands fetch
    ``revision``; the ``--from`` run of a git clone passes its commit on, for :data:`KNOWN_SHA256`: an ``hf
    download`` folder records the checksums itself)."""
    url = shlex.quote(f"https://huggingface.co/datasets/{repo_id}")
    clone = f"git clone {url} DIR"
    as_revision = ""
    if revision:  # (--no-checkout: the default branch's 100 GB of LFS files are not fetched first; any revision)
        clone = f"git clone --no-checkout {url} DIR && git -C DIR checkout {shlex.quote(revision)}"
        as_revision = f" --revision {shlex.quote(revision)}"
    command = f"satclip data download {shlex.quote(str(root))} --from DIR"
    return (
        f"To download S2-100K elsewhere, fetch the dataset repository {hub_url(repo_id, revision)} — "
        f"index.csv and the image archives (*.tar / *.tar.xz, e.g. data/shard-*.tar or satclip.tar), about "
        f"100 GB — e.g. with `{clone}` (git-lfs installed) or `hf download {shlex.quote(repo_id)} --repo-type "
        f"dataset{as_revision} --local-dir DIR` (huggingface_hub older than 0.34: `huggingface-cli download`, the same "
        f"arguments). Copy that folder to this machine and run `{command}` (a git clone: `{command} --revision "
        f"\"$(git -C DIR rev-parse HEAD)\"`, so that the checksums satclip knows of that commit are checked): it "
        f"checks and extracts the archives into {Path(root) / 'images'} and writes {Path(root) / 'index.csv'}."
    )


def _huggingface_hub():
    try:
        return require("huggingface_hub", "hub", "downloading from the Hugging Face hub")
    except MissingExtraError as err:
        raise MissingExtraError(
            f"{err}; or fetch the files by hand and use `satclip data download ROOT --from DIR`"
        ) from err


@dataclass(frozen=True)
class RemoteFile:
    """One file of the dataset repository.

    ``path`` is '/'-separated inside the repository; ``sha256`` is the content's SHA-256 (the hub
    publishes it for LFS files); ``git_sha1`` is the git blob id (a content checksum for small, non-LFS
    files). Either may be ``None`` when the source publishes none.
    """

    path: str
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class Source(Protocol):
    """A dataset repository: ``list_files()`` and ``fetch(file, directory) -> local path``."""

    description: str

    def list_files(self) -> list[RemoteFile]: ...

    def fetch(self, file: RemoteFile, directory: Path) -> Path:
        """Make ``file`` available under ``directory`` (resuming a partial copy there) and return its path."""
        ...


def _check_repo_id(repo_id: str) -> None:
    """Raise :class:`BadInputError` unless ``repo_id`` is a hub repository id (``owner/name``): a local path is
    never sent to the hub (a directory ``owner/name`` was, and ``./repo`` met the hub client's own error, which
    named neither --repo nor --from)."""
    if expand_user(repo_id).is_dir():
        raise BadInputError(f"--repo {repo_id} is a local directory, not a Hugging Face dataset repository; satclip "
                            f"sends no local path to the hub: for a local copy of the repository use --from "
                            f"{shlex.quote(repo_id)}")  # fmt: skip
    if not REPO_ID.match(repo_id) or expand_user(repo_id).exists():
        raise BadInputError(f"--repo {repo_id!r} is not a Hugging Face dataset repository id (owner/name, of letters, "
                            "digits, '.', '_' and '-'); for a local copy of the repository use --from DIR")  # fmt: skip


#: how a path begins, and no git revision can (git check-ref-format: no component starts with '.', no '~')
_PATH_START = ("/", "./", "../", "~", ".\\", "..\\")


def _check_revision(revision: str | None) -> None:
    """Raise :class:`BadInputError` where ``revision`` is a local path, not a branch, tag or commit: one written as a
    path (absolute, ``./``, ``../``, ``~``), or one with a separator that exists here. A local path is never sent to
    the hub (``--revision ./copy``, given for ``--from``, was asked of huggingface.co as a branch). A name such as
    ``refs/pr/1`` or ``v1.0`` stays a revision where no such path exists here, and one without a separator
    (``main``) also where it does."""
    if revision is None:
        return
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    path = expand_user(revision)
    written_as_path = revision in (".", "..") or revision.startswith(_PATH_START)
    if written_as_path or (any(sep in revision for sep in separators) and path.exists()):
        kind = "a local directory" if path.is_dir() else ("a local file" if path.exists() else "a local path")
        raise BadInputError(f"--revision {revision} is {kind}, not a revision (branch, tag or commit) of the Hugging "
                            f"Face repository; satclip sends no local path to the hub: for a local copy of the "
                            f"repository use --from {shlex.quote(revision)}")  # fmt: skip


class HubSource:
    """The dataset repository on the Hugging Face hub (``huggingface_hub``; resumes partial downloads)."""

    def __init__(self, repo_id: str = HF_REPO, revision: str | None = None, token: str | None = None):
        _check_repo_id(repo_id)
        _check_revision(revision)
        self.repo_id = repo_id
        self.revision = revision
        self.token = token
        self.description = hub_url(repo_id, revision)

    def list_files(self) -> list[RemoteFile]:
        from ..io.hub import unreachable

        hub = _huggingface_hub()
        reason = unreachable(self.repo_id, repo_type="dataset", revision=self.revision)
        if reason is not None:  # at once, not after the hub client's retries
            # (the hub client's own ends in a full stop: "…environment variable.). To download")
            raise DownloadError(f"cannot list {self.description} ({reason.rstrip('.')}).")
        try:
            tree = hub.HfApi().list_repo_tree(
                self.repo_id, recursive=True, revision=self.revision, repo_type="dataset", token=self.token
            )
            entries = list(tree)
        except Exception as err:  # noqa: BLE001 - offline, auth and HTTP errors all end the same way
            raise DownloadError(
                f"cannot list {self.description} ({type(err).__name__}: {err})."
            ) from err
        files = []
        for entry in entries:
            if not hasattr(entry, "size") or not hasattr(entry, "lfs"):  # a folder
                continue
            lfs = entry.lfs
            if lfs is not None:  # the hub publishes the content's SHA-256
                files.append(RemoteFile(entry.path, entry.size, sha256=getattr(lfs, "sha256", None)))
            else:  # a plain git blob: its id is a SHA-1 of the content
                files.append(RemoteFile(entry.path, entry.size, git_sha1=getattr(entry, "blob_id", None)))
        return files

    def fetch(self, file: RemoteFile, directory: Path) -> Path:
        hub = _huggingface_hub()
        try:
            path = hub.hf_hub_download(
                self.repo_id,
                file.path,
                repo_type="dataset",
                revision=self.revision,
                local_dir=directory,
                token=self.token,
            )
        except Exception as err:  # noqa: BLE001
            raise DownloadError(
                f"cannot download {file.path} from {self.description} ({type(err).__name__}: {err})"
            ) from err
        return Path(path)


#: a URL's scheme and ``//`` (``file:///x``, ``https://…``, ``hf://…``); ``C:/x`` is a path
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def url_advice(text: str) -> str | None:
    """Why the URL ``text`` is no ``--from`` and what to give instead (it takes a local directory), or None where
    ``text`` is no URL: a ``file:`` URL's path on this machine (decoded), else a local copy or the hub. Checked on
    the text as typed: ``file:///x`` made a path is ``file:/x``, and was "no such directory"."""
    if not _URL.match(text):
        return None
    url = urllib.parse.urlsplit(text)
    if url.scheme.lower() == "file" and url.netloc in ("", "localhost"):
        fix = f"give its path, --from {shlex.quote(urllib.request.url2pathname(url.path))}"
    elif url.scheme.lower() == "file":
        fix = f"copy the repository from {url.netloc} to this machine and give that directory"
    else:
        fix = "give the path of a local copy, or leave --from out to download from the hub (--repo names one)"
    return f"{text} is a URL, and --from takes a local directory: {fix}"


class LocalSource:
    """A local copy of the repository (a ``git clone`` or ``hf download`` folder).

    Files are used in place (never moved or deleted). Checksums: the SHA-256 that ``hf download
    --local-dir`` (``huggingface-cli download`` before huggingface_hub 0.34) records in
    ``.cache/huggingface/download/*.metadata``, else :data:`KNOWN_SHA256` when ``revision`` names a known commit,
    else none (and no size: a local file's size is its own, nothing to check it against).
    """

    def __init__(self, directory: str | Path, revision: str | None = None):
        advice = url_advice(os.fspath(directory))
        if advice:
            raise BadInputError(f"--from {advice}")
        self.directory = Path(directory)
        self.revision = revision
        self.description = str(self.directory)
        what = not_a_directory(self.directory)
        if what:  # (it was "no such directory")
            raise BadInputError(
                f"--from {self.directory} is {what}: give the directory of a local copy of the repository (a "
                "`git clone` or `hf download --local-dir` folder)"
            )
        if not self.directory.is_dir():
            raise BadInputError(f"--from {self.directory}: no such directory")

    def _recorded_sha256(self, relative: str) -> str | None:
        metadata = self.directory / ".cache" / "huggingface" / "download" / f"{relative}.metadata"
        try:
            lines = metadata.read_text().splitlines()
        except OSError:
            return None
        etag = lines[1].strip().strip('"').lower() if len(lines) > 1 else ""
        return etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None

    def list_files(self) -> list[RemoteFile]:
        known = KNOWN_SHA256.get(self.revision or "", {})
        files = []
        for path in sorted(self.directory.rglob("*")):
            relative = path.relative_to(self.directory)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                name = relative.as_posix()
                sha256 = self._recorded_sha256(name) or known.get(name)
                files.append(RemoteFile(name, None, sha256))
        return files

    def fetch(self, file: RemoteFile, directory: Path) -> Path:
        path = self.directory / file.path
        if not path.is_file():
            raise DownloadError(f"{path} disappeared")
        if path.stat().st_size < 1024 and path.read_bytes().startswith(b"version https://git-lfs"):
            raise DownloadError(
                f"{path} is a git-lfs pointer, not the file: run `git lfs pull` in {self.directory} first"
            )
        return path
