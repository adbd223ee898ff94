"""Clock-driven bars: per stock and fixed interval, the quote and the trades.

Intervals are half-open ``[t, t + every)`` on a grid from ``start`` (default 09:30) to
``end`` (default 16:00), every stock gets every interval (a dense panel: every stock named,
else every stock with a quote or a trade that day). Per row:

- the quote at the end of the interval: best bid and ask (dollars; NaN for an empty side, one
  without a level: a level at price 0 is a quote of 0.0) and their shares: on a day in time
  order, the book after every message stamped before the interval's end. Where time goes
  back, it is the stock's quote before the first of its own quote changes (in file order)
  stamped at or after the end: a later change stamped earlier counts at the later stamp
  (``Books.timestamps_backwards`` counts such days; the command says so);
- ``spread``: the time-weighted spread (ask - bid, dollars) over the part of the interval
  in which both sides were quoted (a locked or crossed book counts, with its zero or
  negative spread); ``two_sided_ns`` that part's length; NaN when it is zero;
- trade bars from printable executions (E, C with printable Y) and P (hidden) trades:
  open, high, low, close, vwap (dollars; NaN without trades), volume (shares) and count.
  C with printable N (the executions of a cross, printed in bulk by the Q) is left out, as
  the book leaves it out of volume. Q (cross) prints are not in the bars: they are in
  ``cross_volume`` (and in ``itchflow.auctions``). A trade that a B message breaks (at any
  later time of the day) is taken out of its bar altogether, as the book takes it back out
  of the stock's volume, and a trade the book does not count (``volume_overflow``: a Q of
  2**32 shares or more; ``zero_shares``: a trade of 0 shares, whose price no share traded
  at) is in neither column: so the day's volume plus cross volume of a stock equals the
  book's ``volume`` when the grid covers every trade.

Quotes come from the engine's BBO events (fed through a compiled kernel slice by slice, so
the memory is the panel plus one slice); trades from its trade events, which are kept until
the end of the day because a break can come hours after its trade.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit

from itchflow.sinks import _book_access as access
from itchflow.sinks._symbols import check_locates, resolve_symbols, stock_keys, symbol_list
from itchflow.sinks._clock import DAY_NS, clock_ns, every_ns

_KIND_E, _KIND_C, _KIND_P, _KIND_Q = (ord(c) for c in "ECPQ")
# state columns per slot: time accounted up to, bid price, bid shares, ask price, ask shares
_S_T, _S_BID, _S_BIDSZ, _S_ASK, _S_ASKSZ = range(5)


@njit(inline="always", nogil=True, cache=True)
def _quoted(price, shares):
    """Whether a side of a BBO event holds a level: the engine gives an empty side as price 0
    and 0 shares; a level at price 0 is a real quote (probe 26: it was shown as NaN)."""
    return price != 0 or shares != 0


def _side_dollars(price: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """A side's quote in dollars, NaN where the side is empty (price 0 and 0 shares)."""
    return np.where((price != 0) | (shares != 0), price / 1e4, np.nan)


@njit(nogil=True, cache=True)
def _advance(s, t, t0, step, tend, state, quote, spread_int, two_sided):
    """Account slot s's current quote from where it was accounted up to time t (clamped to
    the grid, t0..tend): spread x time per interval, and the quote of every interval that
    ends (the last one at tend, which a step that does not divide the window cuts short)."""
    if t < t0:
        t = t0
    if t > tend:
        t = tend
    cur = state[s, _S_T]
    bid = state[s, _S_BID]
    ask = state[s, _S_ASK]
    both = _quoted(bid, state[s, _S_BIDSZ]) and _quoted(ask, state[s, _S_ASKSZ])
    while cur < t:
        b = (cur - t0) // step
        bar_end = min(t0 + (b + 1) * step, tend)
        seg_end = bar_end if bar_end < t else t
        if both:
            spread_int[s, b] += float(ask - bid) * float(seg_end - cur)
            two_sided[s, b] += seg_end - cur
        if seg_end == bar_end:
            quote[s, b, 0] = bid
            quote[s, b, 1] = state[s, _S_BIDSZ]
            quote[s, b, 2] = ask
            quote[s, b, 3] = state[s, _S_ASKSZ]
        cur = seg_end
    if cur > state[s, _S_T]:
        state[s, _S_T] = cur


