"""Tunnel offload of the TUN data plane (``tun_tnl``): the outer headers and the
virtio-net tunnel header written in front of a TCP super-packet."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

from lispnet.dataplane.encap import lisp_header, parse_lisp_header
from lispnet.dataplane.tun_gso import GSO_TCPV4, GSO_TCPV6
from lispnet.dataplane.tun_tnl import (
    GSO_UDP_TUNNEL_IPV4,
    GSO_UDP_TUNNEL_IPV6,
    TNL_VNET_LEN,
    TunnelHeader,
)

VNET = struct.Struct("<BBHHHHH8xHH")
MAC = bytes.fromhex("02aabbccddee")


@pytest.mark.parametrize("v6", [False, True])
def test_outer_headers_and_vnet_fields(v6: bool) -> None:
    src, dst = ("fd00:255::11", "fd00:255::12") if v6 else ("10.255.0.11", "10.255.0.12")
    lisp = lisp_header(0x123456, 100, 1)
    th = TunnelHeader(MAC, src, dst, 0xF123, lisp, 1600)
    inner_len, hl, mss = 20 + 32 + 44 * 1448, 52, 1448
    for length in (inner_len, 20 + 32 + 3 * 1448 + 7):  # the buffer is reused: lengths are rewritten
        buf = bytes(th.prepare(length, GSO_TCPV4, mss, 20, 16, hl))
        flags, gso_type, hdr_len, gso_size, csum_start, csum_off, _nb, outer_th, inner_nh = VNET.unpack_from(buf)
        olen = 40 if v6 else 20
        assert buf[TNL_VNET_LEN : TNL_VNET_LEN + 6] == MAC
        assert buf[TNL_VNET_LEN + 12 : TNL_VNET_LEN + 14] == (b"\x86\xdd" if v6 else b"\x08\x00")
        assert flags == 1 and gso_size == mss and csum_off == 16
        assert gso_type == (GSO_UDP_TUNNEL_IPV6 if v6 else GSO_UDP_TUNNEL_IPV4) | GSO_TCPV4
        assert outer_th == 14 + olen and inner_nh == 14 + olen + 16
        assert csum_start == inner_nh + 20 and hdr_len == inner_nh + hl
        outer = buf[TNL_VNET_LEN + 14 :] + bytes(length)
        pkt = IPv6(outer) if v6 else IP(outer)
        udp = pkt[UDP]
        assert (pkt.src, pkt.dst) == (src, dst)
        assert udp.sport == 0xF123 and udp.dport == 4341 and udp.len == 16 + length and udp.chksum == 0
        if v6:
            assert pkt.plen == 16 + length and pkt.hlim == 64
        else:
            assert pkt.len == olen + 16 + length and pkt.flags == 0 and pkt.ttl == 64
            words = struct.unpack("!10H", outer[:20])
            s = sum(words)
            while s >> 16:
                s = (s & 0xFFFF) + (s >> 16)
            assert s == 0xFFFF  # a valid header checksum
        assert parse_lisp_header(bytes(udp.payload)[:8]) == parse_lisp_header(lisp)


def test_room_is_the_segment_payload_the_route_mtu_leaves() -> None:
    th4 = TunnelHeader(MAC, "10.0.0.1", "10.0.0.2", 0xF000, lisp_header(1, 0, 1), 1600)
    assert th4.room(52) == 1600 - 20 - 16 - 52
    th6 = TunnelHeader(MAC, "fd00::1", "fd00::2", 0xF000, lisp_header(1, 0, 1), 1556)
    assert th6.room(52) == 1448 and th6.room(60) == 1440
    lo = TunnelHeader(MAC, "127.0.0.1", "127.0.0.1", 0xF000, lisp_header(1, 0, 1))
    assert lo.mtu == 0 and lo.room(40) == lo.mtu - 20 - 16 - 40
    assert lo.mtu > 60000  # looked up on first use: the loopback route's MTU
    buf = th6.prepare(72 + 2 * 1428, GSO_TCPV6, 1428, 40, 16, 72)
    assert VNET.unpack_from(buf)[1] == GSO_UDP_TUNNEL_IPV6 | GSO_TCPV6
