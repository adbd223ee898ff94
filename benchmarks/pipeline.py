"""Pipeline benchmark: file, tail, SoupBinTCP and MoldUDP64 through ring -> books, against in-process and Python queues.

    .venv/bin/python benchmarks/pipeline.py [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench pipeline``, whose options are declared once,
in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "pipeline", *sys.argv[1:]], prog_name="itchflow"))
