"""A gzipped pcap is told apart from gzipped BinaryFILE by what is inside."""

import gzip

import numpy as np
import pytest

import itchflow
from conftest import CAPTURES_DIR as DATA_DIR

MULTI = DATA_DIR / "Nasdaq.Equities.TotalView.Itch.v5.0" / "Multiple.Packets.pcap"


@pytest.mark.skipif(not MULTI.exists(), reason=f"real captures not found at {DATA_DIR}")
def test_gzipped_pcap_decodes_like_the_pcap(tmp_path):
    gz = tmp_path / "multi.pcap.gz"
    gz.write_bytes(gzip.compress(MULTI.read_bytes()))
    plain, packed = itchflow.read(MULTI), itchflow.read(gz)
    assert packed.messages == plain.messages == 39
    for code in "ADF":
        assert np.array_equal(packed[code], plain[code])
    assert packed.info.capture["missing_messages"] == plain.info.capture["missing_messages"]
    # the same bytes handed over in memory
    assert itchflow.read(gz.read_bytes()).messages == 39


@pytest.mark.skipif(not MULTI.exists(), reason=f"real captures not found at {DATA_DIR}")
@pytest.mark.parametrize("cut", [8, 200], ids=["trailer-only", "inside-the-data"])
def test_a_cut_gzipped_capture_says_how_far_it_got_and_that_nothing_was_delivered(tmp_path, cut):
    """A gzipped pcap cut short said "byte offset 0 ... the messages before this offset were
    delivered", where a capture is read only once whole and none was (probe 32)."""
    from itchflow.errors import ITCHFormatError

    raw = MULTI.read_bytes()
    packed = gzip.compress(raw)
    gz = tmp_path / "cut.pcap.gz"
    gz.write_bytes(packed[:-cut])
    with pytest.raises(ITCHFormatError, match=r"cut short.*a capture is read once it is whole, so no message of "
                                              r"it was delivered") as e:
        itchflow.read(gz)
    assert 0 < e.value.offset <= len(raw) and (cut > 8 or e.value.offset == len(raw))
    assert f"after {e.value.offset:,} bytes of the capture" in str(e.value)
