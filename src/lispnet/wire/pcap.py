"""Read and write packet captures: classic pcap and pcapng, UDP datagrams only.

Reading turns a capture file into :class:`Frame` values (``iter_frames``) and a frame into
the :class:`UdpDatagram` it carries (``udp_of_frame``), so a tool can report a broken frame
and go on with the next one.  ``read_udp`` is the strict one-call version.

Supported: pcap in both byte orders, micro- and nanosecond variants; pcapng sections in
both byte orders with Enhanced, Simple and (obsolete) Packet blocks, per-interface link
types and ``if_tsresol`` / ``if_tsoffset``.  Link types: Ethernet (with 802.1Q / 802.1ad
tags), Linux cooked capture v1 (SLL) and v2 (SLL2), raw IP (101, and DLT_RAW 12 / 14),
IPv4 (228), IPv6 (229) and BSD loopback (0 / 108).  IPv6 extension headers are walked;
fragmented UDP is reported as a :class:`BadFrame` (not reassembled).

Writing (``write_pcap``) builds Ethernet + IPv4/IPv6 + UDP around each payload with a
correct IPv4 header checksum and UDP checksum, so tshark sees clean packets.

Bad capture data raises a :class:`CaptureError` (a ``DecodeError``): ``BadCapture`` for
an unreadable file structure, ``TruncatedCapture`` when the file ends inside a record,
``BadFrame`` for a frame whose link/IP/UDP headers are inconsistent.  ``offset`` is the
byte offset in the file (``CaptureError``) or in the frame (``BadFrame``, which also
carries the frame ``number``).

The file formats are little- or big-endian by the writer's choice, so this module reads
them with its own small endian-aware cursor instead of ``buffer.Reader``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import BinaryIO, TypeAlias

from .errors import DecodeError

IPAddr: TypeAlias = IPv4Address | IPv6Address

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_DLT_RAW12 = 12
LINKTYPE_DLT_RAW14 = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_DLT_RAW12,
        LINKTYPE_DLT_RAW14,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
PROTO_UDP = 17


class CaptureError(DecodeError):
    """A capture file (or a frame in it) cannot be read."""

    reason = "bad-capture"


class BadCapture(CaptureError):
    """The file is not pcap/pcapng, or a block/record header is inconsistent."""

    reason = "bad-capture"


class TruncatedCapture(CaptureError):
    """The file ends inside a header or a record."""

    reason = "truncated-capture"


class BadFrame(CaptureError):
    """One frame's link, IP or UDP headers are inconsistent; ``offset`` is within the frame."""

    reason = "bad-frame"

    def __init__(self, message: str, offset: int | None = None, number: int = 0) -> None:
        super().__init__(message, offset)
        self.number = number
        """The 1-based frame number in the capture."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured packet as stored in the file."""

    number: int
    """1-based position in the capture (as tshark numbers frames)."""
    timestamp: float
    """Capture time, seconds since the epoch."""
    linktype: int
    """LINKTYPE_* of the interface the frame came from."""
    data: bytes
    """The captured bytes (possibly cut at the snap length)."""
    orig_len: int
    """Length of the packet on the wire."""


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A UDP datagram with the IP addresses it travelled between."""

    src: IPAddr
    """IP source address."""
    dst: IPAddr
    """IP destination address (same family as ``src``)."""
    sport: int
    """UDP source port."""
    dport: int
    """UDP destination port."""
    payload: bytes
    """The UDP payload."""
    frame: int = 0
    """Frame number in the capture it came from (0 when built)."""
    timestamp: float = 0.0
    """Capture time in seconds since the epoch."""
    ttl: int = 64
    """IPv4 TTL / IPv6 hop limit."""

    def __post_init__(self) -> None:
        if not isinstance(self.src, IPv4Address | IPv6Address) or type(self.src) is not type(self.dst):
            raise TypeError("src and dst must be IP addresses of one family")
        for name in ("sport", "dport"):
            v = getattr(self, name)
            if not 0 <= v <= 0xFFFF:
                raise ValueError(f"{name}={v} is not a port")
        if not 0 <= self.ttl <= 255:
            raise ValueError("ttl must be 0..255")


# --- file structure -------------------------------------------------------------------


class _Cursor:
    """Bounds-checked reads of ``data`` in a chosen byte order."""

    __slots__ = ("data", "pos", "end", "little", "u16", "u32")

    def __init__(self, data: bytes, little: bool, end: int | None = None) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data) if end is None else end
        self.little = little
        e = "<" if little else ">"
        self.u16 = struct.Struct(e + "H")
        self.u32 = struct.Struct(e + "I")

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.end:
            truncated = self.end == len(self.data)
            cls = TruncatedCapture if truncated else BadCapture
            where = "capture" if truncated else "block"
            raise cls(f"{where} ends inside {what}: need {n} byte(s), {self.end - self.pos} left", self.pos)

    def get_u16(self, at: int) -> int:
        v: int = self.u16.unpack_from(self.data, at)[0]
        return v

    def get_u32(self, at: int) -> int:
        v: int = self.u32.unpack_from(self.data, at)[0]
        return v


def capture_kind(data: bytes) -> str | None:
    """``"pcap"``, ``"pcapng"`` or None, judged by the magic number."""
    if len(data) < 4:
        return None
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return "pcapng"
    if int.from_bytes(data[:4], "big") in (PCAP_MAGIC_US, PCAP_MAGIC_NS) or int.from_bytes(
        data[:4], "little"
    ) in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        return "pcap"
    return None


def iter_frames(data: bytes) -> Iterator[Frame]:
    """Every frame of a pcap or pcapng capture, in file order.

    Frames are yielded as they are read, so the frames before a corrupt spot are still
    delivered; the corruption then raises ``BadCapture`` / ``TruncatedCapture``.
    """
    kind = capture_kind(data)
    if kind == "pcap":
        yield from _iter_pcap(data)
    elif kind == "pcapng":
        yield from _iter_pcapng(data)
    else:
        raise BadCapture(f"not a pcap or pcapng file (magic {bytes(data[:4]).hex() or 'missing'})", 0)


def _iter_pcap(data: bytes) -> Iterator[Frame]:
    le = int.from_bytes(data[:4], "little")
    little = le in (PCAP_MAGIC_US, PCAP_MAGIC_NS)
    magic = le if little else int.from_bytes(data[:4], "big")
    c = _Cursor(data, little)
    c.need(24, "the pcap file header")
    major = c.get_u16(4)
    if major != 2:
        raise BadCapture(f"pcap version {major}.{c.get_u16(6)} not supported", 4)
    linktype = c.get_u32(20) & 0xFFFF
    if linktype not in SUPPORTED_LINKTYPES:
        raise BadCapture(f"pcap link type {linktype} not supported", 20)
    frac = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
    c.pos = 24
    number = 0
    while c.pos < len(data):
        c.need(16, "a pcap record header")
        start = c.pos
        sec = c.get_u32(start)
        sub = c.get_u32(start + 4)
        incl = c.get_u32(start + 8)
        orig = c.get_u32(start + 12)
        c.pos += 16
        c.need(incl, f"the {incl}-byte record of frame {number + 1}")
        number += 1
        yield Frame(number, sec + sub * frac, linktype, bytes(data[c.pos : c.pos + incl]), orig)
        c.pos += incl


def _tsresol(code: int) -> float:
    if code & 0x80:
        return float(2.0 ** -(code & 0x7F))
    return float(10.0 ** -(code & 0x7F))


@dataclass(slots=True)
class _Iface:
    linktype: int
    snaplen: int
    resol: float = 1e-6
    offset_s: int = 0


def _iter_pcapng(data: bytes) -> Iterator[Frame]:
    pos = 0
    number = 0
    ifaces: list[_Iface] = []
    c = _Cursor(data, True)
    while pos < len(data):
        if len(data) - pos < 12:
            raise TruncatedCapture(f"capture ends inside a pcapng block header ({len(data) - pos} byte(s))", pos)
        if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            bom_le = int.from_bytes(data[pos + 8 : pos + 12], "little")
            if bom_le == PCAPNG_BOM:
                c = _Cursor(data, True)
            elif int.from_bytes(data[pos + 8 : pos + 12], "big") == PCAPNG_BOM:
                c = _Cursor(data, False)
            else:
                raise BadCapture("pcapng section header with a bad byte-order magic", pos + 8)
            ifaces = []
        c.pos = pos
        btype = c.get_u32(pos)
        blen = c.get_u32(pos + 4)
        if blen < 12 or blen % 4:
            raise BadCapture(f"pcapng block length {blen} is invalid", pos + 4)
        c.need(blen, f"a {blen}-byte pcapng block")
        if c.get_u32(pos + blen - 4) != blen:
            raise BadCapture("pcapng block's trailing length differs from its leading length", pos + blen - 4)
        body = pos + 8
        body_end = pos + blen - 4
        blk = _Cursor(data, c.little, body_end)
        if btype == PCAPNG_SHB:
            blk.pos = body
            blk.need(16, "a pcapng section header")
            major = blk.get_u16(body + 4)
            if major != 1:
                raise BadCapture(f"pcapng version {major} not supported", body + 4)
        elif btype == 1:  # Interface Description Block
            blk.pos = body
            blk.need(8, "a pcapng interface description")
            iface = _Iface(blk.get_u16(body), blk.get_u32(body + 4))
            _read_idb_options(blk, body + 8, body_end, iface)
            ifaces.append(iface)
        elif btype in (6, 2, 3):  # Enhanced, (obsolete) Packet, Simple Packet
            number += 1
            yield _pcapng_packet(blk, btype, body, body_end, ifaces, number)
        # every other block type (name resolution, statistics, custom...) is skipped
        pos += blen


def _read_idb_options(blk: _Cursor, pos: int, end: int, iface: _Iface) -> None:
    while pos + 4 <= end:
        code = blk.get_u16(pos)
        olen = blk.get_u16(pos + 2)
        if code == 0:
            return
        if pos + 4 + olen > end:
            raise BadCapture("pcapng interface option runs past its block", pos)
        if code == 9 and olen >= 1:
            iface.resol = _tsresol(blk.data[pos + 4])
        elif code == 14 and olen >= 8:
            raw = blk.data[pos + 4 : pos + 12]
            iface.offset_s = int.from_bytes(raw, "little" if blk.little else "big", signed=True)
        pos += 4 + ((olen + 3) & ~3)


def _pcapng_packet(blk: _Cursor, btype: int, body: int, end: int, ifaces: list[_Iface], number: int) -> Frame:
    blk.pos = body
    if btype == 3:
        blk.need(4, "a pcapng simple packet block")
        if not ifaces:
            raise BadCapture("pcapng simple packet before any interface description", body)
        iface = ifaces[0]
        orig = blk.get_u32(body)
        caplen = min(orig, end - body - 4, iface.snaplen or orig)
        return Frame(number, 0.0, iface.linktype, bytes(blk.data[body + 4 : body + 4 + caplen]), orig)
    blk.need(20, "a pcapng packet block")
    if btype == 6:
        if_id = blk.get_u32(body)
    else:
        if_id = blk.get_u16(body)
    ts = (blk.get_u32(body + 4) << 32) | blk.get_u32(body + 8)
    caplen = blk.get_u32(body + 12)
    orig = blk.get_u32(body + 16)
    if if_id >= len(ifaces):
        raise BadCapture(f"pcapng packet on undeclared interface {if_id}", body)
    if body + 20 + caplen > end:
        raise BadCapture(f"pcapng packet length {caplen} runs past its block", body + 12)
    iface = ifaces[if_id]
    stamp = ts * iface.resol + iface.offset_s
    return Frame(number, stamp, iface.linktype, bytes(blk.data[body + 20 : body + 20 + caplen]), orig)


# --- frame -> IP -> UDP -----------------------------------------------------------------


def ip_packet_of_frame(frame: Frame) -> bytes | None:
    """The IP packet inside ``frame`` (None when the frame carries something else, e.g. ARP)."""
    d = frame.data
    lt = frame.linktype
    if lt == LINKTYPE_ETHERNET:
        off = 12
        _need(frame, off + 2, "Ethernet header")
        etype = int.from_bytes(d[12:14], "big")
        while etype in ETH_VLAN_TAGS:
            off += 4
            _need(frame, off + 2, "VLAN tag")
            etype = int.from_bytes(d[off : off + 2], "big")
        off += 2
    elif lt == LINKTYPE_LINUX_SLL:
        _need(frame, 16, "Linux cooked (SLL) header")
        etype, off = int.from_bytes(d[14:16], "big"), 16
    elif lt == LINKTYPE_LINUX_SLL2:
        _need(frame, 20, "Linux cooked (SLL2) header")
        etype, off = int.from_bytes(d[0:2], "big"), 20
    elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
        # the 4-byte address family is in host (NULL) or network (LOOP) order and
        # AF_INET6 differs between systems: trust the IP version nibble instead
        _need(frame, 4, "loopback header")
        return _by_version(d[4:])
    elif lt in (LINKTYPE_RAW, LINKTYPE_DLT_RAW12, LINKTYPE_DLT_RAW14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return _by_version(d)
    else:
        raise BadFrame(f"link type {lt} not supported", 0, frame.number)
    if etype == ETH_IPV4 or etype == ETH_IPV6:
        return bytes(d[off:])
    return None


def _by_version(packet: bytes) -> bytes | None:
    if packet and packet[0] >> 4 in (4, 6):
        return bytes(packet)
    return None


def _need(frame: Frame, n: int, what: str) -> None:
    if len(frame.data) < n:
        raise BadFrame(f"{what}: frame has {len(frame.data)} byte(s), need {n}", len(frame.data), frame.number)


_IPV6_EXT = {0, 43, 60}  # hop-by-hop, routing, destination options


def udp_of_ip(packet: bytes, number: int = 0, timestamp: float = 0.0, base: int = 0) -> UdpDatagram | None:
    """The UDP datagram in an IPv4/IPv6 packet, or None for other protocols.

    Raises ``BadFrame`` (offsets relative to the frame when ``base`` is the IP offset).
    """

    def bad(msg: str, at: int) -> BadFrame:
        if len(packet) < at:
            msg += " (frame cut short by the snap length?)"
        return BadFrame(msg, base + at, number)

    if not packet:
        raise bad("empty IP packet", 0)
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            raise bad(f"IPv4 header: {len(packet)} byte(s), need 20", 0)
        ihl = (packet[0] & 0xF) * 4
        total = int.from_bytes(packet[2:4], "big")
        if ihl < 20 or len(packet) < ihl:
            raise bad(f"IPv4 header length {ihl} invalid for {len(packet)} byte(s)", 0)
        if total < ihl:
            raise bad(f"IPv4 total length {total} shorter than its header", 2)
        if total > len(packet):
            raise bad(f"IPv4 total length {total} exceeds the {len(packet)} byte(s) captured", 2)
        proto = packet[9]
        if proto != PROTO_UDP:
            return None
        ff = int.from_bytes(packet[6:8], "big")
        if ff & 0x3FFF:
            raise bad("fragmented IPv4 UDP packet (reassembly not supported)", 6)
        src: IPAddr = IPv4Address(packet[12:16])
        dst: IPAddr = IPv4Address(packet[16:20])
        ttl = packet[8]
        off, end = ihl, total
    elif version == 6:
        if len(packet) < 40:
            raise bad(f"IPv6 header: {len(packet)} byte(s), need 40", 0)
        plen = int.from_bytes(packet[4:6], "big")
        if 40 + plen > len(packet):
            raise bad(f"IPv6 payload length {plen} exceeds the {len(packet) - 40} byte(s) captured", 4)
        nh = packet[6]
        ttl = packet[7]
        src = IPv6Address(packet[8:24])
        dst = IPv6Address(packet[24:40])
        off, end = 40, 40 + plen
        while nh != PROTO_UDP:
            if nh in _IPV6_EXT or nh == 51 or nh == 44:
                if off + 8 > end:
                    raise bad("IPv6 extension header runs past the packet", off)
                if nh == 44:
                    frag = int.from_bytes(packet[off + 2 : off + 4], "big")
                    if frag & 0xFFF9:  # offset or M set: a real fragment
                        raise bad("fragmented IPv6 UDP packet (reassembly not supported)", off)
                    hlen = 8
                elif nh == 51:
                    hlen = (packet[off + 1] + 2) * 4
                else:
                    hlen = (packet[off + 1] + 1) * 8
                nh = packet[off]
                off += hlen
                if off > end:
                    raise bad("IPv6 extension header runs past the packet", off)
            else:
                return None
    else:
        raise bad(f"IP version {version} is neither 4 nor 6", 0)
    if off + 8 > end:
        raise bad(f"UDP header: {end - off} byte(s) left, need 8", off)
    sport = int.from_bytes(packet[off : off + 2], "big")
    dport = int.from_bytes(packet[off + 2 : off + 4], "big")
    ulen = int.from_bytes(packet[off + 4 : off + 6], "big")
    if ulen < 8:
        raise bad(f"UDP length {ulen} below 8", off + 4)
    if off + ulen > end:
        raise bad(f"UDP length {ulen} exceeds the {end - off} byte(s) of the IP payload", off + 4)
    payload = bytes(packet[off + 8 : off + ulen])
    return UdpDatagram(src, dst, sport, dport, payload, number, timestamp, ttl)


def udp_of_frame(frame: Frame) -> UdpDatagram | None:
    """The UDP datagram in ``frame``; None for non-IP or non-UDP frames; ``BadFrame`` if broken."""
    ip = ip_packet_of_frame(frame)
    if ip is None:
        return None
    return udp_of_ip(ip, frame.number, frame.timestamp, len(frame.data) - len(ip))


def iter_udp(data: bytes) -> Iterator[UdpDatagram]:
    """Every UDP datagram of a capture; raises on the first broken frame."""
    for frame in iter_frames(data):
        d = udp_of_frame(frame)
        if d is not None:
            yield d


def read_udp(source: str | Path | bytes) -> list[UdpDatagram]:
    """All UDP datagrams of a capture file (a path, or the file's bytes)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return list(iter_udp(data))


# --- writing --------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_udp_packet(d: UdpDatagram, ident: int = 0) -> bytes:
    """IPv4 or IPv6 + UDP + payload, with the IPv4 header checksum and the UDP checksum set."""
    ulen = 8 + len(d.payload)
    if ulen > 0xFFFF:
        raise ValueError(f"UDP datagram of {ulen} bytes is too long")
    if isinstance(d.src, IPv4Address):
        pseudo = d.src.packed + d.dst.packed + struct.pack("!BBH", 0, PROTO_UDP, ulen)
    else:
        pseudo = d.src.packed + d.dst.packed + struct.pack("!I3xB", ulen, PROTO_UDP)
    udp0 = struct.pack("!HHHH", d.sport, d.dport, ulen, 0) + d.payload
    cks = _checksum(pseudo + udp0) or 0xFFFF
    udp = udp0[:6] + cks.to_bytes(2, "big") + udp0[8:]
    if isinstance(d.src, IPv4Address):
        total = 20 + ulen
        if total > 0xFFFF:
            raise ValueError(f"IPv4 packet of {total} bytes is too long")
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, d.ttl, PROTO_UDP, 0, d.src.packed, d.dst.packed)
        hdr = hdr[:10] + _checksum(hdr).to_bytes(2, "big") + hdr[12:]
        return hdr + udp
    return struct.pack("!IHBB", 6 << 28, ulen, PROTO_UDP, d.ttl) + d.src.packed + d.dst.packed + udp


SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")


def ethernet_frame(d: UdpDatagram, src_mac: bytes = SRC_MAC, dst_mac: bytes = DST_MAC, ident: int = 0) -> bytes:
    """An Ethernet II frame carrying ``d``."""
    etype = ETH_IPV4 if isinstance(d.src, IPv4Address) else ETH_IPV6
    return dst_mac + src_mac + etype.to_bytes(2, "big") + ip_udp_packet(d, ident)


def pcap_bytes(datagrams: Iterable[UdpDatagram], linktype: int = LINKTYPE_ETHERNET) -> bytes:
    """A classic (microsecond, little-endian) pcap file of the datagrams.

    ``linktype`` is ``LINKTYPE_ETHERNET`` (default) or ``LINKTYPE_RAW``.  A datagram's
    ``timestamp`` is used when non-zero; otherwise frames are 1 ms apart.
    """
    if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
        raise ValueError(f"can only write Ethernet or raw-IP captures, not link type {linktype}")
    out = bytearray(struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, 262144, linktype))
    for i, d in enumerate(datagrams):
        pkt = ethernet_frame(d, ident=i & 0xFFFF) if linktype == LINKTYPE_ETHERNET else ip_udp_packet(d, i & 0xFFFF)
        ts = d.timestamp or 1_700_000_000 + i / 1000
        sec = int(ts)
        usec = min(int(round((ts - sec) * 1e6)), 999_999)
        out += struct.pack("<IIII", sec, usec, len(pkt), len(pkt))
        out += pkt
    return bytes(out)


def write_pcap(
    target: str | Path | BinaryIO, datagrams: Iterable[UdpDatagram], linktype: int = LINKTYPE_ETHERNET
) -> None:
    """Write the datagrams as a pcap file to a path or a binary file object."""
    data = pcap_bytes(datagrams, linktype)
    if isinstance(target, str | Path):
        Path(target).write_bytes(data)
    else:
        target.write(data)


__all__ = [
    "BadCapture",
    "BadFrame",
    "CaptureError",
    "Frame",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_RAW",
    "TruncatedCapture",
    "UdpDatagram",
    "capture_kind",
    "ethernet_frame",
    "ip_packet_of_frame",
    "ip_udp_packet",
    "iter_frames",
    "iter_udp",
    "pcap_bytes",
    "read_udp",
    "udp_of_frame",
    "udp_of_ip",
    "write_pcap",
]
