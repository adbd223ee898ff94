"""Decode benchmark (same code as `itchflow bench decode`): see itchflow/bench/decode.py."""

from itchflow.bench.decode import main

if __name__ == "__main__":
    main()
