"""The book commands say what their answer does not rest on: a capture's gaps (messages that
never arrived), the books' anomalies (messages they could not apply as sent) and unknown
types. bbo, trades, snapshots and book wrote their output and exited 0 in silence (run,
batch and lobster already reported them); book --json had no counters at all."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import itch_reference as ref
from itchflow.cli import main
from itchflow.decode.encoder import encode_message as enc

T = 34_200_000_000_000


def _body(framed: bytes) -> bytes:
    return framed[2:]


@pytest.fixture(scope="module")
def gapped_capture(tmp_path_factory):
    """Five packets of one message each; the third (an E of order 1) never arrived, and the
    fourth executes order 2, which was never added: 1 gap of 1 message, 1 unknown reference."""
    msgs = [enc("R", stock_locate=1, stock="AAA", timestamp=1),
            enc("A", stock_locate=1, timestamp=T, order_reference_number=1, buy_sell_indicator="B", shares=100,
                stock="AAA", price=10_000),
            enc("E", stock_locate=1, timestamp=T + 1, order_reference_number=1, executed_shares=40, match_number=1),
            enc("E", stock_locate=1, timestamp=T + 2, order_reference_number=2, executed_shares=5, match_number=2),
            enc("A", stock_locate=1, timestamp=T + 3, order_reference_number=3, buy_sell_indicator="S", shares=50,
                stock="AAA", price=10_100)]
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"LOSS", seq, [_body(m)]))
              for seq, m in enumerate(msgs, 1) if seq != 3]
    path = tmp_path_factory.mktemp("losses") / "gapped.pcap"
    path.write_bytes(ref.pcap_file(frames))
    return path


GAP = "the capture has 1 gap (1 message missing) and 0 malformed packets"
ANOMALY = "anomalies (messages the books could not apply as sent): unknown_reference 1"
ANOMALY_OF_AAA = "anomalies of AAA (messages the books could not apply as sent): unknown_reference 1"


@pytest.mark.parametrize("command", [["bbo"], ["trades"], ["snapshots", "-s", "AAA", "--at", "10:00"]])
def test_the_stream_commands_report_gaps_and_anomalies(gapped_capture, tmp_path, command):
    out = tmp_path / "out.parquet"
    r = CliRunner().invoke(main, [command[0], str(gapped_capture), "-o", str(out), *command[1:]])
    assert r.exit_code == 0 and out.exists(), r.output
    assert GAP in r.stderr and (ANOMALY_OF_AAA if "-s" in command else ANOMALY) in r.stderr, r.stderr
    assert "warning" not in r.stdout


@pytest.mark.parametrize("command, output", [
    (["bars", "-s", "AAA", "-o", "OUT/b.parquet"], "b.parquet"),
    (["auctions", "-o", "OUT"], "crosses.parquet"),
    (["lobster", "-s", "AAA", "--date", "2026-12-04", "-o", "OUT"], "AAA_2026-12-04_34200000_57600000_message_10.csv"),
])
def test_the_research_commands_report_a_captures_gaps(gapped_capture, tmp_path, command, output):
    """bars, auctions and lobster wrote their files from a gapped capture in silence."""
    from itchflow.sinks.auctions import auctions

    out = tmp_path / "out"
    out.mkdir()
    args = [a.replace("OUT", str(out)) for a in command[1:]]
    r = CliRunner().invoke(main, [command[0], str(gapped_capture), *args])
    assert r.exit_code == 0 and (out / output).exists(), r.output
    assert GAP in r.stderr and str(gapped_capture) in r.stderr and "warning" not in r.stdout, r.stderr
    # and the API fills capture_stats as replay does
    capture: dict = {}
    auctions(str(gapped_capture), capture_stats=capture)
    assert capture["gaps"] == 1 and capture["missing_messages"] == 1


def test_book_reports_them_and_its_json_carries_them(gapped_capture):
    r = CliRunner().invoke(main, ["book", str(gapped_capture), "-s", "AAA", "-q"])
    assert r.exit_code == 0 and GAP in r.stderr and ANOMALY_OF_AAA in r.stderr, r.output
    r = CliRunner().invoke(main, ["book", str(gapped_capture), "-s", "AAA", "--json"])
    got = json.loads(r.stdout)
    assert got["bids"] == [[10_000, 100, 1]] and got["asks"] == [[10_100, 50, 1]]   # the E of order 1 is lost
    assert got["capture"] == {"gaps": 1, "missing_messages": 1}
    assert got["anomalies"] == {"unknown_reference": 1}


def test_a_whole_clean_day_says_nothing_more(tmp_path):
    day = tmp_path / "day.itch"
    day.write_bytes(enc("R", stock_locate=1, stock="AAA", timestamp=1)
                    + enc("A", stock_locate=1, timestamp=T, order_reference_number=1, buy_sell_indicator="B",
                          shares=100, stock="AAA", price=10_000))
    r = CliRunner().invoke(main, ["bbo", str(day), "-o", str(tmp_path / "b.parquet")])
    assert r.exit_code == 0 and r.stderr == "", r.stderr
    r = CliRunner().invoke(main, ["book", str(day), "-s", "AAA", "--json"])
    assert set(json.loads(r.stdout)) == {"symbol", "timestamp_ns", "bids", "asks"}


def test_publish_and_soup_serve_say_that_a_capture_had_holes(gapped_capture):
    """publish re-sent a gapped capture's messages under contiguous sequence numbers: the
    hole disappeared, and nothing said so."""
    from itchflow.cli.net import load_binaryfile

    runner = CliRunner()
    with runner.isolation() as (_, err, _):
        data = load_binaryfile(str(gapped_capture))
        said = err.getvalue().decode()
    assert len(data) == 4 * 2 + 39 + 36 + 31 + 36
    assert f"{gapped_capture}: the capture has 1 gap (1 message missing)" in said, said


def test_run_of_a_capture_with_gaps_says_lost_messages_and_exits_3(gapped_capture):
    """probe 17: run over a gapped capture reported "stream": "whole" next to its gap counts,
    and exited 0, where a live source's losses exit 3."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "itchflow", "run", "--source", str(gapped_capture), "--json", "-q",
                        "--top", "0"], capture_output=True, text=True, timeout=180)
    rep = json.loads(p.stdout)
    assert p.returncode == 3 and rep["stream"] == "lost messages", p.stderr
    assert rep["producer"]["capture"]["gaps"] == 1 and rep["messages"] == 4
    assert "the capture has 1 sequence gap (1 message missing): the books have holes" in p.stderr


