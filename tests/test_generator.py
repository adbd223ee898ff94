"""The synthetic day generator, checked by a slow, obvious walker written here.

The walker decodes with struct formats typed in from the ITCH 5.0 specification (not from
itchflow's table), rebuilds every order book in plain Python dicts, and checks each
invariant the generator promises: framing, system event order and times, directory before
use, live references, no over-execution, fresh replace references, non-monotonic references,
queue positions of executions, crossed books only before the open, match numbers, the type
mix against the real day, bursts, determinism and the close-all purge.
"""

from __future__ import annotations

import gzip
import heapq
import struct
from collections import Counter, OrderedDict, defaultdict

import numpy as np
import pytest

from itchflow.sim.generator import REAL_DAY, REAL_DAY_MESSAGES, generate_day, minimum_messages, write_day

# Independent layout table: type -> struct format (header: type, locate, tracking, 6-byte ts).
_HDR = ">cHH6s"
FORMATS = {
    b"S": _HDR + "c",
    b"R": _HDR + "8sccIcc2scccccIc",
    b"H": _HDR + "8scc4s",
    b"Y": _HDR + "8sc",
    b"L": _HDR + "4s8sccc",
    b"V": _HDR + "QQQ",
    b"W": _HDR + "c",
    b"K": _HDR + "8sIcI",
    b"J": _HDR + "8sIIII",
    b"h": _HDR + "8scc",
    b"A": _HDR + "QcI8sI",
    b"F": _HDR + "QcI8sI4s",
    b"E": _HDR + "QIQ",
    b"C": _HDR + "QIQcI",
    b"X": _HDR + "QI",
    b"D": _HDR + "Q",
    b"U": _HDR + "QQII",
    b"P": _HDR + "QcI8sIQ",
    b"Q": _HDR + "Q8sIQc",
    b"B": _HDR + "Q",
    b"I": _HDR + "QQc8sIIIcc",
    b"N": _HDR + "8sc",
    b"O": _HDR + "8scIIIQII",
}
LENGTHS = {b"S": 12, b"R": 39, b"H": 25, b"Y": 20, b"L": 26, b"V": 35, b"W": 12, b"K": 28, b"J": 35,
           b"h": 21, b"A": 36, b"F": 40, b"E": 31, b"C": 36, b"X": 23, b"D": 19, b"U": 35, b"P": 44,
           b"Q": 40, b"B": 19, b"I": 50, b"N": 20, b"O": 48}
STRUCTS = {t: struct.Struct(f) for t, f in FORMATS.items()}
assert all(STRUCTS[t].size == LENGTHS[t] for t in LENGTHS)

SEC = 1_000_000_000
HOUR = 3600 * SEC


def walk(data) -> list[tuple]:
    """Framed bytes -> [(type, locate, ts, fields...)], checking every length prefix."""
    data = bytes(data)
    out, pos, n = [], 0, len(data)
    while pos < n:
        assert pos + 2 <= n, f"truncated length prefix at {pos}"
        (length,) = struct.unpack_from(">H", data, pos)
        t = data[pos + 2: pos + 3]
        assert t in LENGTHS, f"unknown type {t!r} at {pos}"
        assert length == LENGTHS[t], f"bad length {length} for {t!r} at {pos}"
        assert pos + 2 + length <= n, f"truncated message at {pos}"
        rec = STRUCTS[t].unpack_from(data, pos + 2)
        ts = int.from_bytes(rec[3], "big")
        out.append((t.decode(), rec[1], ts) + rec[4:])
        pos += 2 + length
    return out


