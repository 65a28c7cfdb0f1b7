"""Outer/inner header rules of the TUN data plane (RFC 9300 section 5.3, RFC 6040):
the ITR copies the inner TTL and ToS out, the ETR carries a lower outer TTL and an
outer CE mark back in.  Pure functions, checked with scapy as an independent decoder."""

from __future__ import annotations

import socket

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

from lispnet.dataplane.encap import inner_tos, inner_ttl, outer_cmsg
from lispnet.dataplane.tun_ecn import (
    IP_TOS,
    IP_TTL,
    IPV6_HOPLIMIT,
    IPV6_TCLASS,
    fix_inner,
    needs_fix,
    outer_info,
)


def v4(ttl: int, tos: int) -> bytearray:
    return bytearray(bytes(IP(src="10.1.0.2", dst="10.2.0.2", ttl=ttl, tos=tos, id=7) / UDP(sport=1, dport=2) / b"x"))


def v6(hlim: int, tc: int) -> bytearray:
    return bytearray(bytes(IPv6(src="fd01::2", dst="fd02::2", hlim=hlim, tc=tc, fl=0xABCDE) / UDP(sport=1, dport=2)))


@pytest.mark.parametrize("ttl,tos,ottl,otos,want_ttl,want_tos", [
    (64, 0xB8, 20, 0xB8, 20, 0xB8),   # lower outer TTL wins
    (10, 0x00, 20, 0x00, 10, 0x00),   # higher outer TTL: unchanged
    (64, 0xBA, 64, 0xBB, 64, 0xBB),   # outer CE, inner ECT(0): CE
    (64, 0x01, 3, 0x03, 3, 0x03),     # both
])
def test_ipv4_inner_gets_outer_ttl_and_ce(ttl: int, tos: int, ottl: int, otos: int, want_ttl: int,
                                          want_tos: int) -> None:
    buf = v4(ttl, tos)
    assert needs_fix(buf, 0, ottl, otos) == (want_ttl != ttl or want_tos != tos)
    assert fix_inner(buf, 0, ottl, otos)
    pkt = IP(bytes(buf))
    assert (pkt.ttl, pkt.tos) == (want_ttl, want_tos)
    again = IP(bytes(buf))
    del again.chksum
    assert IP(bytes(again)).chksum == pkt.chksum  # the incremental update is the full checksum


def test_ce_on_a_not_ect_inner_packet_means_drop() -> None:
    assert not fix_inner(v4(64, 0xB8), 0, 64, 0x03)
    assert not fix_inner(v6(64, 0xB8), 0, 64, 0x03)


def test_ipv6_inner_gets_outer_hop_limit_and_ce() -> None:
    buf = v6(64, 0xBA)
    assert fix_inner(buf, 0, 9, 0x03)
    pkt = IPv6(bytes(buf))
    assert pkt.hlim == 9 and pkt.tc == 0xBB and pkt.fl == 0xABCDE and pkt.src == "fd01::2"


def test_ttl_tos_read_and_copied_out() -> None:
    assert (inner_ttl(v4(33, 0x2E)), inner_tos(v4(33, 0x2E))) == (33, 0x2E)
    assert (inner_ttl(v6(44, 0xB9)), inner_tos(v6(44, 0xB9))) == (44, 0xB9)
    c4 = outer_cmsg(socket.AF_INET, 33, 0x2E)
    assert [(lvl, kind, int.from_bytes(d, "little")) for lvl, kind, d in c4] == [
        (socket.IPPROTO_IP, socket.IP_TTL, 33), (socket.IPPROTO_IP, socket.IP_TOS, 0x2E)]
    c6 = outer_cmsg(socket.AF_INET6, 44, 0xB9)
    assert [(kind, int.from_bytes(d, "little")) for _l, kind, d in c6] == [
        (socket.IPV6_HOPLIMIT, 44), (socket.IPV6_TCLASS, 0xB9)]


def test_outer_info_parses_control_messages() -> None:
    anc = [(17, 104, (1400).to_bytes(2, "little")), (0, IP_TTL, (7).to_bytes(4, "little")), (0, IP_TOS, b"\x03")]
    assert outer_info(anc) == (1400, 7, 3)
    anc6 = [(41, IPV6_HOPLIMIT, (9).to_bytes(4, "little")), (41, IPV6_TCLASS, (0xB8).to_bytes(4, "little"))]
    assert outer_info(anc6) == (0, 9, 0xB8)
    assert outer_info([]) == (0, 255, 0)
