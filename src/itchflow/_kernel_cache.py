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
import sys
import time
from pathlib import Path

STALE_SECONDS = 30 * 24 * 3600


def sources_key(package_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(package_dir.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(package_dir)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "itchflow" / "numba"


def configure() -> str | None:
    """Point NUMBA_CACHE_DIR at this version's folder (unless set, or not writable); returns it."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    try:
        root = cache_root()
        folder = root / sources_key(Path(__file__).resolve().parent)
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            return None
        os.utime(folder)        # in use: keeps it from being pruned
        _prune(root, folder)
    except OSError:
        return None             # no writable home (a sandboxed user): Numba's default applies
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
