"""The archive benchmark's plumbing that needs no cluster: the generated archive, the year
projection from measured per-stage costs, and the report. The measuring itself
(``itchflow.scale.bench``) runs the batch, which sits above this layer.
"""

from __future__ import annotations

import math
from pathlib import Path

from itchflow.bench import day_cache
from itchflow.bench.common import BENCH_DIR, DAY_FORMAT

YEAR_DAYS = 250
FULL_DAY_MESSAGES = 370_000_000       # a full Nasdaq day (01302019: 368 M)
FULL_DAY_GZ_BYTES = 5_000_000_000     # about 5 GB gzipped
WORKER_COUNTS = (1, 2, 8, 32, 100, 250, 500, 1000)


def ensure_archive(days: int, messages: int, stocks: int, gz: bool) -> list[Path]:
    """Generated days (seeds 1..days), written once and reused: 2019-01-DD.itch[.gz]."""
    from itchflow.sim.generator import write_day

    folder = BENCH_DIR / f"archive-{messages}-{stocks}{'-gz' if gz else ''}-v{DAY_FORMAT}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(days):
        p = folder / f"2019-01-{i + 1:02d}.itch{'.gz' if gz else ''}"
        # reused only when whole (a day cut short by a full disk or a kill was reused as it was)
        day_cache.ensure(p, lambda q, seed=i + 1: write_day(q, messages, seed, stocks=stocks, gz=gz), messages)
        paths.append(p)
    return paths


def project_year(cost: dict, workers: int, bandwidth_gbs: float, days: int = YEAR_DAYS,
                 day_messages: int = FULL_DAY_MESSAGES, day_read_bytes: int = FULL_DAY_GZ_BYTES,
                 imbalance: float = 1.0) -> dict:
    """Seconds for `days` full days on `workers` single-core workers.

    cost: seconds per message per stage, measured: ``day`` (a whole day in one task: read,
    books, write), ``split`` (route into shard files), ``shard`` (books + write on a shard).
    With at least as many days as workers, days run whole, ceil(days / workers) rounds;
    with more workers than days, each day splits into workers // days shards and takes the
    split plus its largest shard (``imbalance`` = largest shard / mean shard). Storage
    reads every day's compressed bytes once at ``bandwidth_gbs``; the answer is the larger.
    """
    if workers <= days:
        compute = math.ceil(days / workers) * day_messages * cost["day"]
        shards = 1
    else:
        shards = workers // days
        compute = day_messages * (cost["split"] + cost["shard"] * imbalance / shards)
    io = days * day_read_bytes / (bandwidth_gbs * 1e9)
    return {"workers": workers, "shards_per_day": shards, "compute_s": compute, "io_s": io,
            "seconds": max(compute, io), "bound": "storage" if io > compute else "compute"}


def _hours(s: float) -> str:
    return f"{s / 3600:,.2f} h" if s >= 3600 else f"{s / 60:,.1f} min"


def report(r: dict) -> str:
    one, many = r["single"], r["cluster"]
    lines = [
        f"archive: {r['days']} generated days x {r['messages']:,} messages ({r['stocks']} stocks, "
        f"{'gz' if r['gz'] else 'raw'}), job {r['job']}; machine: {r['machine']['cores']} cores, {r['machine']['cpu']}",
        f"one process     {one['seconds']:8.2f} s  {one['msgs_per_s'] / 1e6:6.2f} M msg/s",
        f"LocalCluster({r['workers']})  {many['seconds']:8.2f} s  {many['msgs_per_s'] / 1e6:6.2f} M msg/s  "
        f"speed-up {r['speedup']:.2f}x  (cluster start {many['startup_seconds']:.1f} s, not counted; "
        f"{many['shards']} shard(s) per day)",
        "cost per stage (ns per message, one core):",
    ]
    for name, v in r["cost_ns"].items():
        lines.append(f"  {name:<22} {v:8.1f}")
    lines.append(f"  largest shard / mean   {r['imbalance']:8.2f}   (split of one day into {r['split_shards']} shards)")
    a = r["assumptions"]
    lines.append(f"projection: a year of {a['days']} days x {a['day_messages'] / 1e6:.0f} M messages "
                 f"({a['day_read_bytes'] / 1e9:.0f} GB read per day, storage {a['bandwidth_gbs']} GB/s aggregate, "
                 "each worker one core at the rates above" + ("" if r["gz"] else
                 "; the rates were taken on raw days, so the gzip days this reads are decompressed at no cost "
                 "here: take them with --gz for the compute a gzip archive costs") + "):")
    for p in r["projection"]:
        lines.append(f"  M={p['workers']:<5} {p['shards_per_day']:>3} shard(s)/day  {_hours(p['seconds']):>10}  "
                     f"({p['bound']}-bound; compute {_hours(p['compute_s'])}, storage {_hours(p['io_s'])})")
    return "\n".join(lines)
