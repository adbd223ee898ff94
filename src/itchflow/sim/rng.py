"""The generator's random numbers: xoshiro256** over a uint64[4] state array (``rng``).

Compiled and stateless apart from the array, so a day's randomness resumes exactly where a
chunk left off.
"""

from __future__ import annotations

import numpy as np
from numba import njit


_U64 = np.uint64


@njit(nogil=True, cache=True)
def rotl(x, k):
    return (x << _U64(k)) | (x >> _U64(64 - k))


@njit(nogil=True, cache=True)
def next_u64(rng):
    s0, s1, s2, s3 = rng[0], rng[1], rng[2], rng[3]
    result = rotl(s1 * _U64(5), 7) * _U64(9)
    t = s1 << _U64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = rotl(s3, 45)
    rng[0], rng[1], rng[2], rng[3] = s0, s1, s2, s3
    return result


@njit(nogil=True, cache=True)
def u01(rng):
    return np.float64(next_u64(rng) >> _U64(11)) * (1.0 / 9007199254740992.0)


@njit(nogil=True, cache=True)
def randint(rng, n):
    """Uniform integer in [0, n)."""
    return np.int64(u01(rng) * n)