class Book:
    """Every order and price-level queue of the day, in plain dicts (the slow reference)."""

    def __init__(self):
        self.orders = {}                       # ref -> [locate, side, shares, price]
        self.levels = defaultdict(OrderedDict)  # (locate, side, price) -> refs in time order
        self.heaps = defaultdict(list)          # (locate, side) -> lazy heap of level prices
        self.used_refs = set()

    def add(self, ref, loc, side, shares, price):
        assert ref not in self.used_refs, f"order reference {ref} reused"
        self.used_refs.add(ref)
        self.orders[ref] = [loc, side, shares, price]
        q = self.levels[(loc, side, price)]
        if not q:
            heapq.heappush(self.heaps[(loc, side)], -price if side == b"B" else price)
        q[ref] = None

    def remove(self, ref):
        loc, side, _, price = self.orders.pop(ref)
        q = self.levels[(loc, side, price)]
        del q[ref]
        if not q:
            del self.levels[(loc, side, price)]

    def best(self, loc, side):
        h = self.heaps[(loc, side)]
        while h:
            price = -h[0] if side == b"B" else h[0]
            if (loc, side, price) in self.levels:
                return price
            heapq.heappop(h)
        return None

    def crossed(self, loc):
        b, a = self.best(loc, b"B"), self.best(loc, b"S")
        return b is not None and a is not None and b >= a

    def at_head_of_best(self, ref):
        loc, side, _, price = self.orders[ref]
        head = next(iter(self.levels[(loc, side, price)]))
        return head == ref and price == self.best(loc, side)


def check_price(p):
    assert p > 0, "non-positive price"
    if p >= 10_000:
        assert p % 100 == 0, f"price {p} at or above $1 is off the penny grid"


