"""UDP sockets for the control plane, and the cheap classifier that demultiplexes them.

Everything that touches a socket lives here.  A :class:`UdpEndpoint` is one bound
datagram socket driven by the event loop; received datagrams go to a callback with
:class:`~lispnet.core.engine.Endpoint` source and destination, sends take an Endpoint.

:func:`classify` looks at the first bytes only (type nibble, the ECM flag bits, the
Info-Request R bit) and never decodes: the daemon uses the result as the dispatch key
to pick the role engine that gets the raw bytes (RFC 9301 section 5 message types;
ECM bits per spec section 10: S, D = DDT-originated, E = to-ETR, M = to-MS, R = for an
RTR, N = relayed by an RTR).  Decoding is the engine's job, which counts and drops what
it cannot parse.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.engine import Endpoint, IPAddr

log = logging.getLogger("lispnet.udp")

# --- dispatch keys -------------------------------------------------------------------

MAP_REQUEST = "map-request"
MAP_REPLY = "map-reply"
MAP_REGISTER = "map-register"
MAP_NOTIFY = "map-notify"
MAP_NOTIFY_ACK = "map-notify-ack"
MAP_REFERRAL = "map-referral"
INFO_REQUEST = "info-request"
INFO_REPLY = "info-reply"
ECM = "ecm"
"""ECM with none of D/E/M/R set: an ITR's request to a Map-Resolver."""
ECM_DDT = "ecm-ddt"
"""ECM with D: a DDT Map-Resolver's request to a DDT node / Map-Server."""
ECM_TO_ETR = "ecm-to-etr"
"""ECM with E: a Map-Server forwarding a Map-Request to an ETR."""
ECM_TO_MS = "ecm-to-ms"
"""ECM with M: a Map-Resolver forwarding a Map-Request to a Map-Server."""
ECM_RTR = "ecm-rtr"
"""ECM with R or N: NAT traversal through an RTR."""
SHARED_EXTENSION = "shared-extension"
UNKNOWN = "unknown"
"""Empty datagram or an unassigned type code."""

KINDS: tuple[str, ...] = (
    MAP_REQUEST, MAP_REPLY, MAP_REGISTER, MAP_NOTIFY, MAP_NOTIFY_ACK, MAP_REFERRAL,
    INFO_REQUEST, INFO_REPLY, ECM, ECM_DDT, ECM_TO_ETR, ECM_TO_MS, ECM_RTR, SHARED_EXTENSION, UNKNOWN,
)

_BY_TYPE: dict[int, str] = {
    1: MAP_REQUEST,
    2: MAP_REPLY,
    3: MAP_REGISTER,
    4: MAP_NOTIFY,
    5: MAP_NOTIFY_ACK,
    6: MAP_REFERRAL,
    15: SHARED_EXTENSION,
}

ECM_FALLBACK: dict[str, str] = {ECM_DDT: ECM, ECM_TO_ETR: ECM, ECM_TO_MS: ECM, ECM_RTR: ECM}
"""When no engine claims a specific ECM kind, the plain ``ecm`` handler gets it."""


def classify(data: bytes) -> str:
    """Dispatch key of a control datagram, from its first two bytes."""
    if not data:
        return UNKNOWN
    b0 = data[0]
    t = b0 >> 4
    kind = _BY_TYPE.get(t)
    if kind is not None:
        return kind
    if t == 8:
        if b0 & 0x04:
            return ECM_DDT
        if b0 & 0x02:
            return ECM_TO_ETR
        if b0 & 0x01:
            return ECM_TO_MS
        if len(data) > 1 and data[1] & 0x60:
            return ECM_RTR
        return ECM
    if t == 7:
        return INFO_REPLY if b0 & 0x08 else INFO_REQUEST
    return UNKNOWN


# --- sockets -------------------------------------------------------------------------

DatagramCallback = Callable[[bytes, Endpoint, Endpoint], None]


def endpoint_of(sockaddr: Any) -> Endpoint:
    """asyncio/socket address tuple -> Endpoint (scope ids dropped)."""
    host = str(sockaddr[0]).split("%", 1)[0]
    addr = ipaddress.ip_address(host)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return Endpoint(addr, int(sockaddr[1]))


