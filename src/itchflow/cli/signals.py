"""SIGTERM and Ctrl-C end a command through its clean-up, and are not lost on the way.

SIGTERM (timeout, systemd, docker stop, a scheduler's kill) ends a command as an error
would: an output written under ``NAME.part`` is removed, a producer stopped, a private ring
removed. The default action killed the process where it stood and left all of them behind.
Exit status 143, as for the signal itself.

A signal's Python handler runs wherever the main thread is. When that is a callback Python
cannot raise out of (an LLVM ctypes callback while Numba compiles or loads a kernel, which a
first run does for about a minute; a finalizer of a file mapping), Python prints "Exception
ignored ..." with a traceback and carries on: a Ctrl-C was then reported as Numba's "no
compiled object yet" (exit 1), and a SIGTERM let the command run to its end and exit 0
(probe 37). Here the swallowed exception is kept quiet and the signal sent again, to land
at the next point that can raise; an error that follows it is its doing (``exit_if_interrupted``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import click

# the signal (SIGINT, SIGTERM) that is ending this command, once one has; the unraisable hook
# in place before ours
_SEEN = {"signal": None, "hook": sys.__unraisablehook__, "raised": False}


@contextlib.contextmanager
def sigterm_exits(what: str = "stopped; any unfinished output is removed"):
    said = []

    def stop(signum, frame):
        if _SEEN["raised"]:
            # the command is already ending through its clean-up: a second SIGTERM (``timeout``
            # sends one to the child and one to its group) cut it short, the server's counters
            # unprinted 5 of 8 times (probe 54). A swallowed raise clears the mark and is resent.
            return
        _SEEN["signal"] = signum
        if not said:   # (once: a swallowed one is sent again)
            said.append(True)
            click.echo(f"itchflow: terminated (signal {signum}): {what}", err=True)
        _SEEN["raised"] = True
        raise SystemExit(128 + signum)

    with _handling(signal.SIGTERM, stop):
        yield


@contextlib.contextmanager
def ctrl_c_noticed():
    def noticed(signum, frame):
        _SEEN["signal"] = signum
        raise KeyboardInterrupt

    with _handling(signal.SIGINT, noticed):
        yield


@contextlib.contextmanager
def _handling(signum: int, handler):
    try:
        previous = signal.signal(signum, handler)
    except ValueError:   # not the main thread: leave signals alone
        yield
        return
    hook = sys.unraisablehook
    if hook is not _swallowed:   # (the second handler nests inside the first)
        _SEEN["hook"] = hook
    sys.unraisablehook = _swallowed
    _SEEN["signal"] = None   # a command's own: one interrupted before in this process is not (probe 40)
    _SEEN["raised"] = False
    try:
        yield
    finally:
        signal.signal(signum, previous)
        sys.unraisablehook = hook
        _SEEN["signal"] = None
        _SEEN["raised"] = False


RESEND_SECONDS = 0.02   # sent again from a timer thread: from the hook it landed in the hook, swallowed again


def _swallowed(info) -> None:
    """Python's hook for an exception it could not raise: ours, from a signal handler, is sent
    again a moment later (it lands at the next point that can raise; swallowed again, it is
    sent again), silently; any other goes to the hook in place before ours."""
    mine = _SEEN["signal"] is not None and isinstance(info.exc_value, (KeyboardInterrupt, SystemExit))
    if not mine:
        _SEEN["hook"](info)
        return
    import threading

    _SEEN["raised"] = False   # it did not land: the resend is raised again
    timer = threading.Timer(RESEND_SECONDS, os.kill, (os.getpid(), _SEEN["signal"]))
    timer.daemon = True
    timer.start()


def exit_if_interrupted() -> None:
    """An error after a Ctrl-C or SIGTERM is the signal's doing: said as one, exit 130 or 143."""
    signum = _SEEN["signal"]
    if signum == signal.SIGINT:
        click.echo("itchflow: interrupted (Ctrl-C): unfinished output was removed", err=True)
        sys.exit(130)
    if signum == signal.SIGTERM:
        sys.exit(128 + signum)   # (said by the handler)
