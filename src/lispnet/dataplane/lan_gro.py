"""GRO for the EID-facing (LAN) interfaces: runs of a flow's datagrams become one packet.

With GRO and ``rx-udp-gro-forwarding`` on an interface, consecutive same-size UDP
datagrams of one flow that arrive in one NAPI round become one UDP_L4 GSO packet (up to
64 datagrams) which the kernel forwards whole: the TUN backend reads it in one go
(``tun_uso``), VXLAN and VXLAN-GPE encapsulate it once and the receiving side's UDP
tunnel takes it whole.  Datagram boundaries are kept (``gso_size``); the host that
finally receives the datagrams, or the first device that cannot carry the packet, cuts
it back into the original datagrams.

GRO can only merge what queues up before a NAPI poll.  A NIC's interrupt coalescing makes
such batches; a veth (a namespace lab) polls every packet right away, so nothing would
merge.  :func:`napi_batching` sets the interface's ``gro_flush_timeout`` and
``napi_defer_hard_irqs`` (Documentation/networking/napi.rst, "IRQ mitigation"): while
traffic flows, the NAPI instance is polled at most every ``gro_flush_timeout`` and packets
wait up to that long - the latency traded for batches (``[node] lan-batch-us``, default
20 µs; 0 leaves those settings alone).

:class:`LanGro` does both for a backend's LAN interfaces (``[node] lan-gro``) and puts
the old values back on stop.  Feature flags go through pyroute2's ethtool ioctls; the
two sysfs values through a child process with a sysfs of the daemon's own network
namespace (:func:`sysfs_netdev`).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

log = logging.getLogger(__name__)

GRO_FEATURES = ("rx-gro", "rx-udp-gro-forwarding")


def set_features(ifname: str, want: dict[str, bool]) -> dict[str, bool]:
    """Set ethtool features of ``ifname`` (caller's namespace) to ``want``; returns the old
    values of those that changed.  Raises KeyError when the driver lacks one of them, or the
    ioctl's error."""
    from pyroute2.ethtool import Ethtool

    et = Ethtool()
    try:
        feats = et.get_features(ifname)
        table: Any = feats.features
        old: dict[str, bool] = {}
        for name, value in want.items():
            f = table.get(name)
            if f is None or not f.available:
                raise KeyError(f"no {name}")
            if bool(f.enable) != value:
                old[name] = bool(f.enable)
                f.enable = value
        if old:
            et.set_features(ifname, feats)
        return old
    finally:
        et.close()


def gro_forwarding(ifname: str) -> dict[str, bool] | None:
    """Switch GRO and UDP GRO forwarding on for ``ifname`` (in the caller's namespace).
    Returns the features' previous values to hand to :func:`restore_features`, {} when
    they were on already, None when the interface cannot do it (logged)."""
    try:
        prev = set_features(ifname, dict.fromkeys(GRO_FEATURES, True))
    except Exception as e:  # noqa: BLE001 - ethtool ioctls vary by driver
        log.info("%s: cannot switch on UDP GRO forwarding (%s): UDP from the LAN is not merged", ifname, e)
        return None
    if prev:
        log.info("%s: %s switched on (runs of UDP datagrams merged)", ifname, ", ".join(sorted(prev)))
    return prev


def lan_state(ifname: str) -> dict[str, int | bool]:
    """What :class:`LanGro` sets on ``ifname``, as it stands now (caller's namespace)."""
    from pyroute2.ethtool import Ethtool

    et = Ethtool()
    try:
        table: Any = et.get_features(ifname).features
        out: dict[str, int | bool] = {name: bool(table[name].enable) for name in GRO_FEATURES}
    finally:
        et.close()
    out.update(sysfs_netdev(ifname, {"gro_flush_timeout": None, "napi_defer_hard_irqs": None}))
    return out


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
        set_features(ifname, prev)
    except Exception as e:  # noqa: BLE001
        log.info("%s: cannot restore %s: %s", ifname, ", ".join(sorted(prev)), e)


class LanGro:
    """GRO, UDP GRO forwarding and (``batch_us`` > 0) batched NAPI polls on LAN interfaces,
    in network namespace ``netns`` (None: the caller's); :meth:`restore` undoes them."""

    def __init__(self, batch_us: int = 20, netns: str | None = None) -> None:
        self.batch_us = batch_us
        self.netns = netns
        self._prev: dict[str, tuple[dict[str, bool], dict[str, int] | None]] = {}

    def enable(self, ifname: str) -> bool:
        """Set ``ifname`` up (once); False when its driver cannot merge UDP (logged)."""
        if ifname in self._prev:
            return True
        from .libbpf import run_in_netns

        feats = run_in_netns(self.netns, gro_forwarding, ifname)
        if feats is None:
            return False
        napi = run_in_netns(self.netns, napi_batching, ifname, self.batch_us) if self.batch_us else None
        if napi == {"gro_flush_timeout": self.batch_us * 1000, "napi_defer_hard_irqs": NAPI_DEFER}:
            # exactly our values: a daemon that was not stopped cleanly left them; hand the
            # interface back with the kernel's defaults rather than keep them for good
            log.info("%s: NAPI batching left by an earlier run; the kernel defaults come back on stop", ifname)
            napi = {"gro_flush_timeout": 0, "napi_defer_hard_irqs": 0}
        self._prev[ifname] = (feats, napi)
        return True

    def restore(self) -> None:
        from .libbpf import run_in_netns

        for ifname, (feats, napi) in self._prev.items():
            run_in_netns(self.netns, restore_features, ifname, feats)
            if napi:
                run_in_netns(self.netns, restore_napi, ifname, napi)
        self._prev.clear()


__all__ = [
    "GRO_FEATURES",
    "LanGro",
    "gro_forwarding",
    "lan_state",
    "napi_batching",
    "restore_features",
    "restore_napi",
    "set_features",
    "sysfs_netdev",
]
