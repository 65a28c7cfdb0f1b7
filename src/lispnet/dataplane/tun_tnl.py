"""UDP-tunnel segmentation offload for the TUN data plane: one write per TCP super-packet.

A TUN device that offers TSO (``TUN_F_TSO4/6``) hands the ITR whole TCP super-packets
(up to 64 KB of one flow) with a virtio-net header saying how the kernel would cut them
(``gso_size``).  Cutting them in Python costs a header and a checksum per segment.
Linux 6.17+ lets user space hand such a packet back *already encapsulated*, as a UDP
tunnel super-packet (``VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4/6``, TAP devices with
``TUN_F_UDP_TUNNEL_GSO``):

    virtio_net_hdr_v1_hash_tunnel (24) | Ethernet (14) | outer IP | UDP 4341 | LISP (8) |
    inner IP | TCP | 64 KB of payload

The kernel forwards it toward the RLOC like any packet it received on the TAP and, where
the packet meets a device that cannot carry it whole, cuts it exactly as it cuts its own
UDP tunnels (VXLAN, FOU): every piece is an ordinary LISP packet, outer IP + UDP + the
same LISP header + one inner IP/TCP segment with its own checksums.  The bytes between
the outer UDP header and the inner IP header (the LISP header) are the tunnel header the
kernel repeats in every piece.  Across veth pairs and bridges (a namespace lab) nothing
cuts it, and the ETR's UDP socket receives the whole super-packet as one datagram (no
``UDP_GRO`` control message: it is not a UDP_L4 batch); ``tun_etr`` recognises it by the
inner IP length (the whole datagram) and writes it to its TUN as one TCP GSO packet.

The TAP is an ingress only: the daemon writes frames addressed to the TAP's own MAC and
never routes anything into it (whatever the kernel sends it - IPv6 router solicitations,
MLD - is read and dropped).  Its IPv4 side accepts our own RLOC as a source
(``accept_local``); forwarding must be on (an xTR routes anyway).

The outer UDP checksum is zero (RFC 9300 section 5.3; over IPv6 RFC 6935/6936, the ETR
sets ``UDP_NO_CHECK6_RX``); the outer IPv4 header has DF clear.  The segment size is the
sender's MSS, or less when the route MTU toward the RLOC (looked up on a flow's first
super-packet) cannot hold such a segment behind the outer headers: the kernel then cuts
smaller TCP segments, each an ordinary LISP packet that fits (``room``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
from typing import Any

from .tun_gso import F_NEEDS_CSUM

log = logging.getLogger(__name__)

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
SIOCGIFHWADDR = 0x8927
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UDP_TUNNEL_GSO = 0x080

GSO_ECN = 0x80
GSO_UDP_TUNNEL_IPV4 = 0x20
GSO_UDP_TUNNEL_IPV6 = 0x40
TNL_VNET_LEN = 24
"""sizeof(struct virtio_net_hdr_v1_hash_tunnel)."""
ETH_LEN = 14
UDP_LISP_LEN = 16
OUTER_TTL = 64
IP_MTU = 14
IPV6_MTU = 24

_VNET = struct.Struct("<BBHHHHH8xHH")
"""flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers, (hash), outer_th, inner_nh."""
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")
_H = struct.Struct("!H")
_IP4_WORDS = struct.Struct("!10H")


def open_tap(name: str) -> int:
    """Create TAP ``name`` with a tunnel-capable virtio-net header; the fd (raises OSError)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", TNL_VNET_LEN))
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UDP_TUNNEL_GSO)
    except OSError:
        os.close(fd)
        raise
    os.set_blocking(fd, False)
    return fd


def hw_address(name: str) -> bytes:
    """The MAC address of interface ``name`` (6 bytes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", name.encode()))
    return bytes(res[18:24])


def route_mtu(address: str, family: int) -> int:
    """The MTU of the route toward ``address`` (0 when there is none)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((address, 4341))
            if family == socket.AF_INET:
                return int(s.getsockopt(socket.IPPROTO_IP, IP_MTU))
            return int(s.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU))
    except OSError:
        return 0


