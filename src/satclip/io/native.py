"""The native model format: a directory with ``config.json`` and ``model.safetensors``.

``config.json``::

    {"format": "satclip", "format_version": 1,
     "location_encoder": {"encoding": {"name": …, **params}, "network": {"name": …, **params}},
     "image_encoder": null | {"name": …, **params},
     "metadata": {…}}

``model.safetensors`` holds ``location.*`` (the :class:`~satclip.LocationEncoder` state dict) and, for
full SatCLIP models, ``visual.*`` and ``logit_scale``. Safetensors cannot run code, so native models need
no trust decision.

``config.json``'s ``weights_sha256`` is the sha256 of the exact bytes :func:`write_native` wrote to
``model.safetensors``; reading the tensors refuses a file that no longer has it (a disk or copy error changed a
byte: safetensors stores no checksum, so the damaged values would be used). A config without the key (an older
satclip's model, a hand-made one) is read unchecked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from ..digests import file_digest
from ..errors import BadInputError, interruptions_kept
from ..registry import did_you_mean
from ..safe_output import atomic_dir, lock_holder, owned_kind, refuse_other_contents, write_data
from .checks import check_weights
from .history import read_history

FORMAT = "satclip"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: a config.json is a few kB; anything this large is not one
MAX_CONFIG_BYTES = 16 * 2**20
#: config.json's key for the sha256 (64 lowercase hex digits) of model.safetensors' bytes
SHA256_KEY = "weights_sha256"
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: every key a config.json of any satclip version holds (``rshf_padding``: an rshf export's, peers.PADDING_KEY)
CONFIG_KEYS = ("format", "format_version", "location_encoder", "image_encoder", "metadata", SHA256_KEY,
               "rshf_padding")  # fmt: skip


def is_native(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


#: how many entries of a directory that is no model are looked at for the models it holds (a run's export/)
_MAX_ENTRIES = 1000


def not_native(path: str | Path) -> str | None:
    """Why the directory ``path`` is no native model, as one line naming it, what is missing and what to pass or
    do instead; None for a native model (or a path that is not a directory)."""
    path = Path(path)
    if not path.is_dir() or is_native(path):
        return None
    files = [path / CONFIG_FILE, path / WEIGHTS_FILE]
    for file in files:
        if file.exists() and not file.is_file():
            return (
                f"{path} is not a satclip model: its {file.name} is a {_what(file)}, not a file; put the model's "
                f"{file.name} there (copy or download the model again)"
            )
    present = [file.name for file in files if file.is_file()]
    if present:
        (missing,) = [file.name for file in files if file.name not in present]
        return (
            f"{path} is not a complete satclip model: it has {present[0]} but no {missing}; copy or download the "
            f"model again (both {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    unexported = run_without_exports(path)
    if unexported:
        return unexported
    models = _models_in(path) or [f"export{os.sep}{name}" for name in _models_in(path / "export")]  # (a run's)
    if models:
        choices = " or ".join(str(path / name) for name in models)
        return f"{path} is not a satclip model but holds {len(models)} of them ({', '.join(models)}): pass {choices}"
    from ..safe_output import FORMAT_NOUNS, format_noun, recorded_format

    found = recorded_format(path / "manifest.json")
    if found in FORMAT_NOUNS:  # (a retrieval database given as --model was "a directory but not a satclip model")
        return (f"{path} is {format_noun(found)}, not a model: give a model there (a model name, a native model "
                "directory, a .ckpt or a hub id)")  # fmt: skip
    return f"{path} is a directory but not a satclip model (no {CONFIG_FILE} + {WEIGHTS_FILE})"


def is_training_run(directory: str | Path) -> bool:
    """Whether ``directory`` is a ``satclip train`` run: marked as one, or (a run of a satclip before the marker)
    holding ``checkpoints/last.ckpt``. A folder of the user's that merely holds ``checkpoints/`` is not one."""
    directory = Path(directory)
    return owned_kind(directory) == "training-run" or (directory / "checkpoints" / "last.ckpt").is_file()


