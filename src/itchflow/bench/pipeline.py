"""Pipeline benchmark (``benchmarks/pipeline.py`` and ``itchflow bench pipeline``).

One generated day, one book engine, different first stages and hand-offs, in one run:

  in-process        the day memory-mapped and applied in this process (no hand-off): the floor
  ring              ``run_pipeline(file)``: a reader process, our shared-memory ring, books here
  mp.Queue          the same batches through ``multiprocessing.Queue`` (pickled bytes), books here
  faster-fifo       the same through ``faster_fifo.Queue`` (when installed)
  tail              a writer process appends the day to a file flat out while the pipeline
                    follows it (mmap + polling)
  soup              a SoupBinTCP server on loopback serves the day; the pipeline logs in
  mold              MoldUDP64 on loopback at a fixed packet rate: latency from the kernel's
                    receive timestamp to the batch applied to the books

Hand-off alone (the consumer only counts messages) is timed too, at large and small batches,
for the ring against mp.Queue and faster-fifo: the cost per batch is what differs, the book
work is the same for all. Ratios are taken within the run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import threading
import time

import numpy as np

from numba import njit

from itchflow.bench.common import machine
from itchflow.hw.endian import le64
from itchflow.pipeline.batch_layout import W_MESSAGE_COUNT

CTX = mp.get_context("fork")


def _cuts(buf: np.ndarray, batch_bytes: int) -> list[tuple[int, int, int, int]]:
    """(start, end, first sequence, messages) of each batch of whole messages, at most
    batch_bytes each."""
    from itchflow.wire.binaryfile import whole_messages_end

    out, pos, seq = [], 0, 1
    while pos < len(buf):
        stop, n = whole_messages_end(buf, pos, min(len(buf), pos + batch_bytes))
        if n == 0:
            raise ValueError(f"bad framing at byte {pos}")
        out.append((pos, stop, seq, int(n)))
        pos, seq = stop, seq + n
    return out


def _queue_producer(q, path: str, batch_bytes: int, cpu) -> None:
    from itchflow.hw.affinity import pin
    from itchflow.sources.files import map_file

    pin(cpu)
    buf = map_file(path)
    # each item says how many messages it holds, as a ring batch record does: the producer
    # framed them (the ring's producer does too), so the hand-off-only consumers of both read
    # a count and nothing else (this one walked every message again in its clock: probe 23)
    for a, b, seq, count in _cuts(buf, batch_bytes):
        q.put((seq, count, buf[a:b].tobytes()))
    q.put(None)


def _make_queue(kind: str):
    if kind == "mp.Queue":
        return CTX.Queue(maxsize=256)
    import faster_fifo

    return faster_fifo.Queue(max_size_bytes=64 << 20)


def queue_pipeline(kind: str, path: str, batch_bytes: int, cpus, books) -> dict:
    """The pipeline's job with a Python queue as the hand-off (books=None: count only)."""
    from itchflow.hw.affinity import pin_for

    q = _make_queue(kind)
    p = CTX.Process(target=_queue_producer, args=(q, path, batch_bytes, cpus[0] if cpus else None), daemon=True)
    pin_for(cpus, 1)
    p.start()
    t0 = None
    messages = batches = 0
    while True:
        item = q.get() if kind == "mp.Queue" else q.get(timeout=60)
        if t0 is None:
            t0 = time.perf_counter()
        if item is None:
            break
        seq, count, data = item
        if books is not None:
            before = books.messages
            books.apply(np.frombuffer(data, np.uint8), seq)
            messages += books.messages - before
        else:
            messages += count
        batches += 1
    dt = time.perf_counter() - t0
    p.join(10)
    return {"messages": messages, "batches": batches, "seconds": dt, "msgs_per_s": messages / dt,
            "books": _books_row(books) if books is not None else None}


@njit(nogil=True, cache=True)
def _count_messages(data, offs, n):
    """Sum of the message_count words of n batch records (what the hand-off-only consumer does)."""
    total = 0
    for i in range(n):
        total += np.int64(le64(data, offs[i] + 8 * W_MESSAGE_COUNT))
    return total


