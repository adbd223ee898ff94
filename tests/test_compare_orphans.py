"""A comparison killed with SIGKILL (no clean-up of its own runs) leaves nothing running: its
children die with it and none waits on a pipe another child keeps open; the namespaces such
a run left are removed by the next run instead of failing it with "File exists"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import itchflow
from itchflow.compare.net import VethLab, _Peer, open_lab, veth_unavailable

IS_ROOT = os.geteuid() == 0
SRC = str(Path(itchflow.__file__).resolve().parents[1])   # the tree under test, for a child interpreter


class _Day:
    def __init__(self):
        self.procs = []

    def track(self, proc) -> None:
        self.procs.append(proc)


def _read_until_closed(conn) -> None:
    try:
        while True:
            conn.recv()
    except EOFError:
        pass


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for its new parent to reap it counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait_gone(pids, timeout: float) -> list[int]:
    """The pids still running after ``timeout`` s (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if not _gone(p)]


def _kill(pids) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_child_sees_its_pipe_end_when_the_parent_closes_it():
    """Neither the child itself nor a sibling forked after it holds a copy of the parent's end
    of its pipe (were one held, a child reading its pipe would wait for ever once the parent
    is gone)."""
    day = _Day()
    a = _Peer(day, _read_until_closed, (), "test-peer-a")
    b = _Peer(day, _read_until_closed, (), "test-peer-b")
    try:
        a.conn.close()
        a.proc.join(10)
        assert a.proc.exitcode == 0, "the child did not see the end of its pipe"
    finally:
        b.conn.close()
        b.proc.join(10)
        _kill([p.pid for p in day.procs if p.is_alive()])
        for p in day.procs:
            p.join(5)


# A parent holding two peers: one that reads its pipe (the receiver), one that never does (a
# sender pacing or blocked elsewhere); it prints their pids, then waits to be killed.
PARENT = """
import signal, sys
from itchflow.compare.net import _Peer

class Day:
    def track(self, proc):
        pass

def read(conn):
    conn.recv()

def busy(conn):
    signal.pause()

a = _Peer(Day(), read, (), "test-reader")
b = _Peer(Day(), busy, (), "test-busy")
print(a.proc.pid, b.proc.pid, flush=True)
sys.stdin.read()
"""


def test_children_die_when_the_parent_is_killed():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))
    p = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    kids = []
    try:
        kids = [int(x) for x in p.stdout.readline().split()]   # ready: both children started
        assert len(kids) == 2
        p.kill()
        p.wait(10)
        assert _wait_gone(kids, 10) == [], "children outlived their SIGKILLed parent"
    finally:
        p.kill()
        p.wait()
        _kill(kids)


def _netns_names() -> list[str]:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()


@pytest.mark.skipif(not IS_ROOT, reason="the namespace rows need root")
def test_namespaces_of_a_killed_run_are_removed_by_the_next():
    """A killed run's namespaces: one named for this pid (the pid was reused) and one for a
    dead pid are removed, and the pair is made; one of a live process stays."""
    if veth_unavailable():
        pytest.skip(veth_unavailable())
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["cat"], stdin=subprocess.PIPE)      # alive until its stdin closes
    stale = [f"ifx-cmp-{os.getpid()}-a", f"ifx-cmp-{dead.pid}-b"]
    in_use = f"ifx-cmp-{live.pid}-a"
    try:
        for name in (*stale, in_use):
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        lab = open_lab("veth")
        try:
            assert isinstance(lab, VethLab)
            assert lab.pair.ns["a"] == stale[0] and lab.pair.ns["a"] in _netns_names()
            assert stale[1] not in _netns_names()
            assert in_use in _netns_names()
        finally:
            lab.close()
        assert not set(stale) & set(_netns_names())
    finally:
        for name in (*stale, in_use):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        live.stdin.close()
        live.wait()


def test_the_day_folders_of_dead_runs_are_removed_and_live_runs_keep_theirs(tmp_path):
    """Each run's folder holds a generated day and carries its pid: a SIGKILLed run's is
    removed by the next run (it filled /tmp a day at a time), a live run's is left alone."""
    from itchflow.compare.run import FOLDER_PREFIX, remove_stale_folders

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()                                  # a pid that is gone (reaped)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_dir = tmp_path / f"{FOLDER_PREFIX}{child.pid}-abc123"
        live_dir = tmp_path / f"{FOLDER_PREFIX}{live.pid}-def456"
        other = tmp_path / f"{FOLDER_PREFIX}notapid"
        for d in (dead_dir, live_dir, other):
            d.mkdir()
            (d / "day.itch").write_bytes(b"x")
        assert remove_stale_folders(str(tmp_path)) == [str(dead_dir)]
        assert not dead_dir.exists() and live_dir.exists() and other.exists()
    finally:
        live.kill()
        live.wait()
    assert remove_stale_folders(str(tmp_path)) == [str(live_dir)]


def _die(how: str, conn) -> None:
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    conn.close()
    os._exit(3)


@pytest.mark.parametrize("how, said", [("kill", "was killed by SIGKILL"), ("exit", "exited with status 3")])
def test_a_child_that_dies_is_named_with_how_it_ended(how, said):
    """A child of a row killed or ended: the row's reason was a bare "EOFError:
    (connection.py:399)" or "BrokenPipeError", naming neither the child nor the signal (probe 27)."""
    day = _Day()
    peer = _Peer(day, _die, (how,), "test-peer-dies")
    try:
        with pytest.raises(RuntimeError) as e:
            peer.expect("ready", 30)
        assert "test-peer-dies" in str(e.value) and said in str(e.value) and "'ready'" in str(e.value)
        with pytest.raises(RuntimeError) as e:
            for _ in range(100):          # the pipe's buffer can take a few before it breaks
                peer.send(("go", b"x" * 65536))
        assert "test-peer-dies" in str(e.value) and said in str(e.value)
    finally:
        _kill([p.pid for p in day.procs if p.is_alive()])
        for p in day.procs:
            p.join(5)


def test_the_next_run_removes_the_rings_a_killed_comparison_left(tmp_path, monkeypatch):
    """A SIGKILLed compare left its 16 MiB ring in /dev/shm; the next run removed the
    namespaces and the folder, never the ring (probe 27)."""
    from itchflow.compare.run import remove_left_behind

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    left = tmp_path / f"itchflow.compare-{dead}-hybrid-3.ring"
    code = ("import sys; from itchflow.ring import Ring; "
            "Ring.create(sys.argv[1], 1 << 16, heartbeat_timeout=0.01, keep=True)")
    subprocess.run([sys.executable, "-c", code, str(left)], check=True, env={**os.environ, "PYTHONPATH": SRC})
    mine = tmp_path / f"itchflow.compare-{os.getpid()}-hybrid-1.ring"
    mine.write_bytes(b"")
    folder = tmp_path / f"itchflow-compare-{dead}-abc"
    folder.mkdir()
    removed = remove_left_behind(str(tmp_path), str(tmp_path))
    assert removed == [str(folder), left.name]
    assert not left.exists() and not folder.exists() and mine.exists()
