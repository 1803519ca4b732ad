"""Dask clients for ``--engine dask``: a scheduler's, or a ``LocalCluster`` started here and closed afterwards.

Imports neither torch nor the rest of satclip, so that ``satclip embed --engine dask`` can start its local
cluster (:func:`starting_client`) while it imports torch and loads the model: the workers' start-up overlaps
the client's own. Where the platform offers it, the local workers are forked from a server process that
imports distributed, torch and satclip once (multiprocessing's "forkserver"), rather than each importing them
anew, and the server starts first, its imports running beside the client's: on two cores that is one import
of torch instead of two next to the client's, and closing the cluster does not wait for interpreters holding
torch to shut down (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from ..errors import BadInputError, SatclipError
from ..machine import usable_cores
from ..optional import require

log = logging.getLogger(__name__)

#: Dask settings of the local cluster: its nanny's default MALLOC_TRIM_THRESHOLD_=65536 turns off glibc's
#: adaptive mmap threshold, and every activation tensor of a batch is then mapped and faulted in afresh:
#: 30 % more CPU time per point, measured (benchmarks/RESULTS.md)
LOCAL_WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
#: imported once by the server process the local workers are forked from, so that each worker starts with
#: them rather than importing them when the first task's job arrives
FORKSERVER_PRELOAD = ["distributed", "satclip.embed.distributed"]
#: run by each local worker as it starts (its ``dask_setup``, below)
WORKER_PRELOAD = [__name__]
#: seconds a scheduler address may take to accept a TCP connection before the client's own timeout decides
PROBE_TIMEOUT = 5.0


def dask_setup(worker) -> None:
    """Preloaded by each local worker: Ctrl-C left to the client (which closes the cluster), one torch thread
    per single-threaded worker process (spawned workers get it from the OMP_NUM_THREADS=1 their nanny sets;
    forked ones inherit the OpenMP settings of the server process they are forked from, which has them too only
    if the nanny started it), and no log lines of its own for what the client reports in one line (a task's
    error) or does on purpose (cancelling on Ctrl-C, removing its plugin, closing the cluster)."""
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(ValueError):  # (only from a main thread)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's: it closes the cluster
    for name in ("distributed.worker", "distributed.worker.state_machine"):
        logging.getLogger(name).addFilter(_reported_by_the_client)
    logging.getLogger("distributed.worker").addFilter(functools.partial(_not_closing_noise, worker))
    logging.getLogger("distributed.worker").addFilter(_lost_peer_in_one_line)


def _reported_by_the_client(record: logging.LogRecord) -> bool:
    """False for a worker's record of a failed task (its traceback; the client names the error) or of a task
    cancelled when the client stops."""
    message = str(record.msg)
    stopping = message.startswith("Worker plugin") and "teardown" in message  # (its client gone mid-run)
    return not (message.startswith("Compute Failed") or message.startswith("Async instruction") or stopping)


#: what a worker logs, with a traceback of some 40 lines ending in CommClosedError, when the worker it was fetching a
#: task's input from died (killed, out of memory): the scheduler recomputes what was lost, and the map still finishes
LOST_PEER = "Worker stream died during communication"


def _lost_peer_in_one_line(record: logging.LogRecord) -> bool:
    """A worker's :data:`LOST_PEER` record in its one line (which worker), without the traceback."""
    if str(record.msg).startswith(LOST_PEER):
        record.exc_info, record.exc_text = None, None
    return True


#: what a worker logs, with a traceback, when a heartbeat it sent as it began closing meets the connection its
#: scheduler has just closed (seen once in 11 successful runs, as the local cluster closed)
CLOSING_HEARTBEAT = "Failed to communicate with scheduler during heartbeat"
#: a worker's states from the start of its closing on (``distributed.core.Status`` names)
CLOSING_STATES = ("closing", "closing_gracefully", "closed")


def _not_closing_noise(worker, record: logging.LogRecord) -> bool:
    """False for a failed heartbeat of ``worker`` once it is closing: the cluster closing, not a fault."""
    closing = getattr(worker.status, "name", None) in CLOSING_STATES
    return not (closing and str(record.msg).startswith(CLOSING_HEARTBEAT))


