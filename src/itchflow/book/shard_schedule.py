"""Which task a free thread of ``ShardedBooks`` runs next: a state machine, no threads in it.

One ``apply`` call is a sequence of chunks of the input. A chunk is *routed* once (one pass
copies every message into the block of its stock's shard, in one of ``slots`` reusable chunk
buffers) and then *applied* once per shard (shard s's engine applies its block of that
chunk). The rules that keep the books exact:

- a shard applies its chunks in order, on one thread at a time (its state is not shared);
- chunks are routed in order, one routing at a time (a chunk starts where the last ended);
- chunk c is routed into slot c % slots only once every shard has applied chunk c - slots.

Any thread may run any task, so the threads can share the day unevenly when the machine runs
them unevenly (a 2-vCPU guest whose host gives one vCPU less: the faster thread takes chunks
of the slower one's shard), where one fixed shard per thread finishes with the slower thread.
But a shard that moves to the other thread leaves its books' working set in the other core's
caches, so on an even machine each thread should keep its shard and the routing should even
out the work.

The choice, on every call of ``next_task`` (``at``: how many chunks this thread's last shard
has applied; the least advanced shard has applied ``oldest``):
1. route the next chunk, if a slot is free and nobody is routing, and
   - this thread's shard waits for that chunk, or it is behind another shard by more than
     ``slack`` chunks while another thread has nothing to do (this core is the slower one:
     while it routes, the idle thread takes a chunk of its shard; with nobody idle, routing
     would only hand its shard to a busy thread's next call, and the shards traded threads on
     every chunk: 101-125 moves in five of fifteen benchmark runs, at most 23 in nine since),
     or fewer shards are ready to apply (routed, not held) than there are threads and this
     thread's shard is not behind another (the thread whose shard leads routes; the one whose
     shard lags goes on applying it), and
   - this thread's shard is not more than ``slack`` chunks ahead of ``oldest`` while another
     shard is ready (this core is the faster one: it takes a chunk of a lagging shard, rule 3);
2. else apply the shard this thread applied last, if it is ready and at most ``slack`` chunks
   ahead of the least advanced ready shard;
3. else apply the least advanced ready shard: what keeps the slots turning over, and how the
   faster thread comes to apply more of the day than the slower one.
No thread waits while there is a ready shard nobody holds (no thread owns a shard).

Measured (10 M-message 100-stock day, two threads): with rule 1 as "route when fewer shards
are ready than threads", whichever thread came free routed, the shard of the thread that
routed fell behind, rule 2 then sent each thread to the other's shard, and 140-155 of about
150 applies moved a shard; with the rule above 1-15 moved, and two threads ran 1.56-1.69x one
thread against 1.48-1.68x (runs of one script, minutes apart; more in docs/performance-history.md).
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
        self._idle: set[int] = set()     # workers told "nothing to do now" and not given a task since

    def next_task(self, worker: int):
        """(ROUTE, chunk), (APPLY, shard, chunk), or None: nothing to do now (wait for a
        task to finish, then ask again; ``done`` says whether to stop asking)."""
        if self.stopped:
            return None
        self._idle.discard(worker)   # asking: idle again only if told there is nothing to do
        oldest = min(self.next_chunk)
        if not self.routing and not self.last_routed and self.routed - oldest < self.slots:
            ready = sum(1 for k in range(self.shards) if not self.holding[k] and self.next_chunk[k] < self.routed)
            warm = self._warm.get(worker)
            mine = warm is not None and not self.holding[warm]   # the shard this thread applied last
            at = self.next_chunk[warm] if mine else 0
            lead = max(self.next_chunk)
            far_ahead = mine and at - oldest > self.slack and ready > 0
            far_behind = mine and lead - at > self.slack and bool(self._idle)
            behind = mine and at < lead
            waits = mine and at >= self.routed
            if not far_ahead and (far_behind or waits or (ready < self.threads and not behind)):
                self.routing = True
                return ROUTE, self.routed
        best = None   # the least advanced ready shard
        for k in range(self.shards):
            if not self.holding[k] and self.next_chunk[k] < self.routed and (
                    best is None or self.next_chunk[k] < self.next_chunk[best]):
                best = k
        if best is None:
            self._idle.add(worker)
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
