"""Output safety, written once: every file or directory satclip writes goes through this module.

The rules:

* A result appears complete or not at all: it is written under a temporary sibling name
  (``.NAME.satclip-tmp-PID-XXXXXX``), fsynced, and renamed into place (:func:`atomic_file`,
  :func:`atomic_dir`, :func:`publish`). Temporaries are removed on failure, and those left by a process
  that died are removed by the next write of the same path.
* A path is deleted or replaced only if satclip created it or the user said so: a directory satclip
  creates holds a marker file (:data:`MARKER`); an existing file is replaced only with ``overwrite=True``
  (the CLI's ``--overwrite``); a directory without the marker is never replaced or deleted, whatever the
  flags; an output that is one of the inputs is refused.
* Resumable work is locked (:func:`exclusive`): a second run on the same output fails at once naming the
  PID that holds it; the lock of a process that died is taken over (the kernel releases ``flock`` locks
  with their process).
* A full disk or a file-size limit is an ``OSError`` naming the output (ENOSPC, EFBIG), never a
  serialiser's errno-less error or abort: files are written with Python's own I/O (:func:`writing`,
  :func:`write_data`, :func:`write_serialised`), and errors naming a temporary name the output instead.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from . import interrupts
from .errors import BadInputError, LockedError, OutputExistsError, SatclipError, check_flags
from .paths import cache_dir, expand_user, in_cache, not_a_directory, special_kind

log = logging.getLogger(__name__)

#: file inside every directory satclip creates; proves that satclip may replace or delete it
MARKER = ".satclip-output"
_TMP_TAG = ".satclip-tmp-"
#: ``.NAME.satclip-tmp-PID-hHOSTID-xxxxxx`` (``HOSTID``: :func:`host_id`); an older satclip's have no ``-hHOSTID``
_TMP_PID = re.compile(re.escape(_TMP_TAG) + r"(\d+)(?:-h([0-9a-f]{8}))?-[0-9a-f]+$")


#: directories this process created (missing parents of outputs, satclip directories), in order: those left
#: empty by a command that failed are removed again (:func:`remove_created_if_empty`)
_CREATED: list[Path] = []
#: the user's empty directories this process marked as satclip's (:func:`make_owned_dir`): a command that fails
#: leaving nothing in one takes its marker back, so that the directory is the user's again, not satclip's to replace
_ADOPTED: list[Path] = []
#: what satclip writes in its work directories, by kind (:func:`declare_contents`)
_CONTENTS: dict[str, tuple[str, ...]] = {}
#: where this command keeps work a rerun continues from (:func:`keep_work`)
_KEPT: list[Path] = []
#: ``extra=`` of an INFO record saying what a run takes over from an earlier one (a corpus, a feature cache,
#: finished folds, trained epochs) or must start again: the demo's console, which shows warnings only, shows these
RESUMED = {"resumed": True}


# --------------------------------------------------------------------------------------------- ownership
#: the errors of creating something where no folder can hold it (/proc/nope: "No such file or directory", naming
#: the folder and no output): bad input, said naming the output; the others (permission, read-only, full) the CLI says
NO_PLACE = (errno.ENOENT, errno.ENOTDIR)


def make_dirs(path: str | Path) -> Path:
    """``mkdir -p path``, remembering each directory created (plain directories, no marker: satclip never
    replaces or deletes them, except to remove them again, empty, when the command that made them fails)."""
    path = Path(path)
    what = not_a_directory(path)
    if what:
        raise BadInputError(f"{path} is {what}, not a directory, so nothing can be written into it; choose another "
                            "output path")  # fmt: skip
    if path.is_symlink() and not path.exists():  # (a lock beside an output in it was "unexpected error (OSError)")
        raise BadInputError(f"{path} is a symbolic link to nothing (its target is missing, or a loop), so nothing can "
                            "be written into it; fix the link or choose another output path")  # fmt: skip
    if not path.exists():
        _check_parents(path)
    missing = []
    for directory in (path, *path.parents):
        if directory.exists() or directory.is_symlink():
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            directory.mkdir(exist_ok=True)
        except OSError as err:
            if err.errno not in NO_PLACE or in_cache(directory):
                raise  # (the CLI says what to do of these, and of a $SATCLIP_CACHE that cannot be made)
            # (/proc/nope/m: "No such file or directory: '/proc/nope'", naming no output and no fix)
            raise BadInputError(f"cannot create the folder {directory} ({err.strerror}): give an output in another "
                                "folder") from err  # fmt: skip
        _CREATED.append(directory)
    return path


def remove_created_if_empty(since: tuple[int, int] = (0, 0)) -> None:
    """Remove the directories this process created that hold nothing (but satclip's marker), newest first,
    and take back the marker it put into an empty directory of the user's that still holds nothing else (the
    directory stays): what a failed command leaves of the paths it made for its outputs. Called by the CLI on
    a failure; ``since``: only those recorded after that point (:func:`removed_if_left_empty`)."""
    while len(_CREATED) > since[0]:
        directory = _CREATED.pop()
        try:
            entries = {entry.name for entry in directory.iterdir()}
            if entries <= {MARKER}:
                if entries:
                    (directory / MARKER).unlink()
                directory.rmdir()
        except OSError:  # gone, not empty meanwhile, not ours to remove: leave it
            continue
    while len(_ADOPTED) > since[1]:
        directory = _ADOPTED.pop()
        try:
            if {entry.name for entry in directory.iterdir()} == {MARKER} and not directory.is_symlink():
                (directory / MARKER).unlink()
        except OSError:  # gone or changed meanwhile: leave it
            continue


@contextlib.contextmanager
def removed_if_left_empty() -> Iterator[None]:
    """A library call that fails takes back the directories it made that hold nothing, as a failed command does
    (:func:`remove_created_if_empty`); those of earlier calls stay."""
    since = (len(_CREATED), len(_ADOPTED))
    try:
        yield
    except BaseException:
        remove_created_if_empty(since)
        raise


def created_folders() -> list[Path]:
    """The missing folders of output paths this command created (that still exist): a typo in an output path made
    them without a word. One for each outermost folder made: the deepest folder that holds all those made in it (a
    chain ``results/typo`` is ``results/typo``; a dataset root ``d1`` with ``images/`` and ``.download/done`` made
    in it is ``d1``, the path the user typed, not the folders laid out in it, which it said instead). Not those
    within satclip's outputs or its cache, which it lays out."""
    made = [d for d in _CREATED if d.is_dir() and not any(is_owned(a) for a in (d, *d.parents)) and not in_cache(d)]
    deepest = [d for d in made if not any(d in other.parents for other in made)]
    outermost = [d for d in made if not any(other in d.parents for other in made)]
    return [Path(os.path.commonpath([d for d in deepest if d == top or top in d.parents])) for top in outermost]


def forget_created() -> None:
    """Start a new command: the directories created (or marked) so far are kept whatever happens next, and no work
    is recorded kept (:func:`keep_work`)."""
    _CREATED.clear()
    _ADOPTED.clear()
    _KEPT.clear()


def keep_work(path: str | Path) -> None:
    """Record that ``path`` holds work of this command a rerun continues from (a chunk saved, or an earlier run's
    work taken over): an interrupted command says where (:func:`kept_work`); one that has none says nothing of
    it (it said "the work done is kept" after a Ctrl-C before any)."""
    if Path(path) not in _KEPT:
        _KEPT.append(Path(path))


def work_finished(path: str | Path) -> None:
    """``path``'s work is done (a feature cache completed): an interruption later in the command does not name it
    as work a rerun continues (after a training stopped before its first epoch, the demo said "nothing to resume"
    and "the work done is kept in …/cache: rerun … to continue where it stopped" at once)."""
    if Path(path) in _KEPT:
        _KEPT.remove(Path(path))


def work_advised(path: str | Path) -> None:
    """The command has said itself how a rerun continues the work it keeps under ``path`` (the demo's advice at an
    interruption): an interruption names none of it (the CLI's "the work done is kept in …/eval: rerun the same
    command …" repeated the demo's "rerun the same satclip demo command" on the next line). Work kept elsewhere,
    by other work of the same process, is still named."""
    inside = [kept for kept in _KEPT if kept == Path(path) or Path(path) in kept.parents]
    for kept in inside:
        _KEPT.remove(kept)


def kept_work() -> list[Path]:
    """What :func:`keep_work` recorded since the command started."""
    return list(_KEPT)


def is_owned(path: str | Path) -> bool:
    """True for a directory satclip created (it holds :data:`MARKER`)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


def owned_kind(path: str | Path) -> str | None:
    """The kind a satclip directory's marker names (``"output"`` where it names none), or None for a path
    satclip did not create."""
    if not is_owned(path):
        return None
    kind = _marker(Path(path)).get("kind")
    return kind if isinstance(kind, str) else "output"


def declare_contents(kind: str, *patterns: str) -> None:
    """Declare what satclip writes in its directories of ``kind`` (work directories, whose files are written
    one by one and never recorded): :func:`fnmatch.fnmatch` patterns of paths relative to the directory, a
    matching folder covering everything in it, an empty folder on the way to a pattern declared too; ``{output}``
    stands for the directory's name without its ``.partial`` suffix (the output the work is for). Deleting such a
    directory (:func:`remove_owned`) is refused while it holds anything else (a user's notes put there were deleted
    with it); satclip's own temporaries, locks and markers in it are always its own."""
    _CONTENTS[kind] = patterns


