"""The ``itchflow`` command. Each area registers its commands from its own module."""

from __future__ import annotations

import atexit
import gc
import importlib

import click

from itchflow.cli.params import BenchGroup


class _Commands(click.Group):
    """Ctrl-C in a command that does not report it itself (trades, bbo, snapshots, decode, gen)
    ends as the others do: a sentence and status 130, not click's bare "Aborted!" and 1; and
    memory that cannot be had (numpy's, pyarrow's, a ulimit) is an error line, not a
    traceback. Their outputs are gone by then (written under NAME.part, removed on the way
    out)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("itchflow: interrupted (Ctrl-C): unfinished output was removed", err=True)
            ctx.exit(130)
        except MemoryError as e:   # numpy's _ArrayMemoryError and pyarrow's ArrowMemoryError too
            click.echo(f"itchflow: error: out of memory ({e or 'no details'}): unfinished output was removed; "
                       "a smaller piece (fewer symbols, a shorter span) or more memory", err=True)
            ctx.exit(1)
        except ImportError as e:   # a library that cannot be mapped in (ulimit -v): a traceback (probe 37)
            from itchflow.cli.signals import exit_if_interrupted

            exit_if_interrupted()
            memory = "map segment" in str(e) or "allocate memory" in str(e)
            click.echo(f"itchflow: error: cannot load a library: {e}"
                       + ("; out of address space or memory (ulimit -v, or more memory)" if memory else ""), err=True)
            ctx.exit(1)
        except Exception:   # after a Ctrl-C that Numba's compiler swallowed (cli.signals): its doing
            from itchflow.cli.signals import exit_if_interrupted

            exit_if_interrupted()
            raise


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="itchflow")
def main() -> None:
    """itchflow: Nasdaq TotalView-ITCH 5.0 feed handler."""
    # A command is one process, and the interpreter's last act is a full garbage collection
    # over every object left, ~100 k of them once Numba and the cached kernels are loaded:
    # 0.25 s of a 0.75 s `itchflow stats` (measured). Freezing them at exit leaves that pass
    # nothing to walk; the memory goes back to the system with the process either way, and
    # the other exit handlers (the rings' clean-up) run as before. Registered once, however
    # often the group is invoked in one process.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    from itchflow.cli.signals import ctrl_c_noticed, sigterm_exits

    click.get_current_context().with_resource(sigterm_exits())   # for the command, then as it was
    click.get_current_context().with_resource(ctrl_c_noticed())


@main.group(cls=BenchGroup)
def bench() -> None:
    """Benchmarks (the same code as benchmarks/*.py)."""


# Command modules, one per area; each adds its commands to `main` or `bench` on import.
_COMMAND_MODULES = ("itchflow.cli.decode", "itchflow.cli.gen", "itchflow.cli.book", "itchflow.cli.ring",
                    "itchflow.cli.run",
                    "itchflow.cli.net", "itchflow.cli.tail",
                    "itchflow.cli.research", "itchflow.cli.batch", "itchflow.cli.compare")

for _name in _COMMAND_MODULES:
    importlib.import_module(_name)
