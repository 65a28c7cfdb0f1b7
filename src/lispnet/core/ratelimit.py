"""Per-source token buckets with an injected clock.

A Map-Server/Map-Resolver must not let one source's Map-Request flood crowd out
everybody else (and, above all, the Map-Registers that keep sites alive).  Each source
(normally the outer source address) gets a bucket of ``burst`` tokens refilled at
``rate`` tokens per second; a message costs one token and is dropped when the bucket is
empty.  ``now`` is passed in (STYLE.md section 3), so tests step time by hand.

State is bounded: at most ``max_sources`` buckets are kept.  When the table is full,
buckets that have refilled completely (idle sources, indistinguishable from new ones)
are dropped first, then the oldest-created ones, an eighth of the table at a time.
"""

from __future__ import annotations

from collections.abc import Hashable


class TokenBucketLimiter:
    """``allow(source, now)`` -> bool.  ``rate <= 0`` disables the limiter."""

    __slots__ = ("rate", "burst", "max_sources", "_buckets", "allowed", "limited")

    def __init__(self, rate: float, burst: float, max_sources: int = 65536) -> None:
        if burst < 1 and rate > 0:
            raise ValueError("burst must be at least 1 token")
        if max_sources < 1:
            raise ValueError("max_sources must be positive")
        self.rate = float(rate)
        """Tokens added per second per source (<= 0: no limit)."""
        self.burst = float(burst)
        """Bucket capacity: the largest burst a source may send."""
        self.max_sources = max_sources
        """Upper bound on tracked sources."""
        self._buckets: dict[Hashable, list[float]] = {}
        self.allowed = 0
        """Messages let through."""
        self.limited = 0
        """Messages refused."""

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: Hashable, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``source``'s bucket if it has them."""
        if self.rate <= 0:
            self.allowed += 1
            return True
        b = self._buckets.get(source)
        if b is None:
            if len(self._buckets) >= self.max_sources:
                self._evict(now)
            b = self._buckets[source] = [self.burst, now]
        else:
            elapsed = now - b[1]
            if elapsed > 0:
                b[0] = min(self.burst, b[0] + elapsed * self.rate)
                b[1] = now
        if b[0] >= cost:
            b[0] -= cost
            self.allowed += 1
            return True
        self.limited += 1
        return False

    def tokens(self, source: Hashable, now: float) -> float:
        """Tokens ``source`` would have at ``now`` (burst for an unknown source)."""
        b = self._buckets.get(source)
        if b is None:
            return self.burst
        return min(self.burst, b[0] + max(0.0, now - b[1]) * self.rate)

    def _evict(self, now: float) -> None:
        # Batch eviction keeps the cost amortised O(1) per new source even under a flood
        # of spoofed addresses: free at least an eighth of the table per sweep.
        full = [s for s, b in self._buckets.items() if b[0] + (now - b[1]) * self.rate >= self.burst]
        for s in full:
            del self._buckets[s]
        target = self.max_sources - max(1, self.max_sources // 8)
        while len(self._buckets) > target:
            del self._buckets[next(iter(self._buckets))]


__all__ = ["TokenBucketLimiter"]
