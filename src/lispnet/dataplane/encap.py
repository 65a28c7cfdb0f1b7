"""Pure LISP encapsulation and decapsulation (RFC 9300 section 5), no I/O.

An encapsulated packet is::

    outer IPv4 (20) or IPv6 (40) | UDP (8, dport 4341) | LISP header (8) | inner IP packet

Any EID family rides over any RLOC family.  The UDP source port carries tunnel entropy:
a hash of the inner flow (addresses, protocol, ports), so underlay ECMP spreads flows
while each flow keeps one path; the ETR never checks it.  The UDP checksum is sent as
0 (RFC 9300 section 5.3 / RFC 6935 for IPv6) and both 0 and a correct one are accepted.

The LISP header (spec data-plane.md section 2.1): N with a 24-bit nonce, L with the
encapsulating site's locator-status-bits, I with a 24-bit instance-id when it is not 0
(the LSBs then shrink to 8 bits).

The hot path (``dataplane/tun.py``) uses :func:`lisp_header` and :func:`flow_hash` with
kernel UDP sockets building the outer headers; :func:`encapsulate` builds the whole outer
packet for raw sockets, tests and captures.

RLOC choice (spec section 6): drop unusable locators (priority 255 or down), keep the
best (lowest) priority, then spread flows by weight with the flow hash mapped onto the
cumulative weights - one flow always lands on the same RLOC.
"""

from __future__ import annotations

import functools
import socket
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

IPAddr = IPv4Address | IPv6Address

DATA_PORT = 4341
N_BIT = 0x80000000
L_BIT = 0x40000000
E_BIT = 0x20000000
V_BIT = 0x10000000
I_BIT = 0x08000000
NONCE_MASK = 0x00FFFFFF
IPV4_OVERHEAD = 20 + 8 + 8
IPV6_OVERHEAD = 40 + 8 + 8

