"""`itchflow stats` and `itchflow decode` against an independent struct-based walk."""

import json
import struct
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from itchflow.cli import main
from itchflow.decode.encoder import encode_message

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "omi-itch50"
MULTI = SHARED / "Nasdaq.Equities.TotalView.Itch.v5.0" / "Multiple.Packets.pcap"


def walk(raw: bytes):
    """The obvious BinaryFILE walk: (type, locate, timestamp) per message."""
    out, p = [], 0
    while p < len(raw):
        (n,) = struct.unpack_from(">H", raw, p)
        msg = raw[p + 2:p + 2 + n]
        locate = struct.unpack_from(">H", msg, 1)[0] if n >= 3 else None
        ts = int.from_bytes(msg[5:11], "big") if n >= 11 else None
        out.append((chr(msg[0]), locate, ts))
        p += 2 + n
    return out


@pytest.fixture
def day(tmp_path):
    msgs = [encode_message("S", timestamp=1000, event_code="O")]
    msgs += [encode_message("R", stock_locate=k, timestamp=2000 + k, stock=s)
             for k, s in ((1, "AAPL"), (2, "MSFT"), (3, "ZVZZT"))]
    for i in range(300):
        k = 1 + i % 3
        msgs.append(encode_message("A", stock_locate=k, timestamp=10_000 + i, order_reference_number=i + 1,
                                   buy_sell_indicator="BS"[i % 2], shares=100, price=100_0000 + i,
                                   stock=("AAPL", "MSFT", "ZVZZT")[k - 1]))
        if i % 4 == 0:
            msgs.append(encode_message("E", stock_locate=k, timestamp=10_000 + i, order_reference_number=i + 1,
                                       executed_shares=10, match_number=i))
    msgs.append(b"\x00\x05z1234")  # an unknown type, skipped by its length and counted
    msgs.append(encode_message("S", timestamp=99_999, event_code="C"))
    raw = b"".join(msgs)
    path = tmp_path / "day.itch"
    path.write_bytes(raw)
    return path, raw


