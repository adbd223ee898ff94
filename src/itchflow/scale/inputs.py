"""The days of an archive: local paths, globs and fsspec URLs, read as chunks of whole messages.

A day is read by ``itchflow.sources.files.iter_chunks``, as ``read`` and ``replay`` read
it: local files (and ``file://`` URLs) raw days memory-mapped, ``.gz`` streamed, captures
ordered and read in pieces; other URLs (``s3://``, ``gs://``, ...) streamed with fsspec
(gzip and captures told apart by their first bytes, as a file's are) in blocks cut at
message boundaries, so a worker never holds a whole day (a capture is kept in a temporary
file).
"""

from __future__ import annotations

import glob
import os
from typing import Iterator

from itchflow.sources.chunk import Chunk


_GLOB_CHARS = "*?["


def is_url(path: str) -> bool:
    return "://" in str(path)


def local_path(path: str) -> str | None:
    """A local filesystem path for path (``file://`` URLs included), else None."""
    p = str(path)
    if p.startswith("file://"):
        return p[len("file://"):]
    return None if is_url(p) else p


def source_identity(source: str) -> dict:
    """What says a day's input is still the one its output was made from: its path, size and
    modification time (a URL: what its filesystem reports, an ETag included when it has one)."""
    local = local_path(source)
    if local is not None:
        st = os.stat(local)
        return {"source": os.path.abspath(local), "size": st.st_size, "modified": st.st_mtime_ns}
    import fsspec

    fs, path = fsspec.core.url_to_fs(source)
    info = fs.info(path)
    stamp = next((info[k] for k in ("ETag", "etag", "mtime", "LastModified", "updated", "created") if k in info), "")
    return {"source": str(source), "size": int(info.get("size") or 0), "modified": str(stamp)}


def expand(paths) -> list[str]:
    """Every day named by paths (a path, URL, glob or local folder, or a list of them), in
    order, each once."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[str] = []
    for item in items:
        p = os.fspath(item)
        local = local_path(p)
        if any(c in p for c in _GLOB_CHARS):
            if local is not None:   # folders it matches are not days (as a folder's own listing)
                found = sorted(f for f in glob.glob(local) if not os.path.isdir(f))
            else:
                import fsspec

                fs, _, found_paths = fsspec.get_fs_token_paths(p)
                found = sorted(fs.unstrip_protocol(f) for f in found_paths)
            if not found:
                raise FileNotFoundError(f"{p}: no file matches")
            out.extend(found)
        elif local is not None and os.path.isdir(local):  # a folder: every day file in it
            found = sorted(os.path.join(local, n) for n in os.listdir(local)
                           if not n.startswith((".", "_")) and os.path.isfile(os.path.join(local, n)))
            if not found:
                raise FileNotFoundError(f"{p}: an empty folder")
            out.extend(found)
        else:
            out.append(local if local is not None else p)
    seen, unique = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def iter_day(source: str, capture_stats: dict | None = None, join_runs: bool = False) -> Iterator[Chunk]:
    """The day's whole messages as Chunks: a local day as ``iter_chunks`` gives it (a raw day
    memory-mapped: ``Chunk.release`` lets its pages go), a URL streamed in blocks.
    capture_stats: filled with a capture's counters (gaps, duplicates, malformed packets).
    join_runs: as ``iter_chunks``'s."""
    from itchflow.sources.files import iter_chunks

    yield from iter_chunks(source, capture_stats=capture_stats, join_runs=join_runs)
