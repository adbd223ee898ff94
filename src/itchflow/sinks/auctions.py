"""Auctions: every cross (Q) of the day and the imbalance (NOII, I) messages leading into it.

Two tables, both per stock in time order:

- ``crosses``: one row per Q: symbol (the locate's R name; the message's own stock field
  where the day has no R for it), stock_locate, timestamp_ns, cross_type (O opening,
  C closing, H halt or IPO, I intraday / post-close), price (dollars), shares,
  match_number, broken (a B broke it, as the books do: the B names its match number, it is
  the first trade of that number before the B, and no earlier B broke it; a B that comes
  first, or a number an execution used before the cross, breaks something else).
- ``imbalances``: one row per I: symbol, stock_locate, timestamp_ns, cross_type (O, C, H,
  A extended-hours close), paired_shares, imbalance_shares, imbalance_direction (B buy,
  S sell, N none, O not enough orders to calculate, P paused), signed_imbalance (int64:
  +shares for B, -shares for S, 0 otherwise; null for a B or S whose imbalance_shares, an
  8-byte unsigned field, is beyond 2**63 - 1, which no int64 holds: exact wherever given,
  never wrapped or rounded, and no real imbalance comes near), far_price, near_price,
  reference_price (dollars; NaN where the feed sends 0, i.e. no price, or a value past
  Price(4)'s largest, 200,000.0000, e.g. 0x7FFFFFFF, counted), price_variation
  (the indicator letter), and the cross it leads into: ``cross_ns``/``cross_row`` (timestamp and row in ``crosses`` of
  the first Q of the same stock and cross type at or after it; null when none follows).

Only decoded R, Q, I and B messages are read (``itchflow.scan``, piece by piece): no book,
unless a B names a cross's match number (a handful of B a day, rarely a cross's): then the
day is replayed once, recording those stocks' trades, so that ``broken`` is the books' own
answer (``itchflow.book.events.mark_broken`` over the engine's trade events).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from itchflow.arguments import INT64_MAX
from itchflow.book.events import byte_text
from itchflow.hw.join import join
from itchflow.sinks._symbols import resolve_symbols, symbol_list
from itchflow.wire.itch import DTYPES, alpha_text

_TYPES = "RQIB"


class Auctions(NamedTuple):
    crosses: object      # pyarrow.Table
    imbalances: object   # pyarrow.Table


def _collect(source, symbols, capture_stats: dict | None = None, read_stats: dict | None = None):
    from itchflow.decode.reader import scan

    parts = {c: [] for c in _TYPES}
    counts = {"messages": 0, "by_type": {}, "unknown_by_type": {}}
    # renumbered: crosses are ordered and paired by sequence, and an anonymised capture's
    # packets (all of sequence 0) would give many messages one number
    for piece in scan(source, _TYPES, chunk_messages=1 << 21, capture_stats=capture_stats, renumber=True):
        for c in _TYPES:
            if len(piece[c]):
                parts[c].append(piece[c])
        counts["messages"] += piece.info.messages
        for key in ("by_type", "unknown_by_type"):
            for c, n in getattr(piece.info, key).items():
                if n:
                    counts[key][c] = counts[key].get(c, 0) + n
    if read_stats is not None:
        read_stats.update(counts)
    arrs = {c: join(p, DTYPES[c]) for c, p in parts.items()}
    r = arrs["R"]
    names = {int(loc): alpha_text(s) for loc, s in zip(r["stock_locate"], r["stock"])}
    # a locate the day has no R for is named by its messages' own stock field, for the table
    # and for --symbols alike (the table named it so, and -s refused the name: probe 19)
    for c in "IQ":
        locs, first = np.unique(arrs[c]["stock_locate"], return_index=True)
        for loc, k in zip(locs.tolist(), first.tolist()):
            if loc not in names:
                names[loc] = alpha_text(arrs[c]["stock"][k]) or str(loc)
    if symbols is not None:
        wanted = symbol_list(symbols, "auctions")
        by_name = resolve_symbols(names, wanted, "auctions", locates=True)   # (a locate number too)
        locs = np.array([by_name[s] for s in wanted], np.int64)
        for c in "QI":
            arrs[c] = arrs[c][np.isin(arrs[c]["stock_locate"], locs)]
    return arrs, names


def broken_crosses(source, q: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool per row of q: the books broke that cross. No B naming a cross's number: none,
    without a replay. Otherwise the day is replayed recording the trades of the named crosses'
    stocks, and a cross is broken when the engine's trade event for it is (``mark_broken``);
    the event is matched to q's row by sequence, timestamp, match number and stock."""
    named = np.isin(q["match_number"], b["match_number"])
    if not named.any():
        return named
    from itchflow.sinks import _book_access as access

    locs = np.unique(q["stock_locate"][named]).astype(np.int64)
    parts = []

    def keep(ev: dict) -> None:
        trades = ev.get("trades")
        if trades and len(trades["sequence"]):
            mine = np.isin(trades["stock_locate"], locs)
            parts.append({k: v[mine] for k, v in trades.items()})

    access.replay_events(source, None, trades=True, on_events=keep, renumber=True)   # as _collect numbers them
    trades = access.concat_columns(parts)
    if not trades:
        return np.zeros(len(q), bool)
    hit = access.broken_mask(trades) & (trades["kind"] == ord("Q"))
    broken_keys = set(zip(trades["sequence"][hit].tolist(), trades["timestamp"][hit].tolist(),
                          trades["match_number"][hit].tolist(), trades["stock_locate"][hit].tolist()))
    keys = zip(q["sequence"].tolist(), q["timestamp"].tolist(), q["match_number"].tolist(),
               q["stock_locate"].tolist())
    return np.fromiter((k in broken_keys for k in keys), bool, len(q)) & named


