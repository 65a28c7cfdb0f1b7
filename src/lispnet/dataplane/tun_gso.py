"""Offload helpers for the TUN data plane: virtio-net headers, segmenting, coalescing.

The TUN devices carry a ``virtio_net_hdr`` (IFF_VNET_HDR) in front of every packet:

* toward the ETR's LAN, a *run* of inner packets of one flow that arrived in one UDP GRO
  batch (consecutive TCP segments, or same-size UDP datagrams) is written as one
  super-packet with a GSO descriptor; the kernel segments it again on its way to the
  host (or hands it whole to a veth that does GSO), exactly as its own GRO would have
  merged them.  The transport checksum is left partial (pseudo-header sum), which is
  what the kernel expects for a GSO packet;
* from the ITR's LAN, when the TUN offers TSO (``TUN_F_TSO4/6``), the kernel hands over
  TCP super-packets; :func:`segment_l4` cuts one into MSS-sized inner packets with
  their own IP and TCP headers and complete checksums, so every LISP packet on the
  underlay carries one ordinary IP packet (RFC 9300 needs nothing else from an ETR).

Everything here is pure: byte buffers in, header bytes and buffer views out.

virtio_net_hdr (little-endian, 10 bytes): flags (1 = NEEDS_CSUM), gso_type (1 TCPv4,
4 TCPv6, 5 UDP_L4), hdr_len, gso_size, csum_start, csum_offset.
"""

from __future__ import annotations

import struct

VNET_HDR_LEN = 10
NO_VNET = bytes(VNET_HDR_LEN)
F_NEEDS_CSUM = 1
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
MAX_RUN = 64
"""Inner packets merged into one super-packet at most (the kernel's own GRO limit)."""

_VNET = struct.Struct("<BBHHHH")
_IP4_WORDS = struct.Struct("!10H")
_H = struct.Struct("!H")
_I = struct.Struct("!I")
TCP_PSH_FIN = 0x09
TCP_ACK = 0x10

Iov = list[bytes | bytearray | memoryview]


def _super_header(
    buf: bytes | bytearray | memoryview, first: int, last: int, v4: bool, proto: int, ihl: int, hl: int, thl: int,
    size: int, total_payload: int, first_flags: int, last_flags: int,
) -> tuple[bytes, bytearray]:
    """(virtio-net header, IP + transport header) of a super-packet merging the segments from
    the one at ``first`` to the one at ``last``: lengths and IPv4 checksum for the whole,
    the transport checksum left partial; TCP takes the newest segment's ack, window and
    options, and ``first_flags`` plus the last segment's PSH/FIN."""
    hdr = bytearray(buf[first : first + hl])
    l4len = thl + total_payload
    if v4:
        hdr[2:4] = _H.pack(hl + total_payload)
        hdr[10:12] = b"\x00\x00"
        hdr[10:12] = _H.pack(ipv4_header_checksum(hdr))
    else:
        hdr[4:6] = _H.pack(l4len)
    if proto == 6:
        hdr[ihl + 8 : hl] = buf[last + ihl + 8 : last + hl]
        hdr[ihl + 13] = first_flags | (last_flags & TCP_PSH_FIN)
        hdr[ihl + 16 : ihl + 18] = _H.pack(_pseudo(buf, first, v4, 6, l4len))
        return vnet_header(GSO_TCPV4 if v4 else GSO_TCPV6, hl, size, ihl, 16), hdr
    hdr[ihl + 4 : ihl + 6] = _H.pack(l4len)
    hdr[ihl + 6 : ihl + 8] = _H.pack(_pseudo(buf, first, v4, 17, l4len))
    return vnet_header(GSO_UDP_L4, hl, size, ihl, 6), hdr


