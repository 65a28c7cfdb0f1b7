"""Netlink helpers over pyroute2: devices, addresses, routes, policy rules, namespaces.

Every function takes the netlink handle to act on (an ``IPRoute`` for the current
namespace, a ``NetNS`` for another one), so the daemon (inside its namespace) and the lab
(building namespaces from outside) share them.  Nothing here shells out to ``ip``.

TUN devices are created with the TUNSETIFF ioctl on /dev/net/tun (netlink cannot open
them); the device lives as long as its file descriptor.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import struct
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute, NetNS, netns

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
IFA_F_NOPREFIXROUTE = 0x200

T = TypeVar("T")
Netlink = Any  # IPRoute | NetNS (pyroute2 ships no type hints)


def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a fresh thread and return its result (or raise its error).

    pyroute2 0.9 drives netlink with asyncio internally; its synchronous API cannot run
    on a thread whose event loop is already running (the daemon's), so callers on the
    loop hop to a short-lived thread for netlink work.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn(*args))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            error.append(e)

    t = threading.Thread(target=run, name="netlink")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def open_ipr(namespace: str | None = None) -> Netlink:
    """A netlink handle for ``namespace`` (None = the current one)."""
    return NetNS(namespace) if namespace else IPRoute()


def create_tun(name: str, vnet_hdr: bool = False, multi_queue: bool = False) -> int:
    """Open (creating if needed) TUN device ``name`` without packet info; return the fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    flags = IFF_TUN | IFF_NO_PI
    if vnet_hdr:
        flags |= IFF_VNET_HDR
    if multi_queue:
        flags |= IFF_MULTI_QUEUE
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        if vnet_hdr:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", 10))
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    except OSError:
        os.close(fd)
        raise
    return fd


def link_index(ipr: Netlink, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def require_index(ipr: Netlink, name: str) -> int:
    idx = link_index(ipr, name)
    if idx is None:
        raise LookupError(f"no interface {name!r}")
    return idx


def link_up(ipr: Netlink, name: str, mtu: int | None = None) -> None:
    kwargs: dict[str, Any] = {"state": "up"}
    if mtu is not None:
        kwargs["mtu"] = mtu
    ipr.link("set", index=require_index(ipr, name), **kwargs)


def link_names(ipr: Netlink) -> list[str]:
    return [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]


def delete_link(ipr: Netlink, name: str) -> None:
    idx = link_index(ipr, name)
    if idx is not None:
        ipr.link("del", index=idx)


def create_veth(ipr: Netlink, name: str, peer: str, peer_netns: str | None = None) -> None:
    """A veth pair ``name`` (here) <-> ``peer`` (in ``peer_netns`` when given)."""
    peer_spec: dict[str, Any] = {"ifname": peer}
    if peer_netns:
        peer_spec["net_ns_fd"] = peer_netns
    ipr.link("add", ifname=name, kind="veth", peer=peer_spec)


def create_bridge(ipr: Netlink, name: str) -> None:
    ipr.link("add", ifname=name, kind="bridge")
    link_up(ipr, name)


def set_master(ipr: Netlink, name: str, master: str) -> None:
    ipr.link("set", index=require_index(ipr, name), master=require_index(ipr, master))


def add_address(ipr: Netlink, ifname: str, cidr: str, noprefixroute: bool = False) -> None:
    """Add ``cidr`` (``10.0.0.1/24``) to ``ifname``; without the connected route when asked."""
    iface = ipaddress.ip_interface(cidr)
    kwargs: dict[str, Any] = {}
    if noprefixroute:
        kwargs["flags"] = IFA_F_NOPREFIXROUTE
    if iface.version == 6:
        kwargs["family"] = 10
    ipr.addr("add", index=require_index(ipr, ifname), address=str(iface.ip), prefixlen=iface.network.prefixlen, **kwargs)


def addresses(ipr: Netlink, ifname: str) -> list[str]:
    """Global addresses of ``ifname`` as CIDR strings."""
    idx = link_index(ipr, ifname)
    if idx is None:
        return []
    out = []
    for a in ipr.get_addr(index=idx):
        ip = a.get_attr("IFA_ADDRESS")
        if ip and not str(ip).startswith("fe80"):
            out.append(f"{ip}/{a['prefixlen']}")
    return out


def replace_route(
    ipr: Netlink, dst: str, dev: str | None = None, gateway: str | None = None, table: int | None = None
) -> None:
    """Add or replace a route (``dst`` ``default`` or a CIDR)."""
    family = 10 if ":" in dst or (gateway is not None and ":" in gateway) else 2
    kwargs: dict[str, Any] = {"family": family}
    if dst == "default" or dst in ("0.0.0.0/0", "::/0"):
        kwargs["dst"] = "::/0" if family == 10 else "0.0.0.0/0"
    else:
        kwargs["dst"] = str(ipaddress.ip_network(dst, strict=False))
    if dev is not None:
        kwargs["oif"] = require_index(ipr, dev)
    if gateway is not None:
        kwargs["gateway"] = gateway
    if table is not None:
        kwargs["table"] = table
    ipr.route("replace", **kwargs)


def add_iif_rule(ipr: Netlink, iif: str, table: int, priority: int) -> None:
    """``from all iif IIF lookup TABLE`` for IPv4 and IPv6 (idempotent)."""
    for family in (2, 10):
        for rule in ipr.get_rules(family=family):
            if rule.get_attr("FRA_IIFNAME") == iif and rule.get_attr("FRA_TABLE") == table:
                break
        else:
            ipr.rule("add", iifname=iif, table=table, priority=priority, family=family)


def delete_rules_for_table(ipr: Netlink, table: int) -> None:
    for family in (2, 10):
        for rule in ipr.get_rules(family=family):
            if rule.get_attr("FRA_TABLE") == table:
                try:
                    ipr.rule(
                        "del",
                        family=family,
                        table=table,
                        priority=rule.get_attr("FRA_PRIORITY"),
                        iifname=rule.get_attr("FRA_IIFNAME"),
                    )
                except Exception:  # noqa: BLE001 - already gone
                    pass


def flush_table(ipr: Netlink, table: int) -> None:
    for family in (2, 10):
        for route in ipr.get_routes(family=family, table=table):
            try:
                ipr.route("del", family=family, table=table, dst_len=route["dst_len"], dst=route.get_attr("RTA_DST"))
            except Exception:  # noqa: BLE001
                pass


def sysctl(name: str, value: str | int) -> None:
    """Write a sysctl of the current namespace (``net.ipv4.ip_forward``)."""
    path = "/proc/sys/" + name.replace(".", "/")
    with open(path, "w") as f:
        f.write(str(value))


# --- namespaces --------------------------------------------------------------------
def list_namespaces() -> list[str]:
    return sorted(str(n) for n in netns.listnetns())


def create_namespace(name: str) -> None:
    if name not in list_namespaces():
        netns.create(name)


def remove_namespace(name: str) -> None:
    if name in list_namespaces():
        netns.remove(name)


__all__ = [
    "add_address",
    "add_iif_rule",
    "addresses",
    "create_bridge",
    "create_namespace",
    "create_tun",
    "create_veth",
    "delete_link",
    "delete_rules_for_table",
    "flush_table",
    "in_thread",
    "link_index",
    "link_up",
    "list_namespaces",
    "open_ipr",
    "remove_namespace",
    "replace_route",
    "set_master",
    "sysctl",
]
