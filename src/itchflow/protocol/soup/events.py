"""What the SoupBinTCP sessions (client.py, server.py) report: events and counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from itchflow.wire.soupbintcp import REJECT_TEXT


@dataclass(slots=True)
class LoginAccepted:
    session: bytes
    sequence: int


@dataclass(slots=True)
class LoginRejected:
    reason: bytes

    @property
    def text(self) -> str:
        return REJECT_TEXT.get(self.reason, f"unknown reason {self.reason!r}")


@dataclass(slots=True)
class SequencedData:
    data: np.ndarray        # BinaryFILE-framed messages (a view of the session's buffer)
    first_sequence: int
    count: int


@dataclass(slots=True)
class Debug:
    text: bytes


@dataclass(slots=True)
class EndOfSession:
    sequence: int           # the next sequence number: every message before it was received


@dataclass(slots=True)
class DeadLink:
    silent_ns: int


@dataclass(slots=True)
class ProtocolError:
    reason: str
    offset: int             # byte offset in the stream received on this connection
    fatal: bool = False     # reconnecting would not help (e.g. the server's numbering is absurd)


@dataclass(slots=True)
class SequenceMismatch:
    """Login Accepted starts elsewhere than asked: ``duplicates`` messages the client already
    has are skipped (server started earlier), or ``missing`` are not served (it started later)."""
    requested: int
    accepted: int
    duplicates: int
    missing: int


@dataclass(slots=True)
class LoginRequest:
    username: bytes
    session: bytes
    sequence: int


@dataclass(slots=True)
class Unsequenced:
    data: bytes


@dataclass(slots=True)
class LoggedOut:
    pass


@dataclass(slots=True)
class LoginTimeout:
    waited_ns: int


@dataclass(slots=True)
class LogoutTimeout:
    """Server: the session ended (end of session sent) and the client has not logged out
    within the login time-out; heartbeats alone would hold its connection slot for ever."""
    waited_ns: int


@dataclass
class SoupStats:
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    messages: int = 0
    heartbeats_in: int = 0
    heartbeats_out: int = 0
    debug: int = 0
    unsequenced: int = 0
    protocol_errors: int = 0
    duplicates_skipped: int = 0   # client: messages before the sequence asked for, dropped
    missing: int = 0              # client: messages the server skipped past (it started later than asked)

    def to_dict(self) -> dict:
        return asdict(self)
