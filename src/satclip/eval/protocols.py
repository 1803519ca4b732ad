"""Evaluation protocols: how a task's points are split into train / validation / test folds, by name.

* ``random`` — per seed, a random 60 / 20 / 20 split; the ± in reports is the sample std over seeds.
* ``holdout-continent`` — per seed and held-out continent (Natural Earth, six continents): train and
  validate on the other continents, test on the held-out one, both zero-shot and with 1% of the held-out
  continent's points (rounded, at least one) added to training (the SatCLIP paper's geographic-generalisation
  setting). Both variants are tested on the same points (the 1% sample is removed from the zero-shot test set too).
* ``spatial-block`` — per seed, the globe is cut into D° × D° blocks that are dealt at random into k
  folds; each fold is tested once, validation blocks are drawn from the training blocks.
* ``paper`` — the SatCLIP air-temperature notebook: per seed a 50 / 50 train / test split, no
  validation set (its probe trains for a fixed number of epochs); regression only.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from ..encoding.points import places
from ..registry import Registry
from .naturalearth import MAIN_CONTINENTS
from .tasks import REGRESSION, Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fold:
    """One train / validation / test split of a task, as index arrays into its points.

    name: unique within a protocol run, e.g. ``"seed=0"``, ``"seed=0/Africa/1%"``, ``"seed=0/fold=3"``.
    group: what the fold tests on beyond the seed (a continent, a block fold), ``""`` for ``random``.
    variant: ``"zero-shot"`` or ``"1%"`` for ``holdout-continent`` (the share asked for: a continent of at most 50
    points adds one point, more than 1%, which results.md's notes say), else ``""``.
    """

    name: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    group: str = ""
    variant: str = ""


PROTOCOLS: Registry = Registry("evaluation protocol")

#: protocols that fix the probe (protocol → probe name)
FIXED_PROBE = {"paper": "paper-mlp"}


def _rng(seed: int, task: Task, *salt: str) -> np.random.Generator:
    """A generator for ``seed`` that also depends on ``task`` (its split salt, else its name: the built-in tasks'
    published splits) and ``salt`` (continent…), reproducibly."""
    parts = (task.split_salt or task.name, *salt)
    extra = [int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "little") for s in parts]
    return np.random.default_rng([int(seed), *extra])


def _split(index: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    index = rng.permutation(index)
    bounds = np.round(np.cumsum(fractions)[:-1] * len(index)).astype(int)
    return [np.sort(part) for part in np.split(index, bounds)]


@PROTOCOLS.register("random")
def random_split(task: Task, seeds: list[int], train: float = 0.6, val: float = 0.2) -> list[Fold]:
    if not (0 < train < 1 and 0 <= val < 1 and train + val < 1):
        raise ValueError(f"random split fractions train={train}, val={val} must leave a test share")
    folds = []
    for seed in seeds:
        tr, va, te = _split(np.arange(len(task)), (train, val, 1 - train - val), _rng(seed, task))
        folds.append(Fold(f"seed={seed}", seed, tr, va, te))
    return folds


def _shot_count(n: int, fewshot: float) -> int:
    """The points of a held-out continent of ``n`` points the few-shot variant adds to training: ``fewshot`` of
    them, rounded, at least one."""
    return max(1, int(round(fewshot * n)))


def _fewshot_label(fewshot: float) -> str:
    """The few-shot variant's name, ``"1%"``: the share asked for (a small continent's folds add more, at least one
    point; results.md says how many, :func:`notes`). Kept whatever the share a continent got: it keys the folds of
    rows.jsonl, results.csv's ``variant`` and the figures' names."""
    return f"{fewshot:.0%}" if fewshot * 100 == int(fewshot * 100) else f"{fewshot:.1%}"


@PROTOCOLS.register("holdout-continent")
def holdout_continent(
    task: Task, seeds: list[int], val: float = 0.2, fewshot: float = 0.01, min_test: int = 20,
    continents: tuple[str, ...] = MAIN_CONTINENTS,
) -> list[Fold]:  # fmt: skip
    folds = []
    for seed in seeds:
        for continent in continents:
            inside = np.flatnonzero(task.continents == continent)
            outside = np.flatnonzero(task.continents != continent)
            if len(inside) < min_test or len(outside) < min_test:  # (none outside: a probe fitted on 0 points)
                continue
            rng = _rng(seed, task, continent)
            tr, va = _split(outside, (1 - val, val), rng)
            n_shot = _shot_count(len(inside), fewshot)
            shot, test = _split(inside, (n_shot / len(inside), 1 - n_shot / len(inside)), rng)
            base = f"seed={seed}/{continent}"
            folds.append(Fold(f"{base}/zero-shot", seed, tr, va, test, continent, "zero-shot"))
            label = _fewshot_label(fewshot)
            folds.append(Fold(f"{base}/{label}", seed, np.sort(np.concatenate([tr, shot])), va, test, continent, label))
    if not folds:
        names, counts = np.unique(task.continents, return_counts=True)
        held = ", ".join(f"{name or '(no continent)'} {count}"  # (a blank name was listed as " 23")
                         for name, count in zip(names, counts, strict=True)) or "none"  # fmt: skip
        raise ValueError(
            f"task {task.name}: holdout-continent holds out one continent of {list(continents)} at a time and "
            f"needs >= {min_test} points on it and >= {min_test} elsewhere to train on; the points by continent: "
            f"{held}: {task.more_points} if they span continents, or use --protocol random or "
            "spatial-block for points of one continent"
        )
    return folds


def block_ids(points: np.ndarray, block_deg: float) -> np.ndarray:
    """Id of the ``block_deg`` × ``block_deg`` lon/lat block holding each ``(N, 2)`` point. One place is in one
    block (:func:`~satclip.encoding.points.places`): lon ±180 in the first column, a pole's points in the band next to
    it (lat ±90 on its own row, lon 180 in a column of its own, or a pole split by longitude, put the same location
    in training and test folds)."""
    points = places(points)
    n_lon, n_lat = int(np.ceil(360 / block_deg)), int(np.ceil(180 / block_deg))
    col = np.minimum(np.floor((points[:, 0] + 180) / block_deg), n_lon - 1).astype(np.int64)
    row = np.minimum(np.floor((points[:, 1] + 90) / block_deg), n_lat - 1).astype(np.int64)
    return row * n_lon + col


def _check_spatial_block(block_deg: float = 10.0, k: int = 5, val: float = 0.2) -> None:
    if block_deg <= 0 or k < 2:
        raise ValueError(
            f"spatial-block needs a block size > 0 and at least 2 folds (--block-deg, --folds; block_deg, k), got "
            f"{block_deg} and {k}"
        )


#: protocol → the check of its options that needs no task
_OPTION_CHECKS = {"spatial-block": _check_spatial_block}


def _never_held_out(task: Task, continents: tuple[str, ...] = MAIN_CONTINENTS, min_test: int = 20, **_) -> list[str]:
    """What holdout-continent never holds out of ``task``: continents of too few points, points on none of them."""
    notes = []
    few = [(name, int((task.continents == name).sum())) for name in continents]
    few = [(name, count) for name, count in few if 0 < count < min_test]
    if few and len(few) < sum(1 for name in continents if (task.continents == name).any()):
        # (its column was missing from the report, and the spread was over the other continents, without a word)
        notes.append(f"{', '.join(f'{name} ({count} points)' for name, count in few)} "
                     f"ha{'s' if len(few) == 1 else 've'} fewer than the {min_test} points a held-out continent "
                     f"needs: never held out, and no column of the report; {task.more_points} to hold it out")
    elsewhere = ~np.isin(task.continents, continents)
    if elsewhere.any():  # (ocean points were never held out, without a word)
        names, counts = np.unique(task.continents[elsewhere], return_counts=True)
        where = ", ".join(f"{name or '(no continent)'} {count}" for name, count in zip(names, counts, strict=True))
        notes.append(f"{int(elsewhere.sum())} of {len(task)} points lie on none of the continents held out ({where}); "
                     "they are never held out (always among the training and validation points)")
    return notes


def _fewshot_counts(
    task: Task, fewshot: float = 0.01, min_test: int = 20, continents: tuple[str, ...] = MAIN_CONTINENTS, **_
) -> list[str]:  # fmt: skip
    """The held-out continents whose few-shot variant adds more than its share (at least one point: 1 of 26 was
    called "1%")."""
    counts = [(name, int((task.continents == name).sum())) for name in continents]
    more = [(name, n) for name, n in counts
            if n >= min_test and len(task) - n >= min_test and round(fewshot * n) < 1]  # fmt: skip
    if not more:
        return []
    listed = ", ".join(f"{name} {_shot_count(n, fewshot)} of {n} ({_shot_count(n, fewshot) / n:.1%})"
                       for name, n in more)  # fmt: skip
    return [f"the {_fewshot_label(fewshot)} variant adds {_fewshot_label(fewshot)} of a held-out continent's points, "
            f"rounded, but at least one point: {listed}"]


#: protocol → what it warns of in a task's points, once per evaluation (make_folds runs again for the reports)
_WARNINGS = {"holdout-continent": (_never_held_out,)}
#: protocol → what results.md says of a task's points: the warnings, and what its fold names do not say
_NOTES = {"holdout-continent": (_never_held_out, _fewshot_counts)}


def warn_about(name: str, task: Task, **options) -> None:
    """Log what protocol ``name`` does with ``task`` that its results do not show (points it never holds out)."""
    for note in (note for describe in _WARNINGS.get(name, ()) for note in describe(task, **options)):
        log.warning("task %s: %s", task.name, note)


def notes(name: str, task: Task, **options) -> list[str]:
    """What protocol ``name`` does with ``task`` that its tables do not show, for results.md's notes on the data:
    points it never holds out, a few-shot share a small continent's folds exceed."""
    return [note for describe in _NOTES.get(name, ()) for note in describe(task, **options)]


