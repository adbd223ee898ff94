"""Archive benchmark (same code as `itchflow bench batch`): see itchflow/scale/bench.py.

    PYTHONPATH=src .venv/bin/python benchmarks/batch.py [--days 4] [--messages 5000000] [--json]
"""

from itchflow.scale.bench import main

if __name__ == "__main__":
    main()
