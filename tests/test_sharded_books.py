"""ShardedBooks (books on N threads, sharded by stock locate) against one-thread Books.

The expectation is always an independent run of the one-thread engine on the same bytes:
every stock's depth at every level, every live order in queue order, volumes, BBOs, counters,
anomalies and events must be identical, for threads = 1, 2, 3, on generated days including a
day where one stock carries a large share of the messages.
"""

from __future__ import annotations

import inspect
import os
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_book_support import add, broken, directory, encode, execute, random_day, trade

from itchflow.book import layout as L
from itchflow.book.books import Books
from itchflow.book.replay import replay
from itchflow.book.sharded import ShardedBooks, balanced_shards, plan_shards
from itchflow.wire.shard import count_by_locate
from itchflow.errors import ITCHFormatError
from itchflow.sim.generator import generate_day
from itchflow.wire.binaryfile import whole_messages_end
from itchflow.wire.itch import LENGTH_BY_BYTE

P = 10_000


@pytest.fixture(scope="module")
def skewed_day() -> np.ndarray:
    """The default 100-stock shape: one stock carries about a quarter of the messages."""
    return generate_day(150_000, seed=3, stocks=100)


@pytest.fixture(scope="module")
def wide_day() -> np.ndarray:
    return generate_day(150_000, seed=4, stocks=1500)


def one_thread(day, record=True) -> Books:
    b = Books()
    if record:
        b.record(l2=True)
    b.apply(day)
    return b


def assert_same(sb: ShardedBooks, one: Books) -> None:
    assert sb.messages == one.messages
    assert np.array_equal(sb.type_counts, one.type_counts)
    assert sb.unknown_types == one.unknown_types
    assert sb.live_orders() == one.live_orders()
    assert sb.last_timestamp_ns == one.last_timestamp_ns
    assert sb.symbols == one.symbols
    assert np.array_equal(sb.anomaly_counts, one.anomaly_counts)
    assert sb.anomalies() == one.anomalies() and sb.anomalies_by_stock() == one.anomalies_by_stock()
    assert np.array_equal(sb.tops(), one.tops())
    assert np.array_equal(sb.stocks, one.stocks)
    for loc in one.symbols.values():
        for mine, theirs in zip(sb.depth(loc), one.depth(loc)):   # every level of both sides
            assert np.array_equal(mine, theirs), loc
        assert sb.bbo(loc) == one.bbo(loc)
        assert sb.volume(loc) == one.volume(loc)
        assert sb.trading_state(loc) == one.trading_state(loc)
    # every live order of every stock, book by book, best level first, in time priority
    assert np.array_equal(sb.order_table(), one.order_table())
    assert sb.peak_live_orders_bound >= one.peak_live_orders
    assert sb.tops_digest() == one.tops_digest()   # (ShardedBooks had none: probe 31)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("day_name", ["skewed_day", "wide_day"])
def test_books_equal_one_thread(request, day_name, threads):
    day = request.getfixturevalue(day_name)
    one = one_thread(day)
    with ShardedBooks(threads) as sb:
        sb.record(l2=True)
        assert sb.apply(day) == len(day)
        assert_same(sb, one)
        for mine, theirs in zip(sb.take_events(), one.take_events()):  # bbo, trades, l2
            assert len(mine) == len(theirs) > 0 and np.array_equal(mine, theirs)
            assert mine.dtype == theirs.dtype   # the same layout (joining shards once dropped its padding)
        if threads > 1:  # the work really is split, and no shard is idle
            assert all(b.messages > one.messages // (3 * threads) for b in sb.shards)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), stocks=st.integers(2, 7), shards=st.integers(2, 4),
       cuts=st.lists(st.floats(0, 1), max_size=4))
