"""Kernel VXLAN-GPE and VXLAN data planes: the LISP control plane over another encapsulation.

The seed's "Alternative Data Plane Formats": the map-cache stays LISP's, only the data
encapsulation changes.  One metadata-mode device per node carries every instance:

* ``vxlan-gpe``: ``vxlan ... gpe external`` (UDP 4790), an L3 device (no Ethernet
  header inside; the GPE next-protocol says IPv4/IPv6), ``learning`` off.
* ``vxlan``: ``vxlan external`` (UDP 4789), which carries Ethernet.  An L3 overlay on
  it needs a fixed router MAC on both ends: a private-mode macvlan on the VXLAN device
  holds ``ROUTER_MAC`` and every overlay route goes out of it through a fake on-link
  gateway whose permanent neighbour entry is that same MAC, so frames arrive addressed
  to the receiver's macvlan.  (The VXLAN device keeps its own MAC: it drops frames whose
  source MAC is its own address.)

Each map-cache entry becomes one route with lightweight-tunnel metadata encapsulation
(``encap ip id IID dst RLOC src OURS``, LWTUNNEL_ENCAP_IP = 2 / IP6 = 4; the VNI is
the instance-id) in the instance's table: the VRF's table when the instance interface
is a VRF, otherwise a table of our own selected by an ``iif <interface>`` rule (lookups
that find nothing there fall through to the main table).  Received packets keep the
VNI as tunnel metadata; a ``tun_id IID`` rule steers them into a VRF instance's table.
Several usable RLOCs of the best priority become a multipath route weighted like the
map-cache.  Negative entries: drop -> blackhole, natively-forward -> throw (fall
through to native routing).

pyroute2 has no encoder for the IP tunnel encap attributes, hence :class:`IpTunnelEncap`
and :class:`Ip6TunnelEncap` below; routes are sent as raw rtnetlink requests through
pyroute2's socket.  ``stop`` deletes the device (its routes go with it), our rules,
tables and neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_interface
from typing import Any, TypeVar

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, nla
from pyroute2.netlink.rtnl import RTM_DELROUTE, RTM_NEWROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from ..wire.enums import Action
from ..wire.prefix import EidPrefix
from .base import FwdEntry, FwdLocator, IPAddr, Miss, MissCallback
from .lan_gro import LanGro
from .libbpf import netns, run_in_netns
from .netlink import create_tun

log = logging.getLogger(__name__)

LWTUNNEL_ENCAP_IP = 2
LWTUNNEL_ENCAP_IP6 = 4
RTPROT_LISPNET = 76
"""Routing protocol number marking our routes (``ip route show proto 76``)."""
RTN_UNICAST = 1
RTN_BLACKHOLE = 6
RTN_THROW = 9
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTNH_F_ONLINK = 4
RULE_PRIORITY = 900
NUD_PERMANENT = 0x80

ROUTER_MAC = "02:4c:49:53:50:01"
"""The fixed router MAC of plain-VXLAN devices (the same on every node)."""
GATEWAY4 = "169.254.76.1"
GATEWAY6 = "fe80::4c:1"

PUNT_PREFIX = "lispm"
"""Miss TUN of an instance: ``lispm<iid>``, behind the instance table's default route."""
PUNT_LIMIT = 32
"""Packets per destination handed to the ITR until the table changes."""
MISS_METRIC = 0xFFFF
T = TypeVar("T")

PORTS = {"vxlan-gpe": 4790, "vxlan": 4789}
DEVICES = {"vxlan-gpe": "lisp-gpe0", "vxlan": "lisp-vxl0"}


class IpTunnelEncap(nla):  # type: ignore[misc]
    """RTA_ENCAP body for LWTUNNEL_ENCAP_IP (include/uapi/linux/lwtunnel.h)."""

    nla_map = (
        ("LWTUNNEL_IP_UNSPEC", "none"),
        ("LWTUNNEL_IP_ID", "be64"),
        ("LWTUNNEL_IP_DST", "ip4addr"),
        ("LWTUNNEL_IP_SRC", "ip4addr"),
        ("LWTUNNEL_IP_TTL", "uint8"),
        ("LWTUNNEL_IP_TOS", "uint8"),
        ("LWTUNNEL_IP_FLAGS", "be16"),
    )