@njit(nogil=True, cache=True)
def quote_bars_update(slot_of, locate, ts, bid, bid_sz, ask, ask_sz, t0, step, tend,
                      state, quote, spread_int, two_sided):
    """Feed BBO events (in sequence order) into the per-slot interval accumulators."""
    n = len(ts)
    if not (len(locate) == n and len(bid) == n and len(bid_sz) == n and len(ask) == n and len(ask_sz) == n):
        return -1
    for i in range(n):
        loc = locate[i]
        if loc < 0 or loc >= len(slot_of):
            return -1
        s = slot_of[loc]
        if s < 0:
            continue
        _advance(s, ts[i], t0, step, tend, state, quote, spread_int, two_sided)
        state[s, _S_BID] = bid[i]
        state[s, _S_BIDSZ] = bid_sz[i]
        state[s, _S_ASK] = ask[i]
        state[s, _S_ASKSZ] = ask_sz[i]
    return 0


@njit(nogil=True, cache=True)
def quote_bars_finish(nslots, t0, step, tend, state, quote, spread_int, two_sided):
    for s in range(nslots):
        _advance(s, tend, t0, step, tend, state, quote, spread_int, two_sided)


# What one cell (a stock x an interval) of the panel costs at the peak, accumulators, trade
# bars and the Arrow table together: measured at ~290 bytes on 8.6 M cells (1 s bars of 100
# stocks over 24 h: 2.85 GB).
CELL_BYTES = 300
_SMALLER = "name fewer symbols, a longer interval or a shorter window (start/end)"   # what makes a panel fit


def check_panel_fits(stocks: int, nbars: int, every: str) -> None:
    """Refuse a panel larger than the memory this machine has available, before it is built
    (np.zeros would hand out untouched pages and the process would grow until killed)."""
    from itchflow.hw.memory import available_bytes

    need, free = stocks * nbars * CELL_BYTES, available_bytes()
    if free is not None and need > free:
        raise ValueError(f"bars: {stocks:,} stock(s) x {nbars:,} intervals of {every} is about {need / 1e9:,.1f} GB "
                         f"in memory ({CELL_BYTES} bytes a cell), more than the {free / 1e9:,.1f} GB available: "
                         f"{_SMALLER}")


class _Panel:
    """Per-stock accumulators, a slot per stock in order of first sight (grown on demand)."""

    def __init__(self, t0: int, step: int, nbars: int, tend: int, every: str = ""):
        self.t0, self.step, self.nbars, self.tend, self.every = t0, step, nbars, tend, every
        self.slot_of = np.full(1 << 16, -1, np.int64)
        self.locates: list[int] = []
        self._alloc(16)

    def _alloc(self, cap: int) -> None:
        check_panel_fits(len(self.locates) + 1, self.nbars, self.every)  # slots past it stay untouched
        old = getattr(self, "state", None)
        try:
            state = np.zeros((cap, 5), np.int64)
            state[:, _S_T] = self.t0
            quote = np.zeros((cap, self.nbars, 4), np.int64)
            spread = np.zeros((cap, self.nbars), np.float64)
            two = np.zeros((cap, self.nbars), np.int64)
        except MemoryError:
            # the slots are allocated cap at a time (untouched pages cost nothing until used),
            # but the system may refuse the address space itself: the same refusal, not a traceback
            raise ValueError(f"bars: {cap:,} stock slot(s) x {self.nbars:,} intervals of {self.every} could not be "
                             f"allocated (about {cap * self.nbars * 48 / 1e9:,.1f} GB of accumulators): "
                             f"{_SMALLER}") from None
        if old is not None:
            n = len(self.locates)
            state[:n], quote[:n], spread[:n], two[:n] = self.state[:n], self.quote[:n], self.spread[:n], self.two[:n]
        self.state, self.quote, self.spread, self.two = state, quote, spread, two

    def slots_for(self, locates: np.ndarray) -> None:
        for loc in np.unique(locates).tolist():
            if self.slot_of[loc] < 0:
                if len(self.locates) == len(self.state):
                    self._alloc(2 * len(self.state))
                self.slot_of[loc] = len(self.locates)
                self.locates.append(int(loc))

    def feed(self, bbo: dict[str, np.ndarray]) -> None:
        if not len(bbo["timestamp"]):
            return
        self.slots_for(bbo["stock_locate"])
        rc = quote_bars_update(self.slot_of, bbo["stock_locate"], bbo["timestamp"], bbo["bid_price"],
                               bbo["bid_shares"], bbo["ask_price"], bbo["ask_shares"], self.t0, self.step,
                               self.tend, self.state, self.quote, self.spread, self.two)
        if rc != 0:  # pragma: no cover - the adapter hands over equal-length columns
            raise RuntimeError("bars: malformed BBO event columns")

    def finish(self) -> None:
        check_panel_fits(len(self.locates), self.nbars, self.every)  # trade bars and the table come next
        quote_bars_finish(len(self.locates), self.t0, self.step, self.tend, self.state, self.quote,
                          self.spread, self.two)