def verify(msgs, stocks):
    """Check every promise of the generator; returns the facts the tests look at."""
    facts = Counter()
    book = Book()
    directory = {}
    events = []
    last_ts = -1
    last_match = -1
    trade_matches = {}    # match number -> locate of the trade, for the B that breaks it
    halted = set()
    halts = []
    opened = set()        # stocks whose opening cross has printed
    new_refs = []
    per_ms = Counter()
    stock_orders = Counter()
    cross_types = defaultdict(list)
    noii_times = []
    for i, m in enumerate(msgs):
        t, loc, ts = m[0], m[1], m[2]
        assert ts >= last_ts, f"timestamp goes back at message {i}"
        last_ts = ts
        per_ms[ts // 1_000_000] += 1
        if t not in "SV":
            if t == "R":
                assert loc not in directory, f"second R for locate {loc}"
                sym = m[3]
                assert 1 <= len(sym.strip()) <= 8 and sym == sym.strip().ljust(8)
                assert sym.strip().isalpha() and sym.strip().isupper(), sym
                assert m[6] == 100, "round lot"
                assert m[4] in b"QGSNAPZV"
                directory[loc] = sym
            else:  # a B too: it carries the locate of the trade it breaks
                assert loc in directory, f"{t} for locate {loc} before its R (message {i})"
        if t in "AFPQIHYLJ":
            idx = {"A": 6, "F": 6, "P": 6, "Q": 4, "I": 6, "L": 4}.get(t, 3)
            assert m[idx] == directory[loc], f"{t} symbol disagrees with R for locate {loc}"
        if t == "S":
            events.append((m[3], ts, i))
        elif t in "AF":
            ref, side, shares, price = m[3], m[4], m[5], m[7]
            assert side in (b"B", b"S") and shares > 0
            check_price(price)
            book.add(ref, loc, side, shares, price)
            new_refs.append(ref)
            stock_orders[loc] += 1
            if t == "F":
                assert len(m[8]) == 4 and m[8].isalpha() and m[8].isupper(), m[8]
            facts["adds"] += 1
            if book.crossed(loc):
                if loc in opened:
                    raise AssertionError(f"book of locate {loc} crossed during trading (message {i})")
                facts["crossed_preopen"] += 1
        elif t in "EC":
            ref, shares, match = m[3], m[4], m[5]
            assert ref in book.orders, f"{t} of unknown order {ref} (message {i})"
            o = book.orders[ref]
            assert o[0] == loc, "execution locate differs from the order's"
            assert loc not in halted, f"execution of halted locate {loc}"
            assert 0 < shares <= o[2], f"over-execution of {ref} (message {i})"
            assert match > last_match, "match numbers must increase"
            last_match = match
            trade_matches[match] = loc
            facts["executions"] += 1
            if not book.at_head_of_best(ref):
                facts["non_head"] += 1
            if t == "C":
                assert m[6] in (b"Y", b"N")
                facts["c_printable_" + m[6].decode()] += 1
                check_price(m[7])
            o[2] -= shares
            if o[2] == 0:
                book.remove(ref)
            stock_orders[loc] += 1
        elif t == "X":
            ref, shares = m[3], m[4]
            assert ref in book.orders, f"X of unknown order {ref} (message {i})"
            o = book.orders[ref]
            assert 0 < shares < o[2], f"X must leave at least one share (message {i})"
            o[2] -= shares
            stock_orders[loc] += 1
        elif t == "D":
            assert m[3] in book.orders, f"D of unknown order {m[3]} (message {i})"
            assert book.orders[m[3]][0] == loc
            book.remove(m[3])
            stock_orders[loc] += 1
        elif t == "U":
            old, new, shares, price = m[3], m[4], m[5], m[6]
            assert old in book.orders, f"U of unknown order {old} (message {i})"
            o_loc, side = book.orders[old][0], book.orders[old][1]
            assert o_loc == loc
            assert shares > 0
            check_price(price)
            book.remove(old)
            book.add(new, loc, side, shares, price)
            assert old not in book.orders
            new_refs.append(new)
            if book.crossed(loc) and loc in opened:
                raise AssertionError(f"replace crossed the book of {loc} during trading (message {i})")
            stock_orders[loc] += 1
        elif t == "P":
            assert m[5] > 0 and m[4] in (b"B", b"S")
            check_price(m[7])
            assert loc not in halted
            assert m[8] > last_match
            last_match = m[8]
            trade_matches[m[8]] = loc
        elif t == "Q":
            shares, price, match, ctype = m[3], m[5], m[6], m[7]
            check_price(price)
            assert shares > 0 and match > last_match
            last_match = match
            cross_types[ctype].append((loc, ts))
            if ctype == b"O":
                assert not book.crossed(loc), f"book of {loc} still crossed after its opening cross"
                opened.add(loc)
        elif t == "B":
            assert m[3] in trade_matches, f"B of unknown match {m[3]}"
            assert loc == trade_matches[m[3]], f"B of match {m[3]} carries locate {loc}, its trade {trade_matches[m[3]]}"
            facts["broken"] += 1
        elif t == "I":
            noii_times.append((ts, m[10]))
            for p in m[7:10]:
                check_price(p)
        elif t == "H":
            if m[4] == b"H":
                halted.add(loc)
                halts.append(loc)
            elif m[4] == b"T":
                halted.discard(loc)
        elif t == "J":
            for p in m[4:7]:
                check_price(p)
            assert m[6] < m[4] < m[5]
    assert not halted, "a halt never resumed"
    assert sorted(directory) == list(range(1, stocks + 1)), "one R per stock, locates 1..K"
    facts["halts"] = len(halts)
    return dict(facts=facts, book=book, events=events, directory=directory, new_refs=new_refs,
                per_ms=per_ms, stock_orders=stock_orders, cross_types=cross_types, noii_times=noii_times)


N_DAY = 300_000


@pytest.fixture(scope="module")
def day():
    data = generate_day(N_DAY, seed=7)
    msgs = walk(data)
    return data, msgs, verify(msgs, 100)


def test_exact_count_framing_and_first_last(day):
    data, msgs, _ = day
    assert data.dtype == np.uint8
    assert len(msgs) == N_DAY
    assert msgs[0][0] == "S" and msgs[0][3] == b"O"
    assert msgs[-1][0] == "S" and msgs[-1][3] == b"C"


def test_system_events_in_order_at_real_times(day):
    _, msgs, v = day
    events = v["events"]
    assert [e[0] for e in events] == [b"O", b"S", b"Q", b"M", b"E", b"C"]
    t = {e[0]: e[1] for e in events}
    assert 3 * HOUR <= t[b"O"] < 4 * HOUR
    assert 4 * HOUR <= t[b"S"] < 4 * HOUR + SEC
    assert 9.5 * HOUR <= t[b"Q"] < 9.5 * HOUR + SEC
    assert 16 * HOUR <= t[b"M"] < 16 * HOUR + SEC
    assert 20 * HOUR <= t[b"E"] < 20 * HOUR + SEC
    assert t[b"E"] < t[b"C"] <= 20 * HOUR + 10 * 60 * SEC
    # Most order flow happens in regular hours.
    flow = [m[2] for m in msgs if m[0] in "AFDUXE"]
    regular = sum(9.5 * HOUR <= ts < 16 * HOUR for ts in flow)
    assert 0.7 < regular / len(flow) < 0.95


def test_directory_covers_every_stock(day):
    _, msgs, v = day
    assert sorted(v["directory"]) == list(range(1, 101))
    syms = [v["directory"][k] for k in range(1, 101)]
    assert syms == sorted(syms), "locates follow symbol order"
    assert b"AAPL    " in syms or b"MSFT    " in syms or any(len(s.strip()) <= 4 for s in syms)
    counts = Counter(m[0] for m in msgs)
    assert counts["R"] == 100 and counts["Y"] == 100 and counts["V"] == 1
    # Every stock is declared trading ('T') before its first order.
    first_t = {}
    first_order = {}
    for i, m in enumerate(msgs):
        if m[0] == "H" and m[4] == b"T":
            first_t.setdefault(m[1], i)
        if m[0] in "AF":
            first_order.setdefault(m[1], i)
    assert all(first_t[k] < first_order[k] for k in first_order)


def test_halts_and_collars(day):
    _, msgs, v = day
    assert v["facts"]["halts"] >= 1
    counts = Counter(m[0] for m in msgs)
    assert counts["J"] >= 1
    assert len(v["cross_types"][b"H"]) == v["facts"]["halts"]


def test_crosses_per_stock_and_book_states(day):
    _, msgs, v = day
    ct = v["cross_types"]
    assert sorted(loc for loc, _ in ct[b"O"]) == list(range(1, 101))
    assert sorted(loc for loc, _ in ct[b"C"]) == list(range(1, 101))
    assert all(9.5 * HOUR <= ts < 9.5 * HOUR + SEC for _, ts in ct[b"O"])
    assert all(16 * HOUR <= ts < 16 * HOUR + SEC for _, ts in ct[b"C"])
    f = v["facts"]
    assert f["crossed_preopen"] > 0, "pre-open books should sometimes cross or lock"
    assert f["c_printable_N"] > 0 and f["c_printable_Y"] > 0


def test_noii_around_the_crosses(day):
    _, _, v = day
    times = v["noii_times"]
    assert times
    for ts, ctype in times:
        if ctype == b"O":
            assert 9 * HOUR + 25 * 60 * SEC <= ts < 9.5 * HOUR
        else:
            assert ctype == b"C" and 15 * HOUR + 50 * 60 * SEC <= ts < 16 * HOUR


def test_references_unique_fresh_and_not_monotonic(day):
    _, _, v = day
    refs = v["new_refs"]
    assert len(set(refs)) == len(refs)
    drops = sum(1 for a, b in zip(refs, refs[1:]) if b < a)
    assert drops > len(refs) // 10, "references should jump between ranges"
    assert max(refs) < 1 << 41 and max(refs) > 1 << 36


def test_executions_mostly_at_head_some_not(day):
    _, _, v = day
    f = v["facts"]
    assert f["executions"] > 1000
    frac = f["non_head"] / f["executions"]
    assert 0 < frac < 0.01, frac


def test_broken_trades(day):
    _, _, v = day
    assert v["facts"]["broken"] >= 1


def test_bursts_at_open_and_close(day):
    _, _, v = day
    per_ms = v["per_ms"]
    open_ms = max(n for ms, n in per_ms.items() if 9.5 * HOUR <= ms * 1_000_000 < 9.5 * HOUR + SEC)
    close_ms = max(n for ms, n in per_ms.items() if 16 * HOUR - SEC <= ms * 1_000_000 < 16 * HOUR + SEC)
    assert open_ms >= 1000 and close_ms >= 1000


def test_activity_is_skewed(day):
    _, _, v = day
    counts = sorted(v["stock_orders"].values(), reverse=True)
    total = sum(counts)
    assert counts[0] / total > 0.08
    assert sum(counts[:10]) / total > 0.35
    assert counts[len(counts) // 2] / total < 0.01


def test_type_mix_matches_the_real_day(day):
    _, msgs, _ = day
    counts = Counter(m[0] for m in msgs)
    for code in set(REAL_DAY) | set(counts):
        ours = counts.get(code, 0) / len(msgs)
        real = REAL_DAY.get(code, 0) / REAL_DAY_MESSAGES
        assert abs(ours - real) < 0.01, (code, ours, real)


def test_close_all_leaves_an_empty_book():
    n = 60_000
    data = generate_day(n, seed=3, stocks=50, close_all=True)
    msgs = walk(data)
    assert len(msgs) == n
    v = verify(msgs, 50)
    assert v["book"].orders == {}
    # the purge comes before the end of system hours
    e_index = next(i for i, m in enumerate(msgs) if m[0] == "S" and m[3] == b"E")
    assert all(m[0] == "S" for m in msgs[e_index:])


def test_determinism_and_chunking(tmp_path):
    n = 40_000
    a = generate_day(n, seed=11, stocks=30)
    b = generate_day(n, seed=11, stocks=30)
    c = generate_day(n, seed=12, stocks=30)
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    path = tmp_path / "day.itch"
    info = write_day(path, n, seed=11, stocks=30, chunk_bytes=4096)
    assert path.read_bytes() == a.tobytes()
    assert info["messages"] == n and info["bytes"] == len(a)
    assert info["by_type"] == dict(Counter(m[0] for m in walk(a)))
    gz = tmp_path / "day.itch.gz"
    write_day(gz, n, seed=11, stocks=30, gz=True, chunk_bytes=10_000)
    assert gzip.decompress(gz.read_bytes()) == a.tobytes()


def test_too_small_a_day_is_refused():
    with pytest.raises(ValueError):
        generate_day(minimum_messages(100) - 1, seed=1)


def test_cli_gen(tmp_path):
    from click.testing import CliRunner

    import itchflow.cli.gen  # noqa: F401  (registers the command on main)
    from itchflow.cli import main

    out = tmp_path / "day.itch.gz"
    r = CliRunner().invoke(main, ["gen", str(out), "--messages", "20k", "--seed", "4", "--stocks", "20",
                                  "--quiet"])
    assert r.exit_code == 0, r.output
    assert "20,000 messages" in r.output
    assert gzip.decompress(out.read_bytes()) == generate_day(20_000, seed=4, stocks=20).tobytes()
    assert "without a .gz suffix" not in r.output
    # --gz to a name without .gz: written gzipped, and said so (zcat and raw readers go by the name)
    r = CliRunner().invoke(main, ["gen", str(tmp_path / "plain.itch"), "--gz", "-n", "20k", "--seed", "4",
                                  "--stocks", "20", "-q"])
    assert r.exit_code == 0 and "plain.itch is gzip-compressed without a .gz suffix" in r.output, r.output
    assert gzip.decompress((tmp_path / "plain.itch").read_bytes()) == gzip.decompress(out.read_bytes())
    r = CliRunner().invoke(main, ["gen", str(tmp_path / "x.itch"), "--messages", "1.5x"])
    assert r.exit_code != 0
    r = CliRunner().invoke(main, ["gen", str(tmp_path / "x.itch"), "--messages", "100"])
    assert r.exit_code != 0 and "at least" in r.output


def _mutated(data, code, field, value, nth=0):
    """A copy of data with one field (index into the struct tuple) of the nth `code` message set."""
    buf = bytearray(bytes(data))
    pos, seen = 0, 0
    while pos < len(buf):
        (length,) = struct.unpack_from(">H", buf, pos)
        t = bytes(buf[pos + 2: pos + 3])
        if t == code.encode():
            if seen == nth:
                rec = list(STRUCTS[t].unpack_from(buf, pos + 2))
                rec[field] = value(rec) if callable(value) else value
                STRUCTS[t].pack_into(buf, pos + 2, *rec)
                return buf
            seen += 1
        pos += 2 + length
    raise AssertionError(f"no {code} message number {nth}")


@pytest.mark.parametrize("code, field, value", [
    ("X", 5, lambda r: 0xFFFFFFFF),                      # cancel more than the order has
    ("E", 5, lambda r: 0xFFFFFFFF),                      # execute more than the order has
    ("D", 4, lambda r: r[4] ^ (1 << 45)),                # delete an order that never existed
    ("U", 5, lambda r: r[4]),                            # replace reusing the old reference
    ("A", 3, bytes(6)),                                   # time goes back to midnight
    ("A", 8, lambda r: r[8] + 1 if r[8] >= 10_000 else r[8] - r[8]),  # price off the grid / zero
])
def test_the_walker_catches_broken_days(code, field, value):
    """The reference walker is not a rubber stamp: single-field corruptions fail it."""
    data = generate_day(20_000, seed=5, stocks=20)
    verify(walk(data), 20)
    with pytest.raises(AssertionError):
        verify(walk(_mutated(data, code, field, value, nth=500)), 20)


@pytest.mark.parametrize("messages, stocks, close_all, seed", [
    (minimum_messages(1), 1, True, 0),
    (minimum_messages(300), 300, True, 1),
    (50_000, 7, False, 2),
    (123_457, 100, True, 3),
])
def test_small_and_odd_days_hold_every_invariant(messages, stocks, close_all, seed):
    msgs = walk(generate_day(messages, seed, stocks=stocks, close_all=close_all))
    assert len(msgs) == messages
    v = verify(msgs, stocks)
    assert sorted(v["directory"]) == list(range(1, stocks + 1))
    assert [e[0] for e in v["events"]] == [b"O", b"S", b"Q", b"M", b"E", b"C"]
    if close_all:
        assert v["book"].orders == {}
    else:
        assert v["book"].orders


def test_final_books_agree_with_itchcpp(day):
    """An independent C++ book (itchcpp) built from the same bytes ends with the same BBO."""
    book_mod = pytest.importorskip("itchcpp.book", reason="itchcpp (peer C++ book builder) not installed")
    data, _, v = day
    book, syms = v["book"], v["directory"]
    bm = book_mod.BookManager()
    for s in syms.values():
        bm.track_symbol(s.strip().decode())
    bm.process_stream(data.tobytes())
    for loc, s in syms.items():
        x = bm.book_for_symbol(s.strip().decode()).bbo()
        for side, has, price, shares in ((b"B", x.has_bid, x.bid_price, x.bid_shares),
                                         (b"S", x.has_ask, x.ask_price, x.ask_shares)):
            best = book.best(loc, side)
            assert has == (best is not None), (s, side)
            if best is not None:
                assert round(price * 10_000) == best, (s, side)
                assert shares == sum(book.orders[r][2] for r in book.levels[(loc, side, best)]), (s, side)
