"""The atomics of atomics.py as compiled functions callable from Python (setup, inspection,
joins): a Python-level read of a word another process writes goes through these too."""

from __future__ import annotations

from numba import njit

from itchflow.hw import atomics as A
@njit(nogil=True, cache=True)
def load(words, i):
    return A.load_acquire(words, i)


@njit(nogil=True, cache=True)
def store(words, i, v):
    A.store_release(words, i, v)


@njit(nogil=True, cache=True)
def cas(words, i, expected, new):
    return A.compare_and_swap(words, i, expected, new)


@njit(nogil=True, cache=True)
def fetch_add(words, i, delta):
    return A.fetch_add(words, i, delta)
