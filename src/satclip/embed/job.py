"""Resumable, shardable embedding of a point file.

The job splits the input into chunks of ``chunk_rows`` rows (chunk ``k`` = rows ``[k·C, (k+1)·C)``),
embeds them in order and hands each to a sink (:mod:`satclip.embed.sinks`). A manifest in the work
directory ``OUTPUT.partial/`` records the input fingerprint, the model identity, the options and the
chunks done; it is rewritten atomically after every chunk. Rerunning the same command after a crash
or a kill continues from the first chunk not done and produces byte-identical output; rerunning with a
different input, model or options is refused. ``shard=(i, n)`` takes the i-th of n contiguous,
chunk-aligned row ranges and writes ``OUTPUT`` with ``.shard-i-of-n`` before its suffix (``i`` zero-padded to the
width of ``n - 1``: the names sort in order); the shards' rows concatenated in order are the unsharded output's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import safe_output
from ..encoding.points import (
    PROJECTED_FILE,
    SWAPPED,
    InvalidPointsError,
    describe_invalid,
    invalid_rows,
    outside_radians_box,
    range_hints,
    swap_evidence,
)
from ..errors import BadInputError, OutputExistsError, ResumeError, ResumeMismatchError
from ..io.resolve import encoder_files
from ..models.location_encoder import model_identity, model_record
from ..models.precision import AUTO_CHOICES, Choice, record
from ..models.provenance import Footprint, recorded_footprint
from . import sinks
from .api import embed_lonlat, load_encoder
from .footprint import outside_count
from .shards import check_no_other_split, check_no_unpadded, shard_chunks, shard_path
from .sources import Source, clipped, coordinates, no_points, open_source

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_CHUNK_ROWS = 65536

# what an embed work directory holds (of either engine; anything else, e.g. a user's notes, is never deleted
# with it): the manifest, each chunk's record and the unfinished output (embed.sinks), the Parquet row groups'
# footers (embed.parquet_append), the Dask engine's finished and pending parts (embed.distributed)
safe_output.declare_contents(
    "embed-work", MANIFEST, "*-chunk-[0-9]*.json", "output.parquet", "embeddings.npy", "store.zarr",
    "row-group-[0-9]*.footer", "parts", "pending", "part-[0-9]*",
)  # fmt: skip


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...
    def update(self, rows: int) -> None: ...


class _NoProgress:
    def start(self, total: int, done: int) -> None:
        pass

    def update(self, rows: int) -> None:
        pass


@dataclass
class EmbedResult:
    output: Path
    rows: int
    invalid: int
    chunks: int
    resumed_chunks: int
    seconds: float
    #: rows embedded by this call (less than ``rows`` when resuming)
    embedded_rows: int = 0
    #: the precision the embeddings were computed in (see :func:`precision_record`)
    precision: str = ""
    #: valid points outside the model's training footprint (:mod:`satclip.embed.footprint`); None when the model
    #: records none (or they could not be counted)
    outside_footprint: int | None = None
    #: that footprint, described (:meth:`satclip.models.provenance.Footprint.describe`)
    footprint: str = ""
    #: valid points outside the box where coordinates in radians lie
    #: (:func:`~satclip.encoding.points.outside_radians_box`); None for a run started by an older satclip
    outside_radians_box: int | None = None


def precision_record(encoder) -> dict:
    """The precision ``encoder`` runs in, for output metadata: ``{"precision": …}`` plus, when it was
    chosen by "auto", ``requested``, ``reason``, ``speedup`` and ``min_cosine``."""
    from ..models import precision as _precision

    chosen = _precision.for_encoder(encoder)
    choice = getattr(encoder, "precision_choice", None)
    if choice is not None and choice.precision == chosen:
        return choice.as_dict()
    return {"precision": chosen}


def output_attrs(identity: dict, source, encoder, rows: tuple[int, int], total: int) -> dict:
    """What an output records about the job that wrote it (Parquet schema metadata, Zarr attributes): the
    model (as in the job's identity, and the name or path it was loaded from), the input (an absolute path: the
    path as typed named nothing once the output moved), the input ``rows`` it holds (``[start, stop)`` of the
    ``total``: shards tile the input only when they were cut with the same ``--chunk-rows``, recorded too), the
    input's content fingerprint (:func:`_content`: a sibling shard is compared by it), the precision and the
    satclip version; for a retrieval encoder loaded from a spec, ``model_spec``, the spec."""
    from .. import __version__

    spec = {"model_spec": encoder.spec} if getattr(encoder, "spec", None) else {}
    return {safe_output.EMBEDDINGS_ATTR: {
        **spec, "model": identity["model"], "model_source": model_record(encoder, identity=identity["model"])["source"],
        "source": str(Path(source.path).absolute()), "input_rows": {"start": rows[0], "stop": rows[1], "total": total},
        "input": _content(identity["input"]), "chunk_rows": identity["options"]["chunk_rows"],
        "precision": precision_record(encoder), "version": __version__,
    }}  # fmt: skip


def check_sibling_shards(output: Path, shard: tuple[int, int], identity: dict, source: Source) -> None:
    """Refuse shard ``shard`` of ``output`` (the path before ``.shard-I-of-N``) where another shard of the same N,
    finished (a Parquet or Zarr output: a .npy records nothing) or unfinished, was made with another model or
    precision, ``--chunk-rows`` or input: read back together, such shards held two models side by side, and rows
    twice (cut with other chunks)."""
    index, count = shard
    chunk_rows = identity["options"]["chunk_rows"]
    this = {"model": identity["model"], "input": _content(identity["input"]), "chunk_rows": chunk_rows}
    for other in range(count):
        sibling = shard_path(output, (other, count))
        if other == index or not (sibling.exists() or work_dir(sibling).exists()):
            continue
        recorded = work_manifest(work_dir(sibling)).get("identity")
        wanted = this
        if isinstance(recorded, dict):  # unfinished: its manifest
            options = recorded.get("options")
            have = {"model": recorded.get("model"), "input": _content(recorded.get("input")),
                    "chunk_rows": options.get("chunk_rows") if isinstance(options, dict) else None}  # fmt: skip
        else:  # finished: what it records (output_attrs)
            have = _recorded_attrs(sibling)
            rows = have.get("input_rows")
            if not isinstance(rows, dict) or type(rows.get("total")) is not int:
                continue
            if "input" not in have:  # (an older shard: its rows, which another --chunk-rows or a shorter input cuts
                # otherwise; since 2026-12-06 a shard records its input by content, and --chunk-rows)
                total = rows["total"] if source.num_rows is None else source.num_rows
                first, stop = shard_chunks(total, chunk_rows, (other, count))
                rows = {"start": first * chunk_rows, "stop": min(stop * chunk_rows, total), "total": total}
                wanted = {"model": identity["model"], "input_rows": rows}
            have = {key: have.get(key) for key in wanted}
        changes = _differences(have, wanted)
        if changes:
            raise BadInputError(
                f"{sibling if sibling.exists() else work_dir(sibling)} is shard {other}/{count} of {output}, made with "
                f"another model or precision (--model, --precision, --dtype), --chunk-rows or input "
                f"({'; '.join(changes[:3])}): read back together, the shards would mix them; give every shard the same "
                "options as the others, or remove it"
            )


def _content(fingerprint):
    """An input's fingerprint without its modification time: shards run on several machines read copies of one
    input, whose times differ (and their paths: the path is not compared either)."""
    return {k: v for k, v in fingerprint.items() if k != "mtime_ns"} if isinstance(fingerprint, dict) else fingerprint


def _recorded_attrs(output: Path) -> dict:
    """What a finished Parquet or Zarr output records of the job that wrote it (:func:`output_attrs`), or ``{}``."""
    try:
        if output.is_dir():  # a Zarr store's group attributes (JSON text: sinks.netcdf_attrs)
            recorded = json.loads((output / ".zattrs").read_text()).get(safe_output.EMBEDDINGS_ATTR)
        else:
            import pyarrow.parquet as pq

            recorded = (pq.read_schema(output).metadata or {}).get(safe_output.EMBEDDINGS_ATTR.encode())
        recorded = json.loads(recorded) if isinstance(recorded, (str, bytes)) else recorded
    except (OSError, ValueError, AttributeError):  # (not one of satclip's outputs: nothing recorded to compare)
        return {}
    return recorded if isinstance(recorded, dict) else {}


def file_advice(source: Source) -> dict:
    """The ``swapped`` and ``projected`` advice of :func:`~satclip.encoding.points.describe_invalid` and
    :func:`~satclip.encoding.points.range_hints` for the points of a file: what to do on the command line, with
    the flags that swap its coordinate columns (not for a point geometry's or an NPY array's, which are no columns)."""
    if source.format == "npy" or (source.lon_col, source.lat_col) == source.geometry_columns:
        return {"swapped": SWAPPED, "projected": PROJECTED_FILE}
    flags = f"--lon-col {shlex.quote(source.lat_col)} --lat-col {shlex.quote(source.lon_col)}"
    return {"swapped": f"{SWAPPED.removesuffix('.')}; pass {flags}.", "projected": PROJECTED_FILE}


def _say_geometry_left_out(source: Source, output: Path) -> None:
    """Say that the Parquet output of a GeoJSON or GeoPackage input is no GeoParquet (a GeoParquet input's is):
    ``geopandas.read_parquet`` of it failed with "Missing geo metadata", and only docs/scale.md said why."""
    key = getattr(source, "id_column", None) or next((c for c in ("feature_id", "id") if c in source.columns), None)
    join = f"on its {key} column" if key else "by row number (the output keeps the input's order)"
    log.info("%s holds the attributes of %s and its points' %s/%s in degrees, not its geometry or CRS (plain Parquet): "
             "join the embeddings back to its features %s", output, source.path, *source.geometry_columns, join)


def _scan(
    source: Source, chunk_rows: int, shard: tuple[int, int], footprint: Footprint | None = None
) -> tuple[int, int, InvalidPointsError | None, str, int | None, int]:
    """Count rows (if the format does not know) and check the shard's coordinates.

    Returns ``(num_rows, invalid_count, error naming the first invalid rows or None, what the invalid rows of the
    first chunk that has any look like: swapped, projected, … (range_hints; empty if nothing), the shard's valid
    points outside ``footprint`` or None (:func:`~satclip.embed.footprint.outside_count`), the shard's valid points
    outside the radians box (:func:`~satclip.encoding.points.outside_radians_box`))``.
    """
    columns = [source.lon_col, source.lat_col]
    num_rows = source.num_rows
    first_chunk = 0
    if num_rows is not None:
        first_chunk, stop_chunk = shard_chunks(num_rows, chunk_rows, shard)
        stop_row = min(stop_chunk * chunk_rows, num_rows)
    else:
        stop_row = sys.maxsize
    bad_chunks: dict[int, int] = {}  # chunk → invalid rows in it
    outside_chunks: dict[int, int | None] = {}  # chunk → valid points in it outside the footprint
    beyond_radians: dict[int, int] = {}  # chunk → valid points in it outside the radians box
    swaps: dict[int, tuple[int, int]] = {}  # chunk → its swap_evidence (range_hints weighs the shard's)
    counted = first_chunk * chunk_rows
    for index, table in source.chunks(first_chunk, stop_row, chunk_rows, columns):
        lonlat = coordinates(table, *columns, source, index * chunk_rows)
        counted = index * chunk_rows + len(lonlat)
        bad = invalid_rows(lonlat)
        if bad.any():
            bad_chunks[index] = int(bad.sum())
        if footprint is not None:  # (here, where every chunk's coordinates are read anyway; a resumed run: manifest)
            outside_chunks[index] = outside_count(footprint, lonlat)
        beyond_radians[index] = outside_radians_box(lonlat)
        swaps[index] = swap_evidence(lonlat)
    if num_rows is None:
        num_rows = counted
    first_chunk, stop_chunk = shard_chunks(num_rows, chunk_rows, shard)
    in_shard = {i: n for i, n in bad_chunks.items() if first_chunk <= i < stop_chunk}
    counts = [n for i, n in outside_chunks.items() if first_chunk <= i < stop_chunk]
    outside = sum(counts) if footprint is not None and None not in counts else None
    radians_box = sum(n for i, n in beyond_radians.items() if first_chunk <= i < stop_chunk)
    if not in_shard:
        return num_rows, 0, None, "", outside, radians_box
    total, index = sum(in_shard.values()), min(in_shard)
    shard_swaps = [n for i, n in swaps.items() if first_chunk <= i < stop_chunk]
    evidence = (sum(beyond for beyond, _ in shard_swaps), sum(rows for _, rows in shard_swaps))
    for _, table in source.chunks(index, min((index + 1) * chunk_rows, num_rows), chunk_rows, columns):
        lonlat = coordinates(table, *columns, source, index * chunk_rows)
        bad = invalid_rows(lonlat)
        missing = source.nan_means and bool(np.isnan(lonlat[bad]).all(axis=1).any())
        said = describe_invalid(lonlat, bad, index * chunk_rows, **file_advice(source), evidence=evidence)
        message = (
            f"{source.path}: {said}"
            f"{f' Its (lon=nan, lat=nan) rows are {source.nan_means}.' if missing else ''} ({total} invalid row(s) in "
            f"all, {source.numbering(index * chunk_rows + int(np.flatnonzero(bad)[0]))}; pass --skip-invalid to "
            "write nulls for them)"
        )
        error = InvalidPointsError(message, np.flatnonzero(bad) + index * chunk_rows)
        hints = range_hints(lonlat, bad, **file_advice(source), evidence=evidence)
        return num_rows, total, error, hints, outside, radians_box
    raise RuntimeError(f"{source.path} changed while it was being read")  # pragma: no cover


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {clipped(a)} → {clipped(b)}")
    return out


def work_manifest(workdir: Path) -> dict:
    """The manifest of the run in the work directory ``workdir`` (``embed``'s, ``map``'s), or ``{}``: no run
    there, or a manifest that is no JSON object (:func:`resume_manifest` reports that)."""
    try:
        manifest = json.loads((workdir / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def identity_has(manifest: dict, **same) -> bool:
    """Whether the identity ``manifest`` records has the entries ``same`` (compared as JSON, as recorded)."""
    identity = manifest.get("identity")
    same = json.loads(json.dumps(same))
    return isinstance(identity, dict) and all(identity.get(key) == value for key, value in same.items())


def recorded(workdir: Path, *keys: str):
    """What the unfinished run in ``workdir`` recorded in its identity under ``keys`` (e.g. ``"options",
    "chunk_rows"``), or None: no run there, or not one of ours (:func:`resume_manifest` reports that)."""
    value = work_manifest(workdir).get("identity")
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def resume_precision(encoder, workdir: Path, restart: bool, identity: dict) -> dict:
    """Let a run whose precision is ``"auto"`` resume in the precision its unfinished run in ``workdir`` started
    with, where that run is this one but for the precision: its identity has the entries of ``identity`` (this run's,
    in the precision chosen now), in the precision it records. ``"auto"`` is decided by timing bf16 against float32,
    which can come out the other way the next time on a busy machine, and one output's chunks must all be computed
    alike; without this, the rerun with the same arguments would be refused as a different model. Another job's run
    (another model, input or options) is left to be refused as such, in the precision chosen now: resuming in its
    precision was announced, and then refused. Returns ``identity``, in the precision this run computes in."""
    choice = getattr(encoder, "precision_choice", None)
    if restart or choice is None or choice.requested != "auto":
        return identity
    started = recorded(workdir, "model", "precision")
    if started == choice.precision or started not in AUTO_CHOICES:
        return identity
    resumed = {**identity, "model": {**identity["model"], "precision": started}}
    if "precision" in identity:  # (a map's identity records it beside the model's too)
        resumed["precision"] = started
    manifest = work_manifest(workdir)
    before = manifest.get("identity", {}).get("input") if isinstance(manifest.get("identity"), dict) else None
    compared = resumed  # (an input only touched since is this job's, refused with the advice to give back its time)
    if isinstance(before, dict) and isinstance(resumed.get("input"), dict) and "mtime_ns" in before:
        compared = {**resumed, "input": {**resumed["input"], "mtime_ns": before["mtime_ns"]}}
    if not identity_has(manifest, **compared):
        return identity
    log.info("resuming in %s, the precision this run started with (\"auto\" chose %s now)", started, choice.precision)
    record(encoder, Choice(started, "auto", f"the precision the unfinished run started with ({started})"))
    return resumed


#: the kinds of satclip's work directories, ``OUTPUT.partial/`` (``satclip embed``'s, ``satclip map``'s)
WORK_KINDS = ("embed-work", "map-work")


def work_dir(output: Path) -> Path:
    """``OUTPUT.partial/``: where the unfinished work of a job writing ``output`` is kept (refused where a satclip
    directory of another kind, an output, has that name)."""
    safe_output.check_named(output)
    workdir = output.with_name(output.name + ".partial")
    safe_output.check_work_dir(workdir, WORK_KINDS)
    return workdir


def damaged_manifest(path: Path, problem: str) -> ResumeError:
    """The error for the damaged manifest ``path`` of an unfinished run (``problem``: what is wrong with it)."""
    return ResumeError(
        f"{path}, the record of an unfinished run, is damaged ({problem}); pass --restart to discard that run "
        "and start again"
    )


def resume_manifest(workdir: Path, identity: dict, restart: bool, input_path: Path | None = None) -> dict | None:
    """The manifest of an unfinished run of the same job in ``workdir`` (``embed``'s, ``map``'s), or None;
    ``restart`` discards it. ``input_path``: the input this run reads, named where the unfinished run's was another.

    Raises:
        ResumeMismatchError: the unfinished run is another job's (``identity`` differs).
        ResumeError: its manifest is damaged, or another command's (its identity has other entries).
    """
    path = workdir / MANIFEST
    if not path.is_file():
        return None
    if not safe_output.is_owned(workdir):  # (its manifest was called damaged, and --restart then refused)
        raise OutputExistsError(
            f"{workdir}, where this job keeps its unfinished work, is a directory satclip did not create: move or "
            "remove it, or choose another output path"
        )
    if restart:
        safe_output.remove_owned(workdir)
        return None
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError):
        manifest = None
    if not isinstance(manifest, dict):
        raise damaged_manifest(path, "not the JSON object satclip writes")
    recorded_identity = manifest.get("identity")
    if recorded_identity != identity and nothing_done(manifest):
        # (a run killed before its first chunk, partition or block, where no clean-up runs: its work was refused as
        # an unfinished run, and a map's left its whole field reserved on disk)
        log.info("discarding %s: the work of an unfinished run with other arguments that had done nothing", workdir)
        safe_output.remove_owned(workdir)
        return None
    if not isinstance(recorded_identity, dict) or set(recorded_identity) != set(identity):
        # (another command's record, e.g. satclip map's for an output of the same name, or no record at all:
        # comparing it entry by entry listed whole dictionaries, ~900 characters, and called it other options)
        raise damaged_manifest(path, f"it records no {', '.join(sorted(identity))} of a run of this command")
    if recorded_identity != identity:
        began, engine = (_engine(entries) for entries in (recorded_identity, identity))
        if began != engine:  # (its input's format, "parquet-dataset" against "parquet", was called a changed input)
            raise ResumeMismatchError(
                f"{workdir} holds the work of an unfinished run of the {began} engine: rerun it "
                f"{'with' if began == 'dask' else 'without'} --engine dask to resume it, or pass --restart to discard "
                "it"
            )
        changes = _differences(recorded_identity, identity)
        touched = all(change.startswith("input.mtime_ns:") for change in changes)
        recorded_input = manifest.get("input_path")
        if (input_path is not None and isinstance(recorded_input, str)
                and os.path.abspath(recorded_input) != os.path.abspath(input_path)):  # fmt: skip
            # (another file given was told that its input had changed, and to throw the finished work away)
            advice = (f"That run was on {recorded_input}: rerun with it to resume, or pass --restart to discard it and "
                      "start again")  # fmt: skip
        elif any(change.startswith("input.") for change in changes) and not touched:  # (no arguments resume it)
            advice = ("Its input has changed since that run began, so it cannot be resumed: pass --restart to discard "
                      "it and start again")  # fmt: skip
        else:
            advice = "Rerun with the same arguments to resume it, or pass --restart to discard it"
        raise ResumeMismatchError(
            f"{workdir} holds an unfinished run with a different input, model or options ({'; '.join(changes[:4])}). "
            f"{advice}{_touched(recorded_identity) if touched else ''}"
        )
    return manifest


def nothing_done(manifest: dict) -> bool:
    """Whether the unfinished run a work directory's ``manifest`` records had recorded no work done (no chunk, Dask
    partition or block of a map's field) nor finished: there is nothing in it to resume."""
    return manifest.get("done") in ([], {}) and manifest.get("finished") is None


def _engine(identity: dict) -> str:
    """The engine of the run an identity is recorded by: ``"dask"`` (``--engine dask``) or ``"local"``."""
    options = identity.get("options")
    return "dask" if isinstance(options, dict) and options.get("engine") == "dask" else "local"


def _touched(recorded: dict) -> str:
    """Advice where the input of an unfinished run differs only by its modification time (touched, or copied
    without keeping it): its size and sampled blocks are the same, and giving it back its time resumes the run
    (``--restart`` was the only way out, which discards the work)."""
    input_ = recorded.get("input")
    mtime = input_.get("mtime_ns") if isinstance(input_, dict) else None
    if not isinstance(mtime, int):
        return ""
    return (f"; if the input only has a new modification time (touched, or copied without keeping it) and its "
            f"content is the one the run began with, `touch -d @{mtime // 10**9}.{mtime % 10**9:09d} INPUT` gives it "
            "back and the run resumes")


@contextlib.contextmanager
def discarded_if_nothing_done(workdir: Path, manifest: dict) -> Iterator[None]:
    """Remove the work directory ``workdir`` of a run stopped (Ctrl-C, an error) before its manifest recorded any
    work ``done``: it held nothing to resume (a map's empty field took 352 MB), the interruption said nothing of
    it, and a rerun with other options was refused over it ("holds an unfinished run … pass --restart")."""
    try:
        yield
    except BaseException:
        if not manifest["done"]:
            discard_work(workdir)
        raise


def discard_work(workdir: Path) -> None:
    """Remove the work directory ``workdir``, which holds nothing done, as a run stops: a removal that fails (a
    file of the user's put in it, kept) must not replace what stopped the run, which is what to report."""
    with contextlib.suppress(OSError):
        safe_output.remove_owned(workdir)


def publish_work(workdir: Path, manifest: dict, finished: Path, output: Path, *, overwrite: bool, inputs) -> None:
    """Record in ``workdir``'s manifest that its work is ``finished`` (a file or directory in it), move that to
    ``output`` and remove ``workdir`` (:func:`_remove_work`). A run killed in between is completed by the next
    (:func:`complete_stopped`)."""
    manifest["finished"] = finished.relative_to(workdir).as_posix()
    if finished.is_file():
        manifest["finished_file"] = _file_identity(finished)
    safe_output.write_json(workdir / MANIFEST, manifest)
    safe_output.publish(finished, output, overwrite=overwrite, inputs=inputs)
    _remove_work(workdir, output)


def _remove_work(workdir: Path, output: Path) -> None:
    """Remove the work directory of the published ``output``, its manifest last: a run killed meanwhile leaves the
    record of its finished work, which the next run of the job completes (:func:`complete_stopped`), not "OUTPUT
    already exists". Where it holds a file of the user's, keep it with a warning: the output is written all the
    same (the run exited 2, as if it were not)."""
    try:
        safe_output.remove_owned(workdir, last=MANIFEST)
    except OutputExistsError as err:
        log.warning("wrote %s, and left its work directory: %s", output, err)


def _file_identity(path: Path) -> list[int]:
    """What tells the file ``path`` from any other, and is kept by the rename that publishes it: its device,
    inode, size and modification time."""
    status = path.lstat()
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns]


