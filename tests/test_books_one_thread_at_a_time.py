"""A Books used from several threads at once (probe 59). The kernels release the GIL: a query
counted its rows, allocated, then filled them while a replay on another thread added orders
(heap corruption, the process killed), and two threads applying at once spun for ever or built
wrong books. Each public call now holds the books' lock (``book.exclusive``).

Each case runs in a child interpreter, so a regression is that child's death or time-out, not
the test run's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    from itchflow.sim.generator import write_day

    path = tmp_path_factory.mktemp("day") / "day.itch"
    write_day(path, 150_000, seed=5)
    return str(path)


def _child(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=400)


QUERIES_DURING_REPLAY = """
import sys, threading, faulthandler
import numpy as np
from itchflow import Books
faulthandler.enable()
day, threads, query = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ref = Books(hash_seed=1).replay(day)            # (the kernels compiled before the race)
books = Books(threads=threads, hash_seed=1)
symbols = list(ref.symbols)[:8]
done = threading.Event()
seen = []
def ask():
    while not done.is_set():
        if query == "order_table":
            t = books.order_table()
            seen.append(bool(len(t) == 0 or (t["shares"] > 0).all()))
        else:
            for s in symbols:
                bids, _ = books.depth(s, 1)
                if len(bids):
                    q = books.orders(s, "B", int(bids["price"][0]))
                    seen.append(bool(len(q) > 0 and (q["shares"] > 0).all()))
asker = threading.Thread(target=ask)
asker.start()
for _ in range(3):   # replays in steps: the other thread queries between them as well
    books.replay(day, stop_after_ns=None if _ == 2 else (_ + 1) * 3_600_000_000_000 + 34_200_000_000_000)
done.set()
asker.join()
assert all(seen), "a query returned rows that are not live orders"
assert books.tops_digest() == ref.tops_digest() and books.messages == ref.messages
print("ok", len(seen))
"""


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("query", ["order_table", "orders"])
def test_queries_while_another_thread_replays(day, threads, query):
    res = _child(QUERIES_DURING_REPLAY, day, threads, query)
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    assert res.stdout.startswith("ok "), res.stdout


TWO_APPLIES = """
import sys, threading, faulthandler
import numpy as np
from itchflow import Books
faulthandler.dump_traceback_later(300, exit=True)
buf = np.fromfile(sys.argv[1], np.uint8)
threads = int(sys.argv[2])
one_by_one = Books(threads=threads, hash_seed=1)
one_by_one.apply(buf)
one_by_one.apply(buf)
together = Books(threads=threads, hash_seed=1)
workers = [threading.Thread(target=together.apply, args=(buf,)) for _ in range(2)]
[w.start() for w in workers]
[w.join() for w in workers]
assert together.messages == one_by_one.messages == 2 * one_by_one.messages // 2
assert together.tops_digest() == one_by_one.tops_digest()
assert together.anomalies() == one_by_one.anomalies()
assert together.live_orders() == one_by_one.live_orders()
print("ok")
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_two_threads_applying_at_once_are_two_applies_in_turn(day, threads):
    res = _child(TWO_APPLIES, day, threads)
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    assert res.stdout.strip() == "ok"


def test_books_still_pickle_and_go_on(day):
    import pickle

    import itchflow

    books = itchflow.Books(hash_seed=1)
    books.replay(day, stop_after_ns=40_000 * 10**9)
    copy = pickle.loads(pickle.dumps(books))
    copy.replay(day)
    assert copy.tops_digest() == itchflow.Books(hash_seed=1).replay(day).tops_digest()
    copy.order_table()   # its own lock works


FORK_WHILE_HELD = """
import os, signal, sys, threading
from itchflow import Books
books = Books(threads=int(sys.argv[2]), hash_seed=1).replay(sys.argv[1])
held, go = threading.Event(), threading.Event()
def hold():
    with books._lock:   # as a thread feeding the books holds it, mid-call
        held.set()
        go.wait(30)
t = threading.Thread(target=hold)
t.start()
held.wait(30)
pid = os.fork()
if pid == 0:
    signal.alarm(20)    # the hang this is about: the child waited for a thread it does not have
    ok = books.live_orders() >= 0 and len(books.bbo()) > 0
    os._exit(0 if ok else 3)
go.set()
t.join()
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_a_process_forked_while_another_thread_held_the_books_can_use_them(day, threads):
    """Probe 60: a child forked while a thread of the parent held the books' lock waited for ever
    on its first call (multiprocessing's fork start method, with a thread feeding the books)."""
    res = _child(FORK_WHILE_HELD, day, threads)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("child 0"), (res.stdout, res.stderr[-2000:])
