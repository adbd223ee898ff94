"""The day-shape knobs of the generator (itchflow.sim.generator SHAPE_KNOBS, ``gen --profile``)
do what they say: each is measured here independently, from ``itchflow.read`` of the day or from
books built by ``itchflow.Books``, not from the generator's own summary."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

import itchflow
from itchflow.sim.generator import PROFILES, generate_day, minimum_messages, resolve_shape, write_day

SPAN = 310_000_000
SHAPED = dict(stocks=60, concentration=1.2, live_orders=30_000, depth=700, ref_span=SPAN, seed=5)
SHAPED_N = 150_000


def _read(path, types=None):
    return itchflow.read(str(path), types)


def _new_refs(d) -> np.ndarray:
    """Every reference a day hands out, in wire order (A, F, and the new reference of each U)."""
    parts = [(d["A"]["sequence"], d["A"]["order_reference_number"]),
             (d["F"]["sequence"], d["F"]["order_reference_number"]),
             (d["U"]["sequence"], d["U"]["new_order_reference_number"])]
    seq = np.concatenate([p[0] for p in parts])
    refs = np.concatenate([p[1] for p in parts])
    return refs[np.argsort(seq, kind="stable")]


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    path = tmp_path_factory.mktemp("shaped") / "day.itch"
    kw = dict(SHAPED)
    seed = kw.pop("seed")
    info = write_day(path, SHAPED_N, seed, **kw)
    books = itchflow.Books()
    books.replay(str(path))
    return path, info, _read(path), books


@pytest.mark.parametrize("a", [0.7, 1.5])
def test_concentration_sets_the_busiest_stocks_share(tmp_path, a):
    path = tmp_path / "day.itch"
    write_day(path, 100_000, 3, stocks=50, concentration=a)
    d = _read(path, "AF")
    loc = np.concatenate([d["A"]["stock_locate"], d["F"]["stock_locate"]])
    adds = np.sort(np.bincount(loc, minlength=51)[1:])[::-1]
    implied = 1.0 / np.arange(1, 51) ** a
    implied /= implied.sum()
    # Adds pick their stock by the Zipf law: the measured shares sit on the implied ones.
    assert adds[0] / adds.sum() == pytest.approx(implied[0], rel=0.08)
    assert adds[:10].sum() / adds.sum() == pytest.approx(implied[:10].sum(), rel=0.05)


def test_live_orders_reach_the_asked_population(shaped):
    _, info, d, books = shaped
    # Books is a separate implementation (the L3 engine): its peak is an independent count.
    assert books.peak_live_orders >= SHAPED["live_orders"]
    assert books.peak_live_orders < 1.15 * SHAPED["live_orders"]
    assert sum(books.anomalies().values()) == 0
    # And by hand: adds minus deletes is an upper bound of the live population that stays
    # far above what a day of this size would carry without the knob (0.4% of messages).
    adds = len(d["A"]) + len(d["F"])
    assert adds - len(d["D"]) >= SHAPED["live_orders"]


def test_depth_reaches_the_asked_levels_on_the_busiest_book(shaped):
    _, _, d, books = shaped
    loc = np.concatenate([d["A"]["stock_locate"], d["F"]["stock_locate"]])
    busiest = int(np.argmax(np.bincount(loc)))
    bids, asks = books.depth(busiest)
    assert max(len(bids), len(asks)) >= SHAPED["depth"]
    # Distinct prices on one side, straight from the adds of that stock.
    a = d["A"][d["A"]["stock_locate"] == busiest]
    assert max(len(np.unique(a["price"][a["buy_sell_indicator"] == side])) for side in (b"B", b"S")) \
        >= SHAPED["depth"]


def test_references_span_the_range_unique_and_not_monotonic(shaped):
    _, _, d, _ = shaped
    refs = _new_refs(d)
    assert len(np.unique(refs)) == len(refs)
    assert refs.max() >= 300_000_000
    assert refs.max() <= SPAN
    drops = int((np.diff(refs.astype(np.int64)) < 0).sum())
    assert drops > len(refs) // 10


def test_price_bands(tmp_path):
    path = tmp_path / "day.itch"
    k = 400
    write_day(path, 40_000, 9, stocks=k, sub_dollar=0.1, high_priced=0.05)
    d = _read(path, "A")
    a = d["A"]
    order = np.argsort(a["stock_locate"], kind="stable")
    locs, first = np.unique(a["stock_locate"][order], return_index=True)
    med = np.array([np.median(x) for x in np.split(a["price"][order], first[1:])]) / 10_000
    below, above = int((med < 1).sum()), int((med > 1000).sum())
    n = len(locs)
    assert n > 0.9 * k
    assert 0.1 * n - 3 * np.sqrt(n * 0.09) <= below <= 0.1 * n + 3 * np.sqrt(n * 0.09)
    assert 0.05 * n - 3 * np.sqrt(n * 0.0475) <= above <= 0.05 * n + 3 * np.sqrt(n * 0.0475)
    assert ((med >= 1) & (med <= 1000)).sum() >= 0.8 * n
    # Ticks: a cent at or above $1, $0.0001 below (and some sub-dollar prices are not whole cents).
    p = a["price"].astype(np.int64)
    assert (p[p >= 10_000] % 100 == 0).all()
    assert (p[p < 10_000] % 100 != 0).any()
    assert p.max() < 200_000 * 10_000  # Price(4) ceiling


def test_same_seed_same_bytes_with_knobs(tmp_path):
    kw = dict(stocks=40, concentration=0.8, live_orders=15_000, depth=300, ref_span=SPAN, high_priced=0.1)
    a = generate_day(60_000, 21, **kw)
    b = generate_day(60_000, 21, **kw)
    c = generate_day(60_000, 22, **kw)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    path = tmp_path / "day.itch"
    write_day(path, 60_000, 21, chunk_bytes=4096, **kw)
    assert path.read_bytes() == a.tobytes()


def test_knobs_left_at_their_defaults_keep_the_default_bytes():
    # The pinned sha256 of tests/test_generator_bytes.py, with every default spelled out.
    day = generate_day(20_000, 1, 10, False, profile="default", concentration=1.1, sub_dollar=0.05,
                       high_priced=0.0, live_orders=None, depth=None, ref_span=None)
    assert hashlib.sha256(day.tobytes()).hexdigest() == \
        "d0faa15726c969a0e84866725b3e210d2064b4c1f1d94b7587cd229a1633a0bf"


def test_fullday_profile_at_a_small_message_count(tmp_path):
    n = 700_000
    path = tmp_path / "full.itch"
    info = write_day(path, n, 2, profile="fullday")
    shape = resolve_shape(n, "fullday")
    assert shape["live_orders"] == int(0.15 * n)  # the profile's 1.74 M, capped by the day's size
    d = _read(path, "RAFU")
    assert len(d["R"]) == PROFILES["fullday"]["stocks"] == 8700
    books = itchflow.Books()
    books.replay(str(path))
    assert books.peak_live_orders >= shape["live_orders"]
    deepest = max(max(len(x) for x in books.depth(loc)) for loc in range(1, 8701))
    assert deepest >= 4227
    refs = _new_refs(d)
    assert refs.max() >= 300_000_000 and len(np.unique(refs)) == len(refs)
    assert info["shape"]["profile"] == "fullday"
    # Some stocks are below $1 and a few above $1,000.
    assert (d["A"]["price"] < 10_000).any() and (d["A"]["price"] > 10_000_000).any()


def test_bad_knobs_are_refused():
    with pytest.raises(ValueError, match="unknown profile"):
        generate_day(20_000, 1, profile="nope")
    with pytest.raises(TypeError, match="unknown day-shape"):
        generate_day(20_000, 1, colour=3)
    with pytest.raises(ValueError, match="concentration"):
        generate_day(20_000, 1, concentration=0)
    with pytest.raises(ValueError, match="resting all day"):
        generate_day(20_000, 1, stocks=10, live_orders=50_000)


def test_cli_gen_with_knobs_reports_the_shape(tmp_path):
    from itchflow.cli import main

    out = tmp_path / "day.itch"
    r = CliRunner().invoke(main, ["gen", str(out), "-n", "60k", "--seed", "4", "--stocks", "30",
                                  "--live-orders", "12k", "--depth", "250", "--ref-span", "3.1e8", "-q"])
    assert r.exit_code == 0, r.output
    assert "peak live orders" in r.output and "asked 12000" in r.output and "asked 250" in r.output
    assert out.read_bytes() == generate_day(60_000, 4, stocks=30, live_orders=12_000, depth=250,
                                            ref_span=310_000_000).tobytes()
    h = CliRunner().invoke(main, ["gen", "--help"])
    for opt in ("--profile", "--concentration", "--live-orders", "--depth", "--ref-span", "--sub-dollar",
                "--high-priced"):
        assert opt in h.output
    bad = CliRunner().invoke(main, ["gen", str(out), "-n", "60k", "--profile", "nope"])
    assert bad.exit_code != 0


def test_bench_day_shape_counts_from_the_bytes(shaped):
    from itchflow.bench.day_shape import day_shape
    from itchflow.sources.files import map_file

    path, _, d, books = shaped
    s = day_shape(map_file(path), books)
    every = itchflow.read(str(path))
    loc = np.concatenate([every[c]["stock_locate"] for c in every])
    per = np.sort(np.bincount(loc, minlength=65536)[1:])[::-1]
    assert s["stocks"] == SHAPED["stocks"]
    assert s["top_share"]["1"] == pytest.approx(per[0] / per.sum())
    assert s["top_share"]["10"] == pytest.approx(per[:10].sum() / per.sum())
    assert s["peak_live_orders"] == books.peak_live_orders
    assert s["deepest_side_levels"] >= SHAPED["depth"]


def test_bench_book_one_shape_small(tmp_path, monkeypatch):
    import itchflow.bench.book as bb

    monkeypatch.setattr(bb, "BENCH_DIR", tmp_path)
    params = bb.shape_params("deep", 40_000, seed=3)
    r = bb.run_shape("deep", params, repeat=1, peers=True)
    assert r["itchflow"]["messages"] == 40_000
    first = r["itchflow_first_apply"]   # the first apply in a fresh interpreter, the same day
    assert first["messages"] == 40_000 and first["seconds"] > 0 and first["kernel_load_seconds"] > 0
    # and with Books()'s page-fault helper thread (two cores), said apart from the one-core figure
    assert r["itchflow_first_apply_helped"]["messages"] == 40_000
    assert r["shape"]["stocks"] == 100
    assert r["generated_now"]
    if "ns_per_msg" in r["itchcpp"]:  # itchcpp installed: the books agree on every stock
        assert r["bbo_agreement"]["differ"] == 0
    # Cached: the second time the day comes from the bench dir, keyed by its parameters.
    path, info, made = bb.ensure_shape_day(params)
    assert not made and str(path) == r["day"]
    assert json.loads(path.with_suffix(".json").read_text())["messages"] == 40_000
    other = bb.shape_day_path(bb.shape_params("deep", 40_000, seed=4))
    assert other != path


@pytest.mark.parametrize("messages, kw, close_all, seed", [
    (80_000, dict(stocks=40, live_orders=20_000, depth=400, ref_span=SPAN, sub_dollar=0.2, high_priced=0.1), False, 1),
    (60_000, dict(stocks=25, live_orders=12_000, depth=300, concentration=0.6), True, 2),
    (minimum_messages(8700) + 5_000, dict(profile="fullday"), False, 3),
    (minimum_messages(1), dict(stocks=1, live_orders=2_000, depth=100), True, 4),
    (40_000, dict(stocks=300, live_orders=20_000, concentration=2.5, sub_dollar=0.5, high_priced=0.5), True, 5),
])
def test_shaped_days_hold_every_invariant(messages, kw, close_all, seed):
    """The slow, obvious reference book of tests/test_generator.py walks the shaped days too:
    every D/E/X/U names a live order, no over-execution, books uncrossed after the open, ..."""
    from test_generator import verify, walk

    msgs = walk(generate_day(messages, seed, close_all=close_all, **kw))
    assert len(msgs) == messages
    stocks = resolve_shape(messages, kw.get("profile"), **{k: v for k, v in kw.items() if k != "profile"})["stocks"]
    v = verify(msgs, stocks)
    assert [e[0] for e in v["events"]] == [b"O", b"S", b"Q", b"M", b"E", b"C"]
    if close_all:
        assert v["book"].orders == {}


def test_too_small_a_reference_span_is_refused():
    with pytest.raises(ValueError, match="ref_span"):
        generate_day(3_000_000, 1, stocks=20, ref_span=1_000_000)  # refused before generating


def test_cli_bench_book_refuses_an_unknown_shape():
    from itchflow.cli import main

    r = CliRunner().invoke(main, ["bench", "book", "--shapes", "deep,wide", "--messages", "2M"])
    assert r.exit_code != 0 and "wide" in r.output


def test_bench_book_threads_small(tmp_path, monkeypatch):
    """bench book-threads on a small day of two shapes: the sharded books agree with one thread
    order by order, the report names each shape and says they agree."""
    import itchflow.bench.book as bb
    import itchflow.bench.book_threads as bt

    monkeypatch.setattr(bb, "BENCH_DIR", tmp_path)
    r = bt.run(40_000, shapes=("deep", "many"), many_stocks=300, seed=3, threads=2, repeat=2)
    assert [s["shape_name"] for s in r["shapes"]] == ["deep", "many"]
    for s in r["shapes"]:
        sh = s["sharded"]
        assert s["one_thread"]["messages"] == sh["messages"] == 40_000
        assert sh["tops_agree"] and sh["live_orders_agree"] and sh["orders_agree"]
        assert sum(sh["thread_messages"]) >= 40_000 and len(sh["shard_messages"]) == 2   # one shard a thread
        turns = s["speedup_of_turns"]
        assert turns["min"] <= turns["median"] <= turns["max"]
        assert s["speedup"] == pytest.approx(s["one_thread"]["ns_per_msg"] / sh["ns_per_msg"])
        first = s["first_turn"]   # the first turn is reported beside the bests
        assert first["one_thread_ns_per_msg"] >= s["one_thread"]["ns_per_msg"] > 0
        assert first["sharded_ns_per_msg"] >= sh["ns_per_msg"] > 0
        assert first["speedup"] == pytest.approx(first["one_thread_ns_per_msg"] / first["sharded_ns_per_msg"])
    assert r["shapes"][1]["shape"]["stocks"] == 300
    text = bt.report(r)
    assert "few deep stocks" in text and "many stocks" in text and "NO" not in text
    assert text.count("first turn, on memory new to the process") == 2


def test_bench_book_threads_checks_every_turn(tmp_path, monkeypatch):
    """Sharded books that disagree with one thread in any turn, not only the fastest one, make
    the benchmark say they disagree (each turn's books are let go before the next)."""
    import itchflow.bench.book as bb
    import itchflow.bench.book_threads as bt
    from itchflow.book.sharded import ShardedBooks

    monkeypatch.setattr(bb, "BENCH_DIR", tmp_path)
    calls = []
    tops = ShardedBooks.tops

    def wrong_in_the_last_turn(self):
        calls.append(1)
        t = tops(self)
        return t[:0] if len(calls) == 3 else t

    monkeypatch.setattr(ShardedBooks, "tops", wrong_in_the_last_turn)
    r = bt.run(20_000, shapes=("deep",), seed=3, threads=2, repeat=3)
    sh = r["shapes"][0]["sharded"]
    assert len(calls) == 3
    assert not sh["tops_agree"] and sh["live_orders_agree"] and sh["orders_agree"]
    assert "tops False" in bt.report(r) and "NO" in bt.report(r)


@pytest.mark.parametrize("args, option, text", [
    (["--concentration", "inf"], "--concentration", "at most 10"),
    (["--concentration", "nan"], "--concentration", "> 0"),
    (["--depth", "5"], "--depth", "between 64 and 100000"),
    (["--stocks", "0"], "--stocks", "between 1 and 20000"),
    (["--sub-dollar", "1.5"], "--sub-dollar", "0..1"),
    (["--sub-dollar", "0.7", "--high-priced", "0.5"], "--high-priced", "together at most 1"),
    (["--ref-span", "1000"], "--ref-span", "at least 1e6 and below 2**62"),
])
def test_cli_gen_names_the_knob_out_of_range(tmp_path, args, option, text):
    """A shape knob out of range is a usage error naming its option, before anything is written."""
    from itchflow.cli import main

    out = tmp_path / "day.itch"
    r = CliRunner().invoke(main, ["gen", str(out), "-n", "60k", "-q", *args])
    assert r.exit_code == 2, r.output
    assert f"Invalid value for {option}" in r.output and text in r.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_shape_knobs_out_of_range_are_refused_by_the_api():
    from itchflow.sim.generator import ShapeError

    with pytest.raises(ShapeError, match="depth") as e:
        generate_day(20_000, 1, depth=63)
    assert e.value.knob == "depth"
    with pytest.raises(ShapeError, match="concentration"):
        generate_day(20_000, 1, concentration=float("inf"))
    # The bounds themselves are taken.
    assert len(generate_day(20_000, 1, stocks=10, depth=64)) > 0
    # a population no day of that size can hold is refused before anything is sized by it (1e12
    # ran out of memory asking for 7 TiB: probe 23)
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ShapeError, match="need a day of at least") as e:
        generate_day(50_000, 1, live_orders=10**12)
    assert e.value.knob == "live_orders"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000   # KiB


