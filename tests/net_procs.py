"""Helpers for tests that run itchflow network commands as subprocesses: start a command,
wait for the line that says it is ready (not a sleep), interrupt it like Ctrl-C; and a
one-connection TCP peer of a test's own making."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
CLI = "import sys; from itchflow.cli import main; import itchflow.cli.net; sys.exit(main())"


def start(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.Popen([sys.executable, "-c", CLI, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 60.0) -> re.Match:
    """Read the process's stderr until a line matches ``pattern`` (regex); fail at the
    deadline or if the process exits first. Returns the match."""
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
            for line in seen.decode(errors="replace").splitlines():
                m = re.search(pattern, line)
                if m:
                    return m
        elif proc.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s (exit {proc.poll()}): {seen[-2000:]!r}")


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out.decode(errors="replace"), err.decode(errors="replace")


def kill_if_running(proc: subprocess.Popen) -> None:
    """A test's clean-up: a command still running (the test failed before it ended) is killed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def one_connection_server(talk) -> tuple[tuple[str, int], threading.Thread]:
    """A TCP server on 127.0.0.1 for one connection: it reads the client's first bytes (its
    login) and hands the connection to ``talk(conn)``; then closes it and the listening socket.
    Returns (its address, its thread)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    address = ls.getsockname()

    def run():
        try:
            conn, _ = ls.accept()
            with conn:
                conn.recv(1024)
                talk(conn)
        finally:
            ls.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return address, t
