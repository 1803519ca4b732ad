"""The ``index.csv`` of an S2-100K-style root: one row per image file with its (lon, lat).

Two layouts are in use, told apart by their column names (never by position):

* ``fn,lon,lat`` — S2-100K as distributed on the Hugging Face hub (``torchgeo/s2-100k``);
* ``lat,lon,url,fn`` — the example patches of the original repository (``url`` is the blob it came from).

Extra columns are ignored. Values are parsed with Python's correctly rounded ``float`` (the same float64
values ``pandas.read_csv`` gives), so points are bit-identical to the original's.

File names are relative to ``images/`` and must stay inside it: an absolute name or one with a ``..``
component is never opened (:func:`name_problem`; verification reports such rows as ``path`` problems).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

#: layout name → the columns it has; a file matches a layout when it has all of them
INDEX_LAYOUTS: dict[str, tuple[str, ...]] = {
    "s2-100k": ("fn", "lon", "lat"),
    "satclip-examples": ("lat", "lon", "url", "fn"),
}

#: delimiters other than ',' that a table saved as "CSV" often has → how a message names them
OTHER_DELIMITERS = {";": "';'", "\t": "tabs", "|": "'|'"}


class IndexFormatError(ValueError):
    """``index.csv`` is missing, empty, not UTF-8 CSV, or has columns that match no known layout."""


@dataclass(frozen=True)
class S2Index:
    """The parsed index: ``filenames[i]`` (relative to ``images/``) was taken at ``lonlat[i]``.

    ``lonlat`` is ``(N, 2)`` float64 (lon, lat) degrees; unparseable values are NaN (flagged by
    :func:`satclip.data.verify.verify_s2100k`, never silently used). A NaN does not say what the file held, so
    ``unparsed`` keeps the text of those: row → ``(lon text, lat text)``, ``None`` for a value that is a number.
    ``lines`` is ``(N,)`` int64, the line of the file each row starts on (``None`` for an index not read from a
    file); verification names rows by it.
    """

    path: Path
    layout: str
    columns: tuple[str, ...]
    filenames: tuple[str, ...]
    lonlat: np.ndarray
    lines: np.ndarray | None = None
    unparsed: Mapping[int, tuple[str | None, str | None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.filenames)


def detect_layout(columns: list[str] | tuple[str, ...], *, path: str | Path = "index.csv") -> str:
    """Name of the layout whose columns all appear in ``columns`` (the most specific one wins)."""
    present = {c.strip().lower() for c in columns}
    matches = [name for name, cols in INDEX_LAYOUTS.items() if set(cols) <= present]
    if not matches and len(columns) == 1:  # (told to rename its one column)
        delimiter = max(OTHER_DELIMITERS, key=columns[0].count)
        if delimiter in columns[0]:
            raise IndexFormatError(f"{path} reads as one column {columns[0]!r}: its values look separated by "
                                   f"{OTHER_DELIMITERS[delimiter]}; save it with ',' between values")  # fmt: skip
    known = "; ".join(f"{name}: {','.join(cols)}" for name, cols in INDEX_LAYOUTS.items())
    if not matches and any(_to_float(c.strip()) is not None for c in columns):  # (a number is no column name)
        line = ",".join(columns)
        raise IndexFormatError(
            f"{path} has no header row: its first line {line if len(line) <= 80 else line[:80] + ' …'!r} holds values, "
            "not column names; add a first line naming the columns in their order, the file name 'fn' and the "
            f"coordinates 'lon' and 'lat' in degrees (e.g. fn,lon,lat; known layouts: {known})"
        )
    if not matches and Path(path).with_name("images.npy").is_file():  # (renaming its columns would damage it)
        raise IndexFormatError(
            f"{path} is the index of a Blue Marble corpus (images.npy beside it), which an S2-100K dataset is read "
            "as: set data.dataset: bluemarble (--data.dataset bluemarble), and leave the corpus's files as they are"
        )
    if not matches:
        raise IndexFormatError(
            f"{path} has columns {list(columns)}, which match no known index layout ({known}). Rename the "
            "columns so that the file name is in 'fn' and the coordinates in 'lon' and 'lat' (degrees)."
        )
    return max(matches, key=lambda name: len(INDEX_LAYOUTS[name]))


def name_problem(name: str) -> str | None:
    """Why the index file name ``name`` may not be opened (it would leave ``images/``), or ``None``."""
    if "\x00" in name:
        return "contains a NUL character"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        return "absolute path: file names are relative to images/"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' in the path leads outside images/"
    return None


def unsafe_rows(filenames: Sequence[str]) -> np.ndarray:
    """``(N,)`` bool: rows whose file name :func:`name_problem` refuses."""
    return np.array([name_problem(name) is not None for name in filenames], dtype=bool)


def repeated_rows(filenames: Sequence[str]) -> np.ndarray:
    """``(N,)`` int64: for each row, the earlier row listing the same file name, or -1 (the file's first row).
    A file listed twice was read, cached and trained on twice, as two images."""
    first: dict[str, int] = {}
    earlier = np.full(len(filenames), -1, dtype=np.int64)
    for row, name in enumerate(filenames):
        seen = first.setdefault(name, row)
        if seen != row:
            earlier[row] = seen
    return earlier


def _to_float(value: str) -> float | None:
    if "_" in value:  # float() reads "1_0" as 10.0, pandas.read_csv as text: not a number in a table
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _row_problem(row: list[str], fields: int, width: int, i_fn: int) -> str | None:
    """Why a CSV row of an index of ``fields`` columns is no index row (too few fields, no file name)."""
    if len(row) < width:
        more = sum(field.count("\n") for field in row)
        if more:  # (a quote never closed: the rest of the file, megabytes of it, was shown as this row)
            return (f"expected {fields} fields; a quoted field opened on this line runs on over {more} more line(s): "
                    "is its closing quote missing?")
        shown = repr(row)
        return f"expected {fields} fields, got {shown if len(shown) <= 200 else shown[:200] + ' …'}"
    if not row[i_fn].strip():
        return "empty file name in column 'fn'"
    return None


def read_index(path: str | Path, *, malformed: list[tuple[int, str]] | None = None) -> S2Index:
    """Read an S2-100K ``index.csv`` (either layout, see the module docstring).

    A line that is no row (too few fields, an empty file name) is refused with :class:`IndexFormatError`
    naming it, or, with a ``malformed`` list (verification, which reports it), appended to that list as
    ``(line number, what is wrong)`` and left out. Line numbers are those of the file (a row whose quoted field
    holds a newline spans lines; it is named by its first), kept per row in :attr:`S2Index.lines`.
    """
    path = Path(path)
    skipped = 0
    if not path.is_file():
        root = path.parent
        if root.is_file():  # (a root given as its index.csv: "no index file at …/index.csv/index.csv")
            holder = f" ({root.parent})" if root.name == path.name else ""  # (an image's folder is no root)
            raise IndexFormatError(f"{root} is a file; give the S2-100K root directory that holds index.csv and "
                                   f"images/{holder}, not a file")  # fmt: skip
        if not root.exists():
            raise IndexFormatError(f"no such directory: {root}; give the S2-100K root directory, which holds "
                                   "index.csv and images/ (get it with `satclip data download ROOT`)")  # fmt: skip
        if path.is_dir():
            raise IndexFormatError(f"{path} is a directory, not the index file an S2-100K root holds")
        if root.name == "images" and (root.parent / path.name).is_file():
            raise IndexFormatError(f"no index file at {path}: {root} is the images/ folder of the root {root.parent}; "
                                   "give that root")  # fmt: skip
        raise IndexFormatError(
            f"no index file at {path}; an S2-100K root holds index.csv and images/ "
            "(get it with `satclip data download ROOT`)"
        )
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise IndexFormatError(f"{path} is empty; expected a header row such as 'fn,lon,lat'")
            layout = detect_layout(header, path=path)
            names = [c.strip().lower() for c in header]
            repeated = sorted({name for name in ("fn", "lon", "lat") if names.count(name) > 1})
            if repeated:  # (the last one was read without a word: a lat column of zeros put every image on the equator)
                raise IndexFormatError(f"{path}: its header names column(s) {repeated} more than once; give every "
                                       "column its own name")  # fmt: skip
            position = {name: i for i, name in enumerate(names)}
            i_fn, i_lon, i_lat = position["fn"], position["lon"], position["lat"]
            width = max(i_fn, i_lon, i_lat) + 1
            filenames: list[str] = []
            coords: list[tuple[float, float]] = []
            lines: list[int] = []
            unparsed: dict[int, tuple[str | None, str | None]] = {}
            end = reader.line_num  # the last line read: a quoted field may hold newlines, so records are no lines
            for row in reader:
                line, end = end + 1, reader.line_num  # the line the record starts on, as an editor numbers it
                if not row or all(not cell.strip() for cell in row):
                    continue
                problem = _row_problem(row, len(header), width, i_fn)
                if problem is None:
                    lon, lat = _to_float(row[i_lon]), _to_float(row[i_lat])
                    if lon is None or lat is None:
                        unparsed[len(filenames)] = (
                            row[i_lon] if lon is None else None, row[i_lat] if lat is None else None
                        )
                    filenames.append(row[i_fn].strip())
                    coords.append((math.nan if lon is None else lon, math.nan if lat is None else lat))
                    lines.append(line)
                elif malformed is None:
                    raise IndexFormatError(f"{path}, line {line}: {problem}")
                else:
                    malformed.append((line, problem))
                    skipped += 1
    except UnicodeDecodeError as err:
        raise IndexFormatError(
            f"{path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} cannot be decoded); save it as UTF-8 CSV "
            "with a header row such as 'fn,lon,lat'"
        ) from None
    except csv.Error as err:  # e.g. a field over csv's size limit: no table
        raise IndexFormatError(f"{path} is not a CSV table ({err}); expected rows such as 'fn,lon,lat'") from None
    if not filenames and not skipped:
        raise IndexFormatError(f"{path} lists no images (a header only); an S2-100K index has a row per image")
    lonlat = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    columns = tuple(c.strip() for c in header)
    return S2Index(path, layout, columns, tuple(filenames), lonlat, np.asarray(lines, dtype=np.int64), unparsed)
