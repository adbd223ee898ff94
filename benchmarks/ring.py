"""Cross-process shared-memory ring benchmark: throughput (one record per publish and batched),
one-way latency at a fixed offered rate against the cache-line ping-pong floor, and peers
(multiprocessing.Queue, faster-fifo, pyzmq ipc, our own Python API) on the same ITCH-sized
records in the same run. ``--stress N`` adds an N-record byte-verified run.

    .venv/bin/python benchmarks/ring.py [--json] [--stress 100000000] [--plot lat.png] [--realtime]

Same code as ``itchflow bench ring``.
"""

from __future__ import annotations

import argparse
import json

from itchflow.bench.ring import print_report, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000_000, help="records per throughput run")
    ap.add_argument("--batch", type=int, default=256, help="records per publish in the batched run")
    ap.add_argument("--capacity", type=int, default=1 << 22, help="ring bytes for the throughput runs")
    ap.add_argument("--repeats", type=int, default=3, help="throughput runs (best and median reported)")
    ap.add_argument("--rate", type=int, default=200_000, help="offered rate for the latency run")
    ap.add_argument("--latency-records", type=int, default=200_000)
    ap.add_argument("--peer-records", type=int, default=200_000)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--stress", type=int, default=0, help="also verify N records end to end")
    ap.add_argument("--pin", default="0,1", help="producer,consumer CPUs ('' = no pinning)")
    ap.add_argument("--plot", default=None, help="latency histogram PNG path")
    ap.add_argument("--realtime", action="store_true",
                    help="run the latency consumer SCHED_FIFO (root): ordinary tasks cannot preempt it")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    cpus = tuple(int(x) for x in a.pin.split(",")) if a.pin else None
    res = run(records=a.records, batch=a.batch, capacity=a.capacity, repeats=a.repeats, rate=a.rate, latency_records=a.latency_records,
              peers=not a.no_peers, peer_records=a.peer_records, stress=a.stress, cpus=cpus,
              plot=a.plot, progress=not a.json, realtime=a.realtime)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print_report(res)


if __name__ == "__main__":
    main()
