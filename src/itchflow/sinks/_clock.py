"""Times of day and trading dates for the research outputs (LOBSTER, bars, auctions)."""

from __future__ import annotations

import datetime as _dt
import math
import numbers
import os
import re

from itchflow.wire.itch import DAY_NS  # noqa: F401  (re-exported: the sinks take 24:00 from here)

NS_PER_SECOND = 1_000_000_000
REGULAR_OPEN_NS = 34_200 * NS_PER_SECOND    # 09:30:00
REGULAR_CLOSE_NS = 57_600 * NS_PER_SECOND   # 16:00:00


def clock_ns(value, what: str = "time") -> int:
    """'HH:MM', 'HH:MM:SS[.fffffffff]' (24:00 allowed) or an int of ns after midnight (numpy's
    integers too: refused as text, probe 39) -> ns."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        ns = int(value)
    else:
        # [0-9], not \d: int() would read other scripts' digits ('١٠:٠٠') as a time
        m = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?", str(value).strip())
        if not m:
            ns_too = "" if isinstance(value, str) else " or an int of ns after midnight"   # (text: the CLI's)
            raise ValueError(f"{what}: expected HH:MM[:SS[.fffffffff]]{ns_too}, got {value!r}")
        h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if mi > 59 or s > 59:
            raise ValueError(f"{what}: not a time of day: {value!r}")
        ns = ((h * 60 + mi) * 60 + s) * NS_PER_SECOND + int((m.group(4) or "").ljust(9, "0") or 0)
    if not 0 <= ns <= DAY_NS:
        raise ValueError(f"{what}: {value!r} is not within the day (00:00 to 24:00)")
    return ns


def every_ns(value) -> int:
    """A bar length: '1s', '250ms', '1min', '5m', '1h', or seconds as a number -> ns."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ns = float(value) * NS_PER_SECOND
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ns|us|ms|s|sec|m|min|h)?\s*", str(value))
        if not m:
            raise ValueError(f"every: expected e.g. 1s, 500ms, 1min, 1h; got {value!r}")
        unit = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": NS_PER_SECOND, "sec": NS_PER_SECOND,
                None: NS_PER_SECOND, "m": 60 * NS_PER_SECOND, "min": 60 * NS_PER_SECOND,
                "h": 3600 * NS_PER_SECOND}[m.group(2)]
        ns = float(m.group(1)) * unit
    # checked as a float, before any int: a NaN or an overflow to infinity has none
    if not (math.isfinite(ns) and 0 < round(ns) <= DAY_NS):
        raise ValueError(f"every: the bar length must be positive and at most a day (24h), got {value!r}")
    return int(round(ns))


def _shaped(text: str, pattern: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def trading_date(source, date: str | None = None) -> str | None:
    """The trading day as YYYY-MM-DD: ``date`` if given (YYYY-MM-DD or YYYYMMDD), else from
    the file name (Nasdaq's MMDDYYYY.NASDAQ_ITCH50[.gz], or YYYYMMDD / YYYY-MM-DD in the
    name); None when neither says."""
    if date is not None:
        text = str(date).strip()
        for fmt in ("%Y-%m-%d", "%Y%m%d"):
            try:
                return _dt.datetime.strptime(text, fmt).date().isoformat()
            except ValueError:
                pass
        shaped = any(_shaped(text, fmt) for fmt in (r"\d{4}-\d{2}-\d{2}", r"\d{8}"))
        raise ValueError(f"date: {date!r} is not a date of the calendar" if shaped else
                         f"date: expected YYYY-MM-DD, got {date!r}")   # (2019-02-29 was "expected YYYY-MM-DD")
    if not isinstance(source, (str, os.PathLike)):
        return None
    name = os.path.basename(os.fspath(source))
    m = re.search(r"(\d{4})-(\d{2})-(\d{2})", name)
    if m:
        return _valid(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    for digits in re.findall(r"(?<!\d)(\d{8})(?!\d)", name):
        found = (_valid(int(digits[4:]), int(digits[:2]), int(digits[2:4]))       # MMDDYYYY (Nasdaq)
                 or _valid(int(digits[:4]), int(digits[4:6]), int(digits[6:])))  # YYYYMMDD
        if found:
            return found
    return None


def _valid(y: int, m: int, d: int) -> str | None:
    if not 1990 <= y <= 2100:
        return None
    try:
        return _dt.date(y, m, d).isoformat()
    except ValueError:
        return None
