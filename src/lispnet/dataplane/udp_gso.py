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
packets are sent one by one.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

UDP_SEGMENT = 103
UDP_GRO = 104
SOL_UDP = 17
MAX_SEGMENTS = 64
MAX_BYTES = 65000
"""Payload bytes in one batch (the UDP length field must hold them all)."""
GRO_CMSG_SPACE = socket.CMSG_SPACE(4)

Buf = bytes | bytearray | memoryview

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


def send_batch(
    sock: socket.socket, addr: tuple[Any, ...], iov: list[Buf], seg: int, nseg: int, gso: bool = True,
    cmsg: list[tuple[int, int, bytes]] | tuple[()] = (),
) -> str | None:
    """Send ``nseg`` packets of ``seg`` bytes (the last may be shorter) held in ``iov``,
    with the control messages ``cmsg`` (e.g. the outer TTL and ToS).

    One ``sendmsg`` with ``UDP_SEGMENT`` when ``nseg > 1``; if the kernel refuses it
    (segment above the path MTU, no GSO) the packets go one by one.  Returns None when
    all left, else a drop reason.
    """
    if nseg == 1 or gso:
        try:
            if nseg == 1:
                sock.sendmsg(iov, cmsg, 0, addr)
            else:
                sock.sendmsg(iov, [*cmsg, (SOL_UDP, UDP_SEGMENT, _SEG.pack(seg))], 0, addr)
            return None
        except BlockingIOError:
            return "send-buffer-full"
        except OSError as e:
            if nseg == 1 or e.errno not in (errno.EINVAL, errno.EMSGSIZE, errno.EIO, errno.ENOPROTOOPT):
                return "send-error"
    data = b"".join(iov)
    reason = None
    for off in range(0, len(data), seg):
        try:
            sock.sendmsg([data[off : off + seg]], cmsg, 0, addr)
        except BlockingIOError:
            reason = "send-buffer-full"
        except OSError:
            reason = "send-error"
    return reason


__all__ = ["GRO_CMSG_SPACE", "MAX_BYTES", "MAX_SEGMENTS", "UDP_GRO", "UDP_SEGMENT", "enable_gro", "gro_segment_size", "send_batch"]
