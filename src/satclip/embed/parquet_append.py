"""One Parquet file written a row group at a time, each by a writer of its own, so that a job can stop after
any row group and continue later without rewriting what it wrote, and without a second copy of the data.

:func:`write_row_group` writes a table as one row group into the file from a given byte (a
``pyarrow.parquet.ParquetWriter`` writes it, its leading magic skipped after the first) and returns where
it ends and its footer, with the offsets moved to the row group's place in the whole file; :func:`finish`
writes the footer of all row groups. A writer numbers bytes from the start of its own output, so the footer's
offsets are moved by rewriting the few integer fields that hold them in the Thrift compact encoding of the
footer (:func:`_moved`); everything else is copied byte for byte. pyarrow then merges the row groups'
footers (``FileMetaData.append_row_groups``).

The file ``path`` is the caller's (in a work directory); each call syncs what it wrote to disk.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from ..errors import ResumeError
from ..safe_output import naming, write_bytes

MAGIC = b"PAR1"

# Thrift compact protocol type ids
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
#: field-id paths (list positions left out) from FileMetaData to the fields holding byte offsets in the file:
#: RowGroup.file_offset; ColumnChunk.file_offset, offset_index_offset, column_index_offset;
#: ColumnMetaData.data_page_offset, index_page_offset, dictionary_page_offset, bloom_filter_offset
_OFFSETS = {(4, 5), (4, 1, 2), (4, 1, 4), (4, 1, 6), (4, 1, 3, 9), (4, 1, 3, 10), (4, 1, 3, 11), (4, 1, 3, 14)}
#: RowGroup.ordinal
_ORDINAL = (4, 7)


class _AfterMagic(io.RawIOBase):
    """A file object for a ParquetWriter continuing a file at ``start``: everything from ``start`` on is
    replaced, and the writer's leading magic is not written again after the first row group."""

    def __init__(self, file, start: int):
        super().__init__()
        self.file = file
        file.seek(start)
        file.truncate()
        self.skip = MAGIC if start else b""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")  # no copy of the pages
        size = view.nbytes
        if self.skip:
            cut = min(len(self.skip), size)
            if bytes(view[:cut]) != self.skip[:cut]:
                raise RuntimeError("the Parquet writer did not start with the magic bytes")
            self.skip, view = self.skip[cut:], view[cut:]
        self.file.write(view)
        return size

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        self.file.flush()


def write_row_group(path: str | Path, start: int, table, writer_for) -> tuple[int, bytes]:
    """Write ``table`` as one row group into the Parquet file ``path`` from byte ``start`` (0: a new file;
    otherwise the end of the previous row group, as returned for it), replacing anything after ``start``.

    Args:
        writer_for: ``(file object, schema) → pyarrow.parquet.ParquetWriter``, the same for every row group.

    Returns:
        ``(end, footer)``: the byte after the row group, and its footer (Thrift) with offsets in the whole
        file, for :func:`finish`. The file is synced to disk.
    """
    mode = "r+b" if start else "w+b"
    with open(path, mode) as file:
        if start and (file.read(len(MAGIC)) != MAGIC or file.seek(0, os.SEEK_END) < start):
            raise ResumeError(
                f"{path} is not the Parquet file written so far (changed since?): rerun with --restart"
            )
        writer = writer_for(_AfterMagic(file, start), table.schema)
        try:
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
        finally:
            writer.close()
        file.flush()
        size = file.seek(0, os.SEEK_END)
        file.seek(size - 8)
        tail = file.read(8)
        if tail[4:] != MAGIC:
            raise RuntimeError(f"{path}: the Parquet writer left no footer")
        length = int.from_bytes(tail[:4], "little")
        end = size - 8 - length
        file.seek(end)
        footer = file.read(length)
        os.fsync(file.fileno())
    # the writer counted from the start of its own output, magic included
    return end, footer if not start else _moved(footer, start - len(MAGIC))


