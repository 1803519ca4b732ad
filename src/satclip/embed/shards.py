"""Hand-split embedding jobs (``satclip embed --shard I/N``): parsing the option, the shard's output name and
its chunk range. Pure functions, without torch (the command line parses ``--shard`` before anything loads)."""

from __future__ import annotations

from pathlib import Path


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0 ≤ i < n) → ``(i, n)``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N with integers, e.g. 0/8") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need 0 <= I < N (shards are numbered from 0)")
    return index, count


def shard_path(output: Path, shard: tuple[int, int]) -> Path:
    """``emb.parquet`` → ``emb.shard-3-of-8.parquet`` (unchanged for a single shard)."""
    index, count = shard
    if count == 1:
        return output
    return output.with_name(f"{output.stem}.shard-{index}-of-{count}{output.suffix}")


def shard_chunks(num_rows: int, chunk_rows: int, shard: tuple[int, int]) -> tuple[int, int]:
    """The chunk range ``[first, stop)`` of shard ``(i, n)``: contiguous, as even as whole chunks allow."""
    index, count = shard
    total = -(-num_rows // chunk_rows)
    return total * index // count, total * (index + 1) // count