@pytest.fixture(scope="module")
def anomalous_day(tmp_path_factory):
    """One stock: an over-execution (150 of 100 shares), an over-cancel, an unknown reference and
    one message of an unknown type ('Z'): 3 anomalies, 1 unknown type."""
    add = dict(stock_locate=1, buy_sell_indicator="B", shares=100, stock="AAA", price=10_000)
    msgs = [enc("R", stock_locate=1, stock="AAA", timestamp=1),
            enc("A", timestamp=T, order_reference_number=1, **add),
            enc("E", stock_locate=1, timestamp=T + 1, order_reference_number=1, executed_shares=150, match_number=1),
            enc("A", timestamp=T + 2, order_reference_number=2, **add),
            enc("X", stock_locate=1, timestamp=T + 3, order_reference_number=2, cancelled_shares=500),
            enc("D", stock_locate=1, timestamp=T + 4, order_reference_number=99),
            b"\x00\x04Zxyz"]
    path = tmp_path_factory.mktemp("anomalous") / "2020-01-02.itch"
    path.write_bytes(b"".join(msgs))
    return path


@pytest.mark.parametrize("command", [["bars", "-s", "AAA", "-o", "OUT/b.parquet"],
                                     ["lobster", "-s", "AAA", "-o", "OUT"]])