def finish(path: str | Path, end: int, footers: list[bytes]) -> None:
    """End the file ``path`` at byte ``end`` (the last row group's) with the footer of all row groups, from
    their ``footers`` in order (the first one's schema and key-value metadata), and sync it to disk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    merged = None
    for ordinal, footer in enumerate(footers):
        footer = _moved(footer, 0, ordinal)
        metadata = pq.read_metadata(pa.BufferReader(MAGIC + footer + len(footer).to_bytes(4, "little") + MAGIC))
        if merged is None:
            merged = metadata
        else:
            merged.append_row_groups(metadata)
    if merged is None:
        raise ValueError("a Parquet file needs at least one row group")
    sink = pa.BufferOutputStream()
    merged.write_metadata_file(sink)  # magic, footer, length, magic
    with open(path, "r+b") as file:
        file.seek(end)
        file.truncate()
        file.write(sink.getvalue().to_pybytes()[len(MAGIC) :])
        file.flush()
        os.fsync(file.fileno())


class RowGroupFile:
    """A Parquet file ``path`` grown one row group per :meth:`append`, in order, each row group's end and footer
    recorded in ``records`` (a directory, e.g. the job's work directory) so that appending can continue in
    another process after a crash: row group ``k`` is written from the recorded end of row group ``k − 1``.

    Args:
        writer_for: as :func:`write_row_group`.
    """

    def __init__(self, path: Path, records: Path, writer_for):
        self.path, self.records, self.writer_for = Path(path), Path(records), writer_for

    def record(self, index: int) -> Path:
        """Where row group ``index``'s end and footer are recorded."""
        return self.records / f"row-group-{index:06d}.footer"

    def _read(self, index: int) -> tuple[int, bytes]:
        """Row group ``index``'s recorded end and footer, checked: a damaged record (cut short, overwritten)
        failed later with "unexpected error (IndexError): index out of bounds" or a footer pyarrow rejects."""
        record = self.record(index)
        try:
            data = record.read_bytes()
        except FileNotFoundError:
            message = f"{self.records}: row group {index} of {self.path.name} is not recorded; rerun with --restart"
            raise ResumeError(message) from None
        except IsADirectoryError:
            data = b""
        end, footer = int.from_bytes(data[:8], "little"), data[8:]
        problem = _footer_problem(footer) if len(data) > 8 else f"{len(data)} bytes"
        if problem is None and end <= len(MAGIC):
            problem = f"row group ending at byte {end}"
        if problem is not None:
            raise ResumeError(
                f"{record}, the record of row group {index} of {self.path.name}, is damaged ({problem}); rerun "
                "with --restart"
            )
        return end, footer

    def end(self, index: int) -> int:
        """The recorded end of row group ``index`` (the byte after it)."""
        return self._read(index)[0]

    def append(self, index: int, table) -> None:
        """Write ``table`` as row group ``index`` (replacing it and anything after it if written before)."""
        start = self.end(index - 1) if index else 0
        with naming(self.path):
            end, footer = write_row_group(self.path, start, table, self.writer_for)
        write_bytes(self.record(index), end.to_bytes(8, "little") + footer)

    def finish(self, count: int) -> Path:
        """Write the footer of row groups ``0 … count − 1`` (the file then ends there); returns the path."""
        if not count:
            raise ValueError("nothing to write: no rows")
        records = [self._read(index) for index in range(count)]
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < records[-1][0]:  # (ending it at the recorded end would fill the gap with zeros)
            raise ResumeError(
                f"{self.path} holds {size:,} bytes, less than the {records[-1][0]:,} of the row groups recorded "
                "(cut short since?): rerun with --restart"
            )
        with naming(self.path):
            finish(self.path, records[-1][0], [footer for _, footer in records])
        return self.path


def _footer_problem(footer: bytes) -> str | None:
    """What is wrong with ``footer`` as the footer of one row group :func:`write_row_group` returns (None:
    nothing): its Thrift encoding ends early or late, or pyarrow does not read it as one row group's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        _moved(footer, 0)
        metadata = pq.read_metadata(pa.BufferReader(MAGIC + footer + len(footer).to_bytes(4, "little") + MAGIC))
    except IndexError:
        return "a Parquet footer cut short"
    except RecursionError:
        return "not a Parquet footer: structures nested without end"
    except (ValueError, OSError, pa.ArrowException) as err:
        return f"not a Parquet footer: {str(err)[:100]}"
    if metadata.num_row_groups != 1:
        return f"a footer of {metadata.num_row_groups} row groups, not one"
    return None


# ----------------------------------------------------------------------------- Thrift compact encoding
def _moved(footer: bytes, shift: int, ordinal: int | None = None) -> bytes:
    """``footer`` (a FileMetaData in Thrift's compact encoding) with ``shift`` added to every non-zero byte
    offset and, if given, every row group's ordinal set to ``ordinal``."""
    out = bytearray()
    end = _struct(memoryview(footer), 0, out, (), shift, ordinal)
    if end != len(footer):
        raise ValueError(f"the Parquet footer has {len(footer) - end} trailing byte(s)")
    return bytes(out)


def _varint(data, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _unzigzag(raw: int) -> int:
    return (raw >> 1) ^ -(raw & 1)


def _zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def _struct(data, pos: int, out: bytearray, path: tuple, shift: int, ordinal: int | None) -> int:
    field = 0
    while True:
        header = data[pos]
        if header == 0:  # stop
            out.append(0)
            return pos + 1
        kind, delta = header & 0x0F, header >> 4
        if delta:
            field, start = field + delta, pos + 1
        else:
            raw, start = _varint(data, pos + 1)
            field = _unzigzag(raw)
        out += data[pos:start]
        pos = _value(data, start, kind, out, (*path, field), shift, ordinal)


def _element(data, pos: int, kind: int, out: bytearray, path: tuple, shift: int, ordinal: int | None) -> int:
    """A list's or map's element: as a field's value, except that a boolean takes a byte."""
    if kind in (_TRUE, _FALSE):
        out.append(data[pos])
        return pos + 1
    return _value(data, pos, kind, out, path, shift, ordinal)


def _value(data, pos: int, kind: int, out: bytearray, path: tuple, shift: int, ordinal: int | None) -> int:
    if kind in (_TRUE, _FALSE):  # a field's boolean is in its type
        return pos
    if kind == _BYTE:
        out.append(data[pos])
        return pos + 1
    if kind in (_I16, _I32, _I64):
        raw, end = _varint(data, pos)
        value = _unzigzag(raw)
        if kind == _I64 and path in _OFFSETS and value and shift:
            _put_varint(out, _zigzag(value + shift))
        elif path == _ORDINAL and ordinal is not None:
            _put_varint(out, _zigzag(ordinal))
        else:
            out += data[pos:end]
        return end
    if kind == _DOUBLE:
        out += data[pos : pos + 8]
        return pos + 8
    if kind == _BINARY:
        size, start = _varint(data, pos)
        out += data[pos : start + size]
        return start + size
    if kind in (_LIST, _SET):
        header, start = data[pos], pos + 1
        size, element = header >> 4, header & 0x0F
        if size == 15:
            size, start = _varint(data, start)
        out += data[pos:start]
        for _ in range(size):
            start = _element(data, start, element, out, path, shift, ordinal)
        return start
    if kind == _MAP:
        size, start = _varint(data, pos)
        if size:
            types = data[start]
            start += 1
        out += data[pos:start]
        for _ in range(size):
            start = _element(data, start, types >> 4, out, path, shift, ordinal)
            start = _element(data, start, types & 0x0F, out, path, shift, ordinal)
        return start
    if kind == _STRUCT:
        return _struct(data, pos, out, path, shift, ordinal)
    raise ValueError(f"unknown Thrift compact type {kind} in the Parquet footer")
