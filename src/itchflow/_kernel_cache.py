"""Where Numba caches itchflow's compiled kernels: a folder keyed by the package's sources.

Numba checks a cached function against its own file only. A kernel that inlines functions
from other modules (the pipeline's consumer inlines the book engine, the generator's step
loop inlines the market model) is NOT recompiled when only those modules change: it would
silently run the old code. Keying the whole cache on every source file's size and mtime
makes any change to the package recompile everything once (seconds), never run stale code.

Set before Numba is first imported (``itchflow/__init__`` does it); a NUMBA_CACHE_DIR the user
set wins. Folders of other versions of the sources unused for 30 days are removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Iterator

STALE_SECONDS = 30 * 24 * 3600


def sources_key(package_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(package_dir.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(package_dir)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cache_roots() -> Iterator[Path]:
    """Where the cache may live, best first: $XDG_CACHE_HOME (absolute only, as the XDG spec
    says: a relative one put Numba's cache in the current folder), ~/.cache, then a folder of
    this user's own in the temporary folder and in /dev/shm (a read-only install run by a user
    with no writable home: without any, every kernel failed at import, 'no locator available')."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        yield Path(xdg) / "itchflow" / "numba"
    home = os.path.expanduser("~")
    if os.path.isabs(home):
        yield Path(home) / ".cache" / "itchflow" / "numba"
    import tempfile

    try:
        shared = [tempfile.gettempdir()]
    except OSError:   # no usable temporary folder
        shared = []
    for folder in [*shared, "/dev/shm"]:
        private = _private_folder(Path(folder) / f"itchflow-{os.getuid()}")
        if private is not None:
            yield private / "numba"


def _private_folder(path: Path) -> Path | None:
    """``path`` made (mode 0700) or found as a real folder of this user that no one else can
    write; None if it is anything else. In a shared folder such as /tmp another user could have
    made it first, to plant compiled code that every later run would load and execute."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return path


def _writable(folder: Path) -> bool:
    """Whether files can be made in ``folder`` (made if absent): what Numba's own check does."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def configure() -> str | None:
    """Point NUMBA_CACHE_DIR at this version's folder (unless the user set it); returns it, or
    None if the user set it or no folder can be written (a warning then says what to set)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    key = sources_key(Path(__file__).resolve().parent)
    tried = []
    for root in cache_roots():
        folder = root / key
        if _writable(folder):
            break
        tried.append(str(root))
    else:
        import warnings

        warnings.warn(f"itchflow: no folder to keep its compiled kernels in could be written (tried "
                      f"{', '.join(tried) or 'none'}); set NUMBA_CACHE_DIR to a writable folder", RuntimeWarning,
                      stacklevel=2)
        return None
    try:
        os.utime(folder)        # in use: keeps it from being pruned
        _prune(root, folder)
    except OSError:
        pass
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if "numba" in sys.modules:  # imported before us: make it read the new setting
        from numba.core import config

        config.reload_config()
    return str(folder)


def _prune(root: Path, keep: Path) -> None:
    now = time.time()
    for other in root.iterdir():
        if other != keep and other.is_dir():
            try:
                if now - other.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(other, ignore_errors=True)
            except OSError:
                pass
