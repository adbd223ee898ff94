"""The ring's exceptions: RingError and its kinds; and RingClosed, which ends a stream as a file's end
does (an EOFError, not an error)."""

from __future__ import annotations


class RingError(Exception):
    """Base class for ring errors."""


class RingClosed(EOFError):
    """The producer closed the ring and everything was read. ``outcome``: how its stream ended
    (``layout.STREAM_*``: whole, cut short before its end, or with messages lost)."""

    def __init__(self, message: str, outcome: int = 0):
        super().__init__(message)
        self.outcome = outcome


class RingFormatError(RingError, ValueError):
    """The file is not a valid ring (magic, version, sizes, a consumer entry), or a record is
    corrupt."""


class RingBusy(RingError):
    """Another live process already holds the producer role, this consumer name, or the ring."""


class ConsumerDetached(RingError):
    """The producer detached this consumer (it stopped heart-beating: paused, swapped out, too
    slow); what it was reading may have been overwritten. Call ``Reader.rejoin()`` to continue
    at the live edge (loss counted)."""


class ProducerGone(RingError):
    """The producer died (its pid is gone, or its heartbeat stopped) and everything it
    published has been read. ``alive_pid``: its pid when that process is still there (paused,
    stopped or starved, not dead), else 0."""

    def __init__(self, message: str, alive_pid: int = 0):
        super().__init__(message)
        self.alive_pid = alive_pid
