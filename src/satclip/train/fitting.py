"""``fit(config)``: train a SatCLIP model with Lightning and export it.

A run directory (``trainer.output_dir``) holds::

    .satclip-output             marker: satclip created it (it never writes a run into a foreign directory)
    config.yaml                 the resolved config of the run
    checkpoints/last.ckpt       the latest state: after every epoch (and every N steps); the resume point
    checkpoints/best.ckpt       the state with the lowest val_loss so far
    checkpoints/*.ckpt.sha256   their sha256 (``sha256sum -c`` format), checked before a resume
    history.jsonl               one line of epoch metrics per finished epoch
    logs/version_*/metrics.csv  step and epoch metrics (CSV logger; TensorBoard too when installed)
    export/{best,last}/         native model directories (config.json + model.safetensors)
    export/{best,last}.ckpt     the same for trainer.export_target: original .ckpt (default), or
                                {best,last}.pt (torchgeo), {best,last}-rshf/ (rshf)

A run holds a lock on its directory (``.NAME.lock`` beside it) while it runs: a second run on the same
``output_dir`` fails at once, naming the process that holds it.

``resume=True`` continues from ``checkpoints/last.ckpt`` after checking it (:func:`check_resume`): intact
(its sha256), a satclip training checkpoint, written by a run with the same config (only
:data:`RESUMABLE_CHANGES` may differ) from the same feature cache or images. The data order, augmentation, jitter
and dropout of every step depend only on the seed, the epoch and the step, and the checkpoint restores
weights, optimizer state, loop counters and the position in the epoch, so an interrupted and resumed run
ends with the same weights as an uninterrupted one. ``restart=True`` instead discards the run the directory holds
and trains from scratch there, once every check of the new run has passed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from .. import safe_output
from ..errors import BadInputError, OutputExistsError, ResumeError, ResumeMismatchError
from ..optional import require
from .cache import KEY_OPTIONS, ReplacedCacheError
from .config import RUN_PATHS, TrainConfig, absolute_path, dump_config, from_dict, load_config, with_absolute_paths
from .export import (
    EXPORT_NAMES,
    TARGET_NAMES,
    Exported,
    check_exports,
    export_model,
    lightning_state_to_model,
    other_targets,
)

log = logging.getLogger(__name__)

#: config keys a resumed run may change (everything else must match the checkpoint's config)
RESUMABLE_CHANGES = (
    "trainer.max_epochs", "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.export",
    "trainer.checkpoint_every_n_steps", "trainer.output_dir", "data.num_workers", "trainer.limit_val_batches",
    "trainer.export_target",
)  # fmt: skip

#: what a run writes in its directory (and an older satclip left there: accepted, and marked as satclip's, without
#: the marker)
RUN_ENTRIES = frozenset({"config.yaml", "checkpoints", "history.jsonl", "logs", "tensorboard", "export"})
_LEGACY_CHECKPOINTS = {"last.ckpt", "best.ckpt"}
_LEGACY_EXPORT = {"config.json", "model.safetensors"}
#: the files a run writes under those entries, which deleting the run (``--restart``, the demo) deletes; anything
#: else there (a user's checkpoint or notes, a `satclip export -o RUN/export/m.onnx`) is refused, not deleted (the
#: whole folders were declared: `--restart` deleted a user's checkpoints/mine.ckpt and logs/notes.txt)
_VERSIONS = tuple(f"version_{'[0-9]' * digits}" for digits in range(1, 5))  # (Lightning's version_0 …; no copy of it)
RUN_FILES = (
    "config.yaml", "history.jsonl",
    *(f"checkpoints/{name}.ckpt{tail}" for name in ("last", "best") for tail in ("", ".sha256")),
    *(f"logs/{version}/{name}" for version in _VERSIONS for name in ("hparams.yaml", "metrics.csv")),
    *(f"tensorboard/{version}/{name}" for version in _VERSIONS for name in ("hparams.yaml", "events.out.tfevents.*")),
    "export/best", "export/last",
    *(f"export/{target.format(name=name)}" for target in TARGET_NAMES.values() for name in ("best", "last")),
)  # fmt: skip
safe_output.declare_contents("training-run", *RUN_FILES)


@dataclass
class FitResult:
    """What a run produced. ``history``: one dict of epoch metrics per finished epoch (``epoch``,
    ``train_loss``, ``val_loss``, ``val_acc_i2l`` …); ``checkpoints`` and ``exports``: ``{"best"|"last": …}``
    (best: lowest ``val_loss``; last: the final state)."""

    run_dir: Path
    config: TrainConfig
    checkpoints: dict[str, Path] = field(default_factory=dict)
    exports: dict[str, Exported] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    model: torch.nn.Module | None = None  # the trained SatCLIP (for a cached run, its visual is the head only)
    image_config: dict = field(default_factory=dict)
    #: "N of M images skipped (unusable)": the images of the dataset it did not train on ("" where none)
    skipped: str = ""


def _as_config(config: TrainConfig | dict | str | Path) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return from_dict(config)
    return load_config(config)


def _flatten(value: dict, prefix: str = "") -> dict:
    out = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_flatten(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = item
    return out


def check_resume(path: str | Path, config: TrainConfig) -> dict:
    """Check checkpoint ``path`` before a run with ``config`` resumes from it; return it (tensors
    memory-mapped).

    Raises:
        ResumeError: it is damaged or not a satclip training checkpoint (see
            :func:`~satclip.train.callbacks.verify_checkpoint`).
        ResumeMismatchError: the run that wrote it had another config (keys other than
            :data:`RESUMABLE_CHANGES` differ; missing keys count as their defaults); a bad input (exit 2).
    """
    from .callbacks import verify_checkpoint

    checkpoint = verify_checkpoint(path)
    try:
        saved = from_dict(checkpoint["hyper_parameters"]["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ResumeError(
            f"cannot resume from {path}: its training config is not one this satclip can read ({err}); start a "
            "new run in another trainer.output_dir"
        ) from err
    cache_keyed = isinstance(checkpoint["hyper_parameters"].get("cache_key"), dict)
    changed = _config_changes(saved, config, "in the checkpoint", cache_keyed=cache_keyed)
    if changed:
        raise ResumeMismatchError(
            f"cannot resume from {path}: it was written by a run with another config ({changed}). Resume with "
            f"the run's own config (its config.yaml), or start a new run in another trainer.output_dir; only "
            f"{', '.join(RESUMABLE_CHANGES)} may change when resuming (and {' and '.join(CACHE_PATHS)}, where the "
            f"checkpoint records its feature cache's key: {' and '.join(KEY_OPTIONS.values())} must then be that "
            "cache's)"
        )
    return checkpoint


#: may change when resuming from a checkpoint that records the key of the feature cache it trained on, which is
#: checked instead (:func:`_check_same_cache`): the same cache moved elsewhere (a moved demo directory) is the same,
#: and so are the images it was built from (the key holds their fingerprint, not their path) moved, or not given
CACHE_PATHS = ("data.cache", "data.root")


def _config_changes(saved: TrainConfig, config: TrainConfig, where: str, *, cache_keyed: bool = False) -> str:
    """The keys other than :data:`RESUMABLE_CHANGES` (and :data:`CACHE_PATHS` if ``cache_keyed``) whose values
    differ, with both values ("" if none). The config keys of a feature cache's key
    (:data:`~satclip.train.cache.KEY_OPTIONS`) are compared with the key of the cache the run trained on
    (:func:`_check_same_cache`), not here: runs of an older satclip recorded the defaults, whatever their cache held."""
    old, new = _flatten(saved.to_dict()), _flatten(config.to_dict())
    for key in RUN_PATHS:  # (an older satclip recorded them as typed: taken in the current directory)
        old[key], new[key] = absolute_path(old.get(key)), absolute_path(new.get(key))
    allowed = (*RESUMABLE_CHANGES, *KEY_OPTIONS.values(), *(CACHE_PATHS if cache_keyed else ()))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in allowed)
    return "; ".join(f"{k}: {old.get(k)!r} {where}, {new.get(k)!r} now" for k in changed)


def _check_same_cache(path: Path, checkpoint: dict, cache_dir: str | Path, key: dict) -> None:
    """Refuse to resume from checkpoint ``path`` with the feature cache of ``key`` (at ``cache_dir``, built or
    not yet) unless the checkpoint's run trained on a cache of the same key."""
    from .cache import key_differences

    saved = checkpoint["hyper_parameters"].get("cache_key")
    if saved is None:
        return
    differ = key_differences(saved, key)
    if not differ:
        return
    options, others = [k for k in differ if k in KEY_OPTIONS], [k for k in differ if k not in KEY_OPTIONS]
    problems, fixes = [], []
    if options:  # (it blamed the cache: "point data.cache at the run's cache", which it was)
        problems.append("it trained with " + ", ".join(f"{KEY_OPTIONS[k]} {saved.get(k)}" for k in options)
                        + ", the config says " + ", ".join(f"{KEY_OPTIONS[k]} {key[k]}" for k in options))
        # (named as options to set, wherever the config's value came from: "drop --data.cache_views 3" was said of
        # a value the YAML gave)
        fixes.append("resume with " + ", ".join(f"{KEY_OPTIONS[k]} {saved.get(k)}" for k in options)
                     + " (in the config, or --" + " --".join(f"{KEY_OPTIONS[k]} {saved.get(k)}" for k in options)
                     + ")")  # fmt: skip
    if others:
        images = "the images of data.root differ" if "dataset" in others else ""  # (not a cache to point at)
        verb = "differs" if len(others) == 1 else "differ"
        problems.append(f"it was trained on another feature cache ({', '.join(others)} {verb} from the cache at "
                        f"{cache_dir}{': ' + images if images else ''})")  # fmt: skip
        fixes += (["give data.root the images the run was trained on"] if "dataset" in others else []) + (
            ["point data.cache at the run's cache"] if set(others) - {"dataset"} else [])  # fmt: skip
    raise ResumeMismatchError(
        f"cannot resume from {path}: {'; '.join(problems)}; {' and '.join(fixes)}, or start a new run in another "
        "trainer.output_dir"
    )


