"""What every benchmark prints about the machine it ran on, and where the golden fixtures are.

Imported by the scripts beside it (``python benchmarks/NAME.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from satclip.models import precision

#: the golden data, by tests/conftest.py's rule: $SATCLIP_FIXTURES when set, else ../shared/fixtures beside
#: the checkout (README.md, 'Tests and benchmarks', says where they come from)
FIXTURES = (Path(os.environ["SATCLIP_FIXTURES"]) if os.environ.get("SATCLIP_FIXTURES")
            else Path(__file__).resolve().parents[2] / "shared" / "fixtures")  # fmt: skip


def has_amx_bf16() -> bool:
    """Whether this CPU has AMX-BF16 (torch's cpuinfo flags)."""
    return bool(precision.cpu_capabilities().get("amx_bf16"))


def describe() -> str:
    """One line: CPU model, torch's dispatch level and bf16 matrix features, threads, torch, GPU if any."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{precision.cpu_model() or 'unknown CPU'}, cpu capability {precision.describe_cpu()}, "
            f"{torch.get_num_threads()} torch thread(s) of {os.cpu_count()} CPU(s), torch {torch.__version__}, "
            f"{gpu}")  # fmt: skip


def print_hardware(prefix: str = "# ") -> None:
    """Print :func:`describe` (call it after setting the thread count)."""
    print(f"{prefix}{describe()}", flush=True)


if __name__ == "__main__":  # for the shell benchmarks: python benchmarks/hardware.py
    print_hardware()
