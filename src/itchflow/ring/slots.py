"""Consumer slots in the ring header: names, and the check that every entry is sane.

A slot is input like any other (another process wrote it, or a faulty one, or a stray write):
a state that is not a slot state, an impossible name length, a commit index other than 0/1,
or a position beyond what was ever published is a RingFormatError naming the slot, not a
consumer that silently joins at the live edge and skips everything it was owed.
"""

from __future__ import annotations

import numpy as np

from itchflow.hw.atomics_py import load
from itchflow.ring import layout as L
from itchflow.ring.errors import RingFormatError


def set_name(w: np.ndarray, b: int, name: str) -> None:
    raw = name.encode("utf-8")
    if not raw or len(raw) > L.NAME_BYTES:
        raise ValueError(f"consumer name must be 1..{L.NAME_BYTES} UTF-8 bytes, got {name!r}")
    buf = np.zeros(L.NAME_BYTES // 8, np.int64)
    buf.view(np.uint8)[: len(raw)] = np.frombuffer(raw, np.uint8)
    w[b + L.S_NAME: b + L.S_NAME + L.NAME_BYTES // 8] = buf
    w[b + L.S_NAME_LEN] = len(raw)


def get_name(w: np.ndarray, b: int) -> str:
    n = int(w[b + L.S_NAME_LEN])
    n = max(0, min(n, L.NAME_BYTES))
    return w[b + L.S_NAME: b + L.S_NAME + L.NAME_BYTES // 8].tobytes()[:n].decode("utf-8", "replace")


def commit_snapshot(w: np.ndarray, b: int) -> tuple[int, int, int]:
    """Slot b's current commit snapshot: (position, records index, payload index)."""
    s = b + L.S_COMMIT0 + 3 * (int(load(w, b + L.S_COMMIT_IDX)) & 1)
    return int(load(w, s)), int(load(w, s + 1)), int(load(w, s + 2))


def validate_slots(path: str, w: np.ndarray, cap: int, blocking: bool, max_consumers: int) -> None:
    """Raise RingFormatError for the first consumer entry that cannot be right (module doc).
    cap, blocking and max_consumers are the header's as validated (``Ring``), not read again.
    Safe against live processes: slots being filled in (CLAIMED) are skipped, and positions are
    compared with the edge read before and after them (both only ever grow)."""
    from itchflow.ring.consumer import published_edge

    before = published_edge(w)
    if (before[0] < 0 or before[0] % L.RECORD_ALIGN or before[1] < 0 or before[2] < 0
            or max(before) > L.MAX_POSITION):
        raise RingFormatError(f"{path}: corrupt edge (position {before[0]}, records {before[1]}, "
                              f"payload {before[2]}; each must be in 0..2**62, the position a multiple of 8)")
    seen = []
    for i in range(max_consumers):
        b = L.slot_base(i)
        st = int(load(w, b + L.S_STATE))
        if st in (L.SLOT_FREE, L.SLOT_CLAIMED):
            continue
        where = f"{path}: consumer slot {i}"
        if st not in L.SLOT_STATE_NAMES:
            raise RingFormatError(f"{where}: state {st} is not a slot state")
        n = int(load(w, b + L.S_NAME_LEN))
        if not 1 <= n <= L.NAME_BYTES:
            raise RingFormatError(f"{where}: name length {n} is not in 1..{L.NAME_BYTES}")
        try:
            name = w[b + L.S_NAME: b + L.S_NAME + L.NAME_BYTES // 8].tobytes()[:n].decode("utf-8")
        except UnicodeDecodeError:
            raise RingFormatError(f"{where}: name is not UTF-8") from None
        where = f"{where} ({name!r})"
        idx = int(load(w, b + L.S_COMMIT_IDX))
        if idx not in (0, 1):
            raise RingFormatError(f"{where}: commit index {idx} is not 0 or 1")
        pos, rec, pay = commit_snapshot(w, b)
        live_pos = int(load(w, b + L.S_POS))
        pid = int(load(w, b + L.S_PID))
        after = published_edge(w)
        # A consumer may be up to one batch (< capacity) past the edge: the producer publishes
        # a batch before it updates the edge, and a producer killed in between leaves it so.
        for what, v, top in (("position", pos, after[0] + cap), ("records index", rec, after[1] + cap // 8),
                             ("payload index", pay, after[2] + cap), ("live position", live_pos, after[0] + cap)):
            if not 0 <= v <= top:
                raise RingFormatError(f"{where}: {what} {v} is outside 0..{top} (the published edge "
                                      "plus one capacity)")
        if pos % L.RECORD_ALIGN:
            raise RingFormatError(f"{where}: position {pos} is not on a record boundary")
        # the live position is what the producer waits for (a consumer that keeps no commit
        # snapshot, as a peer in another language may, is still a sound consumer of the ring;
        # only resuming its name from that snapshot is refused: ``Reader``)
        if blocking and st == L.SLOT_ATTACHED and before[0] - live_pos > cap:
            raise RingFormatError(f"{where}: attached at position {live_pos}, more than the capacity {cap} "
                                  f"behind the edge {before[0]} (its data cannot still be there)")
        if not 0 <= pid <= L.PID_MAX:
            raise RingFormatError(f"{where}: pid {pid} is not a process id (0..2**22)")
        if name in seen:
            raise RingFormatError(f"{where}: a second slot with the same name")
        seen.append(name)
