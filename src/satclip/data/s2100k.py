"""S2-100K: 100,000 Sentinel-2 patches (256 × 256 px, 12 bands uint16 GeoTIFF) with their (lon, lat).

The SatCLIP pre-training set (Klemmer et al., AAAI 2025), on the hub as ``torchgeo/s2-100k``; get it with
``satclip data download ROOT``. A root holds ``index.csv`` (see :mod:`satclip.data.index` for the two
layouts) and ``images/*.tif``.

Bad files are found before training by :func:`satclip.data.verify.verify_s2100k` (missing, < 10 kB
no-data patches as in the original, unreadable or truncated, wrong bands/shape/dtype, invalid
coordinates), logged (count and first names) and left out. A file that still fails while being read
(changed on disk after the check, a flaky network file system; or whose pixels hold no image, NaN or one
value everywhere, which the default header check cannot see) is logged once and **replaced by the next
readable sample** (``on_error="substitute"``, the default), so an epoch never dies halfway and batches
keep their size; ``on_error="raise"`` raises instead. Substitutes are deterministic (next index, wrapping),
so a seeded run stays reproducible. A feature cache stores each sample once, so it reads with
``on_error="skip"`` (:meth:`S2100K.skipping_unreadable`): such a sample raises :class:`UnreadableSampleError`
and the cache leaves it out (a substitute was stored as a duplicate of the next patch). Training from images reads
that way too, and takes the next readable sample of the same split (:class:`satclip.train.data.ImagePairs`): the
next one of the whole dataset could be a validation sample.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import BadInputError
from ..optional import require
from .index import S2Index, name_problem, read_index, repeated_rows, unsafe_rows
from .verify import (
    PROBLEMS,
    SHOWN_NAMES,
    CheckSpec,
    VerifyReport,
    coordinates_detail,
    pixel_problem,
    verify_s2100k,
)

log = logging.getLogger(__name__)

Sample = dict[str, torch.Tensor]
#: substitutes tried for one failing sample before giving up
MAX_SUBSTITUTES = 16


class UnreadableSampleError(RuntimeError):
    """The image file of a sample cannot be read (``on_error="skip"``): the sample is to be left out."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def _rasterio():
    return require("rasterio", "data", "reading Sentinel-2 GeoTIFFs")


