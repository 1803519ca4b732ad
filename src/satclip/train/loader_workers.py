"""How a DataLoader worker of satclip's (training batches, the feature cache's images) takes the end of its run.

Workers are forked from the command and inherited its Python signal handlers, which run only once a worker's main
thread is back in Python: after a SIGTERM to the process group (``timeout``, a scheduler) a worker lived on for that
while, and the command had stopped reading its batches. The worker's thread that hands a batch's shared memory to
the command (``multiprocessing.resource_sharer``) then found the command's end of the hand-over closed and printed
its traceback above "satclip: interrupted". Give :func:`start_worker` to ``DataLoader(worker_init_fn=…)``."""

from __future__ import annotations

import logging
import signal
import sys
import threading

log = logging.getLogger(__name__)


def start_worker(worker_id: int) -> None:
    """SIGTERM ends the worker at once (the loader reports its death, which the run takes as its interruption);
    Ctrl-C is the command's to handle (it ends its workers). A batch hand-over that the stopping command broke
    off is logged at debug level, not printed: the command's side of it reports anything that matters."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    default_hook = sys.excepthook

    def hand_over_broken(kind, error, traceback) -> None:
        if threading.current_thread() is threading.main_thread() or not issubclass(kind, (OSError, EOFError)):
            default_hook(kind, error, traceback)
            return
        log.debug("loader worker %d: a batch hand-over broke off (%s: %s)", worker_id, kind.__name__, error)

    sys.excepthook = hand_over_broken