class Ip6TunnelEncap(nla):  # type: ignore[misc]
    """RTA_ENCAP body for LWTUNNEL_ENCAP_IP6."""

    nla_map = (
        ("LWTUNNEL_IP6_UNSPEC", "none"),
        ("LWTUNNEL_IP6_ID", "be64"),
        ("LWTUNNEL_IP6_DST", "ip6addr"),
        ("LWTUNNEL_IP6_SRC", "ip6addr"),
        ("LWTUNNEL_IP6_HOPLIMIT", "uint8"),
        ("LWTUNNEL_IP6_TC", "uint8"),
        ("LWTUNNEL_IP6_FLAGS", "be16"),
    )


class _RouteMsg(rtmsg):  # type: ignore[misc]
    """rtmsg whose RTA_ENCAP / RTA_MULTIPATH are pre-encoded bytes."""

    nla_map = tuple((n, "cdata") if n in ("RTA_ENCAP", "RTA_MULTIPATH") else (n, t) for n, t in rtmsg.nla_map)


def encap_attrs(iid: int, rloc: IPAddr, src: IPAddr | None, ttl: int = 64) -> tuple[int, bytes]:
    """(encap type, RTA_ENCAP payload) for ``encap ip[6] id IID dst RLOC [src SRC]``."""
    if isinstance(rloc, IPv4Address):
        msg: nla = IpTunnelEncap()
        attrs: list[tuple[str, Any]] = [("LWTUNNEL_IP_ID", iid), ("LWTUNNEL_IP_DST", str(rloc))]
        if isinstance(src, IPv4Address):
            attrs.append(("LWTUNNEL_IP_SRC", str(src)))
        attrs.append(("LWTUNNEL_IP_TTL", ttl))
        kind = LWTUNNEL_ENCAP_IP
    else:
        msg = Ip6TunnelEncap()
        attrs = [("LWTUNNEL_IP6_ID", iid), ("LWTUNNEL_IP6_DST", str(rloc))]
        if isinstance(src, IPv6Address):
            attrs.append(("LWTUNNEL_IP6_SRC", str(src)))
        attrs.append(("LWTUNNEL_IP6_HOPLIMIT", ttl))
        # TUNNEL_CSUM: without it the device sends a zero UDP checksum over IPv6, which
        # receivers drop unless they opted into udp6zerocsumrx
        attrs.append(("LWTUNNEL_IP6_FLAGS", 1))
        kind = LWTUNNEL_ENCAP_IP6
    msg["attrs"] = attrs
    msg.encode()
    return kind, bytes(msg.data[4:])  # drop the outer NLA header pyroute2 adds