@pytest.mark.parametrize("span", ["1M", "300M"])
def test_a_ref_span_day_never_hands_out_a_reference_twice(tmp_path, span):
    """A range near its end stepped by one without counting the step, so the same reference
    came again while its order was live (duplicate adds, executes on the wrong stock; one
    thread and two disagreed). Checked on the bytes: every A, F and U's new reference once."""
    import itchflow
    from itchflow.cli import main

    out = tmp_path / "day.itch"
    r = CliRunner().invoke(main, ["gen", str(out), "-n", "20k", "--seed", "0", "--ref-span", span, "-q"])
    assert r.exit_code == 0, r.output
    d = itchflow.read(str(out), types="AFU")
    refs = np.concatenate([d["A"]["order_reference_number"], d["F"]["order_reference_number"],
                           d["U"]["new_order_reference_number"]])
    assert len(np.unique(refs)) == len(refs)
    books = itchflow.Books().replay(str(out))
    bad = {k: v for k, v in books.anomalies().items() if v}
    assert bad == {}, bad


@pytest.mark.parametrize("args, option", [(["--live-orders", "1M"], "--live-orders"),
                                          (["--depth", "100000"], "--depth"),
                                          (["-n", "2M", "--ref-span", "1M"], "--ref-span")])
def test_knobs_that_do_not_fit_together_are_usage_errors_naming_the_option(tmp_path, args, option):
    from itchflow.cli import main

    out = tmp_path / "day.itch"
    cmd = ["gen", str(out), "-n", "20k", "-q", *args] if args[0] != "-n" else ["gen", str(out), "-q", *args]
    r = CliRunner().invoke(main, cmd)
    assert r.exit_code == 2, r.output
    assert option in r.output and not out.exists()


