"""What a call allocates at its peak, for tests that bound memory: the benchmarks' own
measure (``itchflow.bench.common.peak_allocated``)."""

from __future__ import annotations

from itchflow.bench.common import peak_allocated  # noqa: F401  (re-exported)
