"""``satclip retrieval build``: the retrieval database of a model over a feature cache (docs/retrieval.md).

``satclip retrieval build --model M --cache C -o DB`` embeds every cached image (its evaluation view) with
the model's image head and its location with the model's location encoder, and writes ``DB`` (locations,
location embeddings, image embeddings, a manifest naming the model and the cache). An up-to-date ``DB`` is
kept as it is; another one is replaced only with ``--overwrite``. ``--cache auto`` (the shipped models)
computes the model's features of the embedded Blue Marble corpus, as ``satclip.load(M, retrieval="auto")``
does on first use; ``-o`` then defaults to where that looks.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from ..paths import not_a_directory
from .args import add_trust_option, user_path


def _cache_argument(text: str) -> str:
    """``--cache``: ``auto``, or a directory as :func:`~satclip.paths.user_path` reads it (a quoted ``~`` too)."""
    return text if text == "auto" else str(user_path(text))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "retrieval", help="build retrieval databases (retrieval-augmented embeddings)",
        description="Retrieval-database commands; satclip retrieval ACTION --help describes each.",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="retrieval_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build", help="build the database of a model over a feature cache", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    build.add_argument("--model", required=True, help="model name, native model directory, .ckpt or hub id")
    build.add_argument(
        "--cache", required=True, type=_cache_argument,
        help="feature-cache directory (`satclip cache build`) of the model's image backbone, or 'auto' for a "
             "shipped model's Blue Marble corpus",
    )  # fmt: skip
    build.add_argument("-o", "--output", type=user_path, help="database directory (required unless --cache auto)")
    build.add_argument(
        "--dtype", choices=["float16", "float32"],
        help="storage of the image embeddings (default float16: moves retrieved ones by <= 2.4e-4 relative; "
             "location embeddings are float32; --cache auto without -o keeps the dtype of the database there)",
    )  # fmt: skip
    build.add_argument("--overwrite", action="store_true", help="replace an existing database satclip built")
    add_trust_option(build)
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from .. import interrupts, safe_output
    from ..errors import BadInputError
    from ..io.load import load_model
    from ..io.resolve import local_model_files
    from ..retrieval.database import DEFAULT_DTYPE, build_database, check_output_path

    auto = args.cache == "auto"
    if args.output is None and not auto:
        raise BadInputError("give the database directory with -o DB (only --cache auto has a default)")
    if args.output is not None:  # a foreign directory, or the model's or cache's own: refuse now
        # (a directory that is no feature cache is refused as such below)
        cache_input = [args.cache] if not auto and safe_output.is_owned(args.cache) else []
        check_output_path(args.output, inputs=[*local_model_files(args.model), *cache_input])
    if auto:  # (before the model is loaded: a released checkpoint was downloaded first, and refused then)
        from ..retrieval.auto import (
            auto_directory,
            auto_features,
            check_before_loading,
            kept_dtype,
            shipped_models,
            shipped_name,
        )
        from ..retrieval.database import check_replaceable

        try:
            check_before_loading(args.model)
        except BadInputError:
            raise BadInputError(f"--cache auto is for the shipped models ({', '.join(shipped_models())}), not "
                                f"{args.model}: give a feature cache built with its image encoder") from None
    model = load_model(args.model, trust_checkpoint=args.trust_checkpoint, needed_for="satclip retrieval build")
    if auto:
        name = shipped_name(args.model)
        if args.output is not None:  # (refused only after the features were built)
            check_replaceable(args.output, model, overwrite=args.overwrite, model_source=args.model)
        with contextlib.closing(_ProgressBar()) as progress:
            cache = auto_features(name, model, progress=progress)
        output = args.output or auto_directory(name) / "database"
        overwrite = args.overwrite or args.output is None  # the default location is satclip's own cache
        dtype = args.dtype or (kept_dtype(output) if args.output is None else DEFAULT_DTYPE)
    else:
        from ..train.cache import FeatureCache, unfinished

        cache_dir = Path(args.cache)
        what = not_a_directory(cache_dir)
        if what:  # (it was "no such feature cache")
            raise BadInputError(f"--cache {cache_dir} is {what}, not a feature cache directory: give the directory "
                                "`satclip cache build` wrote (its data.cache)")  # fmt: skip
        if not cache_dir.is_dir() and not unfinished(cache_dir):  # (an interrupted build is said by open)
            auto_hint = "; for the shipped models' own, --cache auto" if str(cache_dir).lower() == "auto" else ""
            raise BadInputError(f"no such feature cache: {cache_dir} (build one with `satclip cache build`"
                                f"{auto_hint})")  # fmt: skip
        cache = FeatureCache.open(cache_dir)
        output, overwrite, dtype = args.output, args.overwrite, args.dtype or DEFAULT_DTYPE
    interrupts.final_output(output)
    database = build_database(output, model, cache, dtype=dtype, overwrite=overwrite, model_source=args.model)
    n, d, e = database.manifest["shape"]
    # (--overwrite too keeps an up-to-date one: a reused database was reported as a new build)
    kept = " is up to date, kept as it is" if database.kept else ""
    print(f"{output}{kept}: {n} entries, {d}-d location (float32) and {e}-d image embeddings ({dtype}) of "
          f"{args.model}")
    return 0


class _ProgressBar:
    """The feature caching's progress (``progress(done, total)``), a bar once there is work; closed when done or
    when the work stops (a Ctrl-C's "satclip: interrupted" was written onto the bar's line, then the bar again)."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        from ..terminal import progress_bar

        if self.bar is None and done >= total:
            return  # reused as it was: no bar
        if self.bar is None:
            self.bar = progress_bar(total=total, unit="img", desc="caching features")
        self.bar.n = done
        self.bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