def _is_published_output(manifest: dict, output: Path) -> bool:
    """Whether ``output`` is what the finished run of ``manifest`` published: the file it recorded, or a satclip
    directory (a file or directory of the user's put there since is not; manifests of satclip before 2026-12-04
    recorded no file, and their output is taken as it is)."""
    recorded = manifest.get("finished_file")
    if recorded is not None:
        return output.is_file() and not output.is_symlink() and _file_identity(output) == recorded
    return safe_output.is_owned(output) if output.is_dir() else output.exists()


def stopped_after_publishing(workdir: Path, output: Path, **same) -> bool:
    """Whether the run that ``workdir`` records finished and published ``output`` (or was filling a kept directory
    ``output`` with it: :func:`satclip.safe_output.interrupted_fill`), then stopped before removing ``workdir``
    (killed between the last steps of :func:`publish_work`), and its identity has the entries
    ``same`` (its input, model, …): the existing ``output`` is then that run's, which the next run of the same
    job only completes (:func:`complete_stopped`): no reason to refuse it for want of ``--overwrite``."""
    manifest = work_manifest(workdir)
    if not isinstance(manifest.get("finished"), str) or not identity_has(manifest, **same):
        return False
    finished = workdir / manifest["finished"]
    if finished.exists() or finished.is_symlink():  # stopped while filling a kept directory: its own, half there
        return safe_output.interrupted_fill(finished, output)
    return _is_published_output(manifest, output)


