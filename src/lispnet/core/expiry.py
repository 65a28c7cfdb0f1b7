"""Registration expiry in one-second buckets, refreshed lazily.

A Map-Server refreshes every registration once a minute and expires the few that stop.
A deadline heap with one entry per registration (``core.timers.Timers``) costs a dict
entry, two tuples and a heap push per refresh - about 280 bytes per registration and a
``heappush`` per Map-Register.  Here a registration is appended once to the bucket of
the second its deadline falls in; a refresh only moves ``expires_at`` on the
registration.  When a bucket comes due, each registration in it is either expired
(``expires_at <= now``), moved to the bucket of its new deadline (it was refreshed), or
skipped (the caller says it is no longer installed).  Cost: one list slot per
registration and at most one wake-up per second.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class _HasExpiry(Protocol):
    expires_at: float


T = TypeVar("T", bound=_HasExpiry)


class ExpiryBuckets(Generic[T]):
    """Items with a mutable ``expires_at``, popped when it has passed."""

    __slots__ = ("_buckets", "_heap")

    def __init__(self) -> None:
        self._buckets: dict[int, list[T]] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        """Entries held (refreshed or removed items may be counted until their bucket is due)."""
        return sum(len(b) for b in self._buckets.values())

    def add(self, item: T) -> None:
        """Watch ``item`` (call once per installed item; refreshes need no call)."""
        at = item.expires_at
        if math.isinf(at):
            return
        sec = math.ceil(at)
        b = self._buckets.get(sec)
        if b is None:
            b = self._buckets[sec] = []
            heapq.heappush(self._heap, sec)
        b.append(item)

    def next_deadline(self) -> float | None:
        return float(self._heap[0]) if self._heap else None

    def due(self, now: float, alive: Callable[[T], bool]) -> list[T]:
        """Items whose ``expires_at <= now`` and that are ``alive``; refreshed ones are re-filed."""
        out: list[T] = []
        heap = self._heap
        while heap and heap[0] <= now:
            sec = heapq.heappop(heap)
            for item in self._buckets.pop(sec, ()):
                if not alive(item):
                    continue
                if item.expires_at <= now:
                    out.append(item)
                else:
                    self.add(item)
        return out


__all__ = ["ExpiryBuckets"]