def _dataset_key(source) -> dict | None:
    """What a run on images records of them (``None`` for a run on a feature cache, whose key holds it): their
    fingerprint (the samples' names and coordinates, in order) and number."""
    return None if source is None else {"fingerprint": source.fingerprint, "size": len(source)}


def _check_same_images(path: Path, checkpoint: dict, source) -> None:
    """Refuse to resume from checkpoint ``path`` on other images than its run trained on (``source``): the
    train/validation split is drawn over the samples, so other samples (a row dropped from index.csv) move
    validation images into training. A checkpoint of an older satclip, which recorded none, resumes with a warning."""
    saved = checkpoint["hyper_parameters"].get("dataset_key")
    if not isinstance(saved, dict):
        log.warning("%s records no fingerprint of the images it trained on (an older satclip wrote it): whether "
                    "data.root holds the same samples is not checked", path)  # fmt: skip
        return
    now = _dataset_key(source)
    if saved.get("fingerprint") == now["fingerprint"]:
        return
    what = (f"{now['size']} samples now, {saved.get('size')} when it trained" if saved.get("size") != now["size"]
            else f"the same number of samples, {now['size']}, with other names or coordinates")  # fmt: skip
    raise ResumeMismatchError(
        f"cannot resume from {path}: the images of data.root differ from those it trained on ({what}), and its "
        "train/validation split with them; give data.root the images the run was trained on, or start a new run in "
        "another trainer.output_dir"
    )


def _check_same_run(run_dir: Path, path: Path, config: TrainConfig) -> None:
    """Refuse to resume from checkpoint ``path`` into ``run_dir`` when ``run_dir`` holds another run: one
    whose recorded config (its ``config.yaml``, else its ``checkpoints/last.ckpt``'s) differs from ``config``
    beyond :data:`RESUMABLE_CHANGES` (the resumed run would replace its checkpoints and mix its history)."""
    own, recorded = run_dir / "checkpoints" / "last.ckpt", run_dir / "config.yaml"
    if own.is_file() and own.samefile(path):
        return  # its own checkpoint: already checked against config
    try:
        if recorded.is_file():
            saved = load_config(recorded)
        elif own.is_file():
            saved = from_dict(torch.load(own, map_location="cpu", weights_only=True, mmap=True)["hyper_parameters"]
                              ["config"])  # fmt: skip
        else:
            return
    except Exception as err:  # a config or checkpoint this satclip cannot read (many types): it cannot be compared
        changed = f"its {recorded.name if recorded.is_file() else own.name} cannot be read: {err}"
    else:
        changed = _config_changes(saved, config, "there")
    if changed:
        raise OutputExistsError(
            f"cannot resume from {path} in {run_dir}: that directory holds another run ({changed}), whose "
            "checkpoints and history the resumed run would replace; choose another trainer.output_dir"
        )
    if own.is_file() and not safe_output.same_path(path.parent, own.parent):  # (of the same config: it was
        raise OutputExistsError(  # rolled back to the other run's state, its best left beside it, without a word)
            f"cannot resume from {path} in {run_dir}: that directory holds a run of its own (checkpoints/last.ckpt), "
            "whose checkpoints, history and exports the resumed run would replace or mix with another's; continue "
            f"that run with --resume alone, or continue {path.name} in another trainer.output_dir"
        )


