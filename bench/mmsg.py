"""Batched UDP I/O for the load generators: ``sendmmsg`` / ``recvmmsg`` through ctypes (Linux).

One system call moves a batch of datagrams, so a Python load generator can offer and count
several hundred thousand messages per second.
"""

from __future__ import annotations

import ctypes
import socket
import struct


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
MSG_DONTWAIT = 0x40
SEND_BATCH = 32
RECV_BATCH = 256
RECV_SLOT = 1024


SEND_WINDOW = 4096
"""Messages an :class:`MmsgOut` holds at once (more templates are loaded window by window)."""


class MmsgOut:
    """Pre-built ``mmsghdr`` array over a window of up to :data:`SEND_WINDOW` payloads (one
    destination): a batch is a pointer into it, so each ``sendmmsg`` costs no Python work
    per message except the optional timestamp splice into the payload bytes."""

    def __init__(self, slot: int, dst: tuple[str, int]) -> None:
        self.n = 0
        self.slot = slot
        self.buf = bytearray(slot * SEND_WINDOW)
        self._cbuf = (ctypes.c_char * len(self.buf)).from_buffer(self.buf)
        base = ctypes.addressof(self._cbuf)
        self._addr = ctypes.create_string_buffer(
            struct.pack("=H", socket.AF_INET) + struct.pack("!H", dst[1]) + socket.inet_aton(dst[0]) + bytes(8)
        )
        self.iov = (_Iovec * SEND_WINDOW)()
        self.msgs = (_Mmsghdr * SEND_WINDOW)()
        self._lens = [0] * SEND_WINDOW
        for k in range(SEND_WINDOW):
            self.iov[k].iov_base = base + k * slot
            h = self.msgs[k].msg_hdr
            h.msg_name = ctypes.addressof(self._addr)
            h.msg_namelen = 16
            h.msg_iov = ctypes.pointer(self.iov[k])
            h.msg_iovlen = 1
        self._base = ctypes.addressof(self.msgs)
        self._size = ctypes.sizeof(_Mmsghdr)

    def load(self, payloads: list[bytes]) -> None:
        """Make ``payloads`` (at most SEND_WINDOW, each at most ``slot`` bytes) the window."""
        slot = self.slot
        self.buf[: slot * len(payloads)] = b"".join(p.ljust(slot, b"\0") for p in payloads)
        lens = self._lens
        for k, pl in enumerate(payloads):
            if lens[k] != len(pl):
                lens[k] = self.iov[k].iov_len = len(pl)
        self.n = len(payloads)

    def stamp(self, first: int, count: int, at: int, value: bytes) -> None:
        """Write ``value`` at offset ``at`` of messages first .. first + count - 1."""
        buf, slot, w = self.buf, self.slot, len(value)
        o = first * slot + at
        for _ in range(count):
            buf[o : o + w] = value
            o += slot

    def send(self, fd: int, first: int, count: int) -> int:
        """sendmmsg of messages first .. first + count - 1; the number sent (-1: error)."""
        return int(_libc.sendmmsg(fd, self._base + first * self._size, count, 0))


class MmsgIn:
    """A ``recvmmsg`` batch of :data:`RECV_BATCH` slots."""

    def __init__(self) -> None:
        self.buf = bytearray(RECV_SLOT * RECV_BATCH)
        self._cbuf = (ctypes.c_char * len(self.buf)).from_buffer(self.buf)
        base = ctypes.addressof(self._cbuf)
        self.iov = (_Iovec * RECV_BATCH)()
        self.msgs = (_Mmsghdr * RECV_BATCH)()
        for k in range(RECV_BATCH):
            self.iov[k].iov_base = base + k * RECV_SLOT
            self.iov[k].iov_len = RECV_SLOT
            h = self.msgs[k].msg_hdr
            h.msg_iov = ctypes.pointer(self.iov[k])
            h.msg_iovlen = 1

    def recv(self, fd: int) -> int:
        """Non-blocking recvmmsg; the number of datagrams (0 when none)."""
        n = int(_libc.recvmmsg(fd, ctypes.addressof(self.msgs), RECV_BATCH, MSG_DONTWAIT, None))
        return max(n, 0)

    def length(self, k: int) -> int:
        return int(self.msgs[k].msg_len)
