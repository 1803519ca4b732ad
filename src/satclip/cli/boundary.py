"""The CLI's error boundary and logging: every failure becomes one ``satclip: error: …`` line and an exit code.

:func:`describe` maps an exception to ``(exit code, one-line message)`` following the table in
:mod:`satclip.errors`; :func:`cli_logging` installs the one handler that prints log records.
"""

from __future__ import annotations

import contextlib
import errno
import linecache
import logging
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import EXIT_BAD_INPUT, EXIT_RUNTIME, SatclipError, yaml_problem

#: OSError errnos that say "the file system refused the write", not "the input is wrong"
_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
#: exceptions of other libraries, matched by qualified name (importing them here would load those libraries
#: on every error): input files that cannot be parsed
_BAD_INPUT_BY_NAME = {
    "yaml.error.YAMLError", "rasterio.errors.RasterioIOError",
    # Lightning's: a trainer setting this machine cannot honour (trainer.strategy deepspeed without deepspeed)
    "lightning.fabric.utilities.exceptions.MisconfigurationException",
}  # fmt: skip


def one_line(text: str) -> str:
    """A message on one line: its non-empty lines joined by ``"; "`` (a trailing period dropped before each)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join([line.removesuffix(".") for line in lines[:-1]] + lines[-1:])


def message_of(err: BaseException) -> str:
    """The user-facing text of ``err``, on one line: a KeyError's message without the quotes repr adds; an
    OSError from the operating system as "REASON: FILENAME"; a YAML syntax error with its line and column."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]
    elif problem := yaml_problem(err):  # PyYAML's parse errors: a multi-line picture of the spot
        text = problem
    elif isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.strerror}: {err.filename}"
        if err.filename2 is not None:
            text += f" → {err.filename2}"
    else:
        text = str(err)
    return one_line(text) or type(err).__name__


