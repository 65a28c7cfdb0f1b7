"""A deadline heap for sans-I/O engines: ``schedule(key, at)``, ``due(now)``, ``next_deadline()``.

Engines own many independent deadlines (one per registration, per pending request...)
and the shell arms a single loop timer at ``next_deadline()``.  Rescheduling a key is
the common case (every Map-Register refresh moves its expiry), so entries are never
removed from the middle of the heap: the live deadline of each key sits in a dict and
stale heap entries are skipped when they surface (lazy deletion).  The heap is rebuilt
from the dict when stale entries outnumber live ones, so memory stays O(live keys).

Nothing here reads a clock: ``now`` is always passed in.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Timers(Generic[K]):
    """Keyed deadlines; one live deadline per key."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, tuple[float, int]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def schedule(self, key: K, at: float) -> None:
        """Set (or move) the deadline of ``key`` to ``at``."""
        seq = next(self._seq)
        self._live[key] = (at, seq)
        heapq.heappush(self._heap, (at, seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def cancel(self, key: K) -> bool:
        """Forget ``key``'s deadline; False if it had none."""
        return self._live.pop(key, None) is not None

    def deadline(self, key: K) -> float | None:
        hit = self._live.get(key)
        return None if hit is None else hit[0]

    def due(self, now: float) -> list[K]:
        """Pop and return every key whose deadline is ``<= now``, earliest first."""
        out: list[K] = []
        heap = self._heap
        live = self._live
        while heap and heap[0][0] <= now:
            at, seq, key = heapq.heappop(heap)
            cur = live.get(key)
            if cur is not None and cur[1] == seq:
                del live[key]
                out.append(key)
        return out

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        live = self._live
        while heap:
            at, seq, key = heap[0]
            cur = live.get(key)
            if cur is not None and cur[1] == seq:
                return at
            heapq.heappop(heap)
        return None

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def _compact(self) -> None:
        self._heap = [(at, seq, key) for key, (at, seq) in self._live.items()]
        heapq.heapify(self._heap)


__all__ = ["Timers"]
