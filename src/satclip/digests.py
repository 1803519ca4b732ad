"""Digests of files, read in blocks (a file is never held in memory whole): the one place satclip hashes a file."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

#: bytes read at a time
BLOCK = 1 << 20


def file_digest(path: str | Path, algorithm: str = "sha256", prefix: bytes = b"") -> str:
    """The hex digest (``hashlib`` ``algorithm``) of ``prefix`` followed by the bytes of the file ``path``."""
    digest = hashlib.new(algorithm)
    digest.update(prefix)
    with open(path, "rb") as file:
        while block := file.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_crc32(path: str | Path, start: int = 0, stop: int | None = None) -> list[int] | None:
    """``[size, CRC-32]`` of the bytes ``start … stop`` (None: to the end) of the file ``path``, fewer bytes where
    the file ends sooner; None if ``path`` is not a file."""
    try:
        with open(path, "rb") as file:
            file.seek(start)
            size, crc, left = 0, 0, None if stop is None else max(stop - start, 0)
            while left is None or left > 0:
                block = file.read(BLOCK if left is None else min(BLOCK, left))
                if not block:
                    break
                size, crc = size + len(block), zlib.crc32(block, crc)
                left = None if left is None else left - len(block)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return [size, crc]
