"""Capture benchmark: stats, read and books from a day's pcap of MoldUDP64 packets and from its
anonymised copy (every packet's sequence 0), beside the raw day, with itchcpp's books on the
raw bytes in the same run.

    .venv/bin/python benchmarks/capture.py [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench capture``, whose options are declared once,
in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "capture", *sys.argv[1:]], prog_name="itchflow"))
