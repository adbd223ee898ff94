"""The cache benchmark times what it says: one cycle through every chosen line, and figures
from the command that are positive and consistent (not timing thresholds: speed is for the
benchmarks to show)."""

import json

import numpy as np
from click.testing import CliRunner

from itchflow.bench.cache import LINE, PAGE, chase, cycle_table, probe
from itchflow.cli import main


def _walk(lines, seed):
    """The cycle probe() times, followed with the compiled chase one load at a time."""
    region = -(-(int(lines.max()) + 1) * LINE // PAGE) * PAGE
    words, order = cycle_table(region, lines, seed)
    seen, i = [], int(order[0])
    for _ in range(len(lines)):
        seen.append(i)
        i = int(chase(words, i, 1))
    return seen, i, int(order[0])


def test_the_chase_is_one_cycle_through_every_line():
    lines = np.arange(1000)
    seen, end, start = _walk(lines, 3)
    assert end == start                      # back where it started after exactly len(lines) loads
    assert sorted(seen) == list(lines * (LINE // 8))   # every line once: no short cycle, no repeats


def test_one_line_a_page_visits_every_page_once():
    rng = np.random.default_rng(5)
    pages = 300
    lines = np.arange(pages) * (PAGE // LINE) + rng.integers(0, PAGE // LINE, pages)
    seen, end, start = _walk(lines, 7)
    assert end == start
    assert sorted(w * 8 // PAGE for w in seen) == list(range(pages))


def test_probe_reports_latency_and_throughput():
    row = probe(1 << 20, np.arange((1 << 20) // LINE), 20_000, 1, 1)
    assert row["dependent_ns"] > 0 and row["independent_ns"] > 0
    assert abs(row["in_flight"] - row["dependent_ns"] / row["independent_ns"]) < 1e-9


def test_bench_cache_command_json():
    res = CliRunner().invoke(main, ["bench", "cache", "--steps", "20000", "--repeat", "1", "--largest", "64",
                                    "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert [d["working_set_mib"] for d in r["dense"]] == [0.25, 1, 4, 8, 16, 64]
    assert [s["span_mib"] for s in r["sparse"]] == [8, 64]
    assert all(d["dependent_ns"] > 0 for d in r["dense"] + r["sparse"])
    assert r["machine"]["cores"] >= 1
