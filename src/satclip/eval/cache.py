"""The evaluation cache: derived arrays (task labels, rasters, embeddings) written atomically.

Root: ``$SATCLIP_CACHE/eval`` (default ``~/.cache/satclip/eval``). Every entry is one ``.npz`` whose name
carries a hash of everything it was derived from, so a stale entry is never read; delete the folder to
reclaim space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import safe_output
from ..paths import cache_dir

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$SATCLIP_CACHE/eval`` (default ``~/.cache/satclip/eval``); not created here."""
    return cache_dir("eval")


def file_part(name: str, empty: str = "_", *, unique: bool = False) -> str:
    """``name`` (a task, encoder, probe or fold name) as part of a file name: every run of characters other than
    ``A-Z a-z 0-9 _ . -`` becomes one ``_`` (so no ``/``, ``\\`` or control character), at most 60 characters;
    ``empty`` where nothing (or only dots: ``.``, ``..``) is left. Every file name of an evaluation (predictions,
    figures, cache entries) that holds such a name makes it with this. Two names can give one part (``a b``
    and ``a_b``): with ``unique``, a part that is not the name itself ends in a digest of the name."""
    part = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:60]
    if not part.strip("."):
        part = empty
    if unique and part != name:
        part += "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return part


def digest(*parts) -> str:
    """A short stable hex digest of JSON-able parts, numpy arrays and bytes (16 hex characters)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(f"array:{arr.dtype.str}:{arr.shape}".encode())
            h.update(arr.tobytes())
        elif isinstance(part, bytes):
            h.update(b"bytes:" + part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def save_npz(path: Path, arrays: dict[str, np.ndarray], *, compress: bool = False) -> None:
    """Save arrays as an ``.npz`` atomically (no pickled objects); replaces an older entry. A full disk or a
    file-size limit is an ``OSError`` naming ``path`` (numpy's zip writer raises it without a file name)."""
    with safe_output.atomic_file(path, overwrite=True) as tmp, safe_output.naming(tmp), tmp.open("wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`save_npz` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def cached_arrays(
    folder: str,
    name: str,
    build: Callable[[], dict[str, np.ndarray]],
    *,
    enabled: bool = True,
    compress: bool = False,
) -> dict[str, np.ndarray]:
    """Arrays stored at ``cache_root()/folder/name.npz``, built by ``build()`` on a miss.

    ``name`` must already encode every input the arrays depend on (use :func:`digest`). A damaged entry
    is rebuilt. With ``enabled=False`` nothing is read or written.
    """
    if not enabled:
        return build()
    path = cache_root() / folder / f"{name}.npz"
    if path.is_file():
        try:
            return load_npz(path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # cut short, emptied or damaged
            log.warning("ignoring unreadable cache entry %s (%s); rebuilding", path, err)
    arrays = build()
    _keep(path, arrays, compress)
    return arrays


def why_not_written(err: BaseException, path: Path) -> str:
    """Why writing the cache file ``path`` failed, for a warning that names ``path`` itself: an ``OSError`` naming
    ``path`` as ``[Errno N] reason`` (not the name a second time), anything else as its message."""
    if isinstance(err, OSError) and err.strerror and err.filename == str(path):
        return f"[Errno {err.errno}] {err.strerror}"
    return str(err)


def _keep(path: Path, arrays: dict[str, np.ndarray], compress: bool) -> None:
    """Store a cache entry if the cache area lets us: it only saves time, so a full, read-only or foreign
    cache area is one warning, never the evaluation's failure (:func:`save_npz` leaves no partial file)."""
    from ..errors import SatclipError

    try:
        save_npz(path, arrays, compress=compress)
    except (OSError, SatclipError) as err:
        log.warning("could not write the eval cache entry %s (%s); continuing without caching it "
                    "(--no-cache skips the cache, SATCLIP_CACHE=DIR moves it)", path,
                    why_not_written(err, path))  # fmt: skip
    else:
        log.debug("cached %s", path)
