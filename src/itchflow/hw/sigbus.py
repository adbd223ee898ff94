"""Surviving a mapped file that shrinks while it is read.

A raw day is read through a read-only mapping (``sources.chunk.map_file``). If another
process truncates the file meanwhile, the next touch of a page past the new end raises SIGBUS,
and the default action kills the process with no word of which file. CPython's own signal
handlers cannot help: they only set a flag, the faulting load runs again and faults again
for ever.

So a small native handler is installed for SIGBUS (built here from LLVM IR with llvmlite,
which Numba already brings; no C compiler needed). For a fault inside a registered mapping
(``guard``) that the kernel reports as a bad file page (BUS_ADRERR), it maps a page of zeros
over the faulting page (MAP_FIXED, async-signal-safe), keeps the lowest such address, and
returns: the load runs again and reads zeros (a store runs again into that private page,
seen by no one: a writer checks ``fault_word`` after each write). The reader then asks ``faulted`` (and whether
the file is now shorter than the mapping) and raises an error naming the file and offset, so
whatever the zeros produced is never handed out as a result. Any other SIGBUS (not ours, or
another cause, such as huge pages running out) puts the handler that was there before back
and returns, so the fault repeats under it exactly as if this module did not exist.

Linux on x86-64 or AArch64 only (the siginfo layout and signal number below); elsewhere
``guard`` does nothing and a truncated file still ends the process.
"""

from __future__ import annotations

import ctypes
import gc
import mmap
import platform
import sys
import threading
import weakref

SIGBUS = 7              # Linux x86-64 and AArch64
BUS_ADRERR = 2          # si_code: no such physical address (a page past a file's end)
SI_CODE_OFFSET = 8      # siginfo_t: int si_signo, si_errno, si_code; then the union, 8-aligned
SI_ADDR_OFFSET = 16
SA_SIGINFO = 4
SIGACTION_BYTES = 152   # glibc's struct sigaction on 64-bit Linux: handler, 128-byte mask, flags, restorer
SLOTS = 4096            # mappings guarded at once (a warning says when more are open: they are not)
PAGE = mmap.PAGESIZE
NO_FAULT = (1 << 64) - 1

# Each slot is three words: first byte of the mapping, one past its last, lowest faulted
# address (NO_FAULT if none). A slot with end 0 is free. Python writes the slots (under
# _lock); the handler only reads start/end and lowers the fault word atomically.
_IR = f"""
@slots = global [{SLOTS * 3} x i64] zeroinitializer
@previous = global [{SIGACTION_BYTES} x i8] zeroinitializer

declare ptr @mmap(ptr, i64, i32, i32, i32, i64)
declare i32 @sigaction(i32, ptr, ptr)

define void @on_sigbus(i32 %sig, ptr %info, ptr %context) {{
entry:
  %code.p = getelementptr i8, ptr %info, i64 {SI_CODE_OFFSET}
  %code = load volatile i32, ptr %code.p
  %addr.p = getelementptr i8, ptr %info, i64 {SI_ADDR_OFFSET}
  %addr = load volatile i64, ptr %addr.p
  %file.page = icmp eq i32 %code, {BUS_ADRERR}
  br i1 %file.page, label %scan, label %not.ours

scan:
  %i = phi i64 [0, %entry], [%next, %skip]
  %base = mul i64 %i, 3
  %start.p = getelementptr i64, ptr @slots, i64 %base
  %start = load atomic i64, ptr %start.p acquire, align 8
  %end.i = add i64 %base, 1
  %end.p = getelementptr i64, ptr @slots, i64 %end.i
  %end = load atomic i64, ptr %end.p acquire, align 8
  %above = icmp uge i64 %addr, %start
  %below = icmp ult i64 %addr, %end
  %inside = and i1 %above, %below
  br i1 %inside, label %zero.page, label %skip

skip:
  %next = add i64 %i, 1
  %more = icmp ult i64 %next, {SLOTS}
  br i1 %more, label %scan, label %not.ours

zero.page:
  %page = and i64 %addr, {-PAGE}
  %page.p = inttoptr i64 %page to ptr
  ; PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS: writable, so that a
  ; store (a ring's producer) completes too; what it wrote reaches no one, which its writer
  ; learns from the record kept below (fault_word)
  %got = call ptr @mmap(ptr %page.p, i64 {PAGE}, i32 3, i32 50, i32 -1, i64 0)
  %mapped = icmp eq ptr %got, %page.p
  br i1 %mapped, label %note, label %not.ours

note:
  %fault.i = add i64 %base, 2
  %fault.p = getelementptr i64, ptr @slots, i64 %fault.i
  %old = atomicrmw umin ptr %fault.p, i64 %page seq_cst
  ret void

not.ours:
  %r = call i32 @sigaction(i32 {SIGBUS}, ptr @previous, ptr null)
  ret void
}}
"""

