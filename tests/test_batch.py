"""itchflow.batch / itchflow batch on a LocalCluster of 2 worker processes: for every job the
dataset equals what the single-file commands write for each day, row for row, whatever the
shards; a worker killed mid-task changes nothing; reruns resume from the markers."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

pytest.importorskip("distributed", reason="dask[distributed] is not installed (pip install 'itchflow[dask]')")

import pyarrow as pa  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import itchflow  # noqa: E402
from itchflow.cli import main  # noqa: E402
from itchflow.scale.batch import BatchError, auto_shards, batch  # noqa: E402
from itchflow.scale.batch import plan_days  # noqa: E402
from itchflow.scale.layout import day_key, is_date_key  # noqa: E402
from itchflow.sim.generator import write_day  # noqa: E402

DAYS = {"2019-01-30": ("01302019.NASDAQ_ITCH50", False, 1), "2019-01-31": ("20190131.itch", True, 2),
        "2019-02-01": ("2019-02-01.itch.gz", True, 3)}
MESSAGES = 60_000


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("archive")
    paths = {}
    for day, (name, gz, seed) in DAYS.items():
        p = d / name
        write_day(p, MESSAGES, seed, stocks=30, gz=gz)
        if not gz:
            _break_without_locate(p)
        paths[day] = str(p)
    return d, paths


def _break_without_locate(path) -> int:
    """Rewrite every B of a raw day with locate and tracking number 0, as some feeds send them
    (the generator gives a B the locate of the trade it breaks); returns how many."""
    data = bytearray(open(path, "rb").read())
    p = n = 0
    while p < len(data):
        length = int.from_bytes(data[p:p + 2], "big")
        if data[p + 2:p + 3] == b"B":
            data[p + 3:p + 7] = bytes(4)  # stock locate (2) and tracking number (2)
            n += 1
        p += 2 + length
    open(path, "wb").write(bytes(data))
    return n


def _broadcast_breaks(path: str) -> int:
    d = itchflow.read(path, "B")
    return int(np.count_nonzero(d["B"]["stock_locate"] == 0))


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=50)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _single(tmp_path, command: list[str], name: str) -> pa.Table:
    out = str(tmp_path / name)
    r = CliRunner().invoke(main, command + ["--out", out])
    assert r.exit_code == 0, r.output
    return pq.read_table(out)


def _day_table(out, day: str) -> pa.Table:
    """Every part of one date, as written (partition columns not added), in sequence order."""
    parts = sorted(glob.glob(os.path.join(out, f"date={day}", "**", "*.parquet"), recursive=True))
    assert parts, f"no parts for {day}"
    t = pa.concat_tables([pq.read_table(p) for p in parts])
    return t.sort_by("sequence") if "sequence" in t.column_names else t


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.schema.names == b.schema.names
    assert a.num_rows == b.num_rows and a.num_rows > 0
    for name in a.column_names:
        assert a[name].to_pylist() == b[name].to_pylist(), name


def _symbols(path: str, n: int = 3) -> list[str]:
    """The n most active stocks of the day (by executions), by symbol."""
    d = itchflow.read(path, "RE")
    locs, counts = np.unique(d["E"]["stock_locate"], return_counts=True)
    top = set(locs[np.argsort(-counts)[:n]].tolist())
    r = d["R"]
    return [bytes(s).decode().strip() for s, loc in zip(r["stock"], r["stock_locate"]) if int(loc) in top]


@pytest.mark.parametrize("job,shards", [("bbo", 3), ("trades", None)])
def test_events_equal_single_process(archive, client, tmp_path, job, shards):
    _, paths = archive
    out = str(tmp_path / "ds")
    r = batch(list(paths.values()), job, out, client=client, shards=shards)
    assert [d["date"] for d in r["days"]] == sorted(DAYS)
    assert all(d["shards"] == (shards or auto_shards(3, 2)) for d in r["days"])
    for day, path in paths.items():
        _same(_day_table(out, day), _single(tmp_path, [job, path, "-q"], f"{day}.parquet"))
        summary = json.load(open(os.path.join(out, f"date={day}", "_summary.json")))
        info = itchflow.stats(path)
        assert summary["messages"] == MESSAGES
        assert summary["by_type"] == {k: v for k, v in info.by_type.items() if v}
        assert set(summary["seconds"]) >= {"split", "compute", "write"}
        # the anomalies one process counts: a B with locate 0 reaches every shard, and only the
        # shard of its trade matches it; the others' unknown_match is taken back out
        assert summary["anomalies"] == {k: v for k, v in itchflow.Books().replay(path).anomalies().items() if v}
    breaks = [json.load(open(p))["broadcast_breaks"] for p in glob.glob(os.path.join(out, "_itchflow", "done", "*",
                                                                                    "split.json"))]
    if shards:  # split days: the raw day's B's have locate 0, so the correction was needed
        expected = sum(_broadcast_breaks(p) for p in paths.values())
        assert len(breaks) == 3 and sum(breaks) == expected > 0
    # the dataset is readable as it is, with its partitions
    t = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    assert t.num_rows == sum(d["rows"] for d in r["days"])
    assert {"date", "shard"} <= set(t.column_names)
    import pandas as pd

    assert len(pd.read_parquet(out)) == t.num_rows
    dd = pytest.importorskip("dask.dataframe", reason="dask[dataframe] not installed")
    assert len(dd.read_parquet(out).compute(scheduler="sync")) == t.num_rows


def test_symbols_and_file_urls(archive, client, tmp_path):
    d, paths = archive
    syms = sorted({s for p in paths.values() for s in _symbols(p, 2)})
    out = str(tmp_path / "ds")
    batch(f"file://{d}/*", "trades", out, client=client, shards=2, symbols=syms)
    batch(f"file://{d}/01302019*", "trades", out, client=client, shards=2, symbols=syms)  # same job: resumes
    for day, path in paths.items():
        # the single-day command refuses a symbol its day does not list; the job takes the
        # archive's symbols on every day
        listed = itchflow.Books().replay(path).symbols
        day_syms = [s for s in syms if s in listed]
        assert 0 < len(day_syms) < len(syms)
        single = _single(tmp_path, ["trades", path, "-q", "--symbols", ",".join(day_syms)], f"{day}.parquet")
        assert set(single["symbol"].to_pylist()) <= set(syms)
        _same(_day_table(out, day), single)


def test_stats_and_decode_equal_single_process(archive, client, tmp_path):
    _, paths = archive
    out = str(tmp_path / "stats")
    batch(list(paths.values()), "stats", out, client=client)
    for day, path in paths.items():
        info = itchflow.stats(path)
        t = pq.read_table(os.path.join(out, f"date={day}", "part-0.parquet"))
        assert dict(zip(t["message_type"].to_pylist(), t["messages"].to_pylist())) == \
            {k: v for k, v in info.by_type.items() if v}
    out = str(tmp_path / "decode")
    batch(list(paths.values()), "decode", out, client=client, shards=3, types="AFERS")
    for day, path in paths.items():
        _same(_day_table(out, day), _single(tmp_path, ["decode", path, "-q", "-t", "AFERS"], f"{day}.parquet"))


def test_snapshots_equal_single_process(archive, client, tmp_path):
    _, paths = archive
    path = paths["2019-01-31"]
    syms = _symbols(path, 4)
    out = str(tmp_path / "snap")
    batch([path], "snapshots", out, client=client, shards=3, symbols=syms, every=3600, depth=3)
    keys = [("timestamp", "ascending"), ("stock_locate", "ascending"), ("side", "ascending"), ("level", "ascending")]
    got = _day_table(out, "2019-01-31").sort_by(keys)
    single = _single(tmp_path, ["snapshots", path, "-s", ",".join(syms), "--every", "3600", "-n", "3"], "s.parquet")
    _same(got, single.sort_by(keys))


def test_snapshots_of_a_split_day_take_a_locate_number_as_the_whole_day_does(archive, client, tmp_path):
    """`batch --job snapshots -s 5` worked whole and failed split ("no stock directory (R)
    message for 5": probe 28); and depth -1 (the command's 0) is every level."""
    _, paths = archive
    path = paths["2019-01-31"]
    books = itchflow.Books().replay(path)
    loc = int(books.locate(_symbols(path, 1)[0]))
    keys = [("timestamp", "ascending"), ("stock_locate", "ascending"), ("side", "ascending"), ("level", "ascending")]
    tables = []
    for shards in (1, 3):
        out = str(tmp_path / f"snap{shards}")
        batch([path], "snapshots", out, client=client, shards=shards, symbols=[str(loc)], every=3600, depth=-1)
        tables.append(_day_table(out, "2019-01-31").sort_by(keys))
    single = _single(tmp_path, ["snapshots", path, "-s", str(loc), "--every", "3600", "-n", "0"], "s.parquet")
    assert tables[0].num_rows > 0 and set(tables[0]["stock_locate"].to_pylist()) == {loc}
    _same(tables[1], tables[0])
    _same(tables[0], single.sort_by(keys))


def test_lobster_equals_single_process(archive, client, tmp_path):
    # each stock's rows in the dataset are lobster()'s tables for it, in order, whatever shard held it
    from itchflow.sinks.lobster import lobster

    _, paths = archive
    path = paths["2019-02-01"]  # gzipped
    syms = _symbols(path, 4)
    out = str(tmp_path / "lob")
    r = batch([path], "lobster", out, client=client, shards=3, symbols=syms, levels=3, start="09:45", end="15:00")
    got = _day_table(out, "2019-02-01")
    single = lobster(path, syms, 3, start="09:45", end="15:00")
    assert got.column_names[0] == "symbol" and got.num_rows == sum(d.rows for d in single.values())
    for s in syms:
        mine = got.filter(pa.compute.equal(got["symbol"], s)).drop(["symbol"])
        assert mine.num_rows == single[s].rows > 100
        assert mine.to_pydict() == single[s].messages.to_pydict() | single[s].orderbook.to_pydict(), s
    day = r["days"][0]
    assert day["rows"] == got.num_rows and day["messages"] == itchflow.stats(path).messages
    assert day.get("skipped", {}) == _sum_dicts(d.skipped for d in single.values())
    # a symbol the day does not have is the day's error, naming it, not rows silently missing
    from itchflow.scale.batch import BatchError

    with pytest.raises(BatchError) as e:
        batch([path], "lobster", str(tmp_path / "lob2"), client=client, shards=2, symbols=syms[:1] + ["NOPE"])
    assert "NOPE" in str(e.value.result["failed"])
    with pytest.raises(ValueError, match="lobster needs symbols"):
        batch([path], "lobster", str(tmp_path / "lob3"), client=client)
    with pytest.raises(ValueError, match="between 1 and 1000"):
        batch([path], "lobster", str(tmp_path / "lob3"), client=client, symbols=syms, levels=0)


@pytest.mark.parametrize("day,shards,top", [("2019-01-30", 3, 0), ("2019-02-01", 2, 4), ("2019-01-31", 1, 0)])
def test_bars_equal_single_process(archive, client, tmp_path, day, shards, top):
    """The bars job: every shard's panel is its own stocks', so the parts together are
    itchflow.bars' panel row for row (every stock, or the chosen ones; a raw day whose B's
    carry locate 0, so they reach every shard; a gzipped day), and the day's summary counts
    what one process counts."""
    _, paths = archive
    path = paths[day]
    syms = _symbols(path, top) if top else None
    out = str(tmp_path / "bars")
    r = batch([path], "bars", out, client=client, shards=shards, symbols=syms, every=900, start="09:30",
              end="16:00")
    keys = [("symbol", "ascending"), ("start_ns", "ascending")]
    got = _day_table(out, day).sort_by(keys)
    single = itchflow.bars(path, every=900, symbols=syms).sort_by(keys)
    assert got.schema == single.schema
    assert got.to_pandas().equals(single.to_pandas())   # NaN (an empty side, no trade) where it is
    assert got.num_rows == (top or len(set(single["symbol"].to_pylist()))) * 26 > 26
    summary = r["days"][0]
    assert summary["rows"] == got.num_rows and summary["messages"] == MESSAGES
    assert summary["anomalies"] == {k: v for k, v in itchflow.Books().replay(path).anomalies().items() if v}


@pytest.mark.parametrize("job", ["crosses", "imbalances"])
def test_auction_tables_equal_single_process(archive, client, tmp_path, job):
    """The crosses and imbalances jobs: a day a task and a part, each day's table the one
    itchflow.auctions gives (cross_row a row of the day's crosses)."""
    _, paths = archive
    out = str(tmp_path / job)
    r = batch(list(paths.values()), job, out, client=client, shards=3)
    for summary in r["days"]:
        day = summary["date"]
        assert glob.glob(os.path.join(out, f"date={day}", "*.parquet"))   # no shard folders
        got = _day_table(out, day)
        single = getattr(itchflow.auctions(paths[day]), job)
        assert got.schema == single.schema and got.num_rows > 10
        assert got.to_pandas().equals(single.to_pandas())
        assert summary["shards"] == 1 and summary["rows"] == got.num_rows and summary["messages"] == MESSAGES
        assert summary["by_type"] == {k: v for k, v in itchflow.stats(paths[day]).by_type.items() if v}


def test_batch_snapshots_with_no_time_in_the_day_fail_the_day(archive, client, tmp_path):
    """--every longer than the day's span wrote an empty part and counted the day as 0
    messages; the single-file command already refused it. Both now take every_times' error."""
    from itchflow.scale.batch import BatchError

    _, paths = archive
    path = paths["2019-01-30"]
    with pytest.raises(BatchError) as e:
        batch([path], "snapshots", str(tmp_path / "snap"), client=client, symbols=["AAPL"], every=86_400)
    failed = str(e.value.result["failed"])
    assert "no snapshot time falls within the day" in failed and "2019-01-30" in failed, failed


def _sum_dicts(ds) -> dict:
    out: dict = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _alive(pid: int) -> bool:
    """A running process (a zombie not yet reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_killed_worker_gives_the_same_dataset(archive, client, tmp_path):
    _, paths = archive
    out = str(tmp_path / "ds")
    marker = str(tmp_path / "crashed")
    batch(list(paths.values()), "bbo", out, client=client, shards=3, crash_once=marker)
    assert os.path.exists(marker), "the fault hook did not fire"
    assert not _alive(int(open(marker).read())), "the worker process that took the task is gone"
    for day, path in paths.items():
        _same(_day_table(out, day), _single(tmp_path, ["bbo", path, "-q"], f"{day}.parquet"))
    leftovers = [p for p in glob.glob(os.path.join(out, "date=*", "**", "*"), recursive=True)
                 if os.path.isfile(p) and not p.endswith(("part-0.parquet", "_summary.json"))]
    assert leftovers == []
    assert not os.path.exists(os.path.join(out, "_itchflow", "scratch", "2019-01-30"))


def test_rerun_resumes_and_redoes_only_what_is_missing(archive, client, tmp_path):
    _, paths = archive
    out = str(tmp_path / "ds")
    first = batch(list(paths.values()), "bbo", out, client=client, shards=2, keep_scratch=True)
    before = {day: _day_table(out, day) for day in paths}
    again = batch(list(paths.values()), "bbo", out, client=client, shards=2)
    assert again["tasks"] == 0 and again["resumed_days"] == sorted(DAYS)
    # every day was done before: this run's rate is of nothing, not the archive over no time
    assert again["messages"] == first["messages"] and again["run_messages"] == 0 and again["msgs_per_s"] == 0
    # lose one shard's output and the day's marker: only that shard and the finish run again
    meta = os.path.join(out, "_itchflow", "done", "2019-01-31")
    os.remove(os.path.join(meta, "day.json"))
    os.remove(os.path.join(meta, "shard-1.json"))
    os.remove(os.path.join(out, "date=2019-01-31", "shard=1", "part-0.parquet"))
    seen = []
    third = batch(list(paths.values()), "bbo", out, client=client, shards=2, progress=seen.append)
    assert third["tasks"] == 4  # split (marker found: returns at once), 2 shards (one resumes), finish
    assert {e["kind"] for e in seen} == {"split", "shard", "finish"}
    # only shard 1 of 2019-01-31 ran: its share of the day's messages makes the rate (the
    # whole day's, as before, counted shard 0's that an earlier run did)
    redone = round(first["days"][1]["messages"] / 2)
    assert third["resumed_days"] == sorted(set(DAYS) - {"2019-01-31"}) and third["run_messages"] == redone
    assert third["msgs_per_s"] == pytest.approx(redone / third["seconds"])
    assert seen[-1]["messages"] == redone   # the bar counts this run's messages only
    for day in paths:
        _same(_day_table(out, day), before[day])
    assert first["days"][1]["rows"] == third["days"][1]["rows"]
    with pytest.raises(ValueError, match="different job"):
        batch(list(paths.values()), "trades", out, client=client)


def test_a_rerun_on_a_changed_input_is_refused_not_resumed(archive, client, tmp_path):
    """A rerun on another file of the same date (or the file rewritten) said "already done
    (resumed)" and returned the old day's results."""
    import shutil

    _, paths = archive
    d = tmp_path / "in"
    d.mkdir()
    day = d / os.path.basename(paths["2019-01-30"])
    shutil.copy(paths["2019-01-30"], day)
    out = str(tmp_path / "ds")
    first = batch([str(day)], "stats", out, client=client)
    assert batch([str(day)], "stats", out, client=client)["resumed_days"] == ["2019-01-30"]
    with open(day, "ab") as f:   # another day of that date: here, one more message
        f.write(itchflow.encode_message("S", timestamp=1, event_code="C"))
    with pytest.raises(ValueError, match=r"2019-01-30 \(size \d+ -> \d+, modified .*another output directory"):
        batch([str(day)], "stats", out, client=client)
    shutil.rmtree(os.path.join(out, "date=2019-01-30"))
    shutil.rmtree(os.path.join(out, "_itchflow", "done", "2019-01-30"))
    redone = batch([str(day)], "stats", out, client=client)
    assert redone["days"][0]["messages"] == first["days"][0]["messages"] + 1


def test_cli_batch(archive, client, tmp_path):
    _, paths = archive
    out = str(tmp_path / "ds")
    r = CliRunner().invoke(main, ["batch", paths["2019-01-30"], paths["2019-02-01"], "--job", "bbo", "--out", out,
                                  "--scheduler", client.scheduler.address, "--shards", "2", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    assert [d["date"] for d in res["days"]] == ["2019-01-30", "2019-02-01"]
    r = CliRunner().invoke(main, ["batch", paths["2019-01-30"], "--job", "bbo", "--out", out,
                                  "--scheduler", client.scheduler.address, "--shards", "2"])
    assert r.exit_code == 0, r.output
    assert "2019-01-30" in r.output and "dashboard" in r.output
    bad = tmp_path / "2019-03-01.itch"
    bad.write_bytes(open(paths["2019-01-30"], "rb").read()[:5000])  # cut inside a message
    r = CliRunner().invoke(main, ["batch", str(bad), "--job", "bbo", "--out", str(tmp_path / "bad"),
                                  "--scheduler", client.scheduler.address, "--shards", "2"])
    assert r.exit_code == 1 and "2019-03-01" in r.output and "truncated" in r.output


def _assert_shards_rebuild_day(folder, shards: int, day_path: str) -> None:
    """Every message once (broadcast copies dropped), in original sequence order, byte for byte."""
    import gzip

    by_seq = {}
    for k in range(shards):
        seqs = np.fromfile(folder / f"shard-{k}.seq", "<u8")
        raw = np.fromfile(folder / f"shard-{k}.itch", np.uint8)
        pos = 0
        for s in seqs.tolist():
            n = 2 + (int(raw[pos]) << 8 | int(raw[pos + 1]))
            by_seq.setdefault(s, raw[pos:pos + n].tobytes())
            pos += n
        assert pos == len(raw)
    rebuilt = b"".join(by_seq[s] for s in sorted(by_seq))
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1))
    with open(day_path, "rb") as f:
        day = gzip.decompress(f.read()) if day_path.endswith(".gz") else f.read()
    assert rebuilt == day


def test_split_streams_fsspec_urls(archive, tmp_path):
    """A day behind a non-local URL (fsspec's memory filesystem here, s3:// alike) is streamed
    and split exactly as the local file is, raw or gzipped."""
    import fsspec

    from itchflow.scale.inputs import expand
    from itchflow.scale.split import split_day

    _, paths = archive
    fs = fsspec.filesystem("memory")
    for day in ("2019-01-30", "2019-02-01"):
        local = paths[day]
        url = f"memory://itchflow-test/{os.path.basename(local)}"
        fs.pipe(url, open(local, "rb").read())
        a = split_day(local, str(tmp_path / "local"), day, 3, "SR", row_bytes=1 << 17)
        b = split_day(url, str(tmp_path / "url"), day, 3, "SR", row_bytes=1 << 17)
        for key in ("messages", "by_type", "first_timestamp_ns", "last_timestamp_ns"):
            assert a[key] == b[key], key
        # a raw local day is split by a balanced map, a streamed one round-robin (as a local .gz)
        assert (a["map"], b["map"]) == (("balanced" if day == "2019-01-30" else "round-robin"), "round-robin")
        if a["map"] == b["map"]:
            for k in range(3):
                for ext in ("itch", "seq"):
                    name = f"_itchflow/scratch/{day}/shard-{k}.{ext}"
                    assert open(tmp_path / "local" / name, "rb").read() == open(tmp_path / "url" / name, "rb").read()
        for folder in ("local", "url"):  # the shards put back in sequence order are the day again
            _assert_shards_rebuild_day(tmp_path / folder / "_itchflow" / "scratch" / day, 3, local)
        assert sum(a["shard_messages"]) >= a["messages"] == MESSAGES
        from itchflow.scale.jobs import run_stats

        sa = run_stats(local, str(tmp_path / f"{day}-a.parquet"))
        sb = run_stats(url, str(tmp_path / f"{day}-b.parquet"))
        assert sa["info"] == sb["info"] and sa["by_type"] == a["by_type"]
    found = expand("memory://itchflow-test/*")
    assert [os.path.basename(u) for u in found] == sorted(os.path.basename(paths[d]) for d in ("2019-01-30", "2019-02-01"))
    assert all(u.startswith("memory://") and fs.exists(u) for u in found)


def test_day_keys_and_option_errors(tmp_path):
    assert day_key("/x/01302019.NASDAQ_ITCH50.gz") == "2019-01-30"
    assert day_key("s3://b/20190130.itch") == "2019-01-30"
    assert day_key("2019-01-30.bin") == "2019-01-30"
    assert day_key("S013019-v50.txt.gz") == "2019-01-30"
    assert day_key("/x/monday.itch") == "monday"
    # not a day of the calendar: no date (it was 2019-02-31), named by its stem
    assert day_key("20190231.itch") == "20190231" and day_key("02312019.itch") == "02312019"
    assert day_key("20200229.itch") == "2020-02-29" and day_key("20190229.itch") == "20190229"
    assert is_date_key("2020-02-29") and not is_date_key("20190231") and not is_date_key("README")
    # a stem can look like a date and not be one (probe 24): named by it, and warned of
    assert day_key("2019-02-31.itch") == "2019-02-31" and not is_date_key("2019-02-31")
    assert not is_date_key("2019-13-01") and not is_date_key("2019-02-29")
    assert auto_shards(1, 8) == 8 and auto_shards(10, 8) == 1 and auto_shards(3, 8) == 3
    p = tmp_path / "20190130.itch"
    p.write_bytes(b"")
    with pytest.raises(ValueError, match="unknown job"):
        batch([str(p)], "nope", str(tmp_path / "o"))
    with pytest.raises(ValueError, match="snapshots needs"):
        batch([str(p)], "snapshots", str(tmp_path / "o"), symbols=["AAPL"])
    with pytest.raises(ValueError, match="at least 1 ns"):
        batch([str(p)], "snapshots", str(tmp_path / "o"), symbols=["AAPL"], every=1e-12)
    with pytest.raises(ValueError, match="takes no option"):
        batch([str(p)], "bbo", str(tmp_path / "o"), depth=3)
    q = tmp_path / "01302019.itch"
    q.write_bytes(b"")
    with pytest.raises(ValueError, match="same day"):
        batch([str(p), str(q)], "bbo", str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError):
        batch(str(tmp_path / "none*.itch"), "bbo", str(tmp_path / "o"))


def test_year_projection_by_hand():
    from itchflow.bench.batch import project_year

    cost = {"day": 1e-7, "split": 2e-8, "shard": 1e-7}
    two = project_year(cost, 2, 1.0)  # 125 rounds of a 37 s day; storage 250 x 5 GB at 1 GB/s = 1250 s
    assert two["compute_s"] == pytest.approx(125 * 37.0) and two["io_s"] == pytest.approx(1250.0)
    assert two["bound"] == "compute" and two["shards_per_day"] == 1
    many = project_year(cost, 1000, 1.0, imbalance=1.2)  # 4 shards a day: 370e6 x (2e-8 + 1.2e-7 / 4)
    assert many["shards_per_day"] == 4 and many["compute_s"] == pytest.approx(370e6 * (2e-8 + 1.2e-7 / 4))
    assert many["seconds"] == pytest.approx(1250.0) and many["bound"] == "storage"


def test_a_task_whose_workers_all_died_is_reported_with_the_likely_causes():
    """Dask's KilledWorker says only that workers died; a real day's mapped pages once pushed
    every worker past its memory limit. The report names the memory limit and what to change."""
    from types import SimpleNamespace

    from distributed import KilledWorker

    from itchflow.scale.batch import _error_text

    e = KilledWorker("shard-2025-12-01-0", SimpleNamespace(address="tcp://127.0.0.1:39867"), 3)
    text = _error_text(e)
    assert text.startswith("KilledWorker: every worker that ran it died")
    assert "memory passes 95% of its limit" in text and "--shards" in text
    assert "shard-2025-12-01-0" in text and "tcp://127.0.0.1:39867" in text  # Dask's own words kept
    assert _error_text(ValueError("bad day")) == "ValueError: bad day"


def test_a_days_anomalies_add_up_over_its_shards(tmp_path):
    """A shard's counts are of its stocks and add up, except those from messages every shard
    applies (R: directory_conflict), which each shard counts in full: the day's is one shard's."""
    from itchflow.scale.tasks import finish_day

    parts = [{"anomalies": {"unknown_reference": 2, "directory_conflict": 1}, "rows": 5, "seconds": 1.0,
              "messages": 10},
             {"anomalies": {"unknown_reference": 3, "directory_conflict": 1, "bad_printable": 4}, "rows": 7,
              "seconds": 2.0, "messages": 12}]
    s = finish_day(None, parts, "day.itch", str(tmp_path), "2019-01-30", "bbo")
    assert s["anomalies"] == {"unknown_reference": 5, "directory_conflict": 1, "bad_printable": 4}
    assert s["rows"] == 12 and s["messages"] == 22


def test_batch_symbols_naming_nothing_are_refused_as_in_the_single_file_commands(tmp_path):
    """`batch -s ,` ran every day's job over every stock's nothing (the job parsed symbols by
    its own rule); now one rule (sinks._symbols.symbol_list) serves both."""
    from itchflow.cli import main
    from itchflow.scale import jobs

    r = CliRunner().invoke(main, ["batch", str(tmp_path / "day.itch"), "-j", "bbo", "-s", " , ", "-o",
                                  str(tmp_path / "out")])
    assert r.exit_code == 2 and "--symbols" in r.output, r.output
    with pytest.raises(ValueError, match="give at least one symbol"):
        jobs.job_options("bbo", ",", {})
    assert jobs.job_options("bbo", "aapl, msft,AAPL", {})[0] == ["AAPL", "MSFT"]
    assert jobs.job_options("bbo", None, {})[0] is None


def test_a_failed_day_is_said_once_without_the_workers_traceback(tmp_path):
    """The batch command names a failed day and its offset itself; the LocalCluster's workers
    also logged "Compute Failed" with the task's whole traceback on stderr, even with -q."""
    import subprocess
    import sys

    bad = tmp_path / "bad.itch"
    bad.write_bytes(b"garbage\x00\x05Zxxxx")
    r = subprocess.run([sys.executable, "-m", "itchflow.cli", "batch", str(bad), "-j", "stats", "-o",
                        str(tmp_path / "out"), "-q", "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "byte offset 0: truncated message" in r.stderr and str(bad) in r.stderr
    assert "Compute Failed" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_scheduler_that_is_not_there_is_reported_within_the_connect_time_out(tmp_path):
    """--scheduler at an address nothing listens on took distributed's 30 s to report."""
    import socket
    import time as _time

    from itchflow.cli import main
    from itchflow.scale.batch import SCHEDULER_CONNECT_S

    with socket.socket() as s:      # a port bound and not listening: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        day = tmp_path / "01302019.NASDAQ_ITCH50"
        write_day(day, 20_000, 1, stocks=10)
        t0 = _time.monotonic()
        r = CliRunner().invoke(main, ["batch", str(day), "-j", "stats", "-o", str(tmp_path / "out"),
                                      "--scheduler", f"tcp://127.0.0.1:{port}"])
        took = _time.monotonic() - t0
    assert r.exit_code == 1 and f"127.0.0.1:{port}" in r.output, r.output
    assert took < SCHEDULER_CONNECT_S + 10 < 30, took


def test_the_command_line_lists_every_job():
    """``itchflow batch`` names its jobs itself (it does not import the scale layer, to start
    fast): the two lists stay the same."""
    from itchflow.cli.batch import _JOBS
    from itchflow.scale.jobs import JOBS

    assert _JOBS == JOBS


def test_a_capture_days_losses_reach_its_summary(client, tmp_path):
    """A day that is a capture with a lost packet and a repeated one: the day's summary says
    so (capture gaps, missing and duplicate messages), whether the day was split into shards,
    run whole or read for stats, and its books equal the capture's own; the split of the same
    capture behind a URL (fsspec's memory filesystem, which the worker processes do not
    share: split here) counts the same. Before, a batch dropped a capture's counters: its
    holes went unreported."""
    import fsspec

    import itch_reference as ref
    from itchflow.protocol.mold.feed import MoldFeed
    from itchflow.scale.split import split_day

    day = tmp_path / "day.itch"
    write_day(day, MESSAGES, 4, stocks=30)
    feed = MoldFeed(np.fromfile(day, np.uint8), b"BATCH", 1400)
    lost, repeated = 5, 9
    order = [i for i in range(feed.n_packets) if i != lost] + [repeated]
    capture = tmp_path / "2019-03-01.pcap"
    capture.write_bytes(ref.pcap_file([ref.eth_ipv4_udp(feed.packet_bytes(i)) for i in order]))
    want = {"gaps": 1, "missing_messages": int(feed.counts[lost]), "duplicate_messages": int(feed.counts[repeated])}
    fs = fsspec.filesystem("memory")
    url = "memory://itchflow-batch-capture/2019-03-01.pcap"
    fs.pipe(url, capture.read_bytes())
    try:
        for n, (job, shards) in enumerate([("bbo", 2), ("bbo", 1), ("stats", None)]):
            r = batch([str(capture)], job, str(tmp_path / f"out{n}"), client=client, shards=shards)
            summary = r["days"][0]
            assert summary["messages"] == MESSAGES - want["missing_messages"], (job, shards)
            assert {k: summary["capture"][k] for k in want} == want, (job, shards)
            if job == "bbo":
                assert summary["anomalies"] == {k: v for k, v in itchflow.Books().replay(str(capture)).anomalies().items()
                                                if v}
        split = split_day(url, str(tmp_path / "url"), "2019-03-01", 2, "SR")
        assert split["messages"] == MESSAGES - want["missing_messages"]
        assert {k: split["capture"][k] for k in want} == want
    finally:
        fs.rm(url)


def test_a_day_whose_part_went_missing_is_redone_not_reported_done(archive, client, tmp_path):
    """Its marker said done, so a rerun reported the day with its rows over a dataset that
    lacked a shard (a failed sync, a cleanup script)."""
    _, paths = archive
    out = str(tmp_path / "ds")
    batch(list(paths.values()), "trades", out, client=client, shards=2)
    before = {day: _day_table(out, day) for day in paths}
    os.remove(os.path.join(out, "date=2019-01-31", "shard=1", "part-0.parquet"))
    again = batch(list(paths.values()), "trades", out, client=client, shards=2)
    assert list(again["redone_days"]) == ["2019-01-31"] and "part(s) missing" in again["redone_days"]["2019-01-31"]
    assert again["resumed_days"] == sorted(set(DAYS) - {"2019-01-31"})
    for day in paths:
        _same(_day_table(out, day), before[day])


def test_a_corrupt_download_replaced_is_run_not_refused_as_changed(archive, client, tmp_path):
    """Nothing was made from the cut file: the good copy of that day simply runs (it was
    refused as "the input changed", the README's rerun being the fix the user tried)."""
    import shutil

    _, paths = archive
    good = paths["2019-02-01"]
    d = tmp_path / "in"
    d.mkdir()
    day = d / os.path.basename(good)
    day.write_bytes(open(good, "rb").read()[:40_000])            # a cut gzip download
    out = str(tmp_path / "ds")
    with pytest.raises(BatchError, match="2019-02-01"):
        batch([str(day)], "trades", out, client=client)
    shutil.copy(good, day)
    done = batch([str(day)], "trades", out, client=client)
    want = batch([good], "trades", str(tmp_path / "ref"), client=client)
    assert done["days"][0]["rows"] == want["days"][0]["rows"] > 0
    _same(_day_table(out, "2019-02-01"), _day_table(str(tmp_path / "ref"), "2019-02-01"))


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"])
def test_a_port_that_is_no_scheduler_is_a_clear_error_and_leaves_no_job_behind(tmp_path, answer):
    """A port that accepts and says nothing hung batch for good; one that answers HTTP gave a
    numpy MemoryError of exabytes (its bytes read as a frame length). Neither may leave a
    job.json that refuses the corrected command."""
    import socket
    import threading

    from itchflow.cli import main
    from itchflow.scale.batch import check_scheduler

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns = []

    def serve():
        try:
            while True:
                c, _ = srv.accept()
                conns.append(c)
                if answer is not None:
                    c.sendall(answer)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    day = tmp_path / "01302019.NASDAQ_ITCH50"
    write_day(day, 20_000, 1, stocks=10)
    out = tmp_path / "out"
    try:
        with pytest.raises(ConnectionError, match=f"no Dask scheduler at tcp://127.0.0.1:{srv.getsockname()[1]}"):
            check_scheduler(f"tcp://127.0.0.1:{srv.getsockname()[1]}", timeout_s=1.0)
        r = CliRunner().invoke(main, ["batch", str(day), "-j", "trades", "-s", "AAPL", "-o", str(out),
                                      "--scheduler", f"tcp://127.0.0.1:{srv.getsockname()[1]}"])
    finally:
        srv.close()
        for c in conns:
            c.close()
    assert r.exit_code == 1 and "no Dask scheduler" in r.output and "Traceback" not in r.output, r.output
    assert not (out / "_itchflow" / "job.json").exists()


def test_a_split_into_many_shards_holds_bounded_buffers(tmp_path):
    """Each shard's buffer was 4 MiB whatever the count: 4,096 shards (which the command
    accepts) asked for tens of GB and killed every worker."""
    import tracemalloc

    from itchflow.scale import jobs
    from itchflow.scale.split import split_day

    day = tmp_path / "20190130.itch"
    write_day(day, 20_000, 1, stocks=10)
    tracemalloc.start()
    try:
        summary = split_day(str(day), str(tmp_path / "out"), "2019-01-30", 4096, jobs.BROADCAST_TYPES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary["messages"] == 20_000 and peak < 800 << 20, peak


def test_a_folder_a_glob_matches_is_no_day_and_an_unwritable_part_fails_its_day_by_name(archive, client, tmp_path):
    """A glob over a folder that holds a subfolder took the subfolder as a day; its error was
    raised 'from' itself, and distributed's walk of the causes never ended (a hung batch, a
    worker growing ~95 MB/s)."""
    import shutil

    from itchflow.sinks.events import events_to_parquet

    _, paths = archive
    d = tmp_path / "in"
    (d / "old").mkdir(parents=True)
    shutil.copy(paths["2019-01-30"], d)
    r = batch(str(d / "*"), "trades", str(tmp_path / "ds"), client=client)
    assert [x["date"] for x in r["days"]] == ["2019-01-30"]
    with pytest.raises(OSError) as e:
        events_to_parquet(str(d / "old"), str(tmp_path / "x.parquet"), "trades")
    assert e.value.__cause__ is not e.value


def test_a_days_summary_does_not_change_with_its_shards(archive, client, tmp_path):
    """snapshots' replay stops at the last time and a shard without the symbols replays
    nothing, so its engine counts changed with --shards (and a one-shard day was a message
    short); lobster's one-shard summary had no per-type counts. The day's messages and types
    are now counted in full, as stats counts them, whatever the shards."""
    _, paths = archive
    day = paths["2019-01-30"]
    want = itchflow.stats(day)
    syms = _symbols(day, 2)
    for job, opts in (("snapshots", {"at": [36_000 * 10**9], "depth": 3}), ("lobster", {"levels": 2})):
        seen = []
        for shards in (1, 2, 3):
            r = batch([day], job, str(tmp_path / f"{job}{shards}"), client=client, shards=shards, symbols=syms,
                      **opts)
            s = r["days"][0]
            assert s["messages"] == want.messages and sum(s["by_type"].values()) == want.messages, (job, shards)
            assert s["anomalies"] == {}, (job, shards)
            seen.append(s["rows"])
        assert len(set(seen)) == 1 and seen[0] > 0, (job, seen)


def test_another_job_where_the_first_made_nothing_plans_its_own_shards(archive, client, tmp_path):
    """A first job that failed before any task finished leaves its plans (shards, split); the
    next job in that directory is not refused, and splits as it asks, not as the first did."""
    _, paths = archive
    good = paths["2019-01-30"]
    d = tmp_path / "in"
    d.mkdir()
    day = d / os.path.basename(good)
    day.write_bytes(open(good, "rb").read()[:30_000])           # a cut day: the stats job fails
    out = str(tmp_path / "ds")
    with pytest.raises(BatchError):
        batch([str(day)], "stats", out, client=client)
    day.write_bytes(open(good, "rb").read())
    r = batch([str(day)], "trades", out, client=client, shards=2)
    assert r["days"][0]["shards"] == 2 and r["days"][0]["rows"] > 0


def test_a_split_on_a_full_disk_names_the_shard_and_leaves_no_temps(archive, full_disk):
    """The error said "[Errno 28] No space left on device" and no file, and the split's temp
    files stayed behind, keeping the disk full until a rerun."""
    from itchflow.scale.layout import Layout
    from itchflow.scale.split import split_day

    _, paths = archive
    day = "2019-01-30"
    with pytest.raises(OSError) as e:
        split_day(paths[day], str(full_disk), day, 2, "SR", row_bytes=1 << 17)
    assert e.value.errno == 28 and os.path.basename(e.value.filename).startswith("shard-")
    scratch = Layout(str(full_disk)).scratch(day)
    assert os.listdir(scratch) == [], os.listdir(scratch)


def _limited(soft: int, hard: int, code: str):
    """Run code in a fresh interpreter whose open-files limit is (soft, hard)."""
    import resource
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))


def test_a_local_cluster_under_a_low_open_files_limit_is_refused_at_once(archive, tmp_path):
    """Under ``ulimit -n 16`` batch logged EMFILE in a loop until killed (at 12: 60 s, then pages
    of tracebacks). The limit is checked before the cluster starts: the command says what to do."""
    import time

    t = time.monotonic()
    day = sorted(archive[1].values())[0]
    code = ("import sys; from itchflow.cli import main; "
            f"sys.argv = ['itchflow', 'batch', {day!r}, '-j', 'stats', '-o', {str(tmp_path / 'o')!r}, "
            "'--workers', '2', '-q']; main()")
    res = _limited(16, 16, code)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    assert time.monotonic() - t < 60
    assert res.stderr.startswith("itchflow: error: a local cluster of 2 worker(s) needs at least "), res.stderr
    assert "may open 16 (ulimit -n; hard limit 16)" in res.stderr and "Traceback" not in res.stderr
    assert not os.path.exists(tmp_path / "o" / "_itchflow" / "job.json")   # refused before anything was written


def test_a_low_soft_open_files_limit_is_raised_up_to_the_hard_one():
    from itchflow.scale.batch import OPEN_FILES_BASE, OPEN_FILES_PER_WORKER

    need = OPEN_FILES_BASE + 4 * OPEN_FILES_PER_WORKER
    res = _limited(16, 4096, "import resource; from itchflow.scale.batch import ensure_open_files; "
                   "print(ensure_open_files(4), resource.getrlimit(resource.RLIMIT_NOFILE))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(need), f"({need},", "4096)"]
    res = _limited(2048, 4096, "from itchflow.scale.batch import ensure_open_files; print(ensure_open_files(4))")
    assert res.stdout.split() == ["2048"]   # enough already: left as it is


def test_one_file_named_two_ways_is_one_day(tmp_path, monkeypatch):
    """arch/X and ./arch/X were refused as two files of one date; a link to a day, of the same
    date, is that day; a link named for another date is refused, naming both (it was dropped in
    silence, and the date was whichever name sorted first: probe 24)."""
    arch = tmp_path / "arch"
    arch.mkdir()
    day = arch / "20190130.itch"
    day.write_bytes(b"")
    (arch / "2019-01-30.itch").symlink_to(day)
    monkeypatch.chdir(tmp_path)
    assert plan_days(["arch/20190130.itch", "./arch/20190130.itch", str(day), "arch/2019-01-30.itch"]) == \
        [("2019-01-30", "arch/20190130.itch")]
    (arch / "2019-01-29.itch").symlink_to(day)
    with pytest.raises(ValueError, match="the same file .* under two dates"):
        plan_days(["arch"])


def _with_unknown_type(src: str, dst, index: int) -> None:
    """A copy of the day at src whose index-th message (a D) has the unknown type z."""
    data = bytearray(open(src, "rb").read())
    p = k = 0
    while p < len(data):
        length = int.from_bytes(data[p:p + 2], "big")
        if data[p + 2:p + 3] == b"D":
            if k == index:
                data[p + 2] = ord("z")
                break
            k += 1
        p += 2 + length
    open(dst, "wb").write(bytes(data))


def test_unknown_types_are_counted_in_full_whatever_the_job_and_shards(archive, client, tmp_path):
    """An unsplit day's book jobs left a message of an unknown type out of its messages and
    said nothing of it (the books skip it; the summary read a count they do not keep); decode
    reported no unknown types at all; a split day spelt the type 0x7a where stats says z."""
    _, paths = archive
    day = tmp_path / "20190304.itch"
    _with_unknown_type(paths["2019-01-30"], day, 100)
    want = itchflow.stats(str(day))
    assert want.unknown_by_type == {"z": 1}
    for job, shards in (("bbo", 1), ("bbo", 2), ("bars", 1), ("decode", 1), ("decode", 2)):
        r = batch([str(day)], job, str(tmp_path / f"{job}{shards}"), client=client, shards=shards)
        s = r["days"][0]
        assert (s["messages"], s["unknown_by_type"]) == (want.messages, {"z": 1}), (job, shards)
        assert sum(s["by_type"].values()) + 1 == want.messages, (job, shards)
    # the command line warns of them, as the single-file commands do; and of an empty day
    (tmp_path / "20190305.itch").write_bytes(b"")
    r = CliRunner().invoke(main, ["batch", str(day), str(tmp_path / "20190305.itch"), str(tmp_path / "notes.itch"),
                                  "--job", "trades", "--out", str(tmp_path / "cli"),
                                  "--scheduler", client.scheduler.address])
    (tmp_path / "notes.itch").write_bytes(b"")
    assert r.exit_code == 1 and "notes.itch" in r.output   # (not there yet when it ran)
    r = CliRunner().invoke(main, ["batch", str(day), str(tmp_path / "20190305.itch"), str(tmp_path / "notes.itch"),
                                  "--job", "trades", "--out", str(tmp_path / "cli"),
                                  "--scheduler", client.scheduler.address])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "2019-03-04: 1 messages of unknown types skipped (z 1)" in text
    assert "2019-03-05: no messages (an empty file?)" in text
    assert "no date in the name of 1 file(s), partitioned by the name instead (date=NAME): notes" in text


def test_batch_with_symbols_says_the_chosen_stocks_anomalies_and_totals_the_others(archive, client, tmp_path):
    """probe 24: batch bbo/bars -s AAPL reported every stock's anomalies as the day's, where the
    single-file commands now say the chosen stocks' and total the others'."""
    from test_book_support import add, delete, directory, encode

    day = tmp_path / "20190306.itch"
    day.write_bytes(encode([directory(1, "AAA"), directory(2, "BBB"), add(1, 1, "B", 0, 10_000),
                            delete(2, 77), delete(2, 78), add(2, 5, "S", 10, 10_100)]))
    for job, shards in (("bbo", 1), ("bars", 1), ("trades", 2)):
        s = batch([str(day)], job, str(tmp_path / f"{job}{shards}"), client=client, shards=shards,
                  symbols=["AAA"])["days"][0]
        assert (s["anomalies"], s["other_stocks_anomalies"]) == ({"zero_shares": 1}, 2), (job, shards)
    s = batch([str(day)], "bbo", str(tmp_path / "all"), client=client)["days"][0]   # every stock: as before
    assert s["anomalies"] == {"zero_shares": 1, "unknown_reference": 2} and "other_stocks_anomalies" not in s


def test_a_second_run_into_one_directory_is_refused_naming_the_first(tmp_path):
    """Two batch runs into one OUT failed on each other's temporary files ("FileNotFoundError:
    .tmp-....part-0.parquet", probe 30): the directory is held by one run at a time, the lock
    going with the run (or its process)."""
    from itchflow.scale.layout import Layout, hold_directory

    lay = Layout(str(tmp_path / "out"))
    write_day(tmp_path / "20200102.itch", 20_000, 1, stocks=10)
    with hold_directory(lay):
        with pytest.raises(ValueError, match=f"another batch run \\(process {os.getpid()}\\) is writing this"):
            with hold_directory(lay):
                pass
        r = CliRunner().invoke(main, ["batch", str(tmp_path / "20200102.itch"), "--job", "stats",
                                      "--out", lay.root])
        assert r.exit_code != 0 and "another batch run" in r.output, r.output
    with hold_directory(lay):   # let go at the end of the first
        pass
    # a run that never started (a missing input) leaves no folder behind it (probe 33)
    fresh = tmp_path / "typo" / "out"
    r = CliRunner().invoke(main, ["batch", str(tmp_path / "missing.itch"), "--job", "stats", "--out", str(fresh)])
    assert r.exit_code != 0 and not (tmp_path / "typo").exists(), r.output


def test_an_output_inside_another_batch_output_or_holding_one_is_refused(tmp_path):
    """`-o out` and `-o out/inner` both exited 0, and `out` read as a dataset took in the inner
    run's day (probe 48: 26,527 rows of 2 dates where the run wrote 13,265 of 1). Both ways are
    refused, with the directory held: of two runs started at once, the second to look sees the
    first's _itchflow/. (The other runs are held directories here: a run's lock is what marks
    its output while it runs, and no cluster starts for a refused run.)"""
    from itchflow.scale.layout import Layout, hold_directory, refuse_nested

    write_day(tmp_path / "20200102.itch", 20_000, 1, stocks=10)
    day = str(tmp_path / "20200102.itch")
    outer, inner = tmp_path / "out", tmp_path / "out" / "inner"
    with hold_directory(Layout(str(outer))):
        r = CliRunner().invoke(main, ["batch", day, "--job", "stats", "--out", str(inner)])
        assert r.exit_code != 0 and f"inside another batch run's output directory {outer}" in r.output, r.output
        assert not inner.exists()   # nothing left of the refused run
        refuse_nested(Layout(str(outer)))   # its own _itchflow/ is not another run's
    other = tmp_path / "other"
    with hold_directory(Layout(str(other / "a" / "b"))):
        r = CliRunner().invoke(main, ["batch", day, "--job", "stats", "--out", str(other)])
        assert r.exit_code != 0 and f"holds another batch run's output directory {other / 'a' / 'b'}" in r.output, \
            r.output
        assert not (other / "_itchflow").exists()
    # a folder named _itchflow that no batch run made is nothing to refuse (probe 50)
    (tmp_path / "plain" / "_itchflow").mkdir(parents=True)
    with hold_directory(Layout(str(tmp_path / "plain" / "out"))):
        refuse_nested(Layout(str(tmp_path / "plain" / "out")))


def test_a_file_system_without_locks_runs_unheld(tmp_path, monkeypatch):
    """NFS without lockd refuses flock with ENOLCK: the run goes on unheld, as before the lock
    (it failed with "[Errno 37] No locks available", naming nothing: probe 33)."""
    import errno
    import fcntl

    from itchflow.scale.layout import Layout, hold_directory

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with hold_directory(Layout(str(tmp_path / "nfs"))):
        assert (tmp_path / "nfs" / "_itchflow" / "lock").exists()


def test_sigterm_to_the_process_group_is_one_line_not_the_clusters_tracebacks(archive, tmp_path):
    """timeout (or a scheduler) sending SIGTERM to batch and its worker processes: batch said it
    was terminated, then closing its LocalCluster printed "Future exception was never retrieved"
    and CommClosedError tracebacks of the workers' broken connections (probe 37: 5 of 5)."""
    import signal

    from net_procs import finish, start, wait_for_line

    _, paths = archive
    proc = start(["batch", "-j", "bbo", "--workers", "2", "--shards", "2", "-o", str(tmp_path / "out"),
                  *paths.values()], start_new_session=True)
    wait_for_line(proc, r"scheduler tcp://", timeout=120)   # the cluster is up: its workers in the group
    import time

    deadline = time.monotonic() + 120   # tasks running: a shard's output begun (the case that printed them)
    while not glob.glob(str(tmp_path / "out" / "date=*" / "**" / "*"), recursive=True):
        assert proc.poll() is None and time.monotonic() < deadline, "no task wrote anything"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = finish(proc, 120)
    assert proc.returncode == 143, err
    assert "itchflow: terminated (signal 15)" in err
    assert "Traceback" not in err and "Future exception" not in err and "CommClosedError" not in err, err


def test_the_clusters_loggers_are_quiet_only_while_a_failing_run_closes_it():
    """batch silenced asyncio, distributed and tornado for the rest of the process after a
    failure (batch is API: a caller's logging is theirs, probe 40)."""
    import logging

    from itchflow.scale.batch import _CLOSE_LOGGERS, _quiet_close

    logging.getLogger("distributed").setLevel(logging.INFO)
    before = {n: logging.getLogger(n).level for n in _CLOSE_LOGGERS}
    with _quiet_close(failing=True):
        assert all(logging.getLogger(n).level > logging.CRITICAL for n in _CLOSE_LOGGERS)
    assert {n: logging.getLogger(n).level for n in _CLOSE_LOGGERS} == before
    with _quiet_close(failing=False):
        assert {n: logging.getLogger(n).level for n in _CLOSE_LOGGERS} == before
