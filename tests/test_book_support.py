"""Support for the book tests: an encoder that is not ours, a slow obvious reference book,
and a random-day writer. (No tests in this module; it is imported by the test_book* files.)

Messages are built with itchfeed's ``create_message(...).to_bytes()`` (itchcpp's C++ classes
when installed), so the engine is checked against bytes that our encoder did not write.
The reference book is plain dicts and lists, written for clarity, not speed; it applies the
messages from their field values, not from bytes.
"""

from __future__ import annotations

import struct
from collections import Counter, defaultdict

import numpy as np

from itch.messages import create_message

ANOMALY_KINDS = (
    "unknown_reference", "duplicate_add", "over_execution", "over_cancel", "replace_to_existing",
    "unknown_locate", "bad_side", "unknown_match", "duplicate_match", "locate_mismatch", "volume_overflow",
    "bad_printable", "directory_conflict", "zero_shares",
)
INT64_MAX = (1 << 63) - 1


def sym(s: str) -> bytes:
    return s.encode().ljust(8)


def wire(code: str, fields: dict) -> bytes:
    """One BinaryFILE-framed message written by itchfeed."""
    kw = dict(fields)
    kw.setdefault("tracking_number", 0)
    kw = {_ITCHFEED_NAMES.get((code, k), k): v for k, v in kw.items()}
    body = create_message(code.encode(), **kw).to_bytes()
    return struct.pack(">H", len(body)) + body


# Where itchfeed's attribute names differ from the specification's (ours).
_ITCHFEED_NAMES = {
    ("U", "original_order_reference_number"): "order_reference_number",
    ("R", "luld_reference_price_tier"): "luld_ref",
}


def directory(locate: int, symbol: str, ts: int = 0) -> dict:
    return dict(code="R", stock_locate=locate, timestamp=ts, stock=sym(symbol), market_category=b"Q",
                financial_status_indicator=b"N", round_lot_size=100, round_lots_only=b"N",
                issue_classification=b"C", issue_sub_type=b"Z ", authenticity=b"P",
                short_sale_threshold_indicator=b"N", ipo_flag=b"N", luld_reference_price_tier=b"1",
                etp_flag=b"N", etp_leverage_factor=0, inverse_indicator=b"N")


def add(locate, ref, side, shares, price, ts=0, symbol="X", mpid=None) -> dict:
    d = dict(code="A" if mpid is None else "F", stock_locate=locate, timestamp=ts,
             order_reference_number=ref, buy_sell_indicator=side.encode() if isinstance(side, str) else side,
             shares=shares, stock=sym(symbol), price=price)
    if mpid is not None:
        d["attribution"] = mpid.encode().ljust(4)
    return d


def execute(locate, ref, shares, match, ts=0) -> dict:
    return dict(code="E", stock_locate=locate, timestamp=ts, order_reference_number=ref,
                executed_shares=shares, match_number=match)


def execute_price(locate, ref, shares, match, price, printable="Y", ts=0) -> dict:
    return dict(code="C", stock_locate=locate, timestamp=ts, order_reference_number=ref,
                executed_shares=shares, match_number=match, printable=printable.encode(),
                execution_price=price)


def cancel(locate, ref, shares, ts=0) -> dict:
    return dict(code="X", stock_locate=locate, timestamp=ts, order_reference_number=ref,
                cancelled_shares=shares)


def delete(locate, ref, ts=0) -> dict:
    return dict(code="D", stock_locate=locate, timestamp=ts, order_reference_number=ref)


def replace(locate, old, new, shares, price, ts=0) -> dict:
    return dict(code="U", stock_locate=locate, timestamp=ts, original_order_reference_number=old,
                new_order_reference_number=new, shares=shares, price=price)


def trade(locate, shares, price, match, side="B", ts=0, symbol="X", ref=0) -> dict:
    return dict(code="P", stock_locate=locate, timestamp=ts, order_reference_number=ref,
                buy_sell_indicator=side.encode(), shares=shares, stock=sym(symbol), price=price,
                match_number=match)


def cross(locate, shares, price, match, ts=0, symbol="X", cross_type="O") -> dict:
    return dict(code="Q", stock_locate=locate, timestamp=ts, shares=shares, stock=sym(symbol),
                cross_price=price, match_number=match, cross_type=cross_type.encode())


def broken(locate, match, ts=0) -> dict:
    return dict(code="B", stock_locate=locate, timestamp=ts, match_number=match)


def halt(locate, state, ts=0, symbol="X") -> dict:
    return dict(code="H", stock_locate=locate, timestamp=ts, stock=sym(symbol), trading_state=state.encode(),
                reserved=b" ", reason=b"T1  ")


def encode(msgs: list[dict]) -> bytes:
    return b"".join(wire(m["code"], {k: v for k, v in m.items() if k != "code"}) for m in msgs)


