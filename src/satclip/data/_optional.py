"""Imports of the optional ``[data]`` extra, with an error that names the extra."""

from __future__ import annotations


def import_rasterio():
    """Return the ``rasterio`` module or raise ``ImportError`` saying how to install it."""
    try:
        import rasterio
    except ImportError as err:
        raise ImportError(
            "reading Sentinel-2 GeoTIFFs needs rasterio, which is not installed: pip install 'satclip[data]'"
        ) from err
    return rasterio


def import_huggingface_hub():
    """Return the ``huggingface_hub`` module or raise ``ImportError`` saying how to install it."""
    try:
        import huggingface_hub
    except ImportError as err:
        raise ImportError(
            "downloading from the Hugging Face hub needs huggingface_hub, which is not installed: "
            "pip install 'satclip[hub]' (or fetch the files by hand and use `satclip data download ROOT "
            "--from DIR`)"
        ) from err
    return huggingface_hub