def check_config_of_its_run(path: str | Path, config: TrainConfig) -> None:
    """Refuse ``config``, read from ``path``, where ``path`` is the ``config.yaml`` that a run wrote into its
    directory (:func:`satclip.io.native.is_training_run`; it records ``trainer.output_dir`` as an absolute path)
    and that names another directory: a copied run's file names the original, which the run would train on and
    rewrite, and a moved run's its old place, where a new run would start. Call it unless ``trainer.output_dir``
    was given besides the file. A config of the user's (a relative ``output_dir``, or a folder that is no run,
    even one holding ``checkpoints/``) is left alone.

    Raises:
        BadInputError: naming both directories and the ``--trainer.output_dir`` of each.
    """
    from ..io.native import is_training_run

    path = Path(path)
    here = path.parent
    written = Path(str(config.trainer.output_dir))
    if path.name != "config.yaml" or not written.is_absolute() or not is_training_run(here):
        return  # (a config of the user's; a project folder with a checkpoints/ of its own was refused as a run)
    named = absolute_path(config.trainer.output_dir)
    if safe_output.same_path(here, named):
        return
    fixes = f"continue the run in {here}, pass --trainer.output_dir {here}"
    if Path(named).is_dir():
        what = "copied from there"
        fixes += f"; to continue the run in {named}, pass --trainer.output_dir {named}"
    else:
        what = "moved from there, which no longer exists: a new run would start there"
    raise BadInputError(
        f"{path} names trainer.output_dir {named}, not the run directory it is in; the run was {what}. To {fixes}"
    )


def check_not_in_inputs(run_dir: Path, config: TrainConfig, cache) -> None:
    """Refuse a run directory inside what the run reads: the image folder of ``data.root`` (its checkpoints
    joined the user's dataset, and a later archive of it) or the feature cache (as ``cache build`` refuses a
    cache inside the image folder)."""
    if config.data.root:
        from .prepare import image_folder

        safe_output.check_not_inside(run_dir, *image_folder(config))
    cache_dir = getattr(cache, "path", cache) if cache is not None else config.data.cache
    if cache_dir:
        safe_output.check_not_inside(run_dir, cache_dir, "the feature cache")


def _written_by_satclip(path: Path) -> bool:
    """Whether the YAML file ``path`` is in the form satclip writes a run's ``config.yaml`` in (every version:
    :func:`~satclip.train.config.dump_config`, all sections, no comments), not a config someone wrote."""
    import yaml

    from .config import SECTIONS, config_yaml

    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    # (the form satclip writes, and before 2026-12-05 plain safe_dump's: the same text for almost every config)
    return isinstance(data, dict) and list(data) == list(SECTIONS) and text in (
        config_yaml(data), yaml.safe_dump(data, sort_keys=False))  # fmt: skip


