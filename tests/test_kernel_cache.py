"""The compiled-kernel cache is keyed by every source file of the package, so a change to a
module that other kernels inline can never leave them running stale code."""

import os
import subprocess
import sys

from itchflow import _kernel_cache


def test_the_key_changes_when_any_source_changes(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    k0 = _kernel_cache.sources_key(pkg)
    assert _kernel_cache.sources_key(pkg) == k0                 # stable
    st = os.stat(pkg / "sub" / "b.py")
    os.utime(pkg / "sub" / "b.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    k1 = _kernel_cache.sources_key(pkg)
    assert k1 != k0                                             # an edit (new mtime) elsewhere
    (pkg / "c.py").write_text("")
    assert _kernel_cache.sources_key(pkg) not in (k0, k1)       # a new module


def test_import_points_numba_at_the_keyed_folder_unless_the_user_chose(tmp_path):
    code = "import itchflow, os, numba.core.config as c; print(os.environ['NUMBA_CACHE_DIR']); print(c.CACHE_DIR)"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == out[1] and out[0].startswith(str(tmp_path / "itchflow" / "numba"))
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(tmp_path / "mine")] * 2
    # numba imported first: the setting still reaches its config
    code2 = "import numba, itchflow, numba.core.config as c, os; print(c.CACHE_DIR == os.environ['NUMBA_CACHE_DIR'])"
    env.pop("NUMBA_CACHE_DIR")
    assert subprocess.run([sys.executable, "-c", code2], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "True"
