"""Research outputs name stocks by symbol; the day's stock directory (R messages) maps them to
locates. One rule for every output: a symbol with no R message, or in the directory under
more than one locate (a name that is not one stock: the books refuse it too), is a KeyError
naming the output, never an answer for one of them picked silently.

A name of digits alone is a stock locate (``-s 5``) in ``book``, ``bbo``, ``trades``,
``snapshots``, ``bars`` and ``auctions`` (and batch's jobs of them; ``lobster``, whose files are
named by symbol, takes symbols only): the stock at that locate, named by its symbol when an R gives it one. On a day whose directory
lists no stock at all (a piece of a feed, a day cut before its R messages) every locate is
named by its number (as ``Books.symbol``, ``to_pandas`` and the Parquet files name it; only
the numpy events' ``symbol`` field, fixed bytes, holds b"" there); on a day that lists stocks,
a locate no R names is a KeyError (``check_locates``), as a symbol it does not list is.
ITCH symbols start with a letter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from itchflow.book.records import ASCII_SPACE, symbol_upper


def symbol_list(symbols, who: str, *, required: bool = False) -> list[str] | None:
    """The symbols an output is asked for: None (every stock, unless required), or a list or
    comma-separated text, stripped, upper-cased, each once in the order given. Asking for
    symbols and naming none (",", "") is a ValueError: a filter matching nothing wrote an
    empty output and exited 0."""
    if symbols is None and not required:
        return None
    if isinstance(symbols, str):
        symbols = symbols.split(",")
    out = list(dict.fromkeys(symbol_upper(str(s).strip(ASCII_SPACE)) for s in (symbols or ())
                             if str(s).strip(ASCII_SPACE)))
    if not out:
        raise ValueError(f"{who}: give at least one symbol" + ("" if required else " (None: every stock)"))
    return out


def stock_key(name) -> str | int:
    """A stock as asked for: a locate number (int) for a name of digits, else the symbol."""
    if isinstance(name, int):
        return name
    name = str(name).strip(ASCII_SPACE)
    return int(name) if name.isascii() and name.isdigit() else symbol_upper(name)


def stock_keys(names: list[str] | None) -> list[str | int] | None:
    return None if names is None else [stock_key(n) for n in names]


def check_locates(books, keys, who: str = "", after: str = "") -> None:
    """KeyError for a locate number among keys that no R names, when the books' directory
    names some stock (a number naming nothing there, as a symbol the day does not list: not an
    empty answer). who: the output, as a prefix; after: said after it (" before --at T")."""
    if not books.listed_symbols():
        return
    for key in keys or ():
        if isinstance(key, int) and books.symbol(key) == str(key):
            raise KeyError(f"{who}stock locate {key}: no stock directory (R) message gives it a stock{after}")


def resolve_symbols(directory: Mapping[int, str], wanted: Iterable[str], who: str,
                    locates: bool = False) -> dict[str, int]:
    """{symbol: locate} for each wanted symbol, from directory {locate: symbol}. locates: a
    wanted name of digits that names no stock is that locate number (``stock_key``), refused
    when the directory does not hold it."""
    by_name: dict[str, list[int]] = {}
    for loc, sym in directory.items():
        by_name.setdefault(sym, []).append(int(loc))
    wanted = list(wanted)
    if locates:
        for s in wanted:
            if s not in by_name and isinstance(key := stock_key(s), int):
                if key not in directory:
                    raise KeyError(f"{who}: stock locate {s}: the day names no stock under it")
                by_name[s] = [key]
    missing = [s for s in wanted if s not in by_name]
    if missing:
        raise KeyError(f"{who}: no stock directory (R) message for {', '.join(missing)}")
    for s in wanted:
        if len(by_name[s]) > 1:
            raise KeyError(f"{who}: symbol {s!r} is in the stock directory under locates "
                           f"{', '.join(map(str, sorted(by_name[s])[:8]))}: it names no one stock")
    return {s: by_name[s][0] for s in wanted}