# Reentrant: a mapping collected while this thread holds the lock (any allocation in a locked
# block may run the garbage collector) calls _release, on this thread, from inside the block. A
# plain Lock deadlocked there (seen: a test run stuck in futex_wait).
_lock = threading.RLock()
_state: dict = {}       # "engine", "slots" (ctypes array over @slots), or "unavailable": why


def supported() -> bool:
    return sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")


def _install() -> ctypes.Array | None:
    """Build the handler and install it for SIGBUS, once a process; the slots, or None."""
    if "slots" in _state or "unavailable" in _state:
        return _state.get("slots")
    if not supported():
        _state["unavailable"] = f"not Linux x86-64/AArch64 ({sys.platform} {platform.machine()})"
        return None
    try:
        import llvmlite.binding as llvm

        libc = ctypes.CDLL(None, use_errno=True)
        for name in ("mmap", "sigaction"):
            llvm.add_symbol(name, ctypes.cast(getattr(libc, name), ctypes.c_void_p).value)
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = llvm.parse_assembly(_IR)
        module.verify()
        machine = llvm.Target.from_default_triple().create_target_machine()  # generic CPU
        engine = llvm.create_mcjit_compiler(module, machine)
        engine.set_object_cache(*_object_cache(llvm))
        engine.finalize_object()
        handler = engine.get_function_address("on_sigbus")
        slots = (ctypes.c_uint64 * (SLOTS * 3)).from_address(engine.get_global_value_address("slots"))
        previous = engine.get_global_value_address("previous")
        action = (ctypes.c_uint8 * SIGACTION_BYTES)()
        ctypes.c_uint64.from_address(ctypes.addressof(action)).value = handler
        ctypes.c_int32.from_address(ctypes.addressof(action) + 136).value = SA_SIGINFO
        libc.sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        if libc.sigaction(SIGBUS, ctypes.addressof(action), previous) != 0:
            raise OSError(ctypes.get_errno(), "sigaction(SIGBUS) failed")
    except Exception as e:  # no guard is a worse error message, never a wrong result
        _state["unavailable"] = f"{type(e).__name__}: {e}"
        return None
    _state.update(engine=engine, module=module, slots=slots)
    return slots


def _object_cache(llvm):
    """(store, load) for MCJIT's object cache: the handler's machine code kept beside Numba's
    kernels, so a process loads it (about 2 ms) instead of generating it again (about 8 ms, on
    the first call a user times). Keyed by the IR, LLVM's version and the target.

    LLVM executes what it is given without a check: a zero-filled, short or foreign file (a
    crash before the data reached the disk, another user's file in a shared NUMBA_CACHE_DIR)
    aborted or crashed every run (probe 57). The file carries the SHA-256 of its code after it,
    and is loaded only if that matches and the file is this user's (or root's) and no one
    else's to write; anything else is compiled again and replaced."""
    import hashlib
    import os
    import stat

    folder = os.environ.get("NUMBA_CACHE_DIR")
    key = hashlib.sha256(f"{_IR}{llvm.llvm_version_info}{llvm.get_default_triple()}".encode()).hexdigest()[:16]
    path = os.path.join(folder, f"sigbus-{key}.o") if folder else None

    def store(module, code: bytes) -> None:
        if path is None:
            return
        try:
            tmp = f"{path}.{os.getpid()}.tmp"
            # 0600 whatever the umask: the load refuses a file others may write (under umask 002,
            # the usual for users with groups of their own, every run compiled it again: probe 60)
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(code + hashlib.sha256(code).digest())
            os.replace(tmp, path)   # whole or not at all: another process may be loading it
        except OSError:
            pass

    def load(module) -> bytes | None:
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_uid not in (os.getuid(), 0) or st.st_mode & 0o022 or not stat.S_ISREG(st.st_mode):
                    return None
                data = f.read(1 << 20)
        except (OSError, TypeError):
            return None
        code, digest = data[:-32], data[-32:]
        return code if code and hashlib.sha256(code).digest() == digest else None

    return store, load