def mark_owned(directory: str | Path, kind: str = "output") -> None:
    """Write the ownership marker into ``directory`` (which satclip has just created, or adopts as ``kind``)."""
    from . import __version__

    (Path(directory) / MARKER).write_text(json.dumps({"created_by": "satclip", "version": __version__, "kind": kind}))


def check_owned_dir(path: str | Path, kind: str = "output") -> None:
    """Raise unless :func:`make_owned_dir` would accept ``path`` for ``kind``; creates and marks nothing (a
    command checks its output first, and makes it once its inputs have been checked too).

    Raises:
        OutputExistsError: ``path`` is a file, a non-empty directory satclip did not create, or a satclip
            directory of another kind (a model directory given as an evaluation's output).
    """
    path = Path(path)
    if is_owned(path):
        found = _marker(path).get("kind")
        if isinstance(found, str) and found != kind:  # (a model directory is no evaluation or run directory)
            raise OutputExistsError(
                f"{path} is a satclip directory of kind {found!r}, not {kind!r}: satclip does not mix its outputs "
                "there; choose a new or empty directory"
            )
    elif path.exists() or path.is_symlink():
        _refuse_non_directory(path)
        if any(path.iterdir()):
            raise OutputExistsError(
                f"{path} {_unmarked(path)}; satclip never writes its work into such a directory: choose a new or "
                "empty directory"
            )


def _unmarked(path: Path) -> str:
    """What the non-empty directory ``path`` without :data:`MARKER` is, for a refusal: a part of the satclip
    directory it lies in (a run's ``export/``), a folder of satclip outputs only (the one a feature cache was made
    in), else a directory holding files satclip did not create (said of both, though their files were satclip's)."""
    if is_owned(path.parent):
        return (f"is part of {path.parent}, {owned_noun(path.parent)}, not a satclip directory of its own (no "
                f"{MARKER} marker)")
    entries = sorted(entry for entry in path.iterdir() if not entry.name.startswith("."))
    if entries and all(is_owned(entry) for entry in entries):
        return (f"holds other satclip outputs ({listed([f'{e.name}: {owned_noun(e)}' for e in entries])}) but is not "
                f"a satclip directory itself (no {MARKER} marker)")
    return f"holds files satclip did not create (no {MARKER} marker)"


def make_owned_dir(path: str | Path, kind: str = "output") -> Path:
    """Create ``path`` (and parents) as a satclip directory of ``kind``, or accept it if it is one already
    (of that kind) or empty. An empty directory of the user's is marked satclip's; if the command then fails
    leaving nothing in it, the CLI takes the marker back (:func:`remove_created_if_empty`).

    Raises:
        OutputExistsError: as :func:`check_owned_dir`.
    """
    path = Path(path)
    clean_stale(path)  # e.g. what a process killed while removing an earlier ``path`` left
    check_owned_dir(path, kind)
    if is_owned(path):
        marker = _marker(path)
        files = marker.get("files")
        changed = isinstance(files, dict) and "published" in files
        if changed:  # work goes on in it: its files are no longer those it was published with
            del files["published"]
        if not isinstance(marker.get("kind"), str):  # a damaged marker (or an older satclip's): of this kind now,
            from . import __version__  # not of any kind (an evaluation into it made it a plain output for good)

            marker.update({"created_by": "satclip", "version": __version__, "kind": kind})
            changed = True
        if changed:
            write_json(path / MARKER, marker)
        return path
    existed = path.is_dir()
    make_dirs(path)
    mark_owned(path, kind)
    if existed:
        _ADOPTED.append(path)
    return path


def remove_owned(path: str | Path, *, last: str | None = None) -> None:
    """Delete a directory satclip created; nothing happens if it does not exist. The directory is renamed to a
    temporary first, so a process killed while deleting leaves no half-deleted ``path`` (whose marker may be
    gone already) but a temporary that the next write of ``path`` removes (:func:`clean_stale`).

    ``last``, a file of the directory that tells the next run what a process killed meanwhile had done (a work
    directory's manifest recording that its output was published): the rest of the directory is deleted first, in
    place, then the directory with that file and its marker. (Renamed away at once, the record was gone for the
    whole deletion: gigabytes, seconds.)

    Raises:
        OutputExistsError: ``path`` exists but satclip did not create it (it is left as it is).
    """
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if not is_owned(path):
        raise OutputExistsError(
            f"refusing to delete {path}: satclip did not create it (no {MARKER} marker); move or remove it yourself"
        )
    _refuse_foreign(path, "delete")
    _refuse_read_only(path, f"delete {path}")
    if last is not None:
        for entry in path.iterdir():
            if entry.name not in (last, MARKER):
                _remove(entry)
    doomed = temp_path(path)
    path.rename(doomed)
    shutil.rmtree(doomed)
    clean_stale(path)


def remove_owned_files(directory: str | Path, names: Iterable[str]) -> None:
    """Delete the files ``names`` of a directory satclip created (its own outputs there, e.g. a report about
    to go stale); missing ones are fine.

    Raises:
        OutputExistsError: ``directory`` is not satclip's (nothing is deleted).
    """
    directory = _owned_or_refused(directory)
    for name in names:
        (directory / name).unlink(missing_ok=True)


def _owned_or_refused(directory: str | Path) -> Path:
    """``directory``, a satclip directory whose own files may be deleted, or :class:`OutputExistsError`."""
    directory = Path(directory)
    if not is_owned(directory):
        raise OutputExistsError(f"refusing to delete files in {directory}: satclip did not create it")
    return directory


def keep_only_written(directory: str | Path, group: str, written: Iterable[str | Path]) -> None:
    """Record ``written`` (files of ``directory`` satclip has just written) as the files of ``group`` there,
    and delete the files an earlier run recorded for ``group`` that this run did not write: outputs whose
    names depend on the run (one figure per task) do not linger beside results they no longer describe.
    Only recorded names are deleted, never another file of the directory.

    Raises:
        OutputExistsError: ``directory`` is not satclip's (nothing is deleted).
    """
    directory = _owned_or_refused(directory)
    names = sorted({Path(path).name for path in written})
    earlier = recorded_files(directory, group) or []
    _record_files(directory, group, names)  # (first: a kill between the two leaves files, not a lost record)
    for name in set(earlier) - set(names):
        (directory / name).unlink(missing_ok=True)


def _marker(directory: Path) -> dict:
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):  # (a damaged marker still marks the directory; its record is lost)
        marker = {}
    return marker if isinstance(marker, dict) else {}


def recorded_files(directory: str | Path, group: str) -> list[str] | None:
    """The names satclip recorded for ``group`` in ``directory``'s marker (plain names in it), or None when
    nothing was recorded (a directory of an older satclip, or a damaged marker)."""
    names = _recorded(Path(directory), group)
    return None if names is None else [name for name in names if name and Path(name).name == name]


def _recorded(directory: Path, group: str) -> list[str] | None:
    """What satclip recorded for ``group`` in ``directory``'s marker (texts: names, or relative paths for
    ``"published"``), or None when nothing was recorded."""
    files = _marker(directory).get("files")
    names = files.get(group) if isinstance(files, dict) else None
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else None


def _record_files(directory: Path, group: str, names: list[str]) -> None:
    marker = _marker(directory)
    if not isinstance(marker.get("files"), dict):
        marker["files"] = {}
    marker["files"][group] = names
    write_json(directory / MARKER, marker)


def _published_paths(directory: Path) -> list[str]:
    """Every file (or link) and empty folder in ``directory`` but its marker, as paths relative to it: what
    publishing records (an empty folder of the user's in it was deleted with it)."""
    return sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if (path.is_symlink() or not path.is_dir() or not any(path.iterdir()))
        and path.relative_to(directory).as_posix() != MARKER
        and not _own_temporary(directory, directory / path.relative_to(directory).parts[0])
    )


def _not_written_by_satclip(directory: Path) -> list[str]:
    """The files of a directory satclip published that it did not write there (a user's notes added later, in
    it or in one of its folders, e.g. a Zarr store's); none when it recorded nothing (a directory made step by
    step, or by an older satclip). A recorded folder name (what satclip recorded before it recorded files)
    covers everything in that folder."""
    published = _recorded(directory, "published")
    if published is None:
        return []
    recorded = set(published)
    return [
        path for path in _published_paths(directory)
        if not any(part in recorded for part in _and_parents(path))
    ]  # fmt: skip


