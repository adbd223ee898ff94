"""Archive benchmark: generated days by one process and by a Dask LocalCluster, and a projected year.

    .venv/bin/python benchmarks/batch.py [OPTIONS]      (--help lists them)

A thin wrapper: the same command as ``itchflow bench batch``, whose options are declared once,
in the click command (src/itchflow/cli/).
"""

import sys

from itchflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "batch", *sys.argv[1:]], prog_name="itchflow"))