#: seconds a scheduler has to send its handshake to the connectivity probe
HANDSHAKE_TIMEOUT = 10.0


#: the address schemes of schedulers reached over the network (Dask's ``inproc://`` lives in one process)
NETWORK_SCHEMES = ("tcp", "tls", "ws", "wss")


class SchedulerError(SatclipError):
    """The Dask scheduler cannot be reached."""


class ClusterError(SatclipError, RuntimeError):
    """The Dask cluster could not finish the work: its workers died running it, or it was cancelled again and
    again; what was done is kept for a rerun."""


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """distributed logs each connection at INFO on its own loggers; keep them to warnings unless satclip's
    logger is at DEBUG."""
    logger = logging.getLogger("distributed")
    level = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        if logger.level != SILENT:
            logger.setLevel(level)


#: the level of the Dask loggers once a run is interrupted
SILENT = logging.CRITICAL + 1
#: the loggers of a Dask client, its local cluster and their event loop: what an interruption cuts short is
#: logged there, with tracebacks ("Future exception was never retrieved … Stream is closed", a failed broadcast
#: to killed workers, tornado's "Exception in callback" for a call the interruption cancelled)
DASK_LOGGERS = ("distributed", "tornado", "asyncio")


def _silence_dask_logs() -> None:
    """Set the :data:`DASK_LOGGERS` and every logger below them to :data:`SILENT` (distributed.client and
    tornado.application have levels and handlers of their own), unless satclip's logger is at DEBUG."""
    if log.isEnabledFor(logging.DEBUG):
        return
    below = [name for name in list(logging.root.manager.loggerDict) if name.partition(".")[0] in DASK_LOGGERS]
    for name in {*DASK_LOGGERS, *below}:
        logging.getLogger(name).setLevel(SILENT)


@contextlib.contextmanager
def _silent_if_interrupted() -> Iterator[None]:
    """Around the work done with a client (inside its and its cluster's closing): the one line "interrupted"
    says it all (a KeyboardInterrupt that no signal raised; :func:`_interruptions` silences at the signal)."""
    try:
        yield
    except KeyboardInterrupt:
        _silence_dask_logs()
        raise