_HDR = struct.Struct("!II")
_UDP = struct.Struct("!HHHH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_INT = struct.Struct("=i")


class EncapError(ValueError):
    """A packet that cannot be encapsulated or decapsulated (with a drop reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def lisp_header(nonce: int | None, iid: int, lsb: int | None) -> bytes:
    """The 8-byte LISP data header (RFC 9300 section 5.3)."""
    w1 = 0
    if nonce is not None:
        w1 |= N_BIT | (nonce & NONCE_MASK)
    if iid:
        if not 0 < iid <= 0xFFFFFF:
            raise ValueError(f"instance-id {iid} does not fit in 24 bits")
        w1 |= I_BIT
        w2 = iid << 8
        if lsb is not None:
            w1 |= L_BIT
            w2 |= lsb & 0xFF
    else:
        w2 = 0
        if lsb is not None:
            w1 |= L_BIT
            w2 = lsb & 0xFFFFFFFF
    return _HDR.pack(w1, w2)


@dataclass(frozen=True, slots=True)
class Decapsulated:
    """The result of decapsulating one LISP data packet."""

    iid: int
    """Instance-id (0 when I was clear)."""
    lsb: int | None
    """Locator-status-bits when L was set."""
    nonce: int | None
    """The nonce when N was set."""
    echo_nonce_request: bool
    """E bit."""
    inner: bytes
    """The inner IP packet."""


def parse_lisp_header(data: bytes | memoryview) -> tuple[int, int | None, int | None, bool]:
    """(iid, lsb, nonce, echo) of the 8-byte header at the start of ``data``."""
    if len(data) < 8:
        raise EncapError("short-lisp-header")
    w1, w2 = _HDR.unpack_from(data, 0)
    if w1 & I_BIT:
        iid = w2 >> 8
        lsb = (w2 & 0xFF) if w1 & L_BIT else None
    else:
        iid = 0
        lsb = w2 if w1 & L_BIT else None
    nonce = (w1 & NONCE_MASK) if (w1 & N_BIT and not w1 & V_BIT) else None
    return iid, lsb, nonce, bool(w1 & E_BIT and w1 & N_BIT)


def decapsulate(udp_payload: bytes) -> Decapsulated:
    """Strip the LISP header from a datagram received on UDP 4341."""
    iid, lsb, nonce, echo = parse_lisp_header(udp_payload)
    inner = udp_payload[8:]
    if not inner or inner[0] >> 4 not in (4, 6):
        raise EncapError("bad-inner-packet")
    return Decapsulated(iid, lsb, nonce, echo, inner)


# --- inner packet helpers ------------------------------------------------------------
def inner_addresses(packet: bytes | memoryview) -> tuple[IPAddr, IPAddr]:
    """(source, destination) of an IPv4 or IPv6 packet."""
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        return IPv4Address(bytes(packet[12:16])), IPv4Address(bytes(packet[16:20]))
    if len(packet) >= 40 and packet[0] >> 4 == 6:
        return IPv6Address(bytes(packet[8:24])), IPv6Address(bytes(packet[24:40]))
    raise EncapError("bad-inner-packet")


def inner_ttl(packet: bytes | memoryview) -> int:
    if packet[0] >> 4 == 4:
        return packet[8]
    return packet[7]


def inner_tos(packet: bytes | memoryview) -> int:
    """The ToS / traffic class byte (DSCP and ECN) of an IPv4 or IPv6 packet."""
    if packet[0] >> 4 == 4:
        return packet[1]
    return (packet[0] & 0x0F) << 4 | packet[1] >> 4


@functools.lru_cache(maxsize=4096)
def outer_cmsg(family: int, ttl: int, tos: int) -> tuple[tuple[int, int, bytes], ...]:
    """Control messages giving an outer packet sent on a ``family`` UDP socket the TTL /
    hop limit and ToS / traffic class copied from its inner packet (RFC 9300 section 5.3:
    the ITR copies the inner TTL and ToS; ECN per RFC 6040 normal mode, copied whole)."""
    if family == socket.AF_INET:
        return ((socket.IPPROTO_IP, socket.IP_TTL, _INT.pack(ttl)), (socket.IPPROTO_IP, socket.IP_TOS, _INT.pack(tos)))
    return ((socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, _INT.pack(ttl)),
            (socket.IPPROTO_IPV6, socket.IPV6_TCLASS, _INT.pack(tos)))


def flow_hash(packet: bytes | memoryview) -> int:
    """A stable 32-bit hash of the inner flow: addresses, protocol and (when present) ports."""
    v = packet[0] >> 4
    if v == 4:
        ihl = (packet[0] & 0x0F) * 4
        proto = packet[9]
        key = bytes(packet[12:20])
        if proto in (6, 17, 132) and not (packet[6] & 0x3F or packet[7]):  # not a fragment
            key += bytes(packet[ihl : ihl + 4])
        return zlib.crc32(key, proto)
    if v == 6:
        proto = packet[6]
        key = bytes(packet[8:40])
        if proto in (6, 17, 132):
            key += bytes(packet[40:44])
        return zlib.crc32(key, proto)
    return 0


def source_port(hash_value: int) -> int:
    """The outer UDP source port for a flow hash: 0xF000 | 12 hash bits (as lispers.net)."""
    return 0xF000 | (hash_value & 0x0FFF)


# --- outer headers -------------------------------------------------------------------
def ipv4_checksum(header: bytes) -> int:
    s: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def encapsulate(
    inner: bytes,
    src_rloc: IPAddr,
    dst_rloc: IPAddr,
    iid: int = 0,
    nonce: int | None = 0,
    lsb: int | None = None,
    sport: int | None = None,
    ttl: int | None = None,
) -> bytes:
    """The whole encapsulated packet (outer IP + UDP + LISP + ``inner``).

    ``ttl`` defaults to the inner TTL/Hop Limit (the ITR copies it); the inner DSCP/ECN
    byte is copied into the outer header.
    """
    if src_rloc.version != dst_rloc.version:
        raise EncapError("rloc-family-mismatch")
    if not inner or inner[0] >> 4 not in (4, 6):
        raise EncapError("bad-inner-packet")
    if sport is None:
        sport = source_port(flow_hash(inner))
    tos = inner[1] if inner[0] >> 4 == 4 else ((inner[0] & 0x0F) << 4) | (inner[1] >> 4)
    out_ttl = inner_ttl(inner) if ttl is None else ttl
    payload = lisp_header(nonce, iid, lsb) + inner
    udp = _UDP.pack(sport, DATA_PORT, 8 + len(payload), 0)
    if src_rloc.version == 4:
        total = 20 + 8 + len(payload)
        if total > 0xFFFF:
            raise EncapError("too-big")
        hdr = _IP4.pack(0x45, tos, total, 0, 0, out_ttl, 17, 0, src_rloc.packed, dst_rloc.packed)
        hdr = hdr[:10] + struct.pack("!H", ipv4_checksum(hdr)) + hdr[12:]
        return hdr + udp + payload
    first = (6 << 28) | (tos << 20)
    hdr6 = _IP6.pack(first, 8 + len(payload), 17, out_ttl, src_rloc.packed, dst_rloc.packed)
    return hdr6 + udp + payload


@dataclass(frozen=True, slots=True)
class OuterPacket:
    """An encapsulated packet taken apart."""

    src: IPAddr
    dst: IPAddr
    sport: int
    dport: int
    ttl: int
    lisp: Decapsulated


def decapsulate_packet(packet: bytes) -> OuterPacket:
    """Take a whole outer packet apart (raw sockets, captures, tests)."""
    if not packet:
        raise EncapError("empty")
    if packet[0] >> 4 == 4:
        ihl = (packet[0] & 0x0F) * 4
        if len(packet) < ihl + 8 or packet[9] != 17:
            raise EncapError("not-udp")
        src: IPAddr = IPv4Address(packet[12:16])
        dst: IPAddr = IPv4Address(packet[16:20])
        ttl = packet[8]
        off = ihl
    elif packet[0] >> 4 == 6:
        if len(packet) < 48 or packet[6] != 17:
            raise EncapError("not-udp")
        src = IPv6Address(packet[8:24])
        dst = IPv6Address(packet[24:40])
        ttl = packet[7]
        off = 40
    else:
        raise EncapError("bad-outer-packet")
    sport, dport, _length, _csum = _UDP.unpack_from(packet, off)
    return OuterPacket(src, dst, sport, dport, ttl, decapsulate(packet[off + 8 :]))


# --- RLOC selection --------------------------------------------------------------------
def choose_locator(locators: Sequence[tuple[int, int, bool]], hash_value: int) -> int | None:
    """Index of the RLOC for a flow among ``(priority, weight, up)`` tuples, or None.

    Unusable: priority 255 or down.  Among the best remaining priority, the flow hash is
    mapped onto the cumulative weights (all weights 0 = equal share).
    """
    best = 256
    for prio, _w, up in locators:
        if up and prio < best and prio != 255:
            best = prio
    if best == 256:
        return None
    cands = [(i, w) for i, (prio, w, up) in enumerate(locators) if up and prio == best]
    total = sum(w for _, w in cands)
    if total == 0:
        return cands[hash_value % len(cands)][0]
    point = hash_value % total
    for i, w in cands:
        if point < w:
            return i
        point -= w
    return cands[-1][0]


def parse_ip(text: str) -> IPAddr:
    return ip_address(text)


__all__ = [
    "DATA_PORT",
    "Decapsulated",
    "EncapError",
    "OuterPacket",
    "choose_locator",
    "decapsulate",
    "decapsulate_packet",
    "encapsulate",
    "flow_hash",
    "inner_addresses",
    "inner_tos",
    "inner_ttl",
    "lisp_header",
    "outer_cmsg",
    "parse_lisp_header",
    "source_port",
]
