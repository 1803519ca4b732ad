"""Training recipes of the shipped models: a Blue Marble corpus + a training config (YAML beside this file).

``train_recipe("bluemarble-l10", workdir)`` reproduces a shipped model from its seed: it builds (or reuses)
the corpus, fits MOSAIKS and caches its features, then trains with :func:`satclip.train.fit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch

from ..data.bluemarble import BlueMarbleParams, build_bluemarble
from ..errors import UnknownNameError
from ..machine import cpu_threads

log = logging.getLogger(__name__)

#: the corpus every recipe trains on (`satclip data bluemarble --n 100000`, seed 0)
CORPUS = BlueMarbleParams(n=100_000, patch_size=32, gsd_km=7.5, seed=0)


def recipe_names() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in resources.files(__package__).iterdir() if p.name.endswith(".yaml"))


def recipe_path(name: str) -> Path:
    path = Path(str(resources.files(__package__).joinpath(f"{name}.yaml")))
    if not path.is_file():
        raise UnknownNameError(f"unknown recipe {name!r}; known: {', '.join(recipe_names())}")
    return path


def prepare_recipe(
    name: str,
    workdir: str | Path,
    *,
    corpus: BlueMarbleParams = CORPUS,
    corpus_root: Path | None = None,
    overrides: dict | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """The ``(TrainConfig, FeatureCache)`` of recipe ``name`` in ``workdir`` (``cache/``, ``run/``): builds (or
    finds) the corpus and the feature cache. ``corpus_root``: the directory :func:`build_bluemarble` returned for
    ``corpus``, where the caller built it already. ``overrides``: dotted config keys (``{"trainer.max_epochs": 10}``);
    ``device`` for the feature cache; ``progress(images done, images total)`` while it is built."""
    from ..machine import usable_cores
    from ..train.config import load_config
    from ..train.prepare import cache_from_config

    workdir = Path(workdir)
    root = corpus_root or build_bluemarble(params=corpus)
    settings = {
        "data.root": str(root),
        "data.cache": str(workdir / "cache"),
        "trainer.output_dir": str(workdir / "run"),
        **(overrides or {}),
    }
    config = load_config(recipe_path(name), settings)
    epochs = config.trainer.max_epochs
    log.info("recipe %s: corpus %s, %d epoch%s of batch %d", name, root, epochs, "" if epochs == 1 else "s",
             config.data.batch_size)  # fmt: skip
    on_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    with cpu_threads(1 if on_cpu else torch.get_num_threads()):  # on a CPU: one chunk per core instead
        cache = cache_from_config(config, device=device, batch_size=1024, progress=progress,
                                  threads=usable_cores() if on_cpu else 1)  # fmt: skip
    log.info("recipe %s: feature cache %s, %s %s features", name, cache.path, cache.manifest["shape"],
             cache.key.get("dtype", ""))  # fmt: skip
    return config, cache


def train_recipe(name: str, workdir: str | Path, *, callbacks=(), **options):
    """Train recipe ``name`` in ``workdir``: :func:`prepare_recipe` (``options``), then :func:`satclip.train.fit`
    with the extra Lightning ``callbacks``; returns the :class:`FitResult`."""
    from ..train.fitting import fit

    config, cache = prepare_recipe(name, workdir, **options)
    return fit(config, cache=cache, callbacks=callbacks)