MAX_PRICE4 = 200_000 * 10_000   # Price(4)'s largest value, 200,000.0000 (DESIGN.md section 3)


def _dollars(raw: np.ndarray, out_of_range: dict | None = None, name: str = "") -> np.ndarray:
    """Price(4) in dollars; NaN for 0 (the feed's "no price") and for a value past the
    protocol's largest price (0x7FFFFFFF came out as $214,748.3647, and ruled any mean or
    plot of it: probe 18), those counted in out_of_range[name]."""
    past = raw > MAX_PRICE4
    if out_of_range is not None and past.any():
        out_of_range[name] = int(np.count_nonzero(past))
    return np.where((raw > 0) & ~past, raw / 1e4, np.nan)


def _symbols(locates: np.ndarray, names: dict):
    """Each row's symbol: its locate's name (``_collect``: its stock directory (R) name, or,
    for a locate the day has no R for, a capture that starts late, the stock its messages
    name themselves; the locate number as text was in its place: probe 18)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    uniq, inv = np.unique(locates, return_inverse=True)
    dictionary = pa.array([names.get(int(u), str(int(u))) for u in uniq], pa.string())
    return pc.take(dictionary, pa.array(inv.astype(np.int64))) if len(locates) else pa.array([], pa.string())


def pair_with_crosses(q: np.ndarray, i: np.ndarray) -> np.ndarray:
    """For each I, the index in q of the first Q of the same stock and cross type with a
    later sequence number (-1 when none). q and i in sequence order."""
    def key(a, type_field):
        return (a["stock_locate"].astype(np.uint64) << np.uint64(8)) | a[type_field].view(np.uint8).astype(np.uint64)

    out = np.full(len(i), -1, np.int64)
    if not len(q) or not len(i):
        return out
    seq_bits = np.uint64(40)
    if max(int(q["sequence"].max()), int(i["sequence"].max())) >= 1 << 40:
        raise ValueError("auctions: sequence numbers beyond 2**40")
    qk = key(q, "cross_type")
    qc = (qk << seq_bits) | q["sequence"]
    order = np.argsort(qc, kind="stable")
    qc_sorted = qc[order]
    ik = key(i, "cross_type")
    ic = (ik << seq_bits) | i["sequence"]
    at = np.searchsorted(qc_sorted, ic, "left")
    ok = at < len(qc_sorted)
    ok[ok] = (qc_sorted[at[ok]] >> seq_bits) == ik[ok]
    out[ok] = order[at[ok]]
    return out


def signed_imbalance(direction: np.ndarray, shares: np.ndarray):
    """+shares for B, -shares for S, 0 otherwise, as an int64 pyarrow Array; null for a B or S
    of more than 2**63 - 1 shares (a cast would wrap 2**63 to -2**63, a float would round)."""
    import pyarrow as pa

    shares = np.asarray(shares, np.uint64)
    sign = np.where(direction == b"B", 1, np.where(direction == b"S", -1, 0))
    fits = shares <= np.uint64(INT64_MAX)
    signed = sign * np.where(fits, shares, 0).astype(np.int64)
    return pa.array(signed, pa.int64(), mask=(sign != 0) & ~fits)


def auctions(source, symbols=None, *, capture_stats: dict | None = None,
             read_stats: dict | None = None, out_of_range: dict | None = None,
             anomalies: dict | None = None) -> Auctions:
    """The day's crosses and NOII messages as two pyarrow Tables (see the module doc).

    symbols: list or comma-separated text (None = every stock); capture_stats: filled with a
    capture's gaps and malformed packets (as ``replay``'s); read_stats: filled with the day's
    framing counts (messages, by_type, unknown_by_type: every message, not only R/Q/I/B);
    out_of_range: filled with {column: rows} of prices past 200,000.0000, given as NaN.
    anomalies: filled with counts of rows that are not what they should be (the tables keep them
    as sent; said nothing before, probe 32): ``unknown_locate``, crosses and NOII messages of a
    locate no R names on a day that has R messages; ``duplicate_match``, crosses whose match
    number an earlier cross of the day used; ``imbalance_past_int64``, NOII rows of a B or S
    imbalance of 2**63 shares or more, whose signed_imbalance is null (probe 38: said nothing).
    (The books count their own way: a NOII is not in theirs, and a match number reused by any
    trade, not only a cross, is.)
    Works on one file; for an archive, call it per day (e.g. as an ``itchflow batch`` job)."""
    import pyarrow as pa

    arrs, names = _collect(source, symbols, capture_stats, read_stats)
    q, i, b = arrs["Q"], arrs["I"], arrs["B"]
    if anomalies is not None:
        listed = np.unique(arrs["R"]["stock_locate"])
        unknown = (np.count_nonzero(~np.isin(q["stock_locate"], listed))
                   + np.count_nonzero(~np.isin(i["stock_locate"], listed))) if len(listed) else 0
        sided = (i["imbalance_direction"] == b"B") | (i["imbalance_direction"] == b"S")
        anomalies.update(unknown_locate=int(unknown),
                         duplicate_match=int(len(q) - len(np.unique(q["match_number"]))),
                         imbalance_past_int64=int(np.count_nonzero(
                             sided & (i["imbalance_shares"] > np.uint64(INT64_MAX)))))
    q = q[np.lexsort((q["sequence"], q["stock_locate"]))]
    i = i[np.lexsort((i["sequence"], i["stock_locate"]))]
    broken = broken_crosses(source, q, b)
    crosses = pa.table({
        "symbol": _symbols(q["stock_locate"], names),
        "stock_locate": pa.array(q["stock_locate"]),
        "timestamp_ns": pa.array(q["timestamp"]),
        "cross_type": byte_text(q["cross_type"]),
        "price": pa.array(_dollars(q["cross_price"], out_of_range, "price")),
        "shares": pa.array(q["shares"]),
        "match_number": pa.array(q["match_number"]),
        "broken": pa.array(broken),
    })
    row = pair_with_crosses(q, i)
    paired = row >= 0
    imbalances = pa.table({
        "symbol": _symbols(i["stock_locate"], names),
        "stock_locate": pa.array(i["stock_locate"]),
        "timestamp_ns": pa.array(i["timestamp"]),
        "cross_type": byte_text(i["cross_type"]),
        "paired_shares": pa.array(i["paired_shares"]),
        "imbalance_shares": pa.array(i["imbalance_shares"]),
        "imbalance_direction": byte_text(i["imbalance_direction"]),
        "signed_imbalance": signed_imbalance(i["imbalance_direction"], i["imbalance_shares"]),
        "far_price": pa.array(_dollars(i["far_price"], out_of_range, "far_price")),
        "near_price": pa.array(_dollars(i["near_price"], out_of_range, "near_price")),
        "reference_price": pa.array(_dollars(i["current_reference_price"], out_of_range, "reference_price")),
        "price_variation": byte_text(i["price_variation_indicator"]),
        "cross_ns": pa.array(np.where(paired, q["timestamp"][np.maximum(row, 0)] if len(q) else 0, 0),
                             mask=~paired),
        "cross_row": pa.array(row, mask=~paired),
    })
    return Auctions(crosses, imbalances)
