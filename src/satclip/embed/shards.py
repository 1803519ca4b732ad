"""Hand-split embedding jobs (``satclip embed --shard I/N``): parsing the option, the shard's output name and
its chunk range. Pure functions, without torch (the command line parses ``--shard`` before anything loads)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import BadInputError, OutputExistsError


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


def check_no_other_split(output: Path, shard: tuple[int, int]) -> None:
    """Refuse where ``output`` (the path before ``.shard-I-of-N``) is there split another number of ways, finished or
    unfinished (``….partial``): shards of another N for a shard, the whole output for a shard, shards for the whole
    output. Written beside them, a folder of them read as one dataset (``pandas.read_parquet(folder)``) held rows
    twice (58,192 rows of a 50,000-row input for shards of 3 and a shard 0/4)."""
    index, count = shard
    shards = re.compile(rf"{re.escape(output.stem)}\.shard-\d+-of-(\d+){re.escape(output.suffix)}(?:\.partial)?")
    try:
        names = os.listdir(output.parent)
    except OSError:  # (a parent that is not there or cannot be read: said by the output's own checks)
        return
    whole = {output.name, output.name + ".partial"}
    found = sorted(name for name in names if (name in whole and count > 1) or (
        (match := shards.fullmatch(name)) is not None and int(match.group(1)) != count))  # fmt: skip
    if not found:
        return
    splits = sorted({int(match.group(1)) for name in found if (match := shards.fullmatch(name)) is not None})
    this = f"shard {index}/{count}" if count > 1 else "the whole output (no --shard)"
    like = [f"--shard I/{n}" for n in splits] + (["no --shard"] if whole & set(found) else [])
    raise BadInputError(
        f"{output.parent} already holds {output.name} in other parts ({', '.join(found[:4])}"
        f"{f', … {len(found)} in all' if len(found) > 4 else ''}): {this} beside them would put rows twice into the "
        f"folder read back as one dataset; split it as they are ({' or '.join(like)}), or write another output name, "
        "or remove them"
    )


def shard_chunks(num_rows: int, chunk_rows: int, shard: tuple[int, int]) -> tuple[int, int]:
    """The chunk range ``[first, stop)`` of shard ``(i, n)``: contiguous, as even as whole chunks allow."""
    index, count = shard
    total = -(-num_rows // chunk_rows)
    return total * index // count, total * (index + 1) // count
