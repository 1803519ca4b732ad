"""argparse types shared by the commands: a bad value fails at parse time, naming the value and what works.

Each type raises :class:`argparse.ArgumentTypeError`, which argparse turns into a usage line and
``satclip COMMAND: error: argument --OPTION: MESSAGE`` with exit status 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NamedTuple

# user_path: also the argparse type of every path argument
from ..paths import CHARACTER_DEVICE, FIFO, special_kind, user_path


def integer(text: str) -> int:
    """Any integer (with a one-line error naming the text otherwise)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer ≥ 1 (counts and sizes: --batch-size, --chunk-rows, --k, …)."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer ≥ 0 (--recompute, --num-workers, …)."""
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def worker_count(text: str) -> int:
    """A number of worker processes or threads, 1 to :func:`satclip.machine.max_workers` (--workers, …)."""
    return _at_most_max_workers(positive_int(text), text)


def worker_count_or_zero(text: str) -> int:
    """As :func:`worker_count`, 0 allowed (``--num-workers 0``: in the main process)."""
    return _at_most_max_workers(non_negative_int(text), text)


def _at_most_max_workers(value: int, text: str) -> int:
    from ..machine import MAX_WORKERS_RULE, max_workers

    if value > max_workers():
        raise argparse.ArgumentTypeError(f"must be at most {max_workers()} ({MAX_WORKERS_RULE}), got {text}")
    return value


def comma_items(text: str) -> list[str]:
    """The items of a comma-separated list (``--seeds``, ``--tasks``, ``--probes``), stripped; a trailing comma adds
    none (``3,``: the one seed 3), an empty item before the last is refused (``0,,1`` ran seeds 0 and 1); a list of
    no items (``,``) is empty, for the option to say what it needs."""
    from ..registry import empty_item

    items = [item.strip() for item in text.split(",")]
    if problem := empty_item(items, text):
        raise argparse.ArgumentTypeError(problem)
    return [item for item in items if item]


