"""The namespace helper: two namespaces joined by a veth pair, traffic between them and nowhere
else, and nothing left behind, also when the body fails."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from itchflow.sources import netns

pytestmark = pytest.mark.timeout(60)
REASON = netns.available()
needs_root = pytest.mark.skipif(REASON is not None, reason=f"network namespaces: {REASON}")


def _host_links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def test_names_are_unique_and_fit():
    a, b = netns.VethPair("xdp", pid=4194304), netns.VethPair("net", pid=4194304)
    assert all(len(n) <= 15 for n in (*a.link.values(), *b.link.values()))      # IFNAMSIZ - 1
    assert set(a.link.values()).isdisjoint(b.link.values()) and set(a.ns.values()).isdisjoint(b.ns.values())
    assert a.ns["a"] == "ifx-xdp-4194304-a"


@needs_root
def test_pair_carries_udp_between_namespaces_only():
    with netns.VethPair("nst") as net:
        assert net.link["a"] not in _host_links()          # the links live in the namespaces only
        with net.inside("b"):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.bind((net.address("b"), 0))
            rx.settimeout(5)
        with net.inside("a"):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tx.sendto(b"across", (net.address("b"), rx.getsockname()[1]))
            data, (src, _) = rx.recvfrom(100)
            assert data == b"across" and src == net.address("a")
        finally:
            rx.close()
            tx.close()
        # back home: the namespace address is not ours
        assert net.address("b") not in subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        r = net.run("b", ["ip", "-o", "addr", "show", "dev", net.link["b"]])
        assert f"{net.address('b')}/24" in r.stdout
        assert netns.run_in(net.ns["a"], lambda: 0 if os.path.exists("/proc/self/ns/net") else 3) == 0
    assert net.leftovers() == [] and net.link["a"] not in _host_links()


@needs_root
def test_removed_when_the_body_fails():
    with pytest.raises(RuntimeError, match="boom"):
        with netns.VethPair("nsf") as net:
            assert len(net.leftovers()) == 2
            raise RuntimeError("boom")
    assert net.leftovers() == []
    assert net.link["a"] not in _host_links() and net.link["b"] not in _host_links()


@needs_root
def test_failed_creation_cleans_up():
    first = netns.VethPair("nsc").create()
    try:
        with pytest.raises(netns.NetnsError):
            netns.VethPair("nsc").create()      # the same names: refused, and nothing half-made kept
        assert sorted(first.leftovers()) == sorted(first.ns.values())
    finally:
        first.remove()
    assert first.leftovers() == []
