"""Download S2-100K into ``ROOT/index.csv`` + ``ROOT/images/*.tif``, resumably.

The hub repository ``torchgeo/s2-100k`` has held the images as tar archives in different layouts over
time (one ``satclip.tar``; ``images/data_{1..10}.tar.xz``; ``data/shard-*.tar``), so every ``*.tar``,
``*.tar.gz``/``.tgz``, ``*.tar.xz`` and ``*.tar.bz2`` of the repository is treated as a shard.

Per shard: fetch into ``ROOT/.download/`` (``huggingface_hub`` resumes a partial download), check its
SHA-256 (or git blob id) when the source publishes one, extract its ``.tif`` members into a private
temporary folder beside ``images/``, move them into ``images/`` one by one (each move atomic), then write the
shard's marker ``ROOT/.download/done/<shard>.json`` and delete the archive. A rerun skips shards with a
marker whose images are all still in ``images/`` and whose source file is still the one extracted (the checksum
the source lists, else a local copy's size and modification time, :func:`_identity`), and redoes any other shard
from scratch, so an interruption at any point loses at most one shard's work and never leaves a half-written image
in ``images/``. Deleting ``ROOT/.download`` makes the next run check and extract every archive again.

``index.csv`` is parsed before it is published (a file that is not an S2-100K index never reaches ``ROOT``);
its marker records the source, the SHA-256 of what was written and the source file's identity, and a rerun
fetches it again unless all still hold. An existing ``ROOT/index.csv`` that differs from the source's is replaced
only where satclip wrote it and it is unchanged since; an image that differs from the member of its name never is,
but for one satclip extracted from the previous version of the same shard, unchanged since (the shard's marker records
each image's SHA-256).
A run that leaves images ``index.csv`` lists in none of the archives fails (:class:`IncompleteDownloadError`),
keeping what it extracted. An archive that fails its checksum or cannot be read is
skipped, the others extracted, and the run then fails naming every one (:func:`_damaged`): a local copy's is bad input,
to be replaced; a downloaded one is deleted, so that the next run fetches it again. Either way the rerun redoes only
them.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import logging
import lzma
import shlex
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import safe_output
from ..digests import file_digest
from ..errors import BadInputError, OutputExistsError
from ..io.hub import DownloadError
from .index import name_problem, read_index
from .sources import KNOWN_SHA256, HubSource, LocalSource, RemoteFile, Source, offline_instructions

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2")
IMAGE_SUFFIXES = (".tif", ".tiff")
STATE_DIR = ".download"

Progress = Callable[[Iterable, int], Iterable]


class DamagedFileError(DownloadError):
    """Files of the source are damaged (:class:`ChecksumError`, :class:`ArchiveError`), each named; those
    downloaded are deleted, so that a rerun fetches them again."""


class ChecksumError(DamagedFileError):
    """A fetched file does not match the checksum its source publishes."""


class ArchiveError(DamagedFileError):
    """An archive cannot be read: damaged, truncated, or no tar file."""


class DamagedCopyError(DamagedFileError, BadInputError):
    """Files of a local copy (``--from``) fail their checksum or are no readable archive: bad input (exit 2); the copy
    is never changed."""


class ArchiveClashError(ArchiveError):
    """Two archives of the source hold an image of one name with other bytes: both may be intact, so the fix is
    the source's (one revision, or one of the two archives), not an intact copy of either."""


class IncompleteDownloadError(DownloadError):
    """Every archive was extracted, yet images ``index.csv`` lists are in none of them: the dataset is incomplete
    (exit 1, as ``satclip data verify`` on it); the images extracted are kept."""


class UnusableCopyError(DownloadError, BadInputError):
    """A file of a local copy cannot be used as it is (a git-lfs pointer): bad input, which a rerun alone does not
    mend (it said "rerun the same command to resume", exit 1)."""


