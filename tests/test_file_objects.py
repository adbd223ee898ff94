"""Open files as sources, and the raw-bytes calls' errors for what they do not take.

``read``, ``scan``, ``stats`` and ``replay`` take an open binary file (``open(p, "rb")``,
``gzip.open``, ``io.BytesIO``, an fsspec file) as they take its path: the expectation is the
same call on the path. ``Books.apply`` takes bytes only; handed a path, a file or decoded
messages it says so and points at ``replay`` (it raised "memoryview: a bytes-like object is
required, not 'str'").
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest

import itchflow
from itchflow import Books
from test_net_loopback import synthetic_day


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("files")
    day = synthetic_day(60_000, seed=8).tobytes()
    (d / "day.itch").write_bytes(day)
    (d / "day.itch.gz").write_bytes(gzip.compress(day, 1))
    return {"raw": d / "day.itch", "gz": d / "day.itch.gz"}


def _openers(paths):
    raw, gz = paths["raw"], paths["gz"]
    return {
        "open rb": lambda: open(raw, "rb"),
        "open rb, gzip bytes": lambda: open(gz, "rb"),
        "gzip.open": lambda: gzip.open(gz),
        "BytesIO": lambda: io.BytesIO(raw.read_bytes()),
    }


@pytest.mark.parametrize("opener", ["open rb", "open rb, gzip bytes", "gzip.open", "BytesIO"])
def test_an_open_binary_file_reads_as_its_path_does(paths, opener):
    path = paths["raw"]
    with _openers(paths)[opener]() as f:
        got = itchflow.read(f, "AEU")
    want = itchflow.read(str(path), "AEU")
    for t in "AEU":
        assert len(want[t]) > 0
        np.testing.assert_array_equal(got[t], want[t])
    with _openers(paths)[opener]() as f:
        assert itchflow.stats(f).by_type == itchflow.stats(str(path)).by_type
    with _openers(paths)[opener]() as f:
        books = Books().replay(f)
    ref = Books().replay(str(path))
    np.testing.assert_array_equal(books.order_table(), ref.order_table())
    assert books.messages == ref.messages
    with _openers(paths)[opener]() as f:
        pieces = list(itchflow.scan(f, types="A", chunk_messages=4096))
    np.testing.assert_array_equal(np.concatenate([p["A"] for p in pieces]), want["A"])


def test_an_open_capture_reads_as_its_path_does(all_captures):
    for cap in all_captures:
        with open(cap, "rb") as f:
            got = itchflow.read(f)
        want = itchflow.read(str(cap))
        assert got.counts == want.counts and got.info.capture == want.info.capture, cap
        for t, n in want.counts.items():
            if n:
                np.testing.assert_array_equal(got[t], want[t])


def test_a_file_read_from_where_it_stands_and_its_errors_name_the_file(paths, tmp_path):
    raw = paths["raw"].read_bytes()
    cut = tmp_path / "cut.itch"
    cut.write_bytes(raw[:-5])
    with pytest.raises(itchflow.ITCHFormatError) as by_path:
        itchflow.stats(str(cut))
    assert f"{cut}, byte offset {len(raw) - 14}: truncated message" in str(by_path.value)   # the day's S C: 14 bytes
    with open(cut, "rb") as f:
        with pytest.raises(itchflow.ITCHFormatError) as by_file:
            itchflow.stats(f)
    assert str(by_file.value) == str(by_path.value)
    with open(paths["raw"]) as text:
        with pytest.raises(TypeError, match=rf"{paths['raw']}: a file opened in text mode; open it in binary mode"):
            itchflow.read(text)


@pytest.mark.parametrize("threads", [1, 2])
def test_books_apply_names_what_it_does_not_take(paths, threads):
    books = Books(threads=threads)
    decoded = itchflow.read(str(paths["raw"]), "A")
    with open(paths["raw"], "rb") as f:
        for wrong, what in ((str(paths["raw"]), r"a path or a file object \(str\)"),
                            (paths["raw"], r"a path or a file object \(PosixPath\)"),
                            (f, r"a path or a file object \(BufferedReader\)"),
                            (decoded, r"decoded messages \(Decoded\)")):
            with pytest.raises(TypeError, match=rf"Books.apply takes a buffer of BinaryFILE-framed ITCH bytes, "
                                                rf"not {what}: replay\(source\) reads"):
                books.apply(wrong)
    with pytest.raises(TypeError, match="expected bytes-like data or a numpy array, not int"):
        books.apply(5)
    assert books.messages == 0
    if threads == 2:
        books.close()


def test_a_url_reads_as_its_path_does(paths, all_captures):
    """fsspec URLs (here its in-memory filesystem; ``file://`` too) for read, stats and replay,
    as ``itchflow.batch`` took them: a raw day, its gzip and a capture, streamed."""
    fsspec = pytest.importorskip("fsspec", reason="URLs need fsspec (the dask extra)")
    fs = fsspec.filesystem("memory")
    raw = paths["raw"]
    fs.pipe({"/readme/day.itch": raw.read_bytes(), "/readme/day.itch.gz": paths["gz"].read_bytes(),
             "/readme/cap.pcap": all_captures[0].read_bytes()})
    want = itchflow.read(str(raw), "AEU")
    ref = Books().replay(str(raw))
    for url in (f"file://{raw}", "memory://readme/day.itch", "memory://readme/day.itch.gz"):
        got = itchflow.read(url, "AEU")
        for t in "AEU":
            np.testing.assert_array_equal(got[t], want[t])
        assert itchflow.stats(url).by_type == itchflow.stats(str(raw)).by_type
        np.testing.assert_array_equal(Books().replay(url).order_table(), ref.order_table())
    got, want = itchflow.read("memory://readme/cap.pcap"), itchflow.read(str(all_captures[0]))
    assert got.counts == want.counts and got.info.capture == want.info.capture
    with pytest.raises(FileNotFoundError, match="memory://readme/none.itch: no such file"):
        itchflow.read("memory://readme/none.itch")
    fs.rm("/readme", recursive=True)


def test_a_dash_reads_standard_input_on_the_command_line(paths):
    """``zcat day.gz | itchflow stats -``: '-' was 'no such file'."""
    import json
    import subprocess
    import sys

    want = itchflow.stats(str(paths["raw"]))
    for path in (paths["raw"], paths["gz"]):
        r = subprocess.run([sys.executable, "-m", "itchflow", "stats", "-", "--json"], input=path.read_bytes(),
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["by_type"] == want.by_type
    cut = paths["raw"].read_bytes()[:1000]
    r = subprocess.run([sys.executable, "-m", "itchflow", "stats", "-"], input=cut, capture_output=True, timeout=120)
    assert r.returncode == 1 and b"<stdin>, byte offset" in r.stderr and b"truncated message" in r.stderr


def _message_boundary_after(day: bytes, at: int) -> int:
    pos = 0
    while pos < at:
        pos += 2 + int.from_bytes(day[pos:pos + 2], "big")
    return pos


def test_an_error_in_a_file_read_from_mid_way_names_its_offset_in_the_file(tmp_path, paths):
    """probe 17: a file object positioned mid-file had its errors' offsets counted from where
    it stood, under the file's name (which then named a valid message)."""
    day = paths["raw"].read_bytes()
    start, broken = _message_boundary_after(day, 1000), _message_boundary_after(day, len(day) // 2)
    bad = tmp_path / "bad.itch"
    bad.write_bytes(day[:broken] + b"\x00\x00" + day[broken:])   # a zero length prefix
    with open(bad, "rb") as f:
        f.seek(start)
        with pytest.raises(itchflow.ITCHFormatError, match=rf"bad.itch, byte offset {broken}: zero-length"):
            itchflow.read(f)
