"""Which task a free thread of ``ShardedBooks`` runs next: a state machine, no threads in it.

One ``apply`` call is a sequence of chunks of the input. A chunk is *routed* once (one pass
copies every message into the block of its stock's shard, in one of ``slots`` reusable chunk
buffers) and then *applied* once per shard (shard s's engine applies its block of that
chunk). The rules that keep the books exact:

- a shard applies its chunks in order, on one thread at a time (its state is not shared);
- chunks are routed in order, one routing at a time (a chunk starts where the last ended);
- chunk c is routed into slot c % slots only once every shard has applied chunk c - slots.

Any thread may run any task: there are more shards than threads, so a thread coming free
always finds a shard nobody holds. That is what lets the threads share the day unevenly
when the machine runs them unevenly (a 2-vCPU guest whose host gives one vCPU less: the
faster thread simply takes more shard-chunks), where one fixed shard per thread finishes
with the slower thread.

The choice, on every call of ``next_task``:
1. route the next chunk, if a slot is free, nobody is routing, and fewer shards are ready to
   apply (routed, not held) than there are threads: routing stays just ahead of the applies,
   so a chunk's blocks are read soon after they are written, while still in cache;
2. else apply the shard this thread applied last (its state is warm in this core's caches),
   if it is ready and at most ``slack`` chunks ahead of the least advanced ready shard;
3. else apply the least advanced ready shard: what keeps the slots turning over, and how the
   faster thread comes to apply more of the day than the slower one.
Any ready shard is taken by the first thread that comes free, so no thread waits while
there is work (no thread owns a shard).
"""

from __future__ import annotations

ROUTE = "route"
APPLY = "apply"


class ShardSchedule:
    """The scheduling state of one ``apply`` call over ``shards`` shards and ``slots`` chunk
    buffers. Callers hold one lock around every method (the state is plain Python)."""

    def __init__(self, shards: int, slots: int, threads: int = 1, slack: int = 1):
        if shards < 1 or slots < 1 or threads < 1 or slack < 0:
            raise ValueError(f"need shards, slots, threads >= 1 and slack >= 0 (got {shards}, {slots}, {threads}, {slack})")
        self.shards, self.slots, self.threads, self.slack = shards, slots, threads, slack
        self.next_chunk = [0] * shards   # the next chunk each shard applies
        self.holding = [False] * shards  # a thread is applying this shard now
        self.routed = 0                  # chunks 0..routed-1 are routed
        self.routing = False
        self.last_routed = False         # the chunk routed last was the input's last
        self.stopped = False             # a task failed: hand out nothing more
        self._warm: dict[int, int] = {}  # worker -> the shard it applied last
        self._warm_of = [-1] * shards    # shard -> the worker that applied it last
        self.moves = 0                   # applies on another thread than the shard's last

    def next_task(self, worker: int):
        """(ROUTE, chunk), (APPLY, shard, chunk), or None: nothing to do now (wait for a
        task to finish, then ask again; ``done`` says whether to stop asking)."""
        if self.stopped:
            return None
        oldest = min(self.next_chunk)
        if not self.routing and not self.last_routed and self.routed - oldest < self.slots:
            ready = sum(1 for k in range(self.shards) if not self.holding[k] and self.next_chunk[k] < self.routed)
            if ready < self.threads:
                self.routing = True
                return ROUTE, self.routed
        best = None   # the least advanced ready shard
        for k in range(self.shards):
            if not self.holding[k] and self.next_chunk[k] < self.routed and (
                    best is None or self.next_chunk[k] < self.next_chunk[best]):
                best = k
        if best is None:
            return None
        s = self._warm.get(worker, best)
        if self.holding[s] or self.next_chunk[s] >= self.routed or self.next_chunk[s] > self.next_chunk[best] + self.slack:
            s = best
        self.moves += self._warm_of[s] not in (-1, worker)
        self._warm[worker] = s
        self._warm_of[s] = worker
        self.holding[s] = True
        return APPLY, s, self.next_chunk[s]

    def route_done(self, last: bool) -> None:
        """The chunk handed out by the last ROUTE is routed; ``last``: it ends the input."""
        self.routing = False
        self.routed += 1
        self.last_routed = bool(last)

    def apply_done(self, shard: int) -> None:
        self.holding[shard] = False
        self.next_chunk[shard] += 1

    def stop(self) -> None:
        """A task failed: hand out nothing more (tasks running now still report done)."""
        self.stopped = True

    @property
    def busy(self) -> bool:
        return self.routing or any(self.holding)

    @property
    def done(self) -> bool:
        """No task is running and none will be handed out."""
        if self.busy:
            return False
        return self.stopped or (self.last_routed and all(c == self.routed for c in self.next_chunk))
