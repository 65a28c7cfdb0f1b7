"""The ITR map-cache (RFC 9301 section 11.1 of our spec; RFC 9300 section 6).

One table per instance-id and address family, answering longest match.  Entries are
positive (a locator set) or negative (an action, no locators).  Every entry has an
absolute expiry time computed from the record TTL and the ``now`` given at install;
nothing here reads a clock: ``expire(now)`` drops what is due and returns it.

The cache is bounded: when ``max_entries`` is reached, the least recently *used* entry
(``lookup`` marks use) is evicted and ``evictions`` counts it.  An ``OrderedDict`` keeps
the LRU order; lookups move the hit entry to the end.

Longest match: per (iid, afi), a dict keyed by (mask_len, masked value) plus the set of
mask lengths present, probed longest first.  A map-cache holds few distinct lengths
(host routes, the sites' /24s and /64s, a handful of negative prefixes), so a probe costs
a few dict lookups; no scan over entries ever happens.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..wire.address import Address, address_bits, address_to_int
from ..wire.enums import Action
from ..wire.prefix import EidPrefix
from ..wire.records import LocatorRecord

DEFAULT_MAX_ENTRIES = 10000


@dataclass(frozen=True, slots=True)
class CachedLocator:
    """One RLOC of a cached mapping with the ITR's view of its reachability."""

    record: LocatorRecord
    """The locator as received."""
    up: bool = True
    """False when RLOC-probing, the R bit or the peer's LSBs say it is down."""
    down_by_lsb: bool = False
    """Marked down by received locator-status-bits (may come up again by LSB)."""


@dataclass(slots=True)
class MapCacheEntry:
    """A cached mapping."""

    prefix: EidPrefix
    """The EID prefix (instance-id included)."""
    locators: tuple[CachedLocator, ...]
    """RLOC set in received order (empty for a negative entry)."""
    action: Action
    """For negative entries: what to do with matching packets."""
    ttl_minutes: int
    """Record TTL as received."""
    installed_at: float
    """``now`` at install or last refresh."""
    expires_at: float
    """Absolute expiry time."""
    authoritative: bool = False
    """A bit of the record."""
    map_version: int = 0
    """Map-version of the record."""
    packets: int = 0
    """Lookups that hit this entry (a proxy for use)."""
    last_used: float = 0.0
    """``now`` of the last hit."""
    source: str = "map-reply"
    """How it got here: map-reply, static, petr."""

    @property
    def is_negative(self) -> bool:
        return not self.locators


@dataclass(slots=True)
class _Family:
    entries: dict[tuple[int, int], EidPrefix] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)  # descending, unique


