"""Archive benchmark (same code as ``itchflow bench batch``): one process against a
LocalCluster, cost per stage, a projected year.

    PYTHONPATH=src .venv/bin/python benchmarks/batch.py [--days 4] [--messages 5000000] [--json]
"""

from __future__ import annotations

import shutil
import tempfile
import time

from itchflow.bench.batch import (FULL_DAY_GZ_BYTES, FULL_DAY_MESSAGES, WORKER_COUNTS, YEAR_DAYS, ensure_archive,
                                  project_year)
from itchflow.bench.common import machine
from itchflow.scale import jobs
from itchflow.scale.batch import batch, local_cluster
from itchflow.scale.tasks import warm_kernels


def _single(paths, job: str, folder: str) -> dict:
    """Every day in this process, one after another, through the same single-file machinery."""
    _, opts = jobs.job_options(job, None, {})
    warm_kernels()
    t0 = time.perf_counter()
    messages = compute = write = 0.0
    for i, p in enumerate(paths):
        s = jobs.run_job(job, str(p), f"{folder}/single-{i}.parquet", None, opts)
        messages += s["messages"]
        compute += s["compute_seconds"]
        write += s["write_seconds"]
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "messages": int(messages), "msgs_per_s": messages / seconds,
            "compute_seconds": compute, "write_seconds": write}


def run(days: int = 4, messages: int = 5_000_000, stocks: int = 2000, job: str = "bbo", workers: int = 2,
        gz: bool = False, bandwidth_gbs: float = 1.0) -> dict:
    paths = ensure_archive(days, messages, stocks, gz)
    folder = tempfile.mkdtemp(prefix="itchflow-bench-batch-")
    try:
        single = _single(paths, job, folder)
        t0 = time.perf_counter()
        from distributed import Client

        cluster = local_cluster(workers)
        client = Client(cluster)
        startup = time.perf_counter() - t0
        try:
            # every worker runs a shard once first (imports, first-touch costs)
            batch([str(p) for p in paths[:1]], job, f"{folder}/warm", client=client, shards=workers)
            t0 = time.perf_counter()
            r = batch([str(p) for p in paths], job, f"{folder}/cluster", client=client)
            wall = time.perf_counter() - t0
            split_shards = max(2, workers)
            s = batch([str(p) for p in paths[:1]], job, f"{folder}/split", client=client, shards=split_shards)
        finally:
            client.close()
            cluster.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    day = s["days"][0]
    n = day["messages"]
    shard_msgs = day["shard_messages"]
    imbalance = max(shard_msgs) / (sum(shard_msgs) / len(shard_msgs))
    cost = {"day": single["seconds"] / single["messages"],
            "split": day["seconds"]["split"] / n,
            "shard": (day["seconds"]["compute"] + day["seconds"]["write"]) / n}
    cost_ns = {"whole day (1 process)": cost["day"] * 1e9,
               "  of which books": single["compute_seconds"] / single["messages"] * 1e9,
               "  of which write": single["write_seconds"] / single["messages"] * 1e9,
               "split": cost["split"] * 1e9,
               "shard books": day["seconds"]["compute"] / n * 1e9,
               "shard write": day["seconds"]["write"] / n * 1e9}
    projection = [project_year(cost, m, bandwidth_gbs, imbalance=imbalance) for m in WORKER_COUNTS]
    return {"days": days, "messages": messages, "stocks": stocks, "job": job, "gz": gz, "workers": workers,
            "machine": machine(), "single": single,
            "cluster": {"seconds": wall, "messages": r["messages"], "msgs_per_s": r["messages"] / wall,
                        "startup_seconds": startup, "shards": r["days"][0]["shards"]},
            "speedup": single["seconds"] / wall, "split_shards": split_shards, "imbalance": imbalance,
            "cost_ns": cost_ns, "projection": projection,
            "assumptions": {"days": YEAR_DAYS, "day_messages": FULL_DAY_MESSAGES,
                            "day_read_bytes": FULL_DAY_GZ_BYTES, "bandwidth_gbs": bandwidth_gbs}}
