"""Instructions and branch mispredictions per book message (valgrind), itchflow against itchcpp.

    .venv/bin/python benchmarks/instructions.py [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench instructions``.
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "instructions", *sys.argv[1:]], prog_name="itchflow"))
