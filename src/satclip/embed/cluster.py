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

import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from ..errors import SatclipError
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
    error) or does on purpose (cancelling on Ctrl-C, removing its plugin)."""
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(ValueError):  # (only from a main thread)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's: it closes the cluster
    for name in ("distributed.worker", "distributed.worker.state_machine"):
        logging.getLogger(name).addFilter(_reported_by_the_client)


def _reported_by_the_client(record: logging.LogRecord) -> bool:
    """False for a worker's record of a failed task (its traceback; the client names the error) or of a task
    cancelled when the client stops."""
    message = str(record.msg)
    stopping = message.startswith("Worker plugin") and "teardown" in message  # (its client gone mid-run)
    return not (message.startswith("Compute Failed") or message.startswith("Async instruction") or stopping)


#: seconds a scheduler has to send its handshake to the connectivity probe
HANDSHAKE_TIMEOUT = 10.0


class SchedulerError(SatclipError):
    """The Dask scheduler cannot be reached."""


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


#: the level of distributed's and asyncio's loggers once a run is interrupted
SILENT = logging.CRITICAL + 1


@contextlib.contextmanager
def _silent_if_interrupted() -> Iterator[None]:
    """Around the work done with a client (inside its and its cluster's closing): on Ctrl-C or SIGTERM the
    connections the interruption cuts are logged with tracebacks as the client and cluster close and the
    process ends ("Future exception was never retrieved", "Stream is closed"); the one line "interrupted"
    says it all, so those loggers are silenced first (unless satclip's logger is at DEBUG)."""
    try:
        yield
    except KeyboardInterrupt:
        if not log.isEnabledFor(logging.DEBUG):
            for name in ("distributed", "asyncio"):
                logging.getLogger(name).setLevel(SILENT)
        raise


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[object]:
    """A ``distributed.Client`` of the scheduler at ``scheduler``, or of a ``LocalCluster`` of ``workers``
    single-threaded worker processes (default: one per usable core) started here and closed afterwards."""
    distributed = require("distributed", "dask", "embedding with --engine dask")
    with _quiet_distributed():
        yield from _connect(distributed, scheduler, workers)


def _probe(scheduler: str) -> None:
    """Fail at once where a ``tcp://host:port`` scheduler cannot be reached (refused, unknown host: the Dask
    client retries a refused connection until its 30 s timeout) or what answers there is no Dask scheduler (the
    client waits for its handshake without a timeout, or reads another protocol's bytes as a frame length).
    Other protocols are left to the client."""
    import socket
    import struct
    from urllib.parse import urlsplit

    address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
    parts = urlsplit(address)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        return
    try:
        connection = socket.create_connection((parts.hostname, parts.port), timeout=PROBE_TIMEOUT)
    except (ConnectionRefusedError, socket.gaierror) as err:
        raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err
    except OSError:  # slow or filtered: the client's own timeout decides
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


def _connect(distributed, scheduler: str | None, workers: int | None) -> Iterator[object]:
    if scheduler is not None:
        _probe(scheduler)
        try:
            client = distributed.Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err
        with client, _silent_if_interrupted():
            yield client
        return
    with _local_cluster(distributed, workers) as cluster, distributed.Client(cluster) as client:
        with _silent_if_interrupted():
            yield client


@contextlib.contextmanager
def _local_cluster(distributed, workers: int | None) -> Iterator[object]:
    dask = require("dask", "dask", "embedding with --engine dask")
    workers = workers or usable_cores()
    log.info("starting a local Dask cluster of %d worker process(es)", workers)
    environ = dict(os.environ)
    try:
        with dask.config.set({**LOCAL_WORKER_CONFIG, **_start_forkserver()}), distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", preload=WORKER_PRELOAD
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
    multiprocessing has no forkserver (Windows). A server already running keeps the modules it has."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return {}
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(FORKSERVER_PRELOAD)
    forkserver.ensure_running()
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
