"""The public names: importable from ``itchflow`` directly, loaded lazily so that
``import itchflow`` stays light (no Numba, pyarrow or pandas until something needs them)."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_import_itchflow_loads_no_heavy_module():
    out = _run("import sys, itchflow; print(sorted(m for m in ('numba', 'pyarrow', 'pandas', 'itchflow.book') "
               "if m in sys.modules))")
    assert out == "[]"


def test_public_names_are_the_implementations():
    out = _run(
        "from itchflow import Books, replay, Ring, read, scan, stats, run_pipeline, ITCHFormatError, "
        "price4_to_float, Events\n"
        "import itchflow.book.books, itchflow.book.replay, itchflow.ring, itchflow.pipeline, itchflow.decode.reader\n"
        "assert Books is itchflow.book.books.Books and replay is itchflow.book.replay.replay\n"
        "assert Ring is itchflow.ring.Ring and run_pipeline is itchflow.pipeline.run_pipeline\n"
        "assert read is itchflow.decode.reader.read and issubclass(ITCHFormatError, ValueError)\n"
        "assert price4_to_float(1234500) == 123.45\n"
        "print('ok')")
    assert out == "ok"
