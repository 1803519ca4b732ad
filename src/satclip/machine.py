"""What the machine offers this process."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

#: the float ops torch 2.x computes with oneMKL's vector math (VML) on the CPU (ATen/cpu/vml.h)
_VML_OPS = ("acos", "asin", "atan", "cos", "erf", "erfc", "erfinv", "exp", "log", "log10", "log2", "sin", "sqrt",
            "tan", "tanh", "trunc")  # fmt: skip


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def physical_memory() -> int | None:
    """Bytes of memory this machine has (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


#: :func:`max_workers` as messages say it ("4 per core, at least 64" read as a contradiction)
MAX_WORKERS_RULE = "4 per core of this machine or 64, whichever is more"


def max_workers() -> int:
    """The most processes or threads a satclip command starts for one job (``--workers``, ``--num-workers``,
    ``--threads``, ``data.num_workers``): 4 per usable core or 64, whichever is more. More only multiplies memory (each
    worker holds the model or a loader's buffers), and a count typed wrong (``10**20``) started processes
    without end."""
    return max(64, 4 * usable_cores())


@contextlib.contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    """Run a block with ``$name`` set to ``value``, for this process and the processes it starts (worker pools),
    and put it back as it was afterwards (unset where it was unset)."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run a block with ``count`` torch CPU threads (intra-op), restoring the number afterwards. One thread
    sums float64 products in one order (the same bytes on any machine), and MOSAIKS' many small products are
    fastest and steady single-threaded: with 2 threads on a busy 2-core machine they were measured 3–40× slower."""
    import torch

    before = torch.get_num_threads()
    if before == count:  # (a Dask worker's, a sharded run's: nothing to change)
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def settle_vector_math() -> None:
    """Resolve oneMKL's vector-math dispatch once, on one thread, before torch splits a call over threads.

    oneMKL picks each VML function's kernel on its first call. When that first call runs on several torch
    threads at once (a process's first sizable ``torch.cos``, ``torch.sin``…), one thread can run the
    low-accuracy kernel for its whole share of that one call (pytorch/pytorch#188792; oneMKL 2024.2, the
    version in the torch 2.13 wheels): measured on a 2-core Intel Xeon, the first float64 ``torch.cos`` of
    3,010 latitudes came back ~7e-9 off for half of them in 2 of 14 fresh processes. One one-element call
    per function and dtype (single-threaded) settles the dispatch; later calls are exact.
    """
    import torch

    if not torch.backends.mkl.is_available():
        return
    for dtype in (torch.float32, torch.float64):
        one = torch.full((1,), 0.5, dtype=dtype)
        for name in _VML_OPS:
            getattr(torch, name)(one)


def available_devices() -> list[str]:
    """Device strings torch can use on this machine: ``cpu``, then ``cuda:0`` …, ``mps`` where present."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(device) -> None:
    """Raise :class:`~satclip.errors.BadInputError` unless ``device`` (a string or ``torch.device``) names a
    device present here, saying which are."""
    import torch

    from .errors import BadInputError

    if str(device) == "cpu":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise BadInputError(f"{device!r} is not a torch device; use one of: {', '.join(available_devices())}") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "meta":  # (it said "no meta device on this machine")
        raise BadInputError(f"{str(device)!r} holds no values (shapes only), so nothing can be computed on it; use one "
                            f"of: {', '.join(available_devices())}")  # fmt: skip
    backend = getattr(torch.backends, "mps", None) if parsed.type == "mps" else getattr(torch, parsed.type, None)
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        raise BadInputError(
            f"{str(device)!r}: no {parsed.type} device on this machine; available: {', '.join(available_devices())}"
        )
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if parsed.index is not None and parsed.index >= count:
        raise BadInputError(
            f"{str(device)!r}: this machine has {count} {parsed.type} device(s); available: "
            f"{', '.join(available_devices())}"
        )
