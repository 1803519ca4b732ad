"""``satclip train --config CONFIG.yaml [--resume [CKPT] | --restart] [--SECTION.KEY VALUE …]``: contrastive
pretraining.

Every config key can be overridden on the command line: ``--optim.lr 3e-4``, ``--trainer.max_epochs 5``,
``--model.location_encoder.encoding.legendre_polys 40``; keys not listed in ``--help`` with
``--set KEY=VALUE``. Values are read as YAML scalars (``3e-4``, ``true``, ``null``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from pathlib import Path

from ..errors import BadInputError
from .args import config_input, user_path
from .boundary import message_of


def _option_keys() -> list[str]:
    """Dotted keys offered as options: every scalar field, and the keys of the dict fields' defaults."""
    from ..train.config import SECTIONS

    keys = []
    for section, cls in SECTIONS.items():
        default = cls()
        for f in dataclasses.fields(cls):
            value = getattr(default, f.name)
            if isinstance(value, dict):
                keys += [f"{section}.{f.name}.{k}" for k in _leaves(value)]
                if f.name == "image_encoder":
                    keys.append(f"{section}.{f.name}.weights")
            else:
                keys.append(f"{section}.{f.name}")
    return keys


def _leaves(value: dict, prefix: str = "") -> list[str]:
    out = []
    for key, item in value.items():
        out += _leaves(item, f"{prefix}{key}.") if isinstance(item, dict) else [f"{prefix}{key}"]
    return out


