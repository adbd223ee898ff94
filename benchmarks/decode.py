"""Decode benchmark: framing, decode, scan/read/stats against itchfeed, itchcpp and MeatPy.

    .venv/bin/python benchmarks/decode.py [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench decode``, whose options are declared once,
in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "decode", *sys.argv[1:]], prog_name="itchflow"))