def complete_stopped(workdir: Path, manifest: dict, output: Path, *, overwrite: bool, inputs) -> bool:
    """Complete a run of the same job that stopped after finishing its work (:func:`publish_work`): publish what
    it finished, unless it was published already, and remove ``workdir``. False if the run had not finished."""
    finished = manifest.get("finished")
    if finished is None:
        return False
    path = workdir / finished
    if path.exists() or path.is_symlink():
        safe_output.publish(path, output, overwrite=overwrite, inputs=inputs)
    elif not output.exists():
        raise ResumeError(
            f"{workdir} records a finished run whose output is neither there nor at {output}; rerun with --restart"
        )
    elif not _is_published_output(manifest, output):
        raise ResumeError(
            f"{workdir} records a finished run that published {output}, and {output} is not what it published "
            "(replaced since?); rerun with --restart (and --overwrite to replace it)"
        )
    else:
        log.info("%s was completed by the run that stopped; removing its work directory", output)
    _remove_work(workdir, output)
    return True


def _new_run(
    source: Source, workdir: Path, identity: dict, chunk_rows: int, shard: tuple[int, int], skip_invalid: bool,
    footprint: Footprint | None,
) -> dict:
    """Check the input, then create an empty work directory; returns the new manifest (not yet written)."""
    num_rows, invalid, error, hints, outside, radians_box = _scan(source, chunk_rows, shard, footprint)
    if error is not None and not skip_invalid:
        raise error
    if hints:  # (a swapped or projected file was written part or all null, the rest at wrong places, exit 0)
        log.warning("%s: %d invalid row(s) will be written as null (--skip-invalid):%s", source.path, invalid, hints)
    if num_rows == 0:
        raise no_points(source)
    first, stop = shard_chunks(num_rows, chunk_rows, shard)
    if first == stop:  # (a job array of more shards than chunks: every shard succeeds, the empty ones write no rows)
        log.warning("shard %d/%d holds no rows: %d rows make only %d chunk(s) of %d; writing an output of no rows",
                    shard[0], shard[1], num_rows, -(-num_rows // chunk_rows), chunk_rows)  # fmt: skip
    if safe_output.is_owned(workdir):
        safe_output.remove_owned(workdir)  # our leftovers without a manifest: nothing to resume
    safe_output.make_owned_dir(workdir, kind="embed-work")
    return {
        "satclip_embed_manifest": MANIFEST_VERSION, "input_path": os.path.abspath(source.path), "identity": identity,
        "num_input_rows": num_rows, "chunks": [first, stop],
        "rows": [first * chunk_rows, min(stop * chunk_rows, num_rows)], "invalid_rows": invalid, "done": [],
        "chunk_records": 1,  # (the sink records each chunk it stores: sinks.Sink)
        "outside_footprint": outside, "outside_radians_box": radians_box,
    }  # fmt: skip


def _check_manifest(path: Path, manifest: dict, chunk_rows: int, shard: tuple[int, int]) -> None:
    """Raise :class:`~satclip.errors.ResumeError` unless the manifest ``path`` of an unfinished run of this job (its
    identity is this job's) holds what :func:`embed_file` reads from it, as :func:`_new_run` and the chunks'
    records wrote it: an edited or damaged ``done`` failed with "can only concatenate str (not "int") to str"."""

    def integers(value, count: int | None = None) -> bool:
        return isinstance(value, list) and count in (None, len(value)) and all(type(v) is int for v in value)

    num_rows, chunks, done = manifest.get("num_input_rows"), manifest.get("chunks"), manifest.get("done")

    def number_of_rows(value) -> bool:  # (or None: not counted)
        return value is None or (type(value) is int and 0 <= value <= num_rows)

    finished = manifest.get("finished")
    problem = None
    if type(num_rows) is not int or num_rows < 1:
        problem = f"num_input_rows {clipped(num_rows)} is not a number of rows"
    elif chunks != list(shard_chunks(num_rows, chunk_rows, shard)) or not integers(chunks, 2):
        problem = f"chunks {clipped(chunks)} are not the {num_rows} rows' chunks of {chunk_rows} in this shard"
    elif (manifest.get("rows") != [chunks[0] * chunk_rows, min(chunks[1] * chunk_rows, num_rows)]
          or not integers(manifest.get("rows"), 2)):  # fmt: skip
        problem = f"rows {clipped(manifest.get('rows'))} are not those of chunks {chunks}"
    elif type(manifest.get("invalid_rows")) is not int or not 0 <= manifest["invalid_rows"] <= num_rows:
        problem = f"invalid_rows {clipped(manifest.get('invalid_rows'))} is not a number of rows"
    elif not number_of_rows(manifest.get("outside_footprint")):
        problem = f"outside_footprint {clipped(manifest['outside_footprint'])} is not a number of rows"
    elif not number_of_rows(manifest.get("outside_radians_box")):
        problem = f"outside_radians_box {clipped(manifest['outside_radians_box'])} is not a number of rows"
    elif not integers(done) or len(set(done)) != len(done) or not all(chunks[0] <= k < chunks[1] for k in done):
        problem = f"done {clipped(done)} is not a list of chunk numbers from {chunks[0]} to {chunks[1] - 1}"
    elif finished is not None and (not isinstance(finished, str) or finished != Path(finished).name
                                   or finished in ("", ".", "..")):  # fmt: skip
        problem = f"finished {clipped(finished)} is not the name of a file in the work directory"
    if problem is not None:
        raise damaged_manifest(path, problem)


def embed_file(
    source: Source | str | Path,
    output: str | Path,
    encoder,
    *,
    out_format: str | None = None,
    layout: str = "list",
    column: str = "embedding",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    batch_size: int | None = None,
    skip_invalid: bool = False,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    restart: bool = False,
    progress: Progress | None = None,
) -> EmbedResult:
    """Embed every point of ``source`` into ``output`` (Parquet, NPY or Zarr), resumably.

    ``source``: a :class:`Source` (:func:`~satclip.embed.open_source` of a file, for its columns or format), or a
    file's path, opened so. ``encoder``: a :class:`~satclip.LocationEncoder`, or any source :func:`satclip.load`
    takes (loaded on the CPU in its default precision).

    Raises:
        InvalidPointsError: invalid coordinates and not ``skip_invalid`` (checked before anything is
            written; the message names the first bad rows by their row number in the file).
        ResumeMismatchError: ``OUTPUT.partial/`` belongs to another input, model or options.
        OutputExistsError: ``output`` exists and not ``overwrite``, or it is a directory satclip did not
            create (never replaced), or ``OUTPUT.partial/`` exists and satclip did not create it.
        BadInputError: ``output`` is the input, or inside the input dataset directory.
        LockedError: another run is writing the same output.
    """
    began = time.perf_counter()
    progress = progress or _NoProgress()
    if isinstance(source, (str, os.PathLike)):  # ("'str' object has no attribute 'lon_col'")
        source = open_source(source)
    if isinstance(encoder, (str, os.PathLike)):  # ("'str' object has no attribute 'embedding_dim'")
        encoder = load_encoder(encoder)
    if layout not in sinks.LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {list(sinks.LAYOUTS)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    check_no_unpadded(Path(output), shard)
    unsharded, output = Path(output), shard_path(Path(output), shard)
    fmt = sinks.format_of(output, out_format)
    if not column.strip() or column != column.strip() or not column.isprintable():
        # (an empty name was told to lose its surrounding spaces; a line break went into the Parquet schema)
        raise BadInputError(f"embedding column {column!r}: give it a name of printable characters without surrounding "
                            "spaces, e.g. embedding")  # fmt: skip
    if column != "embedding" and fmt != "parquet":
        raise BadInputError(
            f"column {column!r} names the embedding column of Parquet output; {output} is {fmt}, which holds the "
            "embeddings as one (N, D) array: drop the column name or write .parquet"
        )
    if layout != "list" and fmt != "parquet":
        raise BadInputError(
            f"layout {layout!r} (one column per dimension) applies to Parquet output; {output} is {fmt}, which "
            "holds the embeddings as one (N, D) array: drop the layout or write .parquet"
        )
    workdir = work_dir(output)
    manifest_path = workdir / MANIFEST
    footprint = recorded_footprint(encoder)
    described = footprint.describe() if footprint is not None else ""
    dim = encoder.embedding_dim
    batch_size = encoder.batch_size(batch_size)
    options = {
        "format": fmt, "layout": layout, "column": column, "lon_col": source.lon_col, "lat_col": source.lat_col,
        "chunk_rows": chunk_rows, "batch_size": batch_size, "skip_invalid": skip_invalid, "shard": list(shard),
    }  # fmt: skip
    identity = json.loads(
        json.dumps({"input": source.fingerprint(), "model": model_identity(encoder), "options": options})
    )
    identity = resume_precision(encoder, workdir, restart, identity)
    precision = precision_record(encoder)
    dtype = np.dtype("float64" if precision["precision"] == "float64" else "float32")

    safe_output.check_not_inside(output, source.path, "the input dataset")  # it would become one of its parts
    source.warn_of_half_floats()
    check_sibling_shards(unsharded, shard, identity, source)
    check_no_other_split(unsharded, shard)
    inputs = [source.path, *encoder_files(encoder)]
    safe_output.check_not_input(output, inputs)  # (said first: the model itself named as the output)
    safe_output.check_new_output(output)  # (said by the CLI before the model is loaded; here for Python's callers)

    def check_output() -> None:  # (of the kind publish gives it: another kind is refused now, not at the end)
        if not stopped_after_publishing(workdir, output, **identity):
            safe_output.check_output(output, overwrite=overwrite, inputs=inputs, directory=fmt == "zarr", kind="output",
                                     writes=safe_output.ZARR_EMBEDDINGS)  # fmt: skip

    check_output()
    sink_type = sinks.SINKS.get(fmt)
    sink_options = {**options, "precision": precision["precision"]}
    log.debug("embedding in %s", precision)
    sink_type.check_columns(source.columns, dim, options)
    others = [name for name in source.columns if name not in (source.lon_col, source.lat_col)]
    if sink_type.HOLDS is not None and others:  # (the ids were left out without a word)
        # (a dataset's parts: in the order pandas reads them, not Dask's natural order of part.2 before part.10)
        order = " (its part files by name, as pandas.read_parquet reads them)" if Path(source.path).is_dir() else ""
        log.info("%s holds the embeddings and %s of the input, in its row order%s: its other column(s) %s are not "
                 "written (a .parquet output keeps them)", output, sink_type.HOLDS, order, ", ".join(others[:5]) +
                 (", …" if len(others) > 5 else ""))  # fmt: skip
    with safe_output.exclusive(output):  # one run per output: the work directory and the output are ours
        check_output()  # (again: a run that held the lock meanwhile may have written it)
        manifest = resume_manifest(workdir, identity, restart, source.path)
        if manifest is not None:
            _check_manifest(manifest_path, manifest, chunk_rows, shard)
        if manifest is not None and complete_stopped(workdir, manifest, output, overwrite=overwrite, inputs=inputs):
            first, stop = manifest["chunks"]
            rows = manifest["rows"][1] - manifest["rows"][0]
            return EmbedResult(output, rows, manifest["invalid_rows"], stop - first, stop - first,
                               time.perf_counter() - began, 0, precision["precision"],
                               manifest.get("outside_footprint"), described,
                               manifest.get("outside_radians_box"))  # fmt: skip
        new_run = manifest is None
        if new_run:
            manifest = _new_run(source, workdir, identity, chunk_rows, shard, skip_invalid, footprint)
        sink_options["attrs"] = output_attrs(identity, source, encoder, manifest["rows"], manifest["num_input_rows"])
        if new_run:
            rows = manifest["rows"][1] - manifest["rows"][0]
            try:
                sink_type(workdir, rows, dim, dtype, chunk_rows, sink_options).create()
                safe_output.write_json(manifest_path, manifest)
            except BaseException:  # (a full disk left OUT.partial/ without a manifest: never resumed, never removed)
                safe_output.remove_owned(workdir)  # nothing embedded yet
                raise
        first, stop = manifest["chunks"]
        row0, row1 = manifest["rows"]
        sink = sink_type(workdir, row1 - row0, dim, dtype, chunk_rows, {**sink_options, "first_row": row0})
        # (a work directory that cannot be checked is refused before any chunk is embedded again; chunks that
        # changed since they were written are embedded again)
        changed = {first + index for index in sink.changed_chunks()}
        if changed:
            manifest["done"] = sorted(set(manifest["done"]) - changed)
            safe_output.write_json(manifest_path, manifest)
        done = set(manifest["done"])
        resumed = len(done)
        if resumed:
            log.info("resuming %s: %d of %d chunks already done", output, resumed, stop - first)
            safe_output.keep_work(workdir)
        done_rows = sum(min((k + 1) * chunk_rows, row1) - k * chunk_rows for k in done)
        progress.start(row1 - row0, done_rows)

        todo = [k for k in range(first, stop) if k not in done]
        with discarded_if_nothing_done(workdir, manifest):
            if todo:
                for index, table in source.chunks(todo[0], row1, chunk_rows):
                    if index in done:
                        continue
                    lonlat = coordinates(table, source.lon_col, source.lat_col, source, index * chunk_rows)
                    embeddings = embed_lonlat(
                        encoder, lonlat, batch_size=batch_size, skip_invalid=skip_invalid, row_offset=index * chunk_rows
                    )
                    sink.write(index - first, table, embeddings.cpu().numpy(), ~invalid_rows(lonlat))
                    done.add(index)
                    manifest["done"] = sorted(done)
                    safe_output.write_json(manifest_path, manifest)
                    safe_output.keep_work(workdir)
                    progress.update(len(lonlat))
        missing = sorted(set(range(first, stop)) - done)
        if missing:
            raise RuntimeError(f"{source.path} ended before chunk {missing[0]}: did the input change while running?")
        if first == stop:  # an empty shard: the columns its rows would have, from the input's first rows
            _, table = next(source.chunks(0, min(chunk_rows, manifest["num_input_rows"]), chunk_rows))
            finished = sink.finalize_empty(table.slice(0, 0))
        else:
            finished = sink.finalize(stop - first)
        publish_work(workdir, manifest, finished, output, overwrite=overwrite, inputs=inputs)
    if sink_type.HOLDS is None and source.format in ("geojson", "gpkg") and source.geometry_columns is not None:
        _say_geometry_left_out(source, output)  # (once it is written: not before a refusal of the input)
    seconds = time.perf_counter() - began
    rows = row1 - row0
    return EmbedResult(
        output, rows, manifest["invalid_rows"], stop - first, resumed, seconds, rows - done_rows,
        precision["precision"], manifest.get("outside_footprint"), described, manifest.get("outside_radians_box"),
    )  # fmt: skip
