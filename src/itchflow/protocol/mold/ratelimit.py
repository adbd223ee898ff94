"""Per-source rate limits for the MoldUDP64 re-request server (sans-I/O: time is given).

A re-request is 20 bytes and its reply up to a full packet, so an unlimited server is an
amplifier (70x) anyone who can spoof a source address can aim. Each source gets a token
bucket of requests and one of reply bytes (refilled per second, holding at most one
second's worth), and all sources together share a bytes bucket, so rotating spoofed sources
does not lift the total. The table of sources is bounded (least recently seen evicted).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REQUESTS_PER_S = 500
DEFAULT_BYTES_PER_S = 512 << 10         # per source: ~370 full 1400-byte replies a second
DEFAULT_TOTAL_BYTES_PER_S = 16 << 20    # all sources together
DEFAULT_MAX_SOURCES = 4096


@dataclass
class RateLimits:
    requests_per_s: float = DEFAULT_REQUESTS_PER_S
    bytes_per_s: float = DEFAULT_BYTES_PER_S
    total_bytes_per_s: float = DEFAULT_TOTAL_BYTES_PER_S
    max_sources: int = DEFAULT_MAX_SOURCES


class _Bucket:
    __slots__ = ("rate", "tokens", "last_ns")

    def __init__(self, rate: float, now_ns: int):
        self.rate = float(rate)
        self.tokens = float(rate)      # a full second's worth to start
        self.last_ns = now_ns

    def refill(self, now_ns: int) -> float:
        dt = max(0, now_ns - self.last_ns) / 1e9
        self.tokens = min(self.rate, self.tokens + dt * self.rate)
        self.last_ns = now_ns
        return self.tokens


class SourceLimiter:
    """``allow(source, reply_bytes, now_ns)``: whether a reply of that size may go to source."""

    def __init__(self, limits: RateLimits | None = None):
        self.limits = limits or RateLimits()
        self._sources: dict = {}           # source -> (requests bucket, bytes bucket); insertion = recency
        self._total: _Bucket | None = None

    def allow_request(self, source, now_ns: int) -> bool:
        """Take one request token from ``source`` (False: refused, count it)."""
        req, _ = self._buckets(source, now_ns)
        if req.refill(now_ns) < 1.0:
            return False
        req.tokens -= 1.0
        return True

    def allow_bytes(self, source, size: int, now_ns: int) -> bool:
        """Take ``size`` reply bytes from the source's and the shared buckets (both or neither)."""
        _, byt = self._buckets(source, now_ns)
        total = self._total
        if total is None:
            total = self._total = _Bucket(self.limits.total_bytes_per_s, now_ns)
        if byt.refill(now_ns) < size or total.refill(now_ns) < size:
            return False
        byt.tokens -= size
        total.tokens -= size
        return True

    def _buckets(self, source, now_ns: int):
        b = self._sources.pop(source, None)
        if b is None:
            if len(self._sources) >= self.limits.max_sources:
                self._sources.pop(next(iter(self._sources)))      # least recently seen
            b = (_Bucket(self.limits.requests_per_s, now_ns), _Bucket(self.limits.bytes_per_s, now_ns))
        self._sources[source] = b
        return b

    @property
    def sources(self) -> int:
        return len(self._sources)
