"""VXLAN-GBP in the user-space path: encapsulate and decapsulate with the group policy id.

draft-smith-vxlan-group-policy extends the VXLAN header (UDP 4789) with a G flag and a
16-bit Group Policy ID, the "group tag" of the sending endpoint, so the receiving
tunnel router can apply group-based policy.  The header codec is
:class:`lispnet.wire.data.VxlanGbpHeader`; this module puts it around an inner packet:

* ``encapsulate(inner, vni, group_tag)``: the UDP payload (8-byte GBP header + an
  Ethernet header with the fixed router MACs, as an L3 overlay on plain VXLAN needs
  both ends to agree on them, see :mod:`.vxlan` + the inner IP packet);
* ``decapsulate(payload)``: (header, inner IP packet), rejecting packets without G;
* ``GbpEncapsulator``: the per-node object built from the config
  (``[xtr] gbp-group-tag``), sending on a UDP socket toward a VTEP.

The instance-id is the VNI, as in the kernel VXLAN backend.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from ..wire.data import PORT_VXLAN, VxlanGbpHeader
from ..wire.errors import DecodeError

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ROUTER_MAC = bytes.fromhex("024c49535001")
"""The router MAC of the L3 overlay on plain VXLAN (``vxlan.ROUTER_MAC``)."""
_ETH = struct.Struct("!6s6sH")


class GbpError(DecodeError):
    """A received VXLAN-GBP packet we cannot decapsulate."""


def encapsulate(
    inner: bytes, vni: int, group_tag: int, *, dont_learn: bool = False, policy_applied: bool = False
) -> bytes:
    """The UDP payload carrying the IP packet ``inner`` with ``group_tag`` in VNI ``vni``."""
    if not inner or inner[0] >> 4 not in (4, 6):
        raise ValueError("inner packet is not IPv4 or IPv6")
    header = VxlanGbpHeader(vni, group_tag, dont_learn, policy_applied).to_bytes()
    ethertype = ETH_P_IP if inner[0] >> 4 == 4 else ETH_P_IPV6
    return header + _ETH.pack(ROUTER_MAC, ROUTER_MAC, ethertype) + inner


def decapsulate(payload: bytes) -> tuple[VxlanGbpHeader, bytes]:
    """(GBP header, inner IP packet) of a received UDP payload."""
    if len(payload) < 8 + _ETH.size:
        raise GbpError("VXLAN-GBP packet too short", 0)
    header = VxlanGbpHeader.from_bytes(payload[:8])
    _dst, _src, ethertype = _ETH.unpack_from(payload, 8)
    if ethertype not in (ETH_P_IP, ETH_P_IPV6):
        raise GbpError(f"VXLAN-GBP inner ethertype {ethertype:#06x} is not IP", 20)
    return header, payload[8 + _ETH.size :]


@dataclass(slots=True)
class GbpEncapsulator:
    """Sends IP packets to a VTEP over VXLAN-GBP with this node's group tag."""

    group_tag: int
    """The local group policy id (``[xtr] gbp-group-tag``)."""
    port: int = PORT_VXLAN
    sock: socket.socket | None = None

    @classmethod
    def from_config(cls, config: object) -> GbpEncapsulator | None:
        """From a NodeConfig (None when ``xtr.gbp-group-tag`` is not set)."""
        tag = getattr(getattr(config, "xtr", None), "gbp_group_tag", None)
        return cls(int(tag)) if tag is not None else None

    def send(self, inner: bytes, vni: int, vtep: str) -> int:
        """Encapsulate ``inner`` and send it to ``vtep``; returns the bytes sent."""
        family = socket.AF_INET6 if ":" in vtep else socket.AF_INET
        if self.sock is None or self.sock.family != family:
            if self.sock is not None:
                self.sock.close()
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
        return self.sock.sendto(encapsulate(inner, vni, self.group_tag), (vtep, self.port))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


__all__ = ["GbpEncapsulator", "GbpError", "decapsulate", "encapsulate"]
