"""The Map-Server's raw-bytes fast paths give exactly the answers of the full decoder.

Two identical Map-Servers get the same registrations; one answers each Map-Request from
its bytes (``receive``: ``core/fastpath.py`` peek, cached proxy replies, the negative
prefix cache), the other through ``handle_map_request`` on the decoded request (the full
path).  Their sends must be byte-identical, also after registrations change between
requests (the caches must notice).
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, ip_address

from harness import ecm, ep, map_request, record, register, site
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lispnet.core.engine import Endpoint
from lispnet.core.map_resolver import MapResolver, MapResolverConfig
from lispnet.core.map_server import MapServer, MapServerConfig
from lispnet.db.sites import SitePolicy
from lispnet.wire.control import Ecm, MapRequest, parse_control
from lispnet.wire.enums import Action

MS_ADDR = ep("192.0.2.1")
ETR = ep("203.0.113.1", 40001)
ITR = ep("192.0.2.10", 61000)


def sites() -> list[SitePolicy]:
    return [
        site("a", [("10.0.0.0/8", True)], proxy_reply=True),
        site("b", ["10.200.0.0/16", ("10.201.0.0/16", True)], key=b"bkey", unregistered_action=Action.DROP),
        site("c", [("172.16.0.0/12", True)]),
    ]


def pair() -> tuple[MapServer, MapServer]:
    cfg = MapServerConfig(map_request_rate=0)
    return (MapServer(sites(), cfg, rng=random.Random(3)), MapServer(sites(), cfg, rng=random.Random(3)))


def do_register(mss: tuple[MapServer, ...], prefix: str, rloc: str, ttl: int, proxy: bool) -> None:
    key = b"bkey" if prefix.startswith(("10.200.", "10.201.")) else b"secret"
    data = register([record(prefix, rloc, ttl=ttl)], key=key, proxy_reply=proxy, want_map_notify=False)
    for ms in mss:
        ms.receive(data, ETR, MS_ADDR, 100.0)
        ms.poll_sends(100.0)


def slow_answer(ms: MapServer, data: bytes) -> list[tuple[bytes, Endpoint]]:
    msg = parse_control(data)
    assert isinstance(msg, Ecm) and isinstance(msg.message, MapRequest)
    ms.handle_map_request(msg.message, ITR, MS_ADDR, 100.0, msg.inner_sport, data, msg)
    return [(s.data, s.dst) for s in ms.poll_sends(100.0)]


def fast_answer(ms: MapServer | MapResolver, data: bytes) -> list[tuple[bytes, Endpoint]]:
    ms.receive(data, ITR, MS_ADDR, 100.0)
    return [(s.data, s.dst) for s in ms.poll_sends(100.0)]


def lane_answer(eng: MapServer | MapResolver, data: bytes) -> list[tuple[bytes, Endpoint]]:
    """What ``receive_fast`` (the daemon's Map-Request lane) sends: its returned answer
    or, when it returns None, what it queued."""
    out = eng.receive_fast(data, ITR, MS_ADDR, 100.0)
    queued = [(s.data, s.dst) for s in eng.poll_sends(100.0)]
    if out is None:
        return queued
    assert not queued
    return [(out[0], Endpoint(ip_address(out[1]), out[2]))]


PREFIX_BASES = [0x0A000000, 0x0AC80000, 0x0AC90000, 0xAC100000, 0xC0A80000]

registration = st.tuples(
    st.sampled_from(PREFIX_BASES),
    st.integers(0, 0xFFFF),
    st.sampled_from([8, 12, 16, 20, 24, 28, 32]),
    st.sampled_from(["203.0.113.1", "203.0.113.2", "198.51.100.7"]),
    st.sampled_from([1440, 60, 0]),
    st.booleans(),
)
request = st.tuples(
    st.sampled_from([*PREFIX_BASES, 0x0B000000, 0x00000000, 0xE0000000]),
    st.integers(0, 0xFFFFFF),
    st.sampled_from([32, 32, 32, 24, 16, 8, 0]),
    st.integers(0, 2**64 - 1),
)


def _prefix(base: int, offset: int, mask: int) -> str:
    addr = IPv4Address((base + (offset << 8)) & 0xFFFFFFFF)
    net = int(addr) & ((0xFFFFFFFF << (32 - mask)) & 0xFFFFFFFF)
    return f"{IPv4Address(net)}/{mask}"


@settings(max_examples=150, deadline=None)
@example(  # a shorter requested prefix straddling a registration must not seed the cache
    regs=[],
    steps=[("req", (0x0A000000, 0, 32, 0)), ("reg", (0x0A000000, 0, 20, "203.0.113.1", 1440, False)),
           ("req", (0x0A000000, 0, 16, 0)), ("req", (0x0A000000, 4096, 32, 0))],
)
@given(
    regs=st.lists(registration, max_size=12),
    steps=st.lists(st.one_of(request.map(lambda r: ("req", r)), registration.map(lambda r: ("reg", r))), max_size=30),
)
def test_fast_replies_equal_full_decoder_replies(regs: list[tuple], steps: list[tuple]) -> None:  # type: ignore[type-arg]
    fast, slow = pair()
    # a Map-Resolver co-located with a third copy takes the same fast path
    mr_ms = pair()[0]
    mr = MapResolver(MapResolverConfig(map_request_rate=0), map_server=mr_ms)
    # and both through receive_fast (the daemon's lane: answer returned, not queued)
    lane_ms, lane_mr_ms = pair()[0], pair()[0]
    lane_mr = MapResolver(MapResolverConfig(map_request_rate=0), map_server=lane_mr_ms)
    everyone = (fast, slow, mr_ms, lane_ms, lane_mr_ms)
    for base, off, mask, rloc, ttl, proxy in regs:
        do_register(everyone, _prefix(base, off, mask), rloc, ttl, proxy)
    for kind, step in steps:
        if kind == "reg":
            base, off, mask, rloc, ttl, proxy = step
            do_register(everyone, _prefix(base, off, mask), rloc, ttl, proxy)
            continue
        base, off, mask, nonce = step
        eid = IPv4Address((base + off) & 0xFFFFFFFF)
        data = ecm(map_request(eid, mask_len=mask, nonce=nonce), sport=4000 + mask)
        want = slow_answer(slow, data)
        assert fast_answer(fast, data) == want, (eid, mask)
        assert fast_answer(mr, data) == want, (eid, mask)
        assert lane_answer(lane_ms, data) == want, (eid, mask)
        assert lane_answer(lane_mr, data) == want, (eid, mask)
        plain = map_request(eid, mask_len=mask, nonce=nonce).to_bytes()
        assert lane_answer(lane_ms, plain) == fast_answer(fast, plain), (eid, mask)
        assert lane_answer(lane_mr, plain) == fast_answer(mr, plain), (eid, mask)
        fast_answer(slow, plain)  # keeps the request counters of `slow` and `fast` comparable
    assert fast.counters.requests == slow.counters.requests
    assert lane_ms.counters.as_dict() == fast.counters.as_dict()
    assert lane_mr.counters.as_dict() == mr.counters.as_dict()
    assert lane_mr_ms.counters.as_dict() == mr_ms.counters.as_dict()


def test_lane_falls_back_to_receive() -> None:
    """``receive_fast`` handles everything ``receive`` does, the same way."""
    for make in (lambda: pair()[0], lambda: MapResolver(MapResolverConfig(map_request_rate=0), map_server=pair()[0])):
        a, b = make(), make()
        for data in (b"", b"\x80", ecm(map_request("10.1.2.3"), to_ms=True), ecm(map_request("10.1.2.3"))[:40],
                     map_request("10.1.2.3", probe=True).to_bytes(),
                     register([record("10.1.0.0/16", "203.0.113.1")], proxy_reply=True)):
            b.receive(data, ITR, MS_ADDR, 100.0)
            assert lane_answer(a, data) == [(s.data, s.dst) for s in b.poll_sends(100.0)]
        assert a.counters.as_dict() == b.counters.as_dict()


def test_negative_cache_follows_registrations() -> None:
    fast, slow = pair()
    data = ecm(map_request("10.1.2.3"))
    assert fast_answer(fast, data) == slow_answer(slow, data)  # 10.0.0.0/9-ish negative, cached
    do_register((fast, slow), "10.1.2.0/24", "203.0.113.1", 1440, True)
    a = fast_answer(fast, data)
    assert a == slow_answer(slow, data)
    assert parse_control(a[0][0]).records[0].locators  # type: ignore[union-attr]
    # and a neighbour's negative prefix shrinks around the new registration
    data2 = ecm(map_request("10.1.3.3"))
    assert fast_answer(fast, data2) == slow_answer(slow, data2)
    do_register((fast, slow), "10.1.2.0/24", "203.0.113.1", 0, True)  # withdrawn
    assert fast_answer(fast, data) == slow_answer(slow, data)
    assert not parse_control(fast_answer(fast, data)[0][0]).records[0].locators  # type: ignore[union-attr]
