"""``itchflow compare``: every row that can run here runs on a small day and its books equal the
baseline's; the kernel's system-call count counts; nothing is left behind (namespaces, rings,
processes, files) on success, on error and on Ctrl-C."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from itchflow.compare import run_compare
from itchflow.compare.measure import SyscallCounter, perf_unavailable_reason
from itchflow.compare.net import join_latency, veth_unavailable, xdp_module
from itchflow.compare.paths import ORDER, PATHS
from itchflow.compare.row import FAILED, NOT_RUN, OK

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(messages=120_000, rate=40_000, paced_seconds=0.3)
IS_ROOT = os.geteuid() == 0
PERF = perf_unavailable_reason()


def _left_behind(pid: int) -> list[str]:
    """Rings, namespaces and temporary folders named for this process that still exist."""
    found = glob.glob(f"/dev/shm/itchflow.compare-{pid}-*")
    try:
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        found += [w for w in ns.split() if w.startswith(f"ifx-cmp-{pid}-")]
    except OSError:
        pass
    return found


def _children() -> list[int]:
    out = []
    for f in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            out += [int(x) for x in Path(f).read_text().split()]
        except OSError:
            pass
    return out


@pytest.fixture(scope="module")
def report():
    before = set(_children())
    r = run_compare(**SMALL)
    assert _left_behind(os.getpid()) == []
    assert set(_children()) <= before, "child processes left running"
    return r


def _pipeline_has_xdp() -> bool:
    from itchflow.pipeline.sources import check_source, parse_source

    try:
        check_source(parse_source("mold://127.0.0.1:1?engine=xdp&ifname=lo"))
    except ValueError:
        return False
    return True


def _expected_not_run(key: str) -> str | None:
    """Why a row may legitimately not run here (None: it must run)."""
    if key in ("af_xdp", "hybrid_xdp") and (xdp_module() is None or (key == "hybrid_xdp" and not _pipeline_has_xdp())):
        return "not available in this build"
    if PATHS[key].family == "network" and not IS_ROOT:
        return "root"
    if key in ("af_xdp", "hybrid_xdp") and veth_unavailable():
        return "veth"
    return None


@pytest.mark.slow
def test_every_row_runs_and_its_books_equal_the_baseline(report):
    assert [r.key for r in report.rows] == list(ORDER)
    base = report.row("inprocess")
    assert base.status == OK and base.books_equal and base.messages == report.terms["messages"]
    for r in report.rows:
        why = _expected_not_run(r.key)
        if r.status == NOT_RUN:
            assert why is not None, f"{r.key} did not run: {r.reason}"
            assert r.reason and (why != "not available in this build" or why in r.reason), r.reason
            continue
        assert r.status == OK, f"{r.key}: {r.reason}"
        assert r.books_equal, f"{r.key}: {r.books_difference}"
        assert r.digest == base.digest
        assert r.messages == base.messages
        assert r.msgs_per_s > 0 and r.cpu_ns > 0
        if r.key != "inprocess":
            for kind in ("paced", "queueing"):
                lat = r.latency[kind]
                assert lat["kind"] == kind and lat["samples"] > 0, (r.key, kind)
                assert 0 <= lat["p50_us"] <= lat["p99_us"] <= lat["p99.9_us"] <= lat["max_us"], (r.key, lat)


@pytest.mark.slow
def test_system_calls_are_counted_by_the_kernel(report):
    if PERF is not None:
        pytest.skip(PERF)
    for r in report.rows:
        if r.status == OK:
            assert r.syscalls is not None, f"{r.key}: {r.syscalls_error}"
    recv = report.row("udp_recv")
    if not IS_ROOT:
        pytest.skip("the network rows need root")
    assert recv.status == OK
    # one recv per datagram plus one that finds the socket empty: at least one per packet,
    # by the kernel's count and by the code's own
    assert recv.syscalls >= recv.packets
    assert recv.code_syscalls >= recv.packets
    assert recv.syscalls >= recv.code_syscalls - 10      # perf sees every call the code says it made
    mm = report.row("udp_recvmmsg")
    assert mm.syscalls_per_packet < 0.25                 # 64 datagrams per call
    for key in ("tpacket", "af_xdp"):
        r = report.row(key)
        if r.status == NOT_RUN:
            continue
        assert r.status == OK
        # in steady state the walk makes no call per packet: far fewer than recv's
        assert r.syscalls_per_packet < 0.1 < 1 <= recv.syscalls_per_packet, (key, r.syscalls_per_packet)


@pytest.mark.slow
def test_claims_are_judged_and_the_json_holds_every_figure(report):
    verdicts = {c["verdict"] for c in report.claims}
    assert verdicts <= {"holds", "does not hold", "not measured"}
    assert len(report.claims) >= 6
    for c in report.claims:
        assert c["why"], c
        if c["verdict"] != "not measured":
            assert c["measured"], c
    d = json.loads(json.dumps(report.to_dict(), default=float))
    for row in d["rows"]:
        for col in ("msgs_per_s", "packets_per_s", "cpu_ns_per_msg", "syscalls_per_msg", "copies_per_message",
                    "context_switches_per_s", "latency", "books_equal", "writes_memory", "backpressure",
                    "wakeup", "privileges", "portability"):
            assert col in row, (row["key"], col)


def test_syscall_counter_counts_what_the_thread_does():
    if PERF is not None:
        pytest.skip(PERF)
    with SyscallCounter([threading.get_native_id()]) as c:
        for _ in range(100):                 # not counted: before enable
            os.getppid()
        c.enable()
        for _ in range(1000):
            os.getppid()
        c.disable()
        n = c.count()
    assert 1000 <= n <= 1020                 # plus the few calls that flip the switch


def test_latency_join_by_sequence():
    # packets starting at sequences 1, 4, 6, 9 (stamps 100.., ns); deliveries: 1..5 at 1000, 6..9 at 2000
    seqs = np.array([1, 4, 6, 9], np.int64)
    stamps = np.array([100, 200, 300, 400], np.int64)
    first, count, at = np.array([1, 6]), np.array([5, 4]), np.array([1000, 2000])
    assert join_latency(seqs, stamps, first, count, at).tolist() == [900, 800, 1700, 1600]
    # a packet never delivered (sequence 20) has no sample
    assert join_latency(np.array([1, 20]), np.array([0, 0]), first, count, at).tolist() == [1000]


def test_a_failing_row_is_reported_and_the_rest_still_run(monkeypatch):
    from itchflow.compare import local

    def broken(day):
        raise OSError("disk on fire")

    monkeypatch.setattr(local, "tail", broken)
    r = run_compare(messages=60_000, rate=40_000, paced_seconds=0.1, paths=["tail", "ring_processes"])
    assert [x.key for x in r.rows] == ["inprocess", "ring_processes", "tail"]
    t = r.row("tail")
    assert t.status == FAILED and "disk on fire" in t.reason
    assert r.row("ring_processes").status == OK and r.row("ring_processes").books_equal
    assert _left_behind(os.getpid()) == []


@pytest.mark.skipif(not IS_ROOT, reason="the namespace rows need root")
@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_an_interrupt_or_error_mid_run_removes_everything(tmp_path, stop):
    """Ctrl-C or an error (raised here from the progress hook while the network processes and
    namespaces exist) leaves no namespace, ring, process or temporary folder."""
    before = set(_children())

    def stop_after_first_network_row(row):
        if row.key == "udp_recv":
            raise stop("stop here")

    with pytest.raises(stop) as e:
        run_compare(messages=60_000, rate=40_000, paced_seconds=0.1, paths=["udp_recv", "tpacket"],
                    workdir=str(tmp_path), on_row=stop_after_first_network_row)
    if stop is KeyboardInterrupt:
        assert e.value.report.interrupted
        assert [r.key for r in e.value.report.rows] == ["inprocess", "udp_recv"]
    assert _left_behind(os.getpid()) == []
    assert set(_children()) <= before
    assert list(tmp_path.iterdir()) == []


def _marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries the marker (every child of the command inherits it)."""
    pids = []
    for env in glob.glob("/proc/[0-9]*/environ"):
        try:
            if marker.encode() in Path(env).read_bytes():
                pids.append(int(env.split("/")[2]))
        except OSError:
            pass
    return pids


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_nothing(tmp_path):
    marker = f"ITCHFLOW_COMPARE_TEST={uuid.uuid4().hex}"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), TMPDIR=str(tmp_path))
    env[marker.split("=")[0]] = marker.split("=")[1]
    paths = "ring_processes,tail,udp_recv,hybrid" if IS_ROOT else "ring_processes,tail,udp_recv"
    p = subprocess.Popen([sys.executable, "-m", "itchflow.cli", "compare", "--messages", "100000",
                          "--rate", "20000", "--paths", paths], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # readiness: the first row is reported on stderr; then interrupt while later rows run
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "ring_processes:" in line:
            break
    assert any("ring_processes: ok" in x for x in lines), "".join(lines)
    os.kill(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert _left_behind(p.pid) == []
    assert _marked_processes(marker) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_pictures_are_drawn(report, tmp_path):
    pytest.importorskip("matplotlib", reason="pictures need matplotlib (the bench extra)")
    from itchflow.compare.pictures import draw_all

    files = draw_all(report, str(tmp_path))
    assert [os.path.basename(f) for f in files] == ["paths.png", "latency_ccdf.png"]
    for f in files:
        head = Path(f).read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(f) > 20_000
