"""Pipeline benchmark: one day, one book engine, different first stages and hand-offs
(in-process, our ring, multiprocessing.Queue, faster-fifo; file, tail, SoupBinTCP, MoldUDP64),
with ratios taken in the same run. Same code as ``itchflow bench pipeline``.

    .venv/bin/python benchmarks/pipeline.py [--messages 10000000] [--json]
"""

from itchflow.bench.pipeline_cli import main

if __name__ == "__main__":
    main()