@contextlib.contextmanager
def _interruptions() -> Iterator[None]:
    """While a Dask client and its cluster are in use (in the main thread; elsewhere nothing changes): Ctrl-C
    and SIGTERM (where Python handles them: its KeyboardInterrupt, the CLI's for SIGTERM) silence the Dask
    loggers the moment they arrive, before the handler raises. Silencing where the KeyboardInterrupt is caught
    came too late: the clean-up on the way there (cancelling the tasks, removing the job's plugin) and the event
    loop's thread meanwhile logged what the signal had cut (a broadcast to the workers a SIGTERM killed, a call
    it cancelled before the loop had started it) with tracebacks.

    And an interruption is not lost: Python runs a signal's handler wherever the main thread is, also in a
    garbage-collector callback (the scheduler of a local cluster adds one) or a ``__del__``, where a
    KeyboardInterrupt is printed as "Exception ignored in …" and dropped, and the job ran to its end (exit 0).
    Such a KeyboardInterrupt is raised again in the main thread (``_thread.interrupt_main`` from a thread of
    its own, once the main thread has left that callback), silently."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    handlers = {signum: handler for signum, handler in handlers.items() if callable(handler)}
    unraisable_hook = sys.unraisablehook
    received: list[int] = []  # the signals handled
    dropped: list[int] = []  # their KeyboardInterrupts printed as "Exception ignored" and lost, not raised since
    wake, stopping = threading.Event(), threading.Event()

    def interrupt(signum, frame) -> None:
        _silence_dask_logs()
        received.append(signum)
        dropped.clear()
        handlers[signum](signum, frame)

    def unraisable(event) -> None:
        if received and isinstance(event.exc_value, KeyboardInterrupt):
            dropped.append(received[-1])
            wake.set()
        else:
            unraisable_hook(event)

    def raise_again() -> None:
        while wake.wait() and not stopping.is_set():
            wake.clear()
            if dropped:
                signum = dropped[-1]
                dropped.clear()
                _thread.interrupt_main(signum)  # (runs interrupt() in the main thread, in its own code by then)

    for signum in handlers:
        signal.signal(signum, interrupt)
    sys.unraisablehook = unraisable
    thread = threading.Thread(target=raise_again, name="satclip-interrupt", daemon=True)
    thread.start()
    surfaced = False
    try:
        yield
    except KeyboardInterrupt:
        surfaced = True
        raise
    finally:
        if sys.unraisablehook is unraisable:
            sys.unraisablehook = unraisable_hook
        for signum, handler in handlers.items():
            if signal.getsignal(signum) is interrupt:
                signal.signal(signum, handler)
        stopping.set()
        wake.set()
        thread.join()
        pending = bool(dropped)
    if pending and not surfaced:  # dropped just before the end: the job is interrupted all the same
        raise KeyboardInterrupt


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[object]:
    """A ``distributed.Client`` of the scheduler at ``scheduler``, or of a ``LocalCluster`` of ``workers``
    single-threaded worker processes (default: one per usable core) started here and closed afterwards (started
    as :func:`starting_client` starts it, so that Ctrl-C meanwhile does not cut its start short: that left
    workers that Dask's own clean-up at exit failed on, with tracebacks after "interrupted")."""
    if scheduler is None:
        with starting_client(None, workers) as connect:
            yield connect()
        return
    distributed = require("distributed", "dask", "embedding with --engine dask")
    with _interruptions(), _quiet_distributed():
        yield from _connect(distributed, scheduler)


def _probe(scheduler: str) -> None:
    """Fail at once where a scheduler's address is no network address (:data:`NETWORK_SCHEMES`), or it cannot be
    reached (refused, unknown host: the Dask client retries a refused connection until its 30 s timeout), or what
    answers a ``tcp://`` one is no Dask scheduler (the client waits for its handshake without a timeout, or reads
    another protocol's bytes as a frame length; over TLS and websockets the client checks what answers)."""
    import socket
    import struct
    from urllib.parse import urlsplit

    address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:  # (not a number, or out of range)
        port = None
    if parts.scheme not in NETWORK_SCHEMES or not parts.hostname or port is None or " " in parts.netloc:
        raise BadInputError(f"--scheduler {scheduler!r} is not a Dask scheduler's network address: give its host "
                            "and port, e.g. tcp://HOST:8786 (or HOST:8786; tls://, ws:// and wss:// also)")  # fmt: skip
    try:
        connection = socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT)
    except (ConnectionRefusedError, socket.gaierror) as err:
        raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err
    except OSError:  # slow or filtered: the client's own timeout decides
        return
    if parts.scheme != "tcp":  # (what answers is checked by the client: TLS and websockets speak first)
        connection.close()
        return
    hint = "give the scheduler's address (port 8786 by default; 8787 is its dashboard)"
    with connection:  # a scheduler speaks first: its handshake, 8 bytes of length and a small message
        connection.settimeout(HANDSHAKE_TIMEOUT)
        head = b""
        try:
            while len(head) < 8 and (more := connection.recv(8 - len(head))):
                head += more
        except OSError:
            raise SchedulerError(
                f"{scheduler} accepts connections but sent no Dask handshake within {HANDSHAKE_TIMEOUT:g} s: is it "
                f"a Dask scheduler? {hint}"
            ) from None
    if len(head) < 8:
        raise SchedulerError(f"{scheduler} closed the connection before any Dask handshake: {hint}")
    (size,) = struct.unpack("<Q", head)
    if not 0 < size < 1 << 24:
        raise SchedulerError(f"{scheduler} is not a Dask scheduler (it answered {head!r}): {hint}")


