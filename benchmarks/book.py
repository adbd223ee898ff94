"""Book benchmark: full L3 books of every stock on generated days, against itchcpp's BookManager and MeatPy.

    .venv/bin/python benchmarks/book.py [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench book``, whose options are declared once,
in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "book", *sys.argv[1:]], prog_name="itchflow"))