def test_random_days_with_anomalies_equal_one_thread(seed, stocks, shards, cuts):
    """Random streams with every kind of inconsistency that stays inside one stock (unknown and
    duplicate references, over-execution and over-cancel, a replace onto a live reference, a bad
    side, unknown match numbers, breaks under another stock's locate, crosses, halts, C not
    printable), applied in random slices: every book, counter, anomaly and event the same as one
    thread's, with 2-4 shards on two threads and chunks of the smallest size (several a call)."""
    msgs = random_day(seed, 12_000, stocks=stocks, anomalies=True, cross_stock=False)
    day = np.frombuffer(encode(msgs), np.uint8)
    bounds = sorted({int(whole_messages_end(day, 0, int(c * len(day)))[0]) for c in cuts} | {0, len(day)})
    one = Books()
    one.record(l2=True)
    with ShardedBooks(2, shards=shards, block_bytes=65_537) as sb:
        sb.record(l2=True)
        for a, b in zip(bounds, bounds[1:]):
            assert sb.apply(day[a:b]) == one.apply(day[a:b]) == b - a
        assert_same(sb, one)
        assert sum(one.anomalies().values()) > 0      # the inconsistencies are there
        for mine, theirs in zip(sb.take_events(), one.take_events()):  # bbo, trades, l2
            assert np.array_equal(mine, theirs)


