"""Every LISP packet captured from OOR and lispers.net (tests/wire/captures/, copied from
shared/interop/) decodes, re-encodes byte-identically, and its HMACs verify with the
site keys the captures were made with (interop README: OOR ``oor-secret`` HMAC-SHA-1,
lispers.net ``lnet-secret`` HMAC-SHA-256).

scapy is only the pcap reader here.
"""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scapy.all import UDP, rdpcap  # type: ignore[attr-defined,import-untyped,unused-ignore]

from lispnet.wire import (
    Ecm,
    MapNotify,
    MapNotifyAck,
    MapRegister,
    MapReply,
    MapRequest,
    build,
    parse_control,
    verify_raw,
)
from lispnet.wire.address import NO_ADDRESS
from lispnet.wire.enums import AuthAlg

CAPTURES = Path(__file__).parent / "captures"
KEYS = {"oor-xtr-msmr.pcap": b"oor-secret", "lispersnet-xtr-msmr.pcap": b"lnet-secret"}


def udp_payloads(name: str) -> list[tuple[int, int, int, bytes]]:
    """(frame index, sport, dport, payload) of every UDP packet on 4341/4342."""
    out = []
    for i, pkt in enumerate(rdpcap(str(CAPTURES / name))):
        if UDP not in pkt:
            continue
        u = pkt[UDP]
        if {u.sport, u.dport} & {4341, 4342}:
            out.append((i, int(u.sport), int(u.dport), bytes(u.payload)))
    return out


def control_packets(name: str) -> list[tuple[int, bytes]]:
    return [(i, p) for i, s, d, p in udp_payloads(name) if 4342 in (s, d)]


ALL_CONTROL = [(name, i, p) for name in KEYS for i, p in control_packets(name)]


@pytest.mark.parametrize(("name", "frame", "payload"), ALL_CONTROL, ids=[f"{n}#{i}" for n, i, _ in ALL_CONTROL])
def test_control_roundtrip(name: str, frame: int, payload: bytes) -> None:
    msg = parse_control(payload)
    assert build(msg) == payload
    assert parse_control(build(msg)) == msg


@pytest.mark.parametrize("name", list(KEYS))
def test_auth_verifies(name: str) -> None:
    key = KEYS[name]
    n = 0
    for _, payload in control_packets(name):
        msg = parse_control(payload)
        if isinstance(msg, MapRegister | MapNotify | MapNotifyAck):
            n += 1
            assert msg.verify(key)
            assert verify_raw(payload, key)
            assert not msg.verify(key + b"x")
            assert not verify_raw(payload, key + b"x")
            # re-signing with our own code gives the peer's bytes
            assert build(msg.signed(key)) == payload
    assert n >= 4


def test_capture_inventory() -> None:
    """The message mix the interop README describes is what we decode."""
    oor = Counter(type(parse_control(p)).__name__ for _, p in control_packets("oor-xtr-msmr.pcap"))
    assert oor == Counter(MapRegister=2, MapNotify=2, Ecm=4, MapReply=2)
    lnet = Counter(type(parse_control(p)).__name__ for _, p in control_packets("lispersnet-xtr-msmr.pcap"))
    assert lnet["MapNotifyAck"] >= 2 and lnet["Ecm"] >= 2 and lnet["MapRequest"] >= 1


def test_oor_details() -> None:
    msgs = [parse_control(p) for _, p in control_packets("oor-xtr-msmr.pcap")]
    reg = next(m for m in msgs if isinstance(m, MapRegister))
    assert reg.alg_id == AuthAlg.HMAC_SHA_1_96 and len(reg.auth_data) == 20
    assert reg.want_map_notify and reg.records[0].ttl == 10
    ecm = next(m for m in msgs if isinstance(m, Ecm))
    # OOR sets DF, TTL 255, and a real UDP checksum over IPv4: all kept
    assert ecm.inner_ip_flags == 2 and ecm.inner_ttl == 255 and ecm.inner_udp_checksum is not None
    assert isinstance(ecm.message, MapRequest)
    assert ecm.inner_sport == 4342 and ecm.inner_dport == 4342


def test_lispersnet_details() -> None:
    msgs = [parse_control(p) for _, p in control_packets("lispersnet-xtr-msmr.pcap")]
    reg = next(m for m in msgs if isinstance(m, MapRegister))
    assert reg.alg_id == AuthAlg.HMAC_SHA_256_128 and len(reg.auth_data) == 32
    assert reg.xtr_id is not None and reg.site_id == 0 and reg.use_ttl and reg.want_map_notify
    assert reg.records[0].ttl == 3
    notify = next(m for m in msgs if isinstance(m, MapNotify))
    # lispers.net appends xTR-ID and site-ID to the Map-Notify without setting I
    assert notify.xtr_id == reg.xtr_id and notify.unflagged_xtr_id
    ack = next(m for m in msgs if isinstance(m, MapNotifyAck))
    assert ack.records == () and ack.nonce == notify.nonce and ack.unflagged_xtr_id
    probe = next(m for m in msgs if isinstance(m, MapRequest) and m.probe)
    assert probe.records[0].eid == NO_ADDRESS and probe.records[0].mask_len == 0
    ecm = next(m for m in msgs if isinstance(m, Ecm))
    assert ecm.inner_ttl == 128 and ecm.inner_udp_checksum is None
    assert ecm.inner_src == IPv4Address("10.1.1.2")
    reply = next(m for m in msgs if isinstance(m, MapReply))
    assert reply.records[0].ttl == 1440


@pytest.mark.parametrize("name", list(KEYS))
def test_data_packets_have_header(name: str) -> None:
    data = [p for _, s, d, p in udp_payloads(name) if d == 4341]
    assert data
    for payload in data:
        assert len(payload) >= 8
        # an inner IPv4 packet follows the 8-byte LISP header
        assert payload[8] >> 4 == 4
