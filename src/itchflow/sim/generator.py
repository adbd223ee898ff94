"""A realistic synthetic Nasdaq TotalView-ITCH 5.0 trading day, as BinaryFILE bytes.

``generate_day(messages, seed)`` returns the day in memory; ``write_day(path, ...)`` streams
it to a file (optionally gzipped) in bounded chunks, so a day of 100 M+ messages needs only
the book state and one output chunk in memory. The same seed gives the same bytes, however
the output is chunked.

What the day looks like (each point is checked by tests/test_generator.py):

- System events O S Q M E C: O around 03:0x, S at 04:00, Q at 09:30, M at 16:00, E at
  20:00, C at 20:05. Timestamps never decrease.
- Before any trading: one ``R`` (stock directory) per stock, locates 1..K in symbol order,
  real tickers mixed with synthetic ones; a ``Y`` (Reg SHO) and an ``H`` (trading) per stock;
  ``L`` market-maker positions; one ``V`` (MWCB levels).
- Order flow (A, F, D, U, X, E) with the type mix of a real day (01302019), stocks chosen by
  a Zipf law (a few very active names, a long tail), prices on a random walk per stock on the
  tick grid (a cent at or above $1, $0.0001 below). Every D/E/C/X/U names a live order;
  executions never exceed what is left and remove the order exactly at zero; X always leaves
  at least one share; U gives a brand-new reference, new total shares and price. References
  are unique over the day but not monotonic (several interleaved ranges with jumps, within
  the low ~40 bits). Most executions take the head of the best level; a few (about 0.1-0.2%)
  take the order behind it. Executions sometimes sweep several orders in one timestamp.
- Pre-open books (04:00-09:30) may be crossed or locked; the opening cross at 09:30 uncrosses
  every stock with ``C`` executions (printable N) at one price and prints a ``Q``; from then
  on bids stay below asks. The closing cross at 16:00 executes at the touch (``C``, N) and
  prints a ``Q``. ``I`` (NOII) messages run 09:25-09:30 and 15:50-16:00. ``P`` (hidden trades)
  and ``C`` with price through the day; a few ``B`` break earlier match numbers (each with
  the locate and tracking number of the trade it breaks); a halt or more (H 'H' LUDP, a ``J``
  collar, H 'T', a halt cross ``Q`` 'H').
- Bursts: 1,000+ messages within one millisecond just after 09:30 and just before 16:00
  (for days of 250 k messages and more).
- ``close_all=True``: before the E event every live order is deleted, so a book built from
  the day ends empty.

The day's shape (``profile=`` and the knobs of SHAPE_KNOBS; tests/test_generator_profiles.py):
``concentration`` is the Zipf exponent above (default 1.1); ``live_orders`` adds orders that
rest all day, far from the touch, spread over the flow up to about 10:00 and topped up after,
until that many orders are live (D/X/U never pick them; executions may reach them);
``depth`` widens the busiest books' ladders (each stock its own width) and puts one resting
order on each of ``depth / rank`` levels of one side; ``ref_span`` puts the reference ranges inside
1..ref_span, sized by use, with jumps sized to fill ~90% of each (a range that runs full hands
out references past ref_span rather than repeat one); ``sub_dollar`` and ``high_priced`` set the
shares of stocks below $1 and above $1,000. ``profile="fullday"`` sets them all to a real day's
(PROFILES). The knobs draw from a random stream of their own and cost nothing when unused, so a
day that leaves them at their defaults keeps its bytes (tests/test_generator_bytes.py).

Message count: exactly ``messages``. (With ``close_all`` the final purge is fitted into the
budget; if a pathological setting ever left more live orders than messages to spend, the
purge wins and the day runs over: ``write_day`` reports the true count.) Days smaller than
``minimum_messages(stocks)`` are refused.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import time
from typing import Callable

import numpy as np

from itchflow.sinks.output import output_file
from itchflow.wire.itch import MESSAGES, PRICE8_SCALE, WIRE_DTYPES

# The real day the type mix is modelled on (01302019).
REAL_DAY = {
    "A": 162_970_455, "D": 158_273_361, "U": 27_222_746, "E": 8_096_995, "X": 4_669_874,
    "I": 3_684_511, "F": 1_725_898, "P": 1_326_184, "L": 193_769, "C": 158_886, "Q": 17_430,
    "Y": 8_821, "H": 8_805, "R": 8_714, "B": 116, "J": 62, "S": 6, "V": 1,
}
REAL_DAY_MESSAGES = 368_366_634

Progress = Callable[[int, int], None]  # (messages so far, bytes so far)

_NS = 1_000_000_000


def _hms(h: int, m: int = 0, s: int = 0, ns: int = 0) -> int:
    return ((h * 60 + m) * 60 + s) * _NS + ns


# Real tickers and their listing market (R market category: Q/G/S Nasdaq tiers, N NYSE,
# P NYSE Arca, A NYSE American, Z Cboe BZX).
_REAL_TICKERS = (
    "AAPL:Q MSFT:Q AMZN:Q GOOGL:Q GOOG:Q FB:Q NVDA:Q TSLA:Q INTC:Q CSCO:Q CMCSA:Q PEP:Q ADBE:Q "
    "NFLX:Q AMD:Q QCOM:Q TXN:Q AVGO:Q COST:Q SBUX:Q GILD:Q AMGN:Q MU:Q BIDU:Q JD:Q PYPL:Q "
    "BKNG:Q ISRG:Q MDLZ:Q CHTR:Q INTU:Q ADP:Q CSX:Q VRTX:Q REGN:Q ATVI:Q EA:Q EBAY:Q WBA:Q "
    "ILMN:Q BIIB:Q MAR:Q ORLY:Q KHC:Q LRCX:Q AMAT:Q KLAC:Q MCHP:Q ADI:Q NXPI:Q SIRI:Q FAST:Q "
    "PAYX:Q CTAS:Q ROST:Q DLTR:Q QQQ:G TQQQ:G SQQQ:G ZNGA:S PLUG:S SIRI:Q FIT:N "
    "IBM:N GE:N F:N BAC:N JPM:N WFC:N C:N XOM:N CVX:N T:N VZ:N KO:N PFE:N MRK:N JNJ:N PG:N "
    "DIS:N WMT:N HD:N MCD:N NKE:N BA:N CAT:N MMM:N GS:N MS:N UNH:N V:N MA:N ORCL:N CHK:N "
    "SPY:P IWM:P XLF:P EEM:P GLD:P SLV:P USO:P TLT:P XLE:P VXX:Z UVXY:P DIA:P EFA:P HYG:P "
    "GDX:P XLK:P SNAP:N UBER:N SQ:N NOK:N ITUB:N VALE:N ABEV:N GGB:N SIRI:Q BBBY:Q GPRO:Q"
)
_MPIDS = ("NITE", "GSCO", "MSCO", "UBSS", "CDRG", "VIRT", "JPMS", "SBSH", "ETMM", "MLCO",
          "CITD", "IMCC", "HRTF", "TMBR", "SUSQ", "JNST", "CANT", "BARD", "RBCM", "DBAB",
          "FBCO", "NMRA", "BMOC", "GTSM", "ARCA", "NSDQ")
_NASDAQ_TIERS = b"QGS"


def minimum_messages(stocks: int) -> int:
    """The smallest day ``generate_day`` accepts for this many stocks."""
    return 60 * stocks + 10_000


def check_enough_messages(messages: int, stocks: int) -> None:
    """ShapeError when a day of this many messages is too small for its stocks."""
    if messages < minimum_messages(stocks):
        raise ShapeError("messages", f"a day of {stocks} stocks needs at least {minimum_messages(stocks):,} "
                         f"messages (asked for {messages:,})")


# The day's shape: what a benchmark varies. None means "as the default day has it" (those
# settings leave the default day's bytes exactly as they were).
SHAPE_KNOBS = {
    "stocks": "stocks (locates 1..K)",
    "concentration": "Zipf exponent of each stock's share of the order flow (share of the stock of "
                     "activity rank r ~ 1/r**a: larger = a few very busy stocks, most quiet)",
    "live_orders": "peak live-order population to reach, independent of the message count (orders that "
                   "rest all day far from the touch are added over the first part of the day)",
    "depth": "price levels on one side of the busiest book (the next busiest get depth/rank)",
    "ref_span": "order references spread over 1..ref_span (interleaved ranges, not monotonic); "
                "default: ranges spaced 2**37 apart",
    "sub_dollar": "share of stocks priced below $1 (ticks of $0.0001)",
    "high_priced": "share of stocks priced above $1,000 (ticks of a cent)",
}
DEFAULT_SHAPE = {"stocks": 100, "concentration": 1.1, "live_orders": None, "depth": None,
                 "ref_span": None, "sub_dollar": 0.05, "high_priced": 0.0}
# 01302019 / 12302019 (DESIGN.md section 3): ~8,700 stocks with books, peak live orders 1.74 M,
# 4,227 levels on one side, references up to 308.6 M and not monotonic. The concentration
# and the price bands are not published there: a Zipf exponent of 0.9 puts ~6.5% of the flow
# on the busiest of 8,700 stocks (about a quarter on the top 10); 6% of stocks below $1, 1% above $1,000.
PROFILES = {
    "default": dict(DEFAULT_SHAPE),
    "fullday": {"stocks": 8700, "concentration": 0.9, "live_orders": 1_740_000, "depth": 4227,
                "ref_span": 310_000_000, "sub_dollar": 0.06, "high_priced": 0.01},
}
# A profile's live-order population is capped at this share of the day's messages (each live
# order costs at least one add), so a named profile works at any message count.
PROFILE_LIVE_SHARE = 0.15
_MAX_REST_SHARE = 0.6  # resting adds may take at most this share of the day's messages


# A real day is 0.3-1 billion messages; past this a day would take terabytes and its order
# arrays (sized by the message count) more memory than any machine here has.
MAX_MESSAGES = 10_000_000_000
MEAN_MESSAGE_BYTES = 31   # framed, on a generated day of any profile (30.5-30.8 measured)


class ShapeError(ValueError):
    """A day-shape knob out of its range; ``knob`` names it (``gen`` shows it as its option)."""

    def __init__(self, knob: str, message: str):
        super().__init__(message)
        self.knob = knob


def check_messages(messages: int) -> None:
    if not 0 < messages <= MAX_MESSAGES:
        raise ShapeError("messages", f"a generated day has 1 to {MAX_MESSAGES:,} messages (asked for {messages:,}; "
                         f"a real day has about {REAL_DAY_MESSAGES:,})")


def resolve_shape(messages: int, profile: str | None = None, **overrides) -> dict:
    """The day's shape: a named profile (default ``"default"``), then any knob given (not None)."""
    check_messages(messages)
    name = profile or "default"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})")
    shape = dict(PROFILES[name])
    unknown = set(overrides) - set(SHAPE_KNOBS)
    if unknown:
        raise TypeError(f"unknown day-shape knob(s): {', '.join(sorted(unknown))}")
    if shape["live_orders"] is not None and overrides.get("live_orders") is None:
        shape["live_orders"] = min(shape["live_orders"], int(PROFILE_LIVE_SHARE * messages))
    for key, value in overrides.items():
        if value is not None:
            shape[key] = value
    shape["profile"] = name
    check_shape(shape)
    live = shape["live_orders"]
    # before any array is sized by it (1e12 asked for 7 TiB: probe 23); the day makes at least
    # live_orders orders that rest all day (more with deep books), so this is never looser
    # than the check made once they are drawn
    if live is not None and live > _MAX_REST_SHARE * messages:
        raise ShapeError("live_orders", f"{live:,} live orders need as many orders resting all day, which "
                                        f"need a day of at least {int(live / _MAX_REST_SHARE):,} messages "
                                        f"(asked for {messages:,})")
    check_memory(messages, live)
    return shape


