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


# Ctrl-C while Numba loads or compiles a kernel (the first command after an install compiles
# for about a minute) lands in LLVM's ctypes callback: Python prints "Exception ignored ...
# KeyboardInterrupt" with a traceback, swallows it, and Numba then fails with "no compiled
# object yet", which was reported as an error of the command (exit 1). A Ctrl-C noticed here
# makes any error that follows an interruption (exit 130) and the swallowed one silent.
_CTRL_C = {"seen": False}


@contextlib.contextmanager
def ctrl_c_noticed():
    import sys

    def noticed(signum, frame):
        _CTRL_C["seen"] = True
        raise KeyboardInterrupt

    def unraisable(info, previous=sys.unraisablehook):
        if isinstance(info.exc_value, KeyboardInterrupt):
            _CTRL_C["seen"] = True   # said once, by the error that follows (exit_if_interrupted)
        else:
            previous(info)

    try:
        previous = signal.signal(signal.SIGINT, noticed)
    except ValueError:   # not the main thread: leave signals alone
        yield
        return
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook


def exit_if_interrupted() -> None:
    """An error after a Ctrl-C is the interruption's doing: said as one, exit 130."""
    if _CTRL_C["seen"]:
        import sys

        click.echo("itchflow: interrupted (Ctrl-C): unfinished output was removed", err=True)
        sys.exit(130)
