"""The embedding field of a ``satclip map`` job, kept in ``OUT.partial/`` while it is computed.

The field's computed cells (all, or those of the map's mask, in grid order) are a memory-mapped ``field.npy``
``(cells, D)`` float32 (float64 for a map in precision float64), filled block of rows by block, each block flushed
before ``manifest.json`` records it with the CRC-32 of its bytes: a killed run resumes at the first block not
recorded (after checking the blocks recorded: a field cut short is refused, and a block changed since it was
written is computed again), and the output (GeoTIFF, Zarr, PNG, principal components) is then written from the
field, which also spares the PCA's second pass from computing the field again. The job's identity (model,
precision, grid, cells) must match to resume; the output's PCA and format (``--pca``, ``--format``; the output path
is the work's name) may change between runs.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .. import safe_output
from ..safe_output import naming
from .job import (
    MANIFEST,
    damaged_manifest,
    discard_work,
    discarded_if_nothing_done,
    publish_work,
    resume_manifest,
    stopped_after_publishing,
    work_dir,
    work_manifest,
)
from .sinks import check_work_array

log = logging.getLogger(__name__)

FIELD = "field.npy"

# what a map work directory holds: the manifest, the field and the output before it is published
safe_output.declare_contents("map-work", MANIFEST, FIELD, "{output}")


def cells_digest(mask: np.ndarray | None) -> str | None:
    """A sha256 of the computed cells (None: all)."""
    return None if mask is None else hashlib.sha256(np.packbits(mask)).hexdigest()


class FieldWork:
    """The work directory of one map job: ``open`` (new or resumed), ``fill`` the missing blocks, read the
    finished field with ``blocks``, write the output at ``output_path`` and ``publish`` it."""

    def __init__(self, workdir: Path, manifest: dict, cells: np.ndarray | None):
        self.workdir, self.manifest, self.cells = workdir, manifest, cells
        self.block_rows = int(manifest["block_rows"])
        self.shape = tuple(manifest["shape"])
        per_row = np.full(self.shape[0], self.shape[1]) if cells is None else cells.sum(axis=1)
        self.offsets = np.concatenate([[0], np.cumsum(per_row)])  # of each grid row's first cell in field.npy

    @classmethod
    def open(cls, output: Path, identity: dict, shape: tuple[int, int, int], block_rows: int,
             cells: np.ndarray | None = None, restart: bool = False,
             dtype="float32") -> FieldWork:  # fmt: skip
        """The work of ``output``'s job, whose field of ``shape`` ``(H, W, D)`` and ``dtype`` (the identity's
        precision says it) holds values where the boolean
        ``(H, W)`` ``cells`` (None: everywhere): an unfinished run of the same ``identity`` is resumed
        (``restart``: discarded), another job's refused (:class:`~satclip.embed.job.ResumeMismatchError`), and
        one whose ``field.npy`` is not all there (cut short, replaced) refused (:class:`~satclip.errors.ResumeError`).
        """
        workdir = work_dir(output)
        if _left_after_publishing(workdir) and safe_output.is_owned(workdir):
            safe_output.remove_owned(workdir)  # the finished work of another job, whose output this one replaces
        manifest = resume_manifest(workdir, identity, restart)
        stored = (shape[0] * shape[1] if cells is None else int(cells.sum()), shape[2])
        if manifest is not None:  # (NumPy's memory map would extend a field cut short with zeros)
            _check_manifest(workdir / MANIFEST, manifest, shape)
            check_work_array(workdir / FIELD, stored, np.dtype(dtype), "the embedding field")
            work = cls(workdir, manifest, cells)
            work._check_blocks()
            return work
        else:
            if safe_output.is_owned(workdir):
                safe_output.remove_owned(workdir)  # our leftovers without a manifest: nothing to resume
            safe_output.make_owned_dir(workdir, kind="map-work")
            try:
                with naming(workdir / FIELD):
                    field = np.lib.format.open_memmap(workdir / FIELD, mode="w+", dtype=dtype, shape=stored)
                    del field
                    safe_output.reserve(workdir / FIELD)  # a full disk fails now, not with SIGBUS in the memory map
            except BaseException:  # (a full disk, a Ctrl-C while the field is reserved: nothing computed yet)
                discard_work(workdir)
                raise
            manifest = {"satclip_map_manifest": 1, "identity": identity, "shape": list(shape),
                        "block_rows": block_rows, "done": [], "crc32": {}}  # fmt: skip
            safe_output.write_json(workdir / MANIFEST, manifest)
        return cls(workdir, manifest, cells)

    def _block(self, field: np.ndarray, row0: int) -> np.ndarray:
        """The stored values of the block of rows from ``row0``."""
        stop = min(row0 + self.block_rows, self.shape[0])
        return field[self.offsets[row0] : self.offsets[stop]]

    def _check_blocks(self) -> None:
        """Compute again the blocks done whose values changed since they were written (their recorded CRC-32s
        differ), with a warning naming each; manifests of a satclip before 2026-12-04 record no CRC-32s, and
        their blocks are not checked."""
        crcs = self.manifest.get("crc32")
        if crcs is None:
            return
        field = np.load(self.workdir / FIELD, mmap_mode="r")
        changed = []
        for row0 in self.manifest["done"]:
            crc = zlib.crc32(self._block(field, row0))
            if crc != crcs[str(row0)]:
                log.warning("%s, the embedding field of an unfinished run: its block of rows from %d has changed since "
                            "it was written (CRC-32 %08x, not %08x); computing it again", self.workdir / FIELD, row0,
                            crc, crcs[str(row0)])  # fmt: skip
                changed.append(row0)
        del field
        if changed:
            self.manifest["done"] = [row0 for row0 in self.manifest["done"] if row0 not in changed]
            for row0 in changed:
                del crcs[str(row0)]
            safe_output.write_json(self.workdir / MANIFEST, self.manifest)

    @property
    def done_rows(self) -> int:
        return sum(min(self.block_rows, self.shape[0] - row0) for row0 in self.manifest["done"])

    def fill(self, blocks: Callable[[set[int]], Iterator[tuple[int, np.ndarray]]],
             progress: Callable[[int], None] | None = None) -> None:  # fmt: skip
        """Compute the blocks not done yet: ``blocks(skip)`` yields ``(row0, values)`` for the blocks of
        :attr:`block_rows` rows whose ``row0`` is not in ``skip``."""
        done = set(self.manifest["done"])
        if done:
            safe_output.keep_work(self.workdir)
        with discarded_if_nothing_done(self.workdir, self.manifest):  # (a run stopped before its first block)
            field = np.load(self.workdir / FIELD, mmap_mode="r+")
            try:
                for row0, values in blocks(done):
                    rows = slice(row0, row0 + values.shape[0])
                    flat = values.reshape(-1, values.shape[-1])
                    with naming(self.workdir / FIELD):
                        field[self.offsets[rows.start] : self.offsets[rows.stop]] = (
                            flat if self.cells is None else flat[self.cells[rows].reshape(-1)]
                        )
                        field.flush()
                    done.add(row0)
                    self.manifest["done"] = sorted(done)
                    if "crc32" in self.manifest:
                        self.manifest["crc32"][str(row0)] = zlib.crc32(self._block(field, row0))
                    safe_output.write_json(self.workdir / MANIFEST, self.manifest)
                    safe_output.keep_work(self.workdir)
                    if progress:
                        progress(values.shape[0])
            finally:
                del field

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """The finished field, ``(row0, values)`` a block of rows at a time."""
        field = np.load(self.workdir / FIELD, mmap_mode="r")
        height, width, dim = self.shape
        for row0 in range(0, height, self.block_rows):
            rows = slice(row0, min(row0 + self.block_rows, height))
            stored = field[self.offsets[rows.start] : self.offsets[rows.stop]]
            if self.cells is None:
                yield row0, np.array(stored).reshape(-1, width, dim)
                continue
            values = np.full((rows.stop - rows.start, width, dim), np.nan, dtype=field.dtype)
            values[self.cells[rows]] = stored
            yield row0, values

    def output_path(self, output: Path) -> Path:
        """Where the output is written, in the work directory, before :meth:`publish` moves it to ``output``
        (what a run stopped before publishing left there is removed first)."""
        path = self.workdir / output.name
        if path.is_dir() and not path.is_symlink():
            safe_output.remove_owned(path)
        else:
            safe_output.remove_owned_files(self.workdir, [output.name])
        return path

    def publish(self, finished: Path, output: Path, described: dict, *, overwrite: bool, inputs) -> None:
        """Move the output ``finished`` (:meth:`output_path`; ``described``: its format, PCA) to ``output`` and
        remove the work directory, having recorded both (:func:`~satclip.embed.job.publish_work`): a run killed
        on the way leaves what the next run of the same job completes (:func:`published`, or resumed with the
        field done). A run killed after writing its output, before recording it, left an output the next run
        refused to replace without --overwrite."""
        self.manifest["published"] = described
        publish_work(self.workdir, self.manifest, finished, output, overwrite=overwrite, inputs=inputs)


def _check_manifest(path: Path, manifest: dict, shape: tuple[int, int, int]) -> None:
    """Raise :class:`~satclip.errors.ResumeError` unless the manifest ``path`` of an unfinished map of this job
    holds what :class:`FieldWork` reads from it: the field's ``shape``, a ``block_rows`` and the first rows of the
    blocks ``done`` (an edited or damaged one failed with "unexpected error (TypeError)", or resumed on nonsense)."""
    block_rows, done = manifest.get("block_rows"), manifest.get("done")
    problem = None
    if manifest.get("shape") != list(shape):
        problem = f"shape {manifest.get('shape')!r:.60} is not this map's {list(shape)}"
    elif type(block_rows) is not int or block_rows < 1:
        problem = f"block_rows {block_rows!r:.60} is not a number of grid rows"
    elif not isinstance(done, list) or not all(
        type(row) is int and 0 <= row < shape[0] and row % block_rows == 0 for row in done
    ) or len(set(done)) != len(done):
        problem = f"done {done!r:.60} is not a list of the first rows of blocks of {block_rows} grid rows"
    crcs = manifest.get("crc32")
    if problem is None and crcs is not None and not (
        isinstance(crcs, dict) and all(type(crcs.get(str(row))) is int for row in done)
    ):
        problem = f"crc32 {crcs!r:.60} does not hold the CRC-32 of each block done"
    if problem is not None:
        raise damaged_manifest(path, problem)


def published(output: Path, described: dict, **same) -> bool:
    """Whether the work of ``output``'s job records that it published ``output`` as ``described`` and stopped
    before removing its work directory (:meth:`FieldWork.publish`), its identity having the entries ``same``:
    the existing ``output`` is then that run's own, and only the work directory is left to remove."""
    workdir = work_dir(output)
    return work_manifest(workdir).get("published") == described and stopped_after_publishing(workdir, output, **same)


def _left_after_publishing(workdir: Path) -> bool:
    """Whether ``workdir`` is what a map job left after publishing its output (the finished work of the job that
    wrote the output, not an unfinished one: its output is no longer in it)."""
    manifest = work_manifest(workdir)
    if manifest.get("published") is None:
        return False
    finished = manifest.get("finished")  # (not recorded by satclip before 2026-12-04: published then)
    return not isinstance(finished, str) or not ((workdir / finished).exists() or (workdir / finished).is_symlink())
