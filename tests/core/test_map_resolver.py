"""Map-Resolver engine: forwarding to remote Map-Servers, local hand-over, negative replies,
rate limit, robustness."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from harness import MS, Net, ecm, ep, map_request, record, register, reply_of, site
from hypothesis import given, settings
from hypothesis import strategies as st

from lispnet.core.map_resolver import MapResolver, MapResolverConfig, MapServerPeer
from lispnet.core.map_server import MapServer, SiteRegistered
from lispnet.wire.control import Ecm, MapNotify, MapReply, parse_control
from lispnet.wire.enums import Action
from lispnet.wire.prefix import EidPrefix

P = EidPrefix.parse
MR = ep("10.0.0.2")
MS2 = ep("10.0.0.3")
ITR = ep("192.0.2.10", 61000)
ETR1 = ep("203.0.113.1", 40001)


def test_forward_to_remote_ms_then_ms_forwards_to_etr() -> None:
    net = Net()
    ms = MapServer([site("s1", ["10.1.0.0/16"])], rng=random.Random(1))
    mr = MapResolver(MapResolverConfig(map_servers=(MapServerPeer(MS, (P("10.0.0.0/8"),)),)))
    net.add(MS, ms)
    net.add(MR, mr)
    net.send(register([record("10.1.0.0/16", "203.0.113.1")]), ETR1, MS)
    req = map_request("10.1.2.3")
    raw = ecm(req, sport=61234)
    out = net.send(raw, ITR, MR)
    # MR -> MS (M bit) -> ETR (E bit, M cleared); the inner headers never change
    assert len(out) == 1 and out[0].dst == ep("203.0.113.1", 4342)
    fwd = parse_control(out[0].data)
    assert isinstance(fwd, Ecm) and fwd.to_etr and not fwd.to_ms and fwd.inner_sport == 61234 and fwd.message == req
    assert out[0].data[1:] == raw[1:]
    assert mr.counters.requests["forwarded-to-map-server"] == 1
    assert ms.counters.messages_in["ecm"] == 1 and ms.counters.requests["forwarded-to-etr"] == 1


def test_pick_map_server_by_prefix_else_first_catch_all() -> None:
    net = Net()
    peers = (
        MapServerPeer(ep("10.0.0.8"), (P("10.8.0.0/16"),)),
        MapServerPeer(ep("10.0.0.9"), ()),
        MapServerPeer(ep("10.0.0.10"), ()),
    )
    mr = MapResolver(MapResolverConfig(map_servers=peers))
    net.add(MR, mr)
    (s1,) = net.send(ecm(map_request("10.8.1.1")), ITR, MR)
    assert s1.dst == ep("10.0.0.8") and parse_control(s1.data).to_ms  # type: ignore[union-attr]
    (s2,) = net.send(ecm(map_request("172.16.1.1")), ITR, MR)
    assert s2.dst == ep("10.0.0.9")
    # a plain request is wrapped in an ECM with the M bit, inner port = its source port
    (s3,) = net.send(map_request("10.8.1.1").to_bytes(), ep("192.0.2.10", 50000), MR)
    e = parse_control(s3.data)
    assert isinstance(e, Ecm) and e.to_ms and e.inner_sport == 50000


def test_negative_reply_when_no_ms_claims_the_eid() -> None:
    net = Net()
    peers = (MapServerPeer(ep("10.0.0.8"), (P("10.1.0.0/16"), P("10.2.0.0/16"))),)
    mr = MapResolver(MapResolverConfig(map_servers=peers, negative_action=Action.DROP))
    net.add(MR, mr)
    req = map_request("10.3.4.5", nonce=77)
    (s,) = net.send(ecm(req, sport=40000), ITR, MR)
    assert s.dst == ep("192.0.2.10", 40000)
    reply = parse_control(s.data)
    assert isinstance(reply, MapReply) and reply.nonce == 77
    rec = reply.records[0]
    assert rec.is_negative and rec.prefix == P("10.3.0.0/16") and rec.ttl == 15 and rec.action == Action.DROP
    # no Map-Server at all: everything is non-EID as far as we know
    mr2 = MapResolver()
    net.add(ep("10.0.0.4"), mr2)
    (s,) = net.send(ecm(map_request("2001:db8::1", itr_rlocs=("2001:db8:ffff::1",))), ITR, ep("10.0.0.4"))
    rec = reply_of(s.data).records[0]
    assert rec.prefix == P("::/0") and rec.ttl == 15 and rec.action == Action.NATIVELY_FORWARD


def test_colocated_ms_hands_over_locally() -> None:
    net = Net()
    ms = MapServer([site("s1", ["10.1.0.0/16", "10.2.0.0/16"])], rng=random.Random(1))
    mr = MapResolver(map_server=ms)
    net.add(MS, mr)  # one engine at the node address: MR in front, MS behind it
    # Map-Registers pass through to the MS; its Map-Notify comes out of the MR's poll_sends
    (n,) = net.send(register([record("10.1.0.0/16", "203.0.113.1")], proxy_reply=True), ETR1, MS)
    assert isinstance(parse_control(n.data), MapNotify) and n.dst == ETR1
    assert any(isinstance(e, SiteRegistered) for e in net.take_events())
    (r,) = net.send(ecm(map_request("10.1.1.1")), ITR, MS)
    assert [str(x.address) for x in reply_of(r.data).records[0].locators] == ["203.0.113.1"]
    # configured but unregistered: 1 minute; non-EID: 15 minutes
    (r,) = net.send(ecm(map_request("10.2.1.1")), ITR, MS)
    assert reply_of(r.data).records[0].ttl == 1
    (r,) = net.send(ecm(map_request("10.3.1.1")), ITR, MS)
    assert reply_of(r.data).records[0].ttl == 15
    assert mr.counters.requests["handed-to-map-server"] == 3
    # timers of the MS are driven through the MR
    assert mr.next_deadline() == net.now + 180
    net.advance_to(net.now + 181)
    assert len(ms.registrations) == 0


def test_rate_limit_per_source() -> None:
    net = Net()
    mr = MapResolver(MapResolverConfig(map_request_rate=2.0, map_request_burst=3))
    net.add(MR, mr)
    flood = ecm(map_request("10.3.4.5"))
    assert sum(len(net.send(flood, ITR, MR)) for _ in range(20)) == 3
    assert mr.counters.requests["rate-limited"] == 17
    assert len(net.send(flood, ep("192.0.2.99", 1), MR)) == 1
    net.now += 0.5
    assert len(net.send(flood, ITR, MR)) == 1


def test_plain_requests_can_be_refused() -> None:
    net = Net()
    mr = MapResolver(MapResolverConfig(accept_plain_requests=False))
    net.add(MR, mr)
    assert net.send(map_request("10.3.4.5").to_bytes(), ITR, MR) == []
    assert mr.counters.dropped["plain-request"] == 1


def test_unusable_eid_dropped() -> None:
    from lispnet.wire.address import NO_ADDRESS
    from lispnet.wire.control import MapRequest, RequestRecord

    net = Net()
    mr = MapResolver()
    net.add(MR, mr)
    req = MapRequest(1, itr_rlocs=(IPv4Address("192.0.2.10"),), records=(RequestRecord(NO_ADDRESS, 0),))
    assert net.send(ecm(req), ITR, MR) == []
    assert mr.counters.dropped["unusable-eid"] == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=160))
def test_random_bytes_never_raise(data: bytes) -> None:
    ms = MapServer([site("s1", ["10.1.0.0/16"])])
    for mr in (MapResolver(), MapResolver(map_server=ms),
               MapResolver(MapResolverConfig(map_servers=(MapServerPeer(MS),)))):
        for first in (b"", b"\x10", b"\x80", b"\x81", b"\x30"):
            mr.receive(first + data, ITR, MR, 0.0)
        mr.poll_sends(0.0)
        mr.on_timer(1e9)
