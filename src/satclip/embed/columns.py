"""Which columns of a table hold longitude and latitude.

Only names that cannot mean anything else are detected (case-insensitively): ``lon``, ``longitude``,
``lng`` and ``lat``, ``latitude``. ``x``/``y`` and similar are never guessed (they are often projected
metres); name them explicitly. Two candidates for one axis is an error, not a choice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from ..errors import BadInputError

log = logging.getLogger(__name__)

LON_NAMES = ("lon", "longitude", "lng")
LAT_NAMES = ("lat", "latitude")
#: names that look like coordinates but are not detected automatically (mentioned in errors)
SUSPECT_NAMES = ("x", "y", "long", "lon_deg", "lat_deg", "easting", "northing", "coord_x", "coord_y")
#: words of the names of geometry columns (``geometry``, ``geom``, ``the_geom``, ``wkb_geometry``): one stored as
#: bytes without GeoParquet metadata is WKB that satclip cannot tell from other bytes (:func:`detect_lonlat_columns`)
GEOMETRY_WORDS = ("geometry", "geom", "wkb")


class ColumnError(BadInputError):
    """The coordinate columns could not be determined; the message lists the candidates."""


def matching_columns(columns: Sequence[str], names: Sequence[str]) -> list[str]:
    wanted = {n.lower() for n in names}
    return [c for c in columns if str(c).strip().lower() in wanted]


def named_like(name: str, names: Sequence[str]) -> bool:
    """Whether a word of ``name`` (split at non-letters and camelCase: ``decimalLatitude``, ``LAT_DEG``) is one
    of ``names``, as detection would match it alone."""
    words = {w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", str(name))}
    return bool(words & set(names))


def warn_of_swapped_names(lon_col: str | None, lat_col: str | None) -> None:
    """Warn where the column named as longitude is named like a latitude, or the other way round (GBIF's
    ``decimalLatitude`` given as ``--lon-col`` was embedded swapped without a word); the names are used as given."""
    unlike = [
        f"{role} {given!r} is named like a {other}"
        for given, role, other, like, unlike in (
            (lon_col, "the longitude column (lon_col, --lon-col)", "latitude", LAT_NAMES, LON_NAMES),
            (lat_col, "the latitude column (lat_col, --lat-col)", "longitude", LON_NAMES, LAT_NAMES),
        )
        if given is not None and named_like(given, like) and not named_like(given, unlike)
    ]
    if unlike:
        log.warning("%s: swapped? satclip takes the columns as given (right where the table names its columns the "
                    "wrong way round, as satclip's swap advice says; else swap the two)", " and ".join(unlike))


def _is_number(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def detect_lonlat_columns(
    columns: Sequence[str], lon_col: str | None = None, lat_col: str | None = None, wkb: Sequence[str] = ()
) -> tuple[str, str]:
    """Return the ``(lon, lat)`` column names of a table with ``columns``.

    Explicit ``lon_col``/``lat_col`` win (and must exist). Otherwise each axis needs exactly one column
    named as in :data:`LON_NAMES` / :data:`LAT_NAMES`; where none is, the columns ``wkb`` (bytes named like a
    geometry: :meth:`~satclip.embed.sources.Source.wkb_columns`) are named as WKB without GeoParquet metadata.

    Raises:
        ColumnError: a named column is missing, an axis has no or several candidates.
    """
    columns = [str(c) for c in columns]
    for given, role in ((lon_col, "lon_col (--lon-col)"), (lat_col, "lat_col (--lat-col)")):
        if given is not None and given not in columns:
            raise ColumnError(f"{role} {given!r} is not a column; columns are {columns}")
    found, missing = {}, []
    for axis, given, names, flag in (
        ("longitude", lon_col, LON_NAMES, "lon_col=NAME (--lon-col NAME on the command line)"),
        ("latitude", lat_col, LAT_NAMES, "lat_col=NAME (--lat-col NAME on the command line)"),
    ):
        if given is not None:
            found[axis] = given
            continue
        candidates = matching_columns(columns, names)
        if len(candidates) > 1 and len(set(candidates)) > 1:
            raise ColumnError(f"ambiguous {axis} column: {candidates} all match; choose one with {flag}")
        if not candidates and columns and all(_is_number(c) for c in columns):  # (naming one lost the first row)
            raise ColumnError(
                f"no {axis} column: the column names {columns} are numbers (a CSV file without a header line, its "
                "first row read as names? or a table of unnamed columns): add a header line such as lon,lat, or "
                "name the columns lon and lat"
            )
        if candidates:
            found[axis] = candidates[0]
        else:
            missing.append((axis, names, flag))
    if missing:  # (both axes in one message: naming the longitude was followed by a second run refused on latitude)
        suspects = matching_columns(columns, SUSPECT_NAMES)
        hint = (
            f" Columns {suspects} may hold coordinates but are not used unless named (they may be "
            "projected, not degrees)."
            if suspects
            else ""
        )
        if wkb:  # (named lon_col, a geometry's bytes were "not a number")
            hint += (f" Column(s) {list(wkb)} hold bytes, as WKB geometries without GeoParquet metadata do: write the "
                     "file with geopandas (GeoDataFrame.to_parquet records its geometry column), or add lon and lat "
                     "columns.")  # fmt: skip
        raise ColumnError(
            f"{' and '.join(f'no {axis} column' for axis, _, _ in missing)}: expected "
            f"{' and '.join('one named ' + ' / '.join(names) for _, names, _ in missing)} (any case) among {columns}."
            f"{hint} Name {'it' if len(missing) == 1 else 'them'} with {' and '.join(flag for _, _, flag in missing)}."
        )
    for axis, name in found.items():  # (naming it, as the ambiguity said to, was "unexpected error (KeyError)")
        if columns.count(name) > 1:
            raise ColumnError(f"{columns.count(name)} columns are named {name!r} ({axis}): rename all but one, so "
                              "that the name says which holds the coordinates")  # fmt: skip
    if found["longitude"] == found["latitude"]:
        raise ColumnError(f"longitude and latitude are both column {found['longitude']!r}")
    return found["longitude"], found["latitude"]
