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
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from itchflow.hw.prefetch import element_bytes

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


@intrinsic
def load_be64(typingctx, buf, p):
    """The 8 bytes at buf[p] as a big-endian uint64: one unaligned load and a byte swap, as
    LLVM emits them, not byte loads it may or may not combine. No bounds check: the caller's."""
    if not (isinstance(buf, types.Array) and buf.dtype == types.uint8 and isinstance(p, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        ptr = element_bytes(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        word = builder.load(builder.bitcast(ptr, i64.as_pointer()), align=1)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]), "llvm.bswap.i64")
        return builder.call(fn, [word])

    return types.uint64(buf, p), codegen


@njit(inline="always", nogil=True, cache=True)
def be48_from8(buf, p):
    """The 6 bytes at buf[p] as a big-endian uint64, by one 8-byte load: the 8 bytes from
    p - 2, masked to the 6 at p. The caller guarantees that buf[p - 2:p + 6] lies inside the
    message it checked (an ITCH timestamp at body offset 5 does: every 48-bit field is one).
    A 16-bit and a 32-bit read compiled to six byte loads and their shifts in the book engine
    (17 instructions a message, callgrind; LLVM merges byte loads only into power-of-two
    widths), and so did be64 masked to 48 bits; in the decoder this load took 14% off the
    time a message."""
    return load_be64(buf, _U(p) - _U(2)) & _U(0xFFFFFFFFFFFF)
