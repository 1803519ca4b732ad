"""A user task from a table of points and a target (``--task-file``): CSV, Parquet, or a pandas DataFrame; or
points as geometries (GeoParquet, GeoJSON, GeoPackage, a GeoDataFrame), read as ``satclip embed`` reads them.

Coordinate columns are given, or are a geo table's point geometry, or detected only from unambiguous names
(exactly one of ``lon``, ``longitude``, ``lng`` and one of ``lat``, ``latitude``, any case). The target column is
given, or is the only other column. Non-numeric targets make a classification task, numeric ones a regression task,
unless ``kind`` says otherwise.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from pathlib import Path

import numpy as np

from ...encoding.points import (
    MAX_REPORTED_ROWS,
    RADIANS_NOTE,
    describe_invalid,
    invalid_rows,
    looks_like_radians,
    outside_radians_box,
    places,
)
from ...optional import require
from ...paths import expand_user
from ..cache import digest
from .base import (
    CLASSIFICATION,
    MIN_POINTS,
    REGRESSION,
    Task,
    TaskOptions,
    continent_labels,
    encode_classes,
    kind_option,
    subsample,
)

log = logging.getLogger(__name__)

#: how to give a table task more points (advice of too few: --n-points, which samples the built-in tasks, only caps
#: a table's rows)
TABLE_MORE_POINTS = "add rows to the table (--n-points only caps its rows)"
#: decimals of degrees the points that seed a table's split are rounded to
SALT_DECIMALS = 9
#: the same, for a table of more rows than the task took
SAMPLED_MORE_POINTS = "raise --n-points (the table has {rows} rows, the task took {taken})"

LON_NAMES = ("lon", "longitude", "lng")
LAT_NAMES = ("lat", "latitude")


#: the texts pandas reads as missing values by default: in a column of numbers they still are (a CSV written by R
#: holds NA), among class labels they are labels (NA is North America, Namibia, …)
MISSING_TEXT = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                          "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})  # fmt: skip


#: suffixes of the geo formats ``satclip embed`` reads with its own readers (GeoParquet is told by its metadata)
GEO_SUFFIXES = (".geojson", ".json", ".gpkg")


def _read(path: Path, centroids: bool = False, layer: str | None = None):
    """The table of a task file and, for points given as geometries, the names of the two columns their lon/lat
    were added as (else None). Columns of numbers (a CSV's with missing-value texts among them, a Parquet
    file's of decimals or of text) as numbers, the row index a column where it is named (a Parquet file's).
    ``centroids``, ``layer``: as ``satclip embed`` takes them (:func:`satclip.embed.sources.open_source`)."""
    pd = require("pandas", "eval")
    suffix = path.suffix.lower()
    if suffix in GEO_SUFFIXES:
        return _geo_file(path, centroids, layer)
    _no_layer(layer, path)
    if suffix not in (".parquet", ".pq", ".csv", ".txt", ".tsv"):
        raise ValueError(f"--task-file {path}: unknown table format {suffix!r}; use .csv, .tsv, .parquet (GeoParquet "
                         "too), .geojson or .gpkg")  # fmt: skip
    geoparquet = False
    try:
        if suffix in (".parquet", ".pq"):
            require("pyarrow", "eval")
            from ...embed.parquet import is_geoparquet

            geoparquet = is_geoparquet(path)
            frame = None if geoparquet else pd.read_parquet(path)
            missing = frozenset()
        else:
            from ...embed.sources import sniff_delimiter

            sep = sniff_delimiter(path, "\t" if suffix == ".tsv" else ",")
            frame = pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""])
            missing = MISSING_TEXT
            blank = [c for c in frame.columns if str(c).startswith("Unnamed: ") and frame[c].isna().all()]
            frame = frame.drop(columns=blank)  # (a ';' at the end of every line: a column of nothing)
    except UnicodeDecodeError as err:
        raise ValueError(f"--task-file {path} is not UTF-8 text ({_first_undecodable(path, err)}): save it as "
                         "UTF-8") from err  # fmt: skip
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"--task-file {path} is empty: expected a header row and a row per point") from err
    except (pd.errors.ParserError, ValueError, OSError) as err:  # (pyarrow's errors are ValueErrors or OSErrors)
        if isinstance(err, OSError) and err.errno is not None:
            raise  # (the file system's own errors, not the content's)
        raise ValueError(f"--task-file {path} is not a readable {suffix[1:]} table: {err}") from err
    if geoparquet:  # (its geometry column was a column of WKB bytes, and lon/lat were looked for among the others)
        geopandas = require("geopandas", "geo", f"reading {path} (or write it to Parquet/CSV with lon/lat)")
        return _geo_frame(geopandas.read_parquet(path), path, centroids)
    if suffix not in (".parquet", ".pq") and len(frame.columns) == 1 and " " in str(frame.columns[0]).strip():
        raise ValueError(f"--task-file {path}: its header {str(frame.columns[0])[:60]!r} is one column holding "
                         "spaces: the file seems space-separated; satclip reads text separated by ',', ';', tab or "
                         "'|': write it with one of those")  # fmt: skip
    return _columns_of(frame, missing), None


def _no_layer(layer: str | None, where) -> None:
    """Refuse ``layer`` (a GeoPackage's) for the table ``where``, which is no GeoPackage (embed's readers refuse it
    for their other formats)."""
    if layer is not None:
        raise ValueError(f"--layer {layer!r} names a layer of a GeoPackage; {where} is not one: drop --layer")


def _columns_of(frame, missing: frozenset = frozenset()):
    """``frame`` with its row index a column where it is named (lon and lat as a Parquet file's index were
    dropped), rows numbered from 0, and its columns of numbers as numbers (:func:`_as_numbers`)."""
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    return _as_numbers(frame.reset_index(drop=True), missing)


def _geo_file(path: Path, centroids: bool, layer: str | None):
    """A GeoJSON or GeoPackage task file read by ``satclip embed``'s readers (:func:`satclip.embed.sources.
    open_source`: CRS checked and reprojected to EPSG:4326, non-point geometries refused) as :func:`_read` returns
    a table: its attributes, and its points' lon/lat as two more columns, whose names it returns too."""
    from ...embed.sources import open_source

    source = open_source(path, centroids=centroids, layer=layer)
    rows = source.num_rows
    chunk = next(source.chunks(0, rows, rows), None)  # (the whole table: these formats are read whole)
    frame = chunk[1].to_pandas() if chunk else require("pandas", "eval").DataFrame(columns=source.columns)
    if getattr(source, "id_column", None) is not None:  # (the features' ids: no target, nor a candidate for one)
        frame = frame.drop(columns=[source.id_column])
    return _columns_of(frame), source.geometry_columns


def _geo_frame(frame, where, centroids: bool):
    """A GeoDataFrame (``where`` it comes from, for messages) as :func:`_read` returns a table: its attributes
    (geometry columns dropped), and the lon/lat of its points as ``satclip embed`` reads them
    (:func:`satclip.embed.inputs.geo_lonlat`: in EPSG:4326, non-point geometries refused) as two more columns,
    whose names it returns too; ``centroids``: those of non-point geometries instead of refusing them."""
    from ...embed.inputs import GeometryError, geo_lonlat, log_geometry_wins
    from ...embed.sources import geometry_column_names

    try:
        lonlat = geo_lonlat(frame, centroids=centroids)
    except GeometryError as err:
        raise GeometryError(f"{where}: {err}") from None
    attributes = _columns_of(require("pandas", "eval").DataFrame(frame.drop(columns=_geometry_columns(frame))))
    names = geometry_column_names(str(c) for c in attributes.columns)
    log_geometry_wins(where, attributes.columns, names)
    return attributes.assign(**dict(zip(names, lonlat.T, strict=True))), names


def _geometry_columns(frame) -> list:
    """The columns of the GeoDataFrame ``frame`` that hold geometries (its active one and any other)."""
    geopandas = require("geopandas", "geo")
    return [c for c in frame.columns if isinstance(frame[c].dtype, geopandas.array.GeometryDtype)]


def _first_undecodable(path: Path, err: UnicodeDecodeError) -> str:
    """What and where the first byte of ``path`` that is no UTF-8 is ("invalid start byte at byte 13, line 2"):
    ``err``, pandas', counts the bytes of its own buffer, not of the file."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as whole:
        line = data.count(b"\n", 0, whole.start) + 1
        return f"{whole.reason} at byte {whole.start}, line {line}"
    return err.reason


def _as_numbers(frame, missing: frozenset):
    """``frame`` with its columns of Python objects (text, decimals) whose cells are all numbers, but for empty
    ones and ``missing`` texts, as float64 columns (those cells NaN); other columns as they are."""
    pd = require("pandas", "eval")
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        if any(isinstance(v, (bool, np.bool_)) for v in column.to_numpy(dtype=object)):  # (True is no 1.0)
            continue
        marked = column.isin(missing) if missing else pd.Series(False, index=column.index)
        values = pd.to_numeric(column.mask(marked), errors="coerce")
        if values.notna().any() and (values.notna() | column.isna() | marked).all():
            frame[name] = values.astype(np.float64)
    return frame


def check_task_name(name: str) -> str:
    """``name`` if it can name a task in reports and file names, else a ``ValueError`` saying why: not empty, no
    ``/`` or ``\\`` (``map_../../x_mlp.png`` was written outside the output folder), not ``.`` or ``..``, no
    control character (a newline broke results.md's tables)."""
    if not name.strip():
        why = "is empty"
    elif "/" in name or "\\" in name:
        why = "holds a '/' or '\\'"
    elif not name.strip("."):
        why = "is only dots"
    elif any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        why = "holds a control character or line break"
    else:
        return name
    raise ValueError(
        f"task name {name!r} {why}: a task name is one line of text without '/' or '\\' and not '.' or '..' "
        "(e.g. soil-moisture or 'yield 2024')"
    )


def _named(columns: list[str], names: tuple[str, ...]) -> list[str]:
    """The ``columns`` named one of ``names`` (any case, spaces around ignored)."""
    return [c for c in columns if c.strip().lower() in names]


def python_name(flag: str) -> str:
    """``"--target-col (target_col= in Python)"``: messages of a table task are read from the CLI and from Python."""
    return f"{flag} ({flag.removeprefix('--').replace('-', '_')}= in Python)"


#: the two coordinate options, as :func:`python_name` names one
COORDINATE_OPTIONS = "--lon-col and --lat-col (lon_col= and lat_col= in Python)"


def _column(columns: list[str], given: str | None, names: tuple[str, ...], what: str, flag: str, path) -> str:
    if given is not None:
        if given not in columns:
            raise ValueError(f"{path}: no column {given!r}, given as {python_name(flag)}; "
                             f"{_closest(given, columns)}columns are {columns}")  # fmt: skip
        return given
    found = _named(columns, names)
    if len(found) != 1:
        why = "none of" if not found else f"several ({found}) of"
        raise ValueError(
            f"{path}: cannot tell which column holds {what}: {why} the names {list(names)} appear among "
            f"{columns}; name it with {python_name(flag)}"
        )
    return found[0]


def _numbers(frame, column: str):
    """Column ``column`` of ``frame`` as numbers (empty cells and :data:`MISSING_TEXT` ones, such as ``NA``, NaN), and a
    description of its cells that are text but no number, naming the first such rows (numbered as the table's data
    rows, from 0), or None."""
    pd = require("pandas", "eval")
    values = pd.to_numeric(frame[column], errors="coerce")
    # (NA and n/a, read as missing on their own, were listed as "no number" beside a real one, a '--')
    text = values.isna() & frame[column].notna() & ~frame[column].isin(MISSING_TEXT)
    if not text.any():
        return values, None
    rows = frame.index[text.to_numpy()]
    shown = ", ".join(f"row {r}: {frame[column][r]!r}" for r in rows[:MAX_REPORTED_ROWS])
    more = f" and {len(rows) - MAX_REPORTED_ROWS} more" if len(rows) > MAX_REPORTED_ROWS else ""
    return values, f"{len(rows)} value(s) that are no number (data rows from 0): {shown}{more}"


def _coordinates(frame, column: str, path: Path | str) -> np.ndarray:
    """Column ``column`` of ``frame`` as float64 degrees (empty cells NaN: their rows are left out); text that
    is no number raises, naming the file, the column and the first such rows — "could not convert
    string to float: 'abc'" named none of them."""
    values, text = _numbers(frame, column)
    if text:
        decimal_commas = frame[column].astype(str).str.fullmatch(r"\s*[-+]?\d*,\d+\s*").any()
        fix = "write decimal points (13.4): decimal commas are not read as numbers" if decimal_commas else (
            "fix or remove those rows")  # fmt: skip
        raise ValueError(f"{path}: column {column!r} holds {text}; coordinates must be (lon, lat) in decimal "
                         f"degrees: {fix}")  # fmt: skip
    return values.to_numpy(dtype=np.float64)


#: share of a text target's cells that are numbers from which it is taken for a numeric column with a few
#: stray cells (a "-" or "n.a."), not for class labels
MOSTLY_NUMBERS = 0.9
#: whole-number targets with at most this many distinct values are said to look like class codes
FEW_CODES = 20


def _target_kind(frame, column: str, kind: str | None, where, short: str) -> tuple[str, bool, list[str]]:
    """The task's kind (``kind``, or from the target's cells), whether the target is numeric, and notes on how it
    was read. A text column that is mostly numbers is refused naming its other cells (a single "-" made a numeric
    target a classification of its values); whole numbers of few values are regressed with a note that they may
    be classes, class labels pandas reads as missing values are kept with one. ``where`` the table is, for
    messages (``short``: in the log)."""
    pd = require("pandas", "eval")
    series = frame[column]
    notes = []  # (said on stderr alone, the codes regressed as numbers were not in results.md)
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if not numeric and kind != CLASSIFICATION and not pd.api.types.is_bool_dtype(series):
        cells = series.dropna().astype(str).str.strip()
        commas = cells.str.fullmatch(r"[-+]?(\d+,\d+|\d{1,3}(,\d{3})+(\.\d+)?)")
        plain = pd.to_numeric(cells, errors="coerce").notna()
        if commas.any() and (commas | plain).mean() >= MOSTLY_NUMBERS:  # (it became a classification of them)
            first = cells[commas].index[0]
            raise ValueError(
                f"{where}: target {column!r} holds numbers written with commas ({cells[first]!r} in data row {first}, "
                "counted from 0: a decimal comma or a thousands separator); write them without (11.2, 1010), or pass "
                f"{kind_option(CLASSIFICATION)} if the column holds class labels"
            )
        values, text = _numbers(frame, column)
        if text and (kind == REGRESSION or values.notna().mean() >= MOSTLY_NUMBERS):
            raise ValueError(
                f"{where}: target {column!r} holds {text}; fix or remove those rows (empty cells are left out), "
                f"or pass {kind_option(CLASSIFICATION)} if the column holds class labels"
            )
    if kind is None:
        kind = REGRESSION if numeric else CLASSIFICATION
        log.info("%s: target %r is %s, so the task is %s", short, column,
                 "numeric" if numeric else "categorical", kind)  # fmt: skip
        codes = np.unique(series.to_numpy()) if numeric else ()
        if numeric and 1 < len(codes) <= FEW_CODES and np.all(np.mod(codes, 1) == 0):  # (one: refused below)
            shown = ", ".join(f"{c:g}" for c in codes[:5]) + (", …" if len(codes) > 5 else "")
            notes.append(f"target {column!r} holds only {len(codes)} distinct whole numbers ({shown}): regressed as "
                         f"numbers; pass {kind_option(CLASSIFICATION)} if they are classes")  # fmt: skip
    if not numeric:  # (pandas read them as missing values: their rows were left out)
        for label, count in series[series.isin(MISSING_TEXT)].value_counts().items():
            notes.append(f"target {column!r} has the class label {label!r} ({count} rows), kept as a class; leave "
                         "those cells empty if it means a missing value")  # fmt: skip
    return kind, numeric, notes


def table_task(
    table,
    *,
    target_col: str | None = None,
    lon_col: str | None = None,
    lat_col: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    options: TaskOptions | None = None,
    centroids: bool = False,
    layer: str | None = None,
) -> Task:
    """Build a task from a table of (lon, lat) degrees and a target column.

    ``table``: a file (CSV/TSV, Parquet; GeoParquet, GeoJSON or GeoPackage of points) or a pandas DataFrame (a
    GeoDataFrame of points), read alike; a geo table's points are its point geometries, reprojected to EPSG:4326,
    unless ``lon_col``/``lat_col`` name other columns; ``centroids``: the centroids of its other geometries (else
    refused); ``layer``: a GeoPackage's layer (needed where it has several). ``name`` defaults to the file's stem, or
    ``"table"``.
    Rows with a missing target or coordinate (empty, NaN) are dropped, with a note; invalid coordinates (infinite,
    out of range) raise, naming the rows. ``kind`` is
    ``"regression"``, ``"classification"`` or None (decided from the target's dtype).
    """
    options = options or TaskOptions()
    pd = require("pandas", "eval")
    if isinstance(table, pd.DataFrame):  # (refused with "expected str, bytes or os.PathLike object")
        from ...embed.inputs import is_geo

        task_name = check_task_name("table" if name is None else name)
        path = short = f"DataFrame {task_name!r}"  # (where the table is, in messages)
        _no_layer(layer, path)
        frame, geometry = _geo_frame(table, path, centroids) if is_geo(table) else (_columns_of(table), None)
    else:
        if not isinstance(table, (str, os.PathLike)):  # (a Series was "expected str, bytes or os.PathLike object")
            raise TypeError(f"a table task takes a file's path or a pandas DataFrame of lon, lat and target columns, "
                            f"not a {type(table).__name__}")  # fmt: skip
        path = expand_user(table)
        if not path.is_file():
            raise FileNotFoundError(f"--task-file {path}: no such file")
        try:
            task_name = check_task_name(path.stem if name is None else name)
        except ValueError as err:
            if name is not None:
                raise
            raise ValueError(
                f"{err}; it is the stem of the file name (the default): name the task with --task-name"
            ) from None
        short = path.name
        frame, geometry = _read(path, centroids, layer)  # rows numbered as in the file, from 0
    if centroids and geometry is None:  # (accepted, and nothing done)
        raise ValueError(f"--centroids takes the centroids of geometries, and {path} holds points as lon/lat: drop "
                         "--centroids")  # fmt: skip
    if geometry is not None:
        if {lon_col, lat_col} <= {None, *geometry}:  # (the points are the geometry's, unless others are named)
            lon_col, lat_col = lon_col or geometry[0], lat_col or geometry[1]
        else:
            frame = frame.drop(columns=list(geometry))
    columns = [str(c) for c in frame.columns]
    if all(given is None and len(_named(columns, names)) != 1 for given, names in ((lon_col, LON_NAMES),
                                                                                    (lat_col, LAT_NAMES))):
        # (each error named one flag: a second run was refused for the other)
        raise ValueError(f"{path}: cannot tell which columns hold longitudes and latitudes: the names "
                         f"{list(LON_NAMES)} and {list(LAT_NAMES)} do not each appear once among {columns}; name "
                         f"them with {COORDINATE_OPTIONS}")  # fmt: skip
    lon = _column(columns, lon_col, LON_NAMES, "longitudes", "--lon-col", path)
    lat = _column(columns, lat_col, LAT_NAMES, "latitudes", "--lat-col", path)
    if lon == lat:
        raise ValueError(f"{path}: {COORDINATE_OPTIONS} both name column {lon!r}; "
                         "name the longitude and latitude")  # fmt: skip
    if target_col is None:
        rest = [c for c in columns if c not in (lon, lat)]
        if not rest:
            raise ValueError(
                f"{path} has no column besides its coordinates {lon!r} and {lat!r}: a task file needs a column "
                "with the target to predict too (a number or a class label per point), e.g. lon,lat,yield"
            )
        if len(rest) != 1:
            raise ValueError(f"{path}: name the target column with {python_name('--target-col')}; candidates: "
                             f"{rest}")  # fmt: skip
        target_col = rest[0]
    elif target_col not in columns:
        raise ValueError(f"{path}: no column {target_col!r}, given as {python_name('--target-col')}; "
                         f"{_closest(target_col, columns)}columns are {columns}")  # fmt: skip
    if target_col in (lon, lat):  # (scored R² 0.9999: the coordinates predicting themselves)
        which = "longitude" if target_col == lon else "latitude"
        raise ValueError(f"{path}: --target-col {target_col!r} (target_col= in Python) is the {which} column; the "
                         "target is what the location should predict: name another column")  # fmt: skip
    given = len(frame)
    frame = frame[frame[target_col].notna()]
    with_target = len(frame)
    points = np.stack([_coordinates(frame, column, path) for column in (lon, lat)], axis=1)
    # (empty or NaN cells: missing, as a missing target is; one stopped the run, called an invalid point)
    located = ~np.isnan(points).any(axis=1)
    frame, points = frame[located], points[located]
    if len(frame) < MIN_POINTS:
        both = f" and coordinates {lon!r}, {lat!r}" if len(frame) < with_target else ""
        raise ValueError(
            f"{path}: {len(frame)} of {given} row(s) have a target {target_col!r}{both}; a task needs at least "
            f"{MIN_POINTS} (training, validation and test points)"
        )
    bad = invalid_rows(points)
    if bad.any():
        rows = frame.index.to_numpy()  # (the data rows of the file, from 0, as the text message numbers them)
        # (the columns are named: "satclip takes (lon, lat) order" was no help)
        swapped = (f"This looks like columns {lon!r} and {lat!r} hold each other's values: name the longitude and "
                   f"latitude columns with {COORDINATE_OPTIONS}.")  # fmt: skip
        raise ValueError(f"{path} ({lon}, {lat}), data rows from 0: "
                         f"{describe_invalid(points, bad, labels=rows, swapped=swapped)}")  # fmt: skip
    notes = []  # (said on stderr alone, they were not in results.md: the data a reader of it sees)
    if with_target < given:  # (they were left out without a word)
        notes.append(f"{given - with_target} of {given} row(s) have no target {target_col!r} (empty or NaN): left out")
    if len(frame) < with_target:  # (of a geometry: named by the columns satclip made of it)
        of_geometry = geometry is not None and (lon, lat) == tuple(geometry)
        what = "geometry (null or empty)" if of_geometry else f"{lon!r} or {lat!r} (empty or NaN)"
        notes.append(f"{with_target - len(frame)} of {given} row(s) have no {what}: left out")
    # (a table in radians was scored at the wrong places without a word, which satclip embed notes)
    if looks_like_radians(len(points), outside_radians_box(points)):
        notes.append(f"{RADIANS_NOTE}: if they are, convert {lon!r} and {lat!r} to degrees (× 180/π)")
    repeated = len(points) - len(np.unique(places(points), axis=0))  # ((180, y) is (−180, y))
    if repeated:
        notes.append(f"{repeated} row(s) repeat another row's location: a random split can put one location in both "
                     "training and test points (--protocol spatial-block cannot)")  # fmt: skip
    if kind not in (None, REGRESSION, CLASSIFICATION):
        raise ValueError(f"task kind must be {REGRESSION!r} or {CLASSIFICATION!r}, got {kind!r}")
    kind, numeric, read_as = _target_kind(frame, target_col, kind, path, short)
    notes += read_as
    if len(points) > options.n_points:  # (2,000 of 12,000 rows were left out without a word)
        notes.append(f"{len(points)} rows: the task uses a sample of {options.n_points} of them (--n-points to "
                     "change)")  # fmt: skip
    for note in notes:
        log.warning("%s: %s", short, note)
    # (a sampled table was told to add rows, --n-points "only capping" them)
    more = TABLE_MORE_POINTS if len(points) <= options.n_points else SAMPLED_MORE_POINTS.format(
        rows=len(points), taken=options.n_points)  # fmt: skip
    sampled = len(points) > options.n_points
    index = subsample(len(points), options.n_points, options.seed)
    points = points[index]
    raw = frame[target_col].to_numpy()[index]
    if kind == REGRESSION:
        if not numeric:
            raise ValueError(f"{path}: target {target_col!r} is not numeric, so it cannot be regressed; pass "
                             f"{kind_option(CLASSIFICATION)} if the column holds class labels")  # fmt: skip
        targets, classes, kept = raw.astype(np.float64), None, None
        infinite = np.flatnonzero(~np.isfinite(targets))
        if len(infinite):
            raise ValueError(f"{path}: target {target_col!r} is not a finite number in {len(infinite)} row(s) (e.g. "
                             f"{float(targets[infinite[0]])}); remove them or leave them empty")  # fmt: skip
        if np.all(targets == targets[0]):  # (scored a perfect MSE of 0, a meaningless task)
            raise ValueError(f"{path}: target {target_col!r} is {targets[0]:g} at every point of the task: there is "
                             "nothing to predict; give a target that varies")  # fmt: skip
        with np.errstate(over="ignore"):
            spread = targets.std()
        if not np.isfinite(spread):  # (every score was NaN, exit 0)
            raise ValueError(f"{path}: target {target_col!r} reaches {np.abs(targets).max():.2g}, too large to score "
                             "(its spread overflows): give it in other units (divided by a power of ten)")  # fmt: skip
        if spread < np.sqrt(np.finfo(np.float64).tiny):  # (its squares underflow: every MSE was 0.000, exit 0)
            raise ValueError(f"{path}: target {target_col!r} reaches only {np.abs(targets).max():.2g}, too small to "
                             "score (its spread underflows): give it in other units (multiplied by a power of "
                             "ten)")  # fmt: skip
    else:
        rows, targets, classes, kept = encode_classes(
            raw.astype(str), options.min_class_points, task_name,
            f"the table has too few rows of its classes: {more}, or lower --min-class-points",
        )  # fmt: skip
        points = points[rows]
    return Task(
        name=task_name, kind=kind, points=points, targets=targets,
        continents=continent_labels(points, options.use_cache), classes=classes, class_filter=kept,
        target=target_col, source=f"user table {path}", notes=tuple(notes),
        # (salted with the file's name, a renamed copy split otherwise; by the points alone, the same points with a
        # target in other units, or another target, split alike)
        # (rounded to 1e-9°, 0.1 mm: points read back from a projected CRS differ in their last bits)
        split_salt=digest(np.round(points, SALT_DECIMALS)), more_points=more, sampled=sampled,
    )  # fmt: skip


def _closest(name: str, columns) -> str:
    """``"did you mean 'y'? "`` for a column named nearly so (``Y`` for ``y``), else ``""``."""
    from ...registry import did_you_mean

    hint = did_you_mean(name, [str(c) for c in columns])
    return f"{hint} " if hint else ""
