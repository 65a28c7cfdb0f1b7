"""Outer-to-inner header rules on decapsulation (RFC 9300 section 5.3, RFC 6040).

The ITR copies the inner TTL / hop limit and ToS / traffic class into the outer header
(``encap.outer_cmsg``).  On the way the underlay may lower the TTL and mark congestion
(ECN CE) on the outer header only, so the ETR carries both back in:

* the inner TTL / hop limit becomes the smaller of the inner and outer ones, so that
  a loop through the underlay still ends;
* an outer CE marks an ECN-capable inner packet CE; an inner packet that is not
  ECN-capable is dropped instead (RFC 6040, normal mode: it cannot carry the mark).

The ETR learns the outer values from the receive socket's control messages
(:func:`enable_outer_info`, :func:`outer_info`); :func:`fix_inner` rewrites one inner
header in place, IPv4 checksum included (RFC 1624 incremental update).
"""

from __future__ import annotations

import socket

IP_TTL = socket.IP_TTL
IP_TOS = socket.IP_TOS
IP_RECVTTL = 12
"""Not in Python's socket module."""
IPV6_HOPLIMIT = socket.IPV6_HOPLIMIT
IPV6_TCLASS = socket.IPV6_TCLASS
CMSG_SPACE = socket.CMSG_SPACE(4) * 3
"""Ancillary space for UDP_GRO, TTL / hop limit and ToS / traffic class."""
ECN_CE = 3


def enable_outer_info(sock: socket.socket, family: int) -> bool:
    """Ask for each datagram's TTL / hop limit and ToS / traffic class; False if refused."""
    try:
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
        return True
    except OSError:
        return False


def outer_info(anc: list[tuple[int, int, bytes]]) -> tuple[int, int, int]:
    """(GRO segment size or 0, outer TTL or 255 when unknown, outer ToS) from ``anc``."""
    seg, ttl, tos = 0, 255, 0
    for level, kind, data in anc:
        if level == 17:  # SOL_UDP: UDP_GRO
            seg = int.from_bytes(data[:2], "little")
        elif kind == IP_TTL or kind == IPV6_HOPLIMIT:
            ttl = data[0]
        elif kind == IP_TOS or kind == IPV6_TCLASS:
            tos = data[0]
    return seg, ttl, tos


def needs_fix(buf: bytearray, p: int, ttl: int, tos: int) -> bool:
    """Whether the inner packet at ``p`` needs :func:`fix_inner` for these outer values."""
    if tos & 3 == ECN_CE:
        return True
    return ttl < (buf[p + 8] if buf[p] >> 4 == 4 else buf[p + 7])


def fix_inner(buf: bytearray, p: int, ttl: int, tos: int) -> bool:
    """Apply the outer TTL and CE mark to the inner IPv4/IPv6 header at ``p`` in place.
    False when the packet must be dropped (outer CE, inner not ECN-capable)."""
    ce = tos & 3 == ECN_CE
    if buf[p] >> 4 == 4:
        old_tos, old_ttl = buf[p + 1], buf[p + 8]
        new_tos = old_tos
        if ce:
            if not old_tos & 3:
                return False
            new_tos = old_tos | ECN_CE
        new_ttl = ttl if ttl < old_ttl else old_ttl
        if new_tos == old_tos and new_ttl == old_ttl:
            return True
        w0, w0n = buf[p] << 8 | old_tos, buf[p] << 8 | new_tos
        w4, w4n = old_ttl << 8 | buf[p + 9], new_ttl << 8 | buf[p + 9]
        hc = buf[p + 10] << 8 | buf[p + 11]
        s = (~hc & 0xFFFF) + (~w0 & 0xFFFF) + w0n + (~w4 & 0xFFFF) + w4n
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        hc = ~s & 0xFFFF
        buf[p + 1] = new_tos
        buf[p + 8] = new_ttl
        buf[p + 10] = hc >> 8
        buf[p + 11] = hc & 0xFF
        return True
    if ce:
        if not (buf[p + 1] >> 4) & 3:
            return False
        buf[p + 1] |= ECN_CE << 4
    if ttl < buf[p + 7]:
        buf[p + 7] = ttl
    return True


__all__ = ["CMSG_SPACE", "enable_outer_info", "fix_inner", "needs_fix", "outer_info"]
