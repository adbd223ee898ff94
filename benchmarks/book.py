"""Book benchmark (same code as `itchflow bench book`): see itchflow/bench/book.py.

    PYTHONPATH=src .venv/bin/python benchmarks/book.py [--messages 50000000] [--json]
"""

from itchflow.bench.book import main

if __name__ == "__main__":
    main()
