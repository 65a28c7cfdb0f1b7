"""Pure encapsulation: outer headers, LISP header bits, flow hash."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from lispnet.dataplane.encap import (
    decapsulate_packet,
    encapsulate,
    flow_hash,
    lisp_header,
    parse_lisp_header,
    source_port,
)
from lispnet.wire.data import LispHeader


def udp4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (bytes([0x45, 0x10, 0, 28, 0, 0, 0, 0, 63, 17, 0, 0]) + IPv4Address(src).packed
            + IPv4Address(dst).packed + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + b"\x00\x08\x00\x00")


def test_header_matches_wire_codec() -> None:
    hdr = lisp_header(0x123456, 0, 0x3)
    assert LispHeader.from_bytes(hdr) == LispHeader(nonce=0x123456, lsb=0x3)
    hdr = lisp_header(0xABCDEF, 1000, 0x1)
    assert LispHeader.from_bytes(hdr) == LispHeader(nonce=0xABCDEF, lsb=0x1, instance_id=1000)
    assert parse_lisp_header(hdr) == (1000, 1, 0xABCDEF, False)
    assert lisp_header(None, 0, None) == b"\x00" * 8


def test_ipv4_over_ipv6_and_back() -> None:
    inner = udp4("10.1.0.10", "10.2.0.10", 1234, 53)
    out = encapsulate(inner, IPv6Address("fd00::1"), IPv6Address("fd00::2"), iid=100, nonce=7, lsb=1)
    assert out[0] >> 4 == 6 and out[6] == 17 and out[7] == 63  # outer hop limit copies the inner TTL
    parsed = decapsulate_packet(out)
    assert parsed.dport == 4341 and parsed.sport == source_port(flow_hash(inner))
    assert parsed.lisp.iid == 100 and parsed.lisp.lsb == 1 and parsed.lisp.nonce == 7
    assert parsed.lisp.inner == inner


def test_ipv4_outer_checksum_and_tos() -> None:
    inner = udp4("10.1.0.10", "10.2.0.10", 1, 2)
    out = encapsulate(inner, IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))
    assert out[1] == 0x10  # DSCP/ECN copied
    s = sum(int.from_bytes(out[i : i + 2], "big") for i in range(0, 20, 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert s == 0xFFFF


def test_flow_hash_per_flow() -> None:
    a = udp4("10.1.0.10", "10.2.0.10", 1000, 53)
    b = udp4("10.1.0.10", "10.2.0.10", 1001, 53)
    assert flow_hash(a) == flow_hash(a)
    assert flow_hash(a) != flow_hash(b)
    assert 0xF000 <= source_port(flow_hash(a)) <= 0xFFFF
