"""The processes a comparison forks (sender, receivers, the tail writer), each with a pipe to
the parent, started so that none outlives the parent.

If the parent is SIGKILLed no clean-up of its own runs. A child blocked reading its pipe
would wait for ever: every child forked after another holds a copy of the parent's end of
that other's pipe, so no read ever sees EOF; and the children keep the run's namespaces and
temporary day alive. So each child asks the kernel to kill it when the parent dies (the
pipeline producer's ``die_with_parent``) and closes, first thing, every parent end it was
forked with: its own pipe's and its siblings'.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import weakref

from itchflow.pipeline.producer import die_with_parent

CTX = mp.get_context("fork")

# the parent's ends of the pipes of the children started so far (a child closes its copies)
_parent_ends: weakref.WeakSet = weakref.WeakSet()


def start_child(day, target, args: tuple, name: str, daemon: bool = True):
    """Fork a process running target(*args, conn), tracked by ``day`` (ended by its clean-up);
    returns (process, the parent's end of its pipe). The child dies with this process."""
    parent_end, child_end = CTX.Pipe()
    _parent_ends.add(parent_end)
    proc = CTX.Process(target=_child_main, args=(os.getpid(), target, args, child_end), name=name, daemon=daemon)
    day.track(proc)
    try:
        proc.start()
    finally:
        child_end.close()
    return proc, parent_end


def _child_main(parent: int, target, args: tuple, conn) -> None:
    die_with_parent(parent)
    for end in list(_parent_ends):
        if not end.closed:
            end.close()
    target(*args, conn)


def how_it_ended(proc, wait: float = 1.0) -> str:
    """A child's end in words for a row's reason ("compare-sender (pid 123) was killed by
    SIGKILL"): a broken pipe alone (EOFError, BrokenPipeError) named neither the process nor
    the signal. Waits up to ``wait`` s for a child that is on its way out."""
    import signal

    proc.join(wait)
    code = proc.exitcode
    who = f"{proc.name} (pid {proc.pid})"
    if code is None:
        return f"{who} is still running but closed its pipe"
    if code < 0:
        try:
            return f"{who} was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"{who} was killed by signal {-code}"
    return f"{who} exited with status {code}"
