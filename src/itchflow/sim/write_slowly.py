"""write-slowly: append a day to a file in random pieces at a message rate, so that
``tail:`` can be tried by hand and in tests."""

from __future__ import annotations

import os
import time

import numpy as np

from itchflow.sources.chunk import map_file
from itchflow.wire.binaryfile import whole_messages_end


def append_slowly(src: str | os.PathLike, dst: str | os.PathLike, *, rate: float | None = None,
                  piece_bytes: int = 4093, seed: int = 0, fsync: bool = False) -> int:
    """Append ``src`` to ``dst`` in pieces of random size up to ``piece_bytes`` (cutting
    messages anywhere), at about ``rate`` messages per second (None: as fast as possible).
    Returns the bytes written. For trying tail mode by hand and for tests. ``dst`` the same
    file as ``src`` is a ValueError (the day was appended to itself, time going back: probe 30).
    """
    from itchflow.sinks.output import refuse_input_as_output
    from itchflow.sources.formats import sniff

    refuse_input_as_output(dst, src)
    data = map_file(src)
    kind = sniff(bytes(data[:8]))
    if kind != "itch":   # (a .gz was appended as it was, at a rate its message count could not give: probe 32)
        raise ValueError(f"{os.fspath(src)}: a {kind} file; write-slowly appends a raw BinaryFILE day, as tail: "
                         f"follows one" + (" (gunzip it first)" if kind == "gzip" else ""))
    rng = np.random.default_rng(seed)
    n_messages = max(1, int(whole_messages_end(data, 0, len(data))[1]))
    bytes_per_second = None if not rate else rate * len(data) / n_messages
    t0 = time.perf_counter()
    written = 0
    with open(dst, "ab", buffering=0) as out:
        while written < len(data):
            k = int(rng.integers(1, piece_bytes + 1))
            written += out.write(data[written:written + k].tobytes())  # an unbuffered write may be short
            if fsync:
                os.fsync(out.fileno())
            if bytes_per_second:
                ahead = written / bytes_per_second - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    return written


