"""``satclip cache build|verify``: the backbone-feature cache for training from a frozen backbone.

``satclip cache build --config CONFIG.yaml`` computes ``data.cache`` for ``model.image_encoder`` on
``data.dataset``/``data.root`` (``data.cache_views`` views per image, ``data.cache_dtype``); it resumes an
interrupted build (kept in ``CACHE.partial/`` until complete) and rebuilds a stale cache (replaced once the new
one is complete). ``satclip cache verify DIR`` checks a cache's files; with
``--config`` it also checks that the cache matches the config, and ``--recompute K`` recomputes K images.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from ..errors import BadInputError, LockedError
from ..paths import not_a_directory
from .args import device, non_negative_int, positive_int, user_path, worker_count_or_zero
from .train import add_override_options, load_cli_config


def _batch_size(text: str) -> int:
    """``--batch-size``: 1 to :data:`satclip.train.config.MAX_CACHE_BATCH_SIZE`."""
    from ..train.config import MAX_CACHE_BATCH_SIZE

    value = positive_int(text)
    if value > MAX_CACHE_BATCH_SIZE:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_CACHE_BATCH_SIZE} views per forward pass (1,024 images × 1,024 views), got {text}"
        )
    return value


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "cache", help="build or verify a backbone-feature cache", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    actions = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)

    build = actions.add_parser("build", help="compute (or finish, or refresh) the cache of a training config")
    add_override_options(build)
    build.add_argument(
        "--device", type=device, help="torch device for the backbone (default: cuda if available, else cpu)"
    )
    build.add_argument(
        "--batch-size", type=_batch_size, default=64,
        help="views per backbone forward pass (default 64, at most 1048576)",
    )  # fmt: skip
    build.add_argument(
        "--num-workers", type=worker_count_or_zero,
        help="image-reading worker processes (default data.num_workers)",
    )  # fmt: skip
    build.add_argument("--rebuild", action="store_true",
                       help="recompute even when the cache is up to date (e.g. to include images repaired since); "
                            "the old cache stays usable until the new one replaces it, and an interrupted rebuild is "
                            "finished by the next `cache build`, with --rebuild or without")  # fmt: skip
    build.set_defaults(func=run_build)

    verify = actions.add_parser("verify", help="check a cache (and that it matches a config)")
    verify.add_argument("path", nargs="?", type=user_path, help="cache directory (default: data.cache of --config)")
    add_override_options(verify)
    verify.add_argument(
        "--recompute", type=non_negative_int, default=0, metavar="K", help="recompute K random images (needs --config)"
    )
    verify.add_argument("--device", type=device, default="cpu", help="torch device for --recompute (default cpu)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=run_verify)


def run_build(args: argparse.Namespace) -> int:
    from .. import safe_output
    from ..terminal import progress_bar
    from ..train.prepare import cache_from_config

    config = load_cli_config(args)
    if config.data.root is None:
        raise BadInputError("cache build needs data.root (the image dataset), e.g. --data.root data/s2-100k")
    if config.data.cache is not None:  # (not in cache_from_config: a demo keeps its cache in its work directory)
        safe_output.check_not_in_output(config.data.cache)
    bars = []  # drawn from the first progress report on: an error before it prints no empty bar

    def progress(done: int, total: int) -> None:
        if not bars:  # (from the images a resumed build had done: its rate is of this run's, not 1e8 img/s)
            bars.append(progress_bar(total=total, initial=done, unit="img", desc="caching features"))
        bars[0].total = total
        bars[0].update(done - bars[0].n)

    try:
        cache = cache_from_config(
            config, device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
            rebuild=args.rebuild, progress=progress,
        )  # fmt: skip
    finally:
        for bar in bars:
            bar.close()
    skipped = cache.skipped_summary()  # (said in warnings only, before the bar's last lines)
    print(f"{cache.path}: {len(cache)} images × {cache.views} views × {cache.feature_dim} features "
          f"({cache.key['dtype']}) of {cache.image_encoder_config['name']}" + (f"; {skipped}" if skipped else ""))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ..train.cache import BUILD_COMMAND, InterruptedCacheError, building_now, cache_key, unfinished, verify_cache

    path = args.path
    expected_key = encoder = source = trained = settings = None
    build_command = BUILD_COMMAND
    if args.config is not None or args.set_overrides or any(k.startswith("override:") for k in vars(args)):
        from ..train.build import build_image_encoder
        from ..train.prepare import cache_settings, fit_from_data, source_from_config

        config = load_cli_config(args)
        path = path or config.data.cache
        build_command = cache_build_command(args, config.data.cache, config.data.root,
                                            InterruptedCacheError(path).root if path else None)  # fmt: skip
        if config.data.root is not None:
            source = source_from_config(config)
            encoder = build_image_encoder(
                config.model.image_encoder, embed_dim=config.model.embed_dim, seed=config.trainer.seed
            )
            fit_from_data(encoder, source, seed=config.trainer.seed)  # as `cache build` does (MOSAIKS)
            expected_key = settings = cache_key(
                encoder, source, views=config.data.cache_views, dtype=config.data.cache_dtype, seed=config.trainer.seed
            )
        else:  # what training from the cache as it is checks (the cache was called ok whatever the config said)
            expected_key = {"views": config.data.cache_views, "dtype": config.data.cache_dtype}
            settings, trained = cache_settings(config), config.model
    if path is None:
        raise BadInputError("give the cache directory, or --config with data.cache")
    if args.recompute and encoder is None:  # (the options first: they are wrong whatever the directory holds)
        raise BadInputError("--recompute needs --config with data.root (the images to recompute from)")
    building = building_now(path)
    if building:  # (it looked interrupted, or was "not a feature cache" before its manifest was written)
        raise LockedError(building)
    if unfinished(path):  # (said as training says it, with the build that finishes it: the config's, where given)
        raise InterruptedCacheError(path, None if build_command == BUILD_COMMAND else build_command, settings)
    if not Path(path).exists():
        raise BadInputError(f"no such feature cache: {path} (build one with `satclip cache build`)")
    _check_is_cache(Path(path))
    report = verify_cache(
        path, expected_key=expected_key, encoder=encoder, source=source, recompute=args.recompute, device=args.device,
        build_command=build_command,
    )
    if trained is not None and report.ok:
        from ..train.build import cached_image_config
        from ..train.cache import FeatureCache

        try:
            cached_image_config(trained, FeatureCache.open(path))
        except ValueError as err:
            report.problems.append(f"stale: {err}")
    if args.json:
        print(json.dumps({"path": str(report.path), "ok": report.ok, "shape": list(report.shape),
                          "problems": report.problems, "notes": report.notes, "recomputed": report.recomputed,
                          "max_abs_diff": report.max_abs_diff}, indent=2))  # fmt: skip
    else:
        status = "ok" if report.ok else "FAILED"
        extra = ""
        if report.recomputed:
            extra = f", {report.recomputed} images recomputed (max |diff| {report.max_abs_diff:.3g})"
        print(f"{report.path}: {status}, shape {report.shape}{extra}")
        for problem in report.problems:
            print(f"  - {problem}")
        for note in report.notes:
            print(f"  note: {note}")
    return 0 if report.ok else 1


#: the config keys (and sections of keys) that ``cache build`` reads: the build of a cache, and its key
BUILD_KEYS = ("data.cache", "data.root", "data.dataset", "data.cache_views", "data.cache_dtype", "data.num_workers",
              "model.image_encoder", "model.embed_dim", "trainer.seed", "trainer.accelerator", "trainer.precision")


def _read_by_build(key: str) -> bool:
    return any(key == read or key.startswith(read + ".") for read in BUILD_KEYS)


def cache_build_command(args: argparse.Namespace, config_cache: str | Path | None, root: str | Path | None,
                        recorded_root: str | None = None) -> str:  # fmt: skip
    """The ``satclip cache build`` of the config and the overrides of :data:`BUILD_KEYS` that ``args`` give
    (``CONFIG`` for a config read from a pipe; ``train``'s ``--trainer.output_dir``, which means nothing to a build,
    was carried into it), with ``--data.cache`` where the cache verified is not the config's ``config_cache``, and
    ``--data.root`` with ``recorded_root`` (the images an unfinished build records), else ``ROOT``, in place of
    whatever gave the config no data ``root`` (a build needs one: ``--data.root null`` was suggested, and the build
    it named refused to run)."""
    words = ["satclip", "cache", "build"]
    if args.config is not None:
        words += ["--config", str(args.config.path) if args.config.path.is_file() else "CONFIG"]
    overrides = {name.removeprefix("override:"): value for name, value in vars(args).items()
                 if name.startswith("override:") and _read_by_build(name.removeprefix("override:"))}  # fmt: skip
    sets = [item for item in args.set_overrides if _read_by_build(item.partition("=")[0].strip())]
    if root is None:
        overrides["data.root"] = recorded_root or "ROOT"
        sets = [item for item in sets if item.partition("=")[0].strip() != "data.root"]
    words += [word for name, value in overrides.items() for word in (f"--{name}", value)]
    words += [word for item in sets for word in ("--set", item)]
    verified = getattr(args, "path", None)  # (`satclip train` names no cache of its own)
    if verified is not None and (config_cache is None or Path(config_cache).resolve() != verified.resolve()):
        words += ["--data.cache", str(verified)]
    return shlex.join(words)


def _check_is_cache(path: Path) -> None:
    """Refuse, as bad input (exit 2, as a missing path is), what is no feature cache at all: a file, or a directory
    with neither a cache's manifest nor its features (they were reported as a failed cache, exit 1). A cache
    that lost some of its files is verified, and reported damaged."""
    from .. import safe_output
    from ..train.cache import FEATURES, FORMAT, MANIFEST

    what = not_a_directory(path)
    if what:
        raise BadInputError(f"{path} is {what}, not a directory: a feature cache is the directory `satclip cache "
                            "build` wrote")  # fmt: skip
    if not (path / MANIFEST).exists() and not (path / FEATURES).exists():  # (an interrupted build is said before)
        raise BadInputError(
            f"{path} is not a feature cache (no {MANIFEST}, no {FEATURES}): give the directory `satclip cache build` "
            "wrote (data.cache)"
        )
    found = safe_output.recorded_format(path / MANIFEST)  # (none, or damaged: the cache's own check reports it)
    if found not in (None, FORMAT):
        raise BadInputError(f"{path} holds {safe_output.format_noun(found)}, not a feature cache: give the directory "
                            "`satclip cache build` wrote (data.cache)")  # fmt: skip
