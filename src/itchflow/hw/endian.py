"""Inlined big/little-endian integer reads over uint8 arrays, for the compiled kernels.

Two details make these compile to a single load (plus ``movbe``/``bswap``) instead of a
byte loop:
- the index is converted to uint64 first: Numba wraps negative *signed* indices, and
  the branch it emits per byte stops LLVM from combining the loads;
- every intermediate is uint64, so Numba never mixes signed and unsigned (which would
  go through float64).
Callers check bounds before calling: these read exactly the bytes they name.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U = np.uint64


@njit(inline="always", nogil=True, cache=True)
def u8(buf, p):
    return _U(buf[_U(p)])


@njit(inline="always", nogil=True, cache=True)
def be16(buf, p):
    i = _U(p)
    return (_U(buf[i]) << _U(8)) | _U(buf[i + _U(1)])


@njit(inline="always", nogil=True, cache=True)
def be32(buf, p):
    i = _U(p)
    return ((_U(buf[i]) << _U(24)) | (_U(buf[i + _U(1)]) << _U(16))
            | (_U(buf[i + _U(2)]) << _U(8)) | _U(buf[i + _U(3)]))


@njit(inline="always", nogil=True, cache=True)
def be48(buf, p):
    # a 16-bit and a 32-bit load: LLVM merges byte loads only into power-of-two widths, and six
    # byte loads with their shifts were 17 instructions a timestamp in the book engine
    return (be16(buf, p) << _U(32)) | be32(buf, _U(p) + _U(2))


@njit(inline="always", nogil=True, cache=True)
def be64(buf, p):
    i = _U(p)
    return ((_U(buf[i]) << _U(56)) | (_U(buf[i + _U(1)]) << _U(48)) | (_U(buf[i + _U(2)]) << _U(40))
            | (_U(buf[i + _U(3)]) << _U(32)) | (_U(buf[i + _U(4)]) << _U(24))
            | (_U(buf[i + _U(5)]) << _U(16)) | (_U(buf[i + _U(6)]) << _U(8)) | _U(buf[i + _U(7)]))


# Alpha fields are copied byte for byte: read them little-endian so that storing the integer
# on a little-endian machine puts the bytes back in wire order.
@njit(inline="always", nogil=True, cache=True)
def le16(buf, p):
    i = _U(p)
    return _U(buf[i]) | (_U(buf[i + _U(1)]) << _U(8))


@njit(inline="always", nogil=True, cache=True)
def le32(buf, p):
    i = _U(p)
    return (_U(buf[i]) | (_U(buf[i + _U(1)]) << _U(8)) | (_U(buf[i + _U(2)]) << _U(16))
            | (_U(buf[i + _U(3)]) << _U(24)))


@njit(inline="always", nogil=True, cache=True)
def le64(buf, p):
    i = _U(p)
    return (_U(buf[i]) | (_U(buf[i + _U(1)]) << _U(8)) | (_U(buf[i + _U(2)]) << _U(16))
            | (_U(buf[i + _U(3)]) << _U(24)) | (_U(buf[i + _U(4)]) << _U(32))
            | (_U(buf[i + _U(5)]) << _U(40)) | (_U(buf[i + _U(6)]) << _U(48))
            | (_U(buf[i + _U(7)]) << _U(56)))
