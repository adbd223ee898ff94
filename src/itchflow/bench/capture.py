"""Capture benchmark: a day read from pcaps of its MoldUDP64 packets, beside the same day as a
raw BinaryFILE, with itchcpp's books on the raw bytes in the same run.

What is measured (one core, the same generated messages):
- four forms of the day: the raw file; a pcap of the MoldUDP64 packets a feed would send
  (``--packet-bytes`` a payload at most, one line, in order), the capture a listener takes,
  ordered whole (as a capture of up to ``capture.STREAM_PACKETS`` packets is) and a part at a
  time as it is read (as a larger one in file order is: walked twice, no plan of the whole);
  and the pcap anonymised (every packet's sequence number 0, as published sample captures
  are: every packet is then a run of numbers of its own);
- on each, best of ``repeat``: ``stats`` (framing and the capture's reassembly), ``read`` (every
  type decoded into arrays) and ``Books().replay`` (every stock's book), and what ``stats``
  allocates at its peak (numpy's arrays and Python's objects, traced: the packet index and
  plan of a capture ordered whole, the pieces);
- the peer: itchcpp's ``BookManager`` on the raw bytes (it reads no captures, so its figure
  leaves out getting the stream out of the pcap), one fresh process a run, best of ``repeat``,
  run after ours in the same invocation; the ratio is its seconds over each replay's.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from itchflow.bench.common import BENCH_DIR, best_of, machine, peak_allocated, rate_row

IN_PARTS = "pcap, in parts"
FORMS = ("raw", "pcap", IN_PARTS, "anonymised pcap")
JOBS = ("stats", "read", "replay")


def capture_paths(day: Path, payload_bytes: int) -> dict[str, Path]:
    stem = day.stem + f"-mold{payload_bytes}"
    pcap = BENCH_DIR / f"{stem}.pcap"
    return {"raw": day, "pcap": pcap, IN_PARTS: pcap, "anonymised pcap": BENCH_DIR / f"{stem}-anonymised.pcap"}


@contextmanager
def planned_as(form: str):
    """Captures read a part at a time, whatever their size, for the IN_PARTS form."""
    import itchflow.protocol.mold.capture as capture

    limit = capture.STREAM_PACKETS
    capture.STREAM_PACKETS = 0 if form == IN_PARTS else limit
    try:
        yield
    finally:
        capture.STREAM_PACKETS = limit


def ensure_captures(day: Path, payload_bytes: int, messages: int | None = None) -> dict[str, Path]:
    """The day's pcaps, written once and reused (whole or not at all; checked by day_cache)."""
    from itchflow.bench import day_cache
    from itchflow.sim.captures import write_capture

    paths = capture_paths(day, payload_bytes)
    for form, anonymised in (("pcap", False), ("anonymised pcap", True)):
        day_cache.ensure(paths[form], lambda p, a=anonymised: write_capture(day, p, payload_bytes=payload_bytes,
                                                                          anonymised=a), messages)
    return paths


def _job(name: str, path: Path):
    """The job, on one core: no page-fault helper thread on the other core (``one_core``)."""
    import itchflow
    from itchflow.book.books import Books
    from itchflow.hw.populate import one_core

    def alone(fn):
        def run():
            with one_core():
                return fn()
        return run

    if name == "stats":
        return alone(lambda: itchflow.stats(path).messages)
    if name == "read":
        return alone(lambda: itchflow.read(path).messages)
    return alone(lambda: Books().replay(path).messages)


