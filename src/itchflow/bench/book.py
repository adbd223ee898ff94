"""Book benchmark: generated days of three shapes through the L3 engine, with peers in the same run.

The shapes (one invocation runs all three, each reported with its measured shape beside its
figures, so no single favourable day stands for all):
- ``deep``: few deep stocks, the default ``itchflow gen`` day (100 stocks, Zipf 1.1: one stock
  carries about a fifth of the flow and its book holds hundreds of levels);
- ``many``: many stocks (8,000 by default), otherwise the default day;
- ``fullday``: the full-day working set, ``itchflow gen --profile fullday`` (8,700 stocks,
  1.74 M peak live orders, 4,227 levels on the deepest side, references to 3.1e8).

What is measured for each (one core, the same bytes, the same run):
- itchflow: ``Books.apply`` over the memory-mapped day (already in the page cache), all
  stocks, full L3 (order table with time priority, ladders, levels, volumes, trade log),
  no events recorded; best of ``repeat``, each on fresh state. Also with BBO and trade events
  for every stock, drained after every 32 MB slice as a consumer would. And the first run, as
  a user's one-off command sees it: the first apply in a fresh interpreter (best of
  ``repeat`` such processes; the kernel loaded first, its time reported apart), on memory the
  process has never used, which costs more than memory it has used and freed (as itchcpp's
  figure, always taken in a fresh interpreter). All of these on one core: ``Books(prefault=
  False)``, no page-fault helper thread on the other core (``Books()``'s default for a big
  apply). The first run with that helper, as a user's ``Books()`` runs, is reported apart
  (two cores: its ratio against one-thread itchcpp is not one core's).
- itchcpp: ``BookManager().process_stream(bytes)`` on the same bytes (C++ books of every
  stock), fed in whole-message pieces of 64 MiB (``PEER_PIECE_BYTES``), in a fresh
  interpreter, also best of ``repeat``, its runs taking turns with ours; its best bid/offer
  of every stock is compared with ours.
- the day's shape, measured (itchflow.bench.day_shape): stocks, share of messages of the top
  1/10/100 stocks, peak live orders, the deepest book side at the end of the day (a real
  day's 4,227 is the deepest at any time), order-table size.
Once per run: MeatPy, one stock's book (the most active of the first shape) over a prefix of the
day, in a fresh interpreter; memory: peak RSS of a fresh process that builds 6 M live orders
(adds over 8,000 stocks, references random 64-bit), and the engine's own arrays.

Generated days are cached under BENCH_DIR, named by their parameters (and a digest of the
whole shape), with the generator's summary beside each as JSON.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from itchflow.bench import cache, day_cache
from itchflow.bench.common import BENCH_DIR, DAY_FORMAT, machine, peak_rss_bytes, rate_row, run_peer

SHAPE_NAMES = ("deep", "many", "fullday")
SHAPE_TITLES = {"deep": "few deep stocks", "many": "many stocks", "fullday": "full-day working set"}


def shape_params(name: str, messages: int, many_stocks: int = 8000, fullday_live_orders: int | None = None,
                 seed: int = 1) -> dict:
    """The generator parameters of one benchmark shape."""
    if name == "deep":
        return {"messages": messages, "seed": seed, "profile": "default", "knobs": {}}
    if name == "many":
        return {"messages": messages, "seed": seed, "profile": "default", "knobs": {"stocks": many_stocks}}
    if name == "fullday":
        return {"messages": messages, "seed": seed, "profile": "fullday",
                "knobs": {"live_orders": fullday_live_orders} if fullday_live_orders else {}}
    raise ValueError(f"unknown shape {name!r} (known: {', '.join(SHAPE_NAMES)})")


def day_path(messages: int, stocks: int, seed: int) -> Path:
    """A default-profile day of this many stocks (also used by the pipeline benchmark)."""
    return BENCH_DIR / f"book-day-{messages}-{stocks}-seed{seed}-v{DAY_FORMAT}.itch"


def ensure_day(messages: int, stocks: int, seed: int) -> Path:
    from itchflow.sim.generator import write_day

    path = day_path(messages, stocks, seed)
    # write_day: whole or not at all (PATH.part until done)
    day_cache.ensure(path, lambda p: write_day(p, messages, seed, stocks=stocks), messages)
    return path


def shape_day_path(params: dict) -> Path:
    """The cached day's path; a ShapeError for parameters no day can have."""
    from itchflow.sim.generator import check_enough_messages, resolve_shape

    shape = resolve_shape(params["messages"], params["profile"], **params["knobs"])
    check_enough_messages(params["messages"], shape["stocks"])
    key = json.dumps({"format": DAY_FORMAT, "messages": params["messages"], "seed": params["seed"],
                      "shape": shape}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return BENCH_DIR / (f"book-day-{shape['profile']}-{params['messages']}-{shape['stocks']}stocks-"
                        f"seed{params['seed']}-{digest}.itch")


def ensure_shape_day(params: dict) -> tuple[Path, dict, bool]:
    """(path, generator summary, made now): the day of these parameters, from the cache or made."""
    from itchflow.sim.generator import write_day

    path = shape_day_path(params)
    meta = path.with_suffix(".json")
    made: dict = {}

    def make(p: Path) -> None:
        # write_day writes PATH.part and renames it when whole: an interrupted run leaves no day
        made["info"] = write_day(p, params["messages"], params["seed"], profile=params["profile"], **params["knobs"])
        meta.write_text(json.dumps(made["info"]))

    if not meta.exists():
        path.unlink(missing_ok=True)   # a day without its summary is remade with it
    if day_cache.ensure(path, make, params["messages"]):
        return path, made["info"], True
    return path, json.loads(meta.read_text()), False


# itchcpp takes whole messages in pieces of PEER_PIECE_BYTES (cut at a message boundary,
# copied out of the mapped day outside the clock): a whole day handed over at once is a
# second copy of it inside the extension (a 12 GB day ran a 24 GB machine out of memory).
# Its books carry over from one call to the next (the same tops as one call, checked in
# tests/test_bench_book.py).
PEER_PIECE_BYTES = 64 << 20
_ITCHCPP = """
import json, time
import itchcpp.book as cb
from itchflow.sources.files import map_file
from itchflow.wire.binaryfile import whole_messages_end
buf = map_file({path!r})
size = len(buf)
seconds = []
for run in range({runs}):   # the first on memory the process never used, the next on memory it freed
    bm = cb.BookManager()
    dt, pos = 0.0, 0
    while pos < size:
        end = min(size, pos + {piece})
        if end < size:
            end = int(whole_messages_end(buf, pos, end)[0])
            if end == pos:   # no whole message fits: one longer than a piece
                end = size
        piece = buf[pos:end].tobytes()
        t = time.perf_counter()
        bm.process_stream(piece)
        dt += time.perf_counter() - t
        pos = end
    seconds.append(dt)
    if run + 1 < {runs}:
        del bm
tops = {{}}
for s in {symbols!r}:
    book = bm.book_for_symbol(s)
    if book is None:   # itchcpp makes a book only when an order arrives: a quiet stock has none
        tops[s] = [0, 0, 0, 0]
        continue
    q = book.bbo()
    tops[s] = [round(q.bid_price * 10000) if q.has_bid else 0, q.bid_shares if q.has_bid else 0,
               round(q.ask_price * 10000) if q.has_ask else 0, q.ask_shares if q.has_ask else 0]
print(json.dumps({{"seconds": min(seconds), "first_seconds": seconds[0], "seconds_each": seconds,
                  "books": bm.book_count(), "tops": tops}}))
"""


def bbo_agreement(books, symbols, tops: dict) -> dict:
    """Our best bid/offer of each symbol against itchcpp's ``tops`` (``itchcpp_books``): how
    many stocks, how many differ, and a few that do."""
    fields = ["bid_price", "bid_shares", "ask_price", "ask_shares"]
    differ = [s for s, row in zip(symbols, books.bbo(symbols)[fields].tolist()) if list(row) != tops[s]]
    return {"stocks": len(symbols), "differ": len(differ), "examples": differ[:5]}


def itchcpp_books(path, symbols=(), piece: int = PEER_PIECE_BYTES, runs: int = 1) -> dict:
    """itchcpp's BookManager over the day at path in pieces of about ``piece`` bytes, ``runs``
    times (a new BookManager each) in one fresh process (``run_peer``): the best run's seconds,
    the first run's (``first_seconds``: on memory the process never used), each run's, the
    books, and the tops of these symbols after the last run (an "error" key if it could not run)."""
    return run_peer(_ITCHCPP.format(path=str(path), symbols=list(symbols), piece=int(piece), runs=int(runs)))

# Our figure as a user's one-off run sees it: the first apply in a fresh process, on memory
# the process has never used (itchcpp's figure is always taken so, one process a run).
_FIRST_APPLY = """
import json, time
from itchflow.book.books import Books
from itchflow.sources.files import map_file
buf = map_file({path!r})
_ = int(buf[::4096].sum())   # the day in the page cache and the mapping, as for the other runs
t = time.perf_counter()
Books(1 << 10, table=1 << 10).apply(buf[:0])
load = time.perf_counter() - t
# prefault: the page-fault helper thread of Books()'s first big apply, on the other core
# (off for the one-core figure beside one-thread itchcpp)
b = Books(prefault={prefault})
t = time.perf_counter()
b.apply(buf)
dt = time.perf_counter() - t
print(json.dumps({{"seconds": dt, "kernel_load_seconds": load, "messages": b.messages}}))
"""

_MEATPY = """
import json, time, datetime
from meatpy.itch50.itch50_message_reader import ITCH50MessageReader
from meatpy.itch50.itch50_market_processor import ITCH50MarketProcessor
mp = ITCH50MarketProcessor({symbol!r}, datetime.datetime(2019, 1, 30))
n = 0
stopped = None
t = time.perf_counter()
with ITCH50MessageReader({path!r}) as reader:
    for m in reader:
        try:
            mp.process_message(m)
        except Exception as e:   # MeatPy refuses executions that are not at the head of the queue
            stopped = f"{{type(e).__name__}} at message {{n + 1:,}}: {{str(e)[:160]}}"
            break
        n += 1
        if n >= {messages}:
            break
dt = time.perf_counter() - t
print(json.dumps({{"messages": n, "seconds": dt, "stopped": stopped}}))
"""

_MEMORY = """
import json, numpy as np
from itchflow.book.books import Books
from itchflow.bench.common import peak_rss_bytes
from itchflow.wire.itch import WIRE_DTYPES
n, stocks = {orders}, 8000
rng = np.random.default_rng(1)
w = np.zeros(n, WIRE_DTYPES['A'])
w['length_prefix'] = 36
w['message_type'] = b'A'
w['stock_locate'] = rng.integers(1, stocks + 1, n)
w['order_reference_number'] = rng.choice(np.arange(1, 4 * n, dtype=np.uint64), n, replace=False) * np.uint64(2654435761)
w['buy_sell_indicator'] = np.where(rng.random(n) < 0.5, b'B', b'S')
w['shares'] = rng.integers(1, 1000, n)
w['stock'] = b'XXXX    '
w['price'] = rng.integers(1000, 3000, n) * 100
buf = w.view(np.uint8)
base = peak_rss_bytes()
b = Books()
b.apply(buf)
del w, buf
print(json.dumps({{"live": b.live_orders(), "peak_rss": peak_rss_bytes(), "input_and_python_rss": base,
                  "engine_bytes": b.memory_bytes(), "levels": int(b.ctl[9])}}))
"""


def run_shape(name: str, params: dict, repeat: int = 2, peers: bool = True) -> dict:
    """One shape: the day (cached), itchflow with and without events, itchcpp, the shape columns."""
    from itchflow.bench.day_shape import day_shape
    from itchflow.book.books import Books
    from itchflow.book.replay import replay
    from itchflow.sources.files import map_file

    t0 = time.perf_counter()
    path, gen, made = ensure_shape_day(params)
    prep_s = time.perf_counter() - t0
    buf = map_file(path)
    _ = int(buf[:: 4096].sum())  # fault the file into the page cache / mapping before timing
    r: dict = {"shape_name": name, "title": SHAPE_TITLES[name], "day": str(path), "params": params,
               "bytes": int(len(buf)), "prepare_seconds": prep_s, "generated_now": made,
               "generator": {k: gen.get(k) for k in ("messages", "seconds", "shape", "peak_live_orders",
                                                      "resting_orders", "deepest_side_at_end", "max_order_ref",
                                                      "prices", "by_type")}}
    r["generator"]["msgs_per_s"] = gen["messages"] / max(gen["seconds"], 1e-9)

    Books(1 << 10, table=1 << 10).apply(buf[:0])  # load the compiled kernel from the cache
    # itchflow and itchcpp take turns, each best of ``repeat``: the VM's speed drifts from one
    # minute to the next, and a ratio of two bests taken side by side is what holds.
    best, books = float("inf"), None
    cpp_runs: list[dict] = []
    first_runs: list[dict] = []
    symbols: list[str] = []  # every stock of the day, for the peer's tops (the same in every run)
    helped_runs: list[dict] = []   # the same with Books()'s page-fault helper thread (2 cores)
    for _ in range(repeat):
        first_runs.append(run_peer(_FIRST_APPLY.format(path=str(path), prefault=False)))
        helped_runs.append(run_peer(_FIRST_APPLY.format(path=str(path), prefault=True)))
        # one core, as itchcpp: no page-fault helper thread on the other core (probe 23)
        b = Books(prefault=False)
        t = time.perf_counter()
        b.apply(buf)
        dt = time.perf_counter() - t
        if dt < best:
            best, books = dt, b
        else:
            del b
        if peers and not any("error" in c for c in cpp_runs):
            symbols = symbols or sorted(books.symbols)
            # two runs a process: the first as a one-off command's (fresh memory, as our first
            # run), the second on memory the process freed (as ours after the first)
            cpp_runs.append(itchcpp_books(path, symbols, runs=2))
    r["itchflow"] = rate_row(books.messages, best)
    r["itchflow"].update(peak_live_orders=books.peak_live_orders, live_orders_at_end=books.live_orders(),
                         anomalies=sum(books.anomalies().values()), engine_bytes=books.memory_bytes(),
                         rss_peak_bytes=peak_rss_bytes())
    r["shape"] = day_shape(buf, books)
    failed = [f for f in first_runs if "error" in f]
    if failed:
        r["itchflow_first_apply"] = failed[0]
    else:
        first = min(first_runs, key=lambda f: f["seconds"])
        r["itchflow_first_apply"] = rate_row(first["messages"], first["seconds"])
        r["itchflow_first_apply"].update(kernel_load_seconds=first["kernel_load_seconds"],
                                         seconds_each=[f["seconds"] for f in first_runs])
    good = [f for f in helped_runs if "error" not in f]
    if good:
        helped = min(good, key=lambda f: f["seconds"])
        r["itchflow_first_apply_helped"] = rate_row(helped["messages"], helped["seconds"])
        r["itchflow_first_apply_helped"]["seconds_each"] = [f["seconds"] for f in good]

    # Events as a consumer takes them (as `itchflow bbo` does): drained after every 32 MB slice;
    # best of ``repeat`` as the figure beside it (a process's first such run pays a one-time cost)
    best_events, n_events = float("inf"), [0, 0]
    for _ in range(repeat):
        b = Books(prefault=False)
        b.record(bbo=True, trades=True)
        counted = [0, 0]

        def drain(books) -> None:
            bbo, trades, _ = books.take_events()
            counted[0] += len(bbo)
            counted[1] += len(trades)

        t = time.perf_counter()
        replay(b, path, on_slice=drain)
        dt = time.perf_counter() - t
        if dt < best_events:
            best_events, n_events, applied = dt, counted, b.messages
        del b
    r["itchflow_with_events"] = rate_row(applied, best_events)
    r["itchflow_with_events"].update(bbo_events=n_events[0], trades=n_events[1])

    if peers:
        failed = [c for c in cpp_runs if "error" in c]
        cpp = failed[0] if failed else min(cpp_runs, key=lambda c: c["seconds"])
        if "error" not in cpp:
            # like with like: our best in one process against itchcpp's best in one process
            # (its later runs reuse memory the first freed, as ours do), and each one's first
            # run in a fresh process against the other's
            r["itchcpp"] = rate_row(books.messages, cpp["seconds"])
            cpp_first = min(c["first_seconds"] for c in cpp_runs)
            r["itchcpp_first_run"] = rate_row(books.messages, cpp_first)
            r["itchcpp"].update(books=cpp["books"], processes=len(cpp_runs),
                                seconds_each=[c["seconds_each"] for c in cpp_runs])
            r["bbo_agreement"] = bbo_agreement(books, symbols, cpp["tops"])
            r["ratio_vs_itchcpp"] = cpp["seconds"] / best
            if "seconds" in r["itchflow_first_apply"]:  # both as a fresh process's first run
                r["first_apply_ratio_vs_itchcpp"] = cpp_first / r["itchflow_first_apply"]["seconds"]
            if "itchflow_first_apply_helped" in r:   # ours with a second core's help: said apart
                r["first_apply_helped_ratio_vs_itchcpp"] = cpp_first / r["itchflow_first_apply_helped"]["seconds"]
        else:
            r["itchcpp"] = cpp
    volumes = books.stocks["volume"]
    r["most_active_symbol"] = books.symbol(int(np.argmax(volumes)))
    return r


def run(messages: int = 50_000_000, many_stocks: int = 8000, seed: int = 1, repeat: int = 2,
        meatpy_messages: int = 300_000, peers: bool = True, memory_orders: int = 6_000_000,
        shapes=SHAPE_NAMES, fullday_live_orders: int | None = None, fullday_messages: int | None = None) -> dict:
    """Every shape in ``shapes`` (see SHAPE_NAMES), then MeatPy and the memory probe once.

    messages: size of each day (fullday_messages, when given, for the full-day shape);
    fullday_live_orders: the full-day shape's peak live orders (default: the profile's 1.74 M,
    at most 15% of its messages)."""
    r: dict = {"machine": machine(), "repeat": int(repeat), "shapes": []}
    plans = []
    for name in shapes:   # every shape planned first: one out of range is refused before any runs
        n = fullday_messages if (name == "fullday" and fullday_messages) else messages
        params = shape_params(name, n, many_stocks, fullday_live_orders, seed)
        shape_day_path(params)   # sim.generator.ShapeError (a usage error) for one that cannot be
        plans.append((name, params))
    for name, params in plans:
        r["shapes"].append(run_shape(name, params, repeat, peers))
    if peers and r["shapes"]:
        first = r["shapes"][0]
        sym = first["most_active_symbol"]
        mp = run_peer(_MEATPY.format(path=first["day"], symbol=sym, messages=meatpy_messages))
        if "error" not in mp:
            r["meatpy_one_stock"] = rate_row(mp["messages"], mp["seconds"])
            r["meatpy_one_stock"].update(symbol=sym, shape=first["shape_name"], stopped=mp.get("stopped"))
            r["ratio_vs_meatpy"] = r["meatpy_one_stock"]["ns_per_msg"] / first["itchflow"]["ns_per_msg"]
        else:
            r["meatpy_one_stock"] = mp
    if memory_orders:
        r["memory_6m_live"] = run_peer(_MEMORY.format(orders=memory_orders))
    # what a random load costs here (``itchflow bench cache`` in full): beside the shapes,
    # since the large ones are made of such loads
    r["random_loads"] = cache.run(dense_mib=(4, 64), sparse_span_mib=(256,), steps=1_000_000, repeat=2)
    return r


def report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    m = r["machine"]
    c = Console(width=max(c.width, 240))  # one row per shape, every column: wider than a terminal
    m = r["machine"]
    n = r.get("repeat", "?")
    c.print(f"[bold]book benchmark[/bold]  {m['cpu']} ({m['cores']} cores), numba {m['numba']}; "
            f"full L3 of every stock, one core, the same bytes for itchflow and itchcpp")
    c.print(f"  best of {n} turns, itchflow and itchcpp taking turns: ns/msg, itchcpp ns/msg and vs itchcpp "
            f"compare each one's best run (ours: of {n} turns in this process; itchcpp: of the 2 runs in "
            f"each of its {n} fresh processes, the second on memory the first freed); the first-run columns "
            f"compare each one's first run in a fresh process (best of {n} processes)")
    t = Table(show_edge=False)
    for col in ("shape", "messages", "itchflow M msg/s", "ns/msg", "+events ns/msg", "itchcpp ns/msg",
                "vs itchcpp", "first run ns/msg", "itchcpp first ns/msg", "first vs itchcpp", "BBO agree",
                "stocks", "top 1/10/100 %", "peak live", "deepest side at end"):
        t.add_column(col, justify="left" if col == "shape" else "right", no_wrap=True)
    for s in r["shapes"]:
        f, e, sh = s["itchflow"], s["itchflow_with_events"], s["shape"]
        cpp = s.get("itchcpp", {})
        agree = s.get("bbo_agreement")
        top = sh["top_share"]
        first = s.get("itchflow_first_apply", {})
        cpp_first = s.get("itchcpp_first_run", {})
        t.add_row(s["title"], f"{f['messages'] / 1e6:,.1f} M", f"{f['msgs_per_s'] / 1e6:.1f}",
                  f"{f['ns_per_msg']:.1f}", f"{e['ns_per_msg']:.1f}",
                  f"{cpp['ns_per_msg']:.1f}" if "ns_per_msg" in cpp else cpp.get("error", "-")[:30],
                  f"{s['ratio_vs_itchcpp']:.2f}x" if "ratio_vs_itchcpp" in s else "-",
                  f"{first['ns_per_msg']:.1f}" if "ns_per_msg" in first else first.get("error", "-")[:30],
                  f"{cpp_first['ns_per_msg']:.1f}" if "ns_per_msg" in cpp_first else "-",
                  f"{s['first_apply_ratio_vs_itchcpp']:.2f}x" if "first_apply_ratio_vs_itchcpp" in s else "-",
                  f"{agree['stocks'] - agree['differ']:,}/{agree['stocks']:,}" if agree else "-",
                  f"{sh['stocks']:,}", f"{100 * top['1']:.1f}/{100 * top['10']:.1f}/{100 * top['100']:.1f}",
                  f"{sh['peak_live_orders']:,}", f"{sh['deepest_side_levels']:,}")
    c.print(t)
    for s in r["shapes"]:
        g = s["generator"]
        when = "generated now" if s["generated_now"] else "cached"
        c.print(f"  {s['title']}: {s['day']} ({s['bytes'] / 1e9:.2f} GB, {when}; generator "
                f"{g['msgs_per_s'] / 1e6:.2f} M msg/s); anomalies {s['itchflow']['anomalies']}, "
                f"{s['itchflow_with_events']['bbo_events']:,} BBO changes, "
                f"{s['itchflow_with_events']['trades']:,} trades; deepest side {s['shape']['deepest_side_symbol']}, "
                f"largest order ref {g['max_order_ref']:,}; order table {s['shape']['order_table_rows'] / 2**20:.0f} M "
                f"rows, {s['shape']['order_table_bytes'] / 2**20:,.0f} MiB")
        first = s.get("itchflow_first_apply", {})
        if "seconds_each" in first:
            c.print(f"    first run in a fresh interpreter: {', '.join(f'{x:.2f}' for x in first['seconds_each'])} s "
                    f"(kernel loaded first, in {first['kernel_load_seconds'] * 1e3:.0f} ms)")
        helped = s.get("itchflow_first_apply_helped", {})
        if "ns_per_msg" in helped:
            c.print(f"    first run with Books()'s page-fault helper thread on the other core (two cores): "
                    f"{helped['ns_per_msg']:.1f} ns/msg, {s['first_apply_helped_ratio_vs_itchcpp']:.2f}x itchcpp's "
                    f"first run (one thread)" if "first_apply_helped_ratio_vs_itchcpp" in s else
                    f"    first run with the page-fault helper thread: {helped['ns_per_msg']:.1f} ns/msg")
        if s.get("bbo_agreement", {}).get("differ"):
            c.print(f"    BBO differs from itchcpp for {s['bbo_agreement']['differ']:,} stocks, e.g. "
                    f"{s['bbo_agreement']['examples']}")
    if "meatpy_one_stock" in r and "msgs_per_s" in r["meatpy_one_stock"]:
        p = r["meatpy_one_stock"]
        c.print(f"  MeatPy, one stock ({p['symbol']}, {p['shape']} day):  {p['msgs_per_s'] / 1e6:6.3f} M msg/s  "
                f"{p['ns_per_msg']:8.1f} ns/msg   -> itchflow (all stocks) is {r['ratio_vs_meatpy']:.0f}x")
        if p.get("stopped"):
            c.print(f"    MeatPy stopped early (timed up to there): {p['stopped']}")
    elif "meatpy_one_stock" in r:
        c.print(f"  MeatPy: {r['meatpy_one_stock']}")
    if r.get("memory_6m_live"):
        mm = r["memory_6m_live"]
        if "peak_rss" in mm:
            c.print(f"  memory: {mm['live']:,} live orders -> peak RSS {mm['peak_rss'] / 2**30:.2f} GiB "
                    f"(input + interpreter {mm['input_and_python_rss'] / 2**30:.2f} GiB; engine arrays "
                    f"{mm['engine_bytes'] / 2**30:.2f} GiB allocated)")
        else:
            c.print(f"  memory: {mm}")
    if r.get("random_loads"):
        c.print(f"  {cache.summary(r['random_loads'])} (itchflow bench cache)")
