"""Map-Server engine: registration, Map-Notify, expiry, merge, rejections, Map-Request
handling, negative prefixes, rate limit, robustness, snapshot/restore, interop replay."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from harness import MS, Net, ecm, ep, map_request, record, register, reply_of, site
from hypothesis import given, settings
from hypothesis import strategies as st

from lispnet.core.engine import Endpoint
from lispnet.core.map_server import (
    MapServer,
    MapServerConfig,
    RegistrationExpired,
    RegistrationRejected,
    RegistrationWithdrawn,
    SiteRegistered,
)
from lispnet.db.sites import AllowedPrefix, SiteKey, SitePolicy
from lispnet.wire.auth import verify_raw
from lispnet.wire.control import Ecm, MapNotify, MapReply, MapRequest, RequestRecord, parse_control
from lispnet.wire.enums import Action, AuthAlg
from lispnet.wire.lcaf import LcafMulticastInfo
from lispnet.wire.prefix import EidPrefix

ETR1 = ep("203.0.113.1", 40001)
ETR2 = ep("203.0.113.2", 40002)
ITR = ep("192.0.2.10", 61000)
P = EidPrefix.parse


def make(*sites: SitePolicy, **cfg: object) -> tuple[Net, MapServer]:
    net = Net()
    ms = MapServer(sites, MapServerConfig(**cfg), rng=random.Random(1))  # type: ignore[arg-type]
    net.add(MS, ms)
    return net, ms


def one(sends: list) -> tuple[bytes, Endpoint]:  # type: ignore[type-arg]
    assert len(sends) == 1, sends
    return sends[0].data, sends[0].dst


# --- registration -------------------------------------------------------------------------


def test_register_installs_and_notifies_at_source_port() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    data, dst = one(net.send(register([record("10.1.0.0/16", "203.0.113.1")]), ETR1, MS))
    assert dst == ETR1  # the Map-Register's source address AND port
    assert verify_raw(data, b"secret")
    notify = parse_control(data)
    assert isinstance(notify, MapNotify)
    assert notify.nonce == 0x1122334455667788
    assert notify.alg_id == AuthAlg.HMAC_SHA_256_128 and len(notify.auth_data) == 32 and notify.key_id == 0
    assert [r.prefix for r in notify.records] == [P("10.1.0.0/16")]
    assert notify.verify(b"secret")
    regs = ms.list_registrations()
    assert len(regs) == 1 and regs[0]["site"] == "s1" and regs[0]["rlocs"][0]["address"] == "203.0.113.1"
    evs = net.take_events()
    assert isinstance(evs[0], SiteRegistered) and evs[0].new and evs[0].prefix == P("10.1.0.0/16")
    assert ms.counters.messages_in["map-register"] == 1 and ms.counters.messages_out["map-notify"] == 1


def test_no_notify_without_m_bit() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    assert net.send(register([record("10.1.0.0/16", "203.0.113.1")], want_map_notify=False), ETR1, MS) == []
    assert len(ms.registrations) == 1


def test_refresh_then_expiry_after_180s() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    t0 = net.now
    net.send(register([record("10.1.0.0/16", "203.0.113.1")]), ETR1, MS)
    net.advance_to(t0 + 60)
    net.send(register([record("10.1.0.0/16", "203.0.113.1")]), ETR1, MS)
    net.take_events()
    reg = ms.list_registrations()[0]["registrants"][0]
    assert reg["first-registered"] == t0 and reg["last-registered"] == t0 + 60 and reg["registrations"] == 2
    assert reg["expires-at"] == t0 + 60 + 180
    # expiry is lazy (core/expiry.py): the engine may wake at the first deadline and re-file
    first = ms.next_deadline()
    assert first is not None and first <= t0 + 60 + 180
    net.advance_to(t0 + 60 + 179.9)
    assert len(ms.registrations) == 1
    net.advance_to(t0 + 60 + 180)
    assert len(ms.registrations) == 0
    evs = net.take_events()
    assert [type(e) for e in evs] == [RegistrationExpired]
    assert ms.next_deadline() is None


def test_t_bit_uses_record_ttl() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    t0 = net.now
    net.send(register([record("10.1.0.0/16", "203.0.113.1", ttl=10)], use_ttl=True), ETR1, MS)
    assert ms.next_deadline() == t0 + 600
    net.advance_to(t0 + 599)
    assert len(ms.registrations) == 1
    net.advance_to(t0 + 600)
    assert len(ms.registrations) == 0


def test_ttl_zero_withdraws() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    net.send(register([record("10.1.0.0/16", "203.0.113.1")]), ETR1, MS)
    net.send(register([record("10.1.0.0/16", "203.0.113.1", ttl=0)]), ETR1, MS)
    assert len(ms.registrations) == 0
    assert any(isinstance(e, RegistrationWithdrawn) for e in net.take_events())
    # the lazy expiry may still wake once for the withdrawn registration; nothing expires
    net.advance_to(net.now + 181)
    assert not net.take_events()
    assert ms.next_deadline() is None


def test_merge_two_etrs_by_xtr_id() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    net.send(register([record("10.1.0.0/16", "203.0.113.1")], xtr_id=1, site_id=9, merge=True, proxy_reply=True), ETR1, MS)
    net.send(register([record("10.1.0.0/16", "203.0.113.2")], xtr_id=2, site_id=9, merge=True, proxy_reply=True), ETR2, MS)
    regs = ms.list_registrations()
    assert len(regs) == 1 and len(regs[0]["registrants"]) == 2
    assert [r["address"] for r in regs[0]["rlocs"]] == ["203.0.113.1", "203.0.113.2"]
    # the proxy reply carries the union
    data, dst = one(net.send(ecm(map_request("10.1.2.3")), ITR, MS))
    reply = parse_control(data)
    assert isinstance(reply, MapReply)
    assert [str(loc.address) for loc in reply.records[0].locators] == ["203.0.113.1", "203.0.113.2"]
    # a refresh from the same xTR-ID replaces only its own part
    net.send(register([record("10.1.0.0/16", "203.0.113.3")], xtr_id=1, site_id=9, merge=True, proxy_reply=True), ETR1, MS)
    assert [r["address"] for r in ms.list_registrations()[0]["rlocs"]] == ["203.0.113.3", "203.0.113.2"]
    # one registrant expires: the other's RLOCs remain
    net.now += 30
    net.send(register([record("10.1.0.0/16", "203.0.113.2")], xtr_id=2, site_id=9, merge=True, proxy_reply=True), ETR2, MS)
    net.advance_to(net.now + 151)
    assert [r["address"] for r in ms.list_registrations()[0]["rlocs"]] == ["203.0.113.2"]


def test_without_merge_latest_registrant_wins() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    net.send(register([record("10.1.0.0/16", "203.0.113.1")], xtr_id=1), ETR1, MS)
    net.now += 1
    net.send(register([record("10.1.0.0/16", "203.0.113.2")], xtr_id=2), ETR2, MS)
    assert [r["address"] for r in ms.list_registrations()[0]["rlocs"]] == ["203.0.113.2"]
    net2, ms2 = make(site("s1", ["10.1.0.0/16"], force_merge=True))
    net2.send(register([record("10.1.0.0/16", "203.0.113.1")], xtr_id=1), ETR1, MS)
    net2.send(register([record("10.1.0.0/16", "203.0.113.2")], xtr_id=2), ETR2, MS)
    assert len(ms2.list_registrations()[0]["rlocs"]) == 2


def test_rekey_with_two_key_ids() -> None:
    s = SitePolicy(
        "s1",
        {1: SiteKey(AuthAlg.HMAC_SHA_256_128, b"old"), 2: SiteKey(AuthAlg.HMAC_SHA_1_96, b"new")},
        (AllowedPrefix(P("10.1.0.0/16")),),
    )
    net, ms = make(s)
    d1, _ = one(net.send(register([record("10.1.0.0/16", "203.0.113.1")], key=b"old", key_id=1), ETR1, MS))
    assert verify_raw(d1, b"old") and parse_control(d1).key_id == 1  # type: ignore[union-attr]
    d2, _ = one(
        net.send(register([record("10.1.0.0/16", "203.0.113.1")], key=b"new", key_id=2, alg=AuthAlg.HMAC_SHA_1_96), ETR1, MS)
    )
    n2 = parse_control(d2)
    assert isinstance(n2, MapNotify) and n2.key_id == 2 and n2.alg_id == AuthAlg.HMAC_SHA_1_96
    assert len(n2.auth_data) == 20 and n2.verify(b"new")
    # the old key under the new key-id does not verify
    assert net.send(register([record("10.1.0.0/16", "203.0.113.1")], key=b"old", key_id=2, alg=AuthAlg.HMAC_SHA_1_96), ETR1, MS) == []
    assert ms.rejections()[0]["reason"] == "bad-hmac"


@pytest.mark.parametrize(("alg", "length"), [(AuthAlg.HMAC_SHA_1_96, 12), (AuthAlg.HMAC_SHA_1_96, 20),
                                             (AuthAlg.HMAC_SHA_256_128, 16), (AuthAlg.HMAC_SHA_256_128, 32)])
def test_any_auth_length_and_notify_matches_it(alg: AuthAlg, length: int) -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"], alg=alg))
    data, _ = one(net.send(register([record("10.1.0.0/16", "203.0.113.1")], alg=alg, auth_len=length), ETR1, MS))
    n = parse_control(data)
    assert isinstance(n, MapNotify) and n.alg_id == alg and len(n.auth_data) == length and n.verify(b"secret")


def test_partial_acceptance_notifies_accepted_records_only() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    data, _ = one(
        net.send(register([record("10.1.0.0/16", "203.0.113.1"), record("10.1.5.0/24", "203.0.113.1")],
                          xtr_id=5, site_id=1), ETR1, MS)
    )
    n = parse_control(data)
    assert isinstance(n, MapNotify) and [r.prefix for r in n.records] == [P("10.1.0.0/16")]
    assert n.verify(b"secret") and n.xtr_id == 5
    assert ms.rejections()[0]["reason"] == "eid-outside-site-prefixes"


# --- rejections --------------------------------------------------------------------------------


def rejected(net: Net, ms: MapServer, data: bytes, src: Endpoint = ETR1) -> dict[str, object]:
    before = len(ms.registrations)
    assert net.send(data, src, MS) == []
    assert len(ms.registrations) == before
    evs = [e for e in net.take_events() if isinstance(e, RegistrationRejected)]
    assert evs
    rej = [r for r in ms.rejections() if r["reason"] == evs[-1].reason]
    assert rej and rej[0]["last-source"] == str(src)
    return rej[0]


def test_every_rejection_reason() -> None:
    net, ms = make(
        site("s1", ["10.1.0.0/16", ("10.9.0.0/16", True)], allowed_rlocs=(ip_address_net("203.0.113.0/24"),)),
        site("off", ["10.5.0.0/16"], enabled=False),
    )
    r = rejected(net, ms, register([record("172.16.0.0/16", "203.0.113.1")]))
    assert r["reason"] == "eid-not-in-any-site" and r["site"] is None and r["last-eid"] == "172.16.0.0/16"
    r = rejected(net, ms, register([record("10.1.0.0/16", "203.0.113.1")], key_id=7))
    assert r["reason"] == "bad-key-id" and r["site"] == "s1"
    r = rejected(net, ms, register([record("10.1.0.0/16", "203.0.113.1")], alg=AuthAlg.HMAC_SHA_1_96))
    assert r["reason"] == "bad-key-id"
    r = rejected(net, ms, register([record("10.1.0.0/16", "203.0.113.1")], key=b"wrong"))
    assert r["reason"] == "bad-hmac"
    r = rejected(net, ms, register([record("10.1.7.0/24", "203.0.113.1")]))
    assert r["reason"] == "eid-outside-site-prefixes" and r["last-eid"] == "10.1.7.0/24"
    r = rejected(net, ms, register([record("10.1.0.0/16", "198.51.100.1")]))
    assert r["reason"] == "rloc-not-allowed" and "198.51.100.1" in str(r["detail"])
    r = rejected(net, ms, register([record("10.5.0.0/16", "203.0.113.1")]))
    assert r["reason"] == "site-disabled" and r["site"] == "off"
    r = rejected(net, ms, register([]))
    assert r["reason"] == "malformed"
    # accepted: a more-specific where allowed
    assert len(net.send(register([record("10.9.4.0/24", "203.0.113.1")]), ETR1, MS)) == 1
    counts = ms.stats()["rejections"]
    assert counts["bad-key-id"] == 2 and counts["bad-hmac"] == 1
    assert {x["reason"] for x in ms.rejections("s1")} == {
        "bad-key-id", "bad-hmac", "eid-outside-site-prefixes", "rloc-not-allowed"}
    keys = ms.get_site("s1")["authentication-keys"]  # type: ignore[index]
    assert keys == [{"key-id": 0, "algorithm": "hmac-sha-256"}] and "secret" not in str(ms.list_sites())


def ip_address_net(text: str):  # type: ignore[no-untyped-def]
    from ipaddress import ip_network

    return ip_network(text)


def test_table_full() -> None:
    net, ms = make(site("s1", [("10.0.0.0/8", True)]), max_registrations=2)
    for i in range(3):
        net.send(register([record(f"10.{i}.0.0/16", "203.0.113.1")]), ETR1, MS)
    assert len(ms.registrations) == 2
    assert ms.stats()["rejections"]["table-full"] == 1


# --- Map-Requests ------------------------------------------------------------------------------


def test_proxy_reply_to_itr_rloc_at_inner_port() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    net.send(register([record("10.1.0.0/16", "203.0.113.1")], proxy_reply=True), ETR1, MS)
    req = map_request("10.1.2.3", itr_rlocs=("2001:db8::9", "192.0.2.77"))
    data, dst = one(net.send(ecm(req, sport=55555), ep("198.51.100.5", 4342), MS))
    assert dst == ep("192.0.2.77", 55555)  # our family first, inner source port
    reply = parse_control(data)
    assert isinstance(reply, MapReply) and reply.nonce == req.nonce
    rec = reply.records[0]
    assert rec.prefix == P("10.1.0.0/16") and not rec.authoritative and rec.ttl == 1440
    assert [str(loc.address) for loc in rec.locators] == ["203.0.113.1"]
    # cached template: a second request with another nonce is spliced correctly
    req2 = map_request("10.1.9.9", nonce=42)
    data2, _ = one(net.send(ecm(req2), ITR, MS))
    assert parse_control(data2) == MapReply(42, reply.records)
    # plain (not encapsulated) request: reply to the source port
    data3, dst3 = one(net.send(req2.to_bytes(), ep("192.0.2.10", 50001), MS))
    assert dst3 == ep("192.0.2.10", 50001) and parse_control(data3) == MapReply(42, reply.records)
    assert ms.counters.requests["proxy-reply"] == 3


def test_forward_to_etr_in_ecm_with_e_bit() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    net.send(register([record("10.1.0.0/16", "203.0.113.1")]), ETR1, MS)
    req = map_request("10.1.2.3")
    raw = ecm(req, sport=61001, to_ms=True)
    data, dst = one(net.send(raw, ep("198.51.100.5"), MS))
    assert dst == ep("203.0.113.1", 4342)
    fwd = parse_control(data)
    assert isinstance(fwd, Ecm) and fwd.to_etr and not fwd.to_ms
    assert fwd.message == req and fwd.inner_sport == 61001 and fwd.inner_src == IPv4Address("192.0.2.10")
    assert data[1:] == raw[1:]  # same inner headers, byte for byte
    # a plain request gets wrapped in an ECM
    data2, dst2 = one(net.send(req.to_bytes(), ep("192.0.2.10", 50001), MS))
    fwd2 = parse_control(data2)
    assert isinstance(fwd2, Ecm) and fwd2.to_etr and fwd2.inner_sport == 50001 and fwd2.message == req


def test_forward_picks_best_priority_rloc() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    from lispnet.wire.records import EidRecord, LocatorRecord

    rec = EidRecord.for_prefix(
        P("10.1.0.0/16"),
        (LocatorRecord(ip_address("203.0.113.9"), 5), LocatorRecord(ip_address("203.0.113.1"), 1),
         LocatorRecord(ip_address("203.0.113.2"), 255)),
    )
    net.send(register([rec]), ETR1, MS)
    dsts = {one(net.send(ecm(map_request("10.1.2.3")), ITR, MS))[1] for _ in range(10)}
    assert dsts == {ep("203.0.113.1")}


def neg_reply(net: Net, eid: str, iid: int = 0) -> tuple[EidPrefix, int, Action]:
    data, _ = one(net.send(ecm(map_request(eid, iid=iid, itr_rlocs=("192.0.2.10", "2001:db8::10"))), ITR, MS))
    reply = parse_control(data)
    assert isinstance(reply, MapReply)
    rec = reply.records[0]
    assert rec.is_negative and not rec.authoritative
    return rec.prefix, rec.ttl, rec.action


def test_negative_replies_ipv4_ipv6_iids() -> None:
    net, ms = make(
        site("s1", ["10.1.0.0/16", "10.2.0.0/16"]),
        site("s6", [("2001:db8:1::/48", True)]),
        site("s7", ["10.1.0.0/16"], iid=7),
    )
    # non-EID space: 15 minutes, shortest non-EID covering prefix
    assert neg_reply(net, "10.3.4.5") == (P("10.3.0.0/16"), 15, Action.NATIVELY_FORWARD)
    assert neg_reply(net, "192.0.2.1") == (P("128.0.0.0/1"), 15, Action.NATIVELY_FORWARD)
    assert neg_reply(net, "2001:db8:2::1")[:2] == (P("2001:db8:2::/47"), 15)
    assert neg_reply(net, "10.2.0.1", iid=7)[:2] == (P("10.2.0.0/15", iid=7), 15)
    assert neg_reply(net, "10.2.0.1", iid=8)[:2] == (P("0.0.0.0/0", iid=8), 15)
    # configured but unregistered: 1 minute
    assert neg_reply(net, "10.1.0.1") == (P("10.1.0.0/16"), 1, Action.NATIVELY_FORWARD)
    assert neg_reply(net, "10.1.0.1", iid=7)[:2] == (P("10.1.0.0/16", iid=7), 1)
    # with a registered more-specific, the negative prefix stays clear of it
    net.send(register([record("2001:db8:1:1::/64", "203.0.113.1")]), ETR1, MS)
    assert neg_reply(net, "2001:db8:1:8000::1")[:2] == (P("2001:db8:1:8000::/49"), 1)
    c = ms.counters.requests
    assert c["negative-non-eid"] == 5 and c["negative-unregistered"] == 3


def test_configured_action_for_unregistered() -> None:
    net, _ = make(site("s1", ["10.1.0.0/16"], unregistered_action=Action.DROP))
    assert neg_reply(net, "10.1.0.1") == (P("10.1.0.0/16"), 1, Action.DROP)


def test_unusable_eids_are_answered_or_dropped_cleanly() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    # AFI 0 EID (the lispers.net RLOC-probe shape): dropped and counted
    from lispnet.wire.address import NO_ADDRESS

    req = MapRequest(1, itr_rlocs=(IPv4Address("192.0.2.10"),), records=(RequestRecord(NO_ADDRESS, 0),))
    assert net.send(ecm(req), ITR, MS) == []
    assert ms.counters.dropped["unusable-eid"] == 1
    # (S,G) Multicast-Info LCAF as lispers.net asks for ff02::1:ff00:1: a clean negative echo
    mc = LcafMulticastInfo(0, IPv6Address("::"), 0, IPv6Address("ff02::1:ff00:1"), 128)
    req = MapRequest(2, itr_rlocs=(IPv4Address("192.0.2.10"),), records=(RequestRecord(mc, 128),))
    data, _ = one(net.send(ecm(req), ITR, MS))
    reply = parse_control(data)
    assert isinstance(reply, MapReply) and reply.records[0].eid == mc and reply.records[0].ttl == 15
    # RLOC-probes and SMRs are not for the mapping system
    assert net.send(ecm(map_request("10.1.0.1", probe=True)), ITR, MS) == []


def test_rate_limit_requests_not_registers() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]), map_request_rate=10.0, map_request_burst=5)
    flood = ecm(map_request("10.9.9.9"))
    answered = sum(len(net.send(flood, ITR, MS)) for _ in range(50))
    assert answered == 5 and ms.counters.requests["rate-limited"] == 45
    # registrations still go through during the flood
    assert len(net.send(register([record("10.1.0.0/16", "203.0.113.1")]), ETR1, MS)) == 1
    # other sources are not limited, and time refills the bucket
    assert len(net.send(flood, ep("192.0.2.11", 5000), MS)) == 1
    net.now += 0.1
    assert len(net.send(flood, ITR, MS)) == 1


# --- static mappings, service API, snapshot ------------------------------------------------


def test_static_mapping_and_site_admin() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    from lispnet.wire.records import LocatorRecord

    ms.add_static_mapping(P("10.1.0.0/16"), [LocatorRecord(ip_address("203.0.113.7"))], ttl=60)
    data, _ = one(net.send(ecm(map_request("10.1.1.1")), ITR, MS))
    rec = reply_of(data).records[0]
    assert [str(x.address) for x in rec.locators] == ["203.0.113.7"] and rec.ttl == 60
    assert ms.next_deadline() is None  # permanent
    ms.add_static_mapping({"eid-prefix": "172.16.0.0/12", "action": "drop"})
    assert neg_reply(net, "172.16.1.1") == (P("172.16.0.0/12"), 1440, Action.DROP)
    assert len(ms.static_mappings()) == 2
    assert ms.delete_static_mapping(P("172.16.0.0/12")) and not ms.delete_static_mapping(P("172.16.0.0/12"))
    # add a site at run time, then registrations for it are accepted
    ms.add_site({"name": "s2", "authentication-keys": [{"key-id": 3, "algorithm": "hmac-sha-1", "key": "k2"}],
                 "eid-prefixes": [{"prefix": "10.2.0.0/16", "accept-more-specifics": True}]})
    assert len(net.send(register([record("10.2.3.0/24", "203.0.113.1")], key=b"k2", key_id=3,
                                 alg=AuthAlg.HMAC_SHA_1_96), ETR1, MS)) == 1
    assert [s["name"] for s in ms.list_sites()] == ["s1", "s2"]
    assert ms.get_site("s2")["registrations"] == 1  # type: ignore[index]
    assert [r["eid-prefix"] for r in ms.list_registrations(prefix=P("10.2.0.0/16"))] == ["10.2.3.0/24"]
    assert ms.list_registrations(iid=5) == []
    # replacing the site with a narrower policy withdraws what it no longer allows
    ms.add_site(site("s2", ["10.2.0.0/16"], key=b"k2", key_id=3, alg=AuthAlg.HMAC_SHA_1_96))
    assert ms.list_registrations(site="s2") == []
    assert ms.delete_site("s2") and not ms.delete_site("s2") and ms.get_site("s2") is None


def test_snapshot_restore_roundtrip() -> None:
    _, ms = make(
        site("s1", ["10.1.0.0/16", ("2001:db8::/32", True)], key=b"k1", key_id=4,
             allowed_rlocs=(ip_address_net("203.0.113.0/24"),), proxy_reply=True),
        site("s2", ["10.2.0.0/16"], key=bytes(range(200, 216)), iid=9),
    )
    from lispnet.wire.records import LocatorRecord

    ms.add_static_mapping(P("10.7.0.0/16"), [LocatorRecord(ip_address("203.0.113.7"), 2, 30)], ttl=5)
    snap = ms.snapshot()
    import json

    snap2 = json.loads(json.dumps(snap))  # JSON-able
    ms2 = MapServer()
    ms2.restore(snap2)
    assert ms2.snapshot() == snap
    assert ms2.sites["s2"].keys[0].key == bytes(range(200, 216))
    assert ms2.sites["s1"] == ms.sites["s1"]
    ms2.restore({"sites": [], "static-mappings": []}, replace_all=True)
    assert ms2.snapshot() == {"sites": [], "static-mappings": []}
    with pytest.raises((ValueError, KeyError)):
        ms2.restore({"static-mappings": [{"eid-prefix": "nonsense"}]})


# --- robustness --------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    ms = MapServer([site("s1", ["10.1.0.0/16"])])
    for first in (b"", b"\x10", b"\x30", b"\x80", b"\x50"):
        ms.receive(first + data, ETR1, MS, 0.0)
    ms.poll_sends(0.0)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_messages_never_raise(data: st.DataObject) -> None:
    ms = MapServer([site("s1", ["10.1.0.0/16"])])
    ms.add_static_mapping(P("10.1.0.0/16"))
    base = data.draw(st.sampled_from([
        register([record("10.1.0.0/16", "203.0.113.1")]),
        ecm(map_request("10.1.2.3")),
        map_request("10.1.2.3").to_bytes(),
    ]))
    raw = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    ms.receive(bytes(raw[:cut]), ETR1, MS, 0.0)
    ms.receive(bytes(raw), ETR1, MS, 0.0)
    ms.on_timer(1e9)


def test_decode_errors_are_counted() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    assert net.send(b"\x30\x00\x00\x01", ETR1, MS) == []
    assert net.send(b"", ETR1, MS) == []
    assert sum(ms.counters.decode_errors.values()) == 2
    assert ms.stats()["decode-errors"]


# --- interop replay: the captured Map-Registers and Map-Requests --------------------------------

CAPTURES = Path(__file__).parent.parent / "wire" / "captures"


def _udp_frames(name: str) -> list[tuple[str, int, str, int, bytes]]:
    scapy = pytest.importorskip("scapy.all")
    path = CAPTURES / name
    if not path.exists():
        path = Path("/work/shared/interop") / name
    out = []
    for pkt in scapy.rdpcap(str(path)):
        if scapy.UDP in pkt and scapy.IP in pkt:
            u = pkt[scapy.UDP]
            out.append((pkt[scapy.IP].src, u.sport, pkt[scapy.IP].dst, u.dport, bytes(u.payload)))
    return out


def _replay(name: str, sites: list[SitePolicy], key: bytes, ms_addr: str) -> tuple[MapServer, list[bytes]]:
    ms = MapServer(sites, rng=random.Random(3))
    notifies: list[bytes] = []
    frames = _udp_frames(name)
    now = 100.0
    for src, sport, dst, dport, payload in frames:
        if dst != ms_addr or dport != 4342:
            continue
        now += 1
        ms.receive(payload, Endpoint(ip_address(src), sport), Endpoint(ip_address(dst), dport), now)
        for s in ms.poll_sends(now):
            if s.data[0] >> 4 == 4:
                assert s.dst == Endpoint(ip_address(src), sport)
                assert verify_raw(s.data, key)
                notifies.append(s.data)
    assert sum(ms.counters.decode_errors.values()) == 0
    assert not ms.rejections()
    return ms, notifies


def test_interop_oor_registers_and_requests() -> None:
    oor = SitePolicy("oor", {0: SiteKey(AuthAlg.HMAC_SHA_1_96, b"oor-secret")},
                     (AllowedPrefix(P("192.168.1.0/24")), AllowedPrefix(P("192.168.2.0/24"))))
    ms, notifies = _replay("oor-xtr-msmr.pcap", [oor], b"oor-secret", "10.0.0.1")
    assert len(notifies) == 2
    assert {r["eid-prefix"] for r in ms.list_registrations()} == {"192.168.1.0/24", "192.168.2.0/24"}
    assert ms.counters.requests["forwarded-to-etr"] == 2
    # OOR's own Map-Notify (frame 1) differs from ours only in the L bit it clears on the
    # locator (and so in the HMAC): same header, nonce, key-id/algorithm/length, record.
    frames = _udp_frames("oor-xtr-msmr.pcap")
    theirs, ours = parse_control(frames[1][4]), parse_control(notifies[0])
    assert isinstance(theirs, MapNotify) and isinstance(ours, MapNotify)
    assert ours.nonce == theirs.nonce and ours.key_id == theirs.key_id == 0 and ours.alg_id == theirs.alg_id == 1
    assert len(ours.auth_data) == len(theirs.auth_data) == 20
    assert [r.prefix for r in ours.records] == [r.prefix for r in theirs.records]
    assert notifies[0][:16] == frames[1][4][:16]


def test_interop_oor_old_style_key_id() -> None:
    """The README's "key id 1 (HMAC-SHA-1)": an RFC 6830 style key id matches too."""
    oor = SitePolicy("oor", {1: SiteKey(AuthAlg.HMAC_SHA_1_96, b"oor-secret")},
                     (AllowedPrefix(P("192.168.1.0/24")), AllowedPrefix(P("192.168.2.0/24"))))
    _, notifies = _replay("oor-xtr-msmr.pcap", [oor], b"oor-secret", "10.0.0.1")
    assert len(notifies) == 2