# What generating takes beyond the output (measured: 170 MB for 20 M messages, 49 more bytes
# per live order): order slots of 41 bytes, for 3 x the orders that come and go and every
# resting order, and the resting orders' draws
_BASE_BYTES = 200 << 20
_SLOT_BYTES = 56


def memory_needed(messages: int, live_orders: int | None) -> int:
    """About the bytes of memory generating this day takes (its order state), whatever the
    output: the state grows with the day and was found only by running out (probe 32: 10 G
    messages and 1.4 G live orders passed 4 GB in 33 s, on their way to about 80)."""
    target_live = max(5 * MAX_STOCKS, int(0.004 * messages))
    return _BASE_BYTES + _SLOT_BYTES * (3 * target_live + 10_000 + int(live_orders or 0))


def check_memory(messages: int, live_orders: int | None) -> None:
    """ShapeError naming the knob when the day's state cannot fit the memory available."""
    from itchflow.hw.memory import available_bytes

    need, free = memory_needed(messages, live_orders), available_bytes()
    if free is not None and need > free:
        knob = "live_orders" if live_orders and _SLOT_BYTES * live_orders > need // 2 else "messages"
        live = f" and {live_orders:,} live orders" if live_orders else ""
        raise ShapeError(knob, f"a day of {messages:,} messages{live} takes about {need / 2 ** 30:,.1f} GiB of "
                               f"memory to generate; this machine has {free / 2 ** 30:,.1f} GiB available")