class ReferenceBook:
    """The book, the slow obvious way: dicts of price -> list of refs in arrival order."""

    def __init__(self):
        self.orders = {}                      # ref -> [locate, side, price, shares, mpid]
        self.levels = defaultdict(dict)       # (locate, side) -> {price: [ref, ...]}
        self.symbols = {}                     # locate -> symbol text
        self.raw_symbols = {}                 # locate -> the R's 8 symbol bytes
        self.state = {}                       # locate -> trading state letter
        self.volume = Counter()
        self.notional = Counter()
        self.trade_count = Counter()
        self.matches = {}                     # match -> [locate, price, shares, counted, broken]
        self.anomalies = Counter()            # (kind, locate) -> n
        self.trades = []                      # (seq, locate, price, shares, match, kind, printable)
        self.bbo_events = []                  # (seq, locate, bid px, bid sz, ask px, ask sz)
        self.top = {}                         # (locate, side) -> (price, shares)
        self.seq = 0

    # -- helpers
    def _place(self, ref, locate, side, price, shares, mpid):
        self.orders[ref] = [locate, side, price, shares, mpid]
        self.levels[(locate, side)].setdefault(price, []).append(ref)

    def _remove(self, ref):
        locate, side, price, _, _ = self.orders.pop(ref)
        queue = self.levels[(locate, side)][price]
        queue.remove(ref)
        if not queue:
            del self.levels[(locate, side)][price]

    def _trade(self, locate, price, shares, match, kind, counted):
        if shares == 0 and kind != "Q":   # no share traded: recorded, not a trade (a Q of 0: no cross, as sent)
            self.anomalies[("zero_shares", locate)] += 1
            counted = False
        if counted and (shares >= 1 << 32 or self.volume[locate] + shares > INT64_MAX
                        or self.notional[locate] + shares * price > INT64_MAX):
            self.anomalies[("volume_overflow", locate)] += 1   # Python's ints do not overflow; the engine's do
            counted = False
        if counted:
            self.volume[locate] += shares
            self.notional[locate] += shares * price
            self.trade_count[locate] += 1
        if match in self.matches:
            self.anomalies[("duplicate_match", locate)] += 1
        else:
            self.matches[match] = [locate, price, shares, counted, False]
        self.trades.append((self.seq, locate, price, shares, match, kind, int(counted)))

    def depth(self, locate, side):
        """[(price, shares, orders)] best first."""
        lv = self.levels.get((locate, side), {})
        prices = sorted(lv, reverse=(side == "B"))
        return [(p, sum(self.orders[r][3] for r in lv[p]), len(lv[p])) for p in prices]

    def queue(self, locate, side, price):
        return [(r, self.orders[r][3], self.orders[r][4]) for r in self.levels.get((locate, side), {}).get(price, [])]

    def _check_top(self, locate):
        for side in "BS":
            d = self.depth(locate, side)
            top = (d[0][0], d[0][1]) if d else (0, 0)
            if self.top.get((locate, side), (0, 0)) != top:
                self.top[(locate, side)] = top
                b = self.top.get((locate, "B"), (0, 0))
                a = self.top.get((locate, "S"), (0, 0))
                self.bbo_events.append((self.seq, locate, b[0], b[1], a[0], a[1]))

    # -- the messages
    def apply(self, m: dict, seq: int):
        self.seq = seq
        code, loc = m["code"], m["stock_locate"]
        touched = None
        if code == "R":
            if self.raw_symbols.get(loc, bytes(8)) not in (bytes(8), m["stock"]):
                self.anomalies[("directory_conflict", loc)] += 1    # the locate renamed
            self.raw_symbols[loc] = m["stock"]
            self.symbols[loc] = m["stock"].decode().strip()
        elif code == "H":
            if self.symbols and loc not in self.symbols:
                self.anomalies[("unknown_locate", loc)] += 1
            self.state[loc] = m["trading_state"].decode()
        elif code in "AF":
            side = m["buy_sell_indicator"].decode()
            if side not in ("B", "S"):
                self.anomalies[("bad_side", loc)] += 1
                return
            if self.symbols and loc not in self.symbols:
                self.anomalies[("unknown_locate", loc)] += 1
            ref = m["order_reference_number"]
            if ref in self.orders:
                self.anomalies[("duplicate_add", loc)] += 1
                return
            if m["shares"] == 0:
                self.anomalies[("zero_shares", loc)] += 1
            self._place(ref, loc, side, m["price"], m["shares"], m.get("attribution", b"").decode().strip())
            touched = loc
        elif code in "EXDC":
            ref = m["order_reference_number"]
            if ref not in self.orders:
                self.anomalies[("unknown_reference", loc)] += 1
                return
            olocate, side, price, shares, _ = self.orders[ref]
            if olocate != loc:
                self.anomalies[("locate_mismatch", olocate)] += 1
            if code == "D":
                take = shares
            elif code == "X":
                take = m["cancelled_shares"]
                if take > shares:
                    self.anomalies[("over_cancel", olocate)] += 1
            else:
                take = m["executed_shares"]
                if take > shares:
                    self.anomalies[("over_execution", olocate)] += 1
                if code == "E":
                    self._trade(olocate, price, take, m["match_number"], "E", True)
                else:
                    if m["printable"] not in (b"Y", b"N"):
                        self.anomalies[("bad_printable", olocate)] += 1
                    self._trade(olocate, m["execution_price"], take, m["match_number"], "C",
                                m["printable"] != b"N")
            if take >= shares:
                self._remove(ref)
            else:
                self.orders[ref][3] -= take
            touched = olocate
        elif code == "U":
            old = m["original_order_reference_number"]
            if old not in self.orders:
                self.anomalies[("unknown_reference", loc)] += 1
                return
            olocate, side, _, _, mpid = self.orders[old]
            if olocate != loc:
                self.anomalies[("locate_mismatch", olocate)] += 1
            self._remove(old)
            new = m["new_order_reference_number"]
            if new in self.orders:
                self.anomalies[("replace_to_existing", olocate)] += 1
            else:
                if m["shares"] == 0:
                    self.anomalies[("zero_shares", olocate)] += 1
                self._place(new, olocate, side, m["price"], m["shares"], mpid)
            touched = olocate
        elif code in "PQ" and self.symbols and loc not in self.symbols:
            self.anomalies[("unknown_locate", loc)] += 1
        if code == "P":
            self._trade(loc, m["price"], m["shares"], m["match_number"], "P", True)
        elif code == "Q":
            self._trade(loc, m["cross_price"], m["shares"], m["match_number"], "Q", True)
        elif code == "B":
            t = self.matches.get(m["match_number"])
            if t is None or t[4]:
                self.anomalies[("unknown_match", loc)] += 1
                return
            t[4] = True
            tl, price, shares, counted, _ = t
            if counted:
                self.volume[tl] -= shares
                self.notional[tl] -= shares * price
                self.trade_count[tl] -= 1
            self.trades.append((seq, tl, price, shares, m["match_number"], "B", int(counted)))
        if touched is not None:
            self._check_top(touched)


