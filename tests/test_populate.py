"""hw.populate: an array's pages faulted in ahead of use, without changing a byte, also while
the engine writes the same array on another thread; and Books doing so for a big input."""

from __future__ import annotations

import ctypes
import mmap

import numpy as np
import pytest

import itchflow.book.books as books_module
from itchflow.book.books import Books
from itchflow.hw.populate import PAGE, populate, populate_in_background
from itchflow.sim.generator import generate_day

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_pages(array: np.ndarray) -> np.ndarray:
    """mincore(2) of the whole pages inside the array: one bool a page."""
    lo = -(-array.ctypes.data // PAGE) * PAGE
    hi = (array.ctypes.data + array.nbytes) // PAGE * PAGE
    vec = np.zeros((hi - lo) // PAGE, np.uint8)
    assert _libc.mincore(lo, hi - lo, vec.ctypes.data) == 0, ctypes.get_errno()
    return (vec & 1).astype(bool)


def fresh(nbytes: int) -> np.ndarray:
    """Anonymous memory no one has touched: its own mapping (not a recycled heap block)."""
    m = mmap.mmap(-1, nbytes)
    return np.frombuffer(m, np.uint8)


def test_populate_faults_in_every_page_and_changes_nothing():
    a = fresh(8 << 20)
    a[:4096] = 7                      # one page written before: kept as it is
    before = resident_pages(a)
    assert not before[1:].any()      # untouched pages are not resident yet
    if not populate(a):
        pytest.skip("this kernel has no MADV_POPULATE_WRITE (Linux < 5.14): populate() says so")
    assert resident_pages(a).all()
    assert (a[:4096] == 7).all() and not a[4096:].any()


def test_populate_a_range_only():
    a = fresh(4 << 20)
    if not populate(a, 2 << 20, None):
        pytest.skip("no MADV_POPULATE_WRITE on this kernel")
    r = resident_pages(a)
    half = len(r) // 2
    assert r[half:].all() and not r[:half].any()


def test_populate_refuses_what_it_cannot_write(tmp_path):
    p = tmp_path / "ro.bin"
    p.write_bytes(b"\x01" * (1 << 16))
    with open(p, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        ro = np.frombuffer(m, np.uint8)
        assert populate(ro) is False          # a read-only file mapping: no, and no exception
        assert int(ro.sum()) == 1 << 16
        del ro
        m.close()
    with pytest.raises(ValueError, match="contiguous"):
        populate(np.zeros(1 << 16, np.uint8)[::2])


def test_background_populate_while_the_engine_writes(monkeypatch):
    """The tables are faulted in on another thread while the engine fills them: the books
    are exactly those built without it."""
    day = generate_day(120_000, seed=5, stocks=300)
    plain = Books(table=1 << 16)
    plain.apply(day)
    assert not plain.prefault_started                     # a small input: no thread
    monkeypatch.setattr(books_module, "POPULATE_INPUT_BYTES", 1)
    b = Books(table=1 << 16)
    b.apply(day)
    assert b.prefault_started
    assert np.array_equal(b.order_table(), plain.order_table())
    assert np.array_equal(b.tops(), plain.tops())
    assert np.array_equal(b.stocks, plain.stocks) and plain.live_orders() > 1000
    t = populate_in_background(b.order_rows, (b.matches, 0, b.matches.nbytes // 2))
    t.join(timeout=30)
    assert not t.is_alive()
    assert np.array_equal(b.order_table(), plain.order_table())


def test_books_prefault_waits_for_every_table():
    b = Books(table=1 << 16)   # (whether its pages start resident depends on what the heap recycles)
    if not b.prefault(wait=True):
        pytest.skip("no MADV_POPULATE_WRITE on this kernel: prefault(wait=True) says so")
    for table in (b.order_rows, b.trade_log, b.matches, b.levels, b.ladder):
        assert resident_pages(table).all()
    b.apply(generate_day(20_000, seed=6, stocks=20))         # and the books work as before
    assert b.messages == 20_000 and not any(b.anomalies().values())


def test_one_core_leaves_every_page_to_fault_in_on_the_callers_core(monkeypatch):
    """The benchmarks' one-core figures (probe 23: the helper thread ran inside their clocks)."""
    import mmap
    import threading

    from itchflow.hw.populate import one_core

    started = []
    real_start = threading.Thread.start

    def counted_start(self):
        started.append(self.name)
        real_start(self)

    fresh = np.frombuffer(mmap.mmap(-1, 8 << 20), np.uint8)   # pages never touched: none resident
    with one_core():
        monkeypatch.setattr(threading.Thread, "start", counted_start)
        assert not Books(table=1 << 16).prefault(wait=True)   # nothing populated
        assert started == []                                   # and no thread started for it
        monkeypatch.undo()
        t = populate_in_background(fresh)
        t.join(timeout=30)
        assert not t.populated
    assert not resident_pages(fresh).any()
    t = populate_in_background(fresh)   # outside it, as before
    t.join(timeout=30)
    if t.populated:
        assert resident_pages(fresh).all()


def test_prefault_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(books_module, "POPULATE_INPUT_BYTES", 1)
    day = generate_day(20_000, seed=7, stocks=20)
    on, off = Books(table=1 << 12), Books(table=1 << 12, prefault=False)
    on.apply(day)
    off.apply(day)
    assert on.prefault_started and not off.prefault_started
    assert np.array_equal(on.order_table(), off.order_table())
    with Books(threads=2, prefault=False) as sb:   # the sharded books take the option too
        sb.apply(day)
        assert not any(b.prefault_started for b in sb.shards)


@pytest.mark.parametrize("prefault", [True, False])
def test_growth_populates_only_where_prefault_is_on(monkeypatch, prefault):
    """A grown table's top half is faulted in on another thread while it is rehashed, unless the
    Books was told every core is busy (prefault=False: no thread at all)."""
    started = []
    real = books_module.populate_in_background
    monkeypatch.setattr(books_module, "populate_in_background", lambda *parts: started.append(parts) or real(*parts))
    monkeypatch.setattr(books_module, "POPULATE_TABLE_BYTES", 1)
    day = generate_day(60_000, seed=8, stocks=50)
    b = Books(64, table=64, prefault=prefault)          # small tables: they grow on the way
    b.apply(day)
    plain = Books()
    plain.apply(day)
    assert np.array_equal(b.order_table(), plain.order_table()) and np.array_equal(b.stocks, plain.stocks)
    grown = [p for p in started if isinstance(p[0], tuple)]      # (table, top half start, None)
    if prefault:
        assert grown and all(p[0][1] == p[0][0].nbytes // 2 for p in grown)
    else:
        assert not started


def test_read_populates_its_outputs_and_decodes_the_same(monkeypatch):
    """read()'s per-type arrays are faulted in on another thread from POPULATE_OUTPUT_BYTES on
    (a fresh 1.5 GB read ran its first call 1.0-1.5 s instead of 1.8-4.3): same arrays."""
    import itchflow
    import itchflow.decode.decoder as decoder_module

    day = generate_day(200_000, seed=9, stocks=30)
    plain = itchflow.read(day)                               # 200 k messages: below the threshold
    started = []
    real = decoder_module.populate_in_background
    monkeypatch.setattr(decoder_module, "populate_in_background",
                        lambda *parts: started.append(parts) or real(*parts))
    monkeypatch.setattr(decoder_module, "POPULATE_OUTPUT_BYTES", 1)
    populated = itchflow.read(day)
    assert started and all(p.nbytes for p in started[0])   # every non-empty array, none empty
    for code in "SRAFEXDUPC":
        assert np.array_equal(populated[code], plain[code]), code
