"""Large output buffers: correct tensors, and backed by transparent huge pages where the kernel allows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from satclip.encoding import hugepages

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


ANON_HUGE_KIB = """
import re, sys
from pathlib import Path
import torch
from satclip.encoding import hugepages

out = hugepages.empty(16, 1 << 20, dtype=torch.float64)  # 128 MiB
out.fill_(1.0)  # first touch: the kernel backs the advised range with 2 MiB pages
address, inside = out.data_ptr() + out.nbytes // 2, False
for line in Path("/proc/self/smaps").read_text().splitlines():
    span = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
    if span:
        inside = int(span[1], 16) <= address < int(span[2], 16)
    elif inside and line.startswith("AnonHugePages:"):
        print(int(line.split()[1]))
"""


def test_small_and_large_buffers_are_ordinary_tensors():
    for shape in [(3, 5), (64, 1 << 18)]:  # 60 B and 64 MiB of float32
        out = hugepages.empty(*shape, dtype=torch.float32)
        assert out.shape == shape and out.dtype == torch.float32 and out.is_contiguous()
        out.fill_(2.5)
        assert out.sum().item() == 2.5 * out.numel()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not THP_MODE.exists() or "[never]" in THP_MODE.read_text(),
    reason="transparent huge pages are not available here",
)
def test_large_buffer_gets_huge_pages():
    # A fresh interpreter, so that the buffer is a fresh mapping: memory a long-lived process's allocator
    # hands out again is already resident and has no faults left to save.
    run = subprocess.run([sys.executable, "-c", ANON_HUGE_KIB], capture_output=True, text=True, check=True)
    assert int(run.stdout) >= 2048
