"""The eBPF ETR's segmenter for GSO batches of LISP datagrams.

A user-space ITR (our TUN backend among them) sends UDP_SEGMENT batches: one skb
carrying many encapsulated datagrams of ``gso_size`` each.  A NIC segments them on the
wire, but a veth hands the batch across whole, and a NIC with UDP GRO (or
``rx-udp-gro-forwarding``) builds such batches on receive.  Either way ``lisp_decap``
meets one skb holding many LISP headers, of which ``bpf_skb_adjust_room`` can strip
only the first.  There is no BPF helper that segments an skb; the kernel does it on
transmit, in ``validate_xmit_skb``, whenever the device cannot take the batch.

So the backend keeps a veth pair of its own in the namespace::

    RLOC iface ingress --(GSO batch: bpf_redirect)--> lisp-seg0 egress
        gso_max_segs 1: the kernel segments the batch in software
    lisp-seg1 ingress (lisp_decap again, one datagram at a time) --> EID side

The program rewrites the batch's destination MAC to ``lisp-seg1``'s so the segments
arrive as PACKET_HOST (a decapsulated packet for a local address is passed to the
stack there) and never sends a batch from ``lisp-seg1`` back out (no loop).  The pair
costs one extra softirq hop per segment and nothing on the normal path, which only
tests ``skb->gso_size``.  ``stop()`` deletes the pair; ``start()`` first deletes one a
killed predecessor left behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SEG_OUT = "lisp-seg0"
"""The end the decap program redirects batches to (segmenting on transmit)."""
SEG_IN = "lisp-seg1"
"""The end the segments come back in on (``lisp_decap`` attached to its ingress)."""
SEG_MTU = 65535
"""Segments are at most the underlay MTU; the pair never limits them."""


@dataclass(frozen=True, slots=True)
class Segmenter:
    """The pair as the program's config sees it."""

    out_ifindex: int
    in_ifindex: int
    in_mac: bytes
    """``lisp-seg1``'s MAC address (6 bytes)."""


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def remove(ipr: Any) -> bool:
    """(netlink thread) Delete the pair; False when it was not there."""
    idx = _index(ipr, SEG_OUT)
    if idx is None:
        idx = _index(ipr, SEG_IN)
    if idx is None:
        return False
    ipr.link("del", index=idx)  # deleting one end removes both
    return True


def _quiet_ipv6(name: str) -> None:
    """No link-local address, RS or MLD on the pair (best effort; the thread's netns)."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
    except OSError:
        pass


def create(ipr: Any) -> Segmenter:
    """(netlink thread) A fresh pair, up, with software segmentation on ``lisp-seg0``."""
    if remove(ipr):
        log.info("removed a stale %s pair", SEG_OUT)
    ipr.link("add", ifname=SEG_OUT, kind="veth", peer={"ifname": SEG_IN})
    out_idx = _index(ipr, SEG_OUT)
    in_idx = _index(ipr, SEG_IN)
    if out_idx is None or in_idx is None:
        raise OSError(f"{SEG_OUT}/{SEG_IN} not found after creation")
    try:
        for name in (SEG_OUT, SEG_IN):
            _quiet_ipv6(name)
        # gso_max_segs 1: any batch of 2+ segments loses the device's GSO features
        # (netif_skb_features), so validate_xmit_skb segments it before veth_xmit.
        ipr.link("set", index=out_idx, gso_max_segs=1)
        ipr.link("set", index=out_idx, mtu=SEG_MTU)
        ipr.link("set", index=in_idx, mtu=SEG_MTU)
        ipr.link("set", index=in_idx, state="up")
        ipr.link("set", index=out_idx, state="up")
        link = ipr.get_links(in_idx)[0]
        mac = str(link.get_attr("IFLA_ADDRESS"))
    except BaseException:
        ipr.link("del", index=out_idx)
        raise
    return Segmenter(out_idx, in_idx, bytes.fromhex(mac.replace(":", "")))


__all__ = ["SEG_IN", "SEG_OUT", "Segmenter", "create", "remove"]
