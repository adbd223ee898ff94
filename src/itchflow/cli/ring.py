"""``itchflow ring ls|inspect|rm|layout`` and ``itchflow bench ring``."""

from __future__ import annotations

import glob
import json
import os
import sys

import click

from itchflow.cli import bench, main
from itchflow.cli.decode import fail
from itchflow.cli.params import CPUS, IMAGE, RING_CAPACITY, RUNS, Count


def _candidates(paths: tuple[str, ...]) -> list[str]:
    if paths:
        from itchflow.ring import ring_path
        return [ring_path(p) for p in paths]
    from itchflow.ring.paths import DEFAULT_DIR, ring_folders

    found = set(glob.glob(os.path.join(DEFAULT_DIR, "itchflow.*")))
    for folder in ring_folders():   # (the huge-page mount's rings too, a run's private one among them)
        found |= set(glob.glob(os.path.join(folder, "*.ring")))
    return sorted(found)   # (one that is no regular file is said, not left out: ``ring_ls``)


def _kind(path: str) -> str:
    from itchflow.ring.paths import file_kind

    try:
        return file_kind(os.stat(path).st_mode)
    except OSError:
        return "a link to nothing" if os.path.islink(path) else "gone"


def _ring_file_name(path: str) -> bool:
    """Whether path is named as a ring file where rings live (what --force may remove even when
    it is too corrupt to open: never an arbitrary file given by mistake)."""
    from itchflow.ring.paths import ring_folders

    folder = os.path.dirname(os.path.abspath(path))
    return path.endswith(".ring") and folder in ring_folders() and os.path.isfile(path)


def _lag_records(c: dict) -> str:
    """A consumer's records lag, '?' where it keeps no commit snapshot (``ring.inspect``)."""
    return "?" if c["lag_records"] is None else str(c["lag_records"])


def _pages(h: dict) -> str:
    """What backs a ring (``Ring.page_backing``), with why when huge pages were asked for in vain."""
    if h["backing"] == "4k":
        return "4 KiB" + (f" ({h['why']})" if h["requested"] else "")
    return "2 MiB (hugetlbfs)" if h["backing"] == "hugetlbfs" else "transparent huge pages (madvise)"


def _fmt_age(s) -> str:
    return "-" if s is None else (f"{s * 1e3:.0f} ms" if s < 10 else f"{s:.0f} s")


@main.group()
def ring() -> None:
    """Shared-memory rings: list, inspect, remove."""


@ring.command("ls")
@click.argument("paths", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per ring.")
def ring_ls(paths: tuple[str, ...], as_json: bool) -> None:
    """List rings under /dev/shm and the huge-page mount (or the given paths): size, edge,
    producer and consumers; rings no live process holds (creator dead, heartbeats stale) are
    marked STALE."""
    from itchflow.ring import Ring, RingFormatError
    rows = []
    failed = 0
    for p in _candidates(paths):
        if not paths and not os.path.isfile(p):   # (a directory, FIFO or dangling link of a ring's name)
            click.echo(f"{p}: not a ring ({_kind(p)}): left alone", err=True)
            continue
        try:
            with Ring.open(p) as r:
                rows.append(r.snapshot())
        except PermissionError as e:   # another user's ring: not corrupt, and not ours to remove
            failed += 1
            click.echo(f"{p}: {e.strerror}", err=True)
        except (RingFormatError, OSError) as e:   # named or found: say so, never list it silently away
            failed += 1
            click.echo(f"{p}: {e}" if paths else f"{p}: CORRUPT ({e}; `itchflow ring rm --force` removes it)",
                       err=True)
    if as_json:
        for s in rows:
            click.echo(json.dumps(s))
    elif rows:
        _print_rings(rows)
    elif not failed:
        click.echo("no rings")
    if failed and paths:   # a ring the user named and that could not be read: exit 1, as ls does
        sys.exit(1)


def _print_rings(rows: list[dict]) -> None:
    for s in rows:
        pr = s["producer"]
        cons = ", ".join(f"{c['name']}({c['state']}{'' if c['alive'] else ', dead'}, lag {_lag_records(c)})"
                         for c in s["consumers"]) or "no consumers"
        click.echo(f"{s['path']}  {'STALE (no live process: `itchflow ring rm --stale`)  ' if s['stale'] else ''}"
                   f"{s['capacity']} B {s['mode']}  records {s['edge']['records']}  "
                   f"producer {pr['pid']} {pr['state']}{'' if pr['alive'] else ' (not running)'}  {cons}")


@ring.command("inspect")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True)
def ring_inspect(path: str, as_json: bool) -> None:
    """Positions, lag per consumer, counters and liveness of one ring."""
    from itchflow.ring import Ring, RingError
    try:
        with Ring.open(path) as r:
            s = r.snapshot()
    except (RingError, OSError) as e:
        fail(e)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    e, pr = s["edge"], s["producer"]
    click.echo(f"ring      {s['path']}")
    click.echo(f"capacity  {s['capacity']} bytes, max payload {s['max_payload']}, mode {s['mode']}, "
               f"{s['max_consumers']} slots, heartbeat timeout {s['heartbeat_timeout_s']} s, "
               f"pages {_pages(s['hugepages'])}")
    click.echo(f"edge      position {e['position']}  records {e['records']}  payload {e['payload_bytes']} B")
    click.echo(f"status    {'STALE: no live process holds it' if s['stale'] else 'held by ' + (', '.join(s['held_by']) or 'processes that only just died')}")
    closed_how = f" (its stream {pr['stream']})" if pr.get("stream") else ""
    click.echo(f"producer  pid {pr['pid']}  {pr['state']}{closed_how}  {'alive' if pr['alive'] else 'not running'}  "
               f"heartbeat {_fmt_age(pr['heartbeat_age_s'])} ago  generation {pr['generation']}  "
               f"full waits {pr['full_waits']}  detached {pr['detached']}  wakeups {pr['wakeups']}  "
               f"recovered {pr['recovered_records']}")
    for c in s["consumers"]:
        click.echo(f"consumer  [{c['slot']}] {c['name']!r}  {c['state']}  pid {c['pid']} "
                   f"{'alive' if c['alive'] else 'dead'}  position {c['position']}  lag {_lag_records(c)} "
                   f"records / {c['lag_bytes']} B  heartbeat {_fmt_age(c['heartbeat_age_s'])} ago  "
                   f"lost {c['lost_records']} records / {c['lost_payload_bytes']} B  laps {c['laps']}  "
                   f"detaches {c['detaches']}  attaches {c['attaches']}")


