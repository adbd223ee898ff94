"""libc calls for compiled code, declared with ``types.ExternalFunction`` (cacheable, unlike
ctypes pointers): the monotonic clock, process liveness, yielding, sleeping, and the futex.

Pointers are passed as int64 addresses: on x86-64 an integer and a pointer argument travel in
the same register. Nothing here allocates (timespecs live on the stack), so the functions can
be called from kernels compiled without the reference-counting runtime (``_nrt=False``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
SYS_FUTEX = 202          # x86-64
FUTEX_WAIT = 0           # shared (not _PRIVATE): the word lives in a file mapped by several processes
FUTEX_WAKE = 1

_kill = types.ExternalFunction("kill", types.int32(types.int32, types.int32))
_sched_yield = types.ExternalFunction("sched_yield", types.int32())
_nanosleep = types.ExternalFunction("nanosleep", types.int32(types.int64, types.int64))
_syscall6 = types.ExternalFunction("syscall", types.int64(types.int64, types.int64, types.int64,
                                                          types.int64, types.int64, types.int64,
                                                          types.int64))


@intrinsic
def _clock_ns(typingctx, clock_id):
    """clock_gettime(clock_id) in ns with the timespec on the stack (no array allocation)."""
    def codegen(context, builder, sig, args):
        i64, i32 = ir.IntType(64), ir.IntType(32)
        ts = cgutils.alloca_once(builder, ir.ArrayType(i64, 2))
        fnty = ir.FunctionType(i32, [i32, ir.PointerType(i64)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        cid = builder.trunc(args[0], i32)
        builder.call(fn, [cid, builder.bitcast(ts, ir.PointerType(i64))])
        sec = builder.load(builder.gep(ts, [ir.Constant(i32, 0), ir.Constant(i32, 0)]))
        nsec = builder.load(builder.gep(ts, [ir.Constant(i32, 0), ir.Constant(i32, 1)]))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return types.int64(clock_id), codegen


@intrinsic
def _timespec(typingctx, ns):
    """Address of a struct timespec {ns // 1e9, ns % 1e9} in the calling function's stack frame
    (valid until that function returns; no array allocation, so usable without NRT)."""
    def codegen(context, builder, sig, args):
        i64, i32 = ir.IntType(64), ir.IntType(32)
        ts = cgutils.alloca_once(builder, ir.ArrayType(i64, 2))
        billion = ir.Constant(i64, 1_000_000_000)
        builder.store(builder.sdiv(args[0], billion), builder.gep(ts, [ir.Constant(i32, 0), ir.Constant(i32, 0)]))
        builder.store(builder.srem(args[0], billion), builder.gep(ts, [ir.Constant(i32, 0), ir.Constant(i32, 1)]))
        return builder.ptrtoint(ts, i64)

    return types.int64(ns), codegen


@njit(nogil=True, cache=True, _nrt=False)
def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in ns (vDSO, ~20 ns): the same clock in every process."""
    return _clock_ns(CLOCK_MONOTONIC)


@njit(nogil=True, cache=True, _nrt=False)
def realtime_ns() -> int:
    """CLOCK_REALTIME in ns (vDSO): comparable with kernel receive timestamps."""
    return _clock_ns(CLOCK_REALTIME)


@njit(nogil=True, cache=True, _nrt=False)
def pid_exists(pid: int) -> bool:
    """kill(pid, 0) == 0. A zombie (killed but not yet reaped) still exists; callers that must
    see SIGKILL promptly combine this with the heartbeat age."""
    if pid <= 0 or pid > 4194304:   # past Linux's largest pid (2**22): kill() would take it cut to 32 bits
        return False
    return _kill(pid, 0) == 0


@njit(nogil=True, cache=True, _nrt=False)
def yield_cpu() -> None:
    _sched_yield()


@njit(nogil=True, cache=True, _nrt=False)
def sleep_ns(ns: int) -> None:
    _nanosleep(_timespec(ns), 0)


@njit(nogil=True, cache=True, _nrt=False)
def futex_wait(words, word_index: int, expected: int, timeout_ns: int) -> int:
    """Sleep while the low 32 bits of words[word_index] equal ``expected`` (at most timeout_ns)."""
    addr = words.ctypes.data + word_index * 8
    return _syscall6(SYS_FUTEX, addr, FUTEX_WAIT, expected & 0xFFFFFFFF, _timespec(timeout_ns), 0, 0)


@njit(nogil=True, cache=True, _nrt=False)
def futex_wake(words, word_index: int, n: int) -> int:
    addr = words.ctypes.data + word_index * 8
    return _syscall6(SYS_FUTEX, addr, FUTEX_WAKE, n, 0, 0, 0)