def positive_float(text: str) -> float:
    """A finite number > 0 (--resolution, --gsd-km, …)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, got {text}")
    return value


def _existing(text: str, give: str) -> Path:
    """``text`` as a path that exists and is no FIFO, socket or device: those are refused here, before anything
    opens them (opening a FIFO waits for a writer), saying to ``give`` what the option takes."""
    path = user_path(text)
    if text == "-" and not path.exists():  # (the usual name of standard input, which satclip does not read)
        raise argparse.ArgumentTypeError(f"'-' (standard input) is not read: write the data to a file and give "
                                         f"{give}")  # fmt: skip
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    special = special_kind(path)
    if special:
        raise argparse.ArgumentTypeError(f"{text} is {special}, not a file: give {give}")
    return path


def file_output(*suffixes: str):
    """The argparse type of an output path (:func:`user_path`) that is a file: with ``suffixes``, where it ends in one
    of them (other outputs of the option are directories, ``.zarr``). A path ending in a separator names a folder
    and is refused (``-o rows.csv/`` wrote the file ``rows.csv``: ``Path`` drops the separator)."""
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)

    def parse(text: str) -> Path:
        path = user_path(text)
        named = text.rstrip("".join(separators))
        if text.endswith(separators) and named and (not suffixes or Path(named).suffix.lower() in suffixes):
            raise argparse.ArgumentTypeError(f"{text} ends in {text[-1]!r}, which names a folder, and a file is "
                                             f"written there: give {named} (without the {text[-1]!r})")  # fmt: skip
        return path

    return parse


def existing_file(text: str) -> Path:
    """A path to an existing regular file (a symbolic link to one): not a directory, FIFO, socket or device."""
    path = _existing(text, "a file")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file")
    return path


def existing_file_or_dataset(text: str) -> Path:
    """An existing regular file, or a directory (a Parquet dataset of part files)."""
    return _existing(text, "a file or a Parquet dataset")


class ConfigInput(NamedTuple):
    """A config read while parsing (:func:`config_input`): its path, to name it, and its bytes."""

    path: Path
    data: bytes


#: the most :func:`config_input` reads (1 MiB: a training config is a few hundred bytes; /dev/zero never ends)
CONFIG_LIMIT = 1 << 20


def config_input(text: str) -> ConfigInput:
    """A training config (``--config``), read here, once: a file, or a pipe — ``--config <(sed … base.yaml)``,
    ``/dev/stdin``, a FIFO a program writes to — or ``/dev/null``; at most :data:`CONFIG_LIMIT` bytes.

    A FIFO no program writes to is refused at once (opening it would wait for a writer), as is one whose writer
    wrote nothing: the two cannot be told apart without waiting. ``-`` is standard input (``/dev/stdin``) where no
    file of that name exists."""
    if text == "-" and not Path(text).exists():  # (it was "no such file: -")
        text = "/dev/stdin"
    path = user_path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file")
    special = special_kind(path)
    if special not in (None, FIFO, CHARACTER_DEVICE):
        raise argparse.ArgumentTypeError(f"{text} is {special}, not a file: give a file or a pipe")
    pipe = special == FIFO
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_NONBLOCK if pipe else 0))
    except OSError as err:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {err.strerror}") from None
    try:
        data = _read_at_most(fd, CONFIG_LIMIT + 1, pipe, text)
    finally:
        os.close(fd)
    if len(data) > CONFIG_LIMIT:
        raise argparse.ArgumentTypeError(
            f"{text} holds more than {CONFIG_LIMIT >> 20} MiB: give the training config, a short YAML file"
        )
    return ConfigInput(path, data)


def _read_at_most(fd: int, limit: int, pipe: bool, text: str) -> bytes:
    """Up to ``limit`` bytes of ``fd``, to its end; a ``pipe`` opened without waiting must have a writer."""
    chunks: list[bytes] = []
    if pipe:
        try:
            first = os.read(fd, limit)
        except BlockingIOError:  # a writer holds the pipe open and has written nothing yet
            first = None
        if first == b"":
            raise argparse.ArgumentTypeError(
                f"{text} is a pipe with nothing to read (no program writes to it, or it wrote nothing): start "
                "its writer first, or give a file"
            )
        chunks += [first] if first else []
        os.set_blocking(fd, True)
    size = sum(map(len, chunks))
    while size < limit and (chunk := os.read(fd, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def name_without_spaces(text: str) -> str:
    """A non-empty name with no white space in it (a hub revision: an empty one was taken as given)."""
    if not text or text.split() != [text]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a name: give one without spaces (main, a tag or a commit)")
    return text


def shard(text: str) -> tuple[int, int]:
    """``"I/N"`` with 0 ≤ I < N → ``(I, N)``."""
    from ..embed.shards import parse_shard

    try:
        return parse_shard(text)
    except ValueError as err:  # its message starts "--shard 'I/N': ", which argparse's prefix already says
        raise argparse.ArgumentTypeError(str(err).replace("--shard ", "", 1)) from None


def device(text: str) -> str:
    """A torch device string that names a device present here (``cpu``, ``cuda``, ``cuda:1``, ``mps``, …)."""
    if text == "cpu":  # the common default: no need to import torch while parsing
        return text
    from ..errors import BadInputError
    from ..machine import check_device

    try:
        check_device(text)
    except BadInputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


class StoreGiven(argparse._StoreAction):
    """argparse's store action that also records its destination in ``namespace.given``: an option given on the
    command line, whatever its value (checks that compared a value with the option's default let an option
    given with that value through: ``--preset reference --n-points 10000`` ran 5,000 points)."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        namespace.given = frozenset(getattr(namespace, "given", frozenset())) | {self.dest}


