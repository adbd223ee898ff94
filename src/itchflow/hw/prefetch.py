"""A software prefetch for the compiled kernels (``llvm.prefetch``), by array element.

The engine reads a message a few ahead of the one it applies and prefetches the hash slot
(and, one stage later, the order record) that message will need, so the cache misses of
consecutive messages overlap instead of queueing one after another.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


def element_bytes(context, builder, aryty, ary_value, idx_type, idx_value):
    """An i8* to arr[idx] (arr[idx, 0, ...] for an n-D array), no bounds or wraparound checks."""
    ary = context.make_array(aryty)(context, builder, ary_value)
    index = context.cast(builder, idx_value, idx_type, types.intp)
    zero = context.get_constant(types.intp, 0)
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [index] + [zero] * (aryty.ndim - 1),
                                   wraparound=False)
    return builder.bitcast(ptr, ir.IntType(8).as_pointer())


def _emit_prefetch(builder, address) -> None:
    """llvm.prefetch(address, read, locality 3 = keep in all levels, data cache)."""
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    builder.call(fn, [address, i32(0), i32(3), i32(1)])


@intrinsic
def prefetch(typingctx, arr, idx):
    """Prefetch the cache line holding arr[idx] (arr[idx, 0] for a 2-D array), for reading."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        _emit_prefetch(builder, element_bytes(context, builder, sig.args[0], args[0], sig.args[1], args[1]))
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@intrinsic
def element_address(typingctx, arr, idx):
    """The address of arr[idx] as an integer (no bounds check: for choosing among prefetch
    targets without a branch, then ``prefetch_address``)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        ptr = element_bytes(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.ptrtoint(ptr, ir.IntType(64))

    return types.int64(arr, idx), codegen


@intrinsic
def prefetch_address(typingctx, address):
    """Prefetch the cache line at an integer address (a prefetch never faults, whatever it is)."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        _emit_prefetch(builder, builder.inttoptr(args[0], ir.IntType(8).as_pointer()))
        return context.get_dummy_value()

    return types.void(address), codegen


# READ_AHEAD: a walk of length-prefixed messages (BinaryFILE) finds the next message from the
# length it has just read, so each message's load waits for the one before. The core's stream
# prefetcher runs ahead within a 4 KiB page and starts again at each new one, where the walk
# then waits on memory. Framing a 1.5 GB day (in the page cache, not in the CPU's) took 7.5 ns
# a message; with a prefetch this far ahead of each message 3.5 (256 B ahead: 7.3, 1 KiB: 5.2,
# 4 KiB: 3.6, 8 KiB: 3.5, 16 KiB: 3.9, 64 KiB: 4.7; the Intel guest of the twenty-second
# round). Walks of longer records gain nothing: pcap records of about 1.4 KB measured the same
# either way, so they go without.
READ_AHEAD = 8192


@njit(inline="always", nogil=True, cache=True)
def read_ahead(buf, at, end):
    """Prefetch the line READ_AHEAD bytes past ``at`` in a front-to-back walk of buf[:end]
    (at < end): never an address outside the buffer."""
    prefetch(buf, min(at + READ_AHEAD, end - 1))
