"""The eBPF data plane's slow path: what the tc programs leave to user space.

* **Too big** (RFC 9300 7.1, the stateless method): a packet that no longer fits the egress
  once the outer header is added is punted through the ring buffer.  A whole, non-GSO
  packet is encapsulated here and sent through a UDP socket whose outer packet the kernel
  fragments (DF clear on the outer header); the ETR reassembles.  A GSO super-packet (its
  segments would not fit) or a packet too large to copy is answered with ICMP
  Fragmentation Needed / ICMPv6 Packet Too Big advertising the MTU left for the inner
  packet (rate-limited per source), so the sender's path-MTU discovery shrinks its
  segments.
* **Outer fragments**: the decap program leaves IP fragments to the kernel, which
  reassembles them for a UDP 4341 socket bound to each local RLOC; the datagram is
  decapsulated here and its inner packet sent into its instance through a raw socket
  bound to the instance's interface.

Everything is best effort and counted; nothing here is on the fast path.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from ..wire.ip import internet_checksum
from . import libbpf
from .encap import DATA_PORT, EncapError, decapsulate

log = logging.getLogger(__name__)

IPAddr = IPv4Address | IPv6Address

ICMP_DEST_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP6_PACKET_TOO_BIG = 2
ICMP4_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
ICMP4_MAX_QUOTE = 576 - 20 - 8
"""RFC 1812 4.3.2.3: quote as much of the packet as fits in 576 bytes."""
ICMP6_MAX_QUOTE = 1280 - 40 - 8
"""RFC 4443 2.4 (c): as much as fits in the IPv6 minimum MTU."""
ICMP_MIN_INTERVAL = 0.1
"""At most one Too Big per inner source every 100 ms."""
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT = 0
UDP_NO_CHECK6_RX = 102


def too_big_message(packet: bytes, mtu: int) -> tuple[int, IPAddr, bytes] | None:
    """(family, inner source, ICMP message) telling the source of ``packet`` to fit ``mtu``.

    None when no error may be sent: an ICMP error about an ICMP error, a non-first
    fragment, an IPv4 packet without DF (it may be fragmented instead), a bad header.
    The IPv4 message carries its checksum; the kernel fills the ICMPv6 one.
    """
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        ihl = (packet[0] & 0x0F) * 4
        flags_frag = int.from_bytes(packet[6:8], "big")
        if ihl < 20 or len(packet) < ihl or not flags_frag & 0x4000 or flags_frag & 0x1FFF:
            return None
        if packet[9] == 1 and len(packet) > ihl and packet[ihl] in ICMP4_ERROR_TYPES:
            return None
        mtu = max(68, min(mtu, 0xFFFF))
        body = struct.pack("!BBHHH", ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, mtu) + packet[:ICMP4_MAX_QUOTE]
        msg = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
        return 4, IPv4Address(packet[12:16]), msg
    if len(packet) >= 40 and packet[0] >> 4 == 6:
        if packet[6] == 58 and len(packet) > 40 and packet[40] < 128:
            return None
        mtu = max(1280, mtu)
        msg = struct.pack("!BBHI", ICMP6_PACKET_TOO_BIG, 0, 0, mtu) + packet[:ICMP6_MAX_QUOTE]
        return 6, IPv6Address(packet[8:24]), msg
    return None


class SlowPath:
    """User-space help for one eBPF data plane (one network namespace)."""

    def __init__(
        self,
        netns: str | None,
        encapsulate: Callable[[int, bytes], bool],
        instance_device: Callable[[int], tuple[str, str] | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``encapsulate(iid, packet)`` sends a packet encapsulated through a UDP socket
        (True when sent); ``instance_device(iid)`` names (decap device, EID-side device) of
        an instance, or None when unknown."""
        self._netns = netns
        self._encapsulate = encapsulate
        self._instance_device = instance_device
        self._clock = clock
        self._raw: dict[tuple[int, int, str], socket.socket] = {}
        self._rx: dict[IPAddr, socket.socket] = {}
        self._last_icmp: dict[IPAddr, float] = {}
        self.counters: dict[str, int] = {
            "too-big.encapsulated": 0,
            "too-big.icmp": 0,
            "too-big.dropped": 0,
            "reassembled.decapsulated": 0,
            "reassembled.dropped": 0,
        }

    # --- too big ----------------------------------------------------------------------------
    def too_big(self, iid: int, packet: bytes, head: bytes, mtu: int, gso: bool) -> None:
        """A packet the kernel could not encapsulate within ``mtu`` (the inner bytes left).

        ``packet``: the whole inner packet, or empty when it was not copied whole;
        ``head``: its first bytes.  A whole, non-GSO packet is still delivered (outer
        fragmentation); a sender doing path-MTU discovery (IPv4 DF, IPv6) is also told the
        MTU, so its next packets take the kernel path again.
        """
        sent = bool(packet) and not gso and self._encapsulate(iid, packet)
        if sent:
            self.counters["too-big.encapsulated"] += 1
        if not self._icmp(iid, head or packet, mtu) and not sent:
            self.counters["too-big.dropped"] += 1

    def _icmp(self, iid: int, head: bytes, mtu: int) -> bool:
        msg = too_big_message(head, mtu) if head and mtu else None
        devices = self._instance_device(iid)
        if msg is None or devices is None:
            return False
        family, source, body = msg
        now = self._clock()
        if now - self._last_icmp.get(source, -1e9) < ICMP_MIN_INTERVAL:
            return False
        if len(self._last_icmp) > 4096:
            self._last_icmp.clear()
        self._last_icmp[source] = now
        proto = socket.IPPROTO_ICMP if family == 4 else socket.IPPROTO_ICMPV6
        try:
            self._raw_socket(family, proto, devices[1]).sendto(body, (str(source), 0))
        except OSError as exc:
            log.debug("ICMP too big to %s: %s", source, exc)
            return False
        self.counters["too-big.icmp"] += 1
        return True

    # --- reassembled outer packets --------------------------------------------------------------
    def set_rlocs(self, rlocs: list[IPAddr]) -> list[socket.socket]:
        """Bind a UDP 4341 socket to every local RLOC (closing the others); returns the new ones."""
        new: list[socket.socket] = []
        for addr in list(self._rx):
            if addr not in rlocs:
                self._rx.pop(addr).close()
        for addr in rlocs:
            if addr in self._rx:
                continue
            family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
            with libbpf.netns(self._netns):
                sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    # peers may send a zero UDP checksum over IPv6 (RFC 6935/6936)
                    sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_RX, 1)
                sock.bind((str(addr), DATA_PORT))
            except OSError as exc:
                sock.close()
                log.warning("no user-space decapsulation of outer fragments on %s: %s", addr, exc)
                continue
            sock.setblocking(False)
            self._rx[addr] = sock
            new.append(sock)
        return new

    def sockets(self) -> list[socket.socket]:
        return list(self._rx.values())

    def drain(self, sock: socket.socket) -> None:
        """Decapsulate every datagram waiting on ``sock`` (reassembled by the kernel)."""
        for _ in range(256):
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EINTR):
                    log.debug("UDP %d: %s", DATA_PORT, exc)
                return
            self.deliver(data)

    def deliver(self, datagram: bytes) -> None:
        try:
            d = decapsulate(datagram)
        except EncapError:
            self.counters["reassembled.dropped"] += 1
            return
        devices = self._instance_device(d.iid)
        if devices is None:
            self.counters["reassembled.dropped"] += 1
            return
        inner = d.inner
        family = inner[0] >> 4
        if family == 4 and len(inner) >= 20:
            dst = str(IPv4Address(inner[16:20]))
        elif family == 6 and len(inner) >= 40:
            dst = str(IPv6Address(inner[24:40]))
        else:
            self.counters["reassembled.dropped"] += 1
            return
        try:
            self._raw_socket(family, socket.IPPROTO_RAW, devices[0]).sendto(inner, (dst, 0))
            self.counters["reassembled.decapsulated"] += 1
        except OSError as exc:
            self.counters["reassembled.dropped"] += 1
            log.debug("delivering a reassembled packet to %s: %s", dst, exc)

    # --- sockets ------------------------------------------------------------------------------
    def _raw_socket(self, family: int, proto: int, device: str) -> socket.socket:
        key = (family, proto, device)
        sock = self._raw.get(key)
        if sock is None:
            af = socket.AF_INET if family == 4 else socket.AF_INET6
            with libbpf.netns(self._netns):
                sock = socket.socket(af, socket.SOCK_RAW, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode())
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self._raw[key] = sock
        return sock

    def close(self) -> None:
        for sock in [*self._raw.values(), *self._rx.values()]:
            sock.close()
        self._raw.clear()
        self._rx.clear()


def allow_outer_fragmentation(sock: socket.socket) -> None:
    """Let the kernel fragment this IPv4 socket's datagrams (outer DF clear, RFC 9300 7.1)."""
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    except OSError as exc:  # pragma: no cover - every Linux has it
        log.debug("IP_MTU_DISCOVER: %s", exc)
