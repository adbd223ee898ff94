"""Argument parsing shared by ``benchmarks/pipeline.py`` and ``itchflow bench pipeline``."""

from __future__ import annotations

import argparse
import json
import sys


def parser() -> argparse.ArgumentParser:
    from itchflow.bench import pipeline as bench
    p = argparse.ArgumentParser(prog="itchflow bench pipeline", description=bench.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=10_000_000, help="size of the generated day")
    p.add_argument("--stocks", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-bytes", type=int, default=64 << 10)
    p.add_argument("--small-batch", type=int, default=1 << 10, help="second batch size for the hand-off-only runs")
    p.add_argument("--net-messages", type=int, default=1_000_000, help="prefix of the day sent over loopback")
    p.add_argument("--mold-pps", type=float, default=20_000, help="MoldUDP64 packets per second offered")
    p.add_argument("--repeat", type=int, default=2, help="best of this many runs (file and hand-off runs)")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--pin", default="0,1", help="producer,consumer CPUs ('' = no pinning)")
    p.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    from itchflow.bench import pipeline as bench
    from itchflow.hw.affinity import parse_cpus

    a = parser().parse_args(argv)
    cpus = parse_cpus(a.pin)
    echo = (lambda s: print(s, file=sys.stderr)) if a.json else print
    r = bench.run(a.messages, a.stocks, a.seed, a.batch_bytes, a.small_batch, a.net_messages, a.mold_pps,
                  a.repeat, not a.no_peers, cpus, echo=echo)
    if a.json:
        print(json.dumps(r))
    else:
        bench.print_report(r)
