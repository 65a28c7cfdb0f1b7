"""Map-cache: LPM per instance, TTL expiry by ``now``, LRU bound."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from lispnet.db.map_cache import MapCache
from lispnet.wire.enums import Action
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import LocatorRecord

LOC = (LocatorRecord(IPv4Address("192.0.2.1")),)


def test_longest_match_per_instance() -> None:
    mc = MapCache()
    mc.install(EidPrefix.parse("10.0.0.0/8"), LOC, 10, 0.0)
    mc.install(EidPrefix.parse("10.2.0.0/16"), LOC, 10, 0.0)
    mc.install(EidPrefix.parse("10.2.0.0/16", 7), (), 10, 0.0, action=Action.DROP)
    e = mc.lookup(0, IPv4Address("10.2.3.4"))
    assert e is not None and e.prefix == EidPrefix.parse("10.2.0.0/16")
    e = mc.lookup(0, IPv4Address("10.3.3.4"))
    assert e is not None and e.prefix.mask_len == 8
    e = mc.lookup(7, IPv4Address("10.2.3.4"))
    assert e is not None and e.is_negative and e.action == Action.DROP
    assert mc.lookup(7, IPv4Address("10.3.3.4")) is None
    assert mc.lookup(0, IPv6Address("fd00::1")) is None


def test_ttl_expiry() -> None:
    mc = MapCache()
    mc.install(EidPrefix.parse("10.2.0.0/16"), LOC, 1, 100.0)
    mc.install(EidPrefix.parse("fd00:2::/64"), LOC, 2, 100.0)
    assert mc.next_expiry() == 160.0
    assert mc.expire(159.9) == []
    gone = mc.expire(160.0)
    assert [g.prefix for g in gone] == [EidPrefix.parse("10.2.0.0/16")]
    assert mc.lookup(0, IPv4Address("10.2.0.1")) is None
    assert mc.next_expiry() == 220.0
    # refresh pushes the expiry out
    mc.install(EidPrefix.parse("fd00:2::/64"), LOC, 2, 200.0)
    assert mc.expire(220.0) == []
    assert mc.next_expiry() == 320.0


def test_lru_eviction_counts() -> None:
    mc = MapCache(max_entries=2)
    mc.install(EidPrefix.parse("10.1.0.0/16"), LOC, 10, 0.0)
    mc.install(EidPrefix.parse("10.2.0.0/16"), LOC, 10, 0.0)
    mc.lookup(0, IPv4Address("10.1.0.1"))  # 10.1 is now the most recent
    _, evicted = mc.install(EidPrefix.parse("10.3.0.0/16"), LOC, 10, 0.0)
    assert [e.prefix for e in evicted] == [EidPrefix.parse("10.2.0.0/16")]
    assert mc.evictions == 1 and len(mc) == 2


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=30), st.integers(0, 2**32 - 1))
def test_lpm_agrees_with_brute_force(prefixes: list[tuple[int, int]], probe: int) -> None:
    mc = MapCache()
    ps = {EidPrefix.parse(f"{IPv4Address(v)}/{n}") for v, n in prefixes}
    for p in ps:
        mc.install(p, LOC, 10, 0.0)
    addr = IPv4Address(probe)
    want = max((p for p in ps if p.contains_address(addr)), key=lambda p: p.mask_len, default=None)
    got = mc.lookup(0, addr)
    assert (got.prefix if got else None) == want


@given(st.lists(st.integers(0, 100), min_size=1, max_size=20), st.integers(0, 8000))
def test_expiry_monotonic(ttls: list[int], now: int) -> None:
    mc = MapCache()
    for i, ttl in enumerate(ttls):
        mc.install(EidPrefix.parse(f"10.{i}.0.0/16"), LOC, ttl, 0.0)
    gone = mc.expire(float(now))
    assert all(g.expires_at <= now for g in gone)
    assert all(e.expires_at > now for e in mc)
