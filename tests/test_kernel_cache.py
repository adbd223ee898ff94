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


def _cache_dir_chosen(env: dict) -> tuple[str, str]:
    code = "import itchflow, os; print(os.environ.get('NUMBA_CACHE_DIR', 'unset'))"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return r.stdout.strip(), r.stderr


def test_with_no_writable_home_the_cache_goes_to_a_private_temporary_folder(tmp_path, read_only_dir):
    """Probe 57: a read-only install run with a home that cannot be written: every kernel failed
    at import ("cannot cache function 'read_ahead': no locator available"), even `ring ls`."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, HOME=str(read_only_dir), TMPDIR=str(tmp))
    for name in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME"):
        env.pop(name, None)
    chosen, _ = _cache_dir_chosen(env)
    assert chosen.startswith(str(tmp / f"itchflow-{os.getuid()}" / "numba") + os.sep)
    assert oct(os.stat(tmp / f"itchflow-{os.getuid()}").st_mode & 0o777) == "0o700"
    # a relative XDG_CACHE_HOME is ignored (the XDG spec), not a folder under the current one
    env["XDG_CACHE_HOME"] = "relative"
    chosen, _ = _cache_dir_chosen(env)
    assert chosen.startswith(str(tmp)) and not (tmp_path / "relative").exists()


def test_a_temporary_folder_someone_else_made_is_not_used(tmp_path, read_only_dir):
    """In a shared /tmp another user may make itchflow-<uid> first, to plant compiled code: such a
    folder (not ours, or writable by others, or a link) is passed over."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    planted = tmp / f"itchflow-{os.getuid()}"
    env = dict(os.environ, HOME=str(read_only_dir), TMPDIR=str(tmp))
    for name in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME"):
        env.pop(name, None)
    for make in ("writable by others", "a link", "another user's"):
        if planted.is_symlink() or planted.is_file():
            planted.unlink()
        elif planted.exists():
            planted.rmdir()
        if make == "writable by others":
            planted.mkdir()
            planted.chmod(0o777)
        elif make == "a link":
            (tmp_path / "elsewhere").mkdir(exist_ok=True)
            planted.symlink_to(tmp_path / "elsewhere")
        else:
            if os.getuid() != 0:
                continue
            planted.mkdir()
            planted.chmod(0o700)
            os.chown(planted, 65534, 65534)
        chosen, _ = _cache_dir_chosen(env)
        assert not chosen.startswith(str(tmp)), make
        assert not (tmp_path / "elsewhere" / "numba").exists()
