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

Each item remembers the bucket it is filed in (``filed_at``, the bucket's own key
object, so a million items share a few thousand ints).  ``add`` on an item already
filed at or before its deadline does nothing (re-registrations may call it freely); one
whose deadline moved earlier (a shorter TTL) is filed again, and the stale copy is
skipped when its bucket comes due because ``filed_at`` no longer names that bucket.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class _HasExpiry(Protocol):
    expires_at: float
    filed_at: int


T = TypeVar("T", bound=_HasExpiry)


class ExpiryBuckets(Generic[T]):
    """Items with a mutable ``expires_at``, popped when it has passed."""

    __slots__ = ("_buckets", "_heap", "_keys")

    def __init__(self) -> None:
        self._buckets: dict[int, list[T]] = {}
        self._heap: list[int] = []
        self._keys: dict[int, int] = {}
        """Bucket second -> the one int object items are filed with."""

    def __len__(self) -> int:
        """Entries held (refreshed or removed items may be counted until their bucket is due)."""
        return sum(len(b) for b in self._buckets.values())

    def add(self, item: T) -> None:
        """Watch ``item`` (re-registrations may call it again: a no-op unless the
        deadline moved before the bucket the item is filed in)."""
        at = item.expires_at
        if math.isinf(at):
            return
        sec = math.ceil(at)
        filed = item.filed_at
        if filed and filed <= sec:
            return
        b = self._buckets.get(sec)
        if b is None:
            b = self._buckets[sec] = []
            heapq.heappush(self._heap, sec)
            self._keys[sec] = sec
        else:
            sec = self._keys[sec]
        b.append(item)
        item.filed_at = sec

    def next_deadline(self) -> float | None:
        return float(self._heap[0]) if self._heap else None

    def due(self, now: float, alive: Callable[[T], bool]) -> list[T]:
        """Items whose ``expires_at <= now`` and that are ``alive``; refreshed ones are re-filed."""
        out: list[T] = []
        heap = self._heap
        while heap and heap[0] <= now:
            sec = heapq.heappop(heap)
            self._keys.pop(sec, None)
            for item in self._buckets.pop(sec, ()):
                if item.filed_at != sec:
                    continue  # filed again in an earlier bucket (already handled)
                item.filed_at = 0
                if not alive(item):
                    continue
                if item.expires_at <= now:
                    out.append(item)
                else:
                    self.add(item)
        return out


__all__ = ["ExpiryBuckets"]
