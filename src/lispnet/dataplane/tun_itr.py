"""The ITR half of the TUN data plane's forwarding thread (a mixin of ``TunDataplane``).

Per wake-up, up to ``BUDGET`` packets are read from a TUN device, each into its own slot
of one arena, so a queued packet stays valid until the batches leave at the end of the
drain.  The common packet (IPv4 without options or IPv6, TCP or UDP, not a fragment, no
offload work) costs one ``struct`` unpack for its 5-tuple, one dict lookup and two list
appends: the 5-tuple cache maps it to a :class:`Flow` holding the outer socket (whose
port is the flow hash), the RLOC, the LISP header, the per-RLOC counters and the
flow's pending ``UDP_SEGMENT`` batch.  Everything else takes ``_tun_slow``.

A TCP TUN (tunnel offload, ``tun_tnl``) hands over TSO super-packets, and with USO
(``tun_uso``) runs of GRO-merged UDP datagrams: each leaves in one write to the offload
TAP with the outer headers in front (the kernel cuts it into LISP packets where needed,
at most as big as the route MTU toward the RLOC allows); without the offload it is cut
here (``tun_gso.segment_l4``).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from .tun_gso import GSO_UDP_L4, VNET_HDR_LEN, complete_checksum, segment_l4
from .tun_tnl import TunnelHeader
from .udp_gso import MAX_BYTES, MAX_SEGMENTS, send_batch

BUDGET = 64
"""Packets read (or GRO batches received) per fd per wake-up."""
MIN_SEGMENT = 256
"""Smallest TCP payload per segment the tunnel offload cuts to (else: cut here)."""
TCP_BUDGET = 16
"""Reads per wake-up from a TCP TUN (each up to a 64 KB super-packet)."""
_KEY4 = struct.Struct("!xB4xHBB2x12s")
"""IPv4 (no options): (ToS, fragment field, TTL, protocol, addresses + ports)."""
_KEY6 = struct.Struct("!H4xBB36s")
"""IPv6: (version + traffic class + top of the flow label, next header, hop limit,
addresses + ports).  TTL and ToS are in the keys: the outer header copies them per flow."""
Buf = bytes | bytearray | memoryview


class Arena:
    """Read slots for one drain: ``budget`` slots of ``size`` bytes in one buffer, so a
    queued packet stays valid (no copy) until its batch leaves at the end of the drain."""

    __slots__ = ("buf", "mv", "views", "views_at", "size", "budget")

    def __init__(self, buf: bytearray, size: int, budget: int) -> None:
        self.buf = buf
        self.mv = memoryview(buf)
        self.size = size
        self.budget = budget
        self.views = [self.mv[k * size : (k + 1) * size] for k in range(budget)]
        """Read targets for a TUN with a virtio-net header (it fills the first 10 bytes)."""
        self.views_at = [self.mv[k * size + VNET_HDR_LEN : (k + 1) * size] for k in range(budget)]
        """Read targets for a TUN without one: the packet lands at the same place."""


class Flow:
    """A 5-tuple's forwarding decision (socket = outer source port, RLOC, LISP header,
    per-RLOC counters, tunnel-offload headers) and its pending ``UDP_SEGMENT`` batch."""

    __slots__ = ("sock", "addr", "header", "ctr", "cmsg", "iov", "seg", "count", "limit", "short", "tnl")

    def __init__(self, sock: socket.socket, addr: tuple[Any, ...], header: bytes, ctr: list[int],
                 cmsg: list[tuple[int, int, bytes]] | None = None) -> None:
        self.sock = sock
        self.cmsg: list[tuple[int, int, bytes]] = cmsg or []
        """Control messages of every send: the outer TTL and ToS, copied from the inner header."""
        self.addr = addr
        self.header = header
        self.ctr = ctr
        self.iov: list[Buf] = []
        self.seg = 0
        """Size of every packet of the batch (LISP header included) but the last."""
        self.count = 0
        self.limit = 0
        """Packets one batch of ``seg``-byte packets may hold."""
        self.short = 0
        """How much shorter than ``seg`` the last packet of the batch is."""
        self.tnl: TunnelHeader | None = None
        """Outer headers for whole TCP super-packets (tunnel offload), or None."""

    def start(self, parts: list[Buf], ln: int) -> None:
        """Begin a batch with one packet of ``ln`` bytes."""
        self.iov = parts
        self.seg = ln
        self.limit = min(MAX_SEGMENTS, MAX_BYTES // ln)
        self.short = 0
        self.count = 1


class ItrPath:
    """TUN -> LISP: read, look up, batch, send."""

    offload: bool
    gso: bool
    _flows5: dict[int, dict[Any, Flow]]
    _sends: list[int]
    _gso_rx: list[int]
    _tap_fd: int | None
    _tnl_tx: list[int]
    _readers: dict[int, Callable[[memoryview], int | None]]
    """TUN fd -> ``readinto`` of an unbuffered file on it (None when it would block)."""

    _drop: Callable[[str], None]
    """Count a dropped packet by reason (provided by TunDataplane)."""

    _resolve: Callable[[int, dict[Any, Flow] | None, Any, memoryview, int, int], Flow | None]
    """Look up / build the flow entry of a packet (provided by TunDataplane)."""

    def _drain_tun(self, fd: int, iid: int, ar: Arena, vnet: bool) -> None:
        """Read up to ``ar.budget`` packets from a TUN device, encapsulate, send in batches.

        Each read lands in its own slot of the arena, so the queued packets stay valid
        until the batches leave at the end of the drain.  The common packet (IPv4 without
        options or IPv6, TCP or UDP, not a fragment, no offload work) costs one unpack for
        its 5-tuple, one dict lookup, an 8-byte copy and one list append: every packet
        lands ``VNET_HDR_LEN`` bytes into its slot (behind the virtio-net header of a
        ``vnet`` TUN, or read there), and its LISP header goes in the 8 bytes in front of
        it, so packet and header are one buffer of the batch.
        """
        arena = ar.buf
        mv = ar.mv
        views = ar.views if vnet else ar.views_at
        vlen = VNET_HDR_LEN if vnet else 0
        slot_size = ar.size
        readinto = self._readers[fd]
        flows = self._flows5.get(iid)
        if flows is None:
            flows = self._flows5[iid] = {}
        flows_get = flows.get
        key4 = _KEY4.unpack_from
        key6 = _KEY6.unpack_from
        pending: list[Flow] = []
        try:
            for k in range(ar.budget):
                try:
                    n = readinto(views[k])
                except OSError as e:
                    if e.errno != errno.EBADF:
                        self._drop("tun-read-error")
                    break
                if n is None:  # EAGAIN: drained
                    break
                base = k * slot_size
                m = n - vlen
                if m < 40 or (vnet and (arena[base + 1] or arena[base] & 1)):
                    self._tun_slow(iid, flows, base, m, pending, ar, vnet)
                    continue
                p = base + VNET_HDR_LEN
                end = p + m
                b0 = arena[p]
                if b0 == 0x45:
                    key = key4(arena, p)
                    if key[3] not in (6, 17) or key[1] & 0x3FFF:
                        self._tun_slow(iid, flows, base, m, pending, ar, vnet)
                        continue
                elif b0 >> 4 == 6:
                    key = key6(arena, p)
                    if key[1] not in (6, 17):
                        self._tun_slow(iid, flows, base, m, pending, ar, vnet)
                        continue
                else:
                    self._tun_slow(iid, flows, base, m, pending, ar, vnet)
                    continue
                f = flows_get(key)
                if f is None:
                    f = self._new_flow(iid, flows, key, mv[p:end], m, 0)
                    if f is None:
                        continue
                h = base + 2
                arena[h:p] = f.header
                ln = m + 8
                cnt = f.count
                if cnt:
                    if ln == f.seg and cnt < f.limit:
                        f.iov.append(mv[h:end])
                        f.count = cnt + 1
                        continue
                    self._flow_add(f, [mv[h:end]], ln, pending)
                    continue
                f.start([mv[h:end]], ln)
                pending.append(f)
        finally:
            for f in pending:
                if f.count:
                    self._flush(f)

    def _flow_add(self, f: Flow, parts: list[Buf], ln: int, pending: list[Flow]) -> None:
        """Queue one encapsulated packet on its flow's batch (general case)."""
        if f.count:
            if ln <= f.seg and f.count < f.limit:
                f.iov += parts
                f.count += 1
                if ln < f.seg:  # only the last segment of a batch may be shorter
                    f.short = f.seg - ln
                    self._flush(f)
                return
            self._flush(f)
        f.start(list(parts), ln)
        if f not in pending:
            pending.append(f)

    def _flush(self, f: Flow) -> None:
        count = f.count
        reason = send_batch(f.sock, f.addr, f.iov, f.seg, count, self.gso, f.cmsg)
        f.iov = []
        f.count = 0
        if reason is None:
            ctr = f.ctr
            ctr[0] += count
            ctr[1] += (f.seg - 8) * count - f.short
            self._sends[0] += 1
            self._sends[1] += count
        else:
            self._drop(reason)

    def _tun_slow(self, iid: int, flows: dict[Any, Flow], base: int, m: int, pending: list[Flow], ar: Arena,
                  vnet: bool) -> None:
        """Everything off the common path: offload work, fragments, other protocols, short packets.
        The ``m``-byte packet is at ``base + VNET_HDR_LEN``; a ``vnet`` TUN's header in front."""
        arena = ar.buf
        p = base + VNET_HDR_LEN
        if m < 20:
            self._drop("short-packet")
            return
        gso_size = 0
        if vnet:
            # virtio_net_hdr: a TSO super-packet (TUN_F_TSO*) is cut into MSS-sized
            # packets; a single packet with a partial checksum (TUN_F_CSUM) gets it now
            if arena[base + 1]:
                gso_size = arena[base + 4] | arena[base + 5] << 8
            elif arena[base] & 1:
                complete_checksum(arena, p, p + m, arena[base + 6] | arena[base + 7] << 8,
                                  arena[base + 8] | arena[base + 9] << 8)
        b0 = arena[p]
        key: tuple[Any, ...]
        if b0 == 0x45:
            key = _KEY4.unpack_from(arena, p)
            cacheable = key[3] in (6, 17) and not key[1] & 0x3FFF
        elif b0 >> 4 == 4:
            ihl = (b0 & 0x0F) << 2
            if m < ihl + 4:
                self._drop("short-packet")
                return
            key = (arena[p + 9], bytes(arena[p + 12 : p + 20]), bytes(arena[p + ihl : p + ihl + 4]))
            cacheable = False
        elif b0 >> 4 == 6:
            if m < 40:
                self._drop("short-packet")
                return
            key = _KEY6.unpack_from(arena, p)
            cacheable = key[1] in (6, 17)
        else:
            self._drop("not-ip")
            return
        mv = ar.mv
        proto = arena[p + (9 if b0 >> 4 == 4 else 6)]
        # a TSO (TCP) or USO (UDP_L4, GRO-merged datagrams of one flow) super-packet
        tso = gso_size and m > gso_size + 28 and proto in (6, 17)
        f = flows.get(key) if cacheable else None
        if f is None:
            f = self._new_flow(iid, flows if cacheable else None, key, mv[p : p + m], m, gso_size if tso else 0)
            if f is None:
                return
        if tso:
            self._gso_rx[0] += 1
            if f.tnl is not None and self._tnl_send(f, arena, mv, base, p, m, gso_size):
                return
            hdr = f.header
            for seg_hdr, payload in segment_l4(mv[p : p + m], gso_size):
                ln = len(seg_hdr) + len(payload)
                self._flow_add(f, [hdr, seg_hdr, payload], ln + 8, pending)
        else:
            self._flow_add(f, [f.header, mv[p : p + m]], m + 8, pending)

    def _new_flow(self, iid: int, flows: dict[Any, Flow] | None, key: Any, pkt: memoryview, m: int,
                  gso_size: int) -> Flow | None:
        """Resolve a new flow: map-cache lookup, RLOC choice, socket.  Handles the packet
        itself (punt, native, drop) and returns None when it is not encapsulated."""
        return self._resolve(iid, flows, key, pkt, m, gso_size)

    def _tnl_send(self, f: Flow, arena: bytearray, mv: memoryview, base: int, p: int, m: int, gso_size: int) -> bool:
        """Write a TCP or UDP super-packet to the offload TAP behind the flow's outer headers,
        cut (by the kernel, where needed) at the sender's MSS or at what the route MTU toward
        the RLOC leaves room for; UDP datagrams are never re-cut.  False (nothing sent) when
        that is next to nothing, or a datagram does not fit."""
        tnl = f.tnl
        tap = self._tap_fd
        assert tnl is not None
        b0 = arena[p]
        ihl = (b0 & 0x0F) << 2 if b0 >> 4 == 4 else 40
        udp = arena[base + 1] == GSO_UDP_L4
        hl = ihl + (8 if udp else (arena[p + ihl + 12] >> 4) << 2)
        room = tnl.room(hl)
        if tap is None or room < (gso_size if udp else MIN_SEGMENT):
            return False
        if room < gso_size:
            gso_size = room
        if f.count:  # earlier packets of the flow leave first
            self._flush(f)
        # gso_type: TCPV4/TCPV6, with the ECN flag when the sender's first segment has CWR
        buf = tnl.prepare(m, arena[base + 1], gso_size, arena[base + 6] | arena[base + 7] << 8,
                          arena[base + 8] | arena[base + 9] << 8, hl)
        try:
            os.writev(tap, (buf, mv[p : p + m]))
        except OSError:
            # the kernel refused the tunnel header: cut super-packets here from now on
            self._drop("tnl-write-error")
            f.tnl = None
            return False
        segs = -(-(m - hl) // gso_size)
        ctr = f.ctr
        ctr[0] += segs
        ctr[1] += m + (segs - 1) * hl
        self._tnl_tx[0] += 1
        if udp:
            self._tnl_tx[1] += 1
        return True


__all__ = ["BUDGET", "Buf", "Flow", "ItrPath"]
