"""ETR engine with a fake clock: registration cycle, Map-Notify nonce check, Map-Replies."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address

from lispnet.core.engine import Endpoint
from lispnet.core.etr import DatabaseMapping, EtrConfig, EtrEngine, EtrRegistered, MapServerPeer
from lispnet.wire.control import (
    Ecm,
    MapNotify,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    parse_control,
)
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import LocatorRecord

MS1 = IPv4Address("192.0.2.1")
MS2 = IPv4Address("192.0.2.2")
RLOC = IPv4Address("192.0.2.20")
ITR = IPv4Address("192.0.2.10")
KEY = b"secret"
EID = EidPrefix.parse("10.2.0.0/24")


def make_etr() -> EtrEngine:
    counter = itertools.count(77)
    cfg = EtrConfig(
        mappings=(DatabaseMapping(EID, (LocatorRecord(RLOC),)),
                  DatabaseMapping(EidPrefix.parse("10.2.0.0/24", 100), (LocatorRecord(RLOC),))),
        map_servers=(MapServerPeer(MS1, KEY), MapServerPeer(MS2, KEY)),
        rlocs=(RLOC,),
    )
    return EtrEngine(cfg, lambda: next(counter), now=0.0)


def registers(etr: EtrEngine, now: float) -> dict[IPv4Address, MapRegister]:
    out = {}
    for s in etr.poll_sends(now):
        msg = parse_control(s.data)
        assert isinstance(msg, MapRegister)
        assert isinstance(s.dst.address, IPv4Address)
        out[s.dst.address] = msg
    return out


def notify_for(reg: MapRegister, key: bytes = KEY, nonce: int | None = None) -> bytes:
    n = MapNotify(nonce=reg.nonce if nonce is None else nonce, records=reg.records,
                  key_id=reg.key_id, alg_id=reg.alg_id)
    return n.signed(key).to_bytes()


def test_registration_cycle_and_nonce_check() -> None:
    etr = make_etr()
    assert etr.next_deadline() == 0.0
    etr.on_timer(0.0)
    regs = registers(etr, 0.0)
    assert set(regs) == {MS1, MS2}
    reg = regs[MS1]
    assert reg.want_map_notify and reg.verify(KEY)
    assert {r.prefix for r in reg.records} == {EID, EidPrefix.parse("10.2.0.0/24", 100)}
    assert reg.records[0].locators[0].local
    # retransmitted (same nonce) until notified
    etr.on_timer(1.0)
    again = registers(etr, 1.0)
    assert again[MS1].nonce == reg.nonce
    # a Map-Notify with a wrong nonce or a bad key is refused
    etr.receive(notify_for(reg, nonce=reg.nonce + 1), Endpoint(MS1, 4342), Endpoint(RLOC, 4342), 1.5)
    etr.receive(notify_for(reg, key=b"wrong"), Endpoint(MS1, 4342), Endpoint(RLOC, 4342), 1.5)
    assert etr.counters["map-notify-bad-nonce"] == 1
    assert etr.counters["map-notify-auth-failure"] == 1
    assert not etr.poll_events()
    etr.receive(notify_for(reg), Endpoint(MS1, 4342), Endpoint(RLOC, 4342), 1.6)
    (ev,) = etr.poll_events()
    assert isinstance(ev, EtrRegistered) and ev.map_server == MS1
    assert not etr.registered  # MS2 has not answered yet
    etr.on_timer(3.0)  # MS2 retransmit only (backoff 2 s)
    assert set(registers(etr, 3.0)) == {MS2}
    etr.receive(notify_for(regs[MS2]), Endpoint(MS2, 4342), Endpoint(RLOC, 4342), 3.1)
    assert etr.registered
    # next round 60 s after the first
    assert etr.next_deadline() == 60.0
    etr.on_timer(60.0)
    new = registers(etr, 60.0)
    assert set(new) == {MS1, MS2} and new[MS1].nonce != reg.nonce


def test_authoritative_map_reply_to_forwarded_request() -> None:
    etr = make_etr()
    req = MapRequest(nonce=5, source_eid=IPv4Address("10.1.0.10"), itr_rlocs=(ITR,),
                     records=(RequestRecord.for_prefix(EidPrefix.parse("10.2.0.10/32")),))
    ecm = Ecm(message=req, inner_src=IPv4Address("10.1.0.10"), inner_dst=IPv4Address("10.2.0.10"),
              inner_sport=4342, to_etr=True)
    etr.receive(ecm.to_bytes(), Endpoint(MS1, 4342), Endpoint(RLOC, 4342), 5.0)
    (send,) = etr.poll_sends(5.0)
    assert send.dst == Endpoint(ITR, 4342)
    reply = parse_control(send.data)
    assert isinstance(reply, MapReply) and reply.nonce == 5
    (rec,) = reply.records
    assert rec.authoritative and rec.prefix == EID and rec.locators[0].address == RLOC


def test_rloc_probe_reply_sets_probed() -> None:
    etr = make_etr()
    req = MapRequest(nonce=9, itr_rlocs=(ITR,), probe=True,
                     records=(RequestRecord.for_prefix(EidPrefix.parse("10.2.0.0/24", 100)),))
    etr.receive(req.to_bytes(), Endpoint(ITR, 4342), Endpoint(RLOC, 4342), 1.0)
    (send,) = etr.poll_sends(1.0)
    reply = parse_control(send.data)
    assert isinstance(reply, MapReply) and reply.probe
    assert reply.records[0].locators[0].probed
    assert reply.records[0].prefix.iid == 100


def test_request_for_foreign_eid_is_not_answered() -> None:
    etr = make_etr()
    req = MapRequest(nonce=9, itr_rlocs=(ITR,), records=(RequestRecord.for_prefix(EidPrefix.parse("10.9.0.1/32")),))
    etr.receive(req.to_bytes(), Endpoint(ITR, 4342), Endpoint(RLOC, 4342), 1.0)
    assert etr.poll_sends(1.0) == []
    assert etr.counters["map-request-not-ours"] == 1


def test_lsb_of_local_site() -> None:
    etr = make_etr()
    assert etr.lsb(0) == 0b1
