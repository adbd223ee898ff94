"""bench revision: an earlier commit of the package exported under another name, importable
beside this one (the engine A/B itself is a benchmark, run by hand: its kernels take a minute
to compile)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import itchflow
from itchflow.bench.revision import export_revision, rename_package, repo_root, resolve

NEW = "itchflow_rev_0123456789ab"


@pytest.mark.parametrize("source, expected", [
    ("from itchflow.book.layout import C_LIVE\n", f"from {NEW}.book.layout import C_LIVE\n"),
    ("import itchflow\n", f"import {NEW}\n"),
    ("from itchflow import _kernel_cache\n", f"from {NEW} import _kernel_cache\n"),
    ('_LAZY = {"read": ("itchflow.decode.reader", "read")}', f'_LAZY = {{"read": ("{NEW}.decode.reader", "read")}}'),
    ("itchflow's engine", f"{NEW}'s engine"),
    ("import itchflow_rev_ffffffffffff.book", "import itchflow_rev_ffffffffffff.book"),  # another export: kept
    ("pyitchflow.x = itchflow2", "pyitchflow.x = itchflow2"),                             # other words: kept
])
def test_rename_package_renames_whole_words_only(source, expected):
    assert rename_package(source, NEW) == expected


def _checkout() -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    try:
        return repo_root()
    except RuntimeError as e:  # an installed wheel, not a checkout
        pytest.skip(str(e))


def test_unknown_revision_is_refused_by_name():
    root = _checkout()
    with pytest.raises(ValueError, match="'no-such-rev' is not a commit"):
        resolve("no-such-rev", root)


def test_exported_head_imports_beside_this_package(tmp_path):
    root = _checkout()
    head = resolve("HEAD", root)
    name, folder = export_revision("HEAD", root, into=tmp_path)
    assert name == f"itchflow_rev_{head[:12]}"
    package = folder / name
    committed = subprocess.run(["git", "-C", str(root), "ls-tree", "-r", "--name-only", head, "src/itchflow"],
                               capture_output=True, text=True, check=True).stdout.split()
    exported = sorted(str(p.relative_to(package)) for p in package.rglob("*.py"))
    assert exported == sorted(p.removeprefix("src/itchflow/") for p in committed if p.endswith(".py"))
    for path in package.rglob("*.py"):   # nothing of the export imports this package
        text = path.read_text()
        assert "from itchflow." not in text and "import itchflow\n" not in text, path
    # Made once: a second call reuses the folder.
    stamp = (package / "__init__.py").stat().st_mtime_ns
    assert export_revision(head, root, into=tmp_path) == (name, folder)
    assert (package / "__init__.py").stat().st_mtime_ns == stamp
    # Its modules import as a package of their own (the wire layout: numpy only, no kernels).
    sys.path.insert(0, str(folder))
    try:
        import importlib

        itch = importlib.import_module(f"{name}.wire.itch")
        assert itch.__file__.startswith(str(package))
        assert sorted(itch.MESSAGES) == sorted(itchflow.MESSAGES)
        assert all(itch.MESSAGES[c].length == itchflow.MESSAGES[c].length for c in itchflow.MESSAGES)
    finally:
        sys.path.remove(str(folder))
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]


@pytest.mark.parametrize("kernel_populates", [True, False], ids=["populate", "written back"])
def test_touch_faults_tables_in_and_keeps_their_values(kernel_populates, monkeypatch):
    from types import SimpleNamespace

    from test_populate import fresh, resident_pages

    import itchflow.hw.populate
    from itchflow.bench.revision import _touch

    if not kernel_populates:  # Linux < 5.14: populate() says it cannot, the touch writes instead
        monkeypatch.setattr(itchflow.hw.populate, "populate", lambda array: False)
    table = fresh(32 << 20)                       # its own mapping: no page resident yet
    table[0], table[5 * 4096], table[-1] = 7, 8, 9  # values the touch must keep
    small = np.arange(16, dtype=np.int64)         # below a page: left alone
    assert resident_pages(table).mean() < 0.5
    _touch(SimpleNamespace(table=table, small=small, name="not an array"))
    assert resident_pages(table).all()            # every page of the table is resident now
    assert (table[0], table[5 * 4096], table[-1]) == (7, 8, 9) and int(table.sum(dtype=np.int64)) == 24
    assert (small == np.arange(16)).all()


def test_anomaly_kinds_one_engine_lacks_must_be_zero_in_the_other():
    """An engine that counts a new kind agrees with a revision that does not when that kind is
    0 (the revision could not have counted it), and disagrees when it is not."""
    from itchflow.bench.revision import _agree

    class Engine:
        def __init__(self, anomalies):
            self._a = anomalies

        def anomalies(self):
            return self._a

    old = Engine({"unknown_reference": 2, "bad_side": 0})
    assert _agree(Engine({"unknown_reference": 2, "bad_side": 0, "bad_printable": 0}), old)["anomalies"]
    assert not _agree(Engine({"unknown_reference": 2, "bad_side": 0, "bad_printable": 1}), old)["anomalies"]
    assert not _agree(Engine({"unknown_reference": 3, "bad_side": 0}), old)["anomalies"]