def _nla(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes((4 - length % 4) % 4)


def multipath_attr(hops: list[tuple[int, int, int, bytes, bytes | None]]) -> bytes:
    """RTA_MULTIPATH payload from (ifindex, weight, encap type, encap, gateway) tuples."""
    out = b""
    for ifindex, weight, etype, encap, gateway in hops:
        attrs = b""
        if gateway is not None:
            attrs += _nla(5, gateway)  # RTA_GATEWAY
        attrs += _nla(21, struct.pack("=H", etype))  # RTA_ENCAP_TYPE
        attrs += _nla(22 | 0x8000, encap)  # RTA_ENCAP, nested
        flags = RTNH_F_ONLINK if gateway is not None else 0
        hops_field = max(1, min(weight, 256)) - 1
        out += struct.pack("=HBBi", 8 + len(attrs), flags, hops_field, ifindex) + attrs
    return out


def best_locators(locators: tuple[FwdLocator, ...]) -> list[FwdLocator]:
    """The usable locators of the best priority (the same rule as the other backends)."""
    usable = [r for r in locators if r.up and r.priority != 255]
    if not usable:
        return []
    best = min(r.priority for r in usable)
    return [r for r in usable if r.priority == best]


@dataclass
class _Instance:
    iid: int
    ifname: str
    table: int
    vrf: bool


class VxlanDataplane:
    """Kernel VXLAN-GPE (``kind="vxlan-gpe"``) or VXLAN (``kind="vxlan"``) backend."""

    def __init__(
        self,
        kind: str = "vxlan-gpe",
        *,
        netns: str | None = None,
        device: str | None = None,
        port: int | None = None,
        table_base: int = 0x4C00,
        router_mac: str = ROUTER_MAC,
        lan_gro: bool = True,
        lan_batch_us: int = 20,
    ) -> None:
        if kind not in PORTS:
            raise ValueError(f"unknown VXLAN kind {kind!r} (vxlan-gpe or vxlan)")
        self.name = kind
        self._gpe = kind == "vxlan-gpe"
        self._netns = netns
        self.device = device or DEVICES[kind]
        self.port = port or PORTS[kind]
        self.router_device = self.device + "r"
        """Plain VXLAN: the macvlan holding the router MAC, where overlay routes point."""
        self._table_base = table_base
        self._router_mac = router_mac
        self._lan = LanGro(lan_batch_us, netns) if lan_gro else None
        """GRO on the LANs (``lan_gro``): runs of a flow's datagrams are tunnelled as one packet."""
        self._ifindex = 0
        self._rlocs: list[IPAddr] = []
        self._instances: dict[int, _Instance] = {}
        self._wanted_instances: dict[int, str] = {}
        self._entries: dict[EidPrefix, FwdEntry] = {}
        self._rules: list[dict[str, Any]] = []
        self._tables: set[int] = set()
        self._running = False
        self._seq = 0
        # misses: one TUN per instance behind the instance table's default route
        self._on_miss: MissCallback | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._punt_fds: dict[int, int] = {}
        self._punted: dict[tuple[int, bytes], int] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._counts = {"misses": 0, "miss-rate-limited": 0, "injected": 0}

    @property
    def rx_device(self) -> str:
        """The device decapsulated packets arrive on (the macvlan for plain VXLAN)."""
        return self.device if self._gpe else self.router_device

    def punt_device(self, iid: int) -> str:
        return f"{PUNT_PREFIX}{iid}"

    # --- plumbing -----------------------------------------------------------------------------
    def _nl(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(ipr, *args)`` with a pyroute2 handle on a netlink thread in our namespace.

        pyroute2 0.9 cannot run on a thread whose asyncio loop is running (the daemon's).
        """

        def call() -> T:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                return fn(ipr, *args)

        return run_in_netns(self._netns, call)

    def _request(self, msg: Any, msg_type: int, flags: int) -> None:
        """Send one rtnetlink request on a plain netlink socket and wait for its ack."""
        self._seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self._seq
        msg["header"]["pid"] = 0
        msg.encode()
        with netns(self._netns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.settimeout(5)
            sock.bind((0, 0))
            sock.send(bytes(msg.data))
            while True:
                data = sock.recv(65536)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
                    if kind == 2 and seq == self._seq:  # NLMSG_ERROR: 0 is the ack
                        (err,) = struct.unpack_from("=i", data, offset + 16)
                        if err:
                            raise OSError(-err, f"rtnetlink: {os.strerror(-err)}")
                        return
                    offset += max(16, (length + 3) & ~3)
        finally:
            sock.close()

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, on_miss: MissCallback) -> None:
        """Create the device, the instance tables and their miss TUNs."""
        self._on_miss = on_miss
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._stopping.clear()
        self._ifindex = self._nl(self._create_device)
        self._running = True
        try:
            self._apply_instances()
            for entry in self._entries.values():
                self._write(entry)
        except BaseException:
            self.stop()
            raise
        log.info("%s data plane started on %s (UDP %d)", self.name, self.device, self.port)

    def _create_device(self, ipr: Any) -> int:
        old = ipr.link_lookup(ifname=self.device)
        if old:  # left by a killed predecessor: its routes go with it
            ipr.link("del", index=old[0])
        _remove_stale(ipr, self._table_base)
        kwargs: dict[str, Any] = {
            "ifname": self.device,
            "kind": "vxlan",
            "vxlan_port": self.port,
            "vxlan_collect_metadata": 1,
            "vxlan_learning": 0,
            # RFC 9300 5.3: an ITR SHOULD send a zero UDP checksum, over IPv4 and (RFC 6935/
            # 6936) IPv6; accept zero over IPv6 from peers doing the same
            "vxlan_udp_csum": 0,
            "vxlan_udp_zero_csum6_tx": 1,
            "vxlan_udp_zero_csum6_rx": 1,
        }
        if self._gpe:
            kwargs["vxlan_gpe"] = True
        ipr.link("add", **kwargs)
        vx_index = int(ipr.link_lookup(ifname=self.device)[0])
        # Our instance rules make every route lookup of the namespace "custom": without
        # accept_local the kernel then validates the source of each decapsulated packet
        # with a second, full route lookup (fib_validate_source).  The tunnel device is
        # ours; accepting a local source there is all the setting changes.
        try:
            with open(f"/proc/sys/net/ipv4/conf/{self.device}/accept_local", "w") as f:
                f.write("1")
        except OSError as exc:
            log.debug("accept_local on %s: %s", self.device, exc)
        ipr.link("set", index=vx_index, state="up")
        if self._gpe:
            return vx_index
        # The router MAC lives on a macvlan above the VXLAN device: frames to it are
        # ours, while the VXLAN device itself keeps a MAC of its own (it drops frames
        # whose source is its own address, and every sender uses ROUTER_MAC).
        ipr.link(
            "add",
            ifname=self.router_device,
            kind="macvlan",
            link=vx_index,
            macvlan_mode="private",
            address=self._router_mac,
        )
        index = int(ipr.link_lookup(ifname=self.router_device)[0])
        ipr.link("set", index=index, state="up")
        ipr.neigh("add", dst=GATEWAY4, lladdr=self._router_mac, ifindex=index, state=NUD_PERMANENT)
        ipr.neigh(
            "add", dst=GATEWAY6, lladdr=self._router_mac, ifindex=index, state=NUD_PERMANENT, family=socket.AF_INET6
        )
        return index

    def stop(self) -> None:
        self._stopping.set()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()
        for fd in self._punt_fds.values():
            try:
                os.close(fd)  # the TUN disappears with its last fd (and its routes with it)
            except OSError:
                pass
        self._punt_fds.clear()
        if self._lan is not None:
            self._lan.restore()
        self._nl(self._cleanup, list(self._rules), sorted(self._tables))
        self._rules.clear()
        self._tables.clear()
        self._instances.clear()
        self._running = False

    def _cleanup(self, ipr: Any, rules: list[dict[str, Any]], tables: list[int]) -> None:
        for rule in rules:
            try:
                ipr.rule("del", **rule)
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                log.debug("rule %s: %s", rule, exc)
        for table in tables:
            for family in (socket.AF_INET, socket.AF_INET6):
                try:
                    ipr.flush_routes(table=table, family=family)
                except Exception as exc:  # noqa: BLE001
                    log.debug("flush table %d: %s", table, exc)
        found = ipr.link_lookup(ifname=self.device)
        if found:
            ipr.link("del", index=found[0])

    # --- configuration -------------------------------------------------------------------------
    def set_local_rlocs(self, rlocs: list[IPAddr], lsb: int) -> None:
        del lsb  # VXLAN headers carry no locator-status-bits
        self._rlocs = list(rlocs)
        if self._running:
            for entry in self._entries.values():
                self._write(entry)

    def set_instances(self, instances: dict[int, str]) -> None:
        self._wanted_instances = dict(instances)
        if self._running:
            self._apply_instances()
            for entry in self._entries.values():
                self._write(entry)

    def install(self, entry: FwdEntry) -> None:
        prefix = entry.prefix.masked()
        if not prefix.is_ip:
            return
        entry = FwdEntry(prefix, entry.locators, entry.action, entry.use_petr)
        self._entries[prefix] = entry
        if self._running:
            self._write(entry)
            self._punted = {}

    def remove(self, prefix: EidPrefix) -> None:
        prefix = prefix.masked()
        if self._entries.pop(prefix, None) is None or not self._running:
            return
        self._punted = {}
        inst = self._instances.get(prefix.iid)
        if inst is None:
            return
        msg = self._route_msg(prefix, inst.table, RTN_UNICAST)
        msg["type"] = 0
        msg["proto"] = 0
        msg["scope"] = RT_SCOPE_UNIVERSE
        try:
            self._request(msg, RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK)
        except OSError as exc:
            log.debug("removing %s: %s", prefix, exc)

    def stats(self) -> dict[str, int]:
        """The device's counters (the kernel keeps no per-mapping or per-RLOC counts)."""
        out = {"routes": len(self._entries), "tx_packets": 0, "rx_packets": 0, "tx_dropped": 0, "rx_dropped": 0}
        out.update(self._counts)
        if self._running:
            out.update(self._nl(self._device_stats))
        out["encap.packets"] = out["tx_packets"] + self._counts["injected"]
        out["decap.packets"] = out["rx_packets"]
        if out.get("tx_bytes") is not None:
            out["encap.bytes"] = out["tx_bytes"]
            out["decap.bytes"] = out["rx_bytes"]
        if out["tx_dropped"]:
            out["drop.tx"] = out["tx_dropped"]
        if out["rx_dropped"]:
            out["drop.rx"] = out["rx_dropped"]
        return out

    def _device_stats(self, ipr: Any) -> dict[str, int]:
        out: dict[str, int] = {}
        found = ipr.link_lookup(ifname=self.device)
        links = ipr.get_links(found[0]) if found else []
        if links:
            st = links[0].get_attr("IFLA_STATS64")
            if st is not None:
                for key in ("tx_packets", "rx_packets", "tx_bytes", "rx_bytes", "tx_dropped", "rx_dropped"):
                    out[key] = int(st[key])
        return out

    def routes(self, iid: int) -> list[str]:
        """``ip route`` lines of an instance's table (for tests and show commands)."""
        inst = self._instances.get(iid)
        if inst is None:
            return []
        import subprocess

        base = ["ip", "-n", self._netns] if self._netns else ["ip"]
        out: list[str] = []
        for fam in ("-4", "-6"):
            cmd = [*base, fam, "route", "show", "table", str(inst.table), "proto", str(RTPROT_LISPNET)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            out += [line for line in proc.stdout.splitlines() if line.strip()]
        return out

    # --- misses and the first packets ---------------------------------------------------------------
    def inject(self, iid: int, packet: bytes) -> None:
        """Send a packet the ITR held during resolution: back in through the miss TUN.

        The instance's rule for that TUN routes it with the instance table, which now
        holds the encap route.
        """
        fd = self._punt_fds.get(iid)
        if fd is None or not packet:
            return
        try:
            os.write(fd, packet)
            self._counts["injected"] += 1
        except OSError as exc:
            log.debug("inject into %s: %s", self.punt_device(iid), exc)

    def _punt_loop(self, fd: int, iid: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not self._stopping.is_set():
            try:
                pkt = os.read(fd, 65536)
            except BlockingIOError:
                poller.poll(200)
                continue
            except OSError:
                return
            if len(pkt) < 20:
                continue
            try:
                self._punt(iid, pkt)
            except Exception:  # noqa: BLE001 - the reader must survive any packet
                log.exception("miss punt failed")

    def _punt(self, iid: int, pkt: bytes) -> None:
        if pkt[0] >> 4 == 4:
            src: IPAddr = IPv4Address(pkt[12:16])
            dst: IPAddr = IPv4Address(pkt[16:20])
        elif pkt[0] >> 4 == 6 and len(pkt) >= 40:
            src = IPv6Address(pkt[8:24])
            dst = IPv6Address(pkt[24:40])
        else:
            return
        if dst.is_multicast or dst.is_link_local or dst == IPv4Address("255.255.255.255"):
            return  # the TUN's own neighbour discovery / MLD, not traffic to resolve
        self._counts["misses"] += 1
        key = (iid, dst.packed)
        seen = self._punted.get(key, 0)
        if seen >= PUNT_LIMIT:
            self._counts["miss-rate-limited"] += 1
            return
        self._punted[key] = seen + 1
        cb = self._on_miss
        if cb is None:
            return
        miss = Miss(iid, src, dst, pkt)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(cb, miss)
            except RuntimeError:
                pass
        else:
            cb(miss)

    # --- internals --------------------------------------------------------------------------------
    def _apply_instances(self) -> None:
        for iid in self._wanted_instances:
            if iid not in self._punt_fds:
                with netns(self._netns):
                    fd = create_tun(self.punt_device(iid))
                os.set_blocking(fd, False)
                self._punt_fds[iid] = fd
                t = threading.Thread(target=self._punt_loop, args=(fd, iid), name=f"lispnet-miss-{iid}", daemon=True)
                t.start()
                self._threads.append(t)
        self._instances = self._nl(self._configure_instances)
        if self._lan is not None:
            for ifname in sorted(set(self._wanted_instances.values()) - {""}):
                self._lan.enable(ifname)

    def _configure_instances(self, ipr: Any) -> dict[int, _Instance]:
        """(netlink thread) Tables and rules of every instance."""
        for old_rule in self._rules:
            try:
                ipr.rule("del", **old_rule)
            except Exception:  # noqa: BLE001
                pass
        self._rules.clear()
        used = {inst.table for inst in self._instances.values() if not inst.vrf}
        new: dict[int, _Instance] = {}
        for iid, ifname in sorted(self._wanted_instances.items()):
            kind = None
            info = None
            if ifname:
                found = ipr.link_lookup(ifname=ifname)
                if not found:
                    raise ValueError(f"instance-id {iid}: no interface {ifname}")
                link = ipr.get_links(found[0])[0]
                info = link.get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            if kind == "vrf" and info is not None:
                table = int(info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_VRF_TABLE"))
                new[iid] = _Instance(iid, ifname, table, True)
            else:
                prev = self._instances.get(iid)
                if prev is not None and not prev.vrf:
                    table = prev.table
                else:
                    table = self._table_base
                    while table in used:
                        table += 1
                    used.add(table)
                new[iid] = _Instance(iid, ifname, table, False)
        for inst in new.values():
            punt = self.punt_device(inst.iid)
            self._prepare_punt(ipr, punt)
            if not inst.vrf:
                self._tables.add(inst.table)
                self._fill_table(ipr, inst, punt)
            for family in (socket.AF_INET, socket.AF_INET6):
                base: dict[str, Any] = {"table": inst.table, "family": family}
                wanted = [{**base, "priority": RULE_PRIORITY, "iifname": punt}]
                if not inst.vrf and inst.ifname:
                    wanted.append({**base, "priority": RULE_PRIORITY, "iifname": inst.ifname})
                # decapsulated packets: the VNI (tunnel metadata) names the instance; a
                # tun_id of 0 would match any packet, so instance 0 takes what is left
                if inst.iid:
                    wanted.append({**base, "priority": RULE_PRIORITY, "iifname": self.rx_device, "tun_id": inst.iid})
                else:
                    wanted.append({**base, "priority": RULE_PRIORITY + 1, "iifname": self.rx_device})
                for rule in wanted:
                    ipr.rule("add", **rule)
                    self._rules.append(rule)
        return new

    @staticmethod
    def _prepare_punt(ipr: Any, dev: str) -> None:
        for name in (f"net/ipv4/conf/{dev}/rp_filter", f"net/ipv6/conf/{dev}/disable_ipv6"):
            try:
                with open(f"/proc/sys/{name}", "w") as f:
                    f.write("0")
            except OSError:
                pass
        ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], state="up")

    def _fill_table(self, ipr: Any, inst: _Instance, punt: str) -> None:
        """The instance's own table: its LAN's connected prefixes, everything else a miss."""
        punt_index = ipr.link_lookup(ifname=punt)[0]
        if inst.ifname:
            lan_index = ipr.link_lookup(ifname=inst.ifname)[0]
            for msg in ipr.get_addr(index=lan_index):
                addr = str(msg.get_attr("IFA_ADDRESS") or "")
                if not addr or addr.startswith("fe80"):
                    continue
                net = ip_interface(f"{addr}/{msg['prefixlen']}").network
                ipr.route(
                    "replace", family=socket.AF_INET6 if net.version == 6 else socket.AF_INET,
                    dst=str(net.network_address), dst_len=net.prefixlen, oif=lan_index, table=inst.table,
                    proto=RTPROT_LISPNET, scope=RT_SCOPE_LINK,
                )  # fmt: skip
        for family, dst in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            ipr.route(
                "replace", family=family, dst=dst, dst_len=0, oif=punt_index, table=inst.table, proto=RTPROT_LISPNET,
                priority=MISS_METRIC,
            )  # fmt: skip

    def _source(self, rloc: IPAddr) -> IPAddr | None:
        for addr in self._rlocs:
            if type(addr) is type(rloc):
                return addr
        return None

    def _route_msg(self, prefix: EidPrefix, table: int, rtype: int) -> Any:
        msg = _RouteMsg()
        msg["family"] = socket.AF_INET if isinstance(prefix.address, IPv4Address) else socket.AF_INET6
        msg["dst_len"] = prefix.mask_len
        msg["table"] = table if table < 256 else 252
        msg["proto"] = RTPROT_LISPNET
        msg["type"] = rtype
        msg["scope"] = RT_SCOPE_UNIVERSE
        msg["attrs"] = [("RTA_TABLE", table), ("RTA_DST", str(prefix.address))]
        return msg

    def _gateway(self, prefix: EidPrefix) -> str | None:
        """The fake on-link next hop of plain VXLAN routes (None for GPE)."""
        if self._gpe:
            return None
        return GATEWAY4 if isinstance(prefix.address, IPv4Address) else GATEWAY6

    def _write(self, entry: FwdEntry) -> None:
        prefix = entry.prefix
        inst = self._instances.get(prefix.iid)
        if inst is None:
            log.debug("no instance for %s; route not installed", prefix)
            return
        locs = best_locators(entry.locators)
        if entry.locators and locs:
            msg = self._route_msg(prefix, inst.table, RTN_UNICAST)
            gateway = self._gateway(prefix)
            iid = prefix.iid & 0xFFFFFF
            if len(locs) == 1:
                etype, encap = encap_attrs(iid, locs[0].address, self._source(locs[0].address))
                msg["attrs"] += [("RTA_OIF", self._ifindex), ("RTA_ENCAP_TYPE", etype), ("RTA_ENCAP", encap)]
                if gateway is not None:
                    msg["attrs"].append(("RTA_GATEWAY", gateway))
                    msg["flags"] = RTNH_F_ONLINK
                else:
                    msg["scope"] = RT_SCOPE_LINK
            else:
                all_zero = all(r.weight == 0 for r in locs)
                if gateway is None and isinstance(prefix.address, IPv6Address):
                    gateway = GATEWAY6  # IPv6 refuses device-only multipath; GPE is NOARP
                gw_raw = None
                if gateway is not None:
                    gw_raw = (IPv4Address(gateway) if "." in gateway else IPv6Address(gateway)).packed
                hops: list[tuple[int, int, int, bytes, bytes | None]] = []
                for r in locs:
                    etype, encap = encap_attrs(iid, r.address, self._source(r.address))
                    hops.append((self._ifindex, 1 if all_zero else max(1, r.weight), etype, encap, gw_raw))
                msg["attrs"].append(("RTA_MULTIPATH", multipath_attr(hops)))
                if gateway is None:
                    msg["scope"] = RT_SCOPE_LINK
        elif entry.locators or entry.action != Action.NATIVELY_FORWARD:
            msg = self._route_msg(prefix, inst.table, RTN_BLACKHOLE)
        else:
            msg = self._route_msg(prefix, inst.table, RTN_THROW)
        self._request(msg, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)


def supported(kind: str = "vxlan-gpe") -> tuple[bool, str]:
    """Whether the kernel can create the device (tried in a scratch namespace)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        return False, "needs root (CAP_NET_ADMIN)"
    ns = f"lnprobe{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        cmd = ["ip", "-n", ns, "link", "add", "probe0", "type", "vxlan", "external", "dstport", str(PORTS[kind])]
        if kind == "vxlan-gpe":
            cmd.append("gpe")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return False, f"kernel refused a {kind} device: {proc.stderr.strip()}"
        return True, ""
    except (OSError, subprocess.CalledProcessError) as exc:
        return False, f"cannot probe {kind}: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _remove_stale(ipr: Any, table_base: int) -> None:
    """Rules into our tables (``table_base`` .. +255) a killed predecessor left behind."""
    for family in (socket.AF_INET, socket.AF_INET6):
        for rule in ipr.get_rules(family=family):
            table = rule.get_attr("FRA_TABLE") or rule["table"]
            if table_base <= table < table_base + 256 and rule.get_attr("FRA_PRIORITY") in (
                RULE_PRIORITY,
                RULE_PRIORITY + 1,
            ):
                try:
                    ipr.rule("del", family=family, table=table, priority=rule.get_attr("FRA_PRIORITY"),
                             iifname=rule.get_attr("FRA_IIFNAME"), tun_id=rule.get_attr("FRA_TUN_ID") or None)
                except Exception:  # noqa: BLE001
                    pass
            if table_base <= table < table_base + 256:
                try:
                    ipr.flush_routes(table=table, family=family)
                except Exception:  # noqa: BLE001
                    pass
