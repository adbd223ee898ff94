"""CPU atomics for Numba: acquire loads, release stores, fences, CAS, fetch-add, pause, TSC.

Numba has no atomics of its own, and a spin loop over a plain load is miscompiled into an
infinite loop (LLVM hoists the load). Every word that another thread or process writes is
read here with an atomic load. On x86-64 the acquire load and the release store are plain
moves (TSO), so they cost nothing; what they buy is that the compiler keeps them in program
order and never caches them in a register.

All word operations address an ``int64[:]`` array by element index (the ring file mapped as
int64 words). No bounds checks: the callers compute indices from the layout (layout.py).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _word_ptr(context, builder, aryty, ary, idx):
    arr = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, arr, [idx], wraparound=False)


def _check(aryty):
    return isinstance(aryty, types.Array) and aryty.dtype == types.int64


@intrinsic
def load_acquire(typingctx, words, idx):
    """words[idx] with acquire ordering."""
    if not _check(words):
        return None

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(words, types.intp), codegen


@intrinsic
def load_relaxed(typingctx, words, idx):
    """words[idx], atomic but unordered (monotonic): never hoisted out of a loop."""
    if not _check(words):
        return None

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "monotonic", 8)

    return types.int64(words, types.intp), codegen


@intrinsic
def store_release(typingctx, words, idx, value):
    """words[idx] = value with release ordering (everything written before is visible first)."""
    if not _check(words):
        return None

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(val, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(words, types.intp, types.int64), codegen


@intrinsic
def store_relaxed(typingctx, words, idx, value):
    """words[idx] = value, atomic (no tearing) but unordered."""
    if not _check(words):
        return None

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(val, ptr, "monotonic", 8)
        return context.get_dummy_value()

    return types.void(words, types.intp, types.int64), codegen


@intrinsic
def compare_and_swap(typingctx, words, idx, expected, new):
    """Atomically: if words[idx] == expected, set it to new. Returns the value seen (seq_cst)."""
    if not _check(words):
        return None

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        exp = context.cast(builder, args[2], sig.args[2], types.int64)
        new_ = context.cast(builder, args[3], sig.args[3], types.int64)
        res = builder.cmpxchg(ptr, exp, new_, "seq_cst", "seq_cst")
        return builder.extract_value(res, 0)

    return types.int64(words, types.intp, types.int64, types.int64), codegen


@intrinsic
def fetch_add(typingctx, words, idx, delta):
    """Atomically add delta to words[idx]; returns the old value (seq_cst, a locked add)."""
    if not _check(words):
        return None

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig.args[0], args[0], args[1])
        d = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, d, "seq_cst")

    return types.int64(words, types.intp, types.int64), codegen


def _fence(ordering):
    @intrinsic
    def fence(typingctx):
        def codegen(context, builder, sig, args):
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return fence


fence_acquire = _fence("acquire")   # later loads stay after earlier loads (x86: compiler barrier)
fence_release = _fence("release")   # earlier stores stay before later stores (x86: compiler barrier)
fence_seq_cst = _fence("seq_cst")   # full barrier incl. store->load (x86: mfence / locked op)


@intrinsic
def cpu_pause(typingctx):
    """The spin-loop hint (x86 PAUSE): saves power, frees the sibling hyperthread, and avoids
    the memory-order mis-speculation flush when the awaited line finally changes."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.VoidType(), [])
        mod = builder.module
        name = "llvm.x86.sse2.pause"
        fn = mod.globals.get(name) or ir.Function(mod, fnty, name=name)
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def read_cycle_counter(typingctx):
    """The CPU timestamp counter (llvm.readcyclecounter = RDTSC on x86): ~10 ns, invariant TSC
    on this hardware (constant_tsc, nonstop_tsc), so comparable across cores. Calibrate
    against CLOCK_MONOTONIC (clock.py) before turning it into nanoseconds."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        mod = builder.module
        name = "llvm.readcyclecounter"
        fn = mod.globals.get(name) or ir.Function(mod, fnty, name=name)
        return builder.call(fn, [])

    return types.int64(), codegen
