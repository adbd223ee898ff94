"""A raw day truncated by another process while it is read through its mapping.

Before ``hw.sigbus``, the first touch of a page past the new end killed the process with
SIGBUS (no word of which file), and a cut inside the last page read zeros silently. Each
case runs in its own interpreter, so a regression shows as that child's death by SIGBUS
rather than the test run's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from itchflow.hw import sigbus

pytestmark = pytest.mark.skipif(not sigbus.supported(), reason="the SIGBUS guard is Linux x86-64/AArch64 only")

PAGE = os.sysconf("SC_PAGE_SIZE")


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    from itchflow.sim.generator import write_day

    path = tmp_path_factory.mktemp("day") / "day.itch"
    write_day(path, 60_000, seed=3)
    return path.read_bytes()


def _copy(day: bytes, tmp_path) -> str:
    path = tmp_path / "day.itch"
    path.write_bytes(day)
    return str(path)


def test_a_guarded_mapping_reads_zeros_past_the_new_end_and_says_where(tmp_path, day):
    path = _copy(day, tmp_path)
    cut = 3 * PAGE + 123
    res = _run(
        "import os, sys, numpy as np\n"
        "from itchflow.sources.chunk import map_file, file_mapping, shrunk\n"
        "from itchflow.hw import sigbus\n"
        "a = map_file(sys.argv[1]); mm = file_mapping(a)\n"
        "os.truncate(sys.argv[1], int(sys.argv[2]))\n"
        "print(int(a.astype(np.int64).sum()), sigbus.faulted(mm))\n"
        "print(shrunk(mm, sys.argv[1]))\n", path, cut)
    assert res.returncode == 0, (res.returncode, res.stderr)
    total, fault = res.stdout.splitlines()[0].split()
    # the bytes before the cut are the file's; the rest of its page (past EOF) and every later
    # page read as zeros; the first page wholly past the end is the first fault
    assert int(total) == sum(day[:cut])
    assert int(fault) == 4 * PAGE
    assert res.stdout.splitlines()[1] == (
        f"{path}, byte offset {cut}: the file shrank from {len(day):,} to {cut:,} bytes while it was "
        "being read (truncated or rewritten by another process); what was read past the new end is "
        "not the file's, so no result of this read is valid")


def test_sigbus_anywhere_else_still_ends_the_process(tmp_path, day):
    """The handler only answers for guarded mappings: an unguarded one truncated under its
    reader faults as before (the previous disposition, here the default: death by SIGBUS),
    and does not hang re-running the load."""
    path = _copy(day, tmp_path)
    other = tmp_path / "other.bin"
    other.write_bytes(day)
    res = _run(
        "import mmap, os, sys, numpy as np\n"
        "from itchflow.sources.chunk import map_file\n"
        "a = map_file(sys.argv[1])\n"                      # installs the handler
        "with open(sys.argv[2], 'rb') as f:\n"
        "    b = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), np.uint8)\n"
        "os.truncate(sys.argv[2], 0)\n"
        "print('alive', flush=True)\n"
        "print(int(b.sum()))\n", path, other)
    assert res.stdout.startswith("alive") and res.returncode == -signal.SIGBUS, (res.returncode, res.stdout,
                                                                                  res.stderr)


_REPLAY = (
    "import os, sys\n"
    "from itchflow import Books\n"
    "from itchflow.book.replay import replay\n"
    "path, cut = sys.argv[1], int(sys.argv[2])\n"
    "def truncate_once(messages, done):\n"
    "    if os.path.getsize(path) != cut:\n"
    "        os.truncate(path, cut)\n"
    "try:\n"
    "    replay(Books(), path, slice_bytes=64 << 10, progress=truncate_once)\n"
    "except ValueError as e:\n"
    "    print(type(e).__name__, e.source, e.offset, e.detail, sep='|')\n"
    "    sys.exit(3)\n"
    "print('no error')\n")


@pytest.mark.parametrize("where", ["to nothing", "at a page boundary", "a third in", "inside the last page"])
def test_replay_of_a_day_truncated_midway_is_an_error_naming_file_and_offset(tmp_path, day, where):
    """To nothing or at a page boundary: the next page touched is wholly past the end (SIGBUS
    before the guard). A third in: the zeros after the cut in its page end the framing with a
    "zero-length message" that was not in the file. Inside the last page: nothing faults and
    the last message reads zeros silently; only the file's size tells."""
    path = _copy(day, tmp_path)
    cut = {"to nothing": 0, "at a page boundary": len(day) // 3 // PAGE * PAGE, "a third in": len(day) // 3,
           "inside the last page": len(day) - 7}[where]
    assert len(day) > 4 * (64 << 10)   # the first slice ends well before the cut
    res = _run(_REPLAY, path, cut)
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr)
    kind, source, offset, detail = res.stdout.strip().split("|")
    assert (kind, source, int(offset)) == ("ITCHFormatError", path, cut)
    assert detail.startswith(f"the file shrank from {len(day):,} to {cut:,} bytes while it was being read")


