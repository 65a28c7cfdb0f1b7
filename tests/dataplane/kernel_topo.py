"""A five-namespace lab for the kernel data-plane tests and bench (names start ``lnb-``,
or ``$LISPNET_TOPO_PREFIX``).

::

    h1 ---- x1 ==== u ==== x2 ---- h2
    EID     xTR   underlay  xTR     EID

h1 10.1.0.2/24 fd01::2/64   x1 eid0 10.1.0.1 fd01::1   x1 up0 192.168.1.1 fc00:1::1
u  p1 192.168.1.254 fc00:1::fe   p2 192.168.2.254 fc00:2::fe
x2 up0 192.168.2.1 fc00:2::1     x2 eid0 10.2.0.1 fd02::1   h2 10.2.0.2/24 fd02::2/64

The underlay knows no EID routes unless ``plain=True`` (the plain-routing baseline).
``destroy()`` deletes every namespace; use it from a fixture finalizer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

PREFIX = os.environ.get("LISPNET_TOPO_PREFIX", "lnb-")


def sh(cmd: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def have_root() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@dataclass
class Topo:
    tag: str
    underlay_mtu: int = 1600
    plain: bool = False
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        base = f"{PREFIX}{self.tag}{os.getpid() % 100000}-"
        self.names = {n: base + n for n in ("h1", "x1", "u", "x2", "h2")}

    @property
    def h1(self) -> str:
        return self.names["h1"]

    @property
    def h2(self) -> str:
        return self.names["h2"]

    @property
    def x1(self) -> str:
        return self.names["x1"]

    @property
    def x2(self) -> str:
        return self.names["x2"]

    @property
    def u(self) -> str:
        return self.names["u"]

    def ns(self, node: str, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return sh(["ip", "netns", "exec", self.names.get(node, node), *cmd], check=check, timeout=timeout)

    def ip(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(["ip", "-n", self.names.get(node, node), *args], check=check)

    def _veth(self, a: str, an: str, b: str, bn: str, mtu: int = 1500) -> None:
        self.ip(a, "link", "add", an, "mtu", str(mtu), "type", "veth", "peer", "name", bn, "netns", self.names[b])
        self.ip(b, "link", "set", bn, "mtu", str(mtu))
        self.ip(a, "link", "set", an, "up")
        self.ip(b, "link", "set", bn, "up")

    def _addr(self, node: str, dev: str, *addrs: str) -> None:
        for a in addrs:
            extra = ["nodad"] if ":" in a else []
            self.ip(node, "addr", "add", a, "dev", dev, *extra)

    def build(self) -> Topo:
        self.destroy()
        for name in self.names.values():
            sh(["ip", "netns", "add", name])
            sh(["ip", "-n", name, "link", "set", "lo", "up"])
        for node in ("x1", "x2", "u"):
            self.ns(node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        for node in self.names:
            self.ns(node, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        self._veth("h1", "eth0", "x1", "eid0")
        self._veth("x1", "up0", "u", "p1", self.underlay_mtu)
        self._veth("u", "p2", "x2", "up0", self.underlay_mtu)
        self._veth("x2", "eid0", "h2", "eth0")
        self._addr("h1", "eth0", "10.1.0.2/24", "fd01::2/64")
        self._addr("x1", "eid0", "10.1.0.1/24", "fd01::1/64")
        self._addr("x1", "up0", "192.168.1.1/24", "fc00:1::1/64")
        self._addr("u", "p1", "192.168.1.254/24", "fc00:1::fe/64")
        self._addr("u", "p2", "192.168.2.254/24", "fc00:2::fe/64")
        self._addr("x2", "up0", "192.168.2.1/24", "fc00:2::1/64")
        self._addr("x2", "eid0", "10.2.0.1/24", "fd02::1/64")
        self._addr("h2", "eth0", "10.2.0.2/24", "fd02::2/64")
        self.ip("h1", "route", "add", "default", "via", "10.1.0.1")
        self.ip("h1", "-6", "route", "add", "default", "via", "fd01::1")
        self.ip("h2", "route", "add", "default", "via", "10.2.0.1")
        self.ip("h2", "-6", "route", "add", "default", "via", "fd02::1")
        self.ip("x1", "route", "add", "default", "via", "192.168.1.254")
        self.ip("x1", "-6", "route", "add", "default", "via", "fc00:1::fe")
        self.ip("x2", "route", "add", "default", "via", "192.168.2.254")
        self.ip("x2", "-6", "route", "add", "default", "via", "fc00:2::fe")
        if self.plain:
            self.ip("u", "route", "add", "10.1.0.0/24", "via", "192.168.1.1")
            self.ip("u", "route", "add", "10.2.0.0/24", "via", "192.168.2.1")
            self.ip("u", "-6", "route", "add", "fd01::/64", "via", "fc00:1::1")
            self.ip("u", "-6", "route", "add", "fd02::/64", "via", "fc00:2::1")
        return self

    def destroy(self) -> None:
        for name in self.names.values():
            sh(["ip", "netns", "pids", name], check=False)
            pids = sh(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh(["ip", "netns", "del", name], check=False)

    def ping(self, src: str, dst: str, count: int = 3, timeout: float = 1.0) -> bool:
        proc = self.ns(
            src, "ping", "-c", str(count), "-i", "0.2", "-W", str(timeout), dst, check=False, timeout=count * 2 + 10
        )
        return proc.returncode == 0


def iperf3_tcp(topo: Topo, dst: str = "10.2.0.2", seconds: float = 2.0, extra: list[str] | None = None) -> float:
    """Bits per second of an iperf3 TCP transfer h1 -> h2 (0 on failure)."""
    import json

    server = subprocess.Popen(
        ["ip", "netns", "exec", topo.h2, "iperf3", "-s", "-1", "-p", "5299"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import time

        time.sleep(0.3)
        proc = topo.ns(
            "h1",
            "iperf3",
            "-c",
            dst,
            "-p",
            "5299",
            "-t",
            str(seconds),
            "-J",
            *(extra or []),
            check=False,
            timeout=seconds + 20,
        )
        try:
            data = json.loads(proc.stdout)
            if "udp" in " ".join(extra or []) or "-u" in (extra or []):
                return float(data["end"]["sum"]["packets"]) / float(data["end"]["sum"]["seconds"])
            return float(data["end"]["sum_received"]["bits_per_second"])
        except (ValueError, KeyError):
            return 0.0
    finally:
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


_TX_CSUM = """
import ctypes, fcntl, socket, struct, sys
val = ctypes.create_string_buffer(struct.pack("=II", 0x17, int(sys.argv[2])))  # ETHTOOL_STXCSUM
ifr = struct.pack("16sP", sys.argv[1].encode(), ctypes.addressof(val)) + bytes(16)
fcntl.ioctl(socket.socket(), 0x8946, ifr)  # SIOCETHTOOL
"""


def set_tx_csum(topo: Topo, node: str, dev: str, on: bool) -> None:
    """``ethtool -K dev tx on|off`` without ethtool (the legacy ETHTOOL_STXCSUM ioctl)."""
    import sys

    topo.ns(node, sys.executable, "-c", _TX_CSUM, dev, "1" if on else "0")


def start_pair(kind: str, topo: Topo, iid: int) -> list[Any]:
    """A kernel backend (``ebpf``, ``vxlan-gpe`` or ``vxlan``) on x1 and x2, instance ``iid``
    on eid0, each side's IPv4 and IPv6 EID prefixes mapped to the other's RLOC of the same
    family.  Returns [x1, x2]; the caller stops them."""
    from ipaddress import ip_address

    from lispnet.dataplane.base import FwdEntry, FwdLocator
    from lispnet.wire.prefix import EidPrefix

    sides = (("x1", ("192.168.1.1", "fc00:1::1"), ("10.1.0.0/24", "fd01::/64")),
             ("x2", ("192.168.2.1", "fc00:2::1"), ("10.2.0.0/24", "fd02::/64")))
    dps: list[Any] = []
    for node, rlocs, _eids in sides:
        ns = topo.names[node]
        if kind == "ebpf":
            from lispnet.dataplane.ebpf import EbpfDataplane

            dp: Any = EbpfDataplane(netns=ns)
        else:
            from lispnet.dataplane.vxlan import VxlanDataplane

            dp = VxlanDataplane(kind, netns=ns)
        dp.set_instances({iid: "eid0"})
        dp.set_local_rlocs([ip_address(r) for r in rlocs], 1)
        dps.append(dp)
    try:
        for dp in dps:
            dp.start(lambda m: None)
        for dp, (_n, _r, _e), (_n2, peer_rlocs, peer_eids) in zip(dps, sides, reversed(sides), strict=True):
            for prefix, rloc in zip(peer_eids, peer_rlocs, strict=True):
                dp.install(FwdEntry(EidPrefix.parse(prefix, iid), (FwdLocator(ip_address(rloc)),)))
    except BaseException:
        for dp in dps:
            dp.stop()
        raise
    return dps
