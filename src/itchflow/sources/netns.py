"""Two network namespaces joined by a veth pair, for tests and benchmarks that must not send
anything off the machine (AF_XDP and packet rings need a real link; loopback is not one).

    with VethPair("xdp") as net:              # namespaces ifx-xdp-<pid>-a / -b
        net.run("a", ["ping", "-c1", net.address("b")])
        with net.inside("b"):                 # this thread's sockets now live in namespace b
            ...

Everything is made with ``ip`` (iproute2) and removed on exit, also when the body raises;
deleting a namespace destroys its end of the veth and with it the peer. The names carry the
tag and the process id, so parallel runs never collide and leftovers are attributable.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import subprocess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces and veth pairs need root"
    return None


def setns(path: str) -> None:
    """Move the calling thread into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def namespace_name(tag: str, pid: int, side: str) -> str:
    """The name of a VethPair's namespace: ``ifx-<tag>-<pid>-<side>``."""
    return f"ifx-{tag}-{pid}-{side}"


def remove_stale(tag: str) -> list[str]:
    """Remove the namespaces of ``tag``'s pairs whose process is gone (a SIGKILL runs no
    clean-up), so that a process that reuses such a pid does not fail with "File exists".
    Those named for this process are stale too: call this before making its own pair. Those
    of any other live process are in use and stay. Returns the names removed."""
    from itchflow.ring.liveness import left_behind

    pattern = re.compile(rf"ifx-{re.escape(tag)}-(\d+)-[ab]")   # namespace_name's, any pid and side
    removed = []
    for name in _ip("netns", "list", check=False).stdout.split():   # words of "name (id: N)" lines
        m = pattern.fullmatch(name)
        if m is None or not left_behind(int(m.group(1))):
            continue
        if _ip("netns", "del", name, check=False).returncode == 0:
            removed.append(name)
    return removed


class VethPair:
    """Namespaces ``a`` and ``b`` with a veth pair between them (addresses 10.77.0.1/24 and
    10.77.0.2/24, links up, loopback up in both)."""

    SUBNET = "10.77.0"

    def __init__(self, tag: str = "test", pid: int | None = None):
        pid = os.getpid() if pid is None else pid
        self.ns = {s: namespace_name(tag, pid, s) for s in "ab"}
        short = "".join(c for c in tag if c.isalnum())[:4]
        self.link = {s: f"ifx{short}{pid}{s}"[-15:] for s in "ab"}    # IFNAMSIZ: 15 characters
        self.made: list[str] = []

    def address(self, side: str) -> str:
        return f"{self.SUBNET}.{1 if side == 'a' else 2}"

    def create(self) -> "VethPair":
        try:
            for s in "ab":
                _ip("netns", "add", self.ns[s])
                self.made.append(self.ns[s])
            _ip("link", "add", self.link["a"], "netns", self.ns["a"], "type", "veth",
                "peer", "name", self.link["b"], "netns", self.ns["b"])
            for s in "ab":
                n = self.ns[s]
                _ip("-n", n, "addr", "add", f"{self.address(s)}/24", "dev", self.link[s])
                _ip("-n", n, "link", "set", self.link[s], "up")
                _ip("-n", n, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for n in reversed(self.made):
            _ip("netns", "del", n, check=False)
        self.made.clear()

    def __enter__(self) -> "VethPair":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.remove()

    def command(self, side: str, argv: list[str]) -> list[str]:
        """argv run in namespace ``side`` (for subprocess)."""
        return ["ip", "netns", "exec", self.ns[side], *argv]

    def run(self, side: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.command(side, argv), **kw)

    def popen(self, side: str, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.command(side, argv), **kw)

    @contextlib.contextmanager
    def inside(self, side: str):
        """The calling thread in namespace ``side`` for the block (sockets made there stay there)."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            setns(f"/run/netns/{self.ns[side]}")
            yield self
        finally:
            try:
                if _libc.setns(home, CLONE_NEWNET) != 0:
                    raise NetnsError("could not return to the original network namespace")
            finally:
                os.close(home)

    def link_xdp(self, side: str) -> str:
        """The XDP part of ``ip link show`` for our link on ``side`` ('' when none is attached)."""
        out = _ip("-n", self.ns[side], "-d", "link", "show", self.link[side]).stdout
        marks = ("xdp", "xdpgeneric", "xdpdrv", "xdpoffload", "xdpmulti")
        return " ".join(w for w in out.split() if w in marks or w.startswith("prog/xdp"))

    def leftovers(self) -> list[str]:
        """Our namespaces that still exist (should be none after ``remove``)."""
        listed = _ip("netns", "list", check=False).stdout.split()
        return [n for n in self.ns.values() if n in listed]


def run_in(path_or_name: str, fn, *args):
    """Call fn(*args) in a forked child moved into a namespace (name under /run/netns or a path)."""
    path = path_or_name if path_or_name.startswith("/") else f"/run/netns/{path_or_name}"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            setns(path)
            r = fn(*args)
            code = int(r) if isinstance(r, int) else 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