def test_scan_and_stats_of_a_day_truncated_midway_are_errors(tmp_path, day):
    path = _copy(day, tmp_path)
    cut = len(day) // 2
    res = _run(
        "import os, shutil, sys, itchflow\n"
        "path, cut = sys.argv[1], int(sys.argv[2])\n"
        "shutil.copy(path, path + '.2')\n"
        "pieces = itchflow.scan(path, chunk_messages=5000)\n"
        "first = next(pieces)\n"
        "os.truncate(path, cut)\n"
        "try:\n    list(pieces)\nexcept ValueError as e:\n    print('scan', e.offset, e.detail[:15])\n"
        "def cut_once(messages, done):\n"
        "    if os.path.getsize(path + '.2') != cut:\n"
        "        os.truncate(path + '.2', cut)\n"
        "try:\n    itchflow.stats(path + '.2', progress=cut_once)\nexcept ValueError as e:\n"
        "    print('stats', e.offset, e.detail[:15])\n", path, cut)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert res.stdout.splitlines() == [f"scan {cut} the file shrank", f"stats {cut} the file shrank"]


def test_a_day_read_whole_before_it_is_truncated_is_no_error(tmp_path, day):
    """Truncation after the read is over changes nothing already read."""
    import itchflow

    path = _copy(day, tmp_path)
    decoded = itchflow.read(path)
    os.truncate(path, 0)
    assert decoded.info.messages > 0


def test_guard_slots_are_given_back(tmp_path, day):
    """A mapping closed (unguard) or collected frees its slot: a long process that maps many
    files one after another keeps every one guarded."""
    import mmap

    from itchflow.sources.chunk import file_mapping, map_file

    path = _copy(day, tmp_path)
    for _ in range(sigbus.SLOTS + 8):
        a = map_file(path)
        assert sigbus.faulted(file_mapping(a)) is None
        del a    # the last reference: the mapping is collected and its slot freed
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    assert sigbus.guard(mm)        # a slot was still free after more mappings than slots
    key = id(mm)
    assert key in sigbus._state["guarded"]
    sigbus.unguard(mm)
    mm.close()
    assert key not in sigbus._state["guarded"]


def test_a_mapping_collected_while_another_is_guarded_does_not_deadlock(tmp_path, day):
    """A guarded mapping freed by the garbage collector runs its release callback on whatever
    thread collects, possibly inside ``guard``'s own locked block (any allocation there may
    collect): with a plain lock that thread waited on itself for ever (a CI run hung in
    futex_wait). Here every allocation collects, and the mappings die only in cycles."""
    path = _copy(day, tmp_path)
    res = _run(
        "import gc, sys\nfrom itchflow.sources.chunk import map_file\n"
        "gc.set_threshold(1, 1, 1)\n"
        "for _ in range(200):\n"
        "    a = map_file(sys.argv[1]); cycle = [a]; cycle.append(cycle); del a, cycle\n"
        "print('done')\n", path)
    assert res.returncode == 0 and res.stdout.split() == ["done"], (res.returncode, res.stderr)


def test_a_capture_truncated_while_it_is_read_is_an_error_naming_it(tmp_path, day):
    """A capture's stream is copied out of its mapping piece by piece as it is read: a capture
    cut short after the first piece is an error naming the file and the cut, not a stream of
    the zeros read past it (and a capture read to its end first is no error)."""
    import itch_reference as ref
    from itchflow.protocol.mold.feed import MoldFeed

    feed = MoldFeed(np.frombuffer(day, np.uint8), b"CUT", 1400)
    frames = [ref.eth_ipv4_udp(feed.packet_bytes(i)) for i in range(feed.n_packets)]
    data = ref.pcap_file(frames)
    path = tmp_path / "day.pcap"
    path.write_bytes(data)
    cut = len(data) // 2
    res = _run(
        "import os, sys\n"
        "import itchflow.protocol.mold.capture as capture\n"
        "from itchflow.sources.files import iter_chunks\n"
        "path, cut = sys.argv[1], int(sys.argv[2])\n"
        "capture.PIECE_BYTES = 64 << 10\n"
        "whole = [c.data.tobytes() for c in iter_chunks(path)]\n"
        "chunks = iter_chunks(path)\n"
        "first = next(chunks)\n"
        "os.truncate(path, cut)\n"
        "try:\n    list(chunks)\nexcept ValueError as e:\n"
        "    print(type(e).__name__, e.source, e.offset, e.detail[:15], sep='|')\n"
        "print(len(whole), first.data.tobytes() == whole[0])\n", str(path), cut)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    error, summary = res.stdout.splitlines()
    assert error == f"ITCHFormatError|{path}|{cut}|the file shrank"
    pieces, same = summary.split()
    assert int(pieces) > 2 and same == "True"


