"""Errors whose message is complete for a user: the CLI prints them as one line and exits with their code.

Exit codes (documented in the README's "Guarantees"):

====  ==========================================================================================
0     success
1     runtime failure: offline download, missing extra, untrusted checkpoint, disk full, permission,
      another run holds the lock, a corrupt or mismatched resume state, an unexpected error
2     bad input: an argument, a file or a value that cannot be used as given (the message names it and
      says what would work)
130   interrupted (Ctrl-C)
====  ==========================================================================================

Library code raises these (or the standard ``ValueError``/``FileNotFoundError`` for bad input); only
:mod:`satclip.cli` turns them into messages and exit codes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def is_flag(value) -> bool:
    """Whether ``value`` is True or False (a numpy bool too), as an option that is a flag must be: anything else
    (``"no"``, 0, None) is refused where it is checked, not tested for truthiness (``"no"`` is true)."""
    kind = type(value)
    return isinstance(value, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))


def check_flags(**flags) -> None:
    """Raise :class:`BadInputError` naming the first of ``flags`` (name=value) that is not True or False
    (:func:`is_flag`)."""
    for name, value in flags.items():
        if not is_flag(value):
            raise BadInputError(f"{name} must be True or False, got {value!r}")


class SatclipError(Exception):
    """Base of satclip's own errors; ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_RUNTIME


class BadInputError(SatclipError, ValueError):
    """An argument, file or value that cannot be used as given."""

    exit_code = EXIT_BAD_INPUT


class UnknownNameError(BadInputError, KeyError):
    """A name that is none of the known ones (a registry's, a config's keys): the message lists them. A
    :class:`KeyError` too, as such lookups raised before (``except KeyError`` keeps working), with the message as
    its ``str()`` (a KeyError's is quoted)."""

    __str__ = BadInputError.__str__


class UnknownParameterError(BadInputError, TypeError):
    """A keyword parameter that a registered builder does not take: the message names it and those it takes. A
    :class:`TypeError` too, as Python's own for such a call (``except TypeError`` keeps working)."""


class OutputExistsError(BadInputError, FileExistsError):
    """The output path exists and satclip may not replace it (not created by satclip, or no --overwrite)."""


class LockedError(SatclipError, RuntimeError):
    """Another live process holds the lock on the same work."""


class MissingExtraError(SatclipError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class ResumeError(SatclipError, RuntimeError):
    """Saved state to resume from is corrupt or belongs to other work."""


class ResumeMismatchError(ResumeError, BadInputError):
    """Saved state to resume from belongs to other work: another input, model, config or options than the ones
    given (a bad input: the fix is to give the work's own, or to start anew)."""


class ExportError(SatclipError, RuntimeError):
    """A model that an export format cannot hold, or whose exported graph does not reproduce it."""


def yaml_problem(err: BaseException) -> str | None:
    """A PyYAML parse error as one line, "invalid YAML: PROBLEM (line L, column C)" (its message draws the spot over
    several lines); None for another error."""
    mark = getattr(err, "problem_mark", None)
    if mark is None or not getattr(err, "problem", None):
        return None
    return f"invalid YAML: {err.problem} (line {mark.line + 1}, column {mark.column + 1})"


def warn_caller(message: str) -> None:
    """``warnings.warn(message)`` (a UserWarning) naming the first line outside satclip and torch's wrappers: the
    user's call, however deep in satclip it is said (a fixed ``stacklevel`` named ``torch/utils/_contextlib.py``
    where a ``no_grad`` method said it). Python shows it once per such line."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith(package)
                                 or f"{os.sep}torch{os.sep}" in frame.f_code.co_filename):  # fmt: skip
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level + 1)


@contextlib.contextmanager
def interruptions_kept() -> Iterator[None]:
    """Around a call into code that turns a KeyboardInterrupt raised inside it into an error of its own: an error
    the block raises after Ctrl-C or SIGTERM was handled in it is raised as a KeyboardInterrupt. (torch, building a
    tensor for safetensors, raises "ValueError: could not determine the shape of object type
    'torch.storage.UntypedStorage'" with nothing chained, which was reported as a damaged file.) In the main thread,
    for the signals Python handles; elsewhere the block runs as it is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    handlers = {signum: handler for signum, handler in handlers.items() if callable(handler)}
    handled: list[int] = []

    def note(signum, frame) -> None:
        handled.append(signum)
        handlers[signum](signum, frame)

    for signum in handlers:
        signal.signal(signum, note)
    try:
        yield
    except Exception as err:
        if handled:
            raise KeyboardInterrupt from err
        raise
    finally:
        for signum, handler in handlers.items():
            if signal.getsignal(signum) is note:
                signal.signal(signum, handler)
