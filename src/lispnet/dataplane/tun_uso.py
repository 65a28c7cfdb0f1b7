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
* otherwise cuts it here (``tun_gso.segment_l4``) into the original datagrams.

The datagram boundaries are kept everywhere: GRO merges only same-size datagrams (the last
may be shorter) and every cut is at ``gso_size``.

The LAN interfaces are set up for the merging by ``lan_gro.LanGro`` (``[node] lan-gro``).
"""

from __future__ import annotations

TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
GSO_UDP_L4 = 5


__all__ = ["GSO_UDP_L4", "TUN_F_USO4", "TUN_F_USO6"]