class TunnelHeader:
    """The outer headers of one flow (Ethernet to LISP) and the virtio-net header in front,
    patched per super-packet: lengths, outer IPv4 checksum, GSO fields.  ``buf`` is written
    with the inner packet right behind it (one ``writev``)."""

    __slots__ = ("buf", "v4", "ip_at", "inner_nh", "base_sum", "dst", "mtu")

    def __init__(self, dst_mac: bytes, src: str, dst: str, sport: int, lisp: bytes, mtu: int = 0,
                 ttl: int = OUTER_TTL, tos: int = 0) -> None:
        self.v4 = ":" not in dst
        self.dst = dst
        self.mtu = mtu
        """Route MTU toward the RLOC (0: look it up when first needed)."""
        self.ip_at = TNL_VNET_LEN + ETH_LEN
        eth = dst_mac + b"\x02\x00\x00\x00\x43\x41" + (b"\x08\x00" if self.v4 else b"\x86\xdd")
        if self.v4:
            ip = _IP4.pack(0x45, tos, 0, 0, 0, ttl, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
            words = _IP4_WORDS.unpack(ip)
            self.base_sum = sum(words)  # length and checksum are 0 here
        else:
            ip = _IP6.pack(0x60000000 | tos << 20, 0, 17, ttl, socket.inet_pton(socket.AF_INET6, src),
                           socket.inet_pton(socket.AF_INET6, dst))
            self.base_sum = 0
        udp = _UDP.pack(sport, 4341, 0, 0)
        self.buf = bytearray(bytes(TNL_VNET_LEN) + eth + ip + udp + lisp)
        self.inner_nh = ETH_LEN + len(ip) + UDP_LISP_LEN

    def room(self, hl: int) -> int:
        """The biggest TCP payload per segment whose LISP packet (outer headers, LISP header,
        ``hl`` bytes of inner IP + TCP headers) fits the route MTU toward the RLOC."""
        if not self.mtu:
            self.mtu = route_mtu(self.dst, socket.AF_INET if self.v4 else socket.AF_INET6)
        return self.mtu - (self.inner_nh - ETH_LEN) - hl

    def prepare(self, inner_len: int, gso_type: int, gso_size: int, csum_start: int, csum_offset: int,
                hl: int) -> bytearray:
        """Fill in the headers for an inner super-packet of ``inner_len`` bytes whose virtio
        header (from the TUN) said ``gso_type``/``gso_size``/``csum_*``; returns ``buf``."""
        buf = self.buf
        at = self.ip_at
        nh = self.inner_nh
        if self.v4:
            total = 20 + UDP_LISP_LEN + inner_len
            s = self.base_sum + total
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            _H.pack_into(buf, at + 2, total)
            _H.pack_into(buf, at + 10, ~s & 0xFFFF)
            _H.pack_into(buf, at + 24, UDP_LISP_LEN + inner_len)
            tnl = GSO_UDP_TUNNEL_IPV4
            outer_th = ETH_LEN + 20
        else:
            _H.pack_into(buf, at + 4, UDP_LISP_LEN + inner_len)
            _H.pack_into(buf, at + 44, UDP_LISP_LEN + inner_len)
            tnl = GSO_UDP_TUNNEL_IPV6
            outer_th = ETH_LEN + 40
        _VNET.pack_into(buf, 0, F_NEEDS_CSUM, tnl | gso_type, nh + hl, gso_size, nh + csum_start, csum_offset, 0,
                        outer_th, nh)
        return buf


def drain_tap(fd: int, scratch: Any) -> int:
    """Read and drop whatever the kernel sent into the TAP; the number of frames."""
    n = 0
    while True:
        try:
            os.readv(fd, [scratch])
        except (BlockingIOError, OSError):
            return n
        n += 1


__all__ = [
    "GSO_ECN",
    "TNL_VNET_LEN",
    "TUNSETOFFLOAD",
    "TUN_F_CSUM",
    "TUN_F_TSO4",
    "TUN_F_TSO6",
    "TUN_F_TSO_ECN",
    "TUN_F_UDP_TUNNEL_GSO",
    "TunnelHeader",
    "drain_tap",
    "hw_address",
    "open_tap",
    "route_mtu",
]
