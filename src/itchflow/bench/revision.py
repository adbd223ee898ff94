"""The book engine against an earlier revision of itself: the same bytes, the same run.

How much faster has the engine become? Figures taken days apart on this host cannot say: its
speed drifts with the other guests (itchcpp's BookManager took 235 ns a message on the deep day
in one quiet spell and 350 in a busier one, on the same bytes). What holds is the two engines
taking turns in one process:

- ``git archive REV src/itchflow`` is unpacked into the bench cache as a package of another
  name (``itchflow_rev_<sha>``, every mention of ``itchflow`` in its sources rewritten), so
  both import side by side, each with its own compiled kernels;
- per shape (the book benchmark's: ``bench.book.shape_params``), the day is memory-mapped and
  faulted in once, then each turn builds fresh books with each engine (the tables they start
  with touched first, so their page faults are in neither time; what an engine allocates as
  the day grows it counts) and times one ``apply`` of the whole day;
  the order of the two alternates from turn to turn;
- reported: the best of each, their ratio, and each turn's ratio (min / median / max: a spell
  that slows the host slows both of a turn), with the day's shape beside it;
- the books must agree: messages, live orders, every stock's top of book, every live order of
  every book in queue order, the anomaly counts (a query the revision's ``Books`` lacks is
  reported as not compared).

Needs a git checkout of itchflow (the package imported from its ``src``) with REV in its history.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from itchflow.bench.book import SHAPE_NAMES, SHAPE_TITLES, ensure_shape_day, shape_params
from itchflow.bench.common import BENCH_DIR, machine, rate_row

# Every mention of the package's name, as a whole word: "itchflow.book", "import itchflow",
# "itchflow's" (in a docstring), but not "itchflow_rev_..." nor "pyitchflow".
_NAME = re.compile(r"\bitchflow\b")


def rename_package(source: str, new_name: str) -> str:
    """The text of a module of the package with every mention of the package renamed."""
    return _NAME.sub(new_name, source)


def repo_root() -> Path:
    """The git checkout this itchflow is imported from (``src/itchflow`` inside it)."""
    import itchflow

    root = Path(itchflow.__file__).resolve().parents[2]
    if not (root / ".git").exists() or not (root / "src" / "itchflow").is_dir():
        raise RuntimeError(f"bench revision needs a git checkout of itchflow; the package at "
                           f"{Path(itchflow.__file__).parent} is not inside one")
    return root


def resolve(rev: str, root: Path) -> str:
    """The full commit id of rev in the checkout at root."""
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise ValueError(f"{rev!r} is not a commit of the checkout at {root}")
    return out.stdout.strip()


def export_revision(rev: str, root: Path | None = None, into: Path | None = None) -> tuple[str, Path]:
    """(package name, folder to put on sys.path): the package as it was at rev, renamed. Made
    once per commit (in ``into``, default the bench cache) and reused."""
    root = root or repo_root()
    commit = resolve(rev, root)
    name = f"itchflow_rev_{commit[:12]}"
    base = Path(into or BENCH_DIR / "revisions") / commit[:12]
    if (base / name / "__init__.py").exists():
        return name, base
    base.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base.parent) as tmp:
        archive = Path(tmp) / "src.tar"
        subprocess.run(["git", "-C", str(root), "archive", "--format=tar", "-o", str(archive), commit,
                        "src/itchflow"], check=True, capture_output=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        package = Path(tmp) / "stage" / name
        shutil.move(Path(tmp) / "src" / "itchflow", package)
        for path in package.rglob("*.py"):
            path.write_text(rename_package(path.read_text(), name))
        if base.exists():               # a half-made folder of an interrupted run
            shutil.rmtree(base)
        os.replace(Path(tmp) / "stage", base)
    return name, base


def load_books_class(name: str, folder: Path):
    """The ``Books`` class of an exported revision."""
    import importlib

    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(f"{name}.book.books").Books
    except (ImportError, AttributeError) as e:
        raise RuntimeError(f"{name} has no book.books.Books to measure (a revision from before the "
                           f"re-layout?): {e}") from None


def _touch(books) -> None:
    """Fault in every page of the books' tables (so a timed apply pays no first-touch faults):
    ``hw.populate``, the call Books.prefault makes, or where the kernel cannot (Linux < 5.14) a
    byte of every page written back with its own value."""
    from itchflow.hw.populate import PAGE, populate

    for value in vars(books).values():
        if (isinstance(value, np.ndarray) and value.nbytes >= PAGE and value.flags.writeable
                and value.flags.c_contiguous and not populate(value)):
            flat = value.reshape(-1).view(np.uint8)
            # the values written back are a copy: numpy skips an assignment of a view to itself
            flat[::PAGE] = flat[::PAGE].copy()


def _fresh(books_class):
    # Books would fault their tables in on the other core on a big apply (prefault): off, since
    # they are touched here before the clock starts; a revision from before it has no such option.
    try:
        books = books_class(prefault=False)
    except TypeError:
        books = books_class()
    _touch(books)
    return books


def _agree(head, rev) -> dict:
    """Each check: True / False, or None where the revision's Books lacks the query."""
    def same(query, equal=lambda a, b: a == b):
        if not hasattr(rev, query):
            return None
        a, b = getattr(head, query), getattr(rev, query)
        return bool(equal(a() if callable(a) else a, b() if callable(b) else b))

    def counts(a: dict, b: dict) -> bool:  # a kind one engine does not count is 0 in it
        return all(a.get(k, 0) == b.get(k, 0) for k in set(a) | set(b))

    arrays = np.array_equal
    return {"messages": same("messages"), "live_orders": same("live_orders"), "tops": same("tops", arrays),
            "order_table": same("order_table", arrays), "anomalies": same("anomalies", counts)}