def shortened(text: str, most: int = 60) -> str:
    """``text`` cut in its middle (marked ``…``) to at most ``most`` characters: a path in a message stays
    recognisable without filling the terminal."""
    if len(text) <= most:
        return text
    tail = min(20, most // 3)
    return f"{text[: most - tail - 1]}…{text[-tail:]}"


def name_too_long(err: OSError) -> str:
    """The one line for an ENAMETOOLONG ``err``: the path shortened, and which of its names is too long for the
    file system (or that the whole path is)."""
    name = os.fsdecode(err.filename) if isinstance(err.filename, (str, bytes, os.PathLike)) else ""
    if not name:
        return f"a file name too long for the file system ({message_of(err)}): choose a shorter name"
    longest = max((len(os.fsencode(part)) for part in Path(name).parts), default=0)
    limit = _name_max(Path(name))
    size = (f"a name in it is {longest} bytes, the file system allows {limit}" if longest > limit
            else f"{len(os.fsencode(name))} bytes in all")  # fmt: skip
    return f"file name too long for the file system: {shortened(name)} ({size}): choose a shorter name"


def _name_max(path: Path) -> int:
    """The longest name (bytes) the file system of ``path``'s nearest existing ancestor allows (255 where it
    cannot be asked)."""
    for parent in path.absolute().parents:
        with contextlib.suppress(OSError, ValueError):
            if parent.is_dir():
                return os.pathconf(parent, "PC_NAME_MAX")
    return 255


def _raised_by_satclip(err: BaseException) -> bool:
    """True when ``err`` comes from a ``raise`` statement in satclip's code (a message written for the user),
    not from Python failing inside it (``d[key]``, a call with the wrong arguments)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    if not str(frame.f_globals.get("__name__", "")).startswith("satclip"):
        return False
    return linecache.getline(frame.f_code.co_filename, tb.tb_lineno).lstrip().startswith("raise")


def _type_names(err: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(err).__mro__}


def _in_the_cache(filename) -> str:
    """What to do where a refused ``filename`` is satclip's cache, in it, or a missing folder on the way to it
    (a corpus, a calibration kept there by default: the user named no such path), else ""."""
    from ..paths import cache_dir

    if not isinstance(filename, (str, os.PathLike)):
        return ""
    try:
        cache = cache_dir().absolute()
    except SatclipError:  # (no home directory: then it is none of the cache's paths)
        return ""
    path = Path(os.fsdecode(filename)).absolute()
    # (not an existing folder above it, such as ~ or the parent of an output the user named beside the cache)
    if not (path.is_relative_to(cache) or (cache.is_relative_to(path) and not path.exists())):
        return ""
    # (`satclip demo --out` moves its report, not the corpus it keeps in the cache)
    where = "" if path == cache else f" ({cache})"
    if os.environ.get("SATCLIP_CACHE"):  # (the user set it: say that this is where the path came from)
        where += ", from $SATCLIP_CACHE"
    return (f"it is satclip's cache{where}: set SATCLIP_CACHE to a directory you can write (`satclip data "
            "bluemarble` also takes --out)")  # fmt: skip


def describe(err: BaseException) -> tuple[int, str]:
    """``(exit code, one-line message)`` for an exception that reached the CLI (see :mod:`satclip.errors`)."""
    if isinstance(err, SatclipError):
        return err.exit_code, message_of(err)
    if isinstance(err, pickle.UnpicklingError):
        return EXIT_RUNTIME, message_of(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        where = err.filename if err.filename is not None else "the output"
        return EXIT_RUNTIME, f"disk full while writing {where}: free space or choose another output"
    if isinstance(err, OSError) and err.errno == errno.EFBIG:
        where = err.filename if err.filename is not None else "the output"
        return EXIT_RUNTIME, (
            f"file too large for this file system or the file-size limit (ulimit -f): {where}: raise the limit or "
            "write elsewhere"
        )
    if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:
        return EXIT_BAD_INPUT, name_too_long(err)
    if isinstance(err, OSError) and err.errno in _PERMISSION:  # (a read refused was "read-only …" too)
        where = err.filename if err.filename is not None else message_of(err)
        cache = _in_the_cache(err.filename)
        if err.errno == errno.EROFS:
            return EXIT_RUNTIME, f"read-only file system: {where}: {cache or 'write elsewhere'}"
        return EXIT_RUNTIME, f"permission denied: {where}: {cache or 'fix its permissions or use another location'}"
    if isinstance(err, FileNotFoundError) and (cache := _in_the_cache(err.filename)):  # ($SATCLIP_CACHE=/proc/x)
        return EXIT_BAD_INPUT, f"cannot create {err.filename} ({err.strerror}): {cache}"
    if isinstance(err, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, ValueError)):
        return EXIT_BAD_INPUT, message_of(err)
    if isinstance(err, ImportError):
        return EXIT_RUNTIME, message_of(err)
    if isinstance(err, (KeyError, TypeError)) and _raised_by_satclip(err):
        return EXIT_BAD_INPUT, message_of(err)  # unknown registry name, parameter or config key
    if _type_names(err) & _BAD_INPUT_BY_NAME:
        return EXIT_BAD_INPUT, message_of(err)
    return EXIT_RUNTIME, (
        f"unexpected error ({type(err).__name__}): {message_of(err)}; "
        "rerun with --debug for the traceback and please report it"
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment (tests and progress bars swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        """A line of its own while a progress bar is drawn (it was appended to the bar: "…img/s]feature cache …"):
        tqdm clears the bar, writes the line and draws the bar again below it."""
        progress = sys.modules.get("tqdm")
        if progress is None or not getattr(progress.tqdm, "_instances", None):
            super().emit(record)
            return
        try:
            progress.tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # (as logging.StreamHandler does: a failed write is reported, not raised)
            self.handleError(record)


def _printed_below_root(record: logging.LogRecord) -> bool:
    """True when a handler of a logger between the record's and the root has printed it already.

    Libraries such as Lightning and torchmetrics add their own console handler yet let records propagate;
    without this every such line would appear twice.
    """
    logger = logging.getLogger(record.name)
    while logger is not None and logger is not logging.root:
        if any(record.levelno >= h.level and not isinstance(h, logging.NullHandler) for h in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


@contextlib.contextmanager
def cli_logging(verbose: bool) -> Iterator[None]:
    """The one console handler (on the root logger) for the duration of a command; removed afterwards, so
    that in-process callers (tests) are left as they were.

    satclip's records from INFO up, other libraries' from WARNING up (rasterio, for one, logs at INFO each
    GDAL error it then raises); everything from DEBUG up with ``verbose``.
    """
    root, ours = logging.getLogger(), logging.getLogger("satclip")
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: not _printed_below_root(record))
    levels = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
