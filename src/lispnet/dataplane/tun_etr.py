"""The ETR half of the TUN data plane's forwarding thread (a mixin of ``TunDataplane``).

The 4341 sockets use ``UDP_GRO``: one ``recvmsg`` returns a batch of LISP packets of
one outer flow, and the segment size.  A batch of one instance and one inner flow is
checked per header byte column and written to the instance's TUN as one super-packet
with a virtio-net GSO header (``tun_gso.coalesce_batch``); any other batch is walked
packet by packet (instance, inner version, LSBs) and merged run by run
(``tun_gso.coalesce``).  Counters are per source RLOC.

A datagram bigger than any packet of the instance's MTU, without a GRO control message,
whose inner IP length is the whole rest of the datagram, is a UDP-tunnel super-packet
(``tun_tnl``: a peer's TCP super-packet that no device on the way had to cut): one LISP
header, one inner TCP super-packet.  It goes to the TUN in one GSO write, cut at the
instance's MTU.  A peer's UDP super-packet (``tun_uso``) comes *with* a GRO control
message (the kernel reports the inner datagram size of a tunnel packet carrying UDP_L4)
and is told from a batch by its inner IP length (the whole datagram, not one segment):
it goes to the TUN in one UDP_L4 GSO write cut at that size, the original datagrams.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from .base import IPAddr
from .tun_ecn import CMSG_SPACE, fix_inner, needs_fix, outer_info
from .tun_gso import (
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    NO_VNET,
    coalesce,
    coalesce_batch_split,
    columns_equal,
    pseudo_sum,
    vnet_header,
)
from .tun_itr import BUDGET

LsbCallback = Callable[[int, IPAddr, int], None]


class EtrPath:
    """LISP -> TUN: receive batches, check, coalesce, write."""

    offload: bool
    mtu: int
    on_lsb: LsbCallback | None
    _loop: asyncio.AbstractEventLoop | None
    _stopping: threading.Event
    _rbuf: bytearray
    _rbuf_mv: memoryview
    _wr_fds: dict[int, int]
    _decap: dict[str, list[int]]
    _lsb_seen: dict[tuple[int, str], int]
    _gso_tx: list[int]
    _tnl_rx: list[int]

    _drop: Callable[[str], None]
    """Count a dropped packet by reason (provided by TunDataplane)."""

    def _drain_rx(self, sock: socket.socket) -> None:
        """Receive up to ``BUDGET`` (GRO-coalesced) datagrams, decapsulate, write to the TUNs."""
        buf = self._rbuf
        mv = self._rbuf_mv
        recv = sock.recvmsg_into
        iov = [mv]
        writev = os.writev
        offload = self.offload
        decap = self._decap
        tun_fds = self._wr_fds
        for _ in range(BUDGET):
            try:
                n, anc, _flags, addr = recv(iov, CMSG_SPACE)
            except BlockingIOError:
                return
            except OSError:
                if self._stopping.is_set():
                    return
                self._drop("udp-read-error")
                return
            # outer TTL / ToS (RFC 9300 5.3, RFC 6040): judged on the first inner packet, as
            # a GRO batch holds one outer flow (same TTL and ToS) from one ITR
            seg, ottl, otos = outer_info(anc) if anc else (0, 255, 0)
            seg = seg or n
            fixing = n >= 28 and needs_fix(buf, 8, ottl, otos)
            if seg < n:
                fix = (ottl, otos) if fixing else None
                if offload and (self._decap_super(n, addr, seg, fix) or (not fixing and self._decap_batch(n, seg, addr))):
                    continue
            elif n > self.mtu + 8 and offload and self._decap_super(n, addr, 0, (ottl, otos) if fixing else None):
                continue
            prev: bytes | bytearray = b""
            fd: int | None = None
            spans: list[tuple[int, int]] = []
            packets = nbytes = 0
            off = 0
            while off < n:
                end = off + seg if off + seg < n else n
                if end - off < 28:
                    self._drop("short-lisp-packet")
                    off = end
                    continue
                hdr = buf[off : off + 8]
                if hdr != prev:
                    flags = hdr[0]
                    iid = (hdr[4] << 16 | hdr[5] << 8 | hdr[6]) if flags & 0x08 else 0
                    new_fd = tun_fds.get(iid)
                    if new_fd != fd and spans and fd is not None:
                        self._write(fd, spans, offload, writev)
                        spans = []
                    fd = new_fd
                    prev = hdr
                    if fd is not None and flags & 0x40:
                        lsb = hdr[7] if flags & 0x08 else int.from_bytes(hdr[4:8], "big")
                        k = (iid, addr[0])
                        if self._lsb_seen.get(k) != lsb:
                            self._lsb_seen[k] = lsb
                            self._report_lsb(iid, bytes(mv[off + 8 : end]), lsb)
                if fd is None:
                    self._drop("unknown-instance")
                elif not 0x40 <= buf[off + 8] < 0x70:
                    self._drop("bad-inner-packet")
                elif fixing and not fix_inner(buf, off + 8, ottl, otos):
                    self._drop("ecn-ce-not-ect")
                else:
                    spans.append((off + 8, end))
                    packets += 1
                    nbytes += end - off - 8
                off = end
            if spans and fd is not None:
                self._write(fd, spans, offload, writev)
            if packets:
                ctr = decap.get(addr[0])
                if ctr is None:
                    ctr = decap[addr[0]] = [0, 0]
                ctr[0] += packets
                ctr[1] += nbytes

    def _decap_batch(self, n: int, seg: int, addr: Any) -> bool:
        """A GRO batch of one instance and one inner flow: one check per header column,
        one GSO write.  False (nothing done) when the batch is not that uniform."""
        buf = self._rbuf
        count = (n + seg - 1) // seg
        last = (count - 1) * seg
        if n - last < 28 or not 0x40 <= buf[8] < 0x70 or not columns_equal(buf, 0, last, seg, range(8)):
            return False
        flags = buf[0]
        iid = (buf[4] << 16 | buf[5] << 8 | buf[6]) if flags & 0x08 else 0
        fd = self._wr_fds.get(iid)
        if fd is None:
            return False
        iovs = coalesce_batch_split(buf, self._rbuf_mv, 8, seg, count, n)
        if iovs is None:
            return False
        if flags & 0x40:
            lsb = buf[7] if flags & 0x08 else int.from_bytes(buf[4:8], "big")
            k = (iid, addr[0])
            if self._lsb_seen.get(k) != lsb:
                self._lsb_seen[k] = lsb
                self._report_lsb(iid, bytes(buf[8:seg]), lsb)
        try:
            for iov in iovs:
                os.writev(fd, iov)
                if len(iov) > 2:
                    self._gso_tx[0] += 1
        except OSError:
            self._drop("tun-write-error")
        ctr = self._decap.get(addr[0])
        if ctr is None:
            ctr = self._decap[addr[0]] = [0, 0]
        ctr[0] += count
        ctr[1] += n - 8 * count
        return True

    def _decap_super(self, n: int, addr: Any, udp_seg: int = 0, fix: tuple[int, int] | None = None) -> bool:
        """A UDP-tunnel super-packet: one LISP header and one inner TCP super-packet filling
        the datagram (one GSO write, segments of the instance's MTU), or with ``udp_seg`` (the
        GRO control message of a tunnel packet carrying UDP_L4) one inner UDP super-packet
        (one GSO write, cut at ``udp_seg``: the original datagrams).  ``fix``: the outer
        (TTL, ToS) to apply to the inner header (``tun_ecn``).  False (nothing done) when
        the datagram is not that."""
        buf = self._rbuf
        flags = buf[0]
        iid = (buf[4] << 16 | buf[5] << 8 | buf[6]) if flags & 0x08 else 0
        fd = self._wr_fds.get(iid)
        b0 = buf[8]
        if fd is None:
            return False
        proto = 17 if udp_seg else 6
        if b0 >> 4 == 4:
            ihl = (b0 & 0x0F) << 2
            v4 = True
            if ihl < 20 or buf[17] != proto or buf[14] & 0x3F or buf[15] or buf[10] << 8 | buf[11] != n - 8:
                return False
        elif b0 >> 4 == 6:
            ihl = 40
            v4 = False
            if buf[14] != proto or (buf[12] << 8 | buf[13]) + 40 != n - 8:
                return False
        else:
            return False
        th = 8 + ihl
        l4len = n - 8 - ihl
        if udp_seg:
            hl = ihl + 8
            gso_size = udp_seg
            csum_at = 6
            gso_type = GSO_UDP_L4
            if l4len > 0xFFFF or hl + gso_size > self.mtu:
                return False
            buf[th + 4] = l4len >> 8
            buf[th + 5] = l4len & 0xFF
        else:
            hl = ihl + ((buf[th + 12] >> 4) << 2)
            gso_size = self.mtu - hl
            csum_at = 16
            gso_type = GSO_TCPV4 if v4 else GSO_TCPV6
            if buf[th + 13] & 0x80:  # CWR: the kernel's TSO keeps it on the first segment only
                gso_type |= 0x80
        payload = n - 8 - hl
        if gso_size <= 0 or payload <= gso_size:
            return False
        if fix is not None and not fix_inner(buf, 8, *fix):
            self._drop("ecn-ce-not-ect")
            return True
        # the kernel finishes each segment's checksum from the pseudo-header sum
        s = pseudo_sum(buf, 8, v4, proto, l4len)
        buf[th + csum_at] = s >> 8
        buf[th + csum_at + 1] = s & 0xFF
        if flags & 0x40:
            lsb = buf[7] if flags & 0x08 else int.from_bytes(buf[4:8], "big")
            k = (iid, addr[0])
            if self._lsb_seen.get(k) != lsb:
                self._lsb_seen[k] = lsb
                self._report_lsb(iid, bytes(buf[8 : 8 + hl]), lsb)
        try:
            os.writev(fd, (vnet_header(gso_type, hl, gso_size, ihl, csum_at), self._rbuf_mv[8:n]))
        except OSError:
            self._drop("tun-write-error")
            return True
        self._tnl_rx[0] += 1
        if udp_seg:
            self._tnl_rx[1] += 1
        segs = -(-payload // gso_size)
        ctr = self._decap.get(addr[0])
        if ctr is None:
            ctr = self._decap[addr[0]] = [0, 0]
        ctr[0] += segs
        ctr[1] += n - 8 + (segs - 1) * hl
        return True

    def _write(self, fd: int, spans: list[tuple[int, int]], offload: bool,
               writev: Callable[[int, Any], int]) -> None:
        mv = self._rbuf_mv
        try:
            if not offload:
                for s, e in spans:
                    os.write(fd, mv[s:e])
            elif len(spans) == 1:
                s, e = spans[0]
                writev(fd, (NO_VNET, mv[s:e]))
            else:
                for iov in coalesce(self._rbuf, mv, spans):
                    if len(iov) > 2:
                        self._gso_tx[0] += 1
                    writev(fd, iov)
        except OSError:
            self._drop("tun-write-error")

    def _report_lsb(self, iid: int, inner: bytes, lsb: int) -> None:
        cb = self.on_lsb
        if cb is None or self._loop is None:
            return
        src: IPAddr = IPv4Address(inner[12:16]) if inner[0] >> 4 == 4 else IPv6Address(inner[8:24])
        try:
            self._loop.call_soon_threadsafe(cb, iid, src, lsb)
        except RuntimeError:
            pass


__all__ = ["EtrPath", "LsbCallback"]
