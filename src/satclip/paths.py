"""Where satclip keeps what it derives or downloads, and how it reads the paths users type."""

from __future__ import annotations

import argparse
import errno
import os
import stat
from pathlib import Path

from .errors import BadInputError, SatclipError


class EmptyPathError(BadInputError, argparse.ArgumentTypeError):
    """An empty text given as a path (an unset shell variable, most often): never taken as the current
    directory. Also an argparse type error, so that a command line names the option it was given to."""


def cache_dir(*parts: str) -> Path:
    """``$SATCLIP_CACHE/<parts…>``, default ``~/.cache/satclip/<parts…>`` (not created here).

    Raises:
        SatclipError: there is no home directory to expand ``~`` to (no ``$HOME``, no entry in the password
            database): the cache went into a directory named ``~`` in the current directory, logged as
            ``~/.cache/satclip/…``, which reads as the home directory (``rm -rf ~`` to clean it up).
    """
    given = os.environ.get("SATCLIP_CACHE")
    root = expand_user(given or os.path.join("~", ".cache", "satclip"))  # SATCLIP_CACHE='~/…' (quoted) too
    if root.parts and root.parts[0].startswith("~"):
        what = f"$SATCLIP_CACHE is {given!r}, and" if given else "satclip keeps its cache in ~/.cache/satclip, but"
        raise SatclipError(f"{what} {root.parts[0]} names no home directory here: set SATCLIP_CACHE to a directory "
                           "for satclip's cache (e.g. export SATCLIP_CACHE=/path/to/satclip-cache)")  # fmt: skip
    return root.joinpath(*parts)


def in_cache(path: str | os.PathLike) -> bool:
    """Whether ``path`` is satclip's cache or inside it (links resolved); False where there is no home directory,
    so no cache."""
    try:
        cache = cache_dir().resolve()
    except SatclipError:
        return False
    path = Path(path).resolve()
    return path == cache or cache in path.parents


def expand_user(path: str | os.PathLike) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; ``~name`` of no user (or ``~`` without a home) stays a
    name, as the shell leaves it (``Path.expanduser`` raises). Only a ``~`` as given: ``./~/x`` is a folder named
    ``~`` here, made absolute (``Path`` drops the ``./``, and the home directory's ``x`` was written)."""
    given = Path(path)
    if not os.fspath(path).startswith("~"):
        return given.absolute() if given.parts and given.parts[0].startswith("~") else given
    try:
        return given.expanduser()
    except RuntimeError:
        return given


def user_path(text: str | os.PathLike) -> Path:
    """A path as a user means it: ``~`` expanded (also when quoted, so the shell left it), and ``..`` taken as
    the kernel takes it where the directories exist and by name where they do not — ``nosuch/../out`` is
    ``./out``, never a new directory ``nosuch``. The last component is kept as given (a symbolic link there is
    seen, not followed).

    Raises:
        EmptyPathError: ``text`` is empty (``Path("")`` would be ``.``, the current directory).
    """
    if os.fspath(text) == "":
        raise EmptyPathError("an empty path was given: name a file or directory")
    path = expand_user(text)
    if ".." not in path.parts:
        return path
    if path.name in ("", ".."):
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(path.parent)) / path.name


FIFO, CHARACTER_DEVICE = "a FIFO (named pipe)", "a character device"

#: what a path is when it is neither a regular file nor a directory: satclip replaces none of them as an output,
#: and reads them as input only where it reads a small text once (a pipe, /dev/null: cli.args.config_input);
#: opening a FIFO waits for a writer
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, FIFO), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, CHARACTER_DEVICE), (stat.S_ISBLK, "a block device"),
)  # fmt: skip


#: the errnos Path.exists() takes as "nothing there" (a missing name, a file on the way, a symbolic-link loop)
_NOTHING_THERE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


def special_kind(path: str | os.PathLike) -> str | None:
    """What the existing ``path`` (a symbolic link followed) is when it is neither a regular file nor a directory
    (``"a FIFO (named pipe)"``, ``"a character device"``, …); None for a file, a directory or nothing there.

    Raises:
        OSError: the file system refused to look (a name too long for it: ENAMETOOLONG, …).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if err.errno in _NOTHING_THERE:
            return None
        raise
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), "a special file")


def not_a_directory(path: str | os.PathLike) -> str | None:
    """What the existing ``path`` (a symbolic link followed) is when a directory was asked for: ``"a file"``,
    ``"a FIFO (named pipe)"``, …; None for a directory or nothing there.

    Raises:
        OSError: as :func:`special_kind`.
    """
    if not os.path.exists(path) or os.path.isdir(path):
        return None
    return special_kind(path) or "a file"
