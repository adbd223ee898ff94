"""Receive paths: recv from Python, recv and recvmmsg compiled, TPACKET_V3 and AF_XDP (--veth).

    .venv/bin/python benchmarks/net.py [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench net``, whose options are declared once,
in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "net", *sys.argv[1:]], prog_name="itchflow"))
