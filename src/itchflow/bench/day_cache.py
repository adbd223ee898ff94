"""Cached benchmark inputs (generated days, their captures and gzip copies) reused only when whole.

A cached file was trusted because it existed: a day cut at a message boundary (a full disk, a
copy stopped half-way, a hand edit) ran as a shorter day, "cached", with no warning. Beside
each file made, ``NAME.whole`` records its size and the SHA-256 of its last 64 KiB; a file is
reused only when both still match. A file cached before this record existed is checked once
by reading it through (``itchflow.stats``: framed whole, the message count expected) and the
record written then. Anything else is made again, and the command says so on stderr.

The generator version is in every cached name (``common.DAY_FORMAT``); this checks only that
the bytes are the ones written.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Callable

TAIL_BYTES = 64 << 10


def _tail_digest(path: Path, size: int) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, size - TAIL_BYTES))
        return hashlib.sha256(f.read(TAIL_BYTES)).hexdigest()


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".whole")


def record(path: Path) -> None:
    """Note that path, as it is now, is whole."""
    size = path.stat().st_size
    record_path(path).write_text(json.dumps({"bytes": size, "tail_sha256": _tail_digest(path, size)}))


def _recorded_whole(path: Path) -> bool | None:
    """True/False when a record exists (the file matches it or not); None when none does."""
    try:
        rec = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None
    try:
        size = path.stat().st_size
        return size == rec.get("bytes") and _tail_digest(path, size) == rec.get("tail_sha256")
    except OSError:
        return False


def _reads_whole(path: Path, messages: int | None) -> bool:
    """A file without a record: whole if it frames to the end, with the messages expected."""
    import itchflow

    try:
        info = itchflow.stats(path)
    except (OSError, ValueError, EOFError):
        return False
    return messages is None or info.messages == messages


def ensure(path: Path, make: Callable[[Path], object], messages: int | None = None) -> bool:
    """Make path (``make(path)``, which must write it whole or not at all) unless a whole copy
    is cached. Returns whether it was made now. messages: what the file holds (to check a
    file cached without a record)."""
    path = Path(path)
    if path.exists():
        whole = _recorded_whole(path)
        if whole is None:
            whole = _reads_whole(path, messages)
            if whole:
                record(path)
        if whole:
            return False
        print(f"itchflow bench: the cached {path} is not the file written there (cut or changed): "
              f"making it again", file=sys.stderr)
        path.unlink()
    record_path(path).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    make(path)
    record(path)
    return True
