"""The README's Python examples, run as a user would paste them.

Each ```python block of the README is executed with its file names pointing at a generated
day (plain and gzipped, under the names the README uses), its symbols replaced by two of that
day's, and its placeholders (a ring's ``buf`` and ``offsets``, an S3 glob, a price) filled in.
A README example that raises is a defect a new user meets first.
"""

from __future__ import annotations

import gzip
import re
import uuid
from pathlib import Path

import numpy as np
import pytest

import itchflow
from test_net_loopback import synthetic_day

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def day_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    day = synthetic_day(300_000, seed=3).tobytes()
    (d / "day.itch").write_bytes(day)
    (d / "01302019.NASDAQ_ITCH50.gz").write_bytes(gzip.compress(day, 1))
    return d


@pytest.fixture(scope="module")
def busiest(day_dir) -> list[str]:
    """The day's two stocks with the most trades (so every example has rows to show)."""
    b = itchflow.Books().replay(str(day_dir / "day.itch"))
    order = np.argsort(-b.stocks["trades"], kind="stable")[:2]
    return [b.symbol(int(loc)) for loc in order]


def _filled(text: str, symbols: list[str], ring: str) -> str:
    text = text.replace('"AAPL"', repr(symbols[0])).replace('"MSFT"', repr(symbols[1]))
    text = text.replace("s3://bucket/itch/*.gz", "*.gz")
    text = text.replace('"feed"', repr(ring))
    # books.orders(symbol, side, price): the price of the bid queue the example just took
    return text.replace("1234500", "int(bids['price'][0])")


def test_the_readme_has_the_examples_this_test_runs():
    assert len(BLOCKS) >= 5
    assert any("books.record(" in b and "take_events()" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_readme_example_runs(day_dir, busiest, monkeypatch, index):
    monkeypatch.chdir(day_dir)
    ring = f"readme-{uuid.uuid4().hex[:8]}"
    scope = {"buf": np.frombuffer(b"0123456789", np.uint8).copy(), "offsets": np.array([0, 4, 10], np.int64)}
    try:
        exec(compile(_filled(BLOCKS[index], busiest, ring), f"README.md python block {index + 1}", "exec"), scope)
    finally:
        Path(f"/dev/shm/itchflow.{ring}.ring").unlink(missing_ok=True)
    if "take_events()" in BLOCKS[index]:   # the events recorded for symbols named before the day
        bbo, trades, _ = scope["bbo"], scope["trades"], scope["l2"]
        assert len(bbo) > 0 and len(trades) > 0
        assert set(trades.to_pandas()["symbol"]) == {busiest[0]}
    if "rd.read()" in BLOCKS[index]:   # the ring's: one record, then the batch's two
        assert scope["rec"] == b"..." and [x.tobytes() for x in scope["batch"]] == [b"0123", b"456789"]
    if 'd["A"]' in BLOCKS[index]:
        assert scope["d"]["A"].dtype == itchflow.DTYPES["A"] and len(scope["d"]["A"]) > 0


# The README's command lines for the one-file commands: every option shown, optional ones
# ([...]) included, the first of alternatives (a|b) taken, placeholders filled in.
COMMANDS = [line.split("   #")[0].split("  #")[0].strip() for line in README.read_text().splitlines()
            if re.match(r"itchflow (book|bbo|trades|snapshots|lobster|bars|auctions|stats|decode|gen) [A-Z]", line)]


def _command_args(line: str, symbols: list[str], tmp: Path) -> list[str]:
    line = line.replace("[", "").replace("]", "")
    line = line.replace("--symbols ...", "--symbols AAPL")
    args = []
    for word in line.split()[1:]:
        word = word.split("|")[0]
        word = {"PATH": "day.itch", "OUT": str(tmp / "gen.itch"), "DIR": str(tmp / "out"), "N": "20000",
                "S": "1", "K": "10"}.get(word, word)
        word = word.replace("AAPL", symbols[0]).replace("MSFT", symbols[1])
        if word.endswith((".parquet", ".png", ".csv")):
            word = str(tmp / word)
        args.append(word)
    return args


def test_the_readme_has_the_command_lines_this_test_runs():
    assert {c.split()[1] for c in COMMANDS} == {"book", "bbo", "trades", "snapshots", "lobster", "bars", "auctions",
                                                "stats", "decode", "gen"}


@pytest.mark.parametrize("line", COMMANDS)
def test_each_readme_command_line_runs(day_dir, busiest, monkeypatch, tmp_path, line):
    from click.testing import CliRunner

    from itchflow.cli import main

    monkeypatch.chdir(day_dir)
    args = _command_args(line, busiest, tmp_path)
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, f"itchflow {' '.join(args)}\n{r.output}"
    for word in args:
        if word.startswith(str(tmp_path)) and not word.endswith("gen.itch") and "/out" not in word:
            assert Path(word).exists(), f"itchflow {' '.join(args)} wrote no {word}"
