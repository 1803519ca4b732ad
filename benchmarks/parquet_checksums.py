"""What Parquet page checksums cost when ``satclip embed`` writes a chunk: µs per point to write one 65,536-row
chunk (``lon``, ``lat`` and 256-d float32 ``bluemarble-l10`` embeddings as one list column) through
``satclip.embed.sinks.parquet_writer`` (page checksums on), against the same writer without checksums, measured
in the same run, interleaved.

    python benchmarks/parquet_checksums.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _args import needs, positive_int
from hardware import print_hardware

import satclip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=15, help="best of N (default 15)")
    args = parser.parse_args()
    needs(("pyarrow", "embed"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    from satclip.embed import sinks

    rng = np.random.default_rng(0)
    lonlat = np.c_[rng.uniform(-180, 180, 65_536), rng.uniform(-60, 80, 65_536)]
    embeddings = satclip.load("bluemarble-l10").encode(lonlat).numpy()
    table = sinks.with_embedding(
        pa.table({"lon": lonlat[:, 0], "lat": lonlat[:, 1]}), embeddings, np.ones(len(lonlat), bool), np.float32
    )

    def without_checksums(path, schema, embedding, dictionary=False):
        others = [name for name in schema.names if name not in embedding]
        return pq.ParquetWriter(str(path), schema, use_dictionary=others, write_statistics=others)

    writers = {"without page checksums": without_checksums, "satclip (page checksums)": sinks.parquet_writer}
    best = dict.fromkeys(writers, float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunk.parquet"
        for _ in range(args.repeats):
            for name, make in writers.items():
                start = time.perf_counter()
                writer = make(path, table.schema, ["embedding"])
                writer.write_table(table, row_group_size=table.num_rows)
                writer.close()
                best[name] = min(best[name], time.perf_counter() - start)
    print_hardware("")
    for name, seconds in best.items():
        print(f"{name}: {seconds * 1e6 / table.num_rows:.2f} µs per point")
    ratio = best["satclip (page checksums)"] / best["without page checksums"]
    print(f"page checksums / none: {ratio:.2f}×")


if __name__ == "__main__":
    main()
