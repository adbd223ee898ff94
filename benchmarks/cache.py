"""Cache benchmark: what one random load costs on this machine, by working set and page span.

    .venv/bin/python benchmarks/cache.py [OPTIONS]     (--help lists them)

A thin wrapper: the same command as ``itchflow bench cache``, whose options are declared once,
in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "cache", *sys.argv[1:]], prog_name="itchflow"))
