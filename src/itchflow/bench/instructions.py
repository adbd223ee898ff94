"""Instructions and branch mispredictions per book message, counted by valgrind, for
itchflow's engine and itchcpp's BookManager on the same bytes.

Wall-clock figures on a shared 2-vCPU guest swing by a third from one minute to the next and
the guest exposes no hardware counters (``perf stat`` says "not supported"). Valgrind's
callgrind executes the program on a simulated CPU: its instruction count is the same on every
run, whatever the host is doing, and ``--branch-sim=yes`` adds the mispredictions of a simple
model predictor (a table of 2-bit counters indexed by address and global history; a real core
predicts better, but a coin-toss branch mispredicts on both). So an engine change can be
judged without noise on what it executes, before the noisy clock says whether it is faster.

Method: each side runs twice in a fresh process under callgrind, once applying the day's
first ``start`` messages and once its first ``stop``; the difference, divided by
``stop - start``, is the cost of those messages alone (start-up, imports, Numba's cache load
and the peer's set-up cancel out). Numba compiles for a CPU valgrind can run (``haswell``:
AVX2, BMI2, no AVX-512) into a cache folder of its own, warmed outside valgrind first.

They cancel out only as far as the two runs' set-up is the same: Python's string hashing is
seeded at random in each process (dicts and sets built at import then differ, by millions of
instructions), so PYTHONHASHSEED is fixed; itchcpp takes bytes, so each of its runs copies its
own prefix and the other run's. What is left differs by a little: a window too short to
outweigh it gave itchcpp -53.9 instructions a message (20,000 messages), so the window is at
least ``MIN_WINDOW`` messages, and a count that is not positive is refused, not printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from itchflow.bench.common import peer_failure

# A target valgrind executes: it has no AVX-512, which Numba would use on this host's CPU.
VALGRIND_CPU = "haswell"
VALGRIND_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+lzcnt,+movbe,+popcnt,+sse,"
                     "+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave")

# Applies the first N messages of a day; prints the messages applied (the check that the
# prefix was what was asked for).
_ITCHFLOW = """
import sys, numpy as np
from itchflow.book.books import Books
from itchflow.sources.files import map_file
from itchflow.wire.binaryfile import message_offsets
buf = map_file({path!r})
n = {messages}
message_offsets(buf[:0], 1, np.zeros(2, np.int64))   # compiled (or loaded) in every run alike
cut, count = 0, 0
if n > 0:   # the offset of message n: an index of every n-th message (it walks the whole day)
    index = np.zeros(len(buf) // (3 * n) + 2, np.int64)
    count, status, pos = message_offsets(buf, n, index)
    cut = int(index[1]) if count > n else len(buf)
Books(1 << 10, table=1 << 10).apply(buf[:0])
b = Books()
b.apply(buf[:cut])
print(b.messages)
"""

_ITCHCPP = """
import numpy as np
import itchcpp.book as cb
from itchflow.sources.files import map_file
from itchflow.wire.binaryfile import message_offsets
buf = map_file({path!r})
n = {messages}
message_offsets(buf[:0], 1, np.zeros(2, np.int64))
cut, count = 0, 0
if n > 0:
    index = np.zeros(len(buf) // (3 * n) + 2, np.int64)
    count, status, pos = message_offsets(buf, n, index)
    cut = int(index[1]) if count > n else len(buf)
# process_stream takes bytes only: each run copies its own prefix and the other run's (dropped),
# so both copy the same bytes and the copies cancel out
other = {other}
ocut = 0
if other > 0:
    index = np.zeros(len(buf) // (3 * other) + 2, np.int64)
    ocount, status, pos = message_offsets(buf, other, index)
    ocut = int(index[1]) if ocount > other else len(buf)
dropped = bytes(buf[:ocut])
del dropped
data = bytes(buf[:cut])
bm = cb.BookManager()
bm.process_stream(data)
print(min(n, count))
"""

_TOTALS = re.compile(r"^summary:\s+(.*)$", re.M)
_EVENTS = re.compile(r"^events:\s+(.*)$", re.M)


def valgrind_path() -> str | None:
    return shutil.which("valgrind")


MIN_WINDOW = 200_000   # messages: what is left of the set-up difference is then under a few %


def _env(cache_dir: str) -> dict:
    env = dict(os.environ)
    env.update(NUMBA_CPU_NAME=VALGRIND_CPU, NUMBA_CPU_FEATURES=VALGRIND_FEATURES, NUMBA_CACHE_DIR=cache_dir,
               PYTHONHASHSEED="0")
    return env


def _counted(code: str, env: dict, workdir: Path, tag: str, timeout: float) -> dict:
    """One run of a snippet under callgrind with the branch model: its event totals."""
    out = workdir / f"{tag}.callgrind"
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--branch-sim=yes", f"--callgrind-out-file={out}",
         sys.executable, "-c", code],
        capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{tag} under valgrind failed: {peer_failure(proc.returncode, proc.stderr)}")
    text = out.read_text()
    names = _EVENTS.search(text).group(1).split()
    values = [int(v) for v in _TOTALS.search(text).group(1).split()]
    totals = dict(zip(names, values))
    totals["messages"] = int(proc.stdout.strip().splitlines()[-1])
    return totals


def _per_message(a: dict, b: dict, who: str) -> dict:
    n = b["messages"] - a["messages"]
    if n <= 0:
        raise RuntimeError("the day is shorter than the messages asked for")
    r = {"messages": n,
         "instructions": (b["Ir"] - a["Ir"]) / n,
         "cond_branches": (b["Bc"] - a["Bc"]) / n,
         "cond_mispredicts": (b["Bcm"] - a["Bcm"]) / n,
         "indirect_mispredicts": (b["Bim"] - a["Bim"]) / n}
    if r["instructions"] <= 0 or r["cond_branches"] <= 0:
        raise RuntimeError(f"{who}: {r['instructions']:.1f} instructions and {r['cond_branches']:.1f} branches a "
                           f"message over {n:,} messages: the two runs' set-up differed by more than the window "
                           f"costs (take a longer window)")
    return r


def run(path: str, start: int, stop: int, peers: bool = True, timeout: float = 3600) -> dict:
    """Counts per message for messages start..stop of the day at path (itchflow, and itchcpp
    when peers)."""
    if valgrind_path() is None:
        raise RuntimeError("valgrind not found: it counts the instructions (Debian: apt-get install valgrind)")
    if not 0 <= start < stop:
        raise ValueError(f"need 0 <= start < stop, got {start} and {stop}")
    if stop - start < MIN_WINDOW:
        raise ValueError(f"count at least {MIN_WINDOW:,} messages (--start {start:,} to --stop {stop:,} is "
                         f"{stop - start:,}): a shorter window is within what the two runs' set-up differ by")
    with tempfile.TemporaryDirectory(prefix="itchflow-instr-") as tmp:
        work = Path(tmp)
        env = _env(str(work / "numba"))
        # compile natively for the valgrind-safe target (minutes under valgrind, seconds here)
        warm = subprocess.run([sys.executable, "-c", _ITCHFLOW.format(path=path, messages=0)],
                              capture_output=True, text=True, env=env, timeout=timeout)
        if warm.returncode != 0:
            raise RuntimeError(f"warming the kernels failed: {peer_failure(warm.returncode, warm.stderr)}")
        jobs = {f"itchflow-{n}": _ITCHFLOW.format(path=path, messages=n) for n in (start, stop)}
        if peers:
            jobs.update({f"itchcpp-{n}": _ITCHCPP.format(path=path, messages=n, other=start + stop - n)
                         for n in (start, stop)})
        # two at a time: counts do not depend on what else runs
        with ThreadPoolExecutor(2) as pool:
            futures = {tag: pool.submit(_counted, code, env, work, tag, timeout) for tag, code in jobs.items()}
            totals = {tag: f.result() for tag, f in futures.items()}
    r = {"day": path, "start": start, "stop": stop, "cpu_model": VALGRIND_CPU,
         "itchflow": _per_message(totals[f"itchflow-{start}"], totals[f"itchflow-{stop}"], "itchflow")}
    if peers:
        r["itchcpp"] = _per_message(totals[f"itchcpp-{start}"], totals[f"itchcpp-{stop}"], "itchcpp")
        r["instructions_ratio"] = r["itchcpp"]["instructions"] / r["itchflow"]["instructions"]
    return r


def report(r: dict, shape: dict | None = None) -> None:
    print(f"instructions per book message (valgrind callgrind, branch model), messages "
          f"{r['start']:,}..{r['stop']:,} of {r['day']}")
    if shape:
        print(f"  day: {shape}")
    print(f"  {'':10} {'instructions':>13} {'cond branches':>14} {'cond mispredicts':>17} {'indirect mispredicts':>21}")
    for who in ("itchflow", "itchcpp"):
        if who in r:
            c = r[who]
            print(f"  {who:10} {c['instructions']:13.1f} {c['cond_branches']:14.1f} {c['cond_mispredicts']:17.2f} "
                  f"{c['indirect_mispredicts']:21.2f}")
    if "instructions_ratio" in r:
        print(f"  itchcpp executes {r['instructions_ratio']:.2f}x the instructions of itchflow per message")
    print("  (counts of a simulated CPU: the same on every run, whatever the host does; not time)")


def to_json(r: dict) -> str:
    return json.dumps(r)