def test_bars_and_lobster_report_the_anomalies_their_numbers_rest_on(anomalous_day, tmp_path, command):
    """probe 18: bars' volume of 150 came from executing 150 shares of a 100-share order, and
    neither bars nor lobster said so, nor that a message of an unknown type was skipped (trades,
    bbo and snapshots did)."""
    out = tmp_path / "out"
    out.mkdir()
    args = [a.replace("OUT", str(out)) for a in command[1:]]
    r = CliRunner().invoke(main, [command[0], str(anomalous_day), *args, "-q"])
    assert r.exit_code == 0, r.output
    assert ("anomalies of AAA (messages the books could not apply as sent): unknown_reference 1, over_execution 1, "
            "over_cancel 1") in r.stderr, r.stderr
    assert "1 messages of unknown types skipped" in r.stderr


def test_an_answer_about_chosen_stocks_warns_of_their_anomalies_and_totals_the_others(anomalous_day, tmp_path):
    """bars, lobster, book, snapshots, bbo and trades of one stock warned of every stock's
    anomalies as if that stock's answer rested on them."""
    other = (enc("R", stock_locate=2, stock="BBB", timestamp=1)
             + enc("D", stock_locate=2, timestamp=T + 5, order_reference_number=77)
             + enc("D", stock_locate=2, timestamp=T + 6, order_reference_number=78))
    day = tmp_path / "2020-01-02.itch"
    day.write_bytes(anomalous_day.read_bytes() + other)
    for command in (["bars", "-s", "AAA", "-o", str(tmp_path / "b.parquet")], ["book", "-s", "AAA", "-q"],
                    ["trades", "-s", "AAA", "-o", str(tmp_path / "t.parquet")]):
        r = CliRunner().invoke(main, [command[0], str(day), *command[1:]])
        assert r.exit_code == 0, r.output
        assert ("anomalies of AAA (messages the books could not apply as sent): unknown_reference 1, "
                "over_execution 1, over_cancel 1\n") in r.stderr, (command, r.stderr)
        assert "note: 2 anomalies in other stocks (not in this output)" in r.stderr, (command, r.stderr)
    r = CliRunner().invoke(main, ["book", str(day), "-s", "BBB", "--json"])
    got = json.loads(r.stdout)
    assert got["anomalies"] == {"unknown_reference": 2} and got["other_stocks_anomalies"] == 3
    r = CliRunner().invoke(main, ["trades", str(day), "-o", str(tmp_path / "all.parquet")])   # every stock
    assert "anomalies (messages the books could not apply as sent): unknown_reference 3, over_execution 1, " \
        "over_cancel 1\n" in r.stderr and "other stocks" not in r.stderr, r.stderr


def test_decode_warns_of_the_unknown_types_it_skipped(anomalous_day, tmp_path):
    """probe 24: bbo, trades, bars, lobster and book warned of them; decode said nothing."""
    r = CliRunner().invoke(main, ["decode", str(anomalous_day), "-t", "all", "-o", str(tmp_path / "d.parquet"), "-q"])
    assert r.exit_code == 0, r.output
    assert "itchflow: warning: 1 messages of unknown types skipped" in r.stderr and "warning" not in r.stdout


