"""Receive path figures: recv from Python, recv compiled, recvmmsg compiled (loopback UDP).

    PYTHONPATH=src .venv/bin/python benchmarks/net.py [--packets 20000] [--rounds 5] [--size 128]

The same code runs as ``itchflow bench net``.
"""

from __future__ import annotations

import argparse

from itchflow.bench.net import run, run_receiver

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packets", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--size", type=int, default=128, help="datagram size in bytes (>= 20)")
    p.add_argument("--batch", type=int, default=64, help="recvmmsg batch")
    p.add_argument("--timestamps", action="store_true", help="enable SO_TIMESTAMPNS on the socket")
    p.add_argument("--veth", action="store_true", help="also over a veth pair in namespaces (root): "
                   "TPACKET_V3 and AF_XDP, CPU and counted system calls per packet")
    a = p.parse_args()
    run(a.packets, a.rounds, a.size, a.batch, a.timestamps)
    if a.veth:
        from itchflow.bench.net import run_veth

        run_veth(min(a.packets, 1 << 16), a.rounds, a.size, a.batch)
        from itchflow.bench.net import run_listen_veth

        run_listen_veth(200_000, 200_000)
    run_receiver(a.packets, batch=a.batch)