@pytest.mark.parametrize("far_table", [1, 0])
def test_far_look_ahead_in_every_shard(wide_day, far_table):
    """far_table counts the rows of all the shards' tables together: each shard takes its share
    (the tables share the caches), 0 stays never; the far look-ahead in the shards builds the
    same books as one thread."""
    with ShardedBooks(2, far_table=L.FAR_TABLE, shards=4) as sb:
        assert [int(b.ctl[L.C_FAR_TABLE]) for b in sb.shards] == [L.FAR_TABLE // 4] * 4
    with ShardedBooks(2, far_table=L.FAR_TABLE) as sb:      # one shard a thread by default
        assert [int(b.ctl[L.C_FAR_TABLE]) for b in sb.shards] == [L.FAR_TABLE // 2] * 2
    with ShardedBooks(3, far_table=L.FAR_TABLE + 1, shards=6) as sb:   # rounded up: together at least far_table
        assert all(int(b.ctl[L.C_FAR_TABLE]) * 6 >= L.FAR_TABLE + 1 for b in sb.shards)
    one = one_thread(wide_day)
    with ShardedBooks(2, far_table=far_table, shards=4) as sb:
        sb.record(l2=True)
        assert [int(b.ctl[L.C_FAR_TABLE]) for b in sb.shards] == [far_table] * 4
        sb.apply(wide_day)
        assert_same(sb, one)
        for mine, theirs in zip(sb.take_events(), one.take_events()):
            assert np.array_equal(mine, theirs)


def test_the_skewed_day_is_skewed_and_still_balanced(skewed_day):
    counts = np.zeros(L.N_LOCATES, np.int64)
    count_by_locate(skewed_day, 0, len(skewed_day), LENGTH_BY_BYTE, counts)
    assert counts.max() > 0.15 * counts.sum()             # one stock carries a large share
    with ShardedBooks(2) as sb:
        sb.apply(skewed_day)
        per_shard = [b.messages for b in sb.shards]
    assert max(per_shard) < 0.55 * sum(per_shard)         # and the two shards still share the day
    for threads in (2, 3):  # a plan from the first quarter of the day balances the whole day
        loads = np.bincount(plan_shards(skewed_day, threads, len(skewed_day) // 4), weights=counts,
                            minlength=threads)
        assert loads.max() < 1.1 * counts.sum() / threads


@pytest.mark.parametrize("threads", [2, 3])
def test_fed_in_slices_with_small_blocks(skewed_day, threads):
    """Many apply calls (replay's slices) and many blocks per call: the same books and events,
    with the events' sequence numbers those of the source."""
    one = one_thread(skewed_day)
    with ShardedBooks(threads, block_bytes=65_537) as sb:
        sb.plan(skewed_day)
        sb.record(l2=True)
        got = []
        replay(sb, skewed_day, slice_bytes=300_000, on_slice=lambda b: got.append(b.take_events()))
        assert_same(sb, one)
        want = one.take_events()
        for i in range(3):
            assert np.array_equal(np.concatenate([g[i] for g in got]), want[i])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stop_after_time_and_resume(skewed_day, threads):
    one = Books()
    cut, _ = whole_messages_end(skewed_day, 0, len(skewed_day) // 2)
    one.apply(skewed_day[:cut])
    ts = one.last_timestamp_ns
    one = Books()
    pos1 = one.apply(skewed_day, stop_after_ns=ts)
    with ShardedBooks(threads) as sb:
        sb.plan(skewed_day)
        pos = sb.apply(skewed_day, stop_after_ns=ts)
        assert pos == pos1 < len(skewed_day)
        assert sb.messages == one.messages and sb.last_timestamp_ns == one.last_timestamp_ns == ts
        assert np.array_equal(sb.order_table(), one.order_table())
        sb.apply(skewed_day[pos:])
        one.apply(skewed_day[pos1:])
        assert_same(sb, one)


@pytest.mark.parametrize("slice_bytes", [70_000, 1 << 20])
def test_replay_in_slices_stops_at_the_same_time(skewed_day, tmp_path, slice_bytes):
    """replay() hands ShardedBooks the rest of the buffer with a byte budget (no cutting walk):
    the same books, and the same stop at stop_after_ns, as one thread replaying in slices."""
    path = tmp_path / "day.itch"
    path.write_bytes(skewed_day.tobytes())
    ts = one_thread(skewed_day[:whole_messages_end(skewed_day, 0, len(skewed_day) * 2 // 3)[0]],
                    record=False).last_timestamp_ns
    one = Books()
    assert replay(one, str(path), stop_after_ns=ts, slice_bytes=slice_bytes) is True
    with ShardedBooks(2) as sb:
        sb.plan(skewed_day)
        seen = []
        assert replay(sb, str(path), stop_after_ns=ts, slice_bytes=slice_bytes,
                      progress=lambda n, b: seen.append(b)) is True
        assert sb.messages == one.messages and sb.last_timestamp_ns == one.last_timestamp_ns == ts
        assert np.array_equal(sb.order_table(), one.order_table())
        assert seen == sorted(seen) and len(seen) >= (2 if slice_bytes < 1 << 20 else 1)
    with ShardedBooks(2) as sb:
        assert replay(sb, str(path), slice_bytes=slice_bytes) is False
        assert_same(sb, one_thread(skewed_day, record=False))


def same(mine, theirs) -> bool:
    """Equal answers, whether a query returns numbers, tuples, lists or (structured) arrays."""
    if isinstance(theirs, tuple) and theirs and isinstance(theirs[0], np.ndarray):
        return all(same(m, t) for m, t in zip(mine, theirs))
    if isinstance(theirs, np.ndarray):
        return mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
    return mine == theirs


def test_queries_route_to_the_owner():
    msgs = [directory(1, "AAPL"), directory(2, "MSFT"), directory(3, "IBM"),
            add(1, 11, "B", 100, 10 * P), add(1, 12, "B", 50, 10 * P), add(2, 21, "S", 70, 20 * P),
            add(3, 31, "B", 5, 30 * P), execute(2, 21, 20, match=7), trade(3, 9, 30 * P, match=8)]
    shard_of = np.zeros(L.N_LOCATES, np.uint8)
    shard_of[2] = 1
    shard_of[3] = 2
    one = Books()
    one.apply(encode(msgs))
    with ShardedBooks(3, shard_of=shard_of) as sb:
        sb.apply(encode(msgs))
        assert [b.messages for b in sb.shards] == [5, 5, 5]   # 3 R in each + its own
        assert sb.messages == 9
        assert sb.owner("MSFT") is sb.shards[1] and sb.locate("IBM") == 3 and sb.symbol(2) == "MSFT"
        assert sb.volume("MSFT") == 20 and sb.volume("IBM") == 9 and sb.volume("AAPL") == 0
        assert sb.shards[1].volume("MSFT") == 20 and sb.shards[0].volume("MSFT") == 0
        for sym in ("AAPL", "MSFT", "IBM"):
            assert same(sb.bbo(sym), one.bbo(sym)) and same(sb.depth(sym), one.depth(sym))
            assert sb.vwap(sym) == one.vwap(sym) or (sb.vwap(sym) != sb.vwap(sym) and one.vwap(sym) != one.vwap(sym))
        assert same(sb.orders("AAPL", "B", 10 * P), one.orders("AAPL", "B", 10 * P))
        assert len(sb.orders("AAPL", "B", 10 * P)) == 2
        assert same(sb.orders("MSFT", "S", 20 * P), one.orders("MSFT", "S", 20 * P))
        if "symbols" in inspect.signature(Books.bbo).parameters:  # the array-out API: many at once
            assert same(sb.bbo(["IBM", "AAPL", "MSFT"]), one.bbo(["IBM", "AAPL", "MSFT"]))
            assert same(sb.bbo(), one.bbo()) and len(sb.bbo()) == 3
        table = sb.order_table(["IBM", "AAPL"])
        assert same(table, one.order_table(["IBM", "AAPL"])) and len(table) == 3


def _one_thread_and_two_shards(msgs):
    """The messages applied by one Books and by ShardedBooks(2) with locate 2 alone on shard 1
    (the caller closes the second)."""
    shard_of = np.zeros(L.N_LOCATES, np.uint8)
    shard_of[2] = 1
    one = Books()
    one.apply(encode(msgs))
    sb = ShardedBooks(2, shard_of=shard_of)
    sb.apply(encode(msgs))
    return one, sb


def test_a_break_with_another_locate_is_applied_once():
    """B carries a match number; its header locate need not be the trade's stock (some feeds
    write 0). The shard holding the match applies it, and the others' misses are not counted
    as unknown matches; a B nobody knows is counted once."""
    one, sb = _one_thread_and_two_shards([directory(1, "AAPL"), directory(2, "MSFT"),
                                          add(2, 21, "S", 70, 20 * P), execute(2, 21, 20, match=7),
                                          broken(0, 7), broken(0, 7), broken(1, 99)])
    with sb:
        assert sb.volume("MSFT") == one.volume("MSFT") == 0
        assert sb.anomalies_by_stock() == one.anomalies_by_stock() == {0: {"unknown_match": 1},
                                                                       1: {"unknown_match": 1}}
        assert sb.messages == one.messages == 7


def test_a_match_number_both_shards_used_never_counts_below_zero():
    """Inconsistent input (match numbers are unique in a day): trades of two shards' stocks
    with one match number, then one B. Each shard finds it, so the N - 1 misses taken back out
    made unknown_match -1; it is a lower bound now, 0 here. As documented, the B breaks the
    trade in both shards (one thread: only the first, the second a duplicate_match)."""
    msgs = [directory(1, "AAPL"), directory(2, "MSFT"), trade(1, 100, 10 * P, 7), trade(2, 300, 20 * P, 7),
            broken(1, 7)]
    one, sb = _one_thread_and_two_shards(msgs)
    with sb:
        assert one.anomalies()["duplicate_match"] == 1 and one.volume("MSFT") == 300
        assert sb.anomalies()["unknown_match"] == 0 and min(sb.anomalies().values()) == 0
        assert sb.volume("AAPL") == one.volume("AAPL") == 0
        assert sb.volume("MSFT") == 0      # the documented difference


@pytest.mark.parametrize("threads", [2, 3])
def test_events_of_an_anonymised_capture_keep_one_threads_order(all_captures, threads):
    """Captures anonymised to MoldUDP64 sequence 0 give every message sequence 0 (each packet
    is its own run, numbered from 0): merging the shards' events by sequence alone put them
    out of order (the BBO stream of AddOrderWithMPID.pcap came out 1738, 10177, 8362, 3163
    where one thread has 1738, 10177, 3163, 8362). They are merged by apply call first."""
    checked = 0
    for path in all_captures:
        streams = []
        for n in (1, threads):
            b = Books(threads=n)
            b.record(None, bbo=True, trades=True, l2=True)
            b.replay(str(path))
            streams.append([e.view(np.ndarray).tolist() for e in b.take_events()])
            getattr(b, "close", lambda: None)()
        assert streams[1] == streams[0], path
        checked += sum(len(e) for e in streams[0]) > 1
    assert checked >= 5     # captures with events to order


def test_a_renamed_locate_is_counted_once_as_one_thread_counts_it():
    """Every shard applies every R; a conflict in the directory is the day's once, not once a
    shard (a sum over 2 shards said 2)."""
    one, sb = _one_thread_and_two_shards([directory(1, "AAPL"), directory(2, "MSFT"), directory(2, "MSFX"),
                                          directory(1, "AAPL"), add(2, 21, "S", 70, 20 * P)])
    with sb:
        assert sb.anomalies_by_stock() == one.anomalies_by_stock() == {2: {"directory_conflict": 1}}
        assert sb.symbol(2) == one.symbol(2) == "MSFX"


@pytest.mark.parametrize("threads", [1, 2])
def test_format_errors_name_the_same_offset(threads):
    good = encode([directory(1, "AAPL"), add(1, 1, "B", 100, P), add(1, 2, "S", 10, 2 * P)])
    for bad in (good[:-3], good + b"\x00\x00", good[:40] + b"\x00\x22" + good[42:]):
        with pytest.raises(ITCHFormatError) as want:
            Books().apply(bad, source="x.itch")
        with ShardedBooks(threads) as sb, pytest.raises(ITCHFormatError) as got:
            sb.apply(bad, source="x.itch")
        assert got.value.offset == want.value.offset and str(got.value) == str(want.value)


def test_unknown_types_are_counted_once():
    data = encode([add(1, 1, "B", 100, P)]) + b"\x00\x05z1234" + b"\x00\x01q" + encode([add(2, 2, "B", 1, P)])
    one = Books()
    one.apply(data)
    with ShardedBooks(2) as sb:
        sb.apply(data)
        assert sb.unknown_types == one.unknown_types == 2
        assert sb.messages == one.messages and np.array_equal(sb.type_counts, one.type_counts)


@pytest.mark.parametrize("seed", range(2))
def test_random_garbage_never_crashes(seed):
    rng = np.random.default_rng(seed)
    with ShardedBooks(2, shard_of=(np.arange(L.N_LOCATES) % 2).astype(np.uint8)) as sb:
        for _ in range(100):
            junk = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8)
            want = got = None
            try:
                Books(64, table=1024).apply(junk)
            except ITCHFormatError as e:
                want = e.offset
            try:
                sb.apply(junk)
            except ITCHFormatError as e:
                got = e.offset
            assert got == want


def test_balanced_shards_by_message_counts():
    counts = np.zeros(L.N_LOCATES, np.int64)
    counts[1:101] = np.arange(100, 0, -1)
    counts[7] = 5000                                   # one very busy stock
    m = balanced_shards(counts, 2)
    loads = np.bincount(m, weights=counts, minlength=2)
    assert m[7] != m[1] and m[0] == 0
    assert loads.max() == counts[7]                    # the busy stock alone, everything else beside it
    m3 = balanced_shards(counts[:], 3)
    loads = np.bincount(m3, weights=counts, minlength=3)
    assert loads.max() - loads[loads < loads.max()].max() <= counts[1:101].max() or loads.max() == 5000
    assert set(np.unique(m3[200:])) == {0, 1, 2}       # locates never seen: round-robin


def test_bad_arguments():
    with pytest.raises(ValueError):
        ShardedBooks(0)
    with pytest.raises(ValueError):
        ShardedBooks(2, shard_of=np.full(L.N_LOCATES, 2, np.uint8))
    # checked as given, not after a cast to uint8 (which took 256 as 0, 257 and -255 as 1)
    for bad in (256, 257, -255, -1, 2**63):
        with pytest.raises(ValueError):
            ShardedBooks(2, shard_of=np.full(L.N_LOCATES, bad, np.int64 if bad < 2**63 else np.uint64))
    for bad in (np.full(L.N_LOCATES, 1.9), np.full(L.N_LOCATES, 1.0), np.ones(L.N_LOCATES, bool)):
        with pytest.raises(TypeError):
            ShardedBooks(2, shard_of=bad)
    with pytest.raises(ValueError):
        ShardedBooks(2, shard_of=np.zeros(L.N_LOCATES - 1, np.int64))
    assert ShardedBooks(2, shard_of=np.arange(L.N_LOCATES, dtype=np.int64) % 2).shard_of.dtype == np.uint8
    with pytest.raises(ValueError):
        ShardedBooks(2, block_bytes=1000)
    with ShardedBooks(2) as sb:
        sb.apply(encode([add(1, 1, "B", 1, P)]))
        with pytest.raises(RuntimeError):
            sb.plan(encode([add(1, 1, "B", 1, P)]))
    with ShardedBooks(2) as sb:  # a map swapped in by hand is checked before routing by it
        sb.shard_of = np.full(L.N_LOCATES, sb.n_shards, np.uint8)
        with pytest.raises(ValueError):
            sb.apply(encode([add(1, 1, "B", 1, P)]))
        assert sb.messages == 0


def test_books_with_threads_is_the_sharded_engine(skewed_day, tmp_path):
    """The public spelling: Books(threads=N) builds on N threads; replay() of a file works on it."""
    path = tmp_path / "day.itch"
    path.write_bytes(skewed_day.tobytes())
    one = one_thread(skewed_day, record=False)
    assert type(Books(threads=1)) is Books
    sb = Books(threads=2)
    assert isinstance(sb, ShardedBooks) and sb.threads == 2 and len(sb.shards) >= 2
    with sb:
        replay(sb, str(path))
        assert_same(sb, one)
    with Books(threads=2).replay(str(path)) as sb:   # the method, as on Books
        assert isinstance(sb, ShardedBooks)
        assert_same(sb, one)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs to choose from")
def test_shard_threads_are_pinned_one_cpu_each(skewed_day, monkeypatch):
    """With as many CPUs as shards, each shard's thread pins itself to a CPU of its own (and
    leaves the calling thread alone); pin_threads=False and too few CPUs pin nothing."""
    import itchflow.book.sharded as sharded

    pinned: list[tuple[int, int]] = []
    monkeypatch.setattr(sharded, "pin", lambda cpu: pinned.append((threading.get_ident(), cpu)))
    cpus = sorted(os.sched_getaffinity(0))
    one = one_thread(skewed_day, record=False)
    with ShardedBooks(2) as sb:
        sb.apply(skewed_day)
        assert_same(sb, one)
    assert sorted(cpu for _, cpu in pinned) == cpus[:2]
    assert threading.get_ident() not in {t for t, _ in pinned}
    pinned.clear()
    with ShardedBooks(2, pin_threads=False) as sb:
        sb.apply(skewed_day)
    with ShardedBooks(len(cpus) + 1) as sb:
        sb.apply(skewed_day)
    assert pinned == []


@pytest.mark.parametrize("threads", [1, 2])
def test_books_sized_ahead_never_grow_and_build_the_same_books(wide_day, threads):
    """Books(capacity=, trades=) starts with room for the whole day: the growth log stays
    empty, where books started small log every table they grew; the books are the same."""
    one = one_thread(wide_day, record=False)
    with ShardedBooks(threads, 8, table=8, levels=8, arena=8, trades=8) as small:
        small.apply(wide_day)
        assert_same(small, one)
        g = small.growth()
        assert g["pauses"] == sum(len(b.growth_log) for b in small.shards) > 0
        assert {"order table", "levels", "ladder arena", "trade log"} <= set(g["by_table"])
    want = 4 * one.peak_live_orders
    with ShardedBooks(threads, want, trades=one.ctl[L.C_LOG_N] + 1) as sized:
        sized.apply(wide_day)
        assert_same(sized, one)
        assert sized.growth() == {"pauses": 0, "seconds": 0, "longest": None, "by_table": {}}
    b = Books(want, trades=100_000)
    assert len(b.order_rows) * 3 // 8 >= want and len(b.trade_log) // L.MATCH_WORDS >= 100_000
    assert len(b.levels) >= want // 4 and len(b.ladder) >= 4 * len(b.levels)


def test_event_buffers_that_grow_are_logged_with_their_sizes(skewed_day):
    b = Books()
    b.record(bbo=True, trades=True, l2=True)
    b.apply(skewed_day)
    grown = [g for g in b.growth_log if g[0] in ("BBO events", "L2 events", "trade events")]
    assert {"BBO events", "L2 events"} <= {g[0] for g in grown}
    assert all(after == 2 * before > 0 for _, before, after, _ in grown)
    assert len(b.events.l2) == max(after for what, _, after, _ in grown if what == "L2 events")


def test_sharded_books_take_the_calls_books_take_or_say_why_not(skewed_day):
    """ShardedBooks had no tops_digest (the way to compare one thread with N) and no
    peak_live_orders, both bare AttributeErrors; its orders() said it returned a list (probe 31)."""
    one = one_thread(skewed_day, record=False)
    with ShardedBooks(2) as sb:
        sb.apply(skewed_day)
        assert sb.tops_digest() == one.tops_digest()
        with pytest.raises(AttributeError, match="peak_live_orders_bound is the sum of their peaks"):
            sb.peak_live_orders
        assert not hasattr(sb, "peak_live_orders")
        loc = next(loc for loc in one.symbols.values() if len(one.depth(loc)[0]))   # a stock with bids
        side, price = "B", int(one.depth(loc)[0]["price"][0])
        got = sb.orders(loc, side, price)
        assert isinstance(got, np.ndarray) and np.array_equal(got, one.orders(loc, side, price))
    for name in ("orders", "depth"):
        assert inspect.signature(getattr(ShardedBooks, name)) == inspect.signature(getattr(Books, name)), name


def test_the_sharded_books_answer_hash_seed_and_take_replays_keywords(tmp_path):
    """Probe 58: Books(threads=2, hash_seed=1) was accepted, then .hash_seed raised AttributeError;
    and Books.replay, "the same" as itchflow.replay, refused its renumber, on_bytes and slice_bytes."""
    import itchflow
    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(str(day), 20_000, 3, stocks=10)
    assert int(Books(threads=2, hash_seed=12345).hash_seed) == 12345
    drawn = Books(threads=2)
    assert {int(b.hash_seed) for b in drawn.shards} == {int(drawn.hash_seed)}   # one secret, every shard
    for threads in (1, 2):
        seen = []
        books = Books(threads=threads).replay(str(day), slice_bytes=1 << 14, renumber=True,
                                              on_bytes=lambda chunk, a, b, first: seen.append(b - a))
        whole = itchflow.Books().replay(str(day))
        assert books.tops_digest() == whole.tops_digest() and sum(seen) == day.stat().st_size
        assert len(seen) > 1    # slices of 16 KiB