def ring_handoff(path: str, batch_bytes: int, cpus) -> dict:
    """The ring pipeline's hand-off with a consumer that only reads the batch headers."""
    from itchflow.pipeline.publish import CONSUMER, feed_max_payload
    from itchflow.pipeline.producer import producer_main
    from itchflow.pipeline.sources import parse_source
    from itchflow.ring import Ring
    from itchflow.hw.affinity import pin_for

    rg = Ring.create(f"/dev/shm/itchflow-bench-pipe-{os.getpid()}.ring", 16 << 20, consumers=[CONSUMER],
                     max_payload=feed_max_payload(16 << 20))
    a, b = CTX.Pipe(duplex=False)
    p = CTX.Process(target=producer_main, args=(rg.path, parse_source(path), batch_bytes,
                                                cpus[0] if cpus else None, "spin" if cpus else "yield", b,
                                                CTX.Event(), os.getpid()),
                    daemon=True)
    p.start()
    b.close()
    pin_for(cpus, 1)
    rd = rg.reader(CONSUMER, wait="spin" if cpus else "yield")
    messages = batches = 0
    t0 = None
    try:
        while True:
            try:
                batch = rd.read_batch()
            except EOFError:
                break
            if t0 is None:
                t0 = time.perf_counter()
            messages += _count_messages(batch.data, batch.offsets, len(batch))
            batches += len(batch)
        dt = time.perf_counter() - t0
    finally:
        rd.close()
        a.close()
        p.join(10)
        rg.close()
        rg.unlink()
    return {"messages": messages, "batches": batches, "seconds": dt, "msgs_per_s": messages / dt}


def _report_row(r) -> dict:
    return {"messages": r.messages, "batches": r.batches, "seconds": r.seconds, "msgs_per_s": r.messages_per_second,
            "engine_ns_per_msg": r.apply_ns_per_message, "latency": r.latency, "producer_seconds":
            r.producer.get("seconds"), "wall_seconds": r.wall_seconds,
            "books": {"live_orders": r.book.get("live_orders"), "peak_live_orders": r.book.get("peak_live_orders"),
                      "tops_digest": r.book.get("tops_digest")}}


def _books_row(books) -> dict:
    return {"live_orders": books.live_orders(), "peak_live_orders": books.peak_live_orders,
            "tops_digest": books.tops_digest()}


def check_rows(rows: dict, messages: int, books: dict | None) -> None:
    """Every hand-off delivered the day whole and built the same books as the run in one
    process (live and peak live orders, and every stock's best bid and offer and volume by
    ``Books.tops_digest``): a figure of a run that lost or
    changed messages is not printed. rows: name -> a row (``messages``, maybe ``books``)."""
    for name, row in rows.items():
        if row["messages"] != messages:
            raise RuntimeError(f"bench pipeline: {name} applied {row['messages']:,} messages of the day's "
                               f"{messages:,}")
        if books is not None and row.get("books") is not None and row["books"] != books:
            raise RuntimeError(f"bench pipeline: {name} built other books ({row['books']}) than one process "
                               f"({books})")


def _free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mold_run(day: np.ndarray, pps: float, cpus) -> dict:
    from itchflow.pipeline import run_pipeline
    from itchflow.sources.mold_sender import bind_rerequest, publish
    from itchflow.protocol.mold.feed import MoldFeed

    pa = _free_port()
    rs = bind_rerequest("127.0.0.1", 0)
    feed = MoldFeed(day, "BENCH", 1400)
    stop = threading.Event()
    box = {}

    def pub():
        from itchflow.sources.udp import wait_for_listener
        wait_for_listener(pa)
        box["pub"] = publish(feed, ("127.0.0.1", pa), None, rerequest=rs, pps=pps, linger=1.0, stop=stop)

    t = threading.Thread(target=pub)
    t.start()
    try:
        r = run_pipeline(f"mold://127.0.0.1:{pa}?rerequest=127.0.0.1:{rs.getsockname()[1]}&idle=10&max_seconds=120",
                         pin=cpus, wait="block", top=0)
    finally:
        stop.set()
        t.join(30)
        rs.close()
    row = _report_row(r)
    row["packets_per_s_offered"] = pps
    row["mold"] = {k: r.producer["mold"][k] for k in ("packets", "messages", "gaps", "requests", "recovered", "lost")
                   if k in r.producer["mold"]}
    return row


def _soup_run(day: np.ndarray, cpus) -> dict:
    from itchflow.pipeline import run_pipeline
    from itchflow.sources.soup_sockets import SoupServer
    from itchflow.protocol.soup.session import MessageStore

    server = SoupServer(MessageStore(day), "127.0.0.1", 0, "BENCH", {"bench": "bench"})
    server.start()
    try:
        host, port = server.address
        r = run_pipeline(f"soup://{host}:{port}?user=bench&password=bench&max_seconds=300", pin=cpus,
                         wait="yield", top=0)
    finally:
        server.stop()
    return _report_row(r)


def _append(src: str, dst: str) -> None:
    from itchflow.sim.write_slowly import append_slowly

    append_slowly(src, dst, rate=None, piece_bytes=1 << 20, seed=1)


