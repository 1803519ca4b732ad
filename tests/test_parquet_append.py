"""One Parquet file written a row group at a time by separate writers (satclip.embed.parquet_append): the
result reads back as the tables written, with the offsets a single writer gives them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from satclip.embed import parquet_append, sinks
from satclip.errors import ResumeError


def tables(count: int, rows: int, layout: str, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        base = pa.table({"id": np.arange(k * rows, (k + 1) * rows), "lon": rng.uniform(-180, 180, rows)})
        values = rng.standard_normal((rows, 24)).astype(np.float32)
        valid = rng.random(rows) > 0.1
        out.append(sinks.with_embedding(base, values, valid, np.float32, layout))
    return out


def writer_for(layout: str, dictionary: bool = False):
    embedding = sinks.output_columns(layout, "embedding", 24)
    return lambda file, schema: sinks.parquet_writer(file, schema, embedding, dictionary)


def offsets(path) -> list[tuple]:
    metadata = pq.ParquetFile(path).metadata
    return [
        (column.data_page_offset, column.dictionary_page_offset, column.total_compressed_size)
        for group in range(metadata.num_row_groups)
        for column in (metadata.row_group(group).column(i) for i in range(metadata.num_columns))
    ]


def append_all(path, parts: list, writer) -> None:
    end, footers = 0, []
    for table in parts:
        end, footer = parquet_append.write_row_group(path, end, table, writer)
        footers.append(footer)
    parquet_append.finish(path, end, footers)


@pytest.mark.parametrize("layout", ["list", "columns"])
@pytest.mark.parametrize("dictionary", [False, True])
def test_row_groups_appended_equal_one_writer(tmp_path, layout, dictionary):
    parts = tables(4, 3000, layout)
    appended = tmp_path / "appended.parquet"
    append_all(appended, parts, writer_for(layout, dictionary))
    # the reference: one pyarrow writer, a row group per table
    single = tmp_path / "single.parquet"
    with writer_for(layout, dictionary)(str(single), parts[0].schema) as writer:
        for table in parts:
            writer.write_table(table, row_group_size=table.num_rows)
    assert pq.read_table(appended).equals(pa.concat_tables(parts))
    assert pq.ParquetFile(appended).metadata.num_row_groups == 4
    assert offsets(appended) == offsets(single)
    # everything before the footer is the same bytes
    data = single.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little")
    assert appended.read_bytes()[: len(data) - 8 - footer] == data[: len(data) - 8 - footer]


def test_a_row_group_rewritten_after_a_crash_gives_the_same_file(tmp_path):
    parts = tables(3, 2000, "list")
    writer = writer_for("list")
    whole = tmp_path / "whole.parquet"
    append_all(whole, parts, writer)
    crashed = tmp_path / "crashed.parquet"
    end0, footer0 = parquet_append.write_row_group(crashed, 0, parts[0], writer)
    parquet_append.write_row_group(crashed, end0, parts[1], writer)
    with open(crashed, "ab") as file:  # a third row group cut short
        file.write(b"\0" * 5000)
    # resume after the first row group: the second and third are written again from its end
    end1, footer1 = parquet_append.write_row_group(crashed, end0, parts[1], writer)
    end2, footer2 = parquet_append.write_row_group(crashed, end1, parts[2], writer)
    parquet_append.finish(crashed, end2, [footer0, footer1, footer2])
    assert crashed.read_bytes() == whole.read_bytes()


def test_offsets_that_need_longer_varints(tmp_path):
    """Moving an offset past a varint boundary (2^13, 2^20 …) lengthens its encoding; the footer stays
    valid."""
    small = tables(1, 50, "list", seed=1)[0]
    big = tables(1, 40_000, "list", seed=2)[0]  # ~4 MB: the next row group starts beyond 2^20 zigzagged
    path = tmp_path / "f.parquet"
    append_all(path, [big, small, small], writer_for("list"))
    assert pq.read_table(path).equals(pa.concat_tables([big, small, small]))
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(i).num_rows for i in range(3)] == [40_000, 50, 50]


def test_a_footer_with_trailing_bytes_is_refused():
    with pytest.raises(ValueError, match="trailing"):
        parquet_append._moved(b"\x00\x00", 10)


def test_continuing_a_file_that_is_not_the_one_written_is_refused(tmp_path):
    parts = tables(2, 500, "list")
    path = tmp_path / "f.parquet"
    end, _ = parquet_append.write_row_group(path, 0, parts[0], writer_for("list"))
    path.write_bytes(path.read_bytes()[: end // 2])  # cut short behind our back
    with pytest.raises(ResumeError, match="not the Parquet file written so far"):
        parquet_append.write_row_group(path, end, parts[1], writer_for("list"))
    path.write_bytes(b"\0" * (2 * end))  # replaced
    with pytest.raises(ResumeError, match="not the Parquet file written so far"):
        parquet_append.write_row_group(path, end, parts[1], writer_for("list"))