def _claim_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` as a satclip directory, or accept it (satclip's, empty, or a run directory of an
    older satclip, which is marked). A directory whose ``config.yaml`` satclip did not write (e.g. the
    ``--config`` file itself, with its comments) is no older satclip's run: the run would replace that file.

    Raises:
        OutputExistsError: ``run_dir`` holds files satclip did not create.
    """
    if run_dir.is_dir() and not run_dir.is_symlink() and not safe_output.is_owned(run_dir):
        names = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
        checkpoints = run_dir / "checkpoints"
        if (
            (run_dir / "config.yaml").is_file() and checkpoints.is_dir() and names <= RUN_ENTRIES
            and {p.name for p in checkpoints.iterdir() if not p.name.startswith(".")} <= _LEGACY_CHECKPOINTS
        ):  # fmt: skip
            if not _written_by_satclip(run_dir / "config.yaml"):
                raise OutputExistsError(
                    f"{run_dir} is no satclip run (no {safe_output.MARKER} marker) and its config.yaml is not one "
                    "satclip wrote (comments or a form of its own), which a run there would replace: keep your "
                    "config outside the run directory and choose a new or empty trainer.output_dir"
                )
            log.info("%s: a run directory of an older satclip; marking it as satclip's", run_dir)
            safe_output.mark_owned(run_dir, kind="training-run")
            for export in (run_dir / "export" / "best", run_dir / "export" / "last"):
                if export.is_dir() and {p.name for p in export.iterdir()} <= _LEGACY_EXPORT:
                    safe_output.mark_owned(export)
    safe_output.make_owned_dir(run_dir, kind="training-run")


def _check_restart(run_dir: Path) -> None:
    """Refuse to discard the run in ``run_dir`` (claimed: :func:`_claim_run_dir`) where that would delete what
    satclip did not write there: a ``config.yaml`` not in the form satclip writes (the user's ``--config``, with its
    comments), or files a run does not write (named). Deletes nothing."""
    recorded = run_dir / "config.yaml"
    if recorded.is_file() and not _written_by_satclip(recorded):
        raise OutputExistsError(
            f"{recorded} is not a config satclip wrote (comments or a form of its own), and --restart would delete it "
            "with the run: move it out of the run directory (and give --config its new place), or choose another "
            "trainer.output_dir"
        )
    safe_output.check_output(run_dir, overwrite=True, directory=True, kind="training-run")


def _discard_run(run_dir: Path) -> None:
    """``--restart``: delete the run in ``run_dir`` (checked by :func:`_check_restart`), saying so, and claim the
    directory again, empty; a new or empty directory is left as it is."""
    from ..io.history import read_history

    if not safe_output.other_contents(run_dir, ()):
        return
    epochs = max((row["epoch"] + 1 for row in read_history(run_dir / "history.jsonl")), default=0)
    log.warning("discarding the run in %s (%s): --restart", run_dir,
                f"{epochs} epoch(s) trained" if epochs else "no epoch finished")  # fmt: skip
    safe_output.remove_owned(run_dir)
    _claim_run_dir(run_dir)


def _resume_point(run_dir: Path, config: TrainConfig, resume: bool | str | Path, check: bool, restart: bool = False):
    """``(checkpoint path, checked checkpoint)`` to resume from, ``(None, None)`` for a new run (or one that
    ``restart``s, discarding the run ``run_dir`` holds); the checkpoint (and that ``run_dir`` holds no other run) is
    checked, and it is returned, only with ``check``."""
    ckpt_dir = run_dir / "checkpoints"
    if not resume:
        if check and not restart and any((ckpt_dir / name).exists() for name in ("last.ckpt", "best.ckpt")):
            raise OutputExistsError(
                f"{run_dir} already holds a run (checkpoints/last.ckpt): continue it with --resume (resume=True in "
                "Python), start it again from scratch with --restart (restart=True), or choose another "
                "trainer.output_dir"
            )
        return None, None
    path = Path(resume) if not isinstance(resume, bool) else ckpt_dir / "last.ckpt"
    if path.is_dir() and (path / "config.json").is_file():  # (an export: told to try export/last/checkpoints/…)
        from .callbacks import a_model_given

        raise a_model_given(path, path)
    if path.is_dir():  # (a run's checkpoints/ given was told to try checkpoints/checkpoints/last.ckpt)
        inside = path / "last.ckpt" if (path / "last.ckpt").is_file() or path.name == "checkpoints" else (
            path / "checkpoints" / "last.ckpt")  # fmt: skip
        raise BadInputError(
            f"cannot resume from {path}: it is a directory; --resume takes a checkpoint file (e.g. {inside}), or no "
            f"value to continue from {ckpt_dir / 'last.ckpt'}"
        )
    if not path.is_file():
        hint = (f"continue from {ckpt_dir / 'last.ckpt'} with --resume alone (resume=True in Python)"
                if (ckpt_dir / "last.ckpt").is_file()
                else "start without --resume (resume=False in Python)")  # fmt: skip
        raise FileNotFoundError(f"cannot resume: {path} does not exist ({hint})")
    if not check:
        return path, None
    checkpoint = check_resume(path, config)
    done, epochs = epochs_done(checkpoint), config.trainer.max_epochs
    if epochs < done:
        raise BadInputError(
            f"trainer.max_epochs={epochs} is below the {done} epochs {path} has done: resume with "
            f"--trainer.max_epochs {done} or more ({{'trainer.max_epochs': {done}}} in Python)"
        )
    own = ckpt_dir / "last.ckpt"
    if epochs == done and _epochs_started(checkpoint) > done:  # (its part of an epoch was exported as epoch done's)
        raise BadInputError(
            f"{path} was saved during epoch {done + 1}, and trainer.max_epochs={epochs} ends the run before it: "
            f"resume with --trainer.max_epochs {done + 1} or more to finish that epoch"
        )
    if epochs == done and not (own.is_file() and own.samefile(path)):  # (the run's own last.ckpt was exported)
        raise BadInputError(
            f"{path} has done all {done} epoch(s) of trainer.max_epochs={epochs}: resuming from it trains nothing, "
            f"and {run_dir}'s own checkpoints, not it, would be exported; pass --trainer.max_epochs {done + 1} or "
            "more to train on from it"
        )
    _check_same_run(run_dir, path, config)
    _say_rollback(own, path, checkpoint)
    return path, checkpoint


def _say_rollback(own: Path, path: Path, checkpoint: dict) -> None:
    """Say so where resuming from ``path`` (checked: ``checkpoint``), an earlier state of the run whose latest is
    ``own`` (its checkpoints/last.ckpt), rolls the run back: it replaced that run's later epochs without a word.
    Where ``own`` cannot be read (damaged: why another is resumed from), the run's history.jsonl says how far it got."""
    from ..io.history import read_history
    from .callbacks import read_checkpoint

    if not own.is_file() or own.samefile(path):
        return
    done, unreadable = epochs_done(checkpoint), ""
    try:
        latest = read_checkpoint(own)
    except ResumeError:
        rows = read_history(own.parent.parent / "history.jsonl")
        later = max((row["epoch"] + 1 for row in rows), default=0)
        unreadable = f"; {own.name} cannot be read, history.jsonl records epoch {later}"
    else:
        if int(latest.get("global_step", 0)) <= int(checkpoint.get("global_step", 0)):
            return
        later = epochs_done(latest)
    if later > done or not unreadable:
        rows = f"row of epoch {later}" if later == done + 1 else f"rows of epochs {done + 1} to {later}"
        log.info("rolling back from epoch %d to epoch %d (%s%s): checkpoints/last.ckpt and the history %s are "
                 "replaced as the run trains on", later, done, path.name, unreadable, rows)  # fmt: skip


def _epochs_started(checkpoint: dict) -> int:
    """The epochs a training checkpoint records as started: one more than :func:`epochs_done` for a checkpoint
    saved during an epoch (``trainer.checkpoint_every_n_steps``)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["started"])
    except (KeyError, TypeError, ValueError):
        return epochs_done(checkpoint)


def _carry_over(path: Path, checkpoint: dict, run_dir: Path) -> None:
    """A run continued from checkpoint ``path`` of another run in a new ``run_dir`` takes that run's history of
    the epochs before and its best checkpoint (with its ``.sha256``), where ``checkpoint`` records that one as
    its best: the new run had a history from the resumed epoch on and no export/best unless it beat that best.
    What cannot be taken (a history or best of other epochs: ``path`` is not that run's latest) is said to stay."""
    from .callbacks import checksum_path, write_history

    source = path.parent.parent
    if (run_dir / "checkpoints" / "last.ckpt").is_file() or safe_output.same_path(source, run_dir):
        return
    done = epochs_done(checkpoint)
    taken, left = [], []
    rows = _history_before(source / "history.jsonl", done)
    if rows is not None:
        write_history(run_dir / "history.jsonl", rows)
        taken.append(f"the history of its {done} epoch(s)")
    else:
        left.append("the history of its epochs")
    best = _recorded_best(source / "checkpoints" / "best.ckpt", checkpoint)
    if best is not None:
        for file in (best, checksum_path(best)):
            with safe_output.atomic_file(run_dir / "checkpoints" / file.name) as tmp:
                shutil.copyfile(file, tmp)
        taken.append("its best checkpoint")
    else:
        left.append("its best checkpoint")
    said = [f"{' and '.join(taken)} taken from {source}"] if taken else []
    said += [f"{' and '.join(left)} stay in {source}, not recorded by {path.name}"] if left else []
    log.log(logging.WARNING if left else logging.INFO, "continuing %s in a new run directory %s: %s", path, run_dir,
            "; ".join(said))


def _history_before(history: Path, done: int) -> list[dict] | None:
    """The rows of ``history`` (a run's history.jsonl) of epochs 0 … ``done`` − 1, or None where it lacks one."""
    if not history.is_file():
        return None
    from ..io.history import read_history

    try:
        rows = read_history(history)
    except (OSError, ValueError):
        return None
    before = [row for row in rows if isinstance(row, dict) and isinstance(row.get("epoch"), int)
              and row["epoch"] < done]  # fmt: skip
    return before if [row["epoch"] for row in before] == list(range(done)) else None


def _recorded_best(best: Path, checkpoint: dict) -> Path | None:
    """``best`` (a run's best.ckpt) where it is intact and ``checkpoint`` records it as its best (the same
    score), else None."""
    from .callbacks import checksum_path, verify_checkpoint

    scores = [state.get("best_model_score") for state in checkpoint.get("callbacks", {}).values()
              if isinstance(state, dict) and Path(str(state.get("best_model_path", ""))).name == best.name]  # fmt: skip
    if len(scores) != 1 or scores[0] is None or not best.is_file() or not checksum_path(best).is_file():
        return None
    try:
        saved = verify_checkpoint(best)
    except ResumeError:
        return None
    mine = [state.get("best_model_score") for state in saved.get("callbacks", {}).values()
            if isinstance(state, dict) and state.get("best_model_score") is not None]  # fmt: skip
    return best if len(mine) == 1 and float(mine[0]) == float(scores[0]) else None


def epochs_done(checkpoint: dict) -> int:
    """The epochs whose end a training checkpoint records (Lightning counts an epoch ended by its checkpoint
    as processed); 0 where it records none."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return 0


def _trainer(config: TrainConfig, run_dir: Path, has_val: bool, callbacks: Sequence, trained: str | None):
    """The Lightning trainer of a run, and its :class:`~satclip.train.callbacks.History`; ``trained``: the
    precision a resumed run started in (:func:`_started_in`)."""
    pl = require("lightning.pytorch", "train", "training")
    from lightning.pytorch.loggers import CSVLogger

    from .callbacks import AtomicCheckpointIO, BestCheckpoint, History, LatestCheckpoint, epoch_progress_bar
    from .precision import resolve as resolve_precision

    t = config.trainer
    ckpt_dir = run_dir / "checkpoints"
    bar = t.enable_progress_bar and _progress_bar_shown()
    history = History(run_dir / "history.jsonl", announce=not bar)
    checkpoints = [  # in this order: last.ckpt is written after best.ckpt, so it records best.ckpt's score, and the
        BestCheckpoint(ckpt_dir, monitor="val_loss" if has_val else None),  # epoch's row once last.ckpt is on disk
        LatestCheckpoint(ckpt_dir / "last.ckpt", every_n_steps=t.checkpoint_every_n_steps),
        history,
    ]
    loggers = [CSVLogger(run_dir, name="logs")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))
    except (ImportError, ModuleNotFoundError):
        pass
    trainer = pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        num_nodes=t.num_nodes, precision=resolve_precision(t.precision, t.accelerator, trained=trained)[0],
        accumulate_grad_batches=t.accumulate_grad_batches,
        fast_dev_run=t.fast_dev_run, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches if has_val else 0, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch, enable_progress_bar=bar,
        deterministic=t.deterministic, use_distributed_sampler=False, num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()], default_root_dir=run_dir,
        callbacks=[*([epoch_progress_bar()] if bar else []), *callbacks, *checkpoints], logger=loggers,
        enable_model_summary=False,
    )  # fmt: skip
    return trainer, history


def fit(
    config: TrainConfig | dict | str | Path,
    *,
    resume: bool | str | Path = False,
    restart: bool = False,
    cache=None,
    source=None,
    callbacks: Sequence = (),
    rerun: str | None = None,
) -> FitResult:
    """Train and export. ``config``: a :class:`TrainConfig`, a dict of sections or a YAML path.

    Args:
        resume: ``True`` continues from ``<output_dir>/checkpoints/last.ckpt``; a path continues from that
            checkpoint. Without it, an output directory that already holds checkpoints is refused.
        restart: discard the run ``output_dir`` holds (its checkpoints, history, logs and exports) and train from
            scratch there, once every check of the run has passed (under its lock). Refused, deleting nothing, where
            the directory holds files a run does not write, or a ``config.yaml`` satclip did not write.
        cache: a :class:`~satclip.train.cache.FeatureCache` (or its directory) to train from (instead of
            ``data.cache``); the run's config.yaml records it as ``data.cache``, with its views and dtype as
            ``data.cache_views`` and ``data.cache_dtype``, so that ``satclip train --config`` resumes the run.
        source: a :class:`~satclip.train.sources.PairSource` to train from images (instead of
            ``data.dataset``/``data.root``).
        callbacks: extra Lightning callbacks.
        rerun: the command an interrupted run tells the user to rerun to continue it (or, before its first epoch
            was saved, to start it again), e.g. "the same `satclip demo` command" of a workflow that trains as one
            stage; default: ``satclip train --config <output_dir>/config.yaml`` with ``--resume``.

    Raises:
        LockedError: another run is using ``output_dir``.
        OutputExistsError: ``output_dir`` holds a run and neither ``resume`` nor ``restart`` is set, or ``resume``
            names a checkpoint of another run than the one ``output_dir`` holds, or it holds files satclip did not
            create.
        FileNotFoundError: ``resume`` is set and there is no checkpoint to resume from.
        BadInputError: ``resume`` and ``restart`` are both set, ``resume`` names a directory,
            ``trainer.max_epochs`` is below the epochs done, or the feature cache is damaged or holds other views or
            another dtype than the config says.
        ResumeError: the checkpoint is damaged.
        ResumeMismatchError: the checkpoint is from a run with another config or feature cache (refused before a
            stale cache is rebuilt).
        DivergedError: the training loss became non-finite (nothing is exported).
    """
    if restart and resume:
        raise BadInputError("--restart (restart=True) discards the run in trainer.output_dir and --resume "
                            "(resume=…) continues it: give one of them")  # fmt: skip
    with safe_output.removed_if_left_empty():  # (a run directory made before the data failed to open stayed)
        if isinstance(config, (str, os.PathLike)):  # (a copied run's config.yaml trained on the original)
            config_path, config = config, _as_config(config)
            check_config_of_its_run(config_path, config)
        return _fit(config, resume=resume, restart=bool(restart), cache=cache, source=source, callbacks=callbacks,
                    rerun=rerun)  # fmt: skip


def _fit(
    config: TrainConfig | dict | str | Path,
    *,
    resume: bool | str | Path,
    restart: bool,
    cache,
    source,
    callbacks: Sequence,
    rerun: str | None,
) -> FitResult:
    """:func:`fit`, without taking back what it made when it fails."""
    pl = require("lightning.pytorch", "train", "training")
    from lightning.pytorch.utilities import rank_zero_only

    from ..io.history import read_history
    from ..io.targets import check_target
    from .build import build_model, location_config
    from .datamodule import PairDataModule
    from .module import SatCLIPTrainingModule
    from .prepare import cache_from_config, fit_from_data, source_from_config

    config = with_absolute_paths(_as_config(config))
    from .cache import FeatureCache
    from .sources import PairSource

    if cache is not None and not isinstance(cache, FeatureCache):
        if not isinstance(cache, (str, os.PathLike)):
            raise TypeError(f"cache must be a FeatureCache or its directory, got {type(cache).__name__}")
        cache = FeatureCache.open(cache)
    if cache is not None and config.data.source == "cache":
        # the run's config.yaml names the cache it trains on, with its views and dtype: it recorded data.cache null,
        # and the printed `satclip train --config RUN/config.yaml --resume` failed ("data.cache must name …")
        config = with_absolute_paths(config.replace(**{"data.cache": str(cache.path), "data.cache_views": cache.views,
                                                       "data.cache_dtype": cache.key["dtype"]}))  # fmt: skip
    if source is not None and not isinstance(source, PairSource):
        raise TypeError(f"source must be a PairSource (satclip.train.sources: images with their locations and "
                        f"transforms), got {type(source).__name__}")  # fmt: skip
    _check_accelerator(config.trainer.accelerator, config.trainer.devices)
    from .precision import resolve as resolve_precision

    # (refuses what this machine cannot)
    if resolve_precision(config.trainer.precision, config.trainer.accelerator)[0] == "64-true" and (
        config.model.location_dtype != "float64"
    ):
        log.warning("trainer.precision=%s trains in float64, and the exports store the location encoder in "
                    "model.location_dtype=%s: add --model.location_dtype float64 to keep its float64 weights",
                    config.trainer.precision, config.model.location_dtype)  # fmt: skip
    if config.trainer.export:  # fail now, not after training
        check_target(location_config(config.model), config.trainer.export_target)
    run_dir = Path(config.trainer.output_dir)
    safe_output.check_not_link(run_dir)  # (first: it was told to --resume a run there, then refused the link)
    check_not_in_inputs(run_dir, config, cache)
    safe_output.check_not_in_output(run_dir)  # (a demo's or a reference evaluation's runs are laid out by them)
    # processes a DDP launcher starts run this function again: the launching one (rank 0) holds the lock,
    # checks the run directory and the checkpoint, and writes
    primary = rank_zero_only.rank == 0
    with safe_output.exclusive(run_dir) if primary else contextlib.nullcontext():
        ckpt_path, checkpoint = _resume_point(run_dir, config, resume, check=primary, restart=restart)
        finished = (checkpoint is not None and epochs_done(checkpoint) == config.trainer.max_epochs
                    and not config.trainer.fast_dev_run)
        if primary:
            _claim_run_dir(run_dir)
            if restart:  # (refused now, not after its inputs were opened; discarded once they all passed)
                _check_restart(run_dir)
            if checkpoint is not None:
                _carry_over(ckpt_path, checkpoint, run_dir)
            if config.trainer.export:  # (after the claim: it marks an older satclip's exports as satclip's)
                check_exports(run_dir / "export", config.trainer.export_target)

        pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
        if config.data.source == "cache":
            # a resume from another cache is refused before a stale cache is rebuilt
            same_cache = None if checkpoint is None else partial(_check_same_cache, ckpt_path, checkpoint)
            if cache is None:
                cache = cache_from_config(config, check_key=same_cache)
            elif same_cache is not None:
                same_cache(cache.path, cache.key)
            cache.check_files()  # before training, not at export
            source = None
        else:
            source = source if source is not None else source_from_config(config)
            cache = None
            if checkpoint is not None:
                _check_same_images(ckpt_path, checkpoint, source)
        weights = checkpoint["state_dict"] if finished else None  # (the checked checkpoint's: not read again)
        trained = _started_in(ckpt_path, checkpoint, config) if not finished else None
        checkpoint = None  # Lightning reads it again; drop the memory map
        model, image_config = build_model(config, cache, warm=ckpt_path is None)
        command = f"satclip train --config {run_dir / 'config.yaml'}"
        if finished:  # no trainer: it would train nothing and start an empty logs/version_N
            again = " again" if any((run_dir / "export" / name).exists() for name in EXPORT_NAMES) else ""
            log.info("%s has trained all %d epoch(s) of trainer.max_epochs: nothing to train; its exports are written"
                     "%s from its checkpoints", run_dir, config.trainer.max_epochs, again)  # (its cache checked first)
            model.load_state_dict(lightning_state_to_model(weights, cached=cache is not None))
            dump_config(config, run_dir / "config.yaml")
            result = _result(run_dir, config, model, image_config, read_history(run_dir / "history.jsonl"))
            result.skipped = _skipped(cache, source)
            _export_or_interrupt(result, cache, None, command)
            return result
        if source is not None and ckpt_path is None:  # (a resume restores what the run fitted)
            fit_from_data(model.visual, source, seed=config.trainer.seed)  # MOSAIKS, as `cache build` does
        module = SatCLIPTrainingModule(config.to_dict(), model, image_config, cache.key if cache is not None else None,
                                       trained_precision=trained, dataset_key=_dataset_key(source))  # fmt: skip
        datamodule = PairDataModule(config.data, config.trainer.seed, cache=cache, source=source)
        batches = _check_training_batches(len(datamodule.train_indices), config)
        if primary and restart:  # (after every check that can refuse the run: nothing is deleted for a refused one)
            _discard_run(run_dir)
        if primary:  # (the first word from a run whose stderr is no terminal was its first epoch's, minutes later)
            _say_start(config, len(datamodule.train_indices), len(datamodule.val_indices), batches)
        with _quiet_lightning():
            trainer, history = _trainer(config, run_dir, datamodule.validates, callbacks, trained)
        if trainer.is_global_zero:
            dump_config(config, run_dir / "config.yaml")

        def hint() -> str:  # (at the interruption: whether an epoch was saved by then)
            saved = (run_dir / "checkpoints" / "last.ckpt").is_file()
            # a workflow's checkpoints are not recorded as kept work (safe_output.keep_work): the CLI's "the work
            # done is kept in …/checkpoints: rerun the same command …" repeated this hint's advice on the next line
            if rerun:  # (it promised "training continues where it stopped" before any epoch was saved)
                # (nor "where it stopped": the epoch it stopped in is trained again)
                return (f"rerun {rerun}: training continues from its last finished epoch" if saved else
                        f"no epoch was saved yet, so there is nothing to resume: rerun {rerun} to start the training "
                        "again")  # fmt: skip
            if saved:
                return f"continue it with `{command} --resume`"
            return f"no epoch was saved yet, so there is nothing to resume: start it again with `{command}`"

        _fit_or_interrupt(trainer, module, datamodule, ckpt_path, hint)

        # read back from disk: under spawn-based strategies the callbacks' state stays in the workers
        rows = read_history(history.path) if history.path.is_file() else list(history.rows)
        result = _result(run_dir, config, model, image_config, rows)
        result.skipped = _skipped(cache, source)
        if trainer.is_global_zero:
            _export_or_interrupt(result, cache, trainer, command)
    return result


def _started_in(path: Path | None, checkpoint: dict | None, config: TrainConfig) -> str | None:
    """The Lightning precision resumed checkpoint ``path`` records its run trained in (``None`` for a new run, or one
    of an older satclip). What ``trainer.precision: auto`` trains in is said (as `satclip embed` says it): the
    precision it chooses on this machine, or the one the run started in, where that differs: the run goes on in it.
    ``checkpoint``: ``path`` as checked (a DDP worker, which did not check it, reads its own)."""
    from .callbacks import read_checkpoint
    from .precision import LIGHTNING, auto_choice

    trained = None
    if path is not None:
        trained = (checkpoint if checkpoint is not None else read_checkpoint(path))["hyper_parameters"].get(
            "trained_precision")  # fmt: skip
    if config.trainer.precision != "auto":
        return trained
    here, evidence = auto_choice(config.trainer.accelerator)
    if trained is not None and trained != LIGHTNING[here]:
        log.info("trainer.precision auto: %s resumes in %s, the precision it started in (on this machine auto "
                 "would choose %s)", path, trained, LIGHTNING[here])  # fmt: skip
    else:
        log.info("trainer.precision: %s (auto: %s)", here, evidence)
    return trained


def _result(run_dir: Path, config: TrainConfig, model, image_config: dict, history: list[dict]) -> FitResult:
    """The :class:`FitResult` of a trained run in ``run_dir`` (its checkpoints; no exports yet)."""
    result = FitResult(run_dir, config, history=history, model=model, image_config=image_config)
    for name in ("best", "last"):
        path = run_dir / "checkpoints" / f"{name}.ckpt"
        if path.is_file() and not config.trainer.fast_dev_run:
            result.checkpoints[name] = path
    return result


def _skipped(cache, source) -> str:
    """:attr:`FitResult.skipped` of a run on ``cache`` or ``source``: the images the cache left out, or those the
    dataset left out when it was opened (a file that fails while the run reads it is replaced, and said then)."""
    from .cache import skipped_summary

    if cache is not None:
        return cache.skipped_summary()
    return skipped_summary(source.listed() - len(source), source.listed())


def _export_or_interrupt(result: FitResult, cache, trainer, command: str) -> None:
    """Write the exports of a trained run (``trainer.export``) into ``result``; an interruption says how to
    write them (only "interrupted" was said, the run trained and its exports not written)."""
    if not result.config.trainer.export:
        return
    try:
        result.exports = _export_all(result, cache, trainer, result.run_dir / "export")
    except ReplacedCacheError as err:  # (named with the command that writes them)
        raise ReplacedCacheError(err.path, f"{command} --resume") from None
    except KeyboardInterrupt:
        log.warning("export interrupted; the run is trained: write its exports with `%s --resume`", command)
        raise
    target = result.config.trainer.export_target
    latest = result.run_dir / "checkpoints" / "last.ckpt"
    trained = latest.stat().st_mtime_ns if latest.is_file() else None
    for other, paths in other_targets(result.run_dir / "export", target).items():  # (never deleted: kept, and said)
        if trained is not None and all(p.stat().st_mtime_ns >= trained for p in paths):
            continue  # (exported since the run last trained: the same model; each target's resume warned of the other)
        log.warning("%s: exports for trainer.export_target %s left by an earlier export (this one wrote %s only), "
                    "they may hold an older model: write them again with `%s --resume --target %s`, or delete them",
                    ", ".join(str(p) for p in paths), other, target, command, other)  # fmt: skip


def _say_start(config: TrainConfig, train: int, val: int, batches: int) -> None:
    """Log what a run trains on, as it starts: its images (a data.root's or a feature cache's), their split, and
    its batches per epoch (``batches``: the sampler's, ``trainer.limit_train_batches`` of them trained, or
    ``trainer.fast_dev_run``)."""
    data = config.data
    where = f"the feature cache {data.cache}" if data.source == "cache" else str(data.root)
    limit, quick = config.trainer.limit_train_batches, config.trainer.fast_dev_run
    trained = f"{int(batches * limit)} of {batches}" if limit < 1 else f"{batches}"
    if quick:  # (Lightning's fast_dev_run trains that many batches, one epoch: "3 batch(es)" of a run of 1)
        trained = f"{min(quick, batches)} of {batches} (trainer.fast_dev_run)"
    log.info("training on %d images of %s: %d for training, %d for validation (data.val_fraction %g); %s batch(es) "
             "of %d per epoch", train + val, where, train, val, data.val_fraction, trained, data.batch_size)


def _check_training_batches(samples: int, config: TrainConfig) -> int:
    """Refuse a run that would train on no batch: ``data.drop_last`` with a batch larger than the training samples
    (it trained nothing, exit 0, and exported the untrained model as ``export/last``), fewer training samples than
    a contrastive batch needs, or a ``trainer.limit_train_batches`` fraction of less than one batch (Lightning's
    error, once the run had begun). The batches are counted as the run's sampler makes them. A batch larger than the
    training samples is said: the run trains at a smaller softmax than the configured batch. Returns the batches per
    epoch."""
    import numpy as np

    from .config import MIN_BATCH_PAIRS
    from .data import EpochBatchSampler

    data, trainer = config.data, config.trainer
    devices = max(1, trainer.devices) * trainer.num_nodes  # (-1, all devices: at least one)
    batches = len(EpochBatchSampler(np.arange(samples), data.batch_size, shuffle=False, seed=0, world_size=devices,
                                    drop_last=data.drop_last))  # fmt: skip
    if batches == 0 and not data.drop_last:
        raise BadInputError(
            f"the {samples} training sample(s) (data.val_fraction={data.val_fraction:g} of the samples held out) make "
            f"no batch of {MIN_BATCH_PAIRS} or more pairs{f' over {devices} devices' if devices > 1 else ''}, which "
            "the contrastive loss needs: train on more samples, or lower data.val_fraction"
        )
    if batches == 0:
        size = f"data.batch_size={data.batch_size}" + (f" on {devices} devices" if devices > 1 else "")
        raise BadInputError(
            f"{size} with data.drop_last=true leaves no training batch of the {samples} training samples "
            f"(data.val_fraction={data.val_fraction:g} of them held out): lower data.batch_size to at most "
            f"{samples // devices or 1}, or set data.drop_last false"
        )
    limit = trainer.limit_train_batches
    if int(batches * limit) < 1:
        least = math.ceil(1000 / batches) / 1000
        raise BadInputError(
            f"trainer.limit_train_batches={limit:g} of the {batches} training batches per epoch is less than one "
            f"batch: use at least {least:g}"
        )
    if samples < data.batch_size * devices:  # (it trained at a smaller softmax without a word; after every check)
        size = f"data.batch_size={data.batch_size}" + (f" on {devices} devices" if devices > 1 else "")
        batch = samples // devices * devices  # (the loss gathers the devices' batches: one softmax over them all)
        what = (f"all {samples}" if batch == samples else f"{batch} of them") + (
            f" ({batch // devices} per device)" if devices > 1 else "")  # fmt: skip
        log.warning("%s is more than the %d training samples: each epoch is one batch of %s, whose contrastive "
                    "softmax is %d-way instead of %d-way, so its losses (validation's too) are not comparable to those "
                    "of runs at that batch size", size, samples, what, batch, data.batch_size * devices)  # fmt: skip
    return batches


def _check_accelerator(accelerator: str, devices: int = 1) -> None:
    """An accelerator this machine does not have is bad config, named (Lightning raises a bare
    "No supported gpu backend found!"); so are more ``devices`` than it has of that kind: on the CPU one process
    per usable core (``trainer.devices 100`` on a 2-core machine started 100 DDP processes), else its GPUs."""
    from ..machine import available_devices, check_device, usable_cores

    kind = {"gpu": "cuda"}.get(accelerator, accelerator)
    if kind in ("cuda", "mps"):
        try:
            check_device(kind)
        except BadInputError:
            raise BadInputError(
                f"trainer.accelerator={accelerator!r}, but this machine has no {kind} device (available: "
                f"{', '.join(available_devices())}); use 'cpu' or 'auto'"
            ) from None
    if kind == "auto":  # (as Lightning picks it)
        found = available_devices()
        kind = "cuda" if "cuda:0" in found else "mps" if "mps" in found else "cpu"
    have = {"cpu": usable_cores(), "cuda": torch.cuda.device_count() if kind == "cuda" else 0, "mps": 1}.get(kind)
    if have is not None and devices > have:
        what = f"{have} usable CPU core(s)" if kind == "cpu" else f"{have} {kind} device(s)"
        raise BadInputError(
            f"trainer.devices={devices} must be at most {have} here (or -1 for all of them): a {kind} run starts one "
            f"process per device, and this machine has {what}"
        )


def _progress_bar_shown() -> bool:
    """Whether Lightning's progress bar has somewhere to show: a terminal or a notebook (into a file or a pipe it
    wrote its frames, the last one in front of the results; each epoch's row is logged there instead)."""
    from ..terminal import redraws

    return redraws(sys.stdout) or "ipykernel" in sys.modules


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's INFO lines kept to ``-v`` (GPU and TPU available, an advert for a cloud logger,
    "limit_*_batches=1.0 was configured …", "fit stopped: max_epochs reached"), and two of its warnings that are
    none of the user's doing (a deprecation inside Lightning; a tiny run's fewer batches than log_every_n_steps)."""
    lightning = logging.getLogger("lightning.pytorch")
    level = lightning.level
    if not logging.getLogger("satclip").isEnabledFor(logging.DEBUG):
        lightning.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging")
            yield
    finally:
        lightning.setLevel(level)


def _fit_or_interrupt(trainer, module, datamodule, ckpt_path, hint: Callable[[], str]) -> None:
    """``trainer.fit``; a run stopped by Ctrl-C or SIGTERM raises :class:`KeyboardInterrupt` (the CLI's
    "interrupted", exit 130) after saying how to continue it (``hint()``). Lightning itself ends a Ctrl-C with
    ``sys.exit(1)`` and a SIGTERM by returning as if the run had finished. A SIGTERM sent to the process group
    (``timeout``, a scheduler) also ends the ``data.num_workers`` loader workers, and the DataLoader raises
    "DataLoader worker (pid N) is killed by signal: Terminated" for them: that is the same interruption."""
    def interrupted() -> KeyboardInterrupt:
        # (epochs counted from 1, as the refused resume and the summary count them)
        from .callbacks import LatestCheckpoint

        latest = next((c for c in getattr(trainer, "callbacks", ()) if isinstance(c, LatestCheckpoint)), None)
        saved = latest.resumes_at if latest is not None else None  # (None: nothing saved by this session)
        epoch, epochs = trainer.current_epoch, trainer.max_epochs
        # (stopped between an epoch's checkpoint and the next epoch: it said "in epoch 2" of a saved epoch 2)
        where = f"after epoch {epoch + 1} of {epochs}, which was saved" if saved and saved[0] > epoch else (
            f"in epoch {epoch + 1} of {epochs}")  # fmt: skip
        if saved is None:
            resumes = ""
        elif saved[0] >= epochs:
            resumes = " (all its epochs are saved: a resume writes its exports)"
        else:
            resumes = f" (it resumes at epoch {saved[0] + 1}{f', after its batch {saved[1]}' if saved[1] else ''})"
        log.warning("training interrupted %s; %s%s", where, hint(), resumes)
        return KeyboardInterrupt()

    try:
        with _quiet_lightning(), warnings.catch_warnings():
            # (a resumed run's checkpoints are there: Lightning warned of them each time)
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if trainer.interrupted:
            raise interrupted() from None
        raise
    except RuntimeError as err:
        if getattr(trainer, "received_sigterm", False) and str(err).startswith("DataLoader worker"):
            raise interrupted() from None
        raise
    if getattr(trainer, "received_sigterm", False):
        raise interrupted()


def _export_all(result: FitResult, cache, trainer, directory: Path) -> dict[str, Exported]:
    """Export best and last from their checkpoint files (or the in-memory model when none was written,
    e.g. under ``fast_dev_run``)."""
    from .build import build_model

    exports = {}
    if not result.checkpoints:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        exports["last"] = export_model(
            result.model, result.image_config, result.config, directory, "last", cache=cache,
            epoch=trainer.current_epoch, global_step=trainer.global_step, metrics=metrics,
            trained_precision=str(trainer.precision),
        )  # fmt: skip
        return exports
    for name, path in result.checkpoints.items():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model, image_config = build_model(result.config, cache, warm=False)
        model.load_state_dict(lightning_state_to_model(ckpt["state_dict"], cached=cache is not None))
        metrics = dict(ckpt.get("satclip", {}).get("metrics", {}))
        if name == "best" and "val_loss" not in metrics:  # a checkpoint of an older satclip
            for state in ckpt.get("callbacks", {}).values():
                if isinstance(state, dict) and state.get("best_model_score") is not None:
                    metrics["val_loss"] = float(state["best_model_score"])
        exports[name] = export_model(
            model, image_config, result.config, directory, name, cache=cache, epoch=ckpt.get("epoch", 0),
            global_step=ckpt.get("global_step", 0), metrics=metrics,
            trained_precision=ckpt.get("hyper_parameters", {}).get("trained_precision"),  # (older: not recorded)
        )  # fmt: skip
    return exports