def undeclared(directory: Path, kind: str | None = None) -> list[str]:
    """The files (and empty folders) of ``directory`` that :func:`declare_contents` of ``kind`` (default: the
    kind its marker names) does not cover; none for a kind that declared nothing."""
    patterns = _CONTENTS.get(kind or owned_kind(directory) or "")
    if patterns is None:
        return []
    output = directory.name.removesuffix(".partial")
    patterns = tuple(pattern.replace("{output}", glob.escape(output)) for pattern in patterns)
    # an empty folder on the way to a declared file is declared (a run's checkpoints/ before its first checkpoint)
    on_the_way = tuple(folder for pattern in patterns for folder in _and_parents(pattern)[1:])
    return [
        path for path in _published_paths(directory)
        if not any(_matches(_own_name(part), pattern) for part in _and_parents(path) for pattern in patterns)
        and not ((directory / path).is_dir() and any(_matches(path, folder) for folder in on_the_way))
        and path.rsplit("/", 1)[-1] != MARKER
    ]  # fmt: skip


def _matches(path: str, pattern: str) -> bool:
    """Whether ``path`` matches ``pattern`` component by component (:func:`fnmatch.fnmatchcase`'s ``*`` crosses
    ``/``: ``logs/version_*/metrics.csv`` declared a user's ``logs/version_0/mine/metrics.csv``)."""
    parts, wanted = path.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(map(fnmatch.fnmatchcase, parts, wanted))


def _own_name(path: str) -> str:
    """``path`` with a last component that is a temporary or the lock of a name (``.NAME.satclip-tmp-…``,
    ``.NAME.lock``) read as that name."""
    head, _, name = path.rpartition("/")
    if name.startswith(".") and (_TMP_PID.search(name) or name.endswith(".lock")):
        name = _TMP_PID.sub("", name)[1:].removesuffix(".lock")
    return f"{head}/{name}" if head else name


def _and_parents(path: str) -> list[str]:
    """``a/b/c`` → ``[a/b/c, a/b, a]``."""
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]


def _refuse_foreign(directory: Path, action: str) -> None:
    """Refuse to ``action`` ``directory`` while it holds anything satclip did not write as part of it, all named in
    one message: the files it said one kind at a time (first the other satclip outputs in it, then, once those were
    moved, the rest), and it said "satclip did not write" of a model `satclip convert` had written into a run."""
    foreign = _not_written_by_satclip(directory)
    extra = undeclared(directory)
    nested = _other_outputs(directory, [*foreign, *extra])
    if not nested and foreign:
        raise OutputExistsError(
            f"refusing to {action} {directory}: satclip wrote it, but not {listed(foreign)} in it; move those out "
            "first or choose another output path"
        )
    if not nested and not extra:
        return
    inside = tuple(f"{name}/" for name, _ in nested)
    held = [f"{name} ({noun})" for name, noun in nested]
    held += [path for path in dict.fromkeys([*foreign, *extra]) if not path.startswith(inside) and path not in
             {name for name, _ in nested}]  # fmt: skip
    kind = owned_kind(directory)
    writer = f"the {KIND_NOUNS[kind]}" if kind in KIND_NOUNS else "it" if nested else "satclip"
    raise OutputExistsError(
        f"refusing to {action} {directory}, satclip's {kind} directory: it also holds {listed(held)}, which "
        f"{writer} did not write; move those out and run again"
    )


def _other_outputs(directory: Path, paths: list[str]) -> list[tuple[str, str]]:
    """The satclip directories (a marker of their own) among ``paths`` of ``directory`` and their folders, each with
    what it is (``("model", "a satclip model")``)."""
    nested = {part for path in paths for part in _and_parents(path)[1:] if is_owned(directory / part)}
    outermost = sorted(part for part in nested if not any(other != part and part.startswith(other + "/")
                                                           for other in nested))  # fmt: skip
    return [(part, owned_noun(directory / part)) for part in outermost]


def _refuse_read_only(directory: Path, action: str, what: str = "it",
                      why: str = ", so satclip cannot delete its files") -> None:
    """Refuse to ``action`` where this user cannot create, rename or delete files in ``directory`` (a read-only file
    system, or its permissions): replacing a directory swapped the new one in, then failed deleting the old one
    ("permission denied", exit 1), which was left beside it as a hidden temporary. ``what`` names ``directory`` in
    the message, ``why`` says what fails there."""
    if os.access(directory, os.W_OK | os.X_OK):
        return
    if hasattr(os, "statvfs") and os.statvfs(directory).f_flag & os.ST_RDONLY:  # (no chmod makes it writable)
        raise SatclipError(f"refusing to {action}: {what} is on a read-only file system{why}; choose another output "
                           "path")  # fmt: skip
    raise SatclipError(
        f"refusing to {action}: {what} is read-only{why}; make it writable (chmod u+w {directory}) or choose another "
        "output path"
    )


def check_writable(path: str | Path) -> None:
    """Raise :class:`SatclipError` if this user cannot create the output ``path``: the folder it is written in (the
    nearest existing one, where its missing folders would be made) is read-only. Said before any work: the write
    failed after it (`satclip locate -o ro/out.csv` printed its table, then "read-only file system")."""
    for parent in expand_user(path).absolute().parents:
        if parent.is_dir():
            _refuse_read_only(parent, f"write {path}", what=str(parent), why="")
            return


#: what each format of satclip's manifests is, for messages ("a satclip satclip.bluemarble" was said)
FORMAT_NOUNS = {"satclip": "model", "satclip.bluemarble": "Blue Marble corpus",
                "satclip.feature-cache": "feature cache", "satclip.retrieval-db": "retrieval database"}  # fmt: skip


def format_noun(found: str | None) -> str:
    """``"a Blue Marble corpus"`` for the format a manifest records, or what it records, quoted."""
    return f"a satclip {FORMAT_NOUNS[found]}" if found in FORMAT_NOUNS else f"a manifest of format {found!r}"


#: what satclip's directories of each kind are, for messages (a corpus was "a satclip directory of kind 'output'")
KIND_NOUNS = {"bluemarble-corpus": "Blue Marble corpus", "feature-cache": "feature cache",
              "training-run": "training run", "evaluation": "evaluation"}  # fmt: skip


#: what :func:`held_format` calls satclip's Zarr outputs, which record no manifest: a map (``satclip map``), an
#: embedding store (``satclip embed``), and a Zarr group whose attributes say neither (taken for either)
ZARR_MAP, ZARR_EMBEDDINGS, ZARR = "zarr-map", "zarr-embeddings", "zarr"
#: the attribute of a Zarr group that makes it a map (:func:`satclip.embed.maps.map_attrs`), and the one that makes it
#: an embedding store (``satclip embed``'s record, :func:`satclip.embed.job.output_attrs`)
MAP_ATTR, EMBEDDINGS_ATTR = "resolution_deg", "satclip"
#: what :func:`held_format` calls a Parquet dataset (the Dask engine's embeddings), which records none either
PARQUET_DATASET = "parquet-dataset"
#: what the outputs :func:`held_format` tells apart are, for messages
HELD_NOUNS = {**FORMAT_NOUNS, ZARR_MAP: "Zarr map", ZARR_EMBEDDINGS: "Zarr embedding store", ZARR: "Zarr dataset",
              PARQUET_DATASET: "Parquet dataset (embeddings)"}  # fmt: skip


def held_format(directory: str | Path) -> str | None:
    """What the directory ``directory`` holds, by the files that say so: the format its ``manifest.json`` or
    ``config.json`` records (``"satclip"``: a model; a key of :data:`FORMAT_NOUNS`); for a Zarr group
    :data:`ZARR_EMBEDDINGS` where its attributes hold ``satclip embed``'s record (:data:`EMBEDDINGS_ATTR`),
    :data:`ZARR_MAP` where they hold a map's resolution (:data:`MAP_ATTR`), else :data:`ZARR`;
    :data:`PARQUET_DATASET` for Parquet part files; else None (nothing says: an empty or older output)."""
    directory = Path(directory)
    for name in ("manifest.json", "config.json"):
        found = recorded_format(directory / name)
        if found in FORMAT_NOUNS:
            return found
    if any((directory / name).is_file() for name in (".zgroup", "zarr.json")):
        attrs = _zarr_attributes(directory)
        return ZARR_EMBEDDINGS if EMBEDDINGS_ATTR in attrs else ZARR_MAP if MAP_ATTR in attrs else ZARR
    if any(entry.is_file() for entry in directory.glob("*.parquet")):
        return PARQUET_DATASET
    return None


def _zarr_attributes(directory: Path) -> dict:
    """The attributes of the Zarr group ``directory`` (``.zattrs``, Zarr 2; ``zarr.json``, Zarr 3), or none."""
    for name, key in ((".zattrs", None), ("zarr.json", "attributes")):
        try:
            found = json.loads((directory / name).read_text())
        except (OSError, ValueError):
            continue
        found = found.get(key) if key and isinstance(found, dict) else found
        if isinstance(found, dict):
            return found
    return {}


