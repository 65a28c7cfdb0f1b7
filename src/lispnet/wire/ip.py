"""Minimal inner IPv4 / IPv6 + UDP header codec (RFC 791, RFC 8200, RFC 768).

The Encapsulated Control Message (RFC 9301 section 5.8) carries an IP and a UDP header
in front of the inner control message, and the data plane wraps whole packets the same
way.  Only what LISP needs is here: fixed IPv4 headers (options kept raw), IPv6 headers
without extension headers, UDP, and the Internet checksum.

Decoders keep every field a peer may set (TTL, TOS, identification, flags, the checksums)
so a captured packet re-encodes byte for byte.  A checksum is stored as ``None`` when
it equals the value we would compute ourselves; that keeps freshly built and decoded
values equal, and a ``None`` checksum is always computed on encode.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TypeAlias

from .buffer import Reader, Writer
from .errors import BadLength, BadValue

IPAddr: TypeAlias = IPv4Address | IPv6Address
"""An IPv4 or IPv6 address (the inner addresses of an ECM)."""

PROTO_UDP = 17
IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
UDP_HEADER_LEN = 8


def internet_checksum(data: bytes) -> int:
    """The 16-bit ones' complement of the ones' complement sum (RFC 1071)."""
    if len(data) % 2:
        data = data + b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_header_checksum(header: bytes) -> int:
    """Checksum of an IPv4 header whose checksum field (bytes 10-11) is taken as zero."""
    return internet_checksum(header[:10] + b"\x00\x00" + header[12:])


def udp_checksum(src: IPAddr, dst: IPAddr, udp: bytes) -> int:
    """UDP checksum over the pseudo-header (RFC 768 / RFC 8200 section 8.1) and ``udp``.

    ``udp`` is the UDP header (its checksum field is taken as zero) plus the payload.
    A computed 0 is sent as 0xFFFF, since 0 means "no checksum".
    """
    if src.version != dst.version:
        raise ValueError("UDP checksum: source and destination families differ")
    seg = udp[:6] + b"\x00\x00" + udp[8:]
    if src.version == 4:
        pseudo = src.packed + dst.packed + bytes((0, PROTO_UDP)) + len(udp).to_bytes(2, "big")
    else:
        pseudo = src.packed + dst.packed + len(udp).to_bytes(4, "big") + b"\x00\x00\x00" + bytes((PROTO_UDP,))
    c = internet_checksum(pseudo + seg)
    return c or 0xFFFF


def _u(name: str, v: int, bits: int) -> None:
    if not 0 <= v < (1 << bits):
        raise ValueError(f"{name}={v} does not fit in {bits} bits")


@dataclass(frozen=True, slots=True)
class Ipv4Header:
    """An IPv4 header (RFC 791).  Total Length is derived from the payload on encode."""

    src: IPv4Address
    """Source address."""
    dst: IPv4Address
    """Destination address."""
    protocol: int = PROTO_UDP
    """Next protocol (17 = UDP)."""
    ttl: int = 64
    """Time to live."""
    tos: int = 0
    """Type of service / DSCP+ECN byte."""
    ident: int = 0
    """Identification."""
    flags: int = 0
    """The 3 flag bits (2 = DF, 1 = MF)."""
    frag_offset: int = 0
    """Fragment offset in 8-byte units."""
    options: bytes = b""
    """Raw options (a multiple of 4 bytes, at most 40)."""
    checksum: int | None = None
    """Header checksum as received when it was wrong; None = computed."""

    def __post_init__(self) -> None:
        if not isinstance(self.src, IPv4Address) or not isinstance(self.dst, IPv4Address):
            raise TypeError("Ipv4Header addresses must be IPv4Address")
        _u("protocol", self.protocol, 8)
        _u("ttl", self.ttl, 8)
        _u("tos", self.tos, 8)
        _u("ident", self.ident, 16)
        _u("flags", self.flags, 3)
        _u("frag_offset", self.frag_offset, 13)
        if len(self.options) % 4 or len(self.options) > 40:
            raise ValueError("IPv4 options must be a multiple of 4 bytes, at most 40")
        if self.checksum is not None:
            _u("checksum", self.checksum, 16)

    @property
    def header_len(self) -> int:
        return IPV4_HEADER_LEN + len(self.options)

    def to_wire(self, w: Writer, payload_len: int) -> None:
        total = self.header_len + payload_len
        if total > 0xFFFF:
            raise ValueError(f"IPv4 packet of {total} bytes is too long")
        w2 = Writer()
        w2.write_u8(0x40 | (self.header_len // 4))
        w2.write_u8(self.tos)
        w2.write_u16(total)
        w2.write_u16(self.ident)
        w2.write_u16((self.flags << 13) | self.frag_offset)
        w2.write_u8(self.ttl)
        w2.write_u8(self.protocol)
        w2.write_u16(0)
        w2.write_bytes(self.src.packed)
        w2.write_bytes(self.dst.packed)
        w2.write_bytes(self.options)
        hdr = bytearray(w2.getvalue())
        cks = ipv4_header_checksum(bytes(hdr)) if self.checksum is None else self.checksum
        hdr[10:12] = cks.to_bytes(2, "big")
        w.write_bytes(bytes(hdr))

    @classmethod
    def from_wire(cls, r: Reader) -> tuple[Ipv4Header, int]:
        """Read the header; return it and the payload length its Total Length announces."""
        start = r.pos
        vi = r.read_u8("IPv4 version/IHL")
        if vi >> 4 != 4:
            raise r.error(BadValue, f"IP version {vi >> 4}, expected 4", start)
        ihl = (vi & 0xF) * 4
        if ihl < IPV4_HEADER_LEN:
            raise r.error(BadValue, f"IPv4 IHL {ihl // 4} below 5", start)
        tos = r.read_u8("IPv4 TOS")
        total = r.read_u16("IPv4 total length")
        ident = r.read_u16("IPv4 identification")
        ff = r.read_u16("IPv4 flags/fragment offset")
        ttl = r.read_u8("IPv4 TTL")
        proto = r.read_u8("IPv4 protocol")
        cks = r.read_u16("IPv4 checksum")
        src = IPv4Address(r.read_bytes(4, "IPv4 source"))
        dst = IPv4Address(r.read_bytes(4, "IPv4 destination"))
        options = r.read_bytes(ihl - IPV4_HEADER_LEN, "IPv4 options")
        if total < ihl:
            raise r.error(BadLength, f"IPv4 total length {total} shorter than its header", start + 2)
        raw = r.data[start : start + ihl]
        stored = None if ipv4_header_checksum(bytes(raw)) == cks else cks
        hdr = cls(src, dst, proto, ttl, tos, ident, ff >> 13, ff & 0x1FFF, options, stored)
        return hdr, total - ihl


@dataclass(frozen=True, slots=True)
class Ipv6Header:
    """A fixed IPv6 header (RFC 8200), no extension headers.  Payload Length is derived."""

    src: IPv6Address
    """Source address."""
    dst: IPv6Address
    """Destination address."""
    next_header: int = PROTO_UDP
    """Next header (17 = UDP)."""
    hop_limit: int = 64
    """Hop limit."""
    traffic_class: int = 0
    """Traffic class byte."""
    flow_label: int = 0
    """20-bit flow label."""

    def __post_init__(self) -> None:
        if not isinstance(self.src, IPv6Address) or not isinstance(self.dst, IPv6Address):
            raise TypeError("Ipv6Header addresses must be IPv6Address")
        _u("next_header", self.next_header, 8)
        _u("hop_limit", self.hop_limit, 8)
        _u("traffic_class", self.traffic_class, 8)
        _u("flow_label", self.flow_label, 20)

    header_len = IPV6_HEADER_LEN

    def to_wire(self, w: Writer, payload_len: int) -> None:
        if payload_len > 0xFFFF:
            raise ValueError(f"IPv6 payload of {payload_len} bytes is too long")
        w.write_u32((6 << 28) | (self.traffic_class << 20) | self.flow_label)
        w.write_u16(payload_len)
        w.write_u8(self.next_header)
        w.write_u8(self.hop_limit)
        w.write_bytes(self.src.packed)
        w.write_bytes(self.dst.packed)

    @classmethod
    def from_wire(cls, r: Reader) -> tuple[Ipv6Header, int]:
        """Read the header; return it and its Payload Length."""
        start = r.pos
        first = r.read_u32("IPv6 version/class/flow")
        if first >> 28 != 6:
            raise r.error(BadValue, f"IP version {first >> 28}, expected 6", start)
        plen = r.read_u16("IPv6 payload length")
        nh = r.read_u8("IPv6 next header")
        hl = r.read_u8("IPv6 hop limit")
        src = IPv6Address(r.read_bytes(16, "IPv6 source"))
        dst = IPv6Address(r.read_bytes(16, "IPv6 destination"))
        return cls(src, dst, nh, hl, (first >> 20) & 0xFF, first & 0xFFFFF), plen


IpHeader: TypeAlias = Ipv4Header | Ipv6Header


def read_ip_header(r: Reader) -> tuple[IpHeader, int]:
    """Read an IPv4 or IPv6 header, chosen by the version nibble."""
    version = r.peek_u8("IP version") >> 4
    if version == 4:
        return Ipv4Header.from_wire(r)
    if version == 6:
        return Ipv6Header.from_wire(r)
    raise r.error(BadValue, f"inner IP version {version} is neither 4 nor 6")


@dataclass(frozen=True, slots=True)
class UdpHeader:
    """A UDP header (RFC 768).  Length is derived from the payload on encode."""

    sport: int
    """Source port."""
    dport: int
    """Destination port."""
    checksum: int | None = None
    """None: the default (0 over IPv4, computed over IPv6); an int is sent as is."""

    def __post_init__(self) -> None:
        _u("sport", self.sport, 16)
        _u("dport", self.dport, 16)
        if self.checksum is not None:
            _u("checksum", self.checksum, 16)

    def encode(self, src: IPAddr, dst: IPAddr, payload: bytes) -> bytes:
        """The UDP header followed by ``payload``, checksum filled per ``checksum``."""
        length = UDP_HEADER_LEN + len(payload)
        if length > 0xFFFF:
            raise ValueError(f"UDP datagram of {length} bytes is too long")
        seg = bytearray(
            self.sport.to_bytes(2, "big") + self.dport.to_bytes(2, "big") + length.to_bytes(2, "big") + b"\0\0"
        )
        seg += payload
        if self.checksum is not None:
            cks = self.checksum
        elif src.version == 6:
            cks = udp_checksum(src, dst, bytes(seg))
        else:
            cks = 0
        seg[6:8] = cks.to_bytes(2, "big")
        return bytes(seg)

    @classmethod
    def from_wire(cls, r: Reader, src: IPAddr, dst: IPAddr) -> tuple[UdpHeader, int]:
        """Read the header (the payload must follow in ``r``); return it and the payload length.

        The checksum is stored as ``None`` when it equals the default for the family.
        """
        start = r.pos
        sport = r.read_u16("UDP source port")
        dport = r.read_u16("UDP destination port")
        length = r.read_u16("UDP length")
        cks = r.read_u16("UDP checksum")
        if length < UDP_HEADER_LEN:
            raise r.error(BadLength, f"UDP length {length} below 8", start + 4)
        if length - UDP_HEADER_LEN > r.remaining:
            raise r.error(BadLength, f"UDP length {length} exceeds the {r.remaining + 8} byte(s) present", start + 4)
        if src.version == 4:
            stored = None if cks == 0 else cks
        else:
            udp = bytes(r.data[start : start + length])
            stored = None if cks == udp_checksum(src, dst, udp) else cks
        return cls(sport, dport, stored), length - UDP_HEADER_LEN


def ip_header_for(
    src: IPAddr,
    dst: IPAddr,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    flags: int = 0,
    flow_label: int = 0,
    protocol: int = PROTO_UDP,
) -> IpHeader:
    """An IPv4 or IPv6 header for (src, dst), which must be of one family."""
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        return Ipv4Header(src, dst, protocol, ttl, tos, ident, flags)
    if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
        return Ipv6Header(src, dst, protocol, ttl, tos, flow_label)
    raise ValueError(f"inner source {src} and destination {dst} are of different families")


def build_ip_udp(ip: IpHeader, udp: UdpHeader, payload: bytes) -> bytes:
    """IP header + UDP header + ``payload`` as one packet."""
    seg = udp.encode(ip.src, ip.dst, payload)
    w = Writer()
    ip.to_wire(w, len(seg))
    w.write_bytes(seg)
    return w.getvalue()


__all__ = [
    "IPAddr",
    "IpHeader",
    "Ipv4Header",
    "Ipv6Header",
    "UdpHeader",
    "build_ip_udp",
    "internet_checksum",
    "ip_header_for",
    "ipv4_header_checksum",
    "read_ip_header",
    "udp_checksum",
]