def test_close_all_with_a_population_the_day_cannot_peak_at_says_so(tmp_path):
    from itchflow.cli import main

    out = tmp_path / "day.itch"
    r = CliRunner().invoke(main, ["gen", str(out), "-n", "20k", "--seed", "0", "--live-orders", "11k", "--close-all",
                                  "-q"])
    assert r.exit_code == 0, r.output
    assert "warning: the peak of live orders is" in r.output and "--close-all" in r.output


def test_a_day_whose_state_cannot_fit_in_memory_is_refused_before_it_starts(monkeypatch):
    """gen -n 10G --live-orders 1400M grew past 4 GB in 33 s on its way to about 80 (probe 32):
    nothing looked at memory, only at the disk (and not at all for .gz or a device). The state
    is sized now against what the machine has, naming the knob that made it big."""
    from itchflow.hw import memory
    from itchflow.sim.generator import ShapeError, memory_needed

    assert memory_needed(10 ** 10, 14 * 10 ** 8) > 70 * 2 ** 30 > memory_needed(10 ** 10, None) > 5 * 2 ** 30
    monkeypatch.setattr(memory, "available_bytes", lambda meminfo=None: 8 * 2 ** 30)
    with pytest.raises(ShapeError, match=r"1,400,000,000 live orders takes about 79\.\d GiB of memory to generate; "
                                         r"this machine has 8\.0 GiB available") as e:
        resolve_shape(10 ** 10, live_orders=14 * 10 ** 8)
    assert e.value.knob == "live_orders"
    resolve_shape(10 ** 10)   # about 7 GiB: it fits
    from itchflow.cli import main

    r = CliRunner().invoke(main, ["gen", "/dev/null", "-n", "10G", "--live-orders", "2G", "-q"])
    assert r.exit_code == 2 and "Invalid value for --live-orders" in r.output and "GiB available" in r.output, r.output
    monkeypatch.setattr(memory, "available_bytes", lambda meminfo=None: 2 ** 30)
    with pytest.raises(ShapeError, match="messages takes about") as e:
        resolve_shape(10 ** 10)
    assert e.value.knob == "messages"
