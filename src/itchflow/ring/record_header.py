"""A record header word and the rules it must keep (``ring.layout``'s data-region section):
one check, used by every reader of the data region (the consumers' polls, the producer's
recovery walk) and by the errors that say what was wrong.

The header is ``length | type << 32``: length = 8 + payload bytes, type a u32 (user types
below 2**31, PADDING_TYPE for the filler that runs to the end of the data region).
"""

from __future__ import annotations

from numba import njit

from itchflow.ring import layout as L

# What is wrong with a record header (``header_fault``; 0: nothing). The reader's error names it.
FAULT_SHORT, FAULT_PAST_END, FAULT_PADDING, FAULT_TOO_BIG, FAULT_TYPE = 1, 2, 3, 4, 5
FAULT_TEXT = {
    FAULT_SHORT: "its length is under the 8-byte header",
    FAULT_PAST_END: "it runs past the end of the data region",
    FAULT_PADDING: "a padding record that does not end at the end of the data region",
    FAULT_TOO_BIG: "its payload is larger than the ring's max_payload",
    FAULT_TYPE: "its type is reserved (at least 2**31, and not padding)",
}


@njit(inline="always", nogil=True, cache=True, _nrt=False)
def header_fault(h, off, cap, maxp) -> int:
    """0 if the (non-zero) record header word h at data offset off is sound, else a FAULT_*."""
    length = h & 0xFFFFFFFF
    rtype = (h >> 32) & 0xFFFFFFFF
    if length < L.RECORD_HEADER_BYTES:
        return FAULT_SHORT
    if off + length > cap:
        return FAULT_PAST_END
    if rtype == L.PADDING_TYPE:
        return FAULT_PADDING if off + length != cap else 0
    if rtype > L.MAX_USER_TYPE:
        return FAULT_TYPE
    if length - L.RECORD_HEADER_BYTES > maxp:
        return FAULT_TOO_BIG
    return 0
