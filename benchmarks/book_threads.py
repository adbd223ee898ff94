"""Books on several threads: Books(threads=N) against one thread on the same generated day.

    .venv/bin/python benchmarks/book_threads.py [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench book-threads``, whose options are declared
once, in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "book-threads", *sys.argv[1:]], prog_name="itchflow"))
