"""Ctrl-C and SIGTERM that arrive once a command is publishing its final output: held, not raised.

One arriving after ``satclip export`` had renamed its finished file into place, before the command returned,
exited 130 "interrupted" with the output complete, and the rerun was refused ("already exists; pass
--overwrite"): a script retrying on 130 failed, and the user could not tell whether the file was good. The CLI
(:func:`satclip.cli.main`) lets a command hold them (:func:`enabled`); the command names its final output
(:func:`final_output`), and :func:`satclip.safe_output.publish` starts holding right before renaming it into
place (:func:`hold_for`): from there on a signal is only recorded, and the command ends as it would have
(:func:`held`). Never for an intermediate output (a chunk, a cache): a Ctrl-C during the rest of a long run
would be ignored. Outside the CLI (the Python API, tests of library code) nothing is held.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_enabled = False
#: the output the command publishes last (:func:`final_output`)
_final: Path | None = None
#: the handlers replaced by :func:`_record` while holding, to put back when the command ends
_replaced: dict[int, object] = {}
#: the signals that arrived while holding
_arrived: list[int] = []


@contextlib.contextmanager
def enabled() -> Iterator[None]:
    """Let the block (a CLI command) hold Ctrl-C and SIGTERM while it publishes its final output; the handlers
    the holding replaced are put back at its end (unless replaced again meanwhile: ignored as the program
    exits). Only in the main thread, where signal handlers run."""
    global _enabled, _final
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _enabled, _final = True, None
    _replaced.clear()
    _arrived.clear()
    try:
        yield
    finally:
        for signum, handler in _replaced.items():
            if signal.getsignal(signum) is _record:
                signal.signal(signum, handler)
        _enabled, _final = False, None
        _replaced.clear()


def final_output(path: str | Path) -> None:
    """Name ``path`` the command's final output: publishing it is the command's last step."""
    global _final
    if _enabled:
        _final = Path(path)


def hold_for(path: str | Path) -> None:
    """Hold Ctrl-C and SIGTERM from now until the command ends if ``path``, about to be renamed into place, is the
    command's final output (:func:`final_output`); else, and outside the CLI, nothing."""
    from .safe_output import same_path  # (safe_output imports this module)

    if (
        _final is None
        or _replaced
        or threading.current_thread() is not threading.main_thread()
        or not same_path(path, _final)
    ):
        return
    for signum in _SIGNALS:
        _replaced[signum] = signal.getsignal(signum)
        signal.signal(signum, _record)


def held() -> Path | None:
    """The final output, if a signal arrived after its publishing began (and was held), else None."""
    return _final if _arrived else None


def _record(signum: int, frame) -> None:
    _arrived.append(signum)