def check_options(name: str, **options) -> None:
    """Refuse, before any task is read, an unknown protocol, an option it does not take or a value it cannot
    use (the same checks as :func:`make_folds`)."""
    from ..registry import check_parameters

    check_parameters(PROTOCOLS.kind, name, PROTOCOLS.accepted(name) - {"task", "seeds"}, options)
    if name in _OPTION_CHECKS:
        _OPTION_CHECKS[name](**options)


@PROTOCOLS.register("spatial-block")
def spatial_block(task: Task, seeds: list[int], block_deg: float = 10.0, k: int = 5, val: float = 0.2) -> list[Fold]:
    _check_spatial_block(block_deg, k, val)
    ids = block_ids(task.points, block_deg)
    blocks = np.unique(ids)
    if len(blocks) < k + 1:
        raise ValueError(
            f"task {task.name}: its points lie in {len(blocks)} blocks of {block_deg:g}°, and {k} folds need at least "
            f"{k + 1}; use smaller blocks (--block-deg) or fewer folds (--folds)"
        )
    folds = []
    for seed in seeds:
        rng = _rng(seed, task, "blocks")
        assignment = dict(zip(rng.permutation(blocks).tolist(), np.arange(len(blocks)) % k, strict=True))
        fold_of = np.array([assignment[b] for b in ids.tolist()])
        for f in range(k):
            test = np.flatnonzero(fold_of == f)
            rest_blocks = rng.permutation(np.unique(ids[fold_of != f]))
            n_val = max(1, int(round(val * len(rest_blocks))))
            val_mask = np.isin(ids, rest_blocks[:n_val]) & (fold_of != f)
            train = np.flatnonzero((fold_of != f) & ~val_mask)
            if len(train) == 0:  # (it was fitted on nothing and scored: NaN, or a made-up accuracy)
                raise ValueError(
                    f"task {task.name}: its points lie in {len(blocks)} blocks of {block_deg:g}°; fold {f} (seed "
                    f"{seed}) tests {len(blocks) - len(rest_blocks)} of them and keeps {len(rest_blocks)} for "
                    "validation, leaving none to train on; use smaller blocks (--block-deg)"
                    + (" or fewer folds (--folds)" if k > 2 else "")
                )
            folds.append(Fold(f"seed={seed}/fold={f}", seed, train, np.flatnonzero(val_mask), test, f"fold={f}"))
    return folds


@PROTOCOLS.register("paper")
def paper_split(task: Task, seeds: list[int], test: float = 0.5) -> list[Fold]:
    if task.kind != REGRESSION:
        raise ValueError(f"the paper protocol is the air-temperature notebook's regression; {task.name} is a "
                         f"{task.kind} task")  # fmt: skip
    empty = np.empty(0, dtype=np.int64)
    folds = []
    for seed in seeds:
        tr, te = _split(np.arange(len(task)), (1 - test, test), _rng(seed, task))
        folds.append(Fold(f"seed={seed}", seed, tr, empty, te))
    return folds


def make_folds(name: str, task: Task, seeds: list[int], **options) -> list[Fold]:
    """The folds of protocol ``name`` for ``task`` (unknown names list the known ones). A fold without
    training or test points is refused (a probe fitted on nothing was scored)."""
    folds = PROTOCOLS.get(name)(task, list(seeds), **options)
    for fold in folds:
        if len(fold.train) == 0 or len(fold.test) == 0:
            empty = "training" if len(fold.train) == 0 else "test"
            raise ValueError(
                f"task {task.name}: fold {fold.name} of the {name} protocol has no {empty} points "
                f"({len(fold.train)} training, {len(fold.test)} test); give the task more points"
            )
    return folds
