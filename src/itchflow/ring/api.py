"""The old home of the Python API, kept importable: ``from itchflow.ring.api import Ring`` still
works. The concepts now live one per module: errors, paths, file (Ring), writer, reader,
slots, liveness, inspect."""

from itchflow.ring.errors import ConsumerDetached, ProducerGone, RingBusy, RingClosed, RingError, RingFormatError
from itchflow.ring.file import Ring, validate_header
from itchflow.ring.paths import DEFAULT_DIR, SUFFIX, ring_path
from itchflow.ring.reader import Batch, Reader
from itchflow.ring.writer import Writer

__all__ = ["Batch", "ConsumerDetached", "DEFAULT_DIR", "ProducerGone", "Reader", "Ring", "RingBusy", "RingClosed",
           "RingError", "RingFormatError", "SUFFIX", "Writer", "ring_path", "validate_header"]