def trade_bars(trades: dict[str, np.ndarray], slot_of: np.ndarray, nslots: int, t0: int, step: int,
               nbars: int, tend: int, past_the_day: dict | None = None) -> dict[str, np.ndarray]:
    """OHLC, volume, notional, count and cross volume per (slot, interval), vectorised;
    past_the_day (``bars``') filled with the trades and shares a bar would count stamped at or
    after 24:00."""
    size = nslots * nbars
    out = {"open": np.full(size, np.nan), "high": np.full(size, np.nan), "low": np.full(size, np.nan),
           "close": np.full(size, np.nan), "volume": np.zeros(size, np.int64),
           "notional": np.zeros(size, np.int64), "count": np.zeros(size, np.int64),
           "cross_volume": np.zeros(size, np.int64)}
    if not trades or not len(trades["timestamp"]):
        return out
    kind, ts = trades["kind"], trades["timestamp"]
    broken = access.broken_mask(trades)
    if past_the_day is not None:
        # the trades a bar would hold, were they in the day (counted, not broken, a share or more:
        # probe 40), on the bars' own broken mask (it was computed twice); the chosen stocks' only
        late = ((ts >= DAY_NS) & (trades["printable"] == 1) & (trades["shares"] > 0) & ~broken
                & np.isin(kind, [_KIND_E, _KIND_C, _KIND_P, _KIND_Q]))
        past_the_day.update(trades=int(np.count_nonzero(late)), shares=int(trades["shares"][late].sum()))
    slot = slot_of[trades["stock_locate"]]
    in_grid = (ts >= t0) & (ts < tend) & (slot >= 0) & ~broken
    cell = slot * nbars + (ts - t0) // np.int64(step)
    # printable is the engine's "counted": a Q of 2**32 shares or more is not (volume_overflow)
    crosses = in_grid & (kind == _KIND_Q) & (trades["printable"] == 1)
    np.add.at(out["cross_volume"], cell[crosses], trades["shares"][crosses])
    bar = in_grid & np.isin(kind, [_KIND_E, _KIND_C, _KIND_P]) & (trades["printable"] == 1)
    cell, price, shares = cell[bar], trades["price"][bar], trades["shares"][bar]
    if not len(cell):
        return out
    order = np.argsort(cell, kind="stable")  # time order kept within a cell
    cell, price, shares = cell[order], price[order], shares[order]
    first = np.flatnonzero(np.concatenate([[True], cell[1:] != cell[:-1]]))
    last = np.concatenate([first[1:], [len(cell)]]) - 1
    cells = cell[first]
    dollars = price / 1e4
    out["open"][cells] = dollars[first]
    out["close"][cells] = dollars[last]
    out["high"][cells] = np.maximum.reduceat(dollars, first)
    out["low"][cells] = np.minimum.reduceat(dollars, first)
    out["volume"][cells] = np.add.reduceat(shares, first)
    out["notional"][cells] = np.add.reduceat(shares * price, first)
    out["count"][cells] = last - first + 1
    return out


def bars_window(every, start, end) -> tuple[int, int, int]:
    """Checked (step, start, end) in ns of a bars request (the batch job checks its options
    with it before any task runs)."""
    step = every_ns(every)
    t0 = 0 if start is None else clock_ns(start, "start")
    tend = DAY_NS if end is None else clock_ns(end, "end")
    if tend <= t0:
        raise ValueError("bars: end must be after start")
    return step, t0, tend