def make_udp_socket(local: Endpoint, reuse_port: bool = False, rcvbuf: int = 4 << 20) -> socket.socket:
    """A non-blocking UDP socket bound to ``local`` (IPv6 sockets are v6-only so an
    IPv4 and an IPv6 wildcard can both be bound)."""
    family = socket.AF_INET6 if local.address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for opt, size in ((socket.SO_RCVBUF, rcvbuf), (socket.SO_SNDBUF, rcvbuf)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                pass
        sock.setblocking(False)
        sock.bind((str(local.address), local.port))
    except BaseException:
        sock.close()
        raise
    return sock


BatchCallback = Callable[[], None]

RECV_BATCH = 256
"""Datagrams read per readiness callback before yielding to the loop."""
RECV_SIZE = 65535

_ENDPOINT_CACHE_MAX = 8192


class UdpEndpoint:
    """One bound, non-blocking UDP socket on the event loop.

    The receive side is a tight loop (``loop.add_reader``): on readiness it calls
    ``recvfrom`` until EAGAIN or :data:`RECV_BATCH` datagrams, hands each one to
    ``on_datagram`` and then calls ``on_batch_end`` once, so the caller can drain its
    engines and re-arm timers per batch instead of per datagram.  (The asyncio
    ``DatagramProtocol`` path costs a transport, a protocol callback and an address
    conversion per datagram.)  Sends go straight to ``sendto``; only when the socket
    buffer is full (EAGAIN) are they queued and flushed from a writer callback.
    """

    def __init__(
        self,
        local: Endpoint,
        on_datagram: DatagramCallback,
        sock: socket.socket | None = None,
        on_batch_end: BatchCallback | None = None,
    ) -> None:
        self.local = local
        """Bound address and (actual) port."""
        self.on_datagram = on_datagram
        self.on_batch_end = on_batch_end
        self.sock = sock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.received = 0
        self.sent = 0
        self.send_errors = 0
        self._backlog: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._peers: dict[tuple[Any, ...], Endpoint] = {}

    @classmethod
    async def open(
        cls,
        loop: asyncio.AbstractEventLoop,
        local: Endpoint,
        on_datagram: DatagramCallback,
        reuse_port: bool = False,
        on_batch_end: BatchCallback | None = None,
        sock: socket.socket | None = None,
    ) -> UdpEndpoint:
        """Bind ``local`` (or adopt the bound ``sock``) and start reading."""
        if sock is None:
            sock = make_udp_socket(local, reuse_port=reuse_port)
        bound = sock.getsockname()
        ep = cls(Endpoint(local.address, int(bound[1])), on_datagram, sock, on_batch_end)
        ep.loop = loop
        loop.add_reader(sock.fileno(), ep._readable)
        return ep

    @property
    def family(self) -> int:
        return self.local.address.version

    @property
    def transport(self) -> socket.socket | None:
        """The socket while open (kept for callers that test ``transport is None``)."""
        return self.sock

    def _peer(self, addr: Any) -> Endpoint:
        ep = self._peers.get(addr)
        if ep is None:
            if len(self._peers) >= _ENDPOINT_CACHE_MAX:
                self._peers.clear()
            ep = self._peers[addr] = endpoint_of(addr)
        return ep

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recv = sock.recvfrom
        handler = self.on_datagram
        local = self.local
        peers = self._peers
        n = 0
        try:
            while n < RECV_BATCH:
                try:
                    data, addr = recv(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:
                    # ICMP errors reported on the socket for an earlier send: nothing to do
                    # for a connectionless control plane, but count them.
                    self.send_errors += 1
                    log.debug("socket error on %s: %s", local, e)
                    continue
                n += 1
                src = peers.get(addr)
                handler(data, src if src is not None else self._peer(addr), local)
                if self.sock is None:  # closed by the handler
                    break
        finally:
            self.received += n
            if n and self.on_batch_end is not None:
                self.on_batch_end()

    def sendto(self, data: bytes, dst: Endpoint) -> bool:
        """Send ``data`` to ``dst``; False when the socket is closed or the family differs."""
        sock = self.sock
        if sock is None or dst.address.version != self.family:
            self.send_errors += 1
            return False
        return self.send_raw(data, (str(dst.address), dst.port))

    def send_raw(self, data: bytes, target: tuple[str, int]) -> bool:
        """``sendto`` for a ready (address text, port) of this socket's family; False when
        the socket is closed or the send failed (queued on EAGAIN, as ``sendto``)."""
        sock = self.sock
        if sock is None:
            self.send_errors += 1
            return False
        if self._backlog:
            self._queue(data, target)
            return True
        try:
            sock.sendto(data, target)
        except (BlockingIOError, InterruptedError):
            self._queue(data, target)
            return True
        except OSError as e:
            self.send_errors += 1
            if e.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.ECONNREFUSED):
                log.debug("send to %s failed: %s", target, e)
            return False
        self.sent += 1
        return True

    def _queue(self, data: bytes, target: tuple[str, int]) -> None:
        if len(self._backlog) >= 65536:
            self.send_errors += 1
            return
        if not self._backlog and self.loop is not None and self.sock is not None:
            self.loop.add_writer(self.sock.fileno(), self._writable)
        self._backlog.append((data, target))

    def _writable(self) -> None:
        sock = self.sock
        while self._backlog and sock is not None:
            data, target = self._backlog[0]
            try:
                sock.sendto(data, target)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.send_errors += 1
            else:
                self.sent += 1
            self._backlog.popleft()
        if self.loop is not None and sock is not None:
            self.loop.remove_writer(sock.fileno())

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is None:
            return
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(sock.fileno())
            if self._backlog:
                self.loop.remove_writer(sock.fileno())
        self._backlog.clear()
        sock.close()


def wildcard(version: int) -> IPAddr:
    return ipaddress.IPv6Address("::") if version == 6 else ipaddress.IPv4Address("0.0.0.0")


def ipv6_available() -> bool:
    """True when an IPv6 socket can be created (containers may lack IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


__all__ = [
    "ECM",
    "ECM_DDT",
    "ECM_FALLBACK",
    "ECM_RTR",
    "ECM_TO_ETR",
    "ECM_TO_MS",
    "INFO_REPLY",
    "INFO_REQUEST",
    "KINDS",
    "MAP_NOTIFY",
    "MAP_NOTIFY_ACK",
    "MAP_REFERRAL",
    "MAP_REGISTER",
    "MAP_REPLY",
    "MAP_REQUEST",
    "SHARED_EXTENSION",
    "UNKNOWN",
    "BatchCallback",
    "DatagramCallback",
    "UdpEndpoint",
    "classify",
    "endpoint_of",
    "ipv6_available",
    "make_udp_socket",
    "wildcard",
]
