"""Hand-split embedding jobs (``satclip embed --shard I/N``): parsing the option, the shard's output name and
its chunk range. Pure functions, without torch (the command line parses ``--shard`` before anything loads)."""

from __future__ import annotations

from pathlib import Path

from ..errors import OutputExistsError


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
    """``emb.parquet`` → ``emb.shard-3-of-8.parquet``, ``emb.shard-03-of-12.parquet`` (unchanged for a single shard).
    The index is zero-padded to the width of the last one, so that the names sort in row order: unpadded,
    ``sorted(glob(…))`` put shard 10 before shard 2, and the shards concatenated so misaligned their rows."""
    index, count = shard
    if count == 1:
        return output
    return output.with_name(f"{output.stem}.shard-{index:0{len(str(count - 1))}d}-of-{count}{output.suffix}")


def check_no_unpadded(output: Path, shard: tuple[int, int]) -> None:
    """Refuse where this shard's output or its unfinished work (``….partial``) is there under the unpadded name
    a satclip before 2026-12-06 gave it (``emb.shard-3-of-12.parquet``): it would be neither resumed nor replaced,
    and a glob of the shards would then take this shard's rows twice."""
    index, count = shard
    if len(str(index)) == len(str(count - 1)):  # (no padding: one name ever)
        return
    padded = shard_path(output, shard)
    unpadded = output.with_name(f"{output.stem}.shard-{index}-of-{count}{output.suffix}")
    for suffix, what in (("", "output"), (".partial", "unfinished work")):
        old = unpadded.with_name(unpadded.name + suffix)
        if old.exists() or old.is_symlink():
            raise OutputExistsError(
                f"{old} is this shard's {what} under the name it had before shard numbers were zero-padded (so that "
                f"they sort in order): rename it to {padded.name + suffix} (or remove it) and rerun"
            )


def shard_chunks(num_rows: int, chunk_rows: int, shard: tuple[int, int]) -> tuple[int, int]:
    """The chunk range ``[first, stop)`` of shard ``(i, n)``: contiguous, as even as whole chunks allow."""
    index, count = shard
    total = -(-num_rows // chunk_rows)
    return total * index // count, total * (index + 1) // count
