"""Cache benchmark: what one random load costs on this machine, by working set and page span.

The book engine's figures on large days are set by how the machine answers random loads (an
order table of 64-256 MiB, the level records and ladders of thousands of books), so the book
benchmark prints these figures beside its own, and ``itchflow bench cache`` prints them in full:

- dependent loads (a pointer chase over a random cycle: each load's address is the previous
  load's value): the latency of one load whose line and page are anywhere in the working set;
- independent loads over the same lines (``numpy.take`` of the same addresses, in the cycle's
  order): the throughput when the core may keep many misses in flight, which is what the
  engine's look-ahead prefetching turns its loads into. Latency / throughput is how many loads
  the memory system kept in flight;
- one line per 4 KiB page over a growing span (the data itself fits the L2): what the address
  translation alone costs (a TLB miss and its page walk, nested in a virtual machine).

Every region is faulted in before it is timed; each figure is the best of ``repeat`` passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.bench.common import best_of, machine

LINE = 64
PAGE = 4096
DENSE_MIB = (0.25, 1, 4, 8, 16, 64, 256)
SPARSE_SPAN_MIB = (8, 64, 256, 1024)


@njit(nogil=True, cache=True)
def chase(nxt, start, steps):
    """Follow nxt from start for steps loads; returns where it ended (so nothing is elided)."""
    i = start
    for _ in range(steps):
        i = nxt[i]
    return i


def cycle_table(region_bytes: int, lines: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(words, order): a region of int64 words, every page faulted in, whose chosen lines (the
    first word of each) hold a single random cycle through all of them; order is the cycle's
    word indices, each entry pointing at the next."""
    words = np.zeros(region_bytes // 8, np.int64)
    words[:: PAGE // 8] = 0               # fault every page in before timing
    order = lines[np.random.default_rng(seed).permutation(len(lines))] * (LINE // 8)
    words[order] = np.roll(order, -1)
    return words, order


def probe(region_bytes: int, lines: np.ndarray, steps: int, repeat: int, seed: int) -> dict:
    """ns per dependent and per independent load over ``lines`` (line numbers in the region)."""
    words, order = cycle_table(region_bytes, lines, seed)
    steps = int(steps)
    chase(words, order[0], 1000)
    dep = best_of(repeat, lambda: chase(words, order[0], steps))[0] / steps
    idx = np.resize(order, steps)         # the same addresses, but no load waits for another
    out = np.empty(steps, np.int64)
    ind = best_of(repeat, lambda: np.take(words, idx, out=out))[0] / steps
    return {"dependent_ns": dep * 1e9, "independent_ns": ind * 1e9, "in_flight": dep / ind}


def run(dense_mib=DENSE_MIB, sparse_span_mib=SPARSE_SPAN_MIB, steps: int = 2_000_000, repeat: int = 3,
        seed: int = 1) -> dict:
    r: dict = {"machine": machine(), "dense": [], "sparse": []}
    rng = np.random.default_rng(seed)
    for mib in dense_mib:
        nbytes = int(mib * 2**20)
        row = probe(nbytes, np.arange(nbytes // LINE), steps, repeat, seed)
        r["dense"].append({"working_set_mib": mib, **row})
    for mib in sparse_span_mib:
        pages = int(mib * 2**20) // PAGE
        lines = np.arange(pages) * (PAGE // LINE) + rng.integers(0, PAGE // LINE, pages)
        row = probe(pages * PAGE, lines, steps, repeat, seed)
        r["sparse"].append({"span_mib": mib, "lines_kib": pages * LINE / 1024, **row})
    return r


def summary(r: dict) -> str:
    """One line for the book benchmark: where the caches end and what a page walk adds."""
    dense = ", ".join(f"{d['working_set_mib']:g} MiB {d['dependent_ns']:.0f}" for d in r["dense"])
    sparse = ", ".join(f"{s['span_mib']:g} MiB {s['dependent_ns']:.0f}" for s in r["sparse"])
    return (f"this machine's random loads (ns, dependent): working set {dense}; one line a page "
            f"over {sparse}")


def report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    m = r["machine"]
    c.print(f"[bold]cache benchmark[/bold]  {m['cpu']} ({m['cores']} cores), kernel {m['kernel']}; "
            "random loads on one core, best of the passes")
    t = Table(title="every line of a working set", show_edge=False)
    for col in ("working set", "dependent ns/load", "numpy.take ns/load", "loads in flight"):
        t.add_column(col, justify="right")
    for d in r["dense"]:
        t.add_row(f"{d['working_set_mib']:g} MiB", f"{d['dependent_ns']:.1f}", f"{d['independent_ns']:.1f}",
                  f"{d['in_flight']:.1f}")
    c.print(t)
    t = Table(title="one line a 4 KiB page (address translation)", show_edge=False)
    for col in ("span", "lines", "dependent ns/load", "numpy.take ns/load", "loads in flight"):
        t.add_column(col, justify="right")
    for s in r["sparse"]:
        t.add_row(f"{s['span_mib']:g} MiB", f"{s['lines_kib']:,.0f} KiB", f"{s['dependent_ns']:.1f}",
                  f"{s['independent_ns']:.1f}", f"{s['in_flight']:.1f}")
    c.print(t)