def test_mappings_held_only_by_reference_cycles_give_their_slots_back(tmp_path, day):
    """Mappings no longer used but kept in reference cycles (here: each in a dict that holds
    itself, as a README example's closure holds its globals) keep their slots until the cycle
    collector runs. With every slot so taken, guarding collects first instead of leaving the
    new mapping unguarded (the full test suite once ran out of slots this way)."""
    import gc
    import mmap

    from itchflow.sources.chunk import map_file

    path = _copy(day, tmp_path)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(sigbus.SLOTS + 4):
            cycle = {"mapping": map_file(path)}
            cycle["self"] = cycle
            del cycle
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        assert sigbus.guard(mm)
        sigbus.unguard(mm)
        mm.close()
    finally:
        if was_enabled:
            gc.enable()


_GUARDED_READ = (
    "import os, sys, numpy as np\n"
    "os.environ['NUMBA_CACHE_DIR'] = sys.argv[2]\n"
    "from itchflow.hw import sigbus\n"
    "from itchflow.sources.chunk import map_file, file_mapping\n"
    "a = map_file(sys.argv[1]); mm = file_mapping(a)\n"
    "os.truncate(sys.argv[1], 100)\n"
    "print(int(a.astype(np.int64).sum()), sigbus.faulted(mm), sigbus.unavailable())\n")


@pytest.fixture(scope="module")
def handler_cache(tmp_path_factory, day):
    """A cache folder of its own, with the handler's object: a copy of this run's kernels (a fresh
    folder compiled them again in each child, ~35 s), less the handler's object."""
    import shutil

    folder = tmp_path_factory.mktemp("cache") / "numba"
    shutil.copytree(os.environ["NUMBA_CACHE_DIR"], folder, ignore=shutil.ignore_patterns("sigbus-*"))
    res = _run(_GUARDED_READ, _copy(day, tmp_path_factory.mktemp("first")), folder)
    assert res.returncode == 0, res.stderr
    (obj,) = folder.glob("sigbus-*.o")
    return folder, obj, obj.read_bytes()


@pytest.mark.parametrize("damage", ["zeros", "short", "random", "elf header then zeros", "no digest"])
def test_a_damaged_cached_handler_object_is_compiled_again(tmp_path, day, handler_cache, damage):
    """Probe 57: the handler's machine code is cached beside Numba's kernels and was handed to
    LLVM unchecked: a zero-filled, cut or foreign file aborted (LLVM 'UNREACHABLE', exit 134) or
    crashed (exit 139) every later run. Now it must carry its own digest, or it is compiled again
    and replaced; and the guard still works."""
    folder, obj, good = handler_cache
    rng = np.random.default_rng(7)
    bad = {"zeros": bytes(len(good)), "short": good[:len(good) // 2],
           "random": rng.integers(0, 256, len(good), dtype=np.uint8).tobytes(),
           "elf header then zeros": b"\x7fELF\x02\x01\x01" + bytes(len(good) - 7),
           "no digest": good[:-32]}[damage]     # the machine code alone, as the cache kept it before
    obj.write_bytes(bad)
    res = _run(_GUARDED_READ, _copy(day, tmp_path), folder)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    total, fault, unavailable = res.stdout.split()
    assert int(total) == sum(day[:100]) and int(fault) == PAGE and unavailable == "None"
    assert obj.read_bytes() == good                   # compiled again, and the file replaced


def test_the_cached_handler_object_is_kept_private_whatever_the_umask(tmp_path, day, handler_cache):
    """Probe 60: under umask 002 (the usual for users with groups of their own) the object was
    written group-writable, which the load refuses: every run compiled it again and rewrote it."""
    folder, obj, good = handler_cache
    obj.unlink()
    code = "import os\nos.umask(0o002)\n" + _GUARDED_READ
    res = _run(code, _copy(day, tmp_path), folder)
    assert res.returncode == 0, res.stderr
    assert oct(obj.stat().st_mode & 0o777) == "0o600"
    before = obj.stat().st_mtime_ns, obj.stat().st_ino
    res = _run(code, _copy(day, tmp_path), folder)
    assert res.returncode == 0, res.stderr
    assert (obj.stat().st_mtime_ns, obj.stat().st_ino) == before    # loaded, not compiled and replaced
