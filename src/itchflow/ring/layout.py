"""The ring file layout, declared once as data. Every offset used anywhere is derived here.

A ring file is a header followed by a data region of ``capacity`` bytes (a power of two):

    [ header: BLOCKS (128 bytes each) ... padded to a page ][ data: capacity bytes ]

The header is an array of 128-byte blocks. Each block holds one control item written by one
side (the adjacent-line prefetcher pulls 64-byte lines in pairs, so a 64-byte separation is
not enough to stop false sharing). All words are little-endian int64 and are accessed as
``words[i]`` on the file mapped as int64 (atomics.py). Word indices below are absolute.

Data region: variable-length records, 8-byte aligned. Each record starts with one 8-byte
header word ``length | type << 32``: ``length`` = 8 + payload bytes (unaligned; the next record
starts at the 8-byte-aligned end), ``type`` a u32 (user types < 2**31; PADDING_TYPE marks the
filler that takes the rest of the buffer when a record would not fit before the wrap). A zero
header word means "not yet published": the producer zeroes the header after each batch before
it publishes the batch's first header with a release store (Agrona's invariant), so a reader
polling the next header never sees stale bytes from the previous lap. Positions are 64-bit
byte counts since creation and never wrap; the data offset is ``position & (capacity - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = int.from_bytes(b"ITCHRING", "little")
LAYOUT_VERSION = 1
BLOCK_BYTES = 128
BLOCK_WORDS = BLOCK_BYTES // 8
PAGE_BYTES = 4096
HUGE_PAGE_BYTES = 2 * 1024 * 1024

RECORD_HEADER_BYTES = 8
RECORD_ALIGN = 8
PADDING_TYPE = 0xFFFF_FFFF
MAX_USER_TYPE = 0x7FFF_FFFF
NAME_BYTES = 64  # a consumer name, UTF-8, NUL-padded

# Modes (META.mode)
MODE_BLOCKING = 0  # the producer never overwrites unread data of a live consumer
MODE_LOSSY = 1     # the producer never waits; lapped consumers count their loss and skip ahead

# Producer states (PRODUCER.state)
PRODUCER_NONE, PRODUCER_OPEN, PRODUCER_CLOSED = 0, 1, 2
# How the producer's stream ended when it closed the ring (PRODUCER.outcome): a consumer cannot
# tell a session stopped half-way (Ctrl-C, an idle time-out, a server gone) from its end by
# the close alone. 0 in a ring of an earlier version: whole, as a close then meant.
STREAM_WHOLE, STREAM_CUT_SHORT, STREAM_LOST = 0, 1, 2
STREAM_OUTCOME_NAMES = {STREAM_WHOLE: "whole", STREAM_CUT_SHORT: "cut short", STREAM_LOST: "lost messages"}

# Consumer slot states (CONSUMER_LIVENESS.state)
# CLAIMED: a consumer process is filling in a new slot (the producer ignores it).
SLOT_FREE, SLOT_JOINING, SLOT_ATTACHED, SLOT_DETACHED, SLOT_CLAIMED = 0, 1, 2, 3, 4
SLOT_STATE_NAMES = {SLOT_FREE: "free", SLOT_JOINING: "joining", SLOT_ATTACHED: "attached",
                    SLOT_DETACHED: "detached", SLOT_CLAIMED: "claimed"}

# Why the producer detached a consumer (CONSUMER_LIVENESS.detach_reason). The last two are a
# slot word that cannot be right (another process wrote over it): waiting on such a slot would
# stall the producer for ever, and taking its position at face value would let the producer
# overwrite what an honest consumer has yet to read, so the slot is detached instead.
DETACH_SILENT, DETACH_HEARTBEAT_AHEAD, DETACH_BAD_POSITION = 0, 1, 2
DETACH_REASON_NAMES = {DETACH_SILENT: "no heartbeat", DETACH_HEARTBEAT_AHEAD: "heartbeat ahead of the clock",
                       DETACH_BAD_POSITION: "position outside what was published"}

# Linux's largest pid (PID_MAX_LIMIT, 2**22): a pid word above it is no process (and os.kill
# cannot even take one past 2**31).
PID_MAX = 1 << 22

# A producer whose heartbeat is older than max(heartbeat_timeout, this) is gone even if its pid
# exists (the pid may have been reused). Its heartbeat thread beats every timeout/4; the floor
# keeps a loaded machine (threads delayed for a second) from declaring a live producer gone.
PRODUCER_STALE_MIN_NS = 2_000_000_000

# Positions, record and payload indices are counts since creation and never wrap: 2**62 bytes
# is 146 years at 1 GB/s. A larger one in a file is corrupt (and position + capacity would
# overflow int64 in the producer's arithmetic).
MAX_POSITION = 1 << 62

# A ring's geometry as validated when it was opened (``Ring.geometry``, int64 in this order).
# The kernels build their private state from it, never from the header words again: another
# process can rewrite those at any moment, and capacity or header_bytes are used as bounds.
G_CAPACITY, G_HEADER_BYTES, G_MAX_PAYLOAD, G_MODE, G_MAX_CONSUMERS, G_HB_TIMEOUT_NS = range(6)
G_FIELDS = 6

# META.flags bits
FLAG_HUGEPAGE_REQUESTED = 1
FLAG_HUGETLBFS = 2


@dataclass(frozen=True)
class Word:
    name: str
    doc: str


@dataclass(frozen=True)
class Block:
    name: str
    writer: str  # who writes it: "creator", "producer", "consumer", "any"
    words: tuple[Word, ...]
    doc: str


# ---- the ring header: global blocks, in file order -------------------------------------------
RING_BLOCKS: tuple[Block, ...] = (
    Block("meta", "creator", (
        Word("magic", "b'ITCHRING' as a little-endian u64"),
        Word("version", "LAYOUT_VERSION"),
        Word("header_bytes", "offset of the data region (page or huge-page multiple)"),
        Word("capacity", "data region bytes, a power of two"),
        Word("max_payload", "largest payload a record may carry"),
        Word("max_consumers", "number of consumer slots"),
        Word("mode", "MODE_BLOCKING or MODE_LOSSY"),
        Word("heartbeat_timeout_ns", "a blocking-mode consumer silent this long is detached"),
        Word("created_unix_ns", "creation time (wall clock)"),
        Word("creator_pid", "pid of the creating process"),
        Word("flags", "FLAG_* bits (huge pages asked / backed by hugetlbfs)"),
        Word("file_bytes", "header_bytes + capacity: the expected file size"),
        Word("creator_start", "start time of the creating process (clock ticks since boot, as in "
                              "/proc/PID/stat; 0: unknown): tells a reused pid from the creator"),
    ), "Creation parameters; immutable once the file is renamed into place."),
    Block("intent", "producer", (
        Word("tail_intent", "end of the bytes the producer may be writing now (incl. the pre-zeroed "
                            "next header); stored before any overwrite so lossy readers can validate"),
    ), "Lossy-mode overwrite guard (seqlock-style)."),
    Block("edge", "producer", (
        Word("seq", "seqlock sequence: odd while the three words below are being updated"),
        Word("position", "published end position (a record boundary)"),
        Word("records", "records published up to position (padding excluded)"),
        Word("payload_bytes", "payload bytes published up to position"),
    ), "The live edge, consistent as a triple under its seqlock (joins, lapped resume, recovery)."),
    Block("producer", "producer", (
        Word("pid", "pid of the producer (0: none)"),
        Word("heartbeat_ns", "CLOCK_MONOTONIC of the producer's last sign of life (a thread of the "
                             "producer process refreshes it, idle or not)"),
        Word("state", "PRODUCER_NONE / OPEN / CLOSED"),
        Word("generation", "how many producers have opened this ring"),
        Word("outcome", "STREAM_*, stored before state CLOSED: the stream was whole, cut short (stopped "
                        "before its end) or ended with messages lost on the way"),
        Word("start", "the producer process's start time (/proc/PID/stat field 22, clock ticks since "
                      "boot; 0: unknown), stored once its pid is claimed, before its heartbeat: tells a "
                      "reused pid from it"),
    ), "Producer liveness."),
    Block("producer_counters", "producer", (
        Word("full_waits", "times the producer found the ring full and had to wait"),
        Word("detached", "consumers detached for missing heartbeats"),
        Word("wakeups", "futex wake calls issued"),
        Word("recovered_records", "records found published past the edge when a producer reopened"),
    ), "Producer statistics."),
    Block("join", "consumer", (
        Word("requests", "incremented by a consumer asking to join a blocking ring"),
    ), "Join doorbell, read by the producer once per publish."),
    Block("wake", "producer", (
        Word("futex", "futex word (low 32 bits): incremented by the producer to wake sleepers"),
    ), "Wake-up word for the blocking wait strategy."),
    Block("waiters", "consumer", (
        Word("count", "consumers asleep on the futex; the producer wakes only when non-zero"),
    ), "So that waking costs the producer one cached load while nobody sleeps."),
)

# ---- one consumer slot (repeated max_consumers times after the global blocks) ----------------
CONSUMER_BLOCKS: tuple[Block, ...] = (
    Block("position", "consumer", (
        Word("position", "everything before this is consumed (a record boundary)"),
    ), "The only consumer word the producer reads on its fast path (via its cached minimum)."),
    Block("commit", "consumer", (
        Word("index", "which of the two snapshots below is current (0 or 1)"),
        Word("pos0", "snapshot 0: position"), Word("rec0", "snapshot 0: records index"),
        Word("pay0", "snapshot 0: payload index"),
        Word("pos1", "snapshot 1: position"), Word("rec1", "snapshot 1: records index"),
        Word("pay1", "snapshot 1: payload index"),
        Word("join_pos", "set by the producer when it attaches a joining consumer: where to start"),
        Word("join_rec", "records index at join_pos"), Word("join_pay", "payload index at join_pos"),
    ), "Double-buffered (position, records, payload) so that a SIGKILL mid-commit leaves a "
       "consistent snapshot for the restarted consumer; the index flips last."),
    Block("liveness", "any", (
        Word("state", "SLOT_* (the producer writes JOINING->ATTACHED and ATTACHED->DETACHED)"),
        Word("pid", "pid of the consumer process"),
        Word("heartbeat_ns", "CLOCK_MONOTONIC of the consumer's last sign of life"),
        Word("attached_ns", "when it last attached"),
        Word("detached_ns", "when it was last detached"),
        Word("name_len", "bytes of the name"),
        Word("detach_reason", "why the producer last detached it (DETACH_*; 0 in rings written before the "
                              "word had a use): no heartbeat, a heartbeat ahead of the clock, a position "
                              "outside what was published"),
        Word("reserved7", ""),
        *(Word(f"name{i}", "name bytes") for i in range(NAME_BYTES // 8)),
    ), "Who the consumer is and whether it is alive."),
    Block("counters", "consumer", (
        Word("lost_records", "records this consumer never saw (lapped or detached)"),
        Word("lost_payload", "payload bytes of those records"),
        Word("laps", "times it was lapped / resumed at the live edge"),
        Word("detaches", "times the producer detached it"),
        Word("attaches", "times a process attached to this slot"),
    ), "Consumer statistics."),
)


def _index(blocks: tuple[Block, ...]) -> dict[str, int]:
    out = {}
    for b, block in enumerate(blocks):
        assert len(block.words) <= BLOCK_WORDS, block.name
        for w, word in enumerate(block.words):
            out[f"{block.name}.{word.name}"] = b * BLOCK_WORDS + w
    return out


RING_WORD = _index(RING_BLOCKS)          # "edge.position" -> absolute word index
SLOT_WORD = _index(CONSUMER_BLOCKS)      # "liveness.state" -> word index within a slot
CONSUMERS_WORD = len(RING_BLOCKS) * BLOCK_WORDS      # first slot's first word
SLOT_WORDS = len(CONSUMER_BLOCKS) * BLOCK_WORDS      # words per slot

# Flat constants for the kernels (Numba freezes module globals at compile time).
W_MAGIC = RING_WORD["meta.magic"]
W_VERSION = RING_WORD["meta.version"]
W_HEADER_BYTES = RING_WORD["meta.header_bytes"]
W_CAPACITY = RING_WORD["meta.capacity"]
W_MAX_PAYLOAD = RING_WORD["meta.max_payload"]
W_MAX_CONSUMERS = RING_WORD["meta.max_consumers"]
W_MODE = RING_WORD["meta.mode"]
W_HB_TIMEOUT = RING_WORD["meta.heartbeat_timeout_ns"]
W_CREATED = RING_WORD["meta.created_unix_ns"]
W_CREATOR_PID = RING_WORD["meta.creator_pid"]
W_FLAGS = RING_WORD["meta.flags"]
W_FILE_BYTES = RING_WORD["meta.file_bytes"]
W_CREATOR_START = RING_WORD["meta.creator_start"]
W_TAIL_INTENT = RING_WORD["intent.tail_intent"]
W_EDGE_SEQ = RING_WORD["edge.seq"]
W_EDGE_POS = RING_WORD["edge.position"]
W_EDGE_REC = RING_WORD["edge.records"]
W_EDGE_PAY = RING_WORD["edge.payload_bytes"]
W_PROD_PID = RING_WORD["producer.pid"]
W_PROD_HB = RING_WORD["producer.heartbeat_ns"]
W_PROD_STATE = RING_WORD["producer.state"]
W_PROD_GEN = RING_WORD["producer.generation"]
W_PROD_OUTCOME = RING_WORD["producer.outcome"]
W_PROD_START = RING_WORD["producer.start"]
W_FULL_WAITS = RING_WORD["producer_counters.full_waits"]
W_DETACHED = RING_WORD["producer_counters.detached"]
W_WAKEUPS = RING_WORD["producer_counters.wakeups"]
W_RECOVERED = RING_WORD["producer_counters.recovered_records"]
W_JOIN_REQ = RING_WORD["join.requests"]
W_FUTEX = RING_WORD["wake.futex"]
W_WAITERS = RING_WORD["waiters.count"]

S_POS = SLOT_WORD["position.position"]
S_COMMIT_IDX = SLOT_WORD["commit.index"]
S_COMMIT0 = SLOT_WORD["commit.pos0"]     # snapshot k lives at S_COMMIT0 + 3*k: pos, rec, pay
S_JOIN_POS = SLOT_WORD["commit.join_pos"]
S_JOIN_REC = SLOT_WORD["commit.join_rec"]
S_JOIN_PAY = SLOT_WORD["commit.join_pay"]
S_STATE = SLOT_WORD["liveness.state"]
S_PID = SLOT_WORD["liveness.pid"]
S_HB = SLOT_WORD["liveness.heartbeat_ns"]
S_ATTACHED_NS = SLOT_WORD["liveness.attached_ns"]
S_DETACHED_NS = SLOT_WORD["liveness.detached_ns"]
S_NAME_LEN = SLOT_WORD["liveness.name_len"]
S_DETACH_REASON = SLOT_WORD["liveness.detach_reason"]
S_NAME = SLOT_WORD["liveness.name0"]
S_LOST_REC = SLOT_WORD["counters.lost_records"]
S_LOST_PAY = SLOT_WORD["counters.lost_payload"]
S_LAPS = SLOT_WORD["counters.laps"]
S_DETACHES = SLOT_WORD["counters.detaches"]
S_ATTACHES = SLOT_WORD["counters.attaches"]
assert SLOT_WORD["commit.pos1"] == S_COMMIT0 + 3


def slot_base(slot: int) -> int:
    """Absolute word index of consumer slot ``slot``."""
    return CONSUMERS_WORD + slot * SLOT_WORDS


def header_bytes(max_consumers: int, huge: bool = False) -> int:
    """Bytes before the data region, rounded up so that the data starts page-aligned."""
    raw = (CONSUMERS_WORD + max_consumers * SLOT_WORDS) * 8
    unit = HUGE_PAGE_BYTES if huge else PAGE_BYTES
    return -(-raw // unit) * unit


def record_stride(payload_len: int) -> int:
    """Bytes a record with this payload occupies in the data region (header + payload, aligned)."""
    return (RECORD_HEADER_BYTES + payload_len + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)


def pack_record_header(payload_len: int, rtype: int) -> int:
    """The header word as a signed int64 (what the kernels store)."""
    v = (RECORD_HEADER_BYTES + payload_len) | (rtype << 32)
    return v - (1 << 64) if v >= 1 << 63 else v


def describe() -> str:
    """The layout as text (for docs and ``itchflow ring layout``): every header word, where the
    consumer slots sit, the record format and every constant a peer needs (what to do with
    them: docs/ring-protocol.md)."""
    lines = [f"ring layout v{LAYOUT_VERSION}: {BLOCK_BYTES}-byte blocks of little-endian int64 words "
             "(the futex word is its low 32 bits; a name is UTF-8 bytes, NUL-padded)",
             f"consumer slots: {_slots_doc()}"]
    for title, blocks, base in (("ring header", RING_BLOCKS, 0),
                                ("consumer slot (repeated)", CONSUMER_BLOCKS, None)):
        lines.append(f"{title}:")
        for b, block in enumerate(blocks):
            lines.append(f"  block {b} '{block.name}' (written by {block.writer}): {block.doc}")
            for w, word in enumerate(block.words):
                off = (b * BLOCK_WORDS + w) * 8
                where = f"byte {off:5d}" if base == 0 else f"slot+{off:4d}"
                if word.doc:
                    lines.append(f"    {where}  {block.name}.{word.name}: {word.doc}")
    lines.append(f"data region: records [u32 length ({RECORD_HEADER_BYTES} + payload) | u32 type][payload]"
                 f"[pad to {RECORD_ALIGN}]; a header word of 0: not yet published")
    lines.append("constants:")
    for name, value in CONSTANTS:
        lines.append(f"  {name} = {value}")
    lines.append("protocol (joining, reading, committing, lapped readers, producing): docs/ring-protocol.md")
    return "\n".join(lines)


def _slots_doc() -> str:
    return (f"slot i starts at byte {CONSUMERS_WORD * 8} + {SLOT_WORDS * 8} * i (word {CONSUMERS_WORD} + "
            f"{SLOT_WORDS} * i); meta.max_consumers of them")


# What ``describe`` prints: every value a peer in another language must agree on.
CONSTANTS = (
    ("MAGIC", "b'ITCHRING' (0x%016x)" % MAGIC), ("LAYOUT_VERSION", LAYOUT_VERSION),
    ("RECORD_HEADER_BYTES", RECORD_HEADER_BYTES), ("RECORD_ALIGN", RECORD_ALIGN),
    ("PADDING_TYPE", "0x%08X" % PADDING_TYPE), ("MAX_USER_TYPE", "0x%08X" % MAX_USER_TYPE),
    ("NAME_BYTES", NAME_BYTES), ("MAX_POSITION", "2**62"),
    ("MODE_BLOCKING", MODE_BLOCKING), ("MODE_LOSSY", MODE_LOSSY),
    ("PRODUCER_NONE", PRODUCER_NONE), ("PRODUCER_OPEN", PRODUCER_OPEN), ("PRODUCER_CLOSED", PRODUCER_CLOSED),
    ("STREAM_WHOLE", STREAM_WHOLE), ("STREAM_CUT_SHORT", STREAM_CUT_SHORT), ("STREAM_LOST", STREAM_LOST),
    ("SLOT_FREE", SLOT_FREE), ("SLOT_JOINING", SLOT_JOINING), ("SLOT_ATTACHED", SLOT_ATTACHED),
    ("SLOT_DETACHED", SLOT_DETACHED), ("SLOT_CLAIMED", SLOT_CLAIMED),
    ("DETACH_SILENT", DETACH_SILENT), ("DETACH_HEARTBEAT_AHEAD", DETACH_HEARTBEAT_AHEAD),
    ("DETACH_BAD_POSITION", DETACH_BAD_POSITION), ("PID_MAX", "2**22"),
    ("FLAG_HUGEPAGE_REQUESTED", FLAG_HUGEPAGE_REQUESTED), ("FLAG_HUGETLBFS", FLAG_HUGETLBFS),
    ("PRODUCER_STALE_MIN_NS", PRODUCER_STALE_MIN_NS),
)