def test_interop_lispersnet_registers_and_requests() -> None:
    key = {0: SiteKey(AuthAlg.HMAC_SHA_256_128, b"lnet-secret")}
    sites = [SitePolicy("site1", key, (AllowedPrefix(P("10.1.0.0/16"), True),)),
             SitePolicy("site2", key, (AllowedPrefix(P("10.2.0.0/16"), True),))]
    ms, notifies = _replay("lispersnet-xtr-msmr.pcap", sites, b"lnet-secret", "192.168.100.10")
    assert len(notifies) == 4
    regs = ms.list_registrations()
    assert {r["eid-prefix"] for r in regs} == {"10.1.1.0/24", "10.2.1.0/24"}
    assert all(r["registrants"][0]["xtr-id"] is not None for r in regs)
    assert ms.counters.requests["forwarded-to-etr"] == 2
    assert ms.counters.messages_in["map-notify-ack"] == 4
    frames = _udp_frames("lispersnet-xtr-msmr.pcap")
    assert notifies[0] == frames[1][4]  # byte-identical to lispers.net's own Map-Notify


# --- the request fast path agrees with the full decoder -----------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    iid=st.sampled_from([0, 0, 7, 0xFFFFFF]),
    v6=st.booleans(),
    addr=st.integers(0, 2**32 - 1),
    mask=st.integers(0, 32),
    itrs=st.lists(st.sampled_from(["192.0.2.10", "2001:db8::1", "0.0.0.0"]), min_size=1, max_size=3),
    sport=st.integers(1, 65535),
    nonce=st.integers(0, 2**64 - 1),
    encap=st.booleans(),
)
def test_fastpath_matches_full_decoder(
    iid: int, v6: bool, addr: int, mask: int, itrs: list[str], sport: int, nonce: int, encap: bool
) -> None:
    from lispnet.core.fastpath import peek_map_request

    eid = IPv6Address(addr << 96) if v6 else IPv4Address(addr)
    req = map_request(eid, mask_len=mask * 4 if v6 else mask, iid=iid, itr_rlocs=tuple(itrs), nonce=nonce)
    data = ecm(req, sport=sport) if encap else req.to_bytes()
    peek = peek_map_request(data, encap)
    assert peek is not None
    msg = parse_control(data)
    if encap:
        assert isinstance(msg, Ecm) and peek.reply_port == msg.inner_sport
        msg = msg.message
    assert isinstance(msg, MapRequest)
    prefix = msg.records[0].prefix
    assert (peek.nonce, peek.iid, peek.mask_len) == (msg.nonce, prefix.iid, prefix.mask_len)
    assert peek.eid == int(prefix.address)  # type: ignore[arg-type]
    assert [ip_address(b) for _, b in peek.itr_rlocs] == list(msg.itr_rlocs)
    # and any truncation or corruption is either refused by the peek or parses fully
    for cut in range(len(data)):
        p2 = peek_map_request(data[:cut], encap)
        if p2 is not None:
            parse_control(data[:cut])


def test_refresh_cache_is_invalidated_by_site_changes() -> None:
    net, ms = make(site("s1", ["10.1.0.0/16"]))
    reg = register([record("10.1.0.0/16", "203.0.113.1")])
    for _ in range(3):
        assert len(net.send(reg, ETR1, MS)) == 1
    assert ms.list_registrations()[0]["registrants"][0]["registrations"] == 3
    # the key changes: the cached refresh must not keep accepting the old key
    ms.add_site(site("s1", ["10.1.0.0/16"], key=b"rotated"))
    assert net.send(reg, ETR1, MS) == []
    assert ms.rejections()[0]["reason"] == "bad-hmac"
    # expiry drops the cached entry too
    net.advance_to(net.now + 181)
    assert len(ms.registrations) == 0