def test_auctions_names_a_stock_without_a_directory_message_by_its_own_field_and_drops_impossible_prices(tmp_path):
    """probe 18: a capture without R messages had auctions' symbol column hold the locate number
    ("4316") where the Q and I name their stock; a NOII price of 0x7FFFFFFF came out as
    $214,748.3647, past Price(4)'s largest, 200,000.0000."""
    from itchflow.sinks.auctions import auctions

    noii = dict(stock_locate=7, timestamp=T, paired_shares=10, imbalance_shares=5, imbalance_direction="B",
                stock="GFOR=", cross_type="C", price_variation_indicator="L")
    msgs = [enc("I", far_price=0x7FFFFFFF, near_price=2_000_000_000, current_reference_price=105_000, **noii),
            enc("Q", stock_locate=7, timestamp=T + 5, shares=100, stock="GFOR=", cross_price=105_000,
                match_number=3, cross_type="C"),
            enc("R", stock_locate=8, stock="KNOWN", timestamp=1),
            enc("Q", stock_locate=8, timestamp=T + 6, shares=1, stock="OTHER", cross_price=1, match_number=4,
                cross_type="C")]
    path = tmp_path / "noii.itch"
    path.write_bytes(b"".join(msgs))
    far: dict = {}
    a = auctions(str(path), out_of_range=far)
    i = a.imbalances.to_pylist()[0]
    assert i["symbol"] == "GFOR=" and i["far_price"] != i["far_price"]          # NaN
    assert i["near_price"] == 200_000.0 and i["reference_price"] == 10.5      # the largest price is a price
    assert far == {"far_price": 1}
    assert a.crosses["symbol"].to_pylist() == ["GFOR=", "KNOWN"]               # an R's name still rules
    r = CliRunner().invoke(main, ["auctions", str(path), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0 and "written as NaN: far_price 1" in r.stderr, r.output
    # and asked for by that name (probe 19: the table named it, -s refused it)
    one = auctions(str(path), symbols="GFOR=")
    assert one.crosses["symbol"].to_pylist() == ["GFOR="] and one.imbalances.num_rows == 1


def test_data_past_an_end_of_session_is_said_by_every_command(tmp_path):
    """An end-of-session packet numbered mid-day, arriving mid-capture: what follows it is not
    delivered. stats said so; bbo, trades, decode, book wrote half a day with exit 0 and no word,
    and run said "whole" (probe 36)."""
    import subprocess
    import sys

    msgs = [enc("R", stock_locate=1, stock="AAA", timestamp=1)] + [
        enc("A", stock_locate=1, timestamp=T + i, order_reference_number=i, buy_sell_indicator="B", shares=100,
            stock="AAA", price=10_000 + i) for i in range(1, 6)]
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"EOS", seq, [_body(m)])) for seq, m in enumerate(msgs[:3], 1)]
    frames.append(ref.eth_ipv4_udp(ref.mold_packet(b"EOS", 4, [], count=0xFFFF)))   # the end, at sequence 4
    frames += [ref.eth_ipv4_udp(ref.mold_packet(b"EOS", seq, [_body(m)])) for seq, m in enumerate(msgs[3:], 4)]
    path = tmp_path / "eos.pcap"
    path.write_bytes(ref.pcap_file(frames))
    said = "3 packets carrying 3 messages past its end of session"
    r = CliRunner().invoke(main, ["bbo", str(path), "-o", str(tmp_path / "b.parquet"), "-q"])
    assert r.exit_code == 0 and said in r.stderr and "from 3 messages" in r.stdout, r.output
    r = CliRunner().invoke(main, ["book", str(path), "-s", "AAA", "--json"])
    assert json.loads(r.stdout)["capture"] == {"after_end_of_session": 3, "messages_after_end_of_session": 3}, \
        r.output
    p = subprocess.run([sys.executable, "-m", "itchflow", "run", "--source", str(path), "--json", "-q", "--top", "0"],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 3 and json.loads(p.stdout)["stream"] == "lost messages", p.stderr
    assert said in p.stderr


def test_a_capture_block_past_its_packet_names_what_is_left_in_the_packet(tmp_path):
    """The error said how many bytes were left in the whole capture file (2,836,206), not in the
    packet (33) (probe 36)."""
    from itchflow.errors import ITCHFormatError
    import itchflow

    first = enc("R", stock_locate=1, stock="AAA", timestamp=1)
    bad = b"BAD".ljust(10) + (2).to_bytes(8, "big") + (1).to_bytes(2, "big") + (36).to_bytes(2, "big") + bytes(33)
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"BAD", 1, [_body(first)])), ref.eth_ipv4_udp(bad)]
    frames += [ref.eth_ipv4_udp(ref.mold_packet(b"BAD", 3 + i, [_body(first)])) for i in range(50)]
    path = tmp_path / "bad.pcap"
    path.write_bytes(ref.pcap_file(frames))
    with pytest.raises(ITCHFormatError, match=r"says 36 bytes, 33 are left in the packet") as e:
        itchflow.read(path)
    assert e.value.packet == 2