def _address(mapping: mmap.mmap) -> int:
    """The first byte of a mapping (read-only ones too: ctypes cannot take those directly)."""
    import numpy as np

    return np.frombuffer(mapping, np.uint8, count=1).ctypes.data


def guard(mapping: mmap.mmap) -> bool:
    """Guard a file mapping until it is closed or collected: a fault in it past the file's
    end reads zeros and is recorded for ``faulted``. False if it could not be guarded."""
    if len(mapping) == 0:
        return False
    for attempt in range(2):
        with _lock:
            slots = _install()
            if slots is None:
                return False
            start = _address(mapping)
            for i in range(SLOTS):
                if slots[3 * i + 1] == 0:
                    slots[3 * i + 2] = NO_FAULT
                    slots[3 * i] = start
                    slots[3 * i + 1] = start + len(mapping)   # last: the slot is live from here
                    _state.setdefault("guarded", {})[id(mapping)] = i
                    weakref.finalize(mapping, _release, id(mapping), i)
                    return True
        if attempt == 0:
            # Every slot taken: mappings no longer used but held in reference cycles (a closure
            # in its own globals, an exception's frames) keep theirs until the cycle collector
            # runs, which may be never in a long process. Collect, so that they give them back.
            gc.collect()
    if not _state.get("warned"):   # (it had 64 slots and said nothing: probe 43's 65th ring died of SIGBUS)
        _state["warned"] = True
        import warnings

        warnings.warn(f"more than {SLOTS} file mappings open at once in this process: the later ones are not "
                      "guarded, and a file truncated under one of them ends the process (SIGBUS)",
                      RuntimeWarning, stacklevel=2)
    return False


def unguard(mapping: mmap.mmap) -> None:
    """Stop guarding a mapping about to be closed (its address range may be reused at once;
    a mapping merely dropped is let go when it is collected)."""
    with _lock:
        i = _state.get("guarded", {}).get(id(mapping))
    if i is not None:
        _release(id(mapping), i)


def _release(key: int, i: int) -> None:
    with _lock:
        slots = _state.get("slots")
        if slots is not None and _state.get("guarded", {}).get(key) == i:
            del _state["guarded"][key]
            slots[3 * i + 1] = 0      # first: the handler stops matching the slot
            slots[3 * i] = 0


def _slot(mapping: mmap.mmap) -> int | None:
    """The slot guarding this mapping, or None (call with _lock held)."""
    return _state.get("guarded", {}).get(id(mapping)) if "slots" in _state else None


def faulted(mapping: mmap.mmap) -> int | None:
    """Offset in the mapping of the first page that was past the file's end when touched
    (now zeros), or None."""
    with _lock:
        i = _slot(mapping)
        if i is None:
            return None
        slots = _state["slots"]
        fault = slots[3 * i + 2]
        return None if fault == NO_FAULT else fault - slots[3 * i]


def fault_word(mapping: mmap.mmap) -> ctypes.c_uint64 | None:
    """The guarded mapping's fault record itself (``.value`` is NO_FAULT until a page of it is
    found past the file's end), for a check on every write without the lock; valid while the
    mapping stays open. None if the mapping is not guarded."""
    with _lock:
        i = _slot(mapping)
        if i is None:
            return None
        return ctypes.c_uint64.from_address(ctypes.addressof(_state["slots"]) + 8 * (3 * i + 2))


def shrunk(mapping: mmap.mmap) -> tuple[int, int] | None:
    """(the file's size now, the first byte of the mapping that is no longer the file's) if the
    file under a mapping is shorter than the mapping, or a page of it was past the file's end
    when touched (read as zeros since); None while the file still covers it, or for a closed
    mapping. The size is the mapping's own descriptor's (fstat), so a file renamed or replaced
    under the same name is not mistaken for this one."""
    if mapping.closed:
        return None
    try:
        now = mapping.size()
    except (OSError, ValueError):
        return None
    fault = faulted(mapping)
    if now >= len(mapping) and fault is None:
        return None
    return now, now if fault is None else min(now, fault)


def unavailable() -> str | None:
    """Why the handler could not be installed (None if it is, or was never needed)."""
    return _state.get("unavailable")
