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
