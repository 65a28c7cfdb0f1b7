"""UDP super-packets for the TUN data plane: one read per run of datagrams of one flow.

The ITR's cost per small packet is mostly its TUN read.  The kernel can merge what the
LAN sends: with GRO on the EID-facing interface and ``rx-udp-gro-forwarding``,
consecutive same-size datagrams of one flow that arrive in one NAPI round become one
UDP_L4 GSO packet (up to 64 datagrams), which the kernel routes whole into a TUN that
offers USO (``TUN_F_USO4/6``, Linux 6.2+).  The ITR reads it with its virtio-net header
(``gso_type`` 5, ``gso_size`` = datagram payload) and

* with the tunnel-offload TAP (``tun_tnl``), writes it out whole behind its outer headers
  as a UDP-tunnel super-packet with an inner UDP_L4 type: where a device cannot carry it,
  the kernel cuts it into ordinary LISP packets, one inner datagram each with its own
  UDP checksum; across veth pairs it arrives whole at the ETR's ``UDP_GRO`` socket,
  whose control message gives the inner datagram size, and goes into the ETR's TUN as
  one UDP_L4 GSO write that the kernel cuts again into the original datagrams;
* otherwise cuts it here (:func:`segment_udp`) into the original datagrams.

The datagram boundaries are kept everywhere: GRO merges only same-size datagrams (the last
may be shorter) and every cut is at ``gso_size``.

The LAN interfaces are set up for the merging by ``lan_gro.LanGro`` (``[node] lan-gro``).
"""

from __future__ import annotations

import struct

from .tun_gso import fold, ipv4_header_checksum, ones_sum, pseudo_sum

TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
GSO_UDP_L4 = 5
_H = struct.Struct("!H")


def segment_udp(pkt: memoryview, gso_size: int) -> list[tuple[bytes, memoryview]]:
    """Split a UDP_L4 super-packet (USO from the TUN) into (headers, payload) datagrams.

    Each gets its IP header (length, IPv4 id + k, header checksum) and UDP header (length,
    complete checksum), as the kernel's own software GSO would produce.
    """
    v4 = pkt[0] >> 4 == 4
    ihl = (pkt[0] & 0x0F) << 2 if v4 else 40
    hl = ihl + 8
    total = len(pkt)
    if gso_size <= 0 or total - hl <= gso_size:
        return [(b"", pkt)]
    ip = bytearray(pkt[:ihl])
    udp = bytearray(pkt[ihl:hl])
    ip_id = _H.unpack_from(ip, 4)[0] if v4 else 0
    addrs = pseudo_sum(pkt, 0, v4, 17, 0)
    out: list[tuple[bytes, memoryview]] = []
    off = hl
    k = 0
    while off < total:
        end = min(off + gso_size, total)
        l4len = 8 + end - off
        udp[4:6] = _H.pack(l4len)
        udp[6:8] = b"\x00\x00"
        csum = fold(addrs + l4len + ones_sum(udp) + ones_sum(pkt[off:end]))
        udp[6:8] = _H.pack(~csum & 0xFFFF or 0xFFFF)
        if v4:
            ip[2:4] = _H.pack(ihl + l4len)
            ip[4:6] = _H.pack((ip_id + k) & 0xFFFF)
            ip[10:12] = b"\x00\x00"
            ip[10:12] = _H.pack(ipv4_header_checksum(ip))
        else:
            ip[4:6] = _H.pack(l4len)
        out.append((bytes(ip) + bytes(udp), pkt[off:end]))
        off = end
        k += 1
    return out


__all__ = ["GSO_UDP_L4", "TUN_F_USO4", "TUN_F_USO6", "segment_udp"]
