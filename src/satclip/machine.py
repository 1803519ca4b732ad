"""What the machine offers this process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run a block with ``count`` torch CPU threads (intra-op), restoring the number afterwards. One thread
    sums float64 products in one order (the same bytes on any machine), and MOSAIKS' many small products are
    fastest and steady single-threaded: with 2 threads on a busy 2-core machine they were measured 3–40× slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
