"""``python -m itchflow``: the same as the ``itchflow`` command."""

from itchflow.cli import main

main(prog_name="itchflow")
