"""Shortest non-EID covering prefix (spec 11.4) against the definition, by brute force."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from lispnet.db.lpm import LpmTable
from lispnet.db.negative import negative_prefix, negative_prefix_bruteforce
from lispnet.wire.address import MacAddress
from lispnet.wire.enums import Afi
from lispnet.wire.prefix import EidPrefix

P = EidPrefix.parse


def table(*prefixes: EidPrefix) -> LpmTable[None]:
    t: LpmTable[None] = LpmTable()
    for p in prefixes:
        t.insert(p, None)
    return t


def test_spec_example() -> None:
    t = table(P("10.1.0.0/16"), P("10.2.0.0/16"))
    assert negative_prefix(EidPrefix.host("10.3.4.5"), [t]) == P("10.3.0.0/16")
    # far away from every EID prefix: a short prefix
    assert negative_prefix(EidPrefix.host("192.0.2.1"), [t]) == P("128.0.0.0/1")
    assert negative_prefix(EidPrefix.host("11.0.0.1"), [t]) == P("11.0.0.0/8")


def test_empty_tables_give_the_lower_bound() -> None:
    assert negative_prefix(EidPrefix.host("10.3.4.5"), []) == P("0.0.0.0/0")
    assert negative_prefix(EidPrefix.host("10.3.4.5"), [table()], lower_bound=8) == P("10.0.0.0/8")


def test_authoritative_lower_bound_and_covering_prefix_ignored() -> None:
    # configured 10.1.0.0/16 (contains the EID: ignored), registered 10.1.1.0/24
    t = table(P("10.1.0.0/16"), P("10.1.1.0/24"))
    got = negative_prefix(EidPrefix.host("10.1.200.9"), [t], lower_bound=16)
    assert got == P("10.1.128.0/17")
    got = negative_prefix(EidPrefix.host("10.1.0.9"), [t], lower_bound=16)
    assert got == P("10.1.0.0/24")


def test_instance_ids_are_separate() -> None:
    t = table(P("10.1.0.0/16", iid=1), P("10.0.0.0/8", iid=2))
    assert negative_prefix(EidPrefix.host("10.3.4.5", iid=1), [t]) == P("10.2.0.0/15", iid=1)
    assert negative_prefix(EidPrefix.host("10.3.4.5", iid=3), [t]) == P("0.0.0.0/0", iid=3)


def test_ipv6_and_mac() -> None:
    t = table(P("2001:db8:1::/48"))
    assert negative_prefix(EidPrefix.host("2001:db8:2::1"), [t]) == P("2001:db8:2::/47")
    mac = EidPrefix(0, MacAddress(bytes.fromhex("001122000000"), Afi.MAC_LISPERS), 24)
    t2 = table(mac)
    q = EidPrefix.host(MacAddress(bytes.fromhex("001123000001")))
    got = negative_prefix(q, [t2])
    assert got.mask_len == 24 and got.contains(q) and not got.overlaps(EidPrefix(0, MacAddress(mac.address.value), 24))  # type: ignore[union-attr]


def test_several_tables_take_the_maximum() -> None:
    a = table(P("10.1.0.0/16"))
    b = table(P("10.3.128.0/17"))
    assert negative_prefix(EidPrefix.host("10.3.4.5"), [a, b]) == P("10.3.0.0/17")


v4 = st.builds(
    lambda iid, a, n: EidPrefix(iid, IPv4Address(a), n).masked(),
    st.sampled_from([0, 1, 7]),
    st.integers(0, 2**32 - 1).map(lambda a: (a & 0x00FFFFFF) | 0x0A000000),
    st.integers(1, 32),
)
v6 = st.builds(
    lambda iid, a, n: EidPrefix(iid, IPv6Address(a), n).masked(),
    st.sampled_from([0, 1]),
    st.integers(0, 2**40 - 1).map(lambda a: a << 88),
    st.integers(1, 128),
)


@settings(max_examples=300, deadline=None)
@given(
    prefixes=st.lists(st.one_of(v4, v6), max_size=40),
    split=st.integers(0, 40),
    queries=st.lists(st.one_of(v4, v6), min_size=1, max_size=10),
    lower=st.integers(0, 24),
)
def test_matches_bruteforce(prefixes: list[EidPrefix], split: int, queries: list[EidPrefix], lower: int) -> None:
    t1 = table(*prefixes[:split])
    t2 = table(*prefixes[split:])
    for q in queries:
        host = EidPrefix.host(q.address, q.iid)
        got = negative_prefix(host, [t1, t2], lower_bound=lower)
        assert got == negative_prefix_bruteforce(host, prefixes, lower_bound=lower)
        # the defining properties: covers the EID, overlaps nothing that does not contain it
        assert got.contains(host)
        if got.mask_len > lower:
            assert not any(
                got.overlaps(p) and not p.contains(host) for p in prefixes if p.family_key() == host.family_key()
            ) or got.mask_len == got.max_len