def run_without_exports(run: str | Path) -> str | None:
    """Why the training run directory ``run`` (``satclip train``'s ``trainer.output_dir``) is no model yet, as one
    line: it exports when it ends, and has not; with its state (running: the PID holding its lock; else how many
    epochs it finished) and how to get an export. None for another directory, or a run with exports."""
    run = Path(run)
    if not is_training_run(run) or _models_in(run / "export"):
        return None
    holder = lock_holder(run)
    if holder is not None:
        state, fix = f"running: PID {holder.get('pid', '?')}", "wait for it to finish"
    else:
        epochs = 0
        with contextlib.suppress(OSError):  # (unreadable: this only describes the run)
            epochs = max((row["epoch"] + 1 for row in read_history(run / "history.jsonl")), default=0)
        state = f"stopped after epoch {epochs}" if epochs else "stopped before it finished an epoch"
        fix = f"continue it with `satclip train --config {run / 'config.yaml'} --resume`"
    return f"{run} is a training run with no exports yet ({state}): {fix} (it exports its model when it ends)"


def in_rshf_layout(file: Path) -> bool:
    """Whether the safetensors ``file`` holds the tensors of rshf's SatClip, by its header (False if unreadable)."""
    from .peers import RSHF_SHAPES  # (peers builds on this module)

    try:
        with interruptions_kept(), safe_open(file, framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()} == RSHF_SHAPES
    except (SafetensorError, OSError, ValueError):
        return False


def _what(path: Path) -> str:
    return "directory" if path.is_dir() else "special file"


def _models_in(path: Path) -> list[str]:
    """The names of the native models and ``.ckpt`` files directly inside the directory ``path`` (its first
    entries only)."""
    models: list[str] = []
    if not path.is_dir():
        return models
    try:
        with os.scandir(path) as entries:
            for count, entry in enumerate(entries):
                if count >= _MAX_ENTRIES:
                    break
                if entry.is_dir() and is_native(entry.path) or entry.is_file() and entry.name.endswith(".ckpt"):
                    models.append(entry.name)  # (a checkpoint there too: "no config.json" did not name it)
    except OSError:
        return []
    return sorted(models)


def _require_native(path: Path) -> None:
    if not is_native(path):
        raise FileNotFoundError(
            not_native(path) or f"{path} is not a satclip model directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})"
        )


