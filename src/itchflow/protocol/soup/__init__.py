"""SoupBinTCP 3.00, sans-I/O: client and server sessions over a message store.

The sessions own no socket and no clock: feed them bytes and time (``receive_data``,
``tick``), take the bytes they want sent from ``data_to_send()``, act on the events they
return. The packet layouts live in ``itchflow.wire.soupbintcp``.
"""

from itchflow.protocol.soup.client import SoupClient
from itchflow.protocol.soup.events import (
    DeadLink,
    Debug,
    EndOfSession,
    LoggedOut,
    LoginAccepted,
    LoginRejected,
    LoginRequest,
    LoginTimeout,
    LogoutTimeout,
    ProtocolError,
    SequencedData,
    SequenceMismatch,
    SoupStats,
    Unsequenced,
)
from itchflow.protocol.soup.server import LOGIN_TIMEOUT_NS, SoupServerSession
from itchflow.protocol.soup.store import MessageStore
from itchflow.protocol.soup.stream import DEAD_LINK_NS, HEARTBEAT_INTERVAL_NS
from itchflow.wire.soupbintcp import (
    ALPHA,
    CLIENT_HEARTBEAT,
    DEBUG,
    END_OF_SESSION,
    LAYOUTS,
    LENGTH_SIZE,
    LOGIN_ACCEPTED,
    LOGIN_REJECTED,
    LOGIN_REQUEST,
    LOGOUT,
    NOT_AUTHORIZED,
    NUMERIC,
    PAYLOAD_SIZE,
    RAW,
    REJECT_TEXT,
    SEQUENCED,
    SERVER_HEARTBEAT,
    SESSION_NOT_AVAILABLE,
    UNSEQUENCED,
    binaryfile_to_soup,
    decode,
    encode,
    packet,
    soup_to_binaryfile,
)

__all__ = [
    "SoupClient", "SoupServerSession", "MessageStore", "SoupStats",
    "DeadLink", "Debug", "EndOfSession", "LoggedOut", "LoginAccepted", "LoginRejected", "LoginRequest",
    "LoginTimeout", "LogoutTimeout", "ProtocolError", "SequencedData", "SequenceMismatch", "Unsequenced",
    "LOGIN_TIMEOUT_NS", "DEAD_LINK_NS", "HEARTBEAT_INTERVAL_NS",
    "ALPHA", "NUMERIC", "RAW", "LAYOUTS", "PAYLOAD_SIZE", "LENGTH_SIZE", "REJECT_TEXT",
    "CLIENT_HEARTBEAT", "DEBUG", "END_OF_SESSION", "LOGIN_ACCEPTED", "LOGIN_REJECTED", "LOGIN_REQUEST",
    "LOGOUT", "NOT_AUTHORIZED", "SEQUENCED", "SERVER_HEARTBEAT", "SESSION_NOT_AVAILABLE", "UNSEQUENCED",
    "binaryfile_to_soup", "decode", "encode", "packet", "soup_to_binaryfile",
]