#: a negative number as an option's value: -1, -.5, -0.5, -1e-3, -2.5E+4
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def add_override_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` plus one ``--SECTION.KEY VALUE`` option per config key and a generic ``--set``; options are
    taken as written only (``--optim.l 3`` was taken for ``--optim.lr 3``, ``--trainer.max_epoch`` for
    ``--trainer.max_epochs``)."""
    parser.allow_abbrev = False
    # a value such as -1e-3 is a number, not an option: argparse's own pattern knows -1 and -.5 only ("--optim.lr
    # -1e-3: expected one argument", while --optim.lr -0.001 reached the config check)
    parser._negative_number_matcher = NEGATIVE_NUMBER
    parser.add_argument(
        "--config", type=config_input,
        help="training YAML (sections model, data, optim, trainer; a file, a pipe: <(…), or - for standard input); "
             "defaults if omitted",
    )
    group = parser.add_argument_group("config overrides (values parsed as YAML scalars)")
    for key in _option_keys():
        group.add_argument(f"--{key}", dest=f"override:{key}", metavar="VALUE", default=argparse.SUPPRESS)
    group.add_argument(
        "--set", dest="set_overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override any dotted key, e.g. --set model.image_encoder.num_filters=256",
    )  # fmt: skip
    parser.explain_unrecognized = unrecognized_override


def unrecognized_override(extra: list[str]) -> str | None:
    """Why a ``--SECTION.KEY`` among ``extra`` (arguments argparse did not take) is no option: a key the config
    does not have, named with the keys its section has, or a key with no option of its own, which ``--set`` takes
    (both were argparse's bare "unrecognized arguments")."""
    from ..train.config import apply_overrides

    for token in extra:
        if not (token.startswith("--") and "." in token):
            continue
        key = token[2:].partition("=")[0]
        try:
            apply_overrides({}, {key: None}, parse=False)
        except (KeyError, TypeError) as err:
            return f"{token}: {message_of(err)}"
        return f"{token} has no option of its own: give it as --set {key}=VALUE"
    return None


def collect_overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides = {k[len("override:") :]: v for k, v in vars(args).items() if k.startswith("override:")}
    for item in args.set_overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInputError(f"--set takes KEY=VALUE, got {item!r}")
        _given_once(overrides, key.strip(), value, f"--set {item}")
    return overrides


def _given_once(overrides: dict[str, str], key: str, value: str, given: str) -> None:
    """Add ``key: value`` to ``overrides``; the same key given twice with other values is refused (``--set
    optim.lr=0.1 --optim.lr 0.2`` trained at 0.1 whatever the order)."""
    if key in overrides and overrides[key] != value:
        raise BadInputError(f"{key} is given twice, as {overrides[key]!r} and as {value!r} ({given}): give it once")
    overrides[key] = value


def load_cli_config(args: argparse.Namespace):
    from ..train.config import load_config

    overrides = collect_overrides(args)
    if getattr(args, "target", None):  # (it won over --trainer.export_target without a word)
        _given_once(overrides, "trainer.export_target", args.target, f"--target {args.target}")
    try:
        if args.config is None:
            return load_config(None, overrides)
        return load_config(args.config.path, overrides, data=args.config.data)
    except (KeyError, TypeError, ValueError) as err:
        raise BadInputError(f"bad config: {message_of(err)}") from err


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="contrastive pretraining (from a feature cache or from images)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_override_options(parser)
    rerun = parser.add_mutually_exclusive_group()
    rerun.add_argument(
        "--resume", nargs="?", const=True, default=False, metavar="CKPT", type=user_path,  # ('~/run/…' quoted)
        help="continue the run in trainer.output_dir from checkpoints/last.ckpt (or from CKPT)",
    )  # fmt: skip
    rerun.add_argument(
        "--restart", action="store_true",
        help="discard the run in trainer.output_dir (its checkpoints, history, logs and exports) and train from "
        "scratch there; refused, deleting nothing, where it holds files a run does not write",
    )  # fmt: skip
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    parser.add_argument(
        "--target", choices=("original", "torchgeo", "rshf"), default=None,
        help="reader the exports are written for besides the native directory (trainer.export_target; default "
        "original: a .ckpt the original code and rangegeo load; see docs/export.md)",
    )  # fmt: skip
    parser.set_defaults(func=run)


#: the environment variables a launcher sets to the rank of each process it starts, in the order Lightning reads
#: them (``lightning.fabric.utilities.rank_zero._get_rank``)
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _started_for_another_rank() -> bool:
    """Whether a distributed launcher started this process for a rank other than 0 (Lightning's DDP launcher runs
    the command again for each)."""
    rank = next((os.environ[name] for name in RANK_VARIABLES if name in os.environ), "0")
    return rank.strip() != "0"


def run(args: argparse.Namespace) -> int:
    config = load_cli_config(args)
    if args.print_config:
        from ..train.config import config_yaml

        sys.stdout.write(config_yaml(config.to_dict()))
        return 0
    if not _started_for_another_rank():  # (that rank's first process holds the lock)
        from .. import safe_output

        # a run using the directory refuses this one before Lightning is imported and the config checked against
        # its run (~10 s, 26 s on a busy machine, before "in use by another satclip run"); fit() takes the lock
        safe_output.check_unlocked(config.trainer.output_dir)
    from ..train import fit
    from ..train.cache import InterruptedCacheError
    from ..train.fitting import check_config_of_its_run

    if args.config is not None and "trainer.output_dir" not in collect_overrides(args):
        check_config_of_its_run(args.config.path, config)
    try:
        result = fit(config, resume=args.resume, restart=args.restart)
    except InterruptedCacheError as err:  # (named with the build that finishes it: this config's, as verify names it)
        from .cache import cache_build_command

        command = cache_build_command(args, config.data.cache, config.data.root, err.root)
        raise InterruptedCacheError(err.path, command, err.expected_key) from None
    if result.history:
        last = result.history[-1]
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("epoch", "step"))
        epochs = 1 if result.config.trainer.fast_dev_run else result.config.trainer.max_epochs  # (as Lightning runs it)
        print(f"epoch {last['epoch'] + 1} of {epochs}: {metrics}")
    for name, exported in result.exports.items():  # (the readers of each: the same, said once)
        target = exported.target
        extra = f", {target.path} ({target.target})" if Path(target.path) != Path(exported.native) else ""
        print(f"{name}: {exported.native} (native){extra}")
    if result.exports:
        shown = list(result.exports.values())[-1].target
        others = " and the others" if len(result.exports) > 1 else ""
        print(f"readers of {shown.path}{others}:")
        print("\n".join(f"  {reader.describe()}" for reader in shown.readers))
    skipped = f"; {result.skipped}" if result.skipped else ""  # (said in warnings, scrolled away by the epochs')
    if result.config.data.source == "cache":  # (built from data.root or reused: logged at debug only)
        print(f"feature cache: {result.config.data.cache}{skipped}")
    elif skipped:
        print(f"images: {result.config.data.root}{skipped}")
    print(f"run directory: {result.run_dir}")
    return 0