def run_shape(name: str, params: dict, rev_books, repeat: int = 5, progress=None) -> dict:
    from itchflow.bench.day_shape import day_shape
    from itchflow.book.books import Books
    from itchflow.sources.files import map_file

    path, _gen, made = ensure_shape_day(params)
    buf = map_file(path)
    _ = int(buf[::4096].sum())  # the day's pages into the mapping before any timing
    # One untimed apply of the whole day by each: kernels a part of the day needs first (a
    # table's growth, a ladder's move) are loaded, or compiled, outside the clock.
    for which in ("head", "rev"):
        _fresh(Books if which == "head" else rev_books).apply(buf)
    times = {"head": [], "rev": []}
    kept = {}
    for turn in range(repeat):
        for which in (("head", "rev") if turn % 2 == 0 else ("rev", "head")):
            books = _fresh(Books if which == "head" else rev_books)
            t = time.perf_counter()
            books.apply(buf)
            times[which].append(time.perf_counter() - t)
            kept[which] = books
            if progress:
                progress(f"{name} turn {turn + 1}/{repeat} {which}: "
                         f"{times[which][-1] / books.messages * 1e9:.1f} ns/msg")
            del books
    head, rev = kept["head"], kept["rev"]
    turns = [r / h for r, h in zip(times["rev"], times["head"])]
    return {"shape_name": name, "title": SHAPE_TITLES[name], "day": str(path), "generated_now": made,
            "head": rate_row(head.messages, min(times["head"])),
            "rev": rate_row(rev.messages, min(times["rev"])),
            "speedup": min(times["rev"]) / min(times["head"]),
            "speedup_of_turns": {"min": min(turns), "median": float(np.median(turns)), "max": max(turns)},
            "head_ns_all": [t / head.messages * 1e9 for t in times["head"]],
            "rev_ns_all": [t / rev.messages * 1e9 for t in times["rev"]],
            "agree": _agree(head, rev), "shape": day_shape(buf, head)}


def run(rev: str, messages: int = 10_000_000, shapes=SHAPE_NAMES, many_stocks: int = 8000, seed: int = 1,
        repeat: int = 5, fullday_live_orders: int | None = None, progress=None) -> dict:
    root = repo_root()
    commit = resolve(rev, root)
    head_commit = resolve("HEAD", root)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src/itchflow"],
                           capture_output=True, text=True).stdout.strip() != ""
    name, folder = export_revision(commit, root)
    rev_books = load_books_class(name, folder)
    from itchflow.book.books import Books

    # Load (or compile, the first time for a revision: about a minute) both engines' kernels.
    t = time.perf_counter()
    tiny = np.zeros(0, np.uint8)
    Books(1 << 10, table=1 << 10).apply(tiny)
    rev_books(1 << 10, table=1 << 10).apply(tiny)
    r = {"machine": machine(), "rev": rev, "rev_commit": commit, "head_commit": head_commit,
         "head_dirty": dirty, "repeat": repeat, "kernels_seconds": time.perf_counter() - t, "shapes": []}
    for shape in shapes:
        params = shape_params(shape, messages, many_stocks, fullday_live_orders, seed)
        r["shapes"].append(run_shape(shape, params, rev_books, repeat, progress))
    return r


def report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = r["machine"]
    # "checkout": the sources imported now (HEAD plus any uncommitted change), against rev
    head = r["head_commit"][:10] + (" + uncommitted changes" if r["head_dirty"] else "")
    t = Table(title=f"book engine: this checkout (HEAD {head}) against {r['rev']} ({r['rev_commit'][:10]}): the "
                    f"same bytes in one process, taking turns, best of {r['repeat']}; {m['cpu']} ({m['cores']} cores)")
    for col in ("shape", "messages", f"{r['rev']} ns/msg", "checkout ns/msg", "speed-up", "turns min/med/max",
                "agree"):
        t.add_column(col, justify="left" if col == "shape" else "right", no_wrap=True)
    for s in r["shapes"]:
        turns = s["speedup_of_turns"]
        differ = [k for k, v in s["agree"].items() if v is False]
        unchecked = [k for k, v in s["agree"].items() if v is None]
        agree = ("NO: " + ", ".join(differ)) if differ else "yes" + (
            f" (not compared: {', '.join(unchecked)})" if unchecked else "")
        t.add_row(s["title"], f"{s['head']['messages'] / 1e6:.1f} M", f"{s['rev']['ns_per_msg']:.1f}",
                  f"{s['head']['ns_per_msg']:.1f}", f"{s['speedup']:.2f}x",
                  f"{turns['min']:.2f}/{turns['median']:.2f}/{turns['max']:.2f}x", agree)
    Console(width=max(Console().width, 160)).print(t)   # a file or pipe: every column whole
    for s in r["shapes"]:
        sh = s["shape"]
        tops = "/".join(f"{100 * sh['top_share'][k]:.1f}" for k in ("1", "10", "100"))
        print(f"  {s['title']}: {sh['stocks']:,} stocks, top 1/10/100 {tops}% of messages, peak live orders "
              f"{sh['peak_live_orders']:,}, deepest side {sh['deepest_side_levels']:,} levels "
              f"({sh['deepest_side_symbol']}); {s['day']}" + (" (generated now)" if s["generated_now"] else ""))
        print(f"    {r['rev']} ns/msg by turn: " + ", ".join(f"{x:.1f}" for x in s["rev_ns_all"])
              + "; checkout: " + ", ".join(f"{x:.1f}" for x in s["head_ns_all"]))
    print(f"  kernels loaded (compiled, the first time for a revision) in {r['kernels_seconds']:.1f} s, untimed")