MAX_STOCKS = 20_000
MAX_CONCENTRATION = 10.0   # past this the busiest stock already has all but 1e-3 of the flow
MIN_DEPTH = 64             # fewer deep levels than this the flow makes by itself (a few dozen)
MAX_DEPTH = 100_000


def check_shape(shape: dict) -> None:
    """Refuse a shape whose knobs are out of range, naming the knob (``ShapeError``)."""
    conc, sub, high = shape["concentration"], shape["sub_dollar"], shape["high_priced"]
    if not 1 <= shape["stocks"] <= MAX_STOCKS:
        raise ShapeError("stocks", f"stocks must be between 1 and {MAX_STOCKS} (asked for {shape['stocks']})")
    if not 0 < conc <= MAX_CONCENTRATION:   # also refuses NaN and infinity
        raise ShapeError("concentration", f"concentration (the Zipf exponent) must be > 0 and at most "
                                          f"{MAX_CONCENTRATION:g} (asked for {conc})")
    for knob, share in (("sub_dollar", sub), ("high_priced", high)):
        if not 0 <= share <= 1:
            raise ShapeError(knob, f"{knob} is a share of the stocks, 0..1 (asked for {share})")
    if sub + high > 1:
        raise ShapeError("high_priced", f"sub_dollar and high_priced are shares of the stocks, together at most 1 "
                                        f"(sub_dollar {sub} + high_priced {high}; either may be its default or "
                                        f"the profile's: give both)")
    if shape["live_orders"] is not None and shape["live_orders"] < 0:
        raise ShapeError("live_orders", "live_orders must be >= 0")
    depth = shape["depth"]
    if depth is not None and not MIN_DEPTH <= depth <= MAX_DEPTH:
        raise ShapeError("depth", f"depth must be between {MIN_DEPTH} and {MAX_DEPTH} levels (asked for {depth}; "
                                  f"the flow alone makes a few dozen: leave it out for that)")
    span = shape["ref_span"]
    if span is not None and not 1_000_000 <= span < 1 << 62:
        raise ShapeError("ref_span", f"ref_span must be at least 1e6 and below 2**62 (asked for {span})")


def _symbols(rng: np.random.Generator, k: int) -> tuple[list[bytes], list[bytes], list[bool]]:
    """K unique symbols (about 60% real tickers, the rest synthetic), sorted as Nasdaq sorts
    locates; with their market category and whether the ticker is real."""
    real = {}
    for item in _REAL_TICKERS.split():
        sym, cat = item.split(":")
        real.setdefault(sym, cat)
    names = list(real)
    rng.shuffle(names)
    n_real = min(len(names), max(1, round(0.6 * k)))
    chosen = {n: real[n].encode() for n in names[:n_real]}
    letters = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)
    while len(chosen) < k:
        length = int(rng.choice([2, 3, 4, 4, 4, 5], p=[0.05, 0.2, 0.25, 0.25, 0.2, 0.05]))
        sym = bytes(rng.choice(letters, length)).decode()
        if sym in chosen or sym in real:
            continue
        if length >= 4:
            cat = bytes([_NASDAQ_TIERS[int(rng.integers(3))]])
        else:
            cat = (b"N", b"N", b"P", b"A", b"Z")[int(rng.integers(5))]
        chosen[sym] = cat
    syms = sorted(chosen)
    return ([s.encode().ljust(8) for s in syms], [chosen[s] for s in syms], [s in real for s in syms])