class MapCache:
    """Bounded LRU map-cache with LPM per (iid, afi) and TTL expiry driven by ``now``."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[EidPrefix, MapCacheEntry] = OrderedDict()
        self._families: dict[tuple[int, int], _Family] = {}
        self._expiry: list[tuple[float, int, EidPrefix]] = []
        self._seq = 0
        self.evictions = 0
        """Entries removed to make room (LRU)."""
        self.expirations = 0
        """Entries removed because their TTL ran out."""
        self.hits = 0
        self.misses = 0

    # --- mutation ---------------------------------------------------------------
    def install(
        self,
        prefix: EidPrefix,
        locators: tuple[LocatorRecord, ...] | list[LocatorRecord],
        ttl_minutes: int,
        now: float,
        action: Action = Action.NO_ACTION,
        authoritative: bool = False,
        map_version: int = 0,
        source: str = "map-reply",
    ) -> tuple[MapCacheEntry, list[MapCacheEntry]]:
        """Add or replace ``prefix``; return the entry and any entries evicted for room.

        A TTL of 0 means "remove now": the prefix is removed and returned as evicted-free
        result with an already-expired entry.
        """
        prefix = prefix.masked()
        evicted: list[MapCacheEntry] = []
        old = self._entries.get(prefix)
        if old is None and len(self._entries) >= self.max_entries:
            victim_prefix, victim = next(iter(self._entries.items()))
            self._remove(victim_prefix)
            self.evictions += 1
            evicted.append(victim)
        entry = MapCacheEntry(
            prefix=prefix,
            locators=tuple(CachedLocator(loc, up=loc.reachable and loc.priority != 255) for loc in locators),
            action=action,
            ttl_minutes=ttl_minutes,
            installed_at=now,
            expires_at=now + ttl_minutes * 60.0,
            authoritative=authoritative,
            map_version=map_version,
            last_used=old.last_used if old else now,
            packets=old.packets if old else 0,
            source=source,
        )
        if old is not None:
            self._entries[prefix] = entry
            self._entries.move_to_end(prefix)
        else:
            self._entries[prefix] = entry
            fam = self._families.setdefault(prefix.family_key(), _Family())
            fam.entries[(prefix.mask_len, address_to_int(prefix.address))] = prefix
            if prefix.mask_len not in fam.lengths:
                fam.lengths.append(prefix.mask_len)
                fam.lengths.sort(reverse=True)
        self._seq += 1
        heapq.heappush(self._expiry, (entry.expires_at, self._seq, prefix))
        return entry, evicted

    def remove(self, prefix: EidPrefix) -> MapCacheEntry | None:
        return self._remove(prefix.masked())

    def _remove(self, prefix: EidPrefix) -> MapCacheEntry | None:
        entry = self._entries.pop(prefix, None)
        if entry is None:
            return None
        fam = self._families.get(prefix.family_key())
        if fam is not None:
            fam.entries.pop((prefix.mask_len, address_to_int(prefix.address)), None)
            if not any(k[0] == prefix.mask_len for k in fam.entries):
                fam.lengths.remove(prefix.mask_len)
            if not fam.entries:
                del self._families[prefix.family_key()]
        return entry

    def set_locator_state(self, prefix: EidPrefix, index: int, up: bool, by_lsb: bool = False) -> bool:
        """Mark locator ``index`` of ``prefix`` up or down; True when something changed."""
        entry = self._entries.get(prefix)
        if entry is None or not 0 <= index < len(entry.locators):
            return False
        loc = entry.locators[index]
        if loc.record.priority == 255:
            return False
        if up and by_lsb and not loc.down_by_lsb:
            return False  # LSBs alone never bring up a locator that went down for another reason
        new = replace(loc, up=up, down_by_lsb=(by_lsb and not up))
        if new == loc:
            return False
        entry.locators = entry.locators[:index] + (new,) + entry.locators[index + 1 :]
        return True

    # --- queries ----------------------------------------------------------------
    def lookup(self, iid: int, address: Address, now: float | None = None) -> MapCacheEntry | None:
        """Longest match for ``address`` in ``iid``; marks the entry used (LRU, counters)."""
        bits = address_bits(address)
        fam = self._families.get(EidPrefix(iid, address, bits).family_key())
        if fam is None:
            self.misses += 1
            return None
        value = address_to_int(address)
        for length in fam.lengths:
            masked = value >> (bits - length) << (bits - length) if length else 0
            prefix = fam.entries.get((length, masked))
            if prefix is not None:
                entry = self._entries[prefix]
                if now is not None and entry.expires_at <= now:
                    continue
                self._entries.move_to_end(prefix)
                entry.packets += 1
                if now is not None:
                    entry.last_used = now
                self.hits += 1
                return entry
        self.misses += 1
        return None

    def get(self, prefix: EidPrefix) -> MapCacheEntry | None:
        """Exact match, without touching the LRU order."""
        return self._entries.get(prefix.masked())

    def next_expiry(self) -> float | None:
        while self._expiry:
            at, _, prefix = self._expiry[0]
            entry = self._entries.get(prefix)
            if entry is None or entry.expires_at != at:
                heapq.heappop(self._expiry)  # stale heap item (removed or refreshed)
                continue
            return at
        return None

    def expire(self, now: float) -> list[MapCacheEntry]:
        """Remove and return every entry whose TTL ran out at ``now``."""
        gone: list[MapCacheEntry] = []
        while self._expiry and self._expiry[0][0] <= now:
            at, _, prefix = heapq.heappop(self._expiry)
            entry = self._entries.get(prefix)
            if entry is None or entry.expires_at != at:
                continue
            self._remove(prefix)
            self.expirations += 1
            gone.append(entry)
        return gone

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[MapCacheEntry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.prefix.sort_key()))

    def __contains__(self, prefix: object) -> bool:
        return isinstance(prefix, EidPrefix) and prefix.masked() in self._entries


__all__ = ["MapCache", "MapCacheEntry", "CachedLocator", "DEFAULT_MAX_ENTRIES"]
