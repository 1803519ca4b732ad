"""satclip: global location embeddings learned from satellite imagery (SatCLIP).

>>> import satclip, torch
>>> encoder = satclip.load("bluemarble-l10")   # shipped, offline; or a released name, .ckpt or model directory
>>> encoder.encode(torch.tensor([[13.40, 52.52]])).shape      # (lon, lat) in degrees
torch.Size([1, 256])

The names below are imported on first use (PEP 562), so that ``import satclip`` — and with it the
``satclip`` command's ``--help`` — does not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"
__all__ = [
    "embed", "LocationEncoder", "SatCLIP", "load_model", "encoding", "list_pretrained", "load", "networks",
    "__version__",
]  # fmt: skip

#: public name → (module relative to this package, attribute in it; None for the module itself)
_LAZY = {
    "embed": (".embed.api", "embed"),  # the function; `from satclip.embed import embed_file` for files
    "load": (".api", "load"),
    "load_model": (".io.load", "load_model"),
    "list_pretrained": (".pretrained", "names"),  # every known model name (released, then shipped)
    "LocationEncoder": (".models.location_encoder", "LocationEncoder"),
    "SatCLIP": (".models.clip", "SatCLIP"),
    "encoding": (".encoding", None),
    "networks": (".networks", None),
    # the subpackages a user reaches for (they raised AttributeError until imported by name)
    **{name: (f".{name}", None) for name in ("data", "eval", "image", "io", "retrieval", "train")},
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:  # (the public names: it listed _LAZY, _Package, importlib, sys …)
    return sorted(set(__all__) | set(_LAZY))


class _Package(types.ModuleType):
    """The ``satclip`` module. Importing a submodule makes Python bind it as an attribute of this package;
    the subpackage ``satclip.embed`` shares its name with the function ``satclip.embed``, and that binding
    is ignored, so the name stays the function (the subpackage stays importable:
    ``from satclip.embed import embed_file``)."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name, (None, None))[1] is not None:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
