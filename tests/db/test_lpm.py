"""LpmTable: unit cases and a Hypothesis property against a brute-force scan."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from lispnet.db.lpm import LpmTable, SortedInts
from lispnet.wire.address import DistinguishedName, MacAddress
from lispnet.wire.enums import Afi
from lispnet.wire.prefix import EidPrefix

P = EidPrefix.parse


def test_exact_longest_covering_covered_by() -> None:
    t: LpmTable[str] = LpmTable()
    assert t.insert(P("10.0.0.0/8"), "a") is None
    t.insert(P("10.1.0.0/16"), "b")
    t.insert(P("10.1.2.0/24"), "c")
    t.insert(P("10.1.0.0/16", iid=7), "other-iid")
    t.insert(P("2001:db8::/32"), "v6")
    assert len(t) == 5
    assert t.exact(P("10.1.0.0/16")) == "b"
    assert t.exact(P("10.1.0.0/17")) is None
    assert t.longest_match(EidPrefix.host("10.1.2.3")) == (P("10.1.2.0/24"), "c")
    assert t.longest_match(EidPrefix.host("10.1.3.3")) == (P("10.1.0.0/16"), "b")
    assert t.longest_match(EidPrefix.host("10.9.3.3")) == (P("10.0.0.0/8"), "a")
    assert t.longest_match(EidPrefix.host("11.0.0.1")) is None
    assert t.lookup(EidPrefix.host("10.1.0.1", iid=7)) == "other-iid"
    assert t.lookup(EidPrefix.host("10.2.0.1", iid=7)) is None
    assert t.lookup(EidPrefix.host("2001:db8::1")) == "v6"
    assert [v for _, v in t.covering(EidPrefix.host("10.1.2.3"))] == ["c", "b", "a"]
    assert [v for _, v in t.covered_by(P("10.1.0.0/16"))] == ["b", "c"]
    assert [v for _, v in t.covered_by(P("0.0.0.0/0"))] == ["a", "b", "c"]
    # a shorter query does not match longer stored prefixes
    assert t.longest_match(P("10.1.0.0/12")) == (P("10.0.0.0/8"), "a")
    gen = t.generation
    assert t.insert(P("10.1.0.0/16"), "b2") == "b"  # value update: same generation
    assert t.generation == gen
    assert t.delete(P("10.1.0.0/16")) == "b2"
    assert t.generation == gen + 1
    assert t.delete(P("10.1.0.0/16")) is None
    assert t.lookup(EidPrefix.host("10.1.3.3")) == "a"
    assert [str(p) for p, _ in t.items()] == ["10.0.0.0/8", "10.1.2.0/24", "2001:db8::/32", "[7]10.1.0.0/16"]


def test_host_bits_are_ignored() -> None:
    t: LpmTable[int] = LpmTable()
    t.insert(EidPrefix(0, IPv4Address("10.1.2.3"), 16), 1)
    assert t.exact(P("10.1.0.0/16")) == 1
    assert list(t.items()) == [(P("10.1.0.0/16"), 1)]


def test_mac_afis_share_a_family() -> None:
    t: LpmTable[str] = LpmTable()
    t.insert(EidPrefix(0, MacAddress(bytes.fromhex("001122000000"), Afi.MAC_LISPERS), 24), "m")
    host = EidPrefix.host(MacAddress(bytes.fromhex("001122334455"), Afi.MAC))
    assert t.lookup(host) == "m"


def test_exact_only_family() -> None:
    t: LpmTable[str] = LpmTable()
    dn = EidPrefix.host(DistinguishedName("printer"))
    t.insert(dn, "dn")
    assert t.exact(dn) == "dn"
    assert t.lookup(dn) == "dn"
    assert list(t.covered_by(dn)) == [(dn, "dn")]
    assert t.delete(dn) == "dn"
    assert len(t) == 0


def test_sorted_ints_blocks() -> None:
    s = SortedInts()
    import random

    rng = random.Random(1)
    ref: set[int] = set()
    for _ in range(5000):
        x = rng.randrange(3000)
        if rng.random() < 0.7:
            assert s.add(x) == (x not in ref)
            ref.add(x)
        else:
            assert s.discard(x) == (x in ref)
            ref.discard(x)
    assert list(s) == sorted(ref)
    assert len(s) == len(ref)
    assert list(s.irange(100, 900)) == [x for x in sorted(ref) if 100 <= x <= 900]
    assert list(s.descending_le(1500)) == sorted((x for x in ref if x <= 1500), reverse=True)
    gt = [x for x in sorted(ref) if x > 1500]
    assert s.first_gt(1500) == (gt[0] if gt else None)
    assert s.first_gt(10**9) is None


# --- property: agrees with a brute-force scan ----------------------------------------------

v4_prefix = st.builds(
    lambda iid, a, n: EidPrefix(iid, IPv4Address(a), n).masked(),
    st.sampled_from([0, 1, 1000]),
    st.integers(0, 2**32 - 1).map(lambda a: a & 0xFFFF00FF | 0x0A000000),  # cluster under 10/8
    st.integers(0, 32),
)
v6_prefix = st.builds(
    lambda iid, a, n: EidPrefix(iid, IPv6Address(a), n).masked(),
    st.sampled_from([0, 5]),
    st.integers(0, 2**128 - 1).map(lambda a: (a & ((1 << 16) - 1)) | (0x20010DB8 << 96)),
    st.integers(0, 128),
)
any_prefix = st.one_of(v4_prefix, v6_prefix)


def brute_longest(entries: dict[EidPrefix, int], q: EidPrefix) -> tuple[EidPrefix, int] | None:
    best: tuple[EidPrefix, int] | None = None
    for p, v in entries.items():
        if p.contains(q) and (best is None or p.mask_len > best[0].mask_len):
            best = (p, v)
    return best


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), any_prefix), max_size=60),
    queries=st.lists(any_prefix, min_size=1, max_size=20),
)
def test_lpm_matches_bruteforce(ops: list[tuple[bool, EidPrefix]], queries: list[EidPrefix]) -> None:
    t: LpmTable[int] = LpmTable()
    ref: dict[EidPrefix, int] = {}
    for i, (add, p) in enumerate(ops):
        if add:
            assert t.insert(p, i) == ref.get(p)
            ref[p] = i
        else:
            assert t.delete(p) == ref.pop(p, None)
    assert len(t) == len(ref)
    assert sorted(t.items()) == sorted(ref.items())
    for q in queries:
        assert t.longest_match(q) == brute_longest(ref, q)
        assert t.exact(q) == ref.get(q)
        assert sorted(t.covered_by(q)) == sorted((p, v) for p, v in ref.items() if q.contains(p))
        assert list(t.covering(q)) == sorted(
            ((p, v) for p, v in ref.items() if p.contains(q)), key=lambda e: -e[0].mask_len
        )


def test_one_million_entries_scale() -> None:
    """Build a large table quickly (the 1 M case is a benchmark; 200 k keeps CI fast)."""
    t: LpmTable[int] = LpmTable()
    n = 200_000
    for i in range(n):
        t.insert(EidPrefix(0, IPv4Address(0x0A000000 + (i << 8)), 24), i)
    assert len(t) == n
    assert t.lookup(EidPrefix.host(IPv4Address(0x0A000000 + (1234 << 8) + 7))) == 1234
    assert len(list(t.covered_by(P("10.0.0.0/16")))) == 256