class S2100K(Dataset):
    """S2-100K-style images with their locations, as a map-style torch ``Dataset``.

    Each sample is a dict: ``"point"`` a float64 tensor ``(2,)`` of (lon, lat) degrees, and, when
    ``mode="both"``, ``"image"`` a float32 tensor ``(12, 256, 256)`` of raw digital numbers (the
    original's ``read().astype(float32)``; ``satclip.data.s2_transform`` scales and adds B10).
    ``transform`` is applied to the dict last.

    Args:
        root: directory with ``index.csv`` and ``images/``.
        mode: ``"both"`` (image and point) or ``"points"`` (coordinates only; no image is opened).
        transform: callable on the sample dict (e.g. ``s2_transform(train=True)``).
        verify: ``"header"`` (default for ``mode="both"``) checks each file's header and size,
            ``"full"`` also decodes all pixels, ``"none"`` (default for ``mode="points"``) only drops
            rows with invalid coordinates.
        spec: expected band count, size, dtype and minimum file size (``CheckSpec()``: 12 × 256 × 256
            uint16, ≥ 10,000 bytes).
        on_error: what to do when a file fails while being read: ``"substitute"``, ``"raise"`` or ``"skip"``
            (raise :class:`UnreadableSampleError`, for a reader that leaves the sample out).
        workers: threads for the verification pass.
        cache: reuse/store verification results keyed by file size and modification time (under
            ``$SATCLIP_CACHE/verify/``; the root itself is never written to).
    """

    def __init__(
        self,
        root: str | Path,
        mode: Literal["both", "points"] = "both",
        transform: Callable[[Sample], Sample] | None = None,
        *,
        verify: Literal["header", "full", "none"] | None = None,
        spec: CheckSpec | None = None,
        on_error: Literal["substitute", "raise", "skip"] = "substitute",
        workers: int = 1,
        cache: bool = True,
    ) -> None:
        if mode not in ("both", "points"):
            raise ValueError(f"mode must be 'both' or 'points', got {mode!r}")
        if on_error not in ("substitute", "raise", "skip"):
            raise ValueError(f"on_error must be 'substitute', 'raise' or 'skip', got {on_error!r}")
        verify = verify or ("header" if mode == "both" else "none")
        if verify not in ("header", "full", "none"):
            raise ValueError(f"verify must be 'header', 'full' or 'none', got {verify!r}")
        self.root = Path(root)
        self.mode = mode
        self.transform = transform
        self.on_error = on_error
        malformed: list[tuple[int, str]] = []  # lines that are no row: skipped, as verification does, and named
        self.index: S2Index = read_index(self.root / "index.csv", malformed=malformed)
        if malformed:  # (one such line refused the whole dataset that `satclip data verify` said was usable)
            line, problem = malformed[0]
            log.warning("%s: skipping %d line(s) that are no row (first: line %d, %s); `satclip data verify %s` lists "
                        "them", self.root / "index.csv", len(malformed), line, problem[:200], self.root)  # fmt: skip
        self.report: VerifyReport | None = None
        self.spec = dataclasses.replace(spec or CheckSpec(), full=verify == "full")
        if verify == "none":
            from ..encoding.points import invalid_rows, valid_range_advice

            bad = invalid_rows(self.index.lonlat)
            if bad.any():  # each row as `satclip data verify` shows it: its line and the text that is no number
                rows = np.flatnonzero(bad)
                shown = "; ".join(
                    f"{self.index.filenames[row]} ({coordinates_detail(self.index, row)})" for row in rows[:SHOWN_NAMES]
                )
                more = f"; … and {len(rows) - SHOWN_NAMES} more" if len(rows) > SHOWN_NAMES else ""
                log.warning(
                    "%s: skipping %d row(s) with %s: %s%s. %s", self.index.path, len(rows), PROBLEMS["coordinates"],
                    shown, more, valid_range_advice(self.index.lonlat, bad),
                )  # fmt: skip
            outside = unsafe_rows(self.index.filenames)
            if outside.any():
                first = self.index.filenames[int(np.flatnonzero(outside)[0])]
                log.warning(
                    "%s: skipping %d row(s) whose file name leads outside images/ (first: %r, %s)",
                    self.index.path, int(outside.sum()), first, name_problem(first),
                )  # fmt: skip
            repeated = repeated_rows(self.index.filenames) >= 0
            if repeated.any():
                first = self.index.filenames[int(np.flatnonzero(repeated)[0])]
                log.warning("%s: skipping %d row(s) listing a file an earlier row lists already (first: %r)",
                            self.index.path, int(repeated.sum()), first)  # fmt: skip
            keep = ~bad & ~outside & ~repeated
        else:
            _rasterio()
            self.report = verify_s2100k(
                self.root, self.spec, index=self.index, workers=workers, use_cache=cache, write_cache=cache
            )
            if not self.report.all_ok:
                log.warning("%s", self.report.summary())
            keep = self.report.ok_mask
        self.rows = np.flatnonzero(keep)
        self.filenames: tuple[str, ...] = tuple(self.index.filenames[i] for i in self.rows)
        self.points = torch.from_numpy(np.ascontiguousarray(self.index.lonlat[self.rows]))
        self._failed: set[int] = set()
        if len(self.rows) == 0:  # (a RuntimeError: "unexpected error … please report it", exit 1)
            raise BadInputError(f"no usable samples in {self.root}: run `satclip data verify {self.root}` to see why")

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def listed(self) -> int:
        """The rows of ``index.csv``, those left out as unusable when the dataset was opened (files missing,
        unreadable, of other bands or size; invalid coordinates) included."""
        return len(self.index.filenames)

    def skipping_unreadable(self) -> S2100K:
        """This dataset reading with ``on_error="skip"`` (unless it raises): a sample whose file cannot be read
        raises :class:`UnreadableSampleError` instead of being replaced by the next one."""
        clone = copy.copy(self)
        clone._failed = set()
        if clone.on_error == "substitute":
            clone.on_error = "skip"
        return clone

    def path(self, item: int) -> Path:
        """Path of the image file of sample ``item``."""
        return self.root / "images" / self.filenames[item]

    def _read(self, item: int) -> torch.Tensor:
        rasterio = _rasterio()
        with rasterio.open(self.path(item)) as src:
            array = src.read()
        expected = (self.spec.bands, self.spec.height, self.spec.width)
        if array.shape != expected:
            raise ValueError(f"read an array of shape {array.shape}, expected {expected}")
        problem = pixel_problem(array)  # (a no-data patch passes the header check; its pixels are read here anyway)
        if problem is not None:
            raise ValueError(problem)
        return torch.from_numpy(array.astype(np.float32))

    def _image(self, item: int) -> tuple[int, torch.Tensor]:
        """``(item actually used, image)``: ``item`` itself, or the next readable one after a failure."""
        for attempt in range(MAX_SUBSTITUTES + 1):
            candidate = (item + attempt) % len(self)
            if candidate in self._failed:
                continue
            try:
                return candidate, self._read(candidate)
            except Exception as err:  # noqa: BLE001 - any read failure is handled the same way
                if self.on_error == "raise":
                    raise RuntimeError(f"cannot read {self.path(candidate)}: {err}") from err
                if self.on_error == "skip":
                    raise UnreadableSampleError(
                        self.path(candidate), f"cannot read {self.path(candidate)} ({type(err).__name__}: {err})"
                    ) from err
                self._failed.add(candidate)
                log.warning(
                    "cannot read %s (%s: %s); using the next readable sample instead",
                    self.path(candidate), type(err).__name__, err,
                )
        raise RuntimeError(
            f"{MAX_SUBSTITUTES + 1} image files in a row starting at {self.path(item)} could not be read; "
            f"run `satclip data verify {self.root} --full`"
        )

    def __getitem__(self, item: int) -> Sample:
        if not -len(self) <= item < len(self):
            raise IndexError(f"index {item} out of range for {len(self)} samples")
        item %= len(self)
        if self.mode == "both":
            item, image = self._image(item)
            sample = {"image": image, "point": self.points[item].clone()}
        else:
            sample = {"point": self.points[item].clone()}
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __repr__(self) -> str:
        return f"S2100K(root={str(self.root)!r}, mode={self.mode!r}, samples={len(self)})"
