"""The book engine against an earlier revision of itself, taking turns in one process.

    .venv/bin/python benchmarks/revision.py --rev 40a0d70 [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench revision``, whose options are declared
once, in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "revision", *sys.argv[1:]], prog_name="itchflow"))