def vnet_header(gso_type: int, hdr_len: int, gso_size: int, csum_start: int, csum_offset: int) -> bytes:
    """A virtio_net_hdr asking the kernel to finish the checksum (and segment when ``gso_type``)."""
    return _VNET.pack(F_NEEDS_CSUM, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ones_sum(data: bytes | bytearray | memoryview) -> int:
    """The 16-bit ones' complement sum of ``data`` (RFC 1071), not complemented.

    2**16 is 1 modulo 0xFFFF, so the sum of the big-endian words is the value of the
    bytes modulo 0xFFFF (0 stands for 0xFFFF, which only matters for all-zero data).
    """
    v = int.from_bytes(data, "big")
    if len(data) & 1:
        v <<= 8
    s = v % 0xFFFF
    return s if s or not v else 0xFFFF


def ipv4_header_checksum(hdr: bytes | bytearray | memoryview) -> int:
    """Checksum of a 20-byte IPv4 header (its checksum field must be zero)."""
    return ~fold(sum(_IP4_WORDS.unpack_from(hdr, 0))) & 0xFFFF


def _pseudo(buf: bytes | bytearray | memoryview, at: int, v4: bool, proto: int, l4len: int) -> int:
    """Pseudo-header sum of the IP packet at ``at`` for an L4 length ``l4len``."""
    if v4:
        addrs = int.from_bytes(buf[at + 12 : at + 20], "big")
    else:
        addrs = int.from_bytes(buf[at + 8 : at + 40], "big")
    return fold(addrs % 0xFFFF + proto + l4len)


def pseudo_sum(buf: bytes | bytearray | memoryview, at: int, v4: bool, proto: int, l4len: int) -> int:
    """The pseudo-header sum (not complemented) a partial transport checksum field holds."""
    return _pseudo(buf, at, v4, proto, l4len)


# --- ETR: coalesce a run of inner packets into one GSO write ----------------------------
def coalesce(buf: bytearray, mv: memoryview, spans: list[tuple[int, int]]) -> list[Iov]:
    """Group consecutive inner packets of one flow into GSO super-packets.

    ``spans`` are (start, end) offsets of inner IP packets in ``buf`` that go to the same
    TUN device, in arrival order.  Returns the writev() buffer lists: a single packet is
    ``[NO_VNET, packet]``; a run is ``[vnet, merged headers, payload, payload, ...]``.
    TCP segments join a run when addresses, ports, TOS, TTL, header lengths and flags
    match and the sequence numbers are contiguous; UDP datagrams when addresses and
    ports match and the sizes are equal (the last may be shorter).  PSH/FIN, a shorter
    segment, or anything unusual ends a run.
    """
    out: list[Iov] = []
    n = len(spans)
    i = 0
    while i < n:
        s, e = spans[i]
        b0 = buf[s]
        if b0 == 0x45 and e - s >= 28 and not (buf[s + 6] & 0x3F or buf[s + 7]):
            proto = buf[s + 9]
            ihl = 20
            v4 = True
            ranges: tuple[tuple[int, int], ...] = ((0, 2), (6, 10), (12, 24))
        elif b0 >> 4 == 6 and e - s >= 48:
            proto = buf[s + 6]
            ihl = 40
            v4 = False
            ranges = ((0, 4), (6, 44))
        else:
            out.append([NO_VNET, mv[s:e]])
            i += 1
            continue
        if proto == 6 and e - s >= ihl + 20:
            thl = (buf[s + ihl + 12] >> 4) << 2
            flags = buf[s + ihl + 13]
            hl = ihl + thl
        elif proto == 17:
            thl = 8
            flags = 0
            hl = ihl + 8
        else:
            out.append([NO_VNET, mv[s:e]])
            i += 1
            continue
        size = e - s - hl
        if size <= 0 or (proto == 6 and flags != TCP_ACK) or i + 1 >= n:
            out.append([NO_VNET, mv[s:e]])
            i += 1
            continue
        seq = _I.unpack_from(buf, s + ihl + 4)[0] if proto == 6 else 0
        refs = [(a, b, buf[s + a : s + b]) for a, b in ranges]
        j = i + 1
        last_flags = flags
        while j < n and j - i < MAX_RUN:
            s2, e2 = spans[j]
            size2 = e2 - s2 - hl
            if size2 <= 0 or size2 > size:
                break
            ok = True
            for a, b, ref in refs:
                if buf[s2 + a : s2 + b] != ref:
                    ok = False
                    break
            if not ok:
                break
            if proto == 6:
                f2 = buf[s2 + ihl + 13]
                if (
                    (buf[s2 + ihl + 12] >> 4) << 2 != thl
                    or f2 & ~TCP_PSH_FIN != TCP_ACK
                    or _I.unpack_from(buf, s2 + ihl + 4)[0] != (seq + size * (j - i)) & 0xFFFFFFFF
                ):
                    break
                last_flags = f2
            j += 1
            if size2 < size or last_flags & TCP_PSH_FIN:
                break
        if j - i == 1:
            out.append([NO_VNET, mv[s:e]])
            i += 1
            continue
        sl, el = spans[j - 1]
        total_payload = size * (j - i - 1) + (el - sl - hl)
        vnet, hdr = _super_header(buf, s, sl, v4, proto, ihl, hl, thl, size, total_payload, flags, last_flags)
        iov: Iov = [vnet, hdr]
        for k in range(i, j):
            a, b = spans[k]
            iov.append(mv[a + hl : b])
        out.append(iov)
        i = j
    return out


def columns_equal(buf: bytearray, first: int, last: int, stride: int, offsets: range | tuple[int, ...]) -> bool:
    """Whether byte ``o`` of every packet (at ``first``, ``first + stride``, ... ``last``)
    is the same, for each ``o`` in ``offsets``: one extended slice per column."""
    count = (last - first) // stride + 1
    for o in offsets:
        col = buf[first + o : last + o + 1 : stride]
        if col.count(col[0]) != count:
            return False
    return True


_V4_KEY = (0, 1, 6, 7, 8, 9, *range(12, 24))
_V6_KEY = (0, 1, 2, 3, 6, 7, *range(8, 44))


def coalesce_batch(buf: bytearray, mv: memoryview, first: int, stride: int, count: int, end: int) -> Iov | None:
    """Merge a whole UDP GRO batch in one go, or None when it is not one uniform run.

    The ``count`` inner packets start at ``first``, ``first + stride``, ...; all are
    ``stride - 8`` bytes long except the last, which ends at ``end``.  The flow fields
    are compared column by column (one C-level extended slice per header byte) instead
    of packet by packet; TCP sequence numbers must be contiguous, TCP flags plain ACK
    (PSH/FIN allowed on the last).  The result is the same as :func:`coalesce` gives.
    """
    if count < 2:
        return None
    last = first + stride * (count - 1)
    b0 = buf[first]
    if b0 == 0x45:
        if buf[first + 6] & 0x3F or buf[first + 7]:
            return None
        v4 = True
        ihl = 20
        proto = buf[first + 9]
        key: tuple[int, ...] = _V4_KEY
    elif b0 >> 4 == 6:
        v4 = False
        ihl = 40
        proto = buf[first + 6]
        key = _V6_KEY
    else:
        return None
    size = stride - 8
    if proto == 6:
        thl = (buf[first + ihl + 12] >> 4) << 2
        hl = ihl + thl
        if size <= hl or end - last <= hl or buf[first + ihl + 13] != TCP_ACK:
            return None
        key = (*key, ihl + 12)
    elif proto == 17:
        thl = 8
        hl = ihl + 8
        if size <= hl or end - last <= hl:
            return None
    else:
        return None
    if not columns_equal(buf, first, last, stride, key):
        return None
    # every packet but the last fills its segment exactly (IP and UDP lengths agree)
    lengths: tuple[int, ...] = (2, 3) if v4 else (4, 5)
    if proto == 17:
        lengths = (*lengths, ihl + 4, ihl + 5)
    if _H.unpack_from(buf, first + lengths[0])[0] != (size if v4 else size - 40):
        return None
    if count > 2 and not columns_equal(buf, first, last - stride, stride, lengths):
        return None
    payload = size - hl
    if proto == 6:
        # flags: plain ACK everywhere but on the last packet; sequence numbers contiguous
        if count > 2 and not columns_equal(buf, first, last - stride, stride, (ihl + 13,)):
            return None
        last_flags = buf[last + ihl + 13]
        if last_flags & ~TCP_PSH_FIN != TCP_ACK:
            return None
        seq0 = _I.unpack_from(buf, first + ihl + 4)[0]
        if seq0 + payload * count > 0xFFFFFFFF:
            return None
        seqs = bytearray(4 * count)
        for j in range(4):
            seqs[j::4] = buf[first + ihl + 4 + j : last + ihl + 5 + j : stride]
        if struct.unpack(f"!{count}I", seqs) != tuple(range(seq0, seq0 + payload * count, payload)):
            return None
    else:
        last_flags = 0
    total_payload = payload * (count - 1) + (end - last - hl)
    vnet, hdr = _super_header(buf, first, last, v4, proto, ihl, hl, thl, payload, total_payload, TCP_ACK, last_flags)
    iov: Iov = [vnet, hdr]
    a = first + hl
    for _ in range(count - 1):
        iov.append(mv[a : a + payload])
        a += stride
    iov.append(mv[a:end])
    return iov


def coalesce_batch_split(
    buf: bytearray, mv: memoryview, first: int, stride: int, count: int, end: int
) -> list[Iov] | None:
    """:func:`coalesce_batch`, also for a TCP batch with PSH/FIN inside: split after each
    such segment (a sender's write boundary) and merge the pieces.  None when the batch
    is not uniform otherwise."""
    iov = coalesce_batch(buf, mv, first, stride, count, end)
    if iov is not None:
        return [iov]
    b0 = buf[first]
    if b0 == 0x45 and buf[first + 9] == 6:
        at = first + 33
    elif b0 >> 4 == 6 and buf[first + 6] == 6:
        at = first + 53
    else:
        return None
    last = first + stride * (count - 1)
    flags = buf[at : last + 1 + (at - first) : stride]
    cuts = [i for i in range(count - 1) if flags[i] != TCP_ACK]
    if not cuts or len(cuts) > 8:
        return None
    out: list[Iov] = []
    start = 0
    for stop in [*cuts, count - 1]:
        a = first + start * stride
        e = first + stop * stride + stride - 8 if stop < count - 1 else end
        if stop == start:
            out.append([NO_VNET, mv[a:e]])
        else:
            part = coalesce_batch(buf, mv, a, stride, stop - start + 1, e)
            if part is None:
                return None
            out.append(part)
        start = stop + 1
    return out


# --- ITR: cut a TCP or UDP super-packet into its segments ------------------------------
def segment_l4(
    pkt: memoryview, gso_size: int
) -> list[tuple[bytes, memoryview]]:
    """Split a TCP super-packet (TSO from the TUN) or a UDP one (USO: GRO-merged datagrams)
    into (headers, payload) segments of ``gso_size`` payload bytes (the last may be shorter).

    Each segment gets its IP header (length, IPv4 id + k, header checksum) and transport
    header with a complete checksum - TCP: seq + k * gso_size, CWR only on the first,
    PSH/FIN only on the last; UDP: its length - as the kernel's own software GSO would
    produce.  A packet with nothing to cut comes back as ``[(b"", pkt)]``.
    """
    v4 = pkt[0] >> 4 == 4
    ihl = (pkt[0] & 0x0F) << 2 if v4 else 40
    tcp = (pkt[9] if v4 else pkt[6]) == 6
    thl = (pkt[ihl + 12] >> 4) << 2 if tcp else 8
    hl = ihl + thl
    total = len(pkt)
    if gso_size <= 0 or total - hl <= gso_size:
        return [(b"", pkt)]
    ip = bytearray(pkt[:ihl])
    th = bytearray(pkt[ihl:hl])
    flags = th[13] if tcp else 0
    seq = _I.unpack_from(th, 4)[0] if tcp else 0
    csum_at = 16 if tcp else 6
    ip_id = _H.unpack_from(ip, 4)[0] if v4 else 0
    addrs = _pseudo(pkt, 0, v4, 6 if tcp else 17, 0)
    out: list[tuple[bytes, memoryview]] = []
    off = hl
    k = 0
    while off < total:
        end = min(off + gso_size, total)
        l4len = thl + end - off
        if tcp:
            f = flags & ~(TCP_PSH_FIN | 0x80) if k else flags & ~TCP_PSH_FIN
            if end == total:
                f |= flags & TCP_PSH_FIN
            th[4:8] = _I.pack((seq + k * gso_size) & 0xFFFFFFFF)
            th[13] = f
        else:
            th[4:6] = _H.pack(l4len)
        th[csum_at : csum_at + 2] = b"\x00\x00"
        csum = fold(addrs + l4len + ones_sum(th) + ones_sum(pkt[off:end]))
        th[csum_at : csum_at + 2] = _H.pack(~csum & 0xFFFF or 0xFFFF)
        segment_ip_header(ip, v4, l4len, ip_id + k)
        out.append((bytes(ip) + bytes(th), pkt[off:end]))
        off = end
        k += 1
    return out


def segment_ip_header(ip: bytearray, v4: bool, l4len: int, ip_id: int) -> None:
    """Set a segment's IP header for ``l4len`` bytes of transport header and payload: the
    lengths, and for IPv4 the id and the header checksum."""
    if v4:
        ip[2:4] = _H.pack(len(ip) + l4len)
        ip[4:6] = _H.pack(ip_id & 0xFFFF)
        ip[10:12] = b"\x00\x00"
        ip[10:12] = _H.pack(ipv4_header_checksum(ip))
    else:
        ip[4:6] = _H.pack(l4len)


def complete_checksum(buf: bytearray, at: int, end: int, start: int, offset: int) -> None:
    """Finish a partial (CHECKSUM_PARTIAL) transport checksum of the packet at ``at``.

    The field already holds the pseudo-header sum; add the sum of the bytes from
    ``start`` (relative to the packet) and store the complement.
    """
    begin = at + start
    s = ones_sum(memoryview(buf)[begin:end])
    csum = ~s & 0xFFFF or 0xFFFF
    pos = begin + offset
    buf[pos] = csum >> 8
    buf[pos + 1] = csum & 0xFF


__all__ = [
    "GSO_TCPV4",
    "GSO_TCPV6",
    "GSO_UDP_L4",
    "NO_VNET",
    "VNET_HDR_LEN",
    "coalesce",
    "coalesce_batch",
    "coalesce_batch_split",
    "columns_equal",
    "complete_checksum",
    "ipv4_header_checksum",
    "ones_sum",
    "pseudo_sum",
    "segment_ip_header",
    "segment_l4",
    "vnet_header",
]
