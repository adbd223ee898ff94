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


def test_no_public_name_turns_into_a_module_after_its_submodules_are_imported():
    """``itchflow.batch`` came from the package ``itchflow.scale``, whose function ``batch`` the
    import of its submodule ``itchflow.scale.batch`` (by the CLI, the Dask jobs, a user) replaced
    with that module: ``itchflow.batch(...)`` then raised "'module' object is not callable".
    Every public name must be what it was, whatever was imported first."""
    out = _run(
        "import importlib, pkgutil, types, itchflow\n"
        "for m in pkgutil.walk_packages(itchflow.__path__, 'itchflow.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = [n for n in itchflow.__all__ if isinstance(getattr(itchflow, n), types.ModuleType)]\n"
        "from itchflow.scale import batch\n"
        "module = importlib.import_module('itchflow.scale.batch')\n"
        "assert callable(batch) and itchflow.batch is module.batch, (batch, itchflow.batch)\n"
        "print(bad)")
    assert out == "[]"
