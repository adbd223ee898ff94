"""Research outputs name stocks by symbol; the day's stock directory (R messages) maps them to
locates. One rule for every output: a symbol with no R message, or in the directory under
more than one locate (a name that is not one stock: the books refuse it too), is a KeyError
naming the output, never an answer for one of them picked silently."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def resolve_symbols(directory: Mapping[int, str], wanted: Iterable[str], who: str) -> dict[str, int]:
    """{symbol: locate} for each wanted symbol, from directory {locate: symbol}."""
    by_name: dict[str, list[int]] = {}
    for loc, sym in directory.items():
        by_name.setdefault(sym, []).append(int(loc))
    wanted = list(wanted)
    missing = [s for s in wanted if s not in by_name]
    if missing:
        raise KeyError(f"{who}: no stock directory (R) message for {', '.join(missing)}")
    for s in wanted:
        if len(by_name[s]) > 1:
            raise KeyError(f"{who}: symbol {s!r} is in the stock directory under locates "
                           f"{', '.join(map(str, sorted(by_name[s])[:8]))}: it names no one stock")
    return {s: by_name[s][0] for s in wanted}