@ring.command("rm")
@click.argument("paths", nargs=-1)
@click.option("--stale", is_flag=True, help="Remove every ring under /dev/shm or the huge-page mount that no "
                                          "live process holds (creator dead, producer and consumer heartbeats "
                                          "stale).")
@click.option("--force", is_flag=True, help="Remove even if a live producer or consumer uses it, or if it is "
                                          "corrupt (a *.ring file under /dev/shm or the huge-page mount).")
def ring_rm(paths: tuple[str, ...], stale: bool, force: bool) -> None:
    """Remove ring files (refuses rings in use unless --force).

    Exit status 1 if a ring named on the command line was not removed (not a ring, no such
    file, in use); --stale alone skips rings in use as a matter of course and exits 0."""
    from itchflow.ring import Ring, RingFormatError
    if not paths and not stale:
        raise click.UsageError("give ring paths/names, or --stale")
    named = list(dict.fromkeys(_candidates(paths))) if paths else []   # a ring named twice is one ring
    kept = []
    for p in named if paths else _candidates(paths):
        if not paths and not os.path.isfile(p):   # (--stale: only rings; `ring ls` names the others)
            continue
        try:
            with Ring.open(p) as r:
                s = r.snapshot()
        except RingFormatError as e:
            if force and _ring_file_name(p):
                os.unlink(p)
                click.echo(f"removed {p} (corrupt: {e})")
                continue
            why = str(e)
        except FileNotFoundError:
            why = "no such file"
        except PermissionError as e:   # another user's ring (a sticky /dev/shm: not even --force)
            why = e.strerror
        except OSError as e:   # a directory, a file we may not read: skipped, named, never a traceback
            why = f"not a ring ({e.strerror or e})"
        else:
            if s["stale"] or force:
                os.unlink(p)
                click.echo(f"removed {p}")
                continue
            held = ", ".join(s["held_by"]) or "processes that only just died (heartbeats still fresh)"
            why = f"in use by {held} (use --force)"
        click.echo(f"skip {p}: {why}", err=True)
        if p in named:
            kept.append(p)
    if kept:
        click.echo(f"error: {len(kept)} of the {len(named)} ring(s) named were not removed", err=True)
        sys.exit(1)


@ring.command("layout")
def ring_layout() -> None:
    """Print the ring file layout: every header word, the consumer slots, the record format,
    every constant, and the pipeline's own record (the protocol: docs/ring-protocol.md)."""
    from itchflow.pipeline.batch_layout import describe as describe_batch
    from itchflow.ring.layout import describe
    click.echo(describe())
    click.echo(describe_batch())


@bench.command("ring")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--records", type=Count(1), default="20M", show_default=True, help="Records per throughput run.")
@click.option("--rate", type=click.IntRange(1), default=200_000, show_default=True, help="Offered rate (records/s) for latency.")
@click.option("--latency-records", type=Count(1), default="200k", show_default=True)
@click.option("--batch", type=click.IntRange(1), default=256, show_default=True, help="Records per publish in the batched run.")
@click.option("--capacity", type=RING_CAPACITY, default=1 << 22, show_default=True, help="Ring bytes for the throughput runs.")
@click.option("--repeats", type=RUNS, default=3, show_default=True, help="Throughput runs (best and median shown), and runs of each peer and of the Python API (best shown).")
@click.option("--peers/--no-peers", default=True, help="Also time multiprocessing.Queue, faster-fifo, pyzmq.")
@click.option("--peer-records", type=Count(1), default="200k", show_default=True)
@click.option("--stress", "stress", type=click.IntRange(0), default=0, help="Also run an N-record verified stress (e.g. 100000000).")
@click.option("--pin", type=CPUS, default="0,1", show_default=True, help="CPUs for producer,consumer ('' = no pinning).")
@click.option("--plot", type=IMAGE, default=None, help="Write a latency histogram PNG.")
@click.option("--realtime", is_flag=True, help="Latency consumer SCHED_FIFO (root): ordinary tasks cannot preempt it.")
@click.option("--quiet", "-q", is_flag=True)
def bench_ring(as_json, records, rate, latency_records, batch, capacity, repeats, peers, peer_records, stress, pin, plot,
               realtime, quiet):
    """Cross-process ring throughput and one-way latency vs the cache-line floor and peers."""
    from itchflow.bench.ring import print_report, run
    result = run(records=records, batch=batch, capacity=capacity, repeats=repeats, rate=rate, latency_records=latency_records, peers=peers,
                 peer_records=peer_records, stress=stress, cpus=pin, plot=plot,
                 progress=not quiet and not as_json, realtime=realtime)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_report(result)
