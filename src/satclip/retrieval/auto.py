"""``retrieval="auto"``: the database of a shipped model, built from the embedded Blue Marble corpus on first use.

The shipped models (``bluemarble-l10``, ``bluemarble-l40``) were trained on the 100,000-patch corpus of
:data:`satclip.recipes.CORPUS` (the default :class:`~satclip.data.bluemarble.BlueMarbleParams`) through MOSAIKS
features. Their databases are not shipped (tens of MB):
the first use builds, under ``$SATCLIP_CACHE/retrieval/<name>/``, the corpus (if not there already), the
model's MOSAIKS features of each patch's evaluation view (``features/``, a feature cache, one thread) and
the database (``database/``). Every step is deterministic and reused afterwards; a step whose inputs
changed (a new satclip with retrained weights) is rebuilt. About a minute on one CPU core once the corpus
exists (building the corpus adds 20–45 s).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from .. import safe_output
from ..errors import BadInputError, SatclipError

log = logging.getLogger(__name__)

AUTO = "auto"
#: the feature cache of a shipped model's ``retrieval="auto"`` database, in :func:`auto_directory`
AUTO_FEATURES = "features"


def shipped_models() -> list[str]:
    """Names of the models whose database ``"auto"`` can build (shipped models trained on Blue Marble)."""
    import json

    from ..pretrained import bundled_models

    names = []
    for name, directory in bundled_models().items():
        metadata = json.loads((directory / "config.json").read_text()).get("metadata", {})
        if metadata.get("train_config", {}).get("data", {}).get("dataset") == "bluemarble":
            names.append(name)
    return names


def auto_directory(name: str) -> Path:
    from ..paths import cache_dir

    return cache_dir("retrieval", name)


def check_before_loading(source, *, argument: str = "retrieval", use: str | None = None) -> None:
    """Refuse ``retrieval='auto'`` for a ``source`` that names a model but no shipped one, before it is loaded (a
    released checkpoint was downloaded first, and refused then); a name of no model at all is left to the loader,
    whose error says so. ``argument``, ``use``: as :func:`shipped_name`.

    Raises:
        BadInputError: as :func:`shipped_name`.
    """
    from ..io.resolve import HUB_SCHEME
    from ..pretrained import names

    text = os.fspath(source)
    if text in names() or text.startswith(HUB_SCHEME) or Path(text).expanduser().exists():
        shipped_name(source, argument=argument, use=use)


def shipped_name(source, *, argument: str = "retrieval", use: str | None = None) -> str:
    """The name of the shipped model ``source`` is (a name, or its directory in the package). ``argument``: what
    ``'auto'`` was given as; ``use``: how a database built instead is given (default ``pass ARGUMENT=DB``).

    Raises:
        BadInputError: ``source`` is no shipped Blue Marble model (checked before any model is loaded: a released
            checkpoint was downloaded first, and refused then).
    """
    from ..pretrained import shipped_model_name

    known = shipped_models()
    name = shipped_model_name(source)
    if str(name) not in known:
        raise BadInputError(
            f"{argument}='auto' builds the databases of the shipped models ({', '.join(known)}), not of {name}: "
            f"build one with `satclip retrieval build --model M --cache C -o DB` and {use or f'pass {argument}=DB'}"
        )
    return str(name)


def auto_database(name: str, *, progress: Callable[[int, int], None] | None = None):
    """The :class:`~satclip.retrieval.database.RetrievalDatabase` of shipped model ``name`` (built on first use).

    Raises:
        BadInputError: ``name`` is not a shipped Blue Marble model.
    """
    from ..io.load import load_model

    name = shipped_name(name)
    from .database import build_database, refuse_other_outputs

    path = auto_directory(name) / "database"
    # (there is no output to choose: it said "choose another output directory", or "path")
    fix = f"move it away, or pass retrieval=DB (a database of your own): satclip keeps the database of {name} there"
    safe_output.check_place(path, fix)
    refuse_other_outputs(path, fix=fix, rebuilding=False)
    model = load_model(name)
    note = _building(name, path, model)
    if note:
        _check_writable(name)
        log.log(safe_output.notice_level(log), note)
    cache = auto_features(name, model, progress=progress)
    # the directory is satclip's own: a stale database there is replaced, as a stale cache is rebuilt
    return build_database(path, model, cache, dtype=kept_dtype(path), overwrite=True, model_source=name)


def _building(name: str, path: Path, model) -> str | None:
    """What of the database of ``name`` at ``path`` is about to be built, to be said (``satclip.load`` was silent
    for 27–90 s: :func:`satclip.safe_output.notice_level`), or None where nothing is."""
    from ..data.bluemarble import BlueMarbleParams, default_corpus_dir
    from .database import model_key, read_manifest

    try:
        up_to_date = read_manifest(path)["key"]["model"] == model_key(model)
    except (BadInputError, KeyError):
        up_to_date = False
    corpus = default_corpus_dir(BlueMarbleParams()).is_dir()
    if not up_to_date:
        corpus_note = "" if corpus else ", 20–45 s more for the Blue Marble corpus"
        return (f"retrieval='auto': building the retrieval database of {name} in {path.parent}, once (about a "
                f"minute{corpus_note}; reused afterwards)")  # fmt: skip
    if not corpus:
        return (f"retrieval='auto': building the Blue Marble corpus the database of {name} is checked against, once "
                "(20–45 s)")  # fmt: skip
    return None


def _check_writable(name: str) -> None:
    """Raise :class:`SatclipError` before building ``name``'s database where satclip's cache cannot be written (a
    read-only ``$SATCLIP_CACHE``, shared by an administrator): Python got a bare "Read-only file system" from the
    lock of its folder, after saying it was building."""
    from ..paths import cache_dir

    folder = next(folder for folder in (auto_directory(name), *auto_directory(name).parents) if folder.is_dir())
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SatclipError(
            f"retrieval='auto' builds the database of {name} once in satclip's cache ({cache_dir()}; $SATCLIP_CACHE "
            f"chooses it), but {folder} cannot be written: set SATCLIP_CACHE to a directory you can write, or "
            "pass retrieval=DB, a database built elsewhere with `satclip retrieval build`"
        )

def kept_dtype(path: Path) -> str:
    """The image dtype of the database at ``path``, else the default: one `satclip retrieval build --cache auto
    --dtype float32` put there is kept, not rebuilt in float16 (by ``retrieval="auto"``, or a build without
    ``--dtype``, which replaced it without a word)."""
    from .database import DEFAULT_DTYPE, read_manifest

    try:
        return read_manifest(path)["key"]["dtype"]["image"]
    except (BadInputError, KeyError, TypeError):
        return DEFAULT_DTYPE


def auto_features(name: str, model, *, progress: Callable[[int, int], None] | None = None):
    """The feature cache of ``model``'s image encoder on the recipe corpus, view 0 only (built or reused)."""
    from ..data.bluemarble import BlueMarbleParams, build_bluemarble
    from ..machine import cpu_threads
    from ..train.cache import build_cache
    from ..train.sources import create_source

    # the recipes' corpus (satclip.recipes.CORPUS) is the default parameters; checked by fingerprint below
    root = build_bluemarble(params=BlueMarbleParams())
    source = create_source("bluemarble", root)
    trained_on = (getattr(model, "provenance", {}) or {}).get("metadata", {}).get("feature_cache", {}).get("key", {})
    fingerprint = trained_on.get("dataset", {}).get("fingerprint")
    if fingerprint and fingerprint != source.fingerprint:
        log.warning("the Blue Marble corpus %s (fingerprint %s) is not the one %s was trained on (%s); its "
                    "database holds this corpus", root, source.fingerprint[:12], name, fingerprint[:12])  # fmt: skip
    log.debug("the retrieval features of %s on %s", name, root)
    with cpu_threads(1):  # MOSAIKS' small products are fastest single-threaded
        return build_cache(
            auto_directory(name) / AUTO_FEATURES, model.visual, source, views=1, dtype="float16", seed=0,
            batch_size=1024, device="cpu", progress=progress,
        )  # fmt: skip
