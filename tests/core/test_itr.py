"""ITR engine with a fake clock: miss -> Map-Request -> Map-Reply -> cache -> expiry."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv6Address, ip_address

from lispnet.core.engine import Endpoint
from lispnet.core.itr import (
    ItrConfig,
    ItrEngine,
    MappingInstalled,
    MappingRemoved,
    PacketsReleased,
    ResolutionFailed,
)
from lispnet.dataplane.encap import choose_locator
from lispnet.wire.control import Ecm, MapReply, MapRequest, parse_control
from lispnet.wire.enums import Action
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord

MR1 = IPv4Address("192.0.2.1")
MR2 = IPv4Address("192.0.2.2")
ME = IPv4Address("192.0.2.10")
PETR = IPv4Address("192.0.2.99")
H1 = IPv4Address("10.1.0.10")
H2 = IPv4Address("10.2.0.10")


def make_itr(**kw: object) -> ItrEngine:
    counter = itertools.count(1000)
    cfg = ItrConfig(map_resolvers=(MR1, MR2), itr_rlocs=(ME,), **kw)  # type: ignore[arg-type]
    return ItrEngine(cfg, lambda: next(counter))


def ipv4_packet(src: IPv4Address, dst: IPv4Address, sport: int = 1000, dport: int = 2000) -> bytes:
    head = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]) + src.packed + dst.packed
    return head + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + b"\x00\x08\x00\x00"


def sent_requests(itr: ItrEngine, now: float) -> list[tuple[IPv4Address | IPv6Address, MapRequest, Ecm]]:
    out = []
    for s in itr.poll_sends(now):
        ecm = parse_control(s.data)
        assert isinstance(ecm, Ecm)
        assert isinstance(ecm.message, MapRequest)
        out.append((s.dst.address, ecm.message, ecm))
    return out


def reply_for(req: MapRequest, prefix: str, locs: list[LocatorRecord], ttl: int = 10, iid: int = 0,
              action: Action = Action.NO_ACTION) -> bytes:
    rec = EidRecord.for_prefix(EidPrefix.parse(prefix, iid), locs, ttl=ttl, action=action, authoritative=True)
    return MapReply(nonce=req.nonce, records=(rec,)).to_bytes()


def test_miss_request_reply_cache_expiry() -> None:
    itr = make_itr()
    pkt = ipv4_packet(H1, H2)
    itr.handle_miss(0, H1, H2, pkt, now=0.0)
    itr.handle_miss(0, H1, H2, pkt, now=0.1)  # second miss: no second request, queued
    reqs = sent_requests(itr, 0.1)
    assert len(reqs) == 1
    dst, req, ecm = reqs[0]
    assert dst == MR1
    assert req.records[0].prefix == EidPrefix.host(H2)
    assert req.itr_rlocs == (ME,)
    assert req.source_eid == H1
    assert ecm.inner_dst == H2 and ecm.inner_dport == 4342
    itr.receive(reply_for(req, "10.2.0.0/24", [LocatorRecord(IPv4Address("198.51.100.2"))]),
                Endpoint(IPv4Address("198.51.100.2"), 4342), Endpoint(ME, 4342), now=0.5)
    events = itr.poll_events()
    installed = [e for e in events if isinstance(e, MappingInstalled)]
    released = [e for e in events if isinstance(e, PacketsReleased)]
    assert installed and installed[0].entry.prefix == EidPrefix.parse("10.2.0.0/24")
    assert installed[0].entry.locators[0].address == IPv4Address("198.51.100.2")
    assert released and released[0].packets == (pkt, pkt)
    entry = itr.map_cache.lookup(0, IPv4Address("10.2.0.77"), 1.0)
    assert entry is not None and not entry.is_negative
    # expiry at 10 minutes
    assert itr.next_deadline() == 0.5 + 600
    itr.on_timer(0.5 + 600)
    removed = [e for e in itr.poll_events() if isinstance(e, MappingRemoved)]
    assert removed and removed[0].reason == "expired"
    assert len(itr.map_cache) == 0


def test_unknown_nonce_ignored() -> None:
    itr = make_itr()
    bogus = MapReply(nonce=42, records=()).to_bytes()
    itr.receive(bogus, Endpoint(MR1, 4342), Endpoint(ME, 4342), 0.0)
    assert itr.counters["map-reply-unknown-nonce"] == 1


def test_retransmit_backoff_and_failover() -> None:
    itr = make_itr(max_attempts=3)
    itr.handle_miss(0, H1, H2, b"", 0.0)
    first = sent_requests(itr, 0.0)
    assert [d for d, _, _ in first] == [MR1]
    assert itr.next_deadline() == 1.0
    itr.on_timer(1.0)
    second = sent_requests(itr, 1.0)
    assert [d for d, _, _ in second] == [MR2]  # failover to the next resolver
    assert second[0][1].nonce == first[0][1].nonce
    assert itr.next_deadline() == 3.0  # doubled timeout
    itr.on_timer(3.0)
    assert [d for d, _, _ in sent_requests(itr, 3.0)] == [MR1]
    itr.on_timer(7.0)
    assert sent_requests(itr, 7.0) == []
    assert any(isinstance(e, ResolutionFailed) for e in itr.poll_events())
    # hold-down: no new request right away
    itr.handle_miss(0, H1, H2, b"", 7.5)
    assert sent_requests(itr, 7.5) == []
    itr.handle_miss(0, H1, H2, b"", 20.0)
    assert len(sent_requests(itr, 20.0)) == 1


def test_rate_limit_spaces_requests() -> None:
    itr = make_itr(min_request_interval_s=0.5)
    itr.handle_miss(0, H1, H2, b"", 0.0)
    itr.handle_miss(0, H1, IPv4Address("10.3.0.1"), b"", 0.1)
    assert len(sent_requests(itr, 0.1)) == 1
    assert itr.next_deadline() == 0.5
    itr.on_timer(0.5)
    assert len(sent_requests(itr, 0.5)) == 1


def test_negative_reply_uses_petr() -> None:
    itr = make_itr(petrs=(PETR,))
    dst = IPv4Address("203.0.113.5")
    itr.handle_miss(0, H1, dst, b"", 0.0)
    (_, req, _), = sent_requests(itr, 0.0)
    itr.receive(reply_for(req, "203.0.0.0/8", [], ttl=15, action=Action.NATIVELY_FORWARD),
                Endpoint(MR1, 4342), Endpoint(ME, 4342), 0.2)
    (inst,) = [e for e in itr.poll_events() if isinstance(e, MappingInstalled)]
    assert inst.entry.use_petr and inst.entry.locators[0].address == PETR
    assert inst.entry.action == Action.NATIVELY_FORWARD


def test_negative_reply_without_petr_forwards_natively_or_drops() -> None:
    itr = make_itr()
    itr.handle_miss(0, H1, IPv4Address("203.0.113.5"), b"", 0.0)
    (_, req, _), = sent_requests(itr, 0.0)
    itr.receive(reply_for(req, "203.0.0.0/8", [], ttl=15, action=Action.NATIVELY_FORWARD),
                Endpoint(MR1, 4342), Endpoint(ME, 4342), 0.2)
    (inst,) = [e for e in itr.poll_events() if isinstance(e, MappingInstalled)]
    assert not inst.entry.use_petr and not inst.entry.locators
    itr.handle_miss(0, H1, IPv4Address("10.9.9.9"), b"", 1.0)
    (_, req, _), = sent_requests(itr, 1.0)
    itr.receive(reply_for(req, "10.9.0.0/16", [], ttl=1, action=Action.DROP),
                Endpoint(MR1, 4342), Endpoint(ME, 4342), 1.2)
    (inst,) = [e for e in itr.poll_events() if isinstance(e, MappingInstalled)]
    assert inst.entry.action == Action.DROP


def test_instance_id_and_ipv6_request() -> None:
    itr = make_itr()
    src6, dst6 = IPv6Address("fd00:1::10"), IPv6Address("fd00:2::10")
    itr.handle_miss(100, src6, dst6, b"", 0.0)
    (_, req, ecm), = sent_requests(itr, 0.0)
    assert req.records[0].prefix == EidPrefix.host(dst6, 100)
    assert ecm.inner_src == src6
    itr.receive(reply_for(req, "fd00:2::/64", [LocatorRecord(ip_address("2001:db8::2"))], iid=100),
                Endpoint(MR1, 4342), Endpoint(ME, 4342), 0.3)
    assert itr.map_cache.lookup(100, IPv6Address("fd00:2::99")) is not None
    assert itr.map_cache.lookup(0, IPv6Address("fd00:2::99")) is None


def test_rloc_choice_priority_weight_and_flow_stickiness() -> None:
    locs = [(1, 50, True), (1, 50, True), (2, 100, True), (255, 100, True)]
    picks = {choose_locator(locs, h) for h in range(1000)}
    assert picks == {0, 1}
    # one flow, one RLOC
    assert all(choose_locator(locs, 12345) == choose_locator(locs, 12345) for _ in range(10))
    # weights: 90/10 split roughly
    weighted = [(1, 90, True), (1, 10, True)]
    counts = [0, 0]
    for h in range(10000):
        i = choose_locator(weighted, h * 2654435761 & 0xFFFFFFFF)
        assert i is not None
        counts[i] += 1
    assert 8500 < counts[0] < 9500
    # best priority down -> next priority takes over; all unusable -> None
    assert choose_locator([(1, 100, False), (2, 100, True)], 7) == 1
    assert choose_locator([(255, 100, True), (1, 100, False)], 7) is None


def test_lsb_marks_locators_down_then_up() -> None:
    itr = make_itr()
    itr.handle_miss(0, H1, H2, b"", 0.0)
    (_, req, _), = sent_requests(itr, 0.0)
    locs = [LocatorRecord(IPv4Address("198.51.100.2")), LocatorRecord(IPv4Address("198.51.100.3"))]
    itr.receive(reply_for(req, "10.2.0.0/24", locs), Endpoint(MR1, 4342), Endpoint(ME, 4342), 0.1)
    itr.poll_events()
    assert itr.apply_lsb(0, H2, 0b01, 1.0)
    (inst,) = [e for e in itr.poll_events() if isinstance(e, MappingInstalled)]
    assert [loc.up for loc in inst.entry.locators] == [True, False]
    assert itr.apply_lsb(0, H2, 0b11, 2.0)
    (inst,) = [e for e in itr.poll_events() if isinstance(e, MappingInstalled)]
    assert [loc.up for loc in inst.entry.locators] == [True, True]


def test_queue_bounded() -> None:
    itr = make_itr(queue_len=2)
    for _ in range(5):
        itr.handle_miss(0, H1, H2, b"x", 0.0)
    assert itr.counters["drop-queue-full"] == 3