def run(messages: int = 2_000_000, seed: int = 1, payload_bytes: int = 120, repeat: int = 3,
        peers: bool = True) -> dict:
    from itchflow.bench.book import bbo_agreement, itchcpp_books
    from itchflow.bench.decode import ensure_day

    day, _ = ensure_day(messages, seed)
    t0 = time.perf_counter()
    paths = ensure_captures(day, payload_bytes, messages)
    r: dict = {"machine": machine(), "day": str(day), "payload_bytes": payload_bytes,
               "prepare_seconds": time.perf_counter() - t0, "forms": {}}
    import itchflow

    info = itchflow.stats(paths["pcap"])
    r["messages"], r["packets"] = info.messages, info.capture["packets"]
    r["messages_per_packet"] = info.messages / max(1, info.capture["packets"])
    for form in FORMS:
        path = paths[form]
        row: dict = {"path": str(path), "bytes": path.stat().st_size}
        with planned_as(form):
            for job in JOBS:
                fn = _job(job, path)
                n = fn()   # kernels loaded, file in the page cache
                if n != r["messages"]:
                    raise RuntimeError(f"{job} of {path} gave {n:,} messages, not {r['messages']:,}")
                seconds, _ = best_of(repeat, fn)
                row[job] = rate_row(n, seconds)
            _, row["stats_peak_bytes"] = peak_allocated(_job("stats", path))
        r["forms"][form] = row
    if peers:
        from itchflow.book.books import Books

        ours = Books().replay(paths["pcap"])          # the books the peer's are checked against
        symbols = sorted(ours.symbols)
        # two runs a process, as ours are taken (the best in a process that has run before)
        runs = [itchcpp_books(day, symbols, runs=2) for _ in range(repeat)]
        failed = [c for c in runs if "error" in c]
        if failed:
            r["itchcpp"] = failed[0]
        else:
            best = min(c["seconds"] for c in runs)
            r["itchcpp"] = rate_row(r["messages"], best) | {"seconds_each": [c["seconds_each"] for c in runs],
                                                            "books": runs[0]["books"]}
            r["bbo_agreement"] = bbo_agreement(ours, symbols, runs[0]["tops"])
            for form in FORMS:
                row = r["forms"][form]
                row["replay_ratio_vs_itchcpp"] = best / row["replay"]["seconds"]
    return r


def report(r: dict) -> str:
    m = r["machine"]
    lines = [f"capture benchmark: {r['messages']:,} messages in {r['packets']:,} MoldUDP64 packets of at most "
             f"{r['payload_bytes']} bytes ({r['messages_per_packet']:.1f} messages a packet); day {r['day']}",
             f"machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}, numba {m['numba']}; best of each",
             f"{'form':18s} {'MB':>7s} " + " ".join(f"{j + ' M msg/s':>15s}" for j in JOBS)
             + "  stats peak MB  replay vs itchcpp"]
    for form, row in r["forms"].items():
        ratio = row.get("replay_ratio_vs_itchcpp")
        lines.append(f"{form:18s} {row['bytes'] / 1e6:7.0f} "
                     + " ".join(f"{row[j]['msgs_per_s'] / 1e6:15.1f}" for j in JOBS)
                     + f"  {row['stats_peak_bytes'] / 1e6:13.1f}"
                     + (f"  {ratio:.2f}x" if ratio else ""))
    lines.append("stats peak MB: allocated at once (numpy's arrays and Python's objects); 'in parts': the pcap "
                 "read a part at a time, as a capture of over a million packets in file order is")
    cpp = r.get("itchcpp")
    if cpp and "error" in cpp:
        lines.append(f"itchcpp: failed: {cpp['error']}")
    elif cpp:
        agree = r.get("bbo_agreement", {})
        lines.append(f"itchcpp BookManager on the raw bytes: {cpp['msgs_per_s'] / 1e6:.1f} M msg/s "
                     f"({cpp['ns_per_msg']:.1f} ns/msg, best of 2 runs in each of {len(cpp['seconds_each'])} "
                     f"processes; it reads no captures); best bid/offer of every stock equal to ours from the pcap: "
                     f"{agree.get('stocks', 0) - agree.get('differ', 0):,}/{agree.get('stocks', 0):,}"
                     + (f", differ e.g. {agree['examples']}" if agree.get("differ") else ""))
    return "\n".join(lines)
