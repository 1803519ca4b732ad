"""What a downstream task is, and the helpers the task builders share."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ...errors import BadInputError, check_flags
from ...registry import Registry
from .. import naturalearth

log = logging.getLogger(__name__)

REGRESSION, CLASSIFICATION = "regression", "classification"

#: seed of the shared land sample the offline tasks draw their points from; distinct from the seeds the
#: Blue Marble pretraining sample uses, so downstream points are a fresh draw
DEFAULT_POINT_SEED = 20250

#: points a task needs at least (``--n-points``, the rows of a ``--task-file``): the ``random`` protocol's
#: 60 / 20 / 20 split of 10 points is 6 training, 2 validation and 2 test points; below 9 a split gets one point
#: or none (``--n-points 1``: 1 training point, empty metrics)
MIN_POINTS = 10
#: points a task may ask for at most: the sampled tasks draw them over land in memory (10^12 grew by 75 MB/s
#: until the machine ran out), and probes on millions of points take hours per fold on a CPU
MAX_POINTS = 1_000_000


@dataclass(frozen=True)
class TaskOptions:
    """Options every task builder receives (each uses the ones that apply to it).

    n_points: points drawn over land for the sampled tasks (before dropping invalid labels and rare classes);
        tables (stations, ``--task-file``) are subsampled only when they hold more.
    seed: seed of that draw (the probe and split seeds are separate).
    min_class_points: classification classes with fewer points are dropped (with their points).
    data: a local copy of the task's data file (``air-temperature``: ``stationDataAll.csv``).
    allow_download: whether a task may fetch its data file when no local copy is given or cached.
    use_cache: read and write derived arrays under the eval cache.
    """

    n_points: int = 10_000
    seed: int = DEFAULT_POINT_SEED
    min_class_points: int = 20
    data: Path | None = None
    allow_download: bool = True
    use_cache: bool = True

    def __post_init__(self) -> None:
        # (0 points gave a row of NaN scores, as if measured; 1 point, empty splits and numpy warnings)
        for key, least in (("n_points", MIN_POINTS), ("min_class_points", 1), ("seed", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise BadInputError(f"TaskOptions: {key}={value!r} must be an integer, {least} or more")
        check_flags(allow_download=self.allow_download, use_cache=self.use_cache)
        if self.n_points > MAX_POINTS:
            raise BadInputError(f"TaskOptions: n_points={self.n_points!r} must be at most {MAX_POINTS:,}")
        if self.seed >= 2**32:  # (numpy's seeds are 32-bit; -1 said "expected non-negative integer", naming nothing)
            raise BadInputError(f"TaskOptions: seed={self.seed!r} must be at most {2**32 - 1}")


@dataclass(frozen=True)
class ClassFilter:
    """What a classification task kept: the ``classes_kept`` of ``classes_before`` classes (``points_kept``
    of ``points_before`` points) that have at least ``min_points`` points; ``dropped``: the others as (label, points),
    the most frequent first."""

    min_points: int
    classes_before: int
    classes_kept: int
    points_before: int
    points_kept: int
    dropped: tuple[tuple[str, int], ...] = ()

    def dropped_text(self) -> str:
        """The dropped classes with their points, at most :data:`LISTED_CLASSES` of them (``"ice: 3 points, sand: 1
        point"``), or ``""``."""
        listed = ", ".join(f"{label}: {count:,} point{'s' * (count != 1)}" for label, count in
                           self.dropped[:LISTED_CLASSES])  # fmt: skip
        more = len(self.dropped) - LISTED_CLASSES
        return listed + (f" and {more} more" if more > 0 else "")

    def describe(self) -> str:
        """E.g. ``"keeps 3 of 4 classes (3,073 of 3,076 points; drops rare: 3 points)"``: results.md names the
        dropped classes (they were named on stderr alone)."""
        dropped = f"; drops {self.dropped_text()}" if self.dropped else ""
        return (f"keeps {self.classes_kept} of {self.classes_before} classes ({self.points_kept:,} of "
                f"{self.points_before:,} points{dropped})")  # fmt: skip


@dataclass(frozen=True)
class Task:
    """A downstream task: predict ``targets`` from the location embedding of ``points``.

    points: ``(N, 2)`` float64 (lon, lat) degrees.
    targets: ``(N,)`` float64 for regression (in the task's stated unit/transform), int64 class indices
        into ``classes`` for classification.
    continents: ``(N,)`` Natural Earth ``CONTINENT`` of each point (for ``holdout-continent``).
    classes: ``(K,)`` class labels (classification only).
    class_filter: which classes were kept (classification only; see :func:`encode_classes`).
    split_salt: what the folds' random draws depend on besides the seed; ``""``: the task's name. A user
        table's is a digest of its points: the same points split alike whatever the file is called.
    more_points: how to give the task more points, as advice ends (``--n-points`` only caps a user table's rows).
    sampled: whether its points are a draw of :class:`TaskOptions` ``seed`` (the point seed); False for a table of
        no more rows than ``n_points``, used whole.
    """

    name: str
    kind: str
    points: np.ndarray
    targets: np.ndarray
    continents: np.ndarray
    target: str
    source: str
    classes: np.ndarray | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    class_filter: ClassFilter | None = None
    split_salt: str = ""
    more_points: str = "give more points (--n-points)"
    sampled: bool = True

    def __post_init__(self):
        n = len(self.points)
        if self.kind not in (REGRESSION, CLASSIFICATION):
            raise ValueError(f"task kind must be {REGRESSION!r} or {CLASSIFICATION!r}, got {self.kind!r}")
        if self.points.shape != (n, 2) or self.targets.shape != (n,) or self.continents.shape != (n,):
            raise ValueError(
                f"task {self.name}: points {self.points.shape}, targets {self.targets.shape} and continents "
                f"{self.continents.shape} must be (N, 2), (N,) and (N,)"
            )
        if self.kind == CLASSIFICATION and self.classes is None:
            raise ValueError(f"classification task {self.name} needs its class labels")

    def __len__(self) -> int:
        return len(self.points)

    @property
    def num_classes(self) -> int:
        return 0 if self.classes is None else len(self.classes)

    def chance(self) -> dict[str, float]:
        """What a probe that ignores location scores: predicting the mean (regression: MSE 1 on the
        standardised target, R² 0), or the most frequent class (accuracy = its share ``p``; macro-F1 =
        ``2p / ((1 + p) K)``, its F1 averaged with K − 1 zeros)."""
        if self.kind == REGRESSION:
            return {"mse": 1.0, "r2": 0.0}
        counts = np.bincount(self.targets.astype(np.int64), minlength=self.num_classes)
        share = float(counts.max() / max(counts.sum(), 1))
        return {"accuracy": share, "macro_f1": 2 * share / ((1 + share) * max(self.num_classes, 1))}

    def majority_class(self) -> str | None:
        """The most frequent class label (classification only)."""
        if self.kind != CLASSIFICATION or self.classes is None or not len(self.targets):
            return None
        return str(self.classes[int(np.bincount(self.targets.astype(np.int64)).argmax())])

    def subset(self, index: np.ndarray) -> Task:
        """The task restricted to rows ``index`` (classes are kept as they are)."""
        return replace(self, points=self.points[index], targets=self.targets[index], continents=self.continents[index])


TASKS: Registry = Registry("evaluation task")


def continent_labels(points: np.ndarray, use_cache: bool = True) -> np.ndarray:
    """Natural Earth continent of each point (nearest country for points on no polygon)."""
    return naturalearth.continents(points, use_cache=use_cache).astype("<U32")


def subsample(n_available: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``min(n, n_available)`` rows."""
    if n >= n_available:
        return np.arange(n_available)
    return np.sort(np.random.default_rng(seed).choice(n_available, size=n, replace=False))


def kind_option(kind: str) -> str:
    """``"--task-kind regression (kind='regression' in Python)"``: a table task's messages are read from the CLI and
    from Python (``TaskFile(..., kind=...)``, ``table_task(..., kind=...)``), whose word is ``kind``."""
    return f"--task-kind {kind} (kind={kind!r} in Python)"


#: classes a refusal lists with their counts at most (the most frequent first)
LISTED_CLASSES = 10


def encode_classes(
    labels: np.ndarray, min_points: int, task: str,
    advice: str = "use more points (--n-points) or a lower --min-class-points",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, ClassFilter]:  # fmt: skip
    """Drop classes with fewer than ``min_points`` rows (too few to split into training, validation and test
    points and learn from); returns (kept rows, class index per kept row, sorted class labels, what was
    kept). ``advice``: what to do when fewer than 2 classes are left."""
    values, counts = np.unique(labels, return_counts=True)
    keep_classes = values[counts >= min_points]
    rows = np.flatnonzero(np.isin(labels, keep_classes))
    if len(values) == 1:  # (it was told to lower --min-class-points, whatever its value)
        raise ValueError(f"task {task}: the target is {str(values[0])!r} at every point ({len(labels)} points): there "
                         "is nothing to classify; give a target with at least 2 classes")  # fmt: skip
    if len(values) and counts.max() == 1:  # (no class in both training and test points: accuracy 0)
        raise ValueError(f"task {task}: each of its {len(labels)} points has a class of its own: if the target is a "
                         f"measurement, pass {kind_option(REGRESSION)} (a text column of numbers: clean "
                         "it)")  # fmt: skip
    if len(keep_classes) < 2:  # (which classes, and how far short, were not said)
        order = np.argsort(-counts, kind="stable")
        by_class = ", ".join(f"{values[i]} {counts[i]}" for i in order[:LISTED_CLASSES])
        more = f" and {len(values) - LISTED_CLASSES} more" if len(values) > LISTED_CLASSES else ""
        raise ValueError(
            f"task {task}: fewer than 2 classes have >= {min_points} points ({len(labels)} points; by class: "
            f"{by_class}{more}); {advice}"
        )
    order = np.argsort(-counts, kind="stable")
    dropped = tuple((str(values[i]), int(counts[i])) for i in order if counts[i] < min_points)
    kept = ClassFilter(int(min_points), len(values), len(keep_classes), len(labels), len(rows), dropped)
    if dropped:  # ("dropped 1 classes" named none of them)
        log.info("%s: dropped %d class%s with < %d points (%s); %d classes remain", task, len(dropped),
                 "es" * (len(dropped) != 1), min_points, kept.dropped_text(), len(keep_classes))  # fmt: skip
    return rows, np.searchsorted(keep_classes, labels[rows]).astype(np.int64), keep_classes, kept
