"""Shared-memory ring: throughput and one-way latency against the cache-line floor and peers.

    .venv/bin/python benchmarks/ring.py [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench ring``, whose options are declared once,
in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "ring", *sys.argv[1:]], prog_name="itchflow"))