class StoreTrueGiven(argparse._StoreTrueAction):
    """:class:`StoreGiven` of a flag (``action="store_true"``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        namespace.given = frozenset(getattr(namespace, "given", frozenset())) | {self.dest}


#: argparse's actions whose use :func:`record_given` records, and the action that does
_RECORDING = {argparse._StoreAction: StoreGiven, argparse._StoreTrueAction: StoreTrueGiven}


def record_given(parser: argparse.ArgumentParser, dests) -> None:
    """Make ``parser``'s store (and store-true) options of the destinations ``dests`` record themselves in
    ``args.given`` (:class:`StoreGiven`; a frozenset, empty by default)."""
    for action in parser._actions:
        if action.dest in dests:
            if type(action) not in _RECORDING:
                raise TypeError(f"{action.option_strings[0]} is no plain store option: its use cannot be recorded")
            action.__class__ = _RECORDING[type(action)]
    parser.set_defaults(given=frozenset())


def add_harmonics_option(parser: argparse.ArgumentParser) -> None:
    """``--harmonics``: override the model's spherical-harmonics algorithm (embed, map, locate)."""
    parser.add_argument(
        "--harmonics", choices=["analytic", "analytic-original", "analytic-stable", "closed-form"],
        help="override the model's spherical-harmonics algorithm (analytic-original: the original's own float64 "
        "evaluation, slow; analytic-stable: without the printed coefficients' error, identical at L=10; "
        "closed-form: the original's other basis, the first layer rescaled to give the same embeddings)",
    )  # fmt: skip


def add_trust_option(parser: argparse.ArgumentParser, of: str = "") -> None:
    """``--trust-checkpoint``: unpickle a ``.ckpt`` fully (every command that loads a model; ``of``: which files,
    where not the one model), as :func:`satclip.load`'s ``trust_checkpoint`` and
    :data:`satclip.io.safe_pickle.IF_TRUSTED` say."""
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help=f"allow unpickling arbitrary objects{of}")  # fmt: skip


def add_overwrite_option(parser: argparse.ArgumentParser, output: str = "OUTPUT") -> None:
    """``--overwrite``: replace an existing ``output`` (convert, embed, map), as
    :func:`satclip.safe_output.check_output` allows."""
    parser.add_argument(
        "--overwrite", action="store_true",
        help=f"replace an existing {output}: a file (any, also one satclip did not write) or a directory satclip "
        "created (never a directory it did not create or one holding files it did not write)",
    )  # fmt: skip


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--scheduler`` and ``--workers``: where ``--engine dask`` runs (embed, map)."""
    parser.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="--engine dask: the scheduler to use (e.g. tcp://host:8786); default: a local cluster started and "
        "closed by this command",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=positive_int,
        help="--engine dask without --scheduler: local worker processes, at most one per usable core (default: one "
        "per core)",
    )  # fmt: skip


def check_cluster_options(args: argparse.Namespace) -> None:
    """Refuse ``--scheduler``/``--workers`` without ``--engine dask``, ``--workers`` with ``--scheduler`` (whose
    cluster has its own workers: the number was ignored), and more local workers than usable cores."""
    from ..errors import BadInputError

    if args.engine != "dask" and (args.scheduler or args.workers):
        given = " and ".join(flag for flag, value in (("--scheduler", args.scheduler), ("--workers", args.workers))
                             if value)  # (--workers alone was told "--scheduler and --workers apply …")
        raise BadInputError(f"{given} appl{'y' if ' and ' in given else 'ies'} to --engine dask: add --engine dask, "
                            "or drop it")  # fmt: skip
    if args.scheduler and args.workers:
        raise BadInputError(
            "--workers sizes the local cluster this command starts; the cluster of --scheduler runs the job on its "
            "own workers: drop --workers (or --scheduler)"
        )
    from ..machine import usable_cores

    cores = usable_cores()
    if args.workers and args.workers > cores:  # (64 on 2 cores: 64 processes pausing at their share of memory)
        raise BadInputError(
            f"--workers {args.workers}: this machine has {cores} usable core(s), and the local cluster runs "
            "one single-threaded worker process per core (more share the cores and split the memory, each paused "
            f"at its small share): give at most {cores}, or --scheduler for a larger cluster"
        )
