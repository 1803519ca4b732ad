"""What the benchmark scripts share about their command lines (imported like hardware.py): option types that refuse
a value no measurement can be made with, in one argparse line (exit 2), and the optional packages a script needs,
checked before it does any work (one line naming the extra to install, exit 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from satclip.errors import MissingExtraError
from satclip.optional import require


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: give {least} or more") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value} is less than {least}: give {least} or more")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (points, repeats, threads, images…)."""
    return _whole(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number ≥ 0 (where 0 means none: DataLoader workers, extra epochs)."""
    return _whole(text, 0)


def torch_device(text: str) -> str:
    """argparse type: a torch device this machine has (``cpu``; ``cuda``, ``cuda:N`` only where torch finds a GPU)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device: give cpu or cuda (cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        cpu_only = "this torch is a CPU build" if torch.version.cuda is None else "torch finds no CUDA GPU"
        raise argparse.ArgumentTypeError(f"{text}: {cpu_only} here; give --device cpu or run on a GPU machine")
    return text


def needs(*packages: tuple[str, str]) -> None:
    """Import each ``(module, extra)`` or exit with one line naming the extra that installs it (call it right after
    parsing the options, so that a missing package stops the script before any work, and ``--help`` works without)."""
    script = f"benchmarks/{Path(sys.argv[0]).name}"
    for module, extra in packages:
        try:
            require(module, extra, script)
        except MissingExtraError as err:
            sys.exit(str(err))
