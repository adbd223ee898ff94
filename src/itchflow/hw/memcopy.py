"""Byte copies for compiled code without the reference-counting runtime: a slice assignment
needs NRT, and a byte loop over two uint8 arrays is not vectorised (LLVM cannot rule out
aliasing), costing ~18 ns for a 30-byte ITCH message. llvm.memcpy says "no overlap" and is
~3 ns."""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def copy_bytes(typingctx, dst, dst_off, src, src_off, n):
    """dst[dst_off:dst_off+n] = src[src_off:src_off+n] (uint8 arrays, non-overlapping, no
    bounds checks: the caller has checked). The source may be a bytes or bytearray too
    (Numba's Buffer types share the array's data model)."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Buffer)
            and dst.dtype == types.uint8 and src.dtype == types.uint8):
        return None

    def codegen(context, builder, sig, args):
        d = context.make_array(sig.args[0])(context, builder, args[0])
        s = context.make_array(sig.args[2])(context, builder, args[2])
        do = context.cast(builder, args[1], sig.args[1], types.intp)
        so = context.cast(builder, args[3], sig.args[3], types.intp)
        k = context.cast(builder, args[4], sig.args[4], types.intp)
        cgutils.raw_memcpy(builder, builder.gep(d.data, [do]), builder.gep(s.data, [so]), k, 1)
        return context.get_dummy_value()

    return types.void(dst, dst_off, src, src_off, n), codegen
