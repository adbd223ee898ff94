"""SIGTERM (timeout, systemd, docker stop, a scheduler's kill) ends a command as an error
would, through its clean-up: an output written under ``NAME.part`` is removed, a producer
stopped, a private ring removed. The default action killed the process where it stood and
left all of them behind. Exit status 143, as for the signal itself."""

from __future__ import annotations

import contextlib
import signal

import click


@contextlib.contextmanager
def sigterm_exits(what: str = "stopped; any unfinished output is removed"):
    def stop(signum, frame):
        click.echo(f"itchflow: terminated (signal {signum}): {what}", err=True)
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:   # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