def _connect(distributed, scheduler: str) -> Iterator[object]:
    _probe(scheduler)
    try:
        client = distributed.Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as err:
        raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err
    except TypeError as err:  # tls:// without TLS settings: "TLS expects a ssl_context argument …"
        raise SchedulerError(
            f"cannot connect to the Dask scheduler at {scheduler}: {err} (set the distributed.comm.tls settings of "
            "Dask's configuration, or connect a distributed.Client yourself and embed from Python)"
        ) from err
    if not client.scheduler_info().get("workers"):  # (it waited for one without a word)
        log.warning("the Dask scheduler at %s has no workers: waiting for one to join (Ctrl-C to stop)", scheduler)
    with client, _silent_if_interrupted():
        yield client


@contextlib.contextmanager
def _local_cluster(distributed, workers: int | None) -> Iterator[object]:
    dask = require("dask", "dask", "embedding with --engine dask")
    workers = workers or usable_cores()
    log.info("starting a local Dask cluster of %d worker process(es)", workers)
    environ = dict(os.environ)
    try:
        with dask.config.set({**LOCAL_WORKER_CONFIG, **_start_forkserver()}), distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, preload=WORKER_PRELOAD,
            dashboard_address="127.0.0.1:0",  # (":0" listened on every interface: the job's paths to anyone)
        ) as cluster:  # fmt: skip
            _restore(environ)
            yield cluster
    finally:
        _restore(environ)


def _restore(environ: dict) -> None:
    """Put this process's environment back as it was: distributed's nanny writes the workers' settings
    (``OMP_NUM_THREADS=1`` …) into the environment of the process that starts them, for good, and whatever
    this process starts later (threads pools sized from it, subprocesses) would inherit them."""
    for name in set(os.environ) - set(environ):
        del os.environ[name]
    os.environ.update(environ)


def _start_forkserver() -> dict:
    """Start now (if not yet running) the server process that the local workers are forked from, preloaded
    with :data:`FORKSERVER_PRELOAD`: its imports run in a process of their own, beside whatever the caller
    does next. Returns the Dask setting that forks the workers from it, or nothing (spawn) where
    multiprocessing has no forkserver (Windows). A server already running keeps the modules it has.

    The server starts with Ctrl-C blocked (a signal mask is inherited, and kept by the workers forked from it
    until :func:`dask_setup` ignores Ctrl-C): Ctrl-C to the whole job during its first seconds interrupted the
    server's imports and the workers' start with KeyboardInterrupt tracebacks, some after "interrupted"."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return {}
    from multiprocessing import forkserver, resource_tracker

    multiprocessing.get_context("forkserver").set_forkserver_preload(FORKSERVER_PRELOAD)
    resource_tracker.ensure_running()  # (first: starting it unblocks the signals it blocks for its own start)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # (this thread's: a Ctrl-C now waits)
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return {"distributed.worker.multiprocessing-method": "forkserver"}


@contextlib.contextmanager
def starting_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Callable[[], object]]:
    """As :func:`dask_client`, but a local cluster starts in a background thread now; yields a function that
    waits for it and returns the client (raising what starting raised). On exit the client and the cluster
    are closed, after waiting for a start still under way."""
    if scheduler is not None:  # nothing to start
        with dask_client(scheduler) as client:
            yield lambda: client
        return
    with _interruptions():
        yield from _starting_local(workers)


def _starting_local(workers: int | None) -> Iterator[Callable[[], object]]:
    _start_forkserver()  # before importing distributed here: the workers' imports start at once
    distributed = require("distributed", "dask", "embedding with --engine dask")
    with _quiet_distributed(), contextlib.ExitStack() as stack:
        with ThreadPoolExecutor(1, thread_name_prefix="satclip-dask") as pool:
            cluster = pool.submit(stack.enter_context, _local_cluster(distributed, workers))
            clients: list = []

            def client() -> object:
                if not clients:  # a Client is entered and left in one thread (it sets a context variable)
                    clients.append(stack.enter_context(distributed.Client(cluster.result())))
                return clients[0]

            try:
                with _silent_if_interrupted():
                    yield client
            finally:
                with contextlib.suppress(Exception):  # wait for the start (a failed one has nothing to close)
                    cluster.result()