def read_config(path: str | Path) -> dict:
    """The checked ``config.json`` of a native model directory (format and version; nothing is built)."""
    path = Path(path)
    _require_native(path)
    file = path / CONFIG_FILE
    size = file.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise BadInputError(f"{file} is {size} bytes; a satclip config is a few kB (limit {MAX_CONFIG_BYTES})")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise BadInputError(f"{file} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise BadInputError(f"{file} is not a satclip config (format={found!r}, expected {FORMAT!r})")
    version = config.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise BadInputError(f"{file}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise BadInputError(
            f"{path} has format_version {version}; this satclip reads up to {FORMAT_VERSION}: upgrade satclip"
        )
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:  # ("metdata" was read as no metadata without a word)
        hint = did_you_mean(unknown[0], CONFIG_KEYS)
        raise BadInputError(
            f"{file}: unknown key(s) {unknown}{f' ({hint})' if hint else ''}; a satclip config holds "
            f"{', '.join(CONFIG_KEYS)}"
        )
    for key in ("location_encoder", "image_encoder", "metadata"):
        value = config.get(key)
        if value is not None and not isinstance(value, dict):
            raise BadInputError(f"{file}: {key!r} must be an object, got {type(value).__name__}")
    if not config.get("location_encoder"):
        raise BadInputError(f"{file} has no 'location_encoder'")
    recorded = config.get(SHA256_KEY)
    if recorded is not None and not (isinstance(recorded, str) and _SHA256.fullmatch(recorded)):
        raise BadInputError(
            f"{file}: {SHA256_KEY!r} must be the sha256 of {WEIGHTS_FILE} in 64 lowercase hex digits (as "
            f"satclip writes it), got {recorded!r}; copy, download or export the model again"
        )
    padding = config.get("rshf_padding")  # (peers.PADDING_KEY: what an rshf export adds)
    if padding is not None:
        columns = padding.get("input_columns") if isinstance(padding, dict) else None
        if not isinstance(columns, int) or isinstance(columns, bool) or columns < 1:
            raise BadInputError(
                f"{file}: 'rshf_padding' must be an object with a positive integer 'input_columns' (as an rshf export "
                f"writes it), got {padding!r}"
            )
    return config


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape of ``model.safetensors``, from its header alone (no tensor data is read)."""
    path = Path(path)
    _require_native(path)
    try:
        with interruptions_kept(), safe_open(path / WEIGHTS_FILE, framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise BadInputError(f"{path / WEIGHTS_FILE} is not a readable safetensors file: {err}") from err


def read_tensors(path: str | Path, keys: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors ``keys`` (default: all) of ``model.safetensors``, refused if the file's sha256 is not the one
    ``config.json`` records (when it records one) or any tensor holds a NaN or inf.

    Raises:
        BadInputError: naming the file, what is wrong with it and what to do.
    """
    path = Path(path)
    recorded = read_config(path).get(SHA256_KEY)
    file = path / WEIGHTS_FILE
    try:
        with interruptions_kept(), safe_open(file, framework="pt") as handle:
            names = list(handle.keys()) if keys is None else list(keys)
            tensors = {key: handle.get_tensor(key) for key in names}
        found = file_digest(file) if recorded else None
    except (SafetensorError, OSError, ValueError) as err:
        raise BadInputError(f"{file} is not a readable safetensors file: {err}") from err
    if found != recorded:
        raise BadInputError(
            f"{file} is damaged: its sha256 ({found[:12]}…) differs from the one recorded in {CONFIG_FILE} "
            f"({recorded[:12]}…); copy, download or export the model again (if you changed its weights on "
            f"purpose, delete {SHA256_KEY!r} from {CONFIG_FILE})"
        )
    check_weights(tensors, file)
    return tensors


def read_native(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return ``(config, tensors)`` of a native model directory (see :func:`read_config`,
    :func:`read_tensors`)."""
    return read_config(path), read_tensors(path)


def write_native(
    path: str | Path,
    config: dict,
    tensors: dict[str, torch.Tensor],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write a native model directory atomically (a finished directory appears, or nothing). ``config.json``
    records the sha256 of the ``model.safetensors`` written (``weights_sha256``, replacing any ``config`` gives).

    An existing ``path`` is replaced only with ``overwrite=True`` and only if satclip created it (or it is
    empty); a directory holding other files is never touched, and ``path`` may not be one of ``inputs``
    (see :mod:`satclip.safe_output`).

    Raises:
        OutputExistsError: ``path`` exists and may not be replaced.
    """
    path = Path(path)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    refuse_other_outputs(path)
    with atomic_dir(path, overwrite=overwrite, inputs=inputs, writes=FORMAT) as tmp:
        sha256 = save_tensors({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / WEIGHTS_FILE)
        write_config(tmp, {**config, SHA256_KEY: sha256})
    return path


def refuse_other_outputs(path: str | Path) -> None:
    """Raise :class:`~satclip.errors.OutputExistsError` if the existing directory ``path`` holds something other
    than a native model: another satclip command's output (an embedding store, a retrieval database, marked
    satclip's too) was replaced by a model with ``--overwrite``. An empty directory, or a model, is not refused
    here (:mod:`satclip.safe_output` decides whether it may be replaced)."""
    if not is_native(path):
        refuse_other_contents(path, "a satclip model")


def save_tensors(tensors: dict[str, torch.Tensor], file: str | Path) -> str:
    """``safetensors``' file of ``tensors``, serialised in memory and written by
    :func:`satclip.safe_output.write_data` (``save_file`` reports a full disk without an errno; and writes its
    file ``0o600``, where this one gets the permissions a new file gets). Returns the sha256 (hex) of the bytes
    written."""
    data = safetensors.torch.save(tensors)
    write_data(file, data)
    return hashlib.sha256(data).hexdigest()


def write_config(directory: str | Path, config: dict) -> None:
    """``directory``'s ``config.json`` in the layout every native model has (sorted keys, indent 2)."""
    write_data(Path(directory) / CONFIG_FILE, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
