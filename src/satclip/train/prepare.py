"""From a training config to its data: the image source and the feature cache (no Lightning needed)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .. import safe_output
from ..errors import BadInputError
from .build import HEAD_ONLY_PARAMS, build_image_encoder
from .cache import FeatureCache, Progress, build_cache, check_cache_directory, interrupted, unfinished
from .config import TrainConfig
from .precision import resolve as resolve_precision
from .sources import SOURCES, PairSource, create_source

log = logging.getLogger(__name__)


def source_from_config(config: TrainConfig) -> PairSource:
    """The registered ``data.dataset`` over ``data.root`` (coordinate jitter is applied by the batch
    datasets, so sources get ``jitter=0``). For an image encoder that takes one input size only (``moco_vit16``:
    224 × 224), a source that can cut its views to it (``image_size``, e.g. S2-100K's 256 px patches) does."""
    options = {}
    size = fixed_image_size(config.model.image_encoder)
    if size is not None and "image_size" in SOURCES.accepted(config.data.dataset):
        options["image_size"] = size
    return create_source(config.data.dataset, config.data.root, **options)


def fixed_image_size(image_encoder: dict) -> int | None:
    """The side of the one square input size the ``model.image_encoder`` config takes, or None (any size, or no
    encoder named). The encoder is built on the meta device: no weights are loaded or allocated."""
    from .. import image

    params = {k: v for k, v in (image_encoder or {}).items() if k != "weights"}
    name = params.pop("name", None)
    if name is None:
        return None
    with torch.device("meta"):
        size = image.create(name, **params).image_size
    return int(size[0]) if size is not None and size[0] == size[1] else None


def image_folder(config: TrainConfig) -> tuple[Path, str]:
    """Where ``data.root``'s images are, which no output may be written into, and how to name it: an S2-100K
    root's ``images/``, a Blue Marble corpus as a whole (its ``images.npy`` lies at the root: a run written
    inside it was mixed with the corpus)."""
    root = Path(config.data.root)
    if config.data.dataset == "bluemarble":
        return root, "the Blue Marble corpus of data.root"
    return root / "images", "the image folder of data.root"


def fit_from_data(encoder, source: PairSource, *, seed: int, images: int = 256) -> None:
    """Fit an encoder whose backbone is fitted from data (``mosaiks``: ``fitted`` False, a ``fit`` method)
    on the evaluation views of ``images`` images drawn with ``seed``; other encoders are left alone."""
    fitted = getattr(encoder, "fitted", None)
    if fitted is None or bool(fitted) or not callable(getattr(encoder, "fit", None)):
        return
    from ..data.s2100k import UnreadableSampleError

    picks = np.sort(np.random.default_rng(seed).choice(len(source), size=min(images, len(source)), replace=False))
    source = source.skipping_unreadable()  # (an unreadable pick was read as the next image: fitted on it twice)
    views = []
    for i in picks:
        try:
            views.append(torch.as_tensor(source.eval_view(source.raw(int(i))[0])))
        except UnreadableSampleError:
            continue
    if not views:
        raise BadInputError(f"none of the {len(picks)} images drawn to fit {encoder.config.get('name')} could be read; "
                            f"run {source.verify_command()} on the dataset")  # fmt: skip
    log.info("fitting %s on %d images", encoder.config.get("name"), len(views))
    encoder.fit(torch.stack(views), seed=seed)


def _is_first_process() -> bool:
    """False in the processes a distributed launcher started besides global rank 0 (any node)."""
    ranks = (os.environ.get(name, "0") for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))
    return all(not r.isdigit() or int(r) == 0 for r in ranks)


def default_device(accelerator: str = "auto") -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def cache_settings(config: TrainConfig) -> dict:
    """The entries of a feature cache's key that ``config`` decides without its images (``data.root``): views,
    dtype, and the image encoder's settings it names that change the features (what training from the cache as
    it is checks)."""
    given = {k: v for k, v in dict(config.model.image_encoder or {}).items() if k not in HEAD_ONLY_PARAMS}
    return {"views": config.data.cache_views, "dtype": config.data.cache_dtype,
            **({"image_encoder": given} if given else {})}  # fmt: skip


def cache_from_config(
    config: TrainConfig,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
    threads: int = 1,
    check_key: Callable[[str, dict], None] | None = None,
) -> FeatureCache:
    """The feature cache ``data.cache`` for ``model.image_encoder`` on ``data.dataset``/``data.root``.

    With ``data.root`` set, the cache is built, finished or (when stale) rebuilt as needed; without it,
    the existing cache at ``data.cache`` is opened as is, and must hold ``data.cache_views`` views of
    ``data.cache_dtype`` features. ``threads``: chunks built at once (see
    :func:`~satclip.train.cache.build_cache`). ``check_key(data.cache, key)`` is called with the key of the
    cache before anything is built, to refuse it (a resume from another cache) without touching a stale one.

    Raises:
        BadInputError: ``data.cache`` lies inside the image folder of ``data.root``, or the existing cache
            opened as is holds other views or another dtype than the config says.
    """
    data = config.data
    if not data.cache:
        raise ValueError("data.cache must name the feature-cache directory (e.g. --data.cache runs/cache-rn18)")
    if not _is_first_process():
        # under DDP, rank 0 builds (Lightning launches the other ranks once it reaches Trainer.fit)
        return FeatureCache.open(data.cache)
    if data.root is None:
        if unfinished(data.cache):  # (before "does not exist": its build was interrupted)
            raise interrupted(data.cache, expected_key=cache_settings(config))
        if not Path(data.cache).exists():
            raise FileNotFoundError(
                f"feature cache {data.cache} does not exist and data.root is not set: give data.root (the image "
                "dataset) to build it, or run `satclip cache build --config CONFIG`"
            )
        cache = FeatureCache.open(data.cache)
        views, dtype = cache.views, cache.key["dtype"]
        if (data.cache_views, data.cache_dtype) != (views, dtype):
            raise BadInputError(
                f"feature cache {data.cache} holds {views} views of {dtype} features, the config says "
                f"data.cache_views={data.cache_views}, data.cache_dtype={data.cache_dtype}: set --data.cache_views "
                f"{views} --data.cache_dtype {dtype} to train from it, or give data.root to rebuild it as configured"
            )
        if check_key is not None:
            check_key(data.cache, cache.key)
        return cache
    safe_output.check_not_inside(data.cache, *image_folder(config))
    check_cache_directory(data.cache, rebuild=rebuild)  # (before the filters are fitted on the images)
    source = source_from_config(config)
    device = torch.device(device) if device is not None else default_device(config.trainer.accelerator)
    encoder = build_image_encoder(
        config.model.image_encoder, embed_dim=config.model.embed_dim, seed=config.trainer.seed
    )
    fit_from_data(encoder, source, seed=config.trainer.seed)
    return build_cache(
        data.cache, encoder, source, views=data.cache_views, dtype=data.cache_dtype, seed=config.trainer.seed,
        check_key=None if check_key is None else partial(check_key, data.cache), batch_size=batch_size,
        num_workers=data.num_workers if num_workers is None else num_workers,
        device=device, amp=resolve_precision(config.trainer.precision, config.trainer.accelerator)[0].startswith("bf16")
        and device.type == "cuda",
        rebuild=rebuild, progress=progress, threads=threads,
    )  # fmt: skip
