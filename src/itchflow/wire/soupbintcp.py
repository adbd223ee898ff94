"""SoupBinTCP 3.00 wire layout, declared once as data, and the compiled run converters.

Every packet: a 2-byte big-endian length (covering the type byte and the payload), a type
byte, the payload. That is BinaryFILE framing with the type byte first, so the one
BinaryFILE walker (``wire.binaryfile.next_message``) walks a SoupBinTCP stream too. Alpha
fields are left-justified and space padded, except Login Accepted's session, which the spec
says is "left padded with spaces" (right-justified); numeric fields are ASCII digits
right-justified and space padded. A session is read whichever way it was padded: the spec
says nothing of the Login Request's, and peers differ (Nassau right-justifies it), so both
sides' spaces are stripped. Sequenced data (``S``) carries one message, numbered implicitly
from the sequence number in Login Accepted.
"""

from __future__ import annotations

from numba import njit

from itchflow.hw.endian import u8
from itchflow.wire.binaryfile import LENGTH_PREFIX, OK, fits_its_type, next_message

LENGTH_SIZE = LENGTH_PREFIX

# Packet types and their payload fields (name, size, kind), declared once.
# Field kinds: ALPHA left-justified (read: trailing spaces dropped); SESSION written
# left-justified, SESSION_RIGHT right-justified, both read with spaces dropped on either side;
# NUMERIC digits right-justified.
ALPHA, SESSION, SESSION_RIGHT, NUMERIC, RAW = "alpha", "session", "session_right", "numeric", "raw"
DEBUG, LOGIN_ACCEPTED, LOGIN_REJECTED, SEQUENCED, SERVER_HEARTBEAT, END_OF_SESSION = b"+", b"A", b"J", b"S", b"H", b"Z"
LOGIN_REQUEST, UNSEQUENCED, CLIENT_HEARTBEAT, LOGOUT = b"L", b"U", b"R", b"O"
LAYOUTS: dict[bytes, tuple[tuple[str, int, str], ...]] = {
    LOGIN_REQUEST: (("username", 6, ALPHA), ("password", 10, ALPHA), ("session", 10, SESSION),
                    ("sequence", 20, NUMERIC)),
    LOGIN_ACCEPTED: (("session", 10, SESSION_RIGHT), ("sequence", 20, NUMERIC)),
    LOGIN_REJECTED: (("reason", 1, ALPHA),),
    SERVER_HEARTBEAT: (), END_OF_SESSION: (), CLIENT_HEARTBEAT: (), LOGOUT: (),
}
PAYLOAD_SIZE = {t: sum(f[1] for f in fields) for t, fields in LAYOUTS.items()}
SESSION_SIZE = dict((n, s) for n, s, _ in LAYOUTS[LOGIN_ACCEPTED])["session"]
NOT_AUTHORIZED, SESSION_NOT_AVAILABLE = b"A", b"S"
REJECT_TEXT = {NOT_AUTHORIZED: "not authorized (bad username or password)",
               SESSION_NOT_AVAILABLE: "session not available"}
# The numeric field holds 20 digits; a sequence past this cannot be a message number the
# compiled paths (int64) or a ring can carry.
MAX_SEQUENCE = (1 << 63) - (1 << 32)
_S = SEQUENCED[0]


def encode(ptype: bytes, **fields) -> bytes:
    """One packet of a fixed-layout type, fields by name (alpha str/bytes, numeric int)."""
    out = bytearray()
    for name, size, kind in LAYOUTS[ptype]:
        v = fields[name]
        if kind == NUMERIC:
            s = str(int(v)).encode()
            if int(v) < 0 or len(s) > size:
                raise ValueError(f"{name}={v} does not fit {size} digits")
            out += s.rjust(size)
        else:
            s = v.encode("ascii") if isinstance(v, str) else bytes(v)
            if len(s) > size:
                raise ValueError(f"{name}={s!r} is longer than {size} bytes")
            out += s.rjust(size) if kind == SESSION_RIGHT else s.ljust(size)
    return packet(ptype, bytes(out))


def packet(ptype: bytes, payload: bytes = b"") -> bytes:
    return (1 + len(payload)).to_bytes(LENGTH_SIZE, "big") + ptype + payload


def decode(ptype: bytes, payload: bytes) -> dict:
    """Fields of a fixed-layout payload; ValueError if its size or a number is wrong."""
    if len(payload) != PAYLOAD_SIZE[ptype]:
        raise ValueError(f"{ptype.decode()!r} packet payload of {len(payload)} bytes, expected {PAYLOAD_SIZE[ptype]}")
    out, pos = {}, 0
    for name, size, kind in LAYOUTS[ptype]:
        raw = payload[pos:pos + size]
        pos += size
        if kind == NUMERIC:
            text = raw.strip()
            if text and not text.isdigit():
                raise ValueError(f"{name} {raw!r} is not a number")
            out[name] = int(text) if text else 0
        else:
            if not all(0x20 <= c <= 0x7E for c in raw):   # alpha fields are printable ASCII
                raise ValueError(f"{name} {raw!r} is not printable ASCII")
            out[name] = raw.rstrip(b" ") if kind == ALPHA else raw.strip(b" ")
    return out


@njit(nogil=True, cache=True)
def soup_to_binaryfile(buf, pos, end, out, out_pos):
    """Convert consecutive whole ``S`` packets in buf[pos:end] to BinaryFILE framing in out.

    Stops at the first packet that is not ``S``, is incomplete, or does not fit in out.
    Returns (new pos, new out_pos, messages). An ``S`` packet of length 1 (empty message)
    or holding a known ITCH type at another length than that type's stops the run too, so
    the caller reports it (written out, it would end any later read of the stream there).
    """
    n = 0
    cap = out.shape[0]
    while pos < end:   # not ``while True``: see binaryfile.WALK_LOOP
        status, body, length = next_message(buf, pos, end)
        if status != OK or length < 2 or u8(buf, body) != _S:
            break
        mlen = length - 1
        if not fits_its_type(buf[body + 1], mlen):
            break
        if out_pos + LENGTH_SIZE + mlen > cap:
            break
        out[out_pos] = (mlen >> 8) & 0xFF
        out[out_pos + 1] = mlen & 0xFF
        out[out_pos + 2:out_pos + 2 + mlen] = buf[body + 1:body + length]
        out_pos += LENGTH_SIZE + mlen
        pos = body + length
        n += 1
    return pos, out_pos, n


@njit(nogil=True, cache=True)
def binaryfile_to_soup(buf, pos, end, max_messages, out):
    """Messages of BinaryFILE buf[pos:end] as ``S`` packets in out (as many as fit).

    Returns (new pos, bytes written, messages).
    """
    o = 0
    n = 0
    cap = out.shape[0]
    while n < max_messages:
        status, body, mlen = next_message(buf, pos, end)
        if status != OK or mlen > 0xFFFE or o + LENGTH_SIZE + 1 + mlen > cap:
            break
        length = mlen + 1
        out[o] = (length >> 8) & 0xFF
        out[o + 1] = length & 0xFF
        out[o + 2] = _S
        out[o + 3:o + 3 + mlen] = buf[body:body + mlen]
        o += LENGTH_SIZE + 1 + mlen
        pos = body + mlen
        n += 1
    return pos, o, n


@njit(nogil=True, cache=True)
def skip_messages(buf, pos, end, k):
    """Offset after the first ``k`` BinaryFILE messages from ``pos`` (stops early at a bad one)."""
    for _ in range(k):
        status, body, length = next_message(buf, pos, end)
        if status != OK:
            break
        pos = body + length
    return pos
