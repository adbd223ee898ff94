"""One progress display for every long-running command: rate and position, on stderr."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager


@contextmanager
def progress_bar(description: str, total_bytes: int | None, quiet: bool = False):
    """Yields update(messages, bytes). Nothing is drawn when quiet or stderr is not a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield lambda messages, nbytes: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(description, total=total_bytes, rate="")

        def update(messages: int, nbytes: int) -> None:
            dt = max(time.perf_counter() - t0, 1e-9)
            if not messages:   # a capture's passes before its first message (planned; a gzipped one unpacked)
                bar.update(task, completed=nbytes, rate="planning the capture")
                return
            bar.update(task, completed=nbytes, rate=f"{messages:,} msgs  {messages / dt / 1e6:,.1f} M msg/s")

        yield update


def output_console():
    """A rich Console for reports on stdout: the terminal's width, or 130 columns when piped
    (logs and CI), so tables are not squeezed into 80."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=130)


def progress_total(path: str, stream_bytes: bool = False) -> int | None:
    """The progress bar's total: the file's size, for readers whose progress is a position in
    the file as stored (``Chunk.position``: a gzip day's compressed bytes, a capture's packets).
    stream_bytes: the reader counts the ITCH stream's bytes instead (``run``'s consumer, which
    sees the ring's records): the size is its total only for a raw day. None for what is not a
    regular file (a pipe's bytes can be read once only: by the reader)."""
    try:
        if not os.path.isfile(path):
            return None
        if stream_bytes:
            from itchflow.sources.files import sniff

            with open(path, "rb") as f:
                if sniff(f.read(8)) != "itch":
                    return None
        return os.path.getsize(path)
    except OSError:
        return None
