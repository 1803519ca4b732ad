"""Imports of the optional ``[eval]`` extra, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

#: import name → pip requirement, for the error message
_PIP_NAMES = {
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "shapefile": "pyshp",
    "h5py": "h5py",
    "tifffile": "tifffile",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "pyarrow": "pyarrow",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` naming the ``satclip[eval]`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        pip_name = _PIP_NAMES.get(module.split(".")[0], module)
        raise ImportError(
            f"satclip.eval needs {pip_name!r}, which is not installed: pip install 'satclip[eval]' "
            f"(or: pip install {pip_name})"
        ) from err
