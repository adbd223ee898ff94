"""The prefetch intrinsics: element addresses agree with numpy's, and a prefetch of any
address (even one no array holds) neither faults nor changes memory."""

import numpy as np
from numba import njit

from itchflow.hw.prefetch import element_address, prefetch, prefetch_address


@njit(cache=False)
def _addresses(arr, idx):
    out = np.empty(len(idx), np.int64)
    for i in range(len(idx)):
        out[i] = element_address(arr, idx[i])
    return out


@njit(cache=False)
def _prefetch_everything(arr, addresses):
    for a in addresses:
        prefetch_address(a)
    for i in range(arr.shape[0]):
        prefetch(arr, i)
    return arr.sum()


def test_element_address_matches_numpy_for_records_and_words():
    rec = np.zeros(10, np.dtype([("a", np.uint64), ("b", np.uint32), ("c", np.int32)]))
    idx = np.array([0, 1, 7, 9], np.int64)
    assert list(_addresses(rec, idx)) == [rec.ctypes.data + int(i) * 16 for i in idx]
    words = np.arange(100, dtype=np.uint64)[10:]  # a view: the address counts from its start
    assert list(_addresses(words, idx)) == [words.ctypes.data + int(i) * 8 for i in idx]
    # past either end: an address, not a read (what the engine's look-ahead may compute)
    assert _addresses(words, np.array([-1], np.int64))[0] == words.ctypes.data - 8


def test_prefetch_of_any_address_is_harmless():
    arr = np.arange(1000, dtype=np.int64)
    wild = np.array([0, 8, -64, 1 << 47, arr.ctypes.data - 8, arr.ctypes.data + 10**9], np.int64)
    assert _prefetch_everything(arr, wild) == 999 * 1000 // 2
    assert (arr == np.arange(1000)).all()