def test_stats_json_agrees_with_independent_walk(day):
    path, raw = day
    res = CliRunner().invoke(main, ["stats", str(path), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    ref = walk(raw)
    known = [m for m in ref if m[0] != "z"]
    assert got["messages"] == len(ref)
    assert got["bytes"] == len(raw)
    # every ITCH 5.0 type (the spec's 23, DLCR's O among them) has a count, 0 where none
    # (they were left out, a KeyError for a script asking for B: probe 34)
    assert got["by_type"] == {t: 0 for t in "SRHYLVWKJhAFECXDUPQBINO"} | dict(Counter(t for t, _, _ in known))
    assert got["unknown"] == 1 and got["unknown_by_type"] == {"z": 1}
    assert got["first_timestamp_ns"] == known[0][2] and got["last_timestamp_ns"] == known[-1][2]
    assert got["stocks"] == len({loc for _, loc, _ in known if loc})
    assert set(got) >= {"messages", "bytes", "by_type", "first_timestamp_ns", "last_timestamp_ns",
                        "stocks", "unknown", "seconds"}


@pytest.mark.skipif(not MULTI.exists(), reason=f"real captures not found at {SHARED}")
def test_stats_json_on_real_capture():
    res = CliRunner().invoke(main, ["stats", str(MULTI), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    # One packet of 38 messages (36 A, 2 F) and one packet with a single D.
    assert {t: n for t, n in got["by_type"].items() if n} == {"A": 36, "F": 2, "D": 1}
    assert len(got["by_type"]) == 23
    assert got["messages"] == 39 and got["capture"]["packets"] == 2


def test_stats_human_output_and_errors(day, tmp_path):
    path, raw = day
    res = CliRunner().invoke(main, ["stats", str(path)])
    assert res.exit_code == 0 and "add_order" in res.output and "unknown" in res.output
    bad = tmp_path / "bad.itch"
    bad.write_bytes(raw[:-3])  # cut the last message
    res = CliRunner().invoke(main, ["stats", str(bad)])
    assert res.exit_code == 1
    assert f"byte offset {len(raw) - 14}" in res.output and "truncated" in res.output
    res = CliRunner().invoke(main, ["stats", str(tmp_path / "missing.itch")])
    assert res.exit_code != 0


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_decode_symbol_filter_follows_directory(day, tmp_path, suffix):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path, raw = day
    out = tmp_path / f"msft{suffix}"
    res = CliRunner().invoke(main, ["decode", str(path), "--types", "AE", "--symbol", "MSFT",
                                    "--out", str(out), "--quiet", "--chunk", "37"])
    assert res.exit_code == 0, res.output
    t = pq.read_table(out) if suffix == ".parquet" else pcsv.read_csv(out)
    ref = [m for m in walk(raw) if m[0] in "AE" and m[1] == 2]  # MSFT has locate 2
    assert t.num_rows == len(ref)
    assert t.column("message_type").to_pylist() == [m[0] for m in ref]
    seq = t.column("sequence").to_pylist()
    assert seq == sorted(seq)
    # E rows carry no stock field: they were kept through the directory's locate.
    assert t.column("message_type").to_pylist().count("E") == sum(1 for m in ref if m[0] == "E") > 0


def test_decode_rejects_bad_output_name(day, tmp_path):
    path, _ = day
    res = CliRunner().invoke(main, ["decode", str(path), "--out", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and ".parquet or .csv" in res.output   # a usage error, as every wrong suffix


def test_all_in_any_case_means_every_type(day, tmp_path):
    """`-t ALL` was read as the letters A and L, and wrote only those two types, exit status 0:
    "all" in any case is every type now (a letter given twice is still that type once)."""
    import itchflow

    path, raw = day
    want = Counter(t for t, _, _ in walk(raw) if t != "z")   # z: the unknown type, not decoded
    for every in ("ALL", "all", "All", None):
        d = itchflow.read(path, every)
        assert {c: n for c, n in d.counts.items() if n} == dict(want)
        assert all(len(d[c]) == n for c, n in want.items())
    assert set(itchflow.read(path, "AEA")) == {"A", "E"}
    res = CliRunner().invoke(main, ["decode", str(path), "-t", "ALL", "-o", str(tmp_path / "all.csv"), "-q"])
    assert res.exit_code == 0, res.output
    assert f"wrote {sum(want.values()):,} rows" in res.output


def test_small_pieces_are_written_as_large_row_groups(tmp_path, monkeypatch):
    """`decode --chunk 7` wrote a row group a piece of 7 messages: 69 k rows took 241 MB of
    Parquet. Rows are held until a row group has ROW_GROUP_ROWS (here 100) and the table is
    the one decoded in one piece."""
    import pyarrow.parquet as pq

    import itchflow.sinks.tables as tables
    from itchflow.sim.generator import write_day

    monkeypatch.setattr(tables, "ROW_GROUP_ROWS", 100)
    day = tmp_path / "day.itch"
    write_day(day, 12_000, seed=4, stocks=5)
    small, whole = tmp_path / "small.parquet", tmp_path / "whole.parquet"
    for out, chunk in ((small, "7"), (whole, str(1 << 21))):
        res = CliRunner().invoke(main, ["decode", str(day), "-t", "AFD", "--chunk", chunk, "-o", str(out), "-q"])
        assert res.exit_code == 0, res.output
    got, want = pq.ParquetFile(small), pq.read_table(whole)
    rows = got.metadata.num_rows
    assert rows == want.num_rows > 1000
    assert got.metadata.num_row_groups <= rows // 100 + 1
    assert all(got.metadata.row_group(k).num_rows >= 100 for k in range(got.metadata.num_row_groups - 1))
    assert got.read().equals(want)


def test_an_anonymised_capture_decodes_in_stream_order_with_renumber(tmp_path):
    """Packets of sequence 0 (anonymised captures, 38 of the 49 real ones): decode grouped the
    rows by type, every sequence 0, and nothing could put them back in capture order (probe 29)."""
    import pyarrow.csv as pacsv

    import itch_reference as ref

    d = ref.encode("D", {"stock_locate": 1, "timestamp": 1000, "order_reference_number": 7})
    a = ref.encode("A", {"stock_locate": 1, "timestamp": 2000, "order_reference_number": 8, "side": b"B",
                         "shares": 100, "stock": b"AAPL    ", "price": 1234500})
    cap = tmp_path / "anon.pcap"
    cap.write_bytes(ref.pcap_file([ref.eth_ipv4_udp(ref.mold_packet(b"SESSION001", 0, [m[2:]]))
                                   for m in (d, a)]))
    out = tmp_path / "anon.csv"
    plain = CliRunner().invoke(main, ["decode", str(cap), "-t", "all", "-o", str(out), "-q"])
    assert plain.exit_code == 0 and "2 messages came in unsequenced packets" in plain.output, plain.output
    renumbered = CliRunner().invoke(main, ["decode", str(cap), "-t", "all", "-o", str(out), "-q", "--renumber"])
    assert renumbered.exit_code == 0 and "unsequenced" not in renumbered.output, renumbered.output
    rows = pacsv.read_csv(out).to_pylist()
    assert [(r["message_type"], r["sequence"], r["timestamp"]) for r in rows] == [("D", 1, 1000), ("A", 2, 2000)]


def _capture(path: Path, packets: list[tuple[int, list[bytes]]]) -> Path:
    """A pcap of MoldUDP64 packets (sequence, message bodies) of session TEST."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from itch_reference import eth_ipv4_udp, mold_packet, pcap_file

    path.write_bytes(pcap_file([eth_ipv4_udp(mold_packet(b"TEST", seq, msgs)) for seq, msgs in packets]))
    return path


def _adds(locate: int, first: int, n: int) -> list[bytes]:
    return [encode_message("A", stock_locate=locate, timestamp=10_000 + i, order_reference_number=i,
                           buy_sell_indicator="B", shares=100, price=100_0000, stock="AAPL")[2:]
            for i in range(first, first + n)]


def test_decode_of_a_capture_with_a_gap_says_so_and_counts_unsequenced_messages_once(tmp_path):
    """Probe 42: `decode` alone of the commands said nothing of a capture's gap (exit 0), and its
    note on unsequenced messages added each piece's running total: 5 messages were 15 with
    --chunk 2, 25 with --chunk 1."""
    gap = _capture(tmp_path / "gap.pcap", [(1, _adds(1, 1, 3)), (7, _adds(1, 7, 2))])   # 4..6 never came
    res = CliRunner().invoke(main, ["decode", str(gap), "-t", "A", "-o", str(tmp_path / "g.parquet"), "-q",
                                    "--chunk", "2"])
    assert res.exit_code == 0, res.output
    assert "wrote 5 rows" in res.output
    assert "1 gap (3 messages missing)" in res.output and "the table holds the messages that arrived" in res.output
    unseq = _capture(tmp_path / "unseq.pcap", [(0, _adds(1, 1, 3)), (0, _adds(1, 4, 2))])
    for chunk in ("1", "2", "1000"):
        res = CliRunner().invoke(main, ["decode", str(unseq), "-t", "A", "-o", str(tmp_path / "u.parquet"), "-q",
                                        "--chunk", chunk])
        assert res.exit_code == 0, res.output
        assert "note: 5 messages came in unsequenced packets" in res.output, (chunk, res.output)


def test_decode_takes_a_stock_locate_as_every_books_command_does(day, tmp_path):
    """Probe 42: `decode -s 2` said no stock directory message names "2"."""
    import pyarrow.parquet as pq

    day, _ = day
    out = tmp_path / "l.parquet"
    res = CliRunner().invoke(main, ["decode", str(day), "-t", "AR", "-s", "2", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    t = pq.read_table(out).to_pandas()
    assert set(t["stock_locate"]) == {2} and list(t["message_type"]).count("A") == 100
    assert list(t["message_type"]).count("R") == 1
    by_name = tmp_path / "n.parquet"
    assert CliRunner().invoke(main, ["decode", str(day), "-t", "AR", "-s", "MSFT", "-o", str(by_name), "-q"]).exit_code == 0
    assert pq.read_table(by_name).equals(pq.read_table(out))
    res = CliRunner().invoke(main, ["decode", str(day), "-t", "A", "-s", "9", "-o", str(out), "-q"])
    assert res.exit_code == 1 and "stock locate 9: no stock directory (R) message gives it a stock" in res.output
    # a day without a directory (a capture of a few types) has its locates in its messages only (probe 46)
    execs = tmp_path / "e.itch"
    execs.write_bytes(encode_message("E", stock_locate=7, timestamp=5, order_reference_number=1, executed_shares=1,
                                     match_number=1))
    res = CliRunner().invoke(main, ["decode", str(execs), "-t", "A", "-s", "7", "-o", str(out), "-q"])
    assert res.exit_code == 0 and "wrote 0 rows" in res.output, res.output


def test_run_pipeline_refuses_sharded_books_with_a_clear_error(tmp_path):
    """Probe 42: Books(threads=2) given to run_pipeline was an AttributeError from inside the
    consumer, after its ring was made."""
    from itchflow.book.books import Books
    from itchflow.pipeline import run_pipeline

    with pytest.raises(TypeError, match="run_pipeline applies a ring's records on one thread: pass Books"):
        run_pipeline(str(tmp_path / "none.itch"), books=Books(threads=2))


def test_a_small_gzip_day_whose_checksum_fails_says_nothing_was_delivered(day, tmp_path):
    """Probe 45: a day that fits in the first block, its CRC trailer changed, was reported at
    "byte offset 0 ... the messages before this offset were delivered"."""
    import gzip

    path, raw = day
    z = bytearray(gzip.compress(raw))
    z[-8] ^= 0xFF   # the CRC-32 of the trailer
    gz = tmp_path / "crc.itch.gz"
    gz.write_bytes(bytes(z))
    res = CliRunner().invoke(main, ["stats", str(gz), "-q"])
    assert res.exit_code == 1, res.output
    assert "Incorrect checksum" in res.output and "no message of it was delivered" in res.output, res.output
