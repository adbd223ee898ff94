"""What a call allocates at its peak, for tests that bound memory."""

from __future__ import annotations

import tracemalloc


def peak_allocated(fn) -> tuple[object, int]:
    """fn()'s result and the most memory Python and numpy had allocated at once while it ran
    (numpy reports its array buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
