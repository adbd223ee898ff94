"""Inlined big/little-endian integer reads over uint8 arrays, for the compiled kernels.

Shift-or chains over single bytes are what LLVM folds into one load plus ``bswap``; every
intermediate is uint64 so Numba never mixes signed and unsigned (which would go to float).
Callers check bounds before calling: these read exactly the bytes they name.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U = np.uint64


@njit(inline="always", nogil=True, cache=True)
def be16(buf, p):
    return (_U(buf[p]) << _U(8)) | _U(buf[p + 1])


@njit(inline="always", nogil=True, cache=True)
def be32(buf, p):
    return ((_U(buf[p]) << _U(24)) | (_U(buf[p + 1]) << _U(16))
            | (_U(buf[p + 2]) << _U(8)) | _U(buf[p + 3]))


@njit(inline="always", nogil=True, cache=True)
def be48(buf, p):
    return ((_U(buf[p]) << _U(40)) | (_U(buf[p + 1]) << _U(32)) | (_U(buf[p + 2]) << _U(24))
            | (_U(buf[p + 3]) << _U(16)) | (_U(buf[p + 4]) << _U(8)) | _U(buf[p + 5]))


@njit(inline="always", nogil=True, cache=True)
def be64(buf, p):
    return ((_U(buf[p]) << _U(56)) | (_U(buf[p + 1]) << _U(48)) | (_U(buf[p + 2]) << _U(40))
            | (_U(buf[p + 3]) << _U(32)) | (_U(buf[p + 4]) << _U(24)) | (_U(buf[p + 5]) << _U(16))
            | (_U(buf[p + 6]) << _U(8)) | _U(buf[p + 7]))


# Alpha fields are copied byte for byte: read them little-endian so that storing the integer
# on a little-endian machine puts the bytes back in wire order.
@njit(inline="always", nogil=True, cache=True)
def le16(buf, p):
    return _U(buf[p]) | (_U(buf[p + 1]) << _U(8))


@njit(inline="always", nogil=True, cache=True)
def le32(buf, p):
    return (_U(buf[p]) | (_U(buf[p + 1]) << _U(8)) | (_U(buf[p + 2]) << _U(16))
            | (_U(buf[p + 3]) << _U(24)))


@njit(inline="always", nogil=True, cache=True)
def le64(buf, p):
    return (_U(buf[p]) | (_U(buf[p + 1]) << _U(8)) | (_U(buf[p + 2]) << _U(16))
            | (_U(buf[p + 3]) << _U(24)) | (_U(buf[p + 4]) << _U(32)) | (_U(buf[p + 5]) << _U(40))
            | (_U(buf[p + 6]) << _U(48)) | (_U(buf[p + 7]) << _U(56)))
