"""Sequence numbers of a buffer of messages that restart: runs of consecutive numbers.

A MoldUDP64 message's sequence number is its packet's plus its place in the packet. A
capture's stream is mostly long runs of consecutive numbers, but an anonymised capture's
packets all say 0 and ``dedup=False`` keeps the A and B lines' copies both, so there every
packet is a run of its own. Those packets are joined into one buffer (a call per packet
costs microseconds), and the buffer says where its numbers restart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class SequenceRuns:
    """Run j of a buffer starts at its message first_message[j] (counted from 0, the first
    run at 0), at byte first_byte[j], and numbers its messages from sequence[j], one more a
    message."""

    first_message: np.ndarray  # uint64, ascending, first_message[0] == 0
    first_byte: np.ndarray     # uint64, ascending, first_byte[0] == 0
    sequence: np.ndarray       # uint64

    def __post_init__(self) -> None:
        n = len(self.sequence)
        if not n or len(self.first_message) != n or len(self.first_byte) != n:
            raise ValueError("SequenceRuns needs a first message, a first byte and a sequence number a run, "
                             "at least one run")
        for starts in (self.first_message, self.first_byte):
            if starts[0] != 0 or np.any(np.diff(starts.astype(np.int64)) < 0):
                raise ValueError("a SequenceRuns' first messages and bytes start at 0 and rise")

    @classmethod
    def of_runs(cls, messages: np.ndarray, nbytes: np.ndarray, sequence: np.ndarray) -> "SequenceRuns":
        """The runs of a buffer made of runs of these many messages and bytes, in order."""
        first, first_byte = np.zeros(len(messages), np.uint64), np.zeros(len(messages), np.uint64)
        np.cumsum(np.asarray(messages[:-1], np.uint64), out=first[1:])
        np.cumsum(np.asarray(nbytes[:-1], np.uint64), out=first_byte[1:])
        return cls(first, first_byte, np.asarray(sequence, np.uint64))

    def numbers(self, index) -> np.ndarray:
        """The sequence numbers (uint64) of the messages at these places in the buffer."""
        index = np.asarray(index, np.uint64)
        out = np.empty(index.shape, np.uint64)
        numbers_of(self.first_message, self.sequence, index.reshape(-1), out.reshape(-1))
        return out


@njit(nogil=True, cache=True)
def numbers_of(first_message, sequence, index, out):
    """out[i] = the number of the message at place index[i]: its run's first number plus its
    place in the run. Places usually come in rising order (a decoded array's rows): the run
    is then found by stepping on from the last one (a pass over both), else by a binary search."""
    runs = first_message.shape[0]
    j = 0
    for i in range(index.shape[0]):
        k = index[i]
        if k < first_message[j]:   # went back: search from the start
            lo, hi = 0, j
            while lo < hi:   # the last run starting at or before k
                mid = (lo + hi + 1) >> 1
                if first_message[mid] <= k:
                    lo = mid
                else:
                    hi = mid - 1
            j = lo
        while j + 1 < runs and first_message[j + 1] <= k:
            j += 1
        out[i] = sequence[j] + (k - first_message[j])