def random_day(seed: int, n: int, stocks: int = 4, anomalies: bool = False, close_all: bool = False,
               ref_style: str = "random", cross_stock: bool = True) -> list[dict]:
    """A random stream of consistent messages (plus some inconsistent ones if asked).

    Prices sit on a small grid so levels collect several orders and books cross and lock;
    references are random 64-bit numbers (or strided/clustered ones) and never monotonic.
    cross_stock=False keeps every anomaly inside one stock (a duplicate add or a replace onto a
    live reference of the same stock, no header locate that is not the order's): what books
    sharded by stock see exactly as one thread does.
    """
    rng = np.random.default_rng(seed)
    names = [f"S{i}" for i in range(stocks)]
    msgs = [directory(i + 1, names[i]) for i in range(stocks)]
    live: dict[int, list] = {}          # ref -> [locate, side, shares]
    used_refs: set[int] = set()
    matches: list[int] = []
    next_match = [int(rng.integers(1, 1 << 40))]
    ts = 0

    def new_ref():
        while True:
            if ref_style == "strided":
                r = int(rng.integers(0, 1 << 20)) << 24
            elif ref_style == "dense":
                r = int(rng.integers(0, 4 * n + 16))
            else:
                r = int(rng.integers(0, 1 << 64, dtype=np.uint64))
            if r not in used_refs:
                used_refs.add(r)
                return r

    def match():
        next_match[0] += int(rng.integers(1, 3))
        matches.append(next_match[0])
        return next_match[0]

    for _ in range(n):
        ts += int(rng.integers(0, 1000))
        loc = int(rng.integers(1, stocks + 1))
        r = rng.random()
        if r < 0.40 or not live:
            side = "B" if rng.random() < 0.5 else "S"
            price = 10_000 * int(rng.integers(95, 106))
            ref = new_ref()
            mpid = None if rng.random() < 0.8 else ["GSCO", "MSCO", "NSDQ"][int(rng.integers(3))]
            msgs.append(add(loc, ref, side, int(rng.integers(1, 500)), price, ts, names[loc - 1], mpid))
            live[ref] = [loc, side, msgs[-1]["shares"]]
            continue
        refs = list(live)
        ref = refs[int(rng.integers(len(refs)))]
        oloc, side, shares = live[ref]
        if shares == 0:   # a 0-share order (an anomaly below): only a delete takes it away cleanly
            msgs.append(delete(oloc, ref, ts))
            del live[ref]
            continue
        if r < 0.58:
            msgs.append(delete(oloc, ref, ts))
            del live[ref]
        elif r < 0.68:
            k = int(rng.integers(1, shares + 1))
            msgs.append(execute(oloc, ref, k, match(), ts))
            if k == shares:
                del live[ref]
            else:
                live[ref][2] -= k
        elif r < 0.72:
            k = int(rng.integers(1, shares + 1))
            msgs.append(execute_price(oloc, ref, k, match(), 10_000 * int(rng.integers(95, 106)),
                                      "Y" if rng.random() < 0.6 else "N", ts))
            if k == shares:
                del live[ref]
            else:
                live[ref][2] -= k
        elif r < 0.80:
            if shares > 1:
                k = int(rng.integers(1, shares))
                msgs.append(cancel(oloc, ref, k, ts))
                live[ref][2] -= k
        elif r < 0.92:
            new = new_ref()
            k = int(rng.integers(1, 500))
            msgs.append(replace(oloc, ref, new, k, 10_000 * int(rng.integers(95, 106)), ts))
            del live[ref]
            live[new] = [oloc, side, k]
        elif r < 0.95:
            msgs.append(trade(loc, int(rng.integers(1, 300)), 10_000 * int(rng.integers(95, 106)), match(),
                              ts=ts, symbol=names[loc - 1]))
        elif r < 0.96:
            msgs.append(cross(loc, int(rng.integers(0, 5000)), 1_000_000, match(), ts, names[loc - 1]))
        elif r < 0.97 and matches:
            msgs.append(broken(loc, matches.pop(int(rng.integers(len(matches)))), ts))
        elif r < 0.975:
            msgs.append(halt(loc, "HPQT"[int(rng.integers(4))], ts, names[loc - 1]))
        if anomalies and rng.random() < 0.05:
            kind = int(rng.integers(11))
            bogus = new_ref()
            if kind == 0:
                msgs.append(delete(loc, bogus, ts))
            elif kind == 1 and live:
                r2 = list(live)[0]
                if not cross_stock:
                    loc = live[r2][0]
                msgs.append(add(loc, r2, "B", 10, 1_000_000, ts, names[loc - 1]))      # duplicate add
            elif kind == 2 and live:
                r2 = list(live)[-1]
                l2, _, s2 = live.pop(r2)
                msgs.append(execute(l2, r2, s2 + 5, match(), ts))                      # over-execution
            elif kind == 3 and live:
                r2 = list(live)[-1]
                l2, _, s2 = live.pop(r2)
                msgs.append(cancel(l2, r2, s2 + 1, ts))                                # over-cancel
            elif kind == 4 and len(live) > 1:
                r1, r2 = list(live)[:2]
                if not cross_stock:
                    same = [r for r in live if live[r][0] == live[r1][0] and r != r1]
                    r2 = same[0] if same else None
                if r2 is not None:
                    l1 = live.pop(r1)[0]
                    msgs.append(replace(l1, r1, r2, 10, 1_000_000, ts))                # replace onto a live ref
            elif kind == 5:
                msgs.append(broken(loc, bogus, ts))                                     # unknown match
            elif kind == 6:
                msgs.append(add(loc, bogus, "X", 10, 1_000_000, ts, names[loc - 1]))    # bad side
            elif kind == 7 and live and cross_stock:
                r2 = list(live)[-1]
                l2 = live[r2][0]
                msgs.append(delete(l2 % stocks + 1, r2, ts))                           # wrong locate
                del live[r2]
            elif kind == 8:
                msgs.append(replace(loc, bogus, new_ref(), 10, 1_000_000, ts))          # unknown U
            elif kind == 9:
                msgs.append(add(loc, bogus, "BS"[int(rng.integers(2))], 0, 10_000 * int(rng.integers(95, 106)),
                                ts, names[loc - 1]))                                    # a 0-share add
                live[bogus] = [loc, msgs[-1]["buy_sell_indicator"].decode(), 0]
            elif kind == 10 and live:
                r2 = list(live)[-1]
                l2, s2, _ = live.pop(r2)
                new = new_ref()
                msgs.append(replace(l2, r2, new, 0, 10_000 * int(rng.integers(95, 106)), ts))  # a 0-share U
                live[new] = [l2, s2, 0]
    if close_all:
        for ref, (loc, _, _) in list(live.items()):
            msgs.append(delete(loc, ref, ts))
        live.clear()
    return msgs


def quote(books, symbol) -> tuple[int, int, int, int]:
    """Books.bbo's one row for a symbol as (bid price, bid shares, ask price, ask shares)."""
    q = books.bbo(symbol)
    assert len(q) == 1
    return tuple(int(q[f][0]) for f in ("bid_price", "bid_shares", "ask_price", "ask_shares"))