def bars(source, every="1min", symbols=None, *, start="09:30", end="16:00",
         progress: Callable[[int, int], None] | None = None, capture_stats: dict | None = None,
         on_books: Callable[[object], None] | None = None, past_the_day: dict | None = None):
    """Quote and trade bars per stock and interval, as a pyarrow Table (``.to_pandas()``).

    every: '1s', '1min', '500ms', ... or seconds; symbols: list or comma-separated text
    (None = every stock that has a quote or a trade); start/end: 'HH:MM[:SS]' or ns after
    midnight (None = the whole day). Columns: symbol, stock_locate, start_ns and end_ns (the
    interval, ns after midnight; the last one ends at ``end`` when ``every`` does not divide
    the window), bid, bid_size, ask, ask_size, spread, two_sided_ns, open,
    high, low, close, volume, vwap, count, cross_volume. Rows by symbol then time.
    capture_stats: filled with a capture's gaps and malformed packets (as ``replay``'s).
    on_books: called with the Books at the end of the day (their counters: messages, anomalies).
    past_the_day: filled with {"trades": n, "shares": s}, the trades a bar would count (in volume
    or cross volume, not broken) stamped at or after 24:00 (the field runs to 78 h): in no bar
    whatever the window, so the volume does not reconcile (said nothing: probe 38).
    """
    step, t0, tend = bars_window(every, start, end)
    nbars = -(-(tend - t0) // step)
    syms = None
    if symbols is not None:   # a name of digits: that locate (sinks._symbols), as book and trades take it
        syms = stock_keys(symbol_list(symbols, "bars"))
    every_text = every if isinstance(every, str) else f"{every} s"
    check_panel_fits(len(syms) if syms else 1, nbars, every_text)
    panel = _Panel(t0, step, nbars, tend, every_text)
    trade_parts: list[dict] = []

    def on_events(ev: dict) -> None:
        panel.feed(ev["bbo"])
        t = ev["trades"]
        if len(t["timestamp"]):
            panel.slots_for(t["stock_locate"][t["kind"] != ord("B")])
            trade_parts.append(t)

    books = access.replay_events(source, syms, bbo=True, trades=True, on_events=on_events, progress=progress,
                                 capture_stats=capture_stats)
    if on_books is not None:
        on_books(books)
    names = access.directory(books)
    if syms is not None:
        known = resolve_symbols(names, [s for s in syms if isinstance(s, str)], "bars")
        check_locates(books, syms, "bars: ")
        panel.slots_for(np.array([known[s] if isinstance(s, str) else s for s in syms], np.int64))
    panel.finish()
    nslots = len(panel.locates)
    trades = trade_bars(access.concat_columns(trade_parts), panel.slot_of, nslots, t0, step, nbars, tend,
                        past_the_day)
    return _table(panel, trades, names, nslots, t0, step, nbars, tend)


def _table(panel: _Panel, trades: dict, names: dict, nslots: int, t0: int, step: int, nbars: int, tend: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    locs = np.array(panel.locates, np.int64)
    by_symbol = np.argsort(np.array([names.get(int(l), str(int(l))) for l in locs], dtype=object), kind="stable") \
        if nslots else np.zeros(0, np.int64)
    rows = (by_symbol[:, None] * nbars + np.arange(nbars)[None, :]).ravel()
    slot = rows // nbars if nslots else np.zeros(0, np.int64)
    q = panel.quote[:nslots].reshape(-1, 4)[rows]
    spread_int = panel.spread[:nslots].ravel()[rows]
    two = panel.two[:nslots].ravel()[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(two > 0, spread_int / np.maximum(two, 1) / 1e4, np.nan)
        vwap = np.where(trades["volume"][rows] > 0, trades["notional"][rows] / trades["volume"][rows] / 1e4, np.nan)
    sym_names = pa.array([names.get(int(l), str(int(l))) for l in locs], pa.string())
    return pa.table({
        "symbol": pc.take(sym_names, pa.array(slot)),
        "stock_locate": pa.array(locs[slot].astype(np.uint16)),
        "start_ns": pa.array(t0 + (rows % nbars) * np.int64(step)),
        "end_ns": pa.array(np.minimum(t0 + (rows % nbars + 1) * np.int64(step), tend)),
        "bid": pa.array(_side_dollars(q[:, 0], q[:, 1])),
        "bid_size": pa.array(q[:, 1]),
        "ask": pa.array(_side_dollars(q[:, 2], q[:, 3])),
        "ask_size": pa.array(q[:, 3]),
        "spread": pa.array(spread),
        "two_sided_ns": pa.array(two),
        "open": pa.array(trades["open"][rows]),
        "high": pa.array(trades["high"][rows]),
        "low": pa.array(trades["low"][rows]),
        "close": pa.array(trades["close"][rows]),
        "volume": pa.array(trades["volume"][rows]),
        "vwap": pa.array(vwap),
        "count": pa.array(trades["count"][rows]),
        "cross_volume": pa.array(trades["cross_volume"][rows]),
    })
