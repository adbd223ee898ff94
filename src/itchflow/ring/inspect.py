"""What `itchflow ring inspect` / `ring ls` show: a snapshot of a ring's header as a dict."""

from __future__ import annotations

import time

from itchflow.hw.atomics_py import load
from itchflow.ring import consumer as C
from itchflow.ring import layout as L
from itchflow.ring.liveness import consumer_live, pid_alive, producer_live, staleness
from itchflow.ring.slots import commit_snapshot, get_name


def snapshot(ring) -> dict:
    """Parameters, edge, producer, consumers and whether the ring is stale (liveness.py)."""
    w = ring.words
    edge = C.published_edge(w)
    now = time.monotonic_ns()
    ppid = int(load(w, L.W_PROD_PID))
    pstate = int(load(w, L.W_PROD_STATE))
    stale = staleness(w, ring.max_consumers)
    out = {
        "path": ring.path, "capacity": ring.capacity, "max_payload": ring.max_payload,
        "mode": ring.mode, "max_consumers": ring.max_consumers,
        "heartbeat_timeout_s": ring.heartbeat_timeout,
        "hugepages": {"requested": bool(ring.flags & L.FLAG_HUGEPAGE_REQUESTED),
                      "hugetlbfs": bool(ring.flags & L.FLAG_HUGETLBFS),
                      **dict(zip(("backing", "why"), ring.page_backing()))},
        "created_unix_ns": int(w[L.W_CREATED]), "creator_pid": int(w[L.W_CREATOR_PID]),
        "stale": stale.stale, "held_by": stale.holders,
        "edge": dict(zip(("position", "records", "payload_bytes"), edge)),
        "producer": {
            "pid": ppid, "state": {0: "none", 1: "open", 2: "closed"}.get(pstate, str(pstate)),
            "alive": producer_live(w, now),
            "heartbeat_age_s": (now - int(load(w, L.W_PROD_HB))) / 1e9 if load(w, L.W_PROD_HB) else None,
            "generation": int(load(w, L.W_PROD_GEN)),
            "stream": (L.STREAM_OUTCOME_NAMES.get(int(load(w, L.W_PROD_OUTCOME)), "?")
                       if pstate == L.PRODUCER_CLOSED else None),
            "full_waits": int(load(w, L.W_FULL_WAITS)), "detached": int(load(w, L.W_DETACHED)),
            "wakeups": int(load(w, L.W_WAKEUPS)), "recovered_records": int(load(w, L.W_RECOVERED)),
        },
        "consumers": [],
    }
    for i in range(ring.max_consumers):
        b = L.slot_base(i)
        st = int(load(w, b + L.S_STATE))
        if st == L.SLOT_FREE:
            continue
        snap, rec, _ = commit_snapshot(w, b)
        # the live position (what the producer waits for): a peer may keep no commit snapshot,
        # and then its records index is unknown (None), not the snapshot's stale one
        pos = max(int(load(w, b + L.S_POS)), snap)
        pid = int(load(w, b + L.S_PID))
        hb = int(load(w, b + L.S_HB))
        out["consumers"].append({
            "slot": i, "name": get_name(w, b), "state": L.SLOT_STATE_NAMES.get(st, str(st)),
            "pid": pid, "alive": pid_alive(pid) and (st != L.SLOT_ATTACHED or consumer_live(w, b, now)),
            "position": pos,
            # (the edge was read before the slot: a consumer a batch past it reads as 0 behind)
            "lag_bytes": max(0, int(edge[0]) - pos),
            "lag_records": max(0, int(edge[1]) - rec) if snap == pos else None,
            "records_consumed": rec if snap == pos else None,
            "heartbeat_age_s": (now - hb) / 1e9 if hb else None,
            "lost_records": int(load(w, b + L.S_LOST_REC)),
            "lost_payload_bytes": int(load(w, b + L.S_LOST_PAY)),
            "laps": int(load(w, b + L.S_LAPS)), "detaches": int(load(w, b + L.S_DETACHES)),
            "attaches": int(load(w, b + L.S_ATTACHES)),
        })
    return out
