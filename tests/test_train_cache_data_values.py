"""Values of ``satclip train``, ``satclip cache`` and ``satclip data`` that were accepted or failed badly: each is
now refused at once with one line naming the key or option and what is allowed (exit 2)."""

from __future__ import annotations

import torch

from satclip import machine


def test_max_workers_is_a_number_and_cpu_threads_a_context():
    """The bound every worker count is checked against is an int; cpu_threads still restores the thread count."""
    assert machine.max_workers() == max(64, 4 * machine.usable_cores())
    before = torch.get_num_threads()
    with machine.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
