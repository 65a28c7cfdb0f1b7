"""UDP segmentation offload for the LISP data sockets (Linux ``UDP_SEGMENT`` / ``UDP_GRO``).

Sending: the ITR queues encapsulated packets (LISP header + inner packet, as buffer
lists, no copy) per (socket, RLOC).  Consecutive packets of the same size to the same
RLOC through the same socket (same outer source port, i.e. the same flow hash) go out
in one ``sendmsg`` with a ``UDP_SEGMENT`` control message: the kernel cuts the buffer
every ``gso_size`` bytes and gives each piece its own UDP/IP header.  Each piece is an
ordinary LISP data packet; the last one may be shorter.  One syscall then carries up to
``MAX_SEGMENTS`` packets.

Receiving: ``UDP_GRO`` on the 4341 sockets lets the kernel hand over such a batch (or
packets its GRO merged) as one buffer plus the segment size in a control message.

When the kernel refuses a batch (segment bigger than the path MTU, no GSO support) the
packets are sent one by one, and that socket stops using GSO.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable

UDP_SEGMENT = 103
UDP_GRO = 104
SOL_UDP = 17
MAX_SEGMENTS = 64
MAX_BYTES = 65000
"""Payload bytes in one batch (the UDP length field must hold them all)."""
GRO_CMSG_SPACE = socket.CMSG_SPACE(4)

Buf = bytes | bytearray | memoryview
Counter = list[int]
DropFn = Callable[[str], None]

_SEG = struct.Struct("=H")


def enable_gro(sock: socket.socket) -> bool:
    """Ask for coalesced receives on ``sock``; False when the kernel lacks UDP_GRO."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        return True
    except OSError:
        return False


def gro_segment_size(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The segment size of a coalesced receive (0 when the datagram is a single one)."""
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 2:
            return int.from_bytes(data[:4] if len(data) >= 4 else data[:2], "little") & 0xFFFF
    return 0


class _Batch:
    __slots__ = ("sock", "addr", "seg", "iov", "nseg", "nbytes", "ctr", "inner")

    def __init__(self, sock: socket.socket, addr: tuple[str, int], seg: int, ctr: Counter) -> None:
        self.sock = sock
        self.addr = addr
        self.seg = seg
        self.iov: list[Buf] = []
        self.nseg = 0
        self.nbytes = 0
        self.ctr = ctr
        self.inner = 0


class GsoSender:
    """Batches encapsulated packets per (socket, RLOC) and sends them with UDP_SEGMENT."""

    def __init__(self, drop: DropFn, gso: bool = True) -> None:
        self._drop = drop
        self.gso = gso
        self._batches: dict[tuple[int, tuple[str, int]], _Batch] = {}
        self._no_gso: set[int] = set()
        self.sends = 0
        self.packets = 0

    def add(
        self, sock: socket.socket, addr: tuple[str, int], ctr: Counter, parts: list[Buf], length: int, inner: int
    ) -> None:
        """Queue one packet of ``length`` bytes made of ``parts``; ``ctr`` counts it once sent."""
        key = (id(sock), addr)
        b = self._batches.get(key)
        if b is not None:
            if (
                b.ctr is ctr
                and length <= b.seg
                and b.nseg < MAX_SEGMENTS
                and b.nbytes + length <= MAX_BYTES
            ):
                b.iov.extend(parts)
                b.nseg += 1
                b.nbytes += length
                b.inner += inner
                if length < b.seg:  # only the last segment may be shorter
                    del self._batches[key]
                    self._send(b)
                return
            del self._batches[key]
            self._send(b)
        b = _Batch(sock, addr, length, ctr)
        b.iov.extend(parts)
        b.nseg = 1
        b.nbytes = length
        b.inner = inner
        if not self.gso:
            self._send(b)
            return
        self._batches[key] = b

    def flush(self) -> None:
        if self._batches:
            batches = list(self._batches.values())
            self._batches.clear()
            for b in batches:
                self._send(b)

    def _send(self, b: _Batch) -> None:
        sock = b.sock
        try:
            if b.nseg == 1:
                sock.sendmsg(b.iov, (), 0, b.addr)
            elif sock.fileno() in self._no_gso:
                self._send_each(b)
                return
            else:
                sock.sendmsg(b.iov, [(SOL_UDP, UDP_SEGMENT, _SEG.pack(b.seg))], 0, b.addr)
        except BlockingIOError:
            self._drop("send-buffer-full")
            return
        except OSError as e:
            if b.nseg > 1 and e.errno in (errno.EINVAL, errno.EMSGSIZE, errno.EIO, errno.ENOPROTOOPT):
                self._no_gso.add(sock.fileno())
                self._send_each(b)
                return
            self._drop("send-error")
            return
        self.sends += 1
        self.packets += b.nseg
        b.ctr[0] += b.nseg
        b.ctr[1] += b.inner

    def _send_each(self, b: _Batch) -> None:
        """Fallback: one sendmsg per packet (the parts are re-split by the segment size)."""
        data = b"".join(b.iov)
        seg = b.seg
        sent = 0
        for off in range(0, len(data), seg):
            try:
                b.sock.sendto(data[off : off + seg], b.addr)
                sent += 1
            except BlockingIOError:
                self._drop("send-buffer-full")
            except OSError:
                self._drop("send-error")
        self.sends += sent
        self.packets += sent
        b.ctr[0] += sent
        b.ctr[1] += b.inner if sent == b.nseg else b.inner * sent // max(b.nseg, 1)


__all__ = ["GRO_CMSG_SPACE", "GsoSender", "MAX_SEGMENTS", "UDP_GRO", "UDP_SEGMENT", "enable_gro", "gro_segment_size"]