def owned_noun(directory: str | Path) -> str:
    """What the satclip directory ``directory`` is, for messages: ``"a satclip Blue Marble corpus"`` by its kind,
    or, for the generic kind ``"output"`` (models, converted models, stores, corpora written before they had a kind
    of their own), by what it holds (:func:`held_format`); else ``"a satclip directory of kind 'K'"``."""
    kind = owned_kind(directory)
    if kind in KIND_NOUNS:
        return f"a satclip {KIND_NOUNS[kind]}"
    if kind == "output":
        found = held_format(directory)
        if found is not None:
            return f"a satclip {HELD_NOUNS[found]}"
    return f"a satclip directory of kind {kind!r}"


def recorded_format(manifest: str | Path) -> str | None:
    """The ``"format"`` string a satclip manifest file records (``satclip.bluemarble``, a feature cache's …), or
    None where there is none (no file, not JSON, no such string): the readers of each format report those."""
    try:
        found = json.loads(Path(manifest).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def refuse_other_contents(directory: str | Path, noun: str, own: Iterable[str] = (),
                          fix: str = "choose another output directory") -> None:  # fmt: skip
    """Raise :class:`OutputExistsError` if the existing directory ``directory`` holds anything but ``own`` (hidden
    entries aside): another output (an embedding store, a corpus, a feature cache) that a writer of ``noun`` would
    take for a broken one of its own and replace, also with ``--overwrite``; the message ends in ``fix``. A
    missing or empty directory, or a symbolic link (refused where it is written), passes."""
    other = other_contents(directory, own)
    if other:
        raise OutputExistsError(
            f"{directory} holds {listed(other)}, not {noun}; satclip does not replace it with one, even with "
            f"--overwrite: {fix}"
        )


def other_contents(directory: str | Path, own: Iterable[str]) -> list[str]:
    """The names in the existing directory ``directory`` but ``own`` and hidden ones, sorted (none where it is
    missing or a symbolic link)."""
    directory = Path(directory)
    if not directory.is_dir() or directory.is_symlink():
        return []
    own = set(own)
    return sorted(entry.name for entry in directory.iterdir() if entry.name not in own and entry.name[:1] != ".")


def listed(names: list[str]) -> str:
    """The first five of ``names``, and how many more, for a one-line message."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# ----------------------------------------------------------------------------------------------- checks
def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file or directory (one that exists, or the same path resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        try:
            return expand_user(a).resolve() == expand_user(b).resolve()
        except (OSError, RuntimeError):  # (a symbolic-link loop: _check_parents names it)
            return False


def check_not_input(path: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """Raise :class:`BadInputError` if ``path`` is one of ``inputs`` (the same file, or the same path) or lies
    inside one that is a directory (a model directory, a feature cache, a dataset of part files: an output
    must not join an input's contents)."""
    path = Path(path)
    inputs = [Path(source) for source in inputs if source is not None]
    for source in inputs:
        if same_path(path, source):
            raise BadInputError(f"the output {path} is also an input; choose another output path")
    for source in inputs:
        check_not_inside(path, source)
        if path.is_dir() and _contains(path, source):  # replacing the directory would delete the input
            raise BadInputError(f"the output {path} contains the input {source}; choose another output path")


def _contains(directory: Path, path: Path) -> bool:
    """Whether ``path`` resolves to ``directory`` or a path inside it (False where it cannot be resolved: a
    symbolic-link loop on the way, which :func:`_check_parents` names)."""
    try:
        return expand_user(path).resolve().is_relative_to(expand_user(directory).resolve())
    except (OSError, RuntimeError):
        return False


def check_not_inside(path: str | Path, directory: str | Path, what: str = "the input") -> None:
    """Raise :class:`BadInputError` if ``path`` would lie inside the existing directory ``directory`` (an
    input whose contents an output must not join, e.g. a dataset of part files)."""
    path, directory = Path(path), Path(directory)
    if directory.is_dir() and _contains(directory, path):
        where = "is" if same_path(path, directory) else "is inside"  # ("inside" it was said of the directory itself)
        raise BadInputError(f"the output {path} {where} {what} {directory}; write it elsewhere")


#: kinds of satclip directories that other outputs may be written into, as the docs lay them out (a run's
#: ``RUN/export/model.onnx``, an evaluation in a demo's directory, the training runs in its ``work/``, a reference
#: evaluation's protocols): satclip never replaces or deletes them whole
HOLDS_OTHER_OUTPUTS = ("training-run", "demo", "demo-work", "reference-evaluation")


def check_not_in_output(path: str | Path) -> None:
    """Raise :class:`OutputExistsError` if the output ``path`` that a user named lies inside a satclip directory
    that satclip replaces or rebuilds whole (a corpus, a feature cache, a model, a store, an evaluation; the nearest
    parent holding :data:`MARKER` that is not of :data:`HOLDS_OTHER_OUTPUTS`; not asked of a ``path`` that is itself
    a satclip directory already): it joined another command's output (``export -o CORPUS/x.onnx``), which satclip
    then refused to replace. Other outputs may be written beside the files a directory of
    :data:`HOLDS_OTHER_OUTPUTS` keeps for itself, never over them (:func:`declare_contents`, also with
    ``--overwrite``: `convert … RUN/checkpoints/last.ckpt --overwrite` replaced a run's resume state, and
    `convert … RUN/export/last` the model it exported). For the roots of commands' outputs only: satclip lays out
    its own outputs inside its directories (a run's exports, a demo's work and feature cache, an evaluation's
    protocols), and writes into its temporaries, through the other checks."""
    path = expand_user(path)
    inside = not is_owned(path)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # (a symbolic-link loop: _check_parents names it)
        resolved = path.absolute()
    # a run's files are looked for as the path is named ('..' resolved) too: RUN/checkpoints a link to another disk
    for view in dict.fromkeys((Path(os.path.abspath(path)), resolved)):
        for parent in view.parents:
            kind = owned_kind(parent)
            if kind in HOLDS_OTHER_OUTPUTS:
                _refuse_kept(path, parent, view.relative_to(parent).as_posix())
                break
            if kind is not None and inside and view == resolved:
                raise OutputExistsError(f"{path} is inside {parent}, {owned_noun(parent)}: satclip writes no other "
                                        "output into it; choose a path outside it")  # fmt: skip


#: how a directory of :data:`HOLDS_OTHER_OUTPUTS` that keeps files of its own is made again, for messages
_REDONE_BY = {"training-run": "satclip train --restart redoes the run"}


def _refuse_kept(path: Path, directory: Path, relative: str) -> None:
    """Raise :class:`OutputExistsError` if ``relative``, the output ``path`` inside ``directory``, is a file that
    directory keeps for itself (:func:`declare_contents` of its kind), lies in one, or is a folder on the way to
    them (``RUN/checkpoints``)."""
    patterns = _CONTENTS.get(owned_kind(directory) or "", ())
    on_the_way = {folder for pattern in patterns for folder in _and_parents(pattern)[1:]}
    relative = _own_name(relative)
    if not any(_matches(part, pattern) for part in _and_parents(relative) for pattern in patterns) and not any(
        _matches(relative, folder) for folder in on_the_way
    ):
        return
    redo = _REDONE_BY.get(owned_kind(directory) or "")
    raise OutputExistsError(
        f"{path} is {relative} of {directory}, {owned_noun(directory)}, which keeps it for itself: no other command "
        f"writes it, even with --overwrite; choose another name{f' ({redo})' if redo else ''}"
    )


def check_new_output(path: str | Path) -> None:
    """The checks of an output's path at the root of a command, before any work: its parent can be made (not under a
    file: said naming the output, before the command locks it), not inside another satclip output
    (:func:`check_not_in_output`), nor locked by another satclip run writing it (:func:`check_unlocked`: a model
    converted into the store an embedding held locked made that embedding fail at its very end)."""
    _check_parents(Path(path))
    check_not_in_output(path)
    check_unlocked(path)


def check_named(path: str | Path) -> None:
    """Raise :class:`BadInputError` if ``path`` has no name of its own (``.``, ``..``, ``/``): satclip writes an
    output beside it under a temporary name and renames it into place."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        example = os.path.join(path, "name")
        raise BadInputError(
            f"the output {path} names a directory, not a new output in it: add the output's name (e.g. {example}, "
            "with the suffix of its format)"
        )
    if str(path) == "-":  # (a file named "-" appeared where standard output was meant)
        raise BadInputError("the output - would be a file named '-': satclip writes no output to standard output; "
                            "give a file name, with the suffix of its format")  # fmt: skip
    longest = _name_max(path) - WORK_NAME_BYTES
    size = len(os.fsencode(path.name))
    if longest < size <= longest + WORK_NAME_BYTES:  # (longer ones the file system refuses at once, as it says)
        raise BadInputError(
            f"the output name {path.name[:40]}… is {size} bytes; satclip writes work files beside it whose names add "
            f"{WORK_NAME_BYTES} bytes to it (NAME.partial, temporaries), so it takes at most {longest}: choose a "
            "shorter name"
        )  # (it failed after the work, on every rerun too)


#: the most bytes satclip adds to an output's name for its work beside it:
#: ``.NAME.partial.satclip-tmp-PID-hHOSTID-xxxxxx``
WORK_NAME_BYTES = len(".") + len(".partial") + len(_TMP_TAG) + len("4194304") + len("-h12345678-") + 6


def _name_max(path: Path) -> int:
    """The longest file name (bytes) the file system holding ``path`` takes (255 where it does not say)."""
    for directory in expand_user(path).absolute().parents:
        if directory.is_dir():
            try:
                return int(os.pathconf(directory, "PC_NAME_MAX"))
            except (OSError, ValueError):
                break
    return 255


def check_output(
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    directory: bool = False,
    kind: str | None = None,
    writes: str | None = None,
) -> None:
    """Raise unless satclip may write ``path`` (a file, or a directory with ``directory=True``).

    May write: a path that does not exist, or an empty directory (``directory=True``: nothing is lost); with
    ``overwrite``, an existing regular file (``directory=False``) or a directory satclip created
    (``directory=True``) of ``kind`` (the kind of directory about to be written there; None: any). Never: a
    path equal to one of ``inputs``, a directory in place of a file, a directory of files satclip did not
    create, a satclip directory of another kind (an evaluation, a training run, a feature cache: the user's
    files may have joined satclip's there), a satclip output holding another sort of output than ``writes`` (what
    the writer puts there, as :func:`held_format` names it: a model is no map's to replace; None: not compared; an
    output whose contents say nothing is not refused), a FIFO, socket or device (or a link to one), whatever the
    flags.

    Raises:
        BadInputError: ``overwrite`` is not True or False (``encoder.save(path, overwrite="no")`` replaced the model
            there: ``"no"`` is true).
    """
    check_flags(overwrite=overwrite)
    path = Path(path)
    check_named(path)
    check_not_input(path, inputs)
    if not (path.exists() or path.is_symlink()):
        _check_parents(path)
        return
    special = special_kind(path)
    if special:  # (replaced by a rename, /dev/null would be a regular file for every program on the machine)
        raise OutputExistsError(
            f"{path} is {special}, not a file: satclip only replaces files and directories it wrote; choose another "
            "output path"
        )
    if directory:
        _refuse_non_directory(path)
        if not _entries(path):  # (a mount point on a read-only file system was refused only after all the work)
            _refuse_read_only(path, f"write {path}", why=", so satclip cannot write its files into it")
            return
        if not is_owned(path):
            raise OutputExistsError(
                f"{path} is a directory satclip did not create (no {MARKER} marker); satclip never replaces it, "
                "even with --overwrite: choose another output path or remove it yourself"
            )
        if kind is not None:
            _refuse_other_kind(path, kind)
        if writes is not None:
            _refuse_other_output(path, writes)
        if overwrite:
            _refuse_foreign(path, "replace")
            _refuse_read_only(path, f"replace {path}")
    elif path.is_dir():
        raise OutputExistsError(
            f"{path} is a directory; satclip writes a file there and never replaces a directory: choose a file path"
        )
    if not overwrite:
        # a run killed just after publishing ``path`` may have left its work directory half removed, under a
        # temporary name (a map's whole field, gigabytes), and its rerun stops here: it stayed for good. (With
        # overwrite the run makes its work directory, which make_owned_dir sweeps; internal rewrites pass overwrite,
        # and list no directory for it.)
        clean_stale(path.with_name(path.name + ".partial"))
        raise OutputExistsError(f"{path} already exists; pass --overwrite (overwrite=True in Python) to replace it")


def _refuse_other_kind(path: Path, kind: str) -> None:
    """Raise :class:`OutputExistsError` if the satclip directory ``path`` records a kind other than ``kind``. A
    marker that records no kind (an older satclip's) is not refused: which kind it holds is unknown."""
    found = _marker(path).get("kind")
    if isinstance(found, str) and found != kind:
        raise OutputExistsError(
            f"{path} is a satclip directory of kind {found!r}, not {kind!r}; satclip never replaces it with another "
            "kind of output, even with --overwrite: choose another output path or remove it yourself"
        )


def _refuse_other_output(path: Path, writes: str) -> None:
    """Raise :class:`OutputExistsError` if the satclip output ``path`` holds another sort of output than ``writes``
    (:func:`held_format`): `satclip map -o MODEL_DIR --format zarr --overwrite` deleted the model. Directories of
    other kinds are :func:`_refuse_other_kind`'s; an output whose contents say nothing (an empty or older one) is
    not refused, nor a Zarr group that says neither map nor embedding store, by a writer of either."""
    found = held_format(path) if owned_kind(path) == "output" else None
    zarr = (ZARR, ZARR_MAP, ZARR_EMBEDDINGS)
    if ZARR in (found, writes) and found in zarr and writes in zarr:  # (a Zarr group that says neither: either's)
        return
    if found is not None and found != writes:
        raise OutputExistsError(
            f"{path} is {owned_noun(path)}, not a {HELD_NOUNS.get(writes, writes)}; satclip never replaces it with "
            "one, even with --overwrite: choose another output path or remove it yourself"
        )


def check_work_dir(path: str | Path, kinds: Iterable[str]) -> None:
    """Raise :class:`OutputExistsError` if ``path``, where a job keeps its unfinished work (and removes what it
    left there), is a satclip directory that records a kind other than ``kinds`` (a finished output of its own
    named so, ``-o out.zarr.partial``, was taken for leftover work and deleted, exit 0), or a file or a directory of
    files of the user's (an empty directory is taken)."""
    path = Path(path)
    found = _marker(path).get("kind") if path.is_dir() and is_owned(path) else None
    if isinstance(found, str) and found not in kinds:
        raise OutputExistsError(
            f"{path} is a satclip {found} directory, and satclip keeps its unfinished work under that name: rename "
            "it, or choose another output path"
        )
    if not is_owned(path) and (path.is_symlink() or path.exists() and not (path.is_dir() and not any(path.iterdir()))):
        # (it was told "choose a new or empty directory", of a name the user had not chosen; and what it holds)
        mine = path.is_dir() and not path.is_symlink()
        held = f" (it holds {listed(sorted(p.name for p in path.iterdir()))})" if mine else ""
        raise OutputExistsError(
            f"{path} is not satclip's{held}, and {path.name} is where satclip keeps the unfinished work of "
            f"{path.name.removesuffix('.partial')}: move or rename it, or choose another output path"
        )


def _refuse_non_directory(path: Path, fix: str | None = None) -> None:
    """Raise :class:`OutputExistsError` unless the existing ``path`` is a directory itself (a symbolic link to
    one is named: its target is never written through it); ``fix``: as :func:`check_not_link`."""
    check_not_link(path, fix)
    if not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a directory; {fix or 'choose another output path'}")


def check_not_link(path: str | Path, fix: str | None = None) -> None:
    """Raise :class:`OutputExistsError` if the output ``path`` is a symbolic link: satclip never writes through one.
    A link to nothing (a missing target, or a loop) is said to be one (it was told to give "the directory it points
    to"). ``fix``: what to do, for an output whose path the user did not choose (default: fix the link, or choose
    another path)."""
    path = Path(path)
    if not path.is_symlink():
        return
    if not path.exists():
        raise OutputExistsError(f"{path} is a symbolic link to nothing (its target is missing, or a loop), and satclip "
                                f"never writes through a link: {fix or 'remove or fix it, or choose another path'}")
    if fix:
        raise OutputExistsError(f"{path} is a symbolic link, and satclip never writes through a link: {fix}")
    raise OutputExistsError(f"{path} is a symbolic link; give the directory it points to, or another path")


def check_place(path: str | Path, fix: str) -> None:
    """Raise :class:`OutputExistsError`, its message ending in ``fix``, where nothing but a directory output stands at
    ``path`` or its lock (:func:`lock_path`): a symbolic link, a file, a lock file satclip did not write. For an
    output whose path the user did not choose (``retrieval="auto"``'s database in the cache), checked before any
    work: the checks as it is written say "choose another output path"."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        _refuse_non_directory(path, fix)
    lock = lock_path(path)
    if lock.is_symlink():
        raise OutputExistsError(_linked_lock(lock, fix))
    if not lock.exists():
        return
    if stat.S_ISREG(lock.stat().st_mode):
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            if _is_lock_content(fd):
                return
        finally:
            os.close(fd)
    raise OutputExistsError(_foreign_lock(lock, fix))


def _check_parents(path: Path) -> None:
    """Raise :class:`BadInputError` if ``path``'s parent could not be made: its nearest existing ancestor is
    not a directory (``notes.csv/out.parquet``), found before any work rather than at the first write."""
    for parent in expand_user(path).absolute().parents:
        if parent.is_symlink() and not parent.exists():
            raise BadInputError(f"{parent} is a symbolic link to nothing (its target is missing, or a loop), so {path} "
                                "cannot be written there; fix the link or choose another output path")  # fmt: skip
        if parent.exists():
            what = not_a_directory(parent)
            if what:
                cache = cache_dir()
                fix = (f"$SATCLIP_CACHE is {os.environ['SATCLIP_CACHE']}: point it at a directory"
                       if os.environ.get("SATCLIP_CACHE") and _contains(parent, cache)
                       else "choose another output path")  # fmt: skip
                raise BadInputError(f"{parent} is {what}, not a directory, so {path} cannot be written there; {fix}")
            return


# ------------------------------------------------------------------------------------------ temporaries
def temp_path(path: str | Path) -> Path:
    """A fresh temporary sibling of ``path`` that :func:`clean_stale` recognises: its name records the writer's
    PID and :func:`host_id`, whose PIDs those are."""
    path = Path(path)
    return path.with_name(f".{path.name}{_TMP_TAG}{os.getpid()}-h{host_id()}-{secrets.token_hex(3)}")


def host_id() -> str:
    """8 hex digits naming this host and PID namespace (its hostname and the inode of ``/proc/self/ns/pid``,
    where there is one): a PID means a process only where this is the same. A container sharing a volume, or
    another host on a network file system, has another; its PID 1234 is not ours."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux
        namespace = 0
    return hashlib.sha256(f"{socket.gethostname()}\0{namespace}".encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed and not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # not Linux, or gone meanwhile
        return True
    return stat[stat.rfind(")") + 2 :].split(" ", 1)[0] not in ("Z", "X")


def _remove(path: Path) -> None:
    """Remove ``path``, a directory's tree or a file (satclip's, being replaced); a failure raises (see
    :func:`_remove_temporary` for a temporary's removal, which may not)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_temporary(tmp: Path) -> None:
    """Remove the temporary ``tmp`` as far as it can be: a removal that fails must not replace the error that
    stopped the write (a read-only file system refuses to unlink even a file that is not there: EROFS named the
    temporary, not the output). satclip's files being replaced are removed strictly (:func:`_remove`)."""
    try:
        _remove(tmp)
    except OSError as err:
        log.debug("could not remove %s: %s", tmp, err)


def clean_stale(path: str | Path, keep: str | Path | None = None) -> None:
    """Remove temporaries of ``path`` (beside it, or in it: :func:`atomic_dir`'s in a directory it fills) left by
    processes that are no longer running (but ``keep``). Only those
    written on this host and in this PID namespace (:func:`host_id`, or an older satclip's, which did not record
    it) are judged by their PID: another container's or host's are left alone, as whether their writer runs
    cannot be known here (it deleted a live run's temporary, whose PID did not exist in this container)."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    prefix, ours = f".{path.name}{_TMP_TAG}", (None, host_id())
    inside = path.iterdir() if path.is_dir() and not path.is_symlink() else ()  # (:func:`atomic_dir` into a kept one)
    for entry in (*path.parent.iterdir(), *inside):
        if entry.name.startswith(prefix) and not (keep is not None and entry == Path(keep)):
            match = _TMP_PID.search(entry.name)
            if match and match.group(2) not in ours:
                log.debug("leaving %s alone: written on another host or in another container", entry)
            elif match and not _alive(int(match.group(1))):
                log.debug("removing %s, left by a run that stopped", entry)
                _remove(entry)


def _fsync(path: Path) -> None:
    """Flush a file, or every file of a directory tree and the directories themselves, to disk."""
    if path.is_dir():
        for root, _, files in os.walk(path):
            for name in files:
                _fsync(Path(root, name))
            _fsync_dir(Path(root))
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    try:  # Linux: read without changing it (os.umask sets it, racing other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:  # pragma: no cover - other platforms
        pass
    mask = os.umask(0o022)  # pragma: no cover
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def usual_permissions(path: str | Path) -> None:
    """Give a file the permissions a newly created file gets (``0o666`` less the umask): writers that create
    theirs private (safetensors' ``save_file``: ``0o600``) would leave the model unreadable to the others who
    share its directory."""
    os.chmod(path, 0o666 & ~_umask())


def reserve(path: str | Path) -> None:
    """Allocate the disk blocks of a (sparse) file now, e.g. one about to be filled through a memory map:
    a full disk then fails here with ENOSPC instead of killing the process with SIGBUS mid-write. Where blocks
    cannot be allocated ahead (no ``posix_fallocate``: macOS, Windows; a filesystem without it), the free space is
    compared with the file's size instead (a corpus on a full disk died with SIGBUS there, without a word)."""
    fd = os.open(path, os.O_RDWR)
    try:
        with naming(path):
            stat = os.fstat(fd)
            size = stat.st_size
            try:
                os.posix_fallocate(fd, 0, size)
                return
            except AttributeError:  # (no posix_fallocate on this system)
                pass
            except OSError as err:
                if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            allocated = getattr(stat, "st_blocks", 0) * 512  # (a file resumed holds blocks already)
            if shutil.disk_usage(Path(path).parent).free < size - allocated:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    finally:
        os.close(fd)


# -------------------------------------------------------------------------------------------- publishing
def publish(
    finished: str | Path, path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Path:
    """Move the finished file or directory ``finished`` (on ``path``'s file system) to ``path``, checked by
    :func:`check_output`. A file lands in one atomic rename; a directory replacing an older satclip
    directory is swapped in two renames, the old one deleted after. A user's empty directory (or a mount
    point) is kept and filled instead. What replaces an existing ``path`` takes its permissions and group:
    a private file or directory stays private. A CLI command's final output is renamed into place with Ctrl-C
    and SIGTERM held (:mod:`satclip.interrupts`)."""
    finished, path = Path(finished), Path(path)
    directory = finished.is_dir()
    inputs = list(inputs)
    if directory and interrupted_fill(finished, path):  # (its marker and some entries are in path already)
        check_not_input(path, inputs)
        interrupts.hold_for(path)
        _move_entries(finished, path)
        _fsync_dir(path.parent)
        return path
    kind = (owned_kind(finished) or "output") if directory else None  # (an old ``path`` of another kind is refused,
    writes = held_format(finished) if directory else None  # and an output holding another sort: a model by a map)
    check_output(path, overwrite=overwrite, inputs=inputs, directory=directory, kind=kind, writes=writes)
    if directory:
        if not is_owned(finished):
            mark_owned(finished)
        _record_files(finished, "published", _published_paths(finished))
    _fsync(finished)
    check_output(path, overwrite=overwrite, inputs=inputs, directory=directory, kind=kind,
                 writes=writes)  # nothing appeared meanwhile  # fmt: skip
    interrupts.hold_for(path)
    if directory and (_filled_in_place(path) or finished.parent == path):  # (built in it: :func:`atomic_dir`,
        _fill(path, finished)  # whose user's empty directory another writer filled meanwhile: renaming it lost both)
    elif directory and path.exists():
        _take_permissions(path, finished)
        clean_stale(path, keep=finished)  # (an old directory a run killed here left, whole: gigabytes of it)
        old = temp_path(path)
        path.rename(old)
        finished.rename(path)
        shutil.rmtree(old)
    else:
        if path.exists():
            _take_permissions(path, finished)
        os.replace(finished, path)
    _fsync_dir(path.parent)
    return path


def _take_permissions(old: Path, new: Path) -> None:
    """Give ``new`` the permission bits and group of ``old``, which it is about to replace (a group satclip's
    user is not in stays the user's default)."""
    status = old.stat()
    os.chmod(new, stat.S_IMODE(status.st_mode))
    if new.stat().st_gid != status.st_gid:
        with contextlib.suppress(PermissionError):
            os.chown(new, -1, status.st_gid)


def _filled_in_place(path: Path) -> bool:
    """Whether publishing a directory at the existing ``path`` keeps ``path`` and fills it (:func:`_fill`): a
    user's empty directory (its owner, permissions and links to it stay) or a mount point (which cannot be
    renamed)."""
    return path.is_dir() and not path.is_symlink() and (not is_owned(path) or os.path.ismount(path))


def _own_temporary(directory: Path, entry: Path) -> bool:
    """Whether ``entry`` of ``directory`` is a temporary of ``directory`` itself: :func:`atomic_dir` builds one in a
    directory it fills (:func:`_filled_in_place`), to be on its file system (a mount point's), not its parent's."""
    return entry.name.startswith(f".{directory.name}{_TMP_TAG}")


def _entries(directory: Path) -> list[Path]:
    """What ``directory`` holds but its own temporaries (which, as a temporary beside it, are no content of it)."""
    return [entry for entry in directory.iterdir() if not _own_temporary(directory, entry)]


def _fill(path: Path, finished: Path) -> None:
    """Publish the directory ``finished`` into the existing directory ``path``, which is kept
    (:func:`_filled_in_place`). :func:`check_output` has accepted ``path``: it is empty, or satclip's with only
    satclip's files, which are deleted first. The marker moves in before the rest, so a stop midway leaves a
    satclip directory that a rerun with --overwrite replaces, never unmarked files. Each entry moves in one
    rename, so ``finished`` must be on ``path``'s file system (:func:`atomic_dir` builds it in ``path``: beside a
    mount point, it was not)."""
    if is_owned(path):
        for entry in _entries(path):
            if entry.name != MARKER:
                _remove(entry)
    elif _entries(path):  # a file of the user's appeared since the check: it stays, and nothing is published
        raise OutputExistsError(f"{path} is no longer empty; satclip did not write into it: choose another path")
    os.replace(finished / MARKER, path / MARKER)
    _move_entries(finished, path)


def _move_entries(finished: Path, path: Path) -> None:
    """Move what is left in ``finished`` into ``path`` (each entry in one rename) and remove ``finished``."""
    for entry in finished.iterdir():
        os.replace(entry, path / entry.name)
    finished.rmdir()
    _fsync_dir(path)


def interrupted_fill(finished: str | Path, path: str | Path) -> bool:
    """Whether publishing the directory ``finished`` into the kept directory ``path`` (:func:`_fill`) stopped
    midway: ``finished`` has given ``path`` its marker, which records everything published, and ``path`` holds
    only entries ``finished`` no longer has, the two together being that record. Publishing ``finished`` again
    moves the rest (it replaced ``path`` with the rest alone, the entries moved before lost)."""
    finished, path = Path(finished), Path(path)
    if not (finished.is_dir() and path.is_dir()) or (finished / MARKER).exists() or not is_owned(path):
        return False
    recorded = _recorded(path, "published")
    if recorded is None:
        return False
    moved, left = set(_published_paths(path)), set(_published_paths(finished))
    return moved.isdisjoint(left) and moved | left == set(recorded)


@contextlib.contextmanager
def atomic_file(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = (), parents: bool = True
) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it replaces ``path`` atomically.

    ``path`` is checked before anything is written (so a refused output costs nothing) and again before
    the rename. On any error the temporary is removed and ``path`` is left as it was. ``parents=False``: the
    folder ``path`` is written into is not made (writing fails with FileNotFoundError where it is gone): a task
    writing into a job's work directory must not make it again after the job removed it.
    """
    path = Path(path)
    inputs = list(inputs)
    check_output(path, overwrite=overwrite, inputs=inputs)
    if parents:
        make_dirs(path.parent)
    clean_stale(path)
    tmp = temp_path(path)
    try:
        with naming_as(tmp, path):
            yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written for {path}")
        publish(tmp, path, overwrite=overwrite, inputs=inputs)
    finally:
        _remove_temporary(tmp)


@contextlib.contextmanager
def scratch(path: str | Path) -> Iterator[Path]:
    """A fresh temporary sibling of ``path`` for work that is not published (e.g. a store to compare with),
    removed on exit; one a killed run left is swept first (:func:`clean_stale`). Nothing is created: the caller
    makes what it needs there."""
    path = Path(path)
    clean_stale(path)
    tmp = temp_path(path)
    try:
        yield tmp
    finally:
        _remove_temporary(tmp)


@contextlib.contextmanager
def atomic_dir(
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    kind: str = "output",
    writes: str | None = None,
) -> Iterator[Path]:
    """Like :func:`atomic_file` for a directory: yield an empty temporary directory (already marked as
    satclip's, of ``kind``) that replaces ``path`` when the block succeeds. ``writes``: what the block writes
    there (:func:`check_output`), for an existing output of another sort to be refused before the work (publishing
    refuses it after). Where ``path`` is a directory that is kept and filled (a user's empty directory, a mount
    point: :func:`_filled_in_place`), the temporary is made in it, on its file system: beside a mount point, the
    work went to the parent's disk and then could not be renamed into it ("Invalid cross-device link")."""
    path = Path(path)
    inputs = list(inputs)
    check_output(path, overwrite=overwrite, inputs=inputs, directory=True, kind=kind, writes=writes)
    make_dirs(path.parent)
    clean_stale(path)
    tmp = path / temp_path(path).name if _filled_in_place(path) else temp_path(path)
    try:
        with naming_as(tmp, path):  # (creating it too: an unwritable parent named the temporary)
            tmp.mkdir()
            mark_owned(tmp, kind)
            yield tmp
        publish(tmp, path, overwrite=overwrite, inputs=inputs)
    finally:
        _remove_temporary(tmp)


@contextlib.contextmanager
def naming_as(tmp: Path, path: Path) -> Iterator[None]:
    """Re-raise an OSError that names the temporary ``tmp`` (or a file in it; or an output written in a work
    directory before it is published) naming the output ``path`` (or that file in it) instead: the user knows
    the output, and the temporary is gone when the message shows."""
    try:
        yield
    except OSError as err:
        name = err.filename
        if (
            not isinstance(name, (str, bytes, os.PathLike))
            or err.filename2 is not None
            or not Path(os.fsdecode(name)).is_relative_to(tmp)
        ):
            raise
        if Path(os.fsdecode(name)) == tmp and err.errno == errno.ENOENT and tmp.parent.is_dir():
            # (a folder that takes no new files, /proc: "No such file or directory: /proc/y.onnx" read as if the
            # output were missing); said as the lock's folder is (:func:`exclusive`)
            raise OSError(err.errno, f"{err.strerror} (satclip cannot create {path.name} there: choose another "
                                     "folder)", str(path.parent)) from err  # fmt: skip
        raise OSError(err.errno, err.strerror, str(path / Path(os.fsdecode(name)).relative_to(tmp))) from err


class _Writer:
    """A binary file open for writing through Python's own I/O (see :func:`writing`). Deliberately no
    ``io.BufferedWriter``: ``np.save`` then writes through :meth:`write` in bounded chunks rather than with C
    stdio, whose failures carry no errno."""

    def __init__(self, handle, path: Path) -> None:
        self._handle, self._path = handle, path

    def write(self, data) -> int:
        with naming(self._path):
            return self._handle.write(data)


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Inside, an ``OSError`` with an errno but no file name (a full disk: ENOSPC, a file-size limit: EFBIG,
    as pyarrow, zarr and numpy raise them) is raised again as the same error naming ``path`` (the original
    chained), so the CLI's line names the file; others pass unchanged."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[_Writer]:
    """Open ``path`` (typically a temporary of :func:`atomic_file` or a file in :func:`atomic_dir`'s) to write
    with Python's own file I/O: a full disk or a file-size limit is then an ``OSError`` with its errno and the
    file's name, which the CLI reports in one line. Serialisers write their failures otherwise (safetensors'
    ``save_file``: a SafetensorError; ``torch.save``: a RuntimeError without errno; ``torch.jit.save``: a C++
    abort; ``np.save`` into a real file: an errno-less OSError), so satclip serialises small objects to bytes
    in memory and writes them here (:func:`write_data`), and streams arrays here (:func:`save_array`)."""
    path = Path(path)
    with naming(path), path.open("wb") as handle:
        yield _Writer(handle, path)


def write_data(path: str | Path, data) -> Path:
    """Write the bytes-like ``data`` (``bytes``, a ``memoryview`` such as ``BytesIO.getbuffer()``) to ``path``
    through :func:`writing` (not atomically: give a temporary of :func:`atomic_file` or :func:`atomic_dir`)."""
    with writing(path) as handle:
        handle.write(data)
    return Path(path)


def save_array(path: str | Path, array) -> Path:
    """``np.save`` ``array`` to ``path`` streamed through :func:`writing` (``np.save`` into a file by name
    reports a full disk without an errno); not atomically: give a temporary of :func:`atomic_file` or
    :func:`atomic_dir`."""
    import numpy as np

    with writing(path) as handle:
        np.save(handle, array)
    return Path(path)


class NoArrayError(ValueError):
    """A ``.npy`` file that holds no array satclip reads: no NumPy header, or Python objects (:func:`load_array`)."""


def load_array(path: str | Path, **kwargs):
    """``np.load`` the ``.npy`` file ``path`` (``kwargs``: ``mmap_mode``), never unpickling. Raises
    :class:`NoArrayError` saying what the file is where it holds no array (numpy's own text for a file of other
    bytes, "This file contains pickled (object) data. If you trust the file you can load it unsafely using the
    allow_pickle= keyword…", invited the user to unpickle a damaged file), numpy's ValueError for a damaged or cut
    one. The message names no file: the caller says whose it is and how to make it again."""
    import numpy as np

    with open(path, "rb") as file:
        if file.read(6) != b"\x93NUMPY":  # (numpy takes any other bytes for a pickle, or a zip for an .npz)
            raise NoArrayError("it is not a valid .npy array file: no NumPy header")
    try:
        return np.load(path, allow_pickle=False, **kwargs)
    except ValueError as err:
        if npy_holds_objects(path):
            raise NoArrayError("it holds Python objects, which satclip never unpickles") from err
        raise


def npy_holds_objects(path: str | Path) -> bool:
    """Whether the header of the ``.npy`` file ``path`` declares Python objects (read without loading them)."""
    import numpy as np

    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                      np.lib.format.read_array_header_2_0)(file)  # fmt: skip
    except (ValueError, OSError):
        return False
    return header[2].hasobject


def write_serialised(path: str | Path, serialise: Callable[[io.BytesIO], object]) -> Path:
    """``serialise(buffer)`` (``torch.save(obj, buffer)``, ``torch.jit.save(module, buffer)``) into memory, then
    write the bytes to ``path`` with :func:`write_data`: torch's own file writer reports a full disk as a
    RuntimeError without errno (``torch.save``) or aborts the process (``torch.jit.save``). For what fits in
    memory (models, checkpoints: written from the buffer, not copied), not for arrays (:func:`save_array`
    streams them)."""
    buffer = io.BytesIO()
    serialise(buffer)
    with buffer.getbuffer() as view:
        return write_data(path, view)


def write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write a small file atomically (manifests, configs, state); replaces an existing file by default."""
    path = Path(path)
    with atomic_file(path, overwrite=overwrite) as tmp:
        write_data(tmp, data)
    return path


def write_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    return write_bytes(path, text.encode(), overwrite=overwrite)


def write_json(path: str | Path, data, *, overwrite: bool = True, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(data, indent=indent) + "\n", overwrite=overwrite)


# ------------------------------------------------------------------------------------------------- locks
def notice_level(logger: logging.Logger) -> int:
    """The level of a line saying why a call is about to take long (a build, a wait for another process's): INFO
    where ``logger``'s INFO lines are shown (the CLI shows satclip's), else WARNING, which Python shows without any
    logging set up (``satclip.load`` was silent for a minute or more)."""
    return logging.INFO if logger.isEnabledFor(logging.INFO) else logging.WARNING


def lock_path(target: str | Path) -> Path:
    """The lock file guarding ``target``: a hidden sibling, removed when the lock is released (of the absolute
    path where ``target`` names no entry of its own: ``.``, ``..``)."""
    target = Path(target)
    if target.name in ("", ".."):
        target = Path(os.path.abspath(target))
    return target.with_name(f".{target.name}.lock")


def lock_holder(target: str | Path) -> dict | None:
    """The record (``pid``, ``host``, ``ns``: its :func:`host_id`, ``command``) of the live process that holds
    the lock on ``target``, or None when none does. Creates nothing: a reader of a read-only directory may ask (e.g.
    whether a cache is being built while it is checked)."""
    if sys.platform == "win32":  # pragma: no cover
        return None
    import fcntl

    try:
        fd = os.open(lock_path(target), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # (released when closed below)
    except BlockingIOError:
        return _holder(fd) or {"pid": "?"}
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


def check_unlocked(target: str | Path) -> None:
    """Raise :class:`LockedError` now if another live process holds the lock on ``target``: a command that starts
    something slow first (a Dask cluster) is refused before it, not after (:func:`exclusive` still takes the lock,
    and refuses a run that took it in between)."""
    if os.path.abspath(lock_path(target)) in _LENT:  # (this process's: the command's own lock)
        return
    holder = lock_holder(target)
    if holder is not None:
        raise _locked(target, holder)


def _locked(target: str | Path, holder: dict) -> LockedError:
    who = _process(holder)
    if holder.get("command"):
        who += f": {holder['command']}"
    return LockedError(
        f"{target} is in use by another satclip run ({who}); wait for it to finish or stop it, or write to another "
        "output"
    )


def _process(holder: dict, here: bool = True) -> str:
    """The process a lock's record names, for messages: ``PID N`` (``on HOST`` with ``here``), saying where the PID
    is not one of this host's or container's (it said "PID 1 on vm", a PID the user could not find or stop here)."""
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    if host not in ("?", socket.gethostname()):
        return f"PID {pid} on the other host {host}"
    if holder.get("ns") not in (None, host_id()):
        return f"PID {pid} of another container (PID namespace) on {host}"
    return f"PID {pid} on {host}" if here else f"PID {pid}"


def _try_lock(fd: int, wait: bool = False) -> bool:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


_LOCK_KEYS = {"pid", "host", "ns", "command"}


def _is_lock_content(fd: int) -> bool:
    """Whether the file open as ``fd`` is a lock file as satclip writes them: a regular file holding nothing
    (one whose writer was killed between creating and writing it) or the JSON record of its holder."""
    import stat

    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > 4096:
        return False
    if info.st_size == 0:
        return True
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 4096))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and isinstance(record.get("pid"), int) and set(record) <= _LOCK_KEYS


def _open_lock(path: Path) -> int:
    """Open (or create) the lock file ``path``, never through a symbolic link (whose target would be truncated
    and written: a user's file, or a new one where a dangling link points).

    Raises:
        OutputExistsError: ``path`` is a symbolic link or not a regular file.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                       0o644)  # fmt: skip
    except OSError as err:
        if path.is_symlink():
            raise OutputExistsError(_linked_lock(path)) from err
        if err.errno in (errno.EISDIR, errno.ENXIO):
            raise OutputExistsError(_foreign_lock(path)) from err
        raise


def _linked_lock(path: Path, fix: str = "remove the link yourself or choose another output path") -> str:
    return f"{path}, where satclip keeps its lock, is a symbolic link; satclip never writes through it: {fix}"


def _foreign_lock(path: Path, fix: str = "move it away or choose another output path") -> str:
    return (f"{path}, where satclip keeps its lock, holds something satclip did not write there; satclip never "
            f"replaces or deletes it: {fix}")  # fmt: skip


#: the descriptors of the locks this process holds: a forked child (a data-loader worker) closes its copies, so
#: that the lock ends with the process that took it, not with the last of its children
_HELD: set[int] = set()
#: the lock files of the locks this process holds with ``exclusive(…, reentrant=True)``
_LENT: set[str] = set()


def _close_inherited_locks() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


@contextlib.contextmanager
def exclusive(
    target: str | Path, *, wait: bool = False, doing: str | None = None, reentrant: bool = False
) -> Iterator[Path]:
    """Hold an exclusive lock on ``target`` (a file or directory, existing or not) for the block; with
    ``wait``, wait for another process holding it (a shared cache that process is building: it is then there
    to reuse) instead of raising, logging once what it waits for (``doing``, default ``"building TARGET"``).
    With ``reentrant``, the block's own ``exclusive(target)`` (and :func:`check_unlocked`) run under this lock:
    a command locks its output before it loads a model, and the library function it calls then locks it again
    (otherwise a lock this process holds is refused as another run's).

    Raises:
        LockedError: another live process holds it (not ``wait``); the message names its PID and command.
    """
    target = Path(target)
    path = lock_path(target)
    key = os.path.abspath(path)
    if key in _LENT:
        yield path
        return
    make_dirs(path.parent)
    while True:
        try:
            fd = _open_lock(path)
        except OSError as err:  # (it named the hidden lock file, "No such file or directory: /proc/.x.lock")
            if err.filename != str(path) or not err.strerror or os.path.lexists(path):
                raise  # (a lock file left there that this user cannot open: the file to remove, not the output)
            # (the folder it cannot write: the output's name was given, a folder inside that could be written)
            if err.errno not in NO_PLACE:  # (permission, read-only, full: the CLI says those)
                raise type(err)(err.errno, f"{err.strerror} (satclip writes the lock of {target.name} there)",
                                str(path.parent)) from err  # fmt: skip
            # ("No such file or directory (…): /proc" of /proc/y, as if /proc were missing)
            raise BadInputError(f"{target}: cannot create a file in {path.parent} ({err.strerror}), where satclip "
                                "writes the output's lock: give an output in another folder (another --out or -o)"
                                ) from err  # fmt: skip
        if not _try_lock(fd):
            holder = _holder(fd)
            if wait:  # (seconds to minutes: said in Python too, as a warning)
                log.log(notice_level(log), "waiting for %s, which is %s", _process(holder, here=False),
                        doing or f"building {target}")  # fmt: skip
                _try_lock(fd, wait=True)
            else:
                os.close(fd)
                raise _locked(target, holder)
        same = _same_file(fd, path)
        if same and not _is_lock_content(fd):  # a user's file by that name: never truncated nor deleted
            os.close(fd)
            raise OutputExistsError(_foreign_lock(path))
        if same:
            break
        os.close(fd)  # the holder released and removed it between our open and lock: try again
    previous = _holder(fd)
    if previous.get("pid"):
        log.info("taking over the lock on %s from %s, which stopped without releasing it", target, _process(previous))
        clean_stale(target)  # (its temporaries: an old output it was removing, under --overwrite, stayed for good)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "ns": host_id(), "command": " ".join(sys.argv)[:300]}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(me).encode())
    _HELD.add(fd)
    if reentrant:
        _LENT.add(key)
    try:
        yield path
    finally:
        if reentrant:
            _LENT.discard(key)
        if _same_file(fd, path):  # (not whatever may have been put in its place meanwhile)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        _HELD.discard(fd)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` itself (not what a symbolic link there points to) is the file open as ``fd``."""
    try:
        here, there = os.fstat(fd), os.lstat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
