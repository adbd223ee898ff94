"""Shared fixtures for the itchflow tests.

The real Nasdaq captures live beside the repository (CI clones it next to ``shared/``):
``<repo>/../shared/data/omi-itch50``. Tests that need them skip, saying why, when absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# itchfeed picks its backend when `itch` is first imported, by whichever test gets there
# first. The agreement tests compare against its pure-Python decoder, so pin that for the
# whole session. (itchcpp's own modules, such as itchcpp.book, are not affected.)
os.environ["ITCH_NO_CPP"] = "1"

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # so tests can `import itch_reference`
    sys.path.insert(0, str(TESTS_DIR))

CAPTURES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "omi-itch50"
if os.environ.get("ITCHFLOW_CAPTURES"):  # e.g. a git worktree that does not sit beside shared/
    CAPTURES_DIR = Path(os.environ["ITCHFLOW_CAPTURES"])


def captures_available() -> bool:
    return CAPTURES_DIR.is_dir() and any(CAPTURES_DIR.glob("*/*.pcap"))


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    """The omi-itch50 sample captures folder (skips the test when it is not there)."""
    if not captures_available():
        pytest.skip(f"real captures not found at {CAPTURES_DIR} (clone the repo beside shared/)")
    return CAPTURES_DIR


@pytest.fixture(scope="session")
def all_captures(captures_dir) -> list[Path]:
    return sorted(captures_dir.glob("*/*.pcap"))


@pytest.fixture
def ring_path():
    """A fresh path for a ring file in /dev/shm, removed after the test."""
    p = f"/dev/shm/itchflow-test-{os.getpid()}-{uuid.uuid4().hex}.ring"
    yield p
    if os.path.exists(p):
        os.unlink(p)


def _small_tmpfs(tmp_path, options: str, what: str):
    """A directory on a tmpfs mounted with options for the test, unmounted after it (root only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip(f"mounting {what} needs root and mount(8)")
    d = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)]).returncode != 0:  # busy: detach it, and fail the test
            subprocess.run(["umount", "-l", str(d)])
            raise AssertionError(f"{d} was still in use after the test")


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory on a read-only tmpfs (root writes through a mode of 0o555, not through this)."""
    yield from _small_tmpfs(tmp_path, "size=64k,ro", "a read-only tmpfs")


@pytest.fixture
def full_disk(tmp_path):
    """A directory on a 1 MiB tmpfs: writes past 1 MiB fail with ENOSPC."""
    yield from _small_tmpfs(tmp_path, "size=1m", "a small tmpfs to fill")