class _Plan:
    """The day's fixed parameters, stocks and phase table, and all the mutable state."""

    def __init__(self, messages: int, seed: int, stocks: int, close_all: bool, shape: dict | None = None):
        from itchflow.sim import state as gk
        from itchflow.sim.phases import run  # the compiled kernel: loaded on first use

        shape = dict(shape or resolve_shape(messages, stocks=stocks))
        shape["stocks"] = stocks
        self.shape = shape
        conc, live_orders, depth = shape["concentration"], shape["live_orders"], shape["depth"]
        ref_span, sub_frac, high_frac = shape["ref_span"], shape["sub_dollar"], shape["high_priced"]
        check_shape(shape)
        # The new knobs draw from their own stream, so a day that does not use them keeps its bytes.
        rng2 = np.random.default_rng([seed, 0x17C4F10, 2])
        check_enough_messages(messages, stocks)
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.gk = gk
        self._run = run
        self.messages, self.seed, self.stocks, self.close_all = messages, seed, stocks, close_all
        rng = np.random.default_rng([seed, 0x17C4F10])
        n, k = messages, stocks
        frac = {c: v / REAL_DAY_MESSAGES for c, v in REAL_DAY.items()}

        # ---- stocks
        w = 2048
        while w > 256 and 2 * (k + 1) * w > (1 << 23):
            w //= 2
        syms, cats, _is_real = _symbols(rng, k)
        sym_arr = np.zeros((k + 1, 8), np.uint8)
        sym_arr[0] = np.frombuffer(b" " * 8, np.uint8)
        for i, s in enumerate(syms):
            sym_arr[i + 1] = np.frombuffer(s, np.uint8)
        rank = rng.permutation(k)
        weight = 1.0 / (rank + 1.0) ** conc
        cdf = np.cumsum(weight / weight.sum())
        cdf[-1] = 1.0
        sub_dollar = rng.random(k) < sub_frac
        sub_dollar[0 if k == 1 else rank.argmin()] = False  # the most active name trades in cents
        tick = np.where(sub_dollar, 1, 100).astype(np.int64)
        start = np.where(sub_dollar, rng.integers(1_200, 8_500, k),
                         np.round(np.exp(rng.uniform(np.log(2.0), np.log(400.0), k)) * 100) * 100)
        start = start.astype(np.int64)
        if high_frac > 0:  # a few stocks above $1,000 (cent ticks)
            high = (rng2.random(k) < high_frac) & ~sub_dollar
            dollars = np.exp(rng2.uniform(np.log(1_000.0), np.log(5_000.0), k))
            start = np.where(high, np.round(dollars * 100).astype(np.int64) * 100, start)
        self.st_start = start
        # Ladder width per stock: the default day gives every stock w ticks; a deep-book day widens
        # the busiest stocks' ladders to hold `depth / activity rank` levels on one side.
        want = np.zeros(k, np.int64)
        deep_gap = 96  # the deep levels start this many ticks above the starting price
        if depth is not None:
            want = np.floor(depth / (rank + 1.0)).astype(np.int64)
            want[want < 64] = 0  # a stock that would get fewer than 64 deep levels gets none
        need = 2 * (deep_gap + want + want // 16 + 512)
        widths = np.where(want > 0, np.maximum(w, (need + 63) // 64 * 64), w).astype(np.int64)
        base = np.maximum(tick, start - (widths // 2) * tick)
        fair = np.clip((start - base) // tick, widths // 8 + 1, widths - widths // 8 - 1)

        def per_stock(values, dtype=np.int64, fill=0):
            a = np.full(k + 1, fill, dtype)
            a[1:] = values
            return a

        self.st_sym = sym_arr
        self.st_cdf = cdf
        self.st_fair = per_stock(fair)
        self.st_best = np.empty((k + 1, 2), np.int64)
        self.st_best[:, gk.BUY] = -1
        self.st_best[:, gk.SELL] = per_stock(widths, fill=w)
        # lad[s] = (offset of the bid ladder in lv_head, width); the ask ladder follows the bid one.
        self.lad = np.zeros((k + 1, 2), np.int64)
        self.lad[:, 1] = per_stock(widths, fill=w)
        self.lad[1:, 0] = 2 * np.cumsum(self.lad[:-1, 1])[:k]
        self.st_nside = np.zeros((k + 1, 2), np.int64)
        self.st_tick = per_stock(tick, fill=100)
        self.st_base = per_stock(base, fill=100)
        self.st_halted = np.zeros(k + 1, np.uint8)
        self.st_track = per_stock(rng.integers(1, 16, k))
        self.st_mul = per_stock(np.where(sub_dollar, 10, 1))
        self.st_close_n = per_stock(rng.integers(0, 3, k) + np.where(rank < max(1, k // 10), 4, 0))

        # ---- counts that do not come from the order flow
        halts = max(1, k // 100) if n >= 20_000 else 0
        self.halts = halts
        l_total = max(round(frac["L"] * n), k // 4)
        l_admin = (l_total * 7) // 10
        l_intraday = l_total - l_admin
        i_total = round(frac["I"] * n)
        i_open = i_total // 3
        p_total = round(frac["P"] * n)
        est_cross_c = int(self.st_close_n.sum()) + k
        c_extra = max(round(0.3 * frac["C"] * n), round(frac["C"] * n) - est_cross_c)
        b_total = max(round(frac["B"] * n), min(3, n // 30_000))
        burst = min(2_000, max(50, n // 250))
        self.burst = burst

        # ---- directory block (R, Y, H, L per stock, after one V)
        t_open = _hms(3, 2) + int(rng.integers(0, 180 * _NS))
        self.admin_blob, self.admin_off = self._admin(rng, t_open, syms, cats, l_admin)
        n_admin = len(self.admin_off) - 1

        # ---- phases: (kind, t0, t1, share, fixed, arg, extras, noii cross type)
        # close_all with a resting population: the last phase must have room to delete it all.
        last_share = 0.07
        purge = max(int(live_orders or 0), int((want + want // 16).sum()))
        if close_all and purge:
            x = min(0.9, 1.25 * purge / n)
            last_share = max(last_share, 0.865 * x / (1.0 - x))
        P = gk
        ex = lambda **kw: kw  # noqa: E731
        t_s = _hms(4)
        t_q = _hms(9, 30)
        t_m = _hms(16)
        phases = [
            (P.PH_SYS, t_open, t_open, 0.0, -1, ord("O"), {}, 0),
            (P.PH_ADMIN, t_open, t_open, 0.0, -1, 0, {}, 0),
            (P.PH_SYS, t_s, t_s, 0.0, -1, ord("S"), {}, 0),
            (P.PH_FLOW, t_s, _hms(9, 25), 0.045, -1, P.FL_ALLOW_CROSS, ex(P=1, C=1, L=1), 0),
            (P.PH_FLOW, _hms(9, 25), t_q, 0.02, -1, P.FL_ALLOW_CROSS, ex(P=1, C=1), ord("O")),
            (P.PH_SYS, t_q, t_q, 0.0, -1, ord("Q"), {}, 0),
            # (bursts fill exactly one millisecond of the clock)
            (P.PH_CROSS, t_q + 1_000, t_q + 2_000_000, 0.0, -1, ord("O"), {}, 0),
            (P.PH_FLOW, t_q + 2_000_000, t_q + 3_000_000, 0.0, burst, 0, {}, 0),
            (P.PH_FLOW, t_q + 3_000_000, _hms(10), 0.14, -1, 0, ex(P=1, C=1, L=1, B=1), 0),
            (P.PH_FLOW, _hms(10), _hms(15, 30), 0.50, -1, 0, ex(P=1, C=1, L=1, B=1, HALT=1), 0),
            (P.PH_FLOW, _hms(15, 30), _hms(15, 50), 0.08, -1, 0, ex(P=1, C=1, L=1, B=1), 0),
            (P.PH_FLOW, _hms(15, 50), t_m - 1_000_000, 0.08, -1, 0, ex(P=1, C=1), ord("C")),
            (P.PH_FLOW, t_m - 1_000_000, t_m, 0.0, burst, 0, {}, 0),
            (P.PH_SYS, t_m, t_m, 0.0, -1, ord("M"), {}, 0),
            (P.PH_CROSS, t_m + 1_000, t_m + 1_500_000, 0.0, -1, ord("C"), {}, 0),
            (P.PH_FLOW, t_m + 1_500_000, _hms(20), last_share, -1, P.FL_LAST, ex(P=1, C=1, L=1), 0),
            (P.PH_SYS, _hms(20), _hms(20), 0.0, -1, ord("E"), {}, 0),
            (P.PH_SYS, _hms(20, 5), _hms(20, 5), 0.0, -1, ord("C"), {}, 0),
            (P.PH_END, 0, 0, 0.0, -1, 0, {}, 0),
        ]
        totals = {"P": p_total, "C": c_extra, "L": l_intraday, "B": b_total, "HALT": halts}
        cols = {"I": P.EX_I, "L": P.EX_L, "P": P.EX_P, "C": P.EX_C, "B": P.EX_B, "HALT": P.EX_HALT}
        nph = len(phases)
        self.ph_kind = np.array([ph[0] for ph in phases], np.int64)
        self.ph_t0 = np.array([ph[1] for ph in phases], np.int64)
        self.ph_t1 = np.array([ph[2] for ph in phases], np.int64)
        self.ph_share = np.array([ph[3] for ph in phases], np.float64)
        self.ph_fixed = np.array([ph[4] for ph in phases], np.int64)
        self.ph_arg = np.array([ph[5] for ph in phases], np.int64)
        self.ph_extra = np.zeros((nph, P.N_EXTRA + 1), np.int64)
        for kind in totals:
            sharing = [i for i, ph in enumerate(phases) if kind in ph[6]]
            wsum = sum(phases[i][3] for i in sharing)
            given = 0
            for j, i in enumerate(sharing):
                v = totals[kind] - given if j == len(sharing) - 1 else round(totals[kind] * phases[i][3] / wsum)
                self.ph_extra[i, cols[kind]] = v
                given += v
        for i, ph in enumerate(phases):
            self.ph_extra[i, P.N_EXTRA] = ph[7]
            if ph[7] == ord("O"):
                self.ph_extra[i, P.EX_I] = i_open
            elif ph[7] == ord("C"):
                self.ph_extra[i, P.EX_I] = i_total - i_open
        # What later non-flow phases will take, so each flow phase knows its share of the rest.
        est = np.zeros(nph, np.int64)
        for i, ph in enumerate(phases):
            if ph[0] == P.PH_SYS:
                est[i] = 1
            elif ph[0] == P.PH_ADMIN:
                est[i] = n_admin
            elif ph[0] == P.PH_CROSS:
                est[i] = k + (2 * k if ph[5] == ord("O") else int(self.st_close_n.sum()))
            elif ph[0] == P.PH_FLOW and ph[4] >= 0:
                est[i] = ph[4]
        self.ph_reserve = np.array([est[i + 1:].sum() for i in range(nph)], np.int64)

        # ---- order flow mix (among A F D U X E), sweeps accounted for
        flow = {c: frac[c] for c in "AFDUXE"}
        tot = sum(flow.values())
        flow = {c: v / tot for c, v in flow.items()}
        per_event = 1.0 + gk.FULL_EXEC_P * gk.SWEEP_P / (1.0 - gk.FULL_EXEC_P * gk.SWEEP_MORE)
        z = 1.0 / ((1.0 - flow["E"]) + flow["E"] / per_event)
        probs = [flow["A"] * z, flow["F"] * z, flow["D"] * z, flow["U"] * z, flow["X"] * z,
                 flow["E"] * z / per_event]
        self.flow_p = np.cumsum(probs)
        self.flow_p[-1] = 1.0

        # ---- orders
        target_live = int(max(5 * k, 0.004 * n))  # of the orders that come and go
        # Orders that rest all day: enough to bring the population to live_orders, and one per
        # level of the deep books.
        rest_stock, rest_side, rest_off = self._resting(rng2, k, w, cdf, fair, widths, want, deep_gap,
                                                        live_orders, target_live)
        n_rest = len(rest_stock)
        if n_rest > _MAX_REST_SHARE * n:
            raise ShapeError("live_orders" if live_orders is not None else "depth",
                             f"{n_rest:,} orders resting all day (for live_orders={live_orders} and "
                             f"depth={depth}) need a day of at least {int(n_rest / _MAX_REST_SHARE):,} "
                             f"messages (asked for {n:,})")
        self.rest_stock, self.rest_side, self.rest_off = rest_stock, rest_side, rest_off
        cap = 3 * target_live + 10_000
        slots = cap + n_rest  # resting orders take slots cap.. (not on the free list)
        self.o_ref = np.zeros(slots, np.int64)
        self.o_stock = np.zeros(slots, np.int32)
        self.o_side = np.zeros(slots, np.int8)
        self.o_shares = np.zeros(slots, np.int64)
        self.o_price = np.zeros(slots, np.int32)
        self.o_prev = np.full(slots, -1, np.int32)
        self.o_next = np.arange(1, slots + 1, dtype=np.int32)
        self.o_next[cap - 1:] = -1
        self.o_lpos = np.zeros(slots, np.int32)
        self.live = np.zeros(slots, np.int32)
        self.lv_head = np.full(2 * int(self.lad[:, 1].sum()), -1, np.int32)
        self.lv_tail = np.full(len(self.lv_head), -1, np.int32)
        self.mring = np.zeros(gk.MRING, np.int64)
        self.mpids = np.frombuffer(b"".join(m.encode() for m in _MPIDS), np.uint8).reshape(-1, 4).copy()
        self.reasons = np.frombuffer(b"LUDP    ", np.uint8).reshape(2, 4).copy()
        # Order references: several interleaved ranges in the low 40 bits.
        streams = 8
        self.refctr = np.array([int(rng.integers(1, 1 << 20))] +
                               [j * (1 << 37) + int(rng.integers(1, 1 << 34)) for j in range(1, streams)],
                               np.int64)
        self.ref_end = np.full(streams, 1 << 62, np.int64)
        ref_jump, ref_jump_ppm, ref_spill = 5000, 10_000, 1 << 62
        if ref_span is not None:
            # Range j gets a share of 1..ref_span in proportion to how often it is used (half the
            # references come from range 0), and jumps are sized so the expected references fill
            # about 90% of each range: the largest reaches ~0.99 ref_span.
            use = np.array([0.5] + [0.5 / (streams - 1)] * (streams - 1))
            starts = 1 + np.floor(np.concatenate([[0.0], np.cumsum(use)[:-1]]) * ref_span).astype(np.int64)
            self.ref_end[:-1] = starts[1:]
            self.ref_end[-1] = ref_span + 1
            self.refctr[:] = starts + rng2.integers(0, 64, streams)
            expected_refs = 0.52 * n + n_rest  # A + F + U of a real day, and the resting orders
            if expected_refs > 0.8 * ref_span:
                raise ShapeError("ref_span", f"ref_span {ref_span:,} is too small for the ~{int(expected_refs):,} order "
                                 f"references of this day (give at least {int(expected_refs / 0.8):,})")
            ref_jump_ppm = 250_000
            mean_step = 0.9 * ref_span / max(expected_refs, 1.0)
            ref_jump = max(1, int(2 * (mean_step - 1) / 0.25))
            ref_spill = ref_span + 1
        self.counts = np.zeros(256, np.int64)
        self.g = np.zeros(gk.G_SIZE, np.int64)
        g = self.g
        g[gk.G_N], g[gk.G_K], g[gk.G_W] = n, k, w
        g[gk.G_CAP], g[gk.G_TARGET_LIVE], g[gk.G_CLOSE_ALL] = cap, target_live, int(close_all)
        g[gk.G_NOII_NEXT] = 1
        g[gk.G_MATCH] = int(rng.integers(1_000, 100_000))
        g[gk.G_REF_JUMP], g[gk.G_REF_JUMP_PPM], g[gk.G_REF_SPILL] = ref_jump, ref_jump_ppm, ref_spill
        # Resting orders are spread evenly over the flow up to about 10:00 (a fifth of the day's
        # messages), or longer when there are more of them.
        g[gk.G_REST_N] = n_rest
        g[gk.G_REST_SLOT] = cap
        g[gk.G_REST_FROM] = n_admin + 2
        g[gk.G_REST_OVER] = max(int(0.2 * n), int(n_rest / 0.85)) if n_rest else 1
        g[gk.G_REST_CAP] = int(live_orders) if live_orders is not None else 1 << 62
        self.rng = _xoshiro_seed(seed)

    @staticmethod
    def _resting(rng2, k, w, cdf, fair, widths, want, deep_gap, live_orders, target_live):
        """The orders that rest all day, in the order they are added: (stock, side, offset),
        offset >= 0 ticks away from the fair price at the time, or -(tick + 1) for a level of a
        deep book (one order per level beyond the starting price, on one side)."""
        stocks, sides, offs = [], [], []
        for i in np.flatnonzero(want):
            d = int(want[i] + want[i] // 16)  # a few spare levels: executions may take some
            # The deep side: the bids when there is room under the price (half the time), else the asks.
            bid = rng2.random() < 0.5 and fair[i] - deep_gap - d >= 1
            ticks = fair[i] - deep_gap - np.arange(d) if bid else fair[i] + deep_gap + np.arange(d)
            stocks.append(np.full(d, i + 1, np.int32))
            sides.append(np.full(d, 0 if bid else 1, np.int8))
            offs.append(-(ticks + 1).astype(np.int32))
        n_deep = sum(len(x) for x in stocks)
        n_more = 0
        if live_orders is not None:
            # Enough for the whole population even if no other order were live: the kernel stops
            # adding them while live orders are at live_orders (G_REST_CAP).
            n_more = max(0, int(live_orders) - n_deep)
        if n_more:
            u = rng2.random(n_more)
            st = np.searchsorted(cdf, rng2.random(n_more), side="right").astype(np.int32) + 1
            st = np.minimum(st, k)
            half = np.minimum(widths[st - 1], w) // 2  # (the deep levels are the deep books' own)
            stocks.append(st)
            sides.append((u < 0.5).astype(np.int8))
            offs.append((4 + (half - 40) * rng2.random(n_more) ** 2).astype(np.int32))
        if not stocks:
            e = np.zeros(0, np.int32)
            return e, np.zeros(0, np.int8), e.copy()
        # Random order, but the deep levels all within about the first half (the kernel may not need
        # the last resting orders: see G_REST_CAP).
        keys = np.concatenate([0.5 * rng2.random(n_deep), rng2.random(n_more)])
        order = np.argsort(keys, kind="stable")
        return (np.concatenate(stocks)[order], np.concatenate(sides)[order], np.concatenate(offs)[order])

    def _admin(self, rng, t_open, syms, cats, l_admin):
        """The directory block as framed bytes with timestamps: V, then R, Y, H, L per stock."""
        k = len(syms)
        per_l = np.bincount(rng.integers(0, k, l_admin), minlength=k) if l_admin else np.zeros(k, int)
        rows: list[bytes] = []
        kinds: list[str] = []

        def rec(code, **fields):
            a = np.zeros(1, WIRE_DTYPES[code])
            a["length_prefix"] = MESSAGES[code].length
            a["message_type"] = code.encode()
            for name, v in fields.items():
                a[name] = v
            rows.append(a.tobytes())
            kinds.append(code)

        v_base = 2_700.0 * (0.9 + 0.2 * rng.random())
        rec("V", level_1=round(v_base * 0.93 * PRICE8_SCALE), level_2=round(v_base * 0.87 * PRICE8_SCALE),
            level_3=round(v_base * 0.80 * PRICE8_SCALE))
        track = self.st_track
        for i, (sym, cat) in enumerate(zip(syms, cats)):
            loc = i + 1
            nasdaq = cat in (b"Q", b"G", b"S")
            etp = sym.strip() in (b"QQQ", b"TQQQ", b"SQQQ", b"SPY", b"IWM", b"XLF", b"EEM", b"GLD",
                                  b"SLV", b"USO", b"TLT", b"XLE", b"VXX", b"UVXY", b"DIA", b"EFA",
                                  b"HYG", b"GDX", b"XLK")
            common = dict(stock_locate=loc, tracking_number=int(track[loc]), stock=sym)
            rec("R", **common, market_category=cat, financial_status_indicator=b"N" if nasdaq else b" ",
                round_lot_size=100, round_lots_only=b"N", issue_classification=b"Q" if etp else b"C",
                issue_sub_type=b"E " if etp else b"Z ", authenticity=b"P",
                short_sale_threshold_indicator=b"N" if nasdaq else b" ", ipo_flag=b"N" if nasdaq else b" ",
                luld_reference_price_tier=b"1" if (etp or rng.random() < 0.3) else b"2",
                etp_flag=b"Y" if etp else b"N", etp_leverage_factor=1 if etp else 0,
                inverse_indicator=b"Y" if sym.strip() == b"SQQQ" else b"N")
            rec("Y", **common, reg_sho_action=b"0" if rng.random() < 0.97 else b"1")
            rec("H", **common, trading_state=b"T", reserved=b" ", reason=b"    ")
            for _ in range(int(per_l[i])):
                rec("L", **common, mpid=_MPIDS[int(rng.integers(len(_MPIDS)))].encode(),
                    primary_market_maker=b"Y" if rng.random() < 0.1 else b"N",
                    market_maker_mode=b"N", market_participant_state=b"A")
        # Timestamps: spread over the first minute after the O event, in small clusters.
        n = len(rows)
        gaps = np.where(rng.random(n) < 0.5, 0, rng.exponential(2 * 60 * _NS / max(n, 1), n)).astype(np.int64)
        ts = t_open + 20_000 + np.cumsum(gaps)
        blob = bytearray()
        off = [0]
        ts_field = MESSAGES["A"].field("timestamp")
        for row, t in zip(rows, ts):
            b = bytearray(row)
            b[2 + ts_field.offset: 2 + ts_field.offset + ts_field.size] = int(t).to_bytes(ts_field.size, "big")
            blob += b
            off.append(len(blob))
        return np.frombuffer(bytes(blob), np.uint8).copy(), np.array(off, np.int64)

    def fill(self, out: np.ndarray) -> int:
        """Write the next whole messages into out; returns the bytes written (0 when done)."""
        return self._run(
            out, self.g, self.rng, self.refctr, self.counts, self.flow_p,
            self.ph_kind, self.ph_t0, self.ph_t1, self.ph_share, self.ph_fixed, self.ph_reserve,
            self.ph_arg, self.ph_extra, self.admin_blob, self.admin_off,
            self.st_sym, self.st_cdf, self.st_fair, self.st_best, self.st_nside, self.st_tick,
            self.st_base, self.st_halted, self.st_track, self.st_mul, self.st_close_n,
            self.lad, self.lv_head, self.lv_tail,
            self.o_ref, self.o_stock, self.o_side, self.o_shares, self.o_price, self.o_prev,
            self.o_next, self.o_lpos, self.live, self.mring, self.mpids, self.reasons,
            self.rest_stock, self.rest_side, self.rest_off, self.ref_end)

    @property
    def done(self) -> bool:
        return bool(self.g[self.gk.G_DONE])

    @property
    def emitted(self) -> int:
        return int(self.g[self.gk.G_EMITTED])

    def deepest_side(self) -> int:
        """Most non-empty price levels on one side of one book, now."""
        filled = self.lv_head != -1
        ends = 2 * np.cumsum(self.lad[:, 1])
        starts = ends - 2 * self.lad[:, 1]
        best = 0
        for a, e, w in zip(starts, ends, self.lad[:, 1]):
            best = max(best, int(filled[a:a + w].sum()), int(filled[a + w:e].sum()))
        return best

    def summary(self, nbytes: int, seconds: float) -> dict:
        gk = self.gk
        by_type = {chr(c): int(v) for c, v in enumerate(self.counts) if v}
        share = np.diff(np.concatenate([[0.0], self.st_cdf]))
        top = np.sort(share)[::-1]
        price = self.st_start / 10_000
        return {
            "messages": self.emitted,
            "bytes": nbytes,
            "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
            "stocks": self.stocks,
            "seed": self.seed,
            "close_all": self.close_all,
            "live_orders_at_end": int(self.g[gk.G_LIVE]),
            "non_head_executions": int(self.g[gk.G_NONHEAD]),
            "seconds": seconds,
            # the day's shape: the knobs as set, and what came of them
            "shape": dict(self.shape),
            "flow_share_top": {str(t): float(top[:t].sum()) for t in (1, 10, 100)},
            "peak_live_orders": int(self.g[gk.G_PEAK_LIVE]),
            "resting_orders": len(self.rest_stock),
            "resting_at_end": int(self.g[gk.G_RESTING]),
            "deepest_side_at_end": self.deepest_side(),
            "max_order_ref": int(self.g[gk.G_MAX_REF]),
            "prices": {"below_1": int((price < 1).sum()), "1_to_1000": int(((price >= 1) & (price <= 1000)).sum()),
                       "above_1000": int((price > 1000).sum())},
        }


def _xoshiro_seed(seed: int) -> np.ndarray:
    """xoshiro256** state from a seed, through splitmix64 (as its authors recommend)."""
    mask = (1 << 64) - 1
    x = (seed * 0x9E3779B97F4A7C15 + 0x5851F42D4C957F2D) & mask
    out = []
    for _ in range(4):
        x = (x + 0x9E3779B97F4A7C15) & mask
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return np.array(out, np.uint64)


def _chunks(plan: _Plan, chunk_bytes: int):
    buf = np.empty(max(chunk_bytes, 4096), np.uint8)
    while not plan.done:
        n = plan.fill(buf)
        if n:
            yield buf[:n]


_WARM = []   # the kernels compiled (or loaded from the cache) in this process


def _warm_up() -> None:
    """Compile (or load) the generator's kernels on a small day once a process, so that a
    day's ``seconds`` and rate are the generator's, not the compiler's (a first run reported
    27.8 s, 0.01 M msg/s, for a 0.2 s day)."""
    if not _WARM:
        plan = _plan(minimum_messages(1), 1, 1, False, None, {})
        next(_chunks(plan, 1 << 16), None)
        _WARM.append(True)


def _plan(messages: int, seed: int, stocks: int | None, close_all: bool, profile: str | None, knobs: dict) -> _Plan:
    shape = resolve_shape(messages, profile, stocks=stocks, **knobs)
    return _Plan(messages, seed, shape["stocks"], close_all, shape)


def generate_day(messages: int, seed: int, stocks: int | None = None, close_all: bool = False, *,
                 profile: str | None = None, **knobs) -> np.ndarray:
    """A synthetic trading day of exactly ``messages`` messages as a uint8 array of
    BinaryFILE-framed ITCH 5.0 (see the module docstring for what is in it).

    The day's shape: ``profile`` (``"default"``: 100 stocks; ``"fullday"``: the published
    statistics of a real day, see PROFILES) and any of the knobs in SHAPE_KNOBS
    (concentration, live_orders, depth, ref_span, sub_dollar, high_priced) over it."""
    plan = _plan(messages, seed, stocks, close_all, profile, knobs)
    parts = [c.copy() for c in _chunks(plan, min(64 << 20, messages * 40 + 4096))]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


@contextlib.contextmanager
def _open_out(path: str, gz: bool, name: str):
    """The file at path, gzipped when gz; the gzip header carries name (the final file's, not
    the ``.part`` one it is written under)."""
    with open(path, "wb") as raw:
        if not gz:
            yield raw
            return
        try:
            from isal.igzip import IGzipFile as GzipFile
        except ImportError:  # pragma: no cover - isal is a dependency on x86-64/aarch64
            GzipFile = gzip.GzipFile
        with GzipFile(filename=os.path.basename(name), mode="wb", compresslevel=1, fileobj=raw) as f:
            yield f


def write_day(path: str | os.PathLike, messages: int, seed: int, stocks: int | None = None, gz: bool = False,
              close_all: bool = False, progress: Progress | None = None,
              chunk_bytes: int = 8 << 20, *, profile: str | None = None, **knobs) -> dict:
    """Write a synthetic day to ``path`` (gzipped when gz), one bounded chunk at a time.

    Returns a summary: messages, bytes (uncompressed), by_type counts, stocks, seed,
    close_all, live_orders_at_end, non_head_executions, seconds, and the day's shape (the
    knobs as set; flow_share_top: the busiest 1/10/100 stocks' share of the order flow the
    concentration implies; peak_live_orders, resting_orders, deepest_side_at_end,
    max_order_ref, price bands). progress(messages, bytes) is called after each chunk.
    profile and knobs: as generate_day.
    """
    plan = _plan(messages, seed, stocks, close_all, profile, knobs)
    _warm_up()
    t0 = time.perf_counter()
    nbytes = 0
    with output_file(path) as tmp, _open_out(tmp, gz, os.fspath(path)) as f:  # a cut day is never left behind
        for chunk in _chunks(plan, chunk_bytes):
            f.write(memoryview(chunk))
            nbytes += len(chunk)
            if progress is not None:
                progress(plan.emitted, nbytes)
    return plan.summary(nbytes, time.perf_counter() - t0)


def day_summary(messages: int, seed: int, stocks: int | None = None, close_all: bool = False,
                chunk_bytes: int = 8 << 20, *, profile: str | None = None, **knobs) -> dict:
    """Generate a day without keeping it (for benchmarks): the same summary as write_day."""
    plan = _plan(messages, seed, stocks, close_all, profile, knobs)
    _warm_up()
    t0 = time.perf_counter()
    nbytes = sum(len(c) for c in _chunks(plan, chunk_bytes))
    return plan.summary(nbytes, time.perf_counter() - t0)