@dataclass(frozen=True)
class DownloadSummary:
    """What :func:`download_s2100k` did: shards extracted now, shards already done, images added."""

    root: Path
    extracted: tuple[str, ...]
    skipped: tuple[str, ...]
    images: int


def _marker(root: Path, file: RemoteFile) -> Path:
    return root / STATE_DIR / "done" / (file.path.replace("/", "__") + ".json")


def _record(marker: Path) -> dict | None:
    """What a marker records, or ``None`` when there is none or it is unreadable (its file is then redone)."""
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def verify_checksum(path: Path, file: RemoteFile) -> str:
    """Raise :class:`ChecksumError` unless ``path`` matches ``file``'s checksum; return what was checked:
    ``"size only"`` or ``"unchecked"`` where the source publishes no checksum (:func:`_warn_of_unchecked` says so,
    once a run)."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise ChecksumError(f"{file.path}: {size} bytes, expected {file.size} (incomplete or wrong file)")
    expected = file.sha256
    if expected:
        actual = file_digest(path, "sha256")
        if actual != expected.lower():
            raise ChecksumError(f"{file.path}: sha256 {actual}, expected {expected}")
        return f"sha256 {expected}"
    if file.git_sha1:
        actual = file_digest(path, "sha1", f"blob {size}\0".encode())
        if actual != file.git_sha1.lower():
            raise ChecksumError(f"{file.path}: git blob id {actual}, expected {file.git_sha1}")
        return f"git blob {file.git_sha1}"
    return "size only" if file.size is not None else "unchecked"


def _warn_of_unchecked(files: list[RemoteFile], source: Source) -> None:
    """Say once, before they are fetched, which of ``files`` the source publishes no checksum for (it was said once
    per file: a line per shard, a hundred of them)."""
    revision = getattr(source, "revision", None)
    if not isinstance(source, LocalSource):
        unknown = "they are not checked"
    elif revision:  # (it said "pass the copy's --revision if it is a known one" to a run given --revision v1.0)
        unknown = (f"--revision {revision} is no commit satclip knows checksums of (known: {', '.join(KNOWN_SHA256)}), "
                   "so they are not checked")  # fmt: skip
    else:
        commit = f"$(git -C {shlex.quote(str(source.directory))} rev-parse HEAD)"
        unknown = (f"they are not checked: for a git clone pass --revision \"{commit}\" (satclip knows the checksums "
                   f"of commit {', '.join(KNOWN_SHA256)})")  # fmt: skip
    for sized, said in ((True, "only their sizes are checked"), (False, unknown)):
        unchecked = [f.path for f in files if not _listed_checksum(f) and (f.size is not None) == sized]
        if unchecked:
            log.warning("%s publishes no checksum for %d of the %d file(s) to read (first: %s): %s",
                        source.description, len(unchecked), len(files), unchecked[0], said)  # fmt: skip


def is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def _fetched(source: Source, path: Path, staging: Path) -> bool:
    """Whether ``path`` is satclip's own download, which it may delete: a file a fetching source wrote into
    ``staging``. A local copy's file is used in place and never is, wherever the copy lies (even a
    ``--from ROOT/.download/files`` kept by an earlier ``--keep-archives`` run), so this is decided by the
    source, not by where the file is."""
    return not isinstance(source, LocalSource) and path.resolve().is_relative_to(staging.resolve())


def _fetch_checked(source: Source, file: RemoteFile, staging: Path) -> Path:
    """Fetch ``file`` and check it; a file that fails the check is deleted (if it is ours) and re-raised, the file
    named (:func:`_damaged` adds what to do)."""
    try:
        path = source.fetch(file, staging)
    except DownloadError as err:
        if isinstance(source, LocalSource):
            raise UnusableCopyError(str(err)) from err
        raise DownloadError(f"{err}; rerun the same command to resume") from err
    except Exception as err:  # noqa: BLE001 - a broken connection, a full disk, ...
        raise DownloadError(
            f"fetching {file.path} failed ({type(err).__name__}: {err}); rerun the same command to resume"
        ) from err
    try:
        verify_checksum(path, file)
    except ChecksumError as err:  # (it named neither the file read nor what to do)
        if _fetched(source, path, staging):
            path.unlink(missing_ok=True)
            raise
        raise ChecksumError(f"{err}, in {path}: the copy is damaged or another version") from None
    return path


def _damaged(source: Source, problems: dict[str, str], done: int = 0) -> DamagedFileError:
    """The error naming every damaged file of the source (path → what is wrong) and what to do, once for all of
    them (it stopped at the first damaged archive, and the intact ones after it were never extracted): a local
    copy's are replaced by the user (bad input), downloads were deleted and a rerun fetches them again. ``done``:
    how many archives are extracted, which the rerun leaves as they are."""
    one = len(problems) == 1
    it, paths = ("it" if one else "them"), ", ".join(problems)
    archives = "archive is" if done == 1 else f"{done} archives are"
    others = f" (the other {archives} done: the rerun redoes only {it})" if done else ""
    if isinstance(source, LocalSource):
        fix = (f"replace {it} with {'an intact copy' if one else 'intact copies'} of {paths} and rerun the same "
               f"command{others}")  # fmt: skip
        return DamagedCopyError(f"{'; '.join(problems.values())}; {fix}")
    fix = (f"{'the download was' if one else 'the downloads were'} damaged and {'is' if one else 'are'} deleted; rerun "
           f"the same command to fetch {it} again{others}")  # fmt: skip
    return DamagedFileError(f"{'; '.join(problems.values())}: {fix}")


def extract_images(
    archive: Path,
    images: Path,
    label: str,
    extracted_by: dict[str, str] | None = None,
    previous: dict[str, str | None] | None = None,
) -> tuple[dict[str, str], int, list[str]]:
    """Move the ``.tif`` members of ``archive`` into ``images/`` (flattened; other members ignored); returns
    their names with the SHA-256 of each, how many of them were not in ``images/`` already or replaced (a rerun
    after one image was deleted extracts its shard again, and said all of its images were extracted), and what
    was done to the image members not extracted as named: one whose path leads outside the archive (absolute, or
    with ``..``) extracted under its base name, one that is no regular file (a link) skipped (they were counted,
    or left out, silently).

    Members are streamed into a temporary directory beside ``images/<label>`` first; only complete files
    are moved into ``images/``; an image already there is kept if it holds the member's bytes (moves are
    atomic: a run stopped before left it complete), and refused otherwise (:class:`OutputExistsError`: it
    was kept, and the dataset said complete, with a file of the user's or a damaged one in the image's place).
    Member paths are reduced to their base name, so no member can write outside ``images/``.

    ``extracted_by``: image name → the archive an earlier shard extracted it from; an image of that name with
    other bytes here is the archives' clash, not a file of the user's.

    ``previous``: image name → the SHA-256 recorded of the image satclip extracted from the previous version of
    this archive (``None`` where an older satclip recorded none): one still of those bytes is replaced by the
    member of its name (it was refused as a file of the user's); one changed since is refused as the user's, and
    one without a recorded SHA-256 is refused as satclip's own, whose changes cannot be told.

    Every image of ``images/`` in the way is named at once, before any member is moved into ``images/``.

    Raises:
        ArchiveError: ``archive`` cannot be read (nothing is moved into ``images/`` then).
        ArchiveClashError: it holds images another shard holds with other bytes (nothing is moved then).
        OutputExistsError: files of ``images/`` not extracted by an earlier shard, nor unchanged since this
            archive's previous version was, have the names of its images and other bytes (nothing is moved then).
    """
    safe_output.clean_stale(images / label)
    partial = safe_output.temp_path(images / label)
    partial.mkdir(parents=True)
    safe_output.mark_owned(partial, kind="download")
    digests, members, unusual = {}, {}, []
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if not name.lower().endswith(IMAGE_SUFFIXES) or name.startswith("."):
                    continue
                if not member.isfile():
                    kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                    unusual.append(f"{member.name!r} of {archive.name} skipped: {kind}")
                    continue
                if name_problem(member.name):
                    unusual.append(f"{member.name!r} of {archive.name} extracted as images/{name}: "
                                   f"{name_problem(member.name)}")  # fmt: skip
                if name in members:  # (the second replaced the first, and the image published was another's)
                    raise ArchiveError(f"cannot extract {archive}: it holds two images named {name} "
                                       f"({members[name]} and {member.name}), which would be one file in images/; "
                                       "it is no S2-100K shard")  # fmt: skip
                members[name] = member.name
                source = tar.extractfile(member)
                if source is None:
                    continue
                # a full disk or a file-size limit names the image (it said "while writing the output"), not the
                # temporary removed below
                digest = hashlib.sha256()  # (as it is copied: each image was read back whole to hash it)
                with source, safe_output.naming_as(partial, images), safe_output.writing(partial / name) as out:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                digests[name] = digest.hexdigest()
        # all of them named at once, before anything is moved (it named one a run, and published the images before)
        other = [name for name in digests
                 if (images / name).exists() and not _same_file(images / name, partial / name)]  # fmt: skip
        clashes = [f"{name} in {extracted_by[name]}" for name in other if name in (extracted_by or {})]
        if clashes:  # (it blamed a file of the user's, and moving it away made the other shard clash in turn)
            raise ArchiveClashError(
                f"cannot extract {archive}: another archive holds {len(clashes)} of its images with other bytes "
                f"({', '.join(clashes)}); the archives clash, and both may be intact (the source mixes two versions "
                "of S2-100K): download one --revision, or keep one version's archives in the local copy, and rerun"
            )
        own = {name: previous[name] for name in other if name in (previous or {})}
        unrecorded = [name for name, digest in own.items() if digest is None]
        replaced = {name for name, digest in own.items()
                    if digest is not None and file_digest(images / name, "sha256") == digest}  # fmt: skip
        other = [name for name in other if name not in replaced and name not in unrecorded]
        refused = []
        if other:
            yours = f"{images / other[0]} is not the image {other[0]} of {archive.name}" if len(other) == 1 else (
                f"{len(other)} files of {images} are not the images of their names in {archive.name}: "
                f"{', '.join(other)}")  # fmt: skip
            refused.append(f"{yours} (other bytes: a file of yours, or one changed since it was extracted); satclip "
                           f"never replaces {'it' if len(other) == 1 else 'them'}: move "
                           f"{'it' if len(other) == 1 else 'them'} away and rerun")  # fmt: skip
        if unrecorded:  # (said to be "a file of yours")
            ours = f"{images / unrecorded[0]} was" if len(unrecorded) == 1 else (
                f"{len(unrecorded)} files of {images} ({', '.join(unrecorded)}) were")  # fmt: skip
            refused.append(f"{ours} extracted by an earlier run from the previous version of {archive.name}, with no "
                           f"checksum recorded to tell whether {'it' if len(unrecorded) == 1 else 'they'} changed "
                           f"since: delete {'it' if len(unrecorded) == 1 else 'them'} to take the new one, and "
                           "rerun")  # fmt: skip
        if refused:
            raise OutputExistsError("; ".join(refused))
        added = 0
        for name in digests:
            if not (images / name).exists() or name in replaced:
                safe_output.publish(partial / name, images / name, overwrite=name in replaced)
                added += 1
    except (OutputExistsError, ArchiveError):
        raise
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:  # the system's (disk full, permissions), not the data's
            raise
        detail = str(err).partition("\n")[0].rstrip(":")  # tarfile lists each compression it tried below
        reason = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
        raise ArchiveError(f"cannot extract {archive}: not a readable tar archive ({reason})") from err
    finally:
        safe_output.remove_owned(partial)
    return digests, added, unusual


def _same_file(a: Path, b: Path) -> bool:
    """Whether the files ``a`` and ``b`` hold the same bytes."""
    return a.is_file() and filecmp.cmp(a, b, shallow=False)


def _identity(source: Source, file: RemoteFile) -> str | None:
    """What tells ``file`` of the source from another version of it: the checksum the source lists, else a local
    copy's size and modification time (a shard truncated, then put back whole, was never read again), else the
    size the source lists."""
    listed = _listed_checksum(file)
    if listed:
        return listed
    if isinstance(source, LocalSource):
        try:
            stat = (source.directory / file.path).stat()
        except OSError:
            return None
        return f"{stat.st_size} bytes, modified {stat.st_mtime_ns} ns"
    return None if file.size is None else f"{file.size} bytes"


def _shard_done(root: Path, images: Path, shard: RemoteFile, source: Source) -> bool:
    """Whether ``shard`` was extracted from the file the source now lists (:func:`_identity`) and its images are
    still in ``images/`` (a shard whose images were removed since is fetched again). A marker an older satclip
    wrote records no identity: it is compared by the SHA-256 it recorded, and where it recorded none (a source
    listing none) it is trusted as it was then, and its marker gets the identity of now, so that a later change is
    seen (every such shard was extracted again, and where the identity is ``None``, on every run)."""
    marker = _marker(root, shard)
    record = _record(marker)
    if record is None:
        return False
    identity = _identity(source, shard)
    older = "identity" not in record
    recorded = record.get("sha256") if older else record["identity"]
    if (recorded or not older) and recorded != identity:
        log.warning("%s is not the file extracted before (%s now, %s then); extracting it again", shard.path,
                    identity or "no checksum", recorded or "no checksum")  # fmt: skip
        return False
    names = record.get("names")
    missing = sum(not (images / name).is_file() for name in names or ())
    if missing:
        log.warning("%s: %d of its %d images are missing from %s; fetching it again", shard.path, missing,
                    len(names), images)  # fmt: skip
        return False
    if older:
        safe_output.write_bytes(marker, json.dumps({**record, "identity": identity}).encode())
    return True


def _listed_checksum(file: RemoteFile) -> str | None:
    """The checksum the source lists for ``file`` (SHA-256, else git blob id), if any."""
    return file.sha256 or file.git_sha1


def _index_done(root: Path, index: RemoteFile, source: Source) -> bool:
    """Whether ``ROOT/index.csv`` was fetched from ``source``, is unchanged since, and the source's file is still the
    one fetched (:func:`_identity`; markers of older versions, which recorded none, are not trusted)."""
    record = _record(_marker(root, index))
    published = root / "index.csv"
    if record is None or record.get("source") != source.description or not published.is_file():
        return False
    if record.get("sha256") != file_digest(published, "sha256"):
        log.warning("%s changed since it was downloaded; checking it against %s", published, source.description)
        return False
    return record.get("identity") == _identity(source, index)


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
            has no ``index.csv`` or no archives, downloaded files fail their checksum or cannot be read
            (:class:`DamagedFileError`, after the other archives are extracted; they are deleted, to be fetched
            again), two archives hold an image
            with other bytes (:class:`ArchiveClashError`), or images ``index.csv`` lists are in none of the
            archives (:class:`IncompleteDownloadError`; the images extracted are kept).
        BadInputError: ``root`` lies in the local copy read, ``index.csv`` is no S2-100K index
            (:class:`~satclip.data.index.IndexFormatError`), or files of a local copy fail their checksum or
            cannot be read (:class:`DamagedCopyError`, after the other archives are extracted).
        OutputExistsError: ``ROOT/index.csv`` exists, differs from the source's and is not satclip's own
            untouched copy, or ``root`` is another satclip command's output directory.
    """
    root = Path(root)
    source = source or HubSource()
    if safe_output.is_owned(root):  # a model, a run, an evaluation, a cache: the dataset was mixed into it
        raise OutputExistsError(
            f"{root} is {safe_output.owned_noun(root)} (another command's output), not a dataset root; "
            "download the dataset into another directory"
        )
    safe_output.check_not_in_output(root)
    if root.exists() and not root.is_dir():  # (said after the hub was asked, with "extract into p.csv/images")
        raise BadInputError(f"{root} is a file, not a dataset root: give a directory to create or complete")
    if isinstance(source, LocalSource):  # the dataset is written next to the copy it is read from, never into it
        for output in (root, root / "images", root / STATE_DIR):
            safe_output.check_not_inside(output, source.directory, "the local copy (--from)")
    try:
        files = source.list_files()
    except DownloadError as err:
        where = {"repo_id": source.repo_id, "revision": source.revision} if isinstance(source, HubSource) else {}
        # (a newline: "; To"; the instructions named torchgeo/s2-100k at main whatever --repo and --revision said)
        raise DownloadError(f"{str(err).rstrip('.')}. {offline_instructions(root, **where)}") from err
    index = next((f for f in files if f.path == "index.csv"), None)
    shards = sorted((f for f in files if is_archive(f.path)), key=lambda f: f.path)
    if index is None or not shards:
        if isinstance(source, LocalSource) and (source.directory / "index.csv").is_file() and (
            source.directory / "images"
        ).is_dir():  # (it listed the first 20 images as what it found, and never index.csv)
            raise BadInputError(
                f"--from {source.directory} is an S2-100K root already extracted (index.csv and images/), not a copy "
                f"of the hub repository: use it as data.root as it is; check it with `satclip data verify "
                f"{shlex.quote(str(source.directory))}`"
            )
        listing = ", ".join(f.path for f in files[:20]) + (" …" if len(files) > 20 else "")
        wrong = BadInputError if isinstance(source, LocalSource) else DownloadError  # (a local copy: bad input)
        raise wrong(
            f"{source.description} does not look like S2-100K: expected index.csv and image archives "
            f"({', '.join(ARCHIVE_SUFFIXES)}), found: {listing or 'no files'}"
        )
    with safe_output.exclusive(root):  # one download per dataset root
        staging = root / STATE_DIR / "files"
        images = root / "images"
        extracted, skipped, added, unusual = [], [], 0, []
        index_done = _index_done(root, index, source)
        done = {shard.path for shard in shards if _shard_done(root, images, shard, source)}
        todo = [shard for shard in shards if shard.path not in done]
        _warn_of_unchecked(([] if index_done else [index]) + todo, source)

        if index_done:
            skipped.append(index.path)
        else:
            try:
                path = _fetch_checked(source, index, staging)
            except ChecksumError as err:
                raise _damaged(source, {index.path: str(err)}) from err
            read_index(path)  # not UTF-8 CSV, or not the columns of an index: refused before it reaches ROOT
            data = path.read_bytes()
            published, written = root / "index.csv", False
            if published.is_file() and published.read_bytes() != data:
                if not _written_by_satclip(root, index):
                    raise OutputExistsError(
                        f"{published} exists and differs from the index.csv of {source.description}; satclip "
                        "does not replace it (not written by satclip, or changed since): move it away or download "
                        "into another root"
                    )
                # (its own copy, untouched, of an earlier revision: refused as if it were the user's)
                log.info("replacing %s, which satclip wrote, with the index.csv of %s", published, source.description)
                safe_output.write_bytes(published, data, overwrite=True)
                written = True
            elif not published.is_file():  # (one of the same bytes is kept: a link of the user's stays)
                safe_output.write_bytes(published, data, overwrite=False)
                written = True
            else:  # the same bytes: satclip's own still, where it wrote them before
                written = _written_by_satclip(root, index)
            record = {"path": index.path, "source": source.description, "sha256": hashlib.sha256(data).hexdigest(),
                      "identity": _identity(source, index), "written": written}  # fmt: skip
            safe_output.write_bytes(_marker(root, index), json.dumps(record).encode())
            extracted.append(index.path)

        safe_output.make_dirs(images)
        skipped += [shard.path for shard in shards if shard.path in done]
        if skipped:
            log.info("resuming: %d of %d files already done", len(skipped), len(shards) + 1)
        if done:  # (an interruption said only "interrupted", not that a rerun continues)
            safe_output.keep_work(root)
        extracted_by = {name: shard.path for shard in shards if shard.path in done
                        for name in (_record(_marker(root, shard)) or {}).get("names") or ()}  # fmt: skip
        damaged: dict[str, str] = {}  # shard → what is wrong: named at the end, the other shards extracted first
        for shard in progress(todo, len(todo)) if progress else todo:
            before = _record(_marker(root, shard)) or {}  # the images satclip extracted from its previous version
            previous = before.get("image_sha256") or dict.fromkeys(before.get("names") or ())
            try:
                path = _fetch_checked(source, shard, staging)
                digests, new_images, odd = extract_images(path, images, shard.path.replace("/", "__"), extracted_by,
                                                          previous)  # fmt: skip
            except ArchiveClashError as err:  # (both intact: "replace it with an intact copy" misled)
                if isinstance(source, LocalSource):
                    raise BadInputError(str(err)) from err
                raise
            except DamagedFileError as err:  # no marker is written: the rerun redoes this shard, and only it
                if isinstance(err, ArchiveError) and _fetched(source, path, staging):
                    path.unlink(missing_ok=True)
                log.warning("%s is damaged and is not extracted (%s); going on with the other archives", shard.path,
                            err)  # fmt: skip
                damaged[shard.path] = str(err)
                continue
            extracted_by.update(dict.fromkeys(digests, shard.path))
            count = len(digests)
            record = {"path": shard.path, "sha256": shard.sha256, "identity": _identity(source, shard), "images": count,
                      "names": list(digests), "image_sha256": digests}  # fmt: skip
            safe_output.write_bytes(_marker(root, shard), json.dumps(record).encode())
            safe_output.keep_work(root)
            if not keep_archives and _fetched(source, path, staging):
                path.unlink(missing_ok=True)
            log.info("%s: %d images", shard.path, count)
            extracted.append(shard.path)
            added += new_images
            unusual += odd
        if unusual:  # (once a run, as the rest of its report)
            log.warning("%d image member(s) of the archives were not extracted as named (first: %s)", len(unusual),
                        unusual[0])  # fmt: skip
        if damaged:  # (before the images they hold are said to be in none of the archives)
            raise _damaged(source, damaged, len(shards) - len(damaged))
        _check_complete(root, images, source)
    return DownloadSummary(root, tuple(extracted), tuple(skipped), added)


def _written_by_satclip(root: Path, index: RemoteFile) -> bool:
    """Whether ``ROOT/index.csv`` is the file satclip wrote there, unchanged since (its marker says it wrote it)."""
    record = _record(_marker(root, index)) or {}
    published = root / "index.csv"
    return record.get("written") is True and record.get("sha256") == file_digest(published, "sha256")


def _check_complete(root: Path, images: Path, source: Source) -> None:
    """Raise :class:`IncompleteDownloadError` where images ``index.csv`` lists are in no archive (a copy whose
    archives are not the index's said "0 images extracted", exit 0, where `satclip data verify` exits 1)."""
    try:
        listed = read_index(root / "index.csv").filenames
    except (ValueError, OSError):  # (refused when it was fetched; reported by verify)
        return
    missing = [name for name in listed if not (images / name).is_file()]
    if missing:
        quoted = shlex.quote(str(root))
        raise IncompleteDownloadError(
            f"{len(missing)} of the {len(listed)} images {root / 'index.csv'} lists are in none of the archives of "
            f"{source.description} (first: {', '.join(missing[:3])}); the images extracted are kept: "
            f"put the missing archives (or intact copies of truncated ones) in the source and rerun, or delete "
            f"{root / STATE_DIR} to extract every archive again; `satclip data verify {quoted}` lists them"
        )
