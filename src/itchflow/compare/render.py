"""The comparison as tables on a terminal (rich) and as a Markdown table for the README."""

from __future__ import annotations

import math

from itchflow.compare.paths import PATHS
from itchflow.compare.row import OK


def _n(v, fmt="{:,.0f}", none="-"):
    return none if v is None else fmt.format(v)


def _lat(d: dict) -> str:
    if not d or not d.get("samples"):
        return "-"
    return f"{d['p50_us']:,.1f} / {d['p99_us']:,.1f} / {d['p99.9_us']:,.1f} / {d['max_us']:,.0f} ({d['samples']:,})"


def _books(r) -> str:
    if r.books_equal is None:
        return "-"
    return "[green]equal[/green]" if r.books_equal else f"[red]DIFFER[/red] {r.books_difference}"


def print_report(report, console) -> None:
    from rich.table import Table

    t = report.terms
    m = report.machine
    console.print(f"[bold]itchflow compare[/bold]: {t.get('messages', 0):,} messages (seed {t.get('seed')}, "
                  f"{t.get('stocks')} stocks), paced at {t.get('rate_msgs_per_s', 0):,.0f} msg/s over the first "
                  f"{t.get('paced_messages', 0):,}; {m.get('cpu')}, {m.get('cores')} cores, Linux {m.get('kernel')}")
    console.print(f"network: {t.get('net') or 'no network rows'}; system calls: {t.get('syscall_counter')}")
    flat = Table(title="Flat out: throughput and receive-side cost (the receiving thread)", title_justify="left",
                 show_edge=False, pad_edge=False)
    for col in ("path", "M msg/s", "k pkt/s", "CPU ns/msg", "beyond baseline ns/msg", "syscalls/msg (kernel)",
                "syscalls/pkt", "code's count", "copies", "ctx sw/s", "books"):
        flat.add_column(col, justify="left" if col in ("path", "books") else "right", overflow="fold")
    for r in report.rows:
        info = PATHS[r.key]
        if r.status != OK:
            flat.add_row(info.title, f"[yellow]{r.status}[/yellow]: {r.reason}", *[""] * 9)
            continue
        flat.add_row(info.title, f"{r.msgs_per_s / 1e6:,.2f}", f"{r.packets_per_s / 1e3:,.1f}" if r.packets else "-",
                     _n(r.cpu_ns_per_msg), _n(r.handoff_ns_per_msg),
                     _n(r.syscalls_per_msg, "{:.4f}", r.syscalls_error[:30] or "-"),
                     _n(r.syscalls_per_packet, "{:.3f}"), _n(r.code_syscalls, "{:,}"), str(info.copies),
                     _n(r.ctx_per_s), _books(r))
    console.print(flat)
    units = {}
    for r in report.rows:
        if r.status == OK and PATHS[r.key].unit:
            units.setdefault(PATHS[r.key].unit, []).append(r.key)
    if set(units) - {"datagram"}:   # a "packet" that is not a datagram is said so
        console.print("  pkt: " + "; ".join(f"a {u} for {', '.join(keys)}" for u, keys in units.items()))
    lat = Table(title="Latency, sender's stamp -> message applied to the book, us: p50 / p99 / p99.9 / max (samples)",
                title_justify="left", show_edge=False, pad_edge=False)
    for col in ("path", "paced (the hand-off)", "burst (queueing)", "what one sample is"):
        lat.add_column(col, overflow="fold")
    for r in report.rows:
        if r.status == OK:
            p, q = r.latency.get("paced", {}), r.latency.get("queueing", {})
            lat.add_row(PATHS[r.key].title, _lat(p), _lat(q), p.get("unit", ""))
    console.print(lat)
    _print_walks(report, console)
    qual = Table(title="How each path works (from the code)", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("path", "who writes the memory", "backpressure", "interrupts or polling", "privileges", "portability"):
        qual.add_column(col, overflow="fold")
    for r in report.rows:
        i = PATHS[r.key]
        qual.add_row(i.title, i.writes_memory, i.backpressure, i.wakeup, i.privileges, i.portability)
    console.print(qual)
    cl = Table(title="The claims, judged on this machine", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("claim", "measured", "verdict", "why"):
        cl.add_column(col, overflow="fold")
    colour = {"holds": "green", "does not hold": "red", "not measured": "yellow"}
    for c in report.claims:
        cl.add_row(c["claim"], c["measured"], f"[{colour[c['verdict']]}]{c['verdict']}[/]", c["why"])
    console.print(cl)
    console.print(f"steal (hypervisor) during the run: {t.get('steal_seconds', 0):.3f} s; "
                  f"run took {report.seconds:.1f} s"
                  + ("; [yellow]interrupted[/yellow]" if report.interrupted else ""))


def _print_walks(report, console) -> None:
    """The receive loops alone (compare.walks), next to the rows' whole-path figures."""
    from rich.table import Table

    w = report.walks or {}
    if not w:
        return
    if not w.get("walks"):
        console.print(f"receive loops alone: not measured ({w.get('reason', '?')})")
        return
    t = Table(title=f"The receive loop alone, per packet ({w['packets']:,} queued {w['datagram_bytes']:,}-byte "
                    f"datagrams over {w['transport']}, best of {w['rounds']} rounds): {w['what']}",
              title_justify="left", show_edge=False, pad_edge=False)
    for col in ("method", "ns/packet (wall)", "CPU ns/packet", "syscalls/packet (kernel)"):
        t.add_column(col, justify="left" if col == "method" else "right", overflow="fold")
    for x in w["walks"].values():
        spp = x.get("syscalls_per_packet")
        t.add_row(x["method"], _n(x.get("ns_per_packet")), _n(x.get("cpu_ns_per_packet")),
                  "-" if spp is None or math.isnan(spp) else f"{spp:.3f}")
    console.print(t)
    for note in w.get("notes", []):
        console.print(f"  ({note})")


def markdown_table(report) -> str:
    """The measured table in Markdown (README "Which path when")."""
    lines = ["| path | M msg/s | CPU ns/msg | syscalls/msg | copies | paced p50 / p99 (us) | burst p50 (us) | books |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in report.rows:
        i = PATHS[r.key]
        if r.status != OK:
            lines.append(f"| {i.title} | {r.status}: {r.reason} | | | | | | |")
            continue
        p, q = r.latency.get("paced", {}), r.latency.get("queueing", {})
        pl = f"{p['p50_us']:,.1f} / {p['p99_us']:,.0f}" if p.get("samples") else "-"
        ql = f"{q['p50_us']:,.0f}" if q.get("samples") else "-"
        lines.append(f"| {i.title} | {r.msgs_per_s / 1e6:,.2f} | {_n(r.cpu_ns_per_msg)} | "
                     f"{_n(r.syscalls_per_msg, '{:.4f}')} | {i.copies} | {pl} | {ql} | "
                     f"{'equal' if r.books_equal else 'DIFFER'} |")
    return "\n".join(lines)
