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

GRO can only merge what queues up before a NAPI poll.  A NIC's interrupt coalescing makes
such batches; a veth (a namespace lab) polls every packet right away, so nothing would
merge.  :func:`napi_batching` sets the interface's ``gro_flush_timeout`` and
``napi_defer_hard_irqs`` (Documentation/networking/napi.rst, "IRQ mitigation"): while
traffic flows, the NAPI instance is polled at most every ``gro_flush_timeout`` and packets
wait up to that long - the latency traded for one read per run (``[node]
tun-lan-batch-us``, default 20 µs; 0 leaves the interface alone).

:func:`gro_forwarding` switches GRO and UDP GRO forwarding on for an interface (pyroute2's
ethtool ioctls); both return what to restore on stop.
"""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
from typing import Any

from .tun_gso import fold, ipv4_header_checksum, ones_sum, pseudo_sum

log = logging.getLogger(__name__)

TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
GSO_UDP_L4 = 5
GRO_FEATURES = ("rx-gro", "rx-udp-gro-forwarding")
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


def gro_forwarding(ifname: str) -> dict[str, bool] | None:
    """Switch GRO and UDP GRO forwarding on for ``ifname`` (in the caller's namespace).
    Returns the features' previous values to hand to :func:`restore_features`, {} when
    they were on already, None when the interface cannot do it (logged)."""
    try:
        from pyroute2.ethtool import Ethtool

        et = Ethtool()
        try:
            feats = et.get_features(ifname)
            table: Any = feats.features
            prev: dict[str, bool] = {}
            for name in GRO_FEATURES:
                f = table.get(name)
                if f is None or not f.available:
                    log.info("%s: no %s: UDP from the LAN is read one datagram at a time", ifname, name)
                    return None
                if not f.enable:
                    prev[name] = False
                    f.enable = True
            if prev:
                et.set_features(ifname, feats)
                log.info("%s: %s switched on (UDP super-packets toward the ITR)", ifname,
                         ", ".join(sorted(prev)))
            return prev
        finally:
            et.close()
    except Exception as e:  # noqa: BLE001 - ethtool ioctls vary by driver
        log.info("%s: cannot switch on UDP GRO forwarding: %s", ifname, e)
        return None


_SYSFS = r"""
import ctypes, json, os, sys, tempfile
libc = ctypes.CDLL(None, use_errno=True)
# a private mount namespace with a sysfs of this process's network namespace
if libc.unshare(0x00020000):
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
if libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None):
    raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
top = tempfile.mkdtemp(prefix="lispnet-sysfs-")
try:
    if libc.mount(b"sysfs", top.encode(), b"sysfs", 0, None):
        raise OSError(ctypes.get_errno(), "mount sysfs")
    try:
        dev, values = json.loads(sys.argv[1])
        old = {}
        for name, value in values.items():
            path = "%s/class/net/%s/%s" % (top, dev, name)
            with open(path) as f:
                old[name] = int(f.read())
            if value is not None:
                with open(path, "w") as f:
                    f.write(str(value))
    finally:
        libc.umount2(top.encode(), 2)  # MNT_DETACH
finally:
    os.rmdir(top)
print(json.dumps(old))
"""
NAPI_DEFER = 2
"""``napi_defer_hard_irqs`` with batching on: empty polls before the NAPI instance goes idle."""


def sysfs_netdev(ifname: str, values: dict[str, int | None]) -> dict[str, int]:
    """Write ``/sys/class/net/IFNAME/KEY`` values (None: only read) as seen from this
    process's network namespace (the daemon may share its mount namespace, and so its /sys,
    with another network namespace: a child process mounts a sysfs of its own).  Returns
    the old values (raises OSError)."""
    res = subprocess.run([sys.executable, "-c", _SYSFS, json.dumps([ifname, values])], capture_output=True,
                         text=True, timeout=20, check=False)
    if res.returncode != 0:
        lines = res.stderr.strip().splitlines()
        raise OSError(lines[-1] if lines else f"exit {res.returncode}")
    old = json.loads(res.stdout)
    return {str(k): int(v) for k, v in old.items()}


def napi_batching(ifname: str, flush_us: int) -> dict[str, int] | None:
    """Let ``ifname``'s NAPI instance batch up to ``flush_us`` µs of packets for GRO (see the
    module notes).  The previous values for :func:`restore_napi`, None when not possible
    (logged)."""
    try:
        old = sysfs_netdev(ifname, {"gro_flush_timeout": flush_us * 1000, "napi_defer_hard_irqs": NAPI_DEFER})
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        log.info("%s: cannot batch NAPI polls (%s): UDP merges only when packets queue up", ifname, e)
        return None
    log.info("%s: NAPI polls batched (gro_flush_timeout %d µs, napi_defer_hard_irqs %d)", ifname, flush_us,
             NAPI_DEFER)
    return old


def restore_napi(ifname: str, old: dict[str, int]) -> None:
    try:
        sysfs_netdev(ifname, dict(old))
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        log.info("%s: cannot restore %s: %s", ifname, ", ".join(sorted(old)), e)


def restore_features(ifname: str, prev: dict[str, bool]) -> None:
    """Put back the feature values :func:`gro_forwarding` changed (interface may be gone)."""
    if not prev:
        return
    try:
        from pyroute2.ethtool import Ethtool

        et = Ethtool()
        try:
            feats = et.get_features(ifname)
            for name, value in prev.items():
                f = feats.features.get(name)
                if f is not None:
                    f.enable = value
            et.set_features(ifname, feats)
        finally:
            et.close()
    except Exception as e:  # noqa: BLE001
        log.info("%s: cannot restore %s: %s", ifname, ", ".join(sorted(prev)), e)


__all__ = [
    "GSO_UDP_L4",
    "TUN_F_USO4",
    "TUN_F_USO6",
    "gro_forwarding",
    "napi_batching",
    "restore_features",
    "restore_napi",
    "segment_udp",
    "sysfs_netdev",
]