def _tail_run(path: str, cpus) -> dict:
    from itchflow.pipeline import run_pipeline

    dst = str(path) + ".live"
    open(dst, "wb").close()
    w = CTX.Process(target=_append, args=(str(path), dst), daemon=True)
    w.start()
    try:
        r = run_pipeline(f"tail:{dst}", pin=cpus, top=0)
    finally:
        w.join(60)
        os.unlink(dst)
    return _report_row(r)


def run(messages: int = 10_000_000, stocks: int = 2000, seed: int = 1, batch_bytes: int = 64 << 10,
        small_batch: int = 1 << 10, net_messages: int = 1_000_000, mold_pps: float = 20_000, repeat: int = 2,
        peers: bool = True, cpus=(0, 1), echo=print) -> dict:
    from itchflow.bench.book import ensure_day
    from itchflow.book.books import Books
    from itchflow.book.replay import replay
    from itchflow.pipeline import run_pipeline
    from itchflow.sources.files import map_file

    path = ensure_day(messages, stocks, seed)
    res = {"machine": machine(), "repeat": int(repeat),
           "day": {"path": str(path), "messages": messages, "bytes": path.stat().st_size},
           "batch_bytes": batch_bytes, "cpus": list(cpus) if cpus else None}

    def best(fn, key="msgs_per_s"):
        rows = [fn() for _ in range(repeat)]
        return max(rows, key=lambda r: r[key])

    def in_process_of(p):
        b = Books()
        t0 = time.perf_counter()
        replay(b, str(p))
        dt = time.perf_counter() - t0
        return {"messages": b.messages, "seconds": dt, "msgs_per_s": b.messages / dt, "books": _books_row(b)}

    def in_process():
        return in_process_of(path)

    echo("in-process replay ...")
    res["in_process"] = best(in_process)
    echo("ring pipeline (file) ...")
    res["ring"] = best(lambda: _report_row(run_pipeline(str(path), pin=cpus, batch_bytes=batch_bytes, top=0)))
    # gzip: here the reader has real work (decompression), which the second process takes off
    # the book's core; in one process the two take turns
    gz = _ensure_gz(path, messages)
    echo("in-process replay of the .gz ...")
    res["gz_in_process"] = best(lambda: in_process_of(gz))
    echo("ring pipeline of the .gz ...")
    res["gz_ring"] = best(lambda: _report_row(run_pipeline(str(gz), pin=cpus, batch_bytes=batch_bytes, top=0)))
    hand = {}
    for bb in (batch_bytes, small_batch):
        echo(f"hand-off only, {bb}-byte batches ...")
        hand[bb] = {"ring": best(lambda: ring_handoff(str(path), bb, cpus))}
    if peers:
        kinds = ["mp.Queue"]
        try:
            import faster_fifo  # noqa: F401
            kinds.append("faster-fifo")
        except ImportError:
            res["faster_fifo"] = "not installed"
        res["queues"] = {}
        for kind in kinds:
            echo(f"{kind} pipeline ...")
            res["queues"][kind] = best(lambda: queue_pipeline(kind, str(path), batch_bytes, cpus, Books()))
            for bb in (batch_bytes, small_batch):
                echo(f"{kind} hand-off only, {bb}-byte batches ...")
                hand[bb][kind] = best(lambda: queue_pipeline(kind, str(path), bb, cpus, None))
    res["handoff"] = {str(k): v for k, v in hand.items()}
    check_rows({"in-process": res["in_process"], "ring pipeline": res["ring"], ".gz in one process":
                res["gz_in_process"], ".gz ring pipeline": res["gz_ring"],
                **{f"{k} pipeline": v for k, v in res.get("queues", {}).items()},
                **{f"{k} hand-off ({bb}-byte batches)": v for bb, rows in hand.items() for k, v in rows.items()}},
               messages, res["in_process"]["books"])
    echo("tail (a writer appending flat out) ...")
    res["tail"] = _tail_run(str(path), cpus)
    net_messages = min(net_messages, messages)
    net_day = np.asarray(map_file(path)[: _prefix_bytes(map_file(path), net_messages)])
    echo(f"soup (loopback TCP, {net_messages:,} messages) ...")
    res["soup"] = _soup_run(net_day, cpus)
    echo(f"mold (loopback UDP at {mold_pps:,.0f} packets/s, {net_messages:,} messages) ...")
    res["mold"] = _mold_run(net_day, mold_pps, cpus)
    check_rows({"tail": res["tail"]}, messages, res["in_process"]["books"])
    check_rows({"soup": res["soup"]}, net_messages, None)
    # UDP may lose what the re-request server cannot give back in time: counted, not refused
    res["mold"]["expected_messages"] = net_messages
    return res


