"""Shared-memory rings: layout descriptor, atomics, SPSC, broadcast, wait strategies.

Python API: ``Ring.create(path, capacity, ...)``, ``Ring.open(path)``, ``ring.writer()``,
``ring.reader(name)``. Compiled kernels for other Numba code: ``itchflow.ring.producer``
(claim/commit/publish_batch) and ``itchflow.ring.consumer`` (poll/poll_copy/commit/wait_poll).
"""

from itchflow.ring.api import (Batch, ConsumerDetached, ProducerGone, Reader, Ring, RingBusy,
                               RingError, RingFormatError, Writer, ring_path)

__all__ = ["Batch", "ConsumerDetached", "ProducerGone", "Reader", "Ring", "RingBusy", "RingError",
           "RingFormatError", "Writer", "ring_path"]
