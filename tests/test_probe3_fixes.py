"""Probe 3, defects 3, 4, 5 and 9, each against hand-worked values:

- 3: one decode table of A and Q: Q's 8-byte shares (2**32 and up) did not fit the column
  A's 4-byte shares had set (pyarrow's "Integer value 4294967296 not in range", naming no
  column);
- 4: auctions' signed_imbalance wrapped for imbalance_shares >= 2**63 (a B of 2**63 read
  -2**63, an S of 2**64 - 1 read +1);
- 5: snapshot_step(4.1) truncated 4.1 * 1e9 (4099999999.9999995) to 4,099,999,999 ns;
- 9: a float where a locate goes was a ValueError or KeyError (depth(1.0), volume(np.float64(1)),
  bbo(np.array([1.0, 2.0]))), not the TypeError the README promises.
"""

from __future__ import annotations

import csv

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from itchflow import encode_message as enc
from itchflow.book.events import every_times, snapshot_step
from itchflow.cli import main
from itchflow.sinks._clock import every_ns
from itchflow.sinks.auctions import auctions
from itchflow.sinks.tables import union_schema

# ---- 3: decode's one table of several types ------------------------------------------------

BIG = 1 << 32            # the first share count A's uint32 column cannot hold
TOP = (1 << 64) - 1      # the largest Q shares (8 bytes)


@pytest.fixture
def big_cross_day(tmp_path):
    path = tmp_path / "bigq.itch"
    path.write_bytes(b"".join([
        enc("R", stock_locate=1, timestamp=1, stock="AAA"),
        enc("A", stock_locate=1, timestamp=10, order_reference_number=1, buy_sell_indicator="B", shares=100,
            stock="AAA", price=10_000),
        enc("Q", stock_locate=1, timestamp=20, shares=BIG, stock="AAA", cross_price=10_000, match_number=1,
            cross_type="O"),
        enc("Q", stock_locate=1, timestamp=30, shares=TOP, stock="AAA", cross_price=10_000, match_number=2,
            cross_type="C"),
    ]))
    return path


def _shares_read_back(out):
    """(message_type, shares) per row of a decode output, shares as exact ints (None: null)."""
    if str(out).endswith(".csv"):
        with open(out, newline="") as f:
            return [(r["message_type"], int(r["shares"]) if r["shares"] else None) for r in csv.DictReader(f)]
    t = pq.read_table(out)
    assert t.schema.field("shares").type == pa.uint64()
    return list(zip(t["message_type"].to_pylist(), t["shares"].to_pylist()))


@pytest.mark.parametrize("types", ["AQ", "all"])
@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_decode_writes_q_shares_beyond_32_bits_beside_a(big_cross_day, tmp_path, types, suffix):
    out = tmp_path / f"out.{suffix}"
    res = CliRunner().invoke(main, ["decode", str(big_cross_day), "-t", types, "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    rows = [r for r in _shares_read_back(out) if r[0] in "AQ"]
    assert rows == [("A", 100), ("Q", 4_294_967_296), ("Q", 18_446_744_073_709_551_615)]


def test_batch_decode_job_writes_q_shares_beyond_32_bits(big_cross_day, tmp_path):
    from itchflow.scale.jobs import SeqMap, run_decode

    out = tmp_path / "part-0.parquet"
    run_decode(str(big_cross_day), str(out), None, {"types": "AQ", "chunk": 1 << 21}, SeqMap(None), True)
    assert _shares_read_back(out) == [("A", 100), ("Q", 4_294_967_296), ("Q", 18_446_744_073_709_551_615)]


def test_a_shared_column_takes_the_narrowest_integer_holding_every_type():
    assert union_schema("A").field("shares").type == pa.uint32()   # no wider than the types need
    assert union_schema("AFPU").field("shares").type == pa.uint32()
    assert union_schema("AQ").field("shares").type == pa.uint64()
    assert union_schema("QA").field("shares").type == pa.uint64()   # whichever type comes first
    assert union_schema("AQ").field("stock").type == pa.string()

    def types(**cols):
        return {c: np.dtype([("sequence", np.uint64), ("v", dt)]) for c, dt in cols.items()}

    # 0..255 and -128..127: int16; 0..2**32-1 and -128..127: int64; 0..2**64-1 and -2**63..: none
    assert union_schema("xy", types(x=np.uint8, y=np.int8)).field("v").type == pa.int16()
    assert union_schema("xy", types(x=np.uint32, y=np.int8)).field("v").type == pa.int64()
    with pytest.raises(ValueError, match=r"holds every message type's 'v' \(x uint64, y int64\)"):
        union_schema("xy", types(x=np.uint64, y=np.int64))
    with pytest.raises(ValueError, match=r"holds every message type's 'v' \(x text, y uint32\)"):
        union_schema("xy", types(x="S4", y=np.uint32))


# ---- 4: auctions' signed imbalance over the whole uint64 range -------------------------------

def test_signed_imbalance_is_exact_or_null_never_wrapped():
    imbalances = [(9_223_372_036_854_775_807, "B"),    # 2**63 - 1: int64's largest
                  (9_223_372_036_854_775_807, "S"),
                  (9_223_372_036_854_775_808, "B"),    # 2**63: no int64 holds +2**63
                  (18_446_744_073_709_551_615, "S"),   # 2**64 - 1
                  (18_446_744_073_709_551_615, "N"),   # no direction: 0 whatever the shares
                  (40, "S"), (10, "B"), (0, "O")]
    day = [enc("R", stock_locate=1, timestamp=1, stock="AAA")]
    day += [enc("I", stock_locate=1, timestamp=10 + k, paired_shares=100, imbalance_shares=shares,
                imbalance_direction=direction, stock="AAA", far_price=0, near_price=100, current_reference_price=100,
                cross_type="C", price_variation_indicator=" ")
            for k, (shares, direction) in enumerate(imbalances)]
    imb = auctions(b"".join(day)).imbalances
    assert imb.schema.field("signed_imbalance").type == pa.int64()
    assert imb["imbalance_shares"].to_pylist() == [s for s, _ in imbalances]
    assert imb["signed_imbalance"].to_pylist() == [9_223_372_036_854_775_807, -9_223_372_036_854_775_807,
                                                   None, None, 0, -40, 10, 0]


# ---- 5: snapshot intervals rounded to the nearest ns, as bars rounds -------------------------

def test_snapshot_step_rounds_to_the_nearest_ns_as_bars_does():
    # each of these times 1e9 is a hair under the whole number as a float
    for seconds, ns in ((4.1, 4_100_000_000), (2.01, 2_010_000_000), (1.001, 1_001_000_000),
                        (0.3, 300_000_000), (60, 60_000_000_000), (6e-10, 1)):
        assert snapshot_step(seconds) == ns
        assert every_ns(seconds) == ns
    for bad in (4e-10, 0, -1, float("nan"), float("inf"), 1e300):
        with pytest.raises(ValueError, match="every must be a positive number of seconds"):
            snapshot_step(bad)


def test_snapshot_grid_is_on_multiples_of_the_interval():
    assert every_times(4.1, 0, 12_300_000_000) == [4_100_000_000, 8_200_000_000, 12_300_000_000]
    times = every_times(4.1, 34_200_000_000_000, 34_220_000_000_000)   # 09:30:00 to 09:30:20
    assert times[0] == 34_202_200_000_000   # 8,342 x 4.1 s
    assert all(t % 4_100_000_000 == 0 for t in times)