def _ensure_gz(path, messages: int | None = None):
    """A gzip copy of the day beside it (isal when installed, level 1: the fast setting)."""
    import os as _os

    from itchflow.bench import day_cache

    def make(gz) -> None:
        tmp = gz.with_suffix(".tmp")
        try:
            from isal import igzip as gzmod
        except ImportError:
            import gzip as gzmod
        with open(path, "rb") as src, gzmod.open(tmp, "wb", compresslevel=1) as dst:
            while True:
                block = src.read(8 << 20)
                if not block:
                    break
                dst.write(block)
        _os.replace(tmp, gz)

    gz = path.with_name(path.name + ".gz")
    day_cache.ensure(gz, make, messages)
    return gz


def _prefix_bytes(buf: np.ndarray, n: int) -> int:
    from itchflow.wire.binaryfile import whole_messages_end

    pos, count = 0, 0
    while count < n and pos < len(buf):
        stop, k = whole_messages_end(buf, pos, min(len(buf), pos + (1 << 20)))
        if k == 0:
            break
        if count + k > n:   # walk the last piece message by message
            while count < n:
                pos += 2 + int.from_bytes(bytes(buf[pos:pos + 2]), "big")
                count += 1
            return pos
        pos, count = stop, count + k
    return pos


def print_report(r: dict) -> None:
    m = r["machine"]
    print(f"pipeline benchmark  {m['cpu']} ({m['cores']} cores), numba {m['numba']}, pinned {r['cpus']}")
    print(f"  day: {r['day']['messages']:,} messages, {r['day']['bytes'] / 1e9:.2f} GB; "
          f"batches of up to {r['batch_bytes']:,} bytes; best of {r.get('repeat', '?')} runs each; every "
          f"hand-off applied the whole day and built the same books (live and peak live orders, every stock's best bid and offer and volume) as one process")
    print("  (a pipeline's clock runs from the first batch taken to the last applied; the in-process "
          "replay's from the file's mapping to the last message)")
    base = r["in_process"]["msgs_per_s"]
    ring = r["ring"]["msgs_per_s"]
    print("  file -> books                    M msg/s   vs in-process")
    print(f"    in-process (no hand-off)       {base / 1e6:7.2f}   1.00")
    print(f"    ring pipeline (2 processes)    {ring / 1e6:7.2f}   {ring / base:.2f}   "
          f"engine {r['ring']['engine_ns_per_msg']:.1f} ns/msg")
    gi, gr = r["gz_in_process"]["msgs_per_s"], r["gz_ring"]["msgs_per_s"]
    print(f"    .gz in-process                 {gi / 1e6:7.2f}   {gi / base:.2f}")
    print(f"    .gz ring pipeline              {gr / 1e6:7.2f}   {gr / base:.2f}   (ring is {gr / gi:.2f}x the "
          f".gz in one process: decompression on the other core)")
    for kind, q in r.get("queues", {}).items():
        print(f"    {kind:<14} pipeline        {q['msgs_per_s'] / 1e6:7.2f}   {q['msgs_per_s'] / base:.2f}   "
              f"(ring is {ring / q['msgs_per_s']:.2f}x)")
    print("  hand-off only (consumer counts messages)")
    for bb, rows in r["handoff"].items():
        rr = rows["ring"]
        line = f"    {int(bb):>6,}-byte batches: ring {rr['msgs_per_s'] / 1e6:8.1f} M msg/s " \
               f"({rr['seconds'] / rr['batches'] * 1e9:,.0f} ns/batch)"
        for kind in ("mp.Queue", "faster-fifo"):
            if kind in rows:
                q = rows[kind]
                line += f"; {kind} {q['msgs_per_s'] / 1e6:.1f} M msg/s (ring {rr['msgs_per_s'] / q['msgs_per_s']:.1f}x)"
        print(line)
    for name in ("tail", "soup", "mold"):
        s = r[name]
        lat = s["latency"]
        stage = "receive_to_applied" if "receive_to_applied" in lat else "publish_to_consume"
        l = {k: float("nan") if v is None else v for k, v in lat.get(stage, {}).items()}
        extra = f", offered {s['packets_per_s_offered']:,.0f} packets/s" if "packets_per_s_offered" in s else ""
        if s.get("expected_messages", s["messages"]) != s["messages"]:
            extra += f" (of {s['expected_messages']:,} sent: {s['expected_messages'] - s['messages']:,} lost)"
        print(f"  {name:<5} {s['messages']:>12,} messages  {s['msgs_per_s'] / 1e6:6.2f} M msg/s{extra};  "
              f"{stage.replace('_to_', ' -> ').replace('_', ' ')} p50 {l.get('p50_us', float('nan')):,.1f} us  "
              f"p99 {l.get('p99_us', float('nan')):,.1f} us  p99.9 {l.get('p99.9_us', float('nan')):,.1f} us")
    if "mold" in r and "mold" in r["mold"]:
        print(f"        mold counters {r['mold']['mold']}")
