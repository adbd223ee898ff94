"""The ``itchflow`` command. Each area registers its commands from its own module."""

from __future__ import annotations

import importlib

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="itchflow")
def main() -> None:
    """itchflow: Nasdaq TotalView-ITCH 5.0 feed handler."""


@main.group()
def bench() -> None:
    """Benchmarks (the same code as benchmarks/*.py)."""


# Command modules, one per area; each adds its commands to `main` or `bench` on import.
_COMMAND_MODULES = ("itchflow.cli.decode", "itchflow.cli.gen", "itchflow.cli.book", "itchflow.cli.ring",
                    "itchflow.cli.run",
                    "itchflow.cli.net", "itchflow.cli.tail",
                    "itchflow.cli.research", "itchflow.cli.batch", "itchflow.cli.compare")

for _name in _COMMAND_MODULES:
    importlib.import_module(_name)
